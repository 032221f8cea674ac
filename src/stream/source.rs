//! Sources: directory trees of Parquet files (Fink's science database, one
//! folder per night) or Avro object container files (`.avro`, `.avro.gz`),
//! on local disk, S3 or HDFS ([`super::store`]), read as Arrow record
//! batches. Parquet files are read for the columns the streams need only
//! ([`Columns`]): the cutouts most streams drop are never fetched.

use std::io::BufReader;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader, ParquetStatisticsPolicy};

pub use super::columns::Columns;
pub use super::error::SourceError;
use super::store::{self, Input, Store};
use crate::config::SourceFormat;

pub use super::store::SETTLE;

/// Does `path` look like an input file of `format`? Hidden files, temporary
/// files and Spark's markers (`_SUCCESS`, `.crc`) are not.
pub fn is_input(path: &Path, format: SourceFormat) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| store::is_input_name(n, format))
}

/// Every input file under a local `root`, sorted (nights in order).
pub fn list_files(root: &Path, format: SourceFormat) -> std::io::Result<Vec<std::path::PathBuf>> {
    let store = Store::open(&store::Root::Local(root.to_path_buf())).expect("local stores always open");
    let inputs = store.list_now(format).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(inputs.into_iter().map(|i| root.join(i.rel)).collect())
}

/// How a stream reads its files: the same for streams that share decoding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct How {
    pub format: SourceFormat,
    pub batch_size: usize,
    /// Parquet columns to read.
    pub columns: Columns,
}

impl How {
    pub fn all(format: SourceFormat, batch_size: usize) -> How {
        How { format, batch_size, columns: Columns::All }
    }
}

/// A file opened for reading: its schema and an iterator of batches.
pub struct FileReader {
    /// The schema of the batches (only the columns read).
    pub schema: SchemaRef,
    /// The file's whole schema: select and drop paths are checked on it.
    pub full_schema: SchemaRef,
    /// Bytes fetched from the store so far for this file.
    pub bytes: Arc<AtomicU64>,
    /// Rows in each batch but the last: `How::batch_size`, or fewer for
    /// large rows (see [`BATCH_BYTES`]). A batch with fewer is the last.
    pub batch_rows: usize,
    inner: Box<dyn Iterator<Item = Result<RecordBatch, SourceError>> + Send>,
}

impl Iterator for FileReader {
    type Item = Result<RecordBatch, SourceError>;
    /// A decoder that panics (parquet still does on some malformed pages)
    /// fails its file as bad data; the reader ends there.
    fn next(&mut self) -> Option<Self::Item> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inner.next())) {
            Ok(item) => item,
            Err(panic) => {
                self.inner = Box::new(std::iter::empty());
                Some(Err(panicked(panic)))
            }
        }
    }
}

impl FileReader {
    /// Decoded to the end before any batch is handed out: a damaged page
    /// anywhere (a checksum mismatch, a decoder error or panic) fails the
    /// whole file, and nothing of it is published. For files read whole
    /// into memory, where this costs no extra I/O.
    fn verified(self) -> Result<FileReader, SourceError> {
        let FileReader { schema, full_schema, bytes, batch_rows, inner } = self;
        let mut me = FileReader { schema, full_schema, bytes, batch_rows, inner };
        let mut batches = Vec::new();
        for item in me.by_ref() {
            match item {
                Ok(b) => batches.push(b),
                Err(SourceError::BadData(m)) => {
                    return Err(SourceError::BadData(format!("{m} (nothing of this file is published)")))
                }
                Err(e) => return Err(e),
            }
        }
        me.inner = Box::new(batches.into_iter().map(Ok));
        Ok(me)
    }
}

/// A decoder's panic as a quarantine reason.
pub fn panicked(panic: Box<dyn std::any::Any + Send>) -> SourceError {
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "no message".into());
    SourceError::BadData(format!("the decoder failed on this file (panic: {msg})"))
}

/// Parquet files up to this size are read into memory in one call.
pub const WHOLE_FILE_MAX: u64 = 4 << 20;
/// Remote Parquet files up to this size are fetched whole even when only
/// some columns are read: one request costs more than the bytes saved.
pub const REMOTE_WHOLE_MAX: u64 = 256 << 10;
/// First guess at a Parquet footer's size: one request usually gets it.
const FOOTER_HINT: usize = 256 << 10;

/// Decoded bytes a Parquet batch holds at most, whatever `batch_size`
/// says. Streams on a source share each batch, and a few are alive at once
/// per file (the window, the read-ahead, the streams' own kept rows): with
/// 256 Rubin alerts (~190 KB decoded each) a batch was ~48 MB, and fink's
/// peak with the LSST catalogue ~1 GB; bounded, ~0.6 GB for the same
/// visit in the same time. ZTF alerts (~45 KB) keep 256-row batches.
pub const BATCH_BYTES: u64 = if cfg!(test) { 1 << 20 } else { 12 << 20 };

/// The batch size for a Parquet file: no more than [`BATCH_BYTES`] of the
/// columns read (by their uncompressed size in the footer), and, for the
/// reader, never more rows than the file holds: each column reader reserves
/// room for a whole batch, so a file of 4 alerts read with batches of 1,000
/// would allocate and free 250 times what it needs, for each of its ~180
/// columns. Gives (the reader's batch, the rows of a batch that is not
/// the file's last).
fn fitted(batch_size: usize, meta: &ParquetMetaData, mask: &parquet::arrow::ProjectionMask) -> (usize, usize) {
    let rows = meta.file_metadata().num_rows().max(1) as u64;
    let bytes: i64 = meta
        .row_groups()
        .iter()
        .flat_map(|g| g.columns().iter().enumerate())
        .filter(|(i, _)| mask.leaf_included(*i))
        .map(|(_, c)| c.uncompressed_size().max(0))
        .sum();
    let by_bytes = (BATCH_BYTES * rows / (bytes as u64).max(1)).max(1);
    let full = (batch_size as u64).min(by_bytes).max(1);
    (full.min(rows) as usize, full as usize)
}

