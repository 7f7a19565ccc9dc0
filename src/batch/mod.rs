//! The [`Batcher`]: between the normalized items of input units and the lake. It drops
//! duplicate events, applies the flush policy, and commits each batch together with the input
//! segments it covers, so a restart resumes exactly after what is in the lake.

mod dedup;
#[cfg(test)]
mod iceberg_tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::event::now_ms;
use crate::normalize::unit::Item;
use crate::sink::SinkError;
use crate::sink::journal::{Segment, UnitState};
use crate::sink::keys::{self, DedupConfig, Horizon};
use crate::sink::lake::{Claim, CommittedFile, FailedBatch, LocalLake, PendingBatch, WrittenBatch};
use dedup::Dedup;

/// When a batch is written: whichever limit is reached first.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlushPolicy {
    /// Rows per batch (one Parquet file per partition per batch).
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Estimated in-memory size of a batch, in MiB; bounds memory use.
    #[serde(default = "default_max_mib")]
    pub max_mib: usize,
    /// Longest time rows wait before being written, in seconds (daemon mode; replays flush by
    /// size only, so the same input always yields the same files).
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
}

fn default_max_rows() -> usize {
    100_000
}
fn default_max_mib() -> usize {
    32
}
fn default_max_age_secs() -> u64 {
    60
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            max_rows: default_max_rows(),
            max_mib: default_max_mib(),
            max_age_secs: default_max_age_secs(),
        }
    }
}

/// Counters a run reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub units: u64,
    pub units_already_in_lake: u64,
    pub events_written: u64,
    pub duplicates_dropped: u64,
    pub digests_skipped: u64,
    pub dead_letters: u64,
    /// Asset changes derived from the events written.
    pub asset_changes_written: u64,
    pub positions_already_in_lake: u64,
    pub files_committed: u64,
    pub batches_committed: u64,
}

impl Stats {
    /// What was counted since `before`, for the pipeline's metrics.
    fn since(&self, before: &Stats) -> crate::metrics::BatchCounts {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        crate::metrics::BatchCounts {
            inputs: d(self.units, before.units),
            inputs_already_in_lake: d(self.units_already_in_lake, before.units_already_in_lake),
            duplicates_dropped: d(self.duplicates_dropped, before.duplicates_dropped),
            digests_skipped: d(self.digests_skipped, before.digests_skipped),
            dead_letters: d(self.dead_letters, before.dead_letters),
            asset_changes_written: d(self.asset_changes_written, before.asset_changes_written),
            files_committed: d(self.files_committed, before.files_committed),
            batches_committed: d(self.batches_committed, before.batches_committed),
        }
    }
}

/// Bytes a pending event key adds to its batch (its date and key).
const KEY_PENDING_BYTES: usize = 24;

struct OpenUnit {
    known: Option<UnitState>,
    /// First position of this unit in the pending batch.
    from: Option<i64>,
    /// One past the last position seen.
    to: i64,
    /// What the logs call it (a file's name; the unit id otherwise).
    name: Arc<str>,
    started: Instant,
    /// Rows this unit added, for its "input finished" log line.
    events: u64,
    duplicates: u64,
    dead_letters: u64,
}

impl OpenUnit {
    /// The positions `from..self.to` this unit read itself: those the lake did not hold when
    /// it began.
    fn claims(&self, id: &str, from: i64) -> Vec<Claim> {
        let missing = match &self.known {
            Some(known) => known.missing(from, self.to),
            None if from < self.to => vec![(from, self.to)],
            None => Vec::new(),
        };
        missing
            .into_iter()
            .map(|(from, to)| Claim {
                unit: id.to_string(),
                from,
                to,
            })
            .collect()
    }
}

/// What a commit achieved.
#[derive(Debug, Default)]
pub struct CommitReport {
    pub files: Vec<CommittedFile>,
    /// Units whose every position is now in the lake.
    pub completed_units: Vec<String>,
}

