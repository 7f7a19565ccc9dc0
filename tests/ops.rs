//! Operating auditlake: one process running a directory of pipelines, with Prometheus metrics
//! and health endpoints; a failing pipeline is restarted with backoff without stopping the
//! others; SIGTERM stops everything cleanly; no configured secret shows anywhere.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

const BETA_FIRST: &str = "aws-cloudtrail/aws.defense-evasion.cloudtrail-delete.json";
const BETA_SECOND: &str = "aws-cloudtrail/aws.exfiltration.ec2-share-ebs-snapshot.json";
const SECRET: &str = "s3cr3t-Pa55w0rd-never-printed";

/// GET `path` from the metrics server: (status code, body).
/// The value of the sample `name{labels}` in a Prometheus exposition.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn wait_until(what: &str, port: u16, mut done: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some((200, body)) = http_get(port, "/metrics") {
            if done(&body) {
                return body;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out waiting for {what}; last /metrics:\n{last}");
}

fn count(lake: &Path, table: &str) -> i64 {
    if parquet_files(&lake.join(table)).is_empty() {
        return 0;
    }
    scalar(&format!("select count(*) from {}", dataset(lake, table)))
        .as_i64()
        .unwrap_or(-1)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn files_pipeline(name: &str, dir: &Path) -> String {
    format!(
        r#"name = "{name}"
[source]
type = "files"
path = "{inbox}"
poll_interval_secs = 1
[sink]
path = "{lake}"
[flush]
max_age_secs = 1
"#,
        inbox = dir.join(format!("inbox-{name}")).display(),
        lake = dir.join(format!("lake-{name}")).display(),
    )
}

fn drop_sample(inbox: &Path, sample: &str) {
    std::fs::create_dir_all(inbox).expect("mkdir inbox");
    let from = fixtures().join("samples").join(sample);
    let name = from.file_name().expect("file name");
    // Copy under a hidden name, then rename: the watcher never sees a half-written file.
    let tmp = inbox.join(format!(".{}", name.to_string_lossy()));
    std::fs::copy(&from, &tmp).expect("copy fixture");
    std::fs::rename(&tmp, inbox.join(name)).expect("rename fixture");
}

/// Starts the daemon; its stdout and stderr go to files in `logs` (a pipe nobody reads
/// could fill up and block it).
fn start(config_dir: &Path, port: u16, logs: &Path) -> Child {
    let log = |name: &str| std::fs::File::create(logs.join(name)).expect("log file");
    Command::new(bin())
        .args([
            "run",
            "--config",
            config_dir.to_str().expect("path"),
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("AUDITLAKE_TEST_KAFKA_PASSWORD", SECRET)
        .env("RUST_LOG", "info")
        .stdout(log("stdout.log"))
        .stderr(log("stderr.log"))
        .spawn()
        .expect("start daemon")
}

#[test]
fn many_pipelines_in_one_process_with_metrics_health_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let configs = root.join("pipelines");
    std::fs::create_dir_all(&configs).expect("mkdir");
    std::fs::write(configs.join("alpha.toml"), files_pipeline("alpha", root)).expect("write");
    std::fs::write(configs.join("beta.toml"), files_pipeline("beta", root)).expect("write");
    // An accounts file in the directory is not a pipeline: it is skipped.
    std::fs::write(
        configs.join("accounts.toml"),
        "[[account]]\nname = \"a\"\nprovider = \"aws\"\n",
    )
    .expect("write");
    let (lake_a, lake_b) = (root.join("lake-alpha"), root.join("lake-beta"));
    let (inbox_a, inbox_b) = (root.join("inbox-alpha"), root.join("inbox-beta"));

    let port = free_port();
    let daemon = start(&configs, port, root);
    let mut daemon = Stopper(Some(daemon), root.to_path_buf());

    drop_sample(
        &inbox_a,
        "aws-cloudtrail/aws.credential-access.secretsmanager-retrieve-secrets.json",
    );
    drop_sample(&inbox_a, "tencent-cloudaudit/create-audit-track.json");
    drop_sample(&inbox_b, BETA_FIRST);
    drop_sample(&inbox_b, BETA_SECOND);

    let written = |m: &str, p: &str, provider: &str| {
        sample(
            m,
            &format!("auditlake_events_written_total{{pipeline=\"{p}\",provider=\"{provider}\"}}"),
        )
    };
    let metrics = wait_until("both pipelines to write their events", port, |m| {
        written(m, "alpha", "aws") == Some(10.0)
            && written(m, "alpha", "tencent") == Some(1.0)
            && written(m, "beta", "aws") == Some(2.0)
    });
    assert_eq!(count(&lake_a, "ciem_events"), 11);
    assert_eq!(count(&lake_b, "ciem_events"), 2);
    for line in [
        "auditlake_inputs_total{pipeline=\"alpha\"} 2",
        "auditlake_inputs_total{pipeline=\"beta\"} 2",
        "auditlake_dead_letters_total{pipeline=\"alpha\"} 0",
        "auditlake_events_received_total{pipeline=\"beta\"} 2",
        "auditlake_pipeline_restarts_total{pipeline=\"beta\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }
    assert!(
        sample(
            &metrics,
            "auditlake_files_committed_total{pipeline=\"alpha\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "auditlake_batch_flush_seconds_count{pipeline=\"beta\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    let fixture_bytes: u64 = [BETA_FIRST, BETA_SECOND]
        .iter()
        .map(|f| {
            std::fs::metadata(fixtures().join("samples").join(f))
                .expect("fixture")
                .len()
        })
        .sum();
    assert_eq!(
        sample(&metrics, "auditlake_input_bytes_total{pipeline=\"beta\"}"),
        Some(fixture_bytes as f64),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "process_resident_memory_bytes").is_some_and(|n| n > 1e6),
        "{metrics}"
    );
    assert!(
        !metrics.contains("pipeline=\"a\""),
        "the accounts file is not a pipeline"
    );
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));
    let ready = http_get(port, "/readyz").expect("readyz");
    assert_eq!(ready.0, 200, "{}", ready.1);
    for p in ["alpha", "beta"] {
        assert_eq!(
            sample(
                &metrics,
                &format!("auditlake_pipeline_up{{pipeline=\"{p}\",source=\"files\"}}")
            ),
            Some(1.0),
            "{p}:\n{metrics}"
        );
    }

    // Beta's lake becomes unusable (a regular file where its directory was): beta fails and
    // is restarted with backoff, alpha goes on.
    std::fs::remove_dir_all(&lake_b).expect("rm lake");
    std::fs::write(&lake_b, "not a lake").expect("write file");
    drop_sample(&inbox_b, "tencent-cloudaudit/lookup-events-legacy.json");
    drop_sample(&inbox_a, "tencent-cloudaudit/lookup-events-legacy.json");
    let metrics = wait_until("beta to be restarted and alpha to go on", port, |m| {
        written(m, "alpha", "tencent") == Some(2.0)
            && sample(m, "auditlake_pipeline_restarts_total{pipeline=\"beta\"}")
                .is_some_and(|n| n >= 2.0)
    });
    assert_eq!(count(&lake_a, "ciem_events"), 12);
    assert_eq!(
        sample(
            &metrics,
            "auditlake_pipeline_up{pipeline=\"beta\",source=\"files\"}"
        ),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "auditlake_pipeline_up{pipeline=\"alpha\",source=\"files\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    let (status, body) = http_get(port, "/readyz").expect("readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("pipeline beta: not running") && body.contains("lake-beta"),
        "the reason names the pipeline and what failed: {body}"
    );
    assert!(body.contains("pipeline alpha: ready"), "{body}");
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));

    let (stdout, stderr) = daemon.stop();
    assert!(
        stderr.contains("pipeline failed; it will be restarted"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "the daemon logs to stderr: {stdout}");
    // What alpha read is committed and stays so after the stop.
    assert_eq!(count(&lake_a, "ciem_events"), 12);
}

#[test]
fn an_unreachable_kafka_pipeline_is_not_ready_and_keeps_its_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let configs = root.join("pipelines");
    std::fs::create_dir_all(&configs).expect("mkdir");
    std::fs::write(configs.join("alpha.toml"), files_pipeline("alpha", root)).expect("write");
    // The SASL password comes from the environment; the broker is not there.
    let closed = free_port();
    std::fs::write(
        configs.join("gamma.toml"),
        format!(
            r#"name = "gamma"
[source]
type = "kafka"
bootstrap_servers = "127.0.0.1:{closed}"
topic = "audit"
username = "auditlake"
password_env = "AUDITLAKE_TEST_KAFKA_PASSWORD"
lag_report_secs = 1
[sink]
path = "{lake}"
"#,
            lake = root.join("lake-gamma").display()
        ),
    )
    .expect("write");
    let port = free_port();
    let mut daemon = Stopper(Some(start(&configs, port, root)), root.to_path_buf());
    drop_sample(
        &root.join("inbox-alpha"),
        "tencent-cloudaudit/create-audit-track.json",
    );
    let metrics = wait_until("alpha to write its event", port, |m| {
        m.contains("auditlake_events_written_total{pipeline=\"alpha\",provider=\"tencent\"} 1")
    });
    assert!(
        metrics
            .lines()
            .any(|l| l == "auditlake_pipeline_up{pipeline=\"gamma\",source=\"kafka\"} 0"),
        "{metrics}"
    );
    let (status, body) = http_get(port, "/readyz").expect("readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("pipeline gamma: no Kafka partition assigned")
            && body.contains("pipeline alpha: ready"),
        "{body}"
    );
    let (stdout, stderr) = daemon.stop();
    assert!(stderr.contains("Connection refused"), "{stderr}");
    for (what, text) in [
        ("stdout", &stdout),
        ("stderr", &stderr),
        ("metrics", &metrics),
        ("readyz", &body),
    ] {
        assert!(!text.contains(SECRET), "the secret shows in {what}");
    }
}

#[test]
fn a_kafka_pipeline_reports_lag_per_partition_and_is_ready_once_assigned() {
    use rdkafka::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("audit", 2, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    for (i, partition) in [0, 0, 0, 1, 1].into_iter().enumerate() {
        let payload = format!(
            r#"{{"eventID":"e{i}","eventTime":1714557600,"eventSource":"cvm.tencentcloudapi.com","eventName":"RunInstances","eventRegion":"ap-guangzhou","userIdentity":{{"accountId":"1"}}}}"#
        );
        producer
            .send(
                BaseRecord::<(), String>::to("audit")
                    .partition(partition)
                    .payload(&payload),
            )
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let configs = root.join("pipelines");
    std::fs::create_dir_all(&configs).expect("mkdir");
    std::fs::write(
        configs.join("cls.toml"),
        format!(
            r#"name = "cls"
[source]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "audit"
start_position = "earliest"
lag_report_secs = 1
[source.librdkafka]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[sink]
path = "{lake}"
[flush]
max_age_secs = 1
"#,
            lake = root.join("lake").display()
        ),
    )
    .expect("write");
    let port = free_port();
    let mut daemon = Stopper(Some(start(&configs, port, root)), root.to_path_buf());
    let lag = |m: &str, partition: i32| {
        sample(
            m,
            &format!(
                "auditlake_kafka_consumer_lag{{pipeline=\"cls\",topic=\"audit\",partition=\"{partition}\"}}"
            ),
        )
    };
    let metrics = wait_until("the Kafka pipeline to commit and report lag", port, |m| {
        m.contains("auditlake_events_written_total{pipeline=\"cls\",provider=\"tencent\"} 5")
            && lag(m, 0) == Some(0.0)
            && lag(m, 1) == Some(0.0)
    });
    assert!(
        metrics
            .lines()
            .any(|l| l == "auditlake_pipeline_up{pipeline=\"cls\",source=\"kafka\"} 1"),
        "{metrics}"
    );
    let (status, body) = http_get(port, "/readyz").expect("readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&root.join("lake"), "ciem_events"), 5);
    daemon.stop();
}

/// Sets up a bucket and a queue on moto (the `.venv` of the test suite) and announces one
/// CloudTrail file on the queue; returns the queue URL.
fn moto_queue_with_one_object(endpoint: &str, file: &Path) -> String {
    let script = r#"
import boto3, gzip, json, sys
endpoint, path = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
s3.create_bucket(Bucket="trail")
key = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/01/123456789012_CloudTrail_us-east-1_20240501T0000Z_a.json.gz"
body = gzip.compress(open(path, "rb").read())
s3.put_object(Bucket="trail", Key=key, Body=body)
url = sqs.create_queue(QueueName="trail-events")["QueueUrl"]
record = {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
          "eventName": "ObjectCreated:Put",
          "s3": {"bucket": {"name": "trail"}, "object": {"key": key, "size": len(body)}}}
sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Records": [record]}))
print(url)
"#;
    let out = Command::new(python())
        .args(["-c", script, endpoint, file.to_str().expect("path")])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn an_sqs_pipeline_reports_its_messages() {
    let moto_port = free_port();
    let moto = Command::new(
        std::env::var_os("AUDITLAKE_MOTO_SERVER")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server")),
    )
    .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("start moto_server");
    // Killed when the test ends (Stopper::drop).
    let _moto = Stopper(Some(moto), std::path::PathBuf::new());
    let endpoint = format!("http://127.0.0.1:{moto_port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", moto_port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let fixture = fixtures().join("samples").join(BETA_FIRST);
    let queue_url = moto_queue_with_one_object(&endpoint, &fixture);

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let configs = root.join("pipelines");
    std::fs::create_dir_all(&configs).expect("mkdir");
    std::fs::write(
        configs.join("trail.toml"),
        format!(
            r#"name = "trail"
[source]
type = "sqs_s3"
queue_url = "{queue_url}"
region = "us-east-1"
endpoint_url = "{endpoint}"
wait_time_secs = 1
[sink]
path = "{lake}"
[flush]
max_age_secs = 1
"#,
            lake = root.join("lake").display()
        ),
    )
    .expect("write");
    let port = free_port();
    let log = |name: &str| std::fs::File::create(root.join(name)).expect("log file");
    let daemon = Command::new(bin())
        .args([
            "run",
            "--config",
            configs.to_str().expect("path"),
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(log("stdout.log"))
        .stderr(log("stderr.log"))
        .spawn()
        .expect("start daemon");
    let mut daemon = Stopper(Some(daemon), root.to_path_buf());
    let metrics = wait_until("the SQS message to be processed and deleted", port, |m| {
        sample(
            m,
            "auditlake_sqs_messages_deleted_total{pipeline=\"trail\"}",
        ) == Some(1.0)
    });
    for line in [
        "auditlake_sqs_messages_received_total{pipeline=\"trail\"} 1",
        "auditlake_sqs_messages_in_flight{pipeline=\"trail\"} 0",
        "auditlake_events_written_total{pipeline=\"trail\",provider=\"aws\"} 1",
        "auditlake_pipeline_up{pipeline=\"trail\",source=\"sqs_s3\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }
    assert!(metrics.contains("# TYPE auditlake_sqs_visibility_extensions_total counter"));
    assert_eq!(http_get(port, "/readyz").map(|r| r.0), Some(200));
    assert_eq!(count(&root.join("lake"), "ciem_events"), 1);
    daemon.stop();
}

#[test]
fn two_pipelines_on_one_lake_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let configs = dir.path().join("pipelines");
    std::fs::create_dir_all(&configs).expect("mkdir");
    std::fs::write(
        configs.join("a.toml"),
        files_pipeline("shared", dir.path()).replace("name = \"shared\"", "name = \"one\""),
    )
    .expect("write");
    std::fs::write(
        configs.join("b.toml"),
        files_pipeline("shared", dir.path())
            .replace("name = \"shared\"", "name = \"two\"")
            .replace("inbox-shared", "inbox-other")
            .replace("lake-shared", "./lake-shared/../lake-shared"),
    )
    .expect("write");
    let out = Command::new(bin())
        .args(["run", "--config", configs.to_str().expect("path")])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("b.toml")
            && err.contains("also the lake of pipeline \"one\"")
            && err.contains("a.toml"),
        "{err}"
    );
}

/// Stops the daemon with SIGTERM (also when a test fails half-way).
struct Stopper(Option<Child>, std::path::PathBuf);

impl Stopper {
    /// SIGTERM; the daemon must exit 0. Returns its stdout and stderr.
    fn stop(&mut self) -> (String, String) {
        let child = self.0.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let mut child = child;
        let status = child.wait().expect("wait");
        let read = |name: &str| std::fs::read_to_string(self.1.join(name)).unwrap_or_default();
        let (stdout, stderr) = (read("stdout.log"), read("stderr.log"));
        assert!(
            status.success(),
            "daemon must exit 0 on SIGTERM: {status:?}\n{stderr}"
        );
        (stdout, stderr)
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
