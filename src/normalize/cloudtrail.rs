//! AWS CloudTrail record → CIEM row. Field mapping follows AWS Security Lake's OCSF mapping
//! (see `schemas/ciem_events.md`, column "AWS CloudTrail").

mod fast;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::loose::{Loose, LooseBool, LooseStr, text};
use super::{
    Outcome, Stamp, action, activity_id, ip_or_domain, parse_time, parse_time_ms, part_of,
    service_of,
};
use crate::event::{CLASS_API_ACTIVITY, CLASS_AUTHENTICATION, CiemEvent, Provider, Resource, Text};
use crate::redact::redact_json;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    #[serde(borrow)]
    event_version: Option<LooseStr<'a>>,
    #[serde(borrow)]
    user_identity: Option<Identity<'a>>,
    #[serde(default, borrow)]
    event_time: TimeText<'a>,
    #[serde(borrow)]
    event_source: Option<LooseStr<'a>>,
    #[serde(borrow)]
    event_name: Option<LooseStr<'a>>,
    #[serde(borrow)]
    aws_region: Option<LooseStr<'a>>,
    #[serde(rename = "sourceIPAddress", borrow)]
    source_ip_address: Option<LooseStr<'a>>,
    #[serde(borrow)]
    user_agent: Option<LooseStr<'a>>,
    #[serde(borrow)]
    error_code: Option<LooseStr<'a>>,
    #[serde(borrow)]
    error_message: Option<LooseStr<'a>>,
    #[serde(borrow)]
    request_parameters: Option<Raw<'a>>,
    #[serde(borrow)]
    response_elements: Option<Raw<'a>>,
    #[serde(borrow)]
    additional_event_data: Option<Raw<'a>>,
    #[serde(rename = "requestID", borrow)]
    request_id: Option<LooseStr<'a>>,
    #[serde(rename = "eventID", borrow)]
    event_id: Option<LooseStr<'a>>,
    read_only: Option<LooseBool>,
    #[serde(borrow)]
    resources: Option<Vec<ResourceRef<'a>>>,
    #[serde(borrow)]
    event_type: Option<LooseStr<'a>>,
    #[serde(borrow)]
    api_version: Option<LooseStr<'a>>,
    #[serde(borrow)]
    recipient_account_id: Option<LooseStr<'a>>,
    // Kept together in additional_data.
    #[serde(rename = "sharedEventID", borrow)]
    shared_event_id: Option<Raw<'a>>,
    #[serde(borrow)]
    vpc_endpoint_id: Option<Raw<'a>>,
    #[serde(borrow)]
    tls_details: Option<Raw<'a>>,
    #[serde(borrow)]
    event_category: Option<Raw<'a>>,
    #[serde(borrow)]
    management_event: Option<Raw<'a>>,
    #[serde(borrow)]
    session_credential_from_console: Option<Raw<'a>>,
    #[serde(borrow)]
    insight_details: Option<Raw<'a>>,
    #[serde(borrow)]
    service_event_details: Option<Raw<'a>>,
    #[serde(borrow)]
    edge_device_details: Option<Raw<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<LooseStr<'a>>,
    #[serde(borrow)]
    principal_id: Option<LooseStr<'a>>,
    #[serde(borrow)]
    arn: Option<LooseStr<'a>>,
    #[serde(borrow)]
    account_id: Option<LooseStr<'a>>,
    #[serde(borrow)]
    access_key_id: Option<LooseStr<'a>>,
    #[serde(borrow)]
    user_name: Option<LooseStr<'a>>,
    #[serde(borrow)]
    invoked_by: Option<LooseStr<'a>>,
    #[serde(borrow)]
    session_context: Option<SessionContext<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SessionContext<'a> {
    #[serde(borrow)]
    attributes: Option<Attributes<'a>>,
    #[serde(borrow)]
    session_issuer: Option<Issuer<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Attributes<'a> {
    mfa_authenticated: Option<LooseBool>,
    #[serde(borrow)]
    creation_date: Option<LooseStr<'a>>,
}

