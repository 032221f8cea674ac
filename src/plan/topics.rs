//! Topics: create, grow, change configs (and reset them to the broker's
//! default), delete. A decrease is a blocker; a replication change a note.

use std::collections::BTreeMap;

use super::reconcile::{Draft, Handler};
use super::{managed, Action, Change, Field, Kind, Op, Value};
use crate::cluster::LiveTopic;
use crate::config::{Config, TopicConfig};

pub struct Topics<'a> {
    pub cfg: &'a Config,
}

impl Topics<'_> {
    fn partitions(&self, t: &TopicConfig) -> i32 {
        t.partitions.or(self.cfg.defaults.partitions).unwrap_or(1)
    }
    fn replication(&self, t: &TopicConfig) -> Option<i32> {
        t.replication_factor.or(self.cfg.defaults.replication_factor)
    }
}

fn configs(t: &TopicConfig) -> BTreeMap<String, String> {
    t.config.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

impl Handler for Topics<'_> {
    type Desired = TopicConfig;
    type Live = LiveTopic;
    const KIND: Kind = Kind::Topic;

    fn create(&self, key: &str, t: &TopicConfig, _: &mut Draft) -> Option<Change> {
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
        if let Some(rf) = self.replication(t).filter(|rf| *rf != lt.replication_factor) {
            draft.notes.push(format!(
                "topic {key}: replication_factor {} -> {rf} is not applied: changing it needs a partition reassignment (kafka-reassign-partitions), which fink does not do",
                lt.replication_factor
            ));
        }
        let mut set = BTreeMap::new();
        let mut delete = Vec::new();
        for (k, v) in &configs {
            if lt.configs.get(k) != Some(v) {
                fields.push(Field::new(&format!("config {k}"), lt.configs.get(k).cloned(), Some(v.clone())));
                set.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in lt.configs.iter().filter(|(k, _)| !configs.contains_key(*k)) {
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
