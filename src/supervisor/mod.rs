//! `fink run`: start the declared streams, export their metrics, follow
//! edits of fink.toml (and the active profile) and SIGHUP, and swap only the
//! streams whose definition changed.
//!
//! Like Vector's topology, a reload builds and checks the new and changed
//! streams (producer login, topic, filters) before it stops anything: if
//! one fails, the running streams are left untouched. Stops are bounded:
//! a stopping stream's in-flight alerts get `[run] shutdown_timeout_s`,
//! then it ends with them unconfirmed (and its checkpoint before them).
//!
//! Restart policy: a stream that fails (an error or a panic) shows as
//! failed in `/status`, `fink status` and `fink_stream_up 0`, and is
//! restarted after 1 s, then 2, 4, ... up to 60 s between tries; the delay
//! starts over once a restarted stream has run for a minute. With
//! `--until-idle` a failed stream stays failed.

pub mod http;
pub mod members;
pub mod reload;
pub mod status;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::config::{LoadOptions, Loaded};
use crate::stream;
use crate::stream::runner::{RunningStream, StartOptions, State, STOP_GRACE};
pub use reload::{diff, Diff};
pub use status::{ReloadStatus, Status, StreamStatus};

pub struct RunOptions {
    pub load: LoadOptions,
    pub only: Option<String>,
    pub until_idle: bool,
    /// Plan and apply the cluster changes an edit implies before swapping.
    pub apply: bool,
    pub progress: bool,
    /// Follow config edits (off with --until-idle).
    pub watch_config: bool,
    /// The night `{night}` source paths are expanded for.
    pub night: stream::night::Night,
    /// End the run cleanly after this long (a night's run).
    pub exit_after: Option<Duration>,
}

/// A declared stream and what the supervisor knows of its failures.
struct Slot {
    stream: RunningStream,
    restarts: u32,
    /// Failures since the stream last ran for [`HEALTHY_AFTER`].
    failures_in_row: u32,
    restart_at: Option<Instant>,
}

/// The longest wait between two restarts of a failing stream.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A restarted stream that ran this long without failing starts over at
/// the shortest restart delay.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

fn backoff(failures_in_row: u32) -> Duration {
    Duration::from_secs(1u64 << failures_in_row.saturating_sub(1).min(6)).min(MAX_BACKOFF)
}

impl Slot {
    fn new(stream: RunningStream) -> Slot {
        Slot { stream, restarts: 0, failures_in_row: 0, restart_at: None }
    }

    fn status(&self, stall_after: Duration) -> StreamStatus {
        let mut st = StreamStatus::of(&self.stream, stall_after);
        st.restarts = self.restarts;
        st.restart_in_secs = self.restart_at.map(|t| t.saturating_duration_since(Instant::now()).as_secs());
        st
    }
}

struct Shared {
    streams: Mutex<BTreeMap<String, Slot>>,
    /// Exactly-once: the state topic partitions this instance owns, and
    /// how many there are. `None`: every stream runs here.
    owned: Mutex<Option<BTreeSet<i32>>>,
    state_partitions: std::sync::atomic::AtomicI32,
    delivery: &'static str,
    /// The current config's streams and their state keys.
    stream_keys: Arc<Mutex<BTreeMap<String, String>>>,
    view: Option<Arc<Mutex<Option<members::GroupView>>>>,
    /// `[run] stall_after_s` of the current config, in ms.
    stall_after_ms: AtomicU64,
    reload: Mutex<ReloadStatus>,
    /// The run is stopping: a reload or rebalance still at work starts no
    /// stream any more.
    stopping: AtomicBool,
}

use crate::stream::now_secs;

/// Work that can take long (a reload that applies cluster changes and
/// waits for them, a rebalance that stops streams within their deadline),
/// run off the supervisor's loop: signals, the group membership and the
/// status keep being served meanwhile.
struct Job {
    what: &'static str,
    reload: bool,
    handle: std::thread::JoinHandle<Arc<Loaded>>,
}

impl Shared {
    fn stall_after(&self) -> Duration {
        Duration::from_millis(self.stall_after_ms.load(Ordering::Relaxed))
    }

