//! Operational metrics and health of the daemon: a registry of per-pipeline atomic counters
//! that the batcher and the sources update (per batch or per message, never per event), a
//! Prometheus text exposition (format 0.0.4) of it, and a small HTTP server for `/metrics`,
//! `/healthz` and `/readyz`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::batch::Stats;
use crate::sources::kafka::KafkaHandle;
use crate::sync::SyncMetrics;

/// A pipeline is ready when its source loop ticked within this many seconds.
pub const READY_WITHIN_SECS: i64 = 30;

/// Upper bounds (seconds) of the batch flush latency histogram.
const FLUSH_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    crate::event::now_ms()
}

/// Counters of one pipeline. Monotonic across restarts of the pipeline.
#[derive(Default)]
pub struct PipelineMetrics {
    pub name: String,
    /// The kind of source: files, kafka, sqs_s3.
    pub source: String,
    running: AtomicBool,
    last_tick_ms: AtomicI64,
    pub restarts: AtomicU64,
    last_error: Mutex<Option<String>>,
    pub inputs: AtomicU64,
    /// Bytes of input read: files and S3 objects as stored, Kafka message payloads.
    pub input_bytes: AtomicU64,
    /// Flushes forced by the shared memory budget.
    pub memory_pressure_flushes: AtomicU64,
    pub inputs_already_in_lake: AtomicU64,
    /// Events written, by provider.
    events_written: Mutex<BTreeMap<&'static str, u64>>,
    pub duplicates_dropped: AtomicU64,
    pub digests_skipped: AtomicU64,
    pub dead_letters: AtomicU64,
    pub asset_changes_written: AtomicU64,
    pub files_committed: AtomicU64,
    pub batches_committed: AtomicU64,
    flush_buckets: [AtomicU64; FLUSH_BUCKETS.len()],
    flush_count: AtomicU64,
    flush_sum_us: AtomicU64,
    pub sqs_messages_received: AtomicU64,
    pub sqs_messages_deleted: AtomicU64,
    pub sqs_messages_in_flight: AtomicI64,
    pub sqs_visibility_extensions: AtomicU64,
    kafka: Mutex<Option<KafkaHandle>>,
    /// Kafka offsets never delivered, by (topic, partition), counted once their dead letter
    /// is committed.
    kafka_offsets_skipped: Mutex<BTreeMap<(String, i32), u64>>,
}

