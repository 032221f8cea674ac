//! Streams reading the same source decode each file once.
//!
//! Ten streams on one science database would otherwise each decompress and
//! decode every ~70 KB alert. Instead, the first stream to need a batch of a
//! file decodes it and keeps it in a small window that the other streams
//! reading that file take from (the batches are shared, `RecordBatch` clones
//! are reference counts). Memory stays flat: at most [`WINDOW`] batches per
//! open file. The decoder waits (up to [`LAGGARD_WAIT`]) for readers that have
//! not yet taken the oldest batch, and keeps a file's first batch for the
//! streams on the same source that have yet to open it (still starting, or
//! on an earlier file), so streams move together. A reader that falls
//! further behind (a stalled topic, a stream started later) reads the file
//! on its own, which is slower but never wrong: batch boundaries are the
//! same for every reader of a file; and a stream that did not come in time
//! is not waited for again until it joins a file in step.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use super::source::{self, FileReader, How, SourceError};
use super::store::{Input, Store};

/// Decoded batches kept per open file.
pub const WINDOW: usize = 2;
/// How long the decoder waits for a slow reader before leaving it behind.
pub const LAGGARD_WAIT: Duration = Duration::from_secs(2);

type Item = Result<RecordBatch, SourceError>;

use super::lock;

/// A file as listed, read a given way: one replaced under the same name
/// (another size or time) is another file.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(super) struct Key {
    pub store: String,
    pub input: Input,
    pub how: How,
}

impl Key {
    pub fn of(store: &Store, input: &Input, how: &How) -> Key {
        Key { store: store.id(), input: input.clone(), how: how.clone() }
    }
}

struct Window {
    /// Index of `items[0]`.
    first: usize,
    items: VecDeque<Item>,
    /// The decoder is exhausted: there is no item at `first + items.len()`.
    finished: bool,
    /// A reader is decoding the next batch (outside the window's lock).
    decoding: bool,
    /// Next index each registered reader will ask for.
    cursors: HashMap<u64, usize>,
    /// Streams expected to join and not joined yet: the streams on this
    /// source at this file or behind it, which will open it next. Until
    /// they joined, or LAGGARD_WAIT passed, the first batch is kept for
    /// them; those that did not come in time are marked as having missed
    /// it, and the next files do not wait for them.
    awaited: Vec<(u64, Arc<AtomicBool>)>,
}

impl Window {
    fn end(&self) -> usize {
        self.first + self.items.len()
    }
    /// No reader still in step waits for the oldest item (readers already
    /// left behind do not count: they will read on their own).
    fn front_taken(&self) -> bool {
        !self.cursors.values().any(|c| *c == self.first) && (self.first > 0 || self.awaited.is_empty())
    }

    /// Drop the oldest batch. Streams still awaited for the first one
    /// missed it: they are too far behind to be waited for again.
    fn pop_front(&mut self) {
        if self.first == 0 {
            for (_, missed) in self.awaited.drain(..) {
                missed.store(true, Ordering::SeqCst);
            }
        }
        self.items.pop_front();
        self.first += 1;
    }
}

struct SharedFile {
    store: Arc<Store>,
    key: Key,
    /// The file's whole schema and the bytes fetched for it so far.
    full_schema: SchemaRef,
    bytes: Arc<AtomicU64>,
    /// Rows in every batch but the last: a shorter one ends the file.
    batch_rows: usize,
    decoder: Mutex<Option<FileReader>>,
    window: Mutex<Window>,
    moved: Condvar,
    next_reader: AtomicU64,
}

fn registry() -> &'static Mutex<HashMap<Key, Weak<SharedFile>>> {
    static R: OnceLock<Mutex<HashMap<Key, Weak<SharedFile>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// The file each running stream reads (or last read), by stream.
type Position = Key;

struct Slot {
    /// The source it reads (store and how), once known: a stream still
    /// starting (no file yet) will read this source's first files.
    source: Option<(String, How)>,
    pos: Option<Position>,
    /// Reading its current file on its own (it fell out of the window).
    lagging: Arc<AtomicBool>,
    /// It did not join a file it was awaited on within LAGGARD_WAIT (far
    /// behind, or stalled): only the streams on its own file or the one
    /// before wait for it, until it joins a file in step again.
    missed: Arc<AtomicBool>,
}

fn positions() -> &'static Mutex<HashMap<u64, Slot>> {
    static P: OnceLock<Mutex<HashMap<u64, Slot>>> = OnceLock::new();
    P.get_or_init(Default::default)
}

