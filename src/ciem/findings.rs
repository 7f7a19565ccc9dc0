//! Granted versus used: the `ciem_findings` of one account, from its entitlements (the last
//! sync) and its events in the lake over the tracking period ([`Usage`]).
//!
//! The kinds, and how each is decided (docs/ciem.md compares them with IAM Access Analyzer):
//! - `unused_role`, `unused_user`: no event by the principal in the period and no use the cloud
//!   recorded (`RoleLastUsed`; a user's keys and password) since the period began;
//! - `unused_access_key`: an active key with no event in the period and no cloud "last used"
//!   since the period began; `unused_console_password`: a password not used since then;
//! - `unused_service`, `unused_actions`: for a principal that was active, each service it is
//!   granted (Allow patterns expanded against the catalog, minus unconditional Denies) of which
//!   it called nothing, or only some actions;
//! - `root_use`: events by the root account in the period;
//! - `old_access_key`: an active key older than `max_access_key_age_days`;
//! - `full_admin`: a principal granted every action on every resource.
//!
//! As IAM Access Analyzer does, only principals and credentials that existed for the whole
//! period are judged unused (a role created yesterday has not had 90 days to be used);
//! service-linked roles are not judged at all.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::catalog::{self, Catalog};
use super::entitlements::{Index, RunInfo, acts};
use super::model::{CredentialKind, Entitlements, Principal, PrincipalType};
use super::policy::{Effect, Statement, granted_actions, is_full_admin};
use super::rows::Finding;
use super::usage::{Activity, Usage};
use crate::event::Provider;

const DAY_MS: i64 = 86_400_000;

/// The findings' settings (`[ciem]` in the accounts file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Days of events compared, 1 to 365 (IAM Access Analyzer's default: 90).
    #[serde(default = "default_tracking")]
    pub tracking_period_days: u32,
    /// An active access key older than this is an `old_access_key` finding.
    #[serde(default = "default_key_age")]
    pub max_access_key_age_days: u32,
}

fn default_tracking() -> u32 {
    90
}
fn default_key_age() -> u32 {
    90
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tracking_period_days: default_tracking(),
            max_access_key_age_days: default_key_age(),
        }
    }
}

impl Settings {
    /// What is wrong with the settings, for `validate` and the loader.
    pub fn problem(&self) -> Option<String> {
        (!(1..=365).contains(&self.tracking_period_days)).then(|| {
            format!(
                "[ciem] tracking_period_days = {} is out of range: use 1 to 365",
                self.tracking_period_days
            )
        })
    }

    /// Where the period starts for findings computed at `now_ms`.
    pub fn period_start(&self, now_ms: i64) -> i64 {
        now_ms - i64::from(self.tracking_period_days) * DAY_MS
    }
}

/// The catalog wildcards expand against: the bundled one for AWS, plus every action seen in
/// the lake and named literally in the account's policies.
pub fn catalog_for(provider: Provider, ent: &Entitlements, usage: &Usage) -> Catalog {
    let mut c = match provider {
        Provider::Aws => catalog::aws().clone(),
        _ => Catalog::new("lake"),
    };
    for a in &usage.actions_seen {
        c.add(a);
    }
    let index = Index::new(ent);
    for p in &ent.principals {
        for (_, statements) in index.permission_statements(p) {
            for s in statements {
                for a in s.actions.iter().filter(|a| !a.contains(['*', '?'])) {
                    c.add(a);
                }
            }
        }
    }
    c
}

fn iso(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null)
}

fn latest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The stable id of a finding.
pub fn finding_uid(
    provider: Provider,
    account: Option<&str>,
    kind: &str,
    principal: Option<&str>,
    resource: Option<&str>,
) -> String {
    let mut h = Sha256::new();
    for part in [
        provider.as_str(),
        account.unwrap_or(""),
        kind,
        principal.unwrap_or(""),
        resource.unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..16])
}

/// Computes the findings at `run.run_time_ms`. `first_seen` holds when earlier computations
/// first reported each finding uid.
pub struct Computation<'a> {
    pub run: &'a RunInfo,
    pub settings: Settings,
    pub first_seen: &'a BTreeMap<String, i64>,
}

struct Out<'a> {
    c: &'a Computation<'a>,
    catalog_source: String,
    rows: Vec<Finding>,
}

