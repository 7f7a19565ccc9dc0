//! `auditlake run` with the `sqs_s3` source against moto's real S3 + SQS HTTP server: bucket
//! notifications, SNS and EventBridge bodies, poison objects, visibility extension, and crash
//! safety (SIGKILL mid-stream, restart, every event exactly once).
//!
//! moto is started by each test on a free loopback port and killed (by PID) when the test ends.
//! Its server is `$AUDITLAKE_MOTO_SERVER`, else `.venv/bin/moto_server` (`tests/run.sh` installs it).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::moto::*;
use common::*;
use serde_json::{Value, json};

struct Setup {
    dir: tempfile::TempDir,
    lake: PathBuf,
    config: PathBuf,
}

impl Setup {
    /// Points the pipeline at `proxy` instead of moto (a copy of the config, `via-proxy.toml`).
    fn route_through(&mut self, moto: &Moto, proxy: &str) {
        let text = std::fs::read_to_string(&self.config)
            .expect("config")
            .replace(
                &format!("endpoint_url = \"{}\"", moto.endpoint),
                &format!("endpoint_url = \"{proxy}\""),
            );
        self.config = self.dir.path().join("via-proxy.toml");
        std::fs::write(&self.config, text).expect("config");
    }
}

fn setup(moto: &Moto, queue_url: &str, extra_source: &str, flush: &str) -> Setup {
    setup_with_sink(moto, queue_url, extra_source, flush, "")
}

fn setup_with_sink(
    moto: &Moto,
    queue_url: &str,
    extra_source: &str,
    flush: &str,
    extra_sink: &str,
) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = dir.path().join("pipeline.toml");
    let text = format!(
        r#"name = "sqs-test"
[source]
type = "sqs_s3"
queue_url = "{queue_url}"
region = "us-east-1"
endpoint_url = "{endpoint}"
wait_time_secs = 1
{extra_source}
[sink]
path = "{lake}"
{extra_sink}
[flush]
{flush}
"#,
        endpoint = moto.endpoint,
        lake = lake.display()
    );
    std::fs::File::create(&config)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write config");
    Setup { dir, lake, config }
}

