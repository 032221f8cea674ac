//! One stream as a thread: list source files, stream each unfinished one
//! through filter -> projection -> Avro -> Kafka, checkpoint from delivery
//! reports, quarantine bad input and go on.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::ahead::{self, Ahead, Decided};
use super::checkpoint::{Listed, Progress};
use super::encode::{pretty_schema, AvroEncoder};
use super::error::StreamError;
use super::filter::FilterSet;
use super::project::Projection;
use super::python::{Stage, StageError};
use super::sink::{Control, MemoryTopic, SendError, Sink};
use super::source::How;
use super::store::{Input, Store};
use super::Stage as Busy;
use super::{shared, state, Stats, StreamSpec, TxnSpec};
use crate::cluster::Connection;
use arrow_array::RecordBatch;
use arrow_avro::writer::EncodedRows;
use arrow_schema::SchemaRef;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;

mod delivery;
mod file;
use delivery::{Admit, AtLeastOnce, Delivery, Transactional};
use file::process_file;
#[cfg(test)]
mod engine_tests;

/// What a stream is doing, for status and metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    Idle,
    Stopped,
    Failed(String),
}

/// How a stream runs, beyond its spec.
#[derive(Debug, Clone, Copy)]
pub struct StartOptions {
    /// End once every present alert is delivered.
    pub until_idle: bool,
    /// After a stop request (or a failure), how long alerts in flight get
    /// to be confirmed before they are given up as unconfirmed.
    pub shutdown_timeout: Duration,
}

/// A stream whose filters compile, whose producer logged in and whose
/// topic is there and writable: ready to replace a running one.
pub struct Prepared {
    spec: StreamSpec,
    /// `None` for a stream publishing in memory.
    conn: Option<Connection>,
    /// Exactly-once: the state topic's reader and partition count.
    state: Option<(state::Reader, i32)>,
    filters: FilterSet,
    /// Its Python filters, imported in the pool's workers.
    python: Option<Stage>,
    sink: Sink,
    stats: Arc<Stats>,
    control: Arc<Control>,
}

/// The Python stage, its filters imported first: a stream whose module
/// does not import never replaces a running one.
fn python_stage(spec: &StreamSpec) -> Result<Option<Stage>, StreamError> {
    match &spec.python_spec {
        Some(ps) if !spec.python.is_empty() => Ok(Some(Stage::new(ps, &spec.python).map_err(StreamError::Setup)?)),
        _ => Ok(None),
    }
}

impl Prepared {
    /// Build and check everything the stream needs, without reading yet.
    pub fn new(spec: StreamSpec, conn: &Connection) -> Result<Prepared, StreamError> {
        Self::build(spec, conn, Arc::default(), Arc::default())
    }

    fn build(
        spec: StreamSpec,
        conn: &Connection,
        stats: Arc<Stats>,
        control: Arc<Control>,
    ) -> Result<Prepared, StreamError> {
        let filters = FilterSet::new(spec.compile_filters().map_err(|e| StreamError::Setup(format!("{e:#}")))?);
        let python = python_stage(&spec)?;
        let txn_id = spec.txn.as_ref().map(|t| t.id.clone());
        let sink = Sink::new(conn, &spec.topic, &spec.producer, stats.clone(), control.clone(), txn_id.as_deref())?;
        sink.check_topic(&spec.user, conn.timeout)?;
        // The transactions themselves start on the stream's thread: a
        // stream being replaced still runs now, and would be fenced.
        let state = match &spec.txn {
            Some(t) => {
                let r = state::Reader::new(conn, &t.group).map_err(StreamError::State)?;
                let n = r.partitions(&t.state_topic).map_err(StreamError::State)?;
                Some((r, n))
            }
            None => None,
        };
        Ok(Prepared { spec, conn: Some(conn.clone()), state, filters, python, sink, stats, control })
    }

    /// A stream publishing to `topic` in memory instead of Kafka, with
    /// at-least-once delivery (progress in its checkpoint file): the whole
    /// engine, listing to delivery, run without a broker.
    pub fn in_memory(spec: StreamSpec, topic: Arc<MemoryTopic>) -> Result<Prepared, StreamError> {
        if spec.txn.is_some() {
            return Err(StreamError::Setup("an in-memory topic has no transactions: use at-least-once".into()));
        }
        let filters = FilterSet::new(spec.compile_filters().map_err(|e| StreamError::Setup(format!("{e:#}")))?);
        let python = python_stage(&spec)?;
        let (stats, control): (Arc<Stats>, Arc<Control>) = (Arc::default(), Arc::default());
        let sink = Sink::memory(topic, &spec.topic, stats.clone(), control.clone());
        Ok(Prepared { spec, conn: None, state: None, filters, python, sink, stats, control })
    }
}

/// What the stream thread starts from (moved once into the thread).
#[allow(clippy::large_enum_variant)]
enum Start {
    Ready(Prepared),
    Build(Box<(StreamSpec, Connection)>),
}

