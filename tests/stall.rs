//! A stream whose broker stops answering is reported as stalled (status,
//! `fink status` exit code, metric, one log line), then resumes without loss
//! when the broker answers again. The broker of the local test cluster is
//! frozen with SIGSTOP; this file holds a single test so that no other test
//! runs meanwhile (cargo runs test binaries one after another).

mod common;
use std::time::{Duration, Instant};

use common::*;

fn wait(what: &str, log: &std::path::Path, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        if Instant::now() >= deadline {
            panic!(
                "timed out waiting for {what}; fink run's log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_frozen_broker_is_reported_as_a_stall_and_the_stream_resumes_without_loss() {
    let pid = broker_pid();
    let w = Workspace::new();
    let topic = unique("stall");
    let addr = "127.0.0.1:0";
    std::fs::create_dir_all(w.path().join("src")).unwrap();
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"{addr}\"\nstall_after_s = 2\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nproducer = {{ linger_ms = 0 }}\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let run = FinkRun::start(&w, &[]);
    let log = run.log.clone();
    let addr = run.addr.clone();
    let status = || run.status();
    let stream = |st: &serde_json::Value| st["streams"][0].clone();
    wait("the stream to be idle", &log, || stream(&status())["state"]["state"] == "idle");
    let healthy = w.fink(&["status", "--addr", &addr]);
    assert_eq!(healthy.code, 0, "{}", healthy.all());

    let frozen = FrozenBroker::freeze(pid);
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "40", "--per-file", "20", "--seed", "5"]).code, 0);
    wait("the stall to be reported", &log, || stream(&status())["stalled_secs"].as_u64().is_some_and(|s| s >= 2));
    let st = stream(&status());
    assert!(st["stats"]["in_flight"].as_u64().unwrap() > 0, "{st}");
    assert!(st["stats"]["published"].as_u64().unwrap() < 40, "{st}");
    let out = w.fink(&["status", "--addr", &addr]);
    assert_eq!(out.code, 1, "a stalled stream makes `fink status` fail: {}", out.all());
    assert!(out.stdout.contains("stalled"), "{}", out.stdout);
    let metrics = run.metrics();
    assert!(metrics.contains("fink_stream_stalled{stream=\"s\"} 1"), "{metrics}");
    wait("the warning", &log, || std::fs::read_to_string(&log).unwrap().contains("stalled: no delivery report"));

    drop(frozen);
    wait("every alert to be published", &log, || {
        let st = stream(&status());
        st["stats"]["published"] == 40 && st["stalled_secs"].is_null() && st["state"]["state"] == "idle"
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("stalled: no delivery report").count(), 1, "warned once:\n{text}");
    assert!(text.contains("deliveries resumed"), "{text}");
    assert_eq!(w.fink(&["status", "--addr", &addr]).code, 0);
    // Nothing lost, nothing doubled (idempotent producer).
    assert_eq!(consume_all_decoded(&topic, 1).len(), 40);
}
