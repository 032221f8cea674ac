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
        let encoder = WriterBuilder::new(schema.clone())
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
