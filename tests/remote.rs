//! Sources on real remote stores: an S3-compatible server (moto in server
//! mode, signatures checked) and an HDFS MiniDFSCluster (namenode and
//! datanode), both started by .ci/run (integration/s3, integration/hdfs).
//! Objects are put there with the stores' own clients; what fink publishes
//! is compared with the local copy read by an independent reader.

mod common;
use std::path::Path;
use std::sync::Arc;

use common::*;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value;

fn rt() -> &'static tokio::runtime::Runtime {
    fink::stream::store::runtime()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    S3,
    Hdfs,
}

/// A fresh place on a store: a new bucket on S3, a new folder on HDFS.
struct Remote {
    os: Arc<dyn ObjectStore>,
    /// Object path prefix of the place (empty for a bucket).
    prefix: String,
    /// The source URL of the place.
    url: String,
    /// Source keys giving fink the store's settings.
    settings: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the test stores as .ci/run does (integration/s3/moto_s3.py, integration/hdfs)")
    })
}

impl Remote {
    fn new(kind: Kind, tag: &str) -> Remote {
        match kind {
            Kind::S3 => {
                let bucket = unique(tag).to_lowercase().replace('_', "-");
                let (endpoint, key, secret) =
                    (env("FINK_TEST_S3_ENDPOINT"), env("FINK_TEST_S3_ACCESS_KEY"), env("FINK_TEST_S3_SECRET_KEY"));
                let os = object_store::aws::AmazonS3Builder::new()
                    .with_endpoint(&endpoint)
                    .with_region("us-east-1")
                    .with_allow_http(true)
                    .with_bucket_name(&bucket)
                    .with_access_key_id(&key)
                    .with_secret_access_key(&secret)
                    .build()
                    .unwrap();
                create_bucket(&endpoint, &bucket, &key, &secret);
                Remote {
                    os: Arc::new(os),
                    prefix: "night".into(),
                    url: format!("s3://{bucket}/night"),
                    settings: format!(
                        "endpoint = \"{endpoint}\", allow_http = true, access_key = {{ env = \"T_S3_KEY\" }}, secret_key = {{ env = \"T_S3_SECRET\" }}"
                    ),
                }
            }
            Kind::Hdfs => {
                let namenode = env("FINK_TEST_HDFS");
                let client = {
                    let _g = rt().enter();
                    hdfs_native::ClientBuilder::new().with_url(&namenode).build().unwrap()
                };
                let dir = unique(tag);
                Remote {
                    os: Arc::new(hdfs_native_object_store::HdfsObjectStore::new(client)),
                    prefix: format!("tests/{dir}"),
                    url: format!("{namenode}/tests/{dir}"),
                    settings: String::new(),
                }
            }
        }
    }

    fn path(&self, rel: &str) -> ObjPath {
        ObjPath::from(format!("{}/{rel}", self.prefix).trim_start_matches('/'))
    }

    fn put(&self, rel: &str, bytes: Vec<u8>) {
        let p = self.path(rel);
        rt().block_on(self.os.put(&p, PutPayload::from(bytes))).unwrap();
    }

    /// Every input file under `dir`, at the same relative paths.
    fn put_dir(&self, dir: &Path) {
        for f in walk(dir) {
            let rel = f.strip_prefix(dir).unwrap().to_string_lossy().to_string();
            self.put(&rel, std::fs::read(&f).unwrap());
        }
    }

    /// A workspace with a topic and stream `s` reading this place.
    fn stream(&self, tag: &str, extra: &str) -> (Workspace, String) {
        let w = Workspace::new();
        let topic = unique(tag);
        let settings = if self.settings.is_empty() { String::new() } else { format!(", {}", self.settings) };
        w.config(&format!(
            "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"{}\", poll_interval_ms = 300{settings} }}\ntopic = \"{topic}\"\n{extra}\n",
            self.url
        ));
        let r = fink(&w, &["apply", "--auto-approve"]);
        assert_eq!(r.code, 0, "{}", r.all());
        (w, topic)
    }
}

