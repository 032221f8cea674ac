//! One stream as a thread: list source files, stream each unfinished one
//! through filter -> projection -> Avro -> Kafka, checkpoint from delivery
//! reports, quarantine bad input and go on.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arrow_array::RecordBatch;
use arrow_avro::writer::EncodedRows;
use arrow_schema::SchemaRef;
use rdkafka::types::RDKafkaErrorCode;

use super::checkpoint::{Checkpoint, FileProgress};
use super::encode::{pretty_schema, AvroEncoder};
use super::filter::FilterSet;
use super::project::Projection;
use super::sink::Sink;
use super::{shared, source, Stats, StreamSpec};
use crate::cluster::Connection;

/// What a stream is doing, for status and metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    Idle,
    Stopped,
    Failed(String),
}

/// A stream running on its own thread.
pub struct RunningStream {
    pub spec: StreamSpec,
    pub stats: Arc<Stats>,
    pub state: Arc<Mutex<State>>,
    pub started: Instant,
    pub started_at: SystemTime,
    stop: Arc<AtomicBool>,
    wake: Sender<()>,
    join: Option<JoinHandle<()>>,
}

impl RunningStream {
    pub fn start(spec: StreamSpec, conn: Connection, until_idle: bool) -> RunningStream {
        let stats = Arc::new(Stats::default());
        let state = Arc::new(Mutex::new(State::Starting));
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, wake_rx) = std::sync::mpsc::channel();
        let (s2, st2, stop2, spec2) = (stats.clone(), state.clone(), stop.clone(), spec.clone());
        let join = std::thread::Builder::new()
            .name(format!("stream-{}", spec.name))
            .spawn(move || {
                let outcome = run(&spec2, &conn, &s2, &st2, &stop2, &wake_rx, until_idle);
                let mut st = st2.lock().unwrap();
                *st = match outcome {
                    Ok(()) => State::Stopped,
                    Err(e) => {
                        tracing::error!(stream = %spec2.name, "{e}");
                        State::Failed(e)
                    }
                };
            })
            .expect("spawn stream thread");
        RunningStream {
            spec,
            stats,
            state,
            started: Instant::now(),
            started_at: SystemTime::now(),
            stop,
            wake,
            join: Some(join),
        }
    }

    /// New files may be there: look now rather than at the next rescan.
    pub fn wake(&self) {
        let _ = self.wake.send(());
    }

    /// Ask the stream to finish what is in flight, checkpoint and end.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    pub fn is_finished(&self) -> bool {
        self.join.as_ref().map(|j| j.is_finished()).unwrap_or(true)
    }

    /// Stop and wait; returns the final state.
    pub fn stop(mut self) -> State {
        self.request_stop();
        self.wait()
    }

    pub fn wait(&mut self) -> State {
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
        self.state.lock().unwrap().clone()
    }

    pub fn state(&self) -> State {
        self.state.lock().unwrap().clone()
    }
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
    stop: &'a AtomicBool,
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

