//! Execute a plan's operations, in order, batched by kind; report each
//! change's outcome. A failed change does not stop the others, and a re-run
//! converges because the next plan only holds what is still missing.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use rdkafka::admin::{NewPartitions, NewTopic, TopicReplication};
use serde::Serialize;

use super::{Change, Op, Plan};
use crate::cluster::ffi::{self, ScramChange};
use crate::cluster::Admin;
use crate::config::{Loaded, SecretValue};

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub change: String,
    pub action: super::Action,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| !o.ok).count()
    }
    pub fn done(&self) -> usize {
        self.outcomes.iter().filter(|o| o.ok).count()
    }
}

/// Run every op of the plan; `progress` is told of each finished change.
pub fn execute(plan: &Plan, loaded: &Loaded, admin: &Admin, progress: &dyn Fn(&Outcome)) -> Result<Report> {
    if !plan.blockers.is_empty() {
        return Err(anyhow!("the plan has changes Kafka cannot make:\n  {}", plan.blockers.join("\n  ")));
    }
    // Each op remembers the change it belongs to; errors accumulate per change.
    let mut errors: Vec<Vec<String>> = vec![Vec::new(); plan.changes.len()];
    let mut ops: Vec<(usize, &Op)> =
        plan.changes.iter().enumerate().flat_map(|(i, c)| c.ops.iter().map(move |o| (i, o))).collect();
    ops.sort_by_key(|(_, o)| o.stage());

    let mut stage_start = 0;
    while stage_start < ops.len() {
        let stage = ops[stage_start].1.stage();
        let end = ops[stage_start..]
            .iter()
            .position(|(_, o)| o.stage() != stage)
            .map(|p| stage_start + p)
            .unwrap_or(ops.len());
        let batch = &ops[stage_start..end];
        let results = run_stage(batch, loaded, admin);
        for ((i, _), r) in batch.iter().zip(results) {
            if let Err(e) = r {
                errors[*i].push(e);
            }
        }
        stage_start = end;
    }

    let mut outcomes = Vec::new();
    for (c, errs) in plan.changes.iter().zip(errors) {
        let o = outcome(c, errs);
        progress(&o);
        outcomes.push(o);
    }
    Ok(Report { outcomes })
}

fn outcome(c: &Change, errs: Vec<String>) -> Outcome {
    Outcome {
        change: c.title(),
        action: c.action,
        ok: errs.is_empty(),
        error: if errs.is_empty() { None } else { Some(errs.join("; ")) },
    }
}

type OpResult = std::result::Result<(), String>;

