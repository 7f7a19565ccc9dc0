//! The normalised rows auditlake writes: [`CiemEvent`] (one per audit record) and
//! [`DeadLetter`] (input that could not be read). Their columns are in `schemas/`.

use std::sync::Arc;

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

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub uid: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub account_uid: Option<String>,
}

/// One audit record in the CIEM schema. Field names follow the column names.
#[derive(Debug, Clone, PartialEq)]
pub struct CiemEvent {
    pub time_ms: i64,
    pub class_uid: i32,
    pub category_uid: i32,
    pub activity_id: i32,
    pub status_id: i32,
    pub cloud_provider: Provider,
    pub cloud_account_uid: Option<String>,
    pub cloud_region: Option<String>,
    pub api_service_name: Option<String>,
    pub service: Option<String>,
    pub api_operation: Option<String>,
    pub action: Option<String>,
    pub api_version: Option<String>,
    pub is_read_only: Option<bool>,
    pub api_response_error: Option<String>,
    pub api_response_message: Option<String>,
    pub actor_user_type: Option<String>,
    pub actor_user_uid: Option<String>,
    pub actor_user_uid_alt: Option<String>,
    pub actor_user_name: Option<String>,
    pub actor_user_account_uid: Option<String>,
    pub actor_credential_uid: Option<String>,
    pub actor_credential_kind: Option<&'static str>,
    pub actor_session_issuer: Option<String>,
    pub actor_session_is_mfa: Option<bool>,
    pub actor_session_created_time_ms: Option<i64>,
    pub actor_invoked_by: Option<String>,
    pub src_endpoint_ip: Option<String>,
    pub src_endpoint_domain: Option<String>,
    pub http_user_agent: Option<String>,
    pub api_request_uid: Option<String>,
    pub metadata_uid: String,
    pub metadata_event_type: Option<String>,
    pub metadata_product_version: Option<String>,
    pub resources: Vec<Resource>,
    pub request_data: Option<String>,
    pub response_data: Option<String>,
    pub additional_data: Option<String>,
    pub ingest_time_ms: i64,
    pub origin: Origin,
}

pub const CLASS_API_ACTIVITY: i32 = 6003;

/// OCSF `type_uid` of an event: its class and activity in one number.
pub fn type_uid(class_uid: i32, activity_id: i32) -> i64 {
    i64::from(class_uid) * 100 + i64::from(activity_id)
}
pub const CLASS_AUTHENTICATION: i32 = 3002;

impl CiemEvent {
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
    /// Builds a dead letter, cutting `raw` at `cap` bytes (on a character boundary).
    pub fn new(
        pipeline: Arc<str>,
        origin: Origin,
        reason: impl Into<String>,
        raw: &[u8],
        cap: usize,
        now_ms: i64,
    ) -> Self {
        let truncated = raw.len() > cap;
        let raw = String::from_utf8_lossy(&raw[..raw.len().min(cap)]);
        let mut raw = raw.into_owned();
        if truncated {
            // from_utf8_lossy may have turned a split character into U+FFFD; that is fine.
            while raw.len() > cap {
                raw.pop();
            }
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
