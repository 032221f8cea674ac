//! Semantic checks: ranges, names, and cross-references between sections.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::model::*;
use super::span::{KeyPath, Seg};
use super::Severity;

type Finding = (KeyPath, Severity, String);

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

struct Checker {
    out: Vec<Finding>,
}

impl Checker {
    fn err(&mut self, path: KeyPath, msg: impl Into<String>) {
        self.out.push((path, Severity::Error, msg.into()));
    }
    fn warn(&mut self, path: KeyPath, msg: impl Into<String>) {
        self.out.push((path, Severity::Warning, msg.into()));
    }
}

/// Kafka's legal topic names: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
}

/// Names declared anywhere, for cross-references.
struct Names<'a> {
    topics: BTreeSet<&'a str>,
    users: BTreeSet<&'a str>,
    admin_user: Option<&'a str>,
}

pub fn validate(cfg: &Config, base: &Path) -> Vec<Finding> {
    let mut c = Checker { out: Vec::new() };
    let n = Names {
        topics: cfg.topics.iter().map(|t| t.name.as_str()).collect(),
        users: cfg.users.iter().map(|u| u.name.as_str()).collect(),
        admin_user: cfg.cluster.admin.as_ref().map(|a| a.user.as_str()),
    };
    for check in [
        check_cluster,
        check_local,
        check_defaults,
        check_topics,
        check_users,
        check_acls,
        check_filters,
        check_quotas,
        check_streams,
        check_run,
    ] {
        check(&mut c, cfg, base, &n);
    }
    check_consts(&mut c, cfg);
    check_notify(&mut c, cfg, base);
    c.out
}

/// [cluster]
fn check_cluster(c: &mut Checker, cfg: &Config, base: &Path, _n: &Names) {
    if cfg.cluster.bootstrap.is_empty() {
        c.err(vec![key("cluster"), key("bootstrap")], "cluster: bootstrap must list at least one host:port");
    }
    for (i, b) in cfg.cluster.bootstrap.iter().enumerate() {
        let ok = b.rsplit_once(':').map(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()).unwrap_or(false);
        if !ok {
            c.err(
                vec![key("cluster"), key("bootstrap"), Seg::Index(i)],
                format!("cluster: bootstrap server {b:?} is not host:port"),
            );
        }
    }
    let sasl = cfg.cluster.security_protocol != SecurityProtocol::Plaintext;
    match &cfg.cluster.admin {
        None if sasl => c.err(
            vec![key("cluster")],
            format!(
                "cluster: [cluster.admin] user and password are required with {}",
                cfg.cluster.security_protocol.as_str()
            ),
        ),
        Some(admin) => {
            check_secret(c, vec![key("cluster"), key("admin"), key("password")], &admin.password, base, "cluster admin")
        }
        None => {}
    }
}

/// [local]
fn check_local(c: &mut Checker, cfg: &Config, _base: &Path, _n: &Names) {
    let l = &cfg.local;
    if !(1..=3).contains(&l.brokers) {
        c.err(vec![key("local"), key("brokers")], format!("local: brokers must be 1 to 3, not {}", l.brokers));
    }
    if l.port == 0 || l.controller_port == 0 {
        c.err(vec![key("local"), key("port")], "local: ports must be non-zero");
    }
    let n = l.brokers.max(1) as u16;
    let (a0, a1) = (l.port as u32, l.port as u32 + n as u32);
    let (b0, b1) = (l.controller_port as u32, l.controller_port as u32 + n as u32);
    if a0 < b1 && b0 < a1 {
        c.err(vec![key("local"), key("controller_port")], "local: controller ports overlap the broker ports");
    }
    if a1 > 65536 || b1 > 65536 {
        c.err(vec![key("local"), key("port")], "local: ports run past 65535");
    }
    let heap_ok = l.heap.len() > 1
        && l.heap[..l.heap.len() - 1].chars().all(|ch| ch.is_ascii_digit())
        && matches!(l.heap.chars().last(), Some('m' | 'M' | 'g' | 'G'));
    if !heap_ok {
        c.err(vec![key("local"), key("heap")], format!("local: heap {:?} must look like 512m or 1g", l.heap));
    }
}

