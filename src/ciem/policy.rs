//! Policy documents into statements, for both grammars: AWS IAM (`Version`, `Statement` with
//! `Effect`, `Action`/`NotAction`, `Resource`/`NotResource`, `Condition`, `Principal`) and
//! Tencent CAM (the same in lower case: `version`, `statement`, `effect`, `action`, ...).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::catalog::{Catalog, matches};
use crate::normalize::json_kind;

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
    /// A trust policy's `Principal` (of `NotPrincipal` when `not_principal`) as written.
    pub principal: Option<Value>,
    pub not_principal: bool,
}

impl Statement {
    /// Whether the statement's action patterns cover `action` (for `NotAction`: whether
    /// none of them matches it).
    pub fn covers_action(&self, action: &str) -> bool {
        self.actions.iter().any(|pattern| matches(pattern, action)) != self.not_action
    }

    /// Whether the statement applies to every resource: `Resource` `*` (or absent), not
    /// `NotResource`.
    pub fn covers_all_resources(&self) -> bool {
        !self.not_resource && (self.resources.is_empty() || self.resources.iter().any(|r| r == "*"))
    }

    /// Whether the statement holds whatever the request: no condition, every resource.
    pub fn is_unconditional(&self) -> bool {
        self.condition.is_none() && self.covers_all_resources()
    }

    /// Whether the statement covers every action: `Action` `*` or `*:*`, not `NotAction`.
    pub fn covers_all_actions(&self) -> bool {
        !self.not_action && self.actions.iter().any(|a| a == "*" || a == "*:*")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy document: {0}")]
pub struct PolicyError(pub String);

impl PolicyError {
    fn new(message: impl Into<String>) -> Self {
        PolicyError(message.into())
    }
}

/// A document as the cloud returned it: JSON text, or URL-encoded JSON text (AWS IAM).
///
/// Plain JSON is tried first (Tencent CAM, and AWS documents already decoded), then the text
/// is percent-decoded and parsed. AWS encodes as RFC 3986 does: only `%XX` escapes are
/// decoded, and a `+` stays a `+` (it is not a space). A JSON string holding the document
/// (a document quoted once more) is unwrapped once.
pub fn decode_document(text: &str) -> Result<Value, PolicyError> {
    decode(text, true)
}

fn decode(text: &str, unwrap_string: bool) -> Result<Value, PolicyError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(PolicyError::new("empty document"));
    }
    let value = match serde_json::from_str::<Value>(text) {
        Ok(value) => value,
        Err(plain) if text.contains('%') => {
            let decoded = percent_decode(text)?;
            serde_json::from_str(decoded.trim()).map_err(|error| {
                PolicyError(format!(
                    "neither JSON ({plain}) nor URL-encoded JSON (after URL-decoding: {error})"
                ))
            })?
        }
        Err(plain) => {
            return Err(PolicyError(format!(
                "not JSON ({plain}), and no %-escapes to URL-decode"
            )));
        }
    };
    match value {
        Value::Object(_) => Ok(value),
        Value::String(inner) if unwrap_string => decode(&inner, false),
        other => Err(PolicyError(format!(
            "the document is {}, not a JSON object",
            json_kind(&other)
        ))),
    }
}

/// `%XX` escapes to bytes, then UTF-8; everything else (`+` included) as it is.
fn percent_decode(text: &str) -> Result<String, PolicyError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|pair| {
                let high = char::from(pair[0]).to_digit(16)?;
                let low = char::from(pair[1]).to_digit(16)?;
                u8::try_from(high * 16 + low).ok()
            });
            match hex {
                Some(byte) => out.push(byte),
                None => {
                    return Err(PolicyError(format!(
                        "a bad %-escape at byte {i} of the URL-encoded document"
                    )));
                }
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|error| PolicyError(format!("the URL-decoded document is not UTF-8: {error}")))
}

