//! Where source files live: a local directory, an S3-compatible bucket or
//! HDFS. Local files are read with plain file I/O; object stores through
//! the `object_store` crate (`hdfs-native-object-store` for HDFS, a
//! pure-Rust client: no JVM in fink), driven from the stream's own thread
//! on one small shared async runtime.
//!
//! Every store is listed the same way (sorted paths relative to the root,
//! the checkpoint keys) and read the same way (whole small files, byte
//! ranges of large ones), so local, S3 and HDFS copies of a night share
//! their progress.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;

use super::error::SourceError;
use crate::config::{SecretValue, SourceFormat};

/// Files younger than this may still be being written; they wait a moment.
/// On object stores: a new or changed object is listed again after this
/// long and read only if its size and time did not change in between.
pub const SETTLE: Duration = Duration::from_millis(300);

/// Default time between two listings of a remote source (local sources
/// are also told of new files by the filesystem).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(2000);

/// A source root as configured: what a stream reads. Two equal roots read
/// the same files with the same credentials.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Root {
    Local(PathBuf),
    Remote(Remote),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Remote {
    /// `s3://bucket/prefix` or `hdfs://host:port/path`: what messages name.
    /// It never holds a secret.
    pub url: String,
    pub kind: RemoteKind,
    /// The prefix under the bucket or the namenode, without slashes around.
    pub prefix: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RemoteKind {
    S3 {
        bucket: String,
        endpoint: Option<String>,
        region: Option<String>,
        access_key: Option<SecretValue>,
        secret_key: Option<SecretValue>,
        allow_http: bool,
    },
    Hdfs {
        /// `hdfs://host:port`
        namenode: String,
        user: Option<String>,
    },
    /// An object store held by this process, registered under `name` with
    /// [`register_memory`]: the engine's tests drive streams over it
    /// without a server. fink.toml never names one.
    Memory { name: String },
}

/// The process's registered in-memory object stores.
fn memory_stores() -> &'static Mutex<HashMap<String, Arc<dyn ObjectStore>>> {
    static M: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// Make `os` the store that a [`RemoteKind::Memory`] root named `name`
/// reads (an `object_store::memory::InMemory`, or a wrapper of one that
/// injects faults).
pub fn register_memory(name: &str, os: Arc<dyn ObjectStore>) {
    memory_stores().lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), os);
}

impl Root {
    /// What messages and status show: the directory or the URL.
    pub fn display(&self) -> String {
        match self {
            Root::Local(p) => p.display().to_string(),
            Root::Remote(r) => r.url.clone(),
        }
    }

    pub fn local(&self) -> Option<&Path> {
        match self {
            Root::Local(p) => Some(p),
            Root::Remote(_) => None,
        }
    }
}

pub use crate::config::validate::{check_url, scheme_of, SCHEMES};

/// The async runtime object stores run on, shared by every stream: two
/// workers, as the I/O waits and the decoding runs on the streams' threads.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fink-io")
            .enable_all()
            .build()
            .expect("start the I/O runtime")
    })
}

/// One input file as listed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Input {
    /// Path relative to the source root, with `/` separators: the
    /// checkpoint key.
    pub rel: String,
    pub len: u64,
    /// Its modification time (ms since the epoch, the store's clock):
    /// with the length, its identity where the store has no ETag.
    pub modified_ms: u64,
    /// The store's ETag or version, if it gives one.
    pub etag: Option<String>,
}

impl Input {
    /// What tells two versions of a file apart ([`checkpoint::identity`]):
    /// never ctime, so chmod, chown and renames change nothing.
    pub fn identity(&self) -> u32 {
        super::checkpoint::identity(self.len, self.modified_ms, self.etag.as_deref())
    }

    pub fn listed(&self) -> super::checkpoint::Listed {
        super::checkpoint::Listed { rel: self.rel.clone(), id: self.identity(), modified_ms: self.modified_ms }
    }
}

/// A source root opened for listing and reading.
pub struct Store {
    root: Root,
    kind: Kind,
    /// Remote listings: size and time of each object at the last listing,
    /// to read only objects that stopped changing.
    seen: Mutex<HashMap<String, (u64, u64)>>,
}

enum Kind {
    Local(PathBuf),
    Object { os: Arc<dyn ObjectStore>, prefix: ObjPath },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.root.display())
    }
}

