//! The Kafka source: a consumer-group consumer of CloudAudit (Tencent Cloud CLS "consume over
//! Kafka") or CloudTrail JSON messages.
//!
//! Each partition is an input unit `kafka:<topic>/<partition>` whose positions are offsets, so
//! the lake's journal records which offsets are in committed Parquet files. Offsets are
//! committed to Kafka only after that (auto-commit is off): after every committed batch, the
//! offset after the highest durable one, per partition. A crash between the two re-reads a few
//! messages, which the journal recognises and skips, so the lake holds each message once.
//!
//! Offsets the broker never delivers are a gap in the lake: when a partition's next message is
//! beyond the offset expected (the group's committed offset after an assignment, then one past
//! the previous message), the skipped range becomes a dead letter committed with the batch,
//! a warning and `auditlake_kafka_offsets_skipped_total` (see [`Gap`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Deserialize;

use crate::batch::{Batcher, Stats};
use crate::event::{DeadLetter, Origin, now_ms};
use crate::metrics::PipelineMetrics;
use crate::normalize::Stamp;
use crate::normalize::unit::{DecodeContext, Item, decode_message};
use crate::sink::SinkError;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("invalid kafka source configuration: {0}")]
    Config(String),
    #[error("cannot read the {what} from {path}")]
    SecretFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kafka client error: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Which Tencent Cloud network reaches the CLS Kafka endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// `kafkaconsumer-<region>.cls.tencentyun.com:9095`, from a CVM/VPC in the region.
    #[default]
    Private,
    /// `kafkaconsumer-<region>.cls.tencentcs.com:9096`, over the internet.
    Public,
}

/// Where a consumer group without a committed offset starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    #[default]
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    SaslPlaintext,
    SaslSsl,
    Ssl,
}

impl SecurityProtocol {
    fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
            SecurityProtocol::Ssl => "SSL",
        }
    }
    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[default]
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `[source]` with `type = "kafka"`. See `pipelines/tencent-cls.toml` for a commented example.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Tencent Cloud region of the CLS logset (e.g. `ap-guangzhou`); derives the endpoint.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub network: Network,
    /// `host:port[,host:port]`, instead of `region` (any Kafka cluster).
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// Topic name (for CLS: the one the console shows under "consume over Kafka").
    pub topic: String,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    #[serde(default)]
    pub start_position: StartPosition,
    /// CLS logset ID: the SASL username.
    #[serde(default)]
    pub logset_id: Option<String>,
    /// SASL username for other clusters (instead of `logset_id`).
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variables holding the Tencent SecretId and SecretKey (the SASL password is
    /// `SecretId#SecretKey`).
    #[serde(default = "default_secret_id_env")]
    pub secret_id_env: String,
    #[serde(default = "default_secret_key_env")]
    pub secret_key_env: String,
    /// Files holding the SecretId / SecretKey (take precedence over the variables).
    #[serde(default)]
    pub secret_id_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// For other clusters: a variable or a file holding the whole SASL password.
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Default: `sasl_plaintext` with a username (always for CLS), `plaintext` otherwise.
    #[serde(default)]
    pub security_protocol: Option<SecurityProtocol>,
    #[serde(default)]
    pub sasl_mechanism: SaslMechanism,
    /// Seconds between lag reports (librdkafka statistics); 0 turns them off.
    #[serde(default = "default_lag_interval")]
    pub lag_report_secs: u64,
    /// Extra librdkafka settings, passed through as given.
    #[serde(default)]
    pub librdkafka: Passthrough,
}

fn default_group_id() -> String {
    "auditlake".to_string()
}
fn default_secret_id_env() -> String {
    "TENCENTCLOUD_SECRET_ID".to_string()
}
fn default_secret_key_env() -> String {
    "TENCENTCLOUD_SECRET_KEY".to_string()
}
fn default_lag_interval() -> u64 {
    30
}

/// librdkafka settings from the config; values of secret-looking keys never show in `Debug`.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Passthrough(pub BTreeMap<String, String>);

fn is_secret_setting(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.contains(".key") || k.contains("jaas")
}

impl fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret_setting(k) { "***" } else { v };
                (k, shown)
            }))
            .finish()
    }
}

/// Settings librdkafka must not take from the passthrough table: they would break the
/// offsets-after-durability guarantee, or put a secret in the config file.
const RESERVED: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "sasl.password",
    "group.id",
    "bootstrap.servers",
];