/// A stream running on its own thread.
pub struct RunningStream {
    pub spec: StreamSpec,
    pub stats: Arc<Stats>,
    state: Arc<Mutex<State>>,
    pub started: Instant,
    pub started_at: SystemTime,
    control: Arc<Control>,
    wake: Sender<()>,
    join: Option<JoinHandle<()>>,
    /// It failed because another instance took it over: never restarted
    /// here unless this instance is given the stream again.
    pub fenced: Arc<std::sync::atomic::AtomicBool>,
}

impl RunningStream {
    /// Start a stream that checks its producer and topic on its own thread
    /// (so a slow cluster never holds up the caller).
    pub fn start(spec: StreamSpec, conn: Connection, opts: StartOptions) -> RunningStream {
        let (stats, control) = (Arc::default(), Arc::default());
        Self::spawn(spec.clone(), stats, control, Start::Build(Box::new((spec, conn))), opts)
    }

    /// Start a stream that was prepared (and checked) already.
    pub fn start_prepared(p: Prepared, opts: StartOptions) -> RunningStream {
        let (spec, stats, control) = (p.spec.clone(), p.stats.clone(), p.control.clone());
        Self::spawn(spec, stats, control, Start::Ready(p), opts)
    }

    fn spawn(
        spec: StreamSpec,
        stats: Arc<Stats>,
        control: Arc<Control>,
        start: Start,
        opts: StartOptions,
    ) -> RunningStream {
        let state = Arc::new(Mutex::new(State::Starting));
        let (wake, wake_rx) = std::sync::mpsc::channel();
        let (st2, stats2, control2, name) = (state.clone(), stats.clone(), control.clone(), spec.name.clone());
        let body = move || {
            let p = match start {
                Start::Ready(p) => p,
                Start::Build(b) => {
                    let (spec, conn) = *b;
                    Prepared::build(spec, &conn, stats2, control2)?
                }
            };
            run(p, &st2, &wake_rx, opts)
        };
        let fenced = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fenced2 = fenced.clone();
        let body = move || {
            let r = body();
            if matches!(r, Err(StreamError::Fenced { .. })) {
                fenced2.store(true, Ordering::SeqCst);
            }
            r
        };
        let join = spawn_guarded(format!("stream-{}", spec.name), name, state.clone(), body);
        RunningStream {
            spec,
            stats,
            state,
            started: Instant::now(),
            started_at: SystemTime::now(),
            control,
            wake,
            join: Some(join),
            fenced,
        }
    }

    /// New files may be there: look now rather than at the next rescan.
    pub fn wake(&self) {
        let _ = self.wake.send(());
    }

    /// Ask the stream to stop reading and to give what is in flight until
    /// `deadline`; it then records what was confirmed and ends.
    pub fn request_stop(&self, deadline: Instant) {
        self.control.request_stop(deadline);
        self.wake();
    }

    pub fn is_finished(&self) -> bool {
        self.join.as_ref().map(|j| j.is_finished()).unwrap_or(true)
    }

    /// Wait for the thread until `until`; `None` if it is still running
    /// then (it is left behind, and ends with the process).
    pub fn wait_until(&mut self, until: Instant) -> Option<State> {
        // Short looks first: a stream that ends at once (until idle, in
        // tests) is seen within a millisecond, a slow one every 20 ms.
        let mut nap = Duration::from_micros(500);
        while !self.is_finished() {
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(20));
        }
        if let Some(j) = self.join.take() {
            // Panics are caught inside the thread; nothing to report here.
            let _ = j.join();
        }
        Some(self.state())
    }

    /// Stop, and wait up to `timeout` for the in-flight alerts plus a grace
    /// period for the thread to end.
    pub fn stop(mut self, timeout: Duration) -> Option<State> {
        let deadline = Instant::now() + timeout;
        self.request_stop(deadline);
        self.wait_until(deadline + STOP_GRACE)
    }

    pub fn state(&self) -> State {
        self.state.lock().unwrap().clone()
    }
}

/// How long past its deadline a stopping stream's thread may take to end
/// (purging the producer's queue, writing the checkpoint).
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Run `body` on a thread whose outcome, a panic included, ends up in
/// `state`: a panicking stream is reported as failed, never as running.
fn spawn_guarded(
    thread: String,
    name: String,
    state: Arc<Mutex<State>>,
    body: impl FnOnce() -> Result<(), StreamError> + Send + 'static,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(thread)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|panic| {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(StreamError::Panicked(msg))
            });
            let mut st = state.lock().unwrap();
            *st = match outcome {
                Ok(()) => State::Stopped,
                Err(e) => {
                    tracing::error!(stream = %name, "{e}");
                    State::Failed(e.to_string())
                }
            };
        })
        .expect("spawn stream thread")
}

fn set(state: &Mutex<State>, s: State) {
    let mut st = state.lock().unwrap();
    if *st != s {
        *st = s;
    }
}

