//! A direct reader for the common shape of a CloudTrail record, used before serde_json's
//! derived deserialiser (which cost ~40 % of decode+normalise CPU on the replay benchmark).
//!
//! It reads only what it can read exactly as serde_json would and gives up (`None`) on
//! anything else: a string with an escape or a control character, a number or a container
//! where a text field is expected, a repeated field, a trailing comma, any syntax error. The
//! caller then parses with serde_json, so every accepted record yields the same [`Record`]
//! and every rejected one the same error message as before. Values it does not interpret
//! (raw JSON fields and unknown members) are delimited and validated by serde_json itself.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::{Attributes, Identity, Issuer, Record, ResourceRef, SessionContext};
use crate::normalize::loose::{LooseBool, LooseStr, parse_flag};

/// Reads `text` as one CloudTrail record, or None when serde_json has to.
pub(super) fn record(text: &str) -> Option<Record<'_>> {
    let mut c = Cursor { text, pos: 0 };
    let mut r = Record::default();
    let mut seen = Seen(0);
    c.object(|c, key| match key {
        "eventVersion" => seen.first(0, c.loose(&mut r.event_version)),
        "userIdentity" => seen.first(1, c.identity(&mut r.user_identity)),
        "eventTime" => seen.first(2, c.loose(&mut r.event_time)),
        "eventSource" => seen.first(3, c.loose(&mut r.event_source)),
        "eventName" => seen.first(4, c.loose(&mut r.event_name)),
        "awsRegion" => seen.first(5, c.loose(&mut r.aws_region)),
        "sourceIPAddress" => seen.first(6, c.loose(&mut r.source_ip_address)),
        "userAgent" => seen.first(7, c.loose(&mut r.user_agent)),
        "errorCode" => seen.first(8, c.loose(&mut r.error_code)),
        "errorMessage" => seen.first(9, c.loose(&mut r.error_message)),
        "requestParameters" => seen.first(10, c.raw(&mut r.request_parameters)),
        "responseElements" => seen.first(11, c.raw(&mut r.response_elements)),
        "additionalEventData" => seen.first(12, c.raw(&mut r.additional_event_data)),
        "requestID" => seen.first(13, c.loose(&mut r.request_id)),
        "eventID" => seen.first(14, c.loose(&mut r.event_id)),
        "readOnly" => seen.first(15, c.flag(&mut r.read_only)),
        "resources" => seen.first(16, c.resources(&mut r.resources)),
        "eventType" => seen.first(17, c.loose(&mut r.event_type)),
        "apiVersion" => seen.first(18, c.loose(&mut r.api_version)),
        "recipientAccountId" => seen.first(19, c.loose(&mut r.recipient_account_id)),
        "sharedEventID" => seen.first(20, c.raw(&mut r.shared_event_id)),
        "vpcEndpointId" => seen.first(21, c.raw(&mut r.vpc_endpoint_id)),
        "tlsDetails" => seen.first(22, c.raw(&mut r.tls_details)),
        "eventCategory" => seen.first(23, c.raw(&mut r.event_category)),
        "managementEvent" => seen.first(24, c.raw(&mut r.management_event)),
        "sessionCredentialFromConsole" => {
            seen.first(25, c.raw(&mut r.session_credential_from_console))
        }
        "insightDetails" => seen.first(26, c.raw(&mut r.insight_details)),
        "serviceEventDetails" => seen.first(27, c.raw(&mut r.service_event_details)),
        "edgeDeviceDetails" => seen.first(28, c.raw(&mut r.edge_device_details)),
        _ => c.skip(),
    })?;
    // serde_json::from_str accepts only whitespace after the value.
    match c.peek() {
        None => Some(r),
        Some(_) => None,
    }
}

/// Which fields of a struct were read: serde rejects a repeated field.
struct Seen(u64);

impl Seen {
    fn first(&mut self, bit: u32, read: Option<()>) -> Option<()> {
        if self.0 >> bit & 1 == 1 {
            return None;
        }
        self.0 |= 1 << bit;
        read
    }
}