/// Footers are decoded without their statistics: nothing here prunes by
/// them (~15% less footer decoding on a simulated file of 4 alerts).
fn reader_options() -> ArrowReaderOptions {
    ArrowReaderOptions::new()
        .with_column_stats_policy(ParquetStatisticsPolicy::SkipAll)
        .with_size_stats_policy(ParquetStatisticsPolicy::SkipAll)
        .with_encoding_stats_policy(ParquetStatisticsPolicy::SkipAll)
}

/// Kept rows are read by skipping the others. parquet's default picks a
/// mask for scattered rows, decoding every row up to a batch of selected
/// ones: for Rubin alerts kept one in twenty, the whole file (~190 MB) per
/// stream, 1.5 GB of fink's peak with the LSST catalogue's Python topics.
const SKIP_UNSELECTED: parquet::arrow::arrow_reader::RowSelectionPolicy =
    parquet::arrow::arrow_reader::RowSelectionPolicy::Selectors;

/// Reading some rows only: the offset index tells where each page starts,
/// so that pages of no selected row are skipped unread.
fn selective_options() -> ArrowReaderOptions {
    reader_options().with_offset_index_policy(parquet::file::metadata::PageIndexPolicy::Optional)
}

/// How a file is read, from its footer: its whole schema, the columns
/// `how` asks for, and the batch sizes of [`fitted`].
fn reading(meta: &ArrowReaderMetadata, how: &How) -> (SchemaRef, parquet::arrow::ProjectionMask, (usize, usize)) {
    let mask = how.columns.mask(meta.metadata().file_metadata().schema_descr());
    let batch = fitted(how.batch_size, meta.metadata(), &mask);
    (meta.schema().clone(), mask, batch)
}

/// Open one file, taking it from the read-ahead if it was decoded there.
pub fn open(store: &Arc<Store>, input: &Input, how: &How, stop: &dyn Fn() -> bool) -> Result<FileReader, SourceError> {
    match super::prefetch::take(store, input, how, stop) {
        Some(decoded) => {
            let (schema, full_schema, bytes, batches) = decoded?;
            Ok(FileReader {
                schema,
                full_schema,
                bytes: Arc::new(AtomicU64::new(bytes)),
                // Files read ahead are small: batches as asked for.
                batch_rows: how.batch_size,
                inner: Box::new(batches.into_iter()),
            })
        }
        None if stop() => Err(super::shared::stopping()),
        None => open_file(store, input, how),
    }
}

/// Open one file from its store. A panic while opening (a footer that
/// trips the decoder) is bad data, as an error is.
pub fn open_file(store: &Arc<Store>, input: &Input, how: &How) -> Result<FileReader, SourceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let bytes = Arc::new(AtomicU64::new(0));
        match how.format {
            SourceFormat::Parquet => open_parquet(store, input, how, bytes, None),
            SourceFormat::Avro => {
                let raw = store.read(input, &bytes)?;
                decode_avro(&input.rel, raw, how.batch_size, bytes)
            }
        }
    }))
    .unwrap_or_else(|panic| Err(panicked(panic)))
}

/// Open a Parquet file for the rows `rows` lists (ascending) only: its
/// batches hold those rows, in order. The pages of the other rows are
/// neither fetched nor decoded where the file has an offset index (Spark's
/// and fink's writers write one). None for other formats.
pub fn open_rows(
    store: &Arc<Store>,
    input: &Input,
    how: &How,
    rows: &[u64],
) -> Option<Result<FileReader, SourceError>> {
    open_picked(store, input, how, Pick::Rows(Arc::new(rows.to_vec())))
}

/// A Parquet file's `pick` of rows (None for other formats); a panic while
/// opening is bad data, as in [`open_file`].
fn open_picked(store: &Arc<Store>, input: &Input, how: &How, pick: Pick) -> Option<Result<FileReader, SourceError>> {
    if how.format != SourceFormat::Parquet {
        return None;
    }
    Some(
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            open_parquet(store, input, how, Arc::new(AtomicU64::new(0)), Some(pick))
        }))
        .unwrap_or_else(|panic| Err(panicked(panic))),
    )
}

/// Reads of kept rows open at once in this process. Each holds a page and
/// a dictionary per column of the file (~45 MB for a Rubin file): the six
/// Python topics of the LSST catalogue reading theirs together were ~270 MB
/// of fink's peak. One per core keeps the cores busy; the others wait.
pub struct KeptReads {
    open: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
    limit: usize,
}

/// A read of kept rows may go on while this lives.
pub struct KeptRead<'a>(&'a KeptReads);

impl Drop for KeptRead<'_> {
    fn drop(&mut self) {
        *self.0.open.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.0.freed.notify_one();
    }
}

impl KeptReads {
    pub fn new(limit: usize) -> KeptReads {
        KeptReads { open: std::sync::Mutex::new(0), freed: std::sync::Condvar::new(), limit: limit.max(1) }
    }

