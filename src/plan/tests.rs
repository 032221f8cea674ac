use super::*;
use crate::cluster::{LiveTopic, LiveUser, PartitionInfo, ScramCredential};

fn cfg(text: &str) -> Config {
    toml::from_str(text).expect("test config parses")
}

const BASE: &str = r#"
[cluster]
bootstrap = ["127.0.0.1:9092"]
[cluster.admin]
user = "admin"
password = "x"
[run]
delivery = "at-least-once"
"#;

fn live() -> LiveState {
    LiveState {
        cluster_id: Some("c1".into()),
        brokers: vec![],
        topics: BTreeMap::new(),
        users: BTreeMap::new(),
        acls: vec![],
        quotas: Ok(BTreeMap::new()),
        reassigning: Ok(BTreeMap::new()),
        throttled_brokers: vec![],
    }
}

fn topic(name: &str, parts: i32, configs: &[(&str, &str)]) -> LiveTopic {
    LiveTopic {
        name: name.into(),
        partitions: (0..parts).map(|id| PartitionInfo { id, leader: 1, replicas: vec![1], isr: vec![1] }).collect(),
        replication_factor: 1,
        configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        internal: name.starts_with("__"),
    }
}

#[test]
fn creates_in_dependency_order_and_counts() {
    let c = cfg(&format!(
        "{BASE}\n[[topic]]\nname = \"t\"\npartitions = 3\n[topic.config]\n\"retention.ms\" = 1000\n\n[[user]]\nname = \"u\"\npassword = \"pw\"\n\n[[acl]]\nuser = \"u\"\nrole = \"consumer\"\ntopic = \"t\"\ngroup = \"g\"\n"
    ));
    let p = diff(&c, &live(), &BTreeMap::new(), Some("admin"), false, "h");
    let kinds: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![Kind::User, Kind::Topic, Kind::Acl, Kind::Acl, Kind::Acl]);
    let s = p.summary();
    assert_eq!((s.add, s.change, s.destroy), (5, 0, 0));
    let text = render::human(&p);
    assert!(text.contains("Plan: 5 to add, 0 to change, 0 to destroy."), "{text}");
    assert!(!text.contains("pw"), "password leaked: {text}");
    assert!(!render::json(&p).unwrap().contains("\"pw\""));
}

#[test]
fn consumer_and_producer_roles_expand_like_kafka_acls() {
    let c = cfg(&format!(
        "{BASE}\n[[user]]\nname = \"u\"\npassword = \"p\"\n[[acl]]\nuser = \"u\"\nrole = \"producer\"\ntopic = \"t\"\n[[acl]]\nuser = \"u\"\nrole = \"consumer\"\ntopic = \"t\"\ngroup = \"g\"\n"
    ));
    let got: Vec<String> = desired_acls(&c).iter().map(|b| b.to_string()).collect();
    assert_eq!(
        got,
        vec![
            "User:u allow Create on topic t from *",
            "User:u allow Describe on topic t from *",
            "User:u allow Read on topic t from *",
            "User:u allow Write on topic t from *",
            "User:u allow Read on group g from *",
            "User:u allow IdempotentWrite on cluster kafka-cluster from *",
        ]
    );
}

#[test]
fn partition_decrease_blocks_and_config_removal_resets_to_default() {
    let c = cfg(&format!("{BASE}\n[[topic]]\nname = \"t\"\npartitions = 1\nreplication_factor = 3\n"));
    let mut l = live();
    l.topics.insert("t".into(), topic("t", 4, &[("retention.ms", "5")]));
    let p = diff(&c, &l, &BTreeMap::new(), Some("admin"), false, "h");
    // No broker to hold three replicas: refused too.
    assert_eq!(p.blockers.len(), 2, "{:?}", p.blockers);
    assert!(p.blockers[0].contains("partitions 4 -> 1 is a decrease"), "{:?}", p.blockers);
    assert!(p.blockers[1].contains("replication_factor 3 is more than the 0 broker(s)"), "{:?}", p.blockers);
    assert_eq!(
        p.changes[0].ops,
        vec![Op::AlterTopicConfigs { topic: "t".into(), set: BTreeMap::new(), delete: vec!["retention.ms".into()] }]
    );
}