fn run(
    spec: &StreamSpec,
    conn: &Connection,
    stats: &Arc<Stats>,
    state: &Mutex<State>,
    stop: &AtomicBool,
    wake: &Receiver<()>,
    until_idle: bool,
) -> Result<(), String> {
    let filters = FilterSet::new(spec.compile_filters().map_err(|e| format!("stream {:?}: {e:#}", spec.name))?);
    let sink = Sink::new(conn, &spec.topic, &spec.producer, stats.clone())
        .map_err(|e| format!("stream {:?}: {e}", spec.name))?;
    sink.check_topic(&spec.user, Duration::from_secs(20)).map_err(|e| format!("stream {:?}: {e}", spec.name))?;
    let ckpt = Checkpoint::load(&spec.checkpoint_path, &spec.name)?;
    let mut cx = Ctx {
        spec,
        stats,
        stop,
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
        if stop.load(Ordering::SeqCst) {
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
            if until_idle {
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
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if let Err(e) = process_file(&mut cx, f) {
                failed = Some(e);
                break;
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
    // Whatever happened: deliver what is in flight, then record it.
    let _ = cx.sink.flush(Duration::from_secs(30));
    settle(&mut cx, true)?;
    result.map_err(|e| format!("stream {:?}: {e}", spec.name))
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
fn settle(cx: &mut Ctx<'_>, force: bool) -> Result<(), String> {
    if !force && cx.last_save.elapsed() < Duration::from_millis(200) {
        return Ok(());
    }
    let (too_large, progress) = {
        let mut st = cx.sink.state.lock().unwrap();
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
        cx.ckpt.save(&cx.spec.checkpoint_path).map_err(|e| format!("cannot write checkpoint: {e}"))?;
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

fn fatal(cx: &Ctx<'_>) -> Option<String> {
    let st = cx.sink.state.lock().unwrap();
    st.fatal.as_ref().map(|e| explain(cx.spec, e))
}

/// Turn broker errors into what the operator should do.
fn explain(spec: &StreamSpec, e: &str) -> String {
    if e.contains("TopicAuthorization") || e.contains("Topic authorization") {
        format!(
            "user {:?} may not write topic {:?} ({e}): add a producer ACL in fink.toml and run `fink apply`",
            spec.user, spec.topic
        )
    } else if e.contains("UnknownTopic") || e.contains("Unknown topic") {
        format!("topic {:?} does not exist ({e}): declare it in fink.toml and run `fink apply`", spec.topic)
    } else {
        format!("delivery to topic {:?} failed: {e}", spec.topic)
    }
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

fn process_file(cx: &mut Ctx<'_>, path: &Path) -> Result<(), String> {
    let name = rel(&cx.spec.source_root, path);
    let start_row = cx.ckpt.files.get(&name).map(|p| p.rows_done).unwrap_or(0);
    let reader = match cx.follower.open(path, cx.spec.format, cx.spec.batch_size) {
        Ok(r) => r,
        Err(reason) => {
            quarantine(cx, &name, None, &reason);
            cx.ckpt.files.insert(name, FileProgress { rows_done: 0, done: true, quarantined: Some(reason) });
            cx.ckpt.save(&cx.spec.checkpoint_path).map_err(|e| format!("cannot write checkpoint: {e}"))?;
            return Ok(());
        }
    };
    cx.file_no += 1;
    let f = cx.file_no;
    cx.open.insert(f, OpenFile { name: name.clone(), handed: start_row, reading: true, quarantined: None });
    let mut row_base = 0u64;
    for batch in reader {
        if cx.stop.load(Ordering::SeqCst) {
            // Not done: the next run goes on from the recorded position.
            return Ok(());
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
        send_batch(cx, f, &name, &batch, first)?;
        cx.open.get_mut(&f).expect("open file").handed = first + batch.num_rows() as u64;
        row_base += n;
        settle(cx, false)?;
        if let Some(e) = fatal(cx) {
            return Err(e);
        }
    }
    cx.open.get_mut(&f).expect("open file").reading = false;
    settle(cx, false)
}

fn send_batch(cx: &mut Ctx<'_>, f: u64, file: &str, batch: &RecordBatch, first: u64) -> Result<(), String> {
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
        return Ok(());
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
            arrow_select::filter::filter_record_batch(&part, &part_mask).map_err(|e| e.to_string())?
        };
        let pipeline = cx.pipeline.as_mut().expect("pipeline built before sending");
        let projected = pipeline.projection.apply(&kept).map_err(|e| format!("projection failed: {e}"))?;
        let rows = pipeline.encoder.encode(&projected)?;
        send_rows(cx, f, file, &key, &rows, &kept_rows[next_kept..next_kept + count])?;
        next_kept += count;
    }
    Ok(())
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
) -> Result<(), String> {
    for (i, datum) in rows.iter().enumerate() {
        let row = kept_rows[i];
        // Every earlier row of the file is sent, filtered out or quarantined.
        cx.open.get_mut(&f).expect("open file").handed = row;
        // Checkpoint before more than max_in_flight rows could be re-sent after a crash.
        while cx.unsaved.len() >= cx.spec.max_in_flight {
            settle(cx, true)?;
            if cx.unsaved.len() >= cx.spec.max_in_flight {
                if let Some(e) = fatal(cx) {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        cx.unsaved.push_back((f, row));
        cx.sink.state.lock().unwrap().pending.insert((f, row));
        match cx.sink.send(key.as_bytes(), &datum, f, row) {
            Ok(()) => {
                cx.stats.passed.fetch_add(1, Ordering::Relaxed);
            }
            Err((RDKafkaErrorCode::MessageSizeTooLarge, msg)) => {
                cx.sink.state.lock().unwrap().pending.remove(&(f, row));
                quarantine(
                    cx,
                    file,
                    Some(row),
                    &format!("alert of {} bytes is larger than the producer accepts: {msg}", datum.len()),
                );
            }
            Err((_, msg)) => {
                cx.sink.state.lock().unwrap().pending.remove(&(f, row));
                return Err(explain(cx.spec, &msg));
            }
        }
    }
    Ok(())
}

/// Wait for every pending delivery report, then record them. Flushing sends
/// the last batches now instead of after `linger.ms`.
fn drain(cx: &mut Ctx<'_>) -> Result<(), String> {
    loop {
        if let Some(e) = fatal(cx) {
            return Err(e);
        }
        if cx.sink.state.lock().unwrap().pending.is_empty() {
            break;
        }
        // Times out while the broker is slow or away; keep waiting (and
        // checking for fatal errors), as with any other delivery. An empty
        // queue with reports not yet handed over: give the poll thread a moment.
        if cx.sink.flush(Duration::from_millis(200)).is_ok() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    settle(cx, true)
}
