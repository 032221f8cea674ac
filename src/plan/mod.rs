//! Desired state (fink.toml) vs live state (the cluster) -> a [`Plan`]: a
//! plain, serialisable list of changes. `fink plan` renders it, `fink apply`
//! executes exactly its operations, so preview and execution cannot diverge.

mod acls;
pub mod apply;
pub mod import;
pub mod quotas;
pub mod reconcile;
pub mod render;
mod topics;
mod users;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use crate::cluster::{self, AclBinding, Admin, LiveState, Login};
use crate::config::span::KeyPath;
use crate::config::Severity;
use crate::config::{
    AclConfig, AclOperation, AclRole, Config, Loaded, PatternType, ResourceKind, RunConfig, ScramMechanism,
};
use reconcile::{reconcile, Draft};

/// Version 2: a topic's replication factor is `null` for the broker's
/// default (was -1); field values are typed: `{"text": ...}` or a marker
/// (`"(sensitive)"`, `"(differs)"`, `"(default)"`, `"(broker default)"`).
pub const PLAN_FORMAT: &str = "fink-plan/2";

/// A plan saved by `fink plan -o FILE`, refused clearly if it is not one or
/// was written in another format version.
pub fn load_saved(path: &std::path::Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("cannot read plan {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow!("{} is not a fink plan: {e}", path.display()))?;
    let format = v.get("format").and_then(|f| f.as_str()).unwrap_or("(none)");
    if format != PLAN_FORMAT {
        return Err(anyhow!(
            "{} has format {format:?}; this fink reads {PLAN_FORMAT:?}: run `fink plan -o` again",
            path.display()
        ));
    }
    serde_json::from_value(v).map_err(|e| anyhow!("{} is not a fink plan: {e}", path.display()))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

/// A field's value in a plan: text, or a marker for a value not shown.
/// In JSON a marker is its shown form (`"(differs)"`) and text is
/// `{"text": ...}`, so the two never collide.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Value {
    #[serde(rename = "text")]
    Text(String),
    /// A secret: set, never shown.
    #[serde(rename = "(sensitive)")]
    Sensitive,
    /// A secret that is not the live one (found by logging in).
    #[serde(rename = "(differs)")]
    Differs,
    /// Reset to the broker's default.
    #[serde(rename = "(default)")]
    Default,
    /// Left to the broker's default.
    #[serde(rename = "(broker default)")]
    BrokerDefault,
}

impl Value {
    pub fn is_secret(&self) -> bool {
        matches!(self, Value::Sensitive | Value::Differs)
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Value::Text(t) => t,
            Value::Sensitive => "(sensitive)",
            Value::Differs => "(differs)",
            Value::Default => "(default)",
            Value::BrokerDefault => "(broker default)",
        })
    }
}

/// One field's before and after; secrets carry markers, never values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl Field {
    fn new(name: &str, before: Option<String>, after: Option<String>) -> Field {
        Field::value(name, before.map(Value::Text), after.map(Value::Text))
    }
    fn value(name: &str, before: Option<Value>, after: Option<Value>) -> Field {
        Field { name: name.into(), before, after }
    }
    fn secret(name: &str, before: Option<Value>, after: Option<Value>) -> Field {
        Field::value(name, before, after)
    }
    pub fn is_secret(&self) -> bool {
        self.before.iter().chain(&self.after).any(Value::is_secret)
    }
}