/// The per-schema part of the pipeline, rebuilt when a file's schema differs.
struct Pipeline {
    source_schema: SchemaRef,
    projection: Projection,
    encoder: AvroEncoder,
    /// Encoded bytes per alert in the last chunk (0 before the first):
    /// how many rows the next chunk may take (see [`ENCODE_BYTES`]).
    row_bytes: usize,
}

struct Ctx<'a> {
    spec: &'a StreamSpec,
    stats: &'a Stats,
    control: &'a Control,
    filters: FilterSet,
    python: Option<Stage>,
    sink: Sink,
    /// Progress: saved (at-least-once) or last committed (exactly-once).
    ckpt: Progress,
    /// The current pass's listing (sorted by path): what sealing folds.
    listing: Vec<Listed>,
    /// How progress becomes durable: at-least-once or transactional. Taken
    /// out while one of its methods runs (see [`with_delivery`]).
    delivery: Option<Box<dyn Delivery>>,
    /// Number of the last file opened (delivery reports name files by it).
    file_no: u64,
    /// Files being read or waiting for their last delivery reports.
    open: BTreeMap<u64, OpenFile>,
    /// Where this stream reads, for the streams sharing its source.
    follower: shared::Follower,
    /// Its Python filters decide each file first (`[python] batch_rows`).
    decides_first: bool,
    store: Arc<Store>,
    how: How,
    pipeline: Option<Pipeline>,
    /// `[[notify]]` of this stream: offered each alert handed to Kafka.
    notifiers: Vec<super::notify::Notifier>,
    filter_errors_logged: u32,
    /// The longest time deciding a file ahead took (Python filters).
    longest_decision: Option<Duration>,
    /// Sealed folders already reported as waiting to be told apart.
    waiting_reported: std::collections::BTreeSet<String>,
    /// When fink first saw each file still to read (ms, fink's clock):
    /// where a file's latency starts. A store's times are not used: an
    /// HDFS rename keeps an old one, and clocks differ.
    seen: std::collections::HashMap<String, u64>,
}

/// A file whose rows are (being) handed to the producer. It is marked done
/// in the checkpoint once it is read to the end and every report is in;
/// meanwhile the stream goes on with the next file, so the producer's
/// pipeline never empties at file boundaries.
struct OpenFile {
    /// Path relative to the source root (the checkpoint key).
    name: String,
    /// Its identity when listed: what progress records.
    id: u32,
    /// Source rows `0..handed` were sent, filtered out or quarantined.
    handed: u64,
    /// Still being read (or reading was interrupted by a stop).
    reading: bool,
    /// When fink first saw it (ms since the epoch).
    seen_ms: u64,
}

impl OpenFile {
    /// Its alerts are durable now: its latency is observed.
    fn committed(&self, spec: &StreamSpec, stats: &Stats) {
        let secs = crate::stream::now_ms().saturating_sub(self.seen_ms) as f64 / 1000.0;
        stats.file_committed(&spec.name, secs, spec.latency_objective);
    }
}

/// Whether to go on handing alerts over.
#[derive(Debug, PartialEq)]
enum Flow {
    Go,
    Stopped,
    /// The source did not answer; the file is read again later from what
    /// was delivered (or committed).
    Unavailable(String),
    /// A Python filter raised on a batch: the rest of its file is
    /// quarantined with the reason.
    Quarantined(String),
}

/// A transaction was aborted: what it held is sent again from the last
/// committed progress.
struct Aborted(String);

