//! Distribution streams: source files -> CEL filters -> projection -> Avro ->
//! Kafka, with a durable checkpoint per stream. One module per stage;
//! [`StreamSpec`] is the configuration that builds a running stream.

pub mod ahead;
pub mod checkpoint;
pub mod columns;
pub mod consume;
pub mod encode;
pub mod error;
pub mod filter;
pub mod filter_test;
pub mod night;
pub mod notify;
pub mod prefetch;
pub mod project;
pub mod python;
pub mod runner;
pub mod shared;
pub mod sink;
pub mod source;
pub mod state;
pub mod store;

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
    /// Where its files are: a local directory, S3 or HDFS.
    pub source: store::Root,
    /// The columns read from its source's Parquet files: what every stream
    /// on that source needs (the same for all of them, so they share
    /// decoded files).
    pub columns: source::Columns,
    /// Between two listings of a remote source.
    pub poll_interval: std::time::Duration,
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
    /// Python filters, in declared order; they run after the CEL ones, on
    /// the rows those kept.
    pub python: Vec<python::PyFilter>,
    /// `[python]`, for a stream with Python filters (only those restart
    /// when it changes).
    pub python_spec: Option<python::PythonSpec>,
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
    /// `[run] latency_objective_s`.
    pub latency_objective: std::time::Duration,
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
        filters: cfg
            .filters
            .iter()
            .filter(|(_, f)| f.python.is_none())
            .map(|(n, f)| (n.clone(), (f.expr.clone(), f.on_null)))
            .collect(),
    }
}

/// A stream's Python filters, in its `filters` order.
pub fn python_filters(loaded: &Loaded, names: &[String]) -> Result<Vec<python::PyFilter>> {
    let cfg = &loaded.config;
    names
        .iter()
        .filter_map(|n| cfg.filters.get(n).and_then(|f| f.python.as_ref().map(|p| (n, f, p))))
        .map(|(n, f, p)| {
            let mut pf = python::PyFilter::parse(n, p, &loaded.base_dir).map_err(|e| anyhow!("filter {n:?}: {e}"))?;
            pf.args = f.args.clone();
            pf.dataframe = f.dataframe;
            pf.fields = f.fields.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
            Ok(pf)
        })
        .collect()
}

/// `[python]` resolved: the interpreter against fink.toml's folder, the
/// worker count against the cores.
pub fn python_spec(loaded: &Loaded) -> python::PythonSpec {
    let p = &loaded.config.python;
    let interpreter =
        if p.interpreter.contains('/') { loaded.path(&p.interpreter) } else { PathBuf::from(&p.interpreter) };
    let workers =
        if p.workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) } else { p.workers };
    python::PythonSpec {
        interpreter,
        workers,
        timeout: std::time::Duration::from_secs(p.timeout_s.max(1)),
        max_failures: p.max_failures.max(1),
        share: p.share_conversions,
        batch_rows: p.batch_rows,
    }
}

