//! One stream as a thread: list source files, stream each unfinished one
//! through filter -> projection -> Avro -> Kafka, checkpoint from delivery
//! reports, quarantine bad input and go on.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::checkpoint::{Checkpoint, FileProgress};
use super::encode::{pretty_schema, AvroEncoder};
use super::error::StreamError;
use super::filter::FilterSet;
use super::project::Projection;
use super::sink::{Control, SendError, Sink};
use super::{shared, source, Stats, StreamSpec};
use crate::cluster::Connection;
use arrow_array::RecordBatch;
use arrow_avro::writer::EncodedRows;
use arrow_schema::SchemaRef;

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
    filters: FilterSet,
    sink: Sink,
    stats: Arc<Stats>,
    control: Arc<Control>,
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
        let sink = Sink::new(conn, &spec.topic, &spec.producer, stats.clone(), control.clone())?;
        sink.check_topic(&spec.user, conn.timeout)?;
        Ok(Prepared { spec, filters, sink, stats, control })
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
        while !self.is_finished() {
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
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
}

struct Ctx<'a> {
    spec: &'a StreamSpec,
    stats: &'a Stats,
    control: &'a Control,
    filters: FilterSet,
    sink: Sink,
    ckpt: Checkpoint,
    last_save: Instant,
    /// Number of the last file opened (delivery reports name files by it).
    file_no: u64,
    /// Files being read or waiting for their last delivery reports.
    open: BTreeMap<u64, OpenFile>,
    /// Where this stream reads, for the streams sharing its source.
    follower: shared::Follower,
    pipeline: Option<Pipeline>,
    filter_errors_logged: u32,
    /// (file, row) sent at or after its file's saved `rows_done`, in order:
    /// what a crash could send again. Kept below `max_in_flight`, which
    /// bounds duplicates.
    unsaved: std::collections::VecDeque<(u64, u64)>,
}

/// A file whose rows are (being) handed to the producer. It is marked done
/// in the checkpoint once it is read to the end and every report is in;
/// meanwhile the stream goes on with the next file, so the producer's
/// pipeline never empties at file boundaries.
struct OpenFile {
    /// Path relative to the source root (the checkpoint key).
    name: String,
    /// Source rows `0..handed` were sent, filtered out or quarantined.
    handed: u64,
    /// Still being read (or reading was interrupted by a stop).
    reading: bool,
    /// Why the rest of the file was skipped, if it was.
    quarantined: Option<String>,
}

/// Whether to go on handing alerts over.
#[derive(Debug, PartialEq)]
enum Flow {
    Go,
    Stopped,
}

fn run(p: Prepared, state: &Mutex<State>, wake: &Receiver<()>, opts: StartOptions) -> Result<(), StreamError> {
    let Prepared { spec, filters, sink, stats, control } = p;
    let spec = &spec;
    let ckpt = Checkpoint::load(&spec.checkpoint_path, &spec.name).map_err(StreamError::State)?;
    let mut cx = Ctx {
        spec,
        stats: &stats,
        control: &control,
        filters,
        sink,
        ckpt,
        last_save: Instant::now(),
        file_no: 0,
        open: BTreeMap::new(),
        follower: shared::Follower::new(),
        pipeline: None,
        filter_errors_logged: 0,
        unsaved: Default::default(),
    };
    let mut missing_logged = false;
    let result = loop {
        if control.stopping() {
            break Ok(());
        }
        let files = match source::list_files(&spec.source_root, spec.format) {
            Ok(f) => {
                missing_logged = false;
                f
            }
            Err(e) => {
                if !missing_logged {
                    tracing::warn!(stream = %spec.name, "source {} is not readable yet: {e}", spec.source_root.display());
                    missing_logged = true;
                }
                Vec::new()
            }
        };
        let todo: Vec<_> = files
            .into_iter()
            .filter(|f| !cx.ckpt.files.get(&rel(&spec.source_root, f)).map(|p| p.done).unwrap_or(false))
            .collect();
        stats.backlog_files.store(todo.len() as u64, Ordering::Relaxed);
        if todo.is_empty() {
            set(state, State::Idle);
            if opts.until_idle {
                break Ok(());
            }
            match wake.recv_timeout(Duration::from_secs(1)) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break Ok(()),
            }
        }
        set(state, State::Running);
        let mut failed = None;
        for (i, f) in todo.iter().enumerate() {
            match process_file(&mut cx, f) {
                Ok(Flow::Go) => {}
                Ok(Flow::Stopped) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            stats.backlog_files.store((todo.len() - i - 1) as u64, Ordering::Relaxed);
        }
        // The backlog is handed over: wait for its reports before idling.
        if failed.is_none() {
            failed = drain(&mut cx).err();
        }
        if let Some(e) = failed {
            break Err(e);
        }
    };
    // Whatever happened: in-flight alerts get until the stop deadline (a
    // failure sets its own), then what is still unconfirmed is given up.
    if !control.stopping() {
        control.request_stop(Instant::now() + opts.shutdown_timeout);
    }
    let drained = drain(&mut cx);
    let unconfirmed = cx.sink.control.deliveries().pending.len() as u64;
    if unconfirmed > 0 {
        cx.sink.purge();
        tracing::warn!(
            stream = %spec.name,
            unconfirmed,
            "stopped with alerts unconfirmed after the shutdown deadline; the checkpoint stays before them, so they are sent again on the next start"
        );
    }
    stats.unconfirmed.store(unconfirmed, Ordering::SeqCst);
    settle(&mut cx, true)?;
    result.and(drained)
}