/// [defaults]
fn check_defaults(c: &mut Checker, cfg: &Config, _base: &Path, _n: &Names) {
    if let Some(p) = cfg.defaults.partitions {
        if p < 1 {
            c.err(vec![key("defaults"), key("partitions")], "defaults: partitions must be at least 1");
        }
    }
    if let Some(r) = cfg.defaults.replication_factor {
        if r < 1 {
            c.err(vec![key("defaults"), key("replication_factor")], "defaults: replication_factor must be at least 1");
        }
    }

    for (i, pat) in cfg.ignore.iter().enumerate() {
        if pat.is_empty() {
            c.err(vec![key("ignore"), Seg::Index(i)], "ignore: empty pattern");
        }
    }
}

/// A reference to the `name` of item `index` of `array`, replaced by its
/// file:line when the message is located (see `config::place_refs`).
pub fn first_at(array: &str, index: usize) -> String {
    format!("@@{array}/{index}@@")
}

/// [[topic]]
fn check_topics(c: &mut Checker, cfg: &Config, _base: &Path, _n: &Names) {
    let mut topics = BTreeMap::new();
    for (i, t) in cfg.topics.iter().enumerate() {
        let at = |k: &str| vec![key("topic"), Seg::Index(i), key(k)];
        let ctx = format!("topic {:?}", t.name);
        if let Some(r) = &t.replicas {
            let rows: BTreeSet<usize> = r.iter().map(|x| x.len()).collect();
            if r.iter().any(|x| x.is_empty() || x.iter().collect::<BTreeSet<_>>().len() != x.len()) {
                c.err(
                    at("replicas"),
                    format!("{ctx}: each partition's replicas must be distinct broker ids, at least one"),
                );
            } else if rows.len() > 1 {
                c.err(
                    at("replicas"),
                    format!("{ctx}: every partition needs as many replicas (the replication factor)"),
                );
            } else if let (Some(rf), Some(n)) = (t.replication_factor, rows.first()) {
                if rf as usize != *n {
                    c.err(at("replicas"), format!("{ctx}: {n} replicas a partition, but replication_factor = {rf}"));
                }
            }
            if let Some(p) = t.partitions.filter(|p| *p as usize != r.len()) {
                c.err(at("replicas"), format!("{ctx}: replicas for {} partition(s), but partitions = {p}", r.len()));
            }
        }
        if !valid_topic_name(&t.name) {
            c.err(at("name"), format!("{ctx}: invalid name (1 to 249 of letters, digits, '.', '_', '-')"));
        } else if t.name.starts_with("__") {
            c.err(at("name"), format!("{ctx}: names starting with '__' are reserved for Kafka's internal topics"));
        }
        if let Some(first) = topics.insert(t.name.as_str(), i) {
            topics.insert(t.name.as_str(), first);
            c.err(at("name"), format!("{ctx}: declared twice: here and at {}", first_at("topic", first)));
        }
        if let Some(p) = t.partitions {
            if p < 1 {
                c.err(at("partitions"), format!("{ctx}: partitions must be at least 1"));
            }
        }
        if let Some(r) = t.replication_factor {
            if r < 1 {
                c.err(at("replication_factor"), format!("{ctx}: replication_factor must be at least 1"));
            }
        }
        for k in t.config.keys() {
            if k.is_empty() || !k.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '.') {
                c.err(
                    vec![key("topic"), Seg::Index(i), key("config"), key(k)],
                    format!("{ctx}: {k:?} is not a topic config name"),
                );
            }
        }
    }
}

/// [[user]]
fn check_users(c: &mut Checker, cfg: &Config, base: &Path, n: &Names) {
    let mut users = BTreeMap::new();
    for (i, u) in cfg.users.iter().enumerate() {
        let at = |k: &str| vec![key("user"), Seg::Index(i), key(k)];
        let ctx = format!("user {:?}", u.name);
        if u.name.is_empty() || u.name.chars().any(|ch| ch.is_whitespace() || ch == ',' || ch == '=') {
            c.err(at("name"), format!("{ctx}: invalid name"));
        }
        if let Some(first) = users.insert(u.name.as_str(), i) {
            users.insert(u.name.as_str(), first);
            c.err(at("name"), format!("{ctx}: declared twice: here and at {}", first_at("user", first)));
        }
        if Some(u.name.as_str()) == n.admin_user {
            c.err(at("name"), format!("{ctx}: is the cluster admin; fink does not manage its own credentials"));
        }
        if !(4096..=16384).contains(&u.iterations) {
            c.err(at("iterations"), format!("{ctx}: iterations must be 4096 to 16384, not {}", u.iterations));
        }
        check_secret(c, at("password"), &u.password, base, &ctx);
    }
}

