//! Execute a plan's operations, in order, batched by kind; report each
//! change's outcome. A failed change does not stop the others, and a re-run
//! converges because the next plan only holds what is still missing.
//!
//! The ops are sorted once into one typed list per kind; each kind has its
//! own executor (an `Admin` call), run in the order users, topics, ACLs,
//! then deletions in reverse.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use serde::Serialize;

use super::{Change, Op, Plan};
use crate::cluster::ffi::{ConfigEdit, ScramChange};
use crate::cluster::{Admin, NewTopicSpec, OpResult};
use crate::config::{Loaded, ScramMechanism};

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

/// The plan's ops by kind, each with the index of its change.
#[derive(Default)]
struct Batches<'a> {
    upsert_users: Vec<(usize, &'a str, ScramMechanism, i32)>,
    create_topics: Vec<(usize, NewTopicSpec<'a>)>,
    grow_topics: Vec<(usize, &'a str, usize)>,
    alter_configs: Vec<(usize, String, Vec<ConfigEdit>)>,
    create_acls: Vec<(usize, &'a crate::cluster::AclBinding)>,
    delete_acls: Vec<(usize, &'a crate::cluster::AclBinding)>,
    delete_topics: Vec<(usize, &'a str)>,
    delete_credentials: Vec<(usize, &'a str, ScramMechanism)>,
    alter_quotas: Vec<(usize, QuotaOp<'a>)>,
    reassigns: Vec<(usize, Move<'a>)>,
    clear_throttles: Vec<(usize, &'a [i32])>,
}

/// A topic, its partitions' new replicas, and the throttle (bytes/s).
type Move<'a> = (&'a str, &'a BTreeMap<i32, Vec<i32>>, i64);

/// A quota entity with the values to set (as shown) and the keys to remove.
type QuotaOp<'a> = (&'a crate::cluster::quotas::Entity, &'a BTreeMap<String, String>, &'a [String]);

impl<'a> Batches<'a> {
    fn of(plan: &'a Plan) -> Batches<'a> {
        let mut b = Batches::default();
        for (i, c) in plan.changes.iter().enumerate() {
            for op in &c.ops {
                match op {
                    Op::UpsertUser { user, mechanism, iterations } => {
                        b.upsert_users.push((i, user, *mechanism, *iterations))
                    }
                    Op::CreateTopic { topic, partitions, replication_factor, configs } => b.create_topics.push((
                        i,
                        NewTopicSpec {
                            name: topic,
                            partitions: *partitions,
                            replication_factor: *replication_factor,
                            configs,
                        },
                    )),
                    Op::CreatePartitions { topic, to, .. } => b.grow_topics.push((i, topic, *to as usize)),
                    Op::AlterTopicConfigs { topic, set, delete } => b.alter_configs.push((
                        i,
                        topic.clone(),
                        set.iter()
                            .map(|(k, v)| (k.clone(), Some(v.clone())))
                            .chain(delete.iter().map(|k| (k.clone(), None)))
                            .collect(),
                    )),
                    Op::CreateAcl { binding } => b.create_acls.push((i, binding)),
                    Op::DeleteAcl { binding } => b.delete_acls.push((i, binding)),
                    Op::DeleteTopic { topic } => b.delete_topics.push((i, topic)),
                    Op::DeleteUserCredential { user, mechanism } => b.delete_credentials.push((i, user, *mechanism)),
                    Op::Reassign { topic, target, throttle_bytes } => {
                        b.reassigns.push((i, (topic, target, *throttle_bytes)))
                    }
                    Op::ClearBrokerThrottles { brokers } => b.clear_throttles.push((i, brokers)),
                    Op::AlterQuota { entity, set, remove } => b.alter_quotas.push((i, (entity, set, remove))),
                }
            }
        }
        b
    }
}

/// Outcomes of one batch, as (change index, outcome).
type Outcomes = Vec<(usize, OpResult)>;

/// Every item of a batch failed the same way (the request itself failed).
fn all_failed<T>(items: &[(usize, T)], e: &anyhow::Error) -> Outcomes {
    items.iter().map(|(i, _)| (*i, Err(format!("{e:#}")))).collect()
}

/// Match per-name results back to the batch.
fn by_name<'n>(idx: impl Iterator<Item = (usize, &'n str)>, results: Vec<(String, OpResult)>) -> Outcomes {
    let map: BTreeMap<String, OpResult> = results.into_iter().collect();
    idx.map(|(i, n)| (i, map.get(n).cloned().unwrap_or_else(|| Err("no result from the cluster".into())))).collect()
}

/// Run every op of the plan; `progress` is told of each finished change.
/// `wait_moves`: after starting replica moves, wait for them (showing
/// progress) and remove their throttle; otherwise they go on in the
/// background and a later apply removes it.
pub fn execute(
    plan: &Plan,
    loaded: &Loaded,
    admin: &Admin,
    wait_moves: bool,
    progress: &dyn Fn(&Outcome),
) -> Result<Report> {
    if !plan.blockers.is_empty() {
        return Err(anyhow!("the plan has changes Kafka cannot make:\n  {}", plan.blockers.join("\n  ")));
    }
    let b = Batches::of(plan);
    let mut results: Outcomes = Vec::new();
    results.extend(upsert_users(&b.upsert_users, loaded, admin));
    if !b.create_topics.is_empty() {
        let specs: Vec<NewTopicSpec> = b.create_topics.iter().map(|(_, t)| NewTopicSpec { ..*t }).collect();
        let out = match admin.create_topics(&specs) {
            Ok(r) => by_name(b.create_topics.iter().map(|(i, t)| (*i, t.name)), r),
            Err(e) => all_failed(&b.create_topics, &e),
        };
        // Streams started right after apply must find the topics.
        let created: Vec<String> = b
            .create_topics
            .iter()
            .zip(&out)
            .filter(|(_, (_, r))| r.is_ok())
            .map(|((_, t), _)| t.name.to_string())
            .collect();
        let late = admin.wait_topics_ready(&created, admin.timeout());
        if !late.is_empty() {
            tracing::warn!(topics = ?late, "created, but brokers do not serve them yet");
        }
        results.extend(out);
    }
    if !b.grow_topics.is_empty() {
        let grow: Vec<(&str, usize)> = b.grow_topics.iter().map(|(_, t, n)| (*t, *n)).collect();
        results.extend(match admin.create_partitions(&grow) {
            Ok(r) => by_name(b.grow_topics.iter().map(|(i, t, _)| (*i, *t)), r),
            Err(e) => b.grow_topics.iter().map(|(i, _, _)| (*i, Err(format!("{e:#}")))).collect(),
        });
    }
    if !b.alter_configs.is_empty() {
        let edits: Vec<(String, Vec<ConfigEdit>)> =
            b.alter_configs.iter().map(|(_, t, e)| (t.clone(), e.clone())).collect();
        results.extend(match admin.alter_topic_configs(&edits) {
            Ok(r) => by_name(b.alter_configs.iter().map(|(i, t, _)| (*i, t.as_str())), r),
            Err(e) => b.alter_configs.iter().map(|(i, _, _)| (*i, Err(format!("{e:#}")))).collect(),
        });
    }
    let mut started = Vec::new();
    for (i, (topic, target, throttle)) in &b.reassigns {
        let r = start_move(admin, topic, target, *throttle);
        if r.is_ok() {
            started.push(topic.to_string());
        }
        results.push((*i, r.map_err(|e| format!("{e:#}"))));
    }
    for (i, brokers) in &b.clear_throttles {
        results.push((*i, clear_broker_throttles(admin, brokers).map_err(|e| format!("{e:#}"))));
    }
    if !started.is_empty() {
        if wait_moves {
            wait_for_moves(admin, &started)?;
        } else {
            eprintln!(
                "moving replicas of {} in the background: `fink plan` shows the move, and `fink apply` removes its throttle once it is done",
                started.join(", ")
            );
        }
    }
    results.extend(acls(&b.create_acls, |x| admin.create_acls(x)));
    if !b.alter_quotas.is_empty() {
        // Values travel as shown in the plan: parse them back first.
        let mut ready = Vec::new();
        for (i, (entity, set, remove)) in &b.alter_quotas {
            let values: std::result::Result<crate::cluster::quotas::Values, String> = set
                .iter()
                .map(|(k, v)| {
                    v.parse::<f64>().map(|v| (k.clone(), v)).map_err(|e| format!("quota {entity}: {k} = {v}: {e}"))
                })
                .collect();
            match values {
                Ok(v) => ready.push((*i, *entity, v, *remove)),
                Err(e) => results.push((*i, Err(e))),
            }
        }
        let edits: Vec<crate::cluster::quotas::QuotaEdit<'_>> = ready.iter().map(|(_, e, v, r)| (*e, v, *r)).collect();
        match admin.alter_quotas(&edits) {
            Ok(r) => results.extend(ready.iter().map(|(i, ..)| *i).zip(r)),
            Err(e) => results.extend(ready.iter().map(|(i, ..)| (*i, Err(format!("{e:#}"))))),
        }
    }
    results.extend(acls(&b.delete_acls, |x| admin.delete_acls(x)));
    if !b.delete_topics.is_empty() {
        let names: Vec<&str> = b.delete_topics.iter().map(|(_, t)| *t).collect();
        results.extend(match admin.delete_topics(&names) {
            Ok(r) => by_name(b.delete_topics.iter().map(|(i, t)| (*i, *t)), r),
            Err(e) => all_failed(&b.delete_topics, &e),
        });
    }
    if !b.delete_credentials.is_empty() {
        let changes: Vec<ScramChange> = b
            .delete_credentials
            .iter()
            .map(|(_, user, mechanism)| ScramChange::Delete { user, mechanism: *mechanism })
            .collect();
        results.extend(match admin.alter_scram(&changes) {
            Ok(r) => by_name(b.delete_credentials.iter().map(|(i, u, _)| (*i, *u)), r),
            Err(e) => b.delete_credentials.iter().map(|(i, _, _)| (*i, Err(format!("{e:#}")))).collect(),
        });
    }

    let mut errors: Vec<Vec<String>> = vec![Vec::new(); plan.changes.len()];
    for (i, r) in results {
        if let Err(e) = r {
            errors[i].push(e);
        }
    }
    let mut outcomes = Vec::new();
    for (c, errs) in plan.changes.iter().zip(errors) {
        let o = outcome(c, errs);
        progress(&o);
        outcomes.push(o);
    }
    Ok(Report { outcomes })
}

/// Throttle (brokers, then the topic's replicas), then start the move.
fn start_move(admin: &Admin, topic: &str, target: &BTreeMap<i32, Vec<i32>>, throttle: i64) -> Result<()> {
    use crate::cluster::reassign::{BROKER_THROTTLES, TOPIC_THROTTLES};
    if throttle > 0 {
        let brokers: Vec<i32> = admin.topics()?.0.iter().map(|b| b.id).collect();
        let edits: Vec<(i32, Vec<ConfigEdit>)> = brokers
            .iter()
            .map(|id| (*id, BROKER_THROTTLES.iter().map(|k| (k.to_string(), Some(throttle.to_string()))).collect()))
            .collect();
        admin.alter_broker_configs(&edits)?;
        let edit: Vec<ConfigEdit> = TOPIC_THROTTLES.iter().map(|k| (k.to_string(), Some("*".to_string()))).collect();
        for (_, r) in admin.alter_topic_configs(&[(topic.to_string(), edit)])? {
            r.map_err(|e| anyhow!("topic {topic}: replication throttle: {e}"))?;
        }
    }
    admin.start_reassignment(topic, target)
}

fn clear_broker_throttles(admin: &Admin, brokers: &[i32]) -> Result<()> {
    let edits: Vec<(i32, Vec<ConfigEdit>)> = brokers
        .iter()
        .map(|id| (*id, crate::cluster::reassign::BROKER_THROTTLES.iter().map(|k| (k.to_string(), None)).collect()))
        .collect();
    admin.alter_broker_configs(&edits)
}

/// Wait until none of `topics` moves, showing what is left; then remove
/// their throttles (and the brokers', once nothing else moves).
fn wait_for_moves(admin: &Admin, topics: &[String]) -> Result<()> {
    let start = std::time::Instant::now();
    let mut last_shown = None;
    loop {
        let moving = admin.reassigning()?;
        let left: usize = topics.iter().filter_map(|t| moving.get(t)).map(|p| p.len()).sum();
        if left == 0 {
            let edit: Vec<ConfigEdit> =
                crate::cluster::reassign::TOPIC_THROTTLES.iter().map(|k| (k.to_string(), None)).collect();
            let edits: Vec<(String, Vec<ConfigEdit>)> = topics.iter().map(|t| (t.clone(), edit.clone())).collect();
            for (t, r) in admin.alter_topic_configs(&edits)? {
                r.map_err(|e| anyhow!("topic {t}: removing the replication throttle: {e}"))?;
            }
            if moving.is_empty() {
                let brokers: Vec<i32> = admin.topics()?.0.iter().map(|b| b.id).collect();
                clear_broker_throttles(admin, &brokers)?;
            }
            eprintln!("moved replicas of {} in {:.0?}; throttle removed", topics.join(", "), start.elapsed());
            return Ok(());
        }
        if last_shown != Some(left) {
            eprintln!("moving replicas of {}: {left} partition(s) still catching up", topics.join(", "));
            last_shown = Some(left);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn outcome(c: &Change, errs: Vec<String>) -> Outcome {
    Outcome {
        change: c.title(),
        action: c.action,
        ok: errs.is_empty(),
        error: if errs.is_empty() { None } else { Some(errs.join("; ")) },
    }
}

/// Upsert SCRAM credentials, resolving passwords now: the plan holds none.
fn upsert_users(batch: &[(usize, &str, ScramMechanism, i32)], loaded: &Loaded, admin: &Admin) -> Outcomes {
    let mut out = Vec::new();
    let mut ready = Vec::new();
    for (i, user, mechanism, iterations) in batch {
        match crate::cluster::user_password(loaded, user) {
            Ok(pw) => ready.push((*i, *user, *mechanism, *iterations, pw)),
            Err(e) => out.push((*i, Err(format!("{e:#}")))),
        }
    }
    if ready.is_empty() {
        return out;
    }
    let changes: Vec<ScramChange> = ready
        .iter()
        .map(|(_, user, mechanism, iterations, pw)| ScramChange::Upsert {
            user,
            mechanism: *mechanism,
            iterations: *iterations,
            password: pw.expose(),
        })
        .collect();
    out.extend(match admin.alter_scram(&changes) {
        Ok(r) => by_name(ready.iter().map(|(i, u, ..)| (*i, *u)), r),
        Err(e) => ready.iter().map(|(i, ..)| (*i, Err(format!("{e:#}")))).collect(),
    });
    out
}

/// Create or delete ACL bindings: one outcome per binding, in order.
fn acls(
    batch: &[(usize, &crate::cluster::AclBinding)],
    call: impl FnOnce(&[crate::cluster::AclBinding]) -> Result<Vec<OpResult>>,
) -> Outcomes {
    if batch.is_empty() {
        return Vec::new();
    }
    let bindings: Vec<_> = batch.iter().map(|(_, b)| (*b).clone()).collect();
    match call(&bindings) {
        Ok(r) if r.len() == batch.len() => batch.iter().map(|(i, _)| *i).zip(r).collect(),
        Ok(r) => {
            let e = anyhow!("the cluster answered {} results for {} ACL bindings", r.len(), batch.len());
            all_failed(batch, &e)
        }
        Err(e) => all_failed(batch, &e),
    }
}