/// fink commands get the S3 key through the environment, as operators do.
fn fink(w: &Workspace, args: &[&str]) -> Run {
    // Bounded: a stream waiting for a store that never answers would not end.
    let c = w.cmd();
    let bin = c.get_program().to_owned();
    let mut t = std::process::Command::new("timeout");
    t.arg("300").arg(bin).args(args).current_dir(w.path());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    t.env("T_S3_KEY", std::env::var("FINK_TEST_S3_ACCESS_KEY").unwrap_or_default())
        .env("T_S3_SECRET", std::env::var("FINK_TEST_S3_SECRET_KEY").unwrap_or_default())
        .output()
        .expect("run fink")
        .into()
}

fn spawn(w: &Workspace, extra: &[&str]) -> FinkRun {
    std::env::set_var("T_S3_KEY", std::env::var("FINK_TEST_S3_ACCESS_KEY").unwrap_or_default());
    std::env::set_var("T_S3_SECRET", std::env::var("FINK_TEST_S3_SECRET_KEY").unwrap_or_default());
    FinkRun::start(w, extra)
}

/// Create a bucket with a signed request (object_store cannot).
fn create_bucket(endpoint: &str, bucket: &str, key: &str, secret: &str) {
    let py = repo().join(".fink/venv/bin/python");
    let code = format!(
        "import boto3; boto3.client('s3', endpoint_url='{endpoint}', region_name='us-east-1', aws_access_key_id='{key}', aws_secret_access_key='{secret}').create_bucket(Bucket='{bucket}')"
    );
    let out = std::process::Command::new(py).args(["-c", &code]).output().expect("python");
    assert!(out.status.success(), "create bucket: {}", String::from_utf8_lossy(&out.stderr));
}

