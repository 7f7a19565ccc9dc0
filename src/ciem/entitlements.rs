//! The `entitlements` rows of one sync run, and each principal's grants (the policies it holds
//! directly, through its groups, and a role's trust policy), shared with the findings.

use std::collections::BTreeMap;

use super::model::{Entitlements, Policy, PolicyKind, Principal, PrincipalType};
use super::policy::{Statement, statements};
use super::rows::EntitlementRow;
use crate::event::Provider;

/// How a principal holds a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    Direct,
    Group,
    RoleTrust,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Group => "group",
            Via::RoleTrust => "role_trust",
        }
    }
}

/// A policy a principal holds; `policy` is None for an attached managed policy the cloud did
/// not describe (the uid and the error say which).
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    pub via: Via,
    /// The group's uid when `via` is [`Via::Group`].
    pub via_uid: Option<&'a str>,
    pub policy_uid: &'a str,
    pub policy: Option<&'a Policy>,
}

/// The parsed statements of a grant, or why there are none.
pub fn grant_statements(grant: &Grant<'_>) -> Result<Vec<Statement>, String> {
    let policy = grant
        .policy
        .ok_or_else(|| "the cloud did not return this managed policy".to_string())?;
    let doc = policy
        .document
        .as_ref()
        .ok_or_else(|| "the cloud did not return a readable document".to_string())?;
    statements(doc).map_err(|e| e.to_string())
}

/// Principals and managed policies by uid.
pub struct Index<'a> {
    pub principals: BTreeMap<&'a str, &'a Principal>,
    pub policies: BTreeMap<&'a str, &'a Policy>,
}

impl<'a> Index<'a> {
    pub fn new(ent: &'a Entitlements) -> Self {
        Index {
            principals: ent.principals.iter().map(|p| (p.uid.as_str(), p)).collect(),
            policies: ent.policies.iter().map(|p| (p.uid.as_str(), p)).collect(),
        }
    }

    fn own(&self, p: &'a Principal, via: Via, via_uid: Option<&'a str>, out: &mut Vec<Grant<'a>>) {
        out.extend(p.inline.iter().map(|pol| Grant {
            via,
            via_uid,
            policy_uid: &pol.uid,
            policy: Some(pol),
        }));
        out.extend(p.attached.iter().map(|uid| Grant {
            via,
            via_uid,
            policy_uid: uid,
            policy: self.policies.get(uid.as_str()).copied(),
        }));
    }

    /// Every policy `p` holds: its own, its groups' (users), and its trust policy (roles).
    pub fn grants(&self, p: &'a Principal) -> Vec<Grant<'a>> {
        let mut out = Vec::new();
        self.own(p, Via::Direct, None, &mut out);
        for g in &p.groups {
            if let Some(group) = self.principals.get(g.as_str()) {
                self.own(group, Via::Group, Some(g), &mut out);
            }
        }
        if let Some(trust) = &p.trust {
            out.push(Grant {
                via: Via::RoleTrust,
                via_uid: None,
                policy_uid: &trust.uid,
                policy: Some(trust),
            });
        }
        out
    }

    /// The statements that decide what `p` may call: every grant but the trust policy.
    pub fn permission_statements(&self, p: &'a Principal) -> Vec<(Grant<'a>, Vec<Statement>)> {
        self.grants(p)
            .into_iter()
            .filter(|g| g.via != Via::RoleTrust)
            .filter_map(|g| grant_statements(&g).ok().map(|s| (g, s)))
            .collect()
    }
}

/// What every row of one run shares.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub run_time_ms: i64,
    pub account_name: String,
    pub provider: Provider,
    pub account_uid: Option<String>,
}

fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().filter(|v| !v.is_null()).map(|v| v.to_string())
}

/// One row per principal, grant, statement, action pattern and resource pattern.
pub fn rows(ent: &Entitlements, run: &RunInfo) -> Vec<EntitlementRow> {
    let index = Index::new(ent);
    let mut out = Vec::new();
    for p in &ent.principals {
        for grant in index.grants(p) {
            let base = EntitlementRow {
                run_id: run.run_id.clone(),
                run_time_ms: run.run_time_ms,
                account_name: run.account_name.clone(),
                cloud_provider: run.provider,
                cloud_account_uid: run.account_uid.clone(),
                principal_type: p.kind.as_str(),
                principal_uid: p.uid.clone(),
                principal_name: p.name.clone(),
                via: grant.via.as_str(),
                via_uid: grant.via_uid.map(str::to_string),
                policy_uid: grant.policy_uid.to_string(),
                policy_name: grant
                    .policy
                    .map(|pol| pol.name.clone())
                    .unwrap_or_else(|| grant.policy_uid.to_string()),
                policy_type: grant
                    .policy
                    .map(|pol| pol.kind)
                    .unwrap_or(PolicyKind::Managed)
                    .as_str(),
                policy_version: grant.policy.and_then(|pol| pol.version.clone()),
                statement_index: None,
                statement_sid: None,
                effect: None,
                action: None,
                not_action: false,
                resource: None,
                not_resource: false,
                condition: None,
                trusted_principal: None,
                policy_error: None,
            };
            let statements = match grant_statements(&grant) {
                Ok(s) if !s.is_empty() => s,
                Ok(_) => {
                    out.push(EntitlementRow {
                        policy_error: Some("the document has no statements".into()),
                        ..base
                    });
                    continue;
                }
                Err(e) => {
                    out.push(EntitlementRow {
                        policy_error: Some(e),
                        ..base
                    });
                    continue;
                }
            };
            for s in statements {
                let resources: Vec<Option<&str>> = if s.resources.is_empty() {
                    vec![None]
                } else {
                    s.resources.iter().map(|r| Some(r.as_str())).collect()
                };
                for action in &s.actions {
                    for resource in &resources {
                        out.push(EntitlementRow {
                            statement_index: i32::try_from(s.index).ok(),
                            statement_sid: s.sid.clone(),
                            effect: Some(s.effect.as_str()),
                            action: Some(action.clone()),
                            not_action: s.not_action,
                            resource: resource.map(str::to_string),
                            not_resource: s.not_resource,
                            condition: json_text(&s.condition),
                            trusted_principal: json_text(&s.principal),
                            ..base.clone()
                        });
                    }
                }
            }
        }
    }
    out
}

/// Whether a principal of this type is judged by its use (users and roles; groups are not
/// principals that act).
pub fn acts(p: &Principal) -> bool {
    matches!(p.kind, PrincipalType::User | PrincipalType::Role)
}