pub struct Batcher {
    lake: LocalLake,
    policy: FlushPolicy,
    pending: PendingBatch,
    pending_bytes: usize,
    opened_at: Option<Instant>,
    dedup: Dedup,
    /// Units being read, by id. Several may be open at once (Kafka partitions, SQS objects).
    open: HashMap<String, OpenUnit>,
    /// Per unit left open by committed batches (Kafka partitions): one past the highest
    /// position committed. Complete units are not kept here.
    committed_through: HashMap<String, i64>,
    pipelined: bool,
    in_flight: Option<(
        BatchSummary,
        std::thread::JoinHandle<Result<WrittenBatch, FailedBatch>>,
    )>,
    /// Events within this distance of now (event time, ms) are checked against the lake's
    /// committed keys; `None`: the horizon is off.
    horizon_ms: Option<i64>,
    /// When this writer last deleted key files the horizon no longer reaches.
    pruned_at: Option<Instant>,
    pub stats: Stats,
    /// The names of the units the pending segments belong to, for the commit's log line.
    pending_inputs: Vec<Arc<str>>,
    metrics: Option<Arc<crate::metrics::PipelineMetrics>>,
    /// What `metrics` has been given of `stats`.
    published: Stats,
    /// This pipeline's hold on the process's memory budget (daemon mode).
    budget: Option<crate::memory::BudgetShare>,
}

/// Whether a unit needs reading.
#[derive(Debug, PartialEq, Eq)]
pub enum UnitStart {
    AlreadyInLake,
    Read,
}

impl Batcher {
    pub fn new(lake: LocalLake, policy: FlushPolicy) -> Self {
        Batcher {
            lake,
            policy,
            pending: PendingBatch::default(),
            pending_bytes: 0,
            opened_at: None,
            dedup: Dedup::new(8_000_000),
            open: HashMap::new(),
            committed_through: HashMap::new(),
            pipelined: false,
            in_flight: None,
            horizon_ms: Horizon::DEFAULT.millis(),
            pruned_at: None,
            stats: Stats::default(),
            pending_inputs: Vec::new(),
            metrics: None,
            published: Stats::default(),
            budget: None,
        }
    }

    /// Puts the batcher under the process's memory budget: its batches are at most the shared
    /// batch budget (`flush.max_mib` lowered if needed), its deduplicator window fits its share,
    /// and [`Batcher::is_due`] also says yes when the shared budget is used up and this
    /// pipeline holds at least its part of it.
    pub fn with_budget(mut self, share: crate::memory::BudgetShare) -> Self {
        let plan = *share.plan();
        let total_mib = ((plan.batch_bytes * plan.pipelines as u64) >> 20).max(1);
        self.policy.max_mib = self
            .policy
            .max_mib
            .min(usize::try_from(total_mib).unwrap_or(usize::MAX));
        self.dedup = Dedup::new(plan.dedup_keys.max(1));
        self.lake.set_key_budget(plan.key_index_bytes);
        self.budget = Some(share);
        self
    }

    /// Sets the dedup horizon (default 48 h): within it of now, no (provider, event id) is
    /// written twice to the lake, across restarts and writers; beyond it, only within a run.
    pub fn with_dedup(mut self, dedup: DedupConfig) -> Self {
        self.horizon_ms = dedup.horizon.millis();
        self
    }