/// [[acl]]
fn check_acls(c: &mut Checker, cfg: &Config, _base: &Path, n: &Names) {
    for (i, a) in cfg.acls.iter().enumerate() {
        let at = |k: &str| vec![key("acl"), Seg::Index(i), key(k)];
        let who = a.user.as_deref().map(|u| format!("User:{u}")).or(a.principal.clone()).unwrap_or_default();
        let ctx = format!("acl #{} ({who})", i + 1);
        match (&a.user, &a.principal) {
            (Some(_), Some(_)) => c.err(at("principal"), format!("{ctx}: give either user or principal, not both")),
            (None, None) => c.err(vec![key("acl"), Seg::Index(i)], format!("{ctx}: user (or principal) is required")),
            (Some(u), None) => {
                if !n.users.contains(u.as_str()) && Some(u.as_str()) != n.admin_user {
                    c.err(at("user"), format!("{ctx}: user {u:?} is not declared in [[user]]"));
                }
            }
            (None, Some(p)) => {
                if !p.contains(':') {
                    c.err(at("principal"), format!("{ctx}: principal {p:?} must look like User:name"));
                }
            }
        }
        match (a.role, a.resource) {
            (Some(_), Some(_)) => c.err(at("role"), format!("{ctx}: give either role or resource, not both")),
            (None, None) => c.err(
                vec![key("acl"), Seg::Index(i)],
                format!("{ctx}: role (producer/consumer) or resource is required"),
            ),
            (Some(role), None) => {
                match &a.topic {
                    None => {
                        c.err(vec![key("acl"), Seg::Index(i)], format!("{ctx}: role {} needs a topic", role.as_str()))
                    }
                    Some(t) if t.is_empty() => c.err(at("topic"), format!("{ctx}: topic is empty")),
                    Some(t) if a.pattern == PatternType::Literal && t != "*" && !n.topics.contains(t.as_str()) => c
                        .err(
                            at("topic"),
                            format!(
                            "{ctx}: topic {t:?} is not declared in [[topic]] (use pattern = \"prefixed\" for a prefix)"
                        ),
                        ),
                    _ => {}
                }
                if role == AclRole::Consumer && a.group.is_none() {
                    c.err(vec![key("acl"), Seg::Index(i)], format!("{ctx}: a consumer role needs a group"));
                }
                if role == AclRole::Producer && a.group.is_some() {
                    c.err(at("group"), format!("{ctx}: a producer role takes no group"));
                }
                if !a.operations.is_empty() || a.name.is_some() {
                    c.err(at("role"), format!("{ctx}: operations and name belong to explicit ACLs, not to a role"));
                }
            }
            (None, Some(kind)) => {
                if a.operations.is_empty() {
                    c.err(vec![key("acl"), Seg::Index(i)], format!("{ctx}: operations is required"));
                }
                for (j, op) in a.operations.iter().enumerate() {
                    if AclOperation::parse(op).is_none() {
                        c.err(
                            vec![key("acl"), Seg::Index(i), key("operations"), Seg::Index(j)],
                            format!(
                                "{ctx}: unknown operation {op:?} (one of {})",
                                AclOperation::EVERY.map(AclOperation::as_str).join(", ")
                            ),
                        );
                    }
                }
                if kind != ResourceKind::Cluster && a.name.as_deref().unwrap_or("").is_empty() {
                    c.err(
                        vec![key("acl"), Seg::Index(i)],
                        format!("{ctx}: name is required for a {} resource", kind.as_str()),
                    );
                }
                if a.topic.is_some() || a.group.is_some() {
                    c.err(
                        at("resource"),
                        format!("{ctx}: topic and group belong to role shortcuts; use name with resource"),
                    );
                }
            }
        }
    }
}

