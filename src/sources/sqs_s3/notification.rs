//! SQS message bodies that announce S3 objects: plain S3 event notifications, the same wrapped
//! in an SNS envelope, EventBridge "Object Created" events, and the `s3:TestEvent` S3 sends when
//! a notification is configured. See `REFERENCE.md` §3.

use serde_json::Value;

/// One S3 object a message announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The key, URL-decoded.
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub sequencer: Option<String>,
    pub size: Option<u64>,
}

impl ObjectRef {
    /// `s3://bucket/key`: what rows record as their origin.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// The input unit of this object in the lake's journal: its location plus what identifies
    /// this upload (version, ETag, sequencer). A redelivered or repeated notification of the same
    /// upload has the same id, so it is read once; a re-upload is a new unit.
    pub fn unit_id(&self) -> String {
        let mut id = self.url();
        let mut sep = '#';
        for (name, value) in [
            ("version", &self.version_id),
            ("etag", &self.etag),
            ("sequencer", &self.sequencer),
        ] {
            if let Some(value) = value {
                id.push(sep);
                id.push_str(name);
                id.push('=');
                id.push_str(value);
                sep = ';';
            }
        }
        id
    }
}

/// What one message body says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notification {
    /// Objects created (`ObjectCreated:*`, EventBridge "Object Created").
    pub objects: Vec<ObjectRef>,
    /// The body was S3's `s3:TestEvent`.
    pub test_event: bool,
    /// Names of other events (deletes, lifecycle transitions…): nothing to read.
    pub ignored_events: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("message body is not JSON: {0}")]
    NotJson(String),
    #[error("message body is not an S3 event notification: {0}")]
    Unrecognised(String),
}

/// Parses a message body.
pub fn parse_body(body: &str) -> Result<Notification, BodyError> {
    let value: Value = serde_json::from_str(body).map_err(|e| BodyError::NotJson(e.to_string()))?;
    let mut out = Notification::default();
    parse_value(&value, 0, &mut out)?;
    Ok(out)
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn missing(what: &str) -> BodyError {
    BodyError::Unrecognised(format!("{what} is missing or not a string"))
}

fn parse_value(v: &Value, depth: u8, out: &mut Notification) -> Result<(), BodyError> {
    if let Some(records) = v.get("Records") {
        let records = records
            .as_array()
            .ok_or_else(|| BodyError::Unrecognised("`Records` is not a list".to_string()))?;
        for r in records {
            let name = text(r, "/eventName").unwrap_or("");
            if !name.starts_with("ObjectCreated:") {
                out.ignored_events.push(name.to_string());
                continue;
            }
            let bucket = text(r, "/s3/bucket/name").ok_or_else(|| missing("s3.bucket.name"))?;
            let key = text(r, "/s3/object/key").ok_or_else(|| missing("s3.object.key"))?;
            out.objects.push(ObjectRef {
                bucket: bucket.to_string(),
                key: decode_key(key)?,
                version_id: text(r, "/s3/object/versionId").map(str::to_string),
                etag: text(r, "/s3/object/eTag").map(str::to_string),
                sequencer: text(r, "/s3/object/sequencer").map(str::to_string),
                size: r.pointer("/s3/object/size").and_then(Value::as_u64),
            });
        }
        return Ok(());
    }
    if text(v, "/Event") == Some("s3:TestEvent") {
        out.test_event = true;
        return Ok(());
    }
    if text(v, "/Type") == Some("Notification") {
        if depth > 0 {
            return Err(BodyError::Unrecognised(
                "an SNS envelope inside an SNS envelope".to_string(),
            ));
        }
        let message = text(v, "/Message").ok_or_else(|| missing("SNS Message"))?;
        let inner: Value = serde_json::from_str(message)
            .map_err(|e| BodyError::NotJson(format!("SNS Message: {e}")))?;
        return parse_value(&inner, depth + 1, out);
    }
    if text(v, "/source") == Some("aws.s3")
        && let Some(detail_type) = text(v, "/detail-type")
    {
        if detail_type != "Object Created" {
            out.ignored_events.push(detail_type.to_string());
            return Ok(());
        }
        let bucket = text(v, "/detail/bucket/name").ok_or_else(|| missing("detail.bucket.name"))?;
        let key = text(v, "/detail/object/key").ok_or_else(|| missing("detail.object.key"))?;
        out.objects.push(ObjectRef {
            bucket: bucket.to_string(),
            // EventBridge carries the key as is (unconfirmed: see docs/aws.md); only
            // notifications URL-encode it.
            key: key.to_string(),
            version_id: text(v, "/detail/object/version-id").map(str::to_string),
            etag: text(v, "/detail/object/etag").map(str::to_string),
            sequencer: text(v, "/detail/object/sequencer").map(str::to_string),
            size: v.pointer("/detail/object/size").and_then(Value::as_u64),
        });
        return Ok(());
    }
    Err(BodyError::Unrecognised(
        "expected `Records`, an SNS `Notification`, an EventBridge `aws.s3` event or `s3:TestEvent`"
            .to_string(),
    ))
}

/// URL-decodes a notification key: `+` is a space, `%XX` a byte (so `%2B` is `+`, `%2F` a `/`).
/// A `%` not followed by two hex digits is kept as it is.
pub fn decode_key(key: &str) -> Result<String, BodyError> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| BodyError::Unrecognised(format!("key {key:?} does not decode to UTF-8")))
}

