//! No alert waits: many low-pass streams (a few alerts each per burst, as
//! most of Fink's topics on a Rubin visit) over repeated bursts. After each
//! burst every topic holds, read_committed, exactly what its filter keeps
//! of the files so far, and no stream shows an alert in flight or a stall.
//! (A delivery report that reached the stream before its own send
//! returned once left a phantom alert "in flight" for good.)

mod common;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const STREAMS: i64 = 8;
const MODULUS: i64 = 40;

/// A read_committed reader of one topic that keeps its position: counting
/// what is new costs no re-read.
struct Counter {
    c: BaseConsumer,
    n: usize,
}

impl Counter {
    fn new(topic: &str) -> Counter {
        let mut cfg = admin_conn().client_config();
        cfg.set("group.id", unique("g")).set("enable.auto.commit", "false").set("isolation.level", "read_committed");
        let c: BaseConsumer = cfg.create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
        c.assign(&tpl).unwrap();
        Counter { c, n: 0 }
    }

    /// Read until `want` messages were seen or `until` passes.
    fn reach(&mut self, want: usize, until: Instant) -> usize {
        while self.n < want && Instant::now() < until {
            if let Some(m) = self.c.poll(Duration::from_millis(50)) {
                m.expect("consume");
                self.n += 1;
            }
        }
        self.n
    }
}

#[test]
fn low_pass_streams_commit_every_burst_and_keep_nothing_in_flight() {
    let w = Workspace::new();
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (bursts, per_burst) = (env("FINK_LIVENESS_BURSTS", 8), env("FINK_LIVENESS_ALERTS", 2000));
    let topics: Vec<String> = (0..STREAMS).map(|k| unique(&format!("live{k}"))).collect();
    let mut cfg = String::from("[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\n\n");
    for (k, t) in topics.iter().enumerate() {
        cfg.push_str(&format!(
            "[[topic]]\nname = \"{t}\"\n\n[[stream]]\nname = \"s{k}\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{t}\"\nfilter = \"candid % {MODULUS} == {k}\"\nselect = [\"objectId\", \"candid\", \"candidate\"]\n\n"
        ));
    }
    std::fs::create_dir_all(w.path().join("src")).unwrap();
    w.config(&cfg);
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let run = FinkRun::start(&w, &[]);
    let mut counters: Vec<Counter> = topics.iter().map(|t| Counter::new(t)).collect();
    let mut expected: BTreeMap<i64, usize> = BTreeMap::new();
    for b in 0..bursts {
        let stage = format!("stage{b}");
        let r = w.fink(&[
            "simulate",
            "--out",
            &stage,
            "--alerts",
            &per_burst.to_string(),
            "--per-file",
            "100",
            "--seed",
            &(100 + b).to_string(),
        ]);
        assert_eq!(r.code, 0, "{}", r.all());
        // The oracle: the filter's arithmetic on the files' candids.
        for f in walk(&w.path().join(&stage)) {
            let (_, batches) = fink::stream::source::read_all(&f, fink::config::SourceFormat::Parquet).unwrap();
            for batch in &batches {
                let ids = batch.column_by_name("candid").unwrap();
                let ids = ids.as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
                for c in ids.values() {
                    *expected.entry(c.rem_euclid(MODULUS)).or_default() += 1;
                }
            }
        }
        // The burst lands: each file renamed into the night folder.
        let night = w.path().join("src/night");
        std::fs::create_dir_all(&night).unwrap();
        for (i, f) in walk(&w.path().join(&stage)).iter().enumerate() {
            std::fs::rename(f, night.join(format!("b{b:03}-{i:03}.parquet"))).unwrap();
        }
        // Bounds the test, not a figure: a stalled stream fails it.
        let until = Instant::now() + Duration::from_secs(30);
        for (k, c) in counters.iter_mut().enumerate() {
            let want = expected.get(&(k as i64)).copied().unwrap_or(0);
            let got = c.reach(want, until);
            assert_eq!(got, want, "burst {b}: stream s{k} has {got} of {want} alerts committed\n{}", run.log_text());
        }
        run.wait("every stream idle with nothing in flight", || {
            let st = run.status();
            st["streams"].as_array().is_some_and(|a| {
                a.len() == STREAMS as usize
                    && a.iter().all(|s| s["state"]["state"] == "idle" && s["stats"]["in_flight"].as_u64() == Some(0))
            })
        });
    }
    assert!(!run.log_text().contains("stalled"), "{}", run.log_text());
    // Nothing more than expected arrives afterwards (a second's wait for
    // one message too many).
    for (k, c) in counters.iter_mut().enumerate() {
        let want = expected.get(&(k as i64)).copied().unwrap_or(0);
        assert_eq!(c.reach(want + 1, Instant::now() + Duration::from_secs(1)), want, "stream s{k}: duplicates");
    }
}
