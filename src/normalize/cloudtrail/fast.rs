//! A direct reader for the common shape of a CloudTrail record, used before serde_json's
//! derived deserialiser (which cost ~40 % of decode+normalise CPU on the replay benchmark).
//!
//! It reads only what it can read exactly as serde_json would and gives up (`None`) on
//! anything else: a string with an escape or a control character, a number or a container
//! where a text field is expected, a repeated field, a trailing comma, any syntax error. The
//! caller then parses with serde_json, so every accepted record yields the same [`Record`]
//! and every rejected one the same error message as before. Values it does not interpret
//! (raw JSON fields and unknown members) are delimited by [`value_len`], which accepts only
//! what serde_json accepts when it skips a value (strict JSON), and gives up on anything else.
//! Delimiting them with serde_json itself cost ~7 % of a replay's instructions.

use std::borrow::Cow;

use super::{Attributes, Identity, Issuer, Raw, Record, ResourceRef, SessionContext, TimeText};
use crate::normalize::loose::{LooseBool, LooseStr, parse_flag};
use crate::redact::needs_redaction;

/// Reads `text` as one CloudTrail record, or None when serde_json has to.
pub(super) fn record(text: &str) -> Option<Record<'_>> {
    let (r, len) = record_prefix(text)?;
    // serde_json::from_str accepts only whitespace after the value.
    let mut c = Cursor { text, pos: len };
    match c.peek() {
        None => Some(r),
        Some(_) => None,
    }
}

