//! The Kafka source end to end.
//!
//! - Against a real Kafka-protocol broker (tansu, started here on a free loopback port):
//!   `auditlake run` consumes CloudAudit messages in every CLS format variant, the lake is read
//!   with DuckDB, offsets are committed; SIGKILL mid-stream and a restart lose and duplicate
//!   nothing. tansu 0.6 skips the rest of a record batch when a fetch starts inside it, so the
//!   tests that resume from a committed offset on tansu produce one message per batch (see
//!   `tansu_fetch_inside_a_batch_probe`).
//! - Against librdkafka's mock cluster (in process; `auditlake run` reaches its brokers over
//!   loopback too): resuming after SIGKILL at the exact committed offset inside a batch, offsets
//!   lost to retention reported as a gap, brokers down and back, request errors, and a second
//!   consumer joining the group mid-stream — no loss, no duplicates.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use auditlake::batch::{Batcher, FlushPolicy};
use auditlake::decode::DecodeLimits;
use auditlake::normalize::unit::DecodeContext;
use auditlake::normalize::{NormalizeConfig, Normalizer};
use auditlake::sink::lake::LocalLake;
use auditlake::sink::parquet::ParquetOptions;
use auditlake::sources::kafka::{KafkaConfig, KafkaHandle, KafkaSource, client_config};
use common::tansu::{Tansu, produce, produce_one_per_batch, send};
use common::*;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A CloudAudit event as CLS delivers it in JSON format (nested), with a given id.
fn cloudaudit(id: &str, n: usize) -> String {
    json!({
        "__SOURCE__": "10.0.0.9",
        "__TIMESTAMP__": 1714557600000u64 + n as u64,
        "userIdentity": {"type": "CAMUser", "principalId": "100000000011", "accountId": "100000000001", "userName": "ops"},
        "eventTime": 1714557600 + n as u64,
        "eventSource": "cvm.tencentcloudapi.com",
        "eventName": "DescribeInstances",
        "eventRegion": "ap-guangzhou",
        "eventType": "ApiCall",
        "actionType": "Read",
        "sourceIPAddress": "192.0.2.1",
        "requestID": format!("req-{id}"),
        "eventID": id,
        "errorCode": 0
    })
    .to_string()
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(250));
    }
}

/// Rows in a dataset of the given lakes (0 when no file exists yet), read with DuckDB.
fn rows(lakes: &[&Path], dataset: &str, select: &str) -> Vec<Vec<Value>> {
    let files: Vec<String> = lakes
        .iter()
        .flat_map(|lake| {
            let dir = lake.join(dataset);
            parquet_files(&dir)
                .into_iter()
                .map(move |f| format!("'{}'", dir.join(f).display()))
        })
        .collect();
    if files.is_empty() {
        return Vec::new();
    }
    duckdb(&format!(
        "select {select} from read_parquet([{}], hive_partitioning = true, hive_types_autocast = false)",
        files.join(",")
    ))
}

/// (count(*), count(distinct metadata_uid)) of the events in the given lakes.
fn counts(lakes: &[&Path]) -> (i64, i64) {
    rows(
        lakes,
        "ciem_events",
        "count(*), count(distinct metadata_uid)",
    )
    .first()
    .map(|r| (r[0].as_i64().unwrap_or(-1), r[1].as_i64().unwrap_or(-1)))
    .unwrap_or((0, 0))
}

/// Committed offsets of `group` for the partitions of `topic`.
fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// Per partition, one past the highest offset the lake holds (events and dead letters).
fn next_offsets(lake: &Path, partitions: i32) -> Vec<i64> {
    let mut next = vec![0i64; partitions as usize];
    for dataset in ["ciem_events", "dead_letters"] {
        for r in rows(&[lake], dataset, "origin_partition, origin_position") {
            if let (Some(p), Some(n)) = (r[0].as_i64(), r[1].as_i64().map(|o| o + 1))
                && let Some(slot) = next.get_mut(p as usize)
            {
                *slot = (*slot).max(n);
            }
        }
    }
    next
}

fn high_watermarks(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "watermarks")
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .collect()
}

