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
//!
//! Files: this one holds the run loop ([`KafkaSource`]); `config` (the `[source]` section and
//! the librdkafka settings), `context` (librdkafka's callbacks: lag statistics, log,
//! rebalances), `commit` (partitions held, and offsets committed once durable), `gap`
//! (offsets never delivered).

mod commit;
mod config;
mod context;
mod gap;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

use crate::batch::{Batcher, Stats};
use crate::event::now_ms;
use crate::normalize::Stamp;
use crate::normalize::unit::{DecodeContext, Item, decode_message};
use crate::sink::SinkError;
use commit::Shared;
pub use config::{
    ClientSettings, KafkaConfig, Network, Passthrough, SaslMechanism, Secret, SecurityProtocol,
    StartPosition, client_config,
};
pub use context::{Ctx, LagTable, PartitionLag};
use gap::{Gap, Next, committed_offset};

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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