    /// Deletes this writer's event keys the horizon no longer reaches, at most hourly.
    fn prune_keys(&mut self) -> Result<(), SinkError> {
        let Some(horizon) = self.horizon_ms else {
            return Ok(());
        };
        if self
            .pruned_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(3600))
        {
            return Ok(());
        }
        self.pruned_at = Some(Instant::now());
        self.lake.prune_keys(now_ms(), horizon)
    }

    /// Bytes the queues feeding this batcher may hold, when it is under a memory budget.
    pub fn queue_budget(&self) -> Option<u64> {
        self.budget.as_ref().map(|b| b.plan().queue_bytes)
    }

    /// Reports the pending bytes to the shared budget; true when this pipeline must flush to
    /// relieve it.
    fn memory_pressure(&self) -> bool {
        let Some(share) = &self.budget else {
            return false;
        };
        let flush = share.update(self.pending_bytes);
        if flush && let Some(m) = &self.metrics {
            m.memory_pressure_flushes.inc();
        }
        flush
    }

    /// Reports every committed batch to `metrics` (the daemon's `/metrics`); the source loop's
    /// regular [`Batcher::is_due`] calls double as its liveness tick.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::PipelineMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn metrics(&self) -> Option<&Arc<crate::metrics::PipelineMetrics>> {
        self.metrics.as_ref()
    }

    pub fn lake(&self) -> &LocalLake {
        &self.lake
    }

    /// Starts a unit (a file, an object, a Kafka partition). A unit the journal records as
    /// complete is not read again; positions already committed are skipped when pushed.
    /// The logs name the unit by its id (see [`Batcher::begin_named_unit`]).
    pub fn begin_unit(&mut self, id: &str) -> UnitStart {
        self.begin_named_unit(id, id, None)
    }

    /// [`Batcher::begin_unit`] for a unit whose id is not what its user calls it (a file,
    /// known by the hash of its content): the logs say `name`, and `bytes` when known.
    pub fn begin_named_unit(&mut self, id: &str, name: &str, bytes: Option<u64>) -> UnitStart {
        tracing::info!(input = %name, bytes, "input taken");
        self.stats.units += 1;
        let known = self.lake.unit_shared(id);
        // Another writer of a shared lake may have committed events this unit repeats.
        if let Some(horizon) = self.horizon_ms
            && let Err(e) = self.lake.refresh_keys(horizon)
        {
            tracing::warn!(error = %e, "cannot read the event keys other writers committed");
        }
        if known.as_ref().is_some_and(|k| k.complete) {
            self.stats.units_already_in_lake += 1;
            tracing::info!(input = %name, "input already in the lake, skipped");
            return UnitStart::AlreadyInLake;
        }
        self.open.insert(
            id.to_string(),
            OpenUnit {
                known,
                from: None,
                to: 0,
                name: Arc::from(name),
                started: Instant::now(),
                events: 0,
                duplicates: 0,
                dead_letters: 0,
            },
        );
        UnitStart::Read
    }

    /// Adds the item at `position` of `unit` (which must have been begun). May commit a batch.
    pub fn push(
        &mut self,
        unit: &str,
        position: i64,
        item: Item<'_>,
    ) -> Result<Option<CommitReport>, SinkError> {
        self.push_all(unit, position, std::iter::once(item))
    }

    /// Adds several items that share one position (e.g. the records of one Kafka message), then
    /// applies the flush policy: a batch never ends between items of one position, so a
    /// committed position always has all of its items in the lake.
    pub fn push_all<'a>(
        &mut self,
        unit: &str,
        position: i64,
        items: impl IntoIterator<Item = Item<'a>>,
    ) -> Result<Option<CommitReport>, SinkError> {
        let Some(unit) = self.open.get_mut(unit) else {
            return Err(SinkError::Schema(format!(
                "item pushed for unit {unit} that was not begun"
            )));
        };
        unit.from.get_or_insert(position);
        unit.to = unit.to.max(position + 1);
        if unit.known.as_ref().is_some_and(|k| k.contains(position)) {
            self.stats.positions_already_in_lake += 1;
            return Ok(None);
        }
        let now = self.horizon_ms.map(|_| now_ms());
        for item in items {
            match item {
                Item::Event(e) => {
                    let day = self
                        .horizon_ms
                        .zip(now)
                        .and_then(|(h, now)| keys::day_within(e.time_ms, now, h));
                    let first = match day {
                        Some(day) => {
                            let key =
                                self.lake
                                    .first_sighting(day, e.cloud_provider, &e.metadata_uid)?;
                            if let Some(key) = key {
                                self.pending.keys.push((day, key));
                                self.pending_bytes += KEY_PENDING_BYTES;
                            }
                            key.is_some()
                        }
                        None => self.dedup.first_sighting(&e),
                    };
                    if first {
                        // Changes travel in the event's batch: committed together or not at all.
                        for c in crate::assets::audit::changes(&e) {
                            self.pending_bytes += c.estimated_bytes();
                            self.pending.asset_changes.push(c);
                        }
                        // Copied into the batch's columns while still in cache; the
                        // event itself is dropped here.
                        self.pending_bytes += self.pending.events.push(&e);
                        unit.events += 1;
                    } else {
                        self.stats.duplicates_dropped += 1;
                        unit.duplicates += 1;
                    }
                }
                Item::Digest => self.stats.digests_skipped += 1,
                Item::Dead(d) => {
                    unit.dead_letters += 1;
                    tracing::warn!(source = %d.origin.source, partition = d.origin.partition, position = d.origin.position, offset = d.byte_offset, reason = %d.reason, "dead letter");
                    self.pending_bytes += d.estimated_bytes();
                    self.pending.dead_letters.push(d);
                }
            }
        }
        self.opened_at.get_or_insert_with(Instant::now);
        if self.pending.events.len() + self.pending.dead_letters.len() >= self.policy.max_rows
            || self.pending_bytes >= self.policy.max_mib << 20
        {
            return self.flush().map(Some);
        }
        Ok(None)
    }

    /// Ends a unit: it is complete once the batch holding its end commits.
    pub fn end_unit(&mut self, id: &str) {
        if let Some(unit) = self.open.remove(id) {
            tracing::info!(
                input = %unit.name,
                events = unit.events,
                duplicates = unit.duplicates,
                dead_letters = unit.dead_letters,
                seconds = format_args!("{:.2}", unit.started.elapsed().as_secs_f64()),
                "input finished"
            );
            self.pending_inputs.push(unit.name.clone());
            let from = unit.from.unwrap_or(unit.to);
            self.pending.claims.extend(unit.claims(id, from));
            self.pending.segments.push(Segment {
                unit: id.to_string(),
                from,
                to: unit.to,
                complete: true,
            });
            // The unit's end must be committed even when it brought no new row (an empty
            // unit, or one whose every position was already in the lake): it ages like a row,
            // so a daemon waiting on the unit's completion gets it within `max_age_secs`.
            self.opened_at.get_or_insert_with(Instant::now);
        }
    }

    /// Forgets a unit without recording its end (e.g. a revoked Kafka partition, an abandoned
    /// object): positions already flushed stay recorded, pending ones are committed with the
    /// next batch as an incomplete segment.
    pub fn abandon_unit(&mut self, id: &str) {
        if let Some(unit) = self.open.remove(id)
            && let Some(from) = unit.from
        {
            self.pending_inputs.push(unit.name.clone());
            self.pending.claims.extend(unit.claims(id, from));
            self.pending.segments.push(Segment {
                unit: id.to_string(),
                from,
                to: unit.to,
                complete: false,
            });
        }
    }

    /// One past the highest position of `unit` that committed batches of this run hold (for
    /// Kafka: the offset to commit). Every position below it that was pushed is in the lake,
    /// because a unit's positions are pushed in order and batches commit in order.
    pub fn committed_through(&self, unit: &str) -> Option<i64> {
        self.committed_through.get(unit).copied()
    }

    /// True when the oldest pending row has waited longer than the policy allows, or when the
    /// memory budget needs this batch written now (see [`Batcher::with_budget`]).
    pub fn is_due(&self) -> bool {
        if let Some(m) = &self.metrics {
            m.tick();
        }
        if self.memory_pressure() {
            return true;
        }
        self.opened_at
            .is_some_and(|t| t.elapsed() >= Duration::from_secs(self.policy.max_age_secs))
    }

    /// Commits everything pending (including the open units' segments so far).
    pub fn flush(&mut self) -> Result<CommitReport, SinkError> {
        let mut open: Vec<_> = self.open.iter_mut().collect();
        open.sort_by(|a, b| a.0.cmp(b.0)); // stable batch ids
        for (id, unit) in open {
            if let Some(from) = unit.from.take() {
                self.pending_inputs.push(unit.name.clone());
                self.pending.claims.extend(unit.claims(id, from));
                self.pending.segments.push(Segment {
                    unit: id.clone(),
                    from,
                    to: unit.to,
                    complete: false,
                });
            }
        }
        let batch = std::mem::take(&mut self.pending);
        let inputs = std::mem::take(&mut self.pending_inputs);
        self.pending_bytes = 0;
        self.opened_at = None;
        if let Err(e) = self.prune_keys() {
            tracing::warn!(error = %e, "cannot delete event keys older than the dedup horizon");
        }
        if !self.pipelined {
            if batch.segments.is_empty() {
                return Ok(CommitReport::default());
            }
            let summary = BatchSummary::of(&batch, inputs);
            let result = self.lake.commit(batch);
            return self.account(summary, result);
        }
        // Pipelined: publish the batch written in the background, then hand this one over.
        let report = self.wait_in_flight()?;
        if !batch.segments.is_empty() {
            let summary = BatchSummary::of(&batch, inputs);
            match self.lake.stage(batch) {
                Ok(Some(staged)) => {
                    self.in_flight = Some((summary, std::thread::spawn(move || staged.write())));
                }
                Ok(None) => {}
                Err(e) => return self.account(summary, Err(e)),
            }
        }
        Ok(report)
    }

    /// Commits everything, waiting for a batch still being written in the background.
    pub fn finish(&mut self) -> Result<CommitReport, SinkError> {
        let mut report = self.flush()?;
        let last = self.wait_in_flight()?;
        report.files.extend(last.files);
        report.completed_units.extend(last.completed_units);
        Ok(report)
    }

    /// Encode each batch on a background thread while the next one fills (one batch in
    /// flight, so memory stays bounded by two batches). Commit reports arrive one flush late;
    /// call [`Batcher::finish`] at the end. For replays, where nothing waits on a report.
    pub fn pipelined(mut self) -> Self {
        self.pipelined = true;
        self
    }

    fn wait_in_flight(&mut self) -> Result<CommitReport, SinkError> {
        let Some((summary, handle)) = self.in_flight.take() else {
            return Ok(CommitReport::default());
        };
        let written = handle
            .join()
            .map_err(|_| SinkError::Schema("the Parquet writer thread panicked".to_string()))?;
        let result = self.lake.publish(written);
        self.account(summary, result)
    }

    fn account(
        &mut self,
        summary: BatchSummary,
        result: Result<Vec<CommittedFile>, SinkError>,
    ) -> Result<CommitReport, SinkError> {
        let files = match result {
            Ok(files) => files,
            Err(e) => {
                // The batch's input is not recorded and will be read again; forget what it
                // taught the deduplicators so none of it is dropped as a "duplicate" then
                // (committed keys are read again from the lake).
                self.dedup = Dedup::new(self.dedup.capacity);
                self.lake.forget_keys();
                self.open.clear();
                return Err(e);
            }
        };
        tracing::info!(
            events = summary.events,
            dead_letters = summary.dead_letters,
            files = files.len(),
            inputs = %summary.inputs(),
            "batch committed"
        );
        self.stats.events_written += summary.events;
        self.stats.dead_letters += summary.dead_letters;
        self.stats.asset_changes_written += summary.asset_changes;
        self.stats.files_committed += files.len() as u64;
        self.stats.batches_committed += 1;
        for (unit, to) in summary.open_through {
            let through = self.committed_through.entry(unit).or_insert(to);
            *through = (*through).max(to);
        }
        for unit in &summary.completed_units {
            self.committed_through.remove(unit);
        }
        if let Some(m) = &self.metrics {
            m.add_counts(&self.stats.since(&self.published));
            self.published = self.stats.clone();
            m.batch_committed(&summary.events_by_provider, summary.started.elapsed());
        }
        Ok(CommitReport {
            files,
            completed_units: summary.completed_units,
        })
    }
}