/// One stream's reading position, which tells the streams in step with it
/// to keep a file's first batches until it joins. Dropped with the stream.
pub struct Follower {
    id: u64,
    lagging: Arc<AtomicBool>,
    missed: Arc<AtomicBool>,
    stop: Stop,
}

/// Whether the stream reading is stopping: every wait of a reader (for a
/// batch another stream decodes, for a slow stream, for a read-ahead)
/// checks it at least every [`STOP_CHECK`].
pub type Stop = Arc<dyn Fn() -> bool + Send + Sync>;

/// How often a waiting reader looks at its stream's stop request.
pub const STOP_CHECK: Duration = Duration::from_millis(100);

/// The error a reader returns when its stream stops while it waits (the
/// stream, which checks its stop first, never reports it).
pub(crate) fn stopping() -> SourceError {
    SourceError::Transient(STOPPING.into())
}

/// What a wait interrupted by its stream's stop says.
pub const STOPPING: &str = "the stream is stopping";

impl Default for Follower {
    fn default() -> Self {
        Self::new()
    }
}

impl Follower {
    pub fn new() -> Follower {
        Self::with_stop(Arc::new(|| false))
    }

    /// A follower whose waits end when `stop` says the stream stops.
    pub fn with_stop(stop: Stop) -> Follower {
        Self::register(None, stop)
    }

    /// The follower of a stream that will read `store` the `how` way: the
    /// streams already on it wait (up to LAGGARD_WAIT) for this one while
    /// it starts (claim, transactions, committed progress), instead of
    /// leaving it to decode the first files on its own.
    pub fn on(store: &Store, how: &How, stop: Stop) -> Follower {
        Self::register(Some((store.id(), how.clone())), stop)
    }

    fn register(source: Option<(String, How)>, stop: Stop) -> Follower {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let lagging = Arc::new(AtomicBool::new(false));
        let missed = Arc::new(AtomicBool::new(false));
        lock(positions()).insert(id, Slot { source, pos: None, lagging: lagging.clone(), missed: missed.clone() });
        Follower { id, lagging, missed, stop }
    }

    /// Open `path` for this stream, sharing decoded batches with the other
    /// streams reading it now. Errors are quarantine reasons, as from
    /// [`source::open`].
    pub fn open(&self, store: &Arc<Store>, input: &Input, how: &How) -> Result<SharedReader, SourceError> {
        // The streams that will open `input` next, should this stream be
        // the first: those on this source at a file sorted at or before it
        // (each stream reads its files in path order), unless one missed a
        // file lately, and then only if it is on this file or the one this
        // stream comes from. Waiting for the streams one file behind only
        // split the ZTF catalogue's 13 streams into groups a file apart,
        // each decoding every file.
        let awaited = {
            let mut slots = lock(positions());
            let here = Key::of(store, input, how);
            self.lagging.store(false, Ordering::SeqCst);
            let slot = slots.get_mut(&self.id).expect("registered follower");
            let prev = slot.pos.replace(here.clone());
            slots
                .iter()
                .filter(|(id, _)| **id != self.id)
                .filter(|(_, s)| {
                    let behind = match &s.pos {
                        Some(p) => p.store == here.store && p.how == here.how && p.input.rel <= here.input.rel,
                        None => s.source.as_ref().is_some_and(|(st, h)| *st == here.store && *h == here.how),
                    };
                    let close = s.pos.is_some() && (s.pos.as_ref() == Some(&here) || prev == s.pos);
                    (close && !s.lagging.load(Ordering::SeqCst)) || (behind && !s.missed.load(Ordering::SeqCst))
                })
                .map(|(id, s)| (*id, s.missed.clone()))
                .collect::<Vec<_>>()
        };
        tracing::trace!(file = %input.rel, awaited = awaited.len(), "opens");
        let me = (self.id, self.missed.clone());
        open_expecting(store, input, how, awaited, Some(me), Some(self.lagging.clone()), self.stop.clone())
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        lock(positions()).remove(&self.id);
    }
}

/// Open `path` for one reader with no other stream to wait for (streams
/// open through their [`Follower`]).
#[cfg(test)]
pub fn open(
    path: &std::path::Path,
    format: crate::config::SourceFormat,
    batch_size: usize,
) -> Result<SharedReader, SourceError> {
    let (store, input) = super::store::local_file(path).map_err(|e| super::store::io_error("cannot open", &e))?;
    open_expecting(&store, &input, &How::all(format, batch_size), Vec::new(), None, None, Arc::new(|| false))
}