/// The value of a key matched case-insensitively (`Statement`, `statement`); two keys that
/// differ only in case are an error, as the document is ambiguous.
fn field<'a>(
    map: &'a Map<String, Value>,
    name: &str,
    context: &dyn Fn() -> String,
) -> Result<Option<&'a Value>, PolicyError> {
    let mut found = map.iter().filter(|(key, _)| key.eq_ignore_ascii_case(name));
    let first = found.next();
    if let (Some((key, _)), Some((other, _))) = (first, found.next()) {
        return Err(PolicyError(format!(
            "{}has both {key:?} and {other:?}",
            context()
        )));
    }
    Ok(first
        .map(|(_, value)| value)
        .filter(|value| !value.is_null()))
}

/// The statements of a document in either grammar.
///
/// Keys are matched case-insensitively, so `Statement`/`statement`, `Effect`/`effect`, ...
/// `Statement` may be one object or an array; `Action`, `Resource` (and their `Not` forms)
/// a string or an array of strings. Effects are `Allow` or `Deny` in any case; a statement
/// without one, or with another, makes the document an error. Tencent CAM's `name/` product
/// prefix (`name/cvm:Describe*`) is removed from actions. An empty or null `Condition` is no
/// condition.
pub fn statements(document: &Value) -> Result<Vec<Statement>, PolicyError> {
    let Value::Object(map) = document else {
        return Err(PolicyError(format!(
            "the document is {}, not a JSON object",
            json_kind(document)
        )));
    };
    let list =
        field(map, "statement", &String::new)?.ok_or_else(|| PolicyError::new("no Statement"))?;
    match list {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| statement(index, item))
            .collect(),
        Value::Object(_) => Ok(vec![statement(0, list)?]),
        other => Err(PolicyError(format!(
            "Statement is {}, not an object or an array",
            json_kind(other)
        ))),
    }
}

fn statement(index: usize, value: &Value) -> Result<Statement, PolicyError> {
    let Value::Object(map) = value else {
        return Err(PolicyError(format!(
            "statement {index} is {}, not an object",
            json_kind(value)
        )));
    };
    let sid = match field(map, "sid", &|| format!("statement {index} "))? {
        None => None,
        Some(Value::String(sid)) => Some(sid.clone()),
        Some(other) => Some(other.to_string()),
    };
    let context = || match &sid {
        Some(sid) => format!("statement {index} ({sid:?}) "),
        None => format!("statement {index} "),
    };
    let effect = match field(map, "effect", &context)? {
        None => return Err(PolicyError(format!("{}has no Effect", context()))),
        Some(Value::String(effect)) if effect.trim().eq_ignore_ascii_case("allow") => Effect::Allow,
        Some(Value::String(effect)) if effect.trim().eq_ignore_ascii_case("deny") => Effect::Deny,
        Some(other) => {
            return Err(PolicyError(format!(
                "{}has Effect {other}, neither Allow nor Deny",
                context()
            )));
        }
    };
    let (actions, not_action) = pair(map, "Action", &context)?;
    let actions = actions
        .iter()
        .map(|action| normalize_action(action))
        .collect();
    let (resources, not_resource) = pair(map, "Resource", &context)?;
    let condition = match field(map, "condition", &context)? {
        None => None,
        Some(Value::Object(condition)) if condition.is_empty() => None,
        Some(condition @ Value::Object(_)) => Some(condition.clone()),
        Some(other) => {
            return Err(PolicyError(format!(
                "{}has a Condition that is {}, not an object",
                context(),
                json_kind(other)
            )));
        }
    };
    let (principal, not_principal) = match (
        field(map, "principal", &context)?,
        field(map, "notprincipal", &context)?,
    ) {
        (Some(_), Some(_)) => {
            return Err(PolicyError(format!(
                "{}has both Principal and NotPrincipal",
                context()
            )));
        }
        (Some(principal), None) => (Some(principal.clone()), false),
        (None, Some(principal)) => (Some(principal.clone()), true),
        (None, None) => (None, false),
    };
    Ok(Statement {
        index,
        sid,
        effect,
        actions,
        not_action,
        resources,
        not_resource,
        condition,
        principal,
        not_principal,
    })
}

