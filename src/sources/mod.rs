//! Sources: where input units come from.

pub mod files;
pub mod inbox;
pub mod kafka;
pub mod sqs_s3;
