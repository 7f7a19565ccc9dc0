//! auditlake: multi-cloud audit logs into an analytics-ready CIEM lake.
//!
//! Data flows sources → decode → normalize → sink:
//! - [`sources`]: where input units (files, objects, partitions) come from;
//! - [`decode`]: bytes (gzip or plain) into JSON values, streaming;
//! - [`normalize`]: values into [`event::CiemEvent`] rows, per cloud;
//! - [`pipeline`]: batching, deduplication and the flush policy;
//! - [`sink`]: Parquet files committed to the lake through a journal.

pub mod assets;
pub mod aws;
pub mod config;
pub mod decode;
pub mod event;
pub mod memory;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod schema;
pub mod sink;
pub mod sources;
pub mod sync;
#[cfg(test)]
mod testing;
pub mod validate;