/// `Action` or `NotAction` (`Resource` or `NotResource`): the patterns, and whether they are
/// of the `Not` form. Neither is no patterns; both is an error.
fn pair(
    map: &Map<String, Value>,
    name: &str,
    context: &dyn Fn() -> String,
) -> Result<(Vec<String>, bool), PolicyError> {
    let not_name = format!("Not{name}");
    match (field(map, name, context)?, field(map, &not_name, context)?) {
        (Some(_), Some(_)) => Err(PolicyError(format!(
            "{}has both {name} and {not_name}",
            context()
        ))),
        (Some(value), None) => Ok((strings(value, name, context)?, false)),
        (None, Some(value)) => Ok((strings(value, &not_name, context)?, true)),
        (None, None) => Ok((Vec::new(), false)),
    }
}

fn strings(
    value: &Value,
    name: &str,
    context: &dyn Fn() -> String,
) -> Result<Vec<String>, PolicyError> {
    match value {
        Value::String(text) => Ok(vec![text.trim().to_string()]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => Ok(text.trim().to_string()),
                other => Err(PolicyError(format!(
                    "{}has {name}[{i}] that is {}, not a string",
                    context(),
                    json_kind(other)
                ))),
            })
            .collect(),
        other => Err(PolicyError(format!(
            "{}has {name} that is {}, not a string or an array of strings",
            context(),
            json_kind(other)
        ))),
    }
}

/// An action pattern without Tencent CAM's `name/` product prefix (`name/cvm:Describe*` →
/// `cvm:Describe*`).
pub fn normalize_action(action: &str) -> String {
    let action = action.trim();
    match action.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("name/") => {
            action.get(5..).unwrap_or_default().trim().to_string()
        }
        _ => action.to_string(),
    }
}

/// The actions of `catalog` a principal with these statements may call: Allow statements'
/// patterns expanded against the catalog (`NotAction`: every catalog action not matched),
/// minus the actions of Deny statements that deny unconditionally (no condition, resource `*`
/// or absent, not `NotResource`; a `NotAction` Deny removes every action its patterns do not
/// match). Conditional or resource-scoped Denies are not decidable without the request,
/// and are not subtracted. Allowed actions the catalog lacks are not in the result: add them to
/// a lake catalog first ([`Catalog::add`]) where that matters.
pub fn granted_actions(statements: &[Statement], catalog: &Catalog) -> BTreeSet<String> {
    let mut granted = BTreeSet::new();
    for statement in statements.iter().filter(|s| s.effect == Effect::Allow) {
        if statement.not_action {
            granted.extend(
                catalog
                    .actions()
                    .filter(|action| statement.covers_action(action))
                    .map(str::to_string),
            );
        } else {
            for pattern in &statement.actions {
                granted.extend(catalog.expand(pattern));
            }
        }
    }
    for deny in unconditional_denies(statements) {
        granted.retain(|action| !deny.covers_action(action));
    }
    granted
}

fn unconditional_denies(statements: &[Statement]) -> impl Iterator<Item = &Statement> {
    statements
        .iter()
        .filter(|s| s.effect == Effect::Deny && s.is_unconditional())
}

/// Whether the statements may allow `action` (catalog or not): an Allow statement covers it
/// and no unconditional Deny does (the rule of [`granted_actions`], for one action).
pub fn allows(statements: &[Statement], action: &str) -> bool {
    statements
        .iter()
        .any(|s| s.effect == Effect::Allow && s.covers_action(action))
        && !unconditional_denies(statements).any(|deny| deny.covers_action(action))
}

/// Whether the statements grant full administrator access: an unconditional Allow of action
/// `*` (or `*:*`) on resource `*`, not `NotAction`/`NotResource`, that no unconditional Deny
/// of `*` cancels.
pub fn is_full_admin(statements: &[Statement]) -> bool {
    let allowed = statements.iter().any(|s| {
        s.effect == Effect::Allow
            && s.condition.is_none()
            && s.covers_all_actions()
            && s.covers_all_resources()
    });
    allowed && !unconditional_denies(statements).any(Statement::covers_all_actions)
}

