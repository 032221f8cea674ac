//! Production shape: three brokers, replication factor 3 and
//! min.insync.replicas 2 (profiles/test3.toml, started by `.ci/run` beside
//! the one-node cluster). `kill -9` of one broker mid-stream, then its
//! restart: no stream fails, and a read_committed consumer sees every alert
//! exactly once.

mod common;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use fink::cluster::Connection;

fn bootstrap3() -> String {
    std::env::var("FINK_TEST_BOOTSTRAP3")
        .expect("FINK_TEST_BOOTSTRAP3 is not set: `.ci/run` starts the three-node cluster (profiles/test3.toml)")
}

fn cluster3(args: &[&str]) -> std::process::Output {
    Command::new(fink_bin())
        .args(["--profile", "test3", "cluster"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn node_pids() -> Vec<i64> {
    let out = cluster3(&["status", "--output", "json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("cluster status: {e}\n{}", String::from_utf8_lossy(&out.stderr)));
    st["nodes"].as_array().unwrap().iter().filter_map(|n| n["pid"].as_i64()).collect()
}

/// The tests of this file take the three-node cluster in turn: one kills a
/// broker, which others (a replica move, the instances' restarts count)
/// must not meet by chance.
static CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    let guard = CLUSTER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // A broker killed and restarted by an earlier test is registered again.
    let admin = fink::cluster::Admin::connect(Connection { bootstrap: bootstrap3(), ..admin_conn() }).unwrap();
    wait_until(
        "the three brokers in the cluster's metadata",
        120,
        || admin.topics().is_ok_and(|(brokers, _)| brokers.len() == 3),
        String::new,
    );
    guard
}

/// Every candid on the topic, read_committed, from the three-node cluster.
fn candids3(topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let conn = Connection { bootstrap: bootstrap3(), ..admin_conn() };
    let mut cfg = conn.client_config();
    cfg.set("group.id", unique("g3"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    let c: BaseConsumer = cfg.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut ended = BTreeSet::new();
    let mut out = Vec::new();
    let mut decoder = fink::stream::consume::Decoder::new(None).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while ended.len() < partitions as usize && std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                ended.remove(&m.partition());
                let v = fink::stream::consume::to_json(&decoder.decode(m.key(), m.payload().unwrap()).unwrap());
                out.push(v["candid"].as_i64().unwrap());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            _ => {}
        }
    }
    assert_eq!(ended.len(), partitions as usize, "every partition read to its end");
    out
}

#[test]
fn kill_9_of_one_broker_of_three_mid_stream_fails_no_stream_and_loses_nothing() {
    let _cluster = exclusive();
    let pids = node_pids();
    assert_eq!(pids.len(), 3, "three nodes running");
    let w = Workspace::new();
    let topic = unique("three");
    let alerts = 3000;
    let r = w.fink(&["simulate", "--out", "src", "--alerts", &alerts.to_string(), "--per-file", "50", "--seed", "21"]);
    assert_eq!(r.code, 0, "{}", r.all());
    w.write(
        "fink.toml",
        &format!(
            "[cluster]\nbootstrap = [\"{}\"]\ntimeout_secs = 30\n[cluster.admin]\nuser = \"admin\"\npassword = {{ file = \"{}\" }}\n\n[defaults]\nreplication_factor = 3\n\n[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\ncommit_interval_ms = 300\n\n[[topic]]\nname = \"{topic}\"\npartitions = 3\nconfig = {{ \"min.insync.replicas\" = 2 }}\n\n[[stream]]\nname = \"t\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nproducer = {{ properties = {{ \"batch.num.messages\" = \"50\" }} }}\n",
            bootstrap3().split(',').collect::<Vec<_>>().join("\", \""),
            admin_password_file().display()
        ),
    );
    let r = w.fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let run = FinkRun::start(&w, &[]);
    run.wait("the stream to publish", || run.stream("t")["stats"]["published"].as_u64().unwrap_or(0) > 0);
    // Kill the second node hard, mid-stream; the stream goes on with two.
    let victim = pids[1];
    assert!(Command::new("kill").args(["-9", &victim.to_string()]).status().unwrap().success());
    let at_kill = run.stream("t")["stats"]["published"].as_u64().unwrap_or(0);
    run.wait("publishing to go on with two brokers", || {
        let s = run.stream("t");
        s["stats"]["published"].as_u64().unwrap_or(0) > at_kill + 200 || s["state"]["state"] == "idle"
    });
    let out = cluster3(&["start"]);
    assert!(out.status.success(), "restart of the killed node: {}", String::from_utf8_lossy(&out.stderr));
    run.wait("the stream to finish", || run.stream("t")["state"]["state"] == "idle");
    let s = run.stream("t");
    assert_eq!(s["restarts"], 0, "no stream failed: {s}\n{}", run.log_text());
    let all = candids3(&topic, 3);
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), alerts, "every alert");
    assert_eq!(all.len(), alerts, "no alert twice");
    assert_eq!(node_pids().len(), 3, "the killed node is back");
}

/// Kafka's own ConfigCommand describing an entity type (all of them).
fn kafka_configs3(w: &Workspace, args: &[&str]) -> String {
    let home = Command::new("bash").arg(repo().join("conf/install_kafka.sh")).output().unwrap();
    let home = String::from_utf8_lossy(&home.stdout).lines().last().unwrap_or_default().to_string();
    let props = w.write(
        "admin.properties",
        &format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"{}\";\n",
            admin_password()
        ),
    );
    let out = Command::new("java")
        .args(["-Xmx256m", "-cp", &format!("{home}/libs/*"), "kafka.admin.ConfigCommand"])
        .args(["--bootstrap-server", &bootstrap3(), "--command-config"])
        .arg(&props)
        .arg("--describe")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn replication_factor_1_to_3_while_a_stream_publishes_moves_every_replica_and_leaves_no_throttle() {
    let _cluster = exclusive();
    let w = Workspace::new();
    let topic = unique("rf");
    let alerts = 2000;
    let r = w.fink(&["simulate", "--out", "src", "--alerts", &alerts.to_string(), "--per-file", "50", "--seed", "23"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let cfg = |rf: i32| {
        format!(
            "[cluster]\nbootstrap = [\"{}\"]\ntimeout_secs = 30\nreassignment_throttle_mb_s = 20\n[cluster.admin]\nuser = \"admin\"\npassword = {{ file = \"{}\" }}\n\n[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\ncommit_interval_ms = 300\n\n[[topic]]\nname = \"{topic}\"\npartitions = 3\nreplication_factor = {rf}\n\n[[stream]]\nname = \"t\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\nproducer = {{ properties = {{ \"batch.num.messages\" = \"50\" }} }}\n",
            bootstrap3().split(',').collect::<Vec<_>>().join("\", \""),
            admin_password_file().display()
        )
    };
    w.write("fink.toml", &cfg(1));
    let r = w.fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let run = FinkRun::start(&w, &[]);
    run.wait("the stream to publish", || run.stream("t")["stats"]["published"].as_u64().unwrap_or(0) > 0);

    // RF 1 -> 3 mid-stream: the plan shows the move, apply makes it and waits.
    w.write("fink.toml", &cfg(3));
    let r = w.fink(&["plan"]);
    assert!(
        r.stdout.contains("replication_factor  1 -> 3") || r.stdout.contains("replication_factor 1 -> 3"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("replicas"), "{}", r.stdout);
    let r = w.fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("throttle removed"), "{}", r.all());

    run.wait("the stream to finish", || run.stream("t")["state"]["state"] == "idle");
    assert_eq!(run.stream("t")["restarts"], 0, "{}", run.log_text());
    let all = candids3(&topic, 3);
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!((distinct.len(), all.len()), (alerts, alerts), "every alert, once");

    // Three in-sync replicas everywhere, no throttle left, nothing to do.
    let admin = fink::cluster::Admin::connect(Connection { bootstrap: bootstrap3(), ..admin_conn() }).unwrap();
    let (_, topics) = admin.topics().unwrap();
    for p in &topics[&topic].partitions {
        assert_eq!((p.replicas.len(), p.isr.len()), (3, 3), "partition {}: {p:?}", p.id);
    }
    let topic_cfg = kafka_configs3(&w, &["--entity-type", "topics", "--entity-name", &topic]);
    assert!(!topic_cfg.contains("throttled"), "{topic_cfg}");
    let brokers = kafka_configs3(&w, &["--entity-type", "brokers"]);
    assert!(!brokers.contains("throttled"), "{brokers}");
    let r = w.fink(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 0, "{}", r.all());

    // Placement by hand, started without waiting: a later apply finishes it.
    let placed =
        cfg(3).replace("replication_factor = 3\n", "replication_factor = 2\nreplicas = [[1, 2], [2, 3], [3, 1]]\n");
    w.write("fink.toml", &placed);
    let r = w.fink(&["apply", "--auto-approve", "--no-wait"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let r = w.fink(&["apply", "--auto-approve"]);
        assert_eq!(r.code, 0, "{}", r.all());
        if w.fink(&["plan", "--detailed-exitcode"]).code == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the move never converged");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, topics) = admin.topics().unwrap();
    let got: Vec<Vec<i32>> = topics[&topic].partitions.iter().map(|p| p.replicas.clone()).collect();
    assert_eq!(got, vec![vec![1, 2], vec![2, 3], vec![3, 1]]);
    assert!(!kafka_configs3(&w, &["--entity-type", "brokers"]).contains("throttled"));
    drop(run);
}

/// Issue 22's scale-out check: three instances of one group on the
/// three-broker cluster serve a night of visits. Twelve streams whose
/// progress keys fall on the twelve partitions of the state topic, so the
/// group gives each instance a share; every alert reaches every topic once
/// (read_committed).
#[test]
fn three_instances_share_a_night_of_visits_and_publish_every_alert_once() {
    let _cluster = exclusive();
    let w: Vec<Workspace> = (0..3).map(|_| Workspace::new()).collect();
    let group = w[0].group();
    for x in &w[1..] {
        std::fs::write(x.path().join("test-group"), &group).unwrap();
    }
    let (visits, per_visit, per_file) = (3usize, 200usize, 50usize);
    let alerts = visits * per_visit;
    // The night's alerts, staged; visits land in a folder all instances
    // read (a shared filesystem), file by file, temp name then rename.
    let stage = w[0].path().join("stage");
    let r = w[0].fink(&[
        "simulate",
        "--out",
        "stage",
        "--alerts",
        &alerts.to_string(),
        "--per-file",
        &per_file.to_string(),
        "--seed",
        "22",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    let mut staged: Vec<std::path::PathBuf> =
        walk(&stage).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
    staged.sort();
    assert_eq!(staged.len(), alerts / per_file);
    let night = w[0].path().join("night");
    std::fs::create_dir_all(&night).unwrap();

    let names = names_on_distinct_state_partitions(&group, "v", 12);
    let topics: Vec<(String, String)> = names.iter().map(|n| (n.clone(), unique(&format!("visits_{n}")))).collect();
    let mut text = format!(
        "[cluster]\nbootstrap = [\"{}\"]\ntimeout_secs = 30\n[cluster.admin]\nuser = \"admin\"\npassword = {{ file = \"{}\" }}\n\n[defaults]\nreplication_factor = 3\n\n[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\nsession_timeout_ms = 6000\n",
        bootstrap3().split(',').collect::<Vec<_>>().join("\", \""),
        admin_password_file().display()
    );
    for (n, t) in &topics {
        text += &format!(
            "\n[[topic]]\nname = \"{t}\"\npartitions = 2\n\n[[stream]]\nname = \"{n}\"\nsource = {{ format = \"parquet\", path = \"{}\" }}\ntopic = \"{t}\"\nselect = [\"objectId\", \"candid\"]\n",
            night.display()
        );
    }
    for x in &w {
        x.write("fink.toml", &text);
    }
    let r = w[0].fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{}", r.all());

    // Three instances join; the group spreads the twelve streams.
    let mut runs = Vec::new();
    for x in &w {
        let mut r = FinkRun::spawn(x, &[]);
        r.await_ready(x);
        runs.push(r);
    }
    let mine = |r: &FinkRun| -> Vec<String> {
        r.status()["streams"]
            .as_array()
            .map(|s| s.iter().map(|x| x["name"].as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default()
    };
    wait_until(
        "each of the three instances to own a share of the twelve streams",
        120,
        || {
            let shares: Vec<Vec<String>> = runs.iter().map(&mine).collect();
            let all: BTreeSet<&String> = shares.iter().flatten().collect();
            shares.iter().all(|s| !s.is_empty()) && all.len() == 12 && shares.iter().map(Vec::len).sum::<usize>() == 12
        },
        || runs.iter().map(|r| format!("{:?}\n{}", mine(r), r.log_text())).collect::<Vec<_>>().join("\n"),
    );
    // The visits land one after the other; each is committed on every
    // stream (by whichever instance runs it) before the next.
    for (v, files) in staged.chunks(per_visit / per_file).enumerate() {
        for f in files {
            let tmp = night.join(format!(".{}.tmp", f.file_name().unwrap().to_string_lossy()));
            std::fs::copy(f, &tmp).unwrap();
            std::fs::rename(&tmp, night.join(f.file_name().unwrap())).unwrap();
        }
        let landed = ((v + 1) * per_visit / per_file) as u64;
        wait_until(
            &format!("visit {} to be committed on every stream", v + 1),
            180,
            || {
                let done: Vec<u64> = runs
                    .iter()
                    .flat_map(|r| {
                        r.status()["streams"].as_array().cloned().unwrap_or_default().into_iter().map(|s| {
                            if s["state"]["state"] == "idle" {
                                s["stats"]["files_committed"].as_u64().unwrap_or(0)
                            } else {
                                0
                            }
                        })
                    })
                    .collect();
                done.len() == 12 && done.iter().all(|&d| d >= landed)
            },
            || runs.iter().map(|r| r.log_text()).collect::<Vec<_>>().join("\n"),
        );
    }
    for r in &runs {
        for s in r.status()["streams"].as_array().unwrap() {
            assert_eq!(s["restarts"], 0, "no stream failed: {s}");
        }
    }
    for (n, t) in &topics {
        let all = candids3(t, 2);
        let distinct: BTreeSet<i64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), alerts, "stream {n}: every alert");
        assert_eq!(all.len(), alerts, "stream {n}: no alert twice");
    }
}
