//! The local Kafka cluster behind `fink cluster start|stop|status`: 1 to 3
//! KRaft nodes (broker + controller each), SASL/SCRAM for clients, the
//! StandardAuthorizer, and a super user whose SCRAM credential is written
//! into the metadata log when the storage is formatted.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::cluster::{self, Connection};
use crate::config::{Loaded, SecretValue};

pub use crate::config::DEFAULT_KAFKA_VERSION;

const SERVER_TEMPLATE: &str = include_str!("../../conf/server.properties.tmpl");
const LOG4J2: &str = include_str!("../../conf/log4j2.properties");
const INSTALL_SCRIPT: &str = include_str!("../../conf/install_kafka.sh");
/// Must match RECIPE in conf/install_kafka.sh.
const INSTALL_RECIPE: &str = "2";

/// Loopback only: the local cluster is for this machine.
const HOST: &str = "127.0.0.1";

pub struct LocalCluster {
    pub brokers: u8,
    pub port: u16,
    pub controller_port: u16,
    pub data_dir: PathBuf,
    pub heap: String,
    pub kafka_version: String,
    /// Clients meet a SASL_SSL listener (certificates under `data_dir/tls`).
    pub tls: bool,
    admin_user: String,
    admin_password: Option<SecretValue>,
    conn: Option<Connection>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node: u8,
    pub port: u16,
    pub controller_port: u16,
    pub pid: Option<i32>,
    pub up: bool,
    pub log: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub data_dir: String,
    pub cluster_id: Option<String>,
    pub nodes: Vec<NodeStatus>,
    /// Answered an authenticated metadata request.
    pub reachable: bool,
    pub brokers_seen: usize,
}

impl LocalCluster {
    pub fn from_config(loaded: &Loaded) -> Result<LocalCluster> {
        let c = &loaded.config;
        let admin = c
            .cluster
            .admin
            .as_ref()
            .ok_or_else(|| anyhow!("[cluster.admin] is required to run a local cluster (its super user)"))?;
        let password = admin.password.resolve(&loaded.base_dir).map_err(|e| anyhow!("cluster admin password: {e}"))?;
        if password.expose().contains(['"', '\\', '\n']) {
            bail!("the local admin password must not contain quotes, backslashes or newlines (it goes into a JAAS config)");
        }
        let conn = Connection::admin(&c.cluster, &loaded.base_dir)?;
        Ok(LocalCluster {
            brokers: c.local.brokers,
            port: c.local.port,
            controller_port: c.local.controller_port,
            data_dir: absolute(&loaded.path(&c.local.data_dir)),
            heap: c.local.heap.clone(),
            kafka_version: c.local.kafka_version.clone(),
            tls: c.local.tls,
            admin_user: admin.user.clone(),
            admin_password: Some(password),
            conn: Some(conn),
        })
    }

