//! Sources: where input units come from.

pub mod files;
pub mod kafka;
pub mod sqs_s3;
