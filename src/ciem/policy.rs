//! Policy documents into statements, for both grammars: AWS IAM (`Version`, `Statement` with
//! `Effect`, `Action`/`NotAction`, `Resource`/`NotResource`, `Condition`, `Principal`) and
//! Tencent CAM (the same in lower case: `version`, `statement`, `effect`, `action`, ...).

use std::collections::BTreeSet;

use serde_json::Value;

use super::catalog::Catalog;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

/// One statement of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Position in the document, from 0.
    pub index: usize,
    pub sid: Option<String>,
    pub effect: Effect,
    /// The action patterns (of `NotAction` when `not_action`).
    pub actions: Vec<String>,
    pub not_action: bool,
    /// The resource patterns (of `NotResource` when `not_resource`); empty in trust policies.
    pub resources: Vec<String>,
    pub not_resource: bool,
    pub condition: Option<Value>,
    /// A trust policy's `Principal` as written.
    pub principal: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy document: {0}")]
pub struct PolicyError(pub String);

/// A document as the cloud returned it: JSON text, or URL-encoded JSON text (AWS IAM).
pub fn decode_document(text: &str) -> Result<Value, PolicyError> {
    let _ = text;
    Err(PolicyError("not implemented".into()))
}

/// The statements of a document in either grammar.
pub fn statements(document: &Value) -> Result<Vec<Statement>, PolicyError> {
    let _ = document;
    Err(PolicyError("not implemented".into()))
}

/// The actions of `catalog` a principal with these statements may call: Allow statements'
/// patterns expanded against the catalog (`NotAction`: every catalog action not matched),
/// minus the actions of Deny statements that deny unconditionally (no condition, resource `*`
/// or absent). Conditional or resource-scoped Denies are not decidable without the request,
/// and are not subtracted.
pub fn granted_actions(statements: &[Statement], catalog: &Catalog) -> BTreeSet<String> {
    let _ = (statements, catalog);
    BTreeSet::new()
}

/// Whether the statements grant every action on every resource without condition (`*` on
/// `*`), not cancelled by an unconditional Deny of everything.
pub fn is_full_admin(statements: &[Statement]) -> bool {
    let _ = statements;
    false
}
