//! `fink run`: start the declared streams, export their metrics, follow
//! edits of fink.toml (and the active profile) and SIGHUP, and swap only the
//! streams whose definition changed. Unchanged streams are never touched;
//! a changed one stops gracefully (in-flight delivered, checkpoint written)
//! before its successor starts from that checkpoint.

pub mod http;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::config::{self, LoadOptions, Loaded};
use crate::stream::runner::{RunningStream, State};
use crate::stream::{self, StatsSnapshot, StreamSpec};

pub struct RunOptions {
    pub load: LoadOptions,
    pub only: Option<String>,
    pub until_idle: bool,
    /// Plan and apply the cluster changes an edit implies before swapping.
    pub apply: bool,
    pub progress: bool,
    /// Follow config edits (off with --until-idle).
    pub watch_config: bool,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ReloadStatus {
    pub config_hash: String,
    pub loaded_at: u64,
    pub reloads: u64,
    pub last_reload_at: Option<u64>,
    pub last_reload_error: Option<String>,
    pub last_reload_changes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub topic: String,
    pub state: State,
    pub uptime_secs: u64,
    /// When this incarnation of the stream started (ms since the epoch):
    /// unchanged across reloads that do not touch the stream.
    pub started_at_ms: u128,
    pub stats: StatsSnapshot,
    /// Seconds without a delivery report while alerts are in flight, once
    /// that exceeds `[run] stall_after_s`; absent while the stream moves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled_secs: Option<u64>,
    /// The Kafka client's latest error, shown while the stream is stalled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub streams: Vec<StreamStatus>,
    pub config: ReloadStatus,
}

struct Shared {
    streams: Mutex<BTreeMap<String, RunningStream>>,
    /// `[run] stall_after_s` of the current config, in ms.
    stall_after_ms: AtomicU64,
    reload: Mutex<ReloadStatus>,
    /// Specs of streams that ended (kept for the summary).
    finished: Mutex<Vec<StreamStatus>>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn status_of(s: &RunningStream, stall_after: Duration) -> StreamStatus {
    let stalled = s.stats.stalled_for(stream::now_ms(), stall_after);
    StreamStatus {
        name: s.spec.name.clone(),
        topic: s.spec.topic.clone(),
        state: s.state(),
        uptime_secs: s.started.elapsed().as_secs(),
        started_at_ms: s.started_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
        stats: s.stats.snapshot(),
        stalled_secs: stalled.map(|d| d.as_secs()),
        client_error: stalled.and_then(|_| s.stats.last_client_error.lock().unwrap().clone()),
    }
}

impl Shared {
    fn stall_after(&self) -> Duration {
        Duration::from_millis(self.stall_after_ms.load(Ordering::Relaxed))
    }