fn open_expecting(
    store: &Arc<Store>,
    input: &Input,
    how: &How,
    awaited: Vec<(u64, Arc<AtomicBool>)>,
    me: Option<(u64, Arc<AtomicBool>)>,
    lagging: Option<Arc<AtomicBool>>,
    stop: Stop,
) -> Result<SharedReader, SourceError> {
    let key = Key::of(store, input, how);
    let existing = {
        let mut reg = lock(registry());
        reg.retain(|_, w| w.strong_count() > 0);
        reg.get(&key).and_then(Weak::upgrade)
    };
    let mut created = false;
    let file = match existing {
        Some(f) => f,
        None => {
            // Opened with no lock held: a slow or stuck open (a store away,
            // a read-ahead being waited for) holds up no other stream.
            let reader = source::open(store, input, how, &*stop)?;
            let f = Arc::new(SharedFile {
                store: store.clone(),
                key: key.clone(),
                full_schema: reader.full_schema.clone(),
                bytes: reader.bytes.clone(),
                batch_rows: reader.batch_rows,
                decoder: Mutex::new(Some(reader)),
                window: Mutex::new(Window {
                    first: 0,
                    items: VecDeque::new(),
                    finished: false,
                    decoding: false,
                    cursors: HashMap::new(),
                    awaited,
                }),
                moved: Condvar::new(),
                next_reader: AtomicU64::new(0),
            });
            let mut reg = lock(registry());
            // Another stream opened it meanwhile: share theirs.
            match reg.get(&key).and_then(Weak::upgrade) {
                Some(theirs) => theirs,
                None => {
                    reg.insert(key.clone(), Arc::downgrade(&f));
                    created = true;
                    tracing::trace!(file = %input.rel, "decodes it for the streams in step");
                    f
                }
            }
        }
    };
    let id = file.next_reader.fetch_add(1, Ordering::Relaxed);
    {
        let mut w = lock(&file.window);
        // A reader joining after batches were dropped reads on its own.
        if w.first > 0 {
            let first = w.first;
            drop(w);
            tracing::debug!(file = %input.rel, batches_gone = first, "joined after the other streams dropped batches: reads it on its own");
            if let Some(l) = &lagging {
                l.store(true, Ordering::SeqCst);
            }
            return Ok(SharedReader {
                id,
                shared: None,
                private: Some(Private::open(store, &key, &*stop)?),
                left_behind: false,
                lagging,
                aside: None,
                stop,
            });
        }
        w.cursors.insert(id, 0);
        if let Some((me, missed)) = &me {
            w.awaited.retain(|(a, _)| a != me);
            // Joined a file another stream opened, in time: in step again.
            if !created {
                missed.store(false, Ordering::SeqCst);
            }
        }
        // The decoder may be keeping the first batch for this reader.
        file.moved.notify_all();
    }
    Ok(SharedReader { id, shared: Some(file), private: None, left_behind: false, lagging, aside: None, stop })
}

struct Private {
    reader: FileReader,
    /// Batches to skip: the shared reader had already handed them out.
    skip: usize,
}

impl Private {
    fn open(store: &Arc<Store>, key: &Key, stop: &dyn Fn() -> bool) -> Result<Private, SourceError> {
        Ok(Private { reader: source::open(store, &key.input, &key.how, stop)?, skip: 0 })
    }

    /// From batch `idx` on, every batch before it full (`batch_rows`
    /// rows): a Parquet file is opened at that row, its earlier pages
    /// skipped unread; others decode the earlier batches and drop them.
    fn open_at(
        store: &Arc<Store>,
        key: &Key,
        stop: &dyn Fn() -> bool,
        idx: usize,
        batch_rows: usize,
    ) -> Result<Private, SourceError> {
        if idx > 0 {
            let first = (idx * batch_rows) as u64;
            if let Some(opened) = source::open_from(store, &key.input, &key.how, first) {
                return Ok(Private { reader: opened?, skip: 0 });
            }
        }
        let mut p = Private::open(store, key, stop)?;
        p.skip = idx;
        Ok(p)
    }
}

