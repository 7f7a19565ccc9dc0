//! Two hosts, no shared disk: two `auditlake run` processes, each with its own state
//! directories, write one lake of Iceberg tables — one PostgreSQL catalog (a private cluster),
//! one object store (moto's S3) — sharing one SQS queue (moto) and one Kafka consumer group
//! (tansu). One process is killed with SIGKILL mid-stream and started again after its Kafka
//! partitions and its SQS messages moved to the other. Then every event sent is in the table
//! once, every file the table references is in S3, and both hosts took a share.
//!
//! A host that still held a batch when its input moved (a partition handed over before its
//! revoke finished, a message redelivered while the first host still read it) has that batch
//! refused by the catalog and reads the input again: the log says "committed by another
//! writer", and the test counts those. On failure the test keeps its directory (both hosts'
//! logs and state) and prints the duplicated event ids.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::moto::{Aws, Daemon, Moto, trail_key};
use common::postgres::Postgres;
use common::tansu::{self, Tansu};
use common::*;
use serde_json::Value;

/// `commit` lines in the journals of a state directory (its writer's name is its own).
fn commits(state: &Path) -> usize {
    std::fs::read_dir(state.join("_auditlake"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("journal"))
                .map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .matches("\"op\":\"commit\"")
                        .count()
                })
                .sum()
        })
        .unwrap_or(0)
}

