//! Consumer groups as Fink's community consumers leave them: members, lag
//! per partition, and how long until the oldest unread alert ages out of
//! the topic (its timestamp against `retention.ms`). A consumer that falls
//! behind a 4-to-7-day retention loses alerts without warning; this says
//! when.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;

use super::{Admin, Connection};

#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub group: String,
    pub state: String,
    pub members: Vec<MemberView>,
    pub partitions: Vec<PartitionLag>,
    /// Sum of the partitions' lags.
    pub lag: i64,
    /// The soonest any unread alert ages out, in seconds (negative: some
    /// already did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ages_out_in_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub client_id: String,
    pub host: String,
    /// `topic-partition` it is assigned.
    pub assigned: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// `None`: nothing committed.
    pub committed: Option<i64>,
    pub end: i64,
    /// What is not read yet (from the log start when nothing is committed).
    pub lag: i64,
    /// Timestamp (ms) of the oldest unread record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_unread_ms: Option<i64>,
    /// The topic's retention.ms (`None`: unlimited).
    pub retention_ms: Option<i64>,
    /// When the oldest unread record ages out, in seconds from now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ages_out_in_secs: Option<i64>,
}

/// A member's assignment, decoded from the consumer protocol.
fn assignment(bytes: Option<&[u8]>) -> Vec<(String, i32)> {
    let Some(b) = bytes.filter(|b| b.len() >= 2) else { return Vec::new() };
    let mut buf = Bytes::copy_from_slice(b);
    let version = i16::from_be_bytes([b[0], b[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    match ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.to_string(), *p)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn consumer(conn: &Connection, group: &str) -> Result<BaseConsumer> {
    let mut c = conn.client_config();
    c.set("group.id", group).set("enable.auto.commit", "false").set("enable.partition.eof", "false");
    c.create().context("cannot create a consumer")
}

/// Every consumer group (or the one named), with lag and ageing.
pub fn describe(admin: &Admin, only: Option<&str>) -> Result<Vec<GroupView>> {
    let timeout = admin.timeout();
    let probe = consumer(&admin.conn, "fink-groups-probe")?;
    let list = probe.fetch_group_list(only, timeout).context("cannot list consumer groups")?;
    let (_, topics) = admin.topics()?;
    let mut retentions: Option<BTreeMap<String, Option<i64>>> = None;
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let mut out = Vec::new();
    for g in list.groups() {
        if g.protocol_type() != "consumer" && !g.protocol_type().is_empty() {
            continue;
        }
        let members: Vec<MemberView> = g
            .members()
            .iter()
            .map(|m| MemberView {
                client_id: m.client_id().to_string(),
                host: m.client_host().to_string(),
                assigned: assignment(m.assignment()).iter().map(|(t, p)| format!("{t}-{p}")).collect(),
            })
            .collect();
        // Committed offsets of every partition of every (non-internal) topic:
        // a group without members still has what it committed.
        let mut tpl = TopicPartitionList::new();
        for t in topics.values().filter(|t| !t.internal && !t.name.starts_with("__")) {
            for p in &t.partitions {
                tpl.add_partition(&t.name, p.id);
            }
        }
        let c = consumer(&admin.conn, g.name())?;
        let committed = c.committed_offsets(tpl, timeout).with_context(|| format!("group {:?}: offsets", g.name()))?;
        let mut partitions = Vec::new();
        for e in committed.elements() {
            let off = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            let assigned = members.iter().any(|m| m.assigned.contains(&format!("{}-{}", e.topic(), e.partition())));
            if off.is_none() && !assigned {
                continue;
            }
            let (low, high) = probe
                .fetch_watermarks(e.topic(), e.partition(), timeout)
                .with_context(|| format!("{}-{}: watermarks", e.topic(), e.partition()))?;
            let from = off.unwrap_or(low).max(low);
            partitions.push(PartitionLag {
                topic: e.topic().to_string(),
                partition: e.partition(),
                committed: off,
                end: high,
                lag: (high - from).max(0),
                oldest_unread_ms: None,
                retention_ms: None,
                ages_out_in_secs: None,
            });
        }
        oldest_unread(&admin.conn, &mut partitions, timeout)?;
        if retentions.is_none() && !partitions.is_empty() {
            let names: Vec<String> = topics.keys().filter(|n| !n.starts_with("__")).cloned().collect();
            retentions = Some(admin.retention_ms(&names)?);
        }
        let retention = |t: &str| retentions.as_ref().and_then(|r| r.get(t).copied().flatten());
        for p in &mut partitions {
            p.retention_ms = retention(&p.topic);
            if let (Some(ts), Some(r)) = (p.oldest_unread_ms, p.retention_ms) {
                p.ages_out_in_secs = Some((ts + r - now_ms) / 1000);
            }
        }
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out.push(GroupView {
            group: g.name().to_string(),
            state: g.state().to_string(),
            lag: partitions.iter().map(|p| p.lag).sum(),
            ages_out_in_secs: partitions.iter().filter_map(|p| p.ages_out_in_secs).min(),
            members,
            partitions,
        });
    }
    if let Some(name) = only {
        if out.is_empty() {
            return Err(anyhow!("no consumer group {name:?}"));
        }
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(out)
}

/// The timestamp of the first unread record of each lagging partition,
/// read by a consumer outside any group (nothing committed).
fn oldest_unread(conn: &Connection, parts: &mut [PartitionLag], timeout: Duration) -> Result<()> {
    let lagging: Vec<usize> = (0..parts.len()).filter(|i| parts[*i].lag > 0).collect();
    if lagging.is_empty() {
        return Ok(());
    }
    let c = consumer(conn, "fink-groups-reader")?;
    let mut tpl = TopicPartitionList::new();
    for i in &lagging {
        let p = &parts[*i];
        let at = p.committed.map(Offset::Offset).unwrap_or(Offset::Beginning);
        tpl.add_partition_offset(&p.topic, p.partition, at).map_err(|e| anyhow!("{e}"))?;
    }
    c.assign(&tpl).context("cannot read the oldest unread records")?;
    let mut left = lagging.len();
    let deadline = std::time::Instant::now() + timeout;
    while left > 0 && std::time::Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let Ok(m) = m else { continue };
        if let Some(p) = parts
            .iter_mut()
            .find(|p| p.topic == m.topic() && p.partition == m.partition() && p.oldest_unread_ms.is_none())
        {
            p.oldest_unread_ms = m.timestamp().to_millis();
            left -= 1;
            // One record per partition is all it takes.
            let _ = c.incremental_unassign(&{
                let mut t = TopicPartitionList::new();
                t.add_partition(m.topic(), m.partition());
                t
            });
        }
    }
    Ok(())
}
