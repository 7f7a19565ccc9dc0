//! Receiving: long-polls the queue while the coordinator has room, and hands the messages over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;

use crate::aws::error_chain;

use super::{Clients, Ctl, Received, Shared, SqsS3Config, send_blocking};

pub(super) async fn receive_loop(
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
