//! Everything that talks to the live cluster: connecting with SCRAM, reading
//! its state in a few batched admin calls, and the changes apply makes.

pub mod ffi;
pub mod groups;
pub mod protocol;
pub mod quotas;
pub mod reassign;
pub mod scram;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use serde::Serialize;

use crate::config::{
    AclOperation, ClusterConfig, Config, PatternType, Permission, ResourceKind, ScramMechanism, SecretValue,
    SecurityProtocol,
};

/// How to reach the cluster and as whom.
#[derive(Clone, Debug)]
pub struct Connection {
    pub bootstrap: String,
    pub protocol: SecurityProtocol,
    pub mechanism: ScramMechanism,
    pub user: Option<String>,
    pub password: Option<SecretValue>,
    pub ssl_ca_location: Option<String>,
    pub timeout: Duration,
}

impl Connection {
    /// The admin connection declared in `[cluster]`, secrets resolved.
    pub fn admin(cluster: &ClusterConfig, base: &std::path::Path) -> Result<Connection> {
        let (user, password) = match &cluster.admin {
            Some(a) => {
                let pw = a.password.resolve(base).map_err(|e| anyhow!("cluster admin password: {e}"))?;
                (Some(a.user.clone()), Some(pw))
            }
            None => (None, None),
        };
        Ok(Connection {
            bootstrap: cluster.bootstrap.join(","),
            protocol: cluster.security_protocol,
            mechanism: cluster.sasl_mechanism,
            user,
            password,
            ssl_ca_location: cluster.ssl_ca_location.clone(),
            timeout: Duration::from_secs(cluster.timeout_secs),
        })
    }

    /// The same cluster as another principal.
    pub fn as_user(&self, user: &str, password: SecretValue, mechanism: ScramMechanism) -> Connection {
        Connection { user: Some(user.to_string()), password: Some(password), mechanism, ..self.clone() }
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c.set("security.protocol", self.protocol.as_str());
        if self.protocol != SecurityProtocol::Plaintext {
            c.set("sasl.mechanisms", self.mechanism.as_str());
            if let Some(u) = &self.user {
                c.set("sasl.username", u);
            }
            if let Some(p) = &self.password {
                c.set("sasl.password", p.expose());
            }
        }
        if let Some(ca) = &self.ssl_ca_location {
            c.set("ssl.ca.location", ca);
        }
        // librdkafka logs go through our context, never to stderr directly.
        c.set_log_level(RDKafkaLogLevel::Warning);
        c
    }

    pub fn who(&self) -> String {
        self.user.clone().unwrap_or_else(|| "ANONYMOUS".into())
    }

    /// Tells whether two connections log in with the same credentials
    /// without keeping them: a keyed hash under a key drawn once per
    /// process, so it means nothing outside it.
    pub fn credential_fingerprint(&self) -> Fingerprint {
        use hmac::{Hmac, Mac};
        static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(|| {
            let mut k = [0u8; 32];
            // Without randomness the fingerprints are still comparable
            // within the process; they just use a fixed key.
            let _ = getrandom::fill(&mut k);
            k
        });
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        for part in [self.who().as_str(), self.mechanism.as_str(), self.password.as_ref().map_or("", |p| p.expose())] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part.as_bytes());
        }
        let out = mac.finalize().into_bytes();
        Fingerprint(out[..16].try_into().expect("16 bytes"))
    }
}

/// The connection of a user declared in fink.toml (`None` or the admin's
/// name: the admin), its secret resolved now. Every command that acts as a
/// user goes through here.
pub fn user_connection(loaded: &crate::config::Loaded, user: Option<&str>) -> Result<Connection> {
    let admin = Connection::admin(&loaded.config.cluster, &loaded.base_dir)?;
    let Some(user) = user.filter(|u| admin.user.as_deref() != Some(*u)) else {
        return Ok(admin);
    };
    let mechanism = loaded.config.users.iter().find(|u| u.name == user).map(|u| u.mechanism).unwrap_or_default();
    Ok(admin.as_user(user, user_password(loaded, user)?, mechanism))
}

