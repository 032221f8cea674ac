//! The state topic: each exactly-once stream's progress, committed in the
//! same Kafka transaction as the alerts it covers.
//!
//! Records are keyed `GROUP/STREAM` (progress, see [`Progress`]) and
//! `GROUP/STREAM.claim` (which instance took the stream, and when). A
//! stream's records all go to one partition, [`partition_for`] its key, so
//! the consumer group over the state topic's partitions decides which
//! instance runs which stream.
//!
//! A starting stream first fences any older producer of its transactional
//! id (`init_transactions`), then commits a claim record, then reads its
//! partition (read_committed) up to that claim: everything committed for
//! the stream before it is then visible, so the last progress read is the
//! last committed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::checkpoint::Progress;
use crate::cluster::Connection;

/// The partition that holds a key's records: FNV-1a, stable across
/// versions and machines (never Rust's randomized hasher).
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.as_bytes() {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % partitions.max(1) as u32) as i32
}

pub fn claim_key(state_key: &str) -> String {
    format!("{state_key}.claim")
}

/// Which instance took a stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claim {
    pub instance: String,
    pub at_ms: u64,
}

/// One record as last seen for its key.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub value: Option<Vec<u8>>,
}

/// librdkafka's events, at debug level: a reader reaching a partition's
/// end, or a coordinator connection closed with its consumer, are normal.
pub struct Quiet;

impl rdkafka::ClientContext for Quiet {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::cluster::librdkafka_log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

impl rdkafka::producer::ProducerContext for Quiet {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// A consumer of the state topic: reads partitions from the start, and
/// describes the group. Never joins the group nor commits.
pub struct Reader {
    c: BaseConsumer<Quiet>,
    conn: Connection,
    group: String,
}

impl Reader {
    pub fn new(conn: &Connection, group: &str) -> Result<Reader, String> {
        let mut cfg = conn.client_config();
        // librdkafka assigns partitions through a group id, even by hand
        // (the producer-role ACLs grant it).
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            // Progress records are small: no 64 MB prefetch per reader.
            .set("queued.max.messages.kbytes", "1024")
            // A read ends at each partition's end: a fetch that finds
            // nothing new must not hold the start of a stream for the
            // default 500 ms.
            .set("fetch.wait.max.ms", "10");
        let c = cfg.create_with_context(Quiet).map_err(|e| format!("cannot create the state reader: {e}"))?;
        Ok(Reader { c, conn: conn.clone(), group: group.to_string() })
    }

    /// The partition count of the state topic, or why it cannot be used.
    pub fn partitions(&self, topic: &str) -> Result<i32, String> {
        let md = self
            .c
            .fetch_metadata(Some(topic), self.conn.timeout)
            .map_err(|e| format!("cannot read the metadata of state topic {topic:?}: {e}"))?;
        let t = md.topics().first().ok_or_else(|| format!("no metadata for state topic {topic:?}"))?;
        if let Some(e) = t.error() {
            let code: rdkafka::types::RDKafkaErrorCode = e.into();
            return Err(format!(
                "state topic {topic:?} is not usable as {:?} ({code}): run `fink apply` to create it and the ACLs \
                 exactly-once streams need",
                self.conn.who()
            ));
        }
        Ok(t.partitions().len() as i32)
    }

    /// Read `partitions` of the state topic from the start (committed
    /// records only) until each is at its end, or for `until` (partition,
    /// offset) until that offset was seen. The last record of each key.
    ///
    /// A transaction left open on a partition (an instance killed
    /// mid-commit) holds committed readers back until it is aborted: by
    /// its stream's next start, or by the broker after the transaction
    /// timeout.
    pub fn read(
        &self,
        topic: &str,
        partitions: &[i32],
        until: Option<(i32, i64)>,
        timeout: Duration,
    ) -> Result<BTreeMap<String, Record>, String> {
        self.read_from(topic, partitions, &BTreeMap::new(), until, timeout)
    }

    /// As [`Reader::read`], each partition from the offset `from` gives
    /// (its start if none): what a reader that read up to there needs.
    pub fn read_from(
        &self,
        topic: &str,
        partitions: &[i32],
        from: &BTreeMap<i32, i64>,
        until: Option<(i32, i64)>,
        timeout: Duration,
    ) -> Result<BTreeMap<String, Record>, String> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let at = from.get(p).map_or(Offset::Beginning, |o| Offset::Offset(*o));
            tpl.add_partition_offset(topic, *p, at).map_err(|e| e.to_string())?;
        }
        self.c.assign(&tpl).map_err(|e| format!("cannot read state topic {topic:?}: {e}"))?;
        let r = self.read_assigned(topic, partitions.len(), until, timeout);
        // Between reads nothing is fetched (with the short fetch wait an
        // idle assignment would ask the broker a hundred times a second).
        let _ = self.c.unassign();
        r
    }