/// Longest wait for one listing or read of a remote store: some clients
/// (HDFS's, with its namenode down) retry on their own without end.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Run one remote operation on the I/O runtime, bounded by [`OP_TIMEOUT`].
/// Every failure of a store is transient for the file: a missing object
/// was deleted since the listing (the next listing tells), a failed
/// precondition means it changed (the next listing tells too).
pub async fn bounded<T>(
    what: &str,
    fut: impl std::future::Future<Output = object_store::Result<T>>,
) -> Result<T, SourceError> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(r) => r.map_err(|e| store_error(what, e)),
        Err(_) => Err(timed_out(what)),
    }
}

/// A request that got no answer in time.
pub fn timed_out(what: &str) -> SourceError {
    SourceError::Transient(format!("{what}: no answer within {} s", OP_TIMEOUT.as_secs()))
}

fn store_error(what: &str, e: object_store::Error) -> SourceError {
    SourceError::Transient(match e {
        object_store::Error::NotFound { .. } => format!("{what}: not found (gone since it was listed)"),
        object_store::Error::Precondition { .. } => format!("{what}: changed since it was listed"),
        e => format!("{what}: {}", flatten(&e)),
    })
}

/// A local I/O error: transient for the file (permissions, descriptors,
/// a stale handle or a disk error may pass; a vanished file is not listed
/// again).
pub fn io_error(what: &str, e: &std::io::Error) -> SourceError {
    SourceError::Transient(format!("{what}: {e}"))
}

/// An error with its sources, on one line: object_store's top-level
/// messages say only "Generic S3 error".
fn flatten(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = s.source();
    }
    out
}

impl Store {
    pub fn open(root: &Root) -> Result<Arc<Store>, SourceError> {
        let kind = match root {
            Root::Local(p) => Kind::Local(p.clone()),
            Root::Remote(r) => Kind::Object { os: object_store_for(r)?, prefix: ObjPath::from(r.prefix.as_str()) },
        };
        Ok(Arc::new(Store { root: root.clone(), kind, seen: Mutex::new(HashMap::new()) }))
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// An in-process store: nothing is written to it concurrently by
    /// another process's clock, so its listings need no settle pause.
    fn is_memory(&self) -> bool {
        matches!(&self.root, Root::Remote(Remote { kind: RemoteKind::Memory { .. }, .. }))
    }

    /// An identity for sharing decoded files between streams: equal for
    /// streams reading the same root.
    pub fn id(&self) -> String {
        self.root.display()
    }

    /// Every input file, sorted by path (nights in order), without hidden
    /// or temporary files, Spark's markers, or files still being written.
    pub fn list(&self, format: SourceFormat) -> Result<Vec<Input>, SourceError> {
        self.list_with(format, true)
    }

    /// Every input file as it is now, young ones too: for commands that
    /// read files once (`--data`), where nothing is being followed.
    pub fn list_now(&self, format: SourceFormat) -> Result<Vec<Input>, SourceError> {
        self.list_with(format, false)
    }

    fn list_with(&self, format: SourceFormat, settle: bool) -> Result<Vec<Input>, SourceError> {
        match &self.kind {
            Kind::Local(root) => list_local(root, format, settle).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => SourceError::Fatal(e.to_string()),
                _ => io_error("listing", &e),
            }),
            Kind::Object { os, prefix } => {
                let first = list_objects(os, prefix, format)?;
                let changed = {
                    let seen = self.seen.lock().unwrap();
                    first.iter().any(|i| seen.get(&i.rel) != Some(&(i.len, i.modified_ms)))
                };
                // New or changed objects: read only once two listings agree.
                let settled = if changed {
                    if !self.is_memory() {
                        std::thread::sleep(SETTLE);
                    }
                    agreeing(first, &list_objects(os, prefix, format)?)
                } else {
                    first
                };
                *self.seen.lock().unwrap() = settled.iter().map(|i| (i.rel.clone(), (i.len, i.modified_ms))).collect();
                Ok(settled)
            }
        }
    }

    /// A whole file, as listed: a local file whose length or time differs
    /// from the listing's, or an object whose ETag (or time) does, is
    /// refused as changed, never read as a mix of versions.
    pub fn read(&self, input: &Input, counter: &AtomicU64) -> Result<Bytes, SourceError> {
        match &self.kind {
            Kind::Local(root) => {
                let what = || format!("cannot read {}", input.rel);
                let mut f = std::fs::File::open(root.join(&input.rel)).map_err(|e| io_error(&what(), &e))?;
                check_unchanged(&f, input)?;
                let mut b = Vec::with_capacity(input.len as usize);
                std::io::Read::read_to_end(&mut f, &mut b).map_err(|e| io_error(&what(), &e))?;
                counter.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(Bytes::from(b))
            }
            Kind::Object { os, prefix } => {
                let path = child(prefix, &input.rel);
                let what = format!("GET {}", self.url_of(&input.rel));
                let opts = same_version(input, None);
                let b = runtime().block_on(bounded(&what, async { os.get_opts(&path, opts).await?.bytes().await }))?;
                counter.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(b)
            }
        }
    }

    /// Where a file is, for messages.
    pub fn url_of(&self, rel: &str) -> String {
        match &self.root {
            Root::Local(p) => p.join(rel).display().to_string(),
            Root::Remote(r) => format!("{}/{rel}", r.url.trim_end_matches('/')),
        }
    }

    /// The object store and the object's path, for remote stores.
    pub fn object_path(&self, rel: &str) -> Option<(Arc<dyn ObjectStore>, ObjPath)> {
        match &self.kind {
            Kind::Local(_) => None,
            Kind::Object { os, prefix } => Some((os.clone(), child(prefix, rel))),
        }
    }

    /// The local path of a file, for local stores.
    pub fn local_path(&self, rel: &str) -> Option<PathBuf> {
        match &self.kind {
            Kind::Local(root) => Some(root.join(rel)),
            Kind::Object { .. } => None,
        }
    }
}

