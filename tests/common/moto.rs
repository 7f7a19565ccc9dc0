//! moto (S3 + SQS over HTTP) for the tests: the server on a free port, the test's own AWS
//! clients (what a trail and an admin do), and `auditlake run` as a child process configured
//! for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{Credentials, Region};

use super::bin;

pub fn moto_server() -> PathBuf {
    let path = std::env::var_os("AUDITLAKE_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"));
    assert!(
        path.exists(),
        "moto_server not found at {}: run the suite with `bash tests/run.sh` (it creates .venv), or set AUDITLAKE_MOTO_SERVER",
        path.display()
    );
    path
}

/// A moto server on a free loopback port, killed when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a boto3 script (moto[server] brings boto3) against the moto server at `endpoint`:
/// `c(service, region='us-east-1')` makes a client; the script prints JSON, returned.
pub fn boto(endpoint: &str, script: &str) -> serde_json::Value {
    let prelude = format!(
        "import boto3, json\n\
         def c(svc, region='us-east-1'):\n    return boto3.client(svc, region_name=region, endpoint_url='{endpoint}', aws_access_key_id='testing', aws_secret_access_key='testing')\n",
    );
    let out = Command::new(super::python())
        .args(["-c", &format!("{prelude}{script}")])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "boto3 script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The key CloudTrail gives a log file of account 111122223333 in us-west-2 (2024-06-01),
/// ending in `tag`.
pub fn trail_key(tag: &str) -> String {
    format!(
        "AWSLogs/111122223333/CloudTrail/us-west-2/2024/06/01/111122223333_CloudTrail_us-west-2_20240601T1200Z_{tag}.json.gz"
    )
}

/// The test's own AWS clients (what a trail and an admin would do).
pub struct Aws {
    pub rt: tokio::runtime::Runtime,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Aws {
    pub fn new(moto: &Moto) -> Aws {
        let creds = Credentials::new("testing", "testing", None, None, "test");
        let s3 = aws_sdk_s3::config::Builder::new()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(&moto.endpoint)
            .credentials_provider(creds.clone())
            .force_path_style(true)
            .build();
        let sqs = aws_sdk_sqs::config::Builder::new()
            .behavior_version_latest()
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(&moto.endpoint)
            .credentials_provider(creds)
            .build();
        Aws {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
        }
    }

    pub fn queue(&self, name: &str, visibility_secs: u32) -> String {
        let out = self
            .rt
            .block_on(
                self.sqs
                    .create_queue()
                    .queue_name(name)
                    .attributes(
                        aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                        visibility_secs.to_string(),
                    )
                    .send(),
            )
            .expect("create queue");
        out.queue_url().expect("queue url").to_string()
    }

    pub fn bucket(&self, name: &str) {
        self.rt
            .block_on(self.s3.create_bucket().bucket(name).send())
            .expect("create bucket");
    }

    /// A trail's bucket `trail` that announces every new object on a new queue `queue`
    /// (visibility timeout `visibility_secs`); returns the queue's URL. Put objects with
    /// [`trail_key`].
    pub fn trail(&self, queue: &str, visibility_secs: u32) -> String {
        let url = self.queue(queue, visibility_secs);
        self.bucket("trail");
        self.notify("trail", &url);
        url
    }

    /// S3 → SQS notification for every created object.
    pub fn notify(&self, bucket: &str, queue_url: &str) {
        use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
        let arn = self
            .rt
            .block_on(
                self.sqs
                    .get_queue_attributes()
                    .queue_url(queue_url)
                    .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .send(),
            )
            .expect("queue attributes")
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .cloned()
            .expect("queue arn");
        let config = NotificationConfiguration::builder()
            .queue_configurations(
                QueueConfiguration::builder()
                    .queue_arn(arn)
                    .events(Event::from("s3:ObjectCreated:*"))
                    .build()
                    .expect("queue configuration"),
            )
            .build();
        self.rt
            .block_on(
                self.s3
                    .put_bucket_notification_configuration()
                    .bucket(bucket)
                    .notification_configuration(config)
                    .send(),
            )
            .expect("put notification");
    }

    pub fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        self.rt
            .block_on(
                self.s3
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(bytes.into())
                    .send(),
            )
            .expect("put object");
    }

    pub fn send(&self, queue_url: &str, body: &str) {
        self.rt
            .block_on(
                self.sqs
                    .send_message()
                    .queue_url(queue_url)
                    .message_body(body)
                    .send(),
            )
            .expect("send message");
    }

    /// (visible, in flight) messages.
    pub fn counts(&self, queue_url: &str) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .rt
            .block_on(
                self.sqs
                    .get_queue_attributes()
                    .queue_url(queue_url)
                    .attribute_names(A::ApproximateNumberOfMessages)
                    .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                    .send(),
            )
            .expect("queue attributes");
        let get = |a: A| {
            out.attributes()
                .and_then(|m| m.get(&a))
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        };
        (
            get(A::ApproximateNumberOfMessages),
            get(A::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

/// A daemon child process; its log goes to a file.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, log: &Path) -> Daemon {
        Self::start_binary(&bin(), config, log)
    }

    pub fn start_binary(binary: &Path, config: &Path, log: &Path) -> Daemon {
        Self::start_with(binary, config, log, &[])
    }

    /// As [`Daemon::start_binary`], with extra environment variables.
    pub fn start_with(binary: &Path, config: &Path, log: &Path, env: &[(&str, &str)]) -> Daemon {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(binary)
            .args(["run", "--config", config.to_str().expect("path")])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start daemon");
        Daemon {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Peak resident memory so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024)
    }

    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("daemon exited early ({status}); log:\n{}", self.log());
        }
    }

    /// SIGTERM, then the exit status must be 0.
    pub fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let log = self.log();
                assert!(status.success(), "daemon must exit 0 on SIGTERM:\n{log}");
                return log;
            }
            assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
