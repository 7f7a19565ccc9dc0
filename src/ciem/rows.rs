//! The rows of the `entitlements` and `ciem_findings` datasets (columns in
//! `schemas/entitlements.json` and `schemas/ciem_findings.json`).

use crate::event::Provider;

/// One row of `entitlements`: a principal, a policy statement, one action pattern and one
/// resource pattern, as one sync run read them.
#[derive(Debug, Clone, PartialEq)]
pub struct EntitlementRow {
    pub run_id: String,
    pub run_time_ms: i64,
    pub account_name: String,
    pub cloud_provider: Provider,
    pub cloud_account_uid: Option<String>,
    pub principal_type: &'static str,
    pub principal_uid: String,
    pub principal_name: String,
    pub via: &'static str,
    pub via_uid: Option<String>,
    pub policy_uid: String,
    pub policy_name: String,
    pub policy_type: &'static str,
    pub policy_version: Option<String>,
    pub statement_index: Option<i32>,
    pub statement_sid: Option<String>,
    pub effect: Option<&'static str>,
    pub action: Option<String>,
    pub not_action: bool,
    pub resource: Option<String>,
    pub not_resource: bool,
    pub condition: Option<String>,
    pub trusted_principal: Option<String>,
    pub policy_error: Option<String>,
}

/// One row of `ciem_findings`.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub run_id: String,
    pub computed_time_ms: i64,
    pub account_name: String,
    pub cloud_provider: Provider,
    pub cloud_account_uid: Option<String>,
    pub finding_uid: String,
    pub kind: &'static str,
    pub principal_type: Option<String>,
    pub principal_uid: Option<String>,
    pub principal_name: Option<String>,
    pub resource_uid: Option<String>,
    /// JSON text.
    pub detail: String,
    pub last_activity_time_ms: Option<i64>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub tracking_period_days: i32,
    pub catalog: Option<String>,
}