/// A secret string: its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The client settings: an ordered list of librdkafka key/value pairs. `Debug` hides secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSettings(pub Vec<(String, String)>);

impl ClientSettings {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.0 {
            c.set(k, v);
        }
        c.set_log_level(RDKafkaLogLevel::Warning);
        c
    }
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret_setting(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

impl KafkaConfig {
    /// Reads the SASL password the config points at (None when SASL is not used). `env` looks
    /// variables up (the process environment in production).
    pub fn password(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, KafkaError> {
        if !self.protocol()?.sasl() {
            return Ok(None);
        }
        let read = |what: &'static str, path: &Path| -> Result<String, KafkaError> {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|source| KafkaError::SecretFile {
                    what,
                    path: path.to_path_buf(),
                    source,
                })
        };
        if let Some(path) = &self.password_file {
            return Ok(Some(Secret(read("SASL password", path)?)));
        }
        if let Some(var) = &self.password_env {
            return match env(var).filter(|v| !v.is_empty()) {
                Some(v) => Ok(Some(Secret(v))),
                None => Err(KafkaError::Config(format!(
                    "the SASL password variable {var} is not set"
                ))),
            };
        }
        let part = |what: &'static str, file: &Option<PathBuf>, var: &str| {
            match file {
            Some(path) => read(what, path),
            None => env(var)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    KafkaError::Config(format!(
                        "the {what} is needed for the SASL password: set the environment variable {var} or {what_file} in the config",
                        what_file = if what == "SecretId" { "secret_id_file" } else { "secret_key_file" }
                    ))
                }),
        }
        };
        let id = part("SecretId", &self.secret_id_file, &self.secret_id_env)?;
        let key = part("SecretKey", &self.secret_key_file, &self.secret_key_env)?;
        Ok(Some(Secret(format!("{id}#{key}"))))
    }

    fn username(&self) -> Result<Option<&str>, KafkaError> {
        match (&self.logset_id, &self.username) {
            (Some(_), Some(_)) => Err(KafkaError::Config(
                "set logset_id (Tencent CLS) or username, not both".to_string(),
            )),
            (Some(u), None) | (None, Some(u)) if u.trim().is_empty() => Err(KafkaError::Config(
                "the SASL username (logset_id) is empty".to_string(),
            )),
            (Some(u), None) | (None, Some(u)) => Ok(Some(u.trim())),
            (None, None) => Ok(None),
        }
    }

    fn protocol(&self) -> Result<SecurityProtocol, KafkaError> {
        Ok(match self.security_protocol {
            Some(p) => p,
            None if self.region.is_some() || self.username()?.is_some() => {
                SecurityProtocol::SaslPlaintext
            }
            None => SecurityProtocol::Plaintext,
        })
    }

    /// `host:port` list: explicit, or the CLS endpoint of the region and network.
    pub fn bootstrap(&self) -> Result<String, KafkaError> {
        match (&self.bootstrap_servers, &self.region) {
            (Some(_), Some(_)) => Err(KafkaError::Config(
                "set region (Tencent CLS) or bootstrap_servers, not both".to_string(),
            )),
            (Some(servers), None) if servers.trim().is_empty() => {
                Err(KafkaError::Config("bootstrap_servers is empty".to_string()))
            }
            (Some(servers), None) => Ok(servers.trim().to_string()),
            (None, Some(region)) => {
                let valid = region.starts_with(|c: char| c.is_ascii_lowercase())
                    && region
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if !valid {
                    return Err(KafkaError::Config(format!(
                        "region {region:?} is not a Tencent Cloud region like \"ap-guangzhou\""
                    )));
                }
                Ok(match self.network {
                    Network::Private => format!("kafkaconsumer-{region}.cls.tencentyun.com:9095"),
                    Network::Public => format!("kafkaconsumer-{region}.cls.tencentcs.com:9096"),
                })
            }
            (None, None) => Err(KafkaError::Config(
                "set region (Tencent CLS) or bootstrap_servers".to_string(),
            )),
        }
    }
}