/// Run one stage (ops of the same kind) in as few requests as possible.
fn run_stage(batch: &[(usize, &Op)], loaded: &Loaded, admin: &Admin) -> Vec<OpResult> {
    let all = |e: String| batch.iter().map(|_| Err(e.clone())).collect::<Vec<_>>();
    let timeout = admin.timeout();
    match batch[0].1 {
        Op::UpsertUser { .. } | Op::DeleteUserCredential { .. } => {
            // Resolve passwords now: the plan itself holds none.
            let mut passwords: Vec<Option<SecretValue>> = Vec::new();
            let mut pre: Vec<Option<String>> = Vec::new();
            for (_, op) in batch {
                match op {
                    Op::UpsertUser { user, .. } => match loaded.config.users.iter().find(|u| &u.name == user) {
                        Some(u) => match u.password.resolve(&loaded.base_dir) {
                            Ok(p) => {
                                passwords.push(Some(p));
                                pre.push(None);
                            }
                            Err(e) => {
                                passwords.push(None);
                                pre.push(Some(format!("password: {e}")));
                            }
                        },
                        None => {
                            passwords.push(None);
                            pre.push(Some(format!("user {user:?} is no longer declared in fink.toml")));
                        }
                    },
                    _ => {
                        passwords.push(None);
                        pre.push(None);
                    }
                }
            }
            let mut changes = Vec::new();
            let mut idx = Vec::new();
            for (k, (_, op)) in batch.iter().enumerate() {
                if pre[k].is_some() {
                    continue;
                }
                match op {
                    Op::UpsertUser { user, mechanism, iterations } => changes.push(ScramChange::Upsert {
                        user,
                        mechanism: *mechanism,
                        iterations: *iterations,
                        password: passwords[k].as_ref().map(|p| p.expose()).unwrap_or_default(),
                    }),
                    Op::DeleteUserCredential { user, mechanism } => {
                        changes.push(ScramChange::Delete { user, mechanism: *mechanism })
                    }
                    _ => unreachable!("same stage"),
                }
                idx.push(k);
            }
            let mut out: Vec<OpResult> = pre.into_iter().map(|p| p.map_or(Ok(()), Err)).collect();
            match ffi::alter_scram(admin.handle(), &changes, timeout) {
                Ok(results) => {
                    // Results come per user; map them back by name.
                    let by_user: BTreeMap<String, OpResult> = results.into_iter().collect();
                    for k in idx {
                        let user = match batch[k].1 {
                            Op::UpsertUser { user, .. } | Op::DeleteUserCredential { user, .. } => user,
                            _ => unreachable!(),
                        };
                        out[k] = by_user.get(user).cloned().unwrap_or_else(|| Err("no result from the cluster".into()));
                    }
                }
                Err(e) => {
                    for k in idx {
                        out[k] = Err(e.to_string());
                    }
                }
            }
            out
        }
        Op::CreateTopic { .. } => {
            let new: Vec<NewTopic> = batch
                .iter()
                .map(|(_, op)| match op {
                    Op::CreateTopic { topic, partitions, replication_factor, configs } => {
                        let mut t = NewTopic::new(topic, *partitions, TopicReplication::Fixed(*replication_factor));
                        for (k, v) in configs {
                            t = t.set(k, v);
                        }
                        t
                    }
                    _ => unreachable!("same stage"),
                })
                .collect();
            match admin.block_on(admin.admin_client().create_topics(new.iter(), &admin.admin_options())) {
                Ok(results) => {
                    let out = by_name(batch, topic_results(results));
                    // Streams started right after apply must find the topics.
                    let created: Vec<String> = batch
                        .iter()
                        .zip(&out)
                        .filter_map(|((_, op), r)| match (op, r) {
                            (Op::CreateTopic { topic, .. }, Ok(())) => Some(topic.clone()),
                            _ => None,
                        })
                        .collect();
                    let late = admin.wait_topics_ready(&created, timeout);
                    if !late.is_empty() {
                        tracing::warn!(topics = ?late, "created, but brokers do not serve them yet");
                    }
                    out
                }
                Err(e) => all(e.to_string()),
            }
        }
        Op::CreatePartitions { .. } => {
            let new: Vec<NewPartitions> = batch
                .iter()
                .map(|(_, op)| match op {
                    Op::CreatePartitions { topic, to, .. } => NewPartitions::new(topic, *to as usize),
                    _ => unreachable!(),
                })
                .collect();
            match admin.block_on(admin.admin_client().create_partitions(new.iter(), &admin.admin_options())) {
                Ok(results) => by_name(batch, topic_results(results)),
                Err(e) => all(e.to_string()),
            }
        }
        Op::AlterTopicConfigs { .. } => {
            let changes: Vec<(String, Vec<ffi::ConfigEdit>)> = batch
                .iter()
                .map(|(_, op)| match op {
                    Op::AlterTopicConfigs { topic, set, delete } => (
                        topic.clone(),
                        set.iter()
                            .map(|(k, v)| (k.clone(), Some(v.clone())))
                            .chain(delete.iter().map(|k| (k.clone(), None)))
                            .collect(),
                    ),
                    _ => unreachable!(),
                })
                .collect();
            match ffi::incremental_alter_topic_configs(admin.handle(), &changes, timeout) {
                Ok(results) => by_name(batch, results.into_iter()),
                Err(e) => all(e.to_string()),
            }
        }
        Op::CreateAcl { .. } | Op::DeleteAcl { .. } => {
            let bindings: Vec<_> = batch
                .iter()
                .map(|(_, op)| match op {
                    Op::CreateAcl { binding } | Op::DeleteAcl { binding } => binding.clone(),
                    _ => unreachable!(),
                })
                .collect();
            let res = if matches!(batch[0].1, Op::CreateAcl { .. }) {
                ffi::create_acls(admin.handle(), &bindings, timeout)
            } else {
                ffi::delete_acls(admin.handle(), &bindings, timeout)
                    .map(|v| v.into_iter().map(|r| r.map(|_| ())).collect())
            };
            match res {
                Ok(results) if results.len() == batch.len() => results,
                Ok(results) => {
                    all(format!("the cluster answered {} results for {} ACL bindings", results.len(), batch.len()))
                }
                Err(e) => all(e.to_string()),
            }
        }
        Op::DeleteTopic { .. } => {
            let names: Vec<&str> = batch
                .iter()
                .map(|(_, op)| match op {
                    Op::DeleteTopic { topic } => topic.as_str(),
                    _ => unreachable!(),
                })
                .collect();
            match admin.block_on(admin.admin_client().delete_topics(&names, &admin.admin_options())) {
                Ok(results) => by_name(batch, topic_results(results)),
                Err(e) => all(e.to_string()),
            }
        }
    }
}

/// rdkafka's per-topic results as (topic, outcome).
fn topic_results(results: Vec<rdkafka::admin::TopicResult>) -> impl Iterator<Item = (String, OpResult)> {
    results.into_iter().map(|r| match r {
        Ok(n) => (n, Ok(())),
        Err((n, code)) => (n, Err(code.to_string())),
    })
}

/// Match per-topic results back to the batch by topic name.
fn by_name(batch: &[(usize, &Op)], results: impl Iterator<Item = (String, OpResult)>) -> Vec<OpResult> {
    let map: BTreeMap<String, OpResult> = results.collect();
    batch
        .iter()
        .map(|(_, op)| {
            let topic = match op {
                Op::CreateTopic { topic, .. }
                | Op::CreatePartitions { topic, .. }
                | Op::AlterTopicConfigs { topic, .. }
                | Op::DeleteTopic { topic } => topic,
                _ => unreachable!("topic ops only"),
            };
            map.get(topic).cloned().unwrap_or_else(|| Err("no result from the cluster".into()))
        })
        .collect()
}
