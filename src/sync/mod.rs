//! The periodic account sync: per configured cloud account, an AccessKey status check, region
//! discovery, host and cloud-product inventory, and the diff against the last snapshot.
//!
//! A run writes its inventory to `asset_inventory/` and the differences to `asset_changes/`
//! (origin `sync`), then persists the snapshot it diffed against in
//! `<lake>/_auditlake/sync/<account>.json`, so the next run (even after a restart) diffs
//! against it. A (resource type, region) scope seen for the first time is a baseline: its
//! assets are recorded, not reported as created. A scope whose listing failed is carried over
//! unchanged, so an API error never reads as "everything was deleted".

pub mod aws;
pub mod baidu;
pub mod cli;
pub mod config;
pub mod ctyun;
pub mod entitlements;
pub mod http;
pub mod huawei;
pub mod run;
pub mod sign;
pub mod tencent;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::assets::{AssetChange, ChangeOrigin, ChangeType, InventoryItem};
use crate::ciem::model::Entitlements;
use crate::event::{Provider, now_ms};
use crate::metrics::AccountSyncMetrics;
use crate::sink::SinkError;
use crate::sink::lake::{PendingBatch, write_unjournaled};
use crate::sink::parquet::ParquetOptions;
use config::{AccountConfig, Feature, Regions};

/// An asset as a cloud API describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    pub region: Option<String>,
    pub resource_type: &'static str,
    pub native_type: &'static str,
    pub uid: String,
    pub name: Option<String>,
    pub status: Option<String>,
    pub created_ms: Option<i64>,
    pub attributes: Map<String, Value>,
    pub tags: Map<String, Value>,
}

/// How a failed call failed, for the key check and `accounts check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The key is unknown, disabled or the signature is wrong.
    InvalidKey,
    /// The key is valid but lacks permission for the call.
    Denied,
    /// Anything else (network, throttling, server errors).
    Other,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct ApiError {
    pub call: &'static str,
    pub failure: Failure,
    /// The cloud's error code, e.g. `InvalidClientTokenId`, `AuthFailure.SecretIdNotFound`.
    pub code: Option<String>,
    pub message: String,
}

/// Classifies a cloud error code.
pub fn classify(code: &str) -> Failure {
    const INVALID: &[&str] = &[
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AuthFailure",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "AuthFailure.SecretIdNotFound",
        "AuthFailure.SignatureFailure",
        "AuthFailure.SignatureExpire",
        "AuthFailure.TokenFailure",
        "AuthFailure.InvalidSecretId",
    ];
    if INVALID.contains(&code) {
        Failure::InvalidKey
    } else if code.contains("AccessDenied")
        || code.contains("UnauthorizedOperation")
        || code.contains("Unauthorized")
        || code == "Forbidden"
    {
        Failure::Denied
    } else {
        Failure::Other
    }
}

/// Who the key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account_uid: String,
    pub principal: String,
}

/// One kind of cloud product: a listing call and its least-privilege policy. Adding a
/// product is one small implementation of this trait, listed in the cloud's `products()`.
pub trait Product<C>: Send + Sync {
    /// The API call, as `accounts check` prints it (e.g. `s3:ListBuckets`).
    fn call(&self) -> &'static str;
    /// Listed once per region (true) or once per account (false).
    fn regional(&self) -> bool;
    /// The least-privilege policy that grants the call.
    fn policy(&self) -> &'static str;
    /// The resource types this product yields (the scopes its listing covers).
    fn resource_types(&self) -> &'static [&'static str];
    fn list<'a>(
        &'a self,
        cloud: &'a C,
        region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>>;
}

