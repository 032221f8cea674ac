//! Exactly-once delivery (the default): `kill -9` of `fink run`, again and
//! again mid-backlog, then a restart; and two instances of one group where
//! one is killed. A read_committed consumer (as fink-client) must see every
//! source alert exactly once. Progress lives in the state topic; the local
//! checkpoint of an at-least-once run is imported once.

mod common;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;

/// Every message's candid, read_committed, until every partition's end.
fn candids(topic: &str, partitions: i32) -> Vec<i64> {
    consume_all_decoded(topic, partitions).iter().map(|(_, v)| v["candid"].as_i64().unwrap()).collect()
}

/// A small deterministic random sequence (no dependency for it).
struct Lcg(u64);
impl Lcg {
    fn next_in(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo + 1)
    }
}

fn simulate(w: &Workspace, alerts: usize, per_file: usize) {
    simulate_into(w, "src", alerts, per_file, 11);
}

fn simulate_into(w: &Workspace, out: &str, alerts: usize, per_file: usize, seed: u64) {
    let r = w.fink(&[
        "simulate",
        "--out",
        out,
        "--alerts",
        &alerts.to_string(),
        "--per-file",
        &per_file.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn kill_9_again_and_again_then_every_alert_exactly_once() {
    let w = Workspace::new();
    let topic = unique("eos");
    // FINK_CHAOS_KILLS / FINK_CHAOS_ALERTS scale it up (integration/chaos.sh runs 20 kills over 50,000 alerts).
    let alerts = env_or("FINK_CHAOS_ALERTS", 4000) as usize;
    let kills = env_or("FINK_CHAOS_KILLS", 5);
    // Alerts keep arriving, as in a night: a share lands before each
    // restart, so every run has a backlog however fast the previous one
    // was, and each kill comes after a random count of this run's alerts
    // (a count, not a time, so a faster build still kills mid-backlog).
    let share = (alerts / (kills as usize + 1)) / 100 * 100;
    assert!(kills >= 1);
    assert!(share >= 200, "FINK_CHAOS_ALERTS too small for {kills} kills");
    // The first run's backlog: the rest after the later shares.
    simulate(&w, alerts - share * (kills as usize - 1), 100);
    // Small batches and frequent commits: more transactions to interrupt.
    let commit_ms = env_or("FINK_CHAOS_COMMIT_MS", 300);
    let batch = env_or("FINK_CHAOS_BATCH", 256);
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\ncommit_interval_ms = {commit_ms}\nbatch_size = {batch}\n\n[[topic]]\nname = \"{topic}\"\npartitions = 3\n\n[[stream]]\nname = \"c\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let mut rng = Lcg(7);
    let mut landed_mid_backlog = 0;
    for k in 0..kills {
        if k > 0 {
            simulate_into(&w, &format!("src/arrived{k}"), share, 100, 11 + k);
        }
        let mut run = FinkRun::start(&w, &[]);
        let after = rng.next_in(1, share as u64 / 2);
        run.wait(&format!("the stream to publish {after} alerts"), || {
            run.stream("c")["stats"]["published"].as_u64().unwrap_or(0) >= after
                || run.stream("c")["state"]["state"] == "idle"
        });
        let idle = run.stream("c")["state"]["state"] == "idle";
        run.child.kill().unwrap(); // SIGKILL
        run.child.wait().unwrap();
        if !idle {
            landed_mid_backlog += 1;
        }
        eprintln!(
            "kill {} of {kills}: {}",
            k + 1,
            if idle { "after the backlog".to_string() } else { format!("mid-backlog, {after}+ alerts into the run") }
        );
    }
    eprintln!("{landed_mid_backlog} of {kills} kills landed mid-backlog");
    assert!(landed_mid_backlog >= 2, "the kills must land mid-backlog ({landed_mid_backlog} did)");
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let all = candids(&topic, 3);
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    eprintln!("{kills} kills over {alerts} alerts: {} messages read_committed, {} distinct", all.len(), distinct.len());
    assert_eq!(distinct.len(), alerts, "every alert arrives");
    assert_eq!(all.len(), alerts, "no alert twice ({} duplicates)", all.len() - distinct.len());

    // The state shows it all done, and a reset to the start is refused
    // only while the stream runs.
    let show = w.fink(&["state", "show", "--output", "json"]);
    assert_eq!(show.code, 0, "{}", show.all());
    let rows: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(rows[0]["stream"], "c");
    assert_eq!(rows[0]["files_done"].as_u64(), Some((alerts / 100) as u64), "{rows}");
    // Every file recorded (the folder is not quiet long enough to fold yet).
    assert_eq!(rows[0]["open_files"].as_u64(), Some((alerts / 100) as u64), "{rows}");
    assert_eq!(rows[0]["changed_after_publish"].as_array().map(|a| a.len()), Some(0), "{rows}");
    let run = FinkRun::start(&w, &[]);
    run.wait("the stream to own and idle", || run.stream("c")["state"]["state"] == "idle");
    let refused = w.fink(&["state", "reset", "c", "--to-start"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.all().contains("is running on instance"), "{}", refused.all());
    run.signal("TERM");
    let mut run = run;
    run.child.wait().unwrap();
    let r = w.fink(&["state", "reset", "c", "--to-start"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = w.fink(&["state", "show", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows[0]["files_done"].as_u64(), Some(0), "{rows}");
}

#[test]
fn an_at_least_once_checkpoint_is_imported_once_and_nothing_is_sent_again() {
    let w = Workspace::new();
    let topic = unique("migrate");
    simulate(&w, 600, 100);
    let cfg = |delivery: &str| {
        format!(
            "[run]\ndelivery = \"{delivery}\"\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"m\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\n"
        )
    };
    w.config(&cfg("at-least-once"));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(w.path().join("state/m.checkpoint.json").exists());
    // Switch to exactly-once and add alerts: only the new ones are published.
    w.config(&cfg("exactly-once"));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = w.fink(&["simulate", "--out", "src/later", "--alerts", "200", "--per-file", "100", "--seed", "12"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!w.path().join("state/m.checkpoint.json").exists(), "imported and renamed");
    assert!(w.path().join("state/m.checkpoint.json.imported").exists());
    let all = candids(&topic, 1);
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!((all.len(), distinct.len()), (800, 800), "600 before, 200 after, none twice");
    // A second run finds the progress in the state topic, not the file.
    let r = w.fink(&["run", "--until-idle", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(candids(&topic, 1).len(), 800);
}

#[test]
fn a_commit_waits_for_room_when_the_alerts_fill_the_producer_queue() {
    // Rubin alerts fill the 8 MB queue with ~40: the state record of a
    // commit then found no room, and the stream failed and restarted. A
    // queue of one message makes every commit meet a full queue.
    let w = Workspace::new();
    let topic = unique("qfull");
    simulate(&w, 120, 40);
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\ncommit_interval_ms = 100\nbatch_size = 20\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"q\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nproducer = {{ properties = {{ \"queue.buffering.max.messages\" = \"1\" }} }}\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains("Queue full") && !r.all().contains("restarting"), "{}", r.all());
    let all = candids(&topic, 1);
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!((all.len(), distinct.len()), (120, 120));
}

#[test]
fn two_instances_share_the_streams_and_the_survivor_of_a_kill_9_finishes_them_exactly_once() {
    let a = Workspace::new();
    let b = Workspace::new();
    let group = a.group();
    std::fs::write(b.path().join("test-group"), &group).unwrap();
    let alerts = 1500;
    // Both instances read the same files (a shared filesystem).
    simulate(&a, alerts, 50);
    let src = a.path().join("src");
    // Six streams whose state keys fall on six distinct partitions of the
    // twelve: whichever six partitions the group gives the second
    // instance, it gets a share (all but 1 in 924 ways).
    let names = names_on_distinct_state_partitions(&group, "s", 6);
    let topics: BTreeMap<String, String> = names.iter().map(|n| (n.clone(), unique(&format!("multi_{n}")))).collect();
    let mut text =
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\nsession_timeout_ms = 6000\n".to_string();
    for (n, t) in &topics {
        text += &format!(
            "\n[[topic]]\nname = \"{t}\"\n\n[[stream]]\nname = \"{n}\"\nsource = {{ format = \"parquet\", path = \"{}\" }}\ntopic = \"{t}\"\nproducer = {{ properties = {{ \"batch.num.messages\" = \"20\" }} }}\n",
            src.display()
        );
    }
    a.config(&text);
    b.config(&text);
    assert_eq!(a.fink(&["apply", "--auto-approve"]).code, 0);

    let mut ra = FinkRun::start(&a, &[]);
    ra.wait("instance A to run all six streams", || ra.status()["streams"].as_array().is_some_and(|s| s.len() == 6));
    let rb = FinkRun::start(&b, &[]);
    rb.wait("instance B to take a share", || rb.status()["streams"].as_array().is_some_and(|s| !s.is_empty()));
    ra.wait("A to give B its share", || ra.status()["streams"].as_array().is_some_and(|s| s.len() < 6));
    // /status on either instance shows who runs what.
    // Once the rebalance settled (cooperative: A revokes, then B is given).
    let shares = |v: &serde_json::Value| -> Vec<usize> {
        v["instances"]
            .as_array()
            .map(|i| i.iter().map(|x| x["streams"].as_array().unwrap().len()).collect())
            .unwrap_or_default()
    };
    rb.wait("the group view on B to list both instances and all six streams", || {
        let s = shares(&rb.status()["group"]);
        s.len() == 2 && s.iter().sum::<usize>() == 6 && s.iter().all(|n| *n > 0)
    });
    let view = rb.status()["group"].clone();
    let mine: Vec<String> =
        rb.status()["streams"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
    let me = view["instance"].as_str().unwrap();
    let listed = view["instances"].as_array().unwrap().iter().find(|i| i["instance"] == me).unwrap()["streams"].clone();
    assert_eq!(serde_json::json!(mine), listed, "B's own streams are those the group view gives it: {view}");
    assert!(rb.metrics().contains("fink_stream_owned{stream="), "owned metric");
    // An instance whose config differs shows as a warning on the others.
    b.config(&format!("{text}\n# edited on B only\n"));
    ra.wait("A to warn that B's config differs", || {
        ra.status()["group"]["config_mismatch"].as_array().is_some_and(|m| !m.is_empty())
    });
    let st = a.fink(&["status", "--addr", &ra.addr]);
    assert!(st.stdout.contains("run another config"), "{}", st.stdout);
    ra.child.kill().unwrap(); // kill -9 while streams are in the backlog
    ra.child.wait().unwrap();
    let killed = Instant::now();
    rb.wait("B to take over every stream", || rb.status()["streams"].as_array().is_some_and(|s| s.len() == 6));
    eprintln!("takeover after {:.1} s (session timeout 6 s)", killed.elapsed().as_secs_f64());
    rb.wait("B to finish the backlog", || {
        rb.status()["streams"].as_array().is_some_and(|s| s.iter().all(|x| x["state"]["state"] == "idle"))
    });
    for (n, t) in &topics {
        let all = candids(t, 1);
        let distinct: BTreeSet<i64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), alerts, "stream {n}: every alert");
        assert_eq!(all.len(), alerts, "stream {n}: no alert twice");
    }
    let _ = Duration::ZERO;
}

#[test]
fn state_faults_stop_the_stream_with_the_fix() {
    let w = Workspace::new();
    let topic = unique("faults");
    let state_topic = format!("_fink_state_{}", w.group());
    simulate(&w, 100, 50);
    let stream = |extra: &str| {
        format!(
            "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n{extra}\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"f\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\n"
        )
    };
    // A state topic that exists but is not compacted.
    // (Created with the state topic's partition count: `fink plan` refuses to change that.)
    w.config(&format!(
        "{}\n[[topic]]\nname = \"{state_topic}\"\npartitions = 12\n",
        stream("delivery = \"at-least-once\"")
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    w.config(&stream(""));
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("not compacted") && r.all().contains("fink apply"), "{}", r.all());
    // `fink apply` fixes it (the plan shows the config change).
    let plan = w.fink(&["plan"]);
    assert!(plan.stdout.contains("cleanup.policy"), "{}", plan.stdout);
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);

    // A corrupt progress record: the stream refuses to start, names the reset.
    {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let p: BaseProducer = admin_conn().client_config().create().unwrap();
        let key = format!("{}/f", w.group());
        let part = fink::stream::state::partition_for(&key, 12);
        p.send(BaseRecord::<str, [u8]>::to(&state_topic).partition(part).key(&key).payload(b"{not json")).unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
    }
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("unreadable") && r.all().contains("fink state reset f"), "{}", r.all());
    assert!(candids(&topic, 1).is_empty(), "nothing published from a guessed start");
    let r = w.fink(&["state", "reset", "f", "--to-start"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(candids(&topic, 1).len(), 100);
}

#[test]
fn a_user_without_the_transactional_id_acl_is_told_which_binding_to_add() {
    let w = Workspace::new();
    let (topic, user) = (unique("notxn"), unique("notxnuser"));
    let pw = w.secret("u.pw", "no-txn-Password-1");
    let group = w.group();
    let state_topic = format!("_fink_state_{group}");
    simulate(&w, 50, 50);
    // Everything but the transactional id: explicit bindings, no role.
    let mut acls = String::new();
    for (resource, name, ops) in [
        ("topic", topic.as_str(), "[\"Write\", \"Describe\"]"),
        ("topic", state_topic.as_str(), "[\"Read\", \"Write\", \"Describe\"]"),
        ("group", group.as_str(), "[\"Read\", \"Describe\"]"),
    ] {
        acls += &format!(
            "\n[[acl]]\nuser = \"{user}\"\nresource = \"{resource}\"\nname = \"{name}\"\noperations = {ops}\n"
        );
    }
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[user]]\nname = \"{user}\"\npassword = {{ file = \"{pw}\" }}\n{acls}\n[[stream]]\nname = \"x\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nuser = \"{user}\"\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let all = r.all();
    assert!(
        all.contains("transactional id") && all.contains(&format!("{group}.")) && all.contains("producer"),
        "{all}"
    );
    assert!(!all.contains("no-txn-Password-1"));
}

/// A state topic whose partition count differs from `[run] state_partitions`
/// (changed outside fink) would make every stream start over: the run
/// refuses, naming the fix.
#[test]
fn a_state_topic_with_another_partition_count_is_refused() {
    let w = Workspace::new();
    let topic = unique("sp");
    let body = |n: u32| {
        format!(
            "[run]\nstate_dir = \"state\"\nstate_partitions = {n}\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"c\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\n"
        )
    };
    std::fs::create_dir_all(w.path().join("src")).unwrap();
    w.config(&body(3));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    w.config(&body(5));
    let r = w.fink(&["run", "--until-idle", "--no-progress"]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.all().contains("has 3 partition(s) but [run] state_partitions is 5"), "{}", r.all());
    assert!(r.all().contains("Set state_partitions = 3"), "{}", r.all());
}