/// Containers deeper than this inside a skipped value are left to serde_json, whose
/// recursion limit (128, counted from the record's top) must decide them.
const MAX_SKIPPED_BRACKETS: usize = 96;

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Next byte after JSON whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        let b = self.text.as_bytes();
        while let Some(&c) = b.get(self.pos) {
            if !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(c);
            }
            self.pos += 1;
        }
        None
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.pos += 1)
    }

    /// `word` spelled exactly at the current position (after whitespace).
    fn word(&mut self, word: &str) -> Option<()> {
        self.peek()?;
        let rest = self.text.as_bytes().get(self.pos..)?;
        rest.starts_with(word.as_bytes())
            .then(|| self.pos += word.len())
    }

    /// A string without escapes or control characters, borrowed from the text.
    fn plain_str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let b = self.text.as_bytes();
        let start = self.pos;
        let mut i = start;
        i += special_offset(&b[i..]);
        loop {
            match *b.get(i)? {
                b'"' => break,
                b'\\' => return None,
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
        self.pos = i + 1;
        // Both ends are next to an ASCII quote, so they are character boundaries.
        self.text.get(start..i)
    }

    /// `{ "key": value, ... }`, handing each key to `member`, which must consume the value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        loop {
            let key = self.plain_str()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `null` → None (as serde's `Option` reads it), `true`/`false` and plain strings as
    /// `LooseStr` reads them.
    fn loose(&mut self, out: &mut Option<LooseStr<'a>>) -> Option<()> {
        *out = match self.peek()? {
            b'"' => Some(LooseStr(Cow::Borrowed(self.plain_str()?))),
            b'n' => {
                self.word("null")?;
                None
            }
            b't' => {
                self.word("true")?;
                Some(LooseStr(Cow::Borrowed("true")))
            }
            b'f' => {
                self.word("false")?;
                Some(LooseStr(Cow::Borrowed("false")))
            }
            _ => return None,
        };
        Some(())
    }

    fn flag(&mut self, out: &mut Option<LooseBool>) -> Option<()> {
        let mut text = None;
        self.loose(&mut text)?;
        *out = text.map(|s| LooseBool(parse_flag(&s.0)));
        Some(())
    }

    /// Length of the JSON value at the current position, delimited and validated by serde_json.
    fn serde_value<T: serde::Deserialize<'a>>(&mut self) -> Option<T> {
        self.peek()?;
        let rest = self.text.get(self.pos..)?;
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<T>();
        let value = stream.next()?.ok()?;
        let len = stream.byte_offset();
        let text = rest.get(..len)?;
        if len >= MAX_SKIPPED_BRACKETS
            && text.bytes().filter(|&b| b == b'{' || b == b'[').count() >= MAX_SKIPPED_BRACKETS
        {
            return None;
        }
        self.pos += len;
        Some(value)
    }

    fn raw(&mut self, out: &mut Option<&'a RawValue>) -> Option<()> {
        *out = if self.peek()? == b'n' {
            self.word("null")?;
            None
        } else {
            Some(self.serde_value::<&'a RawValue>()?)
        };
        Some(())
    }

    fn skip(&mut self) -> Option<()> {
        self.serde_value::<IgnoredAny>().map(drop)
    }

    /// `null` → None, an object → Some; anything else (serde also reads a struct from an
    /// array) is left to serde_json.
    fn nested<T: Default>(
        &mut self,
        out: &mut Option<T>,
        read: impl FnOnce(&mut Self, &mut T) -> Option<()>,
    ) -> Option<()> {
        match self.peek()? {
            b'n' => {
                self.word("null")?;
                *out = None;
            }
            b'{' => {
                let mut value = T::default();
                read(self, &mut value)?;
                *out = Some(value);
            }
            _ => return None,
        }
        Some(())
    }

    fn identity(&mut self, out: &mut Option<Identity<'a>>) -> Option<()> {
        self.nested(out, |c, id| {
            let mut seen = Seen(0);
            c.object(|c, key| match key {
                "type" => seen.first(0, c.loose(&mut id.kind)),
                "principalId" => seen.first(1, c.loose(&mut id.principal_id)),
                "arn" => seen.first(2, c.loose(&mut id.arn)),
                "accountId" => seen.first(3, c.loose(&mut id.account_id)),
                "accessKeyId" => seen.first(4, c.loose(&mut id.access_key_id)),
                "userName" => seen.first(5, c.loose(&mut id.user_name)),
                "invokedBy" => seen.first(6, c.loose(&mut id.invoked_by)),
                "sessionContext" => seen.first(7, c.session(&mut id.session_context)),
                _ => c.skip(),
            })
        })
    }

    fn session(&mut self, out: &mut Option<SessionContext<'a>>) -> Option<()> {
        self.nested(out, |c, s| {
            let mut seen = Seen(0);
            c.object(|c, key| match key {
                "attributes" => seen.first(0, c.attributes(&mut s.attributes)),
                "sessionIssuer" => seen.first(1, c.issuer(&mut s.session_issuer)),
                _ => c.skip(),
            })
        })
    }

    fn attributes(&mut self, out: &mut Option<Attributes<'a>>) -> Option<()> {
        self.nested(out, |c, a| {
            let mut seen = Seen(0);
            c.object(|c, key| match key {
                "mfaAuthenticated" => seen.first(0, c.flag(&mut a.mfa_authenticated)),
                "creationDate" => seen.first(1, c.loose(&mut a.creation_date)),
                _ => c.skip(),
            })
        })
    }

    fn issuer(&mut self, out: &mut Option<Issuer<'a>>) -> Option<()> {
        self.nested(out, |c, i| {
            let mut seen = Seen(0);
            c.object(|c, key| match key {
                "arn" => seen.first(0, c.loose(&mut i.arn)),
                _ => c.skip(),
            })
        })
    }

    fn resources(&mut self, out: &mut Option<Vec<ResourceRef<'a>>>) -> Option<()> {
        match self.peek()? {
            b'n' => {
                self.word("null")?;
                *out = None;
                return Some(());
            }
            b'[' => self.pos += 1,
            _ => return None,
        }
        let mut list = Vec::new();
        if self.peek()? == b']' {
            self.pos += 1;
            *out = Some(list);
            return Some(());
        }
        loop {
            let mut res = None;
            self.nested(&mut res, |c, r: &mut ResourceRef<'a>| {
                let mut seen = Seen(0);
                c.object(|c, key| match key {
                    // `arn` is serde's alias of `ARN`: one field.
                    "ARN" | "arn" => seen.first(0, c.loose(&mut r.arn)),
                    "accountId" => seen.first(1, c.loose(&mut r.account_id)),
                    "type" => seen.first(2, c.loose(&mut r.kind)),
                    _ => c.skip(),
                })
            })?;
            // A null element would fail in serde; leave it to serde_json.
            list.push(res?);
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    *out = Some(list);
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// Offset of the first byte that ends a plain string (quote, backslash or control character)
/// in `b`, or a lower offset less than 8 bytes from the end, from which to go byte by byte.
/// Eight bytes at a time in a u64: the lowest flagged byte of each test is exact (higher ones
/// may be false positives, so only the first hit is used). An SSE2 version measured the same
/// on the replay benchmark, so this stays portable.
fn special_offset(b: &[u8]) -> usize {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(word) = b.get(i..i + 8) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let v = u64::from_le_bytes(bytes);
        let quote = v ^ (LOW * u64::from(b'"'));
        let backslash = v ^ (LOW * u64::from(b'\\'));
        let hits = ((quote.wrapping_sub(LOW) & !quote)
            | (backslash.wrapping_sub(LOW) & !backslash)
            | (v.wrapping_sub(LOW * 0x20) & !v))
            & HIGH;
        if hits != 0 {
            return i + hits.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    i
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::normalize_with;
    use super::*;
    use crate::normalize::Stamp;

    const SEEDS: &[&str] = &[
        r#"{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROA:grace@example.com","arn":"arn:aws:sts::777788889999:assumed-role/Admin/grace@example.com","accountId":"777788889999","accessKeyId":"ASIAOH0B9ATK0EP9XLQA","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROA","arn":"arn:aws:iam::777788889999:role/Admin","accountId":"777788889999","userName":"Admin"},"webIdFederationData":{},"attributes":{"creationDate":"2024-03-13T12:34:48Z","mfaAuthenticated":"true"}}},"eventTime":"2024-03-11T13:36:34Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"eu-west-1","sourceIPAddress":"AWS Internal","userAgent":"AWS Internal","requestParameters":{"keyId":"k","encryptionContext":{"a":[1,2.5e3,-0,true,null]}},"responseElements":null,"requestID":"14db089f","eventID":"751b2ad2","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"777788889999","eventCategory":"Management","resources":[{"accountId":"777788889999","type":"AWS::KMS::Key","ARN":"arn:aws:kms:eu-west-1:777788889999:key/9535"}],"sessionCredentialFromConsole":"true"}"#,
        "{ \"eventVersion\" : \"1.08\" ,\n \"userIdentity\" : { \"type\" : \"AWSService\" , \"invokedBy\" : \"ssm.amazonaws.com\" } ,\r\n\t\"eventTime\":\"2024-03-11T13:33:41Z\",\"eventSource\":\"ec2.amazonaws.com\",\"eventName\":\"DescribeInstanceStatus\",\"awsRegion\":\"eu-west-1\",\"sourceIPAddress\":\"ssm.amazonaws.com\",\"requestParameters\":{\"instancesSet\":{},\"filterSet\":{}},\"eventID\":\"7a81\",\"readOnly\":\"false\",\"resources\":[],\"unknown\":[{\"x\":\"\\u00e9\\n\"}],\"errorCode\":\"AccessDenied\",\"errorMessage\":\"not authorized\",\"responseElements\":{\"m\":\"a \\\"quoted\\\" word\"}} \n",
        r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDA","arn":"arn:aws:iam::1:user/bob","accountId":"1","userName":"bob"},"eventTime":"2024-01-01T00:00:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9","userAgent":"Mozilla/5.0 é","requestParameters":null,"responseElements":{"ConsoleLogin":"Failure"},"additionalEventData":{"MFAUsed":"No","LoginTo":"https://console"},"eventID":"e1","readOnly":false,"eventType":"AwsConsoleSignIn","recipientAccountId":"1","tlsDetails":{"tlsVersion":"TLSv1.3"},"resources":[{"arn":"a1","type":"t"},{"ARN":"a2","accountId":"1"}]}"#,
    ];

    fn outcome(text: &[u8], fast: bool) -> String {
        let stamp = Stamp {
            source: Arc::from("s"),
            partition: None,
            ingest_time_ms: 0,
        };
        format!("{:?}", normalize_with(text, &stamp, 7, fast))
    }

    #[test]
    fn string_scans_stop_at_the_first_special_byte() {
        let alphabet = b"ab\"\\\x00\x1f\x20\x7f\x80\xff\xdc\xa2";
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 70) as usize;
            let text: Vec<u8> = (0..len)
                .map(|k| {
                    let r = seed.rotate_left(k as u32 * 7) ^ (k as u64).wrapping_mul(0x9E37);
                    // Mostly plain bytes, so that specials are sparse.
                    if r.is_multiple_of(5) {
                        alphabet[(r / 5 % alphabet.len() as u64) as usize]
                    } else {
                        b'a'
                    }
                })
                .collect();
            let first = text
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(len);
            let k = special_offset(&text);
            assert!(k <= first && (k == first || len - k < 8), "{text:?}: {k}");
        }
    }

    #[test]
    fn reads_the_seeds_itself() {
        for seed in SEEDS {
            assert!(record(seed).is_some(), "{seed}");
            assert_eq!(
                outcome(seed.as_bytes(), true),
                outcome(seed.as_bytes(), false)
            );
        }
    }

    #[test]
    fn leaves_what_it_cannot_read_exactly_to_serde_json() {
        for text in [
            r#"{"eventID":"a","eventID":"b"}"#,
            r#"{"eventID":"a","eventID":null}"#,
            r#"{"eventID":"a",}"#,
            r#"{"eventID":"a"} x"#,
            r#"{"eventID":"a\"b"}"#,
            r#"{"eventID":12}"#,
            r#"{"eventID":{"x":1}}"#,
            r#"{"userIdentity":["IAMUser"]}"#,
            r#"{"resources":[null]}"#,
            r#"{"resources":[{"ARN":"a","arn":"b"}]}"#,
            "{\"eventID\":\"a\u{1}\"}",
        ] {
            assert!(record(text).is_none(), "{text}");
        }
        let deep = format!(
            r#"{{"eventID":"a","requestParameters":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(record(&deep).is_none());
        assert_eq!(
            outcome(deep.as_bytes(), true),
            outcome(deep.as_bytes(), false)
        );
    }

    /// Damaged variants of the seeds: whatever the fast reader accepts must come out exactly
    /// as serde_json's, and whatever it refuses gets serde_json's verdict.
    #[test]
    fn damaged_records_come_out_as_from_serde_json() {
        let pieces: &[&[u8]] = &[
            b"\"",
            b"\\",
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b" ",
            b"null",
            b"true",
            b"1",
            b"-",
            b"\x01",
            b"\xc3\xa9",
            b"\xff",
            b"\"eventID\":\"x\",",
            b"\"arn\":\"y\",",
            b"n",
            b"e",
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rng = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut accepted = 0;
        for round in 0..6_000 {
            let mut text = SEEDS[round % SEEDS.len()].as_bytes().to_vec();
            for _ in 0..1 + rng() % 3 {
                let at = (rng() % text.len() as u64) as usize;
                match rng() % 3 {
                    0 => {
                        text.remove(at);
                    }
                    1 => {
                        let p = pieces[(rng() % pieces.len() as u64) as usize];
                        text.splice(at..at, p.iter().copied());
                    }
                    _ => {
                        let p = pieces[(rng() % pieces.len() as u64) as usize];
                        let end = (at + p.len()).min(text.len());
                        text.splice(at..end, p.iter().copied());
                    }
                }
            }
            if std::str::from_utf8(&text).is_ok_and(|t| record(t).is_some()) {
                accepted += 1;
            }
            assert_eq!(
                outcome(&text, true),
                outcome(&text, false),
                "{}",
                String::from_utf8_lossy(&text)
            );
        }
        assert!(accepted > 500, "fast reader accepted only {accepted}");
    }
}
