//! Scale-out: two `auditlake run` processes share the work through the engines themselves —
//! one SQS queue (moto), one Kafka consumer group (tansu) — writing to one lake directory, each
//! under its own `[sink] instance`. Every event lands once, also when one process is killed
//! with SIGKILL mid-stream and started again (SQS). The Kafka test does not kill: tansu keeps a
//! SIGKILLed member in the group, holding its partitions, when it rejoins quickly under load
//! (`tests/kafka.rs` covers SIGKILL of a single consumer). Partitions handed over between
//! the processes resume from committed offsets, so the Kafka test produces one message per
//! record batch (tansu skips the rest of a batch a fetch starts inside).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::moto::{Aws, Daemon, Moto, trail_key};
use common::tansu::{self, Tansu};
use common::*;

/// (count(*), count(distinct metadata_uid)) of the lake's events, as DuckDB reads them.
fn counts(lake: &Path) -> (i64, i64) {
    if parquet_files(&lake.join("ciem_events")).is_empty() {
        return (0, 0);
    }
    duckdb(&format!(
        "select count(*), count(distinct metadata_uid) from {}",
        dataset(lake, "ciem_events")
    ))
    .first()
    .map(|r| (r[0].as_i64().unwrap_or(-1), r[1].as_i64().unwrap_or(-1)))
    .unwrap_or((-1, -1))
}

/// Event files written by each instance.
fn files_of(lake: &Path, instance: &str) -> usize {
    parquet_files(&lake.join("ciem_events"))
        .iter()
        .filter(|f| f.contains(&format!("/part-{instance}-")))
        .count()
}

