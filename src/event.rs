//! The normalised rows auditlake writes: [`CiemEvent`] (one per audit record) and
//! [`DeadLetter`] (input that could not be read). Their columns are in `schemas/`.

use std::borrow::Cow;
use std::sync::Arc;

use crate::redact::redact_json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    Aws,
    Tencent,
    Huawei,
    Baidu,
    Ctyun,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Tencent => "tencent",
            Provider::Huawei => "huawei",
            Provider::Baidu => "baidu",
            Provider::Ctyun => "ctyun",
        }
    }
}

/// Where a record came from: a file, an object or a Kafka partition, and its position there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub source: Arc<str>,
    pub partition: Option<i32>,
    pub position: i64,
}

/// Text of an event: borrowed from the input while the event is being read, owned once it
/// has to outlive it (see [`CiemEvent::into_owned`]).
pub type Text<'a> = Cow<'a, str>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource<'a> {
    pub uid: Option<Text<'a>>,
    pub kind: Option<Text<'a>>,
    pub name: Option<Text<'a>>,
    pub account_uid: Option<Text<'a>>,
}

impl Resource<'_> {
    pub fn into_owned(self) -> Resource<'static> {
        Resource {
            uid: owned(self.uid),
            kind: owned(self.kind),
            name: owned(self.name),
            account_uid: owned(self.account_uid),
        }
    }
}

fn owned(t: Option<Text<'_>>) -> Option<Text<'static>> {
    t.map(|t| Cow::Owned(t.into_owned()))
}

/// One audit record in the CIEM schema. Field names follow the column names. Its text borrows
/// from the record it was read from (`'a`) where it can.
#[derive(Debug, Clone, PartialEq)]
pub struct CiemEvent<'a> {
    pub time_ms: i64,
    pub class_uid: i32,
    pub category_uid: i32,
    pub activity_id: i32,
    pub status_id: i32,
    pub cloud_provider: Provider,
    pub cloud_account_uid: Option<Text<'a>>,
    pub cloud_region: Option<Text<'a>>,
    pub api_service_name: Option<Text<'a>>,
    pub service: Option<Text<'a>>,
    pub api_operation: Option<Text<'a>>,
    pub action: Option<Text<'a>>,
    pub api_version: Option<Text<'a>>,
    pub is_read_only: Option<bool>,
    pub api_response_error: Option<Text<'a>>,
    pub api_response_message: Option<Text<'a>>,
    pub actor_user_type: Option<Text<'a>>,
    pub actor_user_uid: Option<Text<'a>>,
    pub actor_user_uid_alt: Option<Text<'a>>,
    pub actor_user_name: Option<Text<'a>>,
    pub actor_user_account_uid: Option<Text<'a>>,
    pub actor_credential_uid: Option<Text<'a>>,
    pub actor_credential_kind: Option<&'static str>,
    pub actor_session_issuer: Option<Text<'a>>,
    pub actor_session_is_mfa: Option<bool>,
    pub actor_session_created_time_ms: Option<i64>,
    pub actor_invoked_by: Option<Text<'a>>,
    pub src_endpoint_ip: Option<Text<'a>>,
    pub src_endpoint_domain: Option<Text<'a>>,
    pub http_user_agent: Option<Text<'a>>,
    pub api_request_uid: Option<Text<'a>>,
    pub metadata_uid: Text<'a>,
    pub metadata_event_type: Option<Text<'a>>,
    pub metadata_product_version: Option<Text<'a>>,
    pub resources: Vec<Resource<'a>>,
    pub request_data: Option<Text<'a>>,
    pub response_data: Option<Text<'a>>,
    pub additional_data: Option<Text<'a>>,
    pub ingest_time_ms: i64,
    pub origin: Origin,
}

pub const CLASS_API_ACTIVITY: i32 = 6003;

/// OCSF `type_uid` of an event: its class and activity in one number.
pub fn type_uid(class_uid: i32, activity_id: i32) -> i64 {
    i64::from(class_uid) * 100 + i64::from(activity_id)
}
pub const CLASS_AUTHENTICATION: i32 = 3002;

