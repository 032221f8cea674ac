//! The whole stream engine without a broker: the real runner (listing,
//! progress, identity, prefetch, Parquet decoding, projection, Avro,
//! at-least-once delivery, its checkpoint file) over an in-memory object
//! store that misbehaves as real ones do, publishing to an in-memory topic.
//!
//! Property: whatever the arrival order, names, temp-then-rename commits,
//! store clocks (ahead, behind, an HDFS rename keeping an old time),
//! listings that leave a file out, failing reads, rewrites and crashes,
//! - progress on disk never covers a file whose alerts are not all
//!   published (checked after every run of the stream);
//! - once the writer stops, every alert is published: exactly once without
//!   a crash, and at most `max_in_flight` duplicates per crash (besides a
//!   file rewritten after a crash left it partly recorded: read again from
//!   its start); nothing is quarantined.
//!
//! The oracle decodes the topic with apache-avro (the writer is arrow-avro).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use proptest::prelude::*;

use super::*;
use crate::stream::checkpoint::Progress;
use crate::stream::store::{Remote, RemoteKind, Root};

const MAX_IN_FLIGHT: usize = 4;

/// An in-memory object store that shows the times of a store whose clock
/// is off (or of an HDFS rename, which keeps the old time), leaves objects
/// out of listings, fails reads, and can hide its ETags (HDFS has none).
#[derive(Debug)]
struct Flaky {
    inner: InMemory,
    /// The time the store shows for an object, when it is not the real one.
    shown: Mutex<HashMap<Path, DateTime<Utc>>>,
    omit: Mutex<HashSet<Path>>,
    failing_gets: AtomicU32,
    etags: bool,
}

impl fmt::Display for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flaky")
    }
}

impl Flaky {
    fn show(&self, mut m: ObjectMeta) -> ObjectMeta {
        if let Some(t) = self.shown.lock().unwrap().get(&m.location) {
            m.last_modified = *t;
        }
        if !self.etags {
            m.e_tag = None;
            m.version = None;
        }
        m
    }
}

fn unsupported(what: &str) -> object_store::Error {
    object_store::Error::NotImplemented { operation: what.into(), implementer: "Flaky".into() }
}

#[async_trait]
impl ObjectStore for Flaky {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(unsupported("put_multipart"))
    }

    async fn get_opts(&self, location: &Path, mut options: GetOptions) -> object_store::Result<GetResult> {
        if self.failing_gets.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(object_store::Error::Generic {
                store: "Flaky",
                source: "Input/output error (os error 5)".into(),
            });
        }
        // The time precondition holds against the time this store shows.
        if let Some(since) = options.if_unmodified_since.take() {
            let meta = self.show(self.inner.head(location).await?);
            // At the listing's precision (milliseconds), as stores compare.
            if meta.last_modified.timestamp_millis() > since.timestamp_millis() {
                return Err(object_store::Error::Precondition {
                    path: location.to_string(),
                    source: "modified since".into(),
                });
            }
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let omit = self.omit.lock().unwrap().clone();
        let metas: Vec<object_store::Result<ObjectMeta>> = futures::executor::block_on(
            self.inner
                .list(prefix)
                .filter(|m| std::future::ready(!matches!(m, Ok(m) if omit.contains(&m.location))))
                .collect::<Vec<_>>(),
        );
        let shown: Vec<_> = metas.into_iter().map(|m| m.map(|m| self.show(m))).collect();
        futures::stream::iter(shown).boxed()
    }

    async fn list_with_delimiter(&self, _prefix: Option<&Path>) -> object_store::Result<ListResult> {
        Err(unsupported("list_with_delimiter"))
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// One file of a case, as the writer will commit it.
#[derive(Debug, Clone)]
struct FileSpec {
    folder: u8,
    /// Spark's random part name: new files sort anywhere among old ones.
    uuid: u32,
    rows: u8,
    /// How far off fink's clock the store's time for it is, in minutes
    /// (negative: an HDFS rename of a file staged long ago, or a store
    /// clock behind; such folders look quiet and are sealed at once).
    skew_min: i16,
}

impl FileSpec {
    fn rel(&self) -> String {
        format!("night=2026120{}/part-{:08x}-c000.snappy.parquet", self.folder, self.uuid)
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// The file is written under `_temporary/` (not listed).
    Stage(usize),
    /// The file appears under its name: renamed from `_temporary/`, or put
    /// at once; again for a file already there (a new version, same bytes).
    Publish(usize),
    /// The file is left out of the listings of the next run.
    Omit(usize),
    /// The next reads fail (an I/O error, a timeout).
    FailReads(u8),
    /// The stream runs until it is idle.
    Run,
    /// The stream runs and the process dies before its nth record from now.
    Crash(u8),
}

fn op(files: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..files).prop_map(Op::Stage),
        4 => (0..files).prop_map(Op::Publish),
        1 => (0..files).prop_map(Op::Omit),
        1 => (1u8..4).prop_map(Op::FailReads),
        3 => Just(Op::Run),
        1 => (1u8..12).prop_map(Op::Crash),
    ]
}

