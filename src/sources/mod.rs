//! Sources: where input units come from.

pub mod files;
pub mod kafka;
