//! Tencent Cloud CAM entitlements for the account sync (feature `entitlements`): sub-users,
//! user groups and roles with their attached policies, each attached policy's document, and
//! the users' long-term credentials. CAM API 2019-01-16, called in the home region.
//!
//! Identifiers are chosen so that a principal's `uid` (or `alt_uid`) equals what a CloudAudit
//! event by that principal carries once normalised (`src/normalize/cloudaudit.rs`:
//! `actor_user_uid` = `userIdentity.principalId`, `actor_user_uid_alt` =
//! `sessionContext.uin`, `actor_session_issuer` = `sessionContext.roleArn`):
//! - **users**: `uid` = the sub-account UIN as a decimal string. CloudAudit names the caller
//!   by UIN: in both shipped samples `principalId` and `sessionContext.uin` are the caller's
//!   UIN (`1000000000`, `1150691759`, given as a string in one and a number in the other, and
//!   the normaliser turns both into the same text). `alt_uid` = CAM's `Uid` (the sub-user's
//!   internal id), which events do not carry.
//! - **roles**: `uid` = the role ARN `qcs::cam::uin/<owner uin>:roleName/<name>` (the form STS
//!   AssumeRole takes and a role session's `sessionContext.roleArn` carries, which the
//!   normaliser puts in `actor_session_issuer`); `alt_uid` = CAM's `RoleId`. The owner UIN
//!   comes from STS GetCallerIdentity (`AccountId`), as DescribeRoleList gives no ARN.
//! - **groups**: `uid` = `GroupId` as a string (groups never act, so no event names them).
//! - **policies**: `uid` = `PolicyId` as a string.
//!
//! What CAM does not give: the last use of a console password (DescribeSubAccounts'
//! `LastLoginTime`, the user's last console login, is used instead: that login may also have
//! been by SSO or a QR code), a password's creation time, a role's last use, and versions of
//! a policy document (`Policy::version` stays None).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{MAX_PAGES, TencentCloud, s};
use crate::ciem::model::{
    Credential, CredentialKind, Entitlements, Policy, PolicyKind, Principal, PrincipalType,
};
use crate::sync::{ApiError, Cloud, Failure, parse_time};

const VERSION: &str = "2019-01-16";
/// GetSecurityLastUsed takes at most 10 key ids per call.
const LAST_USED_BATCH: usize = 10;
/// DescribeSubAccounts takes at most 50 UINs per call.
const SUB_ACCOUNTS_BATCH: usize = 50;
/// Retries of a throttled call.
const THROTTLE_RETRIES: u64 = 4;

/// The calls [`TencentCloud::cam_entitlements`] makes, as `accounts check` prints them.
pub(super) const CALLS: &str = "sts:GetCallerIdentity, cam:ListUsers, cam:ListGroups, \
     cam:ListGroupsForUser, cam:ListAttachedGroupPolicies, cam:ListAttachedUserAllPolicies, \
     cam:DescribeRoleList, cam:ListAttachedRolePolicies, cam:GetPolicy, cam:ListAccessKeys, \
     cam:GetSecurityLastUsed, cam:DescribeSubAccounts";

/// What a listing says of an attached policy, kept in case GetPolicy leaves a field out.
#[derive(Debug, Default)]
struct PolicyRef {
    name: Option<String>,
    kind: Option<PolicyKind>,
}

type PolicyRefs = BTreeMap<String, PolicyRef>;