/// The librdkafka settings for `cfg`, given the SASL password (see [`KafkaConfig::password`]).
/// Auto-commit and automatic offset storing are always off.
pub fn client_config(
    cfg: &KafkaConfig,
    password: Option<&Secret>,
) -> Result<ClientSettings, KafkaError> {
    if cfg.topic.trim().is_empty() {
        return Err(KafkaError::Config("topic is empty".to_string()));
    }
    if cfg.group_id.trim().is_empty() {
        return Err(KafkaError::Config("group_id is empty".to_string()));
    }
    let mut s: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| s.push((k.to_string(), v.to_string()));
    set("bootstrap.servers", &cfg.bootstrap()?);
    let protocol = cfg.protocol()?;
    set("security.protocol", protocol.as_librdkafka());
    if protocol.sasl() {
        let Some(user) = cfg.username()? else {
            return Err(KafkaError::Config(
                "SASL needs a username: set logset_id (Tencent CLS) or username".to_string(),
            ));
        };
        let Some(password) = password else {
            return Err(KafkaError::Config("SASL needs a password".to_string()));
        };
        set("sasl.mechanisms", cfg.sasl_mechanism.as_librdkafka());
        set("sasl.username", user);
        set("sasl.password", password.expose());
    }
    set("group.id", cfg.group_id.trim());
    set(
        "auto.offset.reset",
        match cfg.start_position {
            StartPosition::Earliest => "earliest",
            StartPosition::Latest => "latest",
        },
    );
    set("enable.auto.commit", "false");
    set("enable.auto.offset.store", "false");
    set("client.id", "auditlake");
    if cfg.lag_report_secs > 0 {
        set(
            "statistics.interval.ms",
            &(cfg.lag_report_secs.saturating_mul(1000)).to_string(),
        );
    }
    for (k, v) in &cfg.librdkafka.0 {
        if RESERVED.contains(&k.as_str()) {
            return Err(KafkaError::Config(format!(
                "{k} cannot be set in [source.librdkafka]: it is managed by auditlake"
            )));
        }
        s.push((k.clone(), v.clone()));
    }
    Ok(ClientSettings(s))
}

/// Consumer lag of one partition, from librdkafka's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionLag {
    /// High watermark: the offset the next produced message will get.
    pub high_watermark: i64,
    /// Next offset handed to auditlake (-1 before the first message).
    pub position: i64,
    /// Last offset committed to Kafka (-1 when none yet).
    pub committed: i64,
    /// Messages not yet read: high watermark − position (or − committed before any read).
    pub lag: i64,
}

/// Lag per `(topic, partition)`, refreshed every `lag_report_secs`.
pub type LagTable = BTreeMap<(String, i32), PartitionLag>;

struct Part {
    unit: String,
    topic: Arc<str>,
    /// First offset pushed since this partition was assigned.
    first: Option<i64>,
    /// Last offset committed to Kafka in this assignment.
    committed: Option<i64>,
    /// The offset the next message should have.
    next: Next,
    /// Gaps written to the batcher whose batch has not committed yet (then they are counted).
    gaps: Vec<Gap>,
}

/// What offset a partition's next message should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Not looked up yet: the group's committed offset is read when the first message arrives.
    Unchecked,
    /// No committed offset (a new group) or it could not be read: the first message sets it.
    Unknown,
    At(i64),
}

/// Offsets of a partition the broker skipped: `first..=last` were never delivered (retention
/// expired, the log was truncated or records deleted, or a broker answered a fetch with a
/// later batch). Recorded as one dead letter at position `last`, just before the message that
/// revealed it, so it commits with that batch and a restart that re-reads the message finds it
/// in the journal instead of writing it twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    first: i64,
    last: i64,
}

impl Gap {
    /// The gap before a message at `offset` when `next` was expected, if any.
    fn before(next: Next, offset: i64) -> Option<Gap> {
        match next {
            Next::At(expected) if offset > expected => Some(Gap {
                first: expected,
                last: offset - 1,
            }),
            _ => None,
        }
    }

    fn len(self) -> u64 {
        u64::try_from(self.last - self.first + 1).unwrap_or(0)
    }

    fn dead_letter(self, ctx: &DecodeContext, stamp: &Stamp) -> DeadLetter {
        let n = self.len();
        let (topic, partition) = (&stamp.source, stamp.partition.unwrap_or(-1));
        let reason = format!(
            "kafka offsets skipped: {n} message(s) at offsets {first}-{last} of {topic}/{partition} were never read, so their events are missing from the lake (the broker delivered offset {next} when {first} was expected: retention expired, the log was truncated or the records were deleted)",
            first = self.first,
            last = self.last,
            next = self.last + 1,
        );
        let raw = serde_json::json!({
            "topic": &**topic,
            "partition": partition,
            "first_missing_offset": self.first,
            "last_missing_offset": self.last,
            "skipped": n,
        })
        .to_string();
        DeadLetter::new(
            ctx.pipeline.clone(),
            Origin {
                source: stamp.source.clone(),
                partition: stamp.partition,
                position: self.first,
            },
            reason,
            raw.as_bytes(),
            ctx.limits.dead_letter_raw_cap,
            stamp.ingest_time_ms,
        )
    }
}

