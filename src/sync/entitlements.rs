//! The `entitlements` feature of a sync run: the cloud's identities and policies into
//! `entitlements` rows, into assets whose changes between runs are `asset_changes` (principals,
//! policies and attachments), into a state file the on-demand findings read, and into the
//! `ciem_findings` computed against the lake's events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Asset, SyncError};
use crate::ciem::entitlements::{Index, RunInfo};
use crate::ciem::findings::{Computation, Settings, catalog_for, compute};
use crate::ciem::model::Entitlements;
use crate::ciem::rows::Finding;
use crate::ciem::usage::Usage;

/// The asset scopes (resource types, global) the feature covers.
pub const RESOURCE_TYPES: [&str; 3] = ["principal", "policy", "policy_attachment"];

fn digest(v: &Value) -> String {
    hex::encode(&Sha256::digest(v.to_string().as_bytes())[..12])
}

/// Principals, policies (with a digest of their document) and attachments as assets, so the
/// snapshot diff reports principals created or deleted, documents changed, and policies
/// attached or detached.
pub fn assets(ent: &Entitlements) -> Vec<Asset> {
    let asset = |ty: &'static str,
                 native: &'static str,
                 uid: String,
                 name: &str,
                 attrs: Map<String, Value>| Asset {
        region: None,
        resource_type: ty,
        native_type: native,
        uid,
        name: Some(name.to_string()),
        status: None,
        created_ms: None,
        attributes: attrs,
        tags: Map::new(),
    };
    let mut out = Vec::new();
    let policy = |p: &crate::ciem::model::Policy, out: &mut Vec<Asset>| {
        let mut attrs = Map::new();
        attrs.insert("type".into(), json!(p.kind.as_str()));
        attrs.insert("version".into(), json!(p.version));
        attrs.insert(
            "document_digest".into(),
            json!(p.document.as_ref().map(digest)),
        );
        out.push(asset("policy", "policy", p.uid.clone(), &p.name, attrs));
    };
    for p in &ent.policies {
        policy(p, &mut out);
    }
    let index = Index::new(ent);
    for p in &ent.principals {
        let mut attrs = Map::new();
        attrs.insert("type".into(), json!(p.kind.as_str()));
        if !p.groups.is_empty() {
            attrs.insert("groups".into(), json!(p.groups));
        }
        out.push(asset(
            "principal",
            p.kind.as_str(),
            p.uid.clone(),
            &p.name,
            attrs,
        ));
        for inline in p.inline.iter().chain(&p.trust) {
            policy(inline, &mut out);
        }
        for g in index.grants(p).iter().filter(|g| g.via_uid.is_none()) {
            let mut attrs = Map::new();
            attrs.insert("principal".into(), json!(p.uid));
            attrs.insert("policy".into(), json!(g.policy_uid));
            out.push(asset(
                "policy_attachment",
                "policy_attachment",
                format!("{}|{}", p.uid, g.policy_uid),
                &format!(
                    "{} / {}",
                    p.name,
                    g.policy.map(|x| x.name.as_str()).unwrap_or(g.policy_uid)
                ),
                attrs,
            ));
        }
    }
    out
}

/// Where the last entitlements of an account are kept for `auditlake ciem findings`.
pub fn state_path(lake: &Path, account: &str) -> PathBuf {
    super::snapshot_path(lake, account).with_extension("entitlements.json")
}

/// Where the first-seen times of an account's findings are kept.
fn first_seen_path(lake: &Path, account: &str) -> PathBuf {
    super::snapshot_path(lake, account).with_extension("findings.json")
}

/// The entitlements and account uid the last sync of `account` recorded, if any.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    pub run_id: Option<String>,
    pub run_time_ms: Option<i64>,
    pub account_uid: Option<String>,
    pub entitlements: Entitlements,
}

pub fn load(lake: &Path, account: &str) -> Result<Option<Saved>, SyncError> {
    let path = state_path(lake, account);
    if !path.exists() {
        return Ok(None);
    }
    super::read_state(&path).map(Some)
}

pub fn save(lake: &Path, account: &str, saved: &Saved) -> Result<(), SyncError> {
    super::write_state(&state_path(lake, account), saved)
}

/// What a findings computation read and found.
#[derive(Debug, Clone)]
pub struct FindingsReport {
    pub findings: Vec<Finding>,
    pub events: u64,
    pub files: usize,
    pub catalog: String,
}

/// Computes the findings of one account at `run.run_time_ms`, reading its events from the
/// lake, and records their first-seen times (write the findings before relying on them).
pub fn findings(
    lake: &Path,
    ent: &Entitlements,
    run: &RunInfo,
    settings: Settings,
) -> Result<FindingsReport, SyncError> {
    let start = settings.period_start(run.run_time_ms);
    let mut usage = Usage::new(start, run.run_time_ms);
    let files = match run.account_uid.as_deref() {
        Some(uid) => {
            crate::sink::read::account_events(lake, run.provider, uid, start, |e| usage.record(e))?
        }
        None => 0,
    };
    let catalog = catalog_for(run.provider, ent, &usage);
    let first_path = first_seen_path(lake, &run.account_name);
    let first_seen: BTreeMap<String, i64> = super::read_state(&first_path)?;
    let found = compute(
        ent,
        &usage,
        &catalog,
        &Computation {
            run,
            settings,
            first_seen: &first_seen,
        },
    );
    let next: BTreeMap<&str, i64> = found
        .iter()
        .map(|f| (f.finding_uid.as_str(), f.first_seen_ms))
        .collect();
    super::write_state(&first_path, &next)?;
    Ok(FindingsReport {
        events: usage.events,
        files,
        catalog: catalog.source.clone(),
        findings: found,
    })
}

/// Recomputes the findings of an account as of `now` from its saved entitlements and writes
/// them to the lake; None when the account has no entitlements sync yet.
pub fn recompute(
    lake: &Path,
    account: &super::config::AccountConfig,
    settings: Settings,
    now: i64,
) -> Result<Option<FindingsReport>, SyncError> {
    let Some(saved) = load(lake, &account.name)? else {
        return Ok(None);
    };
    let run = RunInfo {
        run_id: format!(
            "{}-findings-{}",
            crate::sink::partition_value(Some(&account.name)),
            chrono::DateTime::from_timestamp_millis(now)
                .map(|t| t.format("%Y%m%dT%H%M%S%.3fZ").to_string())
                .unwrap_or_else(|| now.to_string())
        ),
        run_time_ms: now,
        account_name: account.name.clone(),
        provider: account.provider.provider(),
        account_uid: saved.account_uid.clone(),
    };
    let report = findings(lake, &saved.entitlements, &run, settings)?;
    let batch = crate::sink::lake::PendingBatch {
        ciem_findings: report.findings.clone(),
        ..Default::default()
    };
    crate::sink::lake::write_unjournaled(
        lake,
        &run.run_id,
        batch,
        crate::sink::parquet::ParquetOptions::default(),
    )?;
    Ok(Some(report))
}