/// Which objects are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyFilter {
    /// CloudTrail log files only: `…/CloudTrail/….json.gz`. Digest files are skipped.
    #[default]
    Cloudtrail,
    /// Every object (recognised by content, as the files source does).
    All,
}

/// What to do with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVerdict {
    Read,
    /// A CloudTrail digest file (integrity manifest, no events).
    Digest,
    /// Not selected by the filter.
    Skip,
}

pub fn classify(key: &str, filter: KeyFilter, prefixes: &[String]) -> KeyVerdict {
    if !prefixes.is_empty() && !prefixes.iter().any(|p| key.starts_with(p.as_str())) {
        return KeyVerdict::Skip;
    }
    match filter {
        KeyFilter::All => KeyVerdict::Read,
        KeyFilter::Cloudtrail => {
            let mut segments = key.split('/');
            if segments.clone().any(|s| s == "CloudTrail-Digest") {
                KeyVerdict::Digest
            } else if segments.any(|s| s == "CloudTrail") && key.ends_with(".json.gz") {
                KeyVerdict::Read
            } else {
                KeyVerdict::Skip
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_url_decoded() {
        assert_eq!(decode_key("a+b%2Bc%2Fd").as_deref(), Ok("a b+c/d"));
        assert_eq!(decode_key("100%").as_deref(), Ok("100%"));
        assert_eq!(decode_key("%zz%4").as_deref(), Ok("%zz%4"));
        assert_eq!(decode_key("caf%C3%A9").as_deref(), Ok("café"));
        assert!(decode_key("%FF").is_err());
    }

    #[test]
    fn plain_notification_with_several_records() {
        let body = r#"{"Records":[
          {"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
           "s3":{"bucket":{"name":"trail"},"object":{"key":"AWSLogs%2F1%2FCloudTrail%2Fa+b.json.gz","size":12,"eTag":"e1","sequencer":"S1"}}},
          {"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"trail"},"object":{"key":"x"}}},
          {"eventSource":"aws:s3","eventName":"ObjectCreated:CompleteMultipartUpload",
           "s3":{"bucket":{"name":"trail"},"object":{"key":"k%2B1","versionId":"v9"}}}]}"#;
        let n = parse_body(body).expect("parses");
        assert_eq!(n.objects.len(), 2);
        assert_eq!(n.objects[0].key, "AWSLogs/1/CloudTrail/a b.json.gz");
        assert_eq!(n.objects[0].size, Some(12));
        assert_eq!(
            n.objects[0].unit_id(),
            "s3://trail/AWSLogs/1/CloudTrail/a b.json.gz#etag=e1;sequencer=S1"
        );
        assert_eq!(n.objects[1].key, "k+1");
        assert_eq!(n.objects[1].unit_id(), "s3://trail/k+1#version=v9");
        assert_eq!(n.ignored_events, vec!["ObjectRemoved:Delete".to_string()]);
    }

    #[test]
    fn sns_envelope_eventbridge_and_test_event() {
        let inner = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a+b","eTag":"e"}}}]}"#;
        let sns = serde_json::json!({"Type":"Notification","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":inner}).to_string();
        let n = parse_body(&sns).expect("sns");
        assert_eq!(n.objects[0].key, "a b");

        let eb = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"dir/x y.json.gz","size":5,"etag":"E","sequencer":"Q"}}}"#;
        let n = parse_body(eb).expect("eventbridge");
        assert_eq!(n.objects[0].key, "dir/x y.json.gz");
        assert_eq!(n.objects[0].etag.as_deref(), Some("E"));
        let eb_del = r#"{"detail-type":"Object Deleted","source":"aws.s3","detail":{}}"#;
        assert_eq!(
            parse_body(eb_del).expect("deleted").ignored_events,
            vec!["Object Deleted".to_string()]
        );

        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-01-01T00:00:00Z","Bucket":"b"}"#;
        assert!(parse_body(test).expect("test").test_event);
        let sns_test = serde_json::json!({"Type":"Notification","Message":test}).to_string();
        assert!(parse_body(&sns_test).expect("sns test").test_event);
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(matches!(parse_body("not json"), Err(BodyError::NotJson(_))));
        assert!(matches!(
            parse_body(r#"{"hello":1}"#),
            Err(BodyError::Unrecognised(_))
        ));
        assert!(matches!(
            parse_body(r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{}}}]}"#),
            Err(BodyError::Unrecognised(_))
        ));
    }

    #[test]
    fn key_filter() {
        let ct = "AWSLogs/o-abc/111122223333/CloudTrail/us-east-1/2024/01/01/x.json.gz";
        assert_eq!(classify(ct, KeyFilter::Cloudtrail, &[]), KeyVerdict::Read);
        let digest = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/01/01/x.json.gz";
        assert_eq!(
            classify(digest, KeyFilter::Cloudtrail, &[]),
            KeyVerdict::Digest
        );
        assert_eq!(
            classify("notes/readme.txt", KeyFilter::Cloudtrail, &[]),
            KeyVerdict::Skip
        );
        assert_eq!(
            classify("notes/readme.txt", KeyFilter::All, &[]),
            KeyVerdict::Read
        );
        assert_eq!(
            classify(ct, KeyFilter::Cloudtrail, &["other/".to_string()]),
            KeyVerdict::Skip
        );
        assert_eq!(
            classify(ct, KeyFilter::Cloudtrail, &["AWSLogs/o-abc/".to_string()]),
            KeyVerdict::Read
        );
    }
}
