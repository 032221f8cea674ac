//! Several instances: which streams this one runs.
//!
//! Every `fink run` of a group joins the Kafka consumer group `[run] group`
//! over the state topic's partitions, with cooperative-sticky assignment.
//! A stream belongs to the instance assigned the partition its state key
//! hashes to ([`state::partition_for`]). Kafka's group protocol does the
//! rest: a joining instance takes a share, a vanished one (no heartbeat for
//! `session_timeout_ms`) has its partitions moved to the others, which
//! resume its streams from their committed progress. A stream's
//! transactional id fences whoever ran it before, so two instances never
//! both publish it, even while a rebalance is under way.
//!
//! The consumer reads nothing: its partitions are paused. Each instance
//! also writes a heartbeat record (its config hash and streams) to the
//! state topic, so `fink status` on any instance shows every instance and
//! warns when their configs differ.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::{Deserialize, Serialize};

use crate::cluster::Connection;
use crate::stream::{self, state};

pub struct Membership {
    consumer: BaseConsumer<state::Quiet>,
    topic: String,
    /// State topic partitions owned now.
    owned: BTreeSet<i32>,
    /// The group gave this instance partitions at least once.
    pub joined: bool,
}

impl Membership {
    pub fn join(conn: &Connection, group: &str, topic: &str, session_timeout_ms: u64) -> Result<Membership> {
        let mut cfg = conn.client_config();
        cfg.set("group.id", group)
            .set("client.id", stream::instance_id())
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (session_timeout_ms / 5).max(500).to_string())
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            // It reads nothing (its partitions are paused): no prefetch.
            .set("queued.max.messages.kbytes", "64");
        // Its client errors (a broker away) are debug lines: what they mean
        // for the streams is reported by the streams (stalled) and by `poll`.
        let consumer: BaseConsumer<state::Quiet> =
            cfg.create_with_context(state::Quiet).map_err(|e| anyhow!("cannot create the group member: {e}"))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| anyhow!("cannot join group {group:?} over {topic:?} as {:?}: {e}", conn.who()))?;
        Ok(Membership { consumer, topic: topic.to_string(), owned: BTreeSet::new(), joined: false })
    }

    /// Serve the group protocol (heartbeats, rebalances); the partitions
    /// owned now.
    pub fn poll(&mut self) -> Result<&BTreeSet<i32>> {
        // Rebalance callbacks run inside poll; records are not wanted.
        for _ in 0..100 {
            match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::debug!("group member: {e}"),
            }
        }
        let assignment = self.consumer.assignment().map_err(|e| anyhow!("group assignment: {e}"))?;
        let now: BTreeSet<i32> =
            assignment.elements().iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect();
        if now != self.owned || (!self.joined && !now.is_empty()) {
            if !now.is_empty() {
                self.joined = true;
            }
            let _ = self.consumer.pause(&assignment);
            self.owned = now;
        }
        Ok(&self.owned)
    }

    /// Leave the group now (the others take over at once, not after the
    /// session timeout), waiting at most `within`: a frozen broker must
    /// not hold up the exit.
    pub fn leave(self, within: Duration) {
        let (tx, rx) = std::sync::mpsc::channel();
        let consumer = self.consumer;
        let _ = std::thread::Builder::new().name("group-leave".into()).spawn(move || {
            drop(consumer);
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(within);
    }
}

/// An instance as the others see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    pub instance: String,
    pub config_hash: String,
    pub streams: Vec<String>,
    pub at_ms: u64,
}

/// The group as one instance sees it, for /status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GroupView {
    pub group: String,
    /// This instance.
    pub instance: String,
    pub instances: Vec<InstanceView>,
    /// Instances whose config differs from this one's.
    pub config_mismatch: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InstanceView {
    pub instance: String,
    pub host: String,
    pub streams: Vec<String>,
    pub config_hash: Option<String>,
}

/// How often heartbeats are written and the group view is refreshed.
pub const VIEW_EVERY: Duration = Duration::from_secs(5);

/// Refresh the group view and write this instance's heartbeat, on a thread
/// of its own (never blocking the supervisor on a slow cluster).
pub struct Viewer {
    pub view: Arc<Mutex<Option<GroupView>>>,
    /// (config hash, streams run here), updated by the supervisor.
    pub mine: Arc<Mutex<(String, Vec<String>)>>,
}

