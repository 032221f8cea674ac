//! A stop is bounded even when the broker does not answer: SIGTERM with
//! alerts in flight to a frozen broker ends `fink run` within
//! `[run] shutdown_timeout_s` (plus a few seconds), exit 1 with the
//! unconfirmed alerts reported; after a restart every alert is there. The
//! test cluster's broker is frozen with SIGSTOP, so this file holds a
//! single test (cargo runs test binaries one after another).

mod common;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn sigterm_with_the_broker_frozen_stops_within_the_deadline_and_loses_nothing() {
    let pid = broker_pid();
    let w = Workspace::new();
    let topic = unique("shut");
    std::fs::create_dir_all(w.path().join("src")).unwrap();
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\nshutdown_timeout_s = 3\n\n[[topic]]\nname = \"{topic}\"\npartitions = 2\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nproducer = {{ linger_ms = 0 }}\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let mut run = FinkRun::start(&w, &[]);
    run.wait("the stream to be idle", || run.stream("s")["state"]["state"] == "idle");

    let frozen = FrozenBroker::freeze(pid);
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "60", "--per-file", "20", "--seed", "9"]).code, 0);
    run.wait("alerts in flight to the frozen broker", || {
        run.stream("s")["stats"]["in_flight"].as_u64().is_some_and(|n| n > 0)
    });

    let asked = Instant::now();
    run.signal("TERM");
    let mut code = None;
    while Instant::now() < asked + Duration::from_secs(3 + 5) {
        if let Some(st) = run.child.try_wait().unwrap() {
            code = Some(st.code());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = asked.elapsed();
    let log = run.log_text();
    if code.is_none() && std::env::var("FINK_DEBUG_STACKS").is_ok() {
        let out = std::process::Command::new("gdb")
            .args(["-p", &run.child.id().to_string(), "-batch", "-ex", "thread apply all bt 25"])
            .output()
            .unwrap();
        std::fs::write("/tmp/stacks.txt", &out.stdout).unwrap();
    }
    let code = code.unwrap_or_else(|| panic!("fink run still running {took:?} after SIGTERM\n{log}"));
    assert_eq!(code, Some(1), "alerts were left unconfirmed: exit 1\n{log}");
    assert!(log.contains("unconfirmed"), "{log}");
    drop(run);

    // The broker comes back; a new run sends what was not confirmed.
    drop(frozen);
    let out = w.fink(&["run", "--until-idle", "--no-progress"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let got = consume_all_decoded(&topic, 2);
    let ids: BTreeSet<i64> = got.iter().map(|(_, v)| v["candid"].as_i64().unwrap()).collect();
    let want: BTreeSet<i64> =
        source_records(&w.path().join("src")).iter().map(|r| r["candid"].as_i64().unwrap()).collect();
    assert_eq!(want.len(), 60);
    assert_eq!(ids, want, "0 lost: every alert is on the topic after the restart");
}