/// What apply does, exactly. Passwords are not here: apply resolves them from
/// the config when it runs, so a saved plan holds no secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    UpsertUser {
        user: String,
        mechanism: ScramMechanism,
        iterations: i32,
    },
    DeleteUserCredential {
        user: String,
        mechanism: ScramMechanism,
    },
    CreateTopic {
        topic: String,
        partitions: i32,
        /// `None`: the broker's `default.replication.factor`.
        replication_factor: Option<i32>,
        configs: BTreeMap<String, String>,
    },
    CreatePartitions {
        topic: String,
        from: i32,
        to: i32,
    },
    AlterTopicConfigs {
        topic: String,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
    CreateAcl {
        binding: AclBinding,
    },
    DeleteAcl {
        binding: AclBinding,
    },
    DeleteTopic {
        topic: String,
    },
    /// Move partitions' replicas (throttled by `throttle_bytes` per second
    /// on every broker while they catch up; 0: no throttle).
    Reassign {
        topic: String,
        target: BTreeMap<i32, Vec<i32>>,
        throttle_bytes: i64,
    },
    /// Remove the replication throttle rates a finished or interrupted move
    /// left on brokers.
    ClearBrokerThrottles {
        brokers: Vec<i32>,
    },
    /// Set and remove client quota values of one entity (values as Kafka
    /// shows them).
    AlterQuota {
        entity: crate::cluster::quotas::Entity,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
}

impl Op {
    /// Apply order: users, topics, ACLs; deletions in reverse.
    pub fn stage(&self) -> u8 {
        match self {
            Op::UpsertUser { .. } => 0,
            Op::CreateTopic { .. } => 1,
            Op::CreatePartitions { .. } => 2,
            Op::AlterTopicConfigs { .. } => 3,
            Op::CreateAcl { .. } => 4,
            Op::AlterQuota { .. } => 4,
            Op::Reassign { .. } => 3,
            Op::ClearBrokerThrottles { .. } => 5,
            Op::DeleteAcl { .. } => 5,
            Op::DeleteTopic { .. } => 6,
            Op::DeleteUserCredential { .. } => 7,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    User,
    Topic,
    Acl,
    Quota,
    Broker,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Topic => "topic",
            Kind::Acl => "acl",
            Kind::Quota => "quota",
            Kind::Broker => "broker",
        }
    }
}

/// A change to one resource.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Change {
    pub action: Action,
    pub kind: Kind,
    pub name: String,
    pub fields: Vec<Field>,
    pub ops: Vec<Op>,
}

impl Change {
    pub fn title(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Plan {
    pub format: String,
    pub cluster_id: Option<String>,
    pub config_hash: String,
    pub prune: bool,
    pub changes: Vec<Change>,
    /// Desired states Kafka cannot reach (a partition decrease): apply refuses.
    pub blockers: Vec<String>,
    /// Things shown but not done (replication changes, unmanaged resources).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Delete => s.destroy += 1,
            }
        }
        s
    }
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Expand one `[[acl]]` into the bindings Kafka stores.
pub fn expand_acl(run: &RunConfig, a: &AclConfig) -> Vec<AclBinding> {
    let principal = a.user.as_ref().map(|u| format!("User:{u}")).or_else(|| a.principal.clone()).unwrap_or_default();
    let bind = |resource: ResourceKind, name: &str, pattern: PatternType, op: AclOperation| AclBinding {
        principal: principal.clone(),
        host: a.host.clone(),
        resource,
        name: name.to_string(),
        pattern,
        operation: op,
        permission: a.permission,
    };
    let mut out = Vec::new();
    match (a.role, a.resource) {
        (Some(AclRole::Producer), _) => {
            let topic = a.topic.as_deref().unwrap_or_default();
            for op in [AclOperation::Write, AclOperation::Describe, AclOperation::Create] {
                out.push(bind(ResourceKind::Topic, topic, a.pattern, op));
            }
            out.push(bind(ResourceKind::Cluster, "kafka-cluster", PatternType::Literal, AclOperation::IdempotentWrite));
            if run.exactly_once() {
                // Transactions under the group's id prefix, the progress
                // committed with them, and membership in the group that
                // shares the streams between instances.
                let prefix = format!("{}.", run.group);
                for op in [AclOperation::Describe, AclOperation::Write] {
                    out.push(bind(ResourceKind::TransactionalId, &prefix, PatternType::Prefixed, op));
                }
                for op in [AclOperation::Describe, AclOperation::Read, AclOperation::Write] {
                    out.push(bind(ResourceKind::Topic, &run.state_topic, PatternType::Literal, op));
                }
                for op in [AclOperation::Describe, AclOperation::Read] {
                    out.push(bind(ResourceKind::Group, &run.group, PatternType::Literal, op));
                }
            }
        }
        (Some(AclRole::Consumer), _) => {
            let topic = a.topic.as_deref().unwrap_or_default();
            for op in [AclOperation::Read, AclOperation::Describe] {
                out.push(bind(ResourceKind::Topic, topic, a.pattern, op));
            }
            out.push(bind(
                ResourceKind::Group,
                a.group.as_deref().unwrap_or_default(),
                a.group_pattern,
                AclOperation::Read,
            ));
        }
        (None, Some(kind)) => {
            let name =
                if kind == ResourceKind::Cluster { "kafka-cluster" } else { a.name.as_deref().unwrap_or_default() };
            // Unknown names were refused when the config was loaded.
            for op in a.operations.iter().filter_map(|o| AclOperation::parse(o)) {
                out.push(bind(kind, name, a.pattern, op));
            }
        }
        (None, None) => {}
    }
    out
}