    /// The process's: one per core, at least two.
    pub fn global() -> &'static KeptReads {
        static READS: std::sync::OnceLock<KeptReads> = std::sync::OnceLock::new();
        READS.get_or_init(|| KeptReads::new(std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)))
    }

    /// Wait for a turn; None once `stop()` says so (checked every 100 ms).
    pub fn enter(&self, stop: &dyn Fn() -> bool) -> Option<KeptRead<'_>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        while *open >= self.limit {
            if stop() {
                return None;
            }
            open = self.freed.wait_timeout(open, super::shared::STOP_CHECK).unwrap_or_else(|p| p.into_inner()).0;
        }
        *open += 1;
        Some(KeptRead(self))
    }
}

/// Open a Parquet file from row `first` on: the pages before it are
/// skipped unread where the file has an offset index, not decoded and
/// dropped. None for other formats.
pub fn open_from(store: &Arc<Store>, input: &Input, how: &How, first: u64) -> Option<Result<FileReader, SourceError>> {
    open_picked(store, input, how, Pick::From(first))
}

/// The rows a reader reads: those listed (ascending), or all from one on.
enum Pick {
    Rows(Arc<Vec<u64>>),
    From(u64),
}

impl Pick {
    fn selection(&self, total: u64) -> parquet::arrow::arrow_reader::RowSelection {
        use parquet::arrow::arrow_reader::RowSelector;
        match self {
            Pick::Rows(rows) => selection(rows, total),
            Pick::From(first) => {
                let first = (*first).min(total);
                let mut out = Vec::new();
                if first > 0 {
                    out.push(RowSelector::skip(first as usize));
                }
                if total > first {
                    out.push(RowSelector::select((total - first) as usize));
                }
                out.into()
            }
        }
    }
}

/// `rows` (ascending) of a file of `total` rows as parquet's selection.
fn selection(rows: &[u64], total: u64) -> parquet::arrow::arrow_reader::RowSelection {
    use parquet::arrow::arrow_reader::RowSelector;
    let mut out = Vec::new();
    let mut at = 0u64;
    let mut i = 0;
    while i < rows.len() && rows[i] < total {
        let start = rows[i];
        let mut end = start + 1;
        i += 1;
        while i < rows.len() && rows[i] == end && end < total {
            end += 1;
            i += 1;
        }
        if start > at {
            out.push(RowSelector::skip((start - at) as usize));
        }
        out.push(RowSelector::select((end - start) as usize));
        at = end;
    }
    if total > at {
        out.push(RowSelector::skip((total - at) as usize));
    }
    out.into()
}

fn open_parquet(
    store: &Arc<Store>,
    input: &Input,
    how: &How,
    bytes: Arc<AtomicU64>,
    rows: Option<Pick>,
) -> Result<FileReader, SourceError> {
    // A small file is read whole in one call: parquet's reader on a
    // `File` dups the descriptor, seeks and reads page headers a few bytes
    // at a time per column chunk (hundreds of syscalls per file for Fink's
    // ~300 columns), and on a remote store a request costs more than bytes.
    let whole = match store.local_path(&input.rel) {
        Some(_) => input.len <= WHOLE_FILE_MAX,
        None => input.len <= REMOTE_WHOLE_MAX || how.columns == Columns::All && input.len <= WHOLE_FILE_MAX,
    };
    if whole {
        let data = store.read(input, &bytes)?;
        return sync_reader(data, how, bytes, None, rows)?.verified();
    }
    // Larger local files: parquet's reader on the file, which reads the
    // column chunks of the columns read, page by page (little memory).
    if let Some(path) = store.local_path(&input.rel) {
        let file =
            std::fs::File::open(&path).map_err(|e| store::io_error(&format!("cannot open {}", input.rel), &e))?;
        // The descriptor stays on this version: a file renamed over it is
        // not mixed in, and one rewritten in place is refused here.
        store::check_unchanged(&file, input)?;
        let io_failed = Arc::new(std::sync::Mutex::new(None));
        let counted = CountedFile { file, bytes: bytes.clone(), io_failed: io_failed.clone() };
        return sync_reader(counted, how, bytes, Some(io_failed), rows);
    }
    // Larger remote files: the footer, then the column chunks of the
    // columns read, one row group at a time (parquet's async reader).
    let failed: IoFailed = Arc::new(std::sync::Mutex::new(None));
    let mut reader =
        Ranged { store: store.clone(), input: input.clone(), bytes: bytes.clone(), failed: failed.clone() };
    let build = async {
        let options = if rows.is_some() { selective_options() } else { reader_options() };
        let metadata = reader.get_metadata(Some(&options)).await?;
        let meta = ArrowReaderMetadata::try_new(metadata, options)?;
        let (full_schema, mask, (batch, batch_rows)) = reading(&meta, how);
        let total = meta.metadata().file_metadata().num_rows().max(0) as u64;
        let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
            .with_projection(mask)
            .with_batch_size(batch);
        if let Some(rows) = &rows {
            builder = builder.with_row_selection(rows.selection(total)).with_row_selection_policy(SKIP_UNSELECTED);
        }
        let stream = builder.build()?;
        Ok::<_, parquet::errors::ParquetError>((full_schema, stream, batch_rows))
    };
    let (full_schema, stream, batch_rows) = store::runtime().block_on(build).map_err(|e| parquet_error(&e, &failed))?;
    let schema = stream.schema().clone();
    let mut stream = Some(stream);
    let inner = std::iter::from_fn(move || {
        use futures::StreamExt;
        let s = stream.as_mut()?;
        match store::runtime().block_on(s.next()) {
            Some(Ok(b)) => Some(Ok(b)),
            Some(Err(e)) => {
                stream = None;
                Some(Err(parquet_error(&e, &failed)))
            }
            None => {
                stream = None;
                None
            }
        }
    });
    Ok(FileReader { schema, full_schema, bytes, batch_rows, inner: Box::new(inner) })
}