/// What a cloud offers the sync.
pub trait Cloud: Send + Sync + Sized {
    fn provider(&self) -> Provider;
    fn whoami(&self) -> BoxFuture<'_, Result<Identity, ApiError>>;
    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>>;
    fn hosts<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>>;
    fn products(&self) -> Vec<Box<dyn Product<Self>>>;
    /// Calls and the policy that grants them, for `accounts check`.
    fn who_am_i_call(&self) -> &'static str;
    fn regions_call(&self) -> &'static str;
    fn hosts_call(&self) -> &'static str;
    fn policy_for(&self, feature: Feature) -> &'static str;
    /// The account's identities, policies and credentials (feature `entitlements`).
    fn entitlements(&self) -> BoxFuture<'_, Result<Entitlements, ApiError>> {
        let provider = self.provider().as_str();
        async move {
            Err(ApiError {
                call: "entitlements",
                failure: Failure::Other,
                code: None,
                message: format!("the entitlements feature is not supported for {provider} yet"),
            })
        }
        .boxed()
    }
    /// The calls [`Cloud::entitlements`] makes, as `accounts check` prints them.
    fn entitlements_call(&self) -> &'static str {
        "entitlements"
    }
}

// ----------------------------------------------------------------------------------------
// Key status, kept for the metrics endpoint.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Valid,
    Invalid,
    InsufficientPermission,
    /// The check itself failed (network, server error): the key's state is unknown.
    Unknown,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Valid => "valid",
            KeyStatus::Invalid => "invalid",
            KeyStatus::InsufficientPermission => "insufficient_permission",
            KeyStatus::Unknown => "unknown",
        }
    }
}

/// The last key check of one account, as the metric reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    pub account: String,
    pub provider: Provider,
    pub status: KeyStatus,
    /// The cloud's error code when not valid.
    pub error_code: Option<String>,
    pub checked_at_ms: i64,
}

/// Key-check results of every account (the last check of each), and where the sync reports
/// them and its runs: the daemon's `/metrics` ([`crate::metrics::AccountSyncMetrics`]), or
/// nowhere (the `sync` command).
#[derive(Debug, Clone, Default)]
pub struct SyncMetrics {
    checks: Arc<Mutex<BTreeMap<String, KeyCheck>>>,
    report: Option<AccountSyncMetrics>,
}

impl SyncMetrics {
    /// Results reported into the daemon's metrics.
    pub fn reporting_to(report: AccountSyncMetrics) -> Self {
        SyncMetrics {
            checks: Arc::default(),
            report: Some(report),
        }
    }

    /// Records a check; returns the previous status (to log state changes once).
    pub fn record(&self, check: KeyCheck) -> Option<KeyStatus> {
        if let Some(report) = &self.report {
            let statuses = [
                KeyStatus::Valid,
                KeyStatus::Invalid,
                KeyStatus::InsufficientPermission,
                KeyStatus::Unknown,
            ]
            .map(|s| (s.as_str(), check.status == s));
            report.key_checked(
                &check.account,
                check.provider.as_str(),
                &statuses,
                check.error_code.as_deref().unwrap_or(""),
                check.checked_at_ms / 1000,
            );
        }
        let mut map = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(check.account.clone(), check)
            .map(|previous| previous.status)
    }

    /// Counts a periodic sync run of `account` (`auditlake_account_sync_runs_total`).
    pub fn record_run(&self, account: &str, ok: bool) {
        if let Some(report) = &self.report {
            report.sync_run(account, ok);
        }
    }

    pub fn get(&self, account: &str) -> Option<KeyCheck> {
        let map = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        map.get(account).cloned()
    }
}