impl CiemEvent<'_> {
    /// The event with its text copied out of the input, to keep or send elsewhere.
    pub fn into_owned(self) -> CiemEvent<'static> {
        CiemEvent {
            time_ms: self.time_ms,
            class_uid: self.class_uid,
            category_uid: self.category_uid,
            activity_id: self.activity_id,
            status_id: self.status_id,
            cloud_provider: self.cloud_provider,
            cloud_account_uid: owned(self.cloud_account_uid),
            cloud_region: owned(self.cloud_region),
            api_service_name: owned(self.api_service_name),
            service: owned(self.service),
            api_operation: owned(self.api_operation),
            action: owned(self.action),
            api_version: owned(self.api_version),
            is_read_only: self.is_read_only,
            api_response_error: owned(self.api_response_error),
            api_response_message: owned(self.api_response_message),
            actor_user_type: owned(self.actor_user_type),
            actor_user_uid: owned(self.actor_user_uid),
            actor_user_uid_alt: owned(self.actor_user_uid_alt),
            actor_user_name: owned(self.actor_user_name),
            actor_user_account_uid: owned(self.actor_user_account_uid),
            actor_credential_uid: owned(self.actor_credential_uid),
            actor_credential_kind: self.actor_credential_kind,
            actor_session_issuer: owned(self.actor_session_issuer),
            actor_session_is_mfa: self.actor_session_is_mfa,
            actor_session_created_time_ms: self.actor_session_created_time_ms,
            actor_invoked_by: owned(self.actor_invoked_by),
            src_endpoint_ip: owned(self.src_endpoint_ip),
            src_endpoint_domain: owned(self.src_endpoint_domain),
            http_user_agent: owned(self.http_user_agent),
            api_request_uid: owned(self.api_request_uid),
            metadata_uid: Cow::Owned(self.metadata_uid.into_owned()),
            metadata_event_type: owned(self.metadata_event_type),
            metadata_product_version: owned(self.metadata_product_version),
            resources: self
                .resources
                .into_iter()
                .map(Resource::into_owned)
                .collect(),
            request_data: owned(self.request_data),
            response_data: owned(self.response_data),
            additional_data: owned(self.additional_data),
            ingest_time_ms: self.ingest_time_ms,
            origin: self.origin,
        }
    }

    pub fn activity_name(&self) -> &'static str {
        match (self.class_uid, self.activity_id) {
            (CLASS_AUTHENTICATION, 1) => "Logon",
            (CLASS_AUTHENTICATION, 2) => "Logoff",
            (_, 1) => "Create",
            (_, 2) => "Read",
            (_, 3) => "Update",
            (_, 4) => "Delete",
            _ => "Other",
        }
    }

    pub fn status(&self) -> &'static str {
        if self.status_id == 1 {
            "Success"
        } else {
            "Failure"
        }
    }
}

/// Input that could not be turned into an event, kept with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub ingest_time_ms: i64,
    pub pipeline: Arc<str>,
    pub origin: Origin,
    pub byte_offset: Option<i64>,
    pub line: Option<i64>,
    pub reason: String,
    pub raw: Option<String>,
    pub raw_truncated: bool,
}

impl DeadLetter {
    /// Builds a dead letter, cutting `raw` at `cap` bytes (on a character boundary). Secrets
    /// in it are redacted by the rules of [`crate::redact`] (a secret cut by the cap
    /// is replaced up to the cut).
    pub fn new(
        pipeline: Arc<str>,
        origin: Origin,
        reason: impl Into<String>,
        raw: &[u8],
        cap: usize,
        now_ms: i64,
    ) -> Self {
        let mut truncated = raw.len() > cap;
        let raw = String::from_utf8_lossy(&raw[..raw.len().min(cap)]);
        let mut raw = match redact_json(&raw) {
            Cow::Owned(redacted) => redacted,
            Cow::Borrowed(_) => raw.into_owned(),
        };
        // from_utf8_lossy may have turned a split character into U+FFFD, and a mask may be
        // longer than the secret it replaced; that is fine.
        while raw.len() > cap {
            raw.pop();
            truncated = true;
        }
        DeadLetter {
            ingest_time_ms: now_ms,
            pipeline,
            origin,
            byte_offset: None,
            line: None,
            reason: reason.into(),
            raw: if raw.is_empty() { None } else { Some(raw) },
            raw_truncated: truncated,
        }
    }

    pub fn at(mut self, byte_offset: u64, line: u64) -> Self {
        self.byte_offset = i64::try_from(byte_offset).ok();
        self.line = i64::try_from(line).ok();
        self
    }

    pub fn estimated_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.reason.len() + self.raw.as_ref().map_or(0, String::len)
    }
}

pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_of(raw: &[u8], cap: usize) -> (Option<String>, bool) {
        let origin = Origin {
            source: Arc::from("s"),
            partition: None,
            position: 0,
        };
        let d = DeadLetter::new(Arc::from("p"), origin, "r", raw, cap, 0);
        (d.raw, d.raw_truncated)
    }

    /// A dead letter's raw text is redacted by the same rules as events, also where the cap
    /// cuts a secret and where the text is not JSON.
    #[test]
    fn dead_letter_raw_text_is_redacted() {
        let text = br#"{"eventTime":"2024-02-31T00:00:00Z","responseElements":{"credentials":{"accessKeyId":"ASIA1","sessionToken":"IQoJb3JpZ2luX2VjEXAMPLE"}}"#;
        assert_eq!(
            raw_of(text, 1 << 16),
            (
                Some(
                    r#"{"eventTime":"2024-02-31T00:00:00Z","responseElements":{"credentials":{"accessKeyId":"ASIA1","sessionToken":"***"}}"#
                        .to_string()
                ),
                false
            )
        );
        let cut = text.len() - 10;
        let (raw, truncated) = raw_of(text, cut);
        let raw = raw.unwrap_or_default();
        assert!(truncated && raw.len() <= cut, "{raw}");
        assert!(raw.ends_with(r#""sessionToken":"***""#), "{raw}");
        assert_eq!(
            raw_of(b"garbage \"password\": hunter2, more", 100)
                .0
                .as_deref(),
            Some("garbage \"password\": \"***\", more")
        );
    }
}