fn decode_context() -> DecodeContext {
    DecodeContext {
        normalizer: Normalizer::new(&NormalizeConfig::default()).expect("normalizer"),
        limits: DecodeLimits::default(),
        pipeline: Arc::from("kafka-test"),
    }
}

// ---------------------------------------------------------------------------------------------
// tansu: a real broker

/// `auditlake run` as a child process, stderr kept in a file.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, log: &Path) -> Daemon {
        Daemon::start_with(config, log, &[])
    }

    /// As [`Daemon::start`], with more arguments to `auditlake run`.
    fn start_with(config: &Path, log: &Path, args: &[&str]) -> Daemon {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(bin())
            .args(["run", "--config", config.to_str().expect("path")])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start auditlake");
        Daemon {
            child,
            log: log.to_path_buf(),
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGTERM, then the exit status (success expected).
    fn stop(mut self) {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "auditlake exited with {status}: {}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "auditlake did not stop: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, bootstrap: &str, topic: &str, group: &str, flush: &str) -> PathBuf {
    let path = dir.join("kafka.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "kafka-test"
[source]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
group_id = "{group}"
start_position = "earliest"
lag_report_secs = 1
[source.librdkafka]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"max.poll.interval.ms" = "10000"
"topic.metadata.refresh.interval.ms" = "1000"
[sink]
path = "{}"
[flush]
{flush}
"#,
            dir.join("lake").display()
        ),
    )
    .expect("write config");
    path
}

#[test]
fn tansu_cls_variants_land_in_the_lake_and_offsets_are_committed() {
    let tansu = Tansu::start();
    let topic = "cls-audit";
    tansu.create_topic(topic, 3);

    // The CLS format variants (JSON nested with nested tags, JsonType=2 strings, flattened
    // tags, raw __CONTENT__, raw event), then a message that is not an event and one that is
    // not JSON; each sent on its own so their offsets are known.
    let variants =
        std::fs::read_to_string(fixtures().join("variants/cls-kafka.jsonl")).expect("fixture");
    let mut singles: Vec<(i32, String)> = variants
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| ((i % 3) as i32, l.to_string()))
        .collect();
    assert_eq!(singles.len(), 5);
    singles.push((1, r#"{"hello":"world"}"#.to_string()));
    singles.push((2, "this is not json".to_string()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", tansu.bootstrap())
        .set("compression.type", "snappy")
        .create()
        .expect("producer");
    let mut placed = Vec::new(); // (partition, offset) of each single message
    for (partition, payload) in &singles {
        let delivery = runtime
            .block_on(
                producer.send(
                    FutureRecord::<(), String>::to(topic)
                        .partition(*partition)
                        .payload(payload),
                    Duration::from_secs(10),
                ),
            )
            .map_err(|(e, _)| e)
            .expect("delivered");
        placed.push((delivery.partition, delivery.offset));
    }
    // Bulk: snappy and LZ4 compressed batches, as CLS sends them.
    let bulk = |prefix: &str| -> Vec<(i32, String)> {
        (0..30)
            .map(|n| ((n % 3) as i32, cloudaudit(&format!("{prefix}-{n}"), n)))
            .collect()
    };
    produce(&tansu.bootstrap(), topic, "snappy", &bulk("snappy"));
    produce(&tansu.bootstrap(), topic, "lz4", &bulk("lz4"));
    let produced_events = 5 + 60;

    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(
        dir.path(),
        &tansu.bootstrap(),
        topic,
        "ciem",
        "max_age_secs = 1",
    );
    let daemon = Daemon::start(&config, &dir.path().join("auditlake.log"));
    wait_until("every event in the lake", Duration::from_secs(60), || {
        counts(&[&lake]).0 == produced_events
    });
    wait_until("the lag report", Duration::from_secs(10), || {
        daemon.log().contains("kafka consumer lag")
    });
    daemon.stop();

    assert_eq!(counts(&[&lake]), (produced_events, produced_events));
    let ev = |id: &str, cols: &str| -> Vec<Value> {
        let r = duckdb(&format!(
            "select {cols} from {} where metadata_uid = '{id}'",
            dataset(&lake, "ciem_events")
        ));
        assert_eq!(r.len(), 1, "{id}: {r:?}");
        r.into_iter().next().unwrap_or_default()
    };
    // JSON nested, nested tags; the password in requestParameters is redacted.
    assert_eq!(
        ev(
            "tc-1",
            "action, account, json_extract_string(request_data, '$.LoginSettings.Password'), json_extract_string(additional_data, '$.cls.tags.env'), time, origin_source, origin_partition, origin_position"
        ),
        vec![
            json!("cvm:RunInstances"),
            json!("100000000001"),
            json!("***"),
            json!("prod"),
            json!("2024-05-01T10:00:00+00:00"),
            json!(topic),
            json!(placed[0].0),
            json!(placed[0].1),
        ]
    );
    // JsonType=2: nested values as JSON strings, tag as a string.
    assert_eq!(
        ev(
            "tc-2",
            "action, actor_user_name, request_data, json_extract_string(additional_data, '$.cls.tags.app'), origin_partition, origin_position"
        ),
        vec![
            json!("cam:CreateAccessKey"),
            json!("ops"),
            json!("{\"TargetUin\":100000000012}"),
            json!("audit"),
            json!(placed[1].0),
            json!(placed[1].1),
        ]
    );
    // Flattened tags (__TAG__.key).
    assert_eq!(
        ev(
            "tc-3",
            "status, json_extract_string(additional_data, '$.cls.tags.env'), origin_position"
        ),
        vec![json!("Failure"), json!("test"), json!(placed[2].1)]
    );
    // Raw format: the event inside __CONTENT__, and the bare event.
    assert_eq!(
        ev("tc-4", "action, cloud_region"),
        vec![json!("cos:PutBucket"), json!("ap-beijing")]
    );
    assert_eq!(
        ev("12345678", "action, is_read_only"),
        vec![json!("cvm:DescribeInstances"), json!(true)]
    );
    // Bad messages are dead letters with topic, partition and offset.
    let dead = duckdb(&format!(
        "select origin_source, origin_partition, origin_position, reason, raw from {} order by origin_partition",
        dataset(&lake, "dead_letters")
    ));
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0][0], json!(topic));
    assert_eq!(
        (dead[0][1].clone(), dead[0][2].clone()),
        (json!(placed[5].0), json!(placed[5].1))
    );
    assert_eq!(dead[0][4], json!(r#"{"hello":"world"}"#));
    assert_eq!(
        (dead[1][1].clone(), dead[1][2].clone()),
        (json!(placed[6].0), json!(placed[6].1))
    );
    assert!(
        dead.iter()
            .all(|d| d[3].as_str().is_some_and(|r| !r.is_empty())),
        "{dead:?}"
    );

    // Every message, dead letters included, is committed: offsets reach the high watermark.
    // (tansu 0.6 answers ListOffsets with a wrong high watermark for multi-record batches, so
    // the expected offsets come from the lake: one past the last offset of each partition.)
    let next = next_offsets(&lake, 3);
    assert_eq!(next.iter().sum::<i64>(), produced_events + 2);
    assert_eq!(committed(&tansu.bootstrap(), "ciem", topic, 3), next);
}

#[test]
fn tansu_sigkill_mid_stream_then_restart_keeps_every_event_exactly_once() {
    let tansu = Tansu::start();
    let topic = "crash";
    tansu.create_topic(topic, 2);
    let total = 4000usize;

    // A producer that keeps writing while the consumer is killed and restarted. One message
    // per record batch: the restarted consumer resumes at its committed offset, and tansu
    // answers a fetch starting inside a batch with the next batch (see
    // `tansu_fetch_inside_a_batch_probe`), which would lose the rest of that batch for the
    // broker's fault, not ours.
    let bootstrap = tansu.bootstrap();
    let producer = thread::spawn(move || {
        for chunk in 0..40 {
            let msgs: Vec<(i32, String)> = (0..100)
                .map(|i| {
                    let n = chunk * 100 + i;
                    ((n % 2) as i32, cloudaudit(&format!("k-{n}"), n))
                })
                .collect();
            produce_one_per_batch(&bootstrap, topic, "lz4", &msgs);
            thread::sleep(Duration::from_millis(100));
        }
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let journal = lake.join("_auditlake/journal.jsonl");
    let config = write_config(
        dir.path(),
        &tansu.bootstrap(),
        topic,
        "crashy",
        "max_rows = 150\nmax_age_secs = 1",
    );
    let log = dir.path().join("auditlake.log");
    let commits = || {
        std::fs::File::open(&journal)
            .map(|f| {
                BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| l.contains("\"commit\""))
                    .count()
            })
            .unwrap_or(0)
    };
    let first = Daemon::start(&config, &log);
    wait_until("a few committed batches", Duration::from_secs(60), || {
        commits() >= 3
    });
    first.kill9();
    let before_restart = counts(&[&lake]).0;
    assert!(
        before_restart > 0 && before_restart < total as i64,
        "killed mid-stream: {before_restart} of {total} events were in the lake"
    );

    let second = Daemon::start(&config, &log);
    producer.join().expect("producer");
    wait_until(
        "every event after the restart",
        Duration::from_secs(90),
        || counts(&[&lake]).0 >= total as i64,
    );
    second.stop();
    assert_eq!(counts(&[&lake]), (total as i64, total as i64));
    let next = next_offsets(&lake, 2);
    assert_eq!(next.iter().sum::<i64>(), total as i64);
    assert_eq!(committed(&tansu.bootstrap(), "crashy", topic, 2), next);
}

/// The first offset a fresh consumer gets when it starts fetching partition 0 at `from`.
fn first_offset_fetched_from(bootstrap: &str, topic: &str, from: i64) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "probe")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(from))
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no message fetched from {from}");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            return m.offset();
        }
    }
}

