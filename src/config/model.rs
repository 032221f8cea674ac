//! The `fink.toml` data model. Every table denies unknown keys so a typo is an
//! error rather than a silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::secret::Secret;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub local: LocalConfig,
    /// Delete live resources that `fink.toml` does not declare.
    #[serde(default)]
    pub prune: bool,
    /// Glob patterns (`*` wildcard) of topic, user and ACL resource names that
    /// fink never touches, even with prune.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// If set, glob patterns of the names fink manages: live topics, users
    /// and ACLs outside them are neither pruned nor reported as unmanaged
    /// (several tools or teams can share one cluster).
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub defaults: TopicDefaults,
    #[serde(default, rename = "topic")]
    pub topics: Vec<TopicConfig>,
    #[serde(default, rename = "user")]
    pub users: Vec<UserConfig>,
    #[serde(default, rename = "acl")]
    pub acls: Vec<AclConfig>,
    /// Client quotas: byte rates and request shares per user, client id,
    /// both, or the defaults.
    #[serde(default, rename = "quota")]
    pub quotas: Vec<QuotaConfig>,
    #[serde(default, rename = "filter")]
    pub filters: BTreeMap<String, FilterConfig>,
    #[serde(default, rename = "stream")]
    pub streams: Vec<StreamConfig>,
    #[serde(default)]
    pub run: RunConfig,
    /// Other files (globs allowed, relative to this file) whose topics,
    /// users, ACLs, filters, streams and constants are added to this one.
    #[serde(default)]
    pub include: Vec<String>,
    /// Named constants filters use by name (`cdsxmatch in EG_HOST`).
    /// Names are upper case: `EG_HOST`, `MAX_AGE_DAYS`.
    #[serde(default, rename = "const")]
    pub consts: BTreeMap<String, ConstValue>,
    /// Chat or webhook messages for a stream's alerts.
    #[serde(default, rename = "notify")]
    pub notify: Vec<NotifyConfig>,
    /// Object stores and HDFS clusters that sources name.
    #[serde(default)]
    pub storage: BTreeMap<String, StorageConfig>,
    /// The worker processes that run Python filters.
    #[serde(default)]
    pub python: PythonConfig,
}

/// `[[quota]]`: Kafka client quotas for a user, a client id, both, or the
/// defaults (`"<default>"`, as `kafka-configs.sh --entity-default`). Rates
/// are per broker. A key left out is not set (the broker's default).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// A user name, or `"<default>"` for every user without a quota of its own.
    #[serde(default)]
    pub user: Option<String>,
    /// A client id, or `"<default>"`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Bytes per second a producer may send to each broker.
    #[serde(default)]
    pub producer_byte_rate: Option<f64>,
    /// Bytes per second a consumer may fetch from each broker.
    #[serde(default)]
    pub consumer_byte_rate: Option<f64>,
    /// Percentage of one request handler and network thread's time.
    #[serde(default)]
    pub request_percentage: Option<f64>,
    /// Topic and partition creations and deletions per second.
    #[serde(default)]
    pub controller_mutation_rate: Option<f64>,
}

impl QuotaConfig {
    /// The values declared, by Kafka's key.
    pub fn values(&self) -> BTreeMap<String, f64> {
        [
            ("producer_byte_rate", self.producer_byte_rate),
            ("consumer_byte_rate", self.consumer_byte_rate),
            ("request_percentage", self.request_percentage),
            ("controller_mutation_rate", self.controller_mutation_rate),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect()
    }
}

/// `[python]`: how Python filters run.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PythonConfig {
    /// The interpreter that runs filters, usually a virtualenv's
    /// (`.fink/venv/bin/python`; a path with `/` is relative to this file).
    /// It needs pyarrow and pandas, and what the filters import.
    pub interpreter: String,
    /// Worker processes per fink instance; 0: the number of cores.
    pub workers: usize,
    /// Seconds one call of a filter may take before its worker is killed
    /// and replaced.
    pub timeout_s: u64,
    /// Failed attempts in a row on a batch (a worker that died or timed
    /// out) before the stream is failed and restarted by the restart policy.
    pub max_failures: u32,
    /// Convert a batch's column to pandas once per worker for every filter
    /// that reads it (pandas 3's copy-on-write keeps each filter's copy its
    /// own). Off: each call converts its own, for a filter that changes the
    /// dicts of a history in place.
    pub share_conversions: bool,
    /// Rows per call of a Python filter. Above the source's batch size, a
    /// stream first reads only the columns its filters need, a file at a
    /// time, and calls each Python filter on up to this many rows (the
    /// rows its CEL filters kept); the alerts then flow in ordinary
    /// batches. fink-filters' functions were written for Spark's Arrow
    /// batches (10,000 rows), and some pay a fixed cost per call (a
    /// catalogue rebuilt for a cone search). 0, or the batch size: call on
    /// each batch as it is read.
    pub batch_rows: usize,
}

