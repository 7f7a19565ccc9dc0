//! Gap detection: offsets of a partition the broker never delivered become a dead letter.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::event::{DeadLetter, Origin};
use crate::normalize::Stamp;
use crate::normalize::unit::DecodeContext;

/// What offset a partition's next message should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
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
pub(super) struct Gap {
    pub(super) first: i64,
    pub(super) last: i64,
}

impl Gap {
    /// The gap before a message at `offset` when `next` was expected, if any.
    pub(super) fn before(next: Next, offset: i64) -> Option<Gap> {
        match next {
            Next::At(expected) if offset > expected => Some(Gap {
                first: expected,
                last: offset - 1,
            }),
            _ => None,
        }
    }

    pub(super) fn len(self) -> u64 {
        u64::try_from(self.last - self.first + 1).unwrap_or(0)
    }

    pub(super) fn dead_letter(self, ctx: &DecodeContext, stamp: &Stamp) -> DeadLetter {
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
pub(super) fn committed_offset(
    consumer: &BaseConsumer<impl ConsumerContext>,
    topic: &str,
    partition: i32,
) -> Next {
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