impl Out<'_> {
    fn push(
        &mut self,
        kind: &'static str,
        principal: Option<&Principal>,
        resource: Option<&str>,
        detail: Value,
        last_activity_ms: Option<i64>,
        with_catalog: bool,
    ) {
        let run = self.c.run;
        let uid = finding_uid(
            run.provider,
            run.account_uid.as_deref(),
            kind,
            principal.map(|p| p.uid.as_str()),
            resource,
        );
        let now = run.run_time_ms;
        self.rows.push(Finding {
            run_id: run.run_id.clone(),
            computed_time_ms: now,
            account_name: run.account_name.clone(),
            cloud_provider: run.provider,
            cloud_account_uid: run.account_uid.clone(),
            first_seen_ms: self.c.first_seen.get(&uid).copied().unwrap_or(now),
            finding_uid: uid,
            kind,
            principal_type: principal.map(|p| p.kind.as_str().to_string()),
            principal_uid: principal.map(|p| p.uid.clone()),
            principal_name: principal.map(|p| p.name.clone()),
            resource_uid: resource.map(str::to_string),
            detail: detail.to_string(),
            last_activity_time_ms: last_activity_ms,
            last_seen_ms: now,
            tracking_period_days: i32::try_from(self.c.settings.tracking_period_days)
                .unwrap_or(i32::MAX),
            catalog: with_catalog.then(|| self.catalog_source.clone()),
        });
    }
}

/// Service-linked roles are used by the cloud itself. Each cloud's sync says which roles are
/// ([`Principal::service_linked`]: AWS from the role's path, Tencent from CAM's `RoleType`);
/// this used to test the AWS path only, so Tencent's service-linked roles (no such path in
/// their ARN) were reported as `unused_role`. The AWS path is still tested for entitlements
/// saved before the flag existed.
fn service_linked(p: &Principal) -> bool {
    p.kind == PrincipalType::Role && (p.service_linked || p.uid.contains(":role/aws-service-role/"))
}

fn service_of(action: &str) -> String {
    action
        .split_once(':')
        .map(|(s, _)| s)
        .unwrap_or(action)
        .to_ascii_lowercase()
}

pub fn compute(
    ent: &Entitlements,
    usage: &Usage,
    catalog: &Catalog,
    c: &Computation<'_>,
) -> Vec<Finding> {
    let now = c.run.run_time_ms;
    let start = c.settings.period_start(now);
    let mut out = Out {
        c,
        catalog_source: catalog.source.clone(),
        rows: Vec::new(),
    };
    let index = Index::new(ent);
    let older = |created: Option<i64>| created.is_none_or(|t| t < start);
    let empty = Activity::default();
    for p in ent
        .principals
        .iter()
        .filter(|p| acts(p) && !service_linked(p))
    {
        let activity = usage
            .principal(&p.uid, p.alt_uid.as_deref())
            .unwrap_or(&empty);
        let creds: Vec<_> = ent
            .credentials
            .iter()
            .filter(|k| k.principal_uid == p.uid)
            .collect();
        let cloud_last = creds
            .iter()
            .map(|k| k.last_used_ms)
            .fold(p.last_used_ms, latest);
        let last = latest(activity.last_ms, cloud_last);
        let used = last.is_some_and(|t| t >= start);
        if !used && older(p.created_ms) {
            let kind = match p.kind {
                PrincipalType::Role => "unused_role",
                _ => "unused_user",
            };
            out.push(
                kind,
                Some(p),
                None,
                json!({
                    "created": iso(p.created_ms),
                    "last_event_in_lake": iso(activity.last_ms),
                    "cloud_last_used": iso(cloud_last),
                    "events_in_period": 0,
                }),
                last,
                false,
            );
        }
        for k in &creds {
            let key_activity = usage.keys.get(&k.uid);
            match k.kind {
                CredentialKind::AccessKey => {
                    let active = k
                        .status
                        .as_deref()
                        .is_none_or(|s| s.eq_ignore_ascii_case("active"));
                    let last_key = latest(key_activity.and_then(|a| a.last_ms), k.last_used_ms);
                    if active && last_key.is_none_or(|t| t < start) && older(k.created_ms) {
                        out.push(
                            "unused_access_key",
                            Some(p),
                            Some(&k.uid),
                            json!({
                                "status": k.status,
                                "created": iso(k.created_ms),
                                "cloud_last_used": iso(k.last_used_ms),
                                "cloud_last_used_service": k.last_used_service,
                                "events_in_period": 0,
                            }),
                            last_key,
                            false,
                        );
                    }
                    let max_age = i64::from(c.settings.max_access_key_age_days) * DAY_MS;
                    if let Some(created) = k.created_ms
                        && active
                        && now - created > max_age
                    {
                        out.push(
                            "old_access_key",
                            Some(p),
                            Some(&k.uid),
                            json!({
                                "status": k.status,
                                "created": iso(Some(created)),
                                "age_days": (now - created) / DAY_MS,
                                "max_access_key_age_days": c.settings.max_access_key_age_days,
                            }),
                            last_key,
                            false,
                        );
                    }
                }
                CredentialKind::ConsolePassword => {
                    let last_login = latest(activity.last_console_login_ms, k.last_used_ms);
                    if last_login.is_none_or(|t| t < start) && older(k.created_ms) {
                        out.push(
                            "unused_console_password",
                            Some(p),
                            Some(&k.uid),
                            json!({
                                "created": iso(k.created_ms),
                                "cloud_last_used": iso(k.last_used_ms),
                                "console_logins_in_period": activity.console_logins,
                            }),
                            last_login,
                            false,
                        );
                    }
                }
            }
        }
        let held = index.permission_statements(p);
        let all: Vec<Statement> = held.iter().flat_map(|(_, s)| s.iter().cloned()).collect();
        if is_full_admin(&all) {
            let policies: Vec<&str> = held
                .iter()
                .filter(|(_, s)| is_full_admin(s))
                .map(|(g, _)| g.policy_uid)
                .collect();
            out.push(
                "full_admin",
                Some(p),
                policies.first().copied(),
                json!({ "policies": policies }),
                last,
                false,
            );
        }
        if used && older(p.created_ms) {
            unused_permissions(&mut out, p, &held, &all, activity, catalog);
        }
    }
    if usage.root.events > 0 {
        let mut actions: Vec<(&String, &(String, i64))> = usage.root.actions.iter().collect();
        actions.sort_by_key(|a| std::cmp::Reverse(a.1.1));
        let actions: Vec<&str> = actions.iter().take(20).map(|(_, v)| v.0.as_str()).collect();
        let root = Principal {
            kind: PrincipalType::User,
            uid: c.run.account_uid.clone().unwrap_or_default(),
            name: "root".to_string(),
            alt_uid: None,
            created_ms: None,
            last_used_ms: None,
            groups: Vec::new(),
            attached: Vec::new(),
            inline: Vec::new(),
            trust: None,
            service_linked: false,
        };
        out.push(
            "root_use",
            Some(&root),
            None,
            json!({
                "events": usage.root.events,
                "first": iso(usage.root.first_ms),
                "last": iso(usage.root.last_ms),
                "recent_actions": actions,
            }),
            usage.root.last_ms,
            false,
        );
        if let Some(last) = out.rows.last_mut() {
            last.principal_type = Some("root".to_string());
        }
    }
    out.rows.sort_by(|a, b| {
        (a.kind, &a.principal_uid, &a.resource_uid).cmp(&(
            b.kind,
            &b.principal_uid,
            &b.resource_uid,
        ))
    });
    out.rows
}