fn run(p: Prepared, state: &Mutex<State>, wake: &Receiver<()>, opts: StartOptions) -> Result<(), StreamError> {
    let Prepared { spec, conn, state: state_reader, filters, python, sink, stats, control } = p;
    let spec = &spec;
    let store =
        Store::open(&spec.source).map_err(|e| StreamError::Setup(format!("source {}: {e}", spec.source.display())))?;
    let how = How { format: spec.format, batch_size: spec.batch_size, columns: spec.columns.clone() };
    let decides_first = python.as_ref().is_some_and(|p| ahead::decides_first(p, &how));
    let mut cx = Ctx {
        spec,
        stats: &stats,
        control: &control,
        filters,
        python,
        sink,
        ckpt: Progress::new(&spec.name),
        listing: Vec::new(),
        delivery: None,
        file_no: 0,
        open: BTreeMap::new(),
        follower: {
            let stop: shared::Stop = {
                let control = control.clone();
                Arc::new(move || control.stopping())
            };
            // A stream whose Python filters decide each file first holds
            // the window while it decides, and mostly reads its kept rows
            // alone: the others wait for it only one file behind, as
            // before (awaiting it further back slowed Rubin visits, p50
            // 10.7 -> 14.4 s, and raised fink's peak RSS by a quarter).
            if decides_first {
                shared::Follower::with_stop(stop)
            } else {
                shared::Follower::on(&store, &how, stop)
            }
        },
        store,
        how,
        decides_first,
        pipeline: None,
        notifiers: spec
            .notify
            .iter()
            .filter_map(|n| match super::notify::Notifier::start(n, &spec.name, &spec.topic, stats.clone()) {
                Ok(x) => Some(x),
                Err(e) => {
                    tracing::warn!(stream = %spec.name, "{e}; this stream publishes without it");
                    None
                }
            })
            .collect(),
        filter_errors_logged: 0,
        longest_decision: None,
        waiting_reported: Default::default(),
        seen: Default::default(),
    };
    let delivery: Box<dyn Delivery> = match &spec.txn {
        None => {
            cx.ckpt = Progress::load(&spec.checkpoint_path, &spec.name).map_err(StreamError::State)?;
            Box::new(AtLeastOnce::new())
        }
        Some(t) => {
            let (reader, partitions) = state_reader.expect("exactly-once streams have a state reader");
            let conn = conn.expect("exactly-once streams have a connection");
            let d = Transactional::start(&mut cx, &conn, &reader, t.clone(), partitions)?;
            // Closed now, not at the stop (with a broker away, closing waits).
            drop(reader);
            Box::new(d)
        }
    };
    cx.delivery = Some(delivery);
    let mut missing_logged = false;
    let mut unavailable = Backoff::default();
    let idle_wait = if spec.source.local().is_some() { Duration::from_secs(1) } else { spec.poll_interval };
    let result = loop {
        if control.stopping() {
            break Ok(());
        }
        if !unavailable.wait(&control) {
            break Ok(());
        }
        let files = match cx.store.list(spec.format) {
            Ok(f) => {
                missing_logged = false;
                f
            }
            Err(e) if e.is_transient() => {
                source_unavailable(&mut cx, &mut unavailable, &e.to_string(), "listing");
                continue;
            }
            Err(e) => {
                if !missing_logged {
                    match &spec.night {
                        // As Fink's service does: the night's folder appears when its first alerts do.
                        Some(night) => tracing::warn!(
                            stream = %spec.name,
                            "the folder of night {night}, {}, is not there yet ({e}); waiting for it",
                            spec.source.display()
                        ),
                        None => tracing::warn!(
                            stream = %spec.name,
                            "source {} is not readable yet: {e}",
                            spec.source.display()
                        ),
                    }
                    missing_logged = true;
                }
                Vec::new()
            }
        };
        let mut files = files;
        files.sort();
        cx.listing = files.iter().map(Input::listed).collect();
        let plan = cx.ckpt.plan(&cx.listing, super::now_ms());
        report_changes(&mut cx, &files, &plan);
        // What the listing taught (changed files, a folder to read again)
        // is recorded with the next commit.
        let learned = !(plan.changed.is_empty()
            && plan.changed_folders.is_empty()
            && plan.unresolved.is_empty()
            && plan.restarted.is_empty());
        if learned {
            if let Err(e) = progress_changed(&mut cx) {
                match e {
                    Outcome::Failed(e) => break Err(e),
                    Outcome::Aborted(a) => {
                        rewind(&mut cx, a);
                        continue;
                    }
                }
            }
        }
        // Files in flight from an earlier pass are not read twice.
        let todo: Vec<Input> = plan
            .read
            .iter()
            .map(|&i| files[i].clone())
            .filter(|i| !cx.open.values().any(|o| o.name == i.rel))
            .collect();
        stats.backlog_files.store(todo.len() as u64, Ordering::Relaxed);
        let now = super::now_ms();
        for i in &todo {
            cx.seen.entry(i.rel.clone()).or_insert(now);
        }
        let keep: std::collections::HashSet<&str> =
            todo.iter().map(|i| i.rel.as_str()).chain(cx.open.values().map(|o| o.name.as_str())).collect();
        cx.seen.retain(|rel, _| keep.contains(rel.as_str()));
        if todo.is_empty() {
            if unavailable.failures == 0 {
                stats.source_down(None);
            }
            // Finished files and imports are committed before idling.
            if let Err(e) = save_point(&mut cx, true) {
                match e {
                    Outcome::Failed(e) => break Err(e),
                    Outcome::Aborted(a) => {
                        rewind(&mut cx, a);
                        continue;
                    }
                }
            }
            set(state, State::Idle);
            if opts.until_idle {
                break Ok(());
            }
            match wake.recv_timeout(idle_wait) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break Ok(()),
            }
        }
        set(state, State::Running);
        let mut failed = None;
        let mut source_failed = false;
        for (i, f) in todo.iter().enumerate() {
            // This file and the next ones (this one first: it is the one
            // taken now, never evicted by the hint for a later one).
            super::prefetch::ahead(&cx.store, &todo[i..], &cx.how);
            match process_file(&mut cx, f) {
                Ok(Flow::Go | Flow::Quarantined(_)) => unavailable.failures = 0,
                Ok(Flow::Stopped) => break,
                Ok(Flow::Unavailable(e)) => {
                    source_unavailable(&mut cx, &mut unavailable, &e, "reading");
                    source_failed = true;
                    break;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            stats.backlog_files.store((todo.len() - i - 1) as u64, Ordering::Relaxed);
        }
        // The backlog is handed over: wait for its reports (or commit it)
        // before idling.
        if failed.is_none() {
            failed = drain(&mut cx).err();
        }
        if source_failed && failed.is_none() {
            // What was read of the file is delivered (or committed) and
            // recorded; the next pass reads it again from there.
            cx.open.retain(|_, o| !o.reading);
        }
        match failed {
            None => {}
            Some(Outcome::Aborted(a)) => rewind(&mut cx, a),
            Some(Outcome::Failed(e)) => break Err(e),
        }
    };
    // Whatever happened: in-flight alerts get until the stop deadline (a
    // failure sets its own), then what is still unconfirmed is given up.
    if !control.stopping() {
        control.request_stop(Instant::now() + opts.shutdown_timeout);
    }
    // Kafka first; then queued notifications get their short drain.
    let notifiers = std::mem::take(&mut cx.notifiers);
    let out = finish_kafka(&mut cx, result);
    for n in notifiers {
        n.finish();
    }
    out
}

/// Run one method of the stream's delivery with the context: the delivery
/// is taken out of it meanwhile (it is never re-entered).
fn with_delivery<R>(cx: &mut Ctx<'_>, f: impl FnOnce(&mut dyn Delivery, &mut Ctx<'_>) -> R) -> R {
    let mut d = cx.delivery.take().expect("the delivery is set before the stream reads");
    let r = f(&mut *d, cx);
    cx.delivery = Some(d);
    r
}

