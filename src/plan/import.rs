//! `fink import`: a fink.toml written from a live cluster, so that an
//! operator adopts an existing cluster (as Terraform's `import`), and `fink
//! plan` on the result shows no change. Topics with the configs set on
//! them, SCRAM users (passwords as `{ env = ... }` placeholders: Kafka never
//! gives them back), ACLs folded into `producer`/`consumer` roles where
//! their expansion matches exactly and explicit otherwise, and quotas.
//! `scope` and `ignore` apply.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::cluster::{AclBinding, LiveState};
use crate::config::{AclConfig, AclRole, Config, PatternType, ResourceKind};

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The environment variable an imported user's password is read from.
pub fn password_env(user: &str) -> String {
    let up: String =
        user.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("FINK_PASSWORD_{up}")
}

fn pattern(p: PatternType) -> &'static str {
    match p {
        PatternType::Literal => "literal",
        PatternType::Prefixed => "prefixed",
    }
}

fn role_acl(user: &str, role: AclRole, topic: &str, pat: PatternType, group: Option<(&str, PatternType)>) -> AclConfig {
    AclConfig {
        user: Some(user.to_string()),
        principal: None,
        host: "*".into(),
        role: Some(role),
        topic: Some(topic.to_string()),
        group: group.map(|g| g.0.to_string()),
        resource: None,
        name: None,
        operations: vec![],
        permission: crate::config::Permission::Allow,
        pattern: pat,
        group_pattern: group.map(|g| g.1).unwrap_or(PatternType::Literal),
    }
}

/// Roles whose expansion the live bindings hold exactly, and the bindings
/// no role covers.
fn fold_acls(cfg: &Config, live: &[&AclBinding]) -> (Vec<AclConfig>, Vec<AclBinding>) {
    let set: BTreeSet<&AclBinding> = live.iter().copied().collect();
    let mut covered: BTreeSet<AclBinding> = BTreeSet::new();
    let mut roles = Vec::new();
    let allow = |b: &AclBinding| b.permission == crate::config::Permission::Allow && b.host == "*";
    for b in live.iter().copied().filter(|b| allow(b)) {
        let Some(user) = b.principal.strip_prefix("User:") else { continue };
        if b.resource != ResourceKind::Topic {
            continue;
        }
        let mut candidates = Vec::new();
        match b.operation {
            crate::config::AclOperation::Write => {
                candidates.push(role_acl(user, AclRole::Producer, &b.name, b.pattern, None));
            }
            crate::config::AclOperation::Read => {
                // Each group this user may read.
                for g in live.iter().copied().filter(|g| allow(g)).filter(|g| {
                    g.principal == b.principal
                        && g.resource == ResourceKind::Group
                        && g.operation == crate::config::AclOperation::Read
                }) {
                    candidates.push(role_acl(user, AclRole::Consumer, &b.name, b.pattern, Some((&g.name, g.pattern))));
                }
            }
            _ => {}
        }
        for c in candidates {
            let expanded = super::expand_acl(&cfg.run, &c);
            if !expanded.is_empty() && expanded.iter().all(|e| set.contains(e)) && !roles.contains(&c) {
                covered.extend(expanded);
                roles.push(c);
                break;
            }
        }
    }
    let rest = live.iter().filter(|b| !covered.contains(**b)).map(|b| (*b).clone()).collect();
    (roles, rest)
}