/// `unused_service` and `unused_actions` of one active principal.
fn unused_permissions(
    out: &mut Out<'_>,
    p: &Principal,
    held: &[(super::entitlements::Grant<'_>, Vec<Statement>)],
    all: &[Statement],
    activity: &Activity,
    catalog: &Catalog,
) {
    let granted = granted_actions(all, catalog);
    let mut by_service: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for a in &granted {
        by_service.entry(service_of(a)).or_default().push(a);
    }
    // Which policies grant something in each service (for the evidence).
    let mut granted_by: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (grant, statements) in held {
        if !statements.iter().any(|s| s.effect == Effect::Allow) {
            continue;
        }
        let name = grant
            .policy
            .map(|p| p.name.as_str())
            .unwrap_or(grant.policy_uid);
        for service in granted_actions(statements, catalog)
            .iter()
            .map(|a| service_of(a))
        {
            granted_by.entry(service).or_default().insert(name);
        }
    }
    for (service, actions) in &by_service {
        let (used, unused): (Vec<&String>, Vec<&String>) = actions
            .iter()
            .copied()
            .partition(|a| activity.actions.contains_key(&a.to_ascii_lowercase()));
        if unused.is_empty() {
            continue;
        }
        let last = used
            .iter()
            .filter_map(|a| activity.actions.get(&a.to_ascii_lowercase()).map(|v| v.1))
            .max();
        let policies: Vec<&str> = granted_by
            .get(service)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        if used.is_empty() {
            out.push(
                "unused_service",
                Some(p),
                Some(service),
                json!({
                    "service": service,
                    "granted_actions": actions.len(),
                    "granted_by": policies,
                    "used_actions": [],
                }),
                None,
                true,
            );
        } else {
            out.push(
                "unused_actions",
                Some(p),
                Some(service),
                json!({
                    "service": service,
                    "granted_actions": actions.len(),
                    "granted_by": policies,
                    "used_actions": used,
                    "unused_actions": unused,
                }),
                last,
                true,
            );
        }
    }
}
