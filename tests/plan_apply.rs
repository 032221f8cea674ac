//! `fink plan` / `fink apply` against the live cluster. Every test manages
//! only names under its own unique prefix (`scope`), so tests run in parallel
//! and never prune each other's resources.

mod common;
use std::time::Duration;

use common::*;
use fink::cluster::{check_login, Admin, Login};

struct Case {
    w: Workspace,
    p: String,
    /// Every command's output, to check that no secret ever shows.
    seen: std::cell::RefCell<String>,
}

impl Case {
    /// At-least-once: these cases count topics, users and ACLs, without
    /// the state topic exactly-once adds (see `exactly_once`).
    fn new(tag: &str) -> Case {
        let c = Case::exactly_once(tag);
        c.w.write("delivery", "at-least-once");
        c
    }
    fn exactly_once(tag: &str) -> Case {
        Case { w: Workspace::new(), p: unique(tag), seen: Default::default() }
    }
    /// Write fink.toml: top-level keys of `body` first (TOML needs them
    /// before any table), then the cluster header, then the rest. `@` in
    /// `body` stands for this case's unique prefix.
    fn config(&self, body: &str) {
        let body = body.replace('@', &self.p);
        let split = body.find("\n[").map(|i| i + 1).unwrap_or(if body.starts_with('[') { 0 } else { body.len() });
        let split = if body.starts_with('[') { 0 } else { split };
        let (top, tables) = body.split_at(split);
        self.w.write(
            "fink.toml",
            &format!("scope = [\"{}*\"]\n{top}\n{}\n{tables}", self.p, Workspace::cluster_header()),
        );
    }
    fn fink(&self, args: &[&str]) -> Run {
        let delivery = std::fs::read_to_string(self.w.path().join("delivery")).unwrap_or("exactly-once".into());
        let r: Run = self.w.cmd().env("FINK_RUN__DELIVERY", delivery).args(args).output().unwrap().into();
        self.seen.borrow_mut().push_str(&r.all());
        r
    }
    fn apply(&self) -> Run {
        let r = self.fink(&["apply", "--auto-approve"]);
        assert_eq!(r.code, 0, "apply failed:\n{}", r.all());
        r
    }
    fn assert_converged(&self) {
        let r = self.fink(&["plan", "--detailed-exitcode"]);
        assert_eq!(r.code, 0, "expected no changes:\n{}", r.all());
        assert!(r.stdout.contains("No changes."), "{}", r.stdout);
    }
    fn assert_no_secret(&self, secrets: &[&str]) {
        let seen = self.seen.borrow();
        for s in secrets {
            assert!(!seen.contains(s), "secret {s:?} appeared in output");
        }
    }
}

fn admin() -> Admin {
    Admin::connect(admin_conn()).expect("admin connects")
}