fn run_until_idle(w: &Workspace) -> Value {
    let r = fink(w, &["run", "--until-idle", "--output", "json"]);
    assert_eq!(r.code, 0, "fink run failed:\n{}", r.all());
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn source_bytes(summary: &Value) -> u64 {
    summary["streams"][0]["stats"]["source_bytes"].as_u64().expect("source_bytes in the summary")
}

fn roundtrip_is_exact(kind: Kind) {
    let dir = shared_data().join("ztf/filters_test");
    let remote = Remote::new(kind, "rt");
    remote.put_dir(&dir);
    let (w, topic) = remote.stream("rt", "");
    let summary = run_until_idle(&w);
    let expected = source_records(&dir);
    assert_eq!(expected.len(), 124);
    let got = consume_decoded(&topic, 1, expected.len());
    assert_eq!(got.len(), expected.len(), "every alert once");
    for (i, ((_, value), src)) in got.iter().zip(&expected).enumerate() {
        same(value, src, "").unwrap_or_else(|e| panic!("{kind:?} alert {i}: {e}"));
    }
    let on_disk: u64 = walk(&dir).iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    let read = source_bytes(&summary);
    assert!(read >= on_disk / 2 && read <= on_disk * 2, "{read} bytes read for {on_disk} on disk");
}

#[test]
fn s3_roundtrip_is_exact() {
    roundtrip_is_exact(Kind::S3);
}

#[test]
fn hdfs_roundtrip_is_exact() {
    roundtrip_is_exact(Kind::Hdfs);
}

/// A file put while the stream runs is published; after `kill -9` and a
/// restart, every alert is there exactly once (read_committed).
fn new_files_and_kill_resume(kind: Kind) {
    let dir = shared_data().join("ztf/filters_test");
    let files = walk(&dir);
    assert_eq!(files.len(), 2);
    let name = |f: &Path| format!("20211122/{}", f.file_name().unwrap().to_string_lossy());
    let remote = Remote::new(kind, "nf");
    remote.put(&name(&files[0]), std::fs::read(&files[0]).unwrap());
    let (w, topic) = remote.stream("nf", "");
    let first_rows = {
        let r = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
        parquet::file::reader::FileReader::metadata(&r).file_metadata().num_rows() as u64
    };
    let all = source_records(&dir);
    let run = spawn(&w, &[]);
    run.wait("the first file published", || run.stream("s")["stats"]["published"].as_u64() == Some(first_rows));
    // A new object is picked up within the poll interval (300 ms here).
    remote.put(&name(&files[1]), std::fs::read(&files[1]).unwrap());
    run.wait("the second file being read", || run.stream("s")["stats"]["read"].as_u64() > Some(first_rows));
    assert!(run.metrics().contains("fink_source_bytes_read_total{"), "the metric is exported");
    run.signal("KILL");
    drop(run);
    run_until_idle(&w);
    let got = consume_all_decoded(&topic, 1);
    // An alert is its candidate: an object has several.
    let key = |v: &Value| format!("{}/{}", v["objectId"], v["candidate"]["candid"]);
    let mut ids: Vec<String> = got.iter().map(|(_, v)| key(v)).collect();
    let mut want: Vec<String> = all.iter().map(key).collect();
    ids.sort();
    want.sort();
    assert_eq!(want.len(), 124);
    assert_eq!(ids, want, "every alert exactly once after kill -9");
}

#[test]
fn s3_new_objects_are_read_and_kill_resumes() {
    new_files_and_kill_resume(Kind::S3);
}

#[test]
fn hdfs_new_files_are_read_and_kill_resumes() {
    new_files_and_kill_resume(Kind::Hdfs);
}

/// A corrupt object is quarantined; the good ones are published; Spark's
/// markers and temporary output are never read.
fn corrupt_object_is_quarantined(kind: Kind) {
    let dir = shared_data().join("ztf/science");
    let remote = Remote::new(kind, "cq");
    remote.put_dir(&dir);
    // Larger than a footer hint, so it is read by ranges; garbage inside.
    let mut junk = vec![0u8; 400_000];
    junk[..4].copy_from_slice(b"PAR1");
    junk[399_996..].copy_from_slice(b"PAR1");
    remote.put("20200101/part-99999-bad.parquet", junk);
    remote.put("20200101/_SUCCESS", Vec::new());
    remote.put("20200101/_temporary/0/part-0.parquet", b"half written".to_vec());
    remote.put("20200101/part-1.parquet.inprogress", b"half written".to_vec());
    let (w, topic) = remote.stream("cq", "");
    run_until_idle(&w);
    let expected = source_records(&dir);
    let got = consume_decoded(&topic, 1, expected.len());
    assert_eq!(got.len(), expected.len());
    let q = std::fs::read_to_string(w.path().join("state/s.quarantine.jsonl")).unwrap();
    let lines: Vec<Value> = q.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "only the corrupt object: {q}");
    assert_eq!(lines[0]["file"], "20200101/part-99999-bad.parquet");
}

#[test]
fn s3_corrupt_object_is_quarantined() {
    corrupt_object_is_quarantined(Kind::S3);
}

#[test]
fn hdfs_corrupt_file_is_quarantined() {
    corrupt_object_is_quarantined(Kind::Hdfs);
}

/// Dropping the three cutouts reads at least 3x fewer bytes.
fn pruning_reads_fewer_bytes(kind: Kind) {
    let dir = shared_data().join("ztf/filters_test");
    let remote = Remote::new(kind, "pr");
    remote.put_dir(&dir);
    let (all_w, _) = remote.stream("pr", "");
    let all = source_bytes(&run_until_idle(&all_w));
    let (drop_w, topic) = remote.stream(
        "pr",
        "drop = [\"cutoutScience\", \"cutoutTemplate\", \"cutoutDifference\"]\nfilter = \"candidate.magpsf > 0.0\"",
    );
    let pruned = source_bytes(&run_until_idle(&drop_w));
    assert!(pruned * 3 <= all, "{kind:?}: {pruned} bytes read without cutouts, {all} with them");
    let got = consume_decoded(&topic, 1, 124);
    assert_eq!(got.len(), 124);
    assert!(got[0].1.get("cutoutScience").is_none() && got[0].1["candidate"]["magpsf"].is_number());
}

#[test]
fn s3_pruned_columns_read_fewer_bytes() {
    pruning_reads_fewer_bytes(Kind::S3);
}

#[test]
fn hdfs_pruned_columns_read_fewer_bytes() {
    pruning_reads_fewer_bytes(Kind::Hdfs);
}

