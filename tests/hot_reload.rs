//! Hot reload: edits of fink.toml while `fink run` publishes change exactly
//! the streams they touch, without gaps or duplicates.

mod common;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn status(r: &FinkRun) -> Value {
    r.status()
}

fn stream_status<'a>(st: &'a Value, name: &str) -> Option<&'a Value> {
    st["streams"].as_array().unwrap().iter().find(|s| s["name"] == name)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_for`], showing `fink run`'s log if it times out.
fn wait_logged(w: &Workspace, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(w.path().join("run.log")).unwrap_or_default();
            panic!("timed out waiting for {what}; fink run's log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Rows of the simulated source, in the order the stream reads them.
fn source_rows(dir: &std::path::Path) -> Vec<(i64, i64)> {
    let mut files = Vec::new();
    for night in std::fs::read_dir(dir).unwrap().flatten() {
        for f in std::fs::read_dir(night.path()).unwrap().flatten() {
            files.push(f.path());
        }
    }
    files.sort();
    let mut rows = Vec::new();
    for f in files {
        let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&f).unwrap()).unwrap();
        for row in parquet::file::reader::FileReader::get_row_iter(&reader, None).unwrap() {
            let v = row.unwrap().to_json_value();
            rows.push((v["candid"].as_i64().unwrap(), v["candidate"]["fid"].as_i64().unwrap()));
        }
    }
    rows
}

/// The config of the last, good edit.
fn good_text(topic: &str, addr: &str) -> String {
    Workspace::cluster_header() + "\n" + &body(topic, "candidate.fid == 2", addr)
}

fn body(topic: &str, filter: &str, addr: &str) -> String {
    format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"{addr}\"\nmax_in_flight = 1\nbatch_size = 20\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nfilter = \"{filter}\"\nproducer = {{ linger_ms = 0 }}\n"
    )
}

#[test]
fn filter_change_mid_backlog_has_no_gap_and_no_duplicate() {
    let w = Workspace::new();
    let topic = unique("hrf");
    let addr = "127.0.0.1:0".to_string();
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "4000", "--per-file", "400", "--seed", "5"]).code, 0);
    w.config(&body(&topic, "candidate.fid == 1", &addr));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = FinkRun::start(&w, &[]);
    wait_for("some alerts published", || {
        stream_status(&status(&r), "s").map(|s| s["stats"]["published"].as_u64().unwrap() >= 60).unwrap_or(false)
    });
    // Rename-style save, as editors do.
    let text = Workspace::cluster_header() + "\n" + &body(&topic, "candidate.fid == 2", &addr);
    std::fs::write(w.path().join(".fink.toml.swp"), text).unwrap();
    std::fs::rename(w.path().join(".fink.toml.swp"), w.path().join("fink.toml")).unwrap();
    wait_for("the reload", || status(&r)["config"]["reloads"] == 1);
    wait_for("the backlog to drain", || {
        let st = status(&r);
        let s = stream_status(&st, "s").unwrap();
        s["state"]["state"] == "idle"
    });
    let st = status(&r);
    assert_eq!(st["config"]["last_reload_changes"], serde_json::json!(["~ stream s"]));
    drop(r);

    let rows = source_rows(&w.path().join("src"));
    let published: Vec<i64> =
        consume_all_decoded(&topic, 1).iter().map(|(_, v)| v["candid"].as_i64().unwrap()).collect();
    let got: BTreeSet<i64> = published.iter().copied().collect();
    assert_eq!(got.len(), published.len(), "no duplicates");
    // Some cut R: rows before it under the old filter, from it under the new one.
    let cut = (0..=rows.len()).find(|&r| {
        let want: BTreeSet<i64> = rows
            .iter()
            .enumerate()
            .filter(|(i, (_, fid))| if *i < r { *fid == 1 } else { *fid == 2 })
            .map(|(_, (c, _))| *c)
            .collect();
        want == got
    });
    let cut = cut.expect("published alerts are not old-filter-then-new-filter: a gap or an extra");
    assert!(cut > 0 && cut < rows.len(), "the edit must land mid-backlog (cut at {cut} of {})", rows.len());
}

#[test]
fn add_and_remove_streams_leave_the_third_untouched() {
    let w = Workspace::new();
    let (ta, tb, tc) = (unique("hra"), unique("hrb"), unique("hrc"));
    let addr = "127.0.0.1:0".to_string();
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "600", "--per-file", "100", "--seed", "9"]).code, 0);
    let stream = |name: &str, topic: &str| {
        format!("\n[[stream]]\nname = \"{name}\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nproducer = {{ linger_ms = 0 }}\n")
    };
    let topics = format!("[[topic]]\nname = \"{ta}\"\n[[topic]]\nname = \"{tb}\"\n[[topic]]\nname = \"{tc}\"\n");
    let head = format!("[run]\nstate_dir = \"state\"\nmetrics_addr = \"{addr}\"\nmax_in_flight = 1\n\n{topics}");
    w.config(&format!("{head}{}{}", stream("keep", &ta), stream("old", &tb)));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = FinkRun::start(&w, &[]);
    wait_for("keep publishing", || {
        stream_status(&status(&r), "keep").map(|s| s["stats"]["published"].as_u64().unwrap() > 20).unwrap_or(false)
    });
    let before = status(&r);
    let keep_before = stream_status(&before, "keep").unwrap().clone();

    // In-place save: add "new", remove "old".
    let text = Workspace::cluster_header() + "\n" + &format!("{head}{}{}", stream("keep", &ta), stream("new", &tc));
    std::fs::write(w.path().join("fink.toml"), text).unwrap();
    wait_for("the reload", || status(&r)["config"]["reloads"] == 1);
    wait_for("the new stream", || stream_status(&status(&r), "new").is_some());
    let after = status(&r);
    assert!(stream_status(&after, "old").is_none(), "removed stream still listed");
    let keep_after = stream_status(&after, "keep").unwrap();
    assert_eq!(keep_after["started_at_ms"], keep_before["started_at_ms"], "the unchanged stream was restarted");
    assert!(keep_after["stats"]["published"].as_u64() >= keep_before["stats"]["published"].as_u64());
    wait_for("keep to keep rising", || {
        stream_status(&status(&r), "keep").unwrap()["stats"]["published"].as_u64()
            > keep_after["stats"]["published"].as_u64()
            || stream_status(&status(&r), "keep").unwrap()["state"]["state"] == "idle"
    });
    let mut changes: Vec<String> = serde_json::from_value(after["config"]["last_reload_changes"].clone()).unwrap();
    changes.sort();
    assert_eq!(changes, vec!["+ stream new".to_string(), "- stream old".to_string()]);
    let log = std::fs::read_to_string(w.path().join("run.log")).unwrap();
    let starts = log.lines().filter(|l| l.contains("starting stream") && l.contains("stream=keep")).count();
    assert_eq!(starts, 1, "keep must start once:\n{log}");
    // Metrics carry per-stream counters.
    let metrics = http_get(&r.addr, "/metrics");
    assert!(metrics.contains("fink_stream_alerts_published_total{stream=\"keep\"}"), "{metrics}");
    assert!(metrics.contains("fink_stream_lag_files{stream=\"new\"}"), "{metrics}");
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn invalid_edit_is_rejected_then_fix_applies_and_each_save_reloads_once() {
    let w = Workspace::new();
    let topic = unique("hri");
    let addr = "127.0.0.1:0".to_string();
    std::fs::create_dir_all(w.path().join("src")).unwrap();
    w.config(&body(&topic, "candidate.fid == 1", &addr));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = FinkRun::start(&w, &[]);
    let started = stream_status(&status(&r), "s").unwrap()["started_at_ms"].clone();

    // A filter that does not compile: rejected, the stream keeps running.
    let bad = Workspace::cluster_header() + "\n" + &body(&topic, "candidate.fid ==", &addr);
    std::fs::write(w.path().join("fink.toml"), bad).unwrap();
    wait_for("the rejected reload", || status(&r)["config"]["reloads"] == 1);
    let st = status(&r);
    let err = st["config"]["last_reload_error"].as_str().unwrap();
    assert!(err.contains("filter") && err.contains("line 1"), "{err}");
    assert_eq!(stream_status(&st, "s").unwrap()["started_at_ms"], started);
    assert!(http_get(&r.addr, "/metrics").contains("fink_config_last_reload_success 0"));

    // An unknown key: rejected with file and line.
    let bad = Workspace::cluster_header()
        + "\n"
        + &body(&topic, "candidate.fid == 1", &addr).replace("batch_size", "batch_sise");
    let tmp = w.path().join("fink.toml.tmp~");
    std::fs::write(&tmp, bad).unwrap();
    std::fs::rename(&tmp, w.path().join("fink.toml")).unwrap();
    wait_for("the second rejected reload", || status(&r)["config"]["reloads"] == 2);
    let err = status(&r)["config"]["last_reload_error"].as_str().unwrap().to_string();
    assert!(err.contains("fink.toml:") && err.contains("batch_sise"), "{err}");

    // The fix applies (rename save), exactly one reload.
    let good = good_text(&topic, &addr);
    std::fs::write(&tmp, good).unwrap();
    std::fs::rename(&tmp, w.path().join("fink.toml")).unwrap();
    wait_for("the good reload", || status(&r)["config"]["reloads"] == 3);
    let st = status(&r);
    assert_ne!(stream_status(&st, "s").unwrap()["started_at_ms"], started, "the changed stream restarted");
    // One save, one reload: a marker save (a second stream, `m`) is
    // reloaded after anything the first save could still trigger (events
    // come in order), so once `m` runs, the count is exact.
    let marker = good_text(&topic, &addr)
        + &format!(
            "\n[[stream]]\nname = \"m\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\n"
        );
    std::fs::write(&tmp, marker).unwrap();
    std::fs::rename(&tmp, w.path().join("fink.toml")).unwrap();
    // The count is published as the reload ends, just after its streams
    // start: both are waited for.
    wait_for("the marker reload", || {
        let st = status(&r);
        stream_status(&st, "m").is_some() && st["config"]["reloads"].as_u64() >= Some(4)
    });
    let st = status(&r);
    assert_eq!(st["config"]["reloads"], 4, "one save, one reload");
    assert!(st["config"]["last_reload_error"].is_null());
    // `fink status` reads the same endpoint.
    let out = w.fink(&["status", "--addr", &r.addr]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("4 reloads"), "{}", out.stdout);
}

#[test]
fn run_apply_creates_what_an_edit_needs_before_swapping() {
    let w = Workspace::new();
    let (t1, t2) = (unique("hrx"), unique("hry"));
    let addr = "127.0.0.1:0".to_string();
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "40", "--per-file", "20", "--seed", "2"]).code, 0);
    let head = format!("[run]\nstate_dir = \"state\"\nmetrics_addr = \"{addr}\"\n\n[[topic]]\nname = \"{t1}\"\n");
    let s1 =
        format!("\n[[stream]]\nname = \"a\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{t1}\"\n");
    w.config(&format!("{head}{s1}"));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = FinkRun::start(&w, &["--apply"]);
    // The edit adds a topic and a stream on it; --apply creates the topic first.
    let text = Workspace::cluster_header()
        + "\n"
        + &format!("{head}[[topic]]\nname = \"{t2}\"\n{s1}\n[[stream]]\nname = \"b\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{t2}\"\n");
    std::fs::write(w.path().join("fink.toml"), text).unwrap();
    wait_logged(&w, "stream b to publish", || {
        stream_status(&status(&r), "b").map(|s| s["stats"]["published"].as_u64().unwrap() == 40).unwrap_or(false)
    });
    assert!(status(&r)["config"]["last_reload_error"].is_null());
    assert_eq!(consume_all_decoded(&t2, 1).len(), 40);
}

#[test]
fn an_edit_saved_while_run_starts_is_not_lost() {
    let w = Workspace::new();
    let (t1, t2) = (unique("hrs"), unique("hrt"));
    let addr = "127.0.0.1:0".to_string();
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "20", "--per-file", "20", "--seed", "4"]).code, 0);
    let head = format!("[run]\nstate_dir = \"state\"\nmetrics_addr = \"{addr}\"\n\n[[topic]]\nname = \"{t1}\"\n[[topic]]\nname = \"{t2}\"\n");
    let stream = |n: &str, t: &str| {
        format!("\n[[stream]]\nname = \"{n}\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{t}\"\n")
    };
    w.config(&format!("{head}{}", stream("a", &t1)));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let mut r = FinkRun::spawn(&w, &[]);
    // Saved while `fink run` loads, connects and starts: whenever it lands,
    // the running config must end up with both streams.
    std::thread::sleep(Duration::from_millis(150));
    w.config(&format!("{head}{}{}", stream("a", &t1), stream("b", &t2)));
    r.await_ready(&w);
    wait_logged(&w, "both streams to publish everything", || {
        let st = status(&r);
        ["a", "b"]
            .iter()
            .all(|n| stream_status(&st, n).map(|s| s["stats"]["published"].as_u64().unwrap() == 20).unwrap_or(false))
    });
    assert!(status(&r)["config"]["last_reload_error"].is_null());
}

/// Included files are watched like fink.toml: editing a filter declared in
/// one restarts exactly the stream that uses it, and a new file matching an
/// include glob adds its stream.
#[test]
fn edits_of_included_files_reload() {
    let w = Workspace::new();
    let (t1, t2) = (unique("inc1"), unique("inc2"));
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "40", "--per-file", "20", "--seed", "6"]).code, 0);
    let stream = |name: &str, topic: &str, expr: &str| {
        format!(
            "[[topic]]\nname = \"{topic}\"\n\n[filter.{name}]\nexpr = \"{expr}\"\n\n[[stream]]\nname = \"{name}\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nfilters = [\"{name}\"]\n"
        )
    };
    w.write("conf/a.toml", &stream("a", &t1, "candidate.fid == 1"));
    w.write(
        "fink.toml",
        &format!(
            "include = [\"conf/*.toml\"]\n{}\n[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\n",
            Workspace::cluster_header()
        ),
    );
    assert_eq!(w.fink(&["validate"]).code, 0, "{}", w.fink(&["validate"]).all());
    // Both topics exist up front: the second stream arrives with its file.
    w.write("conf/b.toml.later", &stream("b", &t2, "candidate.fid == 2"));
    std::fs::copy(w.path().join("conf/b.toml.later"), w.path().join("conf/b.toml")).unwrap();
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    std::fs::remove_file(w.path().join("conf/b.toml")).unwrap();
    let r = FinkRun::start(&w, &[]);
    wait_logged(&w, "stream a idle", || stream_status(&status(&r), "a").is_some_and(|s| s["state"]["state"] == "idle"));
    // Edit the included file (write and rename, as editors do).
    std::fs::write(w.path().join("conf/.a.toml.swp"), stream("a", &t1, "candidate.fid == 2")).unwrap();
    std::fs::rename(w.path().join("conf/.a.toml.swp"), w.path().join("conf/a.toml")).unwrap();
    wait_logged(&w, "the reload of conf/a.toml", || status(&r)["config"]["reloads"] == 1);
    assert_eq!(status(&r)["config"]["last_reload_changes"], serde_json::json!(["~ stream a"]));
    // A new file in the included folder.
    std::fs::rename(w.path().join("conf/b.toml.later"), w.path().join("conf/b.toml")).unwrap();
    wait_logged(&w, "the reload adding conf/b.toml", || status(&r)["config"]["reloads"] == 2);
    assert_eq!(status(&r)["config"]["last_reload_changes"], serde_json::json!(["+ stream b"]));
    wait_logged(&w, "stream b idle", || stream_status(&status(&r), "b").is_some_and(|s| s["state"]["state"] == "idle"));
}