#[test]
fn topic_create_grow_configs_and_refused_decrease() {
    let c = Case::new("tp");
    c.config("[[topic]]\nname = \"@_a\"\npartitions = 1\n[topic.config]\n\"retention.ms\" = 3600000\n\"cleanup.policy\" = \"delete\"\n");
    let r = c.fink(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stdout.contains(&format!("+ topic {}_a", c.p)), "{}", r.stdout);
    assert!(r.stdout.contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{}", r.stdout);
    c.apply();
    c.assert_converged();
    let a = admin();
    let (_, topics) = a.topics().unwrap();
    let t = &topics[&format!("{}_a", c.p)];
    assert_eq!(t.partitions.len(), 1);
    assert_eq!(t.configs.get("retention.ms").map(String::as_str), Some("3600000"));

    // Grow partitions, change one config, drop another: it goes back to default.
    c.config("[[topic]]\nname = \"@_a\"\npartitions = 3\n[topic.config]\n\"retention.ms\" = 7200000\n");
    let r = c.fink(&["plan"]);
    assert!(r.stdout.contains("partitions             1 -> 3") || r.stdout.contains("1 -> 3"), "{}", r.stdout);
    assert!(r.stdout.contains("3600000 -> 7200000"), "{}", r.stdout);
    assert!(r.stdout.contains("delete -> (default)"), "{}", r.stdout);
    assert!(r.stdout.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{}", r.stdout);
    c.apply();
    c.assert_converged();
    let (_, topics) = a.topics().unwrap();
    let t = &topics[&format!("{}_a", c.p)];
    assert_eq!(t.partitions.len(), 3);
    assert_eq!(t.configs.get("retention.ms").map(String::as_str), Some("7200000"));
    assert_eq!(t.configs.get("cleanup.policy"), None, "removed key must return to the default");

    // A decrease is refused with an explanation, and nothing is applied.
    c.config("[[topic]]\nname = \"@_a\"\npartitions = 2\n[topic.config]\n\"retention.ms\" = 1000\n");
    let r = c.fink(&["plan"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stdout.contains("partitions 3 -> 2 is a decrease, which Kafka cannot do"), "{}", r.stdout);
    let r = c.fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    let (_, topics) = a.topics().unwrap();
    assert_eq!(topics[&format!("{}_a", c.p)].configs.get("retention.ms").map(String::as_str), Some("7200000"));

    // More replicas than brokers: refused with the reason (moves that fit
    // are tested on three brokers, tests/three_brokers.rs).
    c.config("[[topic]]\nname = \"@_a\"\npartitions = 3\nreplication_factor = 3\n[topic.config]\n\"retention.ms\" = 7200000\n");
    let r = c.fink(&["plan"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("replication_factor 3 is more than the 1 broker(s)"), "{}", r.all());
    // ... at the file:line of the key that asks for it.
    let at = |needle: &str| {
        let text = std::fs::read_to_string(c.w.path().join("fink.toml")).unwrap();
        let line = text.lines().position(|l| l.starts_with(needle)).expect(needle) + 1;
        format!("fink.toml:{line}:")
    };
    assert!(r.all().contains(&at("replication_factor = 3")), "{}", r.all());

    // A replica on a broker id the cluster does not have, on a topic to
    // create and on one to move: refused at the line of `replicas`.
    c.config(
        "[[topic]]\nname = \"@_a\"\npartitions = 3\nreplicas = [[1], [1], [7]]\n[topic.config]\n\"retention.ms\" = 7200000\n\
         [[topic]]\nname = \"@_new\"\nreplicas = [[9]]\n",
    );
    let r = c.fink(&["plan"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("replicas name broker 7, which is not in the cluster"), "{}", r.all());
    assert!(r.all().contains("replicas name broker 9, which is not in the cluster"), "{}", r.all());
    assert!(r.all().contains(&at("replicas = [[1], [1], [7]]")), "{}", r.all());
    assert!(r.all().contains(&at("replicas = [[9]]")), "{}", r.all());
    let r = c.fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(!a.topics().unwrap().1.contains_key(&format!("{}_new", c.p)), "nothing is created");
}

#[test]
fn users_create_password_change_iterations_and_delete() {
    let c = Case::new("us");
    let pw1 = "first-Password-123";
    let pw2 = "second-Password-456";
    c.w.secret("u.pw", pw1);
    c.config("[[user]]\nname = \"@_u\"\npassword = { file = \"secrets/u.pw\" }\n");
    let r = c.fink(&["plan", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["summary"]["add"], 1);
    c.apply();
    c.assert_converged();
    let user = format!("{}_u", c.p);
    assert_eq!(check_login(&conn(&user, pw1), Duration::from_secs(20)), Login::Accepted);

    // The password in the file changes: plan sees it by logging in, without storing secrets.
    c.w.secret("u.pw", pw2);
    let r = c.fink(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stdout.contains("password  (differs)"), "{}", r.stdout);
    let r = c.fink(&["plan", "--output", "json"]);
    assert!(r.stdout.contains("(differs)"), "{}", r.stdout);
    c.apply();
    assert!(
        matches!(check_login(&conn(&user, pw1), Duration::from_secs(20)), Login::Refused(_)),
        "old password still works"
    );
    assert_eq!(check_login(&conn(&user, pw2), Duration::from_secs(20)), Login::Accepted);
    c.assert_converged();

    // Iterations and mechanism are part of the desired state.
    c.config("[[user]]\nname = \"@_u\"\niterations = 4096\nmechanism = \"SCRAM-SHA-256\"\npassword = { file = \"secrets/u.pw\" }\n");
    let r = c.fink(&["plan"]);
    assert!(r.stdout.contains("SCRAM-SHA-512 -> SCRAM-SHA-256"), "{}", r.stdout);
    c.apply();
    c.assert_converged();
    let users = admin().users().unwrap();
    let creds = &users[&user].credentials;
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0].iterations, 4096);
    assert_eq!(creds[0].mechanism.as_str(), "SCRAM-SHA-256");

    // Removed from the file: kept without prune, deleted with it.
    c.config("");
    let r = c.fink(&["plan"]);
    assert!(r.stdout.contains("No changes."), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("1 user(s) [{user}]")), "{}", r.stdout);
    let r = c.fink(&["apply", "--auto-approve", "--prune"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains(&format!("- user {user}")), "{}", r.stdout);
    assert!(!admin().users().unwrap().contains_key(&user));
    c.assert_no_secret(&[pw1, pw2]);
}

#[test]
fn acls_grant_and_revoke_access() {
    let c = Case::exactly_once("ac");
    let pw = "acl-user-Password-1";
    c.w.secret("u.pw", pw);
    let base = "[[topic]]\nname = \"@_t\"\n\n[[user]]\nname = \"@_u\"\npassword = { file = \"secrets/u.pw\" }\n";
    c.config(base);
    c.apply();
    let topic = format!("{}_t", c.p);
    let user = conn(&format!("{}_u", c.p), pw);
    assert!(produce(&user, &topic, b"k", b"v").is_err(), "no ACL yet: write must fail");

    // Producer role: the user can write.
    let producer = "\n[[acl]]\nuser = \"@_u\"\nrole = \"producer\"\ntopic = \"@_t\"\n";
    c.config(&format!("{base}{producer}"));
    let r = c.fink(&["plan"]);
    // Exactly-once (the default) adds the transactional id prefix, the
    // state topic and the group that shares streams between instances.
    assert!(r.stdout.contains("Plan: 11 to add"), "{}", r.stdout);
    assert!(r.stdout.contains("IdempotentWrite on cluster kafka-cluster"), "{}", r.stdout);
    assert!(r.stdout.contains("Write on transactional_id prefix"), "{}", r.stdout);
    assert!(r.stdout.contains("Write on topic _fink_state"), "{}", r.stdout);
    c.apply();
    c.assert_converged();
    produce(&user, &topic, b"k", b"hello").expect("producer ACL allows writing");

    // Consumer role: the user can read.
    let consumer = "\n[[acl]]\nuser = \"@_u\"\nrole = \"consumer\"\ntopic = \"@_t\"\ngroup = \"@_g\"\ngroup_pattern = \"prefixed\"\n";
    c.config(&format!("{base}{producer}{consumer}"));
    c.apply();
    let group = format!("{}_g_1", c.p);
    let got = consume_group(&user, &topic, &group, 1, 1, Duration::from_secs(20)).expect("consumer ACL allows reading");
    assert_eq!(got[0].1, b"hello");

    // Consumer ACL removed (with prune): reading is refused again.
    c.config(&format!("prune = true\n{base}{producer}"));
    let r = c.fink(&["plan"]);
    // Describe on the topic stays: the producer role grants it too.
    assert!(r.stdout.contains("Plan: 0 to add, 0 to change, 2 to destroy."), "{}", r.stdout);
    c.apply();
    c.assert_converged();
    let err =
        consume_group(&user, &topic, &group, 1, 1, Duration::from_secs(15)).expect_err("read must fail after revoke");
    assert!(err.contains("uthoriz"), "{err}");
    c.assert_no_secret(&[pw]);
}

#[test]
fn prune_off_never_deletes_and_apply_is_idempotent() {
    let c = Case::new("pr");
    c.config("[[topic]]\nname = \"@_keep\"\n[[topic]]\nname = \"@_gone\"\n");
    c.apply();
    let r = c.fink(&["apply", "--auto-approve"]);
    assert!(r.stdout.contains("No changes."), "second apply must be a no-op:\n{}", r.stdout);
    c.config("[[topic]]\nname = \"@_keep\"\n");
    let r = c.fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("No changes."), "{}", r.stdout);
    assert!(r.stdout.contains("left alone because prune is off"), "{}", r.stdout);
    assert!(admin().topics().unwrap().1.contains_key(&format!("{}_gone", c.p)));
}

#[test]
fn stale_saved_plan_is_refused_and_fresh_one_applies() {
    let c = Case::new("st");
    c.config("[[topic]]\nname = \"@_a\"\n[[topic]]\nname = \"@_b\"\n");
    let plan_file = c.w.path().join("plan.json");
    let r = c.fink(&["plan", "-o", plan_file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.all());
    // Someone else creates one of the topics meanwhile.
    let other = Workspace::new();
    other.config(&format!("[[topic]]\nname = \"{}_a\"\n", c.p));
    assert_eq!(other.fink(&["apply", "--auto-approve"]).code, 0);
    let r = c.fink(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("the saved plan is stale"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("topic {}_a", c.p)), "{}", r.stderr);
    assert!(!admin().topics().unwrap().1.contains_key(&format!("{}_b", c.p)), "a stale plan must change nothing");
    // A fresh plan applies without a prompt.
    let r = c.fink(&["plan", "-o", plan_file.to_str().unwrap()]);
    assert_eq!(r.code, 0);
    let r = c.fink(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.all());
    c.assert_converged();
}

#[test]
fn wrong_cluster_id_is_refused() {
    let c = Case::new("id");
    c.w.write(
        "fink.toml",
        &(Workspace::cluster_header().replace("[cluster.admin]", "id = \"not-this-cluster\"\n[cluster.admin]")
            + &format!("[[topic]]\nname = \"{}_x\"\n", c.p)),
    );
    for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let r = c.fink(args);
        assert_eq!(r.code, 1, "{}", r.all());
        assert!(r.stderr.contains("expects cluster id \"not-this-cluster\""), "{}", r.stderr);
    }
    assert!(!admin().topics().unwrap().1.contains_key(&format!("{}_x", c.p)));
}

#[test]
fn apply_without_terminal_or_approval_refuses() {
    let c = Case::new("na");
    c.config("[[topic]]\nname = \"@_x\"\n");
    let r = c.fink(&["apply"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no terminal to ask on"), "{}", r.stderr);
    assert!(!admin().topics().unwrap().1.contains_key(&format!("{}_x", c.p)));
}

#[test]
fn debug_logs_and_json_never_show_passwords() {
    let c = Case::new("lg");
    let pw = "log-check-Password-9";
    c.w.secret("u.pw", pw);
    c.config("[[user]]\nname = \"@_u\"\npassword = { file = \"secrets/u.pw\" }\n");
    c.fink(&["-vv", "plan"]);
    c.fink(&["-vv", "apply", "--auto-approve", "--output", "json"]);
    c.w.secret("u.pw", "changed-Password-0");
    c.fink(&["-vv", "plan", "--output", "json"]);
    c.fink(&["-vv", "apply", "--auto-approve"]);
    c.assert_no_secret(&[pw, "changed-Password-0", &admin_password()]);
}
