//! Topics: create, grow, change configs (and reset them to the broker's
//! default), delete. A decrease is a blocker; a replication change a note.

use std::collections::BTreeMap;

use super::reconcile::{Draft, Handler};
use super::{managed, Action, Change, Field, Kind, Op, Value};
use crate::cluster::LiveTopic;
use crate::config::span::{KeyPath, Seg};
use crate::config::{Config, TopicConfig};

pub struct Topics<'a> {
    pub cfg: &'a Config,
    /// Live broker ids.
    pub brokers: &'a [i32],
    /// Partitions being moved, by topic.
    pub moving: &'a BTreeMap<String, std::collections::BTreeSet<i32>>,
}

impl Topics<'_> {
    fn partitions(&self, t: &TopicConfig) -> i32 {
        t.partitions.or(self.cfg.defaults.partitions).unwrap_or(1)
    }
    fn replication(&self, t: &TopicConfig) -> Option<i32> {
        t.replication_factor.or(self.cfg.defaults.replication_factor)
    }
    /// Where `field` of topic `key` is set in fink.toml: the topic's own
    /// key, else `[defaults]`, else the topic's table.
    fn at(&self, key: &str, field: &str) -> Option<KeyPath> {
        let i = self.cfg.topics.iter().position(|t| t.name == key)?;
        let t = &self.cfg.topics[i];
        let own = match field {
            "replicas" => t.replicas.is_some(),
            "replication_factor" => t.replication_factor.is_some(),
            _ => t.partitions.is_some(),
        };
        let from_defaults = match field {
            "replication_factor" => self.cfg.defaults.replication_factor.is_some(),
            "partitions" => self.cfg.defaults.partitions.is_some(),
            _ => false,
        };
        let k = |s: &str| Seg::Key(s.to_string());
        Some(if own {
            vec![k("topic"), Seg::Index(i), k(field)]
        } else if from_defaults {
            vec![k("defaults"), k(field)]
        } else {
            vec![k("topic"), Seg::Index(i)]
        })
    }
    /// What cannot be placed on the live brokers: an unknown broker id in
    /// `replicas`, a partition's replicas not distinct, or more replicas
    /// than brokers.
    fn placement_blocker(&self, key: &str, t: &TopicConfig) -> Option<(&'static str, String)> {
        if let Some(placement) = &t.replicas {
            if let Some(bad) = placement.iter().flatten().find(|b| !self.brokers.contains(b)) {
                let msg = format!(
                    "topic {key}: replicas name broker {bad}, which is not in the cluster (brokers {:?})",
                    self.brokers
                );
                return Some(("replicas", msg));
            }
            if placement
                .iter()
                .any(|r| r.is_empty() || r.iter().collect::<std::collections::BTreeSet<_>>().len() != r.len())
            {
                return Some((
                    "replicas",
                    format!("topic {key}: each partition's replicas must be distinct brokers, at least one"),
                ));
            }
            return None;
        }
        match self.replication(t) {
            Some(rf) if rf as usize > self.brokers.len() => Some((
                "replication_factor",
                format!(
                    "topic {key}: replication_factor {rf} is more than the {} broker(s) of the cluster",
                    self.brokers.len()
                ),
            )),
            _ => None,
        }
    }
}

fn configs(t: &TopicConfig) -> BTreeMap<String, String> {
    t.config.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

/// `[[1, 2], [2, 3]]`.
fn show_replicas(r: &BTreeMap<i32, Vec<i32>>) -> String {
    let parts: Vec<String> = r.values().map(|v| format!("{v:?}").replace(' ', "")).collect();
    format!("[{}]", parts.join(", "))
}

impl Topics<'_> {
    /// A replication factor or placement that differs from the live one:
    /// a throttled move, unless one is under way or cannot be made.
    fn moves(
        &self,
        key: &str,
        t: &TopicConfig,
        lt: &LiveTopic,
        draft: &mut Draft,
        fields: &mut Vec<Field>,
        ops: &mut Vec<Op>,
    ) {
        let live: BTreeMap<i32, Vec<i32>> = lt.partitions.iter().map(|p| (p.id, p.replicas.clone())).collect();
        let differs_rf = self.replication(t).is_some_and(|rf| rf != lt.replication_factor);
        if t.replicas.is_some() || differs_rf {
            if let Some((field, msg)) = self.placement_blocker(key, t) {
                draft.block_at(self.at(key, field), msg);
                return;
            }
        }
        let target = match (&t.replicas, self.replication(t)) {
            (Some(placement), _) => placement
                .iter()
                .enumerate()
                .filter(|(p, _)| live.contains_key(&(*p as i32)))
                .map(|(p, r)| (p as i32, r.clone()))
                .collect(),
            (None, Some(rf)) if rf != lt.replication_factor => {
                crate::cluster::reassign::spread(&live, rf.max(1) as usize, self.brokers)
            }
            _ => return,
        };
        let differ: BTreeMap<i32, Vec<i32>> = target.into_iter().filter(|(p, r)| live.get(p) != Some(r)).collect();
        if differ.is_empty() {
            return;
        }
        if self.moving.contains_key(key) {
            // The note about the move in progress says why nothing starts.
            return;
        }
        let before: BTreeMap<i32, Vec<i32>> = differ.keys().map(|p| (*p, live[p].clone())).collect();
        let new_rf = differ.values().next().map(|r| r.len() as i32).unwrap_or(lt.replication_factor);
        if new_rf != lt.replication_factor {
            fields.push(Field::new(
                "replication_factor",
                Some(lt.replication_factor.to_string()),
                Some(new_rf.to_string()),
            ));
        }
        fields.push(Field::new("replicas", Some(show_replicas(&before)), Some(show_replicas(&differ))));
        let throttle_bytes = (self.cfg.cluster.reassignment_throttle_mb_s.max(0.0) * 1_000_000.0) as i64;
        ops.push(Op::Reassign { topic: key.to_string(), target: differ, throttle_bytes });
    }
}