/// Record progress now if due: at-least-once from the delivery reports
/// (throttled unless `force`), exactly-once by committing the transaction
/// (every `commit_interval_ms`, or now with `force`).
fn save_point(cx: &mut Ctx<'_>, force: bool) -> Result<(), Outcome> {
    let t = Instant::now();
    let r = with_delivery(cx, |d, cx| d.save_point(cx, force));
    cx.stats.spent(Busy::Commit, t);
    r
}

/// Progress changed outside the alerts (a quarantined file): record it.
fn progress_changed(cx: &mut Ctx<'_>) -> Result<(), Outcome> {
    with_delivery(cx, |d, cx| d.progress_changed(cx))
}

/// What a failed delivery report means for the stream, if one came in.
fn fatal(cx: &mut Ctx<'_>) -> Option<Outcome> {
    let (code, msg) = cx.control.deliveries().fatal.clone()?;
    Some(with_delivery(cx, |d, cx| d.failed(cx, code, msg)))
}

/// Wait for (at-least-once) or commit (exactly-once) what was handed over.
fn drain(cx: &mut Ctx<'_>) -> Result<(), Outcome> {
    let t = Instant::now();
    let r = with_delivery(cx, |d, cx| d.drain(cx));
    cx.stats.spent(Busy::Commit, t);
    r
}

/// Deliver or commit what is in flight, within the stop deadline.
fn finish_kafka(cx: &mut Ctx<'_>, result: Result<(), StreamError>) -> Result<(), StreamError> {
    with_delivery(cx, |d, cx| d.finish(cx, result))
}

/// After an aborted transaction: what was handed over since the last
/// commit is sent again.
fn rewind(cx: &mut Ctx<'_>, a: Aborted) {
    with_delivery(cx, |d, cx| d.rewind(cx, a))
}

/// Why the pipeline did not go on: the stream fails, or (exactly-once) a
/// transaction was aborted and is sent again.
enum Outcome {
    Failed(StreamError),
    Aborted(Aborted),
}

impl From<StreamError> for Outcome {
    fn from(e: StreamError) -> Self {
        Outcome::Failed(e)
    }
}

impl Outcome {
    fn into_error(self) -> StreamError {
        match self {
            Outcome::Failed(e) => e,
            Outcome::Aborted(Aborted(m)) => StreamError::State(format!("transaction aborted: {m}")),
        }
    }
}

/// The first wait after a source failed to answer (the engine's property
/// tests retry in-memory faults at once).
const BACKOFF_FIRST_MS: u64 = if cfg!(test) { 5 } else { 500 };

/// Waits between retries of an unreachable source: 0.5 s, doubling up to
/// 10 s, cut short by a stop.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Wait out the backoff; `false` if a stop came meanwhile.
    fn wait(&self, control: &super::sink::Control) -> bool {
        if self.failures == 0 {
            return true;
        }
        let total = Duration::from_millis(BACKOFF_FIRST_MS.saturating_mul(1 << self.failures.min(5).saturating_sub(1)))
            .min(Duration::from_secs(10));
        let until = Instant::now() + total;
        while Instant::now() < until {
            if control.stopping() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
        }
        !control.stopping()
    }
}

/// The source did not answer: nothing is quarantined or lost; the stream
/// is reported stalled and tries again after its backoff.
fn source_unavailable(cx: &mut Ctx<'_>, backoff: &mut Backoff, error: &str, doing: &str) {
    if backoff.failures == 0 {
        tracing::warn!(
            stream = %cx.spec.name,
            source = %cx.spec.source.display(),
            "the source did not answer while {doing}; retrying with backoff: {error}"
        );
    } else {
        tracing::debug!(stream = %cx.spec.name, "source still unavailable: {error}");
    }
    cx.stats.source_down(Some(error.to_string()));
    backoff.failures += 1;
}

