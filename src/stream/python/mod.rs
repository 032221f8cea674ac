//! Python filters: users' functions (Fink's `userfilters/leveltwo.py`,
//! fink-filters' livestream filters) run in a pool of worker processes.
//! Batches go to a worker as Arrow IPC over its pipes; one boolean per row
//! comes back. A worker that dies or overruns its timeout is killed and
//! replaced; the batch is tried again by the caller.

pub mod bind;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use arrow_array::{Array, BooleanArray, RecordBatch};

use super::lock;
use serde_json::{json, Value};

/// The worker program, shipped inside the binary.
pub const WORKER: &str = include_str!("worker.py");

/// `[python]` as a stream runs it: two streams with equal settings share
/// one pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PythonSpec {
    pub interpreter: PathBuf,
    pub workers: usize,
    pub timeout: Duration,
    /// Failed attempts in a row (worker died or timed out) before the
    /// stream is failed.
    pub max_failures: u32,
    /// Workers keep converted columns for the next filter (`share_conversions`).
    pub share: bool,
    /// Rows per call when a stream decides a file's alerts first (`batch_rows`).
    pub batch_rows: usize,
}

/// Where a filter's function is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An importable module (`fink_filters.ztf.livestream...filter`).
    Module(String),
    /// A file, resolved against fink.toml's folder.
    File(PathBuf),
}

/// One Python filter of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PyFilter {
    pub name: String,
    pub target: Target,
    pub function: String,
    /// `args = [...]`: column paths, one per parameter.
    pub args: Option<Vec<String>>,
    /// The function takes the whole batch as one pandas DataFrame.
    pub dataframe: bool,
    /// `fields = {...}`: per argument (column, for a dataframe filter), the
    /// only struct fields the function reads.
    pub fields: Vec<(String, Vec<String>)>,
    /// A file target's content digest: an edit makes the stream's spec
    /// differ, and the workers load the new version.
    pub digest: u64,
    /// A file target's content as of the spec: the workers run this
    /// version, even after the file is edited (a stream kept running by a
    /// rejected reload goes on with the code it was built with).
    pub source: Option<Arc<String>>,
}

impl PyFilter {
    /// `python = "module:function"` or `"path/file.py:function"`.
    pub fn parse(name: &str, text: &str, base: &std::path::Path) -> Result<PyFilter, String> {
        let (target, function) = text
            .rsplit_once(':')
            .filter(|(t, f)| !t.is_empty() && !f.is_empty())
            .ok_or_else(|| format!("python = {text:?}: expected \"module:function\" or \"file.py:function\""))?;
        let target = if target.ends_with(".py") || target.contains('/') {
            Target::File(base.join(target))
        } else {
            Target::Module(target.to_string())
        };
        let mut f = PyFilter {
            name: name.to_string(),
            target,
            function: function.to_string(),
            args: None,
            dataframe: false,
            fields: Vec::new(),
            digest: 0,
            source: None,
        };
        f.refresh_digest();
        Ok(f)
    }

    pub fn refresh_digest(&mut self) {
        if let Target::File(p) = &self.target {
            use std::hash::{Hash, Hasher};
            let text = std::fs::read_to_string(p).ok();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut h);
            self.digest = h.finish();
            self.source = text.map(Arc::new);
        }
    }

    /// What a worker knows this version of the filter by.
    fn load_id(&self) -> String {
        format!("{}#{:016x}", self.name, self.digest)
    }

    pub fn describe(&self) -> String {
        match &self.target {
            Target::Module(m) => format!("{m}:{}", self.function),
            Target::File(p) => format!("{}:{}", p.display(), self.function),
        }
    }

    fn load_request(&self) -> Value {
        let (kind, target) = match &self.target {
            Target::Module(m) => ("module", m.clone()),
            Target::File(p) => ("file", p.to_string_lossy().into_owned()),
        };
        json!({"op": "load", "id": self.load_id(), "kind": kind, "target": target,
               "function": self.function, "dataframe": self.dataframe,
               "source": self.source.as_deref()})
    }
}

/// Why a call did not give booleans.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The module did not import, or has no such function.
    Import { message: String, traceback: String },
    /// The function raised.
    Exception { message: String, traceback: String },
    /// It returned something other than one boolean per row.
    Return(String),
    /// Its arguments do not resolve to columns.
    Bind(String),
    /// The worker died (exit code or signal) or never started.
    Died(String),
    /// The worker passed `timeout_s` and was killed.
    Timeout(Duration),
    /// The stream is stopping.
    Stopped,
}

