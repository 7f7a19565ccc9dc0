//! An account's entitlements as one sync run saw them: principals (users, groups, roles),
//! their policies with documents, and their long-term credentials. Every cloud's sync fills
//! this one model; the `entitlements` rows, the asset changes between runs and the findings
//! are all derived from it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything one run read about an account's identities.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entitlements {
    pub principals: Vec<Principal>,
    /// Managed (standalone) policies referenced by `Principal::attached`, with the document of
    /// their default version.
    pub policies: Vec<Policy>,
    pub credentials: Vec<Credential>,
    /// False when the cloud gives no policy documents: identities only.
    pub documents: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalType {
    User,
    Group,
    Role,
}

impl PrincipalType {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "user",
            PrincipalType::Group => "group",
            PrincipalType::Role => "role",
        }
    }
}

/// A user, group or role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    pub kind: PrincipalType,
    /// What the audit log names it by: the ARN on AWS; on Tencent Cloud the sub-account UIN
    /// (users, CloudAudit `principalId`), the role ARN `qcs::cam::uin/<owner>:roleName/<name>`
    /// (roles, CloudAudit `sessionContext.roleArn`) and the group id (groups).
    pub uid: String,
    pub name: String,
    /// The cloud's other identifier, when it has one (AWS `AIDA…`/`AROA…` ids; Tencent role
    /// `RoleId`, user `Uid`).
    pub alt_uid: Option<String>,
    pub created_ms: Option<i64>,
    /// The cloud's own "last used" of the principal (AWS `RoleLastUsed`), when it has one.
    pub last_used_ms: Option<i64>,
    /// Uids of the groups a user belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Uids of the managed policies attached directly.
    #[serde(default)]
    pub attached: Vec<String>,
    /// Policies embedded in this principal.
    #[serde(default)]
    pub inline: Vec<Policy>,
    /// A role's trust policy: who may assume it.
    pub trust: Option<Policy>,
    /// A role the cloud creates for one of its services and assumes itself (AWS roles under
    /// `/aws-service-role/`, Tencent `RoleType` `service_linked`): findings do not judge it.
    /// Each cloud's sync sets it from what its API says; absent in entitlements saved before
    /// it existed.
    #[serde(default)]
    pub service_linked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Managed by the customer.
    Managed,
    /// Managed by the cloud (AWS managed policies, Tencent preset policies).
    CloudManaged,
    Inline,
    /// A role's trust (assume-role) policy.
    Trust,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Managed => "managed",
            PolicyKind::CloudManaged => "cloud_managed",
            PolicyKind::Inline => "inline",
            PolicyKind::Trust => "trust",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// ARN on AWS (inline: `<principal uid>/inline/<name>`), the policy id on Tencent Cloud.
    pub uid: String,
    pub name: String,
    pub kind: PolicyKind,
    /// The document's version (AWS `v3`); None for inline policies.
    pub version: Option<String>,
    /// The document as JSON, already decoded (AWS documents arrive URL-encoded, Tencent's as
    /// a JSON string). None when the cloud did not return it.
    pub document: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    AccessKey,
    ConsolePassword,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::AccessKey => "access_key",
            CredentialKind::ConsolePassword => "console_password",
        }
    }
}

/// A long-term credential of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub kind: CredentialKind,
    /// The access key id; for a console password, `<principal uid>#password`.
    pub uid: String,
    pub principal_uid: String,
    /// `Active` / `Inactive` as the cloud says it (Tencent's 1/0 become Active/Inactive).
    pub status: Option<String>,
    pub created_ms: Option<i64>,
    /// The cloud's own "last used" (AWS GetAccessKeyLastUsed / PasswordLastUsed, Tencent
    /// GetSecurityLastUsed), when it has one.
    pub last_used_ms: Option<i64>,
    /// The service the key was last used with, when the cloud says.
    pub last_used_service: Option<String>,
}
