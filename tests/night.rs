//! Night-scoped runs, as Fink operates: `source.path = "src/{night}"` (or
//! `year={year}/month={month}/day={day}`), `fink run --night YYYYMMDD`,
//! progress per night, `--exit-after`, and a night folder that is not there
//! yet. The oracle is an independent Parquet reader of the night's folder
//! and a read_committed consumer of the topic.

mod common;
use std::collections::BTreeSet;

use common::*;

fn candids_in(dir: &std::path::Path) -> BTreeSet<i64> {
    source_records(dir).iter().map(|r| r["candid"].as_i64().unwrap()).collect()
}

fn published(topic: &str) -> Vec<i64> {
    consume_all_decoded(topic, 2).iter().map(|(_, v)| v["candid"].as_i64().unwrap()).collect()
}

fn run_night(w: &Workspace, night: &str) -> u64 {
    let r = w.fink(&["run", "--until-idle", "--no-progress", "--night", night, "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["streams"][0]["stats"]["published"].as_u64().unwrap()
}

#[test]
fn each_night_publishes_its_folder_once_with_progress_per_night() {
    let w = Workspace::new();
    let topic = unique("night");
    let r =
        w.fink(&["simulate", "--out", "src", "--alerts", "300", "--per-file", "50", "--nights", "3", "--seed", "21"]);
    assert_eq!(r.code, 0, "{}", r.all());
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\npartitions = 2\n\n[[stream]]\nname = \"n\"\nsource = {{ format = \"parquet\", path = \"src/{{night}}\" }}\ntopic = \"{topic}\"\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);

    assert_eq!(run_night(&w, "20200102"), 100);
    let got = published(&topic);
    assert_eq!(got.len(), 100);
    assert_eq!(got.iter().copied().collect::<BTreeSet<_>>(), candids_in(&w.path().join("src/20200102")));
    // The night's progress is kept: nothing again.
    assert_eq!(run_night(&w, "20200102"), 0);
    // Another night has its own: file names repeat across nights, alerts do not.
    assert_eq!(run_night(&w, "20200101"), 100);
    let got = published(&topic);
    let want: BTreeSet<i64> = candids_in(&w.path().join("src/20200101"))
        .union(&candids_in(&w.path().join("src/20200102")))
        .copied()
        .collect();
    assert_eq!(got.len(), 200, "each alert once");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);
    // `fink state show --night` reads that night's progress.
    let r = w.fink(&["state", "show", "--night", "20200101", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("\"files_done\": 2") || r.stdout.contains("\"files_done\":2"), "{}", r.stdout);
}

#[test]
fn year_month_day_layout() {
    let w = Workspace::new();
    let topic = unique("ymd");
    let r = w.fink(&["simulate", "--out", "tmp", "--alerts", "60", "--per-file", "30", "--seed", "22"]);
    assert_eq!(r.code, 0, "{}", r.all());
    std::fs::create_dir_all(w.path().join("src/year=2020/month=01")).unwrap();
    std::fs::rename(w.path().join("tmp/20200101"), w.path().join("src/year=2020/month=01/day=01")).unwrap();
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\npartitions = 2\n\n[[stream]]\nname = \"n\"\nsource = {{ format = \"parquet\", path = \"src/year={{year}}/month={{month}}/day={{day}}\" }}\ntopic = \"{topic}\"\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    assert_eq!(run_night(&w, "20200101"), 60);
    assert_eq!(published(&topic).len(), 60);
}

#[test]
fn a_night_not_there_yet_is_waited_for_until_exit_after() {
    let w = Workspace::new();
    let topic = unique("wait");
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"n\"\nsource = {{ format = \"parquet\", path = \"src/{{night}}\" }}\ntopic = \"{topic}\"\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let started = std::time::Instant::now();
    let mut run = FinkRun::spawn(&w, &["--night", "20300101", "--exit-after", "8s"]);
    run.wait("the waiting message", || {
        let log = run.log_text();
        log.contains("the folder of night 20300101") && log.contains("waiting for it")
    });
    // It ends by itself, cleanly, once --exit-after has passed.
    let status = run.child.wait().unwrap();
    assert!(status.success(), "{}", run.log_text());
    assert!(started.elapsed() >= std::time::Duration::from_secs(8), "ended before --exit-after");
    assert!(run.log_text().contains("--exit-after reached"), "{}", run.log_text());
    // Bad values are refused before anything runs.
    let r = w.fink(&["run", "--night", "20300231"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("expected YYYYMMDD"), "{}", r.stderr);
    let r = w.fink(&["run", "--exit-after", "soon"]);
    assert_eq!(r.code, 2, "{}", r.all());
}

/// A topic per night (`fink_ztf_{night}` in Fink): `fink apply --night`
/// creates that night's, and the night's alerts land there with only the
/// selected `objectId`.
#[test]
fn a_topic_per_night_with_only_object_ids() {
    let w = Workspace::new();
    let prefix = unique("count");
    let r =
        w.fink(&["simulate", "--out", "src", "--alerts", "40", "--per-file", "20", "--nights", "2", "--seed", "23"]);
    assert_eq!(r.code, 0, "{}", r.all());
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{prefix}_{{night}}\"\n\n[[stream]]\nname = \"count\"\nsource = {{ format = \"parquet\", path = \"src/{{night}}\" }}\ntopic = \"{prefix}_{{night}}\"\nselect = [\"objectId\"]\n"
    ));
    let r = w.fink(&["apply", "--auto-approve", "--night", "20200102"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.all().contains(&format!("{prefix}_20200102")), "{}", r.all());
    assert_eq!(run_night(&w, "20200102"), 20);
    let got = consume_all_decoded(&format!("{prefix}_20200102"), 1);
    assert_eq!(got.len(), 20);
    let want: BTreeSet<String> = source_records(&w.path().join("src/20200102"))
        .iter()
        .map(|r| r["objectId"].as_str().unwrap().to_string())
        .collect();
    let ids: BTreeSet<String> = got.iter().map(|(_, v)| v["objectId"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, want);
    assert!(got.iter().all(|(_, v)| v.as_object().unwrap().len() == 1), "only objectId: {:?}", got[0].1);
}
