//! The operations files in conf/: the Grafana dashboard and the Prometheus
//! alerting rules use only metrics that a running fink exports.

mod common;
use std::collections::BTreeSet;

use common::*;

fn metric_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\bfink_[a-z_]+").unwrap();
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn dashboard_and_alert_rules_use_metrics_fink_exports() {
    // The dashboard is Grafana JSON with one query per target.
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("conf/grafana/fink-dashboard.json")).unwrap())
            .unwrap();
    let mut exprs = String::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            exprs.push_str(t["expr"].as_str().expect("expr"));
            exprs.push('\n');
        }
    }
    // The rules file is Prometheus YAML: groups of alerts with an expr.
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("conf/prometheus/fink-alerts.yml")).unwrap())
            .unwrap();
    let (mut alerts, mut records) = (Vec::new(), Vec::new());
    for g in rules["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            match (r["alert"].as_str(), r["record"].as_str()) {
                (Some(a), None) => alerts.push(a.to_string()),
                (None, Some(rec)) => records.push(rec.to_string()),
                _ => panic!("a rule is an alert or a recording: {r:?}"),
            }
            exprs.push_str(r["expr"].as_str().expect("expr"));
            exprs.push('\n');
        }
    }
    assert_eq!(
        alerts,
        [
            "FinkStreamStalled",
            "FinkStreamDown",
            "FinkReloadFailed",
            "FinkQuarantineGrowing",
            "FinkLatencyObjectiveMissed"
        ]
    );
    assert_eq!(
        records,
        [
            "fink:stream_file_latency_seconds:p98_10m",
            "fink:stream_file_latency_seconds:p50_10m",
            "fink:stream_files_within_objective:ratio_10m"
        ]
    );
    let used = metric_names(&exprs);
    assert!(used.len() >= 10, "{used:?}");

    let w = Workspace::new();
    let topic = unique("ops");
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"{}\" }}\ntopic = \"{topic}\"\n",
        shared_data().join("ztf/science").display()
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let run = FinkRun::start(&w, &[]);
    // Everything published and committed (idle): the latency histogram
    // holds every file, and stays still while it is read.
    run.wait("the stream committed its files", || {
        let st = run.stream("s");
        st["state"]["state"] == "idle"
            && st["stats"]["published"].as_u64().is_some_and(|n| n > 0)
            && st["stats"]["files_committed"].as_u64().is_some_and(|n| n > 0)
    });
    let metrics = run.metrics();
    let exported = metric_names(&metrics);
    let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(missing.is_empty(), "used by conf/ but not exported: {missing:?}\nexported: {exported:?}");

    // The latency histogram is a histogram (buckets, not a summary), and
    // every file counted is in it; status shows p50 and p98.
    let bucket =
        regex::Regex::new(r#"fink_stream_file_latency_seconds_bucket\{[^}]*stream="s"[^}]*le="30"[^}]*\} (\d+)"#)
            .unwrap();
    let within_30: u64 = bucket.captures(&metrics).unwrap_or_else(|| panic!("{metrics}"))[1].parse().unwrap();
    let st = run.stream("s");
    let committed = st["stats"]["files_committed"].as_u64().unwrap();
    assert!(within_30 >= 1 && within_30 <= committed, "{within_30} of {committed}\n{metrics}");
    let (p50, p98) = (st["stats"]["latency_p50_s"].as_f64().unwrap(), st["stats"]["latency_p98_s"].as_f64().unwrap());
    assert!(0.0 <= p50 && p50 <= p98 && p98 < 120.0, "p50 {p50} p98 {p98}");
    let shown = w.fink(&["status"]);
    assert!(shown.stdout.contains(&format!("{p50:.2}s / ")), "{}", shown.stdout);

    // Where the stream's thread spent its time: every stage it went
    // through is exported, with the seconds /status shows.
    let stages = &st["stats"]["stage_seconds"];
    for stage in ["read", "encode", "send", "commit"] {
        let secs = stages[stage].as_f64().unwrap_or_else(|| panic!("no {stage} in {stages}"));
        let exported: f64 = metrics
            .lines()
            .find(|l| {
                l.starts_with("fink_stream_busy_seconds{")
                    && l.contains(r#"stream="s""#)
                    && l.contains(&format!(r#"stage="{stage}""#))
            })
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("{stage}: {metrics}"))
            .parse()
            .unwrap();
        assert!(secs > 0.0 && exported > 0.0 && exported <= secs, "{stage}: {exported} exported, {secs} in /status");
    }
}
