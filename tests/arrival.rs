//! Files arriving the way Spark writes them, while `fink run` follows the
//! folder: random part names (a new file often sorts before files already
//! published), written under a temporary name and renamed in (on HDFS from
//! `_temporary/`, keeping its old modification time), tens of milliseconds
//! apart. Every alert must reach the topic exactly once, as a
//! read_committed consumer (fink-client's setting) counts them; a restart
//! afterwards publishes nothing more. Local folders here; S3 and HDFS in
//! `remote.rs` (`spark_like_arrivals_*`).

mod common;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;

/// A small deterministic random sequence (no dependency for it).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn draw(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// A Spark part-file name: `part-NNNNN-<uuid>-c000.snappy.parquet`.
    pub fn part_name(&mut self, n: usize) -> String {
        let (a, b, c) = (self.draw(), self.draw(), self.draw());
        format!(
            "part-{n:05}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}-c000.snappy.parquet",
            a as u32,
            b & 0xffff,
            (b >> 16) & 0xffff,
            c & 0xffff,
            (c << 16 ^ a) & 0xffff_ffff_ffff
        )
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Source files of `alerts` alerts, two per file, to land later.
fn staged(w: &Workspace, alerts: usize, seed: u64) -> Vec<std::path::PathBuf> {
    let r = w.fink(&[
        "simulate",
        "--out",
        "staging",
        "--alerts",
        &alerts.to_string(),
        "--per-file",
        "2",
        "--seed",
        &seed.to_string(),
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    walk(&w.path().join("staging"))
}

/// One run: a writer lands every staged file in `science/night=N/` while
/// fink follows it; then the topic must hold each alert once.
fn one_run(seed: u64, restart: bool) {
    let w = Workspace::new();
    let topic = unique("arrive");
    let alerts = env_or("FINK_ARRIVAL_ALERTS", 240) as usize;
    let files = staged(&w, alerts, seed);
    let science = w.path().join("science");
    std::fs::create_dir_all(&science).unwrap();
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\ncommit_interval_ms = 300\n\n[[topic]]\nname = \"{topic}\"\npartitions = 2\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"science\" }}\ntopic = \"{topic}\"\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let run = FinkRun::start(&w, &[]);
    let mut rng = Lcg(seed);
    let mut order: Vec<usize> = (0..files.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.draw() as usize % (i + 1));
    }
    for (n, &i) in order.iter().enumerate() {
        let night = science.join(format!("night={}", i % 2));
        land(&files[i], &night, &rng.part_name(n), rng.draw() % 3 == 0);
        std::thread::sleep(Duration::from_millis(rng.draw() % 40));
    }
    run.wait("every alert published and the stream idle", || {
        let s = run.stream("s");
        s["stats"]["published"].as_u64().unwrap_or(0) >= alerts as u64 && s["state"]["state"] == "idle"
    });
    run.signal("TERM");
    let mut run = run;
    assert!(run.child.wait().unwrap().success(), "{}", run.log_text());
    if !restart {
        check_once(&topic, alerts, &run.log_text());
        return;
    }
    // A restart finds nothing left to publish.
    let again = w.fink(&["run", "--until-idle", "--no-progress"]);
    assert_eq!(again.code, 0, "{}", again.all());
    check_once(&topic, alerts, &again.all());
}

/// A staged file lands in `night`: written under a hidden temporary name
/// (or in Spark's `_temporary/` folder) and renamed to `name`.
fn land(src: &Path, night: &Path, name: &str, via_temporary: bool) {
    let tmp = if via_temporary {
        let d = night.parent().unwrap().join("_temporary/0/task");
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    } else {
        std::fs::create_dir_all(night).unwrap();
        night.join(format!(".{name}.inprogress"))
    };
    std::fs::copy(src, &tmp).unwrap();
    std::fs::create_dir_all(night).unwrap();
    std::fs::rename(&tmp, night.join(name)).unwrap();
}

pub fn check_once(topic: &str, alerts: usize, context: &str) {
    let all: Vec<i64> = consume_all_decoded(topic, 2).iter().map(|(_, v)| v["candid"].as_i64().unwrap()).collect();
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), alerts, "alerts lost: {} of {alerts} distinct\n{context}", distinct.len());
    assert_eq!(all.len(), alerts, "alerts published twice: {} messages for {alerts}\n{context}", all.len());
}

#[test]
fn spark_like_arrivals_on_a_local_folder_publish_every_alert_once() {
    let runs = env_or("FINK_ARRIVAL_RUNS", 10);
    for run in 0..runs {
        // The last run also restarts, which must publish nothing more.
        one_run(1000 + run, run + 1 == runs);
    }
}

/// chmod, chown-free metadata changes and a touch of published files
/// republish nothing; the touch is reported as a change.
#[test]
fn chmod_and_touch_of_published_files_republish_nothing() {
    let w = Workspace::new();
    let topic = unique("touch");
    let files = staged(&w, 20, 5);
    let science = w.path().join("science/night=1");
    for (n, f) in files.iter().enumerate() {
        land(f, &science, &format!("part-{n:05}.parquet"), false);
    }
    settle_files(&science);
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\n\n[[topic]]\nname = \"{topic}\"\npartitions = 2\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"science\" }}\ntopic = \"{topic}\"\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let first = w.fink(&["run", "--until-idle", "--no-progress"]);
    assert_eq!(first.code, 0, "{}", first.all());
    check_once(&topic, 20, &first.all());
    use std::os::unix::fs::PermissionsExt;
    let names: Vec<_> = walk(&science);
    for f in &names {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // touch: a new modification time, the same bytes.
    let touched = &names[0];
    let later = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(touched).unwrap().set_modified(later).unwrap();
    let again = w.fink(&["run", "--until-idle", "--no-progress"]);
    assert_eq!(again.code, 0, "{}", again.all());
    check_once(&topic, 20, &again.all());
    assert!(again.all().contains("changed after it was published"), "{}", again.all());
    let show = w.fink(&["state", "show", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let changed = rows[0]["changed_after_publish"].as_array().cloned().unwrap_or_default();
    assert_eq!(changed.len(), 1, "{rows}");
    assert!(changed[0][0].as_str().unwrap().ends_with(touched.file_name().unwrap().to_str().unwrap()), "{rows}");
}