/// One stream's view of a file: an iterator of batches.
pub struct SharedReader {
    id: u64,
    shared: Option<Arc<SharedFile>>,
    private: Option<Private>,
    /// It fell out of the shared window and went on privately.
    left_behind: bool,
    /// The stream's lagging flag, raised when it falls out.
    lagging: Option<Arc<AtomicBool>>,
    /// Stepped aside at this batch: nobody waits for it until it asks for
    /// a batch again.
    aside: Option<usize>,
    stop: Stop,
}

impl SharedReader {
    /// Whether this reader takes batches from the shared window.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The file's whole schema (select and drop paths are checked on it).
    pub fn full_schema(&self) -> Option<SchemaRef> {
        match (&self.shared, &self.private) {
            (Some(f), _) => Some(f.full_schema.clone()),
            (None, Some(p)) => Some(p.reader.full_schema.clone()),
            _ => None,
        }
    }

    /// Bytes fetched from the store for this file so far (by whichever
    /// reader decoded it; a private re-read counts too).
    pub fn bytes_read(&self) -> u64 {
        let shared = self.shared.as_ref().map(|f| f.bytes.load(Ordering::Relaxed)).unwrap_or(0);
        shared + self.private.as_ref().map(|p| p.reader.bytes.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Whether it decoded (some of) the file on its own: it joined after
    /// batches were dropped, or fell out of the shared window.
    pub fn read_alone(&self) -> bool {
        self.private.is_some()
    }

    /// Whether it had to leave the shared window and decode on its own.
    pub fn was_left_behind(&self) -> bool {
        self.left_behind
    }

    /// Let the other streams go on without this reader while it does
    /// something long first (a Python filter deciding the file): it takes
    /// its next batch from the window if it is still there, else reads on
    /// its own from there.
    pub fn step_aside(&mut self) {
        if let Some(f) = &self.shared {
            let mut w = lock(&f.window);
            if let Some(c) = w.cursors.remove(&self.id) {
                self.aside = Some(c);
                f.moved.notify_all();
            }
        }
    }

    fn leave(&mut self) {
        if let Some(f) = self.shared.take() {
            let mut w = lock(&f.window);
            w.cursors.remove(&self.id);
            f.moved.notify_all();
        }
    }

    fn next_shared(&mut self, f: &SharedFile) -> Option<Result<Item, usize>> {
        let mut w = lock(&f.window);
        if let Some(idx) = self.aside.take() {
            if idx < w.first {
                return Some(Err(idx));
            }
            w.cursors.insert(self.id, idx);
        }
        let idx = *w.cursors.get(&self.id)?;
        let deadline = Instant::now() + LAGGARD_WAIT;
        loop {
            if idx < w.first {
                // Left behind: the caller switches to a private reader.
                return Some(Err(idx));
            }
            if idx < w.end() {
                let item = w.items[idx - w.first].clone();
                w.cursors.insert(self.id, idx + 1);
                f.moved.notify_all();
                // A short batch is a file's last: nothing to read ahead (a
                // thread per small file only made the reader wait for it to
                // find the end; 5,000 files of 4 alerts, 1.3x slower).
                let full = item.as_ref().is_ok_and(|b| b.num_rows() >= f.batch_rows);
                // A stopping stream starts no new work.
                if idx + 1 == w.end() && !w.finished && !w.decoding && full && !(self.stop)() && make_room(&mut w) {
                    // Decode the batch this reader needs next while it
                    // filters, encodes and sends this one: on two cores the
                    // two overlap, where in turn a Rubin batch (~45 MB)
                    // kept the producer waiting for the decoder.
                    w.decoding = true;
                    drop(w);
                    read_ahead(self.shared.clone().expect("a shared reader"));
                }
                return Some(Ok(item));
            }
            if w.finished {
                return None;
            }
            if (self.stop)() {
                return Some(Ok(Err(stopping())));
            }
            if w.decoding {
                // Another reader decodes the batch this one needs.
                w = f.moved.wait_timeout(w, STOP_CHECK).unwrap_or_else(PoisonError::into_inner).0;
                continue;
            }
            // Make room, keeping the oldest batch for readers in step that
            // have not taken it yet (or not joined yet), up to the deadline.
            // Nothing is held but the window, which the wait releases.
            if w.items.len() >= WINDOW {
                let now = Instant::now();
                if !w.front_taken() && now < deadline {
                    w = f
                        .moved
                        .wait_timeout(w, (deadline - now).min(STOP_CHECK))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    continue;
                }
                w.pop_front();
                continue;
            }
            w.decoding = true;
            drop(w);
            decode_next(f);
            w = lock(&f.window);
        }
    }
}

/// Drop the oldest batch if the window is full and every reader in step
/// has taken it; whether there is room for one more.
fn make_room(w: &mut Window) -> bool {
    if w.items.len() >= WINDOW && w.front_taken() {
        w.pop_front();
    }
    w.items.len() < WINDOW
}

/// Decode the file's next batch into its window; the caller set
/// `decoding`, which this clears.
fn decode_next(f: &SharedFile) {
    let item = {
        let mut dec = lock(&f.decoder);
        let item = dec.as_mut().and_then(|r| r.next());
        if item.is_none() {
            *dec = None;
        }
        item
    };
    let mut w = lock(&f.window);
    w.decoding = false;
    match item {
        Some(it) => w.items.push_back(it),
        None => w.finished = true,
    }
    f.moved.notify_all();
}

/// [`decode_next`] on a thread of its own. One batch: bounded work, and
/// the file's decoder panicking is already its error (`FileReader`).
fn read_ahead(f: Arc<SharedFile>) {
    let spawned = std::thread::Builder::new().name("read-ahead".into()).spawn({
        let f = f.clone();
        move || decode_next(&f)
    });
    if spawned.is_err() {
        // No thread to spare: the reader that needs the batch decodes it.
        lock(&f.window).decoding = false;
        f.moved.notify_all();
    }
}

impl Iterator for SharedReader {
    type Item = Item;
    fn next(&mut self) -> Option<Item> {
        if let Some(f) = self.shared.clone() {
            match self.next_shared(&f) {
                Some(Ok(item)) => return Some(item),
                None => {
                    self.leave();
                    return None;
                }
                Some(Err(idx)) => {
                    tracing::debug!(file = %f.key.input.rel, at_batch = idx, "left behind by the other streams: reads on its own");
                    self.leave();
                    self.left_behind = true;
                    if let Some(l) = &self.lagging {
                        l.store(true, Ordering::SeqCst);
                    }
                    match Private::open_at(&f.store, &f.key, &*self.stop, idx, f.batch_rows) {
                        Ok(p) => self.private = Some(p),
                        // Read again later from what was delivered; a file
                        // changed since is then reported, never mixed.
                        Err(e) => {
                            return Some(Err(SourceError::Transient(format!(
                                "file changed or vanished while it was read: {e}"
                            ))))
                        }
                    }
                }
            }
        }
        let p = self.private.as_mut()?;
        while p.skip > 0 {
            p.skip -= 1;
            let _ = p.reader.next()?;
        }
        p.reader.next()
    }
}

impl Drop for SharedReader {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceFormat;
    use std::path::Path;

    impl Follower {
        fn open_path(&self, path: &Path, format: SourceFormat, batch_size: usize) -> Result<SharedReader, SourceError> {
            let (store, input) =
                crate::stream::store::local_file(path).map_err(|e| crate::stream::store::io_error("open", &e))?;
            self.open(&store, &input, &How::all(format, batch_size))
        }
    }
    use arrow_array::{ArrayRef, Int64Array};
    use std::sync::Arc;

    fn write_parquet(path: &Path, rows: i64) {
        let col: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows));
        let batch = RecordBatch::try_from_iter([("n", col)]).unwrap();
        let f = std::fs::File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn values(r: SharedReader) -> Vec<i64> {
        values_and_behind(r).0
    }

    fn values_and_behind(mut r: SharedReader) -> (Vec<i64>, bool) {
        (rows_of(&mut r), r.was_left_behind())
    }

    /// Every row `r` has left to give.
    fn rows_of(r: &mut SharedReader) -> Vec<i64> {
        let mut out = Vec::new();
        for b in r.by_ref() {
            let b = b.unwrap();
            out.extend_from_slice(b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values());
        }
        out
    }

    /// Waits until `r`'s second batch is in its window, decoded without
    /// being asked for (fails after 10 s).
    fn second_batch_read_ahead(r: &SharedReader) {
        let f = r.shared.clone().expect("a shared reader");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let w = lock(&f.window);
            if w.end() == 2 && !w.decoding {
                return;
            }
            drop(w);
            assert!(Instant::now() < deadline, "the next batch was never read ahead");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stream b joins the window stream a (reading on thread `ta`) kept for
    /// it: both see all `rows`, neither left behind.
    fn both_read_in_step(b: SharedReader, ta: std::thread::JoinHandle<(Vec<i64>, bool)>, rows: i64) {
        assert!(b.is_shared(), "b joins the window a kept for it");
        let (vb, behind_b) = values_and_behind(b);
        let (va, behind_a) = ta.join().unwrap();
        let expect: Vec<i64> = (0..rows).collect();
        assert_eq!((va, vb), (expect.clone(), expect));
        assert!(!behind_a && !behind_b);
    }

    #[test]
    fn readers_in_step_never_block_each_other_out_of_the_window() {
        // 200 batches: a reader waiting for the window must not hold what
        // the other needs to take its batch (that stalled both for
        // LAGGARD_WAIT and pushed one out of the shared window).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.parquet");
        write_parquet(&p, 2000);
        for _ in 0..3 {
            let a = open(&p, SourceFormat::Parquet, 10).unwrap();
            let b = open(&p, SourceFormat::Parquet, 10).unwrap();
            let ta = std::thread::spawn(move || values_and_behind(a));
            let tb = std::thread::spawn(move || values_and_behind(b));
            let expect: Vec<i64> = (0..2000).collect();
            for (vals, behind) in [ta.join().unwrap(), tb.join().unwrap()] {
                assert_eq!(vals, expect);
                assert!(!behind, "a reader in step was left behind");
            }
        }
    }

    #[test]
    fn a_stream_in_step_that_opens_the_file_late_still_shares_it() {
        let dir = tempfile::tempdir().unwrap();
        let (p1, p2) = (dir.path().join("1.parquet"), dir.path().join("2.parquet"));
        write_parquet(&p1, 30);
        write_parquet(&p2, 300);
        let (fa, fb) = (Follower::new(), Follower::new());
        // Both streams read file 1; stream a moves on to file 2 first.
        drop(values(fa.open_path(&p1, SourceFormat::Parquet, 10).unwrap()));
        let b1 = fb.open_path(&p1, SourceFormat::Parquet, 10).unwrap();
        let a2 = fa.open_path(&p2, SourceFormat::Parquet, 10).unwrap();
        let ta = std::thread::spawn(move || values_and_behind(a2));
        // Stream b is still on file 1: a keeps file 2's first batches for it.
        std::thread::sleep(Duration::from_millis(300));
        drop(values(b1));
        both_read_in_step(fb.open_path(&p2, SourceFormat::Parquet, 10).unwrap(), ta, 300);
    }

    /// Both streams on one source, as the runner registers them.
    fn two_on(dir: &Path) -> (Follower, Follower, Arc<Store>, How) {
        let probe = dir.join("probe.parquet");
        write_parquet(&probe, 1);
        let (store, _) = crate::stream::store::local_file(&probe).unwrap();
        let how = How::all(SourceFormat::Parquet, 10);
        let on = || Follower::on(&store, &how, Arc::new(|| false));
        (on(), on(), store, how)
    }

    /// The window of `input` as the registry has it, once it exists.
    fn window_of(store: &Store, input: &Input, how: &How) -> Arc<SharedFile> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(f) = lock(registry()).get(&Key::of(store, input, how)).and_then(Weak::upgrade) {
                return f;
            }
            assert!(Instant::now() < deadline, "the file was never opened");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_stream_still_starting_on_the_source_is_waited_for_and_shares_the_first_file() {
        // The ZTF catalogue's 16 streams start within ~2 s of each other;
        // the first ones used to decode the first files without the others,
        // which then decoded them again on their own, a file or two behind.
        let dir = tempfile::tempdir().unwrap();
        let (fa, fb, store, how) = two_on(dir.path());
        let p = dir.path().join("1.parquet");
        write_parquet(&p, 300);
        let (_, input) = crate::stream::store::local_file(&p).unwrap();
        let a = fa.open(&store, &input, &how).unwrap();
        let ta = std::thread::spawn(move || values_and_behind(a));
        // Stream a fills the window and keeps the first batch for b.
        let f = window_of(&store, &input, &how);
        let deadline = Instant::now() + LAGGARD_WAIT / 2;
        loop {
            let w = lock(&f.window);
            assert_eq!(w.first, 0, "the first batch was dropped before stream b joined");
            if w.items.len() == WINDOW && !w.decoding {
                break;
            }
            drop(w);
            assert!(Instant::now() < deadline, "stream a never filled the window");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(f);
        both_read_in_step(fb.open(&store, &input, &how).unwrap(), ta, 300);
    }

    #[test]
    fn a_stream_that_missed_a_file_is_not_waited_for_on_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (fa, fb, store, how) = two_on(dir.path());
        let (p1, p2) = (dir.path().join("1.parquet"), dir.path().join("2.parquet"));
        write_parquet(&p1, 300);
        write_parquet(&p2, 300);
        // Stream b never comes: a waits for it once, on file 1...
        let (_, i1) = crate::stream::store::local_file(&p1).unwrap();
        let t = Instant::now();
        assert_eq!(values(fa.open(&store, &i1, &how).unwrap()).len(), 300);
        assert!(t.elapsed() >= LAGGARD_WAIT, "a did not wait for b on the first file");
        assert!(fb.missed.load(Ordering::SeqCst));
        // ...and not on file 2.
        let (_, i2) = crate::stream::store::local_file(&p2).unwrap();
        let t = Instant::now();
        assert_eq!(values(fa.open(&store, &i2, &how).unwrap()).len(), 300);
        assert!(t.elapsed() < LAGGARD_WAIT, "a waited again for the stream that missed file 1");
        // Once b joins a file in step with a, it is waited for again.
        let (p3, p4) = (dir.path().join("3.parquet"), dir.path().join("4.parquet"));
        write_parquet(&p3, 300);
        write_parquet(&p4, 300);
        let (_, i3) = crate::stream::store::local_file(&p3).unwrap();
        let a3 = fa.open(&store, &i3, &how).unwrap();
        let b3 = fb.open(&store, &i3, &how).unwrap();
        assert!(b3.is_shared() && !fb.missed.load(Ordering::SeqCst));
        let tb = std::thread::spawn(move || values(b3).len());
        assert_eq!(values(a3).len(), 300);
        assert_eq!(tb.join().unwrap(), 300);
    }

    #[test]
    fn a_reader_stepped_aside_holds_nobody_up_and_still_reads_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.parquet");
        write_parquet(&p, 200);
        let all: Vec<i64> = (0..200).collect();
        // Back before anything moved: it takes its batches from the window.
        let mut back = open(&p, SourceFormat::Parquet, 10).unwrap();
        back.step_aside();
        assert_eq!(values_and_behind(back), (all.clone(), false));
        // Away while the other reads the whole file: nobody waited for it,
        // and it reads every row on its own. (Another file: the first one's
        // window can outlive its reader for as long as its read-ahead runs.)
        let p = dir.path().join("b.parquet");
        write_parquet(&p, 200);
        let mut away = open(&p, SourceFormat::Parquet, 10).unwrap();
        let other = open(&p, SourceFormat::Parquet, 10).unwrap();
        assert!(away.is_shared() && other.is_shared());
        away.step_aside();
        let t = Instant::now();
        assert_eq!(values(other), all);
        assert!(t.elapsed() < LAGGARD_WAIT, "the other reader waited for the one stepped aside");
        assert_eq!(rows_of(&mut away), all);
        assert!(away.read_alone() && away.was_left_behind(), "its batches were gone: it read on its own");
    }

    #[test]
    fn readers_in_step_share_batches_and_see_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.parquet");
        write_parquet(&p, 1000);
        let a = open(&p, SourceFormat::Parquet, 10).unwrap();
        let b = open(&p, SourceFormat::Parquet, 10).unwrap();
        assert!(a.is_shared() && b.is_shared());
        let ta = std::thread::spawn(move || values(a));
        let tb = std::thread::spawn(move || values(b));
        let expect: Vec<i64> = (0..1000).collect();
        assert_eq!(ta.join().unwrap(), expect);
        assert_eq!(tb.join().unwrap(), expect);
    }

