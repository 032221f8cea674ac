//! Read-ahead of small source files.
//!
//! A file of a few alerts costs a stream more to open (read, parse a footer
//! of ~180 columns, build and drop a column reader per leaf) than to send.
//! Done on the stream's own thread, that cost is serial with encoding and
//! sending. Here background threads open and decode the next few small
//! files of a backlog while the streams send the current one, so the two
//! overlap on two cores. Streams hint what they will open next
//! ([`ahead`]); [`take`] hands over a decoded file, waiting for it if it is
//! being decoded. Only files up to [`PREFETCH_MAX`] bytes are read ahead,
//! at most [`AHEAD`] of them: memory stays small, and large files amortize
//! their opening anyway.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use super::source::{self, How, SourceError};
use super::store::{Input, Store};

/// Files read ahead are at most this large on disk.
pub const PREFETCH_MAX: u64 = 1 << 20;
/// Files decoded ahead of the streams, at most.
pub const AHEAD: usize = 8;

// A file as it was when hinted: a file replaced since is read again.
use super::shared::Key;

/// What opening the file gave: its schema (as read, and whole), the bytes
/// fetched and its batches (a corrupt part as the last item, as when read
/// directly), or why it could not be opened.
pub type Decoded = Result<(SchemaRef, SchemaRef, u64, Vec<Result<RecordBatch, SourceError>>), SourceError>;

/// Longest a stream waits for a file being read ahead before it opens the
/// file itself: a stuck or slow read-ahead never holds a stream (or its
/// stop) for longer.
pub const TAKE_WAIT: Duration = Duration::from_secs(2);

use super::lock;

enum Entry {
    Decoding,
    Ready(Decoded),
}

#[derive(Default)]
struct Cache {
    entries: HashMap<Key, Entry>,
    /// Insertion order, for eviction of files hinted but never taken.
    order: VecDeque<Key>,
}

struct Prefetcher {
    cache: Mutex<Cache>,
    done: Condvar,
    tx: Mutex<Sender<(Arc<Store>, Key)>>,
}

/// Decoding threads: two, or more on a larger machine. One was the
/// bottleneck of a backlog of small files (a core stayed idle while it
/// decoded); a few more never hurt, the streams take files in order.
fn workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get() / 2).unwrap_or(1).clamp(2, 4)
}

fn prefetcher() -> &'static Prefetcher {
    static P: OnceLock<Prefetcher> = OnceLock::new();
    P.get_or_init(|| {
        let (tx, rx) = channel::<(Arc<Store>, Key)>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("prefetch-{i}"))
                .spawn(move || loop {
                    // The lock is held only to take the next job.
                    let Ok((store, key)) = lock(&rx).recv() else { return };
                    let p = prefetcher();
                    if !lock(&p.cache).entries.contains_key(&key) {
                        continue; // evicted before its turn
                    }
                    // A panic is the file's, not the worker's: it becomes
                    // the file's error and the worker goes on.
                    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(&store, &key)))
                        .unwrap_or_else(|panic| Err(source::panicked(panic)));
                    let mut c = lock(&p.cache);
                    // Taken meanwhile (by a stream that could not wait) or
                    // evicted: the result is not wanted any more.
                    if let Some(e @ Entry::Decoding) = c.entries.get_mut(&key) {
                        *e = Entry::Ready(decoded);
                    }
                    drop(c);
                    p.done.notify_all();
                })
                .expect("spawn a prefetch thread");
        }
        Prefetcher { cache: Mutex::new(Cache::default()), done: Condvar::new(), tx: Mutex::new(tx) }
    })
}

fn decode(store: &Arc<Store>, key: &Key) -> Decoded {
    let reader = source::open_file(store, &key.input, &key.how)?;
    let (schema, full, bytes) = (reader.schema.clone(), reader.full_schema.clone(), reader.bytes.clone());
    let batches = reader.collect();
    Ok((schema, full, bytes.load(Ordering::Relaxed), batches))
}

