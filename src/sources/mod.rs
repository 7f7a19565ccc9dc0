//! Sources: where input units come from.

pub mod files;
pub mod sqs_s3;