/// Build the specs of the declared streams (or only `only`).
pub fn specs(loaded: &Loaded, only: Option<&str>, night: &night::Night) -> Result<Vec<StreamSpec>> {
    let cfg = &loaded.config;
    let admin_user = cfg.cluster.admin.as_ref().map(|a| a.user.clone()).unwrap_or_default();
    let state = loaded.path(&cfg.run.state_dir);
    let lib = library(cfg);
    let mut out: Vec<StreamSpec> = Vec::new();
    for s in &cfg.streams {
        if only.is_some_and(|o| o != s.name) {
            continue;
        }
        let mut filters: Vec<(String, String, OnNull)> = s
            .filters
            .iter()
            .filter(|f| cfg.filters[*f].python.is_none())
            .map(|f| (f.clone(), cfg.filters[f].expr.clone(), cfg.filters[f].on_null))
            .collect();
        let python = python_filters(loaded, &s.filters)?;
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
            source: source_root(loaded, &s.source, night).map_err(|e| anyhow!("stream {:?}: {e}", s.name))?,
            columns: source::Columns::All,
            poll_interval: s
                .source
                .poll_interval_ms
                .map(std::time::Duration::from_millis)
                .unwrap_or(store::DEFAULT_POLL_INTERVAL),
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
            python_spec: (!python.is_empty()).then(|| python_spec(loaded)),
            python,
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
            latency_objective: std::time::Duration::from_secs(cfg.run.latency_objective_s),
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
    // Streams on one source read the union of their columns (the same
    // whether one of them or all run, so they share decoded files).
    let all_needs = all_needs(loaded, night);
    for spec in &mut out {
        spec.columns = all_needs
            .iter()
            .filter(|(root, format, _)| root == &spec.source && *format == spec.format)
            .fold(None::<source::Columns>, |acc, (_, _, c)| Some(acc.map_or(c.clone(), |a| a.union(c))))
            .unwrap_or_default();
    }
    Ok(out)
}

/// (source, format, columns needed) of every declared stream.
fn all_needs(loaded: &Loaded, night: &night::Night) -> Vec<(store::Root, SourceFormat, source::Columns)> {
    let cfg = &loaded.config;
    let lib = library(cfg);
    cfg.streams
        .iter()
        .filter_map(|s| {
            let mut reads = std::collections::BTreeSet::new();
            for f in s.filters.iter().filter_map(|f| cfg.filters.get(f)).filter(|f| f.python.is_some()) {
                match &f.args {
                    // Only its arguments' roots.
                    Some(args) if !f.dataframe => reads.extend(args.iter().flat_map(|a| python::bind::roots_of(a))),
                    // Bound by name or a whole DataFrame: which columns is
                    // known only from the function and the file.
                    _ => {
                        return Some((
                            source_root(loaded, &s.source, night).ok()?,
                            s.source.format,
                            source::Columns::All,
                        ))
                    }
                }
            }
            let exprs = s
                .filters
                .iter()
                .filter_map(|f| {
                    cfg.filters.get(f).filter(|c| c.python.is_none()).map(|c| (f.as_str(), c.expr.as_str(), c.on_null))
                })
                .chain(s.filter.as_deref().map(|e| ("inline", e, OnNull::Error)));
            for (name, expr, on_null) in exprs {
                match Filter::compile_in(name, expr, on_null, &lib) {
                    Ok(f) => reads.extend(f.variables),
                    // Not compiled: read everything rather than guess.
                    Err(_) => {
                        return Some((
                            source_root(loaded, &s.source, night).ok()?,
                            s.source.format,
                            source::Columns::All,
                        ))
                    }
                }
            }
            let root = source_root(loaded, &s.source, night).ok()?;
            Some((root, s.source.format, source::Columns::of_stream(&s.select, &s.drop, &reads)))
        })
        .collect()
}

/// The alert files a `--data` argument names: a local file or directory,
/// or a `file://`, `s3://` or `hdfs://` URL of a prefix or one object. A
/// remote URL uses the store settings of a source of the config on the
/// same bucket or namenode (or the only `[storage]`), credentials included.
pub fn data_inputs(
    loaded: Option<&Loaded>,
    data: &std::path::Path,
) -> Result<(std::sync::Arc<store::Store>, SourceFormat, Vec<store::Input>)> {
    let text = data.to_string_lossy();
    let Some((_, rest)) = store::scheme_of(&text) else {
        let format =
            source::detect_format(data).ok_or_else(|| anyhow!("{}: no Parquet or Avro alert files", data.display()))?;
        if data.is_file() {
            let (st, input) = store::local_file(data)?;
            return Ok((st, format, vec![input]));
        }
        let st = store::Store::open(&store::Root::Local(data.to_path_buf())).map_err(|e| anyhow!("{e}"))?;
        let inputs = st.list_now(format).map_err(|e| anyhow!("{}: {e}", data.display()))?;
        return Ok((st, format, inputs));
    };
    let authority = rest.split('/').next().unwrap_or("");
    let same_place = |p: &str| store::scheme_of(p).is_some_and(|(_, r)| r.split('/').next() == Some(authority));
    let template = loaded.and_then(|l| {
        l.config.streams.iter().map(|s| &s.source).find(|s| same_place(&s.path)).cloned().or_else(|| {
            let mut storages = l.config.storage.keys();
            match (storages.next(), storages.next()) {
                (Some(only), None) => l
                    .config
                    .streams
                    .first()
                    .map(|s| crate::config::SourceConfig { storage: Some(only.clone()), ..s.source.clone() }),
                _ => None,
            }
        })
    });
    // One object: list its folder and keep it.
    let one = [".parquet", ".avro", ".avro.gz"].iter().any(|e| text.ends_with(e));
    let (dir, name) = if one {
        text.rsplit_once('/').map(|(d, n)| (d.to_string(), Some(n))).unwrap_or((text.to_string(), None))
    } else {
        (text.to_string(), None)
    };
    let mut src = template.unwrap_or(crate::config::SourceConfig {
        format: SourceFormat::Parquet,
        path: String::new(),
        storage: None,
        poll_interval_ms: None,
        endpoint: None,
        region: None,
        access_key: None,
        secret_key: None,
        allow_http: None,
        user: None,
    });
    src.path = dir;
    let no_storage = Default::default();
    let (base, storage) = match loaded {
        Some(l) => (l.base_dir.clone(), &l.config.storage),
        None => (PathBuf::from("."), &no_storage),
    };
    let root = resolve_root(&base, storage, &src, &night::Night::today())?;
    let st = store::Store::open(&root).map_err(|e| anyhow!("{e}"))?;
    for format in [SourceFormat::Parquet, SourceFormat::Avro] {
        let mut inputs = st.list(format).map_err(|e| anyhow!("{}: {e}", root.display()))?;
        if let Some(n) = name {
            inputs.retain(|i| i.rel == n);
        }
        if !inputs.is_empty() {
            return Ok((st, format, inputs));
        }
    }
    Err(anyhow!("{text}: no Parquet or Avro alert files"))
}

/// Where a source's files are: its path (night fields expanded) and its
/// store settings, secrets resolved.
pub fn source_root(loaded: &Loaded, src: &crate::config::SourceConfig, night: &night::Night) -> Result<store::Root> {
    resolve_root(&loaded.base_dir, &loaded.config.storage, src, night)
}

fn resolve_root(
    base_dir: &std::path::Path,
    storage: &std::collections::BTreeMap<String, crate::config::StorageConfig>,
    src: &crate::config::SourceConfig,
    night: &night::Night,
) -> Result<store::Root> {
    let path = night.expand(&src.path);
    store::check_url(&path).map_err(|e| anyhow!("{e}"))?;
    let settings = match &src.storage {
        Some(name) => {
            let base = storage
                .get(name)
                .ok_or_else(|| anyhow!("source names storage {name:?}, which no [storage.{name}] declares"))?;
            src.settings().over(base)
        }
        None => src.settings(),
    };
    let secret = |s: &Option<crate::config::Secret>, what: &str| -> Result<Option<crate::config::SecretValue>> {
        s.as_ref().map(|s| s.resolve(base_dir).map_err(|e| anyhow!("source {what}: {e}"))).transpose()
    };
    let Some((scheme, rest)) = store::scheme_of(&path) else {
        return Ok(store::Root::Local(base_dir.join(&path)));
    };
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/').to_string();
    let url = format!("{scheme}://{authority}/{prefix}");
    Ok(match scheme {
        "file" => store::Root::Local(PathBuf::from(format!("/{}", rest.trim_start_matches('/')))),
        "s3" => store::Root::Remote(store::Remote {
            url,
            prefix,
            kind: store::RemoteKind::S3 {
                bucket: authority.to_string(),
                endpoint: settings.endpoint.clone(),
                region: settings.region.clone(),
                access_key: secret(&settings.access_key, "access_key")?,
                secret_key: secret(&settings.secret_key, "secret_key")?,
                allow_http: settings.allow_http.unwrap_or(false),
            },
        }),
        "hdfs" => store::Root::Remote(store::Remote {
            url,
            prefix,
            kind: store::RemoteKind::Hdfs { namenode: format!("hdfs://{authority}"), user: settings.user.clone() },
        }),
        other => return Err(anyhow!("unknown scheme {other:?}")),
    })
}

/// The connection a stream publishes with (its user's SCRAM credentials,
/// read now), and its spec with their fingerprint.
pub fn bind(loaded: &Loaded, mut spec: StreamSpec) -> Result<(StreamSpec, Connection)> {
    let conn = crate::cluster::user_connection(loaded, Some(&spec.user))
        .map_err(|e| anyhow!("stream {:?}: {e:#}", spec.name))?;
    spec.credential = conn.credential_fingerprint();
    Ok((spec, conn))
}

/// The Prometheus histogram of seen-to-committed seconds per file.
pub const FILE_LATENCY_METRIC: &str = "fink_stream_file_latency_seconds";
/// Its buckets: from a file landing by rename (tenths of a second) to a
/// Rubin visit under load (tens of seconds) and a stalled cluster.
pub const FILE_LATENCY_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];

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
    /// Bytes fetched from the source for the files this stream read (a
    /// file decoded once for several streams counts for each).
    pub source_bytes: AtomicU64,
    /// Done files found changed since they were published (reported, not
    /// read again; see `checkpoint`).
    pub changed_files: AtomicU64,
    /// Files this stream decoded on its own instead of sharing another
    /// stream's decoding: it fell behind the streams on the same source.
    pub files_read_alone: AtomicU64,
    /// Since when (ms since the epoch) the source has been unreachable, 0
    /// while it answers; and its latest error.
    pub source_down_since_ms: AtomicU64,
    pub source_error: std::sync::Mutex<Option<String>>,
    /// Files whose alerts are durable (committed, or checkpointed under
    /// at-least-once), and those of them that made it within
    /// `[run] latency_objective_s` of being seen.
    pub files_committed: AtomicU64,
    pub files_within_objective: AtomicU64,
    /// Seen-to-committed seconds of the files of the last 10 minutes.
    pub latency: std::sync::Mutex<LatencyWindow>,
    /// Nanoseconds the stream's own thread spent in each [`Stage`]: where
    /// a slow stream's time goes, waits included (a batch being decoded by
    /// another stream, a full producer queue, a commit's round trips).
    pub stage_ns: [AtomicU64; Stage::ALL.len()],
}