/// Files a stream will open next, in order: the small ones not yet read
/// ahead are queued for decoding.
pub fn ahead(store: &Arc<Store>, inputs: &[Input], how: &How) {
    let p = prefetcher();
    let mut c = lock(&p.cache);
    for input in inputs.iter().take(AHEAD) {
        let key = Key::of(store, input, how);
        if input.len > PREFETCH_MAX || c.entries.contains_key(&key) {
            continue;
        }
        while c.order.len() >= AHEAD {
            // The oldest hint no stream took (a stream stopped, a file
            // changed): dropped. One being decoded is dropped on arrival.
            let Some(old) = c.order.pop_front() else { break };
            c.entries.remove(&old);
        }
        c.entries.insert(key.clone(), Entry::Decoding);
        c.order.push_back(key.clone());
        if lock(&p.tx).send((store.clone(), key)).is_err() {
            return;
        }
    }
}

/// The decoded file if it was read ahead (waiting up to [`TAKE_WAIT`]
/// while it is being decoded); `None`: open it directly.
pub fn take(store: &Store, input: &Input, how: &How, stop: &dyn Fn() -> bool) -> Option<Decoded> {
    let p = prefetcher();
    let mut c = lock(&p.cache);
    if c.entries.is_empty() {
        return None;
    }
    let key = Key::of(store, input, how);
    let deadline = Instant::now() + TAKE_WAIT;
    loop {
        match c.entries.get(&key) {
            None => return None,
            Some(Entry::Decoding) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || stop() {
                    // Not waited for any longer: the stream reads it itself,
                    // and the late result is dropped on arrival.
                    c.entries.remove(&key);
                    c.order.retain(|k| k != &key);
                    return None;
                }
                c = p
                    .done
                    .wait_timeout(c, left.min(super::shared::STOP_CHECK))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            Some(Entry::Ready(_)) => {
                c.order.retain(|k| k != &key);
                match c.entries.remove(&key) {
                    Some(Entry::Ready(d)) => return Some(d),
                    _ => unreachable!("checked above"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceFormat;
    use crate::stream::store::local_file;
    use arrow_array::Int64Array;
    use arrow_schema::{DataType, Field, Schema};
    use std::path::Path;
    use std::sync::Arc;

    fn write(path: &Path, values: &[i64]) {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn values(d: Decoded) -> Vec<i64> {
        let (_, _, _, batches) = d.unwrap();
        batches
            .into_iter()
            .flat_map(|b| {
                let b = b.unwrap();
                b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()
            })
            .collect()
    }

    #[test]
    fn a_hinted_file_is_handed_over_once_and_a_changed_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        write(&a, &[1, 2, 3]);
        write(&b, &[4, 5]);
        let how = How::all(SourceFormat::Parquet, 100);
        let (store, ia) = local_file(&a).unwrap();
        let (_, ib) = local_file(&b).unwrap();
        ahead(&store, &[ia.clone(), ib.clone()], &how);
        assert_eq!(values(take(&store, &ia, &how, &|| false).expect("read ahead")), vec![1, 2, 3]);
        // Taken once: a second open reads the file itself.
        assert!(take(&store, &ia, &how, &|| false).is_none());
        // Replaced after the hint: not the file that was read ahead.
        std::thread::sleep(std::time::Duration::from_millis(5));
        write(&b, &[6, 7, 8, 9]);
        let (_, ib2) = local_file(&b).unwrap();
        assert!(take(&store, &ib2, &how, &|| false).is_none());
    }

    #[test]
    fn an_unreadable_file_read_ahead_gives_the_same_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.parquet");
        std::fs::write(&bad, b"not parquet at all").unwrap();
        let how = How::all(SourceFormat::Parquet, 100);
        let (store, input) = local_file(&bad).unwrap();
        ahead(&store, std::slice::from_ref(&input), &how);
        let err = take(&store, &input, &how, &|| false).expect("read ahead").unwrap_err();
        assert_eq!(err, source::open_file(&store, &input, &how).err().unwrap());
    }
}