impl Default for PythonConfig {
    fn default() -> Self {
        PythonConfig {
            interpreter: "python3".into(),
            workers: 0,
            timeout_s: 60,
            max_failures: 3,
            share_conversions: true,
            batch_rows: 512,
        }
    }
}

/// `[[notify]]`: a short message per published alert of a stream, posted
/// to a webhook (Slack), the Telegram Bot API, or any JSON endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The stream whose alerts are notified.
    pub stream: String,
    /// The endpoint; a secret (it carries the token): `{ env = "SLACK_WEBHOOK" }`.
    pub url: Secret,
    /// The payload: Slack's `{"text"}`, Telegram's Bot API (with `chat_id`), or JSON.
    #[serde(default)]
    pub format: NotifyFormat,
    /// Telegram's `chat_id` (`@channel` or a number).
    #[serde(default)]
    pub chat_id: Option<String>,
    /// The text, with `{field}` and `{struct.field}` replaced by the alert's values.
    #[serde(default = "default_template")]
    pub template: String,
    /// Messages beyond this in a minute are dropped (and counted).
    #[serde(default = "default_max_per_minute")]
    pub max_per_minute: u32,
}

fn default_template() -> String {
    "{objectId}".into()
}

fn default_max_per_minute() -> u32 {
    30
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// `{"text": ...}`
    #[default]
    Slack,
    /// `{"chat_id": ..., "text": ...}` (Bot API sendMessage)
    Telegram,
    /// `{"stream": ..., "topic": ..., "text": ...}`
    Json,
}

/// What an included file may declare: everything but `[cluster]`,
/// `[local]` and `[run]`, which belong to the deployment's own file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Included {
    #[serde(default, rename = "topic")]
    pub topics: Vec<TopicConfig>,
    #[serde(default, rename = "user")]
    pub users: Vec<UserConfig>,
    #[serde(default, rename = "acl")]
    pub acls: Vec<AclConfig>,
    #[serde(default, rename = "filter")]
    pub filters: BTreeMap<String, FilterConfig>,
    #[serde(default, rename = "stream")]
    pub streams: Vec<StreamConfig>,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default, rename = "const")]
    pub consts: BTreeMap<String, ConstValue>,
}

/// A Kafka ACL operation: one type for validation, plans and the admin
/// calls. Serialized with Kafka's spelling (`IdempotentWrite`).
///
/// Variants are in alphabetical order so that bindings sort as their names
/// do (plans list them in that order).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
pub enum AclOperation {
    All,
    Alter,
    AlterConfigs,
    ClusterAction,
    Create,
    Delete,
    Describe,
    DescribeConfigs,
    IdempotentWrite,
    Read,
    Write,
}

