//! SCRAM users: create, re-hash (iterations, mechanism, a password that no
//! longer logs in), delete.

use super::reconcile::{Draft, Handler};
use super::{managed, Action, Change, Field, Kind, Op, PasswordChecks, Value};
use crate::cluster::LiveUser;
use crate::config::{Config, UserConfig};

pub struct Users<'a> {
    pub cfg: &'a Config,
    pub passwords: &'a PasswordChecks,
    pub admin_user: Option<&'a str>,
}

fn upsert(u: &UserConfig) -> Op {
    Op::UpsertUser { user: u.name.clone(), mechanism: u.mechanism, iterations: u.iterations }
}

impl Handler for Users<'_> {
    type Desired = UserConfig;
    type Live = LiveUser;
    const KIND: Kind = Kind::User;

    fn create(&self, key: &str, u: &UserConfig, _: &mut Draft) -> Option<Change> {
        Some(Change {
            action: Action::Create,
            kind: Kind::User,
            name: key.to_string(),
            fields: vec![
                Field::new("mechanism", None, Some(u.mechanism.as_str().into())),
                Field::new("iterations", None, Some(u.iterations.to_string())),
                Field::secret("password", None, Some(Value::Sensitive)),
            ],
            ops: vec![upsert(u)],
        })
    }

    fn update(&self, key: &str, u: &UserConfig, lu: &LiveUser, _: &mut Draft) -> Option<Change> {
        let mut fields = Vec::new();
        let mut ops = Vec::new();
        match lu.credentials.iter().find(|c| c.mechanism == u.mechanism) {
            None => {
                let before: Vec<&str> = lu.credentials.iter().map(|c| c.mechanism.as_str()).collect();
                fields.push(Field::new("mechanism", Some(before.join(",")), Some(u.mechanism.as_str().into())));
                fields.push(Field::secret("password", None, Some(Value::Sensitive)));
                ops.push(upsert(u));
            }
            Some(c) => {
                if c.iterations != u.iterations {
                    fields.push(Field::new(
                        "iterations",
                        Some(c.iterations.to_string()),
                        Some(u.iterations.to_string()),
                    ));
                }
                if self.passwords.get(key) == Some(&false) {
                    fields.push(Field::secret("password", Some(Value::Sensitive), Some(Value::Differs)));
                } else if c.iterations != u.iterations {
                    // Re-hashing with new iterations rewrites the credential.
                    fields.push(Field::secret("password", Some(Value::Sensitive), Some(Value::Sensitive)));
                }
                if !fields.is_empty() {
                    ops.push(upsert(u));
                }
            }
        }
        // Credentials under other mechanisms would still log in: remove them.
        for c in lu.credentials.iter().filter(|c| c.mechanism != u.mechanism) {
            fields.push(Field::new(&format!("credential {}", c.mechanism.as_str()), Some("present".into()), None));
            ops.push(Op::DeleteUserCredential { user: key.to_string(), mechanism: c.mechanism });
        }
        (!ops.is_empty()).then(|| Change {
            action: Action::Update,
            kind: Kind::User,
            name: key.to_string(),
            fields,
            ops,
        })
    }

    fn delete(&self, key: &str, lu: &LiveUser) -> Change {
        Change {
            action: Action::Delete,
            kind: Kind::User,
            name: key.to_string(),
            fields: lu
                .credentials
                .iter()
                .map(|c| Field::new("mechanism", Some(c.mechanism.as_str().into()), None))
                .collect(),
            ops: lu
                .credentials
                .iter()
                .map(|c| Op::DeleteUserCredential { user: key.to_string(), mechanism: c.mechanism })
                .collect(),
        }
    }

    fn managed(&self, key: &str, _: &LiveUser) -> bool {
        Some(key) != self.admin_user && managed(self.cfg, key)
    }
}