/// What a stream's thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Opening files and taking decoded batches (decoding them, or waiting
    /// for the stream or read-ahead that decodes them).
    Read,
    /// CEL and Python filters.
    Filter,
    /// Selecting kept rows, projection and Avro encoding.
    Encode,
    /// Handing records to the producer, waiting while its queue is full.
    Send,
    /// Recording progress: exactly-once commits (which wait for every
    /// record in flight), at-least-once checkpoints.
    Commit,
}

impl Stage {
    pub const ALL: [Stage; 5] = [Stage::Read, Stage::Filter, Stage::Encode, Stage::Send, Stage::Commit];
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Filter => "filter",
            Stage::Encode => "encode",
            Stage::Send => "send",
            Stage::Commit => "commit",
        }
    }
}

/// Per-file latencies (seconds from a file being seen to its alerts being
/// durable) over a sliding window, for `fink status`' p50 and p98.
#[derive(Debug, Default)]
pub struct LatencyWindow {
    samples: std::collections::VecDeque<(u64, f64)>,
}

impl LatencyWindow {
    pub const WINDOW_MS: u64 = 10 * 60 * 1000;
    /// Bounded whatever the file rate (a night of tiny files).
    const MAX: usize = 50_000;

    pub fn push(&mut self, now_ms: u64, secs: f64) {
        self.samples.push_back((now_ms, secs));
        while self.samples.len() > Self::MAX {
            self.samples.pop_front();
        }
        self.expire(now_ms);
    }

