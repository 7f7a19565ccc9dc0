//! AWS IAM entitlements: `GetAccountAuthorizationDetails` (users, groups, roles, their inline
//! and attached policies, the default version of every managed policy, role trust policies and
//! `RoleLastUsed`), then per user `ListUsers` (`PasswordLastUsed`), `GetLoginProfile` (whether
//! a console password exists), `ListAccessKeys` and per key `GetAccessKeyLastUsed`.

use std::collections::BTreeMap;

use aws_sdk_iam::operation::get_login_profile::GetLoginProfileError;
use aws_sdk_iam::types::{AttachedPolicy, PolicyDetail};

use super::{AwsCloud, api_error, millis, next_token};
use crate::ciem::model::{
    Credential, CredentialKind, Entitlements, Policy, PolicyKind, Principal, PrincipalType,
};
use crate::ciem::policy::decode_document;
use crate::sync::ApiError;

/// The calls, as `accounts check` prints them.
pub const CALLS: &str = "iam:GetAccountAuthorizationDetails, iam:ListUsers, iam:GetLoginProfile, \
                         iam:ListAccessKeys, iam:GetAccessKeyLastUsed";

/// An IAM document (URL-encoded JSON) as JSON; None, with a warning, when it does not decode.
fn document(text: Option<&str>, what: &str) -> Option<serde_json::Value> {
    match decode_document(text?) {
        Ok(doc) => Some(doc),
        Err(e) => {
            tracing::warn!(policy = what, error = %e, "policy document does not decode; recorded without statements");
            None
        }
    }
}

fn inline(owner_uid: &str, list: &[PolicyDetail]) -> Vec<Policy> {
    list.iter()
        .filter_map(|p| {
            let name = p.policy_name()?;
            Some(Policy {
                uid: format!("{owner_uid}/inline/{name}"),
                name: name.to_string(),
                kind: PolicyKind::Inline,
                version: None,
                document: document(p.policy_document(), name),
            })
        })
        .collect()
}

fn attached(list: &[AttachedPolicy]) -> Vec<String> {
    list.iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect()
}