/// What a batch holds, kept for the report once it is committed.
struct BatchSummary {
    events: u64,
    asset_changes: u64,
    dead_letters: u64,
    completed_units: Vec<String>,
    /// (unit, end) of the segments of units still open.
    open_through: Vec<(String, i64)>,
    events_by_provider: Vec<(&'static str, u64)>,
    started: Instant,
    /// The names of the units the batch has segments of.
    inputs: Vec<Arc<str>>,
}

/// How many inputs a commit's log line names before "and N more".
const INPUTS_NAMED: usize = 3;

impl BatchSummary {
    /// The inputs the batch covers, for its log line: a few names, then "and N more".
    fn inputs(&self) -> String {
        let mut text = self.inputs[..self.inputs.len().min(INPUTS_NAMED)].join(", ");
        if self.inputs.len() > INPUTS_NAMED {
            text.push_str(&format!(" and {} more", self.inputs.len() - INPUTS_NAMED));
        }
        text
    }

    fn of(batch: &PendingBatch, inputs: Vec<Arc<str>>) -> Self {
        let events_by_provider = batch
            .events
            .by_provider()
            .map(|(p, n)| (p.as_str(), n))
            .collect();
        BatchSummary {
            events_by_provider,
            inputs,
            started: Instant::now(),
            events: batch.events.len() as u64,
            asset_changes: batch.asset_changes.len() as u64,
            dead_letters: batch.dead_letters.len() as u64,
            completed_units: batch
                .segments
                .iter()
                .filter(|s| s.complete)
                .map(|s| s.unit.clone())
                .collect(),
            open_through: batch
                .segments
                .iter()
                .filter(|s| !s.complete)
                .map(|s| (s.unit.clone(), s.to))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::unit::tests::{decode, message};
    use crate::sink::parquet::ParquetOptions;

    /// A CloudAudit message of an event that happened a minute ago (within the horizon).
    fn recent_message(id: &str) -> Vec<u8> {
        let secs = now_ms() / 1000 - 60;
        format!(
            r#"{{"eventID":"{id}","eventTime":{secs},"eventSource":"cvm.tencentcloudapi.com","eventName":"RunInstances","eventRegion":"ap-guangzhou","userIdentity":{{"accountId":"1"}}}}"#
        )
        .into_bytes()
    }

    fn push_message(b: &mut Batcher, unit: &str, id: &str) {
        b.begin_unit(unit);
        for item in decode(&recent_message(id), 0) {
            b.push(unit, 0, item).expect("push");
        }
        b.end_unit(unit);
    }

    #[test]
    fn event_keys_commit_with_their_batch_and_are_honoured_after_a_restart_or_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = || LocalLake::open(dir.path(), ParquetOptions::default()).expect("lake");
        let mut b = Batcher::new(open(), FlushPolicy::default());
        push_message(&mut b, "m1", "e1");
        push_message(&mut b, "m2", "e1");
        b.finish().expect("commit");
        assert_eq!((b.stats.events_written, b.stats.duplicates_dropped), (1, 1));
        drop(b);

        // A new process: e1 is in the lake; e2 is staged and written but the process dies
        // before the commit (the pipelined writer's batch is never published).
        let mut b = Batcher::new(open(), FlushPolicy::default()).pipelined();
        push_message(&mut b, "m3", "e1");
        push_message(&mut b, "m4", "e2");
        assert_eq!(b.stats.duplicates_dropped, 1, "e1 is known from the lake");
        b.flush().expect("stage");
        if let Some((_, handle)) = b.in_flight.take() {
            assert!(handle.join().expect("writer").is_ok());
        }
        drop(b);

        // Restarted: the unfinished batch's keys went with its rows, so e2 is written again.
        let mut b = Batcher::new(open(), FlushPolicy::default());
        push_message(&mut b, "m4", "e2");
        push_message(&mut b, "m5", "e1");
        b.finish().expect("commit");
        assert_eq!((b.stats.events_written, b.stats.duplicates_dropped), (1, 1));
        drop(b);

        // With the horizon off, nothing is kept across runs.
        let mut b = Batcher::new(open(), FlushPolicy::default()).with_dedup(DedupConfig {
            horizon: Horizon::OFF,
        });
        push_message(&mut b, "m6", "e1");
        b.finish().expect("commit");
        assert_eq!(b.stats.events_written, 1);
    }

    #[test]
    fn a_batch_never_ends_inside_a_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = LocalLake::open(dir.path(), ParquetOptions::default()).expect("lake");
        let policy = FlushPolicy {
            max_rows: 1,
            ..FlushPolicy::default()
        };
        let mut b = Batcher::new(lake, policy);
        b.begin_unit("kafka:t/0");
        let mut items = decode(&message("x"), 0);
        items.extend(decode(&message("y"), 0));
        let report = b.push_all("kafka:t/0", 0, items).expect("push");
        assert!(
            report.is_some(),
            "the row limit flushes, after the whole message"
        );
        assert_eq!(b.stats.events_written, 2);
        assert_eq!(b.committed_through("kafka:t/0"), Some(1));
    }

