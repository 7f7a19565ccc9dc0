//! Object reading: streams an object from S3 and decodes it on a blocking thread as it
//! arrives, through a bounded channel.

use std::io::{self, Read};
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::aws::error_chain;
use crate::decode::Input;
use crate::event::now_ms;
use crate::normalize::Stamp;
use crate::normalize::unit::{DecodeContext, Item, decode_unit_chunked};

use super::notification::ObjectRef;
use super::{Clients, Ctl, Shared, send_blocking};

/// Downloads one object and decodes it on a blocking thread as the bytes arrive.
pub(super) async fn read_object(
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