/// [filter.NAME]
fn check_filters(c: &mut Checker, cfg: &Config, base: &Path, _n: &Names) {
    for (name, f) in &cfg.filters {
        let at = |k: &str| vec![key("filter"), key(name), key(k)];
        let Some(py) = &f.python else {
            // Compiling the expression is `check::filters`' job (config is a leaf).
            if f.expr.trim().is_empty() {
                c.err(at("expr"), format!("filter {name:?}: expr is empty (a filter has expr or python)"));
            }
            for k in ["args", "dataframe", "fields"] {
                if (k == "args" && f.args.is_some())
                    || (k == "dataframe" && f.dataframe)
                    || (k == "fields" && f.fields.is_some())
                {
                    c.err(at(k), format!("filter {name:?}: {k} belongs to a python filter"));
                }
            }
            continue;
        };
        if !f.expr.is_empty() {
            c.err(at("expr"), format!("filter {name:?}: has both expr and python; keep one"));
        }
        if f.dataframe && f.args.is_some() {
            c.err(at("args"), format!("filter {name:?}: a dataframe filter takes no args"));
        }
        for (arg, names) in f.fields.iter().flatten() {
            if names.is_empty() {
                c.err(
                    vec![key("filter"), key(name), key("fields"), key(arg)],
                    format!("filter {name:?}: fields.{arg} lists no field (leave {arg} out to pass it whole)"),
                );
            }
        }
        match py.rsplit_once(':') {
            Some((target, func)) if !target.is_empty() && !func.is_empty() => {
                let file = target.ends_with(".py") || target.contains('/');
                if file && !base.join(target).is_file() {
                    c.err(at("python"), format!("filter {name:?}: no file {target} (paths are relative to this file)"));
                }
                if !func.chars().all(|ch| ch.is_alphanumeric() || ch == '_') {
                    c.err(at("python"), format!("filter {name:?}: {func:?} is not a Python function name"));
                }
            }
            _ => c.err(
                at("python"),
                format!("filter {name:?}: python = {py:?}: expected \"module:function\" or \"file.py:function\""),
            ),
        }
    }
}

/// [[quota]]
fn check_quotas(c: &mut Checker, cfg: &Config, _base: &Path, n: &Names) {
    let mut seen: std::collections::BTreeMap<(Option<&str>, Option<&str>), usize> = Default::default();
    for (i, q) in cfg.quotas.iter().enumerate() {
        let at = |k: &str| vec![key("quota"), Seg::Index(i), key(k)];
        let who = match (&q.user, &q.client_id) {
            (None, None) => {
                c.err(vec![key("quota"), Seg::Index(i)], format!("quota[{i}]: name a user, a client_id or both"));
                continue;
            }
            (u, cl) => [u.as_ref().map(|u| format!("user {u:?}")), cl.as_ref().map(|c| format!("client_id {c:?}"))]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" and "),
        };
        if q.values().is_empty() {
            c.err(vec![key("quota"), Seg::Index(i)], format!("quota for {who}: set at least one rate"));
        }
        for (k, v) in q.values() {
            if !(v.is_finite() && v > 0.0) {
                c.err(at(&k), format!("quota for {who}: {k} must be a positive number"));
            }
        }
        if let Some(u) = &q.user {
            if u != "<default>" && !n.users.contains(u.as_str()) && n.admin_user != Some(u.as_str()) {
                c.warn(at("user"), format!("quota for {who}: user {u:?} is not declared in [[user]]"));
            }
        }
        if let Some(first) = seen.insert((q.user.as_deref(), q.client_id.as_deref()), i) {
            c.err(vec![key("quota"), Seg::Index(i)], format!("quota for {who}: declared twice (also quota[{first}])"));
        }
    }
}

/// [[notify]]
fn check_notify(c: &mut Checker, cfg: &Config, base: &Path) {
    for (i, n) in cfg.notify.iter().enumerate() {
        let at = |k: &str| vec![key("notify"), Seg::Index(i), key(k)];
        let ctx = format!("notify[{i}]");
        if !cfg.streams.iter().any(|s| s.name == n.stream) {
            c.err(at("stream"), format!("{ctx}: stream {:?} is not declared in [[stream]]", n.stream));
        }
        if n.max_per_minute == 0 {
            c.err(at("max_per_minute"), format!("{ctx}: max_per_minute must be at least 1"));
        }
        if n.format == NotifyFormat::Telegram && n.chat_id.is_none() {
            c.err(at("format"), format!("{ctx}: format = \"telegram\" needs chat_id"));
        }
        if n.template.matches('{').count() != n.template.matches('}').count() {
            c.err(at("template"), format!("{ctx}: unbalanced braces in the template"));
        }
        if let Err(e) = n.url.check(base) {
            c.err(at("url"), format!("{ctx}: url: {e}"));
        }
    }
}