/// Runs the who-am-I call, records the result, and logs when the status changed.
pub async fn check_key<C: Cloud>(
    cloud: &C,
    account: &str,
    metrics: &SyncMetrics,
) -> (KeyCheck, Option<Identity>) {
    let (status, code, identity) = match cloud.whoami().await {
        Ok(id) => (KeyStatus::Valid, None, Some(id)),
        Err(e) => {
            let status = match e.failure {
                Failure::InvalidKey => KeyStatus::Invalid,
                Failure::Denied => KeyStatus::InsufficientPermission,
                Failure::Other => KeyStatus::Unknown,
            };
            (status, e.code.clone().or(Some(e.message)), None)
        }
    };
    let check = KeyCheck {
        account: account.to_string(),
        provider: cloud.provider(),
        status,
        error_code: code.clone(),
        checked_at_ms: now_ms(),
    };
    let previous = metrics.record(check.clone());
    if previous != Some(status) {
        match status {
            KeyStatus::Valid => tracing::info!(account, "AccessKey is valid"),
            KeyStatus::Invalid => tracing::error!(
                account,
                code = code.as_deref().unwrap_or(""),
                "AccessKey is INVALID: the cloud rejects it; replace the key in the account's credentials"
            ),
            KeyStatus::InsufficientPermission => tracing::error!(
                account,
                code = code.as_deref().unwrap_or(""),
                "AccessKey lacks permission for the who-am-I call; see `auditlake accounts check`"
            ),
            KeyStatus::Unknown => tracing::warn!(
                account,
                error = code.as_deref().unwrap_or(""),
                "AccessKey check failed; status unknown"
            ),
        }
    }
    (check, identity)
}

// ----------------------------------------------------------------------------------------
// Snapshot state and diff.

/// The persisted snapshot of one account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub run_id: Option<String>,
    pub run_time_ms: Option<i64>,
    pub account_uid: Option<String>,
    /// Regions seen by region discovery so far (region management picks up the others).
    pub known_regions: BTreeSet<String>,
    /// (resource type, region or "") scopes listed at least once.
    pub scopes: BTreeSet<(String, String)>,
    pub assets: Vec<SnapshotAsset>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotAsset {
    pub region: Option<String>,
    pub resource_type: String,
    pub native_type: String,
    pub uid: String,
    pub name: Option<String>,
    pub status: Option<String>,
    pub created_ms: Option<i64>,
    pub attributes: Map<String, Value>,
    pub tags: Map<String, Value>,
}

impl SnapshotAsset {
    fn key(&self) -> (String, String, String) {
        (
            self.resource_type.clone(),
            self.region.clone().unwrap_or_default(),
            self.uid.clone(),
        )
    }

    fn scope(&self) -> (String, String) {
        (
            self.resource_type.clone(),
            self.region.clone().unwrap_or_default(),
        )
    }

    /// The state compared between runs and written as before/after.
    fn state(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "status": self.status,
            "attributes": self.attributes,
            "tags": self.tags,
        })
    }
}

impl From<Asset> for SnapshotAsset {
    fn from(a: Asset) -> Self {
        SnapshotAsset {
            region: a.region,
            resource_type: a.resource_type.to_string(),
            native_type: a.native_type.to_string(),
            uid: a.uid,
            name: a.name,
            status: a.status,
            created_ms: a.created_ms,
            attributes: a.attributes,
            tags: a.tags,
        }
    }
}

/// The path of an account's snapshot.
pub fn snapshot_path(lake: &Path, account: &str) -> PathBuf {
    lake.join("_auditlake").join("sync").join(format!(
        "{}.json",
        crate::sink::partition_value(Some(account))
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("snapshot {path} is damaged: {reason}")]
    Snapshot { path: PathBuf, reason: String },
    #[error(transparent)]
    Credentials(#[from] config::CredentialsError),
    #[error("account {account}: the AccessKey is {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Key {
        account: String,
        status: &'static str,
        code: Option<String>,
    },
    #[error("account {account}: {source}")]
    Api { account: String, source: ApiError },
    #[error("account {account}: another sync of this account is running; skipped")]
    Busy { account: String },
}

pub fn load_snapshot(path: &Path) -> Result<Snapshot, SyncError> {
    read_state(path)
}

/// A state file of the sync (JSON), or the default when there is none yet.
pub(crate) fn read_state<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
) -> Result<T, SyncError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SyncError::Snapshot {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(SinkError::io("read", path, e).into()),
    }
}