/// The objects of `first` that `second` lists with the same size and time:
/// one still being written (its size changing) waits for a later listing.
fn agreeing(first: Vec<Input>, second: &[Input]) -> Vec<Input> {
    let again: HashMap<&str, (u64, u64)> = second.iter().map(|i| (i.rel.as_str(), (i.len, i.modified_ms))).collect();
    first.into_iter().filter(|i| again.get(i.rel.as_str()) == Some(&(i.len, i.modified_ms))).collect()
}

fn child(prefix: &ObjPath, rel: &str) -> ObjPath {
    let mut p = prefix.clone();
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        p = p.join(part);
    }
    p
}

/// A GET of `input` as listed (its ETag, or unmodified since its time):
/// the store refuses it if the object changed since.
pub fn same_version(input: &Input, range: Option<std::ops::Range<u64>>) -> object_store::GetOptions {
    let mut o = object_store::GetOptions { range: range.map(Into::into), ..Default::default() };
    match &input.etag {
        Some(e) => o.if_match = Some(e.clone()),
        None => {
            o.if_unmodified_since =
                chrono::DateTime::from_timestamp_millis(input.modified_ms as i64).filter(|_| input.modified_ms > 0)
        }
    }
    o
}

/// A local file opened for reading is the version listed: same length and
/// modification time (an in-place rewrite since is not read as a mix).
pub fn check_unchanged(f: &std::fs::File, input: &Input) -> Result<(), SourceError> {
    let meta = f.metadata().map_err(|e| io_error(&format!("cannot read {}", input.rel), &e))?;
    if meta.len() != input.len || modified_ms(&meta) != input.modified_ms {
        return Err(SourceError::Transient(format!("{} changed since it was listed", input.rel)));
    }
    Ok(())
}

