//! The SQS + S3 source: S3 event notifications (plain, SNS-wrapped or EventBridge) arrive on an
//! SQS queue; each names CloudTrail log objects, which are streamed from S3, gunzipped and
//! decoded as they arrive, and written to the lake.
//!
//! A message is deleted only once every object it names is durably in the lake: each object is
//! an input unit of the lake's journal (its id is the object's location plus version / ETag /
//! sequencer), and the message waits until a commit reports every one of its units complete —
//! or finds them already complete when the message is a redelivery. Anything else (a failed
//! GetObject, an unreadable object, a crash) leaves the message on the queue, so SQS delivers it
//! again; positions of a unit already committed are skipped then, which makes the lake
//! exactly-once across crashes.
//!
//! Threads: this function's caller thread owns the [`Batcher`] and all bookkeeping (the
//! coordinator); a Tokio runtime receives messages, extends their visibility (heartbeat),
//! deletes them, and downloads objects; each object is decoded on a blocking thread that reads
//! the download through a bounded channel, so memory stays bounded whatever the object size.

pub mod notification;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde::Deserialize;

use crate::aws::{config_loader, error_chain};
use crate::batch::{Batcher, CommitReport, UnitStart};
use crate::decode::Input;
use crate::event::{DeadLetter, now_ms};
use crate::normalize::Stamp;
use crate::normalize::unit::{DecodeContext, ITEMS_PER_CHUNK, Item, decode_unit_chunked};
use crate::sink::SinkError;
use notification::{KeyFilter, KeyVerdict, ObjectRef, classify, parse_body};

#[derive(Debug, thiserror::Error)]
pub enum SqsS3Error {
    #[error("invalid sqs_s3 source configuration: {0}")]
    Config(String),
    #[error("cannot use the SQS queue {queue}: {message}")]
    Queue { queue: String, message: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// What happens to a message whose objects keep failing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPoison {
    /// After `max_receive_count` receives: write a dead-letter row (reason, message id, body) to
    /// the lake's `dead_letters/`, then delete the message.
    #[default]
    DeadLetter,
    /// Never delete it: the queue's own redrive policy moves it to its dead-letter queue.
    QueueRedrive,
}

/// Optional role to assume on top of the default credential chain.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssumeRoleConfig {
    pub role_arn: String,
    #[serde(default)]
    pub session_name: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
}

impl std::fmt::Debug for AssumeRoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRoleConfig")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field(
                "external_id",
                &self.external_id.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Settings of the SQS + S3 source (`[source] type = "sqs_s3"`). Credentials are never part
/// of it: they come from the AWS default chain (environment, profile, web identity, instance
/// or task role).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsS3Config {
    pub queue_url: String,
    /// AWS region; default: from the queue URL, else the AWS default chain.
    #[serde(default)]
    pub region: Option<String>,
    /// Named profile of `~/.aws/config` (default: the chain's own choice).
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub assume_role: Option<AssumeRoleConfig>,
    /// Endpoint for both SQS and S3 (S3-compatible stores, tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Path-style S3 addressing; default: on when `endpoint_url` is set.
    #[serde(default)]
    pub force_path_style: Option<bool>,
    /// Long-poll wait, 0–20 s.
    #[serde(default = "default_wait")]
    pub wait_time_secs: i32,
    /// Messages per receive, 1–10.
    #[serde(default = "default_max_messages")]
    pub max_messages: i32,
    /// Visibility timeout requested on receive and renewed while objects are in progress.
    #[serde(default = "default_visibility")]
    pub visibility_timeout_secs: i32,
    /// Objects downloaded and decoded at once.
    #[serde(default = "default_in_flight")]
    pub max_objects_in_flight: usize,
    /// Receives after which a failing message is dead-lettered (`ApproximateReceiveCount`).
    #[serde(default = "default_max_receive")]
    pub max_receive_count: u32,
    #[serde(default)]
    pub on_poison: OnPoison,
    #[serde(default)]
    pub key_filter: KeyFilter,
    /// When not empty, only keys starting with one of these are read.
    #[serde(default)]
    pub key_prefixes: Vec<String>,
    /// On shutdown, how long objects in progress may take to finish before they are abandoned
    /// (their messages are then redelivered later; what was committed is not read again).
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// A download (or a receive) that makes no progress for this long is given up: the object
    /// is retried through redelivery instead of its message being kept invisible forever.
    #[serde(default = "default_stall")]
    pub stall_timeout_secs: u64,
}

fn default_wait() -> i32 {
    20
}
fn default_max_messages() -> i32 {
    10
}
fn default_visibility() -> i32 {
    300
}
fn default_in_flight() -> usize {
    8
}
fn default_max_receive() -> u32 {
    5
}
fn default_grace() -> u64 {
    30
}
fn default_stall() -> u64 {
    60
}