impl PipelineMetrics {
    pub fn new(name: &str, source: &str) -> Self {
        PipelineMetrics {
            name: name.to_string(),
            source: source.to_string(),
            ..PipelineMetrics::default()
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

    /// Lag per partition comes from this consumer.
    pub fn set_kafka(&self, handle: KafkaHandle) {
        *lock(&self.kafka) = Some(handle);
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
                Some(e) => format!(
                    "not running (restarts: {}): {e}",
                    self.restarts.load(Ordering::Relaxed)
                ),
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
        let kafka = lock(&self.kafka).clone();
        if kafka.is_some_and(|k| k.assigned().is_empty()) {
            return Some(
                "no Kafka partition assigned: not connected to the broker yet (or the group has more consumers than partitions)"
                    .to_string(),
            );
        }
        None
    }

    /// Adds what a batcher counted since `published`, then remembers it as published.
    pub fn publish(&self, stats: &Stats, published: &mut Stats) {
        let add = |counter: &AtomicU64, now: u64, before: u64| {
            counter.fetch_add(now.saturating_sub(before), Ordering::Relaxed);
        };
        add(&self.inputs, stats.units, published.units);
        add(
            &self.inputs_already_in_lake,
            stats.units_already_in_lake,
            published.units_already_in_lake,
        );
        add(
            &self.duplicates_dropped,
            stats.duplicates_dropped,
            published.duplicates_dropped,
        );
        add(
            &self.digests_skipped,
            stats.digests_skipped,
            published.digests_skipped,
        );
        add(
            &self.dead_letters,
            stats.dead_letters,
            published.dead_letters,
        );
        add(
            &self.asset_changes_written,
            stats.asset_changes_written,
            published.asset_changes_written,
        );
        add(
            &self.files_committed,
            stats.files_committed,
            published.files_committed,
        );
        add(
            &self.batches_committed,
            stats.batches_committed,
            published.batches_committed,
        );
        *published = stats.clone();
    }

    /// A committed batch: its events by provider and how long its commit took.
    pub fn batch_committed(&self, events_by_provider: &[(&'static str, u64)], took: Duration) {
        if !events_by_provider.is_empty() {
            let mut map = lock(&self.events_written);
            for (provider, n) in events_by_provider {
                *map.entry(provider).or_insert(0) += n;
            }
        }
        let secs = took.as_secs_f64();
        for (bucket, bound) in self.flush_buckets.iter().zip(FLUSH_BUCKETS) {
            if secs <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.flush_count.fetch_add(1, Ordering::Relaxed);
        self.flush_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn events_written(&self) -> u64 {
        lock(&self.events_written).values().sum()
    }
}

/// Everything `/metrics` and `/readyz` report.
#[derive(Default)]
pub struct Registry {
    pipelines: Mutex<Vec<Arc<PipelineMetrics>>>,
    /// Account-sync results, shared by every pipeline's accounts file (one exposition).
    sync: Mutex<Option<SyncMetrics>>,
    /// The process's memory budget (daemon mode).
    memory: Mutex<Option<Arc<crate::memory::MemoryBudget>>>,
}

impl Registry {
    pub fn pipeline(&self, name: &str, source: &str) -> Arc<PipelineMetrics> {
        let m = Arc::new(PipelineMetrics::new(name, source));
        lock(&self.pipelines).push(m.clone());
        m
    }

    /// Exports the memory budget and what the batchers hold of it.
    pub fn set_memory(&self, budget: Arc<crate::memory::MemoryBudget>) {
        *lock(&self.memory) = Some(budget);
    }

    /// Where account syncs record their results (one set for the process, by account).
    pub fn account_sync(&self) -> SyncMetrics {
        lock(&self.sync)
            .get_or_insert_with(SyncMetrics::default)
            .clone()
    }

    /// One line per pipeline (those not ready first, with the reason); `Err` when any is not
    /// ready.
    pub fn readiness(&self) -> Result<String, String> {
        let mut bad = String::new();
        let mut good = String::new();
        for p in lock(&self.pipelines).iter() {
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
    pub fn render(&self) -> String {
        let pipelines = lock(&self.pipelines).clone();
        let mut out = String::new();
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        header(
            &mut out,
            "auditlake_pipeline_up",
            "gauge",
            "1 when the pipeline runs and makes progress (as /readyz), else 0.",
        );
        for p in &pipelines {
            let _ = writeln!(
                out,
                "auditlake_pipeline_up{{pipeline=\"{}\",source=\"{}\"}} {}",
                esc(&p.name),
                esc(&p.source),
                u8::from(p.not_ready().is_none())
            );
        }
        header(
            &mut out,
            "auditlake_pipeline_restarts_total",
            "counter",
            "Restarts of the pipeline after a failure.",
        );
        for p in &pipelines {
            counter_line(
                &mut out,
                "auditlake_pipeline_restarts_total",
                p,
                p.restarts.load(Ordering::Relaxed),
            );
        }
        header(
            &mut out,
            "auditlake_events_written_total",
            "counter",
            "Events committed to the lake (ciem_events rows).",
        );
        for p in &pipelines {
            for (provider, n) in lock(&p.events_written).iter() {
                let _ = writeln!(
                    out,
                    "auditlake_events_written_total{{pipeline=\"{}\",provider=\"{provider}\"}} {n}",
                    esc(&p.name)
                );
            }
        }
        header(
            &mut out,
            "auditlake_events_received_total",
            "counter",
            "Events decoded from committed input (written plus duplicates dropped).",
        );
        for p in &pipelines {
            let n = p.events_written() + p.duplicates_dropped.load(Ordering::Relaxed);
            counter_line(&mut out, "auditlake_events_received_total", p, n);
        }
        let simple: [CounterSpec; 8] = [
            (
                "auditlake_events_deduplicated_total",
                "Events dropped as duplicates of an event id already seen.",
                |p| p.duplicates_dropped.load(Ordering::Relaxed),
            ),
            (
                "auditlake_dead_letters_total",
                "Inputs that could not be turned into events, written to dead_letters.",
                |p| p.dead_letters.load(Ordering::Relaxed),
            ),
            (
                "auditlake_digests_skipped_total",
                "CloudTrail digest records skipped.",
                |p| p.digests_skipped.load(Ordering::Relaxed),
            ),
            (
                "auditlake_asset_changes_written_total",
                "Asset changes committed to the lake (asset_changes rows).",
                |p| p.asset_changes_written.load(Ordering::Relaxed),
            ),
            (
                "auditlake_inputs_total",
                "Input units started (files, objects, partitions).",
                |p| p.inputs.load(Ordering::Relaxed),
            ),
            (
                "auditlake_inputs_already_in_lake_total",
                "Input units skipped because the lake already holds them.",
                |p| p.inputs_already_in_lake.load(Ordering::Relaxed),
            ),
            (
                "auditlake_files_committed_total",
                "Parquet files committed to the lake.",
                |p| p.files_committed.load(Ordering::Relaxed),
            ),
            (
                "auditlake_batches_committed_total",
                "Batches committed to the lake.",
                |p| p.batches_committed.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, get) in simple {
            header(&mut out, name, "counter", help);
            for p in &pipelines {
                counter_line(&mut out, name, p, get(p));
            }
        }
        header(
            &mut out,
            "auditlake_batch_flush_seconds",
            "histogram",
            "Time from handing a batch to the lake until it is committed.",
        );
        for p in &pipelines {
            let name = esc(&p.name);
            for (bucket, bound) in p.flush_buckets.iter().zip(FLUSH_BUCKETS) {
                let _ = writeln!(
                    out,
                    "auditlake_batch_flush_seconds_bucket{{pipeline=\"{name}\",le=\"{bound}\"}} {}",
                    bucket.load(Ordering::Relaxed)
                );
            }
            let count = p.flush_count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "auditlake_batch_flush_seconds_bucket{{pipeline=\"{name}\",le=\"+Inf\"}} {count}\n\
                 auditlake_batch_flush_seconds_sum{{pipeline=\"{name}\"}} {}\n\
                 auditlake_batch_flush_seconds_count{{pipeline=\"{name}\"}} {count}",
                p.flush_sum_us.load(Ordering::Relaxed) as f64 / 1e6
            );
        }
        header(
            &mut out,
            "auditlake_input_bytes_total",
            "counter",
            "Bytes of input read: files and S3 objects as stored (before decompression), Kafka message payloads.",
        );
        for p in &pipelines {
            counter_line(
                &mut out,
                "auditlake_input_bytes_total",
                p,
                p.input_bytes.load(Ordering::Relaxed),
            );
        }
        if let Some(budget) = lock(&self.memory).clone() {
            header(
                &mut out,
                "auditlake_memory_limit_bytes",
                "gauge",
                "The configured memory bound of the process (--memory-limit-mib).",
            );
            let _ = writeln!(
                out,
                "auditlake_memory_limit_bytes {}",
                budget.plan.limit_bytes
            );
            header(
                &mut out,
                "auditlake_memory_batch_budget_bytes",
                "gauge",
                "Bytes all pipelines' pending batches may hold together before they are flushed early.",
            );
            let _ = writeln!(
                out,
                "auditlake_memory_batch_budget_bytes {}",
                budget.batch_total
            );
            header(
                &mut out,
                "auditlake_memory_batch_in_use_bytes",
                "gauge",
                "Estimated bytes of rows pending in all pipelines' batches.",
            );
            let _ = writeln!(
                out,
                "auditlake_memory_batch_in_use_bytes {}",
                budget.pending()
            );
            header(
                &mut out,
                "auditlake_memory_pressure_flushes_total",
                "counter",
                "Batches flushed early because the shared batch budget was used up.",
            );
            for p in &pipelines {
                counter_line(
                    &mut out,
                    "auditlake_memory_pressure_flushes_total",
                    p,
                    p.memory_pressure_flushes.load(Ordering::Relaxed),
                );
            }
        }
        let sqs: Vec<_> = pipelines.iter().filter(|p| p.source == "sqs_s3").collect();
        if !sqs.is_empty() {
            let sqs_counters: [CounterSpec; 3] = [
                (
                    "auditlake_sqs_messages_received_total",
                    "SQS messages received.",
                    |p| p.sqs_messages_received.load(Ordering::Relaxed),
                ),
                (
                    "auditlake_sqs_messages_deleted_total",
                    "SQS messages deleted once everything they name was in the lake.",
                    |p| p.sqs_messages_deleted.load(Ordering::Relaxed),
                ),
                (
                    "auditlake_sqs_visibility_extensions_total",
                    "Visibility extensions (heartbeats) of SQS messages in progress.",
                    |p| p.sqs_visibility_extensions.load(Ordering::Relaxed),
                ),
            ];
            for (name, help, get) in sqs_counters {
                header(&mut out, name, "counter", help);
                for p in &sqs {
                    counter_line(&mut out, name, p, get(p));
                }
            }
            header(
                &mut out,
                "auditlake_sqs_messages_in_flight",
                "gauge",
                "SQS messages received and not yet deleted.",
            );
            for p in &sqs {
                let _ = writeln!(
                    out,
                    "auditlake_sqs_messages_in_flight{{pipeline=\"{}\"}} {}",
                    esc(&p.name),
                    p.sqs_messages_in_flight.load(Ordering::Relaxed).max(0)
                );
            }
        }
        let kafka: Vec<_> = pipelines
            .iter()
            .filter_map(|p| lock(&p.kafka).clone().map(|h| (p.name.clone(), h)))
            .collect();
        if pipelines.iter().any(|p| p.source == "kafka") {
            header(
                &mut out,
                "auditlake_kafka_offsets_skipped_total",
                "counter",
                "Offsets of a partition the broker never delivered (retention expired, log truncated): their events are missing from the lake; each gap is a dead letter.",
            );
            for p in &pipelines {
                for ((topic, partition), n) in lock(&p.kafka_offsets_skipped).iter() {
                    let _ = writeln!(
                        out,
                        "auditlake_kafka_offsets_skipped_total{{pipeline=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {n}",
                        esc(&p.name),
                        esc(topic)
                    );
                }
            }
        }
        if !kafka.is_empty() {
            header(
                &mut out,
                "auditlake_kafka_consumer_lag",
                "gauge",
                "Messages of a partition not yet read (high watermark minus position).",
            );
            for (name, handle) in &kafka {
                for ((topic, partition), lag) in handle.lag() {
                    let _ = writeln!(
                        out,
                        "auditlake_kafka_consumer_lag{{pipeline=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {}",
                        esc(name),
                        esc(&topic),
                        lag.lag
                    );
                }
            }
        }
        if let Some(sync) = lock(&self.sync).as_ref() {
            out.push_str(&sync.render_prometheus());
        }
        header(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(
            out,
            "process_resident_memory_bytes {}",
            resident_memory_bytes().unwrap_or(0)
        );
        out
    }
}

/// A counter's name, help text, and how to read it.
type CounterSpec = (&'static str, &'static str, fn(&PipelineMetrics) -> u64);

fn counter_line(out: &mut String, name: &str, p: &PipelineMetrics, value: u64) {
    let _ = writeln!(out, "{name}{{pipeline=\"{}\"}} {value}", esc(&p.name));
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` from a background thread.
pub fn serve(addr: &str, registry: Arc<Registry>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".to_string())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(e) = respond(stream, &registry) {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "metrics connection failed"),
                }
            }
        })?;
    Ok(local)
}

fn respond(stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("").split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            registry.render(),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string()),
        ("GET", "/readyz") => match registry.readiness() {
            Ok(body) => ("200 OK", "text/plain; charset=utf-8", body),
            Err(body) => ("503 Service Unavailable", "text/plain; charset=utf-8", body),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: try /metrics, /healthz or /readyz\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_counters_and_readiness() {
        let registry = Registry::default();
        let a = registry.pipeline("a", "files");
        let b = registry.pipeline("b\"x", "sqs_s3");
        a.started();
        assert!(a.not_ready().is_some_and(|r| r.starts_with("starting")));
        a.tick();
        let mut published = Stats::default();
        let stats = Stats {
            units: 2,
            duplicates_dropped: 1,
            files_committed: 3,
            batches_committed: 1,
            ..Stats::default()
        };
        a.publish(&stats, &mut published);
        a.publish(&stats, &mut published);
        a.batch_committed(&[("aws", 5), ("tencent", 2)], Duration::from_millis(70));
        b.failed("lake is a file");
        b.restarts.fetch_add(1, Ordering::Relaxed);
        let text = registry.render();
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
            "auditlake_batch_flush_seconds_count{pipeline=\"a\"} 1",
            "auditlake_sqs_messages_in_flight{pipeline=\"b\\\"x\"} 0",
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
    }

    #[test]
    fn kafka_pipelines_export_skipped_offsets_per_partition() {
        let registry = Registry::default();
        let k = registry.pipeline("cls", "kafka");
        let text = registry.render();
        assert!(
            text.contains("# TYPE auditlake_kafka_offsets_skipped_total counter"),
            "{text}"
        );
        k.kafka_offsets_skipped("out-1", 2, 14);
        k.kafka_offsets_skipped("out-1", 2, 1);
        k.kafka_offsets_skipped("out-1", 0, 3);
        let text = registry.render();
        for line in [
            "auditlake_kafka_offsets_skipped_total{pipeline=\"cls\",topic=\"out-1\",partition=\"0\"} 3",
            "auditlake_kafka_offsets_skipped_total{pipeline=\"cls\",topic=\"out-1\",partition=\"2\"} 15",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
