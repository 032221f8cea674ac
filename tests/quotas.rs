//! Client quotas as configuration: `[[quota]]` planned, applied, changed
//! and pruned through fink's protocol client, checked with Kafka's own
//! `kafka-configs.sh` (kafka.admin.ConfigCommand) as the independent reader;
//! and a producer over its quota is throttled by the broker.

mod common;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientContext, Statistics};

/// Kafka's `kafka-configs.sh --describe` for an entity type, as text.
fn kafka_configs(w: &Workspace, entity_types: &[&str]) -> String {
    let home = Command::new("bash").arg(repo().join("conf/install_kafka.sh")).output().unwrap();
    let home = String::from_utf8_lossy(&home.stdout).lines().last().unwrap_or_default().to_string();
    let props = w.write(
        "admin.properties",
        &format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"{}\";\n",
            admin_password()
        ),
    );
    let out = Command::new("java")
        .args(["-Xmx256m", "-cp", &format!("{home}/libs/*"), "kafka.admin.ConfigCommand"])
        .args(["--bootstrap-server", &bootstrap(), "--command-config"])
        .arg(&props)
        .arg("--describe")
        .args(entity_types.iter().flat_map(|t| ["--entity-type", t]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn line_for<'a>(text: &'a str, who: &str) -> Option<&'a str> {
    text.lines().find(|l| l.contains(who) && l.starts_with("Quota configs"))
}

#[test]
fn quotas_are_planned_applied_changed_and_pruned_as_kafka_configs_shows_them() {
    let w = Workspace::new();
    let (alice, app) = (unique("qa"), unique("qapp"));
    w.secret("alice.pw", "alice-Password-1");
    let cfg = |rate: u64, with_app: bool| {
        let mut s = format!(
            "scope = [\"{alice}\", \"{app}\"]\n{}\n[[user]]\nname = \"{alice}\"\npassword = {{ file = \"secrets/alice.pw\" }}\n\n\
             [[quota]]\nuser = \"{alice}\"\nproducer_byte_rate = {rate}\nconsumer_byte_rate = 2097152\n\n",
            Workspace::cluster_header()
        );
        if with_app {
            s += &format!("[[quota]]\nuser = \"{alice}\"\nclient_id = \"{app}\"\nrequest_percentage = 25.5\n");
        }
        s
    };
    w.write("fink.toml", &cfg(1048576, true));
    let r = w.fink(&["plan", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let quota_changes: Vec<&serde_json::Value> =
        plan["changes"].as_array().unwrap().iter().filter(|c| c["kind"] == "quota").collect();
    assert_eq!(quota_changes.len(), 2, "{plan}");
    let r = w.fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{}", r.all());

    let users = kafka_configs(&w, &["users"]);
    let l = line_for(&users, &format!("'{alice}' are")).unwrap_or_else(|| panic!("{users}"));
    assert!(l.contains("producer_byte_rate=1048576.0") && l.contains("consumer_byte_rate=2097152.0"), "{l}");
    let pairs = kafka_configs(&w, &["users", "clients"]);
    let both = line_for(&pairs, &format!("client-id '{app}'")).unwrap_or_else(|| panic!("{pairs}"));
    assert!(both.contains("request_percentage=25.5"), "{both}");
    let r = w.fink(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 0, "converged: {}", r.all());

    // A changed rate is an update of that value only.
    w.write("fink.toml", &cfg(2048, true));
    let r = w.fink(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stdout.contains(&format!("~ quota user={alice}")) && r.stdout.contains("1048576 -> 2048"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("consumer_byte_rate"), "{}", r.stdout);
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let users = kafka_configs(&w, &["users"]);
    assert!(line_for(&users, &format!("'{alice}' are")).unwrap().contains("producer_byte_rate=2048.0"), "{users}");

    // Undeclared: reported without prune, removed with it.
    w.write("fink.toml", &cfg(2048, false));
    let r = w.fink(&["plan"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.all().contains("1 quota(s)"), "{}", r.all());
    let r = w.fink(&["apply", "--auto-approve", "--prune"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let users = kafka_configs(&w, &["users"]);
    let pairs = kafka_configs(&w, &["users", "clients"]);
    assert!(line_for(&pairs, &format!("client-id '{app}'")).is_none(), "{pairs}");
    assert!(line_for(&users, &format!("'{alice}' are")).is_some(), "{users}");
}

#[test]
fn a_quota_on_an_undeclared_user_warns_and_bad_rates_fail_at_their_line() {
    let w = Workspace::new();
    w.config("[[quota]]\nuser = \"nobody\"\nproducer_byte_rate = 1024\n");
    let r = w.fink(&["validate"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.all().contains("user \"nobody\" is not declared"), "{}", r.all());
    w.config("[[quota]]\nuser = \"<default>\"\nproducer_byte_rate = -5\n\n[[quota]]\nconsumer_byte_rate = 1\n");
    let r = w.fink(&["validate"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("fink.toml:10:") && r.stderr.contains("producer_byte_rate must be a positive number"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("name a user, a client_id or both"), "{}", r.stderr);
}

/// The broker's throttle times, from librdkafka's statistics.
#[derive(Clone, Default)]
struct Throttle(Arc<Mutex<i64>>);
impl ClientContext for Throttle {
    fn stats(&self, s: Statistics) {
        let max = s.brokers.values().filter_map(|b| b.throttle.as_ref().map(|t| t.max)).max().unwrap_or(0);
        let mut m = self.0.lock().unwrap();
        *m = (*m).max(max);
    }
}
impl rdkafka::producer::ProducerContext for Throttle {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

#[test]
fn a_producer_over_its_quota_is_throttled() {
    let w = Workspace::new();
    let (user, topic) = (unique("qslow"), unique("qt"));
    w.secret("u.pw", "slow-Password-1");
    w.config(&format!(
        "[[topic]]\nname = \"{topic}\"\n\n[[user]]\nname = \"{user}\"\npassword = {{ file = \"secrets/u.pw\" }}\n\n\
         [[acl]]\nuser = \"{user}\"\nrole = \"producer\"\ntopic = \"{topic}\"\n\n\
         [[quota]]\nuser = \"{user}\"\nproducer_byte_rate = 20000\n"
    ));
    let r = w.fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let conn = common::conn(&user, "slow-Password-1");
    let throttle = Throttle::default();
    let mut cfg = conn.client_config();
    cfg.set("statistics.interval.ms", "200").set("linger.ms", "5");
    let p: BaseProducer<Throttle> = cfg.create_with_context(throttle.clone()).unwrap();
    let value = vec![7u8; 10_000];
    let deadline = Instant::now() + Duration::from_secs(60);
    // 20 KB/s allowed: a megabyte as fast as it goes is far over.
    let mut sent = 0;
    while *throttle.0.lock().unwrap() == 0 && Instant::now() < deadline {
        if sent < 100 && p.send(BaseRecord::<(), [u8]>::to(&topic).payload(&value[..])).is_ok() {
            sent += 1;
        }
        p.poll(Duration::from_millis(20));
    }
    let _ = p.flush(Duration::from_secs(30));
    let t = *throttle.0.lock().unwrap();
    assert!(t > 0, "no throttle reported after {sent} messages of 10 KB");
}