impl SqsS3Config {
    fn validate(&self) -> Result<(), SqsS3Error> {
        let bad = |m: &str| Err(SqsS3Error::Config(m.to_string()));
        if self.queue_url.trim().is_empty() {
            return bad("queue_url is empty");
        }
        if !(0..=20).contains(&self.wait_time_secs) {
            return bad("wait_time_secs must be between 0 and 20");
        }
        if !(1..=10).contains(&self.max_messages) {
            return bad("max_messages must be between 1 and 10");
        }
        if !(1..=43_200).contains(&self.visibility_timeout_secs) {
            return bad("visibility_timeout_secs must be between 1 and 43200");
        }
        if self.max_objects_in_flight == 0 {
            return bad("max_objects_in_flight must be at least 1");
        }
        if self.max_receive_count == 0 {
            return bad("max_receive_count must be at least 1");
        }
        if self.stall_timeout_secs == 0 {
            return bad("stall_timeout_secs must be at least 1");
        }
        Ok(())
    }
}

/// The region in an AWS queue URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
pub fn region_from_queue_url(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let mut parts = host.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("sqs"), Some(region), Some("amazonaws")) => Some(region.to_string()),
        _ => None,
    }
}

#[derive(Clone)]
struct Clients {
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
}

async fn connect(cfg: &SqsS3Config) -> Result<Clients, SqsS3Error> {
    let region = cfg
        .region
        .clone()
        .or_else(|| region_from_queue_url(&cfg.queue_url));
    let loader = || {
        config_loader(
            region.as_deref(),
            cfg.profile.as_deref(),
            cfg.endpoint_url.as_deref(),
        )
    };
    let mut sdk = loader().load().await;
    if let Some(role) = &cfg.assume_role {
        let mut builder = aws_config::sts::AssumeRoleProvider::builder(&role.role_arn)
            .session_name(role.session_name.as_deref().unwrap_or("auditlake"))
            .configure(&sdk);
        if let Some(id) = &role.external_id {
            builder = builder.external_id(id);
        }
        let provider = builder.build().await;
        sdk = loader().credentials_provider(provider).load().await;
    }
    if sdk.region().is_none() {
        return Err(SqsS3Error::Config(
            "no AWS region: set `region` in [source] or AWS_REGION".to_string(),
        ));
    }
    let s3 = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(cfg.force_path_style.unwrap_or(cfg.endpoint_url.is_some()))
        .build();
    Ok(Clients {
        sqs: aws_sdk_sqs::Client::new(&sdk),
        s3: aws_sdk_s3::Client::from_conf(s3),
    })
}

/// One received message.
struct Received {
    message_id: String,
    receipt: String,
    body: String,
    receive_count: u32,
}