/// Writes a state file of the sync durably (temporary file, fsync, rename).
pub(crate) fn write_state<T: Serialize>(path: &Path, value: &T) -> Result<(), SyncError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| SinkError::io("create directory", dir, e))?;
    }
    let bytes = serde_json::to_vec(value).map_err(|e| SyncError::Snapshot {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    crate::sink::journal::write_durably(&crate::sink::journal::tmp_path(path), path, &bytes)?;
    Ok(())
}

fn lock_account(state_path: &Path, account: &str) -> Result<std::fs::File, SyncError> {
    let path = state_path.with_extension("lock");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| SinkError::io("create directory", dir, e))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| SinkError::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(SyncError::Busy {
            account: account.to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(SinkError::io("lock", &path, e).into()),
    }
}

fn save_snapshot(path: &Path, snapshot: &Snapshot) -> Result<(), SyncError> {
    write_state(path, snapshot)
}

/// Diff of two snapshots over the scopes the new run covered. Scopes seen for the first time
/// are baselines (no changes).
pub fn diff(
    old: &Snapshot,
    new_assets: &[SnapshotAsset],
    covered: &BTreeSet<(String, String)>,
) -> Vec<(ChangeType, Option<SnapshotAsset>, SnapshotAsset)> {
    let old_by_key: BTreeMap<_, _> = old
        .assets
        .iter()
        .filter(|a| covered.contains(&a.scope()))
        .map(|a| (a.key(), a))
        .collect();
    let new_by_key: BTreeMap<_, _> = new_assets.iter().map(|a| (a.key(), a)).collect();
    let mut out = Vec::new();
    for (key, new) in &new_by_key {
        if !old.scopes.contains(&new.scope()) {
            continue; // baseline
        }
        match old_by_key.get(key) {
            None => out.push((ChangeType::Created, None, (*new).clone())),
            Some(old) if old.state() != new.state() => {
                out.push((ChangeType::Modified, Some((*old).clone()), (*new).clone()))
            }
            Some(_) => {}
        }
    }
    for (key, old) in &old_by_key {
        if !new_by_key.contains_key(key) {
            out.push((ChangeType::Deleted, Some((*old).clone()), (*old).clone()));
        }
    }
    out
}

// ----------------------------------------------------------------------------------------
// One run.

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub account: String,
    pub run_id: String,
    pub account_uid: String,
    pub regions: Vec<String>,
    pub assets: usize,
    pub created: usize,
    pub modified: usize,
    pub deleted: usize,
    /// `entitlements` rows and `ciem_findings` written (feature entitlements).
    pub entitlements: usize,
    pub findings: usize,
    /// Listings that failed (their scopes were carried over).
    pub errors: Vec<String>,
}

/// The regions to sync: the selection, plus (with region management on) regions that appeared
/// since the account was first synced.
pub fn select_regions(
    account: &AccountConfig,
    discovered: &[String],
    known: &BTreeSet<String>,
) -> Vec<String> {
    match &account.regions {
        Regions::Keyword(_) => discovered.to_vec(),
        Regions::List(list) => discovered
            .iter()
            .filter(|r| {
                list.contains(r)
                    || (account.region_management && !known.is_empty() && !known.contains(*r))
            })
            .cloned()
            .collect(),
    }
}