/// The group's committed offset of a partition ([`Next::Unknown`] when there is none or it
/// cannot be read).
fn committed_offset(consumer: &BaseConsumer<Ctx>, topic: &str, partition: i32) -> Next {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(got) => match got.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Next::At(o),
            _ => Next::Unknown,
        },
        Err(e) => {
            tracing::warn!(topic, partition, error = %e, "cannot read the committed offset: offsets skipped before the first message read are not detected");
            Next::Unknown
        }
    }
}

struct Shared {
    batcher: Batcher,
    parts: HashMap<(String, i32), Part>,
    /// A sink error inside a rebalance callback, for the main loop to return.
    error: Option<SinkError>,
    last_commit_try: Instant,
}

impl Shared {
    /// Offsets that are durable but not committed yet, per assigned partition.
    fn durable_offsets(&self, only: Option<&[(String, i32)]>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), part) in &self.parts {
            if only.is_some_and(|o| !o.iter().any(|(t, p)| t == topic && p == partition)) {
                continue;
            }
            let Some(first) = part.first else { continue };
            let Some(through) = self.batcher.committed_through(&part.unit) else {
                continue;
            };
            // Only what this assignment wrote: an older value belongs to an earlier owner.
            if through <= first || part.committed.is_some_and(|c| c >= through) {
                continue;
            }
            if tpl
                .add_partition_offset(topic, *partition, Offset::Offset(through))
                .is_err()
            {
                continue;
            }
        }
        tpl
    }

    /// Commits durable offsets to Kafka, synchronously. A failure is logged and retried later:
    /// the journal keeps the lake exact meanwhile.
    fn commit(&mut self, consumer: &BaseConsumer<Ctx>, only: Option<&[(String, i32)]>) {
        self.last_commit_try = Instant::now();
        self.count_committed_gaps();
        let tpl = self.durable_offsets(only);
        if tpl.count() == 0 {
            return;
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                for e in tpl.elements() {
                    if let (Some(part), Offset::Offset(o)) = (
                        self.parts.get_mut(&(e.topic().to_string(), e.partition())),
                        e.offset(),
                    ) {
                        part.committed = Some(o);
                        tracing::debug!(
                            topic = e.topic(),
                            partition = e.partition(),
                            offset = o,
                            "offset committed"
                        );
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot commit offsets to Kafka yet (will retry; the lake journal prevents duplicates)");
            }
        }
    }

    fn flush_and_commit(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        only: Option<&[(String, i32)]>,
    ) -> Result<(), SinkError> {
        self.batcher.flush()?;
        self.commit(consumer, only);
        Ok(())
    }

    /// Counts the gaps whose dead letters are now in committed batches.
    fn count_committed_gaps(&mut self) {
        for ((topic, partition), part) in &mut self.parts {
            let through = self.batcher.committed_through(&part.unit);
            part.gaps.retain(|gap| {
                if through.is_none_or(|t| t <= gap.last) {
                    return true;
                }
                if let Some(m) = self.batcher.metrics() {
                    m.kafka_offsets_skipped(topic, *partition, gap.len());
                }
                false
            });
        }
    }

    fn pending_commit(&self) -> bool {
        self.durable_offsets(None).count() > 0
    }
}

