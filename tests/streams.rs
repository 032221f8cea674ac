//! `fink run` against the live cluster with real ZTF alerts from
//! ../shared/data: what is published decodes (schema in the key, schemaless
//! Avro value) to exactly the source records; filters keep exactly the
//! expected alerts; select/drop shape the schema; bad input is quarantined.

mod common;
use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::Value;

struct Stream {
    w: Workspace,
    topic: String,
}

/// A workspace with one topic and one stream `s` with the given extra keys.
fn stream(tag: &str, format: &str, source: &Path, extra: &str) -> Stream {
    let w = Workspace::new();
    let topic = unique(tag);
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"{format}\", path = \"{}\" }}\ntopic = \"{topic}\"\nschema_path = \"s.avsc\"\n{extra}\n",
        source.display()
    ));
    let r = w.fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{}", r.all());
    Stream { w, topic }
}

fn run_until_idle(s: &Stream) -> Run {
    let r = s.w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "fink run failed:\n{}", r.all());
    r
}

fn roundtrip(tag: &str, format: &str, dir: &Path) {
    let s = stream(tag, format, dir, "");
    run_until_idle(&s);
    let expected = source_records(dir);
    assert!(!expected.is_empty());
    let got = consume_decoded(&s.topic, 1, expected.len());
    assert_eq!(got.len(), expected.len(), "every source alert is published once");
    // Messages keep source order within the partition.
    for (i, ((_, value), src)) in got.iter().zip(&expected).enumerate() {
        same(value, src, "").unwrap_or_else(|e| panic!("alert {i}: {e}"));
    }
    // The schema file holds the schema the latest key carries.
    let file: Value = serde_json::from_str(&std::fs::read_to_string(s.w.path().join("s.avsc")).unwrap()).unwrap();
    assert_eq!(file, serde_json::from_str::<Value>(&got.last().unwrap().0).unwrap());
}

#[test]
fn science_parquet_roundtrip_is_exact() {
    roundtrip("sci", "parquet", &shared_data().join("ztf/science"));
}

#[test]
fn raw_parquet_roundtrip_is_exact() {
    roundtrip("raw", "parquet", &shared_data().join("ztf/raw"));
}

#[test]
fn avro_packets_roundtrip_is_exact() {
    roundtrip("avro", "avro", &shared_data().join("ztf/alerts"));
}

fn object_ids(vals: &[(String, Value)]) -> BTreeSet<String> {
    vals.iter().map(|(_, v)| v["objectId"].as_str().unwrap().to_string()).collect()
}

#[test]
fn filters_keep_exactly_the_expected_alerts() {
    let dir = shared_data().join("ztf/raw");
    let src = source_records(&dir);
    let f = |v: &Value, k: &str| v["candidate"][k].as_f64();
    let expected: BTreeSet<String> = src
        .iter()
        .filter(|v| f(v, "magpsf").unwrap() < 16.0 && f(v, "rb").unwrap() > 0.5)
        .map(|v| v["objectId"].as_str().unwrap().to_string())
        .collect();
    assert!(!expected.is_empty() && expected.len() < src.len(), "the filter must keep some and drop others");
    let s = stream(
        "flt",
        "parquet",
        &dir,
        "filters = [\"bright\"]\nfilter = \"candidate.rb > 0.5\"\n\n[filter.bright]\nexpr = \"candidate.magpsf < 16.0\"\n",
    );
    let r = run_until_idle(&s);
    assert!(r.stdout.contains(&format!("{}", src.len())), "{}", r.stdout);
    let got = consume_decoded(&s.topic, 1, expected.len());
    assert_eq!(object_ids(&got), expected);
    assert_eq!(got.len(), expected.len());
}

#[test]
fn list_macros_and_has_on_avro_alerts() {
    let dir = shared_data().join("ztf/alerts");
    let src = source_records(&dir);
    let expected: BTreeSet<String> = src
        .iter()
        .filter(|v| {
            v["prv_candidates"]
                .as_array()
                .map(|a| a.iter().any(|p| p["magpsf"].as_f64().is_some_and(|m| m < 17.0)))
                .unwrap_or(false)
        })
        .map(|v| v["objectId"].as_str().unwrap().to_string())
        .collect();
    assert!(!expected.is_empty() && expected.len() < src.len());
    let s = stream(
        "lst",
        "avro",
        &dir,
        "filter = \"size(prv_candidates) > 0 && prv_candidates.exists(p, has(p.magpsf) && p.magpsf < 17.0)\"\n",
    );
    run_until_idle(&s);
    let got = consume_decoded(&s.topic, 1, expected.len());
    assert_eq!(object_ids(&got), expected);
}

