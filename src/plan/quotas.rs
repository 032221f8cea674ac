//! Client quotas: set, change and remove the values of one entity (a user,
//! a client id, both, or the defaults).

use super::reconcile::{Draft, Handler};
use super::{managed, Action, Change, Field, Kind, Op};
use crate::cluster::quotas::Entity;
use crate::cluster::LiveQuota;
use crate::config::{Config, QuotaConfig};

pub struct Quotas<'a> {
    pub cfg: &'a Config,
}

pub fn entity(q: &QuotaConfig) -> Entity {
    Entity { user: q.user.clone(), client_id: q.client_id.clone() }
}

/// A rate as Kafka shows it: `1048576`, `12.5`.
fn show(v: f64) -> String {
    format!("{v}")
}

fn alter(entity: Entity, set: Vec<(String, f64)>, remove: Vec<String>) -> Op {
    Op::AlterQuota { entity, set: set.into_iter().map(|(k, v)| (k, show(v))).collect(), remove }
}

impl Handler for Quotas<'_> {
    type Desired = QuotaConfig;
    type Live = LiveQuota;
    const KIND: Kind = Kind::Quota;

    fn create(&self, key: &str, q: &QuotaConfig, _: &mut Draft) -> Option<Change> {
        let values = q.values();
        Some(Change {
            action: Action::Create,
            kind: Kind::Quota,
            name: key.to_string(),
            fields: values.iter().map(|(k, v)| Field::new(k, None, Some(show(*v)))).collect(),
            ops: vec![alter(entity(q), values.into_iter().collect(), vec![])],
        })
    }

    fn update(&self, key: &str, q: &QuotaConfig, l: &LiveQuota, _: &mut Draft) -> Option<Change> {
        let want = q.values();
        let mut fields = Vec::new();
        let mut set = Vec::new();
        let mut remove = Vec::new();
        for (k, v) in &want {
            match l.values.get(k) {
                Some(live) if live == v => {}
                before => {
                    fields.push(Field::new(k, before.map(|b| show(*b)), Some(show(*v))));
                    set.push((k.clone(), *v));
                }
            }
        }
        for (k, v) in &l.values {
            if !want.contains_key(k) {
                fields.push(Field::new(k, Some(show(*v)), None));
                remove.push(k.clone());
            }
        }
        if fields.is_empty() {
            return None;
        }
        Some(Change {
            action: Action::Update,
            kind: Kind::Quota,
            name: key.to_string(),
            fields,
            ops: vec![alter(entity(q), set, remove)],
        })
    }

    fn delete(&self, key: &str, l: &LiveQuota) -> Change {
        Change {
            action: Action::Delete,
            kind: Kind::Quota,
            name: key.to_string(),
            fields: l.values.iter().map(|(k, v)| Field::new(k, Some(show(*v)), None)).collect(),
            ops: vec![alter(l.entity.clone(), vec![], l.values.keys().cloned().collect())],
        }
    }

    /// A quota is fink's when its user and client id are in scope and not
    /// ignored (`"<default>"` is a name like the others: with a `scope`,
    /// only a pattern that matches it manages the defaults).
    fn managed(&self, _: &str, l: &LiveQuota) -> bool {
        [&l.entity.user, &l.entity.client_id].into_iter().flatten().all(|n| managed(self.cfg, n))
    }
}
