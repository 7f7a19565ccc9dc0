//! The metric families of `/metrics`, in their order, encoded by `prometheus-client` when
//! scraped: the registry's [`State`] is its one collector. Families of a kind of source (SQS,
//! Kafka), of the memory budget and of the account sync appear only where they apply.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;

use super::{PipelineMetrics, State, lock, resident_memory_bytes};

/// A counter's name (as exported, with `_total`), help text, and which counter it is.
type CounterSpec = (&'static str, &'static str, fn(&PipelineMetrics) -> &Counter);

/// The counters of every pipeline with nothing but the `pipeline` label, in their order
/// (after the events written and received).
const PIPELINE_COUNTERS: [CounterSpec; 8] = [
    (
        "auditlake_events_deduplicated_total",
        "Events dropped as duplicates of an event id already seen.",
        |p| &p.duplicates_dropped,
    ),
    (
        "auditlake_dead_letters_total",
        "Inputs that could not be turned into events, written to dead_letters.",
        |p| &p.dead_letters,
    ),
    (
        "auditlake_digests_skipped_total",
        "CloudTrail digest records skipped.",
        |p| &p.digests_skipped,
    ),
    (
        "auditlake_asset_changes_written_total",
        "Asset changes committed to the lake (asset_changes rows).",
        |p| &p.asset_changes_written,
    ),
    (
        "auditlake_inputs_total",
        "Input units started (files, objects, partitions).",
        |p| &p.inputs,
    ),
    (
        "auditlake_inputs_already_in_lake_total",
        "Input units skipped because the lake already holds them.",
        |p| &p.inputs_already_in_lake,
    ),
    (
        "auditlake_files_committed_total",
        "Parquet files committed to the lake.",
        |p| &p.files_committed,
    ),
    (
        "auditlake_batches_committed_total",
        "Batches committed to the lake.",
        |p| &p.batches_committed,
    ),
];

const SQS_COUNTERS: [CounterSpec; 3] = [
    (
        "auditlake_sqs_messages_received_total",
        "SQS messages received.",
        |p| &p.sqs_messages_received,
    ),
    (
        "auditlake_sqs_messages_deleted_total",
        "SQS messages deleted once everything they name was in the lake.",
        |p| &p.sqs_messages_deleted,
    ),
    (
        "auditlake_sqs_visibility_extensions_total",
        "Visibility extensions (heartbeats) of SQS messages in progress.",
        |p| &p.sqs_visibility_extensions,
    ),
];

/// Starts a family. `name` is the exported name: a counter's ends with `_total`, which
/// `prometheus-client` adds itself.
fn family<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'static str,
    help: &'static str,
    kind: MetricType,
) -> Result<MetricEncoder<'a>, fmt::Error> {
    let name = match kind {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    encoder.encode_descriptor(name, help, None, kind)
}

/// A family of one counter per pipeline, labelled `pipeline`.
fn pipeline_counters<'p>(
    encoder: &mut DescriptorEncoder,
    (name, help, counter): CounterSpec,
    pipelines: impl IntoIterator<Item = &'p PipelineMetrics>,
) -> fmt::Result {
    let mut f = family(encoder, name, help, MetricType::Counter)?;
    for p in pipelines {
        counter(p).encode(f.encode_family(&[("pipeline", p.name.as_str())])?)?;
    }
    Ok(())
}

impl Collector for State {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let pipelines = lock(&self.pipelines).clone();
        let pipelines: Vec<&PipelineMetrics> = pipelines.iter().map(AsRef::as_ref).collect();
        let enc = &mut encoder;

        let mut f = family(
            enc,
            "auditlake_pipeline_up",
            "1 when the pipeline runs and makes progress (as /readyz), else 0.",
            MetricType::Gauge,
        )?;
        for p in &pipelines {
            let up = ConstGauge::new(i64::from(p.not_ready().is_none()));
            up.encode(f.encode_family(&[("pipeline", &p.name), ("source", &p.source)])?)?;
        }
        pipeline_counters(
            enc,
            (
                "auditlake_pipeline_restarts_total",
                "Restarts of the pipeline after a failure.",
                |p| &p.restarts,
            ),
            pipelines.iter().copied(),
        )?;
        let mut f = family(
            enc,
            "auditlake_events_written_total",
            "Events committed to the lake (ciem_events rows).",
            MetricType::Counter,
        )?;
        for p in &pipelines {
            for (provider, n) in lock(&p.events_written).iter() {
                let labels = [("pipeline", p.name.as_str()), ("provider", *provider)];
                ConstCounter::new(*n).encode(f.encode_family(&labels)?)?;
            }
        }
        let mut f = family(
            enc,
            "auditlake_events_received_total",
            "Events decoded from committed input (written plus duplicates dropped).",
            MetricType::Counter,
        )?;
        for p in &pipelines {
            let n = p.events_written() + p.duplicates_dropped.get();
            ConstCounter::new(n).encode(f.encode_family(&[("pipeline", &p.name)])?)?;
        }
        for spec in PIPELINE_COUNTERS {
            pipeline_counters(enc, spec, pipelines.iter().copied())?;
        }
        let mut f = family(
            enc,
            "auditlake_batch_flush_seconds",
            "Time from handing a batch to the lake until it is committed.",
            MetricType::Histogram,
        )?;
        for p in &pipelines {
            p.flush_seconds
                .encode(f.encode_family(&[("pipeline", &p.name)])?)?;
        }
        pipeline_counters(
            enc,
            (
                "auditlake_input_bytes_total",
                "Bytes of input read: files and S3 objects as stored (before decompression), Kafka message payloads.",
                |p| &p.input_bytes,
            ),
            pipelines.iter().copied(),
        )?;