fn commits(lake: &Path, instance: &str) -> usize {
    std::fs::read_to_string(lake.join(format!("_auditlake/journal-{instance}.jsonl")))
        .unwrap_or_default()
        .matches("\"op\":\"commit\"")
        .count()
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// One config per process: identical but for `instance`.
fn configs(dir: &Path, body: &str) -> (PathBuf, PathBuf, PathBuf) {
    let lake = dir.join("lake");
    let mut paths = Vec::new();
    for instance in ["a", "b"] {
        let path = dir.join(format!("{instance}.toml"));
        let text = body
            .replace("@LAKE@", &lake.display().to_string())
            .replace("@INSTANCE@", instance);
        std::fs::write(&path, text).expect("write config");
        paths.push(path);
    }
    let b = paths.pop().expect("b");
    let a = paths.pop().expect("a");
    (lake, a, b)
}

// ---------------------------------------------------------------------------------------------
// SQS: one queue

#[test]
fn two_processes_on_one_queue_one_killed_mid_stream_write_every_event_once() {
    const OBJECTS: usize = 30;
    const PER_OBJECT: usize = 200;
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let queue = aws.trail("shared", 10);
    for o in 0..OBJECTS {
        aws.put(
            "trail",
            &trail_key(&o.to_string()),
            cloudtrail_file(&format!("obj{o}"), PER_OBJECT, 0),
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let body = format!(
        r#"name = "sqs-scale"
[source]
type = "sqs_s3"
queue_url = "{queue}"
region = "us-east-1"
endpoint_url = "{endpoint}"
wait_time_secs = 1
visibility_timeout_secs = 8
max_objects_in_flight = 2
[sink]
path = "@LAKE@"
instance = "@INSTANCE@"
[flush]
max_rows = 500
max_age_secs = 1
"#,
        endpoint = moto.endpoint
    );
    let (lake, config_a, config_b) = configs(dir.path(), &body);
    let log_a = dir.path().join("a.log");
    let a = Daemon::start(&config_a, &log_a);
    let mut b = Daemon::start(&config_b, &dir.path().join("b.log"));
    // `a` dies mid-stream, without finishing its batch or deleting its messages: they come
    // back after the visibility timeout and `b` (or `a` again) honours what `a` committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while commits(&lake, "a") < 2 {
        b.assert_running();
        assert!(Instant::now() < deadline, "a did not commit:\n{}", b.log());
        thread::sleep(Duration::from_millis(20));
    }
    a.sigkill();
    let total = (OBJECTS * PER_OBJECT) as i64;
    assert!(counts(&lake).1 < total, "killed mid-stream");
    thread::sleep(Duration::from_secs(2));
    // Started again under its name, `a` first removes the files of the batch it was writing.
    let mut a = Daemon::start(&config_a, &log_a);
    let deadline = Instant::now() + Duration::from_secs(90);
    while aws.counts(&queue) != (0, 0) {
        a.assert_running();
        b.assert_running();
        assert!(
            Instant::now() < deadline,
            "queue not drained: {:?}\n{}\n{}",
            aws.counts(&queue),
            a.log(),
            b.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
    a.terminate();
    b.terminate();
    assert_eq!(counts(&lake), (total, total), "every event once");
    assert!(
        files_of(&lake, "a") > 0 && files_of(&lake, "b") > 0,
        "both processes took a share of the queue"
    );
}

// ---------------------------------------------------------------------------------------------
// Kafka: one consumer group

#[test]
fn two_processes_in_one_consumer_group_write_every_event_once() {
    const PARTITIONS: i32 = 4;
    const CHUNKS: usize = 40;
    const PER_CHUNK: usize = 100;
    let tansu = Tansu::start();
    let topic = "scale";
    tansu.create_topic(topic, PARTITIONS);
    let dir = tempfile::tempdir().expect("tempdir");
    let body = format!(
        r#"name = "kafka-scale"
[source]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
group_id = "scale"
start_position = "earliest"
[source.librdkafka]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"max.poll.interval.ms" = "10000"
"topic.metadata.refresh.interval.ms" = "1000"
[sink]
path = "@LAKE@"
instance = "@INSTANCE@"
[flush]
max_rows = 150
max_age_secs = 1
"#,
        bootstrap = tansu.bootstrap()
    );
    let (lake, config_a, config_b) = configs(dir.path(), &body);
    let log_a = dir.path().join("a.log");
    let mut a = Daemon::start(&config_a, &log_a);
    let mut b = Daemon::start(&config_b, &dir.path().join("b.log"));

    let producer = tansu::spawn_cloudaudit_producer(
        tansu.bootstrap(),
        topic,
        PARTITIONS,
        (CHUNKS, PER_CHUNK),
        Duration::from_millis(100),
    );

    // Both take partitions and commit.
    wait_until("both processes to commit", Duration::from_secs(60), || {
        a.assert_running();
        b.assert_running();
        commits(&lake, "a") >= 2 && commits(&lake, "b") >= 2
    });
    let total = (CHUNKS * PER_CHUNK) as i64;
    producer.join().expect("producer");
    let deadline = Instant::now() + Duration::from_secs(90);
    while counts(&lake).1 < total {
        a.assert_running();
        b.assert_running();
        assert!(
            Instant::now() < deadline,
            "not every event: {:?} of {total}\n--- a:\n{}\n--- b:\n{}",
            counts(&lake),
            a.log(),
            b.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
    // Let the last batches settle, then stop both.
    thread::sleep(Duration::from_secs(2));
    a.terminate();
    b.terminate();
    assert_eq!(counts(&lake), (total, total), "every event once");
    assert!(files_of(&lake, "a") > 0 && files_of(&lake, "b") > 0);
    // The dedup query of docs/lake.md (for lakes where a duplicate can occur) keeps every event.
    let deduped = scalar(&format!(
        "select count(*) from (select * from {} qualify row_number() over (partition by cloud_provider, metadata_uid) = 1)",
        dataset(&lake, "ciem_events")
    ));
    assert_eq!(deduped.as_i64(), Some(total));
}

#[test]
fn a_second_process_cannot_take_an_instance_name_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).expect("inbox");
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\ntype = \"files\"\npath = \"{}\"\n[sink]\npath = \"{}\"\ninstance = \"same\"\n",
            inbox.display(),
            dir.path().join("lake").display()
        ),
    )
    .expect("config");
    let mut first = Daemon::start(&config, &dir.path().join("first.log"));
    wait_until(
        "the first process to hold its journal",
        Duration::from_secs(30),
        || {
            first.assert_running();
            dir.path()
                .join("lake/_auditlake/journal-same.jsonl")
                .exists()
        },
    );
    let second = Command::new(bin())
        .args(["run", "--config", config.to_str().expect("path")])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "second process must fail: {stderr}"
    );
    assert!(
        stderr.contains("instance \"same\"") && stderr.contains("[sink] instance"),
        "the error says what to do: {stderr}"
    );
    first.terminate();
}