#[test]
fn a_replication_factor_change_is_a_throttled_move_that_keeps_the_leader() {
    let c = cfg(&format!("{BASE}\n[[topic]]\nname = \"t\"\npartitions = 2\nreplication_factor = 3\n"));
    let mut l = live();
    l.brokers = (1..=3).map(|id| crate::cluster::BrokerInfo { id, host: "h".into(), port: 1 }).collect();
    l.topics.insert("t".into(), topic("t", 2, &[]));
    let p = diff(&c, &l, &BTreeMap::new(), Some("admin"), false, "h");
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
    let target: BTreeMap<i32, Vec<i32>> = [(0, vec![1, 2, 3]), (1, vec![1, 2, 3])].into_iter().collect();
    assert_eq!(p.changes[0].ops, vec![Op::Reassign { topic: "t".into(), target, throttle_bytes: 50_000_000 }]);
    // A move under way: nothing starts, the plan says why.
    l.reassigning = Ok([("t".to_string(), [0].into_iter().collect())].into_iter().collect());
    let p = diff(&c, &l, &BTreeMap::new(), Some("admin"), false, "h");
    assert!(!p.changes.iter().any(|ch| ch.name == "t" || ch.name == "u"), "{:?}", p.changes);
    assert!(p.notes.iter().any(|n| n.contains("are moving")), "{:?}", p.notes);
}

#[test]
fn prune_off_never_deletes_and_internal_and_ignored_are_untouched() {
    let c = cfg(&format!("ignore = [\"keep-*\"]\n{BASE}"));
    let mut l = live();
    for n in ["__consumer_offsets", "keep-me", "stray"] {
        l.topics.insert(n.into(), topic(n, 1, &[]));
    }
    l.users.insert(
        "admin".into(),
        LiveUser {
            name: "admin".into(),
            credentials: vec![ScramCredential { mechanism: ScramMechanism::Sha512, iterations: 4096 }],
        },
    );
    l.users.insert(
        "old".into(),
        LiveUser {
            name: "old".into(),
            credentials: vec![ScramCredential { mechanism: ScramMechanism::Sha512, iterations: 4096 }],
        },
    );
    let p = diff(&c, &l, &BTreeMap::new(), Some("admin"), false, "h");
    assert!(p.changes.is_empty());
    assert!(p.notes[0].contains("1 topic(s) [stray]") && p.notes[0].contains("1 user(s) [old]"), "{:?}", p.notes);
    let p = diff(&c, &l, &BTreeMap::new(), Some("admin"), true, "h");
    let names: Vec<String> = p.changes.iter().map(|c| c.title()).collect();
    assert_eq!(names, vec!["topic stray", "user old"]);
}

#[test]
fn password_drift_shows_as_differs_without_values() {
    let c = cfg(&format!("{BASE}\n[[user]]\nname = \"u\"\npassword = \"secret-pw\"\n"));
    let mut l = live();
    l.users.insert(
        "u".into(),
        LiveUser {
            name: "u".into(),
            credentials: vec![ScramCredential { mechanism: ScramMechanism::Sha512, iterations: 8192 }],
        },
    );
    let ok: PasswordChecks = [("u".to_string(), true)].into();
    assert!(diff(&c, &l, &ok, Some("admin"), false, "h").changes.is_empty());
    let bad: PasswordChecks = [("u".to_string(), false)].into();
    let p = diff(&c, &l, &bad, Some("admin"), false, "h");
    assert_eq!(p.changes.len(), 1);
    let text = render::human(&p);
    assert!(text.contains("password  (differs)"), "{text}");
    assert!(!text.contains("secret-pw") && !render::json(&p).unwrap().contains("secret-pw"));
}

#[test]
fn glob() {
    assert!(glob_match("connect-*", "connect-offsets"));
    assert!(glob_match("*", "x"));
    assert!(!glob_match("connect-*", "xconnect-"));
    assert!(glob_match("a*b*c", "aXXbYc"));
    // Exponential for a backtracking matcher; instant here.
    let name = "a".repeat(60);
    assert!(!glob_match("a*a*a*a*a*a*a*a*a*a*a*a*b", &name));
}

#[test]
fn scope_limits_what_prune_touches() {
    let c = cfg(&format!("scope = [\"team_*\"]\n{BASE}"));
    let mut l = live();
    for n in ["team_old", "other"] {
        l.topics.insert(n.into(), topic(n, 1, &[]));
    }
    l.acls.push(AclBinding {
        principal: "User:someone".into(),
        host: "*".into(),
        resource: ResourceKind::Topic,
        name: "other".into(),
        pattern: PatternType::Literal,
        operation: crate::config::AclOperation::Read,
        permission: crate::config::Permission::Allow,
    });
    let p = diff(&c, &l, &BTreeMap::new(), Some("admin"), true, "h");
    let names: Vec<String> = p.changes.iter().map(|c| c.title()).collect();
    assert_eq!(names, vec!["topic team_old"]);
}