/// Waits until the queue holds no message at all (every one deleted).
fn wait_until_drained(aws: &Aws, queue_url: &str, daemon: &mut Daemon, limit: Duration) {
    let deadline = Instant::now() + limit;
    // moto's approximate counts can read (0, 0) for a moment while a message's visibility
    // timeout runs out; drained means empty for longer than the tests' visibility timeouts.
    let mut empty_since: Option<Instant> = None;
    loop {
        daemon.assert_running();
        if aws.counts(queue_url) == (0, 0) {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(4) {
                return;
            }
        } else {
            empty_since = None;
        }
        assert!(
            Instant::now() < deadline,
            "queue not drained: {:?}; log:\n{}",
            aws.counts(queue_url),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn count(lake: &Path, dataset_name: &str) -> i64 {
    if parquet_files(&lake.join(dataset_name)).is_empty() {
        return 0;
    }
    scalar(&format!(
        "select count(*) from {}",
        dataset(lake, dataset_name)
    ))
    .as_i64()
    .unwrap_or(-1)
}

/// The fields of the daemon's final "sqs_s3 source stopped" log line.
fn final_stats(log: &str) -> Value {
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "sqs_s3 source stopped")
        .map(|v| v["fields"].clone())
        .unwrap_or_else(|| panic!("no final statistics in the log:\n{log}"))
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("samples/aws-cloudtrail").join(name)).expect("sample")
}

const SECRETS_SAMPLE: &str = "aws.credential-access.secretsmanager-retrieve-secrets.json"; // 10 events
const TRAIL_SAMPLE: &str = "aws.defense-evasion.cloudtrail-delete.json"; // 1 event
const EBS_SAMPLE: &str = "aws.exfiltration.ec2-share-ebs-snapshot.json"; // 1 event
const DAMAGED_SAMPLE: &str = "aws.execution.ec2-user-data.json"; // 1 event, then damaged

#[test]
fn notifications_from_a_trail_bucket_land_in_the_lake_and_every_message_is_deleted() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let queue = aws.queue("trail-queue", 30);
    aws.bucket("trail-bucket");
    aws.notify("trail-bucket", &queue); // S3 sends its s3:TestEvent now
    let keys = [
        (
            "AWSLogs/111122223333/CloudTrail/us-east-1/2022/07/20/111122223333_CloudTrail_us-east-1_20220720T2100Z_with space.json.gz",
            SECRETS_SAMPLE,
        ),
        (
            "AWSLogs/o-abc123def4/111122223333/CloudTrail/us-east-1/2022/07/20/111122223333_CloudTrail_us-east-1_20220720T2055Z_a+b.json.gz",
            TRAIL_SAMPLE,
        ),
        (
            "trails/AWSLogs/111122223333/CloudTrail/eu-west-1/2022/07/20/111122223333_CloudTrail_eu-west-1_20220720T2055Z_50%25 off.json.gz",
            EBS_SAMPLE,
        ),
    ];
    for (key, name) in keys {
        aws.put("trail-bucket", key, gzip(&sample(name)));
    }
    aws.put(
        "trail-bucket",
        "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2022/07/20/111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20220720T210000Z.json.gz",
        gzip(&std::fs::read(fixtures().join("variants/digest.json")).expect("digest")),
    );
    aws.put("trail-bucket", "notes/readme.txt", b"not a log".to_vec());
    // An empty log file: nothing to write, but its message must still be deleted.
    aws.put(
        "trail-bucket",
        "AWSLogs/111122223333/CloudTrail/us-east-1/2022/07/20/111122223333_CloudTrail_us-east-1_20220720T2105Z_empty.json.gz",
        gzip(b""),
    );

    let s = setup(&moto, &queue, "", "max_age_secs = 1");
    let mut daemon = Daemon::start(&s.config, &s.dir.path().join("daemon.log"));
    wait_until_drained(&aws, &queue, &mut daemon, Duration::from_secs(60));
    let log = daemon.terminate();

    let events = dataset(&s.lake, "ciem_events");
    assert_eq!(count(&s.lake, "ciem_events"), 12, "{log}");
    assert_eq!(
        scalar(&format!(
            "select count(distinct metadata_uid) from {events}"
        )),
        json!(12)
    );
    let sources: BTreeSet<String> = duckdb(&format!(
        "select distinct origin_source from {events} order by 1"
    ))
    .into_iter()
    .filter_map(|r| r[0].as_str().map(str::to_string))
    .collect();
    let expected: BTreeSet<String> = keys
        .iter()
        .map(|(k, _)| format!("s3://trail-bucket/{k}"))
        .collect();
    assert_eq!(sources, expected, "keys must be URL-decoded exactly");
    assert_eq!(
        scalar(&format!(
            "select count(*) from {events} where origin_source like '%with space%' and action like 'secretsmanager:%'"
        )),
        json!(10)
    );
    assert_eq!(count(&s.lake, "dead_letters"), 0, "{log}");
    assert_eq!(aws.counts(&queue), (0, 0), "every message deleted");
    let stats = final_stats(&log);
    assert_eq!(stats["test_events"], json!(1), "{stats}");
    assert_eq!(stats["digests_skipped"], json!(1), "{stats}");
    assert_eq!(stats["keys_skipped"], json!(1), "{stats}");
    assert_eq!(stats["objects"], json!(4), "{stats}");
    assert_eq!(stats["deleted"], json!(7), "{stats}");
    assert_eq!(stats["left_on_queue"], json!(0), "{stats}");
    // The log says which objects were read, and each commit names the objects it covers.
    for what in ["input taken", "input finished", "batch committed"] {
        assert!(
            log.lines()
                .any(|l| l.contains(what) && l.contains("s3://trail-bucket/AWSLogs/111122223333/")),
            "{what}: {log}"
        );
    }
}

#[test]
fn sns_wrapped_and_eventbridge_bodies_are_understood() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let queue = aws.queue("mixed", 30);
    aws.bucket("mixed-bucket");
    let k1 = "AWSLogs/111122223333/CloudTrail/us-east-1/2022/07/20/one+plus.json.gz";
    let k2 = "AWSLogs/111122223333/CloudTrail/us-east-1/2022/07/20/two space.json.gz";
    aws.put("mixed-bucket", k1, gzip(&sample(SECRETS_SAMPLE)));
    aws.put("mixed-bucket", k2, gzip(&sample(TRAIL_SAMPLE)));
    let s3_body = json!({"Records": [
        {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
         "s3": {"bucket": {"name": "mixed-bucket"}, "object": {"key": k1.replace('+', "%2B"), "eTag": "e1", "sequencer": "01"}}},
        {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete",
         "s3": {"bucket": {"name": "mixed-bucket"}, "object": {"key": "gone.json.gz"}}}
    ]})
    .to_string();
    let sns = json!({"Type": "Notification", "MessageId": "m1", "TopicArn": "arn:aws:sns:us-east-1:111122223333:trail",
                     "Message": s3_body})
    .to_string();
    aws.send(&queue, &sns);
    aws.send(&queue, &sns); // a repeated notification: read once, both deleted
    let eventbridge = json!({"version": "0", "id": "x", "detail-type": "Object Created", "source": "aws.s3",
        "account": "111122223333", "region": "us-east-1",
        "detail": {"version": "0", "bucket": {"name": "mixed-bucket"},
                   "object": {"key": k2, "size": 100, "etag": "e2", "sequencer": "02"}, "reason": "PutObject"}})
    .to_string();
    aws.send(&queue, &eventbridge);
    let deleted = json!({"detail-type": "Object Deleted", "source": "aws.s3", "detail": {"bucket": {"name": "mixed-bucket"}}})
        .to_string();
    aws.send(&queue, &deleted);

    let s = setup(&moto, &queue, "", "max_age_secs = 1");
    let mut daemon = Daemon::start(&s.config, &s.dir.path().join("daemon.log"));
    wait_until_drained(&aws, &queue, &mut daemon, Duration::from_secs(60));
    let log = daemon.terminate();
    assert_eq!(count(&s.lake, "ciem_events"), 11, "{log}");
    let events = dataset(&s.lake, "ciem_events");
    assert_eq!(
        scalar(&format!(
            "select count(distinct origin_source) from {events}"
        )),
        json!(2)
    );
    assert_eq!(
        scalar(&format!(
            "select count(*) from {events} where origin_source = 's3://mixed-bucket/{k1}'"
        )),
        json!(10)
    );
    let stats = final_stats(&log);
    assert_eq!(stats["deleted"], json!(4), "{stats}");
    assert_eq!(stats["ignored_events"], json!(3), "{stats}");
}