/// What the coordinator hears from the receiver and the object readers.
enum Ctl {
    Received(Vec<Received>),
    Items {
        unit: Arc<str>,
        items: Vec<(i64, Item<'static>)>,
    },
    /// The object was read to its end.
    End {
        unit: Arc<str>,
    },
    /// The object could not be read (or not to its end); `reason` says why.
    Failed {
        unit: Arc<str>,
        reason: String,
    },
    ReceiverStopped,
}

/// Requests to the task that talks back to SQS.
enum Ack {
    Delete {
        receipt: String,
    },
    /// Make a message visible again now (shutdown: it was not finished).
    Release {
        receipt: String,
    },
}

/// State shared with the async tasks.
struct Shared {
    /// Objects queued or being read; the receiver waits while this is at the limit.
    load: AtomicUsize,
    /// Receipt handles of messages in progress, by local key: the heartbeat extends these.
    in_progress: Mutex<HashMap<u64, String>>,
    /// Set at the end of the shutdown grace: readers stop where they are.
    abandon: AtomicBool,
    metrics: Option<Arc<crate::metrics::PipelineMetrics>>,
}

/// Counters the source reports when it stops.
#[derive(Debug, Default, Clone)]
pub struct SqsStats {
    pub messages: u64,
    pub messages_deleted: u64,
    pub messages_left: u64,
    pub test_events: u64,
    pub ignored_events: u64,
    pub digests_skipped: u64,
    pub keys_skipped: u64,
    pub objects_read: u64,
    pub objects_already_in_lake: u64,
    pub objects_failed: u64,
    pub dead_lettered: u64,
}

/// Receives and processes messages until `stop` is set; then finishes the objects in progress
/// (within `shutdown_grace_secs`), commits, deletes the messages that are complete and returns.
pub fn run(
    cfg: &SqsS3Config,
    batcher: &mut Batcher,
    ctx: &DecodeContext,
    stop: &Arc<AtomicBool>,
) -> Result<SqsStats, SqsS3Error> {
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(SqsS3Error::Runtime)?;
    let clients = rt.block_on(connect(cfg))?;
    // Fail fast, with a clear message, when the queue is wrong or not reachable.
    rt.block_on(
        clients
            .sqs
            .get_queue_attributes()
            .queue_url(&cfg.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send(),
    )
    .map_err(|e| SqsS3Error::Queue {
        queue: cfg.queue_url.clone(),
        message: error_chain(&e),
    })?;
    tracing::info!(queue = %cfg.queue_url, lake = %batcher.lake().root().display(), "receiving S3 notifications");

    let shared = Arc::new(Shared {
        load: AtomicUsize::new(0),
        in_progress: Mutex::new(HashMap::new()),
        abandon: AtomicBool::new(false),
        metrics: batcher.metrics().cloned(),
    });
    let (ctl_tx, ctl_rx) = sync_channel::<Ctl>(ctl_depth(batcher.queue_budget()));
    // Every message sends at most one acknowledgement, so this queue never holds more than
    // the messages in progress; it is bounded anyway, and the coordinator waits when it is
    // full (SQS slower than the lake).
    let (ack_tx, ack_rx) = tokio::sync::mpsc::channel::<Ack>(ACK_QUEUE);

    rt.spawn(receive_loop(
        clients.clone(),
        cfg.clone(),
        shared.clone(),
        stop.clone(),
        ctl_tx.clone(),
    ));
    let heartbeat = rt.spawn(heartbeat_loop(
        clients.clone(),
        cfg.clone(),
        shared.clone(),
        batcher.metrics().cloned(),
    ));
    let acker = rt.spawn(ack_loop(clients.clone(), cfg.queue_url.clone(), ack_rx));

    let mut coordinator = Coordinator {
        batcher,
        ctx,
        cfg,
        rt: rt.handle().clone(),
        clients,
        ctl_tx,
        shared: shared.clone(),
        ack: ack_tx,
        next_key: 0,
        messages: HashMap::new(),
        units: HashMap::new(),
        queue: VecDeque::new(),
        reading: 0,
        stopping: false,
        reports: Vec::new(),
        stats: SqsStats::default(),
    };
    let result = coordinator.run(&ctl_rx, stop);
    let stats = coordinator.stats.clone();
    drop(coordinator); // closes the acknowledgement channel: the acker finishes and returns
    drop(ctl_rx); // unblocks readers still sending
    heartbeat.abort();
    if let Err(e) = rt.block_on(acker) {
        tracing::warn!(error = %e, "acknowledgement task failed");
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    result?;
    tracing::info!(
        messages = stats.messages,
        deleted = stats.messages_deleted,
        left_on_queue = stats.messages_left,
        objects = stats.objects_read,
        objects_already_in_lake = stats.objects_already_in_lake,
        objects_failed = stats.objects_failed,
        dead_lettered = stats.dead_lettered,
        test_events = stats.test_events,
        ignored_events = stats.ignored_events,
        digests_skipped = stats.digests_skipped,
        keys_skipped = stats.keys_skipped,
        "sqs_s3 source stopped"
    );
    Ok(stats)
}

/// Acknowledgements waiting for the acker.
const ACK_QUEUE: usize = 1024;

/// Chunks of decoded items the readers may queue for the coordinator: what the memory budget
/// gives the pipeline's queues (each chunk holds up to [`ITEMS_PER_CHUNK`] items), between 2
/// and 64 (the depth before the budget existed).
fn ctl_depth(queue_budget: Option<u64>) -> usize {
    let chunk = (ITEMS_PER_CHUNK * crate::memory::QUEUED_ITEM_BYTES) as u64;
    queue_budget.map_or(64, |bytes| (bytes / chunk).clamp(2, 64) as usize)
}

/// Sends to the coordinator from async code (the channel is bounded, so this may block).
fn send_blocking(tx: &SyncSender<Ctl>, msg: Ctl) -> bool {
    tokio::task::block_in_place(|| tx.send(msg).is_ok())
}

async fn receive_loop(
    clients: Clients,
    cfg: SqsS3Config,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    ctl: SyncSender<Ctl>,
) {
    let mut backoff = Duration::from_secs(1);
    while !stop.load(Ordering::SeqCst) {
        if shared.load.load(Ordering::SeqCst) >= cfg.max_objects_in_flight {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let receive = clients
            .sqs
            .receive_message()
            .queue_url(&cfg.queue_url)
            .max_number_of_messages(cfg.max_messages)
            .wait_time_seconds(cfg.wait_time_secs)
            .visibility_timeout(cfg.visibility_timeout_secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send();
        let stopped = async {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let receive = tokio::time::timeout(
            Duration::from_secs(cfg.stall_timeout_secs + cfg.wait_time_secs as u64),
            receive,
        );
        let out = tokio::select! {
            out = receive => out,
            _ = stopped => break,
        };
        let Ok(out) = out else {
            tracing::warn!(queue = %cfg.queue_url, "a receive got no answer; retrying");
            continue;
        };
        match out {
            Ok(out) => {
                backoff = Duration::from_secs(1);
                let received: Vec<Received> = out
                    .messages()
                    .iter()
                    .filter_map(|m| {
                        let receipt = m.receipt_handle()?.to_string();
                        let receive_count = m
                            .attributes()
                            .and_then(|a| {
                                a.get(&MessageSystemAttributeName::ApproximateReceiveCount)
                            })
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(1);
                        Some(Received {
                            message_id: m.message_id().unwrap_or("").to_string(),
                            receipt,
                            body: m.body().unwrap_or("").to_string(),
                            receive_count,
                        })
                    })
                    .collect();
                if !received.is_empty() && !send_blocking(&ctl, Ctl::Received(received)) {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(queue = %cfg.queue_url, error = %error_chain(&e), retry_in_secs = backoff.as_secs(), "cannot receive messages");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
    let _ = send_blocking(&ctl, Ctl::ReceiverStopped);
}

/// Extends the visibility of every message in progress, every third of the timeout.
async fn heartbeat_loop(
    clients: Clients,
    cfg: SqsS3Config,
    shared: Arc<Shared>,
    metrics: Option<Arc<crate::metrics::PipelineMetrics>>,
) {
    use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry as Entry;
    let period = Duration::from_millis((cfg.visibility_timeout_secs as u64 * 1000 / 3).max(500));
    loop {
        tokio::time::sleep(period).await;
        let receipts: Vec<String> = match shared.in_progress.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => return,
        };
        for chunk in receipts.chunks(10) {
            let entries: Vec<Entry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, receipt)| {
                    Entry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(cfg.visibility_timeout_secs)
                        .build()
                        .ok()
                })
                .collect();
            let r = clients
                .sqs
                .change_message_visibility_batch()
                .queue_url(&cfg.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match r {
                // A failed entry is usually a message deleted meanwhile; otherwise it may be
                // redelivered, which is harmless (the journal skips what is in the lake).
                Ok(out) if !out.failed().is_empty() => {
                    if let Some(m) = &metrics {
                        m.sqs_visibility_extensions
                            .inc_by(out.successful().len() as u64);
                    }
                    tracing::debug!(
                        failed = out.failed().len(),
                        "some visibility extensions failed"
                    );
                }
                Ok(out) => {
                    if let Some(m) = &metrics {
                        m.sqs_visibility_extensions
                            .inc_by(out.successful().len() as u64);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "cannot extend the visibility of messages in progress");
                }
            }
        }
    }
}

async fn ack_loop(clients: Clients, queue_url: String, mut rx: tokio::sync::mpsc::Receiver<Ack>) {
    use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry as Entry;
    while let Some(first) = rx.recv().await {
        // Deletions go out in batches of up to 10 (whatever is waiting).
        let mut deletes = Vec::new();
        let mut next = Some(first);
        while let Some(ack) = next.take() {
            match ack {
                Ack::Delete { receipt } => deletes.push(receipt),
                Ack::Release { receipt } => {
                    let _ = clients
                        .sqs
                        .change_message_visibility()
                        .queue_url(&queue_url)
                        .receipt_handle(&receipt)
                        .visibility_timeout(0)
                        .send()
                        .await;
                }
            }
            if deletes.len() < 10 {
                next = rx.try_recv().ok();
            }
        }
        if deletes.is_empty() {
            continue;
        }
        let entries: Vec<Entry> = deletes
            .iter()
            .enumerate()
            .filter_map(|(i, receipt)| {
                Entry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .ok()
            })
            .collect();
        let r = clients
            .sqs
            .delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        let failed = match r {
            Ok(out) => out.failed().len(),
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "cannot delete messages");
                deletes.len()
            }
        };
        if failed > 0 {
            tracing::warn!(
                failed,
                "messages not deleted: they will be redelivered and found already in the lake"
            );
        }
    }
}

/// A message being worked on.
struct MessageState {
    message_id: String,
    receipt: String,
    body: String,
    receive_count: u32,
    /// Units not yet complete in the lake.
    pending: HashSet<String>,
}

/// A unit (object, or dead letter) in progress, and the messages waiting for it.
struct UnitTrack {
    waiters: Vec<u64>,
}

struct Coordinator<'a> {
    batcher: &'a mut Batcher,
    ctx: &'a DecodeContext,
    cfg: &'a SqsS3Config,
    rt: tokio::runtime::Handle,
    clients: Clients,
    ctl_tx: SyncSender<Ctl>,
    shared: Arc<Shared>,
    ack: tokio::sync::mpsc::Sender<Ack>,
    next_key: u64,
    messages: HashMap<u64, MessageState>,
    units: HashMap<String, UnitTrack>,
    /// Objects waiting for a reader.
    queue: VecDeque<(String, ObjectRef)>,
    reading: usize,
    stopping: bool,
    reports: Vec<CommitReport>,
    stats: SqsStats,
}

impl Coordinator<'_> {
    fn run(&mut self, rx: &Receiver<Ctl>, stop: &AtomicBool) -> Result<(), SqsS3Error> {
        let mut receiver_stopped = false;
        let mut grace_ends: Option<Instant> = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Ctl::ReceiverStopped) => receiver_stopped = true,
                Ok(ctl) => self.handle(ctl)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if stop.load(Ordering::SeqCst) && !self.stopping {
                self.stopping = true;
                grace_ends =
                    Some(Instant::now() + Duration::from_secs(self.cfg.shutdown_grace_secs));
                tracing::info!(
                    objects_in_progress = self.reading,
                    "stopping: no new messages; finishing the objects in progress"
                );
            }
            if grace_ends.is_some_and(|t| Instant::now() >= t)
                && !self.shared.abandon.swap(true, Ordering::SeqCst)
            {
                tracing::warn!(
                    objects_in_progress = self.reading,
                    "shutdown grace over: abandoning the objects in progress (their messages will be redelivered)"
                );
            }
            self.start_queued();
            if self.batcher.is_due() {
                let report = self.batcher.flush()?;
                self.reports.push(report);
            }
            self.settle();
            if self.stopping && receiver_stopped && self.reading == 0 {
                break;
            }
            if grace_ends.is_some_and(|t| Instant::now() >= t + Duration::from_secs(30)) {
                tracing::error!(
                    objects_in_progress = self.reading,
                    "objects still in progress 30 s after the shutdown grace; stopping without them"
                );
                break;
            }
        }
        // Objects never started: their units are forgotten, their messages come back later.
        for (unit, _) in std::mem::take(&mut self.queue) {
            self.batcher.abandon_unit(&unit);
        }
        let report = self.batcher.finish()?;
        self.reports.push(report);
        self.settle();
        for (_, m) in std::mem::take(&mut self.messages) {
            self.stats.messages_left += 1;
            let _ = self.ack.blocking_send(Ack::Release { receipt: m.receipt });
        }
        if let Ok(mut p) = self.shared.in_progress.lock() {
            p.clear();
        }
        Ok(())
    }

    fn handle(&mut self, ctl: Ctl) -> Result<(), SqsS3Error> {
        match ctl {
            Ctl::Received(messages) => {
                for m in messages {
                    self.on_message(m)?;
                }
            }
            Ctl::Items { unit, items } => {
                if self.units.contains_key(&*unit) {
                    for (position, item) in items {
                        if let Some(report) = self.batcher.push(&unit, position, item)? {
                            self.reports.push(report);
                        }
                    }
                }
            }
            Ctl::End { unit } => {
                self.reading = self.reading.saturating_sub(1);
                self.stats.objects_read += 1;
                self.batcher.end_unit(&unit);
            }
            Ctl::Failed { unit, reason } => {
                self.reading = self.reading.saturating_sub(1);
                self.stats.objects_failed += 1;
                self.batcher.abandon_unit(&unit);
                let waiters = self
                    .units
                    .remove(&*unit)
                    .map(|t| t.waiters)
                    .unwrap_or_default();
                tracing::warn!(unit = %unit, reason = %reason, "object not read");
                for key in waiters {
                    self.message_failed(key, &unit, &format!("dead:{unit}"), &reason)?;
                }
            }
            Ctl::ReceiverStopped => {}
        }
        self.update_load();
        Ok(())
    }

    fn on_message(&mut self, m: Received) -> Result<(), SqsS3Error> {
        self.stats.messages += 1;
        if let Some(m) = self.batcher.metrics() {
            m.sqs_messages_received.inc();
        }
        let key = self.next_key;
        self.next_key += 1;
        tracing::debug!(message_id = %m.message_id, receive_count = m.receive_count, "message received");
        let state = MessageState {
            message_id: m.message_id,
            receipt: m.receipt,
            body: m.body,
            receive_count: m.receive_count,
            pending: HashSet::new(),
        };
        let parsed = parse_body(&state.body);
        let dead_unit = format!("dead:sqs-message:{}", state.message_id);
        self.messages.insert(key, state);
        let notification = match parsed {
            Ok(n) => n,
            Err(e) => return self.message_failed(key, "", &dead_unit, &e.to_string()),
        };
        if notification.test_event {
            self.stats.test_events += 1;
            tracing::info!("S3 test event received (the notification is configured); deleting it");
        }
        self.stats.ignored_events += notification.ignored_events.len() as u64;
        for object in notification.objects {
            match classify(&object.key, self.cfg.key_filter, &self.cfg.key_prefixes) {
                KeyVerdict::Digest => {
                    self.stats.digests_skipped += 1;
                    continue;
                }
                KeyVerdict::Skip => {
                    self.stats.keys_skipped += 1;
                    tracing::debug!(object = %object.url(), "key not selected by the key filter; skipped");
                    continue;
                }
                KeyVerdict::Read => {}
            }
            let unit = object.unit_id();
            if let Some(track) = self.units.get_mut(&unit) {
                // Already in progress for another message (a repeated notification).
                track.waiters.push(key);
                self.pending_insert(key, unit);
                continue;
            }
            match self.batcher.begin_unit(&unit) {
                UnitStart::AlreadyInLake => {
                    self.stats.objects_already_in_lake += 1;
                    tracing::debug!(object = %object.url(), "object already in the lake");
                }
                UnitStart::Read => {
                    self.units
                        .insert(unit.clone(), UnitTrack { waiters: vec![key] });
                    self.pending_insert(key, unit.clone());
                    self.queue.push_back((unit, object));
                }
            }
        }
        self.check_done(key);
        self.update_load();
        Ok(())
    }

    fn pending_insert(&mut self, key: u64, unit: String) {
        if let Some(m) = self.messages.get_mut(&key) {
            m.pending.insert(unit);
        }
    }

    /// A message could not be handled because of `failed_unit` (empty: its body). Dead-letter
    /// it once it has been received often enough; otherwise leave it to be redelivered.
    fn message_failed(
        &mut self,
        key: u64,
        failed_unit: &str,
        dead_unit: &str,
        reason: &str,
    ) -> Result<(), SqsS3Error> {
        let Some(m) = self.messages.get_mut(&key) else {
            return Ok(());
        };
        m.pending.remove(failed_unit);
        let give_up = self.cfg.on_poison == OnPoison::DeadLetter
            && m.receive_count >= self.cfg.max_receive_count;
        if !give_up {
            tracing::warn!(
                message_id = %m.message_id,
                receive_count = m.receive_count,
                max_receive_count = self.cfg.max_receive_count,
                reason = %reason,
                "message left on the queue for redelivery"
            );
            self.stats.messages_left += 1;
            self.messages.remove(&key);
            if let Ok(mut p) = self.shared.in_progress.lock() {
                p.remove(&key);
            }
            return Ok(());
        }
        let reason = format!(
            "SQS message {} received {} times: {reason}",
            m.message_id, m.receive_count
        );
        let body = m.body.clone();
        tracing::warn!(reason = %reason, "dead-lettering message");
        if let Some(track) = self.units.get_mut(dead_unit) {
            track.waiters.push(key);
            self.pending_insert(key, dead_unit.to_string());
        } else if self.batcher.begin_unit(dead_unit) == UnitStart::Read {
            self.stats.dead_lettered += 1;
            let source = failed_unit
                .split_once('#')
                .map_or(failed_unit, |(url, _)| url);
            let source = if source.is_empty() { "sqs" } else { source };
            let dead = DeadLetter::new(
                self.ctx.pipeline.clone(),
                Stamp {
                    source: Arc::from(source),
                    partition: None,
                    ingest_time_ms: now_ms(),
                }
                .origin(0),
                reason,
                body.as_bytes(),
                self.ctx.limits.dead_letter_raw_cap,
                now_ms(),
            );
            self.units
                .insert(dead_unit.to_string(), UnitTrack { waiters: vec![key] });
            self.pending_insert(key, dead_unit.to_string());
            if let Some(report) = self.batcher.push(dead_unit, 0, Item::Dead(dead))? {
                self.reports.push(report);
            }
            self.batcher.end_unit(dead_unit);
        }
        self.check_done(key);
        Ok(())
    }

    /// Deletes the message if nothing it names is pending, else keeps its visibility extended.
    fn check_done(&mut self, key: u64) {
        let Some(m) = self.messages.get(&key) else {
            return;
        };
        if m.pending.is_empty() {
            if let Some(m) = self.messages.remove(&key) {
                self.stats.messages_deleted += 1;
                if let Some(metrics) = self.batcher.metrics() {
                    // In flight first: a scrape that sees the deletion also sees it no longer
                    // in flight.
                    metrics
                        .sqs_messages_in_flight
                        .set(self.messages.len() as i64);
                    std::sync::atomic::fence(Ordering::Release);
                    metrics.sqs_messages_deleted.inc();
                }
                let _ = self.ack.blocking_send(Ack::Delete { receipt: m.receipt });
            }
            if let Ok(mut p) = self.shared.in_progress.lock() {
                p.remove(&key);
            }
        } else if let Ok(mut p) = self.shared.in_progress.lock() {
            p.entry(key).or_insert_with(|| m.receipt.clone());
        }
    }

    /// Applies commit reports: units now complete release the messages waiting for them.
    fn settle(&mut self) {
        for report in std::mem::take(&mut self.reports) {
            for unit in report.completed_units {
                let Some(track) = self.units.remove(&unit) else {
                    continue;
                };
                for key in track.waiters {
                    if let Some(m) = self.messages.get_mut(&key) {
                        m.pending.remove(&unit);
                    }
                    self.check_done(key);
                }
            }
        }
    }

    fn start_queued(&mut self) {
        while !self.stopping && self.reading < self.cfg.max_objects_in_flight {
            let Some((unit, object)) = self.queue.pop_front() else {
                break;
            };
            self.reading += 1;
            self.rt.spawn(read_object(
                self.clients.clone(),
                Duration::from_secs(self.cfg.stall_timeout_secs),
                object,
                Arc::from(unit),
                self.ctx.clone(),
                self.ctl_tx.clone(),
                self.shared.clone(),
            ));
        }
        self.update_load();
    }

    fn update_load(&self) {
        if let Some(m) = self.batcher.metrics() {
            m.sqs_messages_in_flight.set(self.messages.len() as i64);
        }
        self.shared
            .load
            .store(self.reading + self.queue.len(), Ordering::SeqCst);
    }
}

/// Downloads one object and decodes it on a blocking thread as the bytes arrive.
async fn read_object(
    clients: Clients,
    stall: Duration,
    object: ObjectRef,
    unit: Arc<str>,
    ctx: DecodeContext,
    ctl: SyncSender<Ctl>,
    shared: Arc<Shared>,
) {
    let url = object.url();
    tracing::info!(object = %url, size = object.size, "reading object");
    let mut request = clients
        .s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key);
    if let Some(version) = &object.version_id {
        request = request.version_id(version);
    }
    let mut body = match tokio::time::timeout(stall, request.send()).await {
        Ok(Ok(out)) => out.body,
        Ok(Err(e)) => {
            let gone = e
                .as_service_error()
                .is_some_and(aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key);
            let reason = if gone {
                // Given up after the retries, this is the lake's only record of those events.
                format!(
                    "{url} does not exist (NoSuchKey): the events it held are missing from the lake ({})",
                    error_chain(&e)
                )
            } else {
                format!("cannot get {url}: {}", error_chain(&e))
            };
            let _ = send_blocking(&ctl, Ctl::Failed { unit, reason });
            return;
        }
        Err(_) => {
            let reason = format!("cannot get {url}: no answer in {} s", stall.as_secs());
            let _ = send_blocking(&ctl, Ctl::Failed { unit, reason });
            return;
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(8);
    let transport_error = Arc::new(Mutex::new(None::<String>));
    let reader = ChannelReader {
        rx,
        current: bytes::Bytes::new(),
        error: transport_error.clone(),
    };
    let stamp = Stamp {
        source: Arc::from(url.as_str()),
        partition: None,
        ingest_time_ms: now_ms(),
    };
    let ctl_for_panic = ctl.clone();
    let unit_for_panic = unit.clone();
    let metrics = shared.metrics.clone();
    let decoder = tokio::task::spawn_blocking(move || {
        decode_object(reader, &transport_error, &ctx, &stamp, unit, &ctl, &shared)
    });
    loop {
        let next: Option<Result<bytes::Bytes, String>> =
            match tokio::time::timeout(stall, body.next()).await {
                Ok(next) => next.map(|r| r.map_err(|e| error_chain(&e))),
                Err(_) => Some(Err(format!("no data for {} s", stall.as_secs()))),
            };
        let sent = match next {
            Some(Ok(chunk)) => {
                if let Some(m) = &metrics {
                    m.input_bytes.inc_by(chunk.len() as u64);
                }
                tx.send(Ok(chunk)).await
            }
            Some(Err(e)) => {
                let _ = tx.send(Err(io::Error::other(e))).await;
                break;
            }
            None => break,
        };
        if sent.is_err() {
            break; // the decoder stopped
        }
    }
    drop(tx);
    if let Err(e) = decoder.await {
        // The decoder died without reporting: report for it, so the object is not waited for.
        tracing::error!(object = %url, error = %e, "object decoder failed");
        let _ = send_blocking(
            &ctl_for_panic,
            Ctl::Failed {
                unit: unit_for_panic,
                reason: format!("decoding {url} failed: {e}"),
            },
        );
    }
}

/// A blocking `Read` over the chunks of a download.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
    error: Arc<Mutex<Option<String>>>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    if let Ok(mut slot) = self.error.lock() {
                        *slot = Some(e.to_string());
                    }
                    return Err(e);
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Items of an object held back until one is an event: an object whose first this many items
/// are all dead letters is judged unreadable. Its own bound, not the decoder's chunk size,
/// which shrank to 16 items for speed.
const HELD_UNTIL_JUDGED: usize = 1024;

/// Decodes an object and tells the coordinator how it went. An object that yields nothing but
/// dead letters (not gzip, damaged from the start, not JSON) is a failure of the whole object:
/// nothing of it is written and the message is redelivered (and dead-lettered in the end), since
/// the object may still be being fixed or replaced. An object cut short by the network is
/// abandoned where it stopped; what was committed of it is skipped on redelivery.
fn decode_object(
    reader: ChannelReader,
    transport_error: &Mutex<Option<String>>,
    ctx: &DecodeContext,
    stamp: &Stamp,
    unit: Arc<str>,
    ctl: &SyncSender<Ctl>,
    shared: &Shared,
) {
    let mut held: Vec<(i64, Item<'static>)> = Vec::new();
    let mut passed = false;
    let mut stopped: Option<String> = None;
    let transport = || transport_error.lock().ok().and_then(|e| e.clone());
    decode_unit_chunked(
        Input::Stream(Box::new(reader)),
        ctx,
        stamp,
        &mut |mut items| {
            if let Some(e) = transport() {
                stopped = Some(format!("download of {} failed: {e}", stamp.source));
                return ControlFlow::Break(());
            }
            if shared.abandon.load(Ordering::SeqCst) {
                stopped = Some("shutdown before the object was read to its end".to_string());
                return ControlFlow::Break(());
            }
            if !passed {
                held.append(&mut items);
                if held.len() < HELD_UNTIL_JUDGED
                    && held.iter().all(|(_, i)| matches!(i, Item::Dead(_)))
                {
                    return ControlFlow::Continue(());
                }
                passed = true;
                items = std::mem::take(&mut held);
            }
            if ctl
                .send(Ctl::Items {
                    unit: unit.clone(),
                    items,
                })
                .is_err()
            {
                stopped = Some("stopping".to_string());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        },
    );
    if stopped.is_none()
        && let Some(e) = transport()
    {
        stopped = Some(format!("download of {} failed: {e}", stamp.source));
    }
    let msg = match stopped {
        Some(reason) => Ctl::Failed { unit, reason },
        None if !passed && !held.is_empty() => {
            let first = held.iter().find_map(|(_, i)| match i {
                Item::Dead(d) => Some(d.reason.clone()),
                _ => None,
            });
            Ctl::Failed {
                unit,
                reason: format!(
                    "{} is unreadable: {}",
                    stamp.source,
                    first.unwrap_or_default()
                ),
            }
        }
        None => Ctl::End { unit },
    };
    let _ = ctl.send(msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_from_aws_queue_urls() {
        assert_eq!(
            region_from_queue_url("https://sqs.eu-west-1.amazonaws.com/111122223333/trail"),
            Some("eu-west-1".to_string())
        );
        assert_eq!(
            region_from_queue_url("http://127.0.0.1:5000/123456789012/q"),
            None
        );
    }

    #[test]
    fn config_defaults_and_validation() {
        let cfg: SqsS3Config =
            toml::from_str("queue_url = 'https://sqs.us-east-1.amazonaws.com/1/q'").expect("toml");
        assert_eq!(cfg.wait_time_secs, 20);
        assert_eq!(cfg.max_messages, 10);
        assert_eq!(cfg.key_filter, KeyFilter::Cloudtrail);
        assert_eq!(cfg.on_poison, OnPoison::DeadLetter);
        assert!(cfg.validate().is_ok());
        let bad: SqsS3Config = toml::from_str("queue_url = 'q'\nmax_messages = 11").expect("toml");
        assert!(bad.validate().is_err());
    }

    #[test]
    fn shipped_pipeline_parses_and_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("pipelines")
            .join("aws-cloudtrail.toml");
        let cfg = crate::config::PipelineConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let crate::config::SourceConfig::SqsS3(source) = cfg.source else {
            panic!("aws-cloudtrail.toml must use the sqs_s3 source");
        };
        source.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(source.visibility_timeout_secs, 300);
    }

    #[test]
    fn assume_role_debug_hides_the_external_id() {
        let cfg: SqsS3Config = toml::from_str(
            "queue_url = 'q'\n[assume_role]\nrole_arn = 'arn:aws:iam::1:role/r'\nexternal_id = 'sekrit'",
        )
        .expect("toml");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(shown.contains("arn:aws:iam::1:role/r"), "{shown}");
    }
}