/// Ten record batches of 50 messages on partition 0 (offsets 0–499).
fn produce_ten_batches_of_50(bootstrap: &str, topic: &str) {
    for b in 0..10 {
        let msgs: Vec<(i32, String)> = (0..50)
            .map(|i| (0, cloudaudit(&format!("p-{b}-{i}"), i)))
            .collect();
        // A long linger and a flush at the end: the 50 messages go as one batch.
        send(bootstrap, topic, &[("linger.ms", "1000")], &msgs);
    }
}

/// A one-broker mock cluster with `topic` of one partition, and its bootstrap servers.
fn mock_one_partition(topic: &str) -> (MockCluster<'static, DefaultProducerContext>, String) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(topic, 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    (cluster, bootstrap)
}

/// Pins down what the test broker does, so that its upgrade is noticed. tansu 0.6.0 answers a
/// fetch that starts inside a record batch with the *next* batch (fetching from offset 25 of
/// batches of 50 returns offset 50 first: a consumer resuming there silently loses 25
/// messages), and reports the high watermark as the last batch's first offset + 1 (451, not
/// 500). librdkafka's mock cluster, like Kafka, returns the batch holding the offset (the
/// client drops the records before it) and the true high watermark.
///
/// When this fails on tansu's side, the broker was fixed: tests resuming on tansu may produce
/// batches again (`produce` instead of `produce_one_per_batch` in `tansu_sigkill_mid_stream_…`
/// and `tests/scale_out.rs`), `tansu_cls_variants_…` may compare committed offsets with the high
/// watermarks, and this probe should assert the correct behaviour for both brokers.
#[test]
fn tansu_fetch_inside_a_batch_probe() {
    let tansu = Tansu::start();
    tansu.create_topic("probe", 1);
    produce_ten_batches_of_50(&tansu.bootstrap(), "probe");
    assert_eq!(
        first_offset_fetched_from(&tansu.bootstrap(), "probe", 25),
        50,
        "tansu now returns offset 25 for a fetch from 25: it was fixed, see this test's doc"
    );
    assert_eq!(
        high_watermarks(&tansu.bootstrap(), "probe", 1),
        vec![451],
        "tansu's high watermark changed: see this test's doc"
    );

    let (_cluster, bootstrap) = mock_one_partition("probe");
    produce_ten_batches_of_50(&bootstrap, "probe");
    assert_eq!(first_offset_fetched_from(&bootstrap, "probe", 25), 25);
    assert_eq!(high_watermarks(&bootstrap, "probe", 1), vec![500]);
}