/// Every binding `fink.toml` declares, deduplicated and sorted.
pub fn desired_acls(cfg: &Config) -> Vec<AclBinding> {
    let set: BTreeSet<AclBinding> = cfg.acls.iter().flat_map(|a| expand_acl(&cfg.run, a)).collect();
    set.into_iter().collect()
}

/// Glob match of a name (`*`, `?`, `[...]`), by `globset`: linear time,
/// where a hand-written backtracking matcher was exponential on patterns
/// like `a*a*a*a*b`. A pattern that is not a valid glob matches literally.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    match globset::Glob::new(pattern) {
        Ok(g) => g.compile_matcher().is_match(name),
        Err(_) => pattern == name,
    }
}

fn ignored(cfg: &Config, name: &str) -> bool {
    cfg.ignore.iter().any(|p| glob_match(p, name))
}

/// Live resources fink may delete or report: in scope and not ignored.
fn managed(cfg: &Config, name: &str) -> bool {
    (cfg.scope.is_empty() || cfg.scope.iter().any(|p| glob_match(p, name))) && !ignored(cfg, name)
}

/// An ACL is managed if its resource or its principal's user is.
fn managed_acl(cfg: &Config, b: &AclBinding) -> bool {
    let user = b.principal.strip_prefix("User:").unwrap_or(&b.principal);
    if ignored(cfg, &b.name) || ignored(cfg, user) {
        return false;
    }
    managed(cfg, &b.name) || managed(cfg, user)
}

/// Whether each desired user's password is the live one, found by logging in.
pub type PasswordChecks = BTreeMap<String, bool>;

/// Check passwords of users that exist on both sides, a few logins at a time.
pub fn check_passwords(loaded: &Loaded, admin: &Admin, live: &LiveState) -> Result<PasswordChecks> {
    let mut jobs = Vec::new();
    for u in &loaded.config.users {
        let Some(lu) = live.users.get(&u.name) else {
            continue;
        };
        if !lu.credentials.iter().any(|c| c.mechanism == u.mechanism) {
            continue;
        }
        let pw = cluster::user_password(loaded, &u.name)?;
        jobs.push((u.name.clone(), admin.conn.as_user(&u.name, pw, u.mechanism)));
    }
    // Each login costs one PBKDF2 (CPU) and a round trip: a few workers per
    // core pull from a shared queue so no core idles behind a slow login.
    let timeout = admin.timeout().min(Duration::from_secs(15));
    let workers = std::thread::available_parallelism().map(|n| n.get() * 2).unwrap_or(4).min(jobs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let outcomes: Vec<(String, Login)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((name, conn)) = jobs.get(i) else { break };
                        mine.push((name.clone(), cluster::check_login(conn, timeout)));
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("login check thread")).collect()
    });
    let mut results = BTreeMap::new();
    for (name, outcome) in outcomes {
        match outcome {
            Login::Accepted => {
                results.insert(name, true);
            }
            Login::Refused(_) => {
                results.insert(name, false);
            }
            Login::Unreachable(e) => return Err(anyhow!("cannot check the password of user {name:?}: {e}")),
        }
    }
    Ok(results)
}