/// Wrong credentials: the stream reports the failed request (stalled, not
/// crashed), and no secret is printed anywhere.
#[test]
fn s3_wrong_credentials_name_the_request_and_never_the_secret() {
    let remote = Remote::new(Kind::S3, "wc");
    remote.put_dir(&shared_data().join("ztf/science"));
    let (w, _) = remote.stream("wc", "");
    let cfg = std::fs::read_to_string(w.path().join("fink.toml")).unwrap();
    w.write("fink.toml", &cfg.replace("env = \"T_S3_SECRET\"", "file = \"s3.secret\""));
    let secret = "not-the-right-secret-9f8e7d";
    w.write("s3.secret", secret);
    w.write(
        "fink.toml",
        &format!("{}\n", std::fs::read_to_string(w.path().join("fink.toml")).unwrap())
            .replace("[run]\n", "[run]\nstall_after_s = 1\n"),
    );
    let run = spawn(&w, &[]);
    run.wait("the stream reported stalled with the failing request", || {
        let s = run.stream("s");
        s["stalled_secs"].is_u64() && s["client_error"].as_str().is_some_and(|e| e.contains("LIST"))
    });
    let status = run.stream("s");
    let error = status["client_error"].as_str().unwrap().to_string();
    assert!(error.contains("SignatureDoesNotMatch") || error.contains("403"), "{error}");
    assert_ne!(status["state"]["state"], "failed", "{status}");
    let plan = fink(&w, &["plan"]);
    let log = std::fs::read_to_string(&run.log).unwrap();
    for text in [&log, &plan.all(), &status.to_string()] {
        assert!(!text.contains(secret), "the secret leaked: {text}");
    }
    assert!(log.contains("did not answer while listing"), "{log}");
}

/// A bucket that does not exist: the error names the request, the stream
/// waits (stalled) instead of failing.
#[test]
fn s3_missing_bucket_names_the_request() {
    let remote = Remote::new(Kind::S3, "mb");
    let (w, _) = remote.stream("mb", "");
    let cfg = std::fs::read_to_string(w.path().join("fink.toml")).unwrap();
    let bucket = remote.url.trim_start_matches("s3://").split('/').next().unwrap().to_string();
    w.write(
        "fink.toml",
        &cfg.replace(&format!("s3://{bucket}/"), "s3://no-such-bucket-here/")
            .replace("[run]\n", "[run]\nstall_after_s = 1\n"),
    );
    let run = spawn(&w, &[]);
    run.wait("stalled, naming the failed request", || {
        run.stream("s")["client_error"].as_str().is_some_and(|e| e.contains("LIST") && e.contains("NoSuchBucket"))
    });
    assert_ne!(run.stream("s")["state"]["state"], "failed");
}

/// The store is away when the stream starts, then comes up: the stream
/// is stalled meanwhile, then publishes everything.
#[test]
fn s3_unreachable_store_stalls_then_resumes() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let w = Workspace::new();
    let topic = unique("ur");
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\nstall_after_s = 1\n\n[[topic]]\nname = \"{topic}\"\n\n[storage.late]\nendpoint = \"{endpoint}\"\nallow_http = true\naccess_key = \"k\"\nsecret_key = \"s\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"s3://late/night\", storage = \"late\", poll_interval_ms = 300 }}\ntopic = \"{topic}\"\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let run = spawn(&w, &[]);
    run.wait("stalled while the store is away", || run.stream("s")["stalled_secs"].is_u64());
    // The store comes up (moto without authentication, on that port).
    let py = repo().join(".fink/venv/bin/python");
    let mut server = std::process::Command::new(&py)
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let code = format!(
        "import boto3,os,time\nfor i in range(100):\n  try:\n    c=boto3.client('s3',endpoint_url='{endpoint}',region_name='us-east-1',aws_access_key_id='k',aws_secret_access_key='s'); c.create_bucket(Bucket='late'); break\n  except Exception: time.sleep(0.2)\nd='{}'\nfor f in sorted(os.listdir(d)):\n  c.upload_file(os.path.join(d,f),'late','night/20200101/'+f)\n",
        shared_data().join("ztf/science/20200101").display()
    );
    let up = std::process::Command::new(&py).args(["-c", &code]).output().unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let expected = source_records(&shared_data().join("ztf/science"));
    run.wait("every alert published once the store answers", || {
        run.stream("s")["stats"]["published"].as_u64() == Some(expected.len() as u64)
    });
    run.wait("no longer stalled", || run.stream("s")["stalled_secs"].is_null());
    let _ = server.kill();
    let _ = server.wait();
    let got = consume_decoded(&topic, 1, expected.len());
    assert_eq!(got.len(), expected.len());
}