impl Handler for Topics<'_> {
    type Desired = TopicConfig;
    type Live = LiveTopic;
    const KIND: Kind = Kind::Topic;

    fn create(&self, key: &str, t: &TopicConfig, draft: &mut Draft) -> Option<Change> {
        if let Some((field, msg)) = self.placement_blocker(key, t) {
            draft.block_at(self.at(key, field), msg);
            return None;
        }
        let (partitions, rf, configs) = (self.partitions(t), self.replication(t), configs(t));
        let mut fields = vec![Field::new("partitions", None, Some(partitions.to_string()))];
        fields.push(Field::value(
            "replication_factor",
            None,
            Some(rf.map(|r| Value::Text(r.to_string())).unwrap_or(Value::BrokerDefault)),
        ));
        for (k, v) in &configs {
            fields.push(Field::new(&format!("config {k}"), None, Some(v.clone())));
        }
        Some(Change {
            action: Action::Create,
            kind: Kind::Topic,
            name: key.to_string(),
            fields,
            ops: vec![Op::CreateTopic { topic: key.to_string(), partitions, replication_factor: rf, configs }],
        })
    }

    fn update(&self, key: &str, t: &TopicConfig, lt: &LiveTopic, draft: &mut Draft) -> Option<Change> {
        let (partitions, configs) = (self.partitions(t), configs(t));
        let mut fields = Vec::new();
        let mut ops = Vec::new();
        let live_parts = lt.partitions.len() as i32;
        let state_topic = self.cfg.run.exactly_once() && key == self.cfg.run.state_topic;
        if state_topic && partitions != live_parts {
            draft.blockers.push(format!(
                "state topic {key}: partitions {live_parts} -> {partitions} would move every stream's progress to another \
                 partition (a stream's state lives on the partition its name hashes to); keep [run] state_partitions = \
                 {live_parts}"
            ));
        } else if partitions > live_parts {
            fields.push(Field::new("partitions", Some(live_parts.to_string()), Some(partitions.to_string())));
            ops.push(Op::CreatePartitions { topic: key.to_string(), from: live_parts, to: partitions });
        } else if partitions < live_parts {
            draft.blockers.push(format!(
                "topic {key}: partitions {live_parts} -> {partitions} is a decrease, which Kafka cannot do (it would reorder keys and lose data); keep {live_parts} in fink.toml, or delete and recreate the topic"
            ));
        }
        self.moves(key, t, lt, draft, &mut fields, &mut ops);
        let mut set = BTreeMap::new();
        let mut delete = Vec::new();
        for (k, v) in &configs {
            if lt.configs.get(k) != Some(v) {
                fields.push(Field::new(&format!("config {k}"), lt.configs.get(k).cloned(), Some(v.clone())));
                set.insert(k.clone(), v.clone());
            }
        }
        // A move's throttle stays until the move is done.
        let moving = self.moving.contains_key(key);
        for (k, v) in lt.configs.iter().filter(|(k, _)| !configs.contains_key(*k)) {
            if moving && crate::cluster::reassign::TOPIC_THROTTLES.contains(&k.as_str()) {
                continue;
            }
            fields.push(Field::value(&format!("config {k}"), Some(Value::Text(v.clone())), Some(Value::Default)));
            delete.push(k.clone());
        }
        if !set.is_empty() || !delete.is_empty() {
            ops.push(Op::AlterTopicConfigs { topic: key.to_string(), set, delete });
        }
        (!ops.is_empty()).then(|| Change {
            action: Action::Update,
            kind: Kind::Topic,
            name: key.to_string(),
            fields,
            ops,
        })
    }

    fn delete(&self, key: &str, lt: &LiveTopic) -> Change {
        Change {
            action: Action::Delete,
            kind: Kind::Topic,
            name: key.to_string(),
            fields: vec![Field::new("partitions", Some(lt.partitions.len().to_string()), None)],
            ops: vec![Op::DeleteTopic { topic: key.to_string() }],
        }
    }

    fn managed(&self, key: &str, lt: &LiveTopic) -> bool {
        !lt.internal && !key.starts_with("__") && managed(self.cfg, key)
    }
}