        if let Some(memory) = lock(&self.memory).as_ref() {
            let gauges: [(&str, &str, u64); 3] = [
                (
                    "auditlake_memory_limit_bytes",
                    "The configured memory bound of the process (--memory-limit-mib).",
                    memory.limit_bytes,
                ),
                (
                    "auditlake_memory_batch_budget_bytes",
                    "Bytes all pipelines' pending batches may hold together before they are flushed early.",
                    memory.batch_budget_bytes,
                ),
                (
                    "auditlake_memory_batch_in_use_bytes",
                    "Estimated bytes of rows pending in all pipelines' batches.",
                    (memory.batch_in_use_bytes)(),
                ),
            ];
            for (name, help, value) in gauges {
                let f = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(value).encode(f)?;
            }
            pipeline_counters(
                enc,
                (
                    "auditlake_memory_pressure_flushes_total",
                    "Batches flushed early because the shared batch budget was used up.",
                    |p| &p.memory_pressure_flushes,
                ),
                pipelines.iter().copied(),
            )?;
        }

        let sqs: Vec<&PipelineMetrics> = pipelines
            .iter()
            .copied()
            .filter(|p| p.source == "sqs_s3")
            .collect();
        if !sqs.is_empty() {
            for spec in SQS_COUNTERS {
                pipeline_counters(enc, spec, sqs.iter().copied())?;
            }
            // The source sets the gauge before it counts a deletion (a release fence between):
            // a scrape that sees the deletion sees the message no longer in flight.
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            let mut f = family(
                enc,
                "auditlake_sqs_messages_in_flight",
                "SQS messages received and not yet deleted.",
                MetricType::Gauge,
            )?;
            for p in &sqs {
                let n = ConstGauge::new(p.sqs_messages_in_flight.get().max(0));
                n.encode(f.encode_family(&[("pipeline", &p.name)])?)?;
            }
        }

        if pipelines.iter().any(|p| p.source == "kafka") {
            let mut f = family(
                enc,
                "auditlake_kafka_offsets_skipped_total",
                "Offsets of a partition the broker never delivered (retention expired, log truncated): their events are missing from the lake; each gap is a dead letter.",
                MetricType::Counter,
            )?;
            for p in &pipelines {
                for ((topic, partition), n) in lock(&p.kafka_offsets_skipped).iter() {
                    let partition = partition.to_string();
                    let labels = [
                        ("pipeline", p.name.as_str()),
                        ("topic", topic.as_str()),
                        ("partition", partition.as_str()),
                    ];
                    ConstCounter::new(*n).encode(f.encode_family(&labels)?)?;
                }
            }
        }
        let consumers: Vec<_> = pipelines
            .iter()
            .filter_map(|p| lock(&p.kafka).clone().map(|k| (&p.name, k)))
            .collect();
        if !consumers.is_empty() {
            let mut f = family(
                enc,
                "auditlake_kafka_consumer_lag",
                "Messages of a partition not yet read (high watermark minus position).",
                MetricType::Gauge,
            )?;
            for (name, consumer) in &consumers {
                for ((topic, partition), lag) in &consumer.lag {
                    let partition = partition.to_string();
                    let labels = [
                        ("pipeline", name.as_str()),
                        ("topic", topic.as_str()),
                        ("partition", partition.as_str()),
                    ];
                    ConstGauge::new(*lag).encode(f.encode_family(&labels)?)?;
                }
            }
        }

        if let Some(sync) = lock(&self.sync).as_ref() {
            let sync = lock(&sync.inner);
            let mut f = family(
                enc,
                "auditlake_access_key_status",
                "AccessKey status of a synced account (1 = current status).",
                MetricType::Gauge,
            )?;
            for (account, c) in &sync.keys {
                for (status, current) in &c.statuses {
                    let labels = [
                        ("account", account.as_str()),
                        ("provider", c.provider),
                        ("status", *status),
                        ("code", c.code.as_str()),
                    ];
                    ConstGauge::new(i64::from(*current)).encode(f.encode_family(&labels)?)?;
                }
            }
            let mut f = family(
                enc,
                "auditlake_access_key_checked_seconds",
                "When the AccessKey was last checked.",
                MetricType::Gauge,
            )?;
            for (account, c) in &sync.keys {
                let labels = [("account", account.as_str()), ("provider", c.provider)];
                ConstGauge::new(c.checked_at_secs).encode(f.encode_family(&labels)?)?;
            }
            let mut f = family(
                enc,
                "auditlake_account_sync_runs_total",
                "Periodic account sync runs, by outcome.",
                MetricType::Counter,
            )?;
            for ((account, outcome), n) in &sync.runs {
                let labels = [("account", account.as_str()), ("outcome", *outcome)];
                ConstCounter::new(*n).encode(f.encode_family(&labels)?)?;
            }
        }

        let f = enc.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(resident_memory_bytes().unwrap_or(0)).encode(f)
    }
}
