//! Arrow batches -> Fink's wire format: each row a schemaless Avro datum,
//! the Avro schema (JSON text) as the message key. Encoding works column by
//! column on the batch (arrow-avro), never rebuilding alerts value by value.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_avro::schema::SCHEMA_METADATA_KEY;
use arrow_avro::writer::format::AvroBinaryFormat;
use arrow_avro::writer::{EncodedRows, Encoder, WriterBuilder};
use arrow_schema::Schema;

pub struct AvroEncoder {
    encoder: Encoder,
    /// The Avro schema as JSON text: the message key, and the schema file.
    pub schema_json: Arc<String>,
}

impl AvroEncoder {
    pub fn new(schema: &Schema) -> Result<AvroEncoder, String> {
        // Derive the Avro schema ourselves so a named type used twice (three
        // cutouts of one `cutout` record) is defined once and referenced after.
        let mut bare = schema.clone();
        bare.metadata.remove(SCHEMA_METADATA_KEY);
        let derived = arrow_avro::schema::AvroSchema::try_from(&bare)
            .map_err(|e| format!("cannot derive an Avro schema: {e}"))?;
        let mut json: serde_json::Value =
            serde_json::from_str(&derived.json_string).map_err(|e| format!("derived Avro schema is not JSON: {e}"))?;
        dedupe_named_types(&mut json, "", &mut std::collections::HashMap::new());
        let mut with_schema = bare;
        with_schema.metadata.insert(SCHEMA_METADATA_KEY.to_string(), json.to_string());
        let encoder = WriterBuilder::new(with_schema)
            .build_encoder::<AvroBinaryFormat>()
            .map_err(|e| format!("cannot derive an Avro schema: {e}"))?;
        let schema_json = encoder
            .schema()
            .metadata()
            .get(SCHEMA_METADATA_KEY)
            .cloned()
            .ok_or_else(|| "the Avro encoder exposed no schema".to_string())?;
        Ok(AvroEncoder { encoder, schema_json: Arc::new(schema_json) })
    }

    /// Encode every row of `batch`; one datum per row, in order.
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<EncodedRows, String> {
        self.encoder.encode(batch).map_err(|e| format!("Avro encoding failed: {e}"))?;
        Ok(self.encoder.flush())
    }
}

/// The schema a stream publishes, pretty-printed for its schema file.
pub fn pretty_schema(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_string())
}

/// Avro allows a named type (record, enum, fixed) to be defined once; later
/// uses must refer to it by full name. Identical redefinitions become
/// references; different ones with a clashing name are renamed.
fn dedupe_named_types(
    v: &mut serde_json::Value,
    ns: &str,
    seen: &mut std::collections::HashMap<String, serde_json::Value>,
) {
    match v {
        serde_json::Value::Array(items) => {
            for x in items {
                dedupe_named_types(x, ns, seen);
            }
        }
        serde_json::Value::Object(m) => {
            let named = matches!(m.get("type").and_then(|t| t.as_str()), Some("record" | "enum" | "fixed"));
            let mut inner_ns = ns.to_string();
            if named {
                let name = m.get("name").and_then(|n| n.as_str()).unwrap_or("").to_string();
                let this_ns =
                    m.get("namespace").and_then(|n| n.as_str()).map(str::to_string).unwrap_or_else(|| ns.to_string());
                let full =
                    if name.contains('.') || this_ns.is_empty() { name.clone() } else { format!("{this_ns}.{name}") };
                inner_ns = full.rsplit_once('.').map(|(a, _)| a.to_string()).unwrap_or_default();
                match seen.get(&full) {
                    Some(prev) if prev == &serde_json::Value::Object(m.clone()) => {
                        *v = serde_json::Value::String(full);
                        return;
                    }
                    Some(_) => {
                        let mut k = 2;
                        while seen.contains_key(&format!("{full}_{k}")) {
                            k += 1;
                        }
                        let renamed = format!("{name}_{k}");
                        m.insert("name".into(), serde_json::Value::String(renamed));
                        let full = format!("{full}_{k}");
                        seen.insert(full, serde_json::Value::Object(m.clone()));
                    }
                    None => {
                        seen.insert(full, serde_json::Value::Object(m.clone()));
                    }
                }
            }
            for (k, x) in m.iter_mut() {
                if k == "fields" || k == "type" || k == "items" || k == "values" {
                    dedupe_named_types(x, &inner_ns, seen);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_named_types_become_references() {
        let mut v: serde_json::Value = serde_json::from_str(
            r#"{"type":"record","name":"alert","namespace":"ztf","fields":[
                {"name":"a","type":["null",{"type":"record","name":"cutout","fields":[{"name":"x","type":"int"}]}]},
                {"name":"b","type":["null",{"type":"record","name":"cutout","fields":[{"name":"x","type":"int"}]}]},
                {"name":"c","type":{"type":"record","name":"cutout","fields":[{"name":"y","type":"int"}]}}]}"#,
        )
        .unwrap();
        dedupe_named_types(&mut v, "", &mut Default::default());
        assert_eq!(v["fields"][1]["type"][1], "ztf.cutout");
        assert_eq!(v["fields"][2]["type"]["name"], "cutout_2");
        apache_avro::Schema::parse_str(&v.to_string()).expect("valid Avro schema");
    }
}