impl AclOperation {
    pub const EVERY: [AclOperation; 11] = [
        AclOperation::All,
        AclOperation::Read,
        AclOperation::Write,
        AclOperation::Create,
        AclOperation::Delete,
        AclOperation::Alter,
        AclOperation::Describe,
        AclOperation::ClusterAction,
        AclOperation::DescribeConfigs,
        AclOperation::AlterConfigs,
        AclOperation::IdempotentWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AclOperation::All => "All",
            AclOperation::Read => "Read",
            AclOperation::Write => "Write",
            AclOperation::Create => "Create",
            AclOperation::Delete => "Delete",
            AclOperation::Alter => "Alter",
            AclOperation::Describe => "Describe",
            AclOperation::ClusterAction => "ClusterAction",
            AclOperation::DescribeConfigs => "DescribeConfigs",
            AclOperation::AlterConfigs => "AlterConfigs",
            AclOperation::IdempotentWrite => "IdempotentWrite",
        }
    }

    /// Case-insensitive, as `kafka-acls` accepts them.
    pub fn parse(name: &str) -> Option<AclOperation> {
        Self::EVERY.into_iter().find(|o| o.as_str().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for AclOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Apache Kafka release `fink cluster` runs unless `[local]
/// kafka_version` says otherwise.
impl Config {
    /// The declared topics plus the state topic (exactly-once), which fink
    /// declares itself unless `[[topic]]` does: compacted, replicated as
    /// `[defaults]` says.
    pub fn desired_topics(&self) -> Vec<TopicConfig> {
        let mut out = self.topics.clone();
        let st = &self.run.state_topic;
        if self.run.exactly_once() && !out.iter().any(|t| &t.name == st) {
            let mut config = BTreeMap::new();
            config.insert("cleanup.policy".to_string(), ConfigValue::Str("compact".into()));
            // Small segments so compaction keeps what a stream reads at start small.
            config.insert("segment.ms".to_string(), ConfigValue::Str("3600000".into()));
            config.insert("min.compaction.lag.ms".to_string(), ConfigValue::Str("0".into()));
            out.push(TopicConfig {
                name: st.clone(),
                partitions: Some(self.run.state_partitions),
                replication_factor: None,
                replicas: None,
                config,
            });
        }
        out
    }
}

pub const DEFAULT_KAFKA_VERSION: &str = "4.1.1";

/// How `fink run` runs streams.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Checkpoints and quarantine logs.
    pub state_dir: String,
    /// Prometheus `/metrics` (and `/status`) listen address; empty disables it.
    pub metrics_addr: String,
    /// Source rows read per batch, at most: a Parquet batch also holds no
    /// more than ~12 MB of the columns read (~68 Rubin alerts; ZTF alerts
    /// fill 256).
    pub batch_size: usize,
    /// Alerts sent and not yet acknowledged, per stream. Also the most
    /// duplicates a crash can cause per stream.
    pub max_in_flight: usize,
    /// A stream with alerts in flight and no delivery report for this long
    /// is reported as stalled (status, metric, log). It keeps waiting.
    pub stall_after_s: u64,
    /// On SIGTERM, SIGINT or a reload, how long a stopping stream's
    /// in-flight alerts get to be confirmed. After it the stream ends with
    /// them unconfirmed (sent again on the next start) and `fink run`
    /// exits 1.
    pub shutdown_timeout_s: u64,
    /// `exactly-once` (default): alerts and progress are committed together
    /// in Kafka transactions, progress lives in `state_topic`, and several
    /// instances share the streams. `at-least-once`: progress in a local
    /// file under `state_dir`; a crash can publish up to `max_in_flight`
    /// alerts again.
    pub delivery: Delivery,
    /// Compacted topic holding each stream's committed progress
    /// (exactly-once). Created by `fink apply`.
    pub state_topic: String,
    /// Partitions of the state topic: the most instances that can share
    /// the streams. Never change it once streams ran (a stream's state
    /// lives on the partition its name hashes to).
    pub state_partitions: i32,
    /// Instances running this config with the same group share its streams.
    /// Also the Kafka consumer group id and the transactional id prefix
    /// (`GROUP.STREAM`).
    pub group: String,
    /// Longest time between two transaction commits while a stream sends
    /// (exactly-once). Consumers see alerts only once committed.
    pub commit_interval_ms: u64,
    /// How long after an instance vanishes its streams move to the others.
    pub session_timeout_ms: u64,
    /// The latency objective: a file's alerts should be committed within
    /// this many seconds of fink seeing the file. Counted per stream
    /// (`fink_stream_files_within_objective_total`) for the shipped alert
    /// "98% of files within N s".
    pub latency_objective_s: u64,
}

/// Delivery guarantee of `fink run`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    #[default]
    ExactlyOnce,
    AtLeastOnce,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::ExactlyOnce => "exactly-once",
            Delivery::AtLeastOnce => "at-least-once",
        }
    }
}

impl RunConfig {
    /// The transactional id of a stream: fencing is per stream, across
    /// every instance of the group.
    pub fn transactional_id(&self, stream: &str) -> String {
        format!("{}.{stream}", self.group)
    }
    /// Key of a stream's progress record in the state topic.
    pub fn state_key(&self, stream: &str) -> String {
        format!("{}/{stream}", self.group)
    }
    pub fn exactly_once(&self) -> bool {
        self.delivery == Delivery::ExactlyOnce
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            state_dir: ".fink/state".into(),
            metrics_addr: "127.0.0.1:9464".into(),
            batch_size: 256,
            max_in_flight: 1000,
            stall_after_s: 60,
            shutdown_timeout_s: 30,
            delivery: Delivery::ExactlyOnce,
            state_topic: "_fink_state".into(),
            state_partitions: 12,
            group: "fink".into(),
            commit_interval_ms: 1000,
            session_timeout_ms: 10_000,
            latency_objective_s: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub enum SecurityProtocol {
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
            SecurityProtocol::Plaintext => "PLAINTEXT",
        }
    }
}