impl Viewer {
    /// `streams_of`: the config's streams by state partition.
    pub fn start(
        conn: Connection,
        group: String,
        topic: String,
        stream_keys: Arc<Mutex<BTreeMap<String, String>>>,
    ) -> Viewer {
        let view = Arc::new(Mutex::new(None));
        let mine = Arc::new(Mutex::new((String::new(), Vec::new())));
        let (v2, m2) = (view.clone(), mine.clone());
        std::thread::Builder::new()
            .name("group-view".into())
            .spawn(move || {
                let producer: Option<BaseProducer<state::Quiet>> =
                    conn.client_config().set("enable.idempotence", "true").create_with_context(state::Quiet).ok();
                let mut reader = None;
                // What was read so far: each refresh reads only what is new.
                let mut seen = Seen::default();
                loop {
                    let started = Instant::now();
                    if reader.is_none() {
                        reader = state::Reader::new(&conn, &group).map_err(|e| tracing::debug!("{e}")).ok();
                    }
                    let Some(r) = &reader else {
                        std::thread::sleep(VIEW_EVERY);
                        continue;
                    };
                    match refresh(r, producer.as_ref(), &group, &topic, &m2, &stream_keys, &mut seen) {
                        Ok(v) => *v2.lock().unwrap() = Some(v),
                        Err(e) => tracing::debug!("group view: {e}"),
                    }
                    std::thread::sleep(VIEW_EVERY.saturating_sub(started.elapsed()));
                }
            })
            .expect("spawn group view thread");
        Viewer { view, mine }
    }
}

/// The state topic as read so far: the last record of each key, and where
/// each partition's reading goes on.
#[derive(Default)]
struct Seen {
    records: BTreeMap<String, state::Record>,
    next: BTreeMap<i32, i64>,
}

impl Seen {
    fn merge(&mut self, new: BTreeMap<String, state::Record>) {
        for (k, r) in new {
            let next = self.next.entry(r.partition).or_insert(0);
            *next = (*next).max(r.offset + 1);
            self.records.insert(k, r);
        }
    }
}

fn heartbeat_key(group: &str, instance: &str) -> String {
    format!("{group}/instances/{instance}")
}

fn refresh(
    reader: &state::Reader,
    producer: Option<&BaseProducer<state::Quiet>>,
    group: &str,
    topic: &str,
    mine: &Mutex<(String, Vec<String>)>,
    stream_keys: &Mutex<BTreeMap<String, String>>,
    seen: &mut Seen,
) -> Result<GroupView, String> {
    let me = stream::instance_id().to_string();
    let partitions = reader.partitions(topic)?;
    let (hash, streams) = mine.lock().unwrap().clone();
    if let Some(p) = producer {
        let key = heartbeat_key(group, &me);
        let hb = Heartbeat { instance: me.clone(), config_hash: hash.clone(), streams, at_ms: stream::now_ms() };
        let value = serde_json::to_vec(&hb).unwrap_or_default();
        let rec = BaseRecord::<str, [u8]>::to(topic)
            .partition(state::partition_for(&key, partitions))
            .key(&key)
            .payload(&value);
        if p.send(rec).is_ok() {
            let _ = p.flush(Duration::from_secs(5));
        }
    }
    let members = reader.members(topic)?;
    let all: Vec<i32> = (0..partitions).collect();
    seen.merge(reader.read_from(topic, &all, &seen.next, None, Duration::from_secs(10))?);
    let records = &seen.records;
    let keys = stream_keys.lock().unwrap().clone();
    let mut instances = Vec::new();
    let mut mismatch = Vec::new();
    for m in members {
        let streams: Vec<String> = keys
            .iter()
            .filter(|(_, key)| m.partitions.contains(&state::partition_for(key, partitions)))
            .map(|(name, _)| name.clone())
            .collect();
        let hb = records
            .get(&heartbeat_key(group, &m.instance))
            .and_then(|r| r.value.as_ref())
            .and_then(|v| serde_json::from_slice::<Heartbeat>(v).ok());
        let config_hash = hb.map(|h| h.config_hash);
        if config_hash.as_ref().is_some_and(|h| !h.is_empty() && !hash.is_empty() && *h != hash) {
            mismatch.push(m.instance.clone());
        }
        instances.push(InstanceView { instance: m.instance, host: m.host, streams, config_hash });
    }
    Ok(GroupView { group: group.to_string(), instance: me, instances, config_mismatch: mismatch })
}
