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
    let mut alerts = Vec::new();
    for g in rules["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            alerts.push(r["alert"].as_str().expect("alert name").to_string());
            exprs.push_str(r["expr"].as_str().expect("expr"));
            exprs.push('\n');
        }
    }
    assert_eq!(alerts, ["FinkStreamStalled", "FinkStreamDown", "FinkReloadFailed", "FinkQuarantineGrowing"]);
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
    run.wait("the stream published", || run.stream("s")["stats"]["published"].as_u64().is_some_and(|n| n > 0));
    let exported = metric_names(&run.metrics());
    let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(missing.is_empty(), "used by conf/ but not exported: {missing:?}\nexported: {exported:?}");
}