    fn status(&self) -> Status {
        let after = self.stall_after();
        let streams = self.streams.lock().unwrap().values().map(|s| status_of(s, after)).collect();
        Status { streams, config: self.reload.lock().unwrap().clone() }
    }
}

/// What changed between two sets of stream specs.
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

pub fn diff(old: &BTreeMap<String, StreamSpec>, new: &[StreamSpec]) -> Diff {
    let mut d = Diff::default();
    let new_names: BTreeSet<&str> = new.iter().map(|s| s.name.as_str()).collect();
    for s in new {
        match old.get(&s.name) {
            None => d.added.push(s.name.clone()),
            Some(o) if o == s => d.unchanged.push(s.name.clone()),
            Some(_) => d.changed.push(s.name.clone()),
        }
    }
    for name in old.keys() {
        if !new_names.contains(name.as_str()) {
            d.removed.push(name.clone());
        }
    }
    d
}

fn start_stream(loaded: &Loaded, spec: StreamSpec, until_idle: bool) -> Result<RunningStream> {
    let conn = stream::connection(loaded, &spec)?;
    tracing::info!(stream = %spec.name, topic = %spec.topic, "starting stream");
    Ok(RunningStream::start(spec, conn, until_idle))
}

/// Log once when a stream stalls (alerts in flight, no delivery report for
/// `stall_after_s`) and once when it moves again. The stream itself keeps
/// waiting: the producer retries until the cluster answers.
fn report_stalls(shared: &Shared, stalled: &mut BTreeSet<String>) {
    let after = shared.stall_after();
    let now = stream::now_ms();
    for (name, s) in shared.streams.lock().unwrap().iter() {
        match s.stats.stalled_for(now, after) {
            Some(d) if !stalled.contains(name) => {
                let why = s.stats.last_client_error.lock().unwrap().clone().unwrap_or_else(|| "none reported".into());
                tracing::warn!(
                    stream = %name,
                    topic = %s.spec.topic,
                    in_flight = s.stats.in_flight.load(Ordering::Relaxed),
                    "stalled: no delivery report for {} s with alerts in flight; is the cluster up and does the topic \
                     have a leader? (`fink cluster status`); last client error: {why}",
                    d.as_secs()
                );
                stalled.insert(name.clone());
            }
            None if stalled.remove(name) => {
                tracing::info!(stream = %name, "deliveries resumed");
            }
            _ => {}
        }
    }
    stalled.retain(|n| shared.streams.lock().unwrap().contains_key(n));
}

/// Export every stream's counters to the Prometheus recorder.
fn export_metrics(shared: &Shared) {
    let status = shared.status();
    for s in &status.streams {
        let l = [("stream", s.name.clone())];
        metrics::counter!("fink_stream_alerts_read_total", &l).absolute(s.stats.read);
        metrics::counter!("fink_stream_alerts_passed_total", &l).absolute(s.stats.passed);
        metrics::counter!("fink_stream_alerts_filtered_total", &l).absolute(s.stats.filtered);
        metrics::counter!("fink_stream_alerts_published_total", &l).absolute(s.stats.published);
        metrics::counter!("fink_stream_published_bytes_total", &l).absolute(s.stats.bytes);
        metrics::counter!("fink_stream_errors_total", &l).absolute(s.stats.errors);
        metrics::counter!("fink_stream_quarantined_total", &l).absolute(s.stats.quarantined);
        metrics::gauge!("fink_stream_lag_files", &l).set(s.stats.backlog_files as f64);
        let up = !matches!(s.state, State::Failed(_));
        metrics::gauge!("fink_stream_up", &l).set(if up { 1.0 } else { 0.0 });
        metrics::gauge!("fink_stream_in_flight", &l).set(s.stats.in_flight as f64);
        metrics::gauge!("fink_stream_stalled", &l).set(if s.stalled_secs.is_some() { 1.0 } else { 0.0 });
    }
    let r = &status.config;
    metrics::gauge!("fink_config_last_reload_success").set(if r.last_reload_error.is_some() { 0.0 } else { 1.0 });
    metrics::counter!("fink_config_reloads_total").absolute(r.reloads);
}

/// Run until idle (`until_idle`) or until SIGINT/SIGTERM.
pub fn run(initial: Loaded, opts: RunOptions) -> Result<Vec<StreamStatus>> {
    let specs = stream::specs(&initial, opts.only.as_deref())?;
    if specs.is_empty() {
        return Err(anyhow!("fink.toml declares no [[stream]]"));
    }
    for s in &specs {
        s.compile_filters().map_err(|e| anyhow!("stream {:?}: {e:#}", s.name))?;
    }
    let shared = Arc::new(Shared {
        streams: Mutex::new(BTreeMap::new()),
        stall_after_ms: AtomicU64::new(initial.config.run.stall_after_s.max(1) * 1000),
        reload: Mutex::new(ReloadStatus {
            config_hash: initial.hash.clone(),
            loaded_at: now_secs(),
            ..Default::default()
        }),
        finished: Mutex::new(Vec::new()),
    });

    // Signals: INT/TERM stop, HUP reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;

    // Config watching: the parent directory, since editors save by rename.
    let (cfg_tx, cfg_rx) = std::sync::mpsc::channel();
    let mut cfg_watcher = notify_debouncer_full::new_debouncer(Duration::from_millis(150), None, cfg_tx)?;
    let cfg_files = config_files(&initial);
    if opts.watch_config {
        let dirs: BTreeSet<PathBuf> = cfg_files.iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
        for d in dirs {
            let d = if d.as_os_str().is_empty() { PathBuf::from(".") } else { d };
            cfg_watcher.watch(&d, notify::RecursiveMode::NonRecursive)?;
        }
    }

    // An edit saved between loading the file and watching it has no event:
    // compare once now, so it is not lost.
    let mut missed_edit = opts.watch_config
        && match config::load(&opts.load) {
            Ok(l) => l.hash != initial.hash,
            Err(_) => true,
        };

    // Metrics and status endpoint.
    let addr = initial.config.run.metrics_addr.clone();
    if !addr.is_empty() {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| anyhow!("cannot install the metrics recorder: {e}"))?;
        let (s1, s2) = (shared.clone(), shared.clone());
        let metrics: http::Render = Arc::new(move || {
            export_metrics(&s1);
            handle.render()
        });
        let status: http::Render =
            Arc::new(move || serde_json::to_string_pretty(&s2.status()).unwrap_or_default() + "\n");
        match http::serve(&addr, metrics, status) {
            Ok(a) => tracing::info!("metrics on http://{a}/metrics, status on http://{a}/status"),
            Err(e) => return Err(anyhow!("cannot listen on {addr} for /metrics: {e} (set [run] metrics_addr)")),
        }
    }

