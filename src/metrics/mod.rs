//! Operational metrics and health of the daemon.
//!
//! A leaf of the crate: it imports none of the components it measures. Each component reports
//! into the handles it is given (as Vector's `internal_events`: the component owns what it
//! emits), per batch or per message, never per event:
//! - [`PipelineMetrics`], one per pipeline: the batcher adds its counts
//!   ([`PipelineMetrics::add_counts`], [`PipelineMetrics::batch_committed`]), the sources add
//!   bytes read and their own counters (SQS messages; Kafka partitions, lag and skipped
//!   offsets), the daemon records starts, failures and restarts;
//! - [`AccountSyncMetrics`]: the account sync reports its key checks and runs;
//! - the memory budget is read when scraped ([`Registry::set_memory`]).
//!
//! [`Registry::render`] is the Prometheus text exposition (format 0.0.4, by `prometheus-client`,
//! [`exposition`]); [`serve`] answers `/metrics`, `/healthz` and `/readyz` over HTTP (hyper).

mod exposition;
mod http;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::event::now_ms;

pub use self::http::serve;

/// A pipeline is ready when its source loop ticked within this many seconds.
pub const READY_WITHIN_SECS: i64 = 30;

/// Upper bounds (seconds) of the batch flush latency histogram.
const FLUSH_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a batcher counted since its previous report (each field a difference).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub inputs: u64,
    pub inputs_already_in_lake: u64,
    pub duplicates_dropped: u64,
    pub digests_skipped: u64,
    pub dead_letters: u64,
    pub asset_changes_written: u64,
    pub files_committed: u64,
    pub batches_committed: u64,
}

/// Counters of one pipeline. Monotonic across restarts of the pipeline.
#[derive(Debug)]
pub struct PipelineMetrics {
    pub name: String,
    /// The kind of source: files, kafka, sqs_s3.
    pub source: String,
    running: AtomicBool,
    last_tick_ms: AtomicI64,
    pub restarts: Counter,
    last_error: Mutex<Option<String>>,
    inputs: Counter,
    /// Bytes of input read: files and S3 objects as stored, Kafka message payloads.
    pub input_bytes: Counter,
    /// Flushes forced by the shared memory budget.
    pub memory_pressure_flushes: Counter,
    inputs_already_in_lake: Counter,
    /// Events written, by provider.
    events_written: Mutex<BTreeMap<&'static str, u64>>,
    duplicates_dropped: Counter,
    digests_skipped: Counter,
    dead_letters: Counter,
    asset_changes_written: Counter,
    files_committed: Counter,
    batches_committed: Counter,
    flush_seconds: Histogram,
    pub sqs_messages_received: Counter,
    pub sqs_messages_deleted: Counter,
    pub sqs_messages_in_flight: Gauge,
    pub sqs_visibility_extensions: Counter,
    /// What the Kafka consumer reported: `None` until a consumer starts.
    kafka: Mutex<Option<KafkaConsumer>>,
    /// Kafka offsets never delivered, by (topic, partition), counted once their dead letter
    /// is committed.
    kafka_offsets_skipped: Mutex<BTreeMap<(String, i32), u64>>,
}

/// The state of a pipeline's Kafka consumer, as it reports it.
#[derive(Debug, Default, Clone)]
struct KafkaConsumer {
    /// Partitions assigned now.
    assigned: usize,
    /// The latest lag per (topic, partition).
    lag: BTreeMap<(String, i32), i64>,
}

