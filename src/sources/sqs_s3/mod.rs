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
//!
//! Files: this one starts the runtime and its tasks ([`run`]); `config` (the `[source]`
//! section), `notification` (message bodies into objects), `receive` (long polling),
//! `heartbeat` (visibility extensions), `coordinator` (bookkeeping, and which messages may be
//! deleted after a commit), `ack` (deletions and releases), `object` (download and decoding).

mod ack;
mod config;
mod coordinator;
mod heartbeat;
pub mod notification;
mod object;
mod receive;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::aws::{config_loader, error_chain};
use crate::batch::Batcher;
use crate::normalize::unit::{DecodeContext, ITEMS_PER_CHUNK, Item};
use crate::sink::SinkError;
use ack::ack_loop;
pub use config::{AssumeRoleConfig, OnPoison, SqsS3Config, region_from_queue_url};
use coordinator::Coordinator;
use heartbeat::heartbeat_loop;
use receive::receive_loop;

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
