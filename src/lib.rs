//! auditlake: multi-cloud audit logs into an analytics-ready CIEM lake.
//!
//! Data flows sources → decode → normalize → batch → sink:
//! - [`sources`]: where input units (files, objects, partitions) come from;
//! - [`decode`]: bytes (gzip or plain) into JSON values, streaming;
//! - [`normalize`]: values into [`event::CiemEvent`] rows, per cloud, and one input unit into
//!   positioned items ([`normalize::unit`]);
//! - [`batch`]: batching, deduplication and the flush policy;
//! - [`sink`]: Parquet files committed to the lake through a journal.
//!
//! Beside the flow: the rows and their schema ([`event`], [`schema`], [`redact`]), asset
//! changes ([`assets`]) and the account sync ([`sync`]); the commands that run it ([`replay`],
//! [`daemon`]) with their configuration ([`config`], [`validate`]); and the leaves every part
//! reports into or draws from ([`metrics`], [`memory`], [`errors`], [`aws`]).

// The flow, in its order.
pub mod sources;

pub mod decode;

pub mod normalize;

pub mod batch;

pub mod sink;

// What flows: rows, their schema, what is redacted, asset changes; the account sync.
pub mod assets;
pub mod ciem;
pub mod event;
pub mod redact;
pub mod schema;
pub mod sync;

// The commands and their configuration.
pub mod config;
pub mod daemon;
pub mod replay;
pub mod validate;

// Leaves.
pub mod aws;
pub mod errors;
pub mod memory;
pub mod metrics;

#[cfg(test)]
mod testing;