    fn read_assigned(
        &self,
        topic: &str,
        partitions: usize,
        until: Option<(i32, i64)>,
        timeout: Duration,
    ) -> Result<BTreeMap<String, Record>, String> {
        let mut out = BTreeMap::new();
        let mut ended = std::collections::HashSet::new();
        let deadline = Instant::now() + timeout;
        loop {
            if until.is_none() && ended.len() >= partitions {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "reading state topic {topic:?} took longer than {} s (is the cluster reachable, and may {:?} read \
                     it? a transaction left open by a killed instance delays it until the broker aborts it)",
                    timeout.as_secs(),
                    self.conn.who()
                ));
            }
            match self.c.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    ended.insert(p);
                }
                // A broker away (transport failure, all brokers down for a
                // moment) is what the deadline is for: librdkafka reconnects.
                Some(Err(e)) if !refused(&e) => {
                    tracing::debug!("reading state topic {topic:?}: {e}; retrying");
                }
                Some(Err(e)) => return Err(format!("cannot read state topic {topic:?} as {:?}: {e}", self.conn.who())),
                Some(Ok(m)) => {
                    ended.remove(&m.partition());
                    let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
                    out.insert(
                        key.to_string(),
                        Record { partition: m.partition(), offset: m.offset(), value: m.payload().map(<[u8]>::to_vec) },
                    );
                    if let Some((p, o)) = until {
                        if m.partition() == p && m.offset() >= o {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }

    /// The live members of the group (the instances of `fink run` sharing
    /// its streams) and their state topic partitions.
    pub fn members(&self, topic: &str) -> Result<Vec<Member>, String> {
        let group = &self.group;
        let list = self
            .c
            .fetch_group_list(Some(group), self.conn.timeout)
            .map_err(|e| format!("cannot describe group {group:?} as {:?}: {e}", self.conn.who()))?;
        let mut out = Vec::new();
        for g in list.groups() {
            for m in g.members() {
                let partitions = m
                    .assignment()
                    .map(|a| parse_assignment(a).into_iter().filter(|(t, _)| t == topic).flat_map(|(_, p)| p).collect())
                    .unwrap_or_default();
                out.push(Member { instance: m.client_id().to_string(), host: m.client_host().to_string(), partitions });
            }
        }
        out.sort_by(|a, b| a.instance.cmp(&b.instance));
        Ok(out)
    }
}

/// A live instance of a group and the state topic partitions it owns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Member {
    /// `HOST:PID` (the instance's client id).
    pub instance: String,
    pub host: String,
    pub partitions: Vec<i32>,
}

/// Kafka's ConsumerProtocolAssignment: version, then (topic, partitions)*,
/// then user data. Malformed input gives what parsed before it.
pub fn parse_assignment(b: &[u8]) -> Vec<(String, Vec<i32>)> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Some(h)
    }
    let mut cur = b;
    let mut out = Vec::new();
    let mut go = || -> Option<()> {
        take(&mut cur, 2)?;
        let topics = i32::from_be_bytes(take(&mut cur, 4)?.try_into().ok()?);
        for _ in 0..topics.max(0) {
            let len = i16::from_be_bytes(take(&mut cur, 2)?.try_into().ok()?);
            let name = String::from_utf8_lossy(take(&mut cur, len.max(0) as usize)?).into_owned();
            let n = i32::from_be_bytes(take(&mut cur, 4)?.try_into().ok()?);
            let mut parts = Vec::new();
            for _ in 0..n.max(0) {
                parts.push(i32::from_be_bytes(take(&mut cur, 4)?.try_into().ok()?));
            }
            out.push((name, parts));
        }
        Some(())
    };
    let _ = go();
    out
}

/// Set a stream's committed progress, as its own transactional producer:
/// any older producer of the stream is fenced first, so a stray instance
/// cannot overwrite it afterwards.
pub fn write_progress(
    conn: &Connection,
    txn_id: &str,
    topic: &str,
    partitions: i32,
    key: &str,
    p: &Progress,
) -> Result<(), String> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let mut cfg = conn.client_config();
    cfg.set("transactional.id", txn_id);
    let producer: BaseProducer = cfg.create().map_err(|e| format!("cannot create the producer: {e}"))?;
    let t = conn.timeout;
    let err = |e: KafkaError| {
        format!("cannot write the progress of {key:?} as {:?} (transactional id {txn_id:?}): {e}", conn.who())
    };
    producer.init_transactions(t).map_err(err)?;
    producer.begin_transaction().map_err(err)?;
    let value = p.to_json();
    let rec = BaseRecord::<str, [u8]>::to(topic).partition(partition_for(key, partitions)).key(key).payload(&value);
    producer.send(rec).map_err(|(e, _)| err(e))?;
    producer.commit_transaction(t).map_err(err)?;
    Ok(())
}

/// What the state topic holds for a stream.
pub enum Found {
    /// Never committed (a first start, or a migration from a local file).
    Nothing,
    Progress(Box<Progress>),
    /// A record is there but cannot be read: never start over silently.
    Corrupt(String),
}

pub fn progress_of(records: &BTreeMap<String, Record>, key: &str) -> Found {
    match records.get(key).and_then(|r| r.value.as_ref()) {
        None => Found::Nothing,
        Some(v) => match Progress::parse(v) {
            Ok(p) => Found::Progress(Box::new(p)),
            Err(e) => Found::Corrupt(e),
        },
    }
}

/// A consumer error that asking again will not cure: no permission, no
/// such topic.
fn refused(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::Authentication
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_parse() {
        let mut b = vec![0, 1, 0, 0, 0, 1, 0, 2, b'_', b's', 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 7];
        b.extend([0, 0, 0, 0]);
        assert_eq!(parse_assignment(&b), vec![("_s".to_string(), vec![3, 7])]);
        assert_eq!(parse_assignment(&b[..9]), vec![]);
        assert_eq!(parse_assignment(&[]), vec![]);
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        // Fixed values: a change here would move every stream's state.
        // FNV-1a 32 of "fink/a" is 1928834975.
        assert_eq!(partition_for("fink/a", 12), 11);
        assert_eq!(partition_for("", 12), (0x811c_9dc5u32 % 12) as i32);
        let used: std::collections::BTreeSet<i32> = (0..48).map(|i| partition_for(&format!("fink/s{i}"), 12)).collect();
        assert!(used.len() >= 8, "{used:?}");
        assert_eq!(partition_for("x", 1), 0);
    }
}