/// The I/O error (local) or fetch error (remote) a Parquet reader met, if
/// any: parquet turns them into strings, so the reader's byte source
/// records them here to tell a failed read (transient) from bad data.
type IoFailed = Arc<std::sync::Mutex<Option<SourceError>>>;

/// A Parquet error: transient if the bytes could not be fetched, bad data
/// otherwise (including a page checksum that does not match).
fn parquet_error(e: &dyn std::fmt::Display, failed: &IoFailed) -> SourceError {
    match failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(io) => io,
        None => SourceError::BadData(format!("corrupt Parquet data: {e}")),
    }
}

/// Parquet's synchronous reader over bytes in memory or a local file,
/// for the columns `how` reads.
fn sync_reader<R: parquet::file::reader::ChunkReader + 'static>(
    input: R,
    how: &How,
    bytes: Arc<AtomicU64>,
    io_failed: Option<IoFailed>,
    rows: Option<Pick>,
) -> Result<FileReader, SourceError> {
    let failed = io_failed.unwrap_or_default();
    let options = if rows.is_some() { selective_options() } else { reader_options() };
    let meta = ArrowReaderMetadata::load(&input, options).map_err(|e| match parquet_error(&e, &failed) {
        SourceError::BadData(_) => SourceError::BadData(format!("not a readable Parquet file: {e}")),
        other => other,
    })?;
    let (full_schema, mask, (batch, batch_rows)) = reading(&meta, how);
    let total = meta.metadata().file_metadata().num_rows().max(0) as u64;
    let mut builder =
        ParquetRecordBatchReaderBuilder::new_with_metadata(input, meta).with_projection(mask).with_batch_size(batch);
    if let Some(rows) = &rows {
        builder = builder.with_row_selection(rows.selection(total)).with_row_selection_policy(SKIP_UNSELECTED);
    }
    let reader = builder.build().map_err(|e| parquet_error(&e, &failed))?;
    let schema = arrow_array::RecordBatchReader::schema(&reader);
    Ok(FileReader {
        schema,
        full_schema,
        bytes,
        batch_rows,
        inner: Box::new(reader.map(move |r| r.map_err(|e| parquet_error(&e, &failed)))),
    })
}

/// Parquet's async reader over an object store, counting the bytes it
/// fetches: byte ranges come from `get_ranges` (coalesced into few
/// requests), each call bounded by [`store::OP_TIMEOUT`]. This is what
/// parquet 60 asks for: it deprecates `ParquetObjectReader` in favour of an
/// `AsyncFileReader` implemented directly (arrow-rs#10308). Local files use
/// parquet's synchronous reader instead ([`sync_reader`]).
struct Ranged {
    store: Arc<Store>,
    input: Input,
    bytes: Arc<AtomicU64>,
    failed: IoFailed,
}

impl Ranged {
    /// The ranges of the version listed (conditional GETs), coalesced
    /// into few requests as `get_ranges` would.
    fn fetch(&self, ranges: Vec<std::ops::Range<u64>>) -> BoxFuture<'static, parquet::errors::Result<Vec<Bytes>>> {
        let (store, input, bytes, failed) =
            (self.store.clone(), self.input.clone(), self.bytes.clone(), self.failed.clone());
        async move {
            let Some((os, path)) = store.object_path(&input.rel) else {
                return Err(SourceError::Fatal("a local file has no object store".into()));
            };
            let what = format!("GET {} (ranges)", store.url_of(&input.rel));
            let get = |r: std::ops::Range<u64>| {
                let (os, path, opts) = (os.clone(), path.clone(), store::same_version(&input, Some(r)));
                async move { os.get_opts(&path, opts).await?.bytes().await }
            };
            let got = store::bounded(
                &what,
                object_store::coalesce_ranges(&ranges, get, object_store::OBJECT_STORE_COALESCE_DEFAULT),
            )
            .await?;
            bytes.fetch_add(got.iter().map(|b| b.len() as u64).sum(), Ordering::Relaxed);
            Ok(got)
        }
        .map(move |r: Result<Vec<Bytes>, SourceError>| {
            r.map_err(|e| {
                let msg = e.to_string();
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                parquet::errors::ParquetError::General(msg)
            })
        })
        .boxed()
    }
}

impl AsyncFileReader for Ranged {
    fn get_bytes(&mut self, range: std::ops::Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let f = self.fetch(vec![range]);
        async move { Ok(f.await?.pop().unwrap_or_default()) }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.fetch(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let len = self.input.len;
        async move {
            let meta = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_HINT))
                .with_metadata_options(Some(reader_options().metadata_options().clone()))
                .load_and_finish(self, len)
                .await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

/// A local file for parquet's reader that counts the bytes read from it
/// and records an I/O error (which parquet would turn into a string).
struct CountedFile {
    file: std::fs::File,
    bytes: Arc<AtomicU64>,
    io_failed: IoFailed,
}

impl CountedFile {
    fn failed(&self, e: std::io::Error) -> std::io::Error {
        *self.io_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(store::io_error("cannot read", &e));
        e
    }
}

struct CountingRead<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
    io_failed: IoFailed,
}

impl<R: std::io::Read> std::io::Read for CountingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            *self.io_failed.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(store::io_error("cannot read", &std::io::Error::new(e.kind(), e.to_string())));
        })?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl parquet::file::reader::Length for CountedFile {
    fn len(&self) -> u64 {
        parquet::file::reader::Length::len(&self.file)
    }
}

