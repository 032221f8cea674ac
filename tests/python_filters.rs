//! Python filters, end to end against the test cluster: the seed's
//! level-two file behind a CEL filter, read back by fink-client; fink-filters'
//! own function proven equal to the reference script; faults that stay
//! inside one filter (exception, dead worker, timeout, wrong answer); a
//! stream failed after failures in a row; a `.py` edit reloaded only after it
//! imports. `.ci/run` installs pyarrow, pandas, fink-filters and pyspark
//! into `.fink/venv`, the interpreter these tests give `[python]`.

mod common;
use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use serde_json::Value;

fn python() -> std::path::PathBuf {
    let p = repo().join(".fink/venv/bin/python");
    assert!(p.exists(), "no Python at {} (run .ci/run)", p.display());
    p
}

fn python_section(extra: &str) -> String {
    format!("[python]\ninterpreter = \"{}\"\nworkers = 2\n{extra}\n", python().display())
}

fn candids(topic: &str) -> Vec<i64> {
    consume_all_decoded(topic, 1).iter().map(|(_, v)| v["candid"].as_i64().unwrap()).collect()
}

fn quarantined(w: &Workspace, stream: &str) -> Vec<Value> {
    std::fs::read_to_string(w.path().join(format!("state/{stream}.quarantine.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An independent reading of the source: pyarrow and pandas, the rule
/// written again from the level-two file's docstring, no fink code.
fn expected_leveltwo(src: &std::path::Path, min_rb: f64) -> Vec<i64> {
    let script = r#"
import glob, sys, numpy as np, pyarrow.parquet as pq
src, min_rb = sys.argv[1], float(sys.argv[2])
stellar = {"Star", "RRLyr", "EB*", "Mira", "LPV*", "V*", "Cepheid", "WD*"}
for f in sorted(glob.glob(src + "/**/*.parquet", recursive=True)):
    for a in pq.read_table(f).to_pylist():
        c = a["candidate"]
        if not c["rb"] > min_rb or not c["rb"] > 0.5 or a["cdsxmatch"] in stellar:
            continue
        earlier = [p["magpsf"] for p in (a["prv_candidates"] or []) if p["magpsf"] is not None]
        if c["magpsf"] is not None and (not earlier or c["magpsf"] <= min(earlier)):
            print(a["candid"])
"#;
    let out = Command::new(python()).args(["-c", script]).arg(src).arg(min_rb.to_string()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().parse().unwrap()).collect()
}

#[test]
fn the_seeds_leveltwo_file_runs_after_cel_and_fink_client_reads_what_it_kept() {
    let w = Workspace::new();
    let topic = unique("pyl2");
    let alice = unique("alice");
    w.secret("alice.pw", "alice-Password-1");
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "600", "--per-file", "150", "--seed", "21"]).code, 0);
    let leveltwo = repo().join("conf/userfilters/leveltwo.py");
    w.config(&format!(
        "{}[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n\
         [[user]]\nname = \"{alice}\"\npassword = {{ file = \"secrets/alice.pw\" }}\n\n\
         [[acl]]\nuser = \"{alice}\"\nrole = \"consumer\"\ntopic = \"{topic}\"\ngroup = \"{alice}\"\ngroup_pattern = \"prefixed\"\n\n\
         [filter.real]\nexpr = \"candidate.rb > 0.3\"\n\n\
         [filter.leveltwo]\npython = \"{}:filter_leveltwo\"\n\n\
         [[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nfilters = [\"real\", \"leveltwo\"]\n",
        python_section(""),
        leveltwo.display()
    ));
    let r = w.fink(&["validate", "--data", "src"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());

    let expected = expected_leveltwo(&w.path().join("src"), 0.3);
    assert!(expected.len() >= 5 && expected.len() < 300, "a selective cut: {} kept", expected.len());
    // fink-client, as Fink's users read topics.
    let out = Command::new(python())
        .arg(repo().join("integration/python/fink_client_read.py"))
        .args([
            &topic,
            &alice,
            "alice-Password-1",
            &format!("{alice}_g"),
            &bootstrap(),
            &expected.len().to_string(),
            "60",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fink-client:\n{text}");
    let got: Vec<i64> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["candid"].as_i64().unwrap())
        .collect();
    assert_eq!(got, expected, "fink-client read other alerts than the rule keeps");
    // And nothing else is on the topic (read_committed).
    assert_eq!(candids(&topic), expected);

    // `fink filter test` shows the same for the Python filter alone.
    let r = w.fink(&["filter", "test", "--data", "src", "--output", "json"]);
    let reports: Vec<Value> = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
    let l2 = reports.iter().find(|r| r["filter"] == "leveltwo").expect("leveltwo reported");
    assert_eq!(l2["alerts"], 600);
    assert!(l2["kept"].as_u64().unwrap() >= expected.len() as u64);
    assert!(l2["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["field"] == "rb" && f["status"] == "bound to candidate.rb"));
}

#[test]
fn fink_filters_own_function_keeps_what_the_reference_script_keeps() {
    let w = Workspace::new();
    let topic = unique("pysn");
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "2000", "--per-file", "250", "--seed", "8"]).code, 0);
    w.config(&format!(
        "{}[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n\
         [filter.sn]\npython = \"fink_filters.ztf.livestream.filter_sn_candidates.filter:sn_candidates\"\n\n\
         [[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nfilters = [\"sn\"]\n",
        python_section("")
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let out = Command::new(python())
        .arg(repo().join("integration/python/fink_filters_reference.py"))
        .arg("ztf")
        .arg(w.path().join("src"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: Vec<String> =
        reference["sn_candidates"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let got: Vec<String> =
        consume_all_decoded(&topic, 1).iter().map(|(_, v)| v["objectId"].as_str().unwrap().to_string()).collect();
    assert!(!want.is_empty());
    assert_eq!(got, want, "fink's worker and the reference script disagree");
}

/// Filters that misbehave once, or on one file, each on its own stream.
const FAULTY: &str = r#"
import os, time

def _once(tag):
    marker = os.path.join(os.path.dirname(__file__), "state", tag + ".done")
    if os.path.exists(marker):
        return False
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    open(marker, "w").close()
    return True

def raises(candid, fid):
    if (candid == BAD).any():
        raise ValueError("bad alert %d" % BAD)
    return fid == 1

def dies(fid):
    if _once("dies"):
        os._exit(3)
    return fid == 1

def slow(fid):
    if _once("slow"):
        time.sleep(30)
    return fid == 1

def wrong(fid):
    return [True]
"#;

#[test]
fn a_fault_stays_inside_its_filter_and_a_retried_batch_publishes_once() {
    let w = Workspace::new();
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "800", "--per-file", "200", "--seed", "4"]).code, 0);
    let rows = source_records(&w.path().join("src"));
    // The third file's first alert makes `raises` raise.
    let bad = rows[400]["candid"].as_i64().unwrap();
    w.write("faulty.py", &format!("BAD = {bad}\n{FAULTY}"));
    let names = ["plain", "raises", "dies", "slow", "wrong"];
    let topics: Vec<String> = names.iter().map(|n| unique(&format!("pyf_{n}"))).collect();
    let mut cfg = python_section("timeout_s = 3\nmax_failures = 10")
        + "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\nbatch_size = 100\n\n[filter.fid1]\nexpr = \"candidate.fid == 1\"\n";
    for (n, t) in names.iter().zip(&topics) {
        cfg += &format!("[[topic]]\nname = \"{t}\"\n\n");
        let filter = if *n == "plain" { "fid1".to_string() } else { n.to_string() };
        if *n != "plain" {
            cfg += &format!("[filter.{n}]\npython = \"faulty.py:{n}\"\n\n");
        }
        cfg += &format!(
            "[[stream]]\nname = \"{n}\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{t}\"\nfilters = [\"{filter}\"]\n\n"
        );
    }
    w.config(&cfg);
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let log = r.all();

    let fid1: Vec<i64> =
        rows.iter().filter(|a| a["candidate"]["fid"] == 1).map(|a| a["candid"].as_i64().unwrap()).collect();
    let fid1_set: BTreeSet<i64> = fid1.iter().copied().collect();
    // Unaffected, and the dead worker and the timeout cost nothing: every
    // alert once, in order.
    for (n, t) in names.iter().zip(&topics) {
        if ["plain", "dies", "slow"].contains(n) {
            assert_eq!(candids(t), fid1, "stream {n}\n{log}");
            assert!(quarantined(&w, n).is_empty(), "stream {n} quarantined {:?}", quarantined(&w, n));
        }
    }
    assert!(log.contains("its worker died (exit code 3)"), "{log}");
    assert!(log.contains("took longer than timeout_s (3 s)"), "{log}");

    // The exception: its file quarantined with the filter and the message,
    // its traceback logged, the other files published.
    let q = quarantined(&w, "raises");
    assert_eq!(q.len(), 1, "{q:?}");
    let reason = q[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("python filter \"raises\"") && reason.contains(&format!("ValueError: bad alert {bad}")),
        "{reason}"
    );
    assert!(log.contains("Traceback (most recent call last)") && log.contains("in raises"), "{log}");
    let third: BTreeSet<i64> = rows[400..600].iter().map(|a| a["candid"].as_i64().unwrap()).collect();
    let want: Vec<i64> = fid1.iter().copied().filter(|c| !third.contains(c)).collect();
    assert_eq!(candids(&topics[1]), want);

    // A wrong answer names the filter, and quarantines rather than guesses.
    let q = quarantined(&w, "wrong");
    assert_eq!(q.len(), 4, "every file: {q:?}");
    assert!(q[0]["reason"].as_str().unwrap().contains("python filter \"wrong\""), "{q:?}");
    assert!(q[0]["reason"].as_str().unwrap().contains("returned 1 values for"), "{q:?}");
    assert!(candids(&topics[4]).iter().all(|c| fid1_set.contains(c)));
}

/// A module (importable, as fink-filters is) that records each import and
/// which process answers each call.
const TRACED: &str = r#"
import os, time
HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "imports.log"), "a") as f:
    f.write("%d\n" % os.getpid())

def _once(tag):
    marker = os.path.join(HERE, "state", tag + ".done")
    if os.path.exists(marker):
        return False
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    open(marker, "w").close()
    return True

def _called():
    with open(os.path.join(HERE, "calls.log"), "a") as f:
        f.write("%d\n" % os.getpid())

def plain(fid):
    _called()
    return fid == 1

def dies(fid):
    _called()
    if _once("dies"):
        os._exit(3)
    return fid == 1

def slow(fid):
    _called()
    if _once("slow"):
        time.sleep(30)
    return fid == 1
"#;

#[test]
fn module_filters_are_imported_once_and_workers_forked_from_that_are_replaced_when_they_die() {
    let w = Workspace::new();
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "600", "--per-file", "200", "--seed", "8"]).code, 0);
    let rows = source_records(&w.path().join("src"));
    w.write("traced_filters.py", TRACED);
    let names = ["plain", "dies", "slow"];
    let topics: Vec<String> = names.iter().map(|n| unique(&format!("pyt_{n}"))).collect();
    let mut cfg = python_section("timeout_s = 3\nmax_failures = 10")
        + "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\nbatch_size = 100\n\n";
    for (n, t) in names.iter().zip(&topics) {
        cfg += &format!(
            "[[topic]]\nname = \"{t}\"\n\n[filter.{n}]\npython = \"traced_filters:{n}\"\n\n\
             [[stream]]\nname = \"{n}\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{t}\"\nfilters = [\"{n}\"]\n\n"
        );
    }
    w.config(&cfg);
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    // The module is importable by name, as an installed package is.
    let out = w.cmd().env("PYTHONPATH", w.path()).args(["run", "--until-idle"]).output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{log}");

    let fid1: Vec<i64> =
        rows.iter().filter(|a| a["candidate"]["fid"] == 1).map(|a| a["candid"].as_i64().unwrap()).collect();
    for (n, t) in names.iter().zip(&topics) {
        assert_eq!(candids(t), fid1, "stream {n}\n{log}");
    }
    // The worker that exited and the one killed at its timeout were each
    // replaced; fink learnt the exit code from the template that reaped it.
    assert!(log.contains("its worker died (exit code 3)"), "{log}");
    assert!(log.contains("took longer than timeout_s (3 s)"), "{log}");
    // One import for the three filters, two workers and two replacements:
    // every worker is a copy of the process that imported, and none of them
    // imported the module again.
    let lines = |f: &str| -> BTreeSet<String> {
        std::fs::read_to_string(w.path().join(f)).unwrap_or_default().lines().map(String::from).collect()
    };
    let imports = std::fs::read_to_string(w.path().join("imports.log")).unwrap();
    assert_eq!(imports.lines().count(), 1, "imported more than once: {imports}");
    let callers = lines("calls.log");
    assert!(callers.len() >= 3, "two workers and at least one replacement answered: {callers:?}");
    assert!(!callers.iter().any(|p| imports.lines().any(|i| i == p)), "the template itself ran a filter");
}