/// Compute the plan. Pure: everything it needs is passed in.
pub fn diff(
    cfg: &Config,
    live: &LiveState,
    passwords: &PasswordChecks,
    admin_user: Option<&str>,
    prune: bool,
    config_hash: &str,
) -> Plan {
    diff_at(cfg, live, passwords, admin_user, prune, config_hash).0
}

/// [`diff`], with where in the config each located blocker comes from.
fn diff_at(
    cfg: &Config,
    live: &LiveState,
    passwords: &PasswordChecks,
    admin_user: Option<&str>,
    prune: bool,
    config_hash: &str,
) -> (Plan, Vec<(usize, KeyPath)>) {
    let mut draft = Draft::default();
    let users = users::Users { cfg, passwords, admin_user };
    let desired = cfg.users.iter().map(|u| (u.name.clone(), u)).collect();
    let found = live.users.iter().map(|(k, v)| (k.clone(), v)).collect();
    reconcile(&users, &desired, &found, prune, &mut draft);

    let topics = cfg.desired_topics();
    let desired = topics.iter().map(|t| (t.name.clone(), t)).collect();
    let found = live.topics.iter().map(|(k, v)| (k.clone(), v)).collect();
    let brokers: Vec<i32> = live.brokers.iter().map(|b| b.id).collect();
    let no_moves = BTreeMap::new();
    let moving = live.reassigning.as_ref().unwrap_or(&no_moves);
    reconcile(&topics::Topics { cfg, brokers: &brokers, moving }, &desired, &found, prune, &mut draft);
    // A finished or interrupted move's throttle rates, once nothing moves.
    if live.reassigning.as_ref().is_ok_and(|m| m.is_empty()) && !live.throttled_brokers.is_empty() {
        let names: Vec<String> = live.throttled_brokers.iter().map(|b| b.to_string()).collect();
        draft.changes.push(Change {
            action: Action::Update,
            kind: Kind::Broker,
            name: names.join(","),
            fields: crate::cluster::reassign::BROKER_THROTTLES
                .iter()
                .map(|k| Field::value(k, Some(Value::Text("(set by a move)".into())), Some(Value::Default)))
                .collect(),
            ops: vec![Op::ClearBrokerThrottles { brokers: live.throttled_brokers.clone() }],
        });
    }
    if let Ok(m) = &live.reassigning {
        for (topic, parts) in m {
            draft.notes.push(format!(
                "topic {topic}: {} partition(s) are moving; fink starts no other move of it until they are done",
                parts.len()
            ));
        }
    }

    let wanted = desired_acls(cfg);
    let desired = wanted.iter().map(|b| (b.to_string(), b)).collect();
    let found = live.acls.iter().map(|b| (b.to_string(), b)).collect();
    reconcile(&acls::Acls { cfg }, &desired, &found, prune, &mut draft);

    match &live.quotas {
        Ok(found) => {
            let desired = cfg.quotas.iter().map(|q| (quotas::entity(q).key(), q)).collect();
            let found = found.iter().map(|(k, v)| (k.clone(), v)).collect();
            reconcile(&quotas::Quotas { cfg }, &desired, &found, prune, &mut draft);
        }
        Err(e) if !cfg.quotas.is_empty() => draft.blockers.push(format!("cannot read the cluster's quotas: {e}")),
        Err(_) => {}
    }

    let Draft { mut changes, blockers, mut notes, unmanaged, blocker_at } = draft;
    if !unmanaged.is_empty() {
        let parts: Vec<String> = [Kind::Topic, Kind::User, Kind::Acl, Kind::Quota, Kind::Broker]
            .iter()
            .filter_map(|k| unmanaged.get(k).map(|names| (k, names)))
            .map(|(kind, names)| match kind {
                Kind::Topic => format!("{} topic(s) [{}]", names.len(), shorten(names)),
                Kind::User => format!("{} user(s) [{}]", names.len(), shorten(names)),
                Kind::Acl => format!("{} ACL binding(s)", names.len()),
                Kind::Quota => format!("{} quota(s) [{}]", names.len(), shorten(names)),
                Kind::Broker => format!("{} broker(s)", names.len()),
            })
            .collect();
        notes.push(format!(
            "not in fink.toml, left alone because prune is off: {} (set prune = true or pass --prune to delete them)",
            parts.join(", ")
        ));
    }

    // Creates and updates: users, topics, ACLs, quotas. Deletions after, in reverse.
    changes.sort_by_key(|c| {
        let k = c.kind as u8;
        match c.action {
            Action::Delete => (1, 4 - k, c.name.clone()),
            _ => (0, k, c.name.clone()),
        }
    });

    let plan = Plan {
        format: PLAN_FORMAT.into(),
        cluster_id: live.cluster_id.clone(),
        config_hash: config_hash.to_string(),
        prune,
        changes,
        blockers,
        notes,
    };
    (plan, blocker_at)
}

