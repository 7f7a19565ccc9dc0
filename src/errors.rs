//! Errors at the binary's edge: which ones are the user's to fix (exit status 2), and the text
//! of an error with its causes.

use crate::config::ConfigError;
use crate::sources::files::FilesError;
use crate::sources::kafka::KafkaError;
use crate::sources::sqs_s3::SqsS3Error;

/// A mistake in the command line or the configuration, said in its message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// True when the error, or one of its causes, is the user's to fix (configuration, a missing
/// input, a usage mistake) rather than a failure while running.
pub fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<ConfigError>().is_some()
            || matches!(
                c.downcast_ref::<FilesError>(),
                Some(FilesError::Missing { .. })
            )
            || c.downcast_ref::<UsageError>().is_some()
            || matches!(
                c.downcast_ref::<KafkaError>(),
                Some(KafkaError::Config(_) | KafkaError::SecretFile { .. })
            )
            || matches!(c.downcast_ref::<SqsS3Error>(), Some(SqsS3Error::Config(_)))
    })
}

/// An error and its causes, `: `-separated, leaving out a cause whose text the message before
/// it already ends with (errors that put their source in their own message, as most of ours
/// do, would otherwise print it twice: "…: Permission denied (os error 13): Permission denied
/// (os error 13)").
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
