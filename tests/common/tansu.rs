//! tansu, a Kafka-protocol broker, for the tests: started on a free loopback port with
//! in-memory storage, killed when dropped. Its binary is `$AUDITLAKE_TANSU`, else
//! `~/.cargo/bin/tansu` (`tests/run.sh` installs it).
//!
//! tansu 0.6.0 (the newest tansu; its successor nisshi needs a newer rustc) answers a fetch
//! that starts inside a record batch with the *next* batch, so a consumer resuming from a
//! committed offset in the middle of a batch never sees the rest of that batch; it also
//! reports the high watermark as the last batch's first offset + 1. A test that resumes from a
//! committed offset on tansu therefore produces with [`produce_one_per_batch`]: every offset
//! starts a batch, and a lost or doubled message is our fault, not the broker's.
//! `tests/kafka.rs` (`tansu_fetch_inside_a_batch_probe`) pins that behaviour down.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub struct Tansu {
    child: Child,
    port: u16,
}

impl Tansu {
    pub fn start() -> Tansu {
        let bin = std::env::var_os("AUDITLAKE_TANSU")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu")))
            .filter(|p| p.exists())
            .expect("tansu not found: run the suite with `bash tests/run.sh` (it installs tansu), or set AUDITLAKE_TANSU");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let tansu = Tansu { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        tansu
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("admin client");
        let results = futures::executor::block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create topics");
        for r in results {
            r.expect("topic created");
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `(partition, payload)` messages with `compression` (`none`, `snappy`, `lz4`, ...) and
/// waits until every one is acknowledged. Messages sent within 5 ms share a record batch.
pub fn produce(bootstrap: &str, topic: &str, compression: &str, messages: &[(i32, String)]) {
    send(
        bootstrap,
        topic,
        &[("compression.type", compression), ("linger.ms", "5")],
        messages,
    );
}

/// As [`produce`], but every message is a record batch of its own, so that a consumer resuming
/// at any offset starts at a batch boundary (see the module doc: tansu skips the rest of a
/// batch a fetch starts inside).
pub fn produce_one_per_batch(
    bootstrap: &str,
    topic: &str,
    compression: &str,
    messages: &[(i32, String)],
) {
    send(
        bootstrap,
        topic,
        &[
            ("compression.type", compression),
            ("linger.ms", "0"),
            ("batch.num.messages", "1"),
        ],
        messages,
    );
}

/// Produces `chunks` × `per_chunk` CloudAudit events (ids `k-<n>`, event `n` to partition
/// `n % partitions`) in the background, one message per record batch, pausing between chunks.
pub fn spawn_cloudaudit_producer(
    bootstrap: String,
    topic: &'static str,
    partitions: i32,
    (chunks, per_chunk): (usize, usize),
    pause: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for chunk in 0..chunks {
            let msgs: Vec<(i32, String)> = (0..per_chunk)
                .map(|i| {
                    let n = chunk * per_chunk + i;
                    (
                        (n % partitions as usize) as i32,
                        super::cloudaudit_event(&format!("k-{n}"), 1714557600 + n as i64),
                    )
                })
                .collect();
            // One message per record batch: a partition moving between consumers is resumed
            // from its committed offset, and tansu answers a fetch starting inside a batch
            // with the next batch (tests/kafka.rs, tansu_fetch_inside_a_batch_probe), which
            // would lose messages for the broker's fault, not ours.
            produce_one_per_batch(&bootstrap, topic, "none", &msgs);
            std::thread::sleep(pause);
        }
    })
}

/// Sends `(partition, payload)` messages with the given producer settings and waits until
/// every one is acknowledged.
pub fn send(bootstrap: &str, topic: &str, settings: &[(&str, &str)], messages: &[(i32, String)]) {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let producer: BaseProducer = config.create().expect("producer");
    for (partition, payload) in messages {
        let mut record = BaseRecord::<(), String>::to(topic)
            .partition(*partition)
            .payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}