/// Reads the CloudTrail record object at the start of `text` (whatever follows it) and
/// returns it with its length, or None when serde_json has to read it. The object ends where
/// a splitter counting brackets would end it: everything read here is strict JSON.
pub(super) fn record_prefix(text: &str) -> Option<(Record<'_>, usize)> {
    let mut c = Cursor { text, pos: 0 };
    let mut r = Record::default();
    let mut seen = Seen(0);
    c.object(|c, key| match key {
        "eventVersion" => seen.first(0, c.loose(&mut r.event_version)),
        "userIdentity" => seen.first(1, c.identity(&mut r.user_identity)),
        "eventTime" => seen.first(2, c.time(&mut r.event_time)),
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
    Some((r, c.pos))
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

/// Containers nested deeper than this inside a skipped or raw value are left to serde_json,
/// whose recursion limit (128, counted from the record's top, at most 5 levels above a value
/// read here) must decide them.
const MAX_DEPTH: u32 = 96;

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

    /// The JSON value at the current position, as text (see [`value_len`]).
    fn value(&mut self) -> Option<&'a str> {
        self.value_keys(|_| {})
    }

    /// [`Cursor::value`], handing `on_key` the name of every object member in it, as written
    /// between its quotes.
    fn value_keys(&mut self, on_key: impl FnMut(&[u8])) -> Option<&'a str> {
        self.peek()?;
        let len = value_len(self.text.as_bytes().get(self.pos..)?, on_key)?;
        // The value ends just after an ASCII byte: a character boundary.
        let value = self.text.get(self.pos..self.pos + len)?;
        self.pos += len;
        Some(value)
    }

    /// A raw value, checked for members the redaction rules may match on the way (so that
    /// values without any are not scanned again).
    fn raw(&mut self, out: &mut Option<Raw<'a>>) -> Option<()> {
        *out = if self.peek()? == b'n' {
            self.word("null")?;
            None
        } else {
            let mut secret = false;
            let text = self.value_keys(|name| secret = secret || needs_redaction(name))?;
            Some(Raw {
                text,
                clean: !secret,
            })
        };
        Some(())
    }

    /// `eventTime`: a plain string or null; anything else (a number, which serde_json may
    /// refuse as out of range, an escaped string) is left to serde_json.
    fn time(&mut self, out: &mut TimeText<'a>) -> Option<()> {
        *out = match self.peek()? {
            b'"' => TimeText::Str(Cow::Borrowed(self.plain_str()?)),
            b'n' => {
                self.word("null")?;
                TimeText::Null
            }
            _ => return None,
        };
        Some(())
    }

    fn skip(&mut self) -> Option<()> {
        self.value().map(drop)
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

/// The length of the JSON value at the start of `b`, accepting exactly what serde_json accepts
/// when it skips a value: strict JSON (no trailing commas or leading zeros, escapes checked, no
/// control characters in strings). None for anything else, or for containers nested deeper
/// than [`MAX_DEPTH`].
/// `on_key` gets the name of every object member on the way, as written between its quotes.
#[inline]
fn value_len(b: &[u8], mut on_key: impl FnMut(&[u8])) -> Option<usize> {
    // The open containers, innermost in the lowest bit: 1 for an object, 0 for an array.
    let mut open: u128 = 0;
    let mut depth = 0u32;
    let mut i = 0;
    loop {
        // A value starts here.
        i = skip_ws(b, i);
        match *b.get(i)? {
            c @ (b'{' | b'[') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return None;
                }
                let object = c == b'{';
                open = open << 1 | u128::from(object);
                i = skip_ws(b, i + 1);
                let close = if object { b'}' } else { b']' };
                if *b.get(i)? == close {
                    i += 1;
                    depth -= 1;
                    open >>= 1;
                } else {
                    if object {
                        i = member_key_end(b, i, &mut on_key)?;
                    }
                    continue;
                }
            }
            b'"' => i = string_end(b, i)?,
            b't' => i = literal_end(b, i, b"true")?,
            b'f' => i = literal_end(b, i, b"false")?,
            b'n' => i = literal_end(b, i, b"null")?,
            b'-' | b'0'..=b'9' => i = number_end(b, i)?,
            _ => return None,
        }
        // A value ended: close containers until one goes on with another value.
        loop {
            if depth == 0 {
                return Some(i);
            }
            i = skip_ws(b, i);
            let object = open & 1 == 1;
            match (*b.get(i)?, object) {
                (b',', true) => {
                    i = member_key_end(b, skip_ws(b, i + 1), &mut on_key)?;
                    break;
                }
                (b',', false) => {
                    i += 1;
                    break;
                }
                (b'}', true) | (b']', false) => {
                    i += 1;
                    depth -= 1;
                    open >>= 1;
                }
                _ => return None,
            }
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\t' | b'\r')) {
        i += 1;
    }
    i
}

/// `"key"` and `:` at `i` (after whitespace): the position after the colon. The key's text
/// goes to `on_key`.
#[inline]
fn member_key_end(b: &[u8], i: usize, on_key: &mut impl FnMut(&[u8])) -> Option<usize> {
    let end = string_end(b, i)?;
    on_key(b.get(i + 1..end - 1)?);
    let i = skip_ws(b, end);
    (*b.get(i)? == b':').then_some(i + 1)
}

/// A string at `i`: the position after its closing quote. Escapes are checked as serde_json
/// checks them when skipping (`\uXXXX` needs four hex digits, not a valid code point).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if *b.get(i)? != b'"' {
        return None;
    }
    let mut i = i + 1;
    loop {
        i += special_offset(b.get(i..)?);
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => match *b.get(i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => i += 6,
                _ => return None,
            },
            c if c < 0x20 => return None,
            _ => i += 1,
        }
    }
}

fn literal_end(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    b.get(i..)?.starts_with(word).then_some(i + word.len())
}

/// A number at `i`: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match *b.get(i)? {
        // serde_json rejects a leading zero followed by a digit.
        b'0' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => return None,
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

/// Offset of the first byte that ends a plain string (quote, backslash or control character)
/// in `b`, or a lower offset less than 8 bytes from the end, from which to go byte by byte.
/// Sixteen bytes at a time with SSE2 on x86_64 (2.6 % fewer instructions per replay than
/// the portable eight-byte version, which does the rest and serves other targets).
fn special_offset(b: &[u8]) -> usize {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        while let Some(chunk) = b.get(i..i + 16) {
            // SAFETY: SSE2 is always available on x86_64; the load reads the 16 bytes of
            // `chunk` (unaligned loads are allowed).
            let hits = unsafe {
                let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                // Bytes up to 0x1f are the ones whose unsigned max with 0x1f is 0x1f.
                let low = _mm_set1_epi8(0x1f);
                let control = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control))
            };
            if hits != 0 {
                return i + hits.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    i + special_offset_swar(&b[i..])
}