impl TencentCloud {
    /// One CAM call. CAM limits some calls to a few a second (ListAttachedUserAllPolicies: 5),
    /// which a run over many users reaches: a `RequestLimitExceeded*` answer is retried after
    /// 1 s, 2 s, ... up to [`THROTTLE_RETRIES`] times.
    async fn cam(
        &self,
        action: &'static str,
        params: Value,
    ) -> Result<Map<String, Value>, ApiError> {
        let mut attempt = 0;
        loop {
            match self
                .call("cam", VERSION, action, Some(&self.home_region), &params)
                .await
            {
                Err(e)
                    if attempt < THROTTLE_RETRIES
                        && e.code
                            .as_deref()
                            .is_some_and(|c| c.starts_with("RequestLimitExceeded")) =>
                {
                    attempt += 1;
                    tracing::debug!(action, attempt, "CAM throttled the call; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// A Page/Rp listing (pages from 1): every page until `TotalNum` items, or a short or
    /// empty page when the answer has no `TotalNum`. A server that ignores `Page` (the same
    /// items again) or never stops is an error, not an endless loop.
    async fn cam_pages(
        &self,
        action: &'static str,
        params: Value,
        list_key: &str,
    ) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut previous: Option<Vec<Value>> = None;
        let not_honoured = |message: String| ApiError {
            call: action,
            failure: Failure::Other,
            code: None,
            message,
        };
        for page in 1..=MAX_PAGES {
            let mut params = params.clone();
            if let Value::Object(m) = &mut params {
                m.insert("Page".into(), json!(page));
                m.insert("Rp".into(), json!(self.page_size));
            }
            let answer = self.cam(action, params).await?;
            let items = answer
                .get(list_key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !items.is_empty() && previous.as_ref() == Some(&items) {
                return Err(not_honoured(format!(
                    "page {page} repeats page {}: the server does not honour Page",
                    page - 1
                )));
            }
            let n = items.len() as u64;
            out.extend(items.iter().cloned());
            let done = n == 0
                || match answer.get("TotalNum").and_then(int) {
                    Some(total) => out.len() as u64 >= total,
                    None => n < self.page_size,
                };
            if done {
                return Ok(out);
            }
            previous = Some(items);
        }
        Err(not_honoured(format!(
            "more than {MAX_PAGES} pages: the server does not honour Page"
        )))
    }

    /// The policies attached to a group (ListAttachedGroupPolicies), noted in `refs`.
    async fn group_policies(
        &self,
        group_id: u64,
        refs: &mut PolicyRefs,
    ) -> Result<Vec<String>, ApiError> {
        let list = self
            .cam_pages(
                "ListAttachedGroupPolicies",
                json!({ "TargetGroupId": group_id }),
                "List",
            )
            .await?;
        Ok(attachments(&list, refs))
    }

    /// The account's entitlements; see the module documentation for the identifiers.
    ///
    /// Any failed call fails the run, GetPolicy included: a policy recorded without its
    /// document would read, to the findings and the diff against the previous run, as a
    /// policy that grants nothing, so an incomplete picture is worse than none (the sync keeps
    /// the previous one). A document that CAM returns but that is not JSON only loses that
    /// document (`document: None`, logged).
    pub(super) async fn cam_entitlements(&self) -> Result<Entitlements, ApiError> {
        let owner = self.whoami().await?.account_uid;
        if owner.is_empty() {
            return Err(ApiError {
                call: "GetCallerIdentity",
                failure: Failure::Other,
                code: None,
                message: "no AccountId in the answer: role ARNs cannot be built".into(),
            });
        }
        let mut refs = PolicyRefs::new();
        let mut groups: BTreeMap<String, Principal> = BTreeMap::new();
        for info in self.cam_pages("ListGroups", json!({}), "GroupInfo").await? {
            self.add_group(&info, &mut groups, &mut refs).await?;
        }

        let mut principals = Vec::new();
        let mut credentials = Vec::new();
        let mut console_users = Vec::new();
        let listed = self.cam("ListUsers", json!({})).await?;
        for user in listed
            .get("Data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(uin) = user.get("Uin").and_then(int).filter(|u| *u > 0) else {
                tracing::warn!(
                    user = s(user, "Name").unwrap_or(""),
                    "CAM ListUsers gave a user without a UIN; skipped"
                );
                continue;
            };
            let uid = uin.to_string();
            let mut member_of = Vec::new();
            for info in self
                .cam_pages("ListGroupsForUser", json!({ "SubUin": uin }), "GroupInfo")
                .await?
            {
                if let Some(id) = self.add_group(&info, &mut groups, &mut refs).await? {
                    member_of.push(id);
                }
            }
            member_of.sort();
            member_of.dedup();
            // AttachType 1: direct attachments only. The via-group ones are on the group
            // principals (their own listing), so "via group" is derived from `groups`; an
            // AttachType 0 row of a policy attached both ways cannot be told apart.
            let direct = self
                .cam_pages(
                    "ListAttachedUserAllPolicies",
                    json!({ "TargetUin": uin, "AttachType": 1 }),
                    "PolicyList",
                )
                .await?;
            let keys = self
                .cam("ListAccessKeys", json!({ "TargetUin": uin }))
                .await?;
            for key in keys
                .get("AccessKeys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(id) = s(key, "AccessKeyId").filter(|k| !k.is_empty()) else {
                    continue;
                };
                credentials.push(Credential {
                    kind: CredentialKind::AccessKey,
                    uid: id.to_string(),
                    principal_uid: uid.clone(),
                    status: key.get("Status").and_then(key_status),
                    created_ms: parse_time(s(key, "CreateTime")),
                    last_used_ms: None,
                    last_used_service: None,
                });
            }
            if user.get("ConsoleLogin").and_then(int) == Some(1) {
                console_users.push(uin);
            }
            principals.push(Principal {
                kind: PrincipalType::User,
                name: s(user, "Name").unwrap_or(&uid).to_string(),
                alt_uid: user.get("Uid").and_then(id_text),
                created_ms: parse_time(s(user, "CreateTime")),
                last_used_ms: None,
                groups: member_of,
                attached: attachments(&direct, &mut refs),
                inline: Vec::new(),
                trust: None,
                service_linked: false,
                uid,
            });
        }
        principals.extend(groups.into_values());

        for role in self
            .cam_pages("DescribeRoleList", json!({}), "List")
            .await?
        {
            let Some(role_id) = role.get("RoleId").and_then(id_text) else {
                continue;
            };
            let name = s(&role, "RoleName").unwrap_or(&role_id).to_string();
            let arn = s(&role, "RoleArn")
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("qcs::cam::uin/{owner}:roleName/{name}"));
            let attached = self
                .cam_pages(
                    "ListAttachedRolePolicies",
                    json!({ "RoleId": role_id }),
                    "List",
                )
                .await?;
            let trust = role.get("PolicyDocument").map(|d| Policy {
                uid: format!("{arn}/trust"),
                name: "trust".to_string(),
                kind: PolicyKind::Trust,
                version: None,
                document: document(d, &arn),
            });
            principals.push(Principal {
                kind: PrincipalType::Role,
                name,
                alt_uid: Some(role_id),
                created_ms: parse_time(s(&role, "AddTime")),
                last_used_ms: None,
                groups: Vec::new(),
                attached: attachments(&attached, &mut refs),
                inline: Vec::new(),
                trust,
                // DescribeRoleList's RoleType: user, system or service_linked. A
                // service-linked role (TAT_QCSLinkedRoleInCommand, ...) is assumed by the
                // service it belongs to, whose calls CloudAudit may not record as the role's.
                service_linked: s(&role, "RoleType") == Some("service_linked"),
                uid: arn,
            });
        }

        let mut policies = Vec::new();
        for (id, seen) in &refs {
            let Ok(number) = id.parse::<u64>() else {
                tracing::warn!(policy = %id, "CAM policy id is not a number; its document is not fetched");
                policies.push(Policy {
                    uid: id.clone(),
                    name: seen.name.clone().unwrap_or_else(|| id.clone()),
                    kind: seen.kind.unwrap_or(PolicyKind::Managed),
                    version: None,
                    document: None,
                });
                continue;
            };
            let p = self.cam("GetPolicy", json!({ "PolicyId": number })).await?;
            let kind = match p.get("Type").and_then(int) {
                Some(1) => PolicyKind::Managed,
                Some(2) => PolicyKind::CloudManaged,
                _ => seen.kind.unwrap_or(PolicyKind::Managed),
            };
            let name = p
                .get("PolicyName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .or_else(|| seen.name.clone())
                .unwrap_or_else(|| id.clone());
            policies.push(Policy {
                uid: id.clone(),
                name,
                kind,
                version: None,
                document: p.get("PolicyDocument").and_then(|d| document(d, id)),
            });
        }

        self.key_last_used(&mut credentials).await?;
        credentials.extend(self.console_passwords(&console_users).await?);
        Ok(Entitlements {
            principals,
            policies,
            credentials,
            documents: true,
        })
    }

    /// Records a group (from ListGroups or ListGroupsForUser) once, with its policies; returns
    /// its uid.
    async fn add_group(
        &self,
        info: &Value,
        groups: &mut BTreeMap<String, Principal>,
        refs: &mut PolicyRefs,
    ) -> Result<Option<String>, ApiError> {
        let Some(id) = info.get("GroupId").and_then(int) else {
            return Ok(None);
        };
        let uid = id.to_string();
        if !groups.contains_key(&uid) {
            let attached = self.group_policies(id, refs).await?;
            groups.insert(
                uid.clone(),
                Principal {
                    kind: PrincipalType::Group,
                    name: s(info, "GroupName").unwrap_or(&uid).to_string(),
                    alt_uid: None,
                    created_ms: parse_time(s(info, "CreateTime")),
                    last_used_ms: None,
                    groups: Vec::new(),
                    attached,
                    inline: Vec::new(),
                    trust: None,
                    service_linked: false,
                    uid: uid.clone(),
                },
            );
        }
        Ok(Some(uid))
    }

    /// Fills the access keys' last use from GetSecurityLastUsed (10 keys per call).
    async fn key_last_used(&self, credentials: &mut [Credential]) -> Result<(), ApiError> {
        let ids: Vec<String> = credentials
            .iter()
            .filter(|c| c.kind == CredentialKind::AccessKey)
            .map(|c| c.uid.clone())
            .collect();
        let mut used: BTreeMap<String, i64> = BTreeMap::new();
        for batch in ids.chunks(LAST_USED_BATCH) {
            let answer = self
                .cam("GetSecurityLastUsed", json!({ "SecretIdList": batch }))
                .await?;
            for row in answer
                .get("SecretIdLastUsedRows")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(id), Some(ms)) = (s(row, "SecretId"), last_used_ms(row)) {
                    used.insert(id.to_string(), ms);
                }
            }
        }
        for c in credentials
            .iter_mut()
            .filter(|c| c.kind == CredentialKind::AccessKey)
        {
            c.last_used_ms = used.get(&c.uid).copied();
        }
        Ok(())
    }

    /// A console password per user allowed to log in to the console, last used at the user's
    /// last console login (DescribeSubAccounts `LastLoginTime`, 50 users per call).
    async fn console_passwords(&self, uins: &[u64]) -> Result<Vec<Credential>, ApiError> {
        let mut last_login: BTreeMap<u64, i64> = BTreeMap::new();
        for batch in uins.chunks(SUB_ACCOUNTS_BATCH) {
            let answer = self
                .cam(
                    "DescribeSubAccounts",
                    json!({ "FilterSubAccountUin": batch }),
                )
                .await?;
            for row in answer
                .get("SubAccounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(uin), Some(ms)) = (
                    row.get("Uin").and_then(int),
                    parse_time(s(row, "LastLoginTime").filter(|t| !t.is_empty())),
                ) {
                    last_login.insert(uin, ms);
                }
            }
        }
        Ok(uins
            .iter()
            .map(|uin| Credential {
                kind: CredentialKind::ConsolePassword,
                uid: format!("{uin}#password"),
                principal_uid: uin.to_string(),
                status: Some("Active".to_string()),
                created_ms: None,
                last_used_ms: last_login.get(uin).copied(),
                last_used_service: None,
            })
            .collect())
    }
}