impl AwsCloud {
    pub(super) async fn iam_entitlements(&self) -> Result<Entitlements, ApiError> {
        let client = self.iam();
        let mut out = Entitlements {
            documents: true,
            ..Entitlements::default()
        };
        // Group names (as UserDetail lists them) to ARNs.
        let mut group_arns: BTreeMap<String, String> = BTreeMap::new();
        let mut user_groups: Vec<(usize, Vec<String>)> = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = client
                .get_account_authorization_details()
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| api_error("iam:GetAccountAuthorizationDetails", e))?;
            for u in page.user_detail_list() {
                let (Some(arn), Some(name)) = (u.arn(), u.user_name()) else {
                    continue;
                };
                user_groups.push((out.principals.len(), u.group_list().to_vec()));
                out.principals.push(Principal {
                    kind: PrincipalType::User,
                    uid: arn.to_string(),
                    name: name.to_string(),
                    alt_uid: u.user_id().map(str::to_string),
                    created_ms: millis(u.create_date()),
                    last_used_ms: None,
                    groups: Vec::new(),
                    attached: attached(u.attached_managed_policies()),
                    inline: inline(arn, u.user_policy_list()),
                    trust: None,
                    service_linked: false,
                });
            }
            for g in page.group_detail_list() {
                let (Some(arn), Some(name)) = (g.arn(), g.group_name()) else {
                    continue;
                };
                group_arns.insert(name.to_string(), arn.to_string());
                out.principals.push(Principal {
                    kind: PrincipalType::Group,
                    uid: arn.to_string(),
                    name: name.to_string(),
                    alt_uid: g.group_id().map(str::to_string),
                    created_ms: millis(g.create_date()),
                    last_used_ms: None,
                    groups: Vec::new(),
                    attached: attached(g.attached_managed_policies()),
                    inline: inline(arn, g.group_policy_list()),
                    trust: None,
                    service_linked: false,
                });
            }
            for r in page.role_detail_list() {
                let (Some(arn), Some(name)) = (r.arn(), r.role_name()) else {
                    continue;
                };
                out.principals.push(Principal {
                    kind: PrincipalType::Role,
                    uid: arn.to_string(),
                    name: name.to_string(),
                    alt_uid: r.role_id().map(str::to_string),
                    created_ms: millis(r.create_date()),
                    last_used_ms: millis(r.role_last_used().and_then(|u| u.last_used_date())),
                    groups: Vec::new(),
                    attached: attached(r.attached_managed_policies()),
                    inline: inline(arn, r.role_policy_list()),
                    trust: Some(Policy {
                        uid: format!("{arn}/trust"),
                        name: format!("{name} trust policy"),
                        kind: PolicyKind::Trust,
                        version: None,
                        document: document(r.assume_role_policy_document(), name),
                    }),
                    service_linked: arn.contains(":role/aws-service-role/"),
                });
            }
            for p in page.policies() {
                let Some(arn) = p.arn() else { continue };
                // The name is the ARN's last segment (moto omits PolicyName here).
                let name = p
                    .policy_name()
                    .unwrap_or_else(|| arn.rsplit('/').next().unwrap_or(arn));
                let default = p
                    .policy_version_list()
                    .iter()
                    .find(|v| v.is_default_version());
                out.policies.push(Policy {
                    uid: arn.to_string(),
                    name: name.to_string(),
                    kind: if arn.starts_with("arn:aws:iam::aws:")
                        || arn.contains(":iam::aws:policy/")
                    {
                        PolicyKind::CloudManaged
                    } else {
                        PolicyKind::Managed
                    },
                    version: p
                        .default_version_id()
                        .or(default.and_then(|v| v.version_id()))
                        .map(str::to_string),
                    document: default.and_then(|v| document(v.document(), name)),
                });
            }
            marker = if page.is_truncated() {
                next_token(page.marker(), &marker)
            } else {
                None
            };
            if marker.is_none() {
                break;
            }
        }
        // Cloud-managed policies nobody holds say nothing about this account (moto, unlike
        // AWS, lists all of them).
        let held: std::collections::BTreeSet<String> = out
            .principals
            .iter()
            .flat_map(|p| p.attached.iter().cloned())
            .collect();
        out.policies
            .retain(|p| p.kind != PolicyKind::CloudManaged || held.contains(&p.uid));
        for (i, names) in user_groups {
            out.principals[i].groups = names
                .iter()
                .filter_map(|n| group_arns.get(n).cloned())
                .collect();
        }
        self.iam_credentials(&client, &mut out).await?;
        Ok(out)
    }

    /// Console passwords and access keys of every user, with the cloud's last-used dates.
    async fn iam_credentials(
        &self,
        client: &aws_sdk_iam::Client,
        out: &mut Entitlements,
    ) -> Result<(), ApiError> {
        let mut marker: Option<String> = None;
        loop {
            let page = client
                .list_users()
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| api_error("iam:ListUsers", e))?;
            for u in page.users() {
                let name = u.user_name();
                let arn = u.arn();
                match client.get_login_profile().user_name(name).send().await {
                    Ok(profile) => out.credentials.push(Credential {
                        kind: CredentialKind::ConsolePassword,
                        uid: format!("{arn}#password"),
                        principal_uid: arn.to_string(),
                        status: Some("Active".to_string()),
                        created_ms: profile
                            .login_profile()
                            .and_then(|p| p.create_date().to_millis().ok()),
                        last_used_ms: millis(u.password_last_used()),
                        last_used_service: None,
                    }),
                    Err(e)
                        if matches!(
                            e.as_service_error(),
                            Some(GetLoginProfileError::NoSuchEntityException(_))
                        ) => {}
                    Err(e) => {
                        let e = api_error("iam:GetLoginProfile", e);
                        // moto and some proxies answer a missing profile without the typed error.
                        if e.code.as_deref() != Some("NoSuchEntity") {
                            return Err(e);
                        }
                    }
                }
                let keys = client
                    .list_access_keys()
                    .user_name(name)
                    .send()
                    .await
                    .map_err(|e| api_error("iam:ListAccessKeys", e))?;
                for k in keys.access_key_metadata() {
                    let Some(id) = k.access_key_id() else {
                        continue;
                    };
                    let used = client
                        .get_access_key_last_used()
                        .access_key_id(id)
                        .send()
                        .await
                        .map_err(|e| api_error("iam:GetAccessKeyLastUsed", e))?;
                    let used = used.access_key_last_used();
                    out.credentials.push(Credential {
                        kind: CredentialKind::AccessKey,
                        uid: id.to_string(),
                        principal_uid: arn.to_string(),
                        status: k.status().map(|s| s.as_str().to_string()),
                        created_ms: millis(k.create_date()),
                        last_used_ms: millis(used.and_then(|u| u.last_used_date())),
                        last_used_service: used
                            .map(|u| u.service_name())
                            .filter(|s| !s.is_empty() && *s != "N/A")
                            .map(str::to_string),
                    });
                }
            }
            marker = if page.is_truncated() {
                next_token(page.marker(), &marker)
            } else {
                None
            };
            if marker.is_none() {
                return Ok(());
            }
        }
    }
}