#[test]
fn failures_in_a_row_fail_the_stream_with_the_reason_and_the_others_go_on() {
    let w = Workspace::new();
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "300", "--per-file", "100", "--seed", "6"]).code, 0);
    w.write("crash.py", "import os\n\ndef always(fid):\n    os._exit(9)\n");
    let (t_ok, t_bad) = (unique("pyok"), unique("pybad"));
    w.config(&format!(
        "{}[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\n\n[[topic]]\nname = \"{t_ok}\"\n[[topic]]\nname = \"{t_bad}\"\n\n\
         [filter.always]\npython = \"crash.py:always\"\n\n\
         [[stream]]\nname = \"ok\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{t_ok}\"\n\n\
         [[stream]]\nname = \"bad\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{t_bad}\"\nfilters = [\"always\"]\n",
        python_section("max_failures = 2\ntimeout_s = 5")
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = FinkRun::start(&w, &[]);
    r.wait("the crashing stream failed and restarted", || {
        let s = r.stream("bad");
        s["restarts"].as_u64().unwrap_or(0) >= 1 || s["state"].to_string().contains("2 failures in a row")
    });
    r.wait("the other stream published everything", || r.stream("ok")["stats"]["published"] == 300);
    let text = std::fs::read_to_string(&r.log).unwrap();
    assert!(text.contains("python filter \\\"always\\\"") || text.contains("python filter \"always\""), "{text}");
    assert!(text.contains("killed by signal") || text.contains("exit code 9"), "{text}");
    r.wait("the metrics count the restarts", || {
        let m = r.metrics();
        m.lines().any(|l| l.starts_with("fink_python_worker_restarts_total") && !l.ends_with(" 0"))
            && m.contains("fink_python_filter_errors_total{filter=\"always\"}")
    });
    assert_eq!(candids(&t_bad), Vec::<i64>::new());
}

#[test]
fn an_edited_python_file_reloads_its_stream_only_once_it_imports() {
    let w = Workspace::new();
    assert_eq!(w.fink(&["simulate", "--out", "src/a", "--alerts", "200", "--per-file", "100", "--seed", "1"]).code, 0);
    w.write("cut.py", "def cut(fid):\n    return fid == 1\n");
    let topic = unique("pyhr");
    w.config(&format!(
        "{}[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\n\n[[topic]]\nname = \"{topic}\"\n\n\
         [filter.cut]\npython = \"cut.py:cut\"\n\n\
         [[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nfilters = [\"cut\"]\n",
        python_section("")
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = FinkRun::start(&w, &[]);
    let first = source_records(&w.path().join("src/a"));
    let fid1 = first.iter().filter(|a| a["candidate"]["fid"] == 1).count() as u64;
    r.wait("the first files published", || r.stream("s")["stats"]["published"] == fid1);

    // A broken edit is refused; the stream keeps running its version.
    w.write("cut.py", "def cut(fid)\n    return fid == 2\n");
    r.wait("the broken edit refused", || r.status()["config"]["last_reload_error"].to_string().contains("SyntaxError"));
    assert_eq!(r.stream("s")["restarts"], 0);

    // A good edit restarts the stream with it, for the files that come next.
    w.write("cut.py", "def cut(fid):\n    return fid == 2\n");
    r.wait("the good edit loaded", || {
        let st = r.status();
        st["config"]["last_reload_error"].is_null() && st["config"]["reloads"].as_u64().unwrap_or(0) >= 2
    });
    assert_eq!(w.fink(&["simulate", "--out", "src/b", "--alerts", "200", "--per-file", "100", "--seed", "2"]).code, 0);
    let second = source_records(&w.path().join("src/b"));
    let fid2 = second.iter().filter(|a| a["candidate"]["fid"] == 2).count() as u64;
    r.wait("the new files published with the new cut", || r.stream("s")["stats"]["published"] == fid2);
    let got = consume_all_decoded(&topic, 1);
    assert_eq!(got.len() as u64, fid1 + fid2);
    let fids: Vec<i64> = got.iter().map(|(_, v)| v["candidate"]["fid"].as_i64().unwrap()).collect();
    assert!(fids[..fid1 as usize].iter().all(|f| *f == 1) && fids[fid1 as usize..].iter().all(|f| *f == 2), "{fids:?}");
}

#[test]
fn validate_names_a_missing_module_and_the_interpreter_at_the_filter_line() {
    let w = Workspace::new();
    w.config(&format!(
        "{}[[topic]]\nname = \"t\"\n\n[filter.nope]\npython = \"no_such_module_xyz:f\"\n\n\
         [[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"t\"\nfilters = [\"nope\"]\n",
        python_section("")
    ));
    let r = w.fink(&["validate"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let line = r.stderr.lines().find(|l| l.contains("no_such_module_xyz")).unwrap_or_else(|| panic!("{}", r.all()));
    assert!(line.starts_with("fink.toml:") && line.contains("ModuleNotFoundError"), "{line}");
    assert!(line.contains(&python().display().to_string()), "{line}");
}

#[test]
fn kill_9_mid_backlog_with_a_python_filter_then_every_kept_alert_exactly_once() {
    let w = Workspace::new();
    let topic = unique("pyeos");
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "3000", "--per-file", "100", "--seed", "13"]).code, 0);
    w.write("cut.py", "def cut(fid):\n    return fid == 1\n");
    w.config(&format!(
        "{}[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\ncommit_interval_ms = 300\nbatch_size = 50\n\n\
         [[topic]]\nname = \"{topic}\"\npartitions = 3\n\n[filter.cut]\npython = \"cut.py:cut\"\n\n\
         [[stream]]\nname = \"c\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nfilters = [\"cut\"]\n",
        python_section("")
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let mut mid_backlog = 0;
    for k in 0..3u64 {
        let mut run = FinkRun::start(&w, &[]);
        // A count of this run's alerts, not a time: ~1,500 are kept, so a
        // kill after 50-150 of them lands mid-backlog on any build.
        let after = 50 * (k + 1);
        run.wait(&format!("the stream to publish {after} alerts"), || {
            run.stream("c")["stats"]["published"].as_u64().unwrap_or(0) >= after
                || run.stream("c")["state"]["state"] == "idle"
        });
        if run.stream("c")["state"]["state"] != "idle" {
            mid_backlog += 1;
        }
        run.child.kill().unwrap(); // SIGKILL: its workers see their pipes close
        run.child.wait().unwrap();
    }
    assert!(mid_backlog >= 2, "the kills must land mid-backlog ({mid_backlog} of 3 did)");
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let rows = source_records(&w.path().join("src"));
    let want: BTreeSet<i64> =
        rows.iter().filter(|a| a["candidate"]["fid"] == 1).map(|a| a["candid"].as_i64().unwrap()).collect();
    let all: Vec<i64> = consume_all_decoded(&topic, 3).iter().map(|(_, v)| v["candid"].as_i64().unwrap()).collect();
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct, want, "every kept alert arrives, no other");
    assert_eq!(all.len(), want.len(), "no alert twice");
}

#[test]
fn a_dataframe_filter_gets_the_whole_batch_and_nullable_answers_keep_nothing_where_null() {
    let w = Workspace::new();
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "300", "--per-file", "150", "--seed", "9"]).code, 0);
    w.write(
        "frame.py",
        "import pandas as pd\n\n\
         def fid1(df):\n    return df[\"candidate\"].apply(lambda c: c[\"fid\"] == 1)\n\n\
         def nullable(fid, rb):\n    out = pd.Series(fid == 1, dtype=\"boolean\")\n    out[rb < 0.5] = pd.NA\n    return out\n",
    );
    w.config(&format!(
        "{}[filter.frame]\npython = \"frame.py:fid1\"\ndataframe = true\n\n[filter.nullable]\npython = \"frame.py:nullable\"\n",
        python_section("")
    ));
    let r = w.fink(&["filter", "test", "--data", "src", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let reports: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    let rows = source_records(&w.path().join("src"));
    let kept = |name: &str| reports.iter().find(|r| r["filter"] == name).unwrap()["kept"].as_u64().unwrap();
    let fid1 = rows.iter().filter(|a| a["candidate"]["fid"] == 1).count() as u64;
    let fid1_real =
        rows.iter().filter(|a| a["candidate"]["fid"] == 1 && a["candidate"]["rb"].as_f64().unwrap() >= 0.5).count()
            as u64;
    assert_eq!(kept("frame"), fid1);
    assert_eq!(kept("nullable"), fid1_real);
    assert!(fid1_real < fid1);
}

#[test]
fn fields_hand_a_worker_only_the_listed_fields_of_each_history_entry() {
    let w = Workspace::new();
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "300", "--per-file", "150", "--seed", "4"]).code, 0);
    w.write(
        "history.py",
        "def only_listed(prv_candidates):\n    \
         return prv_candidates.apply(lambda l: l is not None and len(l) > 0 and all(set(d) == {\"jd\", \"magpsf\"} for d in l))\n\n\
         def reads_another(prv_candidates):\n    \
         return prv_candidates.apply(lambda l: l is not None and any(d[\"fid\"] == 1 for d in l))\n",
    );
    w.config(&format!(
        "{}[filter.only_listed]\npython = \"history.py:only_listed\"\nfields = {{ prv_candidates = [\"jd\", \"magpsf\"] }}\n\n\
         [filter.reads_another]\npython = \"history.py:reads_another\"\nfields = {{ prv_candidates = [\"jd\", \"magpsf\"] }}\n",
        python_section("")
    ));
    let r = w.fink(&["filter", "test", "--data", "src", "--output", "json"]);
    let reports: Vec<Value> = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
    let report =
        |name: &str| reports.iter().find(|r| r["filter"] == name).unwrap_or_else(|| panic!("{name}: {reports:?}"));
    // Independent count: alerts with a history, read row by row with the
    // parquet crate's record reader, not fink's Arrow path.
    let rows = source_records(&w.path().join("src"));
    let with_history =
        rows.iter().filter(|a| a["prv_candidates"].as_array().is_some_and(|l| !l.is_empty())).count() as u64;
    assert!(with_history > 0 && with_history < 300, "{with_history}");
    // Every entry the worker saw had exactly the two listed fields.
    assert_eq!(report("only_listed")["kept"].as_u64(), Some(with_history), "{}", r.all());
    // A field not listed is not there: the filter fails on it, kept nothing.
    let other = report("reads_another");
    assert_eq!(other["kept"].as_u64(), Some(0), "{other}");
    assert!(other.to_string().contains("KeyError"), "{other}");
}