/// [const]
fn check_consts(c: &mut Checker, cfg: &Config) {
    for name in cfg.consts.keys() {
        let upper = name.chars().next().is_some_and(|ch| ch.is_ascii_uppercase())
            && name.chars().all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_');
        if !upper {
            c.err(
                vec![key("const"), key(name)],
                format!("const {name:?}: constant names are upper case (letters, digits, '_'), as EG_HOST"),
            );
        }
    }
}

/// [[stream]]
fn check_streams(c: &mut Checker, cfg: &Config, base: &Path, n: &Names) {
    for (name, st) in &cfg.storage {
        let ctx = format!("storage {name:?}");
        for (k, secret) in [("access_key", &st.access_key), ("secret_key", &st.secret_key)] {
            if let Some(secret) = secret {
                check_secret(c, vec![key("storage"), key(name), key(k)], secret, base, &ctx);
            }
        }
    }
    let mut streams = BTreeMap::new();
    for (i, s) in cfg.streams.iter().enumerate() {
        let at = |k: &str| vec![key("stream"), Seg::Index(i), key(k)];
        let ctx = format!("stream {:?}", s.name);
        if s.name.is_empty() {
            c.err(at("name"), "stream: name is empty");
        }
        if let Some(first) = streams.insert(s.name.as_str(), i) {
            streams.insert(s.name.as_str(), first);
            c.err(at("name"), format!("{ctx}: declared twice: here and at {}", first_at("stream", first)));
        }
        if !n.topics.contains(s.topic.as_str()) {
            c.err(at("topic"), format!("{ctx}: topic {:?} is not declared in [[topic]]", s.topic));
        }
        for p in unknown_placeholders(&s.source.path) {
            c.err(
                vec![key("stream"), Seg::Index(i), key("source"), key("path")],
                format!("{ctx}: unknown placeholder {p} in the source path (known: {{night}}, {{year}}, {{month}}, {{day}})"),
            );
        }
        for (j, f) in s.filters.iter().enumerate() {
            if !cfg.filters.contains_key(f) {
                c.err(
                    vec![key("stream"), Seg::Index(i), key("filters"), Seg::Index(j)],
                    format!("{ctx}: filter {f:?} is not declared (no [filter.{f}])"),
                );
            }
        }
        if let Some(u) = &s.user {
            if !n.users.contains(u.as_str()) && Some(u.as_str()) != n.admin_user {
                c.err(at("user"), format!("{ctx}: user {u:?} is not declared in [[user]]"));
            }
        }
        if s.source.path.is_empty() {
            c.err(
                vec![key("stream"), Seg::Index(i), key("source"), key("path")],
                format!("{ctx}: source path is empty"),
            );
        }
        let src_at = |k: &str| vec![key("stream"), Seg::Index(i), key("source"), key(k)];
        for (k, secret) in [("access_key", &s.source.access_key), ("secret_key", &s.source.secret_key)] {
            if let Some(secret) = secret {
                check_secret(c, src_at(k), secret, base, &ctx);
            }
        }
        if let Err(e) = check_url(&s.source.path) {
            c.err(src_at("path"), format!("{ctx}: {e}"));
        }
        if let Some(name) = &s.source.storage {
            if !cfg.storage.contains_key(name) {
                c.err(src_at("storage"), format!("{ctx}: storage {name:?} is not declared (no [storage.{name}])"));
            }
        }
        if s.source.poll_interval_ms == Some(0) {
            c.err(src_at("poll_interval_ms"), format!("{ctx}: poll_interval_ms must be at least 1"));
        }
        let settings = match s.source.storage.as_ref().and_then(|n| cfg.storage.get(n)) {
            Some(base) => s.source.settings().over(base),
            None => s.source.settings(),
        };
        if settings.access_key.is_some() != settings.secret_key.is_some() {
            c.err(
                src_at("path"),
                format!("{ctx}: give both access_key and secret_key (or neither, for a public bucket)"),
            );
        }
        if let Some(e) = &settings.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                c.err(src_at("path"), format!("{ctx}: storage endpoint {e:?} is not an http:// or https:// URL"));
            } else if e.starts_with("http://") && settings.allow_http != Some(true) {
                c.err(
                    src_at("path"),
                    format!("{ctx}: endpoint {e:?} is plain http: set allow_http = true to allow it"),
                );
            }
        }
        if !s.select.is_empty() && !s.drop.is_empty() {
            for (j, d) in s.drop.iter().enumerate() {
                let top = d.split('.').next().unwrap_or(d);
                if !s.select.iter().any(|x| x == d || x == top || d.starts_with(&format!("{x}."))) {
                    c.err(
                        vec![key("stream"), Seg::Index(i), key("drop"), Seg::Index(j)],
                        format!("{ctx}: drops {d:?}, which select does not keep"),
                    );
                }
            }
        }
    }
}