/// Committed offsets of `group` on partition 0, 0 when none.
fn committed0(bootstrap: &str, group: &str, topic: &str) -> i64 {
    committed(bootstrap, group, topic, 1)[0].max(0)
}

/// `auditlake run` killed with SIGKILL after it committed offset 40 of a single batch of 50
/// messages (batches of 20 rows; the last 10 rows were still pending), then restarted: it
/// resumes at exactly offset 40, inside the batch, against a broker that returns the batch
/// holding the offset (librdkafka's mock cluster, as Kafka). Every message lands once; a
/// consumer that resumed one offset late (or early, or at the next batch, as on tansu) fails
/// here.
#[test]
fn mock_cluster_sigkill_then_restart_resumes_at_the_exact_committed_offset_inside_a_batch() {
    let topic = "resume";
    let (_cluster, bootstrap) = mock_one_partition(topic);
    // One batch, offsets 0-49.
    send(
        &bootstrap,
        topic,
        &[("linger.ms", "1000")],
        &batch("x", 0..50, 1),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("auditlake.log");
    let config = write_config(
        dir.path(),
        &bootstrap,
        topic,
        "resumer",
        "max_rows = 20\nmax_age_secs = 600",
    );
    let first = Daemon::start(&config, &log);
    wait_until("offset 40 committed", Duration::from_secs(60), || {
        committed0(&bootstrap, "resumer", topic) >= 40
    });
    first.kill9();
    let resume_at = committed0(&bootstrap, "resumer", topic);
    assert_eq!(counts(&[&lake]), (40, 40), "before the restart");

    let config = write_config(dir.path(), &bootstrap, topic, "resumer", "max_age_secs = 1");
    let second = Daemon::start(&config, &log);
    wait_until("every offset committed", Duration::from_secs(60), || {
        committed0(&bootstrap, "resumer", topic) >= 50
    });
    second.stop();
    assert_eq!(
        counts(&[&lake]),
        (50, 50),
        "resumed at committed offset {resume_at}"
    );
    assert_eq!(
        rows(
            &[&lake],
            "ciem_events",
            "min(origin_position), max(origin_position)"
        ),
        vec![vec![json!(0), json!(49)]]
    );
    assert_eq!(committed0(&bootstrap, "resumer", topic), 50);
    assert!(
        rows(&[&lake], "dead_letters", "reason").is_empty(),
        "no gap, no dead letter"
    );
}

/// A CloudAudit event of about `pad` bytes.
fn big_cloudaudit(id: &str, n: usize, pad: usize) -> String {
    let mut v: Value = serde_json::from_str(&cloudaudit(id, n)).expect("event");
    v["requestParameters"] = json!({ "Filters": "f".repeat(pad) });
    v.to_string()
}

/// Retention deletes messages the group has not read while auditlake is down: librdkafka
/// resumes at the log start, and the offsets between the committed one and it are reported —
/// the `auditlake_kafka_offsets_skipped_total` metric, a warning naming the range, and one
/// dead letter with the first and last missing offset, committed with the batch.
/// (librdkafka's mock cluster keeps at most 5 MiB per partition, dropping the oldest batches
/// beyond it: its retention.)
#[test]
fn mock_cluster_offsets_lost_to_retention_are_a_counted_logged_dead_lettered_gap() {
    let topic = "expiring";
    let (_cluster, bootstrap) = mock_one_partition(topic);
    produce_one_per_batch(&bootstrap, topic, "none", &batch("s", 0..10, 1));

    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("auditlake.log");
    let config = write_config(dir.path(), &bootstrap, topic, "gappy", "max_age_secs = 1");
    let first = Daemon::start(&config, &log);
    wait_until("offset 10 committed", Duration::from_secs(60), || {
        committed0(&bootstrap, "gappy", topic) == 10
    });
    first.stop();

    // While it is down: 30 messages of ~300 KB, more than the partition keeps.
    let big: Vec<(i32, String)> = (10..40)
        .map(|n| (0, big_cloudaudit(&format!("b-{n}"), n, 300_000)))
        .collect();
    produce_one_per_batch(&bootstrap, topic, "none", &big);
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("consumer");
    let (log_start, high) = probe
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    assert!(
        log_start > 10 && high == 40,
        "retention dropped offsets 10.. : {log_start}..{high}"
    );
    let (first_missing, last_missing) = (10, log_start - 1);

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let second = Daemon::start_with(&config, &log, &["--metrics-listen", &listen]);
    wait_until("every offset committed", Duration::from_secs(60), || {
        committed0(&bootstrap, "gappy", topic) == 40
    });
    let metrics = http_get(port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    second.stop();

    let series = format!(
        "auditlake_kafka_offsets_skipped_total{{pipeline=\"kafka-test\",topic=\"{topic}\",partition=\"0\"}}"
    );
    assert_eq!(
        metric(&metrics, &series),
        Some((log_start - 10) as f64),
        "{metrics}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let warning = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains("kafka offsets skipped"))
        .unwrap_or_else(|| panic!("no gap warning in\n{text}"));
    assert!(
        warning.contains(&format!(
            "offsets {first_missing}-{last_missing} were never delivered"
        )),
        "{warning}"
    );
    let dead = rows(
        &[&lake],
        "dead_letters",
        "origin_source, origin_partition, origin_position, reason, \
         json_extract(raw, '$.first_missing_offset')::bigint, json_extract(raw, '$.last_missing_offset')::bigint",
    );
    assert_eq!(dead.len(), 1, "one dead letter per gap: {dead:?}");
    let d = &dead[0];
    assert_eq!(
        (&d[0], &d[1], &d[2], &d[4], &d[5]),
        (
            &json!(topic),
            &json!(0),
            &json!(first_missing),
            &json!(first_missing),
            &json!(last_missing)
        )
    );
    let reason = d[3].as_str().unwrap_or("");
    assert!(
        reason.contains(&format!("offsets {first_missing}-{last_missing}"))
            && reason.contains("missing from the lake"),
        "{reason}"
    );
    // Everything the broker still had is in the lake, once.
    let kept = 10 + (40 - log_start);
    assert_eq!(counts(&[&lake]), (kept, kept));
}

// ---------------------------------------------------------------------------------------------
// librdkafka's mock cluster: faults

fn mock_config(bootstrap: &str, topic: &str, group: &str) -> KafkaConfig {
    toml::from_str(&format!(
        r#"
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
group_id = "{group}"
lag_report_secs = 1
[librdkafka]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"max.poll.interval.ms" = "10000"
"reconnect.backoff.max.ms" = "500"
"topic.metadata.refresh.interval.ms" = "1000"
"#
    ))
    .expect("config")
}

/// A consumer running on its own thread, writing its own lake.
struct Running {
    source: KafkaHandle,
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<auditlake::batch::Stats>,
}

fn start_consumer(cfg: &KafkaConfig, lake: &Path) -> Running {
    // The consumers' logs show in the output of a failing test.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let lake = LocalLake::open(lake, ParquetOptions::default()).expect("lake");
    let batcher = Batcher::new(
        lake,
        FlushPolicy {
            max_rows: 100,
            max_mib: 32,
            max_age_secs: 1,
        },
    );
    let settings = client_config(cfg, None).expect("settings");
    let source = KafkaSource::with_settings(&settings, &cfg.topic, batcher).expect("source");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let watch = source.handle();
    let handle = thread::spawn(move || source.run(&decode_context(), &flag).expect("consumer run"));
    Running {
        source: watch,
        stop,
        handle,
    }
}

impl Running {
    fn stop(self) -> auditlake::batch::Stats {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("consumer thread")
    }
}

fn batch(prefix: &str, range: std::ops::Range<usize>, partitions: i32) -> Vec<(i32, String)> {
    range
        .map(|n| {
            (
                (n % partitions as usize) as i32,
                cloudaudit(&format!("{prefix}-{n}"), n),
            )
        })
        .collect()
}

#[test]
fn mock_cluster_brokers_down_and_request_errors_lose_and_duplicate_nothing() {
    let cluster = MockCluster::new(3).expect("mock cluster");
    let topic = "faults";
    cluster.create_topic(topic, 4, 3).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, topic, "snappy", &batch("f", 0..1000, 4));

    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let cfg = mock_config(&bootstrap, topic, "faulty");
    let running = start_consumer(&cfg, &lake);
    wait_until("the first rows", Duration::from_secs(30), || {
        counts(&[&lake]).0 > 0
    });

    // Offset commits and fetches fail for a while; a broker goes away and comes back.
    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 4],
    );
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 3],
    );
    cluster.broker_down(2).expect("broker down");
    let during = {
        let bootstrap = bootstrap.clone();
        thread::spawn(move || produce(&bootstrap, topic, "lz4", &batch("f", 1000..1500, 4)))
    };
    thread::sleep(Duration::from_secs(3));
    cluster.broker_up(2).expect("broker up");
    during.join().expect("producer");
    produce(&bootstrap, topic, "lz4", &batch("f", 1500..2000, 4));

    wait_until("all 2000 events", Duration::from_secs(60), || {
        counts(&[&lake]).0 >= 2000
    });
    // Lag per partition (high watermark − position) drops to zero once everything is read.
    wait_until(
        "zero lag on every partition",
        Duration::from_secs(10),
        || {
            let lag = running.source.lag();
            lag.len() == 4 && lag.values().all(|l| l.lag == 0 && l.high_watermark > 0)
        },
    );
    let stats = running.stop();
    assert_eq!(counts(&[&lake]), (2000, 2000));
    assert_eq!(stats.events_written, 2000);
    let marks = high_watermarks(&bootstrap, topic, 4);
    assert_eq!(marks.iter().sum::<i64>(), 2000);
    assert_eq!(committed(&bootstrap, "faulty", topic, 4), marks);
}