/// Syncs one account: key check, regions, the requested features, inventory, diff.
pub async fn run_account<C: Cloud>(
    cloud: &C,
    account: &AccountConfig,
    features: &[Feature],
    lake: &Path,
    ciem: crate::ciem::findings::Settings,
    metrics: &SyncMetrics,
) -> Result<RunReport, SyncError> {
    let run_time_ms = now_ms();
    let (check, identity) = check_key(cloud, &account.name, metrics).await;
    let Some(identity) = identity else {
        return Err(SyncError::Key {
            account: account.name.clone(),
            status: check.status.as_str(),
            code: check.error_code,
        });
    };
    let state_path = snapshot_path(lake, &account.name);
    // One run per account at a time (a cron `--once` and a daemon may overlap): the lock is
    // held until this function returns, and released by the OS if the process dies.
    let _lock = lock_account(&state_path, &account.name)?;
    let old = load_snapshot(&state_path)?;
    let discovered = cloud.regions().await.map_err(|source| SyncError::Api {
        account: account.name.clone(),
        source,
    })?;
    let regions = select_regions(account, &discovered, &old.known_regions);
    let run_id = format!(
        "{}-{}",
        crate::sink::partition_value(Some(&account.name)),
        chrono::DateTime::from_timestamp_millis(run_time_ms)
            .map(|t| t.format("%Y%m%dT%H%M%S%.3fZ").to_string())
            .unwrap_or_else(|| run_time_ms.to_string())
    );
    let mut report = RunReport {
        account: account.name.clone(),
        run_id: run_id.clone(),
        account_uid: identity.account_uid.clone(),
        regions: regions.clone(),
        ..RunReport::default()
    };
    let mut assets: Vec<SnapshotAsset> = Vec::new();
    let mut covered: BTreeSet<(String, String)> = BTreeSet::new();
    let mut record = |result: Result<Vec<Asset>, ApiError>,
                      types: &[&str],
                      region: Option<&str>,
                      report: &mut RunReport| match result {
        Ok(list) => {
            for t in types {
                covered.insert((t.to_string(), region.unwrap_or("").to_string()));
            }
            assets.extend(list.into_iter().map(SnapshotAsset::from));
        }
        Err(e) => {
            tracing::warn!(account = %account.name, region = region.unwrap_or(""), error = %e, "listing failed; keeping the previous snapshot of this scope");
            report
                .errors
                .push(format!("{}: {e}", region.unwrap_or("global")));
        }
    };
    if features.contains(&Feature::Hosts) {
        for region in &regions {
            let r = cloud.hosts(region).await;
            record(r, &["host"], Some(region), &mut report);
        }
    }
    if features.contains(&Feature::Products) {
        for product in cloud.products() {
            if product.regional() {
                for region in &regions {
                    let r = product.list(cloud, Some(region)).await;
                    record(r, product.resource_types(), Some(region), &mut report);
                }
            } else {
                let r = product.list(cloud, None).await;
                record(r, product.resource_types(), None, &mut report);
            }
        }
    }
    let provider = cloud.provider();
    // Baidu and CTyun have no who-am-I: their account id is not known.
    let account_uid = Some(identity.account_uid.clone()).filter(|u| !u.is_empty());
    let mut batch = PendingBatch::default();
    let mut saved_entitlements = None;
    if features.contains(&Feature::Entitlements) {
        match cloud.entitlements().await {
            Ok(ent) => {
                let run = crate::ciem::entitlements::RunInfo {
                    run_id: run_id.clone(),
                    run_time_ms,
                    account_name: account.name.clone(),
                    provider,
                    account_uid: account_uid.clone(),
                };
                batch.entitlements = crate::ciem::entitlements::rows(&ent, &run);
                report.entitlements = batch.entitlements.len();
                let list = entitlements::assets(&ent);
                record(Ok(list), &entitlements::RESOURCE_TYPES, None, &mut report);
                let found = entitlements::findings(lake, &ent, &run, ciem)?;
                report.findings = found.findings.len();
                batch.ciem_findings = found.findings;
                saved_entitlements = Some(entitlements::Saved {
                    run_id: Some(run_id.clone()),
                    run_time_ms: Some(run_time_ms),
                    account_uid: account_uid.clone(),
                    entitlements: ent,
                });
            }
            Err(e) => record(Err(e), &entitlements::RESOURCE_TYPES, None, &mut report),
        }
    }
    let changes = diff(&old, &assets, &covered);
    let ingest = now_ms();
    for (change, before, after) in &changes {
        // An attachment that appears or goes is an attach or a detach.
        let change = &match (change, after.resource_type.as_str()) {
            (ChangeType::Created, "policy_attachment") => ChangeType::Attached,
            (ChangeType::Deleted, "policy_attachment") => ChangeType::Detached,
            (c, _) => *c,
        };
        match change {
            ChangeType::Created | ChangeType::Attached => report.created += 1,
            ChangeType::Deleted | ChangeType::Detached => report.deleted += 1,
            _ => report.modified += 1,
        }
        batch.asset_changes.push(AssetChange {
            time_ms: run_time_ms,
            cloud_provider: provider,
            cloud_account_uid: account_uid.clone(),
            cloud_region: after.region.clone(),
            resource_type: after.resource_type.clone(),
            native_type: Some(after.native_type.clone()),
            resource_uid: after.uid.clone(),
            resource_name: after.name.clone(),
            change_type: *change,
            origin: ChangeOrigin::Sync,
            action: None,
            related_type: None,
            related_uid: None,
            actor_user_uid: None,
            actor_user_name: None,
            actor_credential_uid: None,
            source_event_id: None,
            sync_run_id: Some(run_id.clone()),
            before_state: before.as_ref().map(|b| b.state().to_string()),
            after_state: (!matches!(change, ChangeType::Deleted | ChangeType::Detached))
                .then(|| after.state().to_string()),
            tags: (!after.tags.is_empty()).then(|| Value::Object(after.tags.clone()).to_string()),
            ingest_time_ms: ingest,
        });
    }
    for a in &assets {
        batch.asset_inventory.push(InventoryItem {
            run_id: run_id.clone(),
            run_time_ms,
            account_name: account.name.clone(),
            cloud_provider: provider,
            cloud_account_uid: account_uid.clone(),
            cloud_region: a.region.clone(),
            resource_type: a.resource_type.clone(),
            native_type: Some(a.native_type.clone()),
            resource_uid: a.uid.clone(),
            resource_name: a.name.clone(),
            status: a.status.clone(),
            created_time_ms: a.created_ms,
            attributes: (!a.attributes.is_empty())
                .then(|| Value::Object(a.attributes.clone()).to_string()),
            tags: (!a.tags.is_empty()).then(|| Value::Object(a.tags.clone()).to_string()),
        });
    }
    report.assets = assets.len();
    write_unjournaled(lake, &run_id, batch, ParquetOptions::default())?;
    if let Some(saved) = &saved_entitlements {
        entitlements::save(lake, &account.name, saved)?;
    }

    // The next snapshot: this run's scopes replaced, the others carried over.
    let mut next_assets: Vec<SnapshotAsset> = old
        .assets
        .into_iter()
        .filter(|a| !covered.contains(&a.scope()))
        .collect();
    next_assets.extend(assets);
    let mut scopes = old.scopes;
    scopes.extend(covered);
    let mut known_regions = old.known_regions;
    known_regions.extend(discovered);
    save_snapshot(
        &state_path,
        &Snapshot {
            run_id: Some(run_id),
            run_time_ms: Some(run_time_ms),
            account_uid: Some(identity.account_uid).filter(|u| !u.is_empty()),
            known_regions,
            scopes,
            assets: next_assets,
        },
    )?;
    Ok(report)
}