fn case() -> impl Strategy<Value = (Vec<FileSpec>, bool, Vec<Op>)> {
    let file =
        (0u8..3, any::<u32>(), 1u8..6, prop_oneof![3 => Just(0i16), 1 => Just(-60), 1 => Just(-10), 1 => Just(10)])
            .prop_map(|(folder, uuid, rows, skew_min)| FileSpec { folder, uuid, rows, skew_min });
    (prop::collection::vec(file, 1..10), any::<bool>()).prop_flat_map(|(files, etags)| {
        let n = files.len();
        (Just(files), Just(etags), prop::collection::vec(op(n), 1..24))
    })
}

/// The schema of the test alerts: the candid tells which file and row.
fn parquet_of(f: usize, spec: &FileSpec) -> Bytes {
    let schema = Arc::new(Schema::new(vec![
        Field::new("objectId", DataType::Utf8, false),
        Field::new("candid", DataType::Int64, false),
    ]));
    let ids: Vec<i64> = (0..spec.rows as i64).map(|r| candid(f, r as u64)).collect();
    let names: Vec<String> = ids.iter().map(|c| format!("ZTF{c}")).collect();
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(names)), Arc::new(Int64Array::from(ids))])
            .unwrap();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    Bytes::from(out)
}

fn candid(f: usize, row: u64) -> i64 {
    (f as i64) * 1000 + row as i64
}

/// The spec every case starts from: a stream with at-least-once delivery
/// and a small `max_in_flight`, so crashes land between checkpoints.
fn base_spec() -> &'static StreamSpec {
    static SPEC: OnceLock<StreamSpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fink.toml");
        std::fs::write(
            &p,
            format!(
                "[cluster]\nbootstrap = [\"127.0.0.1:1\"]\nsecurity_protocol = \"PLAINTEXT\"\n\n\
                 [run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\ndelivery = \"at-least-once\"\nmax_in_flight = {MAX_IN_FLIGHT}\nbatch_size = 3\n\n\
                 [[topic]]\nname = \"t\"\n\n\
                 [[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"in\" }}\ntopic = \"t\"\n"
            ),
        )
        .unwrap();
        let mut o = crate::config::LoadOptions::new(&p);
        o.env_overrides = false;
        let loaded = crate::config::load(&o).unwrap_or_else(|e| panic!("{e}"));
        let mut specs = crate::stream::specs(&loaded, None, &crate::stream::night::Night::today()).unwrap();
        specs.remove(0)
    })
}

struct World {
    files: Vec<FileSpec>,
    store: Arc<Flaky>,
    spec: StreamSpec,
    topic: Arc<MemoryTopic>,
    staged: HashSet<usize>,
    published: HashSet<usize>,
    /// Files published again (a new version, the same rows).
    rewritten: HashSet<usize>,
    crashes: usize,
    _dir: tempfile::TempDir,
}

static CASE: AtomicUsize = AtomicUsize::new(0);