    #[test]
    fn committed_through_follows_committed_batches_and_survives_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = || LocalLake::open(dir.path(), ParquetOptions::default()).expect("lake");
        let unit = "kafka:topic/3";
        let mut b = Batcher::new(open(), FlushPolicy::default());
        assert_eq!(b.begin_unit(unit), UnitStart::Read);
        assert_eq!(b.committed_through(unit), None);
        for (offset, id) in [(5, "a"), (6, "b")] {
            for item in decode(&message(id), offset) {
                assert!(b.push(unit, offset, item).expect("push").is_none());
            }
        }
        assert_eq!(b.committed_through(unit), None, "nothing is committed yet");
        b.flush().expect("flush");
        assert_eq!(b.committed_through(unit), Some(7));
        // Pending but unflushed positions do not move it.
        for item in decode(b"garbage", 7) {
            b.push(unit, 7, item).expect("push");
        }
        assert_eq!(b.committed_through(unit), Some(7));
        b.abandon_unit(unit);
        b.flush().expect("flush");
        assert_eq!(b.committed_through(unit), Some(8));
        assert_eq!(b.stats.events_written, 2);
        assert_eq!(b.stats.dead_letters, 1);
        drop(b);

        // After a restart the journal skips what is in the lake (offsets not committed to
        // Kafka are read again), and the re-read positions still count as committed.
        let mut b = Batcher::new(open(), FlushPolicy::default());
        b.begin_unit(unit);
        for (offset, id) in [(6, "b"), (8, "c")] {
            for item in decode(&message(id), offset) {
                b.push(unit, offset, item).expect("push");
            }
        }
        b.flush().expect("flush");
        assert_eq!(b.stats.positions_already_in_lake, 1);
        assert_eq!(b.stats.events_written, 1);
        assert_eq!(b.committed_through(unit), Some(9));
    }