#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema,
)]
pub enum ScramMechanism {
    #[default]
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
}

impl ScramMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `host:port` list.
    pub bootstrap: Vec<String>,
    /// How clients meet the brokers: SASL over plain TCP, SASL over TLS, or neither.
    #[serde(default = "default_protocol")]
    pub security_protocol: SecurityProtocol,
    /// The SCRAM mechanism fink logs in with.
    #[serde(default)]
    pub sasl_mechanism: ScramMechanism,
    /// Expected cluster id; plan/apply refuse to touch a cluster with another.
    #[serde(default)]
    pub id: Option<String>,
    /// The user fink administers the cluster as (plan, apply, views); a super user.
    pub admin: Option<Credentials>,
    /// CA file for SASL_SSL.
    #[serde(default)]
    pub ssl_ca_location: Option<String>,
    /// Seconds to wait for admin requests.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Replication throttle (MB/s per broker) while `fink apply` moves
    /// replicas (a replication factor change or new `replicas`); removed
    /// when the move completes. 0: no throttle.
    #[serde(default = "default_throttle")]
    pub reassignment_throttle_mb_s: f64,
}

fn default_protocol() -> SecurityProtocol {
    SecurityProtocol::SaslPlaintext
}
fn default_timeout() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The SCRAM user name.
    pub user: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// Number of KRaft nodes (each broker and controller), 1 to 3.
    pub brokers: u8,
    /// Node i (0-based) serves clients on `port + i`.
    pub port: u16,
    /// Node i runs its controller listener on `controller_port + i`.
    pub controller_port: u16,
    /// Logs, data, rendered configs, pid files.
    pub data_dir: String,
    /// JVM heap per node, e.g. "512m".
    pub heap: String,
    /// Kafka version installed by `fink cluster install`.
    pub kafka_version: String,
    /// Clients meet a SASL_SSL listener, with a CA and broker certificate
    /// fink generates under `data_dir/tls` (the CA for clients:
    /// `data_dir/tls/ca.pem`, for `[cluster] ssl_ca_location`); the brokers
    /// talk to each other over SASL_PLAINTEXT on port + 1000.
    #[serde(default)]
    pub tls: bool,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            brokers: 1,
            port: 9092,
            controller_port: 9192,
            data_dir: ".fink/local".into(),
            heap: "512m".into(),
            kafka_version: DEFAULT_KAFKA_VERSION.into(),
            tls: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicDefaults {
    /// Partitions of a topic that does not say (Kafka's default if neither does).
    pub partitions: Option<i32>,
    /// Replication factor of a topic that does not say (Kafka's default if neither does).
    pub replication_factor: Option<i32>,
}

/// A topic config value as written in TOML; Kafka wants strings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ConfigValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl std::fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigValue::Str(s) => f.write_str(s),
            ConfigValue::Int(i) => write!(f, "{i}"),
            ConfigValue::Float(x) => write!(f, "{x}"),
            ConfigValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// The topic's name (`{night}` and the other night fields are expanded).
    pub name: String,
    /// Partitions; may grow, never shrink (`[defaults]` if absent).
    pub partitions: Option<i32>,
    /// Replicas per partition; a change is a throttled replica move (`[defaults]` if absent).
    pub replication_factor: Option<i32>,
    /// Explicit placement: the broker ids of each partition's replicas, the
    /// preferred leader first (`[[1, 2, 3], [2, 3, 1]]`). A change moves
    /// the replicas (throttled, see `[cluster] reassignment_throttle_mb_s`).
    #[serde(default)]
    pub replicas: Option<Vec<Vec<i32>>>,
    /// Topic configs set on the topic (`"retention.ms" = 604800000`); a key removed returns to the broker's default.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The SCRAM user name (the principal `User:NAME`).
    pub name: String,
    pub password: Secret,
    /// The SCRAM mechanism of the credential.
    #[serde(default)]
    pub mechanism: ScramMechanism,
    /// SCRAM iterations of the salted password, 4096 to 16384.
    #[serde(default = "default_iterations")]
    pub iterations: i32,
}

fn default_throttle() -> f64 {
    50.0
}