fn check_secret(c: &mut Checker, path: KeyPath, s: &super::Secret, base: &Path, ctx: &str) {
    if s.is_inline() {
        c.warn(path.clone(), format!("{ctx}: inline secret; prefer {{ env = \"VAR\" }} or {{ file = \"path\" }}"));
    }
    if let Err(e) = s.check(base) {
        c.err(path, format!("{ctx}: {e}"));
    }
}

/// [run]
fn check_run(c: &mut Checker, cfg: &Config, _base: &Path, n: &Names) {
    let r = &cfg.run;
    let at = |k: &str| vec![key("run"), key(k)];
    for (k, v) in [
        ("batch_size", r.batch_size as u64),
        ("max_in_flight", r.max_in_flight as u64),
        ("stall_after_s", r.stall_after_s),
        ("shutdown_timeout_s", r.shutdown_timeout_s),
    ] {
        if v == 0 {
            c.err(at(k), format!("run: {k} must be at least 1"));
        }
    }
    if r.shutdown_timeout_s > MAX_SHUTDOWN_TIMEOUT_S {
        c.err(
            at("shutdown_timeout_s"),
            format!(
                "run: shutdown_timeout_s must be at most {MAX_SHUTDOWN_TIMEOUT_S}: a stop or a reload waits this long at most \
                 for in-flight alerts (what is unconfirmed then is sent again on the next start)"
            ),
        );
    }
    if r.stall_after_s > MAX_STALL_AFTER_S {
        c.err(at("stall_after_s"), format!("run: stall_after_s must be at most {MAX_STALL_AFTER_S}"));
    }
    if let Err(e) = check_addr(&r.metrics_addr) {
        c.err(at("metrics_addr"), format!("run: metrics_addr {:?}: {e} (\"\" turns the endpoint off)", r.metrics_addr));
    }
    for (i, s) in cfg.streams.iter().enumerate() {
        let at = |k: &str| vec![key("stream"), Seg::Index(i), key("producer"), key(k)];
        if s.producer.batch_size == Some(0) {
            c.err(at("batch_size"), format!("stream {:?}: producer batch_size must be at least 1", s.name));
        }
        for k in s.producer.properties.keys().filter(|k| OWNED_PRODUCER_PROPERTIES.contains(&k.as_str())) {
            let mut path = at("properties");
            path.push(key(k));
            c.err(
                path,
                format!(
                    "stream {:?}: producer property {k:?} is set by fink (delivery, transactions and the connection \
                     depend on it); remove it",
                    s.name
                ),
            );
        }
    }
    if !r.exactly_once() {
        return;
    }
    if !valid_topic_name(&r.state_topic) {
        c.err(at("state_topic"), format!("run: state_topic {:?} is not a legal Kafka topic name", r.state_topic));
    }
    if let Some(t) = cfg.topics.iter().find(|t| t.name == r.state_topic) {
        let compact = t.config.get("cleanup.policy").map(|v| v.to_string()).is_some_and(|v| v.contains("compact"));
        if !compact {
            c.err(
                at("state_topic"),
                format!("run: state topic {:?} is declared in [[topic]] without cleanup.policy = \"compact\"", t.name),
            );
        }
    }
    if n.topics.contains(r.state_topic.as_str()) && cfg.streams.iter().any(|s| s.topic == r.state_topic) {
        c.err(at("state_topic"), "run: a stream publishes to the state topic");
    }
    if !(1..=10_000).contains(&r.state_partitions) {
        c.err(at("state_partitions"), "run: state_partitions must be between 1 and 10000");
    }
    if r.group.is_empty() || !r.group.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch)) {
        c.err(at("group"), format!("run: group {:?} must be non-empty letters, digits, '.', '_' or '-'", r.group));
    }
    if !(100..=MAX_COMMIT_INTERVAL_MS).contains(&r.commit_interval_ms) {
        c.err(
            at("commit_interval_ms"),
            format!(
                "run: commit_interval_ms must be between 100 and {MAX_COMMIT_INTERVAL_MS}: a transaction must commit well \
                 within its {} s timeout, or the broker aborts it",
                crate::config::TRANSACTION_TIMEOUT_S
            ),
        );
    }
    if !(6_000..=300_000).contains(&r.session_timeout_ms) {
        c.err(
            at("session_timeout_ms"),
            "run: session_timeout_ms must be between 6000 and 300000 (the brokers' group session bounds)",
        );
    }
}