/// Done files that changed since they were published: a warning each
/// (once), a metric; `fink state show` lists them. Never read again.
fn report_changes(cx: &mut Ctx<'_>, files: &[Input], plan: &super::checkpoint::Plan) {
    for d in &plan.waiting {
        if cx.waiting_reported.insert(d.clone()) {
            tracing::warn!(
                stream = %cx.spec.name,
                "{}: files were added to this finished folder while fink was away, more than its record tells \
                 apart; its new files wait until its listing is stable for 5 minutes, then the folder is read again",
                cx.store.url_of(d)
            );
        }
    }
    for &i in &plan.changed {
        tracing::warn!(
            stream = %cx.spec.name,
            "{} changed after it was published (another length or modification time); it is not published again. \
             To publish it anew, give it a new name",
            cx.store.url_of(&files[i].rel)
        );
    }
    for &i in &plan.restarted {
        tracing::warn!(
            stream = %cx.spec.name,
            "{} changed while it was being published (another length or modification time); the new version is \
             read from its start, so its first alerts are published again",
            cx.store.url_of(&files[i].rel)
        );
    }
    for d in &plan.changed_folders {
        tracing::warn!(
            stream = %cx.spec.name,
            "a file in {} changed after it was published; it is not published again",
            cx.store.url_of(d.trim_end_matches('/'))
        );
    }
    for d in &plan.unresolved {
        tracing::warn!(
            stream = %cx.spec.name,
            "{}: more files were added to this finished folder than its record can tell apart; \
             its files are read again (alerts already published there are published again)",
            cx.store.url_of(d)
        );
    }
    let n = (plan.changed.len() + plan.changed_folders.len() + plan.restarted.len()) as u64;
    cx.stats.changed_files.fetch_add(n, Ordering::Relaxed);
}

use crate::stream::now_secs;

/// Append one line to the stream's quarantine log.
fn quarantine(cx: &Ctx<'_>, file: &str, row: Option<u64>, reason: &str) {
    cx.stats.quarantined.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(stream = %cx.spec.name, file, ?row, "quarantined: {reason}");
    let line =
        serde_json::json!({ "time": now_secs(), "stream": cx.spec.name, "file": file, "row": row, "reason": reason });
    let path = &cx.spec.quarantine_log;
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

fn save(cx: &Ctx<'_>) -> Result<(), StreamError> {
    cx.ckpt.save(&cx.spec.checkpoint_path).map_err(|e| StreamError::State(format!("cannot write checkpoint: {e}")))
}

/// Delivery errors that sending again cannot cure.
fn definitive(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
    )
}

/// `full`: the file's whole schema when only some columns were read
/// (select and drop paths are checked against it; dropping a column that
/// no stream reads is then a no-op).
fn ensure_pipeline(cx: &mut Ctx<'_>, schema: &SchemaRef, full: Option<&SchemaRef>) -> Result<(), String> {
    if cx.pipeline.as_ref().map(|p| &p.source_schema == schema).unwrap_or(false) {
        return Ok(());
    }
    if let Some(full) = full.filter(|f| f.fields().len() != schema.fields().len()) {
        Projection::new(&cx.spec.select, &cx.spec.drop, full)?;
    }
    let present: Vec<String> =
        cx.spec.drop.iter().filter(|d| super::project::type_at(schema.fields(), d).is_ok()).cloned().collect();
    let projection = Projection::new(&cx.spec.select, &present, schema)?;
    let out = projection.output_schema(schema).map_err(|e| e.to_string())?;
    let encoder = AvroEncoder::new(&out)?;
    if let Some(path) = &cx.spec.schema_path {
        if let Some(d) = path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        std::fs::write(path, pretty_schema(&encoder.schema_json))
            .map_err(|e| format!("cannot write schema file {}: {e}", path.display()))?;
    }
    cx.pipeline = Some(Pipeline { source_schema: schema.clone(), projection, encoder, row_bytes: 0 });
    Ok(())
}