/// The policy ids of a listing of attachments, noted in `refs` with what the listing says.
fn attachments(list: &[Value], refs: &mut PolicyRefs) -> Vec<String> {
    let mut ids = Vec::new();
    for item in list {
        let Some(id) = item.get("PolicyId").and_then(id_text) else {
            continue;
        };
        let seen = refs.entry(id.clone()).or_default();
        if seen.name.is_none() {
            seen.name = s(item, "PolicyName").map(str::to_string);
        }
        if seen.kind.is_none() {
            seen.kind = kind_hint(item);
        }
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    ids
}

/// The kind a listing gives: `PolicyType` `QCS`/`User` (group and role listings) or
/// `StrategyType` 2/1 (user listings).
fn kind_hint(item: &Value) -> Option<PolicyKind> {
    match s(item, "PolicyType")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("qcs") => return Some(PolicyKind::CloudManaged),
        Some("user") => return Some(PolicyKind::Managed),
        _ => {}
    }
    match item.get("StrategyType").and_then(int) {
        Some(1) => Some(PolicyKind::Managed),
        Some(2) => Some(PolicyKind::CloudManaged),
        _ => None,
    }
}

/// A policy document: CAM returns JSON text. Text that does not parse is logged (by policy,
/// never its content) and dropped.
fn document(value: &Value, policy: &str) -> Option<Value> {
    match value {
        Value::String(text) if text.trim().is_empty() => None,
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(doc) => Some(doc),
            Err(e) => {
                tracing::warn!(policy, error = %e, "CAM policy document is not JSON; kept without its document");
                None
            }
        },
        Value::Object(_) => Some(value.clone()),
        _ => None,
    }
}