#[test]
fn saved_plans_round_trip_and_other_formats_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    let c = cfg(&format!("{BASE}\n[[topic]]\nname = \"t\"\n\n[[user]]\nname = \"u\"\npassword = \"pw\"\n"));
    let p = diff(&c, &live(), &BTreeMap::new(), Some("admin"), false, "h");
    std::fs::write(&path, render::json(&p).unwrap()).unwrap();
    assert_eq!(load_saved(&path).unwrap(), p);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"(broker default)\"") && text.contains("\"(sensitive)\""), "{text}");
    std::fs::write(&path, r#"{"format": "fink-plan/1", "changes": []}"#).unwrap();
    let e = load_saved(&path).unwrap_err().to_string();
    assert!(e.contains("\"fink-plan/1\"") && e.contains(PLAN_FORMAT), "{e}");
    std::fs::write(&path, "not json").unwrap();
    assert!(load_saved(&path).unwrap_err().to_string().contains("is not a fink plan"));
}

#[test]
fn exactly_once_declares_the_state_topic_and_the_transactional_acls() {
    let c = cfg(
        "[cluster]\nbootstrap = [\"b:9092\"]\n[defaults]\nreplication_factor = 3\n[run]\ngroup = \"night\"\n[[user]]\nname = \"u\"\npassword = \"p\"\n[[acl]]\nuser = \"u\"\nrole = \"producer\"\ntopic = \"t\"\n",
    );
    let got: Vec<String> = desired_acls(&c).iter().map(|b| b.to_string()).collect();
    for want in [
        "User:u allow Write on transactional_id prefix night. from *",
        "User:u allow Describe on transactional_id prefix night. from *",
        "User:u allow Read on topic _fink_state from *",
        "User:u allow Write on topic _fink_state from *",
        "User:u allow Read on group night from *",
    ] {
        assert!(got.iter().any(|g| g == want), "{want} missing from {got:#?}");
    }
    let mut l = live();
    l.brokers = (1..=3).map(|id| crate::cluster::BrokerInfo { id, host: "b".into(), port: 9092 }).collect();
    let p = diff(&c, &l, &BTreeMap::new(), None, false, "h");
    let st = p.changes.iter().find(|c| c.kind == Kind::Topic && c.name == "_fink_state").expect("state topic planned");
    let fields: Vec<String> = st.fields.iter().map(|f| format!("{}={:?}", f.name, f.after)).collect();
    assert!(fields.iter().any(|f| f.contains("cleanup.policy") && f.contains("compact")), "{fields:?}");
    assert!(fields.iter().any(|f| f.starts_with("replication_factor") && f.contains('3')), "{fields:?}");
}

#[test]
fn the_state_topic_keeps_its_partition_count() {
    let c = cfg("[cluster]\nbootstrap = [\"b:9092\"]\n[run]\nstate_partitions = 24\n");
    let mut l = live();
    l.topics.insert("_fink_state".into(), topic("_fink_state", 12, &[("cleanup.policy", "compact")]));
    let p = diff(&c, &l, &BTreeMap::new(), None, false, "h");
    assert!(
        p.blockers.iter().any(|b| b.contains("state topic _fink_state") && b.contains("state_partitions = 12")),
        "{:?}",
        p.blockers
    );
    assert!(!p.changes.iter().any(|ch| ch.name == "_fink_state" && ch.fields.iter().any(|f| f.name == "partitions")));
}

#[test]
fn a_topic_to_create_beyond_the_brokers_is_a_blocker_not_a_failed_apply() {
    let c = cfg("[cluster]\nbootstrap = [\"b:9092\"]\n[[topic]]\nname = \"t\"\nreplication_factor = 3\n[[topic]]\nname = \"u\"\nreplicas = [[1], [4]]\n");
    let mut l = live();
    l.brokers = (1..=2).map(|id| crate::cluster::BrokerInfo { id, host: "b".into(), port: 9092 }).collect();
    let p = diff(&c, &l, &BTreeMap::new(), None, false, "h");
    assert!(!p.changes.iter().any(|ch| ch.name == "t" || ch.name == "u"), "{:?}", p.changes);
    assert!(
        p.blockers.iter().any(|b| b.contains("topic t: replication_factor 3 is more than the 2 broker(s)")),
        "{:?}",
        p.blockers
    );
    assert!(p.blockers.iter().any(|b| b.contains("topic u: replicas name broker 4")), "{:?}", p.blockers);
}