/// The lower-case service prefixes of these actions (`s3` of `s3:GetObject`); strings
/// without a colon or with an empty prefix are skipped.
pub fn services_of<I, S>(actions: I) -> BTreeSet<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    actions
        .into_iter()
        .filter_map(|action| {
            let (service, _) = action.as_ref().split_once(':')?;
            let service = service.trim();
            (!service.is_empty()).then(|| service.to_lowercase())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ciem::catalog::aws;
    use serde_json::json;

    /// RFC 3986 encoding as AWS IAM returns documents: everything but unreserved characters.
    fn url_encode(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    fn parse(text: &str) -> Vec<Statement> {
        statements(&decode_document(text).expect("decodes")).expect("statements")
    }

    fn error(text: &str) -> String {
        match decode_document(text).and_then(|document| statements(&document)) {
            Ok(statements) => panic!("no error, {statements:?}"),
            Err(PolicyError(message)) => message,
        }
    }

    const AWS_DOC: &str = r#"{
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObject", "s3:List*"],
             "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
             "Condition": {"StringLike": {"aws:userid": "AIDA+x%"}}},
            {"Effect": "Deny", "NotAction": "iam:*", "NotResource": "arn:aws:iam::1:role/x"}
        ]
    }"#;

    #[test]
    fn url_encoded_aws_document_round_trips() {
        let plain = decode_document(AWS_DOC).expect("plain JSON");
        let encoded = url_encode(AWS_DOC);
        assert!(encoded.starts_with("%7B%0A"));
        assert_eq!(decode_document(&encoded), Ok(plain.clone()));
        assert_eq!(
            plain["Statement"][0]["Condition"]["StringLike"]["aws:userid"],
            json!("AIDA+x%")
        );
        // A '+' left unencoded is a '+', not a space.
        let plus = "%7B%22Statement%22%3A%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3AGet*%22%2C%22Resource%22%3A%22arn%3Aaws%3As3%3A%3A%3Aa+b%22%7D%7D";
        let statements = parse(plus);
        assert_eq!(statements[0].resources, vec!["arn:aws:s3:::a+b"]);
        assert_eq!(statements[0].actions, vec!["s3:Get*"]);
        // A document quoted once more as a JSON string.
        let quoted = serde_json::to_string(AWS_DOC).expect("quotes");
        assert_eq!(decode_document(&quoted), Ok(plain));
    }

    #[test]
    fn aws_grammar() {
        let statements = parse(AWS_DOC);
        assert_eq!(statements.len(), 2);
        let read = &statements[0];
        assert_eq!(read.index, 0);
        assert_eq!(read.sid.as_deref(), Some("Read"));
        assert_eq!(read.effect, Effect::Allow);
        assert_eq!(read.actions, vec!["s3:GetObject", "s3:List*"]);
        assert!(!read.not_action);
        assert_eq!(read.resources, vec!["arn:aws:s3:::b", "arn:aws:s3:::b/*"]);
        assert!(read.condition.is_some());
        let deny = &statements[1];
        assert_eq!(deny.index, 1);
        assert_eq!(deny.sid, None);
        assert_eq!(deny.effect, Effect::Deny);
        assert_eq!(deny.actions, vec!["iam:*"]);
        assert!(deny.not_action && deny.not_resource);
        assert!(!deny.is_unconditional());
        assert!(deny.covers_action("s3:GetObject"));
        assert!(!deny.covers_action("IAM:PassRole"));
    }

    #[test]
    fn single_object_statement_and_string_action() {
        let statements = parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}}"#,
        );
        assert_eq!(statements.len(), 1);
        assert_eq!(statements[0].actions, vec!["ec2:Describe*"]);
        assert_eq!(statements[0].resources, vec!["*"]);
        assert!(statements[0].is_unconditional());
    }

    #[test]
    fn trust_policy_principal() {
        let statements = parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        );
        assert_eq!(
            statements[0].principal,
            Some(json!({"Service": "ec2.amazonaws.com"}))
        );
        assert!(!statements[0].not_principal);
        assert!(statements[0].resources.is_empty());
    }

    #[test]
    fn tencent_cam_grammar() {
        let document = r#"{
            "version": "2.0",
            "statement": [
                {"effect": "allow", "action": ["name/cvm:Describe*", "cvm:RunInstances"],
                 "resource": "qcs::cvm:ap-guangzhou:uin/123:instance/*"},
                {"effect": "DENY", "action": "name/cam:*", "resource": ["*"],
                 "condition": {"ip_equal": {"qcs:ip": "10.0.0.0/8"}}},
                {"effect": "Allow", "action": "*", "resource": "*", "condition": {}}
            ]
        }"#;
        let statements = parse(document);
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[0].effect, Effect::Allow);
        assert_eq!(
            statements[0].actions,
            vec!["cvm:Describe*", "cvm:RunInstances"]
        );
        assert_eq!(
            statements[0].resources,
            vec!["qcs::cvm:ap-guangzhou:uin/123:instance/*"]
        );
        assert_eq!(statements[1].effect, Effect::Deny);
        assert_eq!(statements[1].actions, vec!["cam:*"]);
        assert!(statements[1].condition.is_some());
        assert_eq!(statements[2].condition, None);
        assert!(is_full_admin(&statements));

        let mut lake = Catalog::new("lake");
        for action in [
            "cvm:DescribeInstances",
            "cvm:RunInstances",
            "cvm:TerminateInstances",
            "cam:ListUsers",
        ] {
            lake.add(action);
        }
        let granted = granted_actions(&statements[..2], &lake);
        assert_eq!(
            granted.into_iter().collect::<Vec<_>>(),
            vec!["cvm:DescribeInstances", "cvm:RunInstances"]
        );
        assert_eq!(granted_actions(&statements, &lake).len(), 4);
    }

    #[test]
    fn bad_documents_are_errors() {
        assert_eq!(error(""), "empty document");
        assert!(error("{not json").starts_with("not JSON"));
        assert!(error("%7B%7G").contains("bad %-escape at byte 3"));
        assert!(error("%7Bnot%20json").starts_with("neither JSON"));
        assert!(error("%FF%FE").contains("not UTF-8"));
        assert_eq!(error("[1]"), "the document is an array, not a JSON object");
        assert_eq!(error(r#"{"Version":"2012-10-17"}"#), "no Statement");
        assert_eq!(
            error(r#"{"Statement":"x"}"#),
            "Statement is a string, not an object or an array"
        );
        assert_eq!(
            error(r#"{"Statement":[{"Action":"s3:*","Resource":"*"}]}"#),
            "statement 0 has no Effect"
        );
        assert_eq!(
            error(
                r#"{"Statement":[{"Effect":"Allow","Action":"*"},{"Sid":"S","Effect":"Maybe","Action":"*"}]}"#
            ),
            "statement 1 (\"S\") has Effect \"Maybe\", neither Allow nor Deny"
        );
        assert_eq!(
            error(r#"{"Statement":{"Effect":"Allow","Action":["s3:*",3]}}"#),
            "statement 0 has Action[1] that is a number, not a string"
        );
        assert_eq!(
            error(r#"{"Statement":{"Effect":"Allow","Action":"s3:*","NotAction":"s3:Get*"}}"#),
            "statement 0 has both Action and NotAction"
        );
        assert_eq!(
            error(r#"{"Statement":{"Effect":"Allow","Action":"*","Condition":"x"}}"#),
            "statement 0 has a Condition that is a string, not an object"
        );
        assert_eq!(
            error(r#"{"Statement":[],"statement":[]}"#),
            "has both \"Statement\" and \"statement\""
        );
        let message = PolicyError("x".into()).to_string();
        assert_eq!(message, "policy document: x");
    }

    fn count(catalog: &Catalog, pattern: &str) -> usize {
        catalog.expand(pattern).len()
    }

    #[test]
    fn granted_actions_against_the_aws_catalog() {
        let aws = aws();
        let statements = parse(
            r#"{"Statement":[
                {"Effect":"Allow","Action":"s3:*","Resource":"*"},
                {"Effect":"Deny","Action":"s3:Delete*","Resource":"*"}
            ]}"#,
        );
        let granted = granted_actions(&statements, aws);
        assert!(granted.contains("s3:GetObject"));
        assert!(!granted.iter().any(|a| a.starts_with("s3:Delete")));
        assert_eq!(granted.len(), count(aws, "s3:*") - count(aws, "s3:Delete*"));
        assert!(count(aws, "s3:Delete*") > 5);
        assert!(!allows(&statements, "s3:DeleteObject"));
        assert!(allows(&statements, "s3:PutObject"));
        assert!(!allows(&statements, "ec2:RunInstances"));

        let conditional = parse(
            r#"{"Statement":[
                {"Effect":"Allow","Action":"s3:*","Resource":"*"},
                {"Effect":"Deny","Action":"s3:Delete*","Resource":"*",
                 "Condition":{"Bool":{"aws:MultiFactorAuthPresent":"false"}}},
                {"Effect":"Deny","Action":"s3:Put*","Resource":"arn:aws:s3:::b/*"},
                {"Effect":"Deny","Action":"s3:Get*","NotResource":"arn:aws:s3:::b/*"}
            ]}"#,
        );
        assert_eq!(granted_actions(&conditional, aws).len(), count(aws, "s3:*"));
    }

    #[test]
    fn not_action_statements() {
        let aws = aws();
        let statements = parse(
            r#"{"Statement":{"Effect":"Allow","NotAction":["iam:*","organizations:*"],"Resource":"*"}}"#,
        );
        let granted = granted_actions(&statements, aws);
        assert_eq!(
            granted.len(),
            aws.len() - count(aws, "iam:*") - count(aws, "organizations:*")
        );
        assert!(granted.contains("s3:GetObject"));
        assert!(!granted.contains("iam:PassRole"));
        assert!(!is_full_admin(&statements));

        // An unconditional NotAction Deny keeps only what its patterns match.
        let statements = parse(
            r#"{"Statement":[
                {"Effect":"Allow","Action":["s3:*","ec2:*"],"Resource":"*"},
                {"Effect":"Deny","NotAction":"s3:Get*","Resource":"*"}
            ]}"#,
        );
        assert_eq!(
            granted_actions(&statements, aws)
                .into_iter()
                .collect::<Vec<_>>(),
            aws.expand("s3:Get*")
        );
    }

    #[test]
    fn full_admin() {
        let admin = parse(r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#);
        assert!(is_full_admin(&admin));
        assert_eq!(granted_actions(&admin, aws()).len(), aws().len());
        assert!(is_full_admin(&parse(
            r#"{"statement":[{"effect":"allow","action":["*:*"],"resource":["*"]}]}"#
        )));
        assert!(!is_full_admin(&parse(
            r#"{"Statement":{"Effect":"Allow","Action":"iam:*","Resource":"*"}}"#
        )));
        assert!(!is_full_admin(&parse(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::b"}}"#
        )));
        assert!(!is_full_admin(&parse(
            r#"{"Statement":{"Effect":"Allow","NotAction":"*","Resource":"*"}}"#
        )));
        assert!(!is_full_admin(&parse(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}}"#
        )));
        assert!(!is_full_admin(&parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"*","Resource":"*"}]}"#
        )));
        assert!(is_full_admin(&parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"false"}}}]}"#
        )));
    }

    #[test]
    fn helpers() {
        assert_eq!(
            services_of([
                "s3:GetObject",
                "S3:PutObject",
                "IAM:PassRole",
                "nocolon",
                ":x"
            ])
            .into_iter()
            .collect::<Vec<_>>(),
            vec!["iam", "s3"]
        );
        assert_eq!(normalize_action("name/cvm:Describe*"), "cvm:Describe*");
        assert_eq!(normalize_action("NAME/cvm:*"), "cvm:*");
        assert_eq!(normalize_action("cvm:*"), "cvm:*");
        assert_eq!(normalize_action("*"), "*");
        assert_eq!(Effect::Deny.as_str(), "Deny");
    }
}