    fn status(&self) -> Status {
        let after = self.stall_after();
        let streams: Vec<StreamStatus> = self.streams.lock().unwrap().values().map(|s| s.status(after)).collect();
        let elsewhere = self
            .stream_keys
            .lock()
            .unwrap()
            .keys()
            .filter(|n| !streams.iter().any(|s| &s.name == *n))
            .cloned()
            .collect();
        Status {
            streams,
            config: self.reload.lock().unwrap().clone(),
            instance: stream::instance_id().to_string(),
            delivery: self.delivery.to_string(),
            elsewhere,
            group: self.view.as_ref().and_then(|v| v.lock().unwrap().clone()),
        }
    }

    /// Whether this instance runs `spec` now.
    fn owns(&self, spec: &stream::StreamSpec) -> bool {
        match (&*self.owned.lock().unwrap(), &spec.txn) {
            (Some(parts), Some(t)) => parts
                .contains(&stream::state::partition_for(&t.state_key, self.state_partitions.load(Ordering::SeqCst))),
            _ => true,
        }
    }

    fn set_declared(&self, specs: &[stream::StreamSpec]) {
        *self.stream_keys.lock().unwrap() = specs
            .iter()
            .map(|s| (s.name.clone(), s.txn.as_ref().map(|t| t.state_key.clone()).unwrap_or_default()))
            .collect();
    }
}

fn start_options(loaded: &Loaded, opts: &RunOptions) -> StartOptions {
    StartOptions {
        until_idle: opts.until_idle,
        shutdown_timeout: Duration::from_secs(loaded.config.run.shutdown_timeout_s),
    }
}

