//! `fink groups`: a community consumer's members, lag, and when its oldest
//! unread alert ages out of the topic, checked against what the test's own
//! consumer committed and what it produced.

mod common;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;

#[test]
fn groups_show_members_lag_and_when_unread_alerts_age_out() {
    let w = Workspace::new();
    let (topic, group) = (unique("gt"), unique("gg"));
    // An hour of retention: unread alerts age out within the day.
    w.config(&format!(
        "[[topic]]\nname = \"{topic}\"\npartitions = 1\nconfig = {{ \"retention.ms\" = \"3600000\" }}\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let conn = admin_conn();
    let p: BaseProducer = conn.client_config().create().unwrap();
    for i in 0..20 {
        p.send(BaseRecord::<(), [u8]>::to(&topic).payload(format!("alert {i}").as_bytes())).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();

    // A member that reads 5 alerts, commits, and stays in the group.
    let mut cfg = conn.client_config();
    cfg.set("group.id", &group).set("enable.auto.commit", "false").set("auto.offset.reset", "earliest");
    let c: BaseConsumer = cfg.create().unwrap();
    c.subscribe(&[&topic]).unwrap();
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while read < 5 && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            read += 1;
            if read == 5 {
                c.commit_message(&m, CommitMode::Sync).unwrap();
            }
            let _ = m.offset();
        }
    }
    assert_eq!(read, 5);

    let r = w.fink(&["groups", &group, "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let g = &v[0];
    assert_eq!(g["group"], group.as_str());
    assert_eq!(g["members"].as_array().unwrap().len(), 1, "{g}");
    assert_eq!(g["members"][0]["assigned"][0], format!("{topic}-0"));
    let part = &g["partitions"][0];
    assert_eq!((part["committed"].as_i64(), part["end"].as_i64(), part["lag"].as_i64()), (Some(5), Some(20), Some(15)));
    assert_eq!(part["retention_ms"], 3_600_000);
    let ages = part["ages_out_in_secs"].as_i64().unwrap();
    assert!((3_300..=3_600).contains(&ages), "the 6th alert was produced a moment ago: {ages}");

    // The table flags it, and says what it means.
    let r = w.fink(&["groups"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let row = r.stdout.lines().find(|l| l.contains(&group)).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(row.contains("15") && row.contains("(!)"), "{row}");
    assert!(r.stderr.contains(&format!("group {group:?} has unread alerts that age out")), "{}", r.stderr);
    drop(c);
    let r = w.fink(&["groups", "no-such-group-xyz"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no consumer group \"no-such-group-xyz\""), "{}", r.stderr);
}