impl parquet::file::reader::ChunkReader for CountedFile {
    type T = BufReader<CountingRead<std::fs::File>>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use std::io::Seek;
        let mut f = self.file.try_clone().map_err(|e| self.failed(e))?;
        f.seek(std::io::SeekFrom::Start(start)).map_err(|e| self.failed(e))?;
        Ok(BufReader::new(CountingRead { inner: f, bytes: self.bytes.clone(), io_failed: self.io_failed.clone() }))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let b = parquet::file::reader::ChunkReader::get_bytes(&self.file, start, length).inspect_err(|e| {
            if let parquet::errors::ParquetError::External(x) = e {
                if let Some(io) = x.downcast_ref::<std::io::Error>() {
                    *self.io_failed.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(store::io_error("cannot read", &std::io::Error::new(io.kind(), io.to_string())));
                }
            }
        })?;
        self.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }
}

fn decode_avro(rel: &str, raw: Bytes, batch_size: usize, counter: Arc<AtomicU64>) -> Result<FileReader, SourceError> {
    let bad = SourceError::BadData;
    let gz = rel.ends_with(".gz");
    let bytes = if gz {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(BufReader::new(&raw[..])), &mut out)
            .map_err(|e| bad(format!("cannot read (gzip): {e}")))?;
        out
    } else {
        raw.to_vec()
    };
    let mut bytes = normalize_ocf_header(bytes);
    // A truncated tail is read up to its last whole block, then reported.
    let trailing = match complete_ocf_len(&bytes) {
        Some((len, missing)) if len < bytes.len() => {
            bytes.truncate(len);
            Some(bad(format!("truncated Avro file: the last block is incomplete ({missing})")))
        }
        _ => None,
    };
    let read: Box<dyn std::io::BufRead + Send> = Box::new(std::io::Cursor::new(bytes));
    let reader = arrow_avro::reader::ReaderBuilder::new()
        .with_batch_size(batch_size)
        .build(read)
        .map_err(|e| bad(format!("not a readable Avro container file: {e}")))?;
    let schema = reader.schema();
    let batches = reader.map(move |r| r.map_err(|e| bad(format!("corrupt Avro data: {e}"))));
    Ok(FileReader {
        schema: schema.clone(),
        full_schema: schema,
        bytes: counter,
        batch_rows: batch_size,
        inner: Box::new(batches.chain(trailing.map(Err))),
    })
}

/// Read a whole local file (tests).
pub fn read_all(path: &Path, format: SourceFormat) -> Result<(SchemaRef, Vec<RecordBatch>), SourceError> {
    let (store, input) = store::local_file(path).map_err(|e| store::io_error("cannot open", &e))?;
    read_input(&store, &input, format)
}

/// Read a whole file of a store (`filter test`, `validate --data`).
pub fn read_input(
    store: &Arc<Store>,
    input: &Input,
    format: SourceFormat,
) -> Result<(SchemaRef, Vec<RecordBatch>), SourceError> {
    read_input_in(store, input, format, 1024)
}

/// [`read_input`] in batches of `rows`.
pub fn read_input_in(
    store: &Arc<Store>,
    input: &Input,
    format: SourceFormat,
    rows: usize,
) -> Result<(SchemaRef, Vec<RecordBatch>), SourceError> {
    let r = open_file(store, input, &How::all(format, rows.max(1)))?;
    let schema = r.schema.clone();
    let batches = r.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// Guess the format from a local path (file or directory of files).
pub fn detect_format(path: &Path) -> Option<SourceFormat> {
    if path.is_file() {
        return [SourceFormat::Parquet, SourceFormat::Avro].into_iter().find(|f| is_input(path, *f));
    }
    [SourceFormat::Parquet, SourceFormat::Avro]
        .into_iter()
        .find(|f| list_files(path, *f).map(|v| !v.is_empty()).unwrap_or(false))
}

/// A zig-zag varint, as Avro and Thrift's compact protocol write integers.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Some writers (Spark, older ZTF tools) name records by full name
/// (`"name": "ztf.alert.cutout"`, no namespace). That is valid Avro, but the
/// Arrow reader resolves references only by name + namespace, so rewrite such
/// names in the file header before reading. Other files pass unchanged.
fn normalize_ocf_header(bytes: Vec<u8>) -> Vec<u8> {
    fn fix(v: &mut serde_json::Value) -> bool {
        let mut changed = false;
        match v {
            serde_json::Value::Object(m) => {
                let named = matches!(m.get("type").and_then(|t| t.as_str()), Some("record" | "enum" | "fixed"));
                if named && !m.contains_key("namespace") {
                    if let Some((ns, name)) = m.get("name").and_then(|n| n.as_str()).and_then(|n| n.rsplit_once('.')) {
                        let (ns, name) = (ns.to_string(), name.to_string());
                        m.insert("namespace".into(), serde_json::Value::String(ns));
                        m.insert("name".into(), serde_json::Value::String(name));
                        changed = true;
                    }
                }
                for x in m.values_mut() {
                    changed |= fix(x);
                }
            }
            serde_json::Value::Array(a) => {
                for x in a {
                    changed |= fix(x);
                }
            }
            _ => {}
        }
        changed
    }
    let parse = || -> Option<Vec<u8>> {
        let (mut entries, pos) = read_header(&bytes)?;
        let mut changed = false;
        for (k, v) in entries.iter_mut() {
            if k == b"avro.schema" {
                let mut json: serde_json::Value = serde_json::from_slice(v).ok()?;
                if fix(&mut json) {
                    *v = serde_json::to_vec(&json).ok()?;
                    changed = true;
                }
            }
        }
        if !changed {
            return None;
        }
        let mut out = b"Obj\x01".to_vec();
        put_varint(&mut out, entries.len() as i64);
        for (k, v) in &entries {
            put_varint(&mut out, k.len() as i64);
            out.extend_from_slice(k);
            put_varint(&mut out, v.len() as i64);
            out.extend_from_slice(v);
        }
        put_varint(&mut out, 0);
        out.extend_from_slice(&bytes[pos..]);
        Some(out)
    };
    parse().unwrap_or(bytes)
}

/// Reads Avro's zig-zag varints and lengths from untrusted bytes. Every
/// step is checked: crafted input gives `None`, never a panic or a huge
/// allocation.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Option<i64> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= ((byte & 0x7f) as u64).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }

    /// A length: a varint that must be non-negative.
    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// The item count of a block of a map or array (0 ends it); a negative
    /// count is followed by the block's size in bytes.
    fn block_count(&mut self) -> Option<u64> {
        let n = self.varint()?;
        if n < 0 {
            self.varint()?;
        }
        Some(n.unsigned_abs())
    }
}