    for spec in specs {
        let name = spec.name.clone();
        let rs = start_stream(&initial, spec, opts.until_idle)?;
        shared.streams.lock().unwrap().insert(name, rs);
    }

    // Source watching: wake the streams of a root when something changes under it.
    let (src_tx, src_rx) = std::sync::mpsc::channel();
    let mut src_watcher = notify_debouncer_full::new_debouncer(Duration::from_millis(100), None, src_tx)?;
    let mut watched_roots: BTreeSet<PathBuf> = BTreeSet::new();
    let watch_roots =
        |w: &mut notify_debouncer_full::Debouncer<_, _>, watched: &mut BTreeSet<PathBuf>, shared: &Shared| {
            for s in shared.streams.lock().unwrap().values() {
                let root = s.spec.source_root.clone();
                if !watched.contains(&root) && root.is_dir() {
                    if let Err(e) = w.watch(&root, notify::RecursiveMode::Recursive) {
                        tracing::warn!("cannot watch {}: {e} (falling back to rescans)", root.display());
                    }
                    watched.insert(root);
                }
            }
        };
    watch_roots(&mut src_watcher, &mut watched_roots, &shared);

    let mut current = initial;
    let mut stalled: BTreeSet<String> = BTreeSet::new();
    let bar = opts.progress.then(progress_bar);
    let started = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            tracing::info!("stopping: delivering in-flight alerts and writing checkpoints");
            break;
        }
        // Source events.
        while let Ok(ev) = src_rx.try_recv() {
            if let Ok(events) = ev {
                let paths: Vec<PathBuf> = events.iter().flat_map(|e| e.paths.clone()).collect();
                for s in shared.streams.lock().unwrap().values() {
                    if paths.iter().any(|p| p.starts_with(&s.spec.source_root)) {
                        s.wake();
                    }
                }
            }
        }
        // Config events and SIGHUP.
        let mut reload = hup.swap(false, Ordering::SeqCst) || std::mem::take(&mut missed_edit);
        while let Ok(ev) = cfg_rx.try_recv() {
            if let Ok(events) = ev {
                if events.iter().any(|e| is_content_change(e) && e.paths.iter().any(|p| same_file(p, &cfg_files))) {
                    reload = true;
                }
            }
        }
        if reload {
            current = reload_config(&shared, current, &opts);
            shared.stall_after_ms.store(current.config.run.stall_after_s.max(1) * 1000, Ordering::Relaxed);
            watch_roots(&mut src_watcher, &mut watched_roots, &shared);
        }
        report_stalls(&shared, &mut stalled);
        if let Some(b) = &bar {
            update_bar(b, &shared, started);
        }
        // Streams that ended on their own (until-idle or failure).
        if opts.until_idle {
            let all_done = shared.streams.lock().unwrap().values().all(|s| s.is_finished());
            if all_done {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut streams = std::mem::take(&mut *shared.streams.lock().unwrap());
    for s in streams.values() {
        s.request_stop();
    }
    let mut out = shared.finished.lock().unwrap().clone();
    for (_, mut s) in std::mem::take(&mut streams) {
        s.wait();
        out.push(status_of(&s, shared.stall_after()));
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn config_files(l: &Loaded) -> Vec<PathBuf> {
    let mut v = vec![l.config_path.clone()];
    if let Some(p) = &l.profile_path {
        v.push(p.clone());
    }
    v
}

fn is_content_change(e: &notify_debouncer_full::DebouncedEvent) -> bool {
    use notify::EventKind;
    matches!(e.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_))
}

fn same_file(p: &Path, files: &[PathBuf]) -> bool {
    let canon = |x: &Path| std::fs::canonicalize(x).unwrap_or_else(|_| x.to_path_buf());
    files.iter().any(|f| {
        p.file_name() == f.file_name()
            && canon(p.parent().unwrap_or(p))
                == canon(f.parent().filter(|x| !x.as_os_str().is_empty()).unwrap_or(Path::new(".")))
    })
}

/// Load, validate and apply a new config; on any error keep the old one.
fn reload_config(shared: &Shared, current: Loaded, opts: &RunOptions) -> Loaded {
    let mut st = shared.reload.lock().unwrap().clone();
    st.reloads += 1;
    st.last_reload_at = Some(now_secs());
    let result = (|| -> Result<(Loaded, Vec<String>)> {
        let new = config::load(&opts.load).map_err(|e| anyhow!("{e}"))?;
        if new.hash == current.hash {
            return Ok((new, vec![]));
        }
        let specs = stream::specs(&new, opts.only.as_deref())?;
        for s in &specs {
            s.compile_filters().map_err(|e| anyhow!("stream {:?}: {e:#}", s.name))?;
        }
        if opts.apply {
            apply_cluster_changes(&new)?;
        }
        let old: BTreeMap<String, StreamSpec> =
            shared.streams.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.spec.clone())).collect();
        let d = diff(&old, &specs);
        let mut changes = Vec::new();
        // Stop removed and changed streams first (each delivers and checkpoints).
        for name in d.removed.iter().chain(&d.changed) {
            let s = shared.streams.lock().unwrap().remove(name);
            if let Some(s) = s {
                let state = s.stop();
                tracing::info!(stream = %name, ?state, "stopped for reload");
            }
        }
        for spec in specs {
            if d.added.contains(&spec.name) || d.changed.contains(&spec.name) {
                let name = spec.name.clone();
                let rs = start_stream(&new, spec, opts.until_idle)?;
                shared.streams.lock().unwrap().insert(name, rs);
            }
        }
        changes.extend(d.added.iter().map(|n| format!("+ stream {n}")));
        changes.extend(d.changed.iter().map(|n| format!("~ stream {n}")));
        changes.extend(d.removed.iter().map(|n| format!("- stream {n}")));
        Ok((new, changes))
    })();
    let next = match result {
        Ok((new, changes)) => {
            if !changes.is_empty() {
                tracing::info!(changes = ?changes, "config reloaded");
            }
            st.config_hash = new.hash.clone();
            st.loaded_at = now_secs();
            st.last_reload_error = None;
            st.last_reload_changes = changes;
            new
        }
        Err(e) => {
            tracing::error!("config reload rejected, streams keep running unchanged:\n{e:#}");
            st.last_reload_error = Some(format!("{e:#}"));
            current
        }
    };
    *shared.reload.lock().unwrap() = st;
    next
}

/// `--apply`: create what the new config needs (never delete unless prune).
fn apply_cluster_changes(new: &Loaded) -> Result<()> {
    let admin = crate::cluster::connect_admin(&new.config, &new.base_dir)?;
    let plan = crate::plan::make_plan(new, &admin, false)?;
    if !plan.blockers.is_empty() {
        return Err(anyhow!("the cluster cannot be changed as fink.toml asks: {}", plan.blockers.join("; ")));
    }
    if plan.is_empty() {
        return Ok(());
    }
    let report = crate::plan::apply::execute(&plan, new, &admin, &|o| {
        tracing::info!(change = %o.change, ok = o.ok, error = ?o.error, "apply");
    })?;
    if report.failed() > 0 {
        return Err(anyhow!("apply failed for {} change(s); old streams keep running", report.failed()));
    }
    crate::plan::wait_converged(new, &admin, new.config.prune, Duration::from_secs(60), &|_| {})?;
    Ok(())
}

fn progress_bar() -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new_spinner();
    b.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").unwrap());
    b.enable_steady_tick(Duration::from_millis(200));
    b
}

fn update_bar(b: &indicatif::ProgressBar, shared: &Shared, started: Instant) {
    let st = shared.status();
    let read: u64 = st.streams.iter().map(|s| s.stats.read).sum();
    let published: u64 = st.streams.iter().map(|s| s.stats.published).sum();
    let backlog: u64 = st.streams.iter().map(|s| s.stats.backlog_files).sum();
    let rate = read as f64 / started.elapsed().as_secs_f64().max(0.001);
    b.set_message(format!(
        "{} streams | read {read} | published {published} | {rate:.0} alerts/s | backlog {backlog} files",
        st.streams.len()
    ));
}

/// Status of a running `fink run`, read from its HTTP endpoint.
pub fn fetch_status(addr: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| anyhow!("no `fink run` answers on {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(buf))
}