/// A transactional call's step ran out while rdkafka was flushing.
fn step_timed_out(e: &rdkafka::error::KafkaError) -> bool {
    matches!(e, rdkafka::error::KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
}

/// How long one call of a transactional API may block.
const TXN_STEP: Duration = Duration::from_millis(500);

/// Call a transactional API in short steps: a stop request is noticed
/// within one, and a retriable timeout asks again until `max` passed.
fn stepped(
    control: &Control,
    max: Duration,
    f: impl Fn(Duration) -> rdkafka::error::KafkaResult<()>,
) -> rdkafka::error::KafkaResult<()> {
    let until = Instant::now() + max;
    loop {
        let step = TXN_STEP.min(control.deadline_left()).max(Duration::from_millis(10));
        match f(step) {
            Err(rdkafka::error::KafkaError::Transaction(e))
                if e.is_retriable() && Instant::now() < until && !control.past_deadline() => {}
            Err(e) if step_timed_out(&e) && Instant::now() < until && !control.past_deadline() => {}
            r => return r,
        }
    }
}

/// Decide the file's rows ahead ([`ahead`]) if this stream does: Ok(None)
/// when it does not, Err with the flow when the stream stops or fails.
fn decide_ahead(
    cx: &mut Ctx<'_>,
    input: &Input,
    full_schema: Option<&arrow_schema::Schema>,
    start_row: u64,
) -> Result<Option<Ahead>, Result<Flow, Outcome>> {
    let (Some(stage), Some(schema)) = (cx.python.as_ref(), full_schema) else { return Ok(None) };
    let Some(columns) = ahead::columns(stage, &cx.filters, &cx.how, schema) else { return Ok(None) };
    let t = Instant::now();
    let longest = cx.longest_decision;
    with_delivery(cx, |d, cx| d.before_long_pause(cx, longest)).map_err(Err)?;
    cx.stats.spent(Busy::Commit, t);
    let t = Instant::now();
    let control = cx.control;
    let stage = cx.python.as_mut().expect("a Python stage");
    let decided =
        ahead::decide(&cx.store, input, columns, &cx.filters, stage, &cx.spec.name, start_row, &|| control.stopping());
    cx.stats.spent(Busy::Filter, t);
    cx.longest_decision = Some(cx.longest_decision.unwrap_or_default().max(t.elapsed()));
    tracing::debug!(stream = %cx.spec.name, file = %input.rel, "decided ahead in {:.2} s", t.elapsed().as_secs_f64());
    match decided {
        Decided::Yes(a) => {
            cx.stats.source_bytes.fetch_add(a.bytes, Ordering::Relaxed);
            report_filter_errors(cx, &input.rel, &a.errors);
            Ok(Some(a))
        }
        Decided::No => Ok(None),
        Decided::Stopped => Err(Ok(Flow::Stopped)),
        Decided::Fail(reason) => Err(Err(StreamError::Filter(reason).into())),
    }
}

/// CEL errors (row of the file, message): counted, and the first few logged.
fn report_filter_errors(cx: &mut Ctx<'_>, file: &str, errors: &[(u64, String)]) {
    for (row, e) in errors {
        cx.stats.errors.fetch_add(1, Ordering::Relaxed);
        if cx.filter_errors_logged < 5 {
            cx.filter_errors_logged += 1;
            tracing::warn!(stream = %cx.spec.name, file, row, "{e} (alert not published; guard optional fields with has())");
        }
    }
}

/// Filter (unless `decided` ahead), encode and send one batch whose row `i`
/// is row `row_of(i)` of its file.
fn send_rows_of(
    cx: &mut Ctx<'_>,
    f: u64,
    file: &str,
    batch: &RecordBatch,
    row_of: &dyn Fn(usize) -> u64,
    decided: Option<arrow_array::BooleanArray>,
) -> Result<Flow, Outcome> {
    let n = batch.num_rows();
    cx.stats.read.fetch_add(n as u64, Ordering::Relaxed);
    let t = Instant::now();
    let ahead = decided.is_some();
    let (mask, errors) = match decided {
        Some(m) => (m, Vec::new()),
        None => cx.filters.evaluate(batch),
    };
    let mask = match cx.python.as_mut() {
        Some(_) if ahead => mask,
        Some(stage) => {
            let control = cx.control;
            match stage.apply(&cx.spec.name, batch, mask, &|| control.stopping()) {
                Ok(m) => m,
                Err(StageError::Stopped) => return Ok(Flow::Stopped),
                Err(StageError::Quarantine(reason)) => return Ok(Flow::Quarantined(reason)),
                Err(StageError::Fail(reason)) => return Err(StreamError::Filter(reason).into()),
            }
        }
        None => mask,
    };
    cx.stats.spent(Busy::Filter, t);
    let errors: Vec<(u64, String)> = errors.into_iter().map(|(row, e)| (row_of(row), e)).collect();
    report_filter_errors(cx, file, &errors);
    // Kept rows: their index in the batch, and their row in the file.
    let kept_at: Vec<usize> = mask.iter().enumerate().filter(|(_, k)| k.unwrap_or(false)).map(|(i, _)| i).collect();
    let kept_rows: Vec<u64> = kept_at.iter().map(|&i| row_of(i)).collect();
    cx.stats.filtered.fetch_add((n - kept_rows.len()) as u64, Ordering::Relaxed);
    if kept_rows.is_empty() {
        return Ok(Flow::Go);
    }
    let key = cx.pipeline.as_ref().expect("pipeline built before sending").encoder.schema_json.clone();
    // Copy, project and encode a few kept rows at a time: the batch itself
    // is shared with the other streams on this source, and a stream's own
    // copies (the kept rows, their Avro) stay small however large the batch.
    let mut next_kept = 0;
    while next_kept < kept_at.len() {
        let pipeline = cx.pipeline.as_mut().expect("pipeline built before sending");
        let count = chunk_rows(pipeline.row_bytes).min(kept_at.len() - next_kept);
        let (start, end) = (kept_at[next_kept], kept_at[next_kept + count - 1] + 1);
        let len = end - start;
        let t = Instant::now();
        let part = batch.slice(start, len);
        let kept = if count == len {
            part
        } else {
            arrow_select::filter::filter_record_batch(&part, &mask.slice(start, len))
                .map_err(|e| StreamError::Setup(e.to_string()))?
        };
        let projected =
            pipeline.projection.apply(&kept).map_err(|e| StreamError::Setup(format!("projection failed: {e}")))?;
        let rows = pipeline.encoder.encode(&projected).map_err(StreamError::Setup)?;
        pipeline.row_bytes = rows.bytes().len() / count;
        cx.stats.spent(Busy::Encode, t);
        let t = Instant::now();
        let sent = send_rows(cx, f, file, &key, &rows, &kept_rows[next_kept..next_kept + count]);
        cx.stats.spent(Busy::Send, t);
        if sent? == Flow::Stopped {
            return Ok(Flow::Stopped);
        }
        for n in &cx.notifiers {
            for row in 0..kept.num_rows() {
                n.offer(&kept, row);
            }
        }
        next_kept += count;
    }
    Ok(Flow::Go)
}

/// Rows encoded at once by a stream, at most.
const ENCODE_CHUNK: usize = 32;

/// Avro bytes encoded at once by a stream, about: the encoder keeps a
/// buffer of its largest chunk, 13 streams of 32 Rubin alerts (~176 KB
/// each) held ~90 MB of fink's peak. 1 MB is ~6 Rubin alerts, ~22 ZTF ones.
const ENCODE_BYTES: usize = 1 << 20;

/// Rows the next chunk may take, from the last chunk's bytes per row (0:
/// none encoded yet, so one row first).
fn chunk_rows(row_bytes: usize) -> usize {
    ENCODE_BYTES.checked_div(row_bytes).map_or(1, |n| n.clamp(1, ENCODE_CHUNK))
}

#[cfg(test)]
#[test]
fn chunks_hold_about_a_megabyte_of_avro() {
    assert_eq!(chunk_rows(0), 1, "one row before the size of a row is known");
    assert_eq!(chunk_rows(176 << 10), 5, "Rubin alerts");
    assert_eq!(chunk_rows(46 << 10), 22, "ZTF alerts");
    assert_eq!(chunk_rows(100), ENCODE_CHUNK, "small alerts: at most ENCODE_CHUNK");
    assert_eq!(chunk_rows(4 << 20), 1, "an alert above the bound: one at a time");
}

fn send_rows(
    cx: &mut Ctx<'_>,
    f: u64,
    file: &str,
    key: &str,
    rows: &EncodedRows,
    kept_rows: &[u64],
) -> Result<Flow, Outcome> {
    for (i, datum) in rows.iter().enumerate() {
        let row = kept_rows[i];
        // Every earlier row of the file is sent, filtered out or quarantined.
        cx.open.get_mut(&f).expect("open file").handed = row;
        match with_delivery(cx, |d, cx| d.admit(cx, f, file, row))? {
            Admit::Send => {}
            Admit::Skip => continue,
            Admit::Stopped => return Ok(Flow::Stopped),
        }
        cx.control.deliveries().pending.insert((f, row));
        match cx.sink.send(key.as_bytes(), &datum, f, row) {
            Ok(()) => {
                cx.stats.passed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                cx.control.deliveries().pending.remove(&(f, row));
                with_delivery(cx, |d, _| d.not_sent());
                match e {
                    SendError::Stopped => return Ok(Flow::Stopped),
                    SendError::TooLarge(msg) => quarantine(
                        cx,
                        file,
                        Some(row),
                        &format!("alert of {} bytes is larger than the producer accepts: {msg}", datum.len()),
                    ),
                    SendError::Kafka(code, msg) => {
                        return Err(StreamError::from_kafka(&cx.spec.user, &cx.spec.topic, code, msg).into())
                    }
                }
            }
        }
    }
    Ok(Flow::Go)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_stream_is_reported_failed_with_its_message() {
        let state = Arc::new(Mutex::new(State::Running));
        let join = spawn_guarded("t".into(), "s".into(), state.clone(), || panic!("boom at row 7"));
        join.join().expect("the panic is caught inside the thread");
        match state.lock().unwrap().clone() {
            State::Failed(m) => assert!(m.contains("panicked") && m.contains("boom at row 7"), "{m}"),
            other => panic!("reported as {other:?}"),
        }
        let state = Arc::new(Mutex::new(State::Running));
        let join = spawn_guarded("t".into(), "s".into(), state.clone(), || {
            Err(StreamError::State("cannot write checkpoint".into()))
        });
        join.join().unwrap();
        assert_eq!(*state.lock().unwrap(), State::Failed("cannot write checkpoint".into()));
    }
}