impl World {
    fn new(files: Vec<FileSpec>, etags: bool) -> World {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ =
                tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
        }
        let name = format!("engine-{}", CASE.fetch_add(1, Ordering::SeqCst));
        let store = Arc::new(Flaky {
            inner: InMemory::new(),
            shown: Mutex::default(),
            omit: Mutex::default(),
            failing_gets: AtomicU32::new(0),
            etags,
        });
        crate::stream::store::register_memory(&name, store.clone());
        let dir = tempfile::tempdir().unwrap();
        let mut spec = base_spec().clone();
        spec.source = Root::Remote(Remote {
            url: format!("memory://{name}"),
            kind: RemoteKind::Memory { name },
            prefix: String::new(),
        });
        spec.checkpoint_path = dir.path().join("s.checkpoint.json");
        spec.quarantine_log = dir.path().join("s.quarantine.jsonl");
        World {
            files,
            store,
            spec,
            topic: Arc::default(),
            staged: HashSet::new(),
            published: HashSet::new(),
            rewritten: HashSet::new(),
            crashes: 0,
            _dir: dir,
        }
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        futures::executor::block_on(f)
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Stage(k) => {
                if !self.staged.contains(&k) {
                    let tmp = Path::from(format!("_temporary/0/task_{k}/part-{:08x}.parquet", self.files[k].uuid));
                    Self::block(self.store.inner.put(&tmp, parquet_of(k, &self.files[k]).into())).unwrap();
                    self.staged.insert(k);
                }
            }
            Op::Publish(k) => {
                let f = &self.files[k];
                let to = Path::from(f.rel());
                if self.staged.remove(&k) {
                    let tmp = Path::from(format!("_temporary/0/task_{k}/part-{:08x}.parquet", f.uuid));
                    Self::block(self.store.inner.rename(&tmp, &to)).unwrap();
                } else {
                    Self::block(self.store.inner.put(&to, parquet_of(k, f).into())).unwrap();
                }
                if f.skew_min != 0 {
                    let ms = crate::stream::now_ms() as i64 + f.skew_min as i64 * 60_000;
                    let t = DateTime::from_timestamp_millis(ms).expect("a time in range");
                    self.store.shown.lock().unwrap().insert(to, t);
                }
                if !self.published.insert(k) {
                    self.rewritten.insert(k);
                }
            }
            Op::Omit(k) => {
                self.store.omit.lock().unwrap().insert(Path::from(self.files[k].rel()));
            }
            Op::FailReads(n) => self.store.failing_gets.store(n as u32, Ordering::SeqCst),
            Op::Run => self.run(None),
            Op::Crash(n) => self.run(Some(n as usize)),
        }
    }

    /// Run the stream until it is idle (or crashes), then check its
    /// progress on disk against what the topic holds.
    fn run(&mut self, crash_after: Option<usize>) {
        let before = self.topic.records().len();
        self.topic.crash_at(crash_after.map(|n| before + n));
        let p = Prepared::in_memory(self.spec.clone(), self.topic.clone()).unwrap();
        let mut s = RunningStream::start_prepared(
            p,
            StartOptions { until_idle: true, shutdown_timeout: Duration::from_secs(5) },
        );
        let state = s.wait_until(Instant::now() + Duration::from_secs(60)).expect("the stream ends once idle");
        self.topic.crash_at(None);
        match state {
            State::Stopped => {}
            State::Failed(m) if crash_after.is_some() && m.contains("simulated crash") => self.crashes += 1,
            other => panic!("the stream ended {other:?}"),
        }
        // Omissions last one run; failures too.
        self.store.omit.lock().unwrap().clear();
        self.store.failing_gets.store(0, Ordering::SeqCst);
        self.check_progress();
    }

    /// What the store lists now, as the oracle sees it (nothing omitted).
    fn listing(&self) -> Vec<crate::stream::checkpoint::Listed> {
        let store = Store::open(&self.spec.source).unwrap();
        let mut l: Vec<_> =
            store.list(crate::config::SourceFormat::Parquet).unwrap().iter().map(Input::listed).collect();
        l.sort_by(|a, b| a.rel.cmp(&b.rel));
        l
    }

    fn published_counts(&self) -> BTreeMap<i64, usize> {
        let mut out = BTreeMap::new();
        for (key, value) in self.topic.records() {
            let schema = apache_avro::Schema::parse_str(std::str::from_utf8(&key).unwrap()).unwrap();
            let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build().unwrap();
            let v = reader.read_value(&mut &value[..]).unwrap();
            let apache_avro::types::Value::Record(fields) = v else { panic!("not a record: {v:?}") };
            let c = fields.iter().find(|(n, _)| n == "candid").map(|(_, v)| v.clone());
            let Some(apache_avro::types::Value::Long(c)) = c else { panic!("no candid in {fields:?}") };
            *out.entry(c).or_insert(0) += 1;
        }
        out
    }

    /// Every file that progress on disk says needs no reading has all its
    /// alerts in the topic.
    fn check_progress(&self) {
        if !self.spec.checkpoint_path.exists() {
            return;
        }
        let mut p = Progress::load(&self.spec.checkpoint_path, &self.spec.name).unwrap();
        let listing = self.listing();
        let plan = p.plan(&listing, crate::stream::now_ms());
        let counts = self.published_counts();
        let to_read: HashSet<&str> = plan.read.iter().map(|&i| listing[i].rel.as_str()).collect();
        let reread: Vec<&String> = plan.unresolved.iter().chain(&plan.waiting).collect();
        for (k, f) in self.files.iter().enumerate().filter(|(k, _)| self.published.contains(k)) {
            let rel = f.rel();
            if reread.iter().any(|folder| rel.starts_with(folder.as_str())) {
                continue;
            }
            // A file still to read: the rows before its saved position.
            let covered = if to_read.contains(rel.as_str()) { p.rows_done(&rel) } else { f.rows as u64 };
            for row in 0..covered {
                assert!(
                    counts.contains_key(&candid(k, row)),
                    "progress covers {rel} row {row}, never published (published: {counts:?})"
                );
            }
        }
    }

    /// The writer is done: the stream runs until nothing is left, then
    /// every alert of every published file is in the topic.
    fn finish(&mut self) {
        self.run(None);
        self.run(None);
        let counts = self.published_counts();
        let (mut expected, mut duplicates) = (0, 0);
        for (k, f) in self.files.iter().enumerate().filter(|(k, _)| self.published.contains(k)) {
            for row in 0..f.rows as u64 {
                expected += 1;
                let n = counts.get(&candid(k, row)).copied().unwrap_or(0);
                assert!(n >= 1, "{} row {row} was never published", f.rel());
                if self.crashes == 0 {
                    assert_eq!(n, 1, "{} row {row} published {n} times without a crash", f.rel());
                }
                // A file rewritten after a crash left it partly recorded is
                // read again from its start (the rule for a changed file):
                // its repeats are that rule's, not the crash bound's.
                if !self.rewritten.contains(&k) {
                    duplicates += n - 1;
                }
            }
        }
        // Failed reads, omissions and rewrites are never taken for bad data.
        let quarantined = std::fs::read_to_string(&self.spec.quarantine_log).unwrap_or_default();
        assert!(quarantined.is_empty(), "quarantined: {quarantined}");
        assert_eq!(counts.len(), expected, "alerts that no published file holds: {counts:?}");
        assert!(
            duplicates <= self.crashes * MAX_IN_FLIGHT,
            "{duplicates} duplicates after {} crashes (at most {MAX_IN_FLIGHT} each)",
            self.crashes
        );
    }
}