    #[test]
    fn a_unit_without_new_rows_still_completes_by_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = LocalLake::open(dir.path(), ParquetOptions::default()).expect("lake");
        let mut batcher = Batcher::new(
            lake,
            FlushPolicy {
                max_age_secs: 0,
                ..FlushPolicy::default()
            },
        );
        assert!(!batcher.is_due(), "nothing pending");
        assert_eq!(batcher.begin_unit("empty"), UnitStart::Read);
        batcher.end_unit("empty");
        assert!(batcher.is_due(), "the unit's end is pending and due");
        let report = batcher.flush().expect("flush");
        assert_eq!(report.completed_units, vec!["empty".to_string()]);
        assert!(!batcher.is_due());
        assert_eq!(batcher.begin_unit("empty"), UnitStart::AlreadyInLake);
    }

    #[test]
    fn a_commit_names_a_few_inputs_then_counts_the_rest() {
        let summary = |n: usize| BatchSummary {
            inputs: (0..n)
                .map(|i| Arc::from(format!("inbox/{i}.json")))
                .collect(),
            ..BatchSummary::of(&PendingBatch::default(), Vec::new())
        };
        assert_eq!(summary(1).inputs(), "inbox/0.json");
        assert_eq!(
            summary(3).inputs(),
            "inbox/0.json, inbox/1.json, inbox/2.json"
        );
        assert_eq!(
            summary(5).inputs(),
            "inbox/0.json, inbox/1.json, inbox/2.json and 2 more"
        );
    }
}