impl CallError {
    /// Worth trying again on a fresh worker.
    pub fn retriable(&self) -> bool {
        matches!(self, CallError::Died(_) | CallError::Timeout(_))
    }
    pub fn traceback(&self) -> Option<&str> {
        match self {
            CallError::Import { traceback, .. } | CallError::Exception { traceback, .. } if !traceback.is_empty() => {
                Some(traceback)
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Import { message, .. } => write!(f, "cannot import: {message}"),
            CallError::Exception { message, .. } => write!(f, "raised {message}"),
            CallError::Return(m) => write!(f, "{m}"),
            CallError::Bind(m) => write!(f, "{m}"),
            CallError::Died(m) => write!(f, "its worker died ({m})"),
            CallError::Timeout(t) => write!(f, "took longer than timeout_s ({} s); its worker was killed", t.as_secs()),
            CallError::Stopped => write!(f, "{}", super::shared::STOPPING),
        }
    }
}

/// Counters per filter, exported as Prometheus metrics.
#[derive(Debug, Default)]
pub struct FilterStats {
    pub batches: AtomicU64,
    pub rows_in: AtomicU64,
    pub rows_kept: AtomicU64,
    pub errors: AtomicU64,
    /// Microseconds spent inside the function.
    pub python_us: AtomicU64,
    /// Microseconds the worker spent converting Arrow columns to pandas.
    pub convert_us: AtomicU64,
    /// Argument columns a worker already held converted for another filter
    /// (or an earlier try) of the same batch.
    pub columns_reused: AtomicU64,
}

/// A filter's answer on a batch.
#[derive(Debug)]
pub struct Verdict {
    /// One boolean per row asked about.
    pub keep: BooleanArray,
    /// Seconds inside the function.
    pub seconds: f64,
    /// Seconds converting its arguments to pandas.
    pub convert_seconds: f64,
    /// Arguments the worker held converted already.
    pub reused: u64,
}

/// Every Python filter's counters in this process, by filter name.
pub fn filter_stats(name: &str) -> Arc<FilterStats> {
    let mut all = lock(stats_registry());
    all.entry(name.to_string()).or_default().clone()
}

fn stats_registry() -> &'static Mutex<BTreeMap<String, Arc<FilterStats>>> {
    static ALL: OnceLock<Mutex<BTreeMap<String, Arc<FilterStats>>>> = OnceLock::new();
    ALL.get_or_init(Default::default)
}