    fn expire(&mut self, now_ms: u64) {
        while self.samples.front().is_some_and(|&(t, _)| now_ms.saturating_sub(t) > Self::WINDOW_MS) {
            self.samples.pop_front();
        }
    }

    /// The `q` quantile (nearest rank) of the window, if it holds any.
    pub fn quantile(&mut self, now_ms: u64, q: f64) -> Option<f64> {
        self.expire(now_ms);
        let mut v: Vec<f64> = self.samples.iter().map(|&(_, s)| s).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(v[rank - 1])
    }
}

/// A lock whose holder panicked is still usable: what the stream engine
/// keeps behind its locks is updated whole, so one stream's panic cannot
/// hang the others.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn now_secs() -> u64 {
    now_ms() / 1000
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
    pub source_bytes: u64,
    pub changed_files: u64,
    pub files_read_alone: u64,
    pub files_committed: u64,
    pub files_within_objective: u64,
    /// p50 and p98 of seen-to-committed seconds per file, last 10 minutes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p98_s: Option<f64>,
    /// Seconds the stream's thread spent per stage (see [`Stage`]).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub stage_seconds: std::collections::BTreeMap<String, f64>,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // One lock, released before the literal (a guard made inside it
        // would live to its end, and a second one deadlock).
        let (p50, p98) = {
            let mut w = lock(&self.latency);
            let now = now_ms();
            (w.quantile(now, 0.50), w.quantile(now, 0.98))
        };
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
            source_bytes: g(&self.source_bytes),
            changed_files: g(&self.changed_files),
            files_read_alone: g(&self.files_read_alone),
            files_committed: g(&self.files_committed),
            files_within_objective: g(&self.files_within_objective),
            latency_p50_s: p50,
            latency_p98_s: p98,
            stage_seconds: Stage::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), g(&self.stage_ns[*s as usize]) as f64 / 1e9))
                .filter(|(_, v)| *v > 0.0)
                .collect(),
        }
    }

    /// The stream's thread spent `since.elapsed()` in `stage`.
    pub fn spent(&self, stage: Stage, since: std::time::Instant) {
        self.stage_ns[stage as usize].fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// A file's alerts became durable `secs` after it was seen.
    pub fn file_committed(&self, stream: &str, secs: f64, objective: std::time::Duration) {
        self.files_committed.fetch_add(1, Ordering::Relaxed);
        if secs <= objective.as_secs_f64() {
            self.files_within_objective.fetch_add(1, Ordering::Relaxed);
        }
        lock(&self.latency).push(now_ms(), secs);
        metrics::histogram!(FILE_LATENCY_METRIC, "stream" => stream.to_string()).record(secs);
    }

    /// How long the stream has waited for a delivery report with alerts in
    /// flight, if that is `after` or more: the broker is away, the topic has
    /// no leader, or the cluster is too slow to answer.
    pub fn stalled_for(&self, now_ms: u64, after: std::time::Duration) -> Option<std::time::Duration> {
        // An unreachable source stalls the stream as a broker away does.
        let down = self.source_down_since_ms.load(Ordering::SeqCst);
        if down > 0 {
            let waited = std::time::Duration::from_millis(now_ms.saturating_sub(down));
            if waited >= after {
                return Some(waited);
            }
        }
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let waited =
            std::time::Duration::from_millis(now_ms.saturating_sub(self.last_progress_ms.load(Ordering::SeqCst)));
        (waited >= after).then_some(waited)
    }

    /// The source failed to answer (`Some`) or answered again (`None`).
    pub fn source_down(&self, error: Option<String>) {
        match error {
            Some(e) => {
                let _ = self.source_down_since_ms.compare_exchange(0, now_ms(), Ordering::SeqCst, Ordering::SeqCst);
                *self.source_error.lock().unwrap() = Some(e);
            }
            None => {
                self.source_down_since_ms.store(0, Ordering::SeqCst);
                *self.source_error.lock().unwrap() = None;
            }
        }
    }

    /// One alert is being handed to the producer (counted first: its
    /// report may come back before the hand-over returns).
    pub fn sent(&self) {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            // Waiting starts now, not at the last report before an idle spell.
            self.last_progress_ms.store(now_ms(), Ordering::SeqCst);
        }
    }

    /// An alert counted by [`Stats::sent`] was not handed over after all.
    pub fn unsent(&self) {
        let _ = self.in_flight.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// The producer reported on one alert (delivered or refused).
    pub fn reported(&self) {
        self.last_progress_ms.store(now_ms(), Ordering::SeqCst);
        let _ = self.in_flight.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod stall_tests {
    #[test]
    fn latency_quantiles_are_nearest_rank_over_the_last_ten_minutes() {
        let mut w = super::LatencyWindow::default();
        assert_eq!(w.quantile(0, 0.5), None);
        for i in 1..=100 {
            w.push(1_000, i as f64);
        }
        assert_eq!(w.quantile(1_000, 0.50), Some(50.0));
        assert_eq!(w.quantile(1_000, 0.98), Some(98.0));
        // Ten minutes later the old samples are gone; a new one stands alone.
        w.push(1_000 + super::LatencyWindow::WINDOW_MS + 1, 0.25);
        assert_eq!(w.quantile(1_000 + super::LatencyWindow::WINDOW_MS + 1, 0.98), Some(0.25));
    }

    #[test]
    fn a_snapshot_reads_the_latency_window_without_deadlocking() {
        let s = super::Stats::default();
        s.file_committed("s", 0.4, std::time::Duration::from_secs(30));
        s.file_committed("s", 40.0, std::time::Duration::from_secs(30));
        let snap = s.snapshot();
        assert_eq!((snap.files_committed, snap.files_within_objective), (2, 1));
        assert_eq!((snap.latency_p50_s, snap.latency_p98_s), (Some(0.4), Some(40.0)));
    }

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
