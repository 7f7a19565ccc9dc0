//! The coordinator: the caller's thread, owner of the batcher and of all bookkeeping. It turns
//! messages into objects to read, feeds what the readers decode to the batcher, and after each
//! commit deletes the messages whose objects are all in the lake (and only those).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use crate::batch::{Batcher, CommitReport, UnitStart};
use crate::event::{DeadLetter, now_ms};
use crate::normalize::Stamp;
use crate::normalize::unit::{DecodeContext, Item};

use super::config::OnPoison;
use super::notification::{KeyVerdict, ObjectRef, classify, parse_body};
use super::object::read_object;
use super::{Ack, Clients, Ctl, Received, Shared, SqsS3Config, SqsS3Error, SqsStats};

/// A message being worked on.
pub(super) struct MessageState {
    message_id: String,
    receipt: String,
    body: String,
    receive_count: u32,
    /// Units not yet complete in the lake.
    pending: HashSet<String>,
}

/// A unit (object, or dead letter) in progress, and the messages waiting for it.
pub(super) struct UnitTrack {
    waiters: Vec<u64>,
}

pub(super) struct Coordinator<'a> {
    pub(super) batcher: &'a mut Batcher,
    pub(super) ctx: &'a DecodeContext,
    pub(super) cfg: &'a SqsS3Config,
    pub(super) rt: tokio::runtime::Handle,
    pub(super) clients: Clients,
    pub(super) ctl_tx: SyncSender<Ctl>,
    pub(super) shared: Arc<Shared>,
    pub(super) ack: tokio::sync::mpsc::Sender<Ack>,
    pub(super) next_key: u64,
    pub(super) messages: HashMap<u64, MessageState>,
    pub(super) units: HashMap<String, UnitTrack>,
    /// Objects waiting for a reader.
    pub(super) queue: VecDeque<(String, ObjectRef)>,
    pub(super) reading: usize,
    pub(super) stopping: bool,
    pub(super) reports: Vec<CommitReport>,
    pub(super) stats: SqsStats,
}

impl Coordinator<'_> {
    pub(super) fn run(&mut self, rx: &Receiver<Ctl>, stop: &AtomicBool) -> Result<(), SqsS3Error> {
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
