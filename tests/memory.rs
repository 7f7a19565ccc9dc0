//! The process-wide memory bound: one daemon at a small `--memory-limit-mib` with an SQS + S3,
//! a Kafka and an inbox pipeline all busy at once (real moto and tansu). Every event lands
//! exactly once and the budget is exported as metrics. (How much memory a mixed load takes is
//! measured by `bench/mixed.sh`, not asserted here.)

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::moto::{Aws, Moto};
use common::tansu::{self, Tansu};
use common::*;
use serde_json::{Value, json};

const OBJECTS: usize = 12;
const EVENTS_PER_OBJECT: usize = 1500;
const MESSAGES: usize = 15_000;
const FILES: usize = 10;
const EVENTS_PER_FILE: usize = 1500;
const LIMIT_MIB: u64 = 360; // the smallest limit for three pipelines

fn cloudaudit(i: usize) -> String {
    json!({
        "userIdentity": {"type": "CAMUser", "principalId": "100000000011", "accountId": "100000000001", "userName": "ops"},
        "eventTime": 1714557600 + i as u64,
        "eventSource": "cvm.tencentcloudapi.com",
        "eventName": "DescribeInstances",
        "eventRegion": "ap-guangzhou",
        "eventType": "ApiCall",
        "sourceIPAddress": "192.0.2.1",
        "requestID": format!("req-{i}"),
        "requestParameters": {"padding": "y".repeat(600)},
        "eventID": format!("kafka-{i}"),
        "errorCode": 0
    })
    .to_string()
}

/// The daemon, killed when dropped (a failing assertion must not leave it running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn count_and_distinct(lake: &Path) -> (i64, i64) {
    let row = duckdb(&format!(
        "select count(*), count(distinct metadata_uid) from {}",
        dataset(lake, "ciem_events")
    ));
    let get = |i: usize| {
        row.first()
            .and_then(|r| r.get(i))
            .and_then(Value::as_i64)
            .unwrap_or(-1)
    };
    (get(0), get(1))
}

