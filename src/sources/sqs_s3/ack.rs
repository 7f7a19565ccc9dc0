//! Acknowledgement: deletes the messages whose objects are all in the lake, and releases the
//! unfinished ones at shutdown (the coordinator decides which, after each commit).

use crate::aws::error_chain;

use super::{Ack, Clients};

pub(super) async fn ack_loop(
    clients: Clients,
    queue_url: String,
    mut rx: tokio::sync::mpsc::Receiver<Ack>,
) {
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