/// [`special_offset`] eight bytes at a time in a u64: the lowest flagged byte of each test is
/// exact (higher ones may be false positives, so only the first hit is used).
fn special_offset_swar(b: &[u8]) -> usize {
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

    use serde::de::IgnoredAny;

    use super::super::normalize_with;
    use super::*;
    use crate::normalize::Stamp;
    use crate::testing::xorshift;

    const SEEDS: &[&str] = &[
        r#"{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROA:grace@example.com","arn":"arn:aws:sts::777788889999:assumed-role/Admin/grace@example.com","accountId":"777788889999","accessKeyId":"ASIAOH0B9ATK0EP9XLQA","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROA","arn":"arn:aws:iam::777788889999:role/Admin","accountId":"777788889999","userName":"Admin"},"webIdFederationData":{},"attributes":{"creationDate":"2024-03-13T12:34:48Z","mfaAuthenticated":"true"}}},"eventTime":"2024-03-11T13:36:34Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"eu-west-1","sourceIPAddress":"AWS Internal","userAgent":"AWS Internal","requestParameters":{"keyId":"k","encryptionContext":{"a":[1,2.5e3,-0,true,null]}},"responseElements":null,"requestID":"14db089f","eventID":"751b2ad2","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"777788889999","eventCategory":"Management","resources":[{"accountId":"777788889999","type":"AWS::KMS::Key","ARN":"arn:aws:kms:eu-west-1:777788889999:key/9535"}],"sessionCredentialFromConsole":"true"}"#,
        "{ \"eventVersion\" : \"1.08\" ,\n \"userIdentity\" : { \"type\" : \"AWSService\" , \"invokedBy\" : \"ssm.amazonaws.com\" } ,\r\n\t\"eventTime\":\"2024-03-11T13:33:41Z\",\"eventSource\":\"ec2.amazonaws.com\",\"eventName\":\"DescribeInstanceStatus\",\"awsRegion\":\"eu-west-1\",\"sourceIPAddress\":\"ssm.amazonaws.com\",\"requestParameters\":{\"instancesSet\":{},\"filterSet\":{}},\"eventID\":\"7a81\",\"readOnly\":\"false\",\"resources\":[],\"unknown\":[{\"x\":\"\\u00e9\\n\"}],\"errorCode\":\"AccessDenied\",\"errorMessage\":\"not authorized\",\"responseElements\":{\"m\":\"a \\\"quoted\\\" word\"}} \n",
        r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDA","arn":"arn:aws:iam::1:user/bob","accountId":"1","userName":"bob"},"eventTime":"2024-01-01T00:00:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9","userAgent":"Mozilla/5.0 é","requestParameters":null,"responseElements":{"ConsoleLogin":"Failure"},"additionalEventData":{"MFAUsed":"No","LoginTo":"https://console"},"eventID":"e1","readOnly":false,"eventType":"AwsConsoleSignIn","recipientAccountId":"1","tlsDetails":{"tlsVersion":"TLSv1.3"},"resources":[{"arn":"a1","type":"t"},{"ARN":"a2","accountId":"1"}]}"#,
        // eventVersion 1.0 (no eventID), an STS response with a session token, a password.
        r#"{"eventVersion":"1.0","userIdentity":{"type":"IAMUser","principalId":"AIDA","arn":"arn:aws:iam::1:user/bob","accountId":"1","accessKeyId":"AKIA1","userName":"bob"},"eventTime":"2014-03-06T21:22:54Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.1","userAgent":"aws-cli/1.3","requestParameters":{"roleArn":"arn:aws:iam::1:role/r","roleSessionName":"s","serialNumber":"m","tokenCode":"123456"},"responseElements":{"credentials":{"accessKeyId":"ASIAEXAMPLE","sessionToken":"AQoDYXdzEPT//////////wEXAMPLE","expiration":"Mar 6, 2014 10:22:54 PM"},"assumedRoleUser":{"assumedRoleId":"AROA:s","arn":"arn:aws:sts::1:assumed-role/r/s"}},"additionalEventData":{"x":[{"masterUserPassword":"hunter2"}]}}"#,
    ];

    fn stamp() -> Stamp {
        Stamp {
            source: Arc::from("s"),
            partition: None,
            ingest_time_ms: 0,
        }
    }

    fn outcome(text: &[u8], fast: bool) -> String {
        format!("{:?}", normalize_with(text, &stamp(), 7, fast))
    }

    /// The event the fast reader makes of the record at the start of `text`, read in place,
    /// and the record's length.
    fn in_place(text: &str) -> (crate::event::CiemEvent<'_>, usize) {
        match super::super::normalize_prefix(text, &stamp(), 7) {
            Some((crate::normalize::Outcome::Event(e), len)) => (*e, len),
            other => panic!("{other:?}: {text}"),
        }
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
            for k in [special_offset(&text), special_offset_swar(&text)] {
                assert!(k <= first && (k == first || len - k < 8), "{text:?}: {k}");
            }
        }
    }

    /// Random fragments of JSON: whatever `value_len` accepts, serde_json accepts too, and where
    /// serde_json reads a value, `value_len` reads the same bytes.
    #[test]
    fn values_are_delimited_as_serde_json_delimits_them() {
        let pieces: &[&str] = &[
            "{", "}", "[", "]", ",", ":", " ", "\"", "\"k\"", "\\", "\\u00e9", "\\x", "0", "1",
            "-", ".", "e", "E+", "07", "true", "nul", "null", "\u{1}", "é", "a",
        ];
        let mut rng = xorshift(0x51_7CC1_B727_220A);
        let mut accepted = 0;
        for _ in 0..200_000 {
            let n = 1 + rng() % 12;
            let text: String = (0..n)
                .map(|_| pieces[(rng() % pieces.len() as u64) as usize])
                .collect();
            let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<IgnoredAny>();
            let serde_len = match stream.next() {
                Some(Ok(_)) => Some(stream.byte_offset()),
                _ => None,
            };
            let ours = value_len(text.as_bytes(), |_| {});
            if let Some(len) = ours {
                accepted += 1;
                assert!(
                    serde_json::from_str::<IgnoredAny>(&text[..len]).is_ok(),
                    "{text:?}"
                );
            }
            // Where serde_json reads a value, value_len reads the same bytes.
            if serde_len.is_some() {
                assert_eq!(ours, serde_len, "{text:?}");
            }
        }
        assert!(accepted > 10_000, "{accepted}");
        for good in [
            r#"{"a":[1,-0.5e+3,true,false,null,{"b":"\u00e9\n"}],"c":{}}"#,
            "[ ]",
            "\"x\"",
            "-0",
        ] {
            assert_eq!(
                value_len(good.as_bytes(), |_| {}),
                Some(good.len()),
                "{good}"
            );
        }
        for bad in [
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            "1e",
            "\"\\q\"",
            "\"a\u{1}\"",
            "{1:2}",
            "tru",
        ] {
            assert_eq!(value_len(bad.as_bytes(), |_| {}), None, "{bad}");
        }
        let deep = format!("{}{}", "[".repeat(97), "]".repeat(97));
        assert_eq!(value_len(deep.as_bytes(), |_| {}), None);
    }

    fn event(text: &str, fast: bool) -> crate::event::CiemEvent<'_> {
        match normalize_with(text.as_bytes(), &stamp(), 7, fast) {
            crate::normalize::Outcome::Event(e) => *e,
            other => panic!("{other:?}: {text}"),
        }
    }

    /// Secrets are redacted whichever reader reads the record: the fast reader, serde_json
    /// (forced, and because of an escape the fast reader leaves to it), and the fast reader
    /// reading the record in place (`normalize_prefix`).
    #[test]
    fn secrets_are_redacted_on_every_reading_path() {
        let seed = SEEDS[3];
        let escaped = seed.replace("aws-cli/1.3", r#"aws-cli/1.3 \"q\""#);
        assert!(
            record(&escaped).is_none(),
            "the escape sends it to serde_json"
        );
        let followed = format!("{seed} ,{{\"next\":1}}]");
        let (prefix, len) = in_place(&followed);
        assert_eq!(len, seed.len());
        for e in [
            event(seed, true),
            event(seed, false),
            event(&escaped, true),
            prefix,
        ] {
            let response = e.response_data.as_deref().unwrap_or("");
            assert!(
                response.contains(r#""sessionToken":"***""#)
                    && response.contains(r#""accessKeyId":"ASIAEXAMPLE""#)
                    && !response.contains("AQoDYXdz"),
                "{response}"
            );
            assert_eq!(
                e.additional_data.as_deref(),
                Some(r#"{"additionalEventData":{"x":[{"masterUserPassword":"***"}]}}"#)
            );
            assert!(
                e.request_data
                    .as_deref()
                    .is_some_and(|r| r.contains(r#""tokenCode":"123456""#)),
                "not a secret name: kept"
            );
        }
    }

    /// A record without an eventID gets the id of its content, the same on every reading
    /// path and whatever whitespace surrounds it; records differing anywhere get other ids.
    #[test]
    fn records_without_an_event_id_get_a_content_id_on_every_reading_path() {
        let seed = SEEDS[3];
        let id = event(seed, true).metadata_uid.into_owned();
        assert_eq!(id, super::super::content_id(seed.as_bytes()));
        assert!(id.starts_with("sha256:") && id.len() == 7 + 32, "{id}");
        let spaced = format!("  \n{seed}\r\n");
        let escaped = seed.replace("aws-cli/1.3", r#"aws-cli/1.3 \"q\""#);
        assert_eq!(event(seed, false).metadata_uid, id.as_str());
        assert_eq!(event(&spaced, true).metadata_uid, id.as_str());
        assert_eq!(event(&spaced, false).metadata_uid, id.as_str());
        let followed = format!("{seed},{{}}]");
        assert_eq!(in_place(&followed).0.metadata_uid, id.as_str());
        let other = event(&escaped, true).metadata_uid.into_owned();
        assert_ne!(other, id);
        assert_eq!(event(&escaped, false).metadata_uid, other.as_str());
        // A record with an eventID keeps it.
        assert_eq!(event(SEEDS[0], true).metadata_uid, "751b2ad2");
    }

    /// eventTime that is no date, or not a string, is refused with what it is.
    #[test]
    fn unreadable_event_times_say_why_on_every_reading_path() {
        let cases = [
            (
                r#""2024-02-31T10:00:00Z""#,
                r#"CloudTrail record has an unreadable eventTime "2024-02-31T10:00:00Z": 2024-02 has no day 31 (it has 29)"#,
            ),
            (
                r#""0000-01-01T00:00:00Z""#,
                r#"CloudTrail record has an unreadable eventTime "0000-01-01T00:00:00Z": year 0000 does not exist"#,
            ),
            (
                "1718000000",
                "CloudTrail eventTime is a number, expected an ISO 8601 string",
            ),
            (
                "true",
                "CloudTrail eventTime is a boolean, expected an ISO 8601 string",
            ),
            (
                r#"{"t":1}"#,
                "CloudTrail eventTime is an object, expected an ISO 8601 string",
            ),
            (
                "[1]",
                "CloudTrail eventTime is an array, expected an ISO 8601 string",
            ),
            ("null", "CloudTrail record has no eventTime"),
        ];
        for (time, reason) in cases {
            let text = SEEDS[0].replace(r#""2024-03-11T13:36:34Z""#, time);
            for fast in [true, false] {
                assert_eq!(
                    outcome(text.as_bytes(), fast),
                    format!("Rejected({reason:?})"),
                    "{time}"
                );
            }
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
            b"0",
            b".",
            b"E+",
            b"\\u00",
            b"\\/",
        ];
        let mut rng = xorshift(0x9E37_79B9_7F4A_7C15);
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
