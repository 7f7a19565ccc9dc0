//! The process-wide memory bound of `auditlake run` (`--memory-limit-mib`,
//! `AUDITLAKE_MEMORY_LIMIT_MIB`, default 512 MiB).
//!
//! The limit is split once at startup ([`plan`]): a reserve for the process itself, then an
//! equal share per pipeline. Each share holds the pipeline's fixed working set (decoder and
//! Parquet/ZSTD writer buffers, runtime threads), and the rest is split between what grows with
//! the load:
//! - pending rows of the batch (`batch`, 1/4 of the rest): the batcher flushes at this size.
//!   A batch costs about [`BATCH_RSS_FACTOR`] times its estimated size in resident memory at its
//!   peak (the rows, their Arrow copy and the encoded pages while it is written);
//! - deduplication (1/5): 3/4 of it for the committed event keys of the dedup horizon held
//!   in memory (`key_index_bytes`: hot dates; cold ones are read again from disk), 1/4 for
//!   the in-memory window of event ids outside the horizon (`dedup_keys`);
//! - queues between the source and the batcher (`queue`, 1/10): decoded chunks waiting for
//!   the batcher (SQS), librdkafka's prefetch queue (Kafka);
//! - the remainder is allocator slack.
//!
//! The constants are measured (`bench/mixed.sh`, and one inbox pipeline replaying 200,000
//! CloudTrail events at `flush.max_mib` 2, 8, 32 and 64: peak RSS 89, 117, 179 and 260 MiB, i.e.
//! ~2.5 MiB resident per MiB of batch on top of ~65 MiB; an idle daemon holds ~20 MiB; with all
//! three kinds of pipeline busy, the fixed part is nearer 100 MiB per pipeline).
//!
//! The batch parts of all pipelines form one shared budget ([`MemoryBudget`]): a busy pipeline
//! may draw more than its share while the others are idle (up to its `flush.max_mib`), but when
//! the pending bytes of all pipelines reach the total, every pipeline holding at least its
//! share flushes at its next loop turn, and its source pulls nothing while it flushes (flushes
//! run on the source's own thread).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub const DEFAULT_LIMIT_MIB: u64 = 512;
/// Kept for the process itself: binary, signal and metrics threads, allocator (idle: ~20 MiB).
pub const RESERVED_MIB: u64 = 24;
/// A pipeline's fixed working set, whatever its batch size: ~60 MiB for an inbox pipeline
/// alone, ~100 MiB per pipeline with SQS, Kafka and inbox pipelines busy in one process at
/// 4 MiB batches (`bench/mixed.sh`).
pub const PIPELINE_BASE_MIB: u64 = 96;
/// The smallest share a pipeline can run in: its base and 16 MiB to grow in (a 4 MiB batch).
pub const MIN_PIPELINE_MIB: u64 = PIPELINE_BASE_MIB + 16;
/// Resident bytes per estimated byte of a batch at its peak (measured ~2.5).
pub const BATCH_RSS_FACTOR: f64 = 2.5;
/// Bytes a deduplicator key costs in the worst case (a 16-byte key in a hash table that may be
/// under half full right after it grew), per generation; there are two generations.
const DEDUP_BYTES_PER_KEY: u64 = 2 * 40;
/// The deduplicator window when memory allows it (the default before the limit existed).
pub const MAX_DEDUP_KEYS: usize = 8_000_000;
/// Estimated in-memory bytes of one decoded item waiting in a queue (a CloudTrail event with
/// its raw strings; measured at ~1.2 KB on the benchmark corpus, rounded up).
pub const QUEUED_ITEM_BYTES: usize = 2048;

const MIB: u64 = 1 << 20;

/// How the limit is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub limit_bytes: u64,
    pub pipelines: usize,
    /// Per pipeline: its whole share.
    pub share_bytes: u64,
    /// Per pipeline: its fair part of the shared batch budget.
    pub batch_bytes: u64,
    /// Per pipeline: the deduplicator window for events outside the dedup horizon (keys per
    /// generation).
    pub dedup_keys: usize,
    /// Per pipeline: bytes the committed event keys of the dedup horizon may hold in memory.
    pub key_index_bytes: u64,
    /// Per pipeline: bytes queues between its source and its batcher may hold.
    pub queue_bytes: u64,
}

/// The smallest limit that runs `pipelines` pipelines, in MiB.
pub fn minimum_mib(pipelines: usize) -> u64 {
    RESERVED_MIB + MIN_PIPELINE_MIB * pipelines.max(1) as u64
}

