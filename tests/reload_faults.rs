//! `fink run` under faults: a reload whose new streams cannot start leaves
//! the running ones untouched; a rotated password restarts exactly the
//! streams that use it; a failed stream is reported as failed and
//! restarted once what it lacked is there.

mod common;
use common::*;
use serde_json::Value;

fn started(run: &FinkRun, name: &str) -> u64 {
    run.stream(name)["started_at_ms"].as_u64().unwrap_or(0)
}

fn published(run: &FinkRun, name: &str) -> u64 {
    run.stream(name)["stats"]["published"].as_u64().unwrap_or(0)
}

fn run_head() -> &'static str {
    "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\nshutdown_timeout_s = 5\n"
}

fn simulate(w: &Workspace, dir: &str, seed: &str) {
    let out = w.fink(&["simulate", "--out", dir, "--alerts", "20", "--per-file", "20", "--seed", seed]);
    assert_eq!(out.code, 0, "{}", out.all());
}

#[test]
fn a_reload_whose_changed_stream_cannot_start_leaves_the_running_one_untouched() {
    let w = Workspace::new();
    let (alice, a, b) = (unique("ralice"), unique("rta"), unique("rtb"));
    let pw = w.secret("alice.pw", "alice-pw-1");
    let cfg = |topic: &str| {
        format!(
            "{}\n[[topic]]\nname = \"{a}\"\n[[topic]]\nname = \"{b}\"\n\n[[user]]\nname = \"{alice}\"\npassword = {{ file = \"{pw}\" }}\n\n[[acl]]\nuser = \"{alice}\"\nrole = \"producer\"\ntopic = \"{a}\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nuser = \"{alice}\"\nproducer = {{ linger_ms = 0 }}\n",
            run_head()
        )
    };
    w.config(&cfg(&a));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    simulate(&w, "src/n1", "1");
    let run = FinkRun::start(&w, &[]);
    run.wait("20 alerts on topic a", || published(&run, "s") == 20);
    let t0 = started(&run, "s");

    // Topic b exists, but alice may not write it: the new stream fails its check.
    w.config(&cfg(&b));
    run.wait("the rejected reload", || run.status()["config"]["last_reload_error"].is_string());
    let err = run.status()["config"]["last_reload_error"].as_str().unwrap().to_string();
    assert!(err.contains("may not write topic") && err.contains(&b), "{err}");
    assert_eq!(started(&run, "s"), t0, "the running stream was not stopped");
    assert_ne!(run.stream("s")["state"]["state"], "failed");

    // It still publishes, to topic a.
    simulate(&w, "src/n2", "2");
    run.wait("40 alerts on topic a", || published(&run, "s") == 40);
    assert_eq!(started(&run, "s"), t0);
    assert_eq!(consume_all_decoded(&a, 1).len(), 40);
    assert_eq!(consume_all_decoded(&b, 1).len(), 0);
}