/// The metadata map of an Avro object container file, and where the sync
/// marker after it starts.
type Header = (Vec<(Vec<u8>, Vec<u8>)>, usize);

fn read_header(b: &[u8]) -> Option<Header> {
    let mut c = Cursor { b, pos: 0 };
    if c.bytes(4)? != b"Obj\x01" {
        return None;
    }
    let mut entries = Vec::new();
    loop {
        let n = c.block_count()?;
        if n == 0 {
            break;
        }
        for _ in 0..n {
            let kl = c.len()?;
            let k = c.bytes(kl)?.to_vec();
            let vl = c.len()?;
            let v = c.bytes(vl)?.to_vec();
            entries.push((k, v));
        }
    }
    Some((entries, c.pos))
}

/// Length of the object container file up to its last complete block, and
/// what is missing after it; `None` if the header itself is unreadable.
fn complete_ocf_len(b: &[u8]) -> Option<(usize, String)> {
    let (_, pos) = read_header(b)?;
    let mut c = Cursor { b, pos };
    let sync = c.bytes(16)?;
    let mut good = c.pos;
    while good < b.len() {
        let mut c = Cursor { b, pos: good };
        let (Some(count), Some(size)) = (c.varint(), c.len()) else {
            return Some((good, "block header cut".into()));
        };
        let data_start = c.pos;
        match c.bytes(size).and_then(|_| c.bytes(16)) {
            None => {
                return Some((
                    good,
                    format!(
                        "{count} alert(s) in a block cut after {} of {size} bytes",
                        b.len().saturating_sub(data_start)
                    ),
                ))
            }
            Some(marker) if marker != sync => return Some((good, "sync marker mismatch".into())),
            Some(_) => good = c.pos,
        }
    }
    Some((good, String::new()))
}

#[cfg(test)]
mod header_tests {
    use super::*;
    use proptest::prelude::*;

    fn varint(v: i64) -> Vec<u8> {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    /// A container file: header with one entry, sync marker, `blocks`.
    fn ocf(key: &[u8], value: &[u8], blocks: &[(i64, Vec<u8>)]) -> Vec<u8> {
        let mut b = b"Obj\x01".to_vec();
        b.extend(varint(1));
        b.extend(varint(key.len() as i64));
        b.extend(key);
        b.extend(varint(value.len() as i64));
        b.extend(value);
        b.extend(varint(0));
        b.extend([7u8; 16]);
        for (count, data) in blocks {
            b.extend(varint(*count));
            b.extend(varint(data.len() as i64));
            b.extend(data);
            b.extend([7u8; 16]);
        }
        b
    }

    #[test]
    fn a_well_formed_file_is_complete_and_a_cut_block_is_found() {
        let f = ocf(b"avro.schema", b"\"long\"", &[(1, vec![2]), (2, vec![4, 6])]);
        assert_eq!(complete_ocf_len(&f), Some((f.len(), String::new())));
        let cut = &f[..f.len() - 5];
        let (good, why) = complete_ocf_len(cut).unwrap();
        assert!(good < cut.len() && why.contains("cut"), "{good} {why}");
        let (entries, _) = read_header(&f).unwrap();
        assert_eq!(entries, vec![(b"avro.schema".to_vec(), b"\"long\"".to_vec())]);
    }

    #[test]
    fn crafted_lengths_are_refused_not_panicked_on() {
        let header = |count: i64, len: i64| {
            let mut b = b"Obj\x01".to_vec();
            b.extend(varint(count));
            b.extend(varint(len));
            b.extend([b'a'; 8]);
            b
        };
        // Negative, huge and overflowing lengths and counts.
        for (count, len) in [(1, -1), (1, i64::MAX), (i64::MIN, 1), (i64::MAX, 1), (-1, i64::MIN), (1, 1 << 62)] {
            assert_eq!(read_header(&header(count, len)), None, "count {count} len {len}");
            assert_eq!(complete_ocf_len(&header(count, len)), None);
        }
        // A varint longer than 64 bits.
        let mut b = b"Obj\x01".to_vec();
        b.extend([0xff; 11]);
        assert_eq!(read_header(&b), None);
        // A block claiming more bytes than there are, or a negative size.
        let mut f = ocf(b"k", b"v", &[]);
        let good = f.len();
        f.extend(varint(1));
        f.extend(varint(i64::MAX));
        assert_eq!(complete_ocf_len(&f).map(|(g, _)| g), Some(good));
        let mut f = ocf(b"k", b"v", &[]);
        f.extend(varint(1));
        f.extend(varint(-5));
        assert_eq!(complete_ocf_len(&f), Some((good, "block header cut".into())));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut b = b"Obj\x01".to_vec();
            b.extend(&tail);
            let _ = read_header(&b);
            let _ = complete_ocf_len(&b);
            let _ = normalize_ocf_header(b);
        }

        #[test]
        fn mutated_files_never_panic(at in 0usize..64, byte in any::<u8>(), cut in 0usize..64) {
            let mut f = ocf(b"avro.schema", b"{\"type\":\"record\",\"name\":\"a.b\",\"fields\":[]}", &[(1, vec![2, 3]), (3, vec![1; 9])]);
            let at = at % f.len();
            f[at] = byte;
            f.truncate(f.len() - cut.min(f.len()));
            if let Some((good, _)) = complete_ocf_len(&f) {
                prop_assert!(good <= f.len());
            }
            let _ = normalize_ocf_header(f);
        }
    }
}

