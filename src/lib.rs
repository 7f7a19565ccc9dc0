//! auditlake: multi-cloud audit logs into an analytics-ready CIEM lake.
//!
//! Data flows sources → decode → normalize → batch → sink:
//! - [`sources`]: where input units (files, objects, partitions) come from;
//! - [`decode`]: bytes (gzip or plain) into JSON values, streaming;
//! - [`normalize`]: values into [`event::CiemEvent`] rows, per cloud, and one input unit into
//!   positioned items ([`normalize::unit`]);
//! - [`batch`]: batching, deduplication and the flush policy;
//! - [`sink`]: Parquet files committed to the lake through a journal.

pub mod assets;
pub mod aws;
pub mod batch;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod errors;
pub mod event;
pub mod memory;
pub mod metrics;
pub mod normalize;
pub mod redact;
pub mod replay;
pub mod schema;
pub mod sink;
pub mod sources;
pub mod sync;
#[cfg(test)]
mod testing;
pub mod validate;