#[test]
fn select_and_drop_shape_the_schema() {
    let dir = shared_data().join("ztf/science");
    let s = stream(
        "sel",
        "parquet",
        &dir,
        "select = [\"objectId\", \"candid\", \"candidate\", \"cdsxmatch\", \"prv_candidates.magpsf\"]\ndrop = [\"candidate.pdiffimfilename\"]\n",
    );
    run_until_idle(&s);
    let got = consume_decoded(&s.topic, 1, 1);
    assert_eq!(got.len(), 1);
    let (key, v) = &got[0];
    let top: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(top, BTreeSet::from(["objectId", "candid", "candidate", "cdsxmatch", "prv_candidates"]));
    assert!(v["candidate"].get("pdiffimfilename").is_none());
    assert!(v["candidate"].get("magpsf").is_some());
    let prv = v["prv_candidates"].as_array().unwrap();
    assert!(prv.iter().all(|p| p.as_object().unwrap().keys().collect::<Vec<_>>() == vec!["magpsf"]));
    assert!(!key.contains("cutoutScience"));
    // The values kept are the source's.
    let src = &source_records(&dir)[0];
    assert_eq!(v["candidate"]["magpsf"], src["candidate"]["magpsf"]);
    assert_eq!(v["objectId"], src["objectId"]);
}

#[test]
fn unknown_select_field_is_quarantined_with_reason() {
    let dir = shared_data().join("ztf/raw");
    let s = stream("bad", "parquet", &dir, "select = [\"objectId\", \"candidate.nope\"]\n");
    let r = s.w.fink(&["run", "--until-idle", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let stats = &v["streams"][0]["stats"];
    let files = walk(&dir).len() as u64;
    assert_eq!(stats["quarantined"].as_u64(), Some(files), "every file is quarantined: {stats}");
    assert_eq!(stats["published"], 0, "{stats}");
    let log = std::fs::read_to_string(s.w.path().join("state/s.quarantine.jsonl")).unwrap();
    assert!(log.contains("no field \\\"nope\\\" under \\\"candidate\\\""), "{log}");
}

#[test]
fn alerts_spread_over_the_topics_partitions_without_loss() {
    let dir = shared_data().join("ztf/raw");
    let w = Workspace::new();
    let topic = unique("spread");
    // Small producer batches: the stream moves to the next partition after ~100 KB.
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\npartitions = 3\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"{}\" }}\ntopic = \"{topic}\"\nproducer = {{ batch_size = 100000 }}\n",
        dir.display()
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let s = Stream { w, topic };
    run_until_idle(&s);
    let expected = source_records(&dir);
    let mut per_partition = Vec::new();
    {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = admin_conn().client_config().create().unwrap();
        for p in 0..3 {
            let (lo, hi) = c.fetch_watermarks(&s.topic, p, std::time::Duration::from_secs(10)).unwrap();
            per_partition.push(hi - lo);
        }
    }
    // Offsets also count the transactions' commit markers: the exact count
    // comes from a read_committed consumer below.
    assert!(per_partition.iter().all(|n| *n > 0), "every partition gets alerts: {per_partition:?}");
    let got = consume_all_decoded(&s.topic, 3);
    assert_eq!(got.len(), expected.len(), "as many alerts as in the source");
    let ids = |v: &[Value]| v.iter().map(|v| v["candid"].as_i64().unwrap()).collect::<BTreeSet<_>>();
    let got: Vec<Value> = got.into_iter().map(|(_, v)| v).collect();
    assert_eq!(ids(&got), ids(&expected), "each alert exactly once, across partitions");
}

#[test]
fn consume_follow_prints_table_rows_as_they_arrive() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = shared_data().join("ztf/raw");
    let s = stream("follow", "parquet", &dir, "");
    run_until_idle(&s);
    let mut child =
        s.w.cmd()
            .args(["consume", &s.topic, "--follow", "--columns", "objectId,candid"])
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(std::time::Duration::from_secs(60)).expect("a line from consume --follow");
    let header = next();
    assert!(header.starts_with("objectId") && header.contains("candid"), "{header}");
    let row = next();
    assert!(row.starts_with("ZTF"), "{row}");
    // Printed while it is still following: nothing waits for an end.
    assert!(child.try_wait().unwrap().is_none(), "consume --follow must keep running");
    let _ = child.kill();
    let _ = child.wait();
}