/// Divides `limit_mib` between `pipelines` pipelines; an error (saying the smallest limit
/// that works) when it is too small.
pub fn plan(limit_mib: u64, pipelines: usize) -> Result<Plan, String> {
    let pipelines = pipelines.max(1);
    let minimum = minimum_mib(pipelines);
    if limit_mib < minimum {
        return Err(format!(
            "memory limit of {limit_mib} MiB is too small for {pipelines} pipeline(s): it needs at least {minimum} MiB ({RESERVED_MIB} MiB for the process and {MIN_PIPELINE_MIB} MiB per pipeline); raise --memory-limit-mib / AUDITLAKE_MEMORY_LIMIT_MIB or run fewer pipelines in this process"
        ));
    }
    let share = (limit_mib - RESERVED_MIB) * MIB / pipelines as u64;
    let rest = share - PIPELINE_BASE_MIB * MIB;
    // batch 1/4 (×2.5 resident at its peak: 5/8), dedup 1/5 (3/4 of it the horizon's key
    // index, 1/4 the window beyond it), queues 1/10, slack 3/40.
    let dedup = rest / 5;
    let dedup_keys = ((dedup / 4) / DEDUP_BYTES_PER_KEY).min(MAX_DEDUP_KEYS as u64) as usize;
    let key_index_bytes = dedup - dedup / 4;
    Ok(Plan {
        limit_bytes: limit_mib * MIB,
        pipelines,
        share_bytes: share,
        batch_bytes: rest / 4,
        dedup_keys,
        key_index_bytes,
        queue_bytes: rest / 10,
    })
}

/// The batch budget shared by the pipelines of one process, and what they hold now.
#[derive(Debug)]
pub struct MemoryBudget {
    pub plan: Plan,
    /// Sum of the batch budgets.
    pub batch_total: u64,
    /// Estimated bytes of rows pending in all batchers.
    pending: AtomicU64,
}

impl MemoryBudget {
    pub fn new(plan: Plan) -> Arc<Self> {
        Arc::new(MemoryBudget {
            plan,
            batch_total: plan.batch_bytes * plan.pipelines as u64,
            pending: AtomicU64::new(0),
        })
    }

    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// A pipeline's share of this budget.
    pub fn share(self: &Arc<Self>) -> BudgetShare {
        BudgetShare {
            budget: self.clone(),
            published: AtomicUsize::new(0),
        }
    }
}

/// One pipeline's hold on the shared budget. Dropping it (the pipeline stopped or is being
/// restarted) returns what it held.
#[derive(Debug)]
pub struct BudgetShare {
    budget: Arc<MemoryBudget>,
    /// This pipeline's pending bytes as last reported.
    published: AtomicUsize,
}

impl BudgetShare {
    pub fn plan(&self) -> &Plan {
        &self.budget.plan
    }

    /// Reports this pipeline's pending bytes; true when it should flush now to relieve the
    /// shared budget (all pipelines together hold the total, and this one at least its share).
    pub fn update(&self, pending: usize) -> bool {
        let before = self.published.swap(pending, Ordering::Relaxed);
        let total = if pending >= before {
            let add = (pending - before) as u64;
            self.budget.pending.fetch_add(add, Ordering::Relaxed) + add
        } else {
            let sub = (before - pending) as u64;
            self.budget.pending.fetch_sub(sub, Ordering::Relaxed) - sub
        };
        pending > 0
            && pending as u64 >= self.budget.plan.batch_bytes
            && total >= self.budget.batch_total
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        self.update(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_split_between_pipelines_or_refused() {
        for (limit, n) in [(512, 3), (360, 3), (512, 1), (4096, 5)] {
            let p = plan(limit, n).expect("fits");
            assert_eq!(p.share_bytes, (limit - RESERVED_MIB) * MIB / n as u64);
            let per_pipeline = PIPELINE_BASE_MIB * MIB
                + (p.batch_bytes as f64 * BATCH_RSS_FACTOR) as u64
                + p.dedup_keys as u64 * DEDUP_BYTES_PER_KEY
                + p.key_index_bytes
                + p.queue_bytes;
            let total = RESERVED_MIB * MIB + n as u64 * per_pipeline;
            assert!(total <= p.limit_bytes, "{limit}/{n}: {total} > {p:?}");
        }
        let p = plan(512, 3).expect("512 MiB fits 3 pipelines");
        assert!(p.batch_bytes >= 16 * MIB, "{p:?}");
        assert!(p.dedup_keys > 40_000, "{p:?}");
        assert!(p.key_index_bytes > 9 * MIB, "{p:?}");
        assert_eq!(plan(16384, 1).expect("big").dedup_keys, MAX_DEDUP_KEYS);
        let err = plan(200, 3).expect_err("too small");
        assert!(
            err.contains("200 MiB") && err.contains("at least 360 MiB"),
            "{err}"
        );
        assert_eq!(minimum_mib(3), 360);
    }

    #[test]
    fn the_pipelines_holding_most_flush_when_the_shared_budget_is_used_up() {
        let budget = MemoryBudget::new(plan(500, 2).expect("plan"));
        let share = budget.plan.batch_bytes as usize;
        let (a, b) = (budget.share(), budget.share());
        assert!(!a.update(share + share / 2), "alone, a may draw more");
        assert!(!b.update(share / 4), "b is under its share");
        assert!(!b.update(share / 2), "b holds less than its share");
        assert!(
            a.update(share + share / 2),
            "the total is reached: a flushes"
        );
        assert!(!a.update(0), "a flushed");
        assert_eq!(budget.pending(), share as u64 / 2);
        drop(b);
        assert_eq!(budget.pending(), 0, "a dropped share gives its bytes back");
    }
}
