//! Distribution streams: source files -> CEL filters -> projection -> Avro ->
//! Kafka, with a durable checkpoint per stream. One module per stage;
//! [`StreamSpec`] is the configuration that builds a running stream.

pub mod checkpoint;
pub mod consume;
pub mod encode;
pub mod error;
pub mod filter;
pub mod filter_test;
pub mod night;
pub mod notify;
pub mod prefetch;
pub mod project;
pub mod runner;
pub mod shared;
pub mod sink;
pub mod source;
pub mod state;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::cluster::{Connection, Fingerprint};
use crate::config::{Loaded, ProducerConfig, SourceFormat};
use filter::{Filter, Library, OnNull};

/// Everything that defines one stream. Two specs that compare equal run
/// the same way: hot reload restarts exactly the streams whose spec changed.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    pub name: String,
    pub source_root: PathBuf,
    /// The night a `{night}` source path was expanded for.
    pub night: Option<String>,
    /// `[[notify]]` entries for this stream.
    pub notify: Vec<notify::NotifySpec>,
    pub format: SourceFormat,
    pub topic: String,
    /// (filter name, CEL expression, null reading); inline filters are
    /// named `inline`.
    pub filters: Vec<(String, String, OnNull)>,
    /// The constants and filters its filters use (and only those: a change
    /// elsewhere does not restart it).
    pub library: Library,
    pub select: Vec<String>,
    pub drop: Vec<String>,
    pub user: String,
    pub mechanism: crate::config::ScramMechanism,
    pub schema_path: Option<PathBuf>,
    pub producer: ProducerConfig,
    pub checkpoint_path: PathBuf,
    pub quarantine_log: PathBuf,
    pub batch_size: usize,
    pub max_in_flight: usize,
    /// The cluster connection (bootstrap, protocol).
    pub bootstrap: String,
    /// Exactly-once: the stream's transactions and where its progress is
    /// committed. `None`: at-least-once, progress in `checkpoint_path`.
    pub txn: Option<TxnSpec>,
    /// The user's credentials as of the last [`bind`]: a rotated password
    /// makes the spec differ, so reload restarts the stream with it.
    pub credential: Fingerprint,
}

/// How an exactly-once stream commits.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnSpec {
    /// `GROUP.STREAM`: a newer producer with it fences the older one.
    pub id: String,
    pub group: String,
    pub state_topic: String,
    /// `GROUP/STREAM`.
    pub state_key: String,
    pub commit_interval: std::time::Duration,
}

/// This process among the instances of a group: `HOST:PID`.
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", std::process::id())
    })
}

impl StreamSpec {
    pub fn compile_filters(&self) -> Result<Vec<Filter>> {
        self.filters
            .iter()
            .map(|(name, expr, on_null)| {
                Filter::compile_in(name, expr, *on_null, &self.library).map_err(|e| anyhow!("filter {name:?}: {e}"))
            })
            .collect()
    }
}

/// What names a stream's progress: `STREAM`, or `STREAM@NIGHT` for a
/// night-scoped source.
pub fn progress_name(stream: &str, night: &Option<String>) -> String {
    match night {
        Some(n) => format!("{stream}@{n}"),
        None => stream.to_string(),
    }
}

/// The constants and named filters of a config, for compiling filters.
pub fn library(cfg: &crate::config::Config) -> Library {
    Library {
        consts: cfg.consts.clone(),
        filters: cfg.filters.iter().map(|(n, f)| (n.clone(), (f.expr.clone(), f.on_null))).collect(),
    }
}

/// Build the specs of the declared streams (or only `only`).
pub fn specs(loaded: &Loaded, only: Option<&str>, night: &night::Night) -> Result<Vec<StreamSpec>> {
    let cfg = &loaded.config;
    let admin_user = cfg.cluster.admin.as_ref().map(|a| a.user.clone()).unwrap_or_default();
    let state = loaded.path(&cfg.run.state_dir);
    let lib = library(cfg);
    let mut out = Vec::new();
    for s in &cfg.streams {
        if only.is_some_and(|o| o != s.name) {
            continue;
        }
        let mut filters: Vec<(String, String, OnNull)> =
            s.filters.iter().map(|f| (f.clone(), cfg.filters[f].expr.clone(), cfg.filters[f].on_null)).collect();
        if let Some(inline) = &s.filter {
            filters.push(("inline".into(), inline.clone(), OnNull::Error));
        }
        let mut uses = std::collections::BTreeSet::new();
        for (name, expr, on_null) in &filters {
            if let Ok(f) = Filter::compile_in(name, expr, *on_null, &lib) {
                uses.extend(f.uses);
            }
        }
        let library = lib.restricted(&uses);
        // A night-scoped source keeps its progress per night.
        let stream_night = night::is_templated(&s.source.path).then(|| night.to_string());
        let user = s.user.clone().unwrap_or_else(|| admin_user.clone());
        let mechanism =
            cfg.users.iter().find(|u| u.name == user).map(|u| u.mechanism).unwrap_or(cfg.cluster.sasl_mechanism);
        out.push(StreamSpec {
            name: s.name.clone(),
            source_root: loaded.path(&night.expand(&s.source.path)),
            night: stream_night.clone(),
            notify: cfg
                .notify
                .iter()
                .filter(|n| n.stream == s.name)
                .map(|n| notify::NotifySpec::new(n, loaded.base_dir.clone()))
                .collect(),
            format: s.source.format,
            topic: s.topic.clone(),
            filters,
            library,
            select: s.select.clone(),
            drop: s.drop.clone(),
            user,
            mechanism,
            schema_path: s.schema_path.as_ref().map(|p| loaded.path(p)),
            producer: s.producer.clone(),
            checkpoint_path: state.join(format!("{}.checkpoint.json", progress_name(&s.name, &stream_night))),
            quarantine_log: state.join(format!("{}.quarantine.jsonl", s.name)),
            batch_size: cfg.run.batch_size.max(1),
            max_in_flight: cfg.run.max_in_flight.max(1),
            bootstrap: cfg.cluster.bootstrap.join(","),
            txn: cfg.run.exactly_once().then(|| TxnSpec {
                id: cfg.run.transactional_id(&s.name),
                group: cfg.run.group.clone(),
                state_topic: cfg.run.state_topic.clone(),
                state_key: cfg.run.state_key(&progress_name(&s.name, &stream_night)),
                commit_interval: std::time::Duration::from_millis(cfg.run.commit_interval_ms),
            }),
            credential: Fingerprint::default(),
        });
    }
    if let Some(o) = only {
        if out.is_empty() {
            return Err(anyhow!("no stream named {o:?} in fink.toml"));
        }
    }
    Ok(out)
}