/// How many cases: `FINK_ENGINE_CASES`, or 2,000.
fn cases() -> u32 {
    std::env::var("FINK_ENGINE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: std::env::var("FINK_ENGINE_SHRINK").ok().and_then(|v| v.parse().ok()).unwrap_or(200), ..ProptestConfig::default() })]
    #[test]
    fn every_alert_published_once_however_files_arrive((files, etags, ops) in case()) {
        let mut w = World::new(files, etags);
        for op in &ops {
            w.apply(op);
        }
        w.finish();
    }
}

#[test]
fn a_late_file_under_an_old_time_in_a_sealed_folder_is_read() {
    // The hole of the old watermark: a night read and sealed, then a file
    // renamed into it keeping an old time (HDFS), sorting before the others.
    let files = vec![
        FileSpec { folder: 0, uuid: 0xf000_0000, rows: 3, skew_min: -60 },
        FileSpec { folder: 0, uuid: 0xf100_0000, rows: 2, skew_min: -60 },
        FileSpec { folder: 0, uuid: 0x0000_0001, rows: 4, skew_min: -60 },
    ];
    let mut w = World::new(files, false);
    for op in [Op::Publish(0), Op::Publish(1), Op::Run, Op::Stage(2), Op::Run, Op::Publish(2), Op::Crash(1), Op::Run] {
        w.apply(&op);
    }
    w.finish();
    assert_eq!(w.published_counts().len(), 9);
}