/// The librdkafka context: rebalance callbacks (flush and commit on revoke), lag statistics
/// and logging.
pub struct Ctx {
    shared: Arc<Mutex<Shared>>,
    lag: Arc<Mutex<LagTable>>,
    topic: String,
    /// Where the consumer reports its partitions and lag.
    metrics: Option<Arc<PipelineMetrics>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClientContext for Ctx {
    fn stats(&self, statistics: Statistics) {
        let mut table = lock(&self.lag);
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (id, p) in &topic.partitions {
            if *id < 0 || p.hi_offset < 0 {
                continue; // the internal UA partition, or not fetched yet
            }
            let from = if p.app_offset >= 0 {
                p.app_offset
            } else {
                p.committed_offset
            };
            let lag = if from >= 0 {
                (p.hi_offset - from).max(0)
            } else {
                p.hi_offset - p.lo_offset.max(0)
            };
            table.insert(
                (self.topic.clone(), *id),
                PartitionLag {
                    high_watermark: p.hi_offset,
                    position: p.app_offset,
                    committed: p.committed_offset,
                    lag,
                },
            );
        }
        if let Some(m) = &self.metrics {
            for ((topic, partition), l) in table.iter() {
                m.kafka_lag(topic, *partition, l.lag);
            }
        }
        let total: i64 = table.values().map(|l| l.lag).sum();
        let per_partition: Vec<String> = table
            .iter()
            .map(|((_, p), l)| format!("{p}:{}", l.lag))
            .collect();
        tracing::info!(topic = %self.topic, lag = total, partitions = %per_partition.join(" "), "kafka consumer lag");
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(facility = fac, "librdkafka: {log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, "librdkafka: {log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility = fac, "librdkafka: {log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility = fac, "librdkafka: {log_message}"),
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(error = %error, "kafka: {reason}");
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let mut s = lock(&self.shared);
        // Write what was read of the revoked partitions and commit it while they are still
        // ours; anything not durable is left to the next owner.
        if s.error.is_none()
            && let Err(e) = s.flush_and_commit(consumer, Some(&revoked))
        {
            tracing::error!(error = %e, "cannot write the batch before giving partitions up");
            s.error = Some(e);
        }
        let uncommitted = s.durable_offsets(Some(&revoked));
        for e in uncommitted.elements() {
            tracing::warn!(
                topic = e.topic(),
                partition = e.partition(),
                "offsets written to the lake could not be committed before the partition was revoked; its next owner will read them again"
            );
        }
        for key in &revoked {
            if let Some(part) = s.parts.remove(key) {
                s.batcher.abandon_unit(&part.unit);
            }
        }
        if let Some(m) = &self.metrics {
            m.kafka_partitions_assigned(s.parts.len());
        }
        tracing::info!(partitions = ?revoked.iter().map(|(_, p)| *p).collect::<Vec<_>>(), "partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut s = lock(&self.shared);
                let mut assigned = Vec::new();
                for e in tpl.elements() {
                    let key = (e.topic().to_string(), e.partition());
                    if s.parts.contains_key(&key) {
                        continue;
                    }
                    let unit = unit_id(e.topic(), e.partition());
                    s.batcher.begin_unit(&unit);
                    assigned.push(e.partition());
                    s.parts.insert(
                        key,
                        Part {
                            unit,
                            topic: Arc::from(e.topic()),
                            first: None,
                            committed: None,
                            next: Next::Unchecked,
                            gaps: Vec::new(),
                        },
                    );
                }
                if let Some(m) = &self.metrics {
                    m.kafka_partitions_assigned(s.parts.len());
                }
                tracing::info!(partitions = ?assigned, "partitions assigned (resuming from committed offsets)");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// The journal unit of a partition.
pub fn unit_id(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}/{partition}")
}

/// Watches a [`KafkaSource`]: its partitions, lag and counters (for tests; the source reports
/// its partitions and lag into the pipeline's metrics itself).
#[derive(Clone)]
pub struct KafkaHandle {
    shared: Arc<Mutex<Shared>>,
    lag: Arc<Mutex<LagTable>>,
}

impl KafkaHandle {
    /// The latest lag per partition.
    pub fn lag(&self) -> LagTable {
        lock(&self.lag).clone()
    }

    /// The partitions assigned now, sorted.
    pub fn assigned(&self) -> Vec<(String, i32)> {
        let mut parts: Vec<_> = lock(&self.shared).parts.keys().cloned().collect();
        parts.sort();
        parts
    }

    pub fn stats(&self) -> Stats {
        lock(&self.shared).batcher.stats.clone()
    }
}

/// librdkafka's bound on prefetched messages, in KiB.
const QUEUE_KBYTES: &str = "queued.max.messages.kbytes";

/// A running consumer. Create it with [`KafkaSource::new`], then call [`KafkaSource::run`].
pub struct KafkaSource {
    consumer: BaseConsumer<Ctx>,
    shared: Arc<Mutex<Shared>>,
    lag: Arc<Mutex<LagTable>>,
    topic: String,
}

impl KafkaSource {
    /// Connects (lazily: librdkafka connects in the background) and subscribes.
    pub fn new(cfg: &KafkaConfig, batcher: Batcher) -> Result<Self, KafkaError> {
        let password = cfg.password(&|var| std::env::var(var).ok())?;
        let mut settings = client_config(cfg, password.as_ref())?;
        // librdkafka prefetches up to 64 MiB by default; under a memory budget its queue gets
        // the pipeline's queue share instead (unless [source.librdkafka] sets it), at least
        // 4 MiB: with 1.6 MiB the consumer fell to ~1,700 events/s on tansu.
        if let Some(bytes) = batcher.queue_budget()
            && settings.get(QUEUE_KBYTES).is_none()
        {
            let kbytes = (bytes / 1024).clamp(4096, 65_536);
            settings
                .0
                .push((QUEUE_KBYTES.to_string(), kbytes.to_string()));
        }
        Self::with_settings(&settings, &cfg.topic, batcher)
    }

    /// As [`KafkaSource::new`], from ready librdkafka settings (tests point these at a mock
    /// cluster).
    pub fn with_settings(
        settings: &ClientSettings,
        topic: &str,
        batcher: Batcher,
    ) -> Result<Self, KafkaError> {
        let metrics = batcher.metrics().cloned();
        let shared = Arc::new(Mutex::new(Shared {
            batcher,
            parts: HashMap::new(),
            error: None,
            last_commit_try: Instant::now(),
        }));
        let lag = Arc::new(Mutex::new(LagTable::new()));
        let ctx = Ctx {
            shared: shared.clone(),
            lag: lag.clone(),
            topic: topic.to_string(),
            metrics: metrics.clone(),
        };
        let consumer: BaseConsumer<Ctx> = settings.client_config().create_with_context(ctx)?;
        consumer.subscribe(&[topic])?;
        if let Some(m) = &metrics {
            m.kafka_consumer_started();
        }
        tracing::info!(
            topic,
            bootstrap = settings.get("bootstrap.servers").unwrap_or(""),
            group = settings.get("group.id").unwrap_or(""),
            "kafka consumer subscribed"
        );
        Ok(KafkaSource {
            consumer,
            shared,
            lag,
            topic: topic.to_string(),
        })
    }

    /// A handle to watch the consumer from another thread while it runs.
    pub fn handle(&self) -> KafkaHandle {
        KafkaHandle {
            shared: self.shared.clone(),
            lag: self.lag.clone(),
        }
    }

    /// Consumes until `stop` is set, then writes and commits everything read and leaves the
    /// group. Returns the run's counters.
    pub fn run(self, ctx: &DecodeContext, stop: &AtomicBool) -> Result<Stats, KafkaError> {
        let result = self.consume(ctx, stop);
        let mut s = lock(&self.shared);
        let end = match result {
            Ok(()) => s
                .flush_and_commit(&self.consumer, None)
                .map_err(KafkaError::from),
            Err(e) => Err(e),
        };
        let stats = s.batcher.stats.clone();
        drop(s);
        // Leaving the group revokes the partitions (nothing is left to write by now).
        self.consumer.unsubscribe();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !lock(&self.shared).parts.is_empty() {
            let _ = self.consumer.poll(Duration::from_millis(100));
        }
        tracing::info!(topic = %self.topic, "kafka consumer stopped; everything read is committed");
        end.map(|()| stats)
    }

    fn consume(&self, ctx: &DecodeContext, stop: &AtomicBool) -> Result<(), KafkaError> {
        while !stop.load(Ordering::SeqCst) {
            match self.consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(rdkafka::error::KafkaError::MessageConsumptionFatal(code))) => {
                    return Err(rdkafka::error::KafkaError::MessageConsumptionFatal(code).into());
                }
                Some(Err(e)) => tracing::warn!(error = %e, "kafka consumer error"),
                Some(Ok(msg)) => {
                    let mut s = lock(&self.shared);
                    let key = (msg.topic().to_string(), msg.partition());
                    let Some(part) = s.parts.get_mut(&key) else {
                        continue; // a message of a partition no longer ours
                    };
                    let offset = msg.offset();
                    if part.next == Next::Unchecked {
                        part.next = committed_offset(&self.consumer, msg.topic(), msg.partition());
                    }
                    let gap = Gap::before(part.next, offset);
                    part.next = Next::At(offset + 1);
                    part.first.get_or_insert(gap.map_or(offset, |g| g.last));
                    let stamp = Stamp {
                        source: part.topic.clone(),
                        partition: Some(msg.partition()),
                        ingest_time_ms: now_ms(),
                    };
                    let unit = part.unit.clone();
                    if let Some(gap) = gap {
                        part.gaps.push(gap);
                        tracing::warn!(
                            topic = msg.topic(),
                            partition = msg.partition(),
                            first_missing = gap.first,
                            last_missing = gap.last,
                            skipped = gap.len(),
                            "kafka offsets skipped: offsets {}-{} were never delivered; their events are missing from the lake (recorded in dead_letters)",
                            gap.first,
                            gap.last
                        );
                        let dead = Item::Dead(gap.dead_letter(ctx, &stamp));
                        if s.batcher.push(&unit, gap.last, dead)?.is_some() {
                            s.commit(&self.consumer, None);
                        }
                    }
                    if let Some(m) = s.batcher.metrics() {
                        m.input_bytes
                            .inc_by(msg.payload().map_or(0, <[u8]>::len) as u64);
                    }
                    let mut items = Vec::with_capacity(1);
                    decode_message(
                        msg.payload().unwrap_or(&[]),
                        ctx,
                        &stamp,
                        offset,
                        &mut |i| items.push(i),
                    );
                    if s.batcher.push_all(&unit, offset, items)?.is_some() {
                        s.commit(&self.consumer, None);
                    }
                }
            }
            let mut s = lock(&self.shared);
            if let Some(e) = s.error.take() {
                return Err(e.into());
            }
            if s.batcher.is_due() {
                s.flush_and_commit(&self.consumer, None)?;
            } else if s.last_commit_try.elapsed() >= Duration::from_secs(2) && s.pending_commit() {
                s.commit(&self.consumer, None);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> KafkaConfig {
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    const KEYS: &[(&str, &str)] = &[
        ("TENCENTCLOUD_SECRET_ID", "AKIDexample"),
        ("TENCENTCLOUD_SECRET_KEY", "keyEXAMPLE"),
    ];

    fn settings(toml_text: &str) -> Result<ClientSettings, KafkaError> {
        let cfg = parse(toml_text);
        let password = cfg.password(&env(KEYS))?;
        client_config(&cfg, password.as_ref())
    }

    #[test]
    fn cls_settings_are_exactly_what_tencent_documents() {
        let s = settings(
            r#"
            region = "ap-guangzhou"
            topic = "out-0a1b2c3d"
            logset_id = "0f8e7d6c-logset"
            group_id = "ciem"
            "#,
        )
        .expect("settings");
        let expected: Vec<(String, String)> = [
            (
                "bootstrap.servers",
                "kafkaconsumer-ap-guangzhou.cls.tencentyun.com:9095",
            ),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "0f8e7d6c-logset"),
            ("sasl.password", "AKIDexample#keyEXAMPLE"),
            ("group.id", "ciem"),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("client.id", "auditlake"),
            ("statistics.interval.ms", "30000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(s.0, expected);

        let public = settings(
            r#"
            region = "na-siliconvalley"
            network = "public"
            topic = "t"
            logset_id = "ls"
            start_position = "latest"
            "#,
        )
        .expect("settings");
        assert_eq!(
            public.get("bootstrap.servers"),
            Some("kafkaconsumer-na-siliconvalley.cls.tencentcs.com:9096")
        );
        assert_eq!(public.get("auto.offset.reset"), Some("latest"));
        assert_eq!(public.get("group.id"), Some("auditlake"));
    }

    #[test]
    fn the_shipped_cls_pipeline_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/tencent-cls.toml");
        let cfg = crate::config::PipelineConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let crate::config::SourceConfig::Kafka(kafka) = cfg.source else {
            panic!("not a kafka source");
        };
        let password = kafka.password(&env(KEYS)).expect("password");
        let s = client_config(&kafka, password.as_ref()).expect("settings");
        assert_eq!(
            s.get("bootstrap.servers"),
            Some("kafkaconsumer-ap-guangzhou.cls.tencentyun.com:9095")
        );
        assert_eq!(s.get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(s.get("enable.auto.commit"), Some("false"));
    }

    #[test]
    fn secrets_come_from_files_and_never_show() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = dir.path().join("id");
        let key = dir.path().join("key");
        std::fs::write(&id, "AKIDfile\n").expect("write");
        std::fs::write(&key, "s3cr3tKEY\n").expect("write");
        let cfg = parse(&format!(
            "region = 'ap-beijing'\ntopic = 't'\nlogset_id = 'ls'\nsecret_id_file = '{}'\nsecret_key_file = '{}'\n[librdkafka]\n'ssl.key.password' = 'pem-pass'\n'fetch.wait.max.ms' = '100'\n",
            id.display(),
            key.display()
        ));
        let password = cfg.password(&env(&[])).expect("password");
        let s = client_config(&cfg, password.as_ref()).expect("settings");
        assert_eq!(s.get("sasl.password"), Some("AKIDfile#s3cr3tKEY"));
        assert_eq!(s.get("fetch.wait.max.ms"), Some("100"));
        for shown in [
            format!("{s:?}"),
            format!("{cfg:?}"),
            format!("{password:?}"),
        ] {
            assert!(
                !shown.contains("s3cr3tKEY") && !shown.contains("pem-pass"),
                "{shown}"
            );
        }
    }

    #[test]
    fn mistakes_are_clear_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "topic = 't'\n",
                "set region (Tencent CLS) or bootstrap_servers",
            ),
            (
                "region = 'ap-guangzhou'\nbootstrap_servers = 'h:1'\ntopic = 't'\nlogset_id = 'l'\n",
                "not both",
            ),
            (
                "region = 'ap-guangzhou.evil.com:1#'\ntopic = 't'\nlogset_id = 'l'\n",
                "not a Tencent Cloud region",
            ),
            (
                "region = 'ap-guangzhou'\ntopic = 't'\n",
                "SASL needs a username",
            ),
            (
                "bootstrap_servers = 'h:1'\ntopic = 't'\n[librdkafka]\n'enable.auto.commit' = 'true'\n",
                "managed by auditlake",
            ),
            ("bootstrap_servers = 'h:1'\ntopic = ' '\n", "topic is empty"),
        ];
        for (text, expected) in cases {
            let err = settings(text).expect_err(text);
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
        let cfg = parse("region = 'ap-guangzhou'\ntopic = 't'\nlogset_id = 'l'\n");
        let err = cfg.password(&env(&[])).expect_err("no keys");
        assert!(err.to_string().contains("TENCENTCLOUD_SECRET_ID"), "{err}");
        // A plain cluster needs no credentials at all.
        let s = settings("bootstrap_servers = '127.0.0.1:9092'\ntopic = 't'\n").expect("plain");
        assert_eq!(s.get("security.protocol"), Some("PLAINTEXT"));
        assert_eq!(s.get("sasl.password"), None);
        // SCRAM with a password variable.
        let cfg = parse(
            "bootstrap_servers = 'h:1'\ntopic = 't'\nusername = 'u'\nsasl_mechanism = 'SCRAM-SHA-512'\nsecurity_protocol = 'sasl_ssl'\npassword_env = 'PW'\n",
        );
        let pw = cfg.password(&env(&[("PW", "pw-value")])).expect("password");
        let s = client_config(&cfg, pw.as_ref()).expect("settings");
        assert_eq!(s.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(s.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(s.get("sasl.password"), Some("pw-value"));
    }
}

#[cfg(test)]
mod build_tests {
    use super::*;

    /// librdkafka is built with what the issue asks for: SASL PLAIN and SCRAM over TLS, and
    /// snappy/LZ4 (client creation fails on settings the build does not support).
    #[test]
    fn librdkafka_supports_sasl_scram_tls_snappy_and_lz4() {
        let cfg: KafkaConfig = toml::from_str(
            "bootstrap_servers = '127.0.0.1:1'\ntopic = 't'\nusername = 'u'\nsecurity_protocol = 'sasl_ssl'\nsasl_mechanism = 'SCRAM-SHA-256'\n",
        )
        .expect("config");
        let settings = client_config(&cfg, Some(&Secret::new("pw"))).expect("settings");
        let consumer: Result<BaseConsumer, _> = settings.client_config().create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
        for codec in ["snappy", "lz4"] {
            let producer: Result<rdkafka::producer::BaseProducer, _> = ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:1")
                .set("compression.type", codec)
                .create();
            assert!(producer.is_ok(), "{codec}: {:?}", producer.err());
        }
    }
}