#[cfg(test)]
mod pruning_tests {
    use super::*;
    use arrow_array::{ArrayRef, BinaryArray, Int64Array};

    /// A local file larger than [`WHOLE_FILE_MAX`]: a big `stamp` column
    /// and a small `n`.
    fn big_file(dir: &Path) -> std::path::PathBuf {
        paged_file(dir, None)
    }

    /// [`big_file`], with pages of `page_rows` rows when given.
    fn paged_file(dir: &Path, page_rows: Option<usize>) -> std::path::PathBuf {
        let rows = 600;
        let stamps: Vec<Vec<u8>> =
            (0..rows).map(|i| (0..10_000).map(|j| ((i * 31 + j * 7) % 251) as u8).collect()).collect();
        let stamp: ArrayRef = Arc::new(BinaryArray::from_iter_values(stamps.iter()));
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
        let batch = RecordBatch::try_from_iter([("n", n), ("stamp", stamp)]).unwrap();
        let path = dir.join("big.parquet");
        let mut props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::UNCOMPRESSED);
        if let Some(n) = page_rows {
            props = props.set_data_page_row_count_limit(n).set_write_batch_size(n);
        }
        let props = props.build();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), Some(props))
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > WHOLE_FILE_MAX);
        path
    }

    #[test]
    fn a_large_local_file_is_read_for_the_needed_columns_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = big_file(dir.path());
        let (st, input) = store::local_file(&path).unwrap();
        let read = |columns: Columns| {
            let how = How { format: SourceFormat::Parquet, batch_size: 256, columns };
            let r = open_file(&st, &input, &how).unwrap();
            let (bytes, full) = (r.bytes.clone(), r.full_schema.clone());
            let batches: Vec<RecordBatch> = r.collect::<Result<_, _>>().unwrap();
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            (bytes.load(Ordering::Relaxed), batches[0].schema(), full, rows)
        };
        let (all, schema, _, rows) = read(Columns::All);
        assert_eq!((rows, schema.fields().len()), (600, 2));
        let (pruned, schema, full, rows) = read(Columns::AllBut(["stamp".to_string()].into()));
        assert_eq!(rows, 600);
        assert_eq!(schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["n"]);
        assert_eq!(full.fields().len(), 2, "the whole schema is still known");
        assert!(pruned * 20 < all, "{pruned} bytes read without the stamps, {all} with them");
        assert!(all >= input.len * 9 / 10, "{all} of {}", input.len);
    }

    #[test]
    fn large_rows_make_smaller_batches_and_every_row_is_still_read() {
        // 600 rows of ~10 KB: 1 MB (BATCH_BYTES in tests) holds ~104.
        let dir = tempfile::tempdir().unwrap();
        let path = big_file(dir.path());
        let (st, input) = store::local_file(&path).unwrap();
        let read = |columns: Columns| {
            let how = How { format: SourceFormat::Parquet, batch_size: 256, columns };
            let r = open_file(&st, &input, &how).unwrap();
            let batch_rows = r.batch_rows;
            let sizes: Vec<usize> = r.map(|b| b.unwrap().num_rows()).collect();
            (batch_rows, sizes)
        };
        let (batch_rows, sizes) = read(Columns::All);
        assert!((90..=110).contains(&batch_rows), "{batch_rows} rows of ~10 KB in a batch");
        assert_eq!(sizes.iter().sum::<usize>(), 600);
        let (last, full) = sizes.split_last().unwrap();
        assert!(full.iter().all(|n| *n == batch_rows) && *last <= batch_rows, "{sizes:?}");
        // The bound counts the columns read only: without the stamps, rows
        // are small and batches hold `batch_size`.
        let (batch_rows, sizes) = read(Columns::AllBut(["stamp".to_string()].into()));
        assert_eq!((batch_rows, sizes), (256, vec![256, 256, 88]));
    }

    #[test]
    fn reading_some_rows_gives_those_rows_and_skips_the_other_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = big_file(dir.path());
        let (st, input) = store::local_file(&path).unwrap();
        let how = How::all(SourceFormat::Parquet, 256);
        let rows = [3u64, 4, 5, 40];
        let r = open_rows(&st, &input, &how, &rows).unwrap().unwrap();
        let bytes = r.bytes.clone();
        let got: Vec<i64> = r
            .flat_map(|b| {
                let b = b.unwrap();
                let n = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().clone();
                n.values().to_vec()
            })
            .collect();
        assert_eq!(got, [3, 4, 5, 40]);
        let read = bytes.load(Ordering::Relaxed);
        assert!(read * 3 < input.len, "{read} bytes read of {} for 4 rows of 600", input.len);
        // No rows, and rows past the end, read nothing.
        let none = open_rows(&st, &input, &how, &[]).unwrap().unwrap();
        assert_eq!(none.map(|b| b.unwrap().num_rows()).sum::<usize>(), 0);
        let past = open_rows(&st, &input, &how, &[599, 600, 700]).unwrap().unwrap();
        assert_eq!(past.map(|b| b.unwrap().num_rows()).sum::<usize>(), 1);
    }

    #[test]
    fn reading_from_a_row_gives_every_row_after_it_and_skips_the_pages_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = paged_file(dir.path(), Some(10));
        let (st, input) = store::local_file(&path).unwrap();
        let how = How::all(SourceFormat::Parquet, 64);
        let read_from = |first: u64| {
            let r = open_from(&st, &input, &how, first).unwrap().unwrap();
            let bytes = r.bytes.clone();
            let got: Vec<i64> = r
                .flat_map(|b| b.unwrap().column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
                .collect();
            (got, bytes.load(Ordering::Relaxed))
        };
        let (all, whole) = read_from(0);
        assert_eq!(all, (0..600).collect::<Vec<_>>());
        let (tail, read) = read_from(450);
        assert_eq!(tail, (450..600).collect::<Vec<_>>());
        assert!(read * 2 < whole, "{read} bytes read from row 450 of 600, {whole} for all");
        assert!(read_from(600).0.is_empty() && read_from(700).0.is_empty(), "nothing past the end");
        let avro = How::all(SourceFormat::Avro, 64);
        assert!(open_from(&st, &input, &avro, 10).is_none(), "other formats skip by reading");
    }

    #[test]
    fn scattered_rows_are_read_by_skipping_the_others_not_by_decoding_every_row() {
        // Pages of 10 rows (~100 KB each); one row in 30 kept touches a
        // third of them. Decoding every row and masking (parquet's choice
        // for scattered rows) would fetch them all.
        let dir = tempfile::tempdir().unwrap();
        let path = paged_file(dir.path(), Some(10));
        let (st, input) = store::local_file(&path).unwrap();
        let kept: Vec<u64> = (0..600).step_by(30).collect();
        let r = open_rows(&st, &input, &How::all(SourceFormat::Parquet, 256), &kept).unwrap().unwrap();
        let bytes = r.bytes.clone();
        let got: Vec<u64> = r
            .flat_map(|b| {
                let b = b.unwrap();
                b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()
            })
            .map(|v| v as u64)
            .collect();
        assert_eq!(got, kept);
        let read = bytes.load(Ordering::Relaxed);
        assert!(read * 2 < input.len, "{read} bytes read of {} for 20 scattered rows of 600", input.len);
    }

    proptest::proptest! {
        #[test]
        fn a_selection_selects_exactly_the_rows_listed(mask in proptest::collection::vec(proptest::bool::ANY, 0..300)) {
            let rows: Vec<u64> = mask.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i as u64).collect();
            let total = mask.len() as u64;
            let mut got = Vec::new();
            let mut at = 0u64;
            for s in Vec::<parquet::arrow::arrow_reader::RowSelector>::from(selection(&rows, total)) {
                if !s.skip {
                    got.extend(at..at + s.row_count as u64);
                }
                at += s.row_count as u64;
            }
            proptest::prop_assert_eq!(at, total);
            proptest::prop_assert_eq!(got, rows);
        }
    }
}

