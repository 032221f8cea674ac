//! Partition reassignment (KIP-455: AlterPartitionReassignments,
//! ListPartitionReassignments) over fink's protocol client: librdkafka has
//! no API for it. A replication-factor change or an explicit placement is
//! a move of replicas, throttled while the new ones catch up.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, Result};
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::protocol::Client;

/// The dynamic configs a throttled move sets: on every broker (bytes/s)
/// and on the moving topics (which replicas).
pub const BROKER_THROTTLES: [&str; 2] = ["leader.replication.throttled.rate", "follower.replication.throttled.rate"];
pub const TOPIC_THROTTLES: [&str; 2] =
    ["leader.replication.throttled.replicas", "follower.replication.throttled.replicas"];

/// Partitions being moved, by topic.
pub fn in_progress(c: &mut Client) -> Result<BTreeMap<String, BTreeSet<i32>>> {
    let req = ListPartitionReassignmentsRequest::default().with_timeout_ms(30_000).with_topics(None);
    let resp = c.send(&req).map_err(|e| anyhow!("{e}"))?;
    if resp.error_code != 0 {
        return Err(anyhow!(
            "ListPartitionReassignments: {} (Kafka error code {})",
            resp.error_message.map(|m| m.to_string()).unwrap_or_default(),
            resp.error_code
        ));
    }
    Ok(resp
        .topics
        .into_iter()
        .map(|t| (t.name.to_string(), t.partitions.iter().map(|p| p.partition_index).collect()))
        .collect())
}

/// Start moving `topic`'s partitions to the given replicas.
pub fn start(c: &mut Client, topic: &str, target: &BTreeMap<i32, Vec<i32>>) -> Result<()> {
    let version = c.version::<AlterPartitionReassignmentsRequest>().map_err(|e| anyhow!("{e}"))?;
    let mut req = AlterPartitionReassignmentsRequest::default().with_timeout_ms(30_000).with_topics(vec![
        ReassignableTopic::default().with_name(TopicName(StrBytes::from_string(topic.to_string()))).with_partitions(
            target
                .iter()
                .map(|(p, r)| {
                    ReassignablePartition::default()
                        .with_partition_index(*p)
                        .with_replicas(Some(r.iter().map(|b| BrokerId(*b)).collect()))
                })
                .collect(),
        ),
    ]);
    if version >= 1 {
        // A move that changes the replication factor is what fink asks for.
        req = req.with_allow_replication_factor_change(true);
    }
    let resp = c.send(&req).map_err(|e| anyhow!("{e}"))?;
    if resp.error_code != 0 {
        return Err(anyhow!(
            "topic {topic}: AlterPartitionReassignments: {} (Kafka error code {})",
            resp.error_message.map(|m| m.to_string()).unwrap_or_default(),
            resp.error_code
        ));
    }
    let errors: Vec<String> = resp
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.error_code != 0)
        .map(|p| {
            format!(
                "partition {}: {} (Kafka error code {})",
                p.partition_index,
                p.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                p.error_code
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("topic {topic}: {}", errors.join("; ")))
    }
}

/// Replicas for a new replication factor: the live ones first (the leader
/// stays), then brokers taken round-robin from the partition's position,
/// so the new replicas spread over the brokers; a decrease drops the last.
pub fn spread(live: &BTreeMap<i32, Vec<i32>>, rf: usize, brokers: &[i32]) -> BTreeMap<i32, Vec<i32>> {
    let mut ids: Vec<i32> = brokers.to_vec();
    ids.sort();
    live.iter()
        .map(|(p, replicas)| {
            let mut r: Vec<i32> = replicas.iter().copied().take(rf).collect();
            let mut k = *p as usize;
            while r.len() < rf && r.len() < ids.len() {
                let b = ids[k % ids.len()];
                if !r.contains(&b) {
                    r.push(b);
                }
                k += 1;
            }
            (*p, r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_replicas_keep_the_leader_and_spread_over_the_brokers() {
        let live = [(0, vec![2]), (1, vec![3]), (2, vec![1])].into_iter().collect();
        let t = super::spread(&live, 3, &[3, 1, 2]);
        assert_eq!(t[&0], vec![2, 1, 3]);
        assert_eq!(t[&1], vec![3, 2, 1]);
        assert_eq!(t[&2], vec![1, 3, 2]);
        let down = super::spread(&t, 1, &[1, 2, 3]);
        assert_eq!(down[&1], vec![3]);
    }
}