#[test]
fn mock_cluster_consumers_joining_and_leaving_the_group_lose_and_duplicate_nothing() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let topic = "shared";
    cluster.create_topic(topic, 4, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, topic, "snappy", &batch("r", 0..1500, 4));

    let dir = tempfile::tempdir().expect("tempdir");
    let (lake_a, lake_b) = (dir.path().join("a"), dir.path().join("b"));
    let cfg = mock_config(&bootstrap, topic, "pair");
    let a = start_consumer(&cfg, &lake_a);
    wait_until(
        "consumer A to write and commit the first 1500",
        Duration::from_secs(30),
        || {
            counts(&[&lake_a]).0 == 1500
                && committed(&bootstrap, "pair", topic, 4) == high_watermarks(&bootstrap, topic, 4)
        },
    );

    // B joins: the partitions are split, and B resumes where A committed. (librdkafka's mock
    // broker refuses offset commits while a group rebalances, unlike Kafka, which accepts them
    // until the new assignment is being synced; so new messages wait for the split here.)
    let b = start_consumer(&cfg, &lake_b);
    wait_until(
        "the partitions to be split",
        Duration::from_secs(30),
        || {
            let (pa, pb) = (a.source.assigned(), b.source.assigned());
            !pa.is_empty() && !pb.is_empty() && pa.len() + pb.len() == 4
        },
    );
    produce(&bootstrap, topic, "lz4", &batch("r", 1500..3000, 4));
    wait_until(
        "3000 events across both lakes",
        Duration::from_secs(60),
        || counts(&[&lake_a, &lake_b]).0 >= 3000,
    );

    // A leaves while messages keep coming: it writes and commits what it read, then B takes
    // every partition over from there.
    let producer = {
        let bootstrap = bootstrap.clone();
        thread::spawn(move || {
            for chunk in 0..15 {
                let from = 3000 + chunk * 100;
                produce(&bootstrap, topic, "lz4", &batch("r", from..from + 100, 4));
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    thread::sleep(Duration::from_millis(500));
    let sa = a.stop();
    producer.join().expect("producer");
    wait_until(
        "all 4500 events across both lakes",
        Duration::from_secs(60),
        || counts(&[&lake_a, &lake_b]).0 >= 4500,
    );
    let sb = b.stop();
    assert_eq!(counts(&[&lake_a, &lake_b]), (4500, 4500));
    assert!(
        sa.events_written > 1500 && sb.events_written > 0,
        "both consumers wrote: {sa:?} {sb:?}"
    );
    let marks = high_watermarks(&bootstrap, topic, 4);
    assert_eq!(marks.iter().sum::<i64>(), 4500);
    assert_eq!(committed(&bootstrap, "pair", topic, 4), marks);
}

// ---------------------------------------------------------------------------------------------
// Measurement (not part of the suite): consume throughput and produce → committed-row latency.
//
//   cargo test --release --test kafka -- --ignored --nocapture measure
//
// AUDITLAKE_MEASURE_EVENTS sets the number of events (default 200000).

/// CPU seconds (user + system) a live process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0 // CLK_TCK is 100 on Linux
}

fn journal_len(lake: &Path) -> u64 {
    std::fs::metadata(lake.join("_auditlake/journal.jsonl"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Produces one event and returns the seconds until a row holding it is committed.
fn latency(tansu: &Tansu, topic: &str, lake: &Path, id: &str) -> f64 {
    let before = journal_len(lake);
    let started = Instant::now();
    produce(&tansu.bootstrap(), topic, "lz4", &[(0, cloudaudit(id, 1))]);
    loop {
        if journal_len(lake) != before {
            let found = rows(
                &[lake],
                "ciem_events",
                &format!("count(*) filter (where metadata_uid = '{id}')"),
            );
            if found.first().and_then(|r| r[0].as_i64()) == Some(1) {
                return started.elapsed().as_secs_f64();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "no row for {id}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore]
fn measure_consume_throughput_and_latency() {
    let n: i64 = std::env::var("AUDITLAKE_MEASURE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let tansu = Tansu::start();
    let topic = "bench";
    tansu.create_topic(topic, 3);
    let msgs: Vec<(i32, String)> = (0..n as usize)
        .map(|i| ((i % 3) as i32, cloudaudit(&format!("b-{i}"), i)))
        .collect();
    let bytes: usize = msgs.iter().map(|(_, m)| m.len()).sum();
    let t = Instant::now();
    produce(&tansu.bootstrap(), topic, "lz4", &msgs);
    println!(
        "produced {n} events ({:.1} MB JSON, LZ4) in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // Throughput: the default flush policy except a 1 s age limit, so the tail is not waited for.
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(
        dir.path(),
        &tansu.bootstrap(),
        topic,
        "bench",
        "max_age_secs = 1",
    );
    let started = Instant::now();
    let daemon = Daemon::start(&config, &dir.path().join("auditlake.log"));
    let pid = daemon.child.id();
    let mut last_len = 0;
    loop {
        let len = journal_len(&lake);
        if len != last_len {
            last_len = len;
            if counts(&[&lake]).0 >= n {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(600), "too slow");
        thread::sleep(Duration::from_millis(50));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid);
    println!(
        "consumed and committed {n} events in {wall:.2} s wall = {:.0} events/s; auditlake used {cpu:.2} CPU s = {:.0} events/s per core",
        n as f64 / wall,
        n as f64 / cpu
    );
    let l1: Vec<f64> = (0..3)
        .map(|i| latency(&tansu, topic, &lake, &format!("lat1-{i}")))
        .collect();
    println!("latency produce → committed row, max_age_secs = 1: {l1:.2?} s");
    daemon.stop();

    // Latency at the default policy (max_age_secs = 60, a quiet topic).
    let config = write_config(dir.path(), &tansu.bootstrap(), topic, "bench", "");
    let daemon = Daemon::start(&config, &dir.path().join("auditlake.log"));
    thread::sleep(Duration::from_secs(5)); // joined the group
    let l60 = latency(&tansu, topic, &lake, "lat60-0");
    println!("latency produce → committed row, default policy (max_age_secs = 60): {l60:.2} s");
    daemon.stop();
}