impl PipelineMetrics {
    pub fn new(name: &str, source: &str) -> Self {
        PipelineMetrics {
            name: name.to_string(),
            source: source.to_string(),
            running: AtomicBool::default(),
            last_tick_ms: AtomicI64::default(),
            restarts: Counter::default(),
            last_error: Mutex::default(),
            inputs: Counter::default(),
            input_bytes: Counter::default(),
            memory_pressure_flushes: Counter::default(),
            inputs_already_in_lake: Counter::default(),
            events_written: Mutex::default(),
            duplicates_dropped: Counter::default(),
            digests_skipped: Counter::default(),
            dead_letters: Counter::default(),
            asset_changes_written: Counter::default(),
            files_committed: Counter::default(),
            batches_committed: Counter::default(),
            flush_seconds: Histogram::new(FLUSH_BUCKETS),
            sqs_messages_received: Counter::default(),
            sqs_messages_deleted: Counter::default(),
            sqs_messages_in_flight: Gauge::default(),
            sqs_visibility_extensions: Counter::default(),
            kafka: Mutex::default(),
            kafka_offsets_skipped: Mutex::default(),
        }
    }

    /// The source loop is alive (called from the loop, at most every few hundred ms).
    pub fn tick(&self) {
        self.last_tick_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The pipeline (re)started: it is running; it is ready once its source loop ticks.
    pub fn started(&self) {
        *lock(&self.last_error) = None;
        self.last_tick_ms.store(0, Ordering::Relaxed);
        self.running.store(true, Ordering::SeqCst);
    }

    /// The pipeline failed (it will be restarted) or stopped.
    pub fn failed(&self, error: &str) {
        self.running.store(false, Ordering::SeqCst);
        *lock(&self.last_error) = Some(error.to_string());
    }

    pub fn stopped(&self) {
        self.running.store(false, Ordering::SeqCst);
    }

    /// A Kafka consumer (re)started: no partition assigned yet, no lag known. From now on the
    /// pipeline is ready only while the consumer has partitions.
    pub fn kafka_consumer_started(&self) {
        *lock(&self.kafka) = Some(KafkaConsumer::default());
    }

    /// The Kafka consumer holds `n` partitions now (after a rebalance).
    pub fn kafka_partitions_assigned(&self, n: usize) {
        if let Some(k) = lock(&self.kafka).as_mut() {
            k.assigned = n;
        }
    }

    /// The consumer lag of a partition, from librdkafka's statistics.
    pub fn kafka_lag(&self, topic: &str, partition: i32, lag: i64) {
        if let Some(k) = lock(&self.kafka).as_mut() {
            k.lag.insert((topic.to_string(), partition), lag);
        }
    }

    /// `n` offsets of a partition were skipped (their gap's dead letter is committed).
    pub fn kafka_offsets_skipped(&self, topic: &str, partition: i32, n: u64) {
        *lock(&self.kafka_offsets_skipped)
            .entry((topic.to_string(), partition))
            .or_insert(0) += n;
    }

    /// `None` when ready, else why not.
    pub fn not_ready(&self) -> Option<String> {
        if !self.running.load(Ordering::SeqCst) {
            return Some(match lock(&self.last_error).as_deref() {
                Some(e) => format!("not running (restarts: {}): {e}", self.restarts.get()),
                None => "not running".to_string(),
            });
        }
        let last = self.last_tick_ms.load(Ordering::Relaxed);
        if last == 0 {
            return Some("starting: the source is not connected yet".to_string());
        }
        let idle_ms = now_ms() - last;
        if idle_ms > READY_WITHIN_SECS * 1000 {
            return Some(format!("no progress for {} s", idle_ms / 1000));
        }
        if lock(&self.kafka).as_ref().is_some_and(|k| k.assigned == 0) {
            return Some(
                "no Kafka partition assigned: not connected to the broker yet (or the group has more consumers than partitions)"
                    .to_string(),
            );
        }
        None
    }

    /// Adds what a batcher counted since its previous report.
    pub fn add_counts(&self, c: &BatchCounts) {
        self.inputs.inc_by(c.inputs);
        self.inputs_already_in_lake.inc_by(c.inputs_already_in_lake);
        self.duplicates_dropped.inc_by(c.duplicates_dropped);
        self.digests_skipped.inc_by(c.digests_skipped);
        self.dead_letters.inc_by(c.dead_letters);
        self.asset_changes_written.inc_by(c.asset_changes_written);
        self.files_committed.inc_by(c.files_committed);
        self.batches_committed.inc_by(c.batches_committed);
    }

    /// A committed batch: its events by provider and how long its commit took.
    pub fn batch_committed(&self, events_by_provider: &[(&'static str, u64)], took: Duration) {
        if !events_by_provider.is_empty() {
            let mut map = lock(&self.events_written);
            for (provider, n) in events_by_provider {
                *map.entry(provider).or_insert(0) += n;
            }
        }
        self.flush_seconds.observe(took.as_secs_f64());
    }

    pub fn events_written(&self) -> u64 {
        lock(&self.events_written).values().sum()
    }
}

/// Results of the account sync (one set for the process, by account), as the sync reports
/// them. Cheap to clone: clones share the same numbers.
#[derive(Debug, Clone, Default)]
pub struct AccountSyncMetrics {
    inner: Arc<Mutex<AccountSyncState>>,
}

#[derive(Debug, Default)]
struct AccountSyncState {
    /// The last key check of each account.
    keys: BTreeMap<String, KeyCheckRow>,
    /// Periodic sync runs by (account, outcome).
    runs: BTreeMap<(String, &'static str), u64>,
}

#[derive(Debug, Clone)]
struct KeyCheckRow {
    provider: &'static str,
    /// The cloud's error code, empty when none.
    code: String,
    /// Every status with whether it is the current one.
    statuses: Vec<(&'static str, bool)>,
    checked_at_secs: i64,
}

impl AccountSyncMetrics {
    /// The last key check of `account`: each of `statuses` with whether it is the current one
    /// (one `auditlake_access_key_status` gauge each), the cloud's error code (empty when
    /// none), and when it was checked. Replaces the account's previous check.
    pub fn key_checked(
        &self,
        account: &str,
        provider: &'static str,
        statuses: &[(&'static str, bool)],
        code: &str,
        checked_at_secs: i64,
    ) {
        lock(&self.inner).keys.insert(
            account.to_string(),
            KeyCheckRow {
                provider,
                code: code.to_string(),
                statuses: statuses.to_vec(),
                checked_at_secs,
            },
        );
    }

    /// A periodic sync run of `account` ended (`auditlake_account_sync_runs_total`).
    pub fn sync_run(&self, account: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        *lock(&self.inner)
            .runs
            .entry((account.to_string(), outcome))
            .or_insert(0) += 1;
    }
}

/// The process's memory budget as `/metrics` reports it.
struct MemoryGauges {
    limit_bytes: u64,
    batch_budget_bytes: u64,
    /// Bytes of rows pending in all batches, read when scraped.
    batch_in_use_bytes: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for MemoryGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryGauges")
            .field("limit_bytes", &self.limit_bytes)
            .field("batch_budget_bytes", &self.batch_budget_bytes)
            .finish_non_exhaustive()
    }
}

/// What the registry holds: what `/metrics` and `/readyz` report.
#[derive(Debug, Default)]
struct State {
    pipelines: Mutex<Vec<Arc<PipelineMetrics>>>,
    /// Account-sync results, shared by every pipeline's accounts file (one exposition).
    sync: Mutex<Option<AccountSyncMetrics>>,
    /// The process's memory budget (daemon mode).
    memory: Mutex<Option<MemoryGauges>>,
}

/// Everything `/metrics` and `/readyz` report.
pub struct Registry {
    state: Arc<State>,
    exposition: prometheus_client::registry::Registry,
}

impl Default for Registry {
    fn default() -> Self {
        let state = Arc::new(State::default());
        let mut exposition = prometheus_client::registry::Registry::default();
        exposition.register_collector(Box::new(state.clone()));
        Registry { state, exposition }
    }
}

impl Registry {
    pub fn pipeline(&self, name: &str, source: &str) -> Arc<PipelineMetrics> {
        let m = Arc::new(PipelineMetrics::new(name, source));
        lock(&self.state.pipelines).push(m.clone());
        m
    }

    /// Exports the memory budget: its limit, the batches' share of it, and what the batchers
    /// hold of it (`batch_in_use_bytes`, called when scraped).
    pub fn set_memory(
        &self,
        limit_bytes: u64,
        batch_budget_bytes: u64,
        batch_in_use_bytes: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        *lock(&self.state.memory) = Some(MemoryGauges {
            limit_bytes,
            batch_budget_bytes,
            batch_in_use_bytes: Box::new(batch_in_use_bytes),
        });
    }

    /// Where account syncs report their results (one set for the process, by account).
    pub fn account_sync(&self) -> AccountSyncMetrics {
        lock(&self.state.sync)
            .get_or_insert_with(Default::default)
            .clone()
    }

    /// One line per pipeline (those not ready first, with the reason); `Err` when any is not
    /// ready.
    pub fn readiness(&self) -> Result<String, String> {
        let mut bad = String::new();
        let mut good = String::new();
        for p in lock(&self.state.pipelines).iter() {
            match p.not_ready() {
                Some(reason) => {
                    let _ = writeln!(bad, "pipeline {}: {reason}", p.name);
                }
                None => {
                    let _ = writeln!(good, "pipeline {}: ready", p.name);
                }
            }
        }
        if bad.is_empty() {
            Ok(good)
        } else {
            Err(bad + &good)
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.exposition)?;
        Ok(out)
    }
}

/// Resident set size from `/proc/self/status` (Linux).
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(registry: &Registry) -> String {
        registry.render().expect("render")
    }

    #[test]
    fn metrics_render_counters_and_readiness() {
        let registry = Registry::default();
        let a = registry.pipeline("a", "files");
        let b = registry.pipeline("b\"x", "sqs_s3");
        a.started();
        assert!(a.not_ready().is_some_and(|r| r.starts_with("starting")));
        a.tick();
        let counts = BatchCounts {
            inputs: 2,
            duplicates_dropped: 1,
            files_committed: 3,
            batches_committed: 1,
            ..BatchCounts::default()
        };
        a.add_counts(&counts);
        a.add_counts(&BatchCounts::default());
        a.batch_committed(&[("aws", 5), ("tencent", 2)], Duration::from_millis(70));
        b.failed("lake is a file");
        b.restarts.inc();
        let text = render(&registry);
        for line in [
            "auditlake_events_written_total{pipeline=\"a\",provider=\"aws\"} 5",
            "auditlake_events_written_total{pipeline=\"a\",provider=\"tencent\"} 2",
            "auditlake_events_received_total{pipeline=\"a\"} 8",
            "auditlake_inputs_total{pipeline=\"a\"} 2",
            "auditlake_files_committed_total{pipeline=\"a\"} 3",
            "auditlake_pipeline_up{pipeline=\"a\",source=\"files\"} 1",
            "auditlake_pipeline_up{pipeline=\"b\\\"x\",source=\"sqs_s3\"} 0",
            "auditlake_pipeline_restarts_total{pipeline=\"b\\\"x\"} 1",
            "auditlake_batch_flush_seconds_bucket{pipeline=\"a\",le=\"0.05\"} 0",
            "auditlake_batch_flush_seconds_bucket{pipeline=\"a\",le=\"0.1\"} 1",
            "auditlake_batch_flush_seconds_bucket{pipeline=\"a\",le=\"+Inf\"} 1",
            "auditlake_batch_flush_seconds_count{pipeline=\"a\"} 1",
            "auditlake_sqs_messages_in_flight{pipeline=\"b\\\"x\"} 0",
            "# HELP auditlake_inputs_total Input units started (files, objects, partitions).",
            "# TYPE auditlake_inputs_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.contains("# TYPE auditlake_batch_flush_seconds histogram"));
        assert!(
            text.lines()
                .any(|l| l.starts_with("process_resident_memory_bytes ") && !l.ends_with(" 0"))
        );
        let not_ready = registry.readiness().expect_err("b is down");
        assert!(
            not_ready.contains("pipeline b\"x: not running (restarts: 1): lake is a file"),
            "{not_ready}"
        );
        assert!(not_ready.ends_with("pipeline a: ready\n"), "{not_ready}");
        b.started();
        b.tick();
        assert!(registry.readiness().is_ok());
        assert!(!text.contains("auditlake_kafka_offsets_skipped_total"));
        assert!(!text.contains("auditlake_memory_limit_bytes"));
        assert!(!text.contains("auditlake_access_key_status"));
    }

    #[test]
    fn kafka_pipelines_export_skipped_offsets_per_partition() {
        let registry = Registry::default();
        let k = registry.pipeline("cls", "kafka");
        let text = render(&registry);
        assert!(
            text.contains("# TYPE auditlake_kafka_offsets_skipped_total counter"),
            "{text}"
        );
        k.kafka_offsets_skipped("out-1", 2, 14);
        k.kafka_offsets_skipped("out-1", 2, 1);
        k.kafka_offsets_skipped("out-1", 0, 3);
        let text = render(&registry);
        for line in [
            "auditlake_kafka_offsets_skipped_total{pipeline=\"cls\",topic=\"out-1\",partition=\"0\"} 3",
            "auditlake_kafka_offsets_skipped_total{pipeline=\"cls\",topic=\"out-1\",partition=\"2\"} 15",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("auditlake_kafka_consumer_lag"), "{text}");
    }

    #[test]
    fn a_kafka_consumer_reports_its_partitions_and_lag() {
        let registry = Registry::default();
        let k = registry.pipeline("cls", "kafka");
        k.started();
        k.tick();
        assert!(registry.readiness().is_ok(), "no consumer yet: as files");
        k.kafka_consumer_started();
        let not_ready = registry.readiness().expect_err("no partition");
        assert!(
            not_ready.contains("no Kafka partition assigned"),
            "{not_ready}"
        );
        k.kafka_partitions_assigned(2);
        k.kafka_lag("audit", 1, 7);
        k.kafka_lag("audit", 0, 3);
        assert!(registry.readiness().is_ok());
        let text = render(&registry);
        let lag = "auditlake_kafka_consumer_lag{pipeline=\"cls\",topic=\"audit\",partition=";
        assert!(
            text.contains(&format!("{lag}\"0\"}} 3\n{lag}\"1\"}} 7\n")),
            "{text}"
        );
        k.kafka_consumer_started();
        assert!(!render(&registry).contains(&format!("{lag}\"0\"")));
    }

    #[test]
    fn memory_and_account_sync_appear_once_reported() {
        let registry = Registry::default();
        let p = registry.pipeline("a", "files");
        p.memory_pressure_flushes.inc();
        registry.set_memory(512 << 20, 16 << 20, || 4096);
        let sync = registry.account_sync();
        sync.key_checked(
            "prod",
            "tencent",
            &[("valid", false), ("invalid", true)],
            "AuthFailure",
            1_700_000_000,
        );
        sync.sync_run("prod", true);
        registry.account_sync().sync_run("prod", false);
        let text = render(&registry);
        for line in [
            "auditlake_memory_limit_bytes 536870912",
            "auditlake_memory_batch_budget_bytes 16777216",
            "auditlake_memory_batch_in_use_bytes 4096",
            "auditlake_memory_pressure_flushes_total{pipeline=\"a\"} 1",
            "auditlake_access_key_status{account=\"prod\",provider=\"tencent\",status=\"valid\",code=\"AuthFailure\"} 0",
            "auditlake_access_key_status{account=\"prod\",provider=\"tencent\",status=\"invalid\",code=\"AuthFailure\"} 1",
            "auditlake_access_key_checked_seconds{account=\"prod\",provider=\"tencent\"} 1700000000",
            "auditlake_account_sync_runs_total{account=\"prod\",outcome=\"failed\"} 1",
            "auditlake_account_sync_runs_total{account=\"prod\",outcome=\"ok\"} 1",
            "# TYPE auditlake_account_sync_runs_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