/// Longest `commit_interval_ms`: half the transaction timeout.
pub const MAX_COMMIT_INTERVAL_MS: u64 = crate::config::TRANSACTION_TIMEOUT_S * 1000 / 2;
/// Longest `shutdown_timeout_s`: a stop is bounded (systemd's default stop
/// timeout is 90 s; 10 minutes leaves room for a slow broker).
pub const MAX_SHUTDOWN_TIMEOUT_S: u64 = 600;
pub const MAX_STALL_AFTER_S: u64 = 86_400;

/// Producer properties fink sets itself: delivery (idempotence, acks,
/// transactions, timeouts) and the connection depend on them.
pub const OWNED_PRODUCER_PROPERTIES: &[&str] = &[
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "transactional.id",
    "transaction.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "bootstrap.servers",
    "metadata.broker.list",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "enable.gapless.guarantee",
];

/// The placeholders a source path or a topic name may use (`science/{night}`).
pub const PLACEHOLDERS: &[&str] = &["night", "year", "month", "day"];

/// `text` with the placeholders of `night` (`YYYYMMDD`) replaced.
pub fn expand_night(text: &str, night: &str) -> String {
    if night.len() != 8 {
        return text.to_string();
    }
    text.replace("{night}", night)
        .replace("{year}", &night[..4])
        .replace("{month}", &night[4..6])
        .replace("{day}", &night[6..])
}

/// Whether a source path depends on the night.
pub fn is_templated(path: &str) -> bool {
    PLACEHOLDERS.iter().any(|p| path.contains(&format!("{{{p}}}")))
}

/// Placeholders of `path` that are not known (`{nigth}`).
pub fn unknown_placeholders(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else { break };
        let name = &rest[start + 1..start + len];
        if !PLACEHOLDERS.contains(&name) {
            out.push(format!("{{{name}}}"));
        }
        rest = &rest[start + len + 1..];
    }
    out
}

/// Split a source path into a scheme and the rest: `s3://b/p` gives
/// `Some(("s3", "b/p"))`, a plain path `None`.
pub fn scheme_of(path: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = path.split_once("://")?;
    let ok = !scheme.is_empty()
        && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then_some((scheme, rest))
}

/// The schemes a source path may use.
pub const SCHEMES: &[&str] = &["file", "s3", "hdfs"];

/// Check a source URL's shape without connecting: `Err` says what is wrong.
pub fn check_url(path: &str) -> Result<(), String> {
    let Some((scheme, rest)) = scheme_of(path) else { return Ok(()) };
    match scheme {
        "file" => {
            if !rest.starts_with('/') {
                return Err(format!("{path:?}: a file:// URL needs an absolute path (file:///data/science)"));
            }
        }
        "s3" => {
            let bucket = rest.split('/').next().unwrap_or("");
            if bucket.is_empty() {
                return Err(format!("{path:?}: an s3:// URL needs a bucket (s3://bucket/prefix)"));
            }
            if !bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_')) {
                return Err(format!("{path:?}: {bucket:?} is not a valid bucket name"));
            }
        }
        "hdfs" => {
            let authority = rest.split('/').next().unwrap_or("");
            if authority.is_empty() {
                return Err(format!("{path:?}: an hdfs:// URL needs the namenode (hdfs://namenode:8020/path)"));
            }
            if let Some((_, port)) = authority.rsplit_once(':') {
                if port.parse::<u16>().is_err() {
                    return Err(format!("{path:?}: {port:?} is not a port number"));
                }
            }
        }
        other => {
            return Err(format!(
                "{path:?}: unknown scheme {other:?}; a source path is a directory, file://, s3:// or hdfs://"
            ))
        }
    }
    Ok(())
}

/// `host:port` (an empty string is allowed by callers that mean "off").
pub fn check_addr(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("not an address: expected host:port".into());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.chars().any(|ch| ch.is_whitespace() || ch == '/') {
        return Err("not an address: expected host:port".into());
    }
    port.parse::<u16>().map(|_| ()).map_err(|_| format!("{port:?} is not a port number"))
}
