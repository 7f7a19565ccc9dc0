//! What the consumer holds per partition, and the commit of offsets to Kafka once the lake
//! holds them (never before).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::gap::{Gap, Next};
use crate::batch::Batcher;
use crate::sink::SinkError;

pub(super) struct Part {
    pub(super) unit: String,
    pub(super) topic: Arc<str>,
    /// First offset pushed since this partition was assigned.
    pub(super) first: Option<i64>,
    /// Last offset committed to Kafka in this assignment.
    pub(super) committed: Option<i64>,
    /// The offset the next message should have.
    pub(super) next: Next,
    /// Gaps written to the batcher whose batch has not committed yet (then they are counted).
    pub(super) gaps: Vec<Gap>,
}

pub(super) struct Shared {
    pub(super) batcher: Batcher,
    pub(super) parts: HashMap<(String, i32), Part>,
    /// A sink error inside a rebalance callback, for the main loop to return.
    pub(super) error: Option<SinkError>,
    pub(super) last_commit_try: Instant,
}

impl Shared {
    /// Offsets that are durable but not committed yet, per assigned partition.
    pub(super) fn durable_offsets(&self, only: Option<&[(String, i32)]>) -> TopicPartitionList {
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
    pub(super) fn commit(
        &mut self,
        consumer: &BaseConsumer<impl ConsumerContext>,
        only: Option<&[(String, i32)]>,
    ) {
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

    pub(super) fn flush_and_commit(
        &mut self,
        consumer: &BaseConsumer<impl ConsumerContext>,
        only: Option<&[(String, i32)]>,
    ) -> Result<(), SinkError> {
        self.batcher.flush()?;
        self.commit(consumer, only);
        Ok(())
    }

    /// Counts the gaps whose dead letters are now in committed batches.
    pub(super) fn count_committed_gaps(&mut self) {
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

    pub(super) fn pending_commit(&self) -> bool {
        self.durable_offsets(None).count() > 0
    }
}