/// The password of a user declared in fink.toml, resolved now (env or
/// file). The one place user credentials are read.
pub fn user_password(loaded: &crate::config::Loaded, user: &str) -> Result<SecretValue> {
    let u = loaded
        .config
        .users
        .iter()
        .find(|u| u.name == user)
        .ok_or_else(|| anyhow!("user {user:?} is not declared in fink.toml"))?;
    u.password.resolve(&loaded.base_dir).map_err(|e| anyhow!("user {user:?}: {e}"))
}

/// One change's outcome: the cluster's error message if it failed.
pub type OpResult = std::result::Result<(), String>;

/// A topic to create.
pub struct NewTopicSpec<'a> {
    pub name: &'a str,
    pub partitions: i32,
    pub replication_factor: Option<i32>,
    pub configs: &'a BTreeMap<String, String>,
}

fn topic_results(results: Vec<rdkafka::admin::TopicResult>) -> Vec<(String, OpResult)> {
    results
        .into_iter()
        .map(|r| match r {
            Ok(n) => (n, Ok(())),
            Err((n, code)) => (n, Err(code.to_string())),
        })
        .collect()
}

/// See [`Connection::credential_fingerprint`]; never printed.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint([u8; 16]);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint(..)")
    }
}

/// Remembers librdkafka's error callbacks so an authentication failure can
/// be told apart from an unreachable cluster.
#[derive(Clone, Default)]
pub struct RecordingContext {
    errors: Arc<Mutex<Vec<(KafkaError, String)>>>,
}

impl RecordingContext {
    pub fn auth_error(&self) -> Option<String> {
        let errs = self.errors.lock().unwrap();
        errs.iter().find_map(|(e, reason)| {
            let text = format!("{e} {reason}");
            let auth = matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::Authentication))
                || text.contains("SASL authentication")
                || text.contains("Authentication failed");
            auth.then(|| reason.clone())
        })
    }
    /// A TLS handshake that failed: a CA that does not sign the broker's
    /// certificate, or a certificate for another host. Retrying cannot fix it.
    pub fn tls_error(&self) -> Option<String> {
        let errs = self.errors.lock().unwrap();
        errs.iter().find_map(|(e, reason)| {
            let text = format!("{e} {reason}");
            (text.contains("SSL handshake failed") || text.contains("certificate verify failed"))
                .then(|| reason.clone())
        })
    }
    pub fn last_error(&self) -> Option<String> {
        self.errors.lock().unwrap().last().map(|(_, r)| r.clone())
    }
}

/// librdkafka's log lines, for every client fink makes: at debug level,
/// as its events (a partition's end, a closed idle connection) are
/// normal; what matters reaches the caller as errors.
pub fn librdkafka_log(level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
    tracing::debug!(target: "librdkafka", ?level, fac, "{log_message}");
}

impl ClientContext for RecordingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        librdkafka_log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
        self.errors.lock().unwrap().push((error, reason.to_string()));
    }
}
impl ConsumerContext for RecordingContext {}
impl ProducerContext for RecordingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// The outcome of trying to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    Accepted,
    Refused(String),
    Unreachable(String),
}

/// Try to authenticate and read metadata; returns as soon as the answer is known.
pub fn check_login(conn: &Connection, timeout: Duration) -> Login {
    // Fast path: speak SCRAM directly (plaintext transport only).
    if conn.protocol == SecurityProtocol::SaslPlaintext {
        if let (Some(user), Some(pw)) = (&conn.user, &conn.password) {
            if let Some(outcome) = scram::login(&conn.bootstrap, conn.mechanism, user, pw.expose(), timeout) {
                return outcome;
            }
        }
    }
    librdkafka_login(conn, timeout)
}

/// How a failed TLS handshake starts its message.
const TLS_FAILED: &str = "TLS handshake failed";