/// (principal, host, resource, name, pattern, permission) of explicit ACLs.
type ExplicitKey = (String, String, ResourceKind, String, &'static str, String);

/// The fink.toml text for `live`; `cluster_table` is the `[cluster]`
/// section to keep (the connection the import used).
pub fn render(cfg: &Config, live: &LiveState, cluster_table: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut envs = Vec::new();
    let _ = writeln!(
        out,
        "#:schema ./schemas/fink.schema.json\n# Written by `fink import` from cluster {}.\n# Kafka never gives passwords back: set the variables named below to each\n# user's password (or point `password` at a file) before `fink plan`.\n",
        live.cluster_id.as_deref().unwrap_or("(unknown id)")
    );
    if !cfg.scope.is_empty() {
        let _ = writeln!(out, "scope = [{}]", cfg.scope.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "));
    }
    if !cfg.ignore.is_empty() {
        let _ = writeln!(out, "ignore = [{}]", cfg.ignore.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "));
    }
    let _ = writeln!(out, "{}", cluster_table.trim_end());
    let admin = cfg.cluster.admin.as_ref().map(|a| a.user.as_str());
    // What fink itself creates from [run] is not declared again.
    let state_topic = cfg.run.exactly_once().then_some(cfg.run.state_topic.as_str());

    for t in live.topics.values() {
        if t.internal
            || t.name.starts_with("__")
            || Some(t.name.as_str()) == state_topic
            || !super::managed(cfg, &t.name)
        {
            continue;
        }
        let _ = write!(
            out,
            "\n[[topic]]\nname = {}\npartitions = {}\nreplication_factor = {}\n",
            q(&t.name),
            t.partitions.len(),
            t.replication_factor
        );
        if !t.configs.is_empty() {
            let items: Vec<String> = t.configs.iter().map(|(k, v)| format!("{} = {}", q(k), q(v))).collect();
            let _ = writeln!(out, "config = {{ {} }}", items.join(", "));
        }
    }
    for u in live.users.values() {
        if Some(u.name.as_str()) == admin || !super::managed(cfg, &u.name) {
            continue;
        }
        // One mechanism per declared user: the strongest live one.
        let Some(c) = u.credentials.iter().max_by_key(|c| c.mechanism == crate::config::ScramMechanism::Sha512) else {
            continue;
        };
        let env = password_env(&u.name);
        let _ = write!(
            out,
            "\n[[user]]\nname = {}\npassword = {{ env = {} }}\nmechanism = {}\niterations = {}\n",
            q(&u.name),
            q(&env),
            q(c.mechanism.as_str()),
            c.iterations
        );
        envs.push(env);
    }
    let acls: Vec<&AclBinding> = live.acls.iter().filter(|b| super::managed_acl(cfg, b)).collect();
    let (roles, rest) = fold_acls(cfg, &acls);
    for r in &roles {
        let _ = write!(
            out,
            "\n[[acl]]\nuser = {}\nrole = {}\ntopic = {}\n",
            q(r.user.as_deref().unwrap_or_default()),
            q(r.role.map(|x| x.as_str()).unwrap_or_default()),
            q(r.topic.as_deref().unwrap_or_default())
        );
        if r.pattern != PatternType::Literal {
            let _ = writeln!(out, "pattern = {}", q(pattern(r.pattern)));
        }
        if let Some(g) = &r.group {
            let _ = writeln!(out, "group = {}", q(g));
            if r.group_pattern != PatternType::Literal {
                let _ = writeln!(out, "group_pattern = {}", q(pattern(r.group_pattern)));
            }
        }
    }
    // The rest, one [[acl]] per resource and permission.
    let mut grouped: BTreeMap<ExplicitKey, Vec<String>> = BTreeMap::new();
    for b in rest {
        let perm = format!("{:?}", b.permission).to_lowercase();
        grouped
            .entry((b.principal.clone(), b.host.clone(), b.resource, b.name.clone(), pattern(b.pattern), perm))
            .or_default()
            .push(b.operation.as_str().to_string());
    }
    for ((principal, host, resource, name, pat, perm), ops) in grouped {
        match principal.strip_prefix("User:") {
            Some(u) => {
                let _ = write!(out, "\n[[acl]]\nuser = {}\n", q(u));
            }
            None => {
                let _ = write!(out, "\n[[acl]]\nprincipal = {}\n", q(&principal));
            }
        }
        let _ = writeln!(out, "resource = {}", q(resource.as_str()));
        if resource != ResourceKind::Cluster {
            let _ = writeln!(out, "name = {}", q(&name));
        }
        let ops: Vec<String> = ops.iter().map(|o| q(o)).collect();
        let _ = writeln!(out, "operations = [{}]", ops.join(", "));
        if pat != "literal" {
            let _ = writeln!(out, "pattern = {}", q(pat));
        }
        if perm != "allow" {
            let _ = writeln!(out, "permission = {}", q(&perm));
        }
        if host != "*" {
            let _ = writeln!(out, "host = {}", q(&host));
        }
    }
    if let Ok(quotas) = &live.quotas {
        for l in quotas.values() {
            if ![&l.entity.user, &l.entity.client_id].into_iter().flatten().all(|n| super::managed(cfg, n)) {
                continue;
            }
            out.push_str("\n[[quota]]\n");
            if let Some(u) = &l.entity.user {
                let _ = writeln!(out, "user = {}", q(u));
            }
            if let Some(c) = &l.entity.client_id {
                let _ = writeln!(out, "client_id = {}", q(c));
            }
            for (k, v) in &l.values {
                let _ = writeln!(out, "{k} = {v}");
            }
        }
    }
    (out, envs)
}
