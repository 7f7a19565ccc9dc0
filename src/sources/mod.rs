//! Sources: where input units come from.

pub mod files;
mod inbox;
pub mod kafka;
pub mod sqs_s3;