    /// Where the CA and broker certificate are (`ca.pem` for clients).
    pub fn tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }

    /// The broker-to-broker listener when clients use TLS.
    fn internal_port(&self, i: u8) -> u16 {
        self.port + 1000 + i as u16
    }

    /// A CA, and a certificate it signs for 127.0.0.1 and localhost, made
    /// once (rcgen): `ca.pem`, and `server.pem` with the broker's key
    /// (mode 0600; the CA's key is not kept: nothing else is ever signed).
    fn ensure_certs(&self) -> Result<()> {
        let dir = self.tls_dir();
        if dir.join("ca.pem").is_file() && dir.join("server.pem").is_file() {
            return Ok(());
        }
        fs::create_dir_all(&dir)?;
        let ca_key = rcgen::KeyPair::generate().map_err(|e| anyhow!("CA key: {e}"))?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| anyhow!("{e}"))?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "fink local cluster CA");
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).map_err(|e| anyhow!("CA certificate: {e}"))?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().map_err(|e| anyhow!("broker key: {e}"))?;
        let mut params = rcgen::CertificateParams::new(vec![HOST.to_string(), "localhost".to_string()])
            .map_err(|e| anyhow!("{e}"))?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "fink local broker");
        let cert = params.signed_by(&key, &issuer).map_err(|e| anyhow!("broker certificate: {e}"))?;
        write_private(&dir.join("server.pem"), &format!("{}{}{}", key.serialize_pem(), cert.pem(), ca.pem()))?;
        write_private(&dir.join("ca.pem"), &ca.pem())?;
        Ok(())
    }

    fn node_dir(&self, i: u8) -> PathBuf {
        self.data_dir.join(format!("node-{i}"))
    }
    fn pid_file(&self, i: u8) -> PathBuf {
        self.node_dir(i).join("kafka.pid")
    }
    pub fn log_file(&self, i: u8) -> PathBuf {
        self.node_dir(i).join("kafka.log")
    }
    fn props_file(&self, i: u8) -> PathBuf {
        self.node_dir(i).join("server.properties")
    }
    fn cluster_id_file(&self) -> PathBuf {
        self.data_dir.join("cluster.id")
    }

    /// The pid of node `i` if it is alive and really our broker; a stale pid
    /// file (dead process, or pid reused by something else) is removed.
    pub fn running_pid(&self, i: u8) -> Option<i32> {
        let pf = self.pid_file(i);
        let pid: i32 = fs::read_to_string(&pf).ok()?.trim().parse().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours = String::from_utf8_lossy(&cmdline).contains(&*self.props_file(i).to_string_lossy());
        let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')).unwrap_or(false))
            .unwrap_or(true);
        if ours && !zombie {
            Some(pid)
        } else {
            tracing::info!(node = i, pid, "removing stale pid file");
            let _ = fs::remove_file(&pf);
            None
        }
    }

    pub fn status(&self) -> ClusterStatus {
        let nodes: Vec<NodeStatus> = (0..self.brokers)
            .map(|i| {
                let pid = self.running_pid(i);
                NodeStatus {
                    node: i + 1,
                    port: self.port + i as u16,
                    controller_port: self.controller_port + i as u16,
                    pid,
                    up: pid.is_some(),
                    log: self.log_file(i).display().to_string(),
                }
            })
            .collect();
        let mut reachable = false;
        let mut brokers_seen = 0;
        if nodes.iter().any(|n| n.up) {
            if let Some(conn) = &self.conn {
                let mut c = conn.clone();
                c.timeout = Duration::from_secs(5);
                if let Ok(admin) = cluster::Admin::connect(c) {
                    reachable = true;
                    brokers_seen = admin.topics().map(|(b, _)| b.len()).unwrap_or(0);
                }
            }
        }
        ClusterStatus {
            data_dir: self.data_dir.display().to_string(),
            cluster_id: fs::read_to_string(self.cluster_id_file()).ok().map(|s| s.trim().to_string()),
            nodes,
            reachable,
            brokers_seen,
        }
    }

    fn listeners(&self, i: u8) -> String {
        if self.tls {
            format!("SASL_SSL://{HOST}:{},SASL_PLAINTEXT://{HOST}:{}", self.port + i as u16, self.internal_port(i))
        } else {
            format!("SASL_PLAINTEXT://{HOST}:{}", self.port + i as u16)
        }
    }

    /// The client listener's TLS and SASL settings (empty without TLS).
    fn tls_block(&self) -> String {
        if !self.tls {
            return String::new();
        }
        let pem = self.tls_dir().join("server.pem");
        format!(
            "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256\n\
             listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             listener.name.sasl_ssl.ssl.keystore.type=PEM\n\
             listener.name.sasl_ssl.ssl.keystore.location={}\n",
            pem.display()
        )
    }

    fn render(&self, i: u8) -> Result<String> {
        let pw = self.admin_password.as_ref().ok_or_else(|| anyhow!("no admin password"))?;
        let voters: Vec<String> =
            (0..self.brokers).map(|j| format!("{}@{HOST}:{}", j + 1, self.controller_port + j as u16)).collect();
        let replication = self.brokers.min(3);
        let min_isr = if replication >= 3 { 2 } else { 1 };
        let vars: &[(&str, String)] = &[
            ("node_id", (i + 1).to_string()),
            ("voters", voters.join(",")),
            ("host", HOST.to_string()),
            ("port", (self.port + i as u16).to_string()),
            ("controller_port", (self.controller_port + i as u16).to_string()),
            ("admin_user", self.admin_user.clone()),
            ("admin_password", pw.expose().to_string()),
            ("log_dirs", self.node_dir(i).join("data").display().to_string()),
            ("replication", replication.to_string()),
            ("min_isr", min_isr.to_string()),
            ("listeners", self.listeners(i)),
            ("tls", self.tls_block()),
        ];
        let mut out = SERVER_TEMPLATE.to_string();
        for (k, v) in vars {
            out = out.replace(&format!("{{{{{k}}}}}"), v);
        }
        if let Some(pos) = out.find("{{") {
            bail!(
                "server.properties template has an unknown placeholder near: {}",
                &out[pos..(pos + 30).min(out.len())]
            );
        }
        Ok(out)
    }

    /// Start every node that is not running and wait until the cluster
    /// answers an authenticated metadata request.
    pub fn start(&self, timeout: Duration, progress: &dyn Fn(&str)) -> Result<StartOutcome> {
        let running: Vec<u8> = (0..self.brokers).filter(|i| self.running_pid(*i).is_some()).collect();
        if running.len() == self.brokers as usize {
            self.wait_ready(timeout, &[])?;
            return Ok(StartOutcome::AlreadyRunning);
        }
        let home = kafka_home(&self.kafka_version, progress)?;
        check_java()?;
        self.check_ports(&running)?;
        fs::create_dir_all(&self.data_dir).with_context(|| format!("cannot create {}", self.data_dir.display()))?;
        if self.tls {
            self.ensure_certs()?;
        }
        let cluster_id = match fs::read_to_string(self.cluster_id_file()) {
            Ok(s) => s.trim().to_string(),
            Err(_) => {
                let id = new_cluster_id()?;
                fs::write(self.cluster_id_file(), &id)?;
                id
            }
        };
        let classpath = format!("{}/libs/*", home.display());
        let mut started = Vec::new();
        for i in 0..self.brokers {
            if running.contains(&i) {
                continue;
            }
            let dir = self.node_dir(i);
            fs::create_dir_all(dir.join("data"))?;
            write_private(&self.props_file(i), &self.render(i)?)?;
            fs::write(dir.join("log4j2.properties"), LOG4J2)?;
            if !dir.join("data").join("meta.properties").exists() {
                progress(&format!("formatting storage of node {}", i + 1));
                self.format(&classpath, &cluster_id, i)?;
            }
            progress(&format!("starting node {} on {HOST}:{}", i + 1, self.port + i as u16));
            let pid = self.spawn(&classpath, i)?;
            started.push((i, pid));
        }
        progress("waiting for the cluster to answer");
        self.wait_ready(timeout, &started)?;
        Ok(StartOutcome::Started { nodes: started.len(), cluster_id })
    }

    fn check_ports(&self, running: &[u8]) -> Result<()> {
        for i in 0..self.brokers {
            if running.contains(&i) {
                continue;
            }
            let internal = self.tls.then(|| self.internal_port(i));
            for port in [self.port + i as u16, self.controller_port + i as u16].into_iter().chain(internal) {
                if std::net::TcpListener::bind((HOST, port)).is_err() {
                    bail!("port {port} on {HOST} is in use by another process: stop it or change [local] ports");
                }
            }
        }
        Ok(())
    }

    fn format(&self, classpath: &str, cluster_id: &str, i: u8) -> Result<()> {
        let pw = self.admin_password.as_ref().ok_or_else(|| anyhow!("no admin password"))?;
        let scram = format!("SCRAM-SHA-512=[name={},password={}]", self.admin_user, pw.expose());
        let out = Command::new("java")
            .args(["-Xmx256m", "-cp", classpath])
            .arg(format!("-Dlog4j2.configurationFile={}", self.node_dir(i).join("log4j2.properties").display()))
            .args(["kafka.tools.StorageTool", "format", "--cluster-id", cluster_id, "--config"])
            .arg(self.props_file(i))
            .args(["--add-scram", &scram, "--ignore-formatted"])
            .stdin(Stdio::null())
            .output()
            .context("cannot run java for kafka-storage format")?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            // The tool echoes its arguments on some errors: never show the password.
            bail!("formatting node {} failed:\n{}", i + 1, text.replace(pw.expose(), "(sensitive)"));
        }
        Ok(())
    }

    fn spawn(&self, classpath: &str, i: u8) -> Result<i32> {
        let dir = self.node_dir(i);
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log_file(i))?;
        let mut cmd = Command::new("java");
        cmd.arg(format!("-Xmx{}", self.heap))
            .arg(format!("-Xms{}", self.heap))
            .args(["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"])
            .arg(format!("-Dlog4j2.configurationFile={}", dir.join("log4j2.properties").display()))
            .arg(format!("-Dkafka.logs.dir={}", dir.display()))
            .args(["-cp", classpath, "kafka.Kafka"])
            .arg(self.props_file(i))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Own session: the broker outlives `fink` and ignores the terminal's ^C.
        crate::sys::detach_session(&mut cmd);
        let child = cmd.spawn().context("cannot start java (is Java 17+ installed?)")?;
        let pid = child.id() as i32;
        fs::write(self.pid_file(i), pid.to_string())?;
        // Reap it if it dies while we are still here, so it is not a zombie.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        Ok(pid)
    }

    fn wait_ready(&self, timeout: Duration, started: &[(u8, i32)]) -> Result<()> {
        let conn = self.conn.clone().ok_or_else(|| anyhow!("no admin connection"))?;
        let deadline = Instant::now() + timeout;
        let mut last_err = String::new();
        while Instant::now() < deadline {
            for (i, _) in started {
                if self.running_pid(*i).is_none() {
                    bail!(
                        "node {} exited during start-up; last lines of {}:\n{}",
                        i + 1,
                        self.log_file(*i).display(),
                        self.log_tail(*i, 30)
                    );
                }
            }
            let mut c = conn.clone();
            c.timeout = Duration::from_secs(3);
            match cluster::Admin::connect(c) {
                Ok(admin) => match admin.topics() {
                    Ok((brokers, _)) if brokers.len() >= self.brokers as usize => return Ok(()),
                    Ok((brokers, _)) => last_err = format!("{} of {} brokers registered", brokers.len(), self.brokers),
                    Err(e) => last_err = e.to_string(),
                },
                Err(e) => {
                    last_err = e.to_string();
                    // A refused login will not fix itself: stop waiting.
                    if last_err.contains("authentication") {
                        bail!("{last_err}");
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let tails: Vec<String> = (0..self.brokers)
            .map(|i| format!("--- {} ---\n{}", self.log_file(i).display(), self.log_tail(i, 20)))
            .collect();
        bail!(
            "the cluster did not become ready within {}s ({last_err}); broker logs:\n{}",
            timeout.as_secs(),
            tails.join("\n")
        )
    }

    /// The last `n` lines of a node's log.
    pub fn log_tail(&self, i: u8, n: usize) -> String {
        let Ok(mut f) = fs::File::open(self.log_file(i)) else {
            return "(no log)".into();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut buf = String::new();
        let _ = f.read_to_string(&mut buf);
        let lines: Vec<&str> = buf.lines().collect();
        let tail = &lines[lines.len().saturating_sub(n)..];
        // Shutdown chatter buries the cause: show the first error lines too.
        let errors: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains("] ERROR ") || l.contains("] FATAL "))
            .take(3)
            .flat_map(|(i, _)| lines[i..(i + 2).min(lines.len())].to_vec())
            .filter(|l| !tail.contains(l))
            .collect();
        if errors.is_empty() {
            tail.join("\n")
        } else {
            format!("{}\n...\n{}", errors.join("\n"), tail.join("\n"))
        }
    }

    /// Stop all nodes: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&self, grace: Duration, progress: &dyn Fn(&str)) -> Result<StopOutcome> {
        let pids: Vec<(u8, i32)> = (0..self.brokers).filter_map(|i| self.running_pid(i).map(|p| (i, p))).collect();
        if pids.is_empty() {
            return Ok(StopOutcome::NotRunning);
        }
        for (i, pid) in &pids {
            progress(&format!("stopping node {} (pid {pid})", i + 1));
            crate::sys::send_signal(*pid, crate::sys::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        let mut forced = 0;
        loop {
            let alive: Vec<&(u8, i32)> = pids.iter().filter(|(_, p)| pid_alive(*p)).collect();
            if alive.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for (i, pid) in alive {
                    progress(&format!("node {} did not stop within {}s: killing pid {pid}", i + 1, grace.as_secs()));
                    crate::sys::send_signal(*pid, crate::sys::SIGKILL);
                    forced += 1;
                }
                std::thread::sleep(Duration::from_millis(500));
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for (i, _) in &pids {
            let _ = fs::remove_file(self.pid_file(*i));
        }
        Ok(StopOutcome::Stopped { nodes: pids.len(), forced })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum StartOutcome {
    AlreadyRunning,
    Started { nodes: usize, cluster_id: String },
}

#[derive(Debug, PartialEq, Eq)]
pub enum StopOutcome {
    NotRunning,
    Stopped { nodes: usize, forced: usize },
}

/// Absolute, so paths survive the broker's working directory and match
/// its command line when we look for our own processes.
fn absolute(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(p) };
    // Drop `.` components without resolving symlinks.
    abs.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
}

fn pid_alive(pid: i32) -> bool {
    if !crate::sys::process_exists(pid) {
        return false;
    }
    // A zombie still answers kill(0); it has exited for our purposes.
    !fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')).unwrap_or(false))
        .unwrap_or(false)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.
fn new_cluster_id() -> Result<String> {
    use base64::Engine;
    loop {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|e| anyhow!("no randomness for a cluster id: {e}"))?;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        // Kafka rejects ids that start with '-' (they read as options).
        if !id.starts_with('-') {
            return Ok(id);
        }
    }
}

/// Java 17+ on PATH, or a clear error.
pub fn check_java() -> Result<()> {
    let out = Command::new("java").args(["-XshowSettings:properties", "-version"]).output().map_err(|_| {
        anyhow!("java not found: Kafka needs a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
    })?;
    let text = String::from_utf8_lossy(&out.stderr);
    let major = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("java.specification.version = "))
        .and_then(|v| v.trim().split('.').next().map(str::to_string))
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    if major < 17 {
        bail!("Kafka 4 needs Java 17 or newer; `java` on PATH is version {major}");
    }
    Ok(())
}

/// Where Kafka's jars are: `KAFKA_HOME`, or the cache filled by
/// `conf/install_kafka.sh` (run now if the cache is empty).
pub fn kafka_home(version: &str, progress: &dyn Fn(&str)) -> Result<PathBuf> {
    if let Ok(h) = std::env::var("KAFKA_HOME") {
        let p = PathBuf::from(h);
        if !p.join("libs").is_dir() {
            bail!("KAFKA_HOME={} has no libs/ directory", p.display());
        }
        return Ok(p);
    }
    let cached = cache_dir().join(format!("kafka-{version}"));
    // The install script marks a complete cache with its recipe revision.
    if fs::read_to_string(cached.join(".complete")).map(|s| s.trim() == INSTALL_RECIPE).unwrap_or(false) {
        return Ok(cached);
    }
    progress(&format!("installing Apache Kafka {version} from Maven Central (once)"));
    install(version)
}

pub fn cache_dir() -> PathBuf {
    if let Ok(c) = std::env::var("FINK_CACHE") {
        return PathBuf::from(c);
    }
    let base = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())).join(".cache"));
    base.join("fink")
}

/// Run the embedded install script; returns the Kafka home it prints.
pub fn install(version: &str) -> Result<PathBuf> {
    let mut child = Command::new("bash")
        .args(["-s"])
        .env("KAFKA_VERSION", version)
        .env("FINK_CACHE", cache_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run bash for the Kafka install script")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(INSTALL_SCRIPT.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("installing Kafka {version} failed (see the messages above)");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let home = text.lines().last().unwrap_or("").trim();
    if home.is_empty() {
        bail!("the install script printed no KAFKA_HOME");
    }
    Ok(PathBuf::from(home))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_chars_of_base64url() {
        for _ in 0..50 {
            let id = new_cluster_id().unwrap();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'));
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
    }
}