fn default_iterations() -> i32 {
    8192
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AclRole {
    Producer,
    Consumer,
}

impl AclRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AclRole::Producer => "producer",
            AclRole::Consumer => "consumer",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatternType {
    Literal,
    Prefixed,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Topic => "topic",
            ResourceKind::Group => "group",
            ResourceKind::Cluster => "cluster",
            ResourceKind::TransactionalId => "transactional_id",
        }
    }
}

/// One `[[acl]]`: either an explicit binding (`resource`, `name`,
/// `operations`) or a role shortcut (`role` with `topic`, and `group` for
/// consumers) that expands to the bindings `kafka-acls --producer/--consumer`
/// would create.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    /// A declared user name (principal `User:<name>`)...
    pub user: Option<String>,
    /// ...or a full principal such as `User:alice` or `User:*`.
    pub principal: Option<String>,
    /// The host the binding allows or denies (`*`: any).
    #[serde(default = "default_host")]
    pub host: String,
    /// A shortcut expanded to the exact bindings: `producer` (Write, Describe, Create on the topic, IdempotentWrite, the transactional ids and state topic of exactly-once streams) or `consumer` (Read, Describe on the topic, Read on the group).
    pub role: Option<AclRole>,
    /// The topic of a role (with `pattern`).
    pub topic: Option<String>,
    /// The consumer group of a `consumer` role (with `group_pattern`).
    pub group: Option<String>,
    /// The resource kind of an explicit binding.
    pub resource: Option<ResourceKind>,
    /// The resource name of an explicit binding (with `pattern`).
    pub name: Option<String>,
    /// Operations of an explicit binding (`Read`, `Write`, `Describe`, `Create`, `All`, ...).
    #[serde(default)]
    pub operations: Vec<String>,
    /// Allow or deny.
    #[serde(default = "default_permission")]
    pub permission: Permission,
    /// How `topic` or `name` matches: the literal name, or a prefix.
    #[serde(default = "default_pattern")]
    pub pattern: PatternType,
    /// Pattern of the consumer group in a `consumer` role (default literal).
    #[serde(default = "default_pattern")]
    pub group_pattern: PatternType,
}

fn default_host() -> String {
    "*".into()
}
fn default_permission() -> Permission {
    Permission::Allow
}
fn default_pattern() -> PatternType {
    PatternType::Literal
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// A CEL expression over the alert's fields. A filter has either
    /// `expr` or `python`.
    #[serde(default)]
    pub expr: String,
    /// A Python function: `"package.module:function"` (importable by
    /// `[python] interpreter`) or `"path/file.py:function"` (relative to this
    /// file). Its arguments are the columns whose paths end with their
    /// names, as Fink's Spark runner binds them; it returns one boolean per
    /// row (a pandas Series or array).
    #[serde(default)]
    pub python: Option<String>,
    /// Column paths for the function's arguments, in order, instead of
    /// binding by name (`["candidate.magpsf", "cmagpsfc"]`).
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// The function takes the whole batch as one pandas DataFrame (every
    /// column the stream reads; structs as dicts) instead of one argument
    /// per column.
    #[serde(default)]
    pub dataframe: bool,
    /// The only fields the function reads of a struct or list-of-structs
    /// argument (of a column, for a dataframe filter), by argument name:
    /// `{ prvDiaSources = ["band", "midpointMjdTai", "psfFlux"] }`. The
    /// worker gets just those: a Rubin history of hundreds of 98-field
    /// sources costs ~25x less to hand to pandas. A field the function then
    /// reads and did not list raises KeyError: the batch's file is
    /// quarantined, nothing is published wrong.
    #[serde(default)]
    pub fields: Option<BTreeMap<String, Vec<String>>>,
    /// What the filter keeps, for people (shown by `fink filter test`).
    #[serde(default)]
    pub description: Option<String>,
    /// What a null or missing field means in this filter.
    #[serde(default)]
    pub on_null: OnNull,
}

/// A filter's reading of null or missing fields.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnNull {
    /// As pandas does: an ordering comparison (`<`, `>=`, ...) with a null
    /// is false, arithmetic with a null gives null, `has()` is false.
    False,
    /// The alert is counted as an error and not published.
    #[default]
    Error,
}

impl OnNull {
    pub fn as_str(self) -> &'static str {
        match self {
            OnNull::False => "false",
            OnNull::Error => "error",
        }
    }
}

/// A named constant of `[const]`: a scalar or a list of scalars.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ConstValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<ConstScalar>),
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ConstScalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Parquet,
    Avro,
}