fn rel(root: &Path, f: &Path) -> String {
    f.strip_prefix(root).unwrap_or(f).to_string_lossy().into_owned()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

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

/// Record what the delivery reports allow: each open file's finished
/// prefix, refused records in the quarantine log, and files whose last
/// report came in as done. Throttled unless `force`.
fn settle(cx: &mut Ctx<'_>, force: bool) -> Result<(), StreamError> {
    if !force && cx.last_save.elapsed() < Duration::from_millis(200) {
        return Ok(());
    }
    let (too_large, progress) = {
        let mut st = cx.control.deliveries();
        let too_large = std::mem::take(&mut st.too_large);
        // Per open file: its first row still in flight, if any.
        let progress: Vec<(u64, Option<u64>)> =
            cx.open.keys().map(|&f| (f, st.pending.range((f, 0)..(f + 1, 0)).next().map(|&(_, r)| r))).collect();
        (too_large, progress)
    };
    for (f, row, reason) in too_large {
        let name = cx.open.get(&f).map(|o| o.name.clone()).unwrap_or_default();
        quarantine(cx, &name, Some(row), &reason);
    }
    let mut changed = false;
    for (f, first_pending) in progress {
        let o = &cx.open[&f];
        if first_pending.is_none() && !o.reading {
            let o = cx.open.remove(&f).expect("open file");
            cx.ckpt.files.insert(o.name, FileProgress { rows_done: o.handed, done: true, quarantined: o.quarantined });
            cx.stats.files_done.fetch_add(1, Ordering::Relaxed);
            changed = true;
            continue;
        }
        let rows_done = first_pending.unwrap_or(o.handed);
        let entry = cx.ckpt.files.entry(o.name.clone()).or_default();
        // An unchanged position is never rewritten.
        if entry.rows_done != rows_done {
            entry.rows_done = rows_done;
            changed = true;
        }
    }
    if changed {
        save(cx)?;
    }
    while let Some(&(f, row)) = cx.unsaved.front() {
        let saved = match cx.open.get(&f) {
            None => true,
            Some(o) => cx.ckpt.files.get(&o.name).is_some_and(|p| row < p.rows_done),
        };
        if !saved {
            break;
        }
        cx.unsaved.pop_front();
    }
    cx.last_save = Instant::now();
    Ok(())
}

fn save(cx: &Ctx<'_>) -> Result<(), StreamError> {
    cx.ckpt.save(&cx.spec.checkpoint_path).map_err(|e| StreamError::State(format!("cannot write checkpoint: {e}")))
}

/// The error a delivery report made fatal, with what to do about it.
fn fatal(cx: &Ctx<'_>) -> Option<StreamError> {
    let st = cx.control.deliveries();
    st.fatal.as_ref().map(|(code, msg)| StreamError::from_kafka(&cx.spec.user, &cx.spec.topic, *code, msg.clone()))
}

fn ensure_pipeline(cx: &mut Ctx<'_>, schema: &SchemaRef) -> Result<(), String> {
    if cx.pipeline.as_ref().map(|p| &p.source_schema == schema).unwrap_or(false) {
        return Ok(());
    }
    let projection = Projection::new(&cx.spec.select, &cx.spec.drop, schema)?;
    let out = projection.output_schema(schema).map_err(|e| e.to_string())?;
    let encoder = AvroEncoder::new(&out)?;
    if let Some(path) = &cx.spec.schema_path {
        if let Some(d) = path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        std::fs::write(path, pretty_schema(&encoder.schema_json))
            .map_err(|e| format!("cannot write schema file {}: {e}", path.display()))?;
    }
    cx.pipeline = Some(Pipeline { source_schema: schema.clone(), projection, encoder });
    Ok(())
}

fn process_file(cx: &mut Ctx<'_>, path: &Path) -> Result<Flow, StreamError> {
    let name = rel(&cx.spec.source_root, path);
    let start_row = cx.ckpt.files.get(&name).map(|p| p.rows_done).unwrap_or(0);
    let reader = match cx.follower.open(path, cx.spec.format, cx.spec.batch_size) {
        Ok(r) => r,
        Err(reason) => {
            quarantine(cx, &name, None, &reason);
            cx.ckpt.files.insert(name, FileProgress { rows_done: 0, done: true, quarantined: Some(reason) });
            save(cx)?;
            return Ok(Flow::Go);
        }
    };
    cx.file_no += 1;
    let f = cx.file_no;
    cx.open.insert(f, OpenFile { name: name.clone(), handed: start_row, reading: true, quarantined: None });
    let mut row_base = 0u64;
    for batch in reader {
        if cx.control.stopping() {
            // Not done: the next run goes on from the recorded position.
            return Ok(Flow::Stopped);
        }
        let batch = match batch {
            Ok(b) => b,
            Err(reason) => {
                // A corrupt part: what was read so far stands, the rest is quarantined.
                quarantine(cx, &name, Some(row_base), &format!("{reason} (rows from {row_base} on are skipped)"));
                cx.open.get_mut(&f).expect("open file").quarantined = Some(reason);
                break;
            }
        };
        let n = batch.num_rows() as u64;
        if row_base + n <= start_row {
            row_base += n;
            continue;
        }
        let skip = start_row.saturating_sub(row_base);
        let batch = if skip > 0 { batch.slice(skip as usize, (n - skip) as usize) } else { batch };
        let first = row_base + skip;
        if let Err(reason) = ensure_pipeline(cx, &batch.schema()) {
            quarantine(cx, &name, None, &format!("does not fit stream {:?}: {reason}", cx.spec.name));
            cx.open.get_mut(&f).expect("open file").quarantined = Some(reason);
            break;
        }
        if send_batch(cx, f, &name, &batch, first)? == Flow::Stopped {
            // `handed` stays at the first row not sent.
            return Ok(Flow::Stopped);
        }
        cx.open.get_mut(&f).expect("open file").handed = first + batch.num_rows() as u64;
        row_base += n;
        settle(cx, false)?;
        if let Some(e) = fatal(cx) {
            return Err(e);
        }
    }
    cx.open.get_mut(&f).expect("open file").reading = false;
    settle(cx, false)?;
    Ok(Flow::Go)
}

fn send_batch(cx: &mut Ctx<'_>, f: u64, file: &str, batch: &RecordBatch, first: u64) -> Result<Flow, StreamError> {
    let n = batch.num_rows();
    cx.stats.read.fetch_add(n as u64, Ordering::Relaxed);
    let (mask, errors) = cx.filters.evaluate(batch);
    for (row, e) in &errors {
        cx.stats.errors.fetch_add(1, Ordering::Relaxed);
        if cx.filter_errors_logged < 5 {
            cx.filter_errors_logged += 1;
            tracing::warn!(stream = %cx.spec.name, file, row = first + *row as u64, "{e} (alert not published; guard optional fields with has())");
        }
    }
    let kept_rows: Vec<u64> =
        mask.iter().enumerate().filter(|(_, k)| k.unwrap_or(false)).map(|(i, _)| first + i as u64).collect();
    cx.stats.filtered.fetch_add((n - kept_rows.len()) as u64, Ordering::Relaxed);
    if kept_rows.is_empty() {
        return Ok(Flow::Go);
    }
    let key = cx.pipeline.as_ref().expect("pipeline built before sending").encoder.schema_json.clone();
    // Copy, project and encode a few rows at a time: the batch itself is
    // shared with the other streams on this source, and a stream's own
    // copies stay small however large the batch.
    let mut next_kept = 0;
    for start in (0..n).step_by(ENCODE_CHUNK) {
        let len = ENCODE_CHUNK.min(n - start);
        let part_mask = mask.slice(start, len);
        let count = part_mask.true_count();
        if count == 0 {
            continue;
        }
        let part = batch.slice(start, len);
        let kept = if count == len {
            part
        } else {
            arrow_select::filter::filter_record_batch(&part, &part_mask)
                .map_err(|e| StreamError::Setup(e.to_string()))?
        };
        let pipeline = cx.pipeline.as_mut().expect("pipeline built before sending");
        let projected =
            pipeline.projection.apply(&kept).map_err(|e| StreamError::Setup(format!("projection failed: {e}")))?;
        let rows = pipeline.encoder.encode(&projected).map_err(StreamError::Setup)?;
        if send_rows(cx, f, file, &key, &rows, &kept_rows[next_kept..next_kept + count])? == Flow::Stopped {
            return Ok(Flow::Stopped);
        }
        next_kept += count;
    }
    Ok(Flow::Go)
}

/// Rows encoded at once by a stream.
const ENCODE_CHUNK: usize = 32;

fn send_rows(
    cx: &mut Ctx<'_>,
    f: u64,
    file: &str,
    key: &str,
    rows: &EncodedRows,
    kept_rows: &[u64],
) -> Result<Flow, StreamError> {
    for (i, datum) in rows.iter().enumerate() {
        let row = kept_rows[i];
        // Every earlier row of the file is sent, filtered out or quarantined.
        cx.open.get_mut(&f).expect("open file").handed = row;
        // Checkpoint before more than max_in_flight rows could be re-sent after a crash.
        while cx.unsaved.len() >= cx.spec.max_in_flight {
            settle(cx, true)?;
            if cx.unsaved.len() < cx.spec.max_in_flight {
                break;
            }
            if let Some(e) = fatal(cx) {
                return Err(e);
            }
            if cx.control.stopping() {
                return Ok(Flow::Stopped);
            }
            cx.control.wait_report(Duration::from_millis(100));
        }
        cx.unsaved.push_back((f, row));
        cx.control.deliveries().pending.insert((f, row));
        match cx.sink.send(key.as_bytes(), &datum, f, row) {
            Ok(()) => {
                cx.stats.passed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                cx.control.deliveries().pending.remove(&(f, row));
                cx.unsaved.pop_back();
                match e {
                    SendError::Stopped => return Ok(Flow::Stopped),
                    SendError::TooLarge(msg) => quarantine(
                        cx,
                        file,
                        Some(row),
                        &format!("alert of {} bytes is larger than the producer accepts: {msg}", datum.len()),
                    ),
                    SendError::Kafka(code, msg) => {
                        return Err(StreamError::from_kafka(&cx.spec.user, &cx.spec.topic, code, msg))
                    }
                }
            }
        }
    }
    Ok(Flow::Go)
}

/// Wait for every pending delivery report, then record them. Flushing sends
/// the last batches now instead of after `linger.ms`. A stop whose deadline
/// passes ends the wait: what is still pending stays unconfirmed.
fn drain(cx: &mut Ctx<'_>) -> Result<(), StreamError> {
    loop {
        if let Some(e) = fatal(cx) {
            return Err(e);
        }
        if cx.control.deliveries().pending.is_empty() || cx.control.past_deadline() {
            break;
        }
        // flush returns once librdkafka's queue is empty (or after the step,
        // while the broker is slow or away); the last reports may still be
        // on their way to the callback.
        if cx.sink.flush(Duration::from_millis(100)) {
            cx.control.wait_report(Duration::from_millis(10));
        }
    }
    settle(cx, true)
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