// ----------------------------------------------------------------------------------------
// Accounts check.

/// The outcome of one call of `accounts check`.
#[derive(Debug, Clone)]
pub struct CallCheck {
    pub call: &'static str,
    pub region: Option<String>,
    pub result: Result<(), ApiError>,
    /// The policy that grants the call.
    pub policy: &'static str,
}

/// Calls every API the account's enabled features need (in one region) and reports each.
pub async fn check_account<C: Cloud>(cloud: &C, account: &AccountConfig) -> Vec<CallCheck> {
    let mut out = Vec::new();
    let base = cloud.policy_for(Feature::Hosts);
    let who = cloud.whoami().await.map(|_| ());
    out.push(CallCheck {
        call: cloud.who_am_i_call(),
        region: None,
        result: who,
        policy: "none needed (any valid key may call it)",
    });
    let regions = cloud.regions().await;
    let probe_region = match (&regions, &account.regions) {
        (Ok(found), Regions::List(list)) => list
            .iter()
            .find(|r| found.contains(r))
            .or(found.first())
            .cloned(),
        (Ok(found), _) => found.first().cloned(),
        _ => None,
    };
    out.push(CallCheck {
        call: cloud.regions_call(),
        region: None,
        result: regions.map(|_| ()),
        policy: base,
    });
    // Regional calls need a region; without one they are reported as not tried.
    let not_tried = |call: &'static str| ApiError {
        call,
        failure: Failure::Other,
        code: None,
        message: "not tried: no selected region was found (see the region call above)".into(),
    };
    if account.features.contains(&Feature::Hosts) {
        let result = match &probe_region {
            Some(region) => cloud.hosts(region).await.map(|_| ()),
            None => Err(not_tried(cloud.hosts_call())),
        };
        out.push(CallCheck {
            call: cloud.hosts_call(),
            region: probe_region.clone(),
            result,
            policy: cloud.policy_for(Feature::Hosts),
        });
    }
    if account.features.contains(&Feature::Entitlements) {
        out.push(CallCheck {
            call: cloud.entitlements_call(),
            region: None,
            result: cloud.entitlements().await.map(|_| ()),
            policy: cloud.policy_for(Feature::Entitlements),
        });
    }
    if account.features.contains(&Feature::Products) {
        for product in cloud.products() {
            let (region, result) = match (product.regional(), &probe_region) {
                (false, _) => (None, product.list(cloud, None).await.map(|_| ())),
                (true, Some(r)) => (
                    Some(r.clone()),
                    product.list(cloud, Some(r)).await.map(|_| ()),
                ),
                (true, None) => (None, Err(not_tried(product.call()))),
            };
            out.push(CallCheck {
                call: product.call(),
                region,
                result,
                policy: product.policy(),
            });
        }
    }
    out
}

