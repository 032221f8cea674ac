//! Desired state (fink.toml) vs live state (the cluster) -> a [`Plan`]: a
//! plain, serialisable list of changes. `fink plan` renders it, `fink apply`
//! executes exactly its operations, so preview and execution cannot diverge.

pub mod apply;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use crate::cluster::{self, AclBinding, Admin, LiveState, Login};
use crate::config::{AclConfig, AclRole, Config, Loaded, PatternType, ResourceKind, ScramMechanism};

/// Version 2: a topic's replication factor is `null` for the broker's
/// default (was -1).
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

/// One field's before and after; secrets carry no values, only `sensitive`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub before: Option<String>,
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

impl Field {
    fn new(name: &str, before: Option<String>, after: Option<String>) -> Field {
        Field { name: name.into(), before, after, sensitive: false }
    }
    fn secret(name: &str, before: Option<&str>, after: Option<&str>) -> Field {
        Field {
            name: name.into(),
            before: before.map(str::to_string),
            after: after.map(str::to_string),
            sensitive: true,
        }
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
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Topic => "topic",
            Kind::Acl => "acl",
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
pub fn expand_acl(a: &AclConfig) -> Vec<AclBinding> {
    let principal = a.user.as_ref().map(|u| format!("User:{u}")).or_else(|| a.principal.clone()).unwrap_or_default();
    let bind = |resource: ResourceKind, name: &str, pattern: PatternType, op: &str| AclBinding {
        principal: principal.clone(),
        host: a.host.clone(),
        resource,
        name: name.to_string(),
        pattern,
        operation: op.to_string(),
        permission: a.permission,
    };
    let mut out = Vec::new();
    match (a.role, a.resource) {
        (Some(AclRole::Producer), _) => {
            let topic = a.topic.as_deref().unwrap_or_default();
            for op in ["Write", "Describe", "Create"] {
                out.push(bind(ResourceKind::Topic, topic, a.pattern, op));
            }
            out.push(bind(ResourceKind::Cluster, "kafka-cluster", PatternType::Literal, "IdempotentWrite"));
        }
        (Some(AclRole::Consumer), _) => {
            let topic = a.topic.as_deref().unwrap_or_default();
            for op in ["Read", "Describe"] {
                out.push(bind(ResourceKind::Topic, topic, a.pattern, op));
            }
            out.push(bind(ResourceKind::Group, a.group.as_deref().unwrap_or_default(), a.group_pattern, "Read"));
        }
        (None, Some(kind)) => {
            let name =
                if kind == ResourceKind::Cluster { "kafka-cluster" } else { a.name.as_deref().unwrap_or_default() };
            for op in &a.operations {
                let canonical = crate::config::validate::canonical_operation(op).unwrap_or(op);
                out.push(bind(kind, name, a.pattern, canonical));
            }
        }
        (None, None) => {}
    }
    out
}

/// Every binding `fink.toml` declares, deduplicated and sorted.
pub fn desired_acls(cfg: &Config) -> Vec<AclBinding> {
    let set: BTreeSet<AclBinding> = cfg.acls.iter().flat_map(expand_acl).collect();
    set.into_iter().collect()
}

/// `*` glob match (the only wildcard the ignore list needs).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn rec(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| rec(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && rec(rest, &n[1..]),
        }
    }
    rec(pattern.as_bytes(), name.as_bytes())
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
    let mut changes = Vec::new();
    let mut blockers = Vec::new();
    let mut notes = Vec::new();

    // Users.
    let desired_users: BTreeSet<&str> = cfg.users.iter().map(|u| u.name.as_str()).collect();
    for u in &cfg.users {
        let mech = u.mechanism.as_str().to_string();
        let upsert = Op::UpsertUser { user: u.name.clone(), mechanism: u.mechanism, iterations: u.iterations };
        match live.users.get(&u.name) {
            None => changes.push(Change {
                action: Action::Create,
                kind: Kind::User,
                name: u.name.clone(),
                fields: vec![
                    Field::new("mechanism", None, Some(mech)),
                    Field::new("iterations", None, Some(u.iterations.to_string())),
                    Field::secret("password", None, Some("(sensitive)")),
                ],
                ops: vec![upsert],
            }),
            Some(lu) => {
                let mut fields = Vec::new();
                let mut ops = Vec::new();
                let same_mech = lu.credentials.iter().find(|c| c.mechanism == u.mechanism);
                match same_mech {
                    None => {
                        let before: Vec<&str> = lu.credentials.iter().map(|c| c.mechanism.as_str()).collect();
                        fields.push(Field::new("mechanism", Some(before.join(",")), Some(mech.clone())));
                        fields.push(Field::secret("password", None, Some("(sensitive)")));
                        ops.push(upsert.clone());
                    }
                    Some(c) => {
                        if c.iterations != u.iterations {
                            fields.push(Field::new(
                                "iterations",
                                Some(c.iterations.to_string()),
                                Some(u.iterations.to_string()),
                            ));
                        }
                        if passwords.get(&u.name) == Some(&false) {
                            fields.push(Field::secret("password", Some("(sensitive)"), Some("(differs)")));
                        } else if c.iterations != u.iterations {
                            // Re-hashing with new iterations rewrites the credential.
                            fields.push(Field::secret("password", Some("(sensitive)"), Some("(sensitive)")));
                        }
                        if !fields.is_empty() {
                            ops.push(upsert.clone());
                        }
                    }
                }
                // Credentials under other mechanisms would still log in: remove them.
                for c in &lu.credentials {
                    if c.mechanism != u.mechanism {
                        fields.push(Field::new(
                            &format!("credential {}", c.mechanism.as_str()),
                            Some("present".into()),
                            None,
                        ));
                        ops.push(Op::DeleteUserCredential { user: u.name.clone(), mechanism: c.mechanism });
                    }
                }
                if !ops.is_empty() {
                    changes.push(Change {
                        action: Action::Update,
                        kind: Kind::User,
                        name: u.name.clone(),
                        fields,
                        ops,
                    });
                }
            }
        }
    }
    let mut unmanaged_users = Vec::new();
    for (name, lu) in &live.users {
        if desired_users.contains(name.as_str()) || Some(name.as_str()) == admin_user || !managed(cfg, name) {
            continue;
        }
        if prune {
            changes.push(Change {
                action: Action::Delete,
                kind: Kind::User,
                name: name.clone(),
                fields: lu
                    .credentials
                    .iter()
                    .map(|c| Field::new("mechanism", Some(c.mechanism.as_str().into()), None))
                    .collect(),
                ops: lu
                    .credentials
                    .iter()
                    .map(|c| Op::DeleteUserCredential { user: name.clone(), mechanism: c.mechanism })
                    .collect(),
            });
        } else {
            unmanaged_users.push(name.clone());
        }
    }

    // Topics.
    let desired_topics: BTreeSet<&str> = cfg.topics.iter().map(|t| t.name.as_str()).collect();
    for t in &cfg.topics {
        let partitions = t.partitions.or(cfg.defaults.partitions).unwrap_or(1);
        let rf = t.replication_factor.or(cfg.defaults.replication_factor);
        let configs: BTreeMap<String, String> = t.config.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        match live.topics.get(&t.name) {
            None => {
                let mut fields = vec![Field::new("partitions", None, Some(partitions.to_string()))];
                fields.push(Field::new(
                    "replication_factor",
                    None,
                    Some(rf.map(|r| r.to_string()).unwrap_or_else(|| "(broker default)".into())),
                ));
                for (k, v) in &configs {
                    fields.push(Field::new(&format!("config {k}"), None, Some(v.clone())));
                }
                changes.push(Change {
                    action: Action::Create,
                    kind: Kind::Topic,
                    name: t.name.clone(),
                    fields,
                    ops: vec![Op::CreateTopic { topic: t.name.clone(), partitions, replication_factor: rf, configs }],
                });
            }
            Some(lt) => {
                let mut fields = Vec::new();
                let mut ops = Vec::new();
                let live_parts = lt.partitions.len() as i32;
                if partitions > live_parts {
                    fields.push(Field::new("partitions", Some(live_parts.to_string()), Some(partitions.to_string())));
                    ops.push(Op::CreatePartitions { topic: t.name.clone(), from: live_parts, to: partitions });
                } else if partitions < live_parts {
                    blockers.push(format!(
                        "topic {}: partitions {live_parts} -> {partitions} is a decrease, which Kafka cannot do (it would reorder keys and lose data); keep {live_parts} in fink.toml, or delete and recreate the topic",
                        t.name
                    ));
                }
                if let Some(rf) = rf {
                    if rf != lt.replication_factor {
                        notes.push(format!(
                            "topic {}: replication_factor {} -> {rf} is not applied: changing it needs a partition reassignment (kafka-reassign-partitions), which fink does not do",
                            t.name, lt.replication_factor
                        ));
                    }
                }
                let mut set = BTreeMap::new();
                let mut delete = Vec::new();
                for (k, v) in &configs {
                    if lt.configs.get(k) != Some(v) {
                        fields.push(Field::new(&format!("config {k}"), lt.configs.get(k).cloned(), Some(v.clone())));
                        set.insert(k.clone(), v.clone());
                    }
                }
                for (k, v) in &lt.configs {
                    if !configs.contains_key(k) {
                        fields.push(Field::new(&format!("config {k}"), Some(v.clone()), Some("(default)".into())));
                        delete.push(k.clone());
                    }
                }
                if !set.is_empty() || !delete.is_empty() {
                    ops.push(Op::AlterTopicConfigs { topic: t.name.clone(), set, delete });
                }
                if !ops.is_empty() {
                    changes.push(Change {
                        action: Action::Update,
                        kind: Kind::Topic,
                        name: t.name.clone(),
                        fields,
                        ops,
                    });
                }
            }
        }
    }
    let mut unmanaged_topics = Vec::new();
    for (name, lt) in &live.topics {
        if desired_topics.contains(name.as_str()) || lt.internal || name.starts_with("__") || !managed(cfg, name) {
            continue;
        }
        if prune {
            changes.push(Change {
                action: Action::Delete,
                kind: Kind::Topic,
                name: name.clone(),
                fields: vec![Field::new("partitions", Some(lt.partitions.len().to_string()), None)],
                ops: vec![Op::DeleteTopic { topic: name.clone() }],
            });
        } else {
            unmanaged_topics.push(name.clone());
        }
    }

    // ACLs.
    let desired = desired_acls(cfg);
    let live_acls: BTreeSet<&AclBinding> = live.acls.iter().collect();
    let desired_set: BTreeSet<&AclBinding> = desired.iter().collect();
    for b in &desired {
        if !live_acls.contains(b) {
            changes.push(Change {
                action: Action::Create,
                kind: Kind::Acl,
                name: b.to_string(),
                fields: vec![],
                ops: vec![Op::CreateAcl { binding: b.clone() }],
            });
        }
    }
    let mut unmanaged_acls = 0usize;
    for b in &live.acls {
        if desired_set.contains(b) || !managed_acl(cfg, b) || b.name.starts_with("__") {
            continue;
        }
        if prune {
            changes.push(Change {
                action: Action::Delete,
                kind: Kind::Acl,
                name: b.to_string(),
                fields: vec![],
                ops: vec![Op::DeleteAcl { binding: b.clone() }],
            });
        } else {
            unmanaged_acls += 1;
        }
    }

    if !prune && (!unmanaged_topics.is_empty() || !unmanaged_users.is_empty() || unmanaged_acls > 0) {
        let mut parts = Vec::new();
        if !unmanaged_topics.is_empty() {
            parts.push(format!("{} topic(s) [{}]", unmanaged_topics.len(), shorten(&unmanaged_topics)));
        }
        if !unmanaged_users.is_empty() {
            parts.push(format!("{} user(s) [{}]", unmanaged_users.len(), shorten(&unmanaged_users)));
        }
        if unmanaged_acls > 0 {
            parts.push(format!("{unmanaged_acls} ACL binding(s)"));
        }
        notes.push(format!(
            "not in fink.toml, left alone because prune is off: {} (set prune = true or pass --prune to delete them)",
            parts.join(", ")
        ));
    }

    // Creates and updates: users, topics, ACLs. Deletions after, in reverse.
    changes.sort_by_key(|c| {
        let k = c.kind as u8;
        match c.action {
            Action::Delete => (1, 2 - k, c.name.clone()),
            _ => (0, k, c.name.clone()),
        }
    });

    Plan {
        format: PLAN_FORMAT.into(),
        cluster_id: live.cluster_id.clone(),
        config_hash: config_hash.to_string(),
        prune,
        changes,
        blockers,
        notes,
    }
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
    Ok(diff(&loaded.config, &live, &passwords, admin_user, prune, &loaded.hash))
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