#[test]
fn a_small_memory_limit_keeps_every_event_exactly_once_with_all_pipelines_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();

    // SQS + S3: CloudTrail objects with their notifications waiting on the queue.
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let queue = aws.queue("mixed", 30);
    aws.bucket("trail");
    aws.notify("trail", &queue);
    let mut s3_bytes = 0;
    for o in 0..OBJECTS {
        let body = cloudtrail_file(&format!("s3-{o}"), EVENTS_PER_OBJECT, 600);
        s3_bytes += body.len();
        aws.put(
            "trail",
            &format!("AWSLogs/111122223333/CloudTrail/us-west-2/2024/06/01/o{o}.json.gz"),
            body,
        );
    }

    // Kafka: CloudAudit messages on three partitions.
    let tansu = Tansu::start();
    tansu.create_topic("audit", 3);
    let payloads: Vec<String> = (0..MESSAGES).map(cloudaudit).collect();
    let kafka_bytes: usize = payloads.iter().map(String::len).sum();
    let messages: Vec<(i32, String)> = payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| ((i % 3) as i32, p))
        .collect();
    tansu::produce(&tansu.bootstrap(), "audit", "none", &messages);

    // Inbox: CloudTrail files already there.
    let inbox = root.join("inbox");
    std::fs::create_dir_all(&inbox).expect("mkdir");
    let mut file_bytes = 0;
    for f in 0..FILES {
        let body = cloudtrail_file(&format!("file-{f}"), EVENTS_PER_FILE, 600);
        file_bytes += body.len();
        std::fs::write(inbox.join(format!("f{f}.json.gz")), body).expect("write");
    }

    let configs = root.join("pipelines");
    std::fs::create_dir_all(&configs).expect("mkdir");
    let lake = |name: &str| root.join(format!("lake-{name}"));
    let write = |name: &str, source: String| {
        let text = format!(
            "name = \"{name}\"\n{source}\n[sink]\npath = \"{}\"\n[flush]\nmax_age_secs = 1\n",
            lake(name).display()
        );
        std::fs::write(configs.join(format!("{name}.toml")), text).expect("write config");
    };
    write(
        "trail",
        format!(
            "[source]\ntype = \"sqs_s3\"\nqueue_url = \"{queue}\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nwait_time_secs = 1",
            moto.endpoint
        ),
    );
    write(
        "cls",
        format!(
            "[source]\ntype = \"kafka\"\nbootstrap_servers = \"{}\"\ntopic = \"audit\"\ngroup_id = \"mixed\"\nstart_position = \"earliest\"\nlag_report_secs = 1",
            tansu.bootstrap()
        ),
    );
    write(
        "inbox",
        format!(
            "[source]\ntype = \"files\"\npath = \"{}\"\npoll_interval_secs = 1",
            inbox.display()
        ),
    );

    let port = free_port();
    let log = std::fs::File::create(root.join("daemon.log")).expect("log");
    let daemon = Command::new(bin())
        .args(["run", "--config"])
        .arg(&configs)
        .args([
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
            "--memory-limit-mib",
            &LIMIT_MIB.to_string(),
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start daemon");
    let mut daemon = Running(daemon);

    let expected = [
        ("trail", OBJECTS * EVENTS_PER_OBJECT, s3_bytes),
        ("cls", MESSAGES, kafka_bytes),
        ("inbox", FILES * EVENTS_PER_FILE, file_bytes),
    ];
    let written = |m: &str, p: &str| {
        ["aws", "tencent"]
            .iter()
            .filter_map(|provider| {
                metric(
                    m,
                    &format!(
                        "auditlake_events_written_total{{pipeline=\"{p}\",provider=\"{provider}\"}}"
                    ),
                )
            })
            .sum::<f64>()
    };
    // A guard against a hang, not a speed assertion.
    let deadline = Instant::now() + Duration::from_secs(300);
    let metrics = loop {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            panic!(
                "daemon exited ({status}):\n{}",
                std::fs::read_to_string(root.join("daemon.log")).unwrap_or_default()
            );
        }
        let body = http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        if expected
            .iter()
            .all(|(p, n, _)| written(&body, p) >= *n as f64)
        {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "not every event was written:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    for (pipeline, events, bytes) in expected {
        let (count, distinct) = count_and_distinct(&lake(pipeline));
        assert_eq!(
            (count, distinct),
            (events as i64, events as i64),
            "{pipeline}: every event exactly once"
        );
        assert_eq!(
            metric(
                &metrics,
                &format!("auditlake_input_bytes_total{{pipeline=\"{pipeline}\"}}")
            ),
            Some(bytes as f64),
            "{pipeline}: bytes read\n{metrics}"
        );
        assert!(
            metric(
                &metrics,
                &format!("auditlake_memory_pressure_flushes_total{{pipeline=\"{pipeline}\"}}")
            )
            .is_some(),
            "{metrics}"
        );
    }
    assert_eq!(
        metric(&metrics, "auditlake_memory_limit_bytes"),
        Some((LIMIT_MIB << 20) as f64),
        "{metrics}"
    );
    let budget = metric(&metrics, "auditlake_memory_batch_budget_bytes").unwrap_or(0.0);
    assert!(
        budget > 0.0 && budget < (LIMIT_MIB << 20) as f64,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "auditlake_memory_batch_in_use_bytes").is_some(),
        "{metrics}"
    );

    // SIGTERM: a clean stop, with nothing more written.
    let pid = daemon.0.id().to_string();
    let ok = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(ok.success());
    let status = daemon.0.wait().expect("wait");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(root.join("daemon.log")).unwrap_or_default()
    );
    for (pipeline, events, _) in expected {
        assert_eq!(
            count_and_distinct(&lake(pipeline)),
            (events as i64, events as i64),
            "{pipeline} after stop"
        );
    }
}