#[test]
fn poison_messages_are_dead_lettered_after_n_receives_while_the_rest_flows() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let queue = aws.queue("poison", 2);
    aws.bucket("trail");
    aws.notify("trail", &queue);
    let prefix = "AWSLogs/111122223333/CloudTrail/us-east-1/2022/07/20";
    aws.put(
        "trail",
        &format!("{prefix}/corrupt.json.gz"),
        [
            &[0x1f, 0x8b, 0x08, 0x00][..],
            b"this is not deflate data at all",
        ]
        .concat(),
    );
    aws.put(
        "trail",
        &format!("{prefix}/good.json.gz"),
        gzip(&sample(SECRETS_SAMPLE)),
    );
    // Damaged after its first record: the good record is kept, the rest is a dead letter of
    // the usual kind, and the message is deleted at once (nothing to retry).
    aws.put(
        "trail",
        &format!("{prefix}/damaged.json.gz"),
        gzip(&sample(DAMAGED_SAMPLE)),
    );
    // A notification for an object that does not exist (deleted, or a wrong key).
    let missing = json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "trail"}, "object": {"key": format!("{prefix}/missing.json.gz"), "eTag": "m"}}}]})
    .to_string();
    aws.send(&queue, &missing);
    aws.send(&queue, "this body is not JSON");
    // One message naming a good object and a missing one: the good one is written once, though
    // the message comes back until the missing one is given up.
    aws.put(
        "trail",
        &format!("{prefix}/also-good.json.gz"),
        gzip(&sample(EBS_SAMPLE)),
    );
    let pair = json!({"Records": [
        {"eventName": "ObjectCreated:Put",
         "s3": {"bucket": {"name": "trail"}, "object": {"key": format!("{prefix}/also-good.json.gz"), "eTag": "g"}}},
        {"eventName": "ObjectCreated:Put",
         "s3": {"bucket": {"name": "trail"}, "object": {"key": format!("{prefix}/also-missing.json.gz"), "eTag": "m2"}}}]})
    .to_string();
    aws.send(&queue, &pair);

    let s = setup(
        &moto,
        &queue,
        "visibility_timeout_secs = 2\nmax_receive_count = 2",
        "max_age_secs = 1",
    );
    let started = Instant::now();
    let mut daemon = Daemon::start(&s.config, &s.dir.path().join("daemon.log"));
    wait_until_drained(&aws, &queue, &mut daemon, Duration::from_secs(60));
    let log = daemon.terminate();

    assert_eq!(count(&s.lake, "ciem_events"), 12, "{log}");
    let dead = dataset(&s.lake, "dead_letters");
    let rows = duckdb(&format!(
        "select origin_source, reason, raw from {dead} order by origin_source, reason"
    ));
    assert_eq!(rows.len(), 5, "{rows:?}\n{log}");
    let text = |r: &Vec<Value>, i: usize| r[i].as_str().unwrap_or("").to_string();
    let corrupt = rows
        .iter()
        .find(|r| text(r, 0).ends_with("corrupt.json.gz"))
        .expect("corrupt object dead-lettered");
    assert!(
        text(corrupt, 1).contains("received 2 times") && text(corrupt, 1).contains("unreadable"),
        "{corrupt:?}"
    );
    assert!(
        text(corrupt, 2).contains("corrupt.json.gz"),
        "raw is the message body"
    );
    let missing_row = rows
        .iter()
        .find(|r| text(r, 0).ends_with("missing.json.gz"))
        .expect("missing object dead-lettered");
    // The reason says what the user lost: the object's events are not in the lake.
    assert!(
        text(missing_row, 1).contains("NoSuchKey")
            && text(missing_row, 1).contains("events it held are missing from the lake"),
        "{missing_row:?}"
    );
    let bad_body = rows
        .iter()
        .find(|r| text(r, 0) == "sqs")
        .expect("bad body dead-lettered");
    assert!(text(bad_body, 1).contains("not JSON"), "{bad_body:?}");
    assert_eq!(text(bad_body, 2), "this body is not JSON");
    let damaged = rows
        .iter()
        .find(|r| text(r, 0).ends_with("damaged.json.gz"))
        .expect("damaged record dead-lettered");
    assert!(!text(damaged, 1).contains("received"), "{damaged:?}");
    // The good object did not wait for the poison ones to be given up.
    assert!(
        rows.iter()
            .any(|r| text(r, 0).ends_with("also-missing.json.gz")),
        "{rows:?}"
    );
    let stats = final_stats(&log);
    assert_eq!(stats["dead_lettered"], json!(4), "{stats}");
    assert!(
        stats["objects_already_in_lake"].as_u64() >= Some(1),
        "the redelivered message found its good object already in the lake: {stats}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_slow_object_stays_invisible_to_others_while_it_is_processed() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let queue = aws.queue("slow", 2);
    aws.bucket("trail");
    aws.notify("trail", &queue);
    let key = "AWSLogs/111122223333/CloudTrail/us-west-2/2024/06/01/slow.json.gz";
    let body = cloudtrail_file("slow", 3000, 0);
    let size = body.len();
    aws.put("trail", key, body);
    // The download trickles for several seconds, and then the rows wait up to 3 s for their
    // commit: together well over three visibility timeouts of 2 s. Without the heartbeat the
    // message would become visible, be redelivered and be read again meanwhile.
    let per_100ms = size / 50 + 1;
    let proxy = faulty_proxy(&moto.endpoint, "slow.json.gz", Fault::Slow { per_100ms }, 1);
    let mut s = setup(
        &moto,
        &queue,
        "visibility_timeout_secs = 2",
        "max_age_secs = 3",
    );
    s.route_through(&moto, &proxy);
    let started = Instant::now();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut daemon = Daemon::start_with(
        &bin(),
        &s.config,
        &s.dir.path().join("daemon.log"),
        &[("AUDITLAKE_METRICS_LISTEN", &listen)],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_in_flight = false;
    loop {
        daemon.assert_running();
        let (visible, in_flight) = aws.counts(&queue);
        seen_in_flight |= in_flight > 0;
        if seen_in_flight {
            assert_eq!(visible, 0, "the message became visible while in progress");
        }
        if (visible, in_flight) == (0, 0) {
            break;
        }
        assert!(Instant::now() < deadline, "queue not drained");
        std::thread::sleep(Duration::from_millis(250));
    }
    let took = started.elapsed();
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    let log = daemon.terminate();
    let series = |name: &str| metric(&metrics, &format!("{name}{{pipeline=\"sqs-test\"}}"));
    assert!(
        series("auditlake_sqs_visibility_extensions_total").is_some_and(|n| n >= 1.0),
        "the heartbeat extended the message's visibility:\n{metrics}"
    );
    assert_eq!(
        series("auditlake_input_bytes_total"),
        Some(size as f64),
        "the object's bytes were read once:\n{metrics}"
    );
    assert!(
        took > Duration::from_secs(6),
        "the object must be slow: {took:?}"
    );
    let reads = log
        .lines()
        .filter(|l| l.contains("reading object") && l.contains("slow.json.gz"))
        .count();
    assert_eq!(reads, 1, "the object is read once:\n{log}");
    // Two messages (S3's test event and the object's), each received once: no redelivery.
    assert_eq!(final_stats(&log)["messages"], json!(2), "{log}");
    assert_eq!(count(&s.lake, "ciem_events"), 3000);
}

#[test]
fn sigkill_mid_stream_and_restart_leaves_every_event_exactly_once() {
    const OBJECTS: usize = 40;
    const PER_OBJECT: usize = 250;
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let queue = aws.queue("crash", 3);
    aws.bucket("trail");
    aws.notify("trail", &queue);
    for o in 0..OBJECTS {
        aws.put(
            "trail",
            &format!(
                "AWSLogs/111122223333/CloudTrail/us-west-2/2024/06/01/111122223333_CloudTrail_us-west-2_20240601T12{:02}Z_{o}.json.gz",
                o % 60
            ),
            cloudtrail_file(&format!("obj{o}"), PER_OBJECT, 0),
        );
    }
    // Batches of 700 rows: commits land in the middle of objects, so a kill finds objects
    // partly committed.
    let s = setup(
        &moto,
        &queue,
        "visibility_timeout_secs = 3\nmax_objects_in_flight = 4",
        "max_rows = 700\nmax_age_secs = 1",
    );
    let log = s.dir.path().join("daemon.log");
    let journal = s.lake.join("_auditlake/journal.jsonl");
    let commits = || {
        std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .matches("\"op\":\"commit\"")
            .count()
    };
    // Kill 1: right after the first commits. Kill 2: some time into the second run.
    let mut daemon = Daemon::start(&s.config, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while commits() < 2 {
        daemon.assert_running();
        assert!(Instant::now() < deadline, "no commit:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.sigkill();
    let after_first = commits();
    let mut daemon = Daemon::start(&s.config, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while commits() < after_first + 3 {
        daemon.assert_running();
        assert!(Instant::now() < deadline, "no progress:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.sigkill();
    assert!(
        count(&s.lake, "ciem_events") < (OBJECTS * PER_OBJECT) as i64,
        "the kills must come mid-stream"
    );
    // A graceful stop mid-stream as well: exit 0, objects in progress finished or abandoned at a
    // committed position, unfinished messages handed back to the queue.
    let after_second = commits();
    let mut daemon = Daemon::start(&s.config, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while commits() < after_second + 2 {
        daemon.assert_running();
        assert!(Instant::now() < deadline, "no progress:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopping = Instant::now();
    daemon.terminate();
    assert!(
        stopping.elapsed() < Duration::from_secs(30),
        "SIGTERM stops promptly"
    );

    let mut daemon = Daemon::start(&s.config, &log);
    wait_until_drained(&aws, &queue, &mut daemon, Duration::from_secs(90));
    let log = daemon.terminate();
    let events = dataset(&s.lake, "ciem_events");
    let row = duckdb(&format!(
        "select count(*), count(distinct metadata_uid) from {events}"
    ));
    assert_eq!(
        row[0],
        vec![json!(OBJECTS * PER_OBJECT), json!(OBJECTS * PER_OBJECT)],
        "{log}"
    );
    assert_eq!(count(&s.lake, "dead_letters"), 0);
    assert_eq!(aws.counts(&queue), (0, 0));
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Throughput and latency through moto (the figures in docs/aws.md). Not part of the suite:
/// `cargo test --test sqs_s3 -- --ignored --nocapture throughput`; sizes from
/// AUDITLAKE_BENCH_OBJECTS / AUDITLAKE_BENCH_EVENTS (per object), or a corpus made by
/// `bench/gen_cloudtrail.py` in AUDITLAKE_BENCH_DIR; the daemon from AUDITLAKE_BENCH_BIN.
#[test]
#[ignore]
fn throughput() {
    let objects = env_usize("AUDITLAKE_BENCH_OBJECTS", 100);
    let per_object = env_usize("AUDITLAKE_BENCH_EVENTS", 1000);
    // AUDITLAKE_BENCH_BIN: measure another build (e.g. target/release/auditlake).
    let binary = std::env::var_os("AUDITLAKE_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(bin);
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let queue = aws.queue("bench", 60);
    aws.bucket("bench-trail");
    aws.notify("bench-trail", &queue);
    let prefix = "AWSLogs/111122223333/CloudTrail/us-west-2/2024/06/01";
    let mut gz_bytes = 0;
    // A corpus from bench/gen_cloudtrail.py (realistic records), or small synthetic files.
    let (objects, events) = match std::env::var_os("AUDITLAKE_BENCH_DIR").map(PathBuf::from) {
        Some(dir) => {
            let manifest: Value = serde_json::from_slice(
                &std::fs::read(dir.with_extension("manifest.json")).expect("corpus manifest"),
            )
            .expect("manifest json");
            let mut files = Vec::new();
            let mut stack = vec![dir.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).expect("read corpus").flatten() {
                    if e.path().is_dir() {
                        stack.push(e.path());
                    } else {
                        files.push(e.path());
                    }
                }
            }
            for f in &files {
                let body = std::fs::read(f).expect("read corpus file");
                gz_bytes += body.len();
                let key = f
                    .strip_prefix(&dir)
                    .expect("relative")
                    .display()
                    .to_string();
                aws.put("bench-trail", &key, body);
            }
            (
                files.len(),
                manifest["events"].as_u64().expect("events in manifest") as usize,
            )
        }
        None => {
            for o in 0..objects {
                let body = cloudtrail_file(&format!("bench{o}"), per_object, 0);
                gz_bytes += body.len();
                aws.put("bench-trail", &format!("{prefix}/f{o}.json.gz"), body);
            }
            (objects, objects * per_object)
        }
    };
    // Phase 1: everything is queued; time from start until every message is deleted.
    let s = setup(&moto, &queue, "", "max_age_secs = 1");
    let started = Instant::now();
    let mut daemon = Daemon::start_binary(&binary, &s.config, &s.dir.path().join("daemon.log"));
    wait_until_drained(&aws, &queue, &mut daemon, Duration::from_secs(1800));
    let secs = started.elapsed().as_secs_f64();
    let peak = daemon.peak_rss_mib();
    daemon.terminate();
    assert_eq!(count(&s.lake, "ciem_events"), events as i64);
    println!(
        "throughput: {objects} objects, {events} events, {:.1} MB gzip in {secs:.1} s (start to last delete): {:.0} events/s, {:.1} objects/s, peak RSS {peak:?} MiB",
        gz_bytes as f64 / 1e6,
        events as f64 / secs,
        objects as f64 / secs
    );
    if std::env::var_os("AUDITLAKE_BENCH_NO_LATENCY").is_some() {
        return;
    }
    // Phase 2: latency from upload to a committed row, default flush policy.
    let s = setup(&moto, &queue, "", "");
    let mut daemon = Daemon::start_binary(&binary, &s.config, &s.dir.path().join("daemon.log"));
    std::thread::sleep(Duration::from_secs(3));
    let uploaded = Instant::now();
    aws.put(
        "bench-trail",
        &format!("{prefix}/latency.json.gz"),
        cloudtrail_file("latency", 100, 0),
    );
    while parquet_files(&s.lake.join("ciem_events")).is_empty() {
        daemon.assert_running();
        assert!(uploaded.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "latency: upload to committed row {:.1} s with the default flush policy",
        uploaded.elapsed().as_secs_f64()
    );
    daemon.terminate();
}

impl Aws {
    /// Every object under `prefix`, downloaded into `dir` with the same relative paths.
    fn download_prefix(&self, bucket: &str, prefix: &str, dir: &Path) -> Vec<String> {
        let listed = self
            .rt
            .block_on(
                self.s3
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .send(),
            )
            .expect("list objects");
        let mut keys = Vec::new();
        for o in listed.contents() {
            let key = o.key().expect("key").to_string();
            let bytes = self
                .rt
                .block_on(async {
                    let out = self.s3.get_object().bucket(bucket).key(&key).send().await?;
                    Ok::<_, Box<dyn std::error::Error>>(out.body.collect().await?.into_bytes())
                })
                .expect("get object");
            let rel = key
                .strip_prefix(prefix)
                .expect("prefix")
                .trim_start_matches('/');
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &bytes).expect("write");
            keys.push(key);
        }
        keys
    }
}

#[test]
fn the_lake_can_be_published_to_s3() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let queue = aws.queue("to-s3", 30);
    aws.bucket("trail");
    aws.bucket("lake-bucket");
    aws.notify("trail", &queue);
    let prefix = "AWSLogs/111122223333/CloudTrail/us-east-1/2022/07/20";
    aws.put(
        "trail",
        &format!("{prefix}/a.json.gz"),
        gzip(&sample(SECRETS_SAMPLE)),
    );
    aws.put(
        "trail",
        &format!("{prefix}/b.json.gz"),
        gzip(&sample(DAMAGED_SAMPLE)),
    );
    let s = setup_with_sink(
        &moto,
        &queue,
        "",
        "max_age_secs = 1",
        &format!(
            "s3 = {{ bucket = \"lake-bucket\", prefix = \"lakes/ciem/\", region = \"us-east-1\", endpoint_url = \"{}\" }}",
            moto.endpoint
        ),
    );
    let mut daemon = Daemon::start(&s.config, &s.dir.path().join("daemon.log"));
    wait_until_drained(&aws, &queue, &mut daemon, Duration::from_secs(60));
    let log = daemon.terminate();

    let local = parquet_files(&s.lake);
    assert!(
        local.is_empty(),
        "staged files are removed once uploaded: {local:?}"
    );
    assert!(
        s.lake.join("_auditlake/journal.jsonl").exists(),
        "journal kept locally"
    );
    let copy = s.dir.path().join("copy");
    let keys = aws.download_prefix("lake-bucket", "lakes/ciem/", &copy);
    assert!(
        keys.iter().any(|k| k.starts_with(
            "lakes/ciem/ciem_events/provider=aws/account=677301038893/date=2022-07-20/part-"
        )),
        "{keys:?}\n{log}"
    );
    assert_eq!(count(&copy, "ciem_events"), 11, "{keys:?}");
    assert_eq!(count(&copy, "dead_letters"), 1, "{keys:?}");
}

#[test]
fn s3_copies_of_an_unfinished_batch_are_removed_on_restart() {
    use auditlake::event::DeadLetter;
    use auditlake::normalize::Stamp;
    use auditlake::sink::journal::Segment;
    use auditlake::sink::lake::{LocalLake, PendingBatch};
    use auditlake::sink::parquet::ParquetOptions;
    use auditlake::sink::s3::S3Remote;

    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.bucket("lake-bucket");
    let remote =
        || Box::new(S3Remote::with_client(aws.s3.clone(), "lake-bucket", "p", 5).expect("remote"));
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("state");
    let dead = DeadLetter::new(
        "t".into(),
        Stamp {
            source: "s".into(),
            partition: None,
            ingest_time_ms: 1_700_000_000_000,
        }
        .origin(0),
        "reason",
        b"raw",
        1024,
        1_700_000_000_000,
    );
    {
        let mut lake =
            LocalLake::open_with_remote(&root, ParquetOptions::default(), remote()).expect("open");
        let staged = lake
            .stage(PendingBatch {
                events: Default::default(),
                dead_letters: vec![dead],
                segments: vec![Segment {
                    unit: "u".to_string(),
                    from: 0,
                    to: 1,
                    complete: true,
                }],
                ..PendingBatch::default()
            })
            .expect("stage")
            .expect("a batch");
        drop(staged); // the process dies after `prepare`, having uploaded the file
    }
    let journal = std::fs::read_to_string(root.join("_auditlake/journal.jsonl")).expect("journal");
    let prepared: Value =
        serde_json::from_str(journal.lines().next().expect("line")).expect("json");
    let rel = prepared["files"][0].as_str().expect("file").to_string();
    aws.put("lake-bucket", &format!("p/{rel}"), b"partial".to_vec());
    let before = aws.download_prefix("lake-bucket", "p/", &dir.path().join("before"));
    assert_eq!(before.len(), 1);

    let lake =
        LocalLake::open_with_remote(&root, ParquetOptions::default(), remote()).expect("reopen");
    assert!(
        lake.unit("u").is_none(),
        "the unfinished batch is not recorded"
    );
    let after = aws.download_prefix("lake-bucket", "p/", &dir.path().join("after"));
    assert!(after.is_empty(), "the S3 copy is removed: {after:?}");
}

#[test]
fn s3_output_uploads_large_files_in_parts() {
    use auditlake::sink::lake::Remote;
    use auditlake::sink::s3::S3Remote;
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.bucket("lake-bucket");
    let dir = tempfile::tempdir().expect("tempdir");
    // 11 MiB + 3 bytes of varied content: parts of 5, 5 and 1 MiB + 3 bytes.
    let bytes: Vec<u8> = (0..(11usize << 20) + 3)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let local = dir.path().join("big.parquet");
    std::fs::write(&local, &bytes).expect("write");
    let mut remote = S3Remote::with_client(aws.s3.clone(), "lake-bucket", "x/", 5).expect("remote");
    remote
        .put("ciem_events/big.parquet", &local)
        .expect("multipart upload");
    let copy = dir.path().join("copy");
    let keys = aws.download_prefix("lake-bucket", "x/", &copy);
    assert_eq!(keys, vec!["x/ciem_events/big.parquet".to_string()]);
    let back = std::fs::read(copy.join("ciem_events/big.parquet")).expect("read");
    assert!(back == bytes, "the uploaded object is byte-identical");
    remote.delete("ciem_events/big.parquet").expect("delete");
    remote
        .delete("ciem_events/big.parquet")
        .expect("deleting twice succeeds");
}

#[test]
fn with_queue_redrive_a_poison_message_goes_to_the_queues_dead_letter_queue() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let dlq = aws.queue("poison-dlq", 30);
    let dlq_arn = aws
        .rt
        .block_on(
            aws.sqs
                .get_queue_attributes()
                .queue_url(&dlq)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send(),
        )
        .expect("dlq attributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .expect("dlq arn");
    let queue = aws
        .rt
        .block_on(
            aws.sqs
                .create_queue()
                .queue_name("with-redrive")
                .attributes(
                    aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                    json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string(),
                )
                .send(),
        )
        .expect("create queue")
        .queue_url()
        .expect("url")
        .to_string();
    aws.bucket("trail");
    let prefix = "AWSLogs/111122223333/CloudTrail/us-east-1/2022/07/20";
    aws.put(
        "trail",
        &format!("{prefix}/good.json.gz"),
        gzip(&sample(TRAIL_SAMPLE)),
    );
    let record = |key: &str| {
        json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "trail"}, "object": {"key": format!("{prefix}/{key}")}}}]})
        .to_string()
    };
    aws.send(&queue, &record("good.json.gz"));
    aws.send(&queue, &record("missing.json.gz"));
    let s = setup(
        &moto,
        &queue,
        "visibility_timeout_secs = 1\nmax_receive_count = 1\non_poison = \"queue_redrive\"",
        "max_age_secs = 1",
    );
    let mut daemon = Daemon::start(&s.config, &s.dir.path().join("daemon.log"));
    wait_until_drained(&aws, &queue, &mut daemon, Duration::from_secs(60));
    let log = daemon.terminate();
    assert_eq!(count(&s.lake, "ciem_events"), 1, "{log}");
    assert_eq!(
        count(&s.lake, "dead_letters"),
        0,
        "left to the queue, not dead-lettered"
    );
    assert_eq!(
        aws.counts(&dlq).0,
        1,
        "the queue's redrive moved it:\n{log}"
    );
}

/// What the proxy does to the responses of the GETs it picks.
#[derive(Clone, Copy)]
enum Fault {
    /// Close the connection after this many bytes (a download that breaks half-way).
    Cut { after: usize },
    /// Pass this many bytes per 100 ms (a slow download).
    Slow { per_100ms: usize },
    /// Pass this many bytes, then nothing while the connection stays open (a stalled one).
    Stall { after: usize },
}

/// A loopback TCP proxy to moto applying `fault` to the first `times` responses to GETs whose
/// request line contains `needle`. (moto answers with `Connection: close`, so one connection
/// carries one request.)
fn faulty_proxy(upstream: &str, needle: &'static str, fault: Fault, times: usize) -> String {
    use std::io::Read;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    let left = Arc::new(AtomicUsize::new(times));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let upstream = upstream.clone();
            let left = left.clone();
            std::thread::spawn(move || {
                let Ok(mut server) = std::net::TcpStream::connect(&upstream) else {
                    return;
                };
                let mut client = client;
                let mut head = vec![0u8; 4096];
                let Ok(n) = client.read(&mut head) else {
                    return;
                };
                head.truncate(n);
                let line = String::from_utf8_lossy(&head[..head.len().min(300)]).into_owned();
                let cut = line.starts_with("GET ")
                    && line.lines().next().is_some_and(|l| l.contains(needle))
                    && left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
                        .is_ok();
                if server.write_all(&head).is_err() {
                    return;
                }
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                    return;
                };
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                });
                match (cut, fault) {
                    (false, _) => {
                        let _ = std::io::copy(&mut server, &mut client);
                    }
                    (true, Fault::Cut { after }) => {
                        let _ = std::io::copy(&mut (&mut server).take(after as u64), &mut client);
                    }
                    (true, Fault::Stall { after }) => {
                        let _ = std::io::copy(&mut (&mut server).take(after as u64), &mut client);
                        std::thread::sleep(Duration::from_secs(30));
                    }
                    (true, Fault::Slow { per_100ms }) => {
                        let mut buf = vec![0u8; per_100ms];
                        while let Ok(n) = server.read(&mut buf) {
                            if n == 0 || client.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
                let _ = server.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_download_cut_half_way_is_resumed_on_redelivery_without_duplicates() {
    const EVENTS: usize = 6000;
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let queue = aws.queue("cut", 2);
    aws.bucket("trail");
    aws.notify("trail", &queue);
    let body = cloudtrail_file("cut", EVENTS, 0);
    let size = body.len();
    aws.put(
        "trail",
        "AWSLogs/111122223333/CloudTrail/us-west-2/2024/06/01/big-cut.json.gz",
        body,
    );
    // Cut the first two downloads at about half the object.
    let proxy = faulty_proxy(&moto.endpoint, "big-cut", Fault::Cut { after: size / 2 }, 2);
    let mut s = setup(
        &moto,
        &queue,
        "visibility_timeout_secs = 2",
        "max_rows = 500\nmax_age_secs = 1",
    );
    s.route_through(&moto, &proxy);
    let mut daemon = Daemon::start(&s.config, &s.dir.path().join("daemon.log"));
    wait_until_drained(&aws, &queue, &mut daemon, Duration::from_secs(60));
    let log = daemon.terminate();
    let failures = log.matches("object not read").count();
    assert!(failures >= 1, "the cut must have been seen:\n{log}");
    let events = dataset(&s.lake, "ciem_events");
    let row = duckdb(&format!(
        "select count(*), count(distinct metadata_uid) from {events}"
    ));
    assert_eq!(row[0], vec![json!(EVENTS), json!(EVENTS)], "{log}");
    assert_eq!(count(&s.lake, "dead_letters"), 0, "{log}");
    let stats = final_stats(&log);
    assert!(stats["objects_failed"].as_u64() >= Some(1), "{stats}");
}

#[test]
fn a_wrong_queue_or_setting_is_reported_clearly() {
    let moto = Moto::start();
    let missing = format!("{}/123456789012/no-such-queue", moto.endpoint);
    let s = setup(&moto, &missing, "", "max_age_secs = 1");
    let out = Command::new(bin())
        .args(["run", "--config", s.config.to_str().expect("path")])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot use the SQS queue")
            && err.contains("no-such-queue")
            && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        !err.contains("testing"),
        "no credentials in messages: {err}"
    );

    let s = setup(&moto, &missing, "max_messages = 11", "");
    let out = Command::new(bin())
        .args(["run", "--config", s.config.to_str().expect("path")])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("max_messages must be between 1 and 10"),
        "{err}"
    );
}

#[test]
fn a_stalled_download_is_given_up_and_retried() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let queue = aws.queue("stall", 2);
    aws.bucket("trail");
    aws.notify("trail", &queue);
    let body = cloudtrail_file("stall", 2000, 0);
    let size = body.len();
    aws.put(
        "trail",
        "AWSLogs/111122223333/CloudTrail/us-west-2/2024/06/01/stalled.json.gz",
        body,
    );
    let proxy = faulty_proxy(
        &moto.endpoint,
        "stalled.json.gz",
        Fault::Stall { after: size / 3 },
        1,
    );
    let mut s = setup(
        &moto,
        &queue,
        "visibility_timeout_secs = 2\nstall_timeout_secs = 2",
        "max_age_secs = 1",
    );
    s.route_through(&moto, &proxy);
    let mut daemon = Daemon::start(&s.config, &s.dir.path().join("daemon.log"));
    wait_until_drained(&aws, &queue, &mut daemon, Duration::from_secs(60));
    let log = daemon.terminate();
    assert!(log.contains("no data for 2 s"), "{log}");
    let events = dataset(&s.lake, "ciem_events");
    let row = duckdb(&format!(
        "select count(*), count(distinct metadata_uid) from {events}"
    ));
    assert_eq!(row[0], vec![json!(2000), json!(2000)], "{log}");
}