/// Two filters of one stream read the same columns of each batch: the
/// second gets the worker's conversion of the first (counted in /metrics),
/// and what the first changes in its arguments never reaches the second.
/// With `share_conversions = false` each converts its own, same answers.
#[test]
fn filters_reading_the_same_columns_share_one_conversion_and_never_each_others_changes() {
    let w = Workspace::new();
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "400", "--per-file", "200", "--seed", "12"]).code, 0);
    w.write(
        "share.py",
        "def scribble(candidate, prv_candidates):\n    \
         keep = candidate['magpsf'] == candidate['magpsf']\n    \
         candidate['magpsf'] = 0.0\n    \
         candidate.loc[:, 'fid'] = 7\n    \
         prv_candidates[:] = None\n    \
         return keep | True\n\n\
         def bright(candidate, prv_candidates):\n    \
         return (candidate['magpsf'] < 18.5) & (candidate['fid'] != 7) & prv_candidates.notna()\n",
    );
    // Independent: the parquet crate's record reader, not fink's Arrow path.
    let want: BTreeSet<i64> = source_records(&w.path().join("src"))
        .iter()
        .filter(|a| a["candidate"]["magpsf"].as_f64().is_some_and(|m| m < 18.5) && !a["prv_candidates"].is_null())
        .map(|a| a["candid"].as_i64().unwrap())
        .collect();
    assert!(!want.is_empty() && want.len() < 400, "{}", want.len());
    for share in [true, false] {
        let topic = unique("pyshare");
        w.config(&format!(
            "{}[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\n\n[[topic]]\nname = \"{topic}\"\n\n\
             [filter.scribble]\npython = \"share.py:scribble\"\n\n[filter.bright]\npython = \"share.py:bright\"\n\n\
             [[stream]]\nname = \"s{share}\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\n\
             filters = [\"scribble\", \"bright\"]\n",
            python_section(&format!("share_conversions = {share}"))
        ));
        assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
        let _ = std::fs::remove_file(w.path().join("state/metrics.addr"));
        let r = FinkRun::start(&w, &[]);
        r.wait("every alert read and the stream idle", || {
            let s = r.stream(&format!("s{share}"));
            s["stats"]["read"] == 400 && s["state"]["state"] == "idle"
        });
        let reused = |m: &str| -> u64 {
            m.lines()
                .find(|l| l.starts_with("fink_python_filter_columns_reused_total{filter=\"bright\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0)
        };
        if share {
            // Both arguments of both batches were handed over converted.
            r.wait("the second filter reused the first one's columns", || reused(&r.metrics()) >= 4);
        } else {
            r.wait("the filters' counts in /metrics", || {
                r.metrics().contains("fink_python_filter_batches_total{filter=\"bright\"} 2")
            });
            assert_eq!(reused(&r.metrics()), 0, "share_conversions = false still shared");
        }
        let got: BTreeSet<i64> = candids(&topic).into_iter().collect();
        assert_eq!(got, want, "share_conversions = {share}: the second filter saw the first one's changes");
    }
}

/// `[python] batch_rows` above the batch size: the stream decides each file
/// first, calling the Python filter on up to that many rows of the file
/// (those its CEL filter kept) instead of once per 100-row batch; an
/// exception on one call publishes the rows decided before it and
/// quarantines the file from that call's first row.
#[test]
fn python_filters_decide_a_file_first_in_calls_of_batch_rows_after_cel() {
    let w = Workspace::new();
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "1000", "--per-file", "500", "--seed", "9"]).code, 0);
    let rows = source_records(&w.path().join("src"));
    assert_eq!(rows.len(), 1000);
    let cel = |a: &Value| a["candidate"]["rb"].as_f64().unwrap() > 0.3;
    // The first alert CEL keeps in rows 200..300 of the second file: in
    // the call over its rows 150..300, inside the batch of rows 100..200.
    let bad_at = (700..800).find(|i| cel(&rows[*i])).expect("a kept alert");
    let bad = rows[bad_at]["candid"].as_i64().unwrap();
    w.write(
        "sizes.py",
        &format!(
            "import os\nBAD = {bad}\n\ndef sizes(fid, candid):\n    with open(os.path.join(os.path.dirname(__file__), \
             \"sizes.txt\"), \"a\") as f:\n        f.write(\"%d\\n\" % len(fid))\n    if (candid == BAD).any():\n        \
             raise ValueError(\"bad alert %d\" % BAD)\n    return fid == 1\n"
        ),
    );
    let t = unique("pyahead");
    w.config(&format!(
        "{}[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\nbatch_size = 100\n\n[[topic]]\nname = \"{t}\"\n\n\
         [filter.rb]\nexpr = \"candidate.rb > 0.3\"\n[filter.sizes]\npython = \"sizes.py:sizes\"\n\n\
         [[stream]]\nname = \"ahead\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{t}\"\nfilters = [\"rb\", \"sizes\"]\n",
        python_section("batch_rows = 150")
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());

    // One call per 150 rows of a file, each on the rows CEL kept there; none
    // after the failed one.
    let mut want_sizes = Vec::new();
    for (file, calls) in
        [(0usize, vec![(0, 150), (150, 300), (300, 450), (450, 500)]), (500, vec![(0, 150), (150, 300)])]
    {
        for (a, b) in calls {
            let n = rows[file + a..file + b].iter().filter(|x| cel(x)).count();
            if n > 0 {
                want_sizes.push(n.to_string());
            }
        }
    }
    let sizes = std::fs::read_to_string(w.path().join("sizes.txt")).unwrap();
    assert_eq!(sizes.lines().collect::<Vec<_>>(), want_sizes, "calls per 150 rows of CEL-kept alerts");

    // Published: the first file's, and the second's rows before row 150.
    let keep = |a: &Value| cel(a) && a["candidate"]["fid"] == 1;
    let want: Vec<i64> = rows[..650].iter().filter(|a| keep(a)).map(|a| a["candid"].as_i64().unwrap()).collect();
    assert_eq!(candids(&t), want);
    let q = quarantined(&w, "ahead");
    assert_eq!(q.len(), 1, "{q:?}");
    let reason = q[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("ValueError: bad alert {bad}")) && reason.contains("rows from 150 on"),
        "{reason}"
    );
}