#[cfg(test)]
mod kept_reads_tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    /// Never more reads at once than the limit, every reader gets its turn,
    /// and one waiting gives up when the stream stops.
    #[test]
    fn kept_reads_take_turns_and_a_stop_ends_the_wait() {
        let reads = KeptReads::new(2);
        let (now, most, done) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let turn = reads.enter(&|| false).expect("no stop");
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        now.fetch_sub(1, Ordering::SeqCst);
                        drop(turn);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(done.load(Ordering::SeqCst), 120);
        assert!(most.load(Ordering::SeqCst) <= 2, "{} reads at once", most.load(Ordering::SeqCst));

        let (a, b) = (reads.enter(&|| false).unwrap(), reads.enter(&|| false).unwrap());
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| reads.enter(&|| stop.load(Ordering::SeqCst)).is_none());
            stop.store(true, Ordering::SeqCst);
            assert!(waiter.join().unwrap(), "a stopped stream stops waiting");
        });
        drop((a, b));
        assert!(reads.enter(&|| true).is_some(), "a free turn is taken even while stopping");
    }
}

#[cfg(test)]
mod fault_tests {
    use super::*;

    /// A decoder that panics fails its file as bad data (a quarantine
    /// reason), and the reader ends there: the stream goes on.
    #[test]
    fn a_decoder_panic_is_bad_data_and_ends_the_file() {
        let schema = Arc::new(arrow_schema::Schema::empty());
        let mut r = FileReader {
            schema: schema.clone(),
            full_schema: schema,
            bytes: Arc::default(),
            batch_rows: 1,
            inner: Box::new(std::iter::from_fn(|| -> Option<Result<RecordBatch, SourceError>> {
                panic!("index out of bounds in a malformed page")
            })),
        };
        match r.next() {
            Some(Err(SourceError::BadData(m))) => assert!(m.contains("malformed page"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(r.next().is_none());
    }

    /// A local file rewritten in place after it was listed is not read as
    /// a mix of versions: the open is refused as transient, and the next
    /// listing sees the new version.
    #[test]
    fn a_file_changed_since_its_listing_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.avro");
        std::fs::write(&p, b"first version").unwrap();
        let (st, input) = store::local_file(&p).unwrap();
        std::fs::write(&p, b"second, longer version").unwrap();
        let e = st.read(&input, &AtomicU64::new(0)).unwrap_err();
        assert!(e.is_transient() && e.to_string().contains("changed since it was listed"), "{e}");
    }
}