#[derive(Deserialize, Default)]
struct Issuer<'a> {
    #[serde(borrow)]
    arn: Option<LooseStr<'a>>,
}

#[derive(Deserialize, Default)]
struct ResourceRef<'a> {
    #[serde(rename = "ARN", alias = "arn", borrow)]
    arn: Option<LooseStr<'a>>,
    #[serde(rename = "accountId", borrow)]
    account_id: Option<LooseStr<'a>>,
    #[serde(rename = "type", borrow)]
    kind: Option<LooseStr<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsoleLoginResponse<'a> {
    #[serde(borrow)]
    console_login: Option<LooseStr<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsoleLoginExtra<'a> {
    #[serde(rename = "MFAUsed", borrow)]
    mfa_used: Option<LooseStr<'a>>,
}

/// A JSON value kept as its text, as serde_json's `RawValue` delimits it. `clean`: the fast
/// reader saw no member name the redaction rules could match in it, so it needs no redaction
/// scan (serde_json does not look: always false from there).
#[derive(Debug, Clone, Copy)]
struct Raw<'a> {
    text: &'a str,
    clean: bool,
}

impl<'a> Raw<'a> {
    fn get(self) -> &'a str {
        self.text
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(d).map(|raw| Raw {
            text: raw.get(),
            clean: false,
        })
    }
}

/// `eventTime` as the record has it: a string, or what else it is (to say so).
#[derive(Debug, Default)]
enum TimeText<'a> {
    #[default]
    Missing,
    Null,
    Str(Cow<'a, str>),
    /// Not a string: "a number", "a boolean", "an object", "an array".
    Other(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for TimeText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Loose::deserialize(d)? {
            Loose::Str(s) => TimeText::Str(s),
            Loose::Null => TimeText::Null,
            other => TimeText::Other(other.kind()),
        })
    }
}

/// The text of a raw value for the lake: null is absent, secrets are redacted.
fn raw_text(v: Option<Raw<'_>>) -> Option<Text<'_>> {
    v.filter(|r| r.text != "null").map(|r| {
        if r.clean {
            Text::Borrowed(r.text)
        } else {
            redact_json(r.text)
        }
    })
}

/// The id of a record without an `eventID` (CloudTrail's eventVersion 1.0 had none): `sha256:`
/// and the first 32 hex digits of the SHA-256 of the record's JSON text as delivered, without
/// the whitespace around it. Every byte is content (such a record has no other unique field),
/// so the same record delivered twice gets the same id, on any run and machine.
pub fn content_id(record: &[u8]) -> String {
    let digest = Sha256::digest(record.trim_ascii());
    format!("sha256:{}", hex::encode(&digest[..16]))
}

pub fn normalize<'a>(bytes: &'a [u8], stamp: &Stamp, position: i64) -> Outcome<'a> {
    normalize_with(bytes, stamp, position, true)
}

/// `fast`: try [`fast::record`] before serde_json (false only to compare the two in tests).
fn normalize_with<'a>(bytes: &'a [u8], stamp: &Stamp, position: i64, fast: bool) -> Outcome<'a> {
    let parsed = match std::str::from_utf8(bytes) {
        Ok(text) => match fast.then(|| fast::record(text)).flatten() {
            Some(r) => Ok(r),
            None => serde_json::from_str(text),
        },
        Err(_) => serde_json::from_slice(bytes),
    };
    match parsed {
        Ok(r) => event(r, bytes, stamp, position),
        Err(e) if e.is_data() && bytes.trim_ascii_start().first() != Some(&b'{') => {
            Outcome::Rejected("record is not a JSON object".to_string())
        }
        Err(e) => Outcome::Rejected(format!("invalid CloudTrail record: {e}")),
    }
}