/// Log once when a stream stalls (alerts in flight, no delivery report for
/// `stall_after_s`) and once when it moves again. The stream itself keeps
/// waiting: the producer retries until the cluster answers.
fn report_stalls(shared: &Shared, stalled: &mut BTreeSet<String>) {
    let after = shared.stall_after();
    let now = stream::now_ms();
    let streams = shared.streams.lock().unwrap();
    for (name, slot) in streams.iter() {
        let s = &slot.stream;
        match s.stats.stalled_for(now, after) {
            Some(d) if !stalled.contains(name) => {
                if let Some(e) = s.stats.source_error.lock().unwrap().clone() {
                    tracing::warn!(
                        stream = %name,
                        source = %s.spec.source.display(),
                        "stalled: the source has not answered for {} s; retrying with backoff: {e}",
                        d.as_secs()
                    );
                    stalled.insert(name.clone());
                    continue;
                }
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
    stalled.retain(|n| streams.contains_key(n));
}

/// Restart failed streams after their backoff (never with --until-idle).
fn restart_failed(shared: &Shared, current: &Loaded, opts: &RunOptions) {
    let mut streams = shared.streams.lock().unwrap();
    for (name, slot) in streams.iter_mut() {
        let state = slot.stream.state();
        if !matches!(state, State::Failed(_)) {
            if slot.failures_in_row > 0 && slot.stream.started.elapsed() >= HEALTHY_AFTER {
                slot.failures_in_row = 0;
            }
            continue;
        }
        // A fenced stream runs elsewhere now: restarting it here would
        // fence the other instance in turn.
        if opts.until_idle || !slot.stream.is_finished() || slot.stream.fenced.load(Ordering::SeqCst) {
            continue;
        }
        let Some(at) = slot.restart_at else {
            slot.failures_in_row += 1;
            let delay = backoff(slot.failures_in_row);
            tracing::warn!(stream = %name, "stream failed; restarting in {} s", delay.as_secs());
            slot.restart_at = Some(Instant::now() + delay);
            continue;
        };
        if Instant::now() < at {
            continue;
        }
        // The current config's definition and credentials, read again.
        match stream::bind(current, slot.stream.spec.clone()) {
            Ok((spec, conn)) => {
                tracing::info!(stream = %name, restarts = slot.restarts + 1, "restarting stream");
                slot.stream = RunningStream::start(spec, conn, start_options(current, opts));
                slot.restarts += 1;
                slot.restart_at = None;
            }
            Err(e) => {
                tracing::error!(stream = %name, "cannot restart: {e:#}");
                slot.failures_in_row += 1;
                slot.restart_at = Some(Instant::now() + backoff(slot.failures_in_row));
            }
        }
    }
}

/// Ask every stream to stop with one deadline, then wait for each until the
/// deadline plus a grace period. A stream still running then is reported
/// as such (its unconfirmed alerts are those in flight) and left to end
/// with the process.
pub fn stop_all(streams: Vec<RunningStream>, deadline: Instant, stall_after: Duration) -> Vec<StreamStatus> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    for s in &streams {
        s.request_stop(deadline);
    }
    streams
        .into_iter()
        .map(|mut s| {
            let ended = s.wait_until(deadline + STOP_GRACE);
            let mut st = StreamStatus::of(&s, stall_after);
            if ended.is_none() {
                st.stats.unconfirmed = st.stats.in_flight;
                st.state = State::Failed(format!(
                    "did not stop within {} s; {} alert(s) unconfirmed",
                    (timeout + STOP_GRACE).as_secs(),
                    st.stats.in_flight
                ));
                tracing::error!(stream = %st.name, "{}", match &st.state { State::Failed(m) => m.as_str(), _ => "" });
            }
            st
        })
        .collect()
}

/// Ask `names` to stop by `deadline` while they stay in the map (and in
/// /status), and wait until they ended or the deadline and grace passed.
fn stop_in_place(shared: &Shared, names: &[String], deadline: Instant) {
    for n in names {
        if let Some(s) = shared.streams.lock().unwrap().get(n) {
            s.stream.request_stop(deadline);
        }
    }
    while Instant::now() < deadline + STOP_GRACE {
        let streams = shared.streams.lock().unwrap();
        if names.iter().all(|n| streams.get(n).map_or(true, |s| s.stream.is_finished())) {
            break;
        }
        drop(streams);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run until idle (`until_idle`) or until SIGINT/SIGTERM. A second SIGINT
/// or SIGTERM exits at once (code 1).
/// Join the group that shares the streams between instances
/// (exactly-once): the membership, the group view, and the state topic's
/// partition count, checked against `[run] state_partitions`.
fn join_group(
    initial: &Loaded,
    member_user: Option<&str>,
    stream_keys: Arc<Mutex<BTreeMap<String, String>>>,
) -> Result<(members::Membership, members::Viewer, i32)> {
    let run_cfg = &initial.config.run;
    let conn = crate::cluster::user_connection(initial, member_user)?;
    check_state_topic(initial)?;
    let state_partitions = stream::state::Reader::new(&conn, &run_cfg.group)
        .and_then(|r| r.partitions(&run_cfg.state_topic))
        .map_err(|e| anyhow!(e))?;
    // Each stream's state lives on the partition its key hashes to: with
    // another count every stream would find nothing and start over.
    if state_partitions != run_cfg.state_partitions {
        anyhow::bail!(
            "the state topic {:?} has {state_partitions} partition(s) but [run] state_partitions is {}: every stream \
             would start over and publish everything again. Set state_partitions = {state_partitions} in fink.toml \
             (a state topic's partitions must never change)",
            run_cfg.state_topic,
            run_cfg.state_partitions
        );
    }
    let membership =
        members::Membership::join(&conn, &run_cfg.group, &run_cfg.state_topic, run_cfg.session_timeout_ms)?;
    let view = members::Viewer::start(conn, run_cfg.group.clone(), run_cfg.state_topic.clone(), stream_keys);
    tracing::info!(group = %run_cfg.group, instance = stream::instance_id(), "joined the group; streams start once assigned");
    Ok((membership, view, state_partitions))
}

/// `/metrics`, `/status`, `/healthz` and `/readyz` on `[run] metrics_addr` ("" turns them off);
/// the bound address is recorded for `fink status` (port 0).
fn serve_status(initial: &Loaded, shared: &Arc<Shared>) -> Result<()> {
    let addr = initial.config.run.metrics_addr.clone();
    if addr.is_empty() {
        return Ok(());
    }
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(stream::FILE_LATENCY_METRIC.into()),
            stream::FILE_LATENCY_BUCKETS,
        )
        .map_err(|e| anyhow!("metrics buckets: {e}"))?
        .install_recorder()
        .map_err(|e| anyhow!("cannot install the metrics recorder: {e}"))?;
    let (s1, s2, s3) = (shared.clone(), shared.clone(), shared.clone());
    let metrics: http::Render = Arc::new(move || {
        status::export_metrics(&s1.status());
        handle.render()
    });
    let status: http::Render = Arc::new(move || serde_json::to_string_pretty(&s2.status()).unwrap_or_default() + "\n");
    let ready: http::Ready = Arc::new(move || {
        let why = s3.status().not_ready();
        if why.is_empty() {
            Ok(())
        } else {
            Err(why)
        }
    });
    let a = http::serve(&addr, metrics, status, ready)
        .map_err(|e| anyhow!("cannot listen on {addr} for /metrics: {e} (set [run] metrics_addr)"))?;
    tracing::info!("metrics on http://{a}/metrics, status on http://{a}/status");
    // With port 0 the OS picks one: `fink status` finds it here.
    let file = bound_addr_file(initial);
    if let Err(e) = std::fs::create_dir_all(file.parent().unwrap_or(Path::new(".")))
        .and_then(|_| std::fs::write(&file, a.to_string()))
    {
        tracing::warn!("cannot write {}: {e}", file.display());
    }
    Ok(())
}

pub fn run(initial: Loaded, opts: RunOptions) -> Result<Vec<StreamStatus>> {
    let specs = stream::specs(&initial, opts.only.as_deref(), &opts.night)?;
    if specs.is_empty() {
        return Err(anyhow!("fink.toml declares no [[stream]]"));
    }
    // Filters were compiled when the config was checked (`check::load`).
    let bound = specs.into_iter().map(|s| stream::bind(&initial, s)).collect::<Result<Vec<_>>>()?;
    let run_cfg = initial.config.run.clone();
    let stream_keys: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let group = if run_cfg.exactly_once() {
        let member_user = if initial.config.cluster.admin.is_some() { None } else { Some(bound[0].0.user.clone()) };
        Some(join_group(&initial, member_user.as_deref(), stream_keys.clone())?)
    } else {
        None
    };
    let (mut membership, view, state_partitions) = match group {
        Some((m, v, n)) => (Some(m), Some(v), n),
        None => (None, None, 0),
    };
    let shared = Arc::new(Shared {
        owned: Mutex::new(membership.as_ref().map(|_| BTreeSet::new())),
        state_partitions: std::sync::atomic::AtomicI32::new(state_partitions),
        delivery: run_cfg.delivery.as_str(),
        stream_keys,
        view: view.as_ref().map(|v| v.view.clone()),
        streams: Mutex::new(BTreeMap::new()),
        stall_after_ms: AtomicU64::new(initial.config.run.stall_after_s.max(1) * 1000),
        reload: Mutex::new(ReloadStatus {
            config_hash: initial.hash.clone(),
            loaded_at: now_secs(),
            loaded_at_time: crate::output::rfc3339(now_secs() * 1000),
            ..Default::default()
        }),
        stopping: AtomicBool::new(false),
    });

    // Signals: INT/TERM stop (a second one exits at once), HUP reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;

    let mut config_watch = watch::ConfigWatch::start(&initial, opts.watch_config)?;
    // An edit saved between loading the file and watching it has no event:
    // compare once now, so it is not lost.
    let mut missed_edit = opts.watch_config
        && match crate::check::load(&opts.load) {
            Ok(l) => l.hash != initial.hash,
            Err(_) => true,
        };
    serve_status(&initial, &shared)?;

    shared.set_declared(&bound.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>());
    let start = start_options(&initial, &opts);
    for (spec, conn) in bound {
        if !shared.owns(&spec) {
            continue;
        }
        tracing::info!(stream = %spec.name, topic = %spec.topic, "starting stream");
        let name = spec.name.clone();
        shared.streams.lock().unwrap().insert(name, Slot::new(RunningStream::start(spec, conn, start)));
    }
    let mut source_watch = watch::SourceWatch::start(&shared)?;

    let mut current = Arc::new(initial);
    let opts = Arc::new(opts);
    let mut job: Option<Job> = None;
    let mut pending_reload = false;
    let mut pending_owned: Option<BTreeSet<i32>> = None;
    let mut stalled: BTreeSet<String> = BTreeSet::new();
    let bar = opts.progress.then(progress_bar);
    let started = Instant::now();
    loop {
        if opts.exit_after.is_some_and(|d| started.elapsed() >= d) && !stop.load(Ordering::SeqCst) {
            tracing::info!("--exit-after reached: ending the run");
            stop.store(true, Ordering::SeqCst);
        }
        if stop.load(Ordering::SeqCst) {
            tracing::info!(
                "stopping: in-flight alerts get {} s to be delivered, then checkpoints are written",
                current.config.run.shutdown_timeout_s
            );
            break;
        }
        source_watch.wake(&shared);
        // Config edits and SIGHUP.
        pending_reload |= hup.swap(false, Ordering::SeqCst) || std::mem::take(&mut missed_edit);
        pending_reload |= config_watch.changed(&current);
        // A finished job hands back the config in force.
        if job.as_ref().is_some_and(|j| j.handle.is_finished()) {
            let j = job.take().expect("a job");
            match j.handle.join() {
                Ok(next) if j.reload => {
                    current = next;
                    config_watch.follow(&current);
                    shared.stall_after_ms.store(current.config.run.stall_after_s.max(1) * 1000, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => tracing::error!("the {} panicked; the streams keep running as they were", j.what),
            }
            source_watch.follow(&shared);
        }
        if let Some(m) = membership.as_mut() {
            match m.poll() {
                Ok(owned) => {
                    if shared.owned.lock().unwrap().as_ref() != Some(owned) || pending_owned.is_some() {
                        pending_owned = Some(owned.clone());
                    }
                }
                Err(e) => tracing::warn!("{e:#}"),
            }
        }
        if job.is_none() {
            // The group's assignment first: it decides what runs here.
            let (shared2, current2, opts2) = (shared.clone(), current.clone(), opts.clone());
            if let Some(owned) = pending_owned.take().filter(|o| shared.owned.lock().unwrap().as_ref() != Some(o)) {
                let handle = std::thread::Builder::new().name("rebalance".into()).spawn(move || {
                    rebalance(&shared2, &current2, &opts2, owned);
                    current2
                })?;
                job = Some(Job { what: "rebalance", reload: false, handle });
            } else if std::mem::take(&mut pending_reload) {
                let handle = std::thread::Builder::new()
                    .name("reload".into())
                    .spawn(move || reload::reload_config(&shared2, current2, &opts2))?;
                job = Some(Job { what: "reload", reload: true, handle });
            }
        }
        if let Some(v) = &view {
            let running: Vec<String> = shared.streams.lock().unwrap().keys().cloned().collect();
            *v.mine.lock().unwrap() = (shared.reload.lock().unwrap().config_hash.clone(), running);
        }
        // A job swaps streams itself: no restart behind its back.
        if job.is_none() {
            restart_failed(&shared, &current, &opts);
        }
        report_stalls(&shared, &mut stalled);
        if let Some(b) = &bar {
            update_bar(b, &shared, started);
        }
        // Streams that ended on their own (until-idle or failure).
        if opts.until_idle && job.is_none() && membership.as_ref().map_or(true, |m| m.joined) {
            let all_done = shared.streams.lock().unwrap().values().all(|s| s.stream.is_finished());
            if all_done {
                break;
            }
        }
        source_watch.wait(Duration::from_millis(100));
    }
    {
        // Under the map's lock: a job checks it there before it adds a stream.
        let _streams = shared.streams.lock().unwrap();
        shared.stopping.store(true, Ordering::SeqCst);
    }
    let deadline = Instant::now() + Duration::from_secs(current.config.run.shutdown_timeout_s);
    if let Some(j) = &job {
        // Its streams are in the map and stop with the rest; what it was
        // preparing is dropped with the process. Not waited for.
        tracing::info!("stopping during a {}: it starts no stream now", j.what);
    }
    let slots = std::mem::take(&mut *shared.streams.lock().unwrap());
    let restarts: BTreeMap<String, u32> = slots.iter().map(|(n, s)| (n.clone(), s.restarts)).collect();
    let mut out = stop_all(slots.into_values().map(|s| s.stream).collect(), deadline, shared.stall_after());
    // After the streams committed: whoever takes them over starts from there.
    if let Some(m) = membership.take() {
        m.leave(Duration::from_secs(2));
    }
    for s in &mut out {
        s.restarts = restarts.get(&s.name).copied().unwrap_or(0);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The state topic must be compacted, or old progress would be deleted by
/// retention (and a stream would start over). Checked with the admin's
/// credentials when the config has them.
fn check_state_topic(l: &Loaded) -> Result<()> {
    if l.config.cluster.admin.is_none() {
        return Ok(());
    }
    let topic = &l.config.run.state_topic;
    let live = crate::cluster::connect_admin(&l.config, &l.base_dir).and_then(|a| a.topics());
    let Ok((_, topics)) = live else { return Ok(()) };
    match topics.get(topic) {
        None => Err(anyhow!(
            "state topic {topic:?} does not exist: run `fink apply` (exactly-once streams commit their progress there)"
        )),
        Some(t) => match t.configs.get("cleanup.policy") {
            Some(p) if p.contains("compact") => Ok(()),
            other => Err(anyhow!(
                "state topic {topic:?} is not compacted (cleanup.policy={}): retention would delete progress; run \
                 `fink plan` and `fink apply` to set cleanup.policy=compact",
                other.map(String::as_str).unwrap_or("delete")
            )),
        },
    }
}

/// The group moved partitions: stop the streams this instance no longer
/// owns (bounded, committing what they sent), start those it now owns.
fn rebalance(shared: &Shared, current: &Loaded, opts: &RunOptions, owned: BTreeSet<i32>) {
    tracing::info!(partitions = ?owned, "group assignment changed");
    *shared.owned.lock().unwrap() = Some(owned);
    // Streams moved away, and streams fenced while away that are ours
    // again (started anew below). They stop while still in the map, so a
    // SIGTERM meanwhile stops them with the rest.
    let names: Vec<String> = shared
        .streams
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, s)| {
            !shared.owns(&s.stream.spec) || (s.stream.fenced.load(Ordering::SeqCst) && s.stream.is_finished())
        })
        .map(|(n, _)| n.clone())
        .collect();
    if !names.is_empty() {
        let deadline = Instant::now() + Duration::from_secs(current.config.run.shutdown_timeout_s);
        stop_in_place(shared, &names, deadline);
        let leaving: Vec<RunningStream> = {
            let mut streams = shared.streams.lock().unwrap();
            names.iter().filter_map(|n| streams.remove(n)).map(|s| s.stream).collect()
        };
        for s in stop_all(leaving, deadline, shared.stall_after()) {
            tracing::info!(stream = %s.name, unconfirmed = s.stats.unconfirmed, "stopped: now owned by another instance");
        }
    }
    let specs = match stream::specs(current, opts.only.as_deref(), &opts.night) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e:#}");
            return;
        }
    };
    let start = start_options(current, opts);
    for spec in specs {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        if !shared.owns(&spec) || shared.streams.lock().unwrap().contains_key(&spec.name) {
            continue;
        }
        match stream::bind(current, spec) {
            Ok((spec, conn)) => {
                let mut streams = shared.streams.lock().unwrap();
                // Checked under the map's lock: the stop takes the map under it.
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                tracing::info!(stream = %spec.name, topic = %spec.topic, "starting stream (assigned to this instance)");
                let name = spec.name.clone();
                streams.insert(name, Slot::new(RunningStream::start(spec, conn, start)));
            }
            Err(e) => tracing::error!("{e:#}"),
        }
    }
}

/// Where `fink run` records the address its /metrics and /status listen
/// on (useful with `metrics_addr = "127.0.0.1:0"`).
pub fn bound_addr_file(l: &Loaded) -> PathBuf {
    l.path(&l.config.run.state_dir).join("metrics.addr")
}

/// The address of a running `fink run` of this config: `[run] metrics_addr`,
/// or with port 0 the one it recorded.
pub fn status_addr(l: &Loaded) -> String {
    let addr = &l.config.run.metrics_addr;
    if addr.ends_with(":0") {
        if let Ok(a) = std::fs::read_to_string(bound_addr_file(l)) {
            return a.trim().to_string();
        }
    }
    addr.clone()
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
