//! `fink consume TOPIC`: read what a stream published and decode it the
//! way fink-client does (schema from the key, value a schemaless Avro
//! datum). Showing it is `cli::consume`'s job.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use apache_avro::types::Value as Avro;
use base64::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::cluster::Connection;

pub struct ConsumeOptions {
    pub topic: String,
    pub max: Option<usize>,
    pub from_beginning: bool,
    pub group: Option<String>,
    pub schema: Option<std::path::PathBuf>,
    pub follow: bool,
}

/// Avro value -> JSON (unions unwrapped, bytes as base64).
pub fn to_json(v: &Avro) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Avro::Null => J::Null,
        Avro::Boolean(b) => J::Bool(*b),
        Avro::Int(i) | Avro::Date(i) | Avro::TimeMillis(i) => J::from(*i),
        Avro::Long(i)
        | Avro::TimeMicros(i)
        | Avro::TimestampMillis(i)
        | Avro::TimestampMicros(i)
        | Avro::TimestampNanos(i)
        | Avro::LocalTimestampMillis(i)
        | Avro::LocalTimestampMicros(i)
        | Avro::LocalTimestampNanos(i) => J::from(*i),
        Avro::Float(f) => serde_json::Number::from_f64(*f as f64).map(J::Number).unwrap_or(J::Null),
        Avro::Double(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
        Avro::String(s) | Avro::Enum(_, s) => J::String(s.clone()),
        Avro::Uuid(u) => J::String(u.to_string()),
        Avro::Bytes(b) | Avro::Fixed(_, b) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Avro::Union(_, inner) => to_json(inner),
        Avro::Array(items) => J::Array(items.iter().map(to_json).collect()),
        Avro::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        Avro::Record(fields) => J::Object(fields.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        other => J::String(format!("{other:?}")),
    }
}

/// `a.b.c` inside a JSON object.
pub fn path<'a>(v: &'a serde_json::Value, p: &str) -> Option<&'a serde_json::Value> {
    p.split('.').try_fold(v, |cur, k| cur.get(k))
}

/// Decode one message's value with the schema in its key (or a fixed one).
pub struct Decoder {
    fixed: Option<apache_avro::Schema>,
    cache: HashMap<Vec<u8>, apache_avro::Schema>,
}

impl Decoder {
    pub fn new(schema_file: Option<&std::path::Path>) -> Result<Decoder> {
        let fixed = match schema_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("cannot read schema {}", p.display()))?;
                Some(
                    apache_avro::Schema::parse_str(&text)
                        .map_err(|e| anyhow!("{}: not an Avro schema: {e}", p.display()))?,
                )
            }
            None => None,
        };
        Ok(Decoder { fixed, cache: HashMap::new() })
    }

    pub fn decode(&mut self, key: Option<&[u8]>, value: &[u8]) -> Result<Avro> {
        let schema = match &self.fixed {
            Some(s) => s,
            None => {
                let key = key.ok_or_else(|| anyhow!("message has no key (no schema): pass --schema FILE"))?;
                if !self.cache.contains_key(key) {
                    let text = std::str::from_utf8(key)
                        .map_err(|_| anyhow!("message key is not schema JSON: pass --schema FILE"))?;
                    let s = apache_avro::Schema::parse_str(text)
                        .map_err(|e| anyhow!("message key is not an Avro schema: {e}"))?;
                    self.cache.insert(key.to_vec(), s);
                }
                &self.cache[key]
            }
        };
        let mut r = value;
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema)
            .build()
            .map_err(|e| anyhow!("bad schema: {e}"))?;
        let v = reader.read_value(&mut r).map_err(|e| anyhow!("cannot decode the value: {e}"))?;
        if !r.is_empty() {
            return Err(anyhow!("{} bytes left after the datum: the value does not match the schema", r.len()));
        }
        Ok(v)
    }
}

/// The consumer's client context: the end of a partition is how a read
/// ends, never an error to log; other client errors are warnings (those
/// that stop the read come back from `poll` too).
struct Reading;

impl rdkafka::ClientContext for Reading {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::cluster::librdkafka_log(level, fac, log_message);
    }
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        match error {
            rdkafka::error::KafkaError::PartitionEOF(_) => tracing::debug!(target: "librdkafka", "{reason}"),
            e if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) => {
                tracing::debug!(target: "librdkafka", "{reason}")
            }
            e => tracing::warn!(target: "librdkafka", error = %e, "{reason}"),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Reading {}

/// Read the topic and hand each decoded alert to `on_alert` as it comes;
/// returns how many were read.
pub fn consume(
    conn: &Connection,
    opts: &ConsumeOptions,
    on_alert: &mut dyn FnMut(serde_json::Value) -> Result<()>,
) -> Result<usize> {
    let mut cfg = conn.client_config();
    let group = opts.group.clone().unwrap_or_else(|| format!("fink-consume-{}", std::process::id()));
    // read_committed (librdkafka's default, so fink-client's too): alerts of
    // an exactly-once stream show once their transaction commits.
    cfg.set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer<Reading> = cfg.create_with_context(Reading).context("cannot create consumer")?;
    let md = consumer.fetch_metadata(Some(&opts.topic), conn.timeout).context("cannot read topic metadata")?;
    let t = md.topics().first().ok_or_else(|| anyhow!("no metadata for topic {:?}", opts.topic))?;
    if let Some(e) = t.error() {
        let code: rdkafka::types::RDKafkaErrorCode = e.into();
        return Err(anyhow!("topic {:?}: {code} (does it exist, and may {:?} read it?)", opts.topic, conn.who()));
    }
    let parts: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        let start = if opts.from_beginning || opts.group.is_none() { Offset::Beginning } else { Offset::Stored };
        tpl.add_partition_offset(&opts.topic, *p, start)?;
    }
    consumer.assign(&tpl)?;
    let mut decoder = Decoder::new(opts.schema.as_deref())?;
    // Without --follow, stop once every partition reached its end (for
    // read_committed: its last committed alert).
    let mut at_end: std::collections::HashSet<i32> = Default::default();
    let mut count = 0usize;
    loop {
        if opts.max.is_some_and(|m| count >= m) {
            break;
        }
        if !opts.follow && at_end.len() >= parts.len() {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => return Err(anyhow!("consume failed: {e}")),
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                let value = decoder.decode(m.key(), m.payload().unwrap_or_default())?;
                count += 1;
                on_alert(to_json(&value))?;
            }
        }
    }
    if opts.group.is_some() && count > 0 {
        let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
    }
    Ok(count)
}