/// Normalises the record object at the start of `text` when the fast reader can read it
/// (see [`fast::record_prefix`]), and returns the outcome with the record's length; None
/// leaves the record to be delimited and read by [`normalize`].
pub fn normalize_prefix<'a>(
    text: &'a str,
    stamp: &Stamp,
    position: i64,
) -> Option<(Outcome<'a>, usize)> {
    let (r, len) = fast::record_prefix(text)?;
    let record = text.as_bytes().get(..len)?;
    Some((event(r, record, stamp, position), len))
}

/// The event a parsed record makes, or why it makes none. `record` is its JSON text.
fn event<'a>(r: Record<'a>, record: &[u8], stamp: &Stamp, position: i64) -> Outcome<'a> {
    let time_ms = match &r.event_time {
        TimeText::Str(t) => match parse_time(t, 0) {
            Ok(ms) => ms,
            Err(e) => {
                return Outcome::Rejected(format!(
                    "CloudTrail record has an unreadable eventTime {t:?}: {e}"
                ));
            }
        },
        TimeText::Other(kind) => {
            return Outcome::Rejected(format!(
                "CloudTrail eventTime is {kind}, expected an ISO 8601 string"
            ));
        }
        TimeText::Missing | TimeText::Null => {
            return Outcome::Rejected("CloudTrail record has no eventTime".to_string());
        }
    };
    let event_id = text(&r.event_id).unwrap_or_else(|| Text::Owned(content_id(record)));

    let identity = r.user_identity.unwrap_or_default();
    let session = identity.session_context.unwrap_or_default();
    let attributes = session.attributes.unwrap_or_default();
    let operation = text(&r.event_name);
    let event_source = text(&r.event_source);
    let service = event_source.as_ref().and_then(|s| part_of(s, service_of));
    let read_only = r.read_only.and_then(|b| b.0);
    let error = text(&r.error_code);

    let is_console_login = operation.as_deref() == Some("ConsoleLogin");
    let (class_uid, category_uid, activity, failed) = if is_console_login {
        let outcome = r
            .response_elements
            .and_then(|raw| serde_json::from_str::<ConsoleLoginResponse>(raw.get()).ok())
            .and_then(|resp| text(&resp.console_login));
        let failed = error.is_some() || outcome.as_deref() == Some("Failure");
        (CLASS_AUTHENTICATION, 3, 1, failed)
    } else {
        let activity = activity_id(operation.as_deref().unwrap_or(""), read_only);
        (CLASS_API_ACTIVITY, 6, activity, error.is_some())
    };

    let mut mfa = attributes.mfa_authenticated.and_then(|b| b.0);
    if is_console_login {
        let used = r
            .additional_event_data
            .and_then(|raw| serde_json::from_str::<ConsoleLoginExtra>(raw.get()).ok())
            .and_then(|extra| text(&extra.mfa_used))
            .and_then(|s| super::loose::parse_flag(&s));
        mfa = used.or(mfa);
    }

    let kind = text(&identity.kind);
    let access_key = text(&identity.access_key_id);
    let credential_kind = match (access_key.as_deref(), kind.as_deref()) {
        (Some(k), _) if k.starts_with("ASIA") => Some("temporary"),
        (Some(k), _) if k.starts_with("AKIA") => Some("long_term"),
        (_, Some("AssumedRole" | "FederatedUser" | "WebIdentityUser" | "SAMLUser")) => {
            Some("temporary")
        }
        (Some(_), _) => Some("long_term"),
        _ => None,
    };
    let arn = text(&identity.arn);
    let invoked_by = text(&identity.invoked_by);
    let user_uid = arn.clone().or_else(|| {
        matches!(kind.as_deref(), Some("AWSService"))
            .then(|| invoked_by.clone())
            .flatten()
    });
    // An assumed role's "user" is its session name, the last segment of the ARN.
    let user_name = text(&identity.user_name).or_else(|| {
        matches!(kind.as_deref(), Some("AssumedRole"))
            .then(|| {
                arn.as_ref()
                    .and_then(|a| part_of(a, |a| a.rsplit('/').next()))
            })
            .flatten()
    });
    let identity_account = text(&identity.account_id);
    let (src_ip, src_domain) = ip_or_domain(text(&r.source_ip_address));

    let resources = r
        .resources
        .unwrap_or_default()
        .into_iter()
        .map(|res| Resource {
            uid: text(&res.arn),
            kind: text(&res.kind),
            name: None,
            account_uid: text(&res.account_id),
        })
        .collect();

    let extras = [
        ("additionalEventData", r.additional_event_data),
        ("insightDetails", r.insight_details),
        ("serviceEventDetails", r.service_event_details),
        ("sharedEventID", r.shared_event_id),
        ("vpcEndpointId", r.vpc_endpoint_id),
        ("tlsDetails", r.tls_details),
        ("eventCategory", r.event_category),
        ("managementEvent", r.management_event),
        (
            "sessionCredentialFromConsole",
            r.session_credential_from_console,
        ),
        ("edgeDeviceDetails", r.edge_device_details),
    ];
    let additional_data = join_raw_object(&extras).map(|joined| {
        if extras.iter().all(|(_, v)| v.is_none_or(|v| v.clean)) {
            return Text::Owned(joined);
        }
        let redacted = match redact_json(&joined) {
            Cow::Owned(redacted) => Some(redacted),
            Cow::Borrowed(_) => None,
        };
        Text::Owned(redacted.unwrap_or(joined))
    });

    Outcome::Event(Box::new(CiemEvent {
        time_ms,
        class_uid,
        category_uid,
        activity_id: activity,
        status_id: if failed { 2 } else { 1 },
        cloud_provider: Provider::Aws,
        cloud_account_uid: text(&r.recipient_account_id).or_else(|| identity_account.clone()),
        cloud_region: text(&r.aws_region),
        action: action(service.as_deref(), operation.as_deref()),
        api_service_name: event_source,
        service,
        api_operation: operation,
        api_version: text(&r.api_version),
        is_read_only: read_only,
        api_response_error: error,
        api_response_message: text(&r.error_message),
        actor_user_type: kind,
        actor_user_uid: user_uid,
        actor_user_uid_alt: text(&identity.principal_id),
        actor_user_name: user_name,
        actor_user_account_uid: identity_account,
        actor_credential_uid: access_key,
        actor_credential_kind: credential_kind,
        actor_session_issuer: session.session_issuer.and_then(|i| text(&i.arn)),
        actor_session_is_mfa: mfa,
        actor_session_created_time_ms: attributes
            .creation_date
            .and_then(|d| parse_time_ms(&d.0, 0)),
        actor_invoked_by: invoked_by,
        src_endpoint_ip: src_ip,
        src_endpoint_domain: src_domain,
        http_user_agent: text(&r.user_agent),
        api_request_uid: text(&r.request_id),
        metadata_uid: event_id,
        metadata_event_type: text(&r.event_type),
        metadata_product_version: text(&r.event_version),
        resources,
        request_data: raw_text(r.request_parameters),
        response_data: raw_text(r.response_elements),
        additional_data,
        ingest_time_ms: stamp.ingest_time_ms,
        origin: stamp.origin(position),
    }))
}

/// `{"k1":<raw1>,...}` from the present, non-null raw values, without re-serialising them.
fn join_raw_object(parts: &[(&str, Option<Raw<'_>>)]) -> Option<String> {
    let present: Vec<_> = parts
        .iter()
        .filter_map(|(k, v)| v.map(|v| (k, v.get())).filter(|(_, v)| *v != "null"))
        .collect();
    if present.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(
        2 + present
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (k, v)) in present.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(k);
        out.push_str("\":");
        out.push_str(v);
    }
    out.push('}');
    Some(out)
}