/// An integer that CAM gives as a number or as a numeric string.
fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An id as text, whether CAM gives it as a string or a number.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `Active`/`Inactive` as CAM says it, or from its older 1/0.
fn key_status(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s == "1" => Some("Active".to_string()),
        Value::String(s) if s == "0" => Some("Inactive".to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some("Active".to_string()),
            Some(0) => Some("Inactive".to_string()),
            _ => Some(n.to_string()),
        },
        _ => None,
    }
}

/// A key's last use: `LastSecretUsedDate` (epoch milliseconds) when set, else
/// `LastUsedDate` (a day, `YYYY-MM-DD`, taken as midnight Beijing time). A never-used key has
/// neither (0 or empty).
fn last_used_ms(row: &Value) -> Option<i64> {
    let exact = row
        .get("LastSecretUsedDate")
        .and_then(Value::as_f64)
        .and_then(crate::normalize::epoch_number_to_ms);
    exact.or_else(|| {
        let day = s(row, "LastUsedDate")?.trim();
        if day.len() == 10 {
            parse_time(Some(&format!("{day} 00:00:00")))
        } else {
            parse_time(Some(day).filter(|d| !d.is_empty()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cam_values_of_either_type() {
        assert_eq!(int(&json!("42")), Some(42));
        assert_eq!(int(&json!(42)), Some(42));
        assert_eq!(id_text(&json!(7)), Some("7".into()));
        assert_eq!(key_status(&json!(0)).as_deref(), Some("Inactive"));
        assert_eq!(key_status(&json!("Active")).as_deref(), Some("Active"));
        assert_eq!(
            last_used_ms(&json!({"LastUsedDate": "2024-04-01", "LastSecretUsedDate": 0})),
            Some(1_711_900_800_000) // 2024-03-31T16:00:00Z
        );
        assert_eq!(
            last_used_ms(&json!({"LastUsedDate": "", "LastSecretUsedDate": 0})),
            None
        );
        assert_eq!(document(&json!("{not json"), "p"), None);
    }
}