/// `fink validate` rejects a bad URL with file:line; `filter test --data`
/// reads a remote prefix with the config's store settings.
#[test]
fn bad_urls_are_rejected_and_filter_test_reads_remote_data() {
    let w = Workspace::new();
    w.config("[[topic]]\nname = \"t\"\n\n[[stream]]\nname = \"s\"\nsource = { format = \"parquet\", path = \"ftp://host/x\" }\ntopic = \"t\"\n");
    let r = w.fink(&["validate"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("fink.toml:") && r.all().contains("unknown scheme \"ftp\""), "{}", r.all());

    let remote = Remote::new(Kind::S3, "ft");
    remote.put_dir(&shared_data().join("ztf/filters_test"));
    let (w, _) = remote.stream("ft", "");
    let r =
        fink(&w, &["filter", "test", "--data", &remote.url, "--expr", "candidate.magpsf < 16.0", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep[0]["alerts"], 124, "{}", r.stdout);
    let r = fink(&w, &["validate", "--data", &format!("{}/20211122", remote.url)]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.all().contains("valid"), "{}", r.all());
}

/// An HDFS of this test's own, to take down and bring back.
struct OwnHdfs {
    child: std::process::Child,
    port: u16,
    base: std::path::PathBuf,
}

impl OwnHdfs {
    fn start(base: &Path, port: u16) -> OwnHdfs {
        let libs = env("FINK_TEST_HDFS_LIBS");
        let log = base.with_extension("log");
        let child = std::process::Command::new("java")
            .args(["-Xmx512m", "-cp", &format!("{libs}/*")])
            .arg(repo().join("integration/hdfs/MiniHdfs.java"))
            .args([&port.to_string(), &base.display().to_string()])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // A bound, not a measure: the JVM compiles MiniHdfs.java and
        // formats a namenode, which took over 120 s on two busy cores.
        wait_until(
            "the test's own HDFS",
            300,
            || std::fs::read_to_string(&log).unwrap_or_default().contains("ready"),
            || std::fs::read_to_string(&log).unwrap_or_default(),
        );
        OwnHdfs { child, port, base: base.to_path_buf() }
    }

    fn kill(mut self) -> (u16, std::path::PathBuf) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.port, self.base.clone())
    }
}

impl Drop for OwnHdfs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The namenode goes down mid-run: the stream is reported stalled (not
/// failed); once HDFS is back, a new file is published and nothing read
/// before is lost or doubled.
#[test]
fn hdfs_namenode_down_mid_run_stalls_then_resumes() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let scratch = tempfile::tempdir().unwrap();
    let hdfs = OwnHdfs::start(&scratch.path().join("hdfs"), port);
    let url = format!("hdfs://127.0.0.1:{port}");
    let put = |rel: &str, f: &Path| {
        let client = {
            let _g = rt().enter();
            hdfs_native::ClientBuilder::new().with_url(&url).build().unwrap()
        };
        let os = hdfs_native_object_store::HdfsObjectStore::new(client);
        rt().block_on(os.put(&ObjPath::from(format!("science/{rel}")), PutPayload::from(std::fs::read(f).unwrap())))
            .unwrap();
    };
    let dir = shared_data().join("ztf/filters_test");
    let files = walk(&dir);
    put("20211122/a.parquet", &files[0]);
    let w = Workspace::new();
    let topic = unique("nn");
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\nstall_after_s = 1\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"{url}/science\", poll_interval_ms = 300 }}\ntopic = \"{topic}\"\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let run = FinkRun::start(&w, &[]);
    let first = run_rows(&files[0]);
    run.wait("the first file published", || run.stream("s")["stats"]["published"].as_u64() == Some(first));
    let (port, base) = hdfs.kill();
    run.wait("stalled while the namenode is down", || {
        let s = run.stream("s");
        s["stalled_secs"].is_u64() && s["client_error"].as_str().is_some_and(|e| e.contains("LIST"))
    });
    assert_ne!(run.stream("s")["state"]["state"], "failed");
    let _hdfs = OwnHdfs::start(&base, port);
    put("20211122/b.parquet", &files[1]);
    run.wait("the new file published once HDFS is back", || {
        run.stream("s")["stats"]["published"].as_u64() == Some(124)
    });
    run.wait("no longer stalled", || run.stream("s")["stalled_secs"].is_null());
    let got = consume_decoded(&topic, 1, 124);
    let key = |v: &Value| format!("{}/{}", v["objectId"], v["candidate"]["candid"]);
    let mut ids: Vec<String> = got.iter().map(|(_, v)| key(v)).collect();
    let mut want: Vec<String> = source_records(&dir).iter().map(key).collect();
    ids.sort();
    want.sort();
    assert_eq!(ids, want);
    assert!(run.log_text().contains("did not answer while listing"), "{}", run.log_text());
}

