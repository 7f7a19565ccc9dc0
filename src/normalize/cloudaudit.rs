//! Tencent Cloud CloudAudit event → CIEM row. Accepts every shape in REFERENCE §2 and the CLS
//! Kafka-consumption variants: CLS meta fields (`__SOURCE__`, `__TIMESTAMP__`, ...), `__TAG__`
//! nested or flattened as `__TAG__.key`, and nested values as objects or JSON-encoded strings.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{
    Outcome, Stamp, action, activity_id, epoch_number_to_ms, ip_or_domain, parse_time, service_of,
};
use crate::event::{CLASS_API_ACTIVITY, CiemEvent, Provider, Resource, Text};
use crate::redact::redact_json;

/// A nested value that may have been logged as JSON text (JsonType=2): decoded when it is.
fn decoded(v: Option<Value>) -> Option<Value> {
    match v {
        Some(Value::String(s)) => {
            let t = s.trim_start();
            if t.starts_with('{') || t.starts_with('[') {
                serde_json::from_str(&s).ok().or(Some(Value::String(s)))
            } else if s.is_empty() {
                None
            } else {
                Some(Value::String(s))
            }
        }
        Some(Value::Null) | None => None,
        other => other,
    }
}

/// A scalar as text (numbers in their JSON spelling); empty and non-scalars are None.
fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `0`, `"0"` and empty mean "no error" in CloudAudit.
fn error_code(v: Option<&Value>) -> Option<String> {
    scalar(v).filter(|s| s != "0")
}

fn owned(v: &Option<String>) -> Option<Text<'static>> {
    v.clone().map(Text::Owned)
}

/// JSON text for the lake, with secrets redacted (see [`redact_json`]).
fn redacted(text: String) -> String {
    match redact_json(&text) {
        Cow::Owned(r) => r,
        Cow::Borrowed(_) => text,
    }
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        other => other.to_string(),
    }
}