#[test]
fn a_rotated_password_restarts_the_streams_that_use_it() {
    let w = Workspace::new();
    let (alice, a, t) = (unique("pwalice"), unique("pwa"), unique("pwt"));
    let pw = w.secret("alice.pw", "alice-pw-1");
    w.config(&format!(
        "{}\n[[topic]]\nname = \"{a}\"\n[[topic]]\nname = \"{t}\"\n\n[[user]]\nname = \"{alice}\"\npassword = {{ file = \"{pw}\" }}\n\n[[acl]]\nuser = \"{alice}\"\nrole = \"producer\"\ntopic = \"{a}\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{a}\"\nuser = \"{alice}\"\nproducer = {{ linger_ms = 0 }}\n\n[[stream]]\nname = \"other\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{t}\"\nproducer = {{ linger_ms = 0 }}\n",
        run_head()
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    simulate(&w, "src/n1", "1");
    let run = FinkRun::start(&w, &[]);
    run.wait("both streams published", || published(&run, "s") == 20 && published(&run, "other") == 20);
    let (s0, o0) = (started(&run, "s"), started(&run, "other"));

    // Rotate: new password in the file, applied to the cluster, then SIGHUP.
    w.secret("alice.pw", "alice-pw-2");
    let out = w.fink(&["apply", "--auto-approve"]);
    assert_eq!(out.code, 0, "{}", out.all());
    run.signal("HUP");
    run.wait("stream s restarted with the new password", || {
        run.status()["config"]["reloads"] == 1 && ![0, s0].contains(&started(&run, "s"))
    });
    let st: Value = run.status();
    assert_eq!(st["config"]["last_reload_changes"], serde_json::json!(["~ stream s"]), "{st}");
    assert_eq!(started(&run, "other"), o0, "a stream with other credentials is untouched");
    assert!(!run.log_text().contains("alice-pw-"), "no secret in the log");

    // The restarted stream logs in with the new password and publishes.
    simulate(&w, "src/n2", "2");
    run.wait("s publishes with the new credentials", || published(&run, "s") == 20);
    run.wait("s is idle", || run.stream("s")["state"]["state"] == "idle");
    assert_eq!(consume_all_decoded(&a, 1).len(), 40);
}

#[test]
fn a_failed_stream_is_reported_then_restarted_once_its_acl_is_there() {
    let w = Workspace::new();
    let (bob, c) = (unique("fbob"), unique("fc"));
    let pw = w.secret("bob.pw", "bob-pw-1");
    let base = format!(
        "{}\n[[topic]]\nname = \"{c}\"\n\n[[user]]\nname = \"{bob}\"\npassword = {{ file = \"{pw}\" }}\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{c}\"\nuser = \"{bob}\"\nproducer = {{ linger_ms = 0 }}\n",
        run_head()
    );
    w.config(&base);
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    simulate(&w, "src/n1", "1");
    let run = FinkRun::start(&w, &[]);
    run.wait("the stream to fail", || run.stream("s")["state"]["state"] == "failed");
    let detail = run.stream("s")["state"]["detail"].as_str().unwrap_or_default().to_string();
    assert!(detail.contains("may not write topic"), "{detail}");
    assert!(run.metrics().contains("fink_stream_up{stream=\"s\"} 0"), "{}", run.metrics());
    let out = w.fink(&["status", "--addr", &run.addr]);
    assert_eq!(out.code, 1, "a failed stream fails `fink status`: {}", out.all());
    assert!(out.stdout.contains("failed") && out.stdout.contains("may not write topic"), "{}", out.stdout);

    // The operator grants the ACL; the supervisor's next restart succeeds.
    w.config(&format!("{base}\n[[acl]]\nuser = \"{bob}\"\nrole = \"producer\"\ntopic = \"{c}\"\n"));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    run.wait("the restarted stream to publish", || published(&run, "s") == 20);
    let st = run.stream("s");
    assert!(st["restarts"].as_u64().unwrap() >= 1, "{st}");
    run.wait("s up again", || run.metrics().contains("fink_stream_up{stream=\"s\"} 1"));
    assert_eq!(w.fink(&["status", "--addr", &run.addr]).code, 0);
    assert_eq!(consume_all_decoded(&c, 1).len(), 20);
}

/// A reload that takes long (its new stream waits for a topic nobody
/// created) runs off the supervisor's loop: /status answers meanwhile, and
/// SIGTERM stops the run within its shutdown deadline instead of after the
/// reload.
#[test]
fn sigterm_during_a_long_reload_stops_within_the_deadline() {
    let w = Workspace::new();
    let (a, missing) = (unique("rsa"), unique("rsmissing"));
    let cfg = |extra: &str| {
        format!(
            "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\nshutdown_timeout_s = 1\n\n[[topic]]\nname = \"{a}\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{a}\"\n{extra}"
        )
    };
    w.config(&cfg(""));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    simulate(&w, "src/n1", "3");
    let run = FinkRun::start(&w, &[]);
    run.wait("the stream idle", || published(&run, "s") == 20 && run.stream("s")["state"]["state"] == "idle");
    // Declared, never applied: the new stream waits for its topic.
    w.config(&cfg(&format!(
        "[[topic]]\nname = \"{missing}\"\n\n[[stream]]\nname = \"x\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{missing}\"\n"
    )));
    run.wait("the reload to start", || run.log_text().contains("reloading the configuration"));
    assert!(run.status()["streams"].is_array(), "/status answers during the reload");
    let sent = std::time::Instant::now();
    run.signal("TERM");
    let mut run = run;
    let status = run.child.wait().unwrap();
    let took = sent.elapsed();
    assert!(status.success(), "{status}\n{}", run.log_text());
    // The reload alone waits 5 s for the topic; the stop needs ~1 s.
    assert!(took < std::time::Duration::from_secs(4), "stopped after {took:?}\n{}", run.log_text());
    assert!(run.log_text().contains("stopping during a reload"), "{}", run.log_text());
}
