//! Cloud assets: the rows of the `asset_changes` and `asset_inventory` datasets (columns in
//! `schemas/asset_changes.json` and `schemas/asset_inventory.json`).
//!
//! Changes come from two places: [`audit`] derives them from successful change-making audit
//! events (in every pipeline, committed in the same batch as the events), and the account sync
//! (`crate::sync`) derives them by diffing inventory snapshots.

pub mod audit;

use crate::event::Provider;

/// What happened to an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeType {
    Created,
    Modified,
    Deleted,
    Attached,
    Detached,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Created => "created",
            ChangeType::Modified => "modified",
            ChangeType::Deleted => "deleted",
            ChangeType::Attached => "attached",
            ChangeType::Detached => "detached",
        }
    }
}

/// Where a change was learnt from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeOrigin {
    Audit,
    Sync,
}

impl ChangeOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOrigin::Audit => "audit",
            ChangeOrigin::Sync => "sync",
        }
    }
}

/// One row of `asset_changes`. Field names follow the column names.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetChange {
    pub time_ms: i64,
    pub cloud_provider: Provider,
    pub cloud_account_uid: Option<String>,
    pub cloud_region: Option<String>,
    pub resource_type: String,
    pub native_type: Option<String>,
    pub resource_uid: String,
    pub resource_name: Option<String>,
    pub change_type: ChangeType,
    pub origin: ChangeOrigin,
    pub action: Option<String>,
    pub related_type: Option<String>,
    pub related_uid: Option<String>,
    pub actor_user_uid: Option<String>,
    pub actor_user_name: Option<String>,
    pub actor_credential_uid: Option<String>,
    pub source_event_id: Option<String>,
    pub sync_run_id: Option<String>,
    pub before_state: Option<String>,
    pub after_state: Option<String>,
    pub tags: Option<String>,
    pub ingest_time_ms: i64,
}

impl AssetChange {
    /// Rough heap footprint, for the flush policy.
    pub fn estimated_bytes(&self) -> usize {
        let s = |v: &Option<String>| v.as_ref().map_or(0, String::len);
        std::mem::size_of::<Self>()
            + self.resource_type.len()
            + self.resource_uid.len()
            + [
                &self.cloud_account_uid,
                &self.cloud_region,
                &self.native_type,
                &self.resource_name,
                &self.action,
                &self.related_type,
                &self.related_uid,
                &self.actor_user_uid,
                &self.actor_user_name,
                &self.actor_credential_uid,
                &self.source_event_id,
                &self.sync_run_id,
                &self.before_state,
                &self.after_state,
                &self.tags,
            ]
            .iter()
            .map(|v| s(v))
            .sum::<usize>()
    }
}

/// One row of `asset_inventory`: an asset as one sync run saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryItem {
    pub run_id: String,
    pub run_time_ms: i64,
    pub account_name: String,
    pub cloud_provider: Provider,
    pub cloud_account_uid: Option<String>,
    pub cloud_region: Option<String>,
    pub resource_type: String,
    pub native_type: Option<String>,
    pub resource_uid: String,
    pub resource_name: Option<String>,
    pub status: Option<String>,
    pub created_time_ms: Option<i64>,
    /// JSON object text.
    pub attributes: Option<String>,
    /// JSON object text.
    pub tags: Option<String>,
}