/// (filter, counters) of every Python filter that ran here.
pub fn all_filter_stats() -> Vec<(String, Arc<FilterStats>)> {
    lock(stats_registry()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A function's parameters and how many of them (the last ones) have
/// defaults.
pub type Params = (Vec<String>, usize);

/// How much a worker keeps converted between calls (entries, and their
/// Arrow IPC bytes). Streams on one source move through its batches
/// together, so a batch's columns are asked for again within moments; a
/// few batches' worth is all that is ever reused.
const CACHE_ENTRIES: usize = 48;
const CACHE_BYTES: usize = 48 << 20;
/// How long a call waits for the busy worker that holds its columns.
const AFFINITY_WAIT: Duration = Duration::from_secs(1);

/// A column's content key: the xxh3-128 of its Arrow IPC encoding, so two
/// keys are equal only for the same values under the same name and type.
type ColumnKey = u128;

/// Workers started to replace one that died or timed out.
pub static WORKER_RESTARTS: AtomicU64 = AtomicU64::new(0);

type Frame = (Value, Vec<u8>);

/// How a worker process came to be, and so how it is ended and its exit
/// status learnt.
enum Proc {
    /// Started by fink: its own child.
    Spawned(Child),
    /// Forked from the pool's template, which reaps it.
    Forked { pid: i32, template: Arc<Mutex<TemplateState>> },
}

struct Worker {
    /// Tells workers apart while they are lent out.
    id: u64,
    proc: Proc,
    /// Requests go here: the child's stdin, or the forked worker's socket.
    stdin: Box<dyn Write + Send>,
    rx: Receiver<std::io::Result<Frame>>,
    /// Load ids this worker imported, with (parameters, how many have defaults).
    loaded: HashMap<String, (Vec<String>, usize)>,
    /// Filter name -> the digest loaded: a new digest means a new worker.
    versions: HashMap<String, u64>,
    /// The columns this worker holds converted to pandas, oldest first,
    /// with their IPC sizes. fink decides what it keeps and evicts, so this
    /// is exactly the worker's cache.
    cache: VecDeque<(ColumnKey, usize)>,
    /// Whether it may hand one conversion to several filters (pandas'
    /// copy-on-write, pandas 3 and later); without it every call converts.
    shares: bool,
}

/// Reads answers on a thread of its own, so that the caller can wait with
/// a timeout.
fn answers(mut r: impl Read + Send + 'static) -> Result<Receiver<std::io::Result<Frame>>, CallError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("fink-python-reader".into())
        .spawn(move || loop {
            let r = read_frame(&mut r);
            let end = r.is_err();
            if tx.send(r).is_err() || end {
                break;
            }
        })
        .map_err(|e| CallError::Died(e.to_string()))?;
    Ok(rx)
}

fn next_worker_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Worker {
    fn spawn(spec: &PythonSpec) -> Result<Worker, CallError> {
        let mut child = Command::new(&spec.interpreter)
            .arg("-u")
            .arg("-c")
            .arg(WORKER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| CallError::Died(format!("cannot start {}: {e}", spec.interpreter.display())))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let rx = answers(stdout)?;
        Ok(Worker {
            id: next_worker_id(),
            proc: Proc::Spawned(child),
            stdin: Box::new(stdin),
            rx,
            loaded: HashMap::new(),
            versions: HashMap::new(),
            cache: VecDeque::new(),
            shares: false,
        })
    }

    fn request(
        &mut self,
        header: &Value,
        body: &[u8],
        timeout: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<Frame, CallError> {
        let h = serde_json::to_vec(header).expect("json");
        let mut msg = Vec::with_capacity(12 + h.len() + body.len());
        msg.extend_from_slice(&(h.len() as u32).to_le_bytes());
        msg.extend_from_slice(&h);
        msg.extend_from_slice(&(body.len() as u64).to_le_bytes());
        msg.extend_from_slice(body);
        if self.stdin.write_all(&msg).and_then(|_| self.stdin.flush()).is_err() {
            return Err(CallError::Died(self.exit_status()));
        }
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CallError::Timeout(timeout));
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(Ok(frame)) => return Ok(frame),
                Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => return Err(CallError::Died(self.exit_status())),
                Err(RecvTimeoutError::Timeout) if stop() => return Err(CallError::Stopped),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn exit_status(&mut self) -> String {
        use std::os::unix::process::ExitStatusExt;
        // The pipe closed: the process is gone or about to be.
        let describe = |code: Option<i64>, signal: Option<i64>| match (code, signal) {
            (_, Some(sig)) => Some(format!("killed by signal {sig}")),
            (Some(c), _) => Some(format!("exit code {c}")),
            _ => None,
        };
        match &mut self.proc {
            Proc::Spawned(child) => {
                let deadline = Instant::now() + Duration::from_secs(2);
                loop {
                    match child.try_wait() {
                        Ok(Some(st)) => {
                            return describe(st.code().map(i64::from), st.signal().map(i64::from))
                                .unwrap_or_else(|| st.to_string())
                        }
                        Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                        _ => return "its pipe closed".into(),
                    }
                }
            }
            Proc::Forked { pid, template } => {
                // Its parent, the template, waits for it (up to 2 s) and says.
                let mut st = lock(template);
                if let TemplateState::Ready(t) = &mut *st {
                    let req = json!({"op": "status", "pid": *pid});
                    if let Ok((h, _)) = t.w.request(&req, &[], Duration::from_secs(5), &|| false) {
                        let num = |k: &str| h.get(k).and_then(Value::as_i64);
                        if let Some(d) = describe(num("code"), num("signal")) {
                            return d;
                        }
                    }
                }
                "its connection closed".into()
            }
        }
    }

    fn kill(self) {
        match self.proc {
            Proc::Spawned(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            // The template reaps it.
            Proc::Forked { pid, .. } => {
                crate::sys::send_signal(pid, crate::sys::SIGKILL);
            }
        }
    }
}

/// A worker that imported the pool's module filters and never runs one:
/// new workers are forked from it, so that fink-filters and what it imports
/// (pandas, pyspark, astropy: seconds of CPU) are imported once per pool,
/// not once per worker, and a worker that died is replaced at once.
struct Template {
    w: Worker,
    listener: std::os::unix::net::UnixListener,
    /// A private folder (0700) holding the socket.
    dir: PathBuf,
    forks: u64,
}

enum TemplateState {
    /// Started by the first load of a module filter.
    Unstarted,
    Ready(Box<Template>),
    /// It died or could not fork: workers are started from scratch.
    Unusable,
}

impl Template {
    fn start(spec: &PythonSpec) -> Result<Template, String> {
        use std::os::unix::fs::DirBuilderExt;
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let dir = std::env::temp_dir().join(format!(
            "fink-python-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        // Folders of fink processes that were killed (nothing else removes them).
        for e in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.strip_prefix("fink-python-").and_then(|r| r.split('-').next()?.parse::<i32>().ok());
            if pid.is_some_and(|p| !crate::sys::process_exists(p)) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let listener = std::os::unix::net::UnixListener::bind(dir.join("s"))
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let w = Worker::spawn(spec).map_err(|e| e.to_string())?;
        Ok(Template { w, listener, dir, forks: 0 })
    }

    /// A new worker holding everything the template loaded.
    fn fork(&mut self, spec: &PythonSpec, state: &Arc<Mutex<TemplateState>>) -> Result<Worker, CallError> {
        self.forks += 1;
        let token = format!("{}-{}", std::process::id(), self.forks);
        let socket = self.dir.join("s");
        let req = json!({"op": "fork", "socket": socket.to_string_lossy(), "token": token});
        let wait = spec.timeout.min(Duration::from_secs(30));
        let (h, _) = self.w.request(&req, &[], wait, &|| false)?;
        let pid = match h.get("pid").and_then(Value::as_i64) {
            Some(p) if h.get("ok") == Some(&Value::Bool(true)) => p as i32,
            _ => return Err(answer_error(&h)),
        };
        let until = Instant::now() + wait;
        let stream = loop {
            match self.listener.accept() {
                Ok((mut s, _)) => {
                    let left = until.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
                    let hello = s
                        .set_nonblocking(false)
                        .and_then(|_| s.set_read_timeout(Some(left)))
                        .and_then(|_| read_frame(&mut s))
                        .and_then(|h| s.set_read_timeout(None).map(|_| h));
                    // Anything else is a copy that connected too late for an
                    // earlier request: dropped.
                    if matches!(&hello, Ok((h, _)) if h.get("token").and_then(Value::as_str) == Some(token.as_str())) {
                        break s;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    crate::sys::send_signal(pid, crate::sys::SIGKILL);
                    let why = if e.kind() == std::io::ErrorKind::WouldBlock {
                        "not within the timeout".into()
                    } else {
                        e.to_string()
                    };
                    return Err(CallError::Died(format!("a forked worker did not connect ({why})")));
                }
            }
        };
        let reader = stream.try_clone().map_err(|e| CallError::Died(e.to_string()))?;
        Ok(Worker {
            id: next_worker_id(),
            proc: Proc::Forked { pid, template: state.clone() },
            stdin: Box::new(stream),
            rx: answers(reader)?,
            loaded: self.w.loaded.clone(),
            // Module filters only, whose digest never changes.
            versions: HashMap::new(),
            cache: VecDeque::new(),
            shares: self.w.shares,
        })
    }

    fn end(self) {
        self.w.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_frame(r: &mut impl Read) -> std::io::Result<Frame> {
    let mut n4 = [0u8; 4];
    r.read_exact(&mut n4)?;
    let mut h = vec![0u8; u32::from_le_bytes(n4) as usize];
    r.read_exact(&mut h)?;
    let mut n8 = [0u8; 8];
    r.read_exact(&mut n8)?;
    let mut body = vec![0u8; u64::from_le_bytes(n8) as usize];
    r.read_exact(&mut body)?;
    let header = serde_json::from_slice(&h).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok((header, body))
}

fn answer_error(h: &Value) -> CallError {
    let s = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    match s("kind").as_str() {
        "import" => CallError::Import { message: s("error"), traceback: s("traceback") },
        "exception" => CallError::Exception { message: s("error"), traceback: s("traceback") },
        "return" => CallError::Return(s("error")),
        _ => CallError::Bind(s("error")),
    }
}

/// The workers of one `[python]` setting.
pub struct Pool {
    spec: PythonSpec,
    idle: Mutex<PoolState>,
    freed: Condvar,
    /// Each loaded filter version's parameters (the same in every worker):
    /// a call binds its arguments before it picks a worker.
    params: Mutex<HashMap<String, Params>>,
    /// What new workers are forked from.
    template: Arc<Mutex<TemplateState>>,
}

struct PoolState {
    idle: Vec<Worker>,
    /// Workers in existence (idle or lent).
    live: usize,
    /// What each lent worker will hold once its call is done: its cache and
    /// the columns of the call.
    lent: HashMap<u64, Vec<ColumnKey>>,
}

/// The pool for these settings, shared by every stream of this process
/// that has them; it ends (its workers killed) with its last stream.
pub fn pool(spec: &PythonSpec) -> Arc<Pool> {
    static POOLS: OnceLock<Mutex<HashMap<PythonSpec, Weak<Pool>>>> = OnceLock::new();
    let mut pools = lock(POOLS.get_or_init(Default::default));
    pools.retain(|_, w| w.strong_count() > 0);
    if let Some(p) = pools.get(spec).and_then(Weak::upgrade) {
        return p;
    }
    let p = Arc::new(Pool::new(spec.clone()));
    pools.insert(spec.clone(), Arc::downgrade(&p));
    p
}

impl Pool {
    pub fn new(spec: PythonSpec) -> Pool {
        Pool {
            spec,
            idle: Mutex::new(PoolState { idle: Vec::new(), live: 0, lent: HashMap::new() }),
            freed: Condvar::new(),
            params: Mutex::new(HashMap::new()),
            template: Arc::new(Mutex::new(TemplateState::Unstarted)),
        }
    }

    pub fn spec(&self) -> &PythonSpec {
        &self.spec
    }

    /// An idle worker, preferring the one that holds most of `keys` (the
    /// call's columns, with their sizes) converted. When a lent worker holds
    /// (or is being sent) more than half of those bytes, wait for it a
    /// moment rather than convert them again elsewhere: on a few cores the
    /// second conversion is CPU taken from everything else.
    fn checkout(&self, keys: &[(ColumnKey, usize)], stop: &dyn Fn() -> bool) -> Result<Worker, CallError> {
        let total: usize = keys.iter().map(|k| k.1).sum();
        let weight = |has: &dyn Fn(&ColumnKey) -> bool| keys.iter().filter(|k| has(&k.0)).map(|k| k.1).sum::<usize>();
        let until = Instant::now() + AFFINITY_WAIT;
        let mut st = lock(&self.idle);
        loop {
            let best = (0..st.idle.len())
                .map(|i| (i, weight(&|k| st.idle[i].cache.iter().any(|(c, _)| c == k))))
                .max_by_key(|x| x.1);
            let busy = st.lent.values().map(|held| weight(&|k| held.contains(k))).max().unwrap_or(0);
            let wait = busy * 2 > total && busy > best.map_or(0, |b| b.1) && Instant::now() < until;
            if let (Some((i, _)), false) = (best, wait) {
                // An idle worker without the columns is still better than a
                // new one, which would import every module first.
                let w = st.idle.swap_remove(i);
                let mut held: Vec<ColumnKey> = w.cache.iter().map(|c| c.0).collect();
                if w.shares {
                    held.extend(keys.iter().map(|k| k.0));
                }
                st.lent.insert(w.id, held);
                return Ok(w);
            }
            if !wait && st.live < self.spec.workers.max(1) {
                st.live += 1;
                drop(st);
                let w = self.new_worker().inspect_err(|_| self.lost(None))?;
                let held = if self.spec.share { keys.iter().map(|k| k.0).collect() } else { Vec::new() };
                lock(&self.idle).lent.insert(w.id, held);
                return Ok(w);
            }
            if stop() {
                return Err(CallError::Stopped);
            }
            let step = if wait { Duration::from_millis(10) } else { Duration::from_millis(100) };
            st = self.freed.wait_timeout(st, step).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn give_back(&self, w: Worker) {
        let mut st = lock(&self.idle);
        st.lent.remove(&w.id);
        st.idle.push(w);
        // Every waiter: one may be waiting for this worker in particular.
        self.freed.notify_all();
    }

    /// A worker is gone (or never started): make room for its replacement.
    fn lost(&self, id: Option<u64>) {
        let mut st = lock(&self.idle);
        st.live = st.live.saturating_sub(1);
        if let Some(id) = id {
            st.lent.remove(&id);
        }
        self.freed.notify_all();
    }

    fn retire(&self, w: Worker, replaced: bool) {
        let id = w.id;
        w.kill();
        if replaced {
            WORKER_RESTARTS.fetch_add(1, Ordering::Relaxed);
        }
        self.lost(Some(id));
    }

    /// Load `f` into `w` (once per version): its parameters.
    fn ensure_loaded(
        &self,
        w: &mut Worker,
        f: &PyFilter,
        stop: &dyn Fn() -> bool,
    ) -> Result<(Vec<String>, usize), CallError> {
        if let Some(p) = w.loaded.get(&f.load_id()) {
            return Ok(p.clone());
        }
        let t = Instant::now();
        let (h, _) = w.request(&f.load_request(), &[], self.spec.timeout, stop)?;
        tracing::debug!(filter = %f.name, worker = w.id, "loaded in {:.2} s", t.elapsed().as_secs_f64());
        if h.get("ok") != Some(&Value::Bool(true)) {
            return Err(answer_error(&h));
        }
        let params: Vec<String> = h
            .get("params")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let optional = h.get("optional").and_then(Value::as_u64).unwrap_or(0) as usize;
        w.shares = self.spec.share && h.get("shares") == Some(&Value::Bool(true));
        w.loaded.insert(f.load_id(), (params.clone(), optional));
        lock(&self.params).insert(f.load_id(), (params.clone(), optional));
        w.versions.insert(f.name.clone(), f.digest);
        Ok((params, optional))
    }

    /// Borrow a worker for `work`; a worker that died or overran is killed
    /// and counted, and the next call starts a new one.
    fn with_worker<T>(
        &self,
        f: &PyFilter,
        keys: &[(ColumnKey, usize)],
        stop: &dyn Fn() -> bool,
        work: impl FnOnce(&mut Worker) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        let mut w = self.checkout(keys, stop)?;
        // An edited file: this worker holds the old module; a new worker
        // imports the new one from scratch.
        if w.versions.get(&f.name).is_some_and(|d| *d != f.digest) {
            self.retire(w, false);
            w = self.checkout(keys, stop)?;
        }
        let r = work(&mut w);
        match &r {
            Err(e) if e.retriable() => self.retire(w, true),
            // Interrupted mid-request: its answer would come to the next caller.
            Err(CallError::Stopped) => self.retire(w, false),
            _ => self.give_back(w),
        }
        r
    }

    /// Import `f`: its parameters and how many have defaults. A module
    /// filter is imported in the template, so that every worker forked
    /// after has it; a file filter (edited at will) in a worker.
    pub fn load(&self, f: &PyFilter, stop: &dyn Fn() -> bool) -> Result<(Vec<String>, usize), CallError> {
        if matches!(f.target, Target::Module(_)) {
            if let Some(r) = self.load_in_template(f, stop) {
                return r;
            }
        }
        self.with_worker(f, &[], stop, |w| self.ensure_loaded(w, f, stop))
    }

    /// None when there is no usable template: a worker loads it instead.
    fn load_in_template(&self, f: &PyFilter, stop: &dyn Fn() -> bool) -> Option<Result<Params, CallError>> {
        let mut st = lock(&self.template);
        if matches!(*st, TemplateState::Unstarted) {
            *st = match Template::start(&self.spec) {
                Ok(t) => TemplateState::Ready(Box::new(t)),
                Err(e) => {
                    tracing::warn!("cannot start a template Python worker ({e}); each worker imports the filters");
                    TemplateState::Unusable
                }
            };
        }
        let TemplateState::Ready(t) = &mut *st else { return None };
        match self.ensure_loaded(&mut t.w, f, stop) {
            Ok(p) => Some(Ok(p)),
            // The module's own failure: a worker would say the same.
            Err(e) if !e.retriable() && !matches!(e, CallError::Stopped) => Some(Err(e)),
            // Interrupted mid-import, or the import killed it: workers load
            // it themselves (and report how it fails) from now on; a
            // stopped load tries a new template next time.
            Err(e) => {
                let stopped = matches!(e, CallError::Stopped);
                if let TemplateState::Ready(t) = std::mem::replace(
                    &mut *st,
                    if stopped { TemplateState::Unstarted } else { TemplateState::Unusable },
                ) {
                    t.end();
                }
                None
            }
        }
    }

    /// A new worker: forked from the template when there is one.
    fn new_worker(&self) -> Result<Worker, CallError> {
        let mut st = lock(&self.template);
        if let TemplateState::Ready(t) = &mut *st {
            match t.fork(&self.spec, &self.template) {
                Ok(w) => return Ok(w),
                Err(e) => {
                    tracing::warn!("cannot fork a Python worker from its template ({e}); starting one from scratch");
                    if let TemplateState::Ready(t) = std::mem::replace(&mut *st, TemplateState::Unusable) {
                        t.end();
                    }
                }
            }
        }
        drop(st);
        Worker::spawn(&self.spec)
    }

    /// Run `f` on the rows of `batch` (the stream's columns) that `rows`
    /// selects (all without it): one boolean per such row and the seconds
    /// spent in Python.
    pub fn call(
        &self,
        f: &PyFilter,
        batch: &RecordBatch,
        rows: Option<&BooleanArray>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Verdict, CallError> {
        let known = lock(&self.params).get(&f.load_id()).cloned();
        let (params, optional) = match known {
            Some(p) => p,
            None => self.load(f, stop)?,
        };
        let args =
            if f.dataframe { Ok(batch.clone()) } else { bind::arguments(batch, &params, optional, f.args.as_deref()) }
                .and_then(|a| bind::keep_fields(a, &f.fields))
                // Rows are selected after the columns: only the arguments are
                // copied, not a Rubin batch's cutouts and histories (~45 MB).
                .and_then(|a| match rows {
                    Some(m) => arrow_select::filter::filter_record_batch(&a, m).map_err(|e| e.to_string()),
                    None => Ok(a),
                })
                .map_err(|e| CallError::Bind(format!("{} ({})", e, f.describe())))?;
        let n = args.num_rows();
        // A DataFrame filter gets the batch whole, as before; otherwise
        // each argument column travels (and is converted) on its own, under
        // its content key, so that a worker converts it once for every
        // filter that reads it.
        let columns = if f.dataframe { Vec::new() } else { column_ipc(&args).map_err(CallError::Bind)? };
        let keys: Vec<(ColumnKey, usize)> = columns.iter().map(|c| (c.1, c.2.len())).collect();
        self.with_worker(f, &keys, stop, |w| {
            self.ensure_loaded(w, f, stop)?;
            let (h, body) = if f.dataframe {
                let body = ipc_bytes(&args).map_err(CallError::Bind)?;
                w.request(&json!({"op": "eval", "id": f.load_id()}), &body, self.spec.timeout, stop)?
            } else {
                let (h, body) = eval_columns(w, f, &columns, n, self.spec.timeout, stop)?;
                if h.get("kind").and_then(Value::as_str) == Some("cache") {
                    // The worker lacks a column fink thought it held (it
                    // cannot, unless the two disagree): send everything.
                    w.cache.clear();
                    eval_columns(w, f, &columns, n, self.spec.timeout, stop)?
                } else {
                    (h, body)
                }
            };
            if h.get("ok") != Some(&Value::Bool(true)) {
                return Err(answer_error(&h));
            }
            let mask = read_mask(&body).map_err(|e| CallError::Return(format!("unreadable answer: {e}")))?;
            if mask.len() != n {
                return Err(CallError::Return(format!("returned {} values for {} rows", mask.len(), n)));
            }
            let num = |k: &str| h.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            Ok(Verdict {
                keep: mask,
                seconds: num("seconds"),
                convert_seconds: num("convert_seconds"),
                reused: num("reused") as u64,
            })
        })
    }
}

/// Each argument column as its own Arrow IPC stream, with its content key.
fn column_ipc(args: &RecordBatch) -> Result<Vec<(String, ColumnKey, Vec<u8>)>, String> {
    let schema = args.schema();
    (0..args.num_columns())
        .map(|i| {
            let one = RecordBatch::try_new(
                std::sync::Arc::new(arrow_schema::Schema::new(vec![schema.field(i).clone()])),
                vec![args.column(i).clone()],
            )
            .map_err(|e| e.to_string())?;
            let bytes = ipc_bytes(&one)?;
            let key = twox_hash::XxHash3_128::oneshot(&bytes);
            Ok((schema.field(i).name().clone(), key, bytes))
        })
        .collect()
}

/// One eval request in columns: those the worker holds go as their key
/// alone, the others as IPC, kept by the worker for the next filter when it
/// shares conversions; the oldest entries are evicted to stay in budget.
fn eval_columns(
    w: &mut Worker,
    f: &PyFilter,
    columns: &[(String, ColumnKey, Vec<u8>)],
    rows: usize,
    timeout: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<Frame, CallError> {
    let hex = |k: &ColumnKey| format!("{k:032x}");
    let mut body = Vec::new();
    let mut described = Vec::with_capacity(columns.len());
    let mut keep: Vec<(ColumnKey, usize)> = Vec::new();
    for (name, key, bytes) in columns {
        let held = w.shares && w.cache.iter().any(|(c, _)| c == key);
        if held {
            // Used again: the newest, so the last to go.
            if let Some(i) = w.cache.iter().position(|(c, _)| c == key) {
                let e = w.cache.remove(i).expect("present");
                w.cache.push_back(e);
            }
            described.push(json!({"name": name, "key": hex(key), "size": 0}));
        } else {
            body.extend_from_slice(bytes);
            described.push(json!({"name": name, "key": hex(key), "size": bytes.len()}));
            if w.shares && bytes.len() <= CACHE_BYTES / 4 && !keep.iter().any(|k| k.0 == *key) {
                keep.push((*key, bytes.len()));
            }
        }
    }
    let mut evict = Vec::new();
    w.cache.extend(keep.iter().copied());
    let total = |c: &VecDeque<(ColumnKey, usize)>| c.iter().map(|e| e.1).sum::<usize>();
    while w.cache.len() > CACHE_ENTRIES || total(&w.cache) > CACHE_BYTES {
        let (k, _) = w.cache.pop_front().expect("non-empty");
        evict.push(hex(&k));
    }
    let header = json!({
        "op": "eval", "id": f.load_id(), "rows": rows, "columns": described,
        "keep": keep.iter().map(|k| hex(&k.0)).collect::<Vec<_>>(), "evict": evict,
    });
    w.request(&header, &body, timeout, stop)
}

impl Drop for Pool {
    fn drop(&mut self) {
        let st = self.idle.get_mut().unwrap_or_else(|p| p.into_inner());
        for w in st.idle.drain(..) {
            w.kill();
        }
        let mut t = lock(&self.template);
        if let TemplateState::Ready(t) = std::mem::replace(&mut *t, TemplateState::Unusable) {
            t.end();
        }
    }
}

fn ipc_bytes(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema()).map_err(|e| e.to_string())?;
    w.write(batch).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(buf)
}

fn read_mask(body: &[u8]) -> Result<BooleanArray, String> {
    let r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).map_err(|e| e.to_string())?;
    let mut out: Vec<Option<bool>> = Vec::new();
    for b in r {
        let b = b.map_err(|e| e.to_string())?;
        let col = b.column(0);
        let bools = col.as_any().downcast_ref::<BooleanArray>().ok_or("not booleans")?;
        out.extend(bools.iter());
    }
    Ok(BooleanArray::from(out))
}

/// Import every filter in a fresh worker (fink validate, reload): per
/// filter, its parameters or why it does not import.
pub fn check(spec: &PythonSpec, filters: &[PyFilter]) -> Vec<(String, Result<Params, CallError>)> {
    let pool = Pool::new(PythonSpec { workers: 1, ..spec.clone() });
    filters.iter().map(|f| (f.name.clone(), pool.load(f, &|| false))).collect()
}

/// A stream's Python filters with their pool: the stage after CEL.
pub struct Stage {
    pool: Arc<Pool>,
    filters: Vec<(PyFilter, Arc<FilterStats>)>,
    max_failures: u32,
    /// Batches in a row that no filter could answer.
    failures: u32,
}

/// Why a batch got no verdict from the Python stage.
#[derive(Debug)]
pub enum StageError {
    /// The filter raised or answered wrongly on this batch: the rest of its
    /// file is quarantined, and the stream goes on.
    Quarantine(String),
    /// `max_failures` failures in a row: the stream fails (and is restarted
    /// by the restart policy).
    Fail(String),
    Stopped,
}

/// First wait before a batch is tried again on a new worker; doubles.
const RETRY_FIRST: Duration = Duration::from_millis(100);

impl Stage {
    /// Import every filter first: a stream whose module does not import
    /// never replaces a running one.
    pub fn new(spec: &PythonSpec, filters: &[PyFilter]) -> Result<Stage, String> {
        let pool = pool(spec);
        for f in filters {
            pool.load(f, &|| false).map_err(|e| {
                let tb = e.traceback().map(|t| format!("\n{t}")).unwrap_or_default();
                format!("python filter {:?} ({}): {e}{tb}", f.name, f.describe())
            })?;
        }
        Ok(Stage {
            pool,
            filters: filters.iter().map(|f| (f.clone(), filter_stats(&f.name))).collect(),
            max_failures: spec.max_failures,
            failures: 0,
        })
    }

    /// Narrow `mask` (what CEL kept) by each filter in turn; each sees only
    /// the rows still kept.
    pub fn apply(
        &mut self,
        stream: &str,
        batch: &RecordBatch,
        mut mask: BooleanArray,
        stop: &dyn Fn() -> bool,
    ) -> Result<BooleanArray, StageError> {
        for (f, stats) in &self.filters {
            let kept: Vec<usize> =
                mask.iter().enumerate().filter(|(_, k)| k.unwrap_or(false)).map(|(i, _)| i).collect();
            if kept.is_empty() {
                break;
            }
            let rows = (kept.len() != batch.num_rows()).then_some(&mask);
            let mut attempt = 0u32;
            let verdict = loop {
                attempt += 1;
                match self.pool.call(f, batch, rows, stop) {
                    Ok(v) => break v,
                    Err(CallError::Stopped) => return Err(StageError::Stopped),
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        let what = format!("python filter {:?} ({}): {e}", f.name, f.describe());
                        if let Some(tb) = e.traceback() {
                            tracing::error!(stream, filter = %f.name, "{what}\n{tb}");
                        } else {
                            tracing::warn!(stream, filter = %f.name, attempt, "{what}");
                        }
                        self.failures += 1;
                        if self.failures >= self.max_failures {
                            let tb = e.traceback().map(|t| format!("\n{t}")).unwrap_or_default();
                            return Err(StageError::Fail(format!("{what} ({} failures in a row){tb}", self.failures)));
                        }
                        if !e.retriable() {
                            return Err(StageError::Quarantine(what));
                        }
                        let wait = RETRY_FIRST * 2u32.saturating_pow(attempt - 1);
                        let until = Instant::now() + wait;
                        while Instant::now() < until {
                            if stop() {
                                return Err(StageError::Stopped);
                            }
                            std::thread::sleep(Duration::from_millis(20).min(wait));
                        }
                    }
                }
            };
            self.failures = 0;
            let Verdict { keep: answer, seconds, convert_seconds, reused } = verdict;
            stats.convert_us.fetch_add((convert_seconds * 1e6) as u64, Ordering::Relaxed);
            stats.columns_reused.fetch_add(reused, Ordering::Relaxed);
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats.rows_in.fetch_add(kept.len() as u64, Ordering::Relaxed);
            stats.rows_kept.fetch_add(answer.true_count() as u64, Ordering::Relaxed);
            stats.python_us.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
            let mut next = vec![false; batch.num_rows()];
            for (j, &i) in kept.iter().enumerate() {
                // A null answer keeps nothing, as a null in Spark's filter.
                next[i] = answer.is_valid(j) && answer.value(j);
            }
            mask = BooleanArray::from(next);
        }
        Ok(mask)
    }

    /// Rows per call when a stream decides a whole file first.
    pub fn batch_rows(&self) -> usize {
        self.pool.spec.batch_rows
    }

    /// The column paths this stage's filters read from a file of `schema`;
    /// None if that cannot be said before a call (a DataFrame filter, an
    /// argument that binds to nothing).
    pub fn paths_read(&self, schema: &arrow_schema::Schema) -> Option<Vec<String>> {
        let params = lock(&self.pool.params);
        let mut out = Vec::new();
        for (f, _) in &self.filters {
            if f.dataframe {
                return None;
            }
            let (names, optional) = params.get(&f.load_id())?;
            out.extend(bind::paths_read(schema, names, *optional, f.args.as_deref(), &f.fields)?);
        }
        Some(out)
    }
}