fn shorten(names: &[String]) -> String {
    if names.len() <= 5 {
        names.join(", ")
    } else {
        format!("{}, ... and {} more", names[..5].join(", "), names.len() - 5)
    }
}

/// Read live state, check passwords, diff: what `fink plan` and `fink apply` share.
pub fn make_plan(loaded: &Loaded, admin: &Admin, prune_flag: bool) -> Result<Plan> {
    let t = std::time::Instant::now();
    let live = admin.live_state()?;
    tracing::info!(elapsed = ?t.elapsed(), topics = live.topics.len(), users = live.users.len(), acls = live.acls.len(), "read live state");
    check_cluster_id(loaded, live.cluster_id.as_deref())?;
    let t = std::time::Instant::now();
    let passwords = check_passwords(loaded, admin, &live)?;
    tracing::info!(elapsed = ?t.elapsed(), users = passwords.len(), "checked passwords by logging in");
    let admin_user = loaded.config.cluster.admin.as_ref().map(|a| a.user.as_str());
    let prune = prune_flag || loaded.config.prune;
    let (mut plan, at) = diff_at(&loaded.config, &live, &passwords, admin_user, prune, &loaded.hash);
    if !at.is_empty() {
        let loc = loaded.locator();
        for (i, path) in at {
            let message = std::mem::take(&mut plan.blockers[i]);
            plan.blockers[i] = loc.locate(&path, Severity::Error, message).to_string();
        }
    }
    Ok(plan)
}

/// After an apply: re-plan until nothing is left or `timeout` passes.
/// Returns the number of changes still pending, if any.
pub fn wait_converged(
    loaded: &Loaded,
    admin: &Admin,
    prune: bool,
    timeout: Duration,
    progress: &dyn Fn(usize),
) -> Result<Option<usize>> {
    let deadline = std::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(200);
    loop {
        let p = make_plan(loaded, admin, prune)?;
        if p.changes.is_empty() {
            return Ok(None);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(Some(p.changes.len()));
        }
        progress(p.changes.len());
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Refuse to touch a cluster other than the one `[cluster] id` names.
pub fn check_cluster_id(loaded: &Loaded, live: Option<&str>) -> Result<()> {
    if let Some(expected) = &loaded.config.cluster.id {
        if live != Some(expected.as_str()) {
            return Err(anyhow!(
                "refusing to continue: fink.toml expects cluster id {expected:?} but {} is cluster {:?}",
                loaded.config.cluster.bootstrap.join(","),
                live.unwrap_or("(unknown)")
            ));
        }
    }
    Ok(())
}

/// Differences between a saved plan and a fresh one, for the stale-plan refusal.
pub fn drift(saved: &Plan, fresh: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    if saved.cluster_id != fresh.cluster_id {
        out.push(format!("cluster id was {:?}, is now {:?}", saved.cluster_id, fresh.cluster_id));
    }
    for c in &saved.changes {
        if !fresh.changes.contains(c) {
            out.push(format!("planned `{}` {} is no longer what the cluster needs", symbol(c.action), c.title()));
        }
    }
    for c in &fresh.changes {
        if !saved.changes.contains(c) {
            out.push(format!("`{}` {} is now needed but not in the saved plan", symbol(c.action), c.title()));
        }
    }
    out
}

pub fn symbol(a: Action) -> &'static str {
    match a {
        Action::Create => "+",
        Action::Update => "~",
        Action::Delete => "-",
    }
}

#[cfg(test)]
mod tests;