/// The connection a stream publishes with (its user's SCRAM credentials,
/// read now), and its spec with their fingerprint.
pub fn bind(loaded: &Loaded, mut spec: StreamSpec) -> Result<(StreamSpec, Connection)> {
    let conn = crate::cluster::user_connection(loaded, Some(&spec.user))
        .map_err(|e| anyhow!("stream {:?}: {e:#}", spec.name))?;
    spec.credential = conn.credential_fingerprint();
    Ok((spec, conn))
}

/// Live counters of one stream (also exported to Prometheus).
#[derive(Debug, Default)]
pub struct Stats {
    pub read: AtomicU64,
    pub passed: AtomicU64,
    pub filtered: AtomicU64,
    pub published: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    pub quarantined: AtomicU64,
    /// Files present and not yet finished.
    pub backlog_files: AtomicU64,
    pub files_done: AtomicU64,
    /// Alerts handed to the producer and not yet reported on.
    pub in_flight: AtomicU64,
    /// Alerts still unconfirmed when the stream stopped at its deadline
    /// (they are sent again on the next start).
    pub unconfirmed: AtomicU64,
    /// When the producer last made progress (ms since the epoch): a delivery
    /// report, or the first send after nothing was in flight.
    pub last_progress_ms: AtomicU64,
    /// The Kafka client's latest error (broker down, no leader, ...).
    pub last_client_error: std::sync::Mutex<Option<String>>,
    /// `[[notify]]` messages posted, given up after retries, and dropped
    /// (over `max_per_minute`, or the queue full).
    pub notified: AtomicU64,
    pub notify_failed: AtomicU64,
    pub notify_dropped: AtomicU64,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(default)]
pub struct StatsSnapshot {
    pub read: u64,
    pub passed: u64,
    pub filtered: u64,
    pub published: u64,
    pub bytes: u64,
    pub errors: u64,
    pub quarantined: u64,
    pub backlog_files: u64,
    pub files_done: u64,
    pub in_flight: u64,
    pub unconfirmed: u64,
    pub notified: u64,
    pub notify_failed: u64,
    pub notify_dropped: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            read: g(&self.read),
            passed: g(&self.passed),
            filtered: g(&self.filtered),
            published: g(&self.published),
            bytes: g(&self.bytes),
            errors: g(&self.errors),
            quarantined: g(&self.quarantined),
            backlog_files: g(&self.backlog_files),
            files_done: g(&self.files_done),
            in_flight: g(&self.in_flight),
            unconfirmed: g(&self.unconfirmed),
            notified: g(&self.notified),
            notify_failed: g(&self.notify_failed),
            notify_dropped: g(&self.notify_dropped),
        }
    }

    /// How long the stream has waited for a delivery report with alerts in
    /// flight, if that is `after` or more: the broker is away, the topic has
    /// no leader, or the cluster is too slow to answer.
    pub fn stalled_for(&self, now_ms: u64, after: std::time::Duration) -> Option<std::time::Duration> {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let waited =
            std::time::Duration::from_millis(now_ms.saturating_sub(self.last_progress_ms.load(Ordering::SeqCst)));
        (waited >= after).then_some(waited)
    }

    /// The producer accepted one alert.
    pub fn sent(&self) {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            // Waiting starts now, not at the last report before an idle spell.
            self.last_progress_ms.store(now_ms(), Ordering::SeqCst);
        }
    }

    /// The producer reported on one alert (delivered or refused).
    pub fn reported(&self) {
        self.last_progress_ms.store(now_ms(), Ordering::SeqCst);
        let _ = self.in_flight.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod stall_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stalled_only_with_alerts_in_flight_and_no_report_for_long_enough() {
        let s = Stats::default();
        let after = Duration::from_secs(60);
        // Idle for ages with nothing in flight: not stalled.
        assert_eq!(s.stalled_for(now_ms() + 3_600_000, after), None);
        s.sent();
        let t0 = s.last_progress_ms.load(Ordering::SeqCst);
        assert_eq!(s.stalled_for(t0 + 59_999, after), None);
        assert_eq!(s.stalled_for(t0 + 61_000, after), Some(Duration::from_millis(61_000)));
        // A report is progress even with more alerts still in flight.
        s.sent();
        s.reported();
        let t1 = s.last_progress_ms.load(Ordering::SeqCst);
        assert_eq!(s.in_flight.load(Ordering::SeqCst), 1);
        assert_eq!(s.stalled_for(t1 + 1_000, after), None);
        s.reported();
        assert_eq!(s.stalled_for(t1 + 3_600_000, after), None, "everything reported");
        s.reported();
        assert_eq!(s.in_flight.load(Ordering::SeqCst), 0, "never below zero");
    }
}