/// CloudAudit events are read through `serde_json::Value`, so their text is owned.
pub fn normalize(
    bytes: &[u8],
    stamp: &Stamp,
    position: i64,
    zoneless_offset_secs: i64,
) -> Outcome<'static> {
    let mut map: Map<String, Value> = match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Outcome::Rejected("record is not a JSON object".to_string()),
        Err(e) => return Outcome::Rejected(format!("invalid CloudAudit event: {e}")),
    };

    // CLS meta fields and tags.
    let mut cls = Map::new();
    let mut tags = Map::new();
    let keys: Vec<String> = map
        .keys()
        .filter(|k| k.starts_with("__"))
        .cloned()
        .collect();
    for key in keys {
        let Some(value) = map.remove(&key) else {
            continue;
        };
        if key == "__TAG__" {
            if let Some(Value::Object(t)) = decoded(Some(value)) {
                tags.extend(t);
            }
        } else if let Some(tag) = key.strip_prefix("__TAG__.") {
            tags.insert(tag.to_string(), value);
        } else {
            cls.insert(key.trim_matches('_').to_ascii_lowercase(), value);
        }
    }
    if !tags.is_empty() {
        cls.insert("tags".to_string(), Value::Object(tags));
    }

    let Some(event_id) = scalar(map.get("eventID")) else {
        return Outcome::Rejected("CloudAudit event has no eventID".to_string());
    };
    let time = match map.get("eventTime") {
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(epoch_number_to_ms)
            .ok_or_else(|| format!("CloudAudit event has an unreadable eventTime {n}: not Unix seconds or milliseconds after 1970")),
        Some(Value::String(s)) if !s.trim().is_empty() => match s.trim().parse::<f64>() {
            Ok(n) => epoch_number_to_ms(n).ok_or_else(|| {
                format!("CloudAudit event has an unreadable eventTime {s:?}: not Unix seconds or milliseconds after 1970")
            }),
            Err(_) => parse_time(s, zoneless_offset_secs).map_err(|e| {
                format!("CloudAudit event has an unreadable eventTime {s:?}: {e}")
            }),
        },
        // Without eventTime, CLS's own log time is the next best thing.
        None | Some(Value::Null | Value::String(_)) => match cls.get("timestamp") {
            Some(Value::Number(n)) => n.as_f64().and_then(epoch_number_to_ms),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok().and_then(epoch_number_to_ms),
            _ => None,
        }
        .ok_or_else(|| "CloudAudit event has no eventTime".to_string()),
        Some(other) => Err(format!(
            "CloudAudit eventTime is {}, expected Unix seconds or a date-time string",
            super::json_kind(other)
        )),
    };
    let time_ms = match time {
        Ok(ms) => ms,
        Err(reason) => return Outcome::Rejected(reason),
    };

    let identity = match decoded(map.remove("userIdentity")) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let session = match decoded(identity.get("sessionContext").cloned()) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };

    let operation = scalar(map.get("eventName"));
    let event_source = scalar(map.get("eventSource"));
    let service = event_source
        .as_deref()
        .and_then(service_of)
        .map(str::to_owned);
    let read_only = scalar(map.get("actionType")).map(|a| a.eq_ignore_ascii_case("read"));
    let error = error_code(map.get("errorCode")).or_else(|| error_code(map.get("apiErrorCode")));
    let message = if error.is_some() {
        scalar(map.get("errorMessage")).or_else(|| scalar(map.get("apiErrorMessage")))
    } else {
        None
    };

    let secret_id = scalar(identity.get("secretId"));
    let has_token = scalar(session.get("token")).is_some();
    let credential_kind = match (has_token, &secret_id) {
        (true, _) => Some("temporary"),
        (false, Some(_)) => Some("long_term"),
        _ => None,
    };
    let account = scalar(identity.get("accountId")).or_else(|| scalar(session.get("ownerUin")));
    let mfa = scalar(session.get("mfa")).and_then(|m| super::loose::parse_flag(&m));
    let (src_ip, src_domain) = ip_or_domain(scalar(map.get("sourceIPAddress")).map(Text::Owned));

    let resource_type = scalar(map.get("resourceType"));
    let mut resources: Vec<Resource> = Vec::new();
    let mut push = |uid: Option<String>, name: Option<String>| {
        let uid = uid.filter(|u| u != "*").map(Text::Owned);
        let name = name.map(Text::Owned);
        if (uid.is_some() || name.is_some())
            && !resources.iter().any(|r| r.uid == uid && r.name == name)
        {
            resources.push(Resource {
                uid,
                kind: owned(&resource_type),
                name,
                account_uid: owned(&account),
            });
        }
    };
    for key in ["resources", "resourceSet"] {
        match decoded(map.get(key).cloned()) {
            Some(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::Object(o) => push(
                            scalar(o.get("resourceId").or(o.get("ResourceId")).or(o.get("id"))),
                            scalar(
                                o.get("resourceName")
                                    .or(o.get("ResourceName"))
                                    .or(o.get("name")),
                            ),
                        ),
                        other => push(scalar(Some(&other)), None),
                    }
                }
            }
            Some(other) => push(scalar(Some(&other)), None),
            None => {}
        }
    }
    if let Some(names) = scalar(map.get("resourceName")) {
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            push(Some(name.to_string()), None);
        }
    }

    let body = |map: &mut Map<String, Value>, key: &str| {
        decoded(map.remove(key)).map(|v| redacted(json_text(&v)))
    };
    let request_data = body(&mut map, "requestParameters");
    let response_data = body(&mut map, "responseElements");

    let mut extra = Map::new();
    for key in [
        "sensitiveAction",
        "httpMethod",
        "eventPlatform",
        "resourceType",
        "apiErrorCode",
        "apiErrorMessage",
    ] {
        if let Some(v) = map.get(key).filter(|v| scalar(Some(v)).is_some()) {
            extra.insert(key.to_string(), v.clone());
        }
    }
    if let Some(t) = decoded(map.get("tags").cloned()) {
        let empty = matches!(&t, Value::Array(a) if a.iter().all(|v| scalar(Some(v)).is_none()));
        if !empty {
            extra.insert("tags".to_string(), t);
        }
    }
    if !cls.is_empty() {
        extra.insert("cls".to_string(), Value::Object(cls));
    }

    Outcome::Event(Box::new(CiemEvent {
        time_ms,
        class_uid: CLASS_API_ACTIVITY,
        category_uid: 6,
        activity_id: activity_id(operation.as_deref().unwrap_or(""), read_only),
        status_id: if error.is_some() { 2 } else { 1 },
        cloud_provider: Provider::Tencent,
        cloud_account_uid: owned(&account),
        cloud_region: scalar(map.get("eventRegion")).map(Text::Owned),
        action: action(service.as_deref(), operation.as_deref()),
        api_service_name: event_source.map(Text::Owned),
        service: service.map(Text::Owned),
        api_operation: operation.map(Text::Owned),
        api_version: scalar(map.get("apiVersion")).map(Text::Owned),
        is_read_only: read_only,
        api_response_error: error.map(Text::Owned),
        api_response_message: message.map(Text::Owned),
        actor_user_type: scalar(identity.get("type")).map(Text::Owned),
        actor_user_uid: scalar(identity.get("principalId")).map(Text::Owned),
        actor_user_uid_alt: scalar(session.get("uin")).map(Text::Owned),
        actor_user_name: scalar(identity.get("userName")).map(Text::Owned),
        actor_user_account_uid: account.map(Text::Owned),
        actor_credential_uid: secret_id.map(Text::Owned),
        actor_credential_kind: credential_kind,
        actor_session_issuer: scalar(session.get("roleArn")).map(Text::Owned),
        actor_session_is_mfa: mfa,
        actor_session_created_time_ms: None,
        actor_invoked_by: None,
        src_endpoint_ip: src_ip,
        src_endpoint_domain: src_domain,
        http_user_agent: scalar(map.get("userAgent")).map(Text::Owned),
        api_request_uid: scalar(map.get("requestID")).map(Text::Owned),
        metadata_uid: Text::Owned(event_id),
        metadata_event_type: scalar(map.get("eventType")).map(Text::Owned),
        metadata_product_version: scalar(map.get("eventVersion")).map(Text::Owned),
        resources,
        request_data: request_data.map(Text::Owned),
        response_data: response_data.map(Text::Owned),
        additional_data: if extra.is_empty() {
            None
        } else {
            Some(Text::Owned(redacted(Value::Object(extra).to_string())))
        },
        ingest_time_ms: stamp.ingest_time_ms,
        origin: stamp.origin(position),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn outcome(text: &str) -> Outcome<'static> {
        let stamp = Stamp {
            source: Arc::from("s"),
            partition: None,
            ingest_time_ms: 0,
        };
        normalize(text.as_bytes(), &stamp, 0, 8 * 3600)
    }

    fn event(time: &str, rest: &str) -> String {
        format!(
            r#"{{"eventID":"tc","eventTime":{time},"eventSource":"cam.tencentcloudapi.com","eventName":"CreateAccessKey","eventRegion":"ap-guangzhou","userIdentity":{{"accountId":"1","secretId":"AKID1"}}{rest}}}"#
        )
    }

    /// The shared rules apply to Tencent's request, response (also when logged as JSON text)
    /// and additional data alike.
    #[test]
    fn secrets_are_redacted_by_the_shared_rules() {
        let text = event(
            "1714557600",
            r#","requestParameters":"{\"TargetUin\":1,\"Token\":\"t0k\"}","responseElements":{"AccessKey":{"AccessKeyId":"AKID2","SecretAccessKey":"s3c"},"Password":"p"},"__TAG__":{"db_password":"p2"}"#,
        );
        let Outcome::Event(e) = outcome(&text) else {
            panic!("{text}")
        };
        assert_eq!(
            e.request_data.as_deref(),
            Some(r#"{"TargetUin":1,"Token":"***"}"#)
        );
        assert_eq!(
            e.response_data.as_deref(),
            Some(
                r#"{"AccessKey":{"AccessKeyId":"AKID2","SecretAccessKey":"***"},"Password":"***"}"#
            )
        );
        assert_eq!(
            e.additional_data.as_deref(),
            Some(r#"{"cls":{"tags":{"db_password":"***"}}}"#)
        );
    }

    /// eventTime that is no date, or of no usable type, is refused with why; only a missing
    /// one falls back to CLS's log time.
    #[test]
    fn unreadable_event_times_say_why() {
        let cases = [
            (
                r#""2024-02-30 10:00:00""#,
                r#"CloudAudit event has an unreadable eventTime "2024-02-30 10:00:00": 2024-02 has no day 30 (it has 29)"#,
            ),
            (
                r#""0000-01-01 00:00:00""#,
                r#"CloudAudit event has an unreadable eventTime "0000-01-01 00:00:00": year 0000 does not exist"#,
            ),
            (
                "true",
                "CloudAudit eventTime is a boolean, expected Unix seconds or a date-time string",
            ),
            (
                "[1]",
                "CloudAudit eventTime is an array, expected Unix seconds or a date-time string",
            ),
            (
                "-5",
                "CloudAudit event has an unreadable eventTime -5: not Unix seconds or milliseconds after 1970",
            ),
        ];
        for (time, reason) in cases {
            let text = event(time, r#","__TIMESTAMP__":1714557600000"#);
            match outcome(&text) {
                Outcome::Rejected(r) => assert_eq!(r, reason, "{time}"),
                other => panic!("{time}: {other:?}"),
            }
        }
        let Outcome::Event(e) = outcome(&event("null", r#","__TIMESTAMP__":1714557600000"#)) else {
            panic!("a missing time falls back to __TIMESTAMP__")
        };
        assert_eq!(e.time_ms, 1_714_557_600_000);
    }
}