/// What pyiceberg reads of `ciem_events` through the PostgreSQL catalog, from S3:
/// [rows, distinct event ids, data files, data files outside the lake's bucket].
fn table_counts(pg_uri: &str, endpoint: &str) -> Value {
    let script = format!(
        r#"import json
from pyiceberg.catalog.sql import SqlCatalog
cat = SqlCatalog('auditlake', **{{'uri': '{uri}', 'warehouse': 's3://lake/lake/iceberg',
    's3.endpoint': '{endpoint}', 's3.access-key-id': 'testing', 's3.secret-access-key': 'testing',
    's3.region': 'us-east-1'}})
t = cat.load_table('auditlake.ciem_events')
ids = t.scan(selected_fields=('metadata_uid',)).to_arrow().column('metadata_uid').to_pylist()
files = [task.file.file_path for task in t.scan().plan_files()]
from collections import Counter
dups = sorted(i for i, c in Counter(ids).items() if c > 1)
print(json.dumps([len(ids), len(set(ids)), len(files), [f for f in files if not f.startswith('s3://lake/lake/')], dups[:3] + dups[-3:]]))
"#,
        uri = pg_uri.replace("postgres://", "postgresql+psycopg2://"),
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .expect("python");
    serde_json::from_slice::<Value>(&out.stdout).unwrap_or_else(|_| {
        Value::String(
            String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(2000)
                .collect(),
        )
    })
}

/// One host: a directory of two pipelines (SQS, Kafka), each with its own state directory
/// under the host's, writing the shared tables.
fn host(dir: &Path, name: &str, sqs: &str, kafka: &str, lake: &str) -> (PathBuf, PathBuf, PathBuf) {
    let pipelines = dir.join(name).join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("mkdir");
    let state_sqs = dir.join(name).join("state-sqs");
    let state_kafka = dir.join(name).join("state-kafka");
    for (file, source, state) in [("sqs", sqs, &state_sqs), ("kafka", kafka, &state_kafka)] {
        std::fs::write(
            pipelines.join(format!("{file}.toml")),
            format!(
                "name = \"{file}\"\n{source}\n[sink]\npath = \"{}\"\n{lake}\n[flush]\nmax_rows = 150\nmax_age_secs = 1\n",
                state.display()
            ),
        )
        .expect("write config");
    }
    (pipelines, state_sqs, state_kafka)
}

#[test]
fn two_hosts_without_shared_disk_one_killed_write_every_event_once() {
    const OBJECTS: usize = 120;
    const PER_OBJECT: usize = 40;
    const PARTITIONS: i32 = 4;
    const CHUNKS: usize = 30;
    const PER_CHUNK: usize = 60;
    // Objects sent at the end that repeat the events of earlier ones (the same event ids in
    // other objects, as CloudTrail may deliver): within the dedup horizon, so the event keys
    // committed with the originals — by either host, shared through the catalog and the
    // bucket — make them duplicates.
    const REPEATS: usize = 6;
    let time = iso_ago(3600);
    let object = |o: usize| {
        let ids: Vec<String> = (0..PER_OBJECT).map(|i| format!("obj{o}-{i}")).collect();
        cloudtrail_file_at(&ids, &time)
    };
    let pg = Postgres::start();
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let tansu = Tansu::start();

    aws.bucket("lake");
    let queue = aws.trail("hosts", 10);
    // Half of the objects now; the other half just before `a` is killed, so that it dies
    // mid-stream however fast the two hosts drain the first half.
    let put_objects = |objects: std::ops::Range<usize>| {
        for o in objects {
            aws.put("trail", &trail_key(&o.to_string()), object(o));
        }
    };
    put_objects(0..OBJECTS / 2);
    let topic = "hosts";
    tansu.create_topic(topic, PARTITIONS);

    let dir = tempfile::tempdir().expect("tempdir");
    let sqs = format!(
        "[source]\ntype = \"sqs_s3\"\nqueue_url = \"{queue}\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nwait_time_secs = 1\nvisibility_timeout_secs = 10\nmax_objects_in_flight = 1",
        moto.endpoint
    );
    let kafka = format!(
        r#"[source]
type = "kafka"
bootstrap_servers = "{}"
topic = "{topic}"
group_id = "hosts"
start_position = "earliest"
[source.librdkafka]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"max.poll.interval.ms" = "10000"
"topic.metadata.refresh.interval.ms" = "1000""#,
        tansu.bootstrap()
    );
    // The lake: format, catalog, object store. Nothing else is shared.
    let lake = format!(
        "format = \"iceberg\"\n[sink.s3]\nbucket = \"lake\"\nprefix = \"lake\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[sink.iceberg]\ncatalog_uri = \"{}\"",
        moto.endpoint,
        pg.uri()
    );
    let (config_a, a_sqs, a_kafka) = host(dir.path(), "a", &sqs, &kafka, &lake);
    let (config_b, b_sqs, b_kafka) = host(dir.path(), "b", &sqs, &kafka, &lake);
    let log_a = dir.path().join("a.log");
    let log_b = dir.path().join("b.log");
    let log = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    // `a` starts alone: it holds every partition and takes messages.
    let mut a = Daemon::start(&config_a, &log_a);

    let producer = tansu::spawn_cloudaudit_producer(
        tansu.bootstrap(),
        topic,
        PARTITIONS,
        (CHUNKS, PER_CHUNK),
        Duration::from_millis(300),
    );
    let wait = |what: &str, a: &mut Daemon, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !cond() {
            a.assert_running();
            assert!(
                Instant::now() < deadline,
                "{what}:\n--- a:\n{}\n--- b:\n{}",
                log(&log_a),
                log(&log_b)
            );
            thread::sleep(Duration::from_millis(20));
        }
    };
    wait("a commits from the queue", &mut a, &|| commits(&a_sqs) >= 1);
    // `b` joins: the group's partitions are shared out (`a` commits what it read of the
    // ones it gives up), and both take messages from the queue.
    let mut b = Daemon::start(&config_b, &log_b);
    wait("both commit", &mut a, &|| {
        commits(&a_kafka) >= 1 && commits(&b_sqs) + commits(&b_kafka) >= 1
    });
    // `a` dies mid-stream, holding messages (and perhaps a batch) it has not finished.
    put_objects(OBJECTS / 2..OBJECTS);
    b.assert_running();
    a.sigkill();
    assert_ne!(
        aws.counts(&queue),
        (0, 0),
        "killed with messages in the queue"
    );
    let total = (OBJECTS * PER_OBJECT + CHUNKS * PER_CHUNK) as u64;
    let at_kill = table_counts(&pg.uri(), &moto.endpoint);
    assert!(
        at_kill[1].as_u64().unwrap_or(0) < total,
        "killed mid-stream: {at_kill}"
    );
    // Longer than the Kafka session and the SQS visibility timeout: `b` takes over what `a`
    // held, resuming from what the table holds.
    thread::sleep(Duration::from_secs(11));
    let mut a = Daemon::start(&config_a, &log_a);
    producer.join().expect("producer");

    let deadline = Instant::now() + Duration::from_secs(180);
    let mut seen = table_counts(&pg.uri(), &moto.endpoint);
    while seen[0].as_u64() != Some(total) {
        a.assert_running();
        b.assert_running();
        assert!(
            Instant::now() < deadline,
            "not every event: {seen} of {total}\n--- a:\n{}\n--- b:\n{}",
            log(&log_a),
            log(&log_b)
        );
        thread::sleep(Duration::from_millis(500));
        seen = table_counts(&pg.uri(), &moto.endpoint);
    }
    // The repeats, once every original is in the table.
    for r in 0..REPEATS {
        aws.put("trail", &trail_key(&format!("repeat{r}")), object(r * 7));
    }
    let repeats_read = |text: &str| {
        text.lines()
            .filter(|l| {
                l.contains("input finished")
                    && l.contains("_repeat")
                    && l.contains(&format!("\"duplicates\":{PER_OBJECT}"))
            })
            .count()
    };
    wait("the repeats are read", &mut a, &|| {
        repeats_read(&log(&log_a)) + repeats_read(&log(&log_b)) >= REPEATS
            && aws.counts(&queue) == (0, 0)
    });
    // A duplicate would show up now.
    thread::sleep(Duration::from_secs(3));
    let log_a_text = a.terminate();
    let log_b_text = b.terminate();
    let seen = table_counts(&pg.uri(), &moto.endpoint);
    eprintln!(
        "rows, distinct, files, files outside the bucket: {seen}; commits a {}+{}, b {}+{}; inputs skipped as already in the lake: a {}, b {}; unfinished files removed: {}; batches refused (input committed by the other host): a {}, b {}",
        commits(&a_sqs),
        commits(&a_kafka),
        commits(&b_sqs),
        commits(&b_kafka),
        log_a_text.matches("already in the lake").count(),
        log_b_text.matches("already in the lake").count(),
        log_a_text
            .matches("removed file of an unfinished batch")
            .count(),
        log_a_text.matches("committed by another writer").count(),
        log_b_text.matches("committed by another writer").count(),
    );
    for line in log_a_text.lines().chain(log_b_text.lines()) {
        if line.contains("committed by another writer") {
            eprintln!("refused: {line}");
        }
    }
    if seen[0].as_u64() != Some(total) {
        let kept = dir.keep();
        panic!("rows: {seen}; logs kept in {}", kept.display());
    }
    assert_eq!(seen[1].as_u64(), Some(total), "distinct event ids");
    assert_eq!(seen[3], Value::Array(Vec::new()), "every file in S3");
    assert_eq!(aws.counts(&queue), (0, 0), "every message deleted");
    for (what, state) in [
        ("a sqs", &a_sqs),
        ("a kafka", &a_kafka),
        ("b sqs", &b_sqs),
        ("b kafka", &b_kafka),
    ] {
        assert!(commits(state) > 0, "{what} committed batches");
        // The state directories hold no data: the tables' files are in the bucket only.
        assert!(
            parquet_files(&state.join("ciem_events")).is_empty(),
            "{what}: no Parquet file left in the state directory"
        );
    }
}