/// Where a stream reads alerts.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `parquet` (Fink's science database) or `avro` (object container files, `.avro` and `.avro.gz`).
    pub format: SourceFormat,
    /// A directory (relative to fink.toml), `file:///dir`,
    /// `s3://bucket/prefix` or `hdfs://namenode:port/path`; `{night}`
    /// and the other night fields are expanded.
    pub path: String,
    /// A `[storage.NAME]` table with the store's settings.
    #[serde(default)]
    pub storage: Option<String>,
    /// Time between two listings of a remote source (default 2000 ms).
    #[serde(default)]
    pub poll_interval_ms: Option<u64>,
    // Store settings given here override the named storage's (see
    // [`StorageConfig`] for each).
    /// S3: the server's URL (AWS if absent); overrides the `[storage]`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3: the region; overrides the `[storage]`.
    #[serde(default)]
    pub region: Option<String>,
    /// S3: the access key id (a secret); overrides the `[storage]`.
    #[serde(default)]
    pub access_key: Option<Secret>,
    /// S3: the secret access key; overrides the `[storage]`.
    #[serde(default)]
    pub secret_key: Option<Secret>,
    /// S3: allow a plain `http://` endpoint; overrides the `[storage]`.
    #[serde(default)]
    pub allow_http: Option<bool>,
    /// HDFS: the user to act as (default `HADOOP_USER_NAME`, then the system user).
    #[serde(default)]
    pub user: Option<String>,
}

impl SourceConfig {
    /// The store settings given on the source itself.
    pub fn settings(&self) -> StorageConfig {
        StorageConfig {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            allow_http: self.allow_http,
            user: self.user.clone(),
        }
    }
}

/// Settings of an object store or HDFS, shared by sources as
/// `[storage.NAME]` or given on a source.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// S3: the endpoint URL of an S3-compatible server
    /// (`http://127.0.0.1:9000`); AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3: the region (default `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// S3: the access key id (a secret: a string, `{ env = "VAR" }` or
    /// `{ file = "path" }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<Secret>,
    /// S3: the secret access key (same forms as `access_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    /// S3: allow plain `http://` endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
    /// HDFS: the user to act as (default: `HADOOP_USER_NAME`, then the
    /// system user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl StorageConfig {
    /// These settings, with `base`'s where these have none.
    pub fn over(&self, base: &StorageConfig) -> StorageConfig {
        StorageConfig {
            endpoint: self.endpoint.clone().or_else(|| base.endpoint.clone()),
            region: self.region.clone().or_else(|| base.region.clone()),
            access_key: self.access_key.clone().or_else(|| base.access_key.clone()),
            secret_key: self.secret_key.clone().or_else(|| base.secret_key.clone()),
            allow_http: self.allow_http.or(base.allow_http),
            user: self.user.clone().or_else(|| base.user.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// Compression codec (zstd at level 1 by default).
    #[serde(default = "default_compression")]
    pub compression: Compression,
    /// How long a batch waits for more alerts (2 ms by default; 100 with a `partitioner` property).
    #[serde(default)]
    pub linger_ms: Option<u32>,
    /// Largest producer batch in bytes (librdkafka `batch.size`, 1 MB by default).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Extra librdkafka properties, passed through unchanged.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            compression: default_compression(),
            linger_ms: None,
            batch_size: None,
            properties: BTreeMap::new(),
        }
    }
}

fn default_compression() -> Compression {
    Compression::Zstd
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// The stream's name: its progress, transactional id and metrics are keyed by it.
    pub name: String,
    /// Where the stream reads alerts.
    pub source: SourceConfig,
    /// The topic it publishes to (declared in a `[[topic]]`; `{night}` expanded).
    pub topic: String,
    /// Names of `[filter.NAME]` entries; all must pass.
    #[serde(default)]
    pub filters: Vec<String>,
    /// An inline CEL expression, combined with the named filters.
    #[serde(default)]
    pub filter: Option<String>,
    /// Columns and nested fields to keep (`candidate.magpsf`); all if empty.
    #[serde(default)]
    pub select: Vec<String>,
    /// Columns and nested fields to leave out.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Declared user whose credentials publish (the admin by default).
    #[serde(default)]
    pub user: Option<String>,
    /// Where to write the Avro schema the stream publishes (also carried in every message key).
    #[serde(default)]
    pub schema_path: Option<String>,
    /// Producer settings of this stream.
    #[serde(default)]
    pub producer: ProducerConfig,
}
