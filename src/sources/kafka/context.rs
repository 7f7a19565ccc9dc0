//! The librdkafka context: consumer lag from the statistics, librdkafka's log, and the
//! rebalance callbacks (write and commit what was read of revoked partitions; start the
//! assigned ones).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;

use super::commit::{Part, Shared};
use super::gap::Next;
use super::{lock, unit_id};
use crate::metrics::PipelineMetrics;

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

/// The librdkafka context: rebalance callbacks (flush and commit on revoke), lag statistics
/// and logging.
pub struct Ctx {
    pub(super) shared: Arc<Mutex<Shared>>,
    pub(super) lag: Arc<Mutex<LagTable>>,
    pub(super) topic: String,
    /// Where the consumer reports its partitions and lag.
    pub(super) metrics: Option<Arc<PipelineMetrics>>,
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