fn object_store_for(r: &Remote) -> Result<Arc<dyn ObjectStore>, SourceError> {
    // Our own loop retries with backoff and reports the stall; the
    // client's retries stay short so a stop or a reload is not held up.
    let retry = object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
        backoff: Default::default(),
    };
    let client = object_store::ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(60));
    match &r.kind {
        RemoteKind::S3 { bucket, endpoint, region, access_key, secret_key, allow_http } => {
            // allow_http is a client option: set after the others, it stays.
            let mut b = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(region.clone().unwrap_or_else(|| "us-east-1".into()))
                .with_retry(retry)
                .with_client_options(client.with_allow_http(*allow_http));
            if let Some(e) = endpoint {
                b = b.with_endpoint(e);
            }
            match (access_key, secret_key) {
                (Some(a), Some(s)) => b = b.with_access_key_id(a.expose()).with_secret_access_key(s.expose()),
                // Anonymous reads of a public bucket.
                (None, None) => b = b.with_skip_signature(true),
                _ => {
                    return Err(SourceError::Fatal(format!(
                        "{}: give both access_key and secret_key, or neither",
                        r.url
                    )))
                }
            }
            Ok(Arc::new(b.build().map_err(|e| SourceError::Fatal(format!("{}: {}", r.url, flatten(&e))))?))
        }
        RemoteKind::Memory { name } => memory_stores()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| SourceError::Fatal(format!("{}: no in-memory store registered as {name:?}", r.url))),
        RemoteKind::Hdfs { namenode, user } => {
            let _guard = runtime().enter();
            let mut b =
                hdfs_native::ClientBuilder::new().with_url(namenode).with_io_runtime(runtime().handle().clone());
            if let Some(u) = user {
                b = b.with_user(u);
            }
            let client = b.build().map_err(|e| SourceError::Fatal(format!("{}: {}", r.url, flatten(&e))))?;
            Ok(Arc::new(hdfs_native_object_store::HdfsObjectStore::new(client)))
        }
    }
}

/// Does `name` (a file name) look like an input file of `format`? Hidden
/// files, temporary and in-progress files and Spark's markers (`_SUCCESS`,
/// `.crc`) are not.
pub fn is_input_name(name: &str, format: SourceFormat) -> bool {
    if name.starts_with('.')
        || name.starts_with('_')
        || name.ends_with(".tmp")
        || name.ends_with(".crc")
        || name.ends_with(".inprogress")
    {
        return false;
    }
    match format {
        SourceFormat::Parquet => name.ends_with(".parquet"),
        SourceFormat::Avro => name.ends_with(".avro") || name.ends_with(".avro.gz"),
    }
}