    #[test]
    fn a_short_batch_is_the_last_and_nothing_is_read_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        write_parquet(&path, 4);
        let mut r = open(&path, SourceFormat::Parquet, 10).unwrap();
        assert_eq!(r.next().unwrap().unwrap().num_rows(), 4);
        let f = r.shared.clone().expect("a shared reader");
        // Neither decoding nor finished: no read-ahead went looking for more.
        let w = lock(&f.window);
        assert!(!w.decoding && !w.finished, "a decode was started after the file's last batch");
        drop(w);
        assert!(r.next().is_none());
    }

    #[test]
    fn the_next_batch_is_decoded_while_the_reader_holds_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        write_parquet(&path, 30);
        let mut r = open(&path, SourceFormat::Parquet, 10).unwrap();
        let first = r.next().unwrap().unwrap();
        assert_eq!(first.num_rows(), 10);
        // Without asking for it, the second batch lands in the window.
        second_batch_read_ahead(&r);
        // And every row still comes once, in order.
        let rest: Vec<i64> = r
            .flat_map(|b| b.unwrap().column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect();
        assert_eq!(rest, (10..30).collect::<Vec<i64>>());
    }

    #[test]
    fn batches_cut_short_by_their_size_are_still_read_ahead_and_the_file_read_whole() {
        // Rows of 20 KB: a batch holds ~52 of the 100 asked for (1 MB,
        // BATCH_BYTES in tests), and such a batch is not the file's last.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(0..300));
        let blob: ArrayRef = Arc::new(arrow_array::BinaryArray::from_iter_values(
            (0..300).map(|i: usize| (0..20_000).map(|j| ((i * 7 + j) % 251) as u8).collect::<Vec<u8>>()),
        ));
        let batch = RecordBatch::try_from_iter([("n", n), ("blob", blob)]).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let mut r = open(&path, SourceFormat::Parquet, 100).unwrap();
        let first = r.next().unwrap().unwrap().num_rows();
        assert!(first < 100, "{first} rows of 20 KB in the first batch");
        second_batch_read_ahead(&r);
        assert_eq!(rows_of(&mut r), (first as i64..300).collect::<Vec<i64>>());
    }

    #[test]
    fn a_reader_left_behind_reads_on_its_own_without_losing_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.parquet");
        write_parquet(&p, 200);
        let mut slow = open(&p, SourceFormat::Parquet, 10).unwrap();
        let first = slow.next().unwrap().unwrap();
        assert_eq!(first.num_rows(), 10);
        // The fast reader waits LAGGARD_WAIT for the slow one, then goes on.
        let fast = open(&p, SourceFormat::Parquet, 10).unwrap();
        let all = values(fast);
        assert_eq!(all, (0..200).collect::<Vec<_>>());
        let rest = values(slow);
        assert_eq!(rest, (10..200).collect::<Vec<_>>());
        // A reader joining now starts at row 0 on its own.
        let late = open(&p, SourceFormat::Parquet, 10).unwrap();
        assert_eq!(values(late), (0..200).collect::<Vec<_>>());
    }
    #[test]
    fn a_reader_that_would_wait_returns_at_once_when_its_stream_stops() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.parquet");
        write_parquet(&p, 10 * (WINDOW as i64 + 20));
        let mut slow = open(&p, SourceFormat::Parquet, 10).unwrap();
        assert_eq!(slow.next().unwrap().unwrap().num_rows(), 10);
        // A stream already stopping: it takes what is decoded, and instead
        // of decoding on or waiting LAGGARD_WAIT for the slow reader, ends.
        let (store, input) = crate::stream::store::local_file(&p).unwrap();
        let how = How::all(SourceFormat::Parquet, 10);
        let mut fast = open_expecting(&store, &input, &how, Vec::new(), None, None, Arc::new(|| true)).unwrap();
        let started = Instant::now();
        let mut got = 0;
        let err = loop {
            match fast.next().expect("not at the end") {
                Ok(_) => got += 1,
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("stopping"), "{err}");
        assert!(started.elapsed() < LAGGARD_WAIT, "it waited for the slow reader");
        // What the window held (the slow reader's read-ahead may have filled
        // it), and nothing decoded for it after.
        assert!(got <= WINDOW, "it decoded on after the stop: {got} batches");
        drop(fast);
        // The other stream loses nothing.
        assert_eq!(values(slow), (10..10 * (WINDOW as i64 + 20)).collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod poison_tests {
    use super::*;
    use arrow_array::Int64Array;

    /// A stream that panicked while holding the registry (or a position)
    /// lock leaves it poisoned; the other streams go on reading.
    #[test]
    fn a_poisoned_registry_does_not_hang_other_streams() {
        let _ = std::thread::spawn(|| {
            let _r = registry().lock();
            let _p = positions().lock();
            panic!("a stream panics holding the locks");
        })
        .join();
        assert!(registry().is_poisoned() && positions().is_poisoned());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.parquet");
        let col: arrow_array::ArrayRef = Arc::new(Int64Array::from_iter_values(0..5));
        let batch = RecordBatch::try_from_iter([("n", col)]).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&p).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let f = Follower::new();
        let (store, input) = crate::stream::store::local_file(&p).unwrap();
        let rows: usize = f
            .open(&store, &input, &How::all(crate::config::SourceFormat::Parquet, 10))
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        assert_eq!(rows, 5);
    }
}
