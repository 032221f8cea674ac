//! Crash safety and bad input: kill -9 in the middle of a backlog loses
//! nothing and duplicates at most `max_in_flight`; corrupt, truncated and
//! oversized inputs are quarantined while the rest flows; a missing ACL
//! stops the stream with a message that says what to do.

mod common;
use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Every message's candid, reading until the topic is quiet.
fn candids(topic: &str, partitions: i32) -> Vec<i64> {
    consume_all_decoded(topic, partitions).iter().map(|(_, v)| v["candid"].as_i64().unwrap()).collect()
}

#[test]
fn kill_9_mid_backlog_then_restart_loses_nothing_at_least_once() {
    let w = Workspace::new();
    let topic = unique("crash");
    let r = w.fink(&["simulate", "--out", "src", "--alerts", "1200", "--per-file", "200", "--seed", "3"]);
    assert_eq!(r.code, 0, "{}", r.all());
    w.config(&format!(
        "[run]\ndelivery = \"at-least-once\"\nstate_dir = \"state\"\nmetrics_addr = \"\"\nmax_in_flight = 40\nbatch_size = 50\n\n[[topic]]\nname = \"{topic}\"\npartitions = 3\n\n[[stream]]\nname = \"c\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);

    let mut child = w.cmd().args(["run", "--no-progress"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Wait until part of the backlog is checkpointed, then kill -9.
    let ckpt = w.path().join("state/c.checkpoint.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: u64 = std::fs::read_to_string(&ckpt)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            // 200 alerts per file: whole files done, plus rows of the file being read.
            .map(|v| {
                v["files_done"].as_u64().unwrap_or(0) * 200
                    + v["partial"].as_object().map(|p| p.values().filter_map(|r| r.as_u64()).sum()).unwrap_or(0)
            })
            .unwrap_or(0);
        if done >= 250 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress before the kill");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = candids(&topic, 3).len();
    assert!(before > 0 && before < 1200, "the kill must land mid-backlog ({before} published)");

    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let all = candids(&topic, 3);
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 1200, "every alert arrives");
    let dups = all.len() - distinct.len();
    assert!(dups <= 40, "{dups} duplicates exceed max_in_flight = 40");
}

fn write_parquet(path: &std::path::Path, sizes: &[usize]) {
    use arrow_array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("objectId", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, false),
    ]));
    let ids: Vec<String> = (0..sizes.len()).map(|i| format!("obj{i}")).collect();
    // Incompressible bytes so compression cannot hide the size.
    let mut x: u64 = 88172645463325252;
    let blobs: Vec<Vec<u8>> = sizes
        .iter()
        .map(|n| {
            (0..*n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(ids)) as ArrayRef,
            Arc::new(BinaryArray::from(blobs.iter().map(|b| b.as_slice()).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let mut wtr = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    wtr.write(&batch).unwrap();
    wtr.close().unwrap();
}

#[test]
fn corrupt_truncated_and_oversized_inputs_are_quarantined() {
    let w = Workspace::new();
    let topic = unique("badin");
    std::fs::create_dir_all(w.path().join("src/n1")).unwrap();
    write_parquet(&w.path().join("src/n1/a_good.parquet"), &[1000, 300_000, 2000]);
    write_parquet(&w.path().join("src/n1/d_good.parquet"), &[500, 600]);
    std::fs::write(w.path().join("src/n1/b_corrupt.parquet"), b"this is not parquet at all, just text").unwrap();
    let good = std::fs::read(w.path().join("src/n1/d_good.parquet")).unwrap();
    std::fs::write(w.path().join("src/n1/c_truncated.parquet"), &good[..good.len() / 2]).unwrap();
    settle_files(&w.path().join("src/n1"));
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n[topic.config]\n\"max.message.bytes\" = 100000\n\n[[stream]]\nname = \"q\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nproducer = {{ compression = \"none\", properties = {{ \"message.max.bytes\" = \"100000\" }} }}\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = w.fink(&["run", "--until-idle", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let stats = &v["streams"][0]["stats"];
    assert_eq!(stats["published"], 4, "the four small alerts flow: {stats}");
    assert_eq!(stats["quarantined"], 3, "one oversized alert, one corrupt file, one truncated file: {stats}");
    let log = std::fs::read_to_string(w.path().join("state/q.quarantine.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |file: &str| {
        lines.iter().find(|l| l["file"] == file).unwrap_or_else(|| panic!("{file} not quarantined: {log}"))
    };
    assert!(find("n1/b_corrupt.parquet")["reason"].as_str().unwrap().contains("Parquet"));
    assert!(find("n1/c_truncated.parquet")["reason"].as_str().unwrap().contains("Parquet"));
    let big = find("n1/a_good.parquet");
    assert_eq!(big["row"], 1);
    assert!(big["reason"].as_str().unwrap().contains("larger"), "{big}");
    // The source files are left in place for inspection; a rerun does not retry them.
    assert!(w.path().join("src/n1/b_corrupt.parquet").exists());
    let r = w.fink(&["run", "--until-idle", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["streams"][0]["stats"]["read"], 0);
    let got = candids_or_ids(&topic);
    // a_good rows 0 and 2 (row 1 is the oversized one), d_good rows 0 and 1.
    assert_eq!(got, vec!["obj0", "obj0", "obj1", "obj2"]);
}

fn candids_or_ids(topic: &str) -> Vec<String> {
    let mut ids: Vec<String> =
        consume_decoded(topic, 1, 4).into_iter().map(|(_, v)| v["objectId"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

#[test]
fn truncated_avro_file_is_quarantined_and_others_flow() {
    let w = Workspace::new();
    let topic = unique("badavro");
    let alerts = shared_data().join("ztf/alerts");
    std::fs::create_dir_all(w.path().join("src")).unwrap();
    std::fs::copy(alerts.join("ZTF19acihgng.avro"), w.path().join("src/a.avro")).unwrap();
    let bytes = std::fs::read(alerts.join("avro_multi_alerts.avro")).unwrap();
    std::fs::write(w.path().join("src/b.avro"), &bytes[..bytes.len() * 2 / 3]).unwrap();
    settle_files(&w.path().join("src"));
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"a\"\nsource = {{ format = \"avro\", path = \"src\" }}\ntopic = \"{topic}\"\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = w.fink(&["run", "--until-idle", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["streams"][0]["stats"]["quarantined"], 1, "{}", r.stdout);
    let published = v["streams"][0]["stats"]["published"].as_u64().unwrap();
    assert!(published >= 1, "the good file (and the readable part of the truncated one) flows");
    let log = std::fs::read_to_string(w.path().join("state/a.quarantine.jsonl")).unwrap();
    assert!(log.contains("b.avro") && log.contains("Avro"), "{log}");
}

#[test]
fn missing_acl_fails_the_stream_with_the_fix() {
    let w = Workspace::new();
    let topic = unique("noacl");
    let user = unique("nouser");
    let pw = w.secret("u.pw", "no-acl-producer-1");
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[user]]\nname = \"{user}\"\npassword = {{ file = \"{pw}\" }}\n\n[[stream]]\nname = \"n\"\nsource = {{ format = \"avro\", path = \"{}\" }}\ntopic = \"{topic}\"\nuser = \"{user}\"\n",
        shared_data().join("ztf/alerts").display()
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let all = r.all();
    assert!(all.contains(&user) && all.contains(&topic) && all.contains("fink apply"), "{all}");
    assert!(!all.contains("no-acl-producer-1"));
}

#[test]
fn undeployed_topic_fails_the_stream_with_the_fix() {
    let w = Workspace::new();
    let topic = unique("notapplied");
    let data = shared_data().join("ztf/alerts");
    // Exactly-once (the default): the state topic is missing first.
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"m\"\nsource = {{ format = \"avro\", path = \"{}\" }}\ntopic = \"{topic}\"\n",
        data.display()
    ));
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("state topic") && r.all().contains("fink apply"), "{}", r.all());
    // At-least-once: the stream's own topic.
    w.config(&format!(
        "[run]\ndelivery = \"at-least-once\"\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"m\"\nsource = {{ format = \"avro\", path = \"{}\" }}\ntopic = \"{topic}\"\n",
        shared_data().join("ztf/alerts").display()
    ));
    // No `fink apply`: the topic is declared but the cluster lacks it.
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let all = r.all();
    assert!(all.contains(&topic) && all.contains("does not exist") && all.contains("fink apply"), "{all}");
    // Nothing was checkpointed as done: after apply the stream starts from the first alert.
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let got = consume_all_decoded(&topic, 1).len();
    assert_eq!(got, source_records(&shared_data().join("ztf/alerts")).len());
}