/// A directory that is never listed: hidden, or Spark's `_temporary`.
fn is_skipped_dir(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

fn list_objects(os: &Arc<dyn ObjectStore>, prefix: &ObjPath, format: SourceFormat) -> Result<Vec<Input>, SourceError> {
    let prefix_opt = (!prefix.as_ref().is_empty()).then_some(prefix);
    let metas: Vec<object_store::ObjectMeta> =
        runtime().block_on(bounded(&format!("LIST {prefix}"), os.list(prefix_opt).try_collect()))?;
    let skip = prefix.parts().count();
    let mut out: Vec<Input> = metas
        .into_iter()
        .filter_map(|m| {
            let parts: Vec<String> = m.location.parts().skip(skip).map(|p| p.as_ref().to_string()).collect();
            let (name, dirs) = parts.split_last()?;
            if dirs.iter().any(|d| is_skipped_dir(d)) || !is_input_name(name, format) {
                return None;
            }
            Some(Input {
                rel: parts.join("/"),
                len: m.size,
                modified_ms: m.last_modified.timestamp_millis().max(0) as u64,
                etag: m.e_tag.or(m.version),
            })
        })
        .collect();
    out.sort();
    Ok(out)
}

fn list_local(root: &Path, format: SourceFormat, settle: bool) -> std::io::Result<Vec<Input>> {
    let mut out = Vec::new();
    let now = SystemTime::now();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if dir == root => return Err(e),
            Err(_) => continue,
        };
        for entry in rd.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if ft.is_dir() {
                if !is_skipped_dir(name) {
                    stack.push(path);
                }
            } else if is_input_name(name, format) {
                let Ok(meta) = entry.metadata() else { continue };
                let settled = !settle
                    || meta.modified().map(|t| now.duration_since(t).unwrap_or_default() >= SETTLE).unwrap_or(true)
                    || is_complete(&path, &meta);
                if settled {
                    let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
                    out.push(Input { rel, len: meta.len(), modified_ms: modified_ms(&meta), etag: None });
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Path -> (length, modification time) when it was seen complete.
type Complete = HashMap<PathBuf, (u64, Option<SystemTime>)>;

/// Local files known to be complete although young: renamed into place or
/// closed after writing (inotify's `IN_MOVED_TO` and `IN_CLOSE_WRITE`,
/// seen by `fink run`'s watch of its local sources), with the length and
/// time they had then. They are read at once; other young files wait
/// [`SETTLE`], as they may still be growing.
fn complete_files() -> &'static Mutex<Complete> {
    static C: OnceLock<Mutex<Complete>> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// `path` was renamed into place or closed after writing: complete as it
/// is now. A later change of its length or time makes it young again.
pub fn mark_complete(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    if !meta.is_file() {
        return;
    }
    let now = SystemTime::now();
    let mut c = complete_files().lock().unwrap_or_else(|p| p.into_inner());
    // Past SETTLE a file needs no mark: only the young ones are kept.
    c.retain(|_, (_, t)| t.is_some_and(|t| now.duration_since(t).unwrap_or_default() < SETTLE * 4));
    c.insert(absolute(path), (meta.len(), meta.modified().ok()));
}

/// Keys are absolute: watch events name absolute paths, a source root may
/// be relative to the directory fink runs in.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn is_complete(path: &Path, meta: &std::fs::Metadata) -> bool {
    let c = complete_files().lock().unwrap_or_else(|p| p.into_inner());
    c.get(&absolute(path)).is_some_and(|&(len, t)| len == meta.len() && t.is_some() && t == meta.modified().ok())
}

/// One local file as an [`Input`] of its parent directory (tests, and
/// `filter test`/`validate --data` given a single file).
pub fn local_file(path: &Path) -> std::io::Result<(Arc<Store>, Input)> {
    let meta = std::fs::metadata(path)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let store = Store::open(&Root::Local(dir)).expect("local stores always open");
    Ok((store, Input { rel: name, len: meta.len(), modified_ms: modified_ms(&meta), etag: None }))
}

/// A file's modification time in ms since the epoch (0 if unknown).
pub fn modified_ms(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_connecting() {
        for ok in ["/data/science", "science", "file:///data", "s3://fink-science/ztf", "hdfs://nn:8020/user/fink"] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("ftp://host/x", "unknown scheme \"ftp\""),
            ("s3://", "needs a bucket"),
            ("s3://Bad_Bucket!/x", "not a valid bucket"),
            ("hdfs:///path", "needs the namenode"),
            ("hdfs://nn:port/x", "not a port"),
            ("file://relative", "absolute path"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_young_file_is_listed_once_known_complete_and_not_after_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.parquet");
        // Times ahead of now keep the file young however slow the machine.
        let young = |bytes: &[u8], ahead: u64| {
            std::fs::write(&p, bytes).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(SystemTime::now() + Duration::from_secs(ahead)).unwrap();
        };
        let listed = || list_local(dir.path(), SourceFormat::Parquet, true).unwrap().len();
        young(b"part", 60);
        assert_eq!(listed(), 0, "a young file may still grow");
        // Renamed into place, or closed after writing: complete.
        mark_complete(&p);
        assert_eq!(listed(), 1);
        // Written again since: young again until it settles or is marked.
        young(b"part, longer", 61);
        assert_eq!(listed(), 0);
        mark_complete(&p);
        assert_eq!(listed(), 1);
    }

    #[test]
    fn an_object_whose_size_changed_between_two_listings_is_not_read_yet() {
        let i = |rel: &str, len: u64, t: u64| Input { rel: rel.into(), len, modified_ms: t, etag: None };
        let first = vec![i("a.parquet", 10, 1), i("b.parquet", 10, 1), i("c.parquet", 5, 1)];
        let second = [i("a.parquet", 10, 1), i("b.parquet", 20, 2)];
        // b grew, c vanished: only a is read now.
        assert_eq!(agreeing(first, &second), vec![i("a.parquet", 10, 1)]);
    }

    #[test]
    fn spark_markers_temporary_and_in_progress_files_are_not_inputs() {
        for name in ["_SUCCESS", ".part-0.parquet.crc", "part-0.parquet.inprogress", "x.parquet.tmp", ".hidden.parquet"]
        {
            assert!(!is_input_name(name, SourceFormat::Parquet), "{name}");
        }
        assert!(is_input_name("part-00000-abc.snappy.parquet", SourceFormat::Parquet));
        assert!(is_input_name("a.avro.gz", SourceFormat::Avro));
        assert!(is_skipped_dir("_temporary") && is_skipped_dir(".spark-staging"));
    }
}