fn run_rows(f: &Path) -> u64 {
    let r = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(f).unwrap()).unwrap();
    parquet::file::reader::FileReader::metadata(&r).file_metadata().num_rows() as u64
}

/// Files landing the way Spark's job commit lands them, while `fink run`
/// follows the place: random part names, written under `_temporary/` and
/// renamed into the night folder (on HDFS a rename keeps the old
/// modification time), tens of milliseconds apart. Every alert exactly
/// once, read_committed; a restart adds nothing. Ten runs (issue 20), two
/// at a time: each has its own prefix, topic and fink, and mostly waits on
/// listings.
fn spark_like_arrivals(kind: Kind) {
    let runs: u64 = std::env::var("FINK_ARRIVAL_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let next = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let run = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if run >= runs {
                    break;
                }
                spark_like_run(kind, run);
            });
        }
    });
}

fn spark_like_run(kind: Kind, run: u64) {
    {
        let remote = Remote::new(kind, "arr");
        let (w, topic) = remote.stream("arr", "");
        let alerts = 120;
        let r = fink(
            &w,
            &["simulate", "--out", "staging", "--alerts", "120", "--per-file", "2", "--seed", &run.to_string()],
        );
        assert_eq!(r.code, 0, "{}", r.all());
        let files = walk(&w.path().join("staging"));
        let mut rng = run.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let live = spawn(&w, &[]);
        for (n, f) in files.iter().enumerate() {
            let name = format!("part-{n:05}-{:016x}-c000.snappy.parquet", next());
            let tmp = format!("_temporary/0/task_{n}/{name}");
            remote.put(&tmp, std::fs::read(f).unwrap());
            let (from, to) = (remote.path(&tmp), remote.path(&format!("night={}/{name}", n % 2)));
            rt().block_on(remote.os.rename(&from, &to)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(next() % 40));
        }
        live.wait("every alert published and the stream idle", || {
            let s = live.stream("s");
            s["stats"]["published"].as_u64().unwrap_or(0) >= alerts && s["state"]["state"] == "idle"
        });
        live.signal("TERM");
        let mut live = live;
        assert!(live.child.wait().unwrap().success(), "{}", live.log_text());
        run_until_idle(&w);
        let got = consume_all_decoded(&topic, 1);
        let ids: std::collections::BTreeSet<i64> = got.iter().map(|(_, v)| v["candid"].as_i64().unwrap()).collect();
        assert_eq!(ids.len() as u64, alerts, "{kind:?} run {run}: alerts lost\n{}", live.log_text());
        assert_eq!(got.len() as u64, alerts, "{kind:?} run {run}: alerts published twice");
    }
}

#[test]
fn spark_like_arrivals_s3() {
    spark_like_arrivals(Kind::S3);
}

#[test]
fn spark_like_arrivals_hdfs() {
    spark_like_arrivals(Kind::Hdfs);
}