#[test]
fn a_python_filter_keeping_few_alerts_has_only_those_read_and_published_once_in_order() {
    let w = Workspace::new();
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "900", "--per-file", "300", "--seed", "10"]).code, 0);
    let rows = source_records(&w.path().join("src"));
    // About one alert in two hundred: most pages of the large columns (cutouts,
    // histories) hold none of them.
    w.write("rare.py", "def rare(candid):\n    return candid % 200 == 3\n");
    let t = unique("pyrare");
    w.config(&format!(
        "{}[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\nbatch_size = 100\n\n[[topic]]\nname = \"{t}\"\n\n\
         [filter.rare]\npython = \"rare.py:rare\"\n\n\
         [[stream]]\nname = \"rare\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{t}\"\nfilters = [\"rare\"]\n",
        python_section("")
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let out = w
        .cmd()
        .env("FINK_LOG", "fink::stream::runner=debug")
        .args(["run", "--until-idle", "--output", "json"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{log}");
    let want: Vec<i64> = rows.iter().map(|a| a["candid"].as_i64().unwrap()).filter(|c| c % 200 == 3).collect();
    assert!(!want.is_empty() && want.len() * 4 < rows.len(), "a sparse cut: {} of {}", want.len(), rows.len());
    assert_eq!(candids(&t), want);
    // Each file was read for its kept rows alone, and every alert counted.
    assert_eq!(log.matches("read its kept rows").count(), 3, "{log}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stats = &summary["streams"][0]["stats"];
    assert_eq!(stats["read"], 900, "{stats}");
    assert_eq!(stats["published"].as_u64().unwrap() + stats["filtered"].as_u64().unwrap(), 900, "{stats}");
    // Only the pages of the kept rows were fetched (the files have an
    // offset index and ~1 MB pages, as Spark writes them: ~70 alerts a
    // cutout page, so 9 kept alerts touch about 9 of each cutout column's
    // 15 pages). A stream reading every row reads about the files' size.
    let size: u64 =
        std::fs::read_dir(w.path().join("src/20200101")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let read = stats["source_bytes"].as_u64().unwrap();
    assert!(read > 0 && read * 3 < size * 2, "{read} bytes read of {size} for {} alerts of 900", want.len());
}
