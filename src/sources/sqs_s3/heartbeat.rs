//! The visibility heartbeat: messages in progress stay invisible to other consumers until
//! they are deleted or released.

use std::sync::Arc;
use std::time::Duration;

use crate::aws::error_chain;

use super::{Clients, Shared, SqsS3Config};

/// Extends the visibility of every message in progress, every third of the timeout.
pub(super) async fn heartbeat_loop(
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