/// Helpers for building assets.
pub(crate) fn opt(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

pub(crate) fn parse_time(s: Option<&str>) -> Option<i64> {
    let s = s?;
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| crate::normalize::parse_time_ms(s, 8 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(ty: &str, region: &str, uid: &str, status: &str) -> SnapshotAsset {
        SnapshotAsset {
            region: (!region.is_empty()).then(|| region.to_string()),
            resource_type: ty.to_string(),
            native_type: "t".to_string(),
            uid: uid.to_string(),
            name: None,
            status: Some(status.to_string()),
            created_ms: None,
            attributes: Map::new(),
            tags: Map::new(),
        }
    }

    #[test]
    fn diff_reports_created_modified_deleted_and_skips_baselines_and_failed_scopes() {
        let old = Snapshot {
            scopes: [
                ("host".to_string(), "r1".to_string()),
                ("host".to_string(), "r2".to_string()),
            ]
            .into(),
            assets: vec![
                asset("host", "r1", "a", "running"),
                asset("host", "r1", "b", "running"),
                asset("host", "r2", "c", "running"),
            ],
            ..Snapshot::default()
        };
        let new = vec![
            asset("host", "r1", "a", "stopped"),
            asset("host", "r1", "d", "running"),
            asset("bucket", "", "x", "ok"),
        ];
        // r2 failed this time: not covered, so c is not deleted. Buckets are a baseline.
        let covered = [
            ("host".to_string(), "r1".to_string()),
            ("bucket".to_string(), String::new()),
        ]
        .into();
        let got: Vec<(ChangeType, String)> = diff(&old, &new, &covered)
            .into_iter()
            .map(|(c, _, a)| (c, a.uid))
            .collect();
        assert_eq!(
            got,
            vec![
                (ChangeType::Modified, "a".to_string()),
                (ChangeType::Created, "d".to_string()),
                (ChangeType::Deleted, "b".to_string()),
            ]
        );
    }

    #[test]
    fn region_selection_honours_region_management() {
        let cfg = |regions: Regions, rm: bool| AccountConfig {
            name: "a".into(),
            provider: config::CloudKind::Aws,
            credentials: config::CredentialsConfig::default(),
            features: vec![],
            regions,
            region_management: rm,
            intervals: config::Intervals::default(),
            endpoints: BTreeMap::new(),
            home_region: None,
        };
        let discovered: Vec<String> = ["r1", "r2", "r3"].iter().map(|s| s.to_string()).collect();
        let known: BTreeSet<String> = ["r1", "r2"].iter().map(|s| s.to_string()).collect();
        let list = Regions::List(vec!["r1".into()]);
        assert_eq!(
            select_regions(&cfg(list.clone(), false), &discovered, &known),
            vec!["r1"]
        );
        // r3 appeared after the first sync: picked up when region management is on.
        assert_eq!(
            select_regions(&cfg(list.clone(), true), &discovered, &known),
            vec!["r1", "r3"]
        );
        // First sync: nothing is "new" yet.
        assert_eq!(
            select_regions(&cfg(list, true), &discovered, &BTreeSet::new()),
            vec!["r1"]
        );
        assert_eq!(
            select_regions(&cfg(Regions::default(), false), &discovered, &known).len(),
            3
        );
    }

    #[test]
    fn metrics_render_one_gauge_per_status() {
        let registry = crate::metrics::Registry::default();
        let m = SyncMetrics::reporting_to(registry.account_sync());
        assert_eq!(
            m.record(KeyCheck {
                account: "prod".into(),
                provider: Provider::Tencent,
                status: KeyStatus::Invalid,
                error_code: Some("AuthFailure.SecretIdNotFound".into()),
                checked_at_ms: 1_700_000_000_000,
            }),
            None
        );
        let text = registry.render().expect("render");
        assert!(text.contains("auditlake_access_key_status{account=\"prod\",provider=\"tencent\",status=\"invalid\",code=\"AuthFailure.SecretIdNotFound\"} 1"), "{text}");
        assert!(text.contains("status=\"valid\",code=\"AuthFailure.SecretIdNotFound\"} 0"));
        assert!(text.contains(
            "auditlake_access_key_checked_seconds{account=\"prod\",provider=\"tencent\"} 1700000000"
        ));
        m.record_run("prod", true);
        m.record_run("prod", false);
        m.record_run("prod", true);
        let text = registry.render().expect("render");
        assert!(
            text.contains("auditlake_account_sync_runs_total{account=\"prod\",outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "auditlake_account_sync_runs_total{account=\"prod\",outcome=\"failed\"} 1"
            )
        );
    }

    #[test]
    fn one_run_per_account_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = snapshot_path(dir.path(), "acct");
        let held = lock_account(&state, "acct").expect("first lock");
        let second = lock_account(&state, "acct").expect_err("second lock must fail");
        assert!(matches!(second, SyncError::Busy { .. }), "{second}");
        drop(held);
        assert!(lock_account(&state, "acct").is_ok());
    }

    #[test]
    fn error_codes_are_classified() {
        assert_eq!(classify("InvalidClientTokenId"), Failure::InvalidKey);
        assert_eq!(
            classify("AuthFailure.SecretIdNotFound"),
            Failure::InvalidKey
        );
        assert_eq!(classify("UnauthorizedOperation"), Failure::Denied);
        assert_eq!(classify("AccessDenied"), Failure::Denied);
        assert_eq!(classify("InternalError"), Failure::Other);
    }
}