/// Login check through a librdkafka client (TLS, or brokers the fast path cannot speak to).
fn librdkafka_login(conn: &Connection, timeout: Duration) -> Login {
    let ctx = RecordingContext::default();
    let mut cfg = conn.client_config();
    // Fail fast: do not retry a refused login for the whole timeout.
    cfg.set("reconnect.backoff.ms", "100").set("reconnect.backoff.max.ms", "500");
    // A producer's poll() serves the main queue, where librdkafka reports
    // authentication failures to the context.
    let client: BaseProducer<RecordingContext> = match cfg.create_with_context(ctx.clone()) {
        Ok(c) => c,
        Err(e) => return Login::Unreachable(e.to_string()),
    };
    let deadline = Instant::now() + timeout;
    loop {
        let result = client.client().fetch_metadata(None, Duration::from_millis(250));
        client.poll(Duration::ZERO);
        match result {
            Ok(_) => return Login::Accepted,
            Err(e) => {
                if let Some(reason) = ctx.auth_error() {
                    return Login::Refused(reason);
                }
                if let Some(reason) = ctx.tls_error() {
                    return Login::Unreachable(format!("{TLS_FAILED}: {reason}"));
                }
                if Instant::now() >= deadline {
                    return Login::Unreachable(ctx.last_error().unwrap_or_else(|| e.to_string()));
                }
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionInfo {
    pub id: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiveTopic {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
    pub replication_factor: i32,
    /// Only configs set on the topic itself (dynamic topic configs).
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScramCredential {
    pub mechanism: ScramMechanism,
    pub iterations: i32,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiveUser {
    pub name: String,
    pub credentials: Vec<ScramCredential>,
}

/// One ACL binding, as Kafka stores it (one operation each).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    pub principal: String,
    pub host: String,
    pub resource: ResourceKind,
    pub name: String,
    pub pattern: PatternType,
    pub operation: AclOperation,
    pub permission: Permission,
}

impl std::fmt::Display for AclBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pat = match self.pattern {
            PatternType::Literal => "",
            PatternType::Prefixed => "prefix ",
        };
        let perm = match self.permission {
            Permission::Allow => "allow",
            Permission::Deny => "deny",
        };
        write!(
            f,
            "{} {perm} {} on {} {pat}{} from {}",
            self.principal,
            self.operation,
            self.resource.as_str(),
            self.name,
            self.host
        )
    }
}

/// A snapshot of what fink manages on the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct LiveState {
    pub cluster_id: Option<String>,
    pub brokers: Vec<BrokerInfo>,
    pub topics: BTreeMap<String, LiveTopic>,
    pub users: BTreeMap<String, LiveUser>,
    pub acls: Vec<AclBinding>,
    /// Client quotas by entity key (`user=alice`); `Err` when they could
    /// not be read (a plan declaring quotas then refuses to guess).
    pub quotas: std::result::Result<BTreeMap<String, LiveQuota>, String>,
    /// Partitions being moved, by topic (`Err`: could not be read).
    pub reassigning: std::result::Result<BTreeMap<String, std::collections::BTreeSet<i32>>, String>,
    /// Brokers with a replication throttle rate set (a move's, or one an
    /// interrupted apply left).
    pub throttled_brokers: Vec<i32>,
}

/// One quota entity on the cluster and its values.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveQuota {
    pub entity: quotas::Entity,
    pub values: quotas::Values,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

/// An authenticated admin session.
pub struct Admin {
    pub conn: Connection,
    admin: AdminClient<RecordingContext>,
    ctx: RecordingContext,
    rt: tokio::runtime::Runtime,
}

impl Admin {
    /// Connect and authenticate; a wrong password or unreachable cluster
    /// is reported here with what to check.
    pub fn connect(conn: Connection) -> Result<Admin> {
        let ctx = RecordingContext::default();
        let admin: AdminClient<RecordingContext> =
            conn.client_config().create_with_context(ctx.clone()).context("cannot create the Kafka admin client")?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let a = Admin { conn, admin, ctx, rt };
        a.wait_authenticated()?;
        Ok(a)
    }

    fn refused(&self, reason: &str) -> anyhow::Error {
        anyhow!(
            "authentication as {:?} to {} failed: {reason}\n  check [cluster.admin] in fink.toml (and that `fink cluster start` bootstrapped this admin)",
            self.conn.who(),
            self.conn.bootstrap
        )
    }

    fn wait_authenticated(&self) -> Result<()> {
        // The admin client does not surface SASL errors; a probe does.
        match check_login(&self.conn, self.conn.timeout) {
            Login::Accepted => {}
            Login::Refused(reason) => return Err(self.refused(&reason)),
            Login::Unreachable(why) if why.starts_with(TLS_FAILED) => {
                return Err(anyhow!(
                    "cannot connect to cluster {} over TLS: {why}\n  check [cluster] ssl_ca_location (the CA that signed the brokers' certificates) and that the certificates name the bootstrap host",
                    self.conn.bootstrap
                ))
            }
            Login::Unreachable(why) => {
                return Err(anyhow!(
                    "cluster {} did not answer within {}s: {why}\n  is it running? (`fink cluster status`)",
                    self.conn.bootstrap,
                    self.conn.timeout.as_secs()
                ))
            }
        }
        let deadline = Instant::now() + self.conn.timeout;
        loop {
            match self.admin.inner().fetch_metadata(None, Duration::from_millis(500)) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    if let Some(reason) = self.ctx.auth_error() {
                        return Err(self.refused(&reason));
                    }
                    if Instant::now() >= deadline {
                        let why = self.ctx.last_error().unwrap_or_else(|| e.to_string());
                        return Err(anyhow!(
                            "cluster {} did not answer within {}s: {why}\n  is it running? (`fink cluster status`)",
                            self.conn.bootstrap,
                            self.conn.timeout.as_secs()
                        ));
                    }
                }
            }
        }
    }

    pub fn handle(&self) -> ffi::Handle<'_> {
        ffi::Handle::of(self.admin.inner())
    }

    /// Create topics in one request; `(topic, outcome)` per topic. A
    /// replication factor of `None` leaves it to the broker's default.
    pub fn create_topics(&self, topics: &[NewTopicSpec<'_>]) -> Result<Vec<(String, OpResult)>> {
        use rdkafka::admin::{NewTopic, TopicReplication};
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| {
                let mut n =
                    NewTopic::new(t.name, t.partitions, TopicReplication::Fixed(t.replication_factor.unwrap_or(-1)));
                for (k, v) in t.configs {
                    n = n.set(k, v);
                }
                n
            })
            .collect();
        let r = self.block_on(self.admin.create_topics(new.iter(), &self.admin_options()))?;
        Ok(topic_results(r))
    }

    /// Grow topics to `(topic, partitions)`; `(topic, outcome)` per topic.
    pub fn create_partitions(&self, topics: &[(&str, usize)]) -> Result<Vec<(String, OpResult)>> {
        let new: Vec<rdkafka::admin::NewPartitions> =
            topics.iter().map(|(t, n)| rdkafka::admin::NewPartitions::new(t, *n)).collect();
        let r = self.block_on(self.admin.create_partitions(new.iter(), &self.admin_options()))?;
        Ok(topic_results(r))
    }

    pub fn delete_topics(&self, topics: &[&str]) -> Result<Vec<(String, OpResult)>> {
        let r = self.block_on(self.admin.delete_topics(topics, &self.admin_options()))?;
        Ok(topic_results(r))
    }

    /// Set (`Some`) or reset (`None`) topic configs; `(topic, outcome)` per topic.
    pub fn alter_topic_configs(&self, changes: &[(String, Vec<ffi::ConfigEdit>)]) -> Result<Vec<(String, OpResult)>> {
        Ok(ffi::incremental_alter_topic_configs(self.handle(), changes, self.conn.timeout)?)
    }

    /// Upsert or delete SCRAM credentials; `(user, outcome)` per user.
    pub fn alter_scram(&self, changes: &[ffi::ScramChange<'_>]) -> Result<Vec<(String, OpResult)>> {
        Ok(ffi::alter_scram(self.handle(), changes, self.conn.timeout)?)
    }

    /// One outcome per binding, in order.
    pub fn create_acls(&self, bindings: &[AclBinding]) -> Result<Vec<OpResult>> {
        Ok(ffi::create_acls(self.handle(), bindings, self.conn.timeout)?)
    }

    /// One outcome per binding filter, in order.
    pub fn delete_acls(&self, bindings: &[AclBinding]) -> Result<Vec<OpResult>> {
        let r = ffi::delete_acls(self.handle(), bindings, self.conn.timeout)?;
        Ok(r.into_iter().map(|x| x.map(|_| ())).collect())
    }

    pub fn timeout(&self) -> Duration {
        self.conn.timeout
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.admin.inner().fetch_cluster_id(self.conn.timeout)
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new().request_timeout(Some(self.conn.timeout)).operation_timeout(Some(self.conn.timeout))
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn admin_client(&self) -> &AdminClient<RecordingContext> {
        &self.admin
    }

    pub fn admin_options(&self) -> AdminOptions {
        self.options()
    }

    /// Wait until every topic is in the brokers' metadata with a leader for
    /// each partition. A created topic reaches the controller first; clients
    /// asking a broker a moment later could still be told it does not exist.
    /// Returns the topics still not ready at the deadline.
    pub fn wait_topics_ready(&self, topics: &[String], timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut waiting: Vec<String> = topics.to_vec();
        while !waiting.is_empty() {
            if let Ok(md) = self.admin.inner().fetch_metadata(None, Duration::from_millis(1000)) {
                waiting.retain(|name| {
                    !md.topics().iter().any(|t| {
                        t.name() == name
                            && t.error().is_none()
                            && !t.partitions().is_empty()
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                });
            }
            if waiting.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        waiting
    }

    /// Topics with partitions and their dynamic configs (one metadata request,
    /// one DescribeConfigs for all topics).
    pub fn topics(&self) -> Result<(Vec<BrokerInfo>, BTreeMap<String, LiveTopic>)> {
        let md = self.admin.inner().fetch_metadata(None, self.conn.timeout).context("cannot read cluster metadata")?;
        let brokers = md
            .brokers()
            .iter()
            .map(|b| BrokerInfo { id: b.id(), host: b.host().to_string(), port: b.port() })
            .collect();
        let mut topics = BTreeMap::new();
        for t in md.topics() {
            if let Some(e) = t.error() {
                tracing::warn!(topic = t.name(), error = ?e, "topic metadata error");
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions()
                .iter()
                .map(|p| PartitionInfo {
                    id: p.id(),
                    leader: p.leader(),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().to_vec(),
                })
                .collect();
            partitions.sort_by_key(|p| p.id);
            let rf = partitions.first().map(|p| p.replicas.len() as i32).unwrap_or(0);
            topics.insert(
                t.name().to_string(),
                LiveTopic {
                    name: t.name().to_string(),
                    partitions,
                    replication_factor: rf,
                    configs: BTreeMap::new(),
                    internal: t.name().starts_with("__"),
                },
            );
        }
        let names: Vec<String> = topics.keys().filter(|n| !n.starts_with("__")).cloned().collect();
        for chunk in names.chunks(500) {
            let specs: Vec<ResourceSpecifier> = chunk.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
            let results = self
                .rt
                .block_on(self.admin.describe_configs(specs.iter(), &self.options()))
                .context("DescribeConfigs failed")?;
            for (name, res) in chunk.iter().zip(results) {
                let res = res.map_err(|e| anyhow!("describe configs of topic {name:?}: {e:?}"))?;
                let t = topics.get_mut(name).expect("topic listed above");
                for entry in res.entries {
                    if entry.source == rdkafka::admin::ConfigSource::DynamicTopic {
                        if let Some(v) = entry.value {
                            t.configs.insert(entry.name, v);
                        }
                    }
                }
            }
        }
        Ok((brokers, topics))
    }

    /// Each topic's effective `retention.ms` (its own, or the broker's);
    /// `None` for unlimited (-1).
    pub fn retention_ms(&self, names: &[String]) -> Result<BTreeMap<String, Option<i64>>> {
        let mut out = BTreeMap::new();
        for chunk in names.chunks(500) {
            let specs: Vec<ResourceSpecifier> = chunk.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
            let results = self
                .rt
                .block_on(self.admin.describe_configs(specs.iter(), &self.options()))
                .context("DescribeConfigs failed")?;
            for (name, res) in chunk.iter().zip(results) {
                let res = res.map_err(|e| anyhow!("describe configs of topic {name:?}: {e:?}"))?;
                let v = res.get("retention.ms").and_then(|e| e.value.as_ref()).and_then(|v| v.parse::<i64>().ok());
                out.insert(name.clone(), v.filter(|r| *r >= 0));
            }
        }
        Ok(out)
    }

    pub fn users(&self) -> Result<BTreeMap<String, LiveUser>> {
        let users = ffi::describe_scram(self.handle(), self.conn.timeout)
            .map_err(|e| anyhow!("DescribeUserScramCredentials failed: {e}"))?;
        Ok(users
            .into_iter()
            .map(|(name, mut credentials)| {
                credentials.sort();
                (name.clone(), LiveUser { name, credentials })
            })
            .collect())
    }

    pub fn acls(&self) -> Result<Vec<AclBinding>> {
        let mut acls =
            ffi::describe_acls(self.handle(), self.conn.timeout).map_err(|e| anyhow!("DescribeAcls failed: {e}"))?;
        acls.sort();
        Ok(acls)
    }

    /// The whole live state in four batched requests.
    pub fn live_state(&self) -> Result<LiveState> {
        let (brokers, topics) = self.topics()?;
        Ok(LiveState {
            cluster_id: self.cluster_id(),
            brokers,
            topics,
            users: self.users()?,
            acls: self.acls()?,
            quotas: self.quotas().map_err(|e| format!("{e:#}")),
            reassigning: self.reassigning().map_err(|e| format!("{e:#}")),
            throttled_brokers: self.throttled_brokers().unwrap_or_default(),
        })
    }

    /// Partitions being moved, by topic.
    pub fn reassigning(&self) -> Result<BTreeMap<String, std::collections::BTreeSet<i32>>> {
        let mut c = quotas::client(&self.conn)?;
        reassign::in_progress(&mut c)
    }

    /// Start moving a topic's partitions.
    pub fn start_reassignment(&self, topic: &str, target: &BTreeMap<i32, Vec<i32>>) -> Result<()> {
        let mut c = quotas::client(&self.conn)?;
        reassign::start(&mut c, topic, target)
    }

    /// Brokers whose replication throttle rates are set dynamically.
    pub fn throttled_brokers(&self) -> Result<Vec<i32>> {
        let (brokers, _) = self.topics_metadata_brokers()?;
        let mut out = Vec::new();
        // One broker resource per request: each goes to its broker.
        for id in brokers {
            let spec = [ResourceSpecifier::Broker(id)];
            let results = self
                .rt
                .block_on(self.admin.describe_configs(spec.iter(), &self.options()))
                .context("DescribeConfigs failed")?;
            let throttled = results.into_iter().flatten().any(|res| {
                res.entries.iter().any(|e| {
                    reassign::BROKER_THROTTLES.contains(&e.name.as_str())
                        && e.source == rdkafka::admin::ConfigSource::DynamicBroker
                        && e.value.is_some()
                })
            });
            if throttled {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn topics_metadata_brokers(&self) -> Result<(Vec<i32>, ())> {
        let md = self.admin.inner().fetch_metadata(None, self.conn.timeout).context("cannot read cluster metadata")?;
        Ok((md.brokers().iter().map(|b| b.id()).collect(), ()))
    }

    /// Set (`Some`) or remove (`None`) dynamic configs of each broker.
    pub fn alter_broker_configs(&self, changes: &[(i32, Vec<ffi::ConfigEdit>)]) -> Result<()> {
        // One broker resource per request, as librdkafka routes it there.
        for (id, edits) in changes {
            let r = ffi::incremental_alter_broker_configs(
                self.handle(),
                &[(id.to_string(), edits.clone())],
                self.conn.timeout,
            )?;
            for (name, ok) in r {
                ok.map_err(|e| anyhow!("broker {name}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Every client quota (over fink's protocol client).
    pub fn quotas(&self) -> Result<BTreeMap<String, LiveQuota>> {
        let mut c = quotas::client(&self.conn)?;
        Ok(quotas::describe(&mut c)?
            .into_iter()
            .map(|(entity, values)| (entity.key(), LiveQuota { entity, values }))
            .collect())
    }

    /// Set and remove quota values, many entities in one request.
    pub fn alter_quotas(&self, edits: &[quotas::QuotaEdit<'_>]) -> Result<Vec<std::result::Result<(), String>>> {
        let mut c = quotas::client(&self.conn)?;
        quotas::alter(&mut c, edits)
    }
}

/// A producer or consumer connection for data paths (streams, consume, tests).
pub fn producer(conn: &Connection) -> Result<BaseProducer<RecordingContext>> {
    conn.client_config().create_with_context(RecordingContext::default()).context("cannot create producer")
}

/// Shortcut used by commands that need only the admin connection.
pub fn connect_admin(config: &Config, base: &std::path::Path) -> Result<Admin> {
    Admin::connect(Connection::admin(&config.cluster, base)?)
}
