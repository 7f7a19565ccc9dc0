//! Normalisation: one JSON value in, one CIEM row out (or a reason it cannot be one).
//! `cloudtrail` and `cloudaudit` hold the per-cloud field mappings; this module classifies a
//! value and holds what both share (time parsing, action names, OCSF activity).

pub mod cloudaudit;
pub mod cloudtrail;
pub mod loose;
pub mod unit;

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::event::{CiemEvent, Origin, Text};
use loose::LooseStr;

/// Settings for normalisation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeConfig {
    /// UTC offset assumed for Tencent CloudAudit times written without a zone
    /// (`"2019-03-20 12:36:27"`); Tencent logs Beijing time, so the default is `+08:00`.
    #[serde(default = "default_zoneless_offset")]
    pub tencent_zoneless_time_offset: String,
}

fn default_zoneless_offset() -> String {
    "+08:00".to_string()
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            tencent_zoneless_time_offset: default_zoneless_offset(),
        }
    }
}

/// What became of one input value.
#[derive(Debug)]
pub enum Outcome<'a> {
    Event(Box<CiemEvent<'a>>),
    /// A CloudTrail digest (integrity manifest): not an event, skipped and counted.
    Digest,
    /// Not an event; the reason goes to the dead-letter output.
    Rejected(String),
}

impl Outcome<'_> {
    /// The outcome with its event's text copied out of the input.
    pub fn into_owned(self) -> Outcome<'static> {
        match self {
            Outcome::Event(e) => Outcome::Event(Box::new(e.into_owned())),
            Outcome::Digest => Outcome::Digest,
            Outcome::Rejected(reason) => Outcome::Rejected(reason),
        }
    }
}

/// Context the normaliser stamps on every row.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub source: Arc<str>,
    pub partition: Option<i32>,
    pub ingest_time_ms: i64,
}

impl Stamp {
    pub fn origin(&self, position: i64) -> Origin {
        Origin {
            source: self.source.clone(),
            partition: self.partition,
            position,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Normalizer {
    zoneless_offset_secs: i64,
}

/// Just enough of a value to decide what it is.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "Records")]
    records: Option<IgnoredAny>,
    #[serde(rename = "digestStartTime")]
    digest_start_time: Option<IgnoredAny>,
    #[serde(rename = "digestPublicKeyFingerprint")]
    digest_fingerprint: Option<IgnoredAny>,
    #[serde(rename = "awsRegion")]
    aws_region: Option<IgnoredAny>,
    #[serde(rename = "eventRegion")]
    event_region: Option<IgnoredAny>,
    #[serde(rename = "eventSource", borrow)]
    event_source: Option<LooseStr<'a>>,
    #[serde(rename = "__CONTENT__", borrow)]
    content: Option<LooseStr<'a>>,
}

#[derive(Deserialize)]
struct RecordsObject<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<&'a RawValue>,
}

impl Normalizer {
    pub fn new(config: &NormalizeConfig) -> Result<Self, String> {
        let zoneless_offset_secs = parse_utc_offset(&config.tencent_zoneless_time_offset)
            .ok_or_else(|| {
                format!(
                    "tencent_zoneless_time_offset {:?} is not a UTC offset like \"+08:00\"",
                    config.tencent_zoneless_time_offset
                )
            })?;
        Ok(Normalizer {
            zoneless_offset_secs,
        })
    }

    /// Normalises one value. `in_records` marks elements of a CloudTrail `Records` array. A
    /// top-level value may itself hold several records (a `Records` object that did not start
    /// with that key), so results are handed to `out` one by one.
    pub fn value<'a>(
        &self,
        bytes: &'a [u8],
        in_records: bool,
        stamp: &Stamp,
        position: &mut i64,
        out: &mut dyn FnMut(Outcome<'a>, i64),
    ) {
        if in_records {
            let outcome = self.cloudtrail(bytes, stamp, *position);
            out(outcome, *position);
            *position += 1;
            return;
        }
        let outcome = match classify(bytes) {
            Kind::CloudTrail => self.cloudtrail(bytes, stamp, *position),
            Kind::CloudAudit => {
                cloudaudit::normalize(bytes, stamp, *position, self.zoneless_offset_secs)
            }
            Kind::Digest => Outcome::Digest,
            Kind::Records => match parse::<RecordsObject>(bytes) {
                Ok(obj) => {
                    for record in obj.records {
                        let outcome = self.cloudtrail(record.get().as_bytes(), stamp, *position);
                        out(outcome, *position);
                        *position += 1;
                    }
                    return;
                }
                Err(e) => Outcome::Rejected(format!("invalid Records object: {e}")),
            },
            Kind::Wrapped(inner) => {
                // CLS raw format: the event is the JSON text in __CONTENT__.
                if inner.trim_start().starts_with('{') {
                    // The events borrow from the unescaped text, which ends here.
                    let out = &mut |o: Outcome<'_>, p| out(o.into_owned(), p);
                    return self.value(inner.as_bytes(), false, stamp, position, out);
                }
                Outcome::Rejected("__CONTENT__ does not hold a JSON object".to_string())
            }
            Kind::Rejected(reason) => Outcome::Rejected(reason),
        };
        out(outcome, *position);
        *position += 1;
    }

    /// Normalises the element of a CloudTrail `Records` array that starts `text` (the rest of
    /// the content follows it), when it can be read without delimiting it first; returns the
    /// outcome and the element's length. None: delimit it and hand it to [`Normalizer::value`].
    pub fn record_prefix<'a>(
        &self,
        text: &'a str,
        stamp: &Stamp,
        position: i64,
    ) -> Option<(Outcome<'a>, usize)> {
        cloudtrail::normalize_prefix(text, stamp, position)
    }

    fn cloudtrail<'a>(&self, bytes: &'a [u8], stamp: &Stamp, position: i64) -> Outcome<'a> {
        cloudtrail::normalize(bytes, stamp, position)
    }
}

/// Deserialises JSON text. UTF-8 is validated once for the whole value (std's check is fast on
/// ASCII), after which `serde_json::from_str` does not re-validate every string and raw value
/// as `from_slice` does (that was ~9 % of decode+normalise CPU on the replay benchmark).
/// Invalid UTF-8 goes through `from_slice`, which accepts it where serde_json skips a value
/// unchecked and otherwise reports where it is, exactly as before.
pub(crate) fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

enum Kind {
    CloudTrail,
    CloudAudit,
    Digest,
    Records,
    Wrapped(String),
    Rejected(String),
}

fn classify(bytes: &[u8]) -> Kind {
    let first = bytes.trim_ascii_start().first().copied();
    if first != Some(b'{') {
        return match serde_json::from_slice::<IgnoredAny>(bytes) {
            Ok(_) => Kind::Rejected("record is not a JSON object".to_string()),
            Err(e) => Kind::Rejected(format!("invalid JSON: {e}")),
        };
    }
    let probe: Probe = match parse(bytes) {
        Ok(p) => p,
        Err(e) => return Kind::Rejected(format!("invalid JSON: {e}")),
    };
    if probe.records.is_some() {
        return Kind::Records;
    }
    if probe.digest_start_time.is_some() || probe.digest_fingerprint.is_some() {
        return Kind::Digest;
    }
    let source = probe
        .event_source
        .as_ref()
        .map(|s| s.0.as_ref())
        .unwrap_or("");
    if probe.aws_region.is_some() || source.ends_with(".amazonaws.com") {
        return Kind::CloudTrail;
    }
    if probe.event_region.is_some()
        || source.contains("tencentcloudapi.com")
        || source.contains("tencentyun.com")
    {
        return Kind::CloudAudit;
    }
    if let Some(content) = probe.content {
        return Kind::Wrapped(content.0.into_owned());
    }
    Kind::Rejected(
        "not a CloudTrail or CloudAudit event (no awsRegion, eventRegion or known eventSource)"
            .to_string(),
    )
}

/// The part `f` picks out of `text`, borrowed from the same place as `text`.
pub(crate) fn part_of<'a>(
    text: &Text<'a>,
    f: impl for<'x> FnOnce(&'x str) -> Option<&'x str>,
) -> Option<Text<'a>> {
    match text {
        Text::Borrowed(s) => f(s).map(Text::Borrowed),
        Text::Owned(s) => f(s).map(|part| Text::Owned(part.to_owned())),
    }
}

/// Short service name: the first label of the event source (`iam.amazonaws.com` → `iam`).
pub fn service_of(event_source: &str) -> Option<&str> {
    let label = event_source.split(['.', '/']).next().unwrap_or("");
    if label.is_empty() { None } else { Some(label) }
}

/// Removes API-version suffixes some services put on operation names: Lambda's
/// `CreateFunction20150331` / `UpdateFunctionCode20150331v2`, CloudFront's
/// `CreateDistribution2020_05_31`.
pub fn strip_version_suffix(name: &str) -> &str {
    let b = name.as_bytes();
    let mut end = b.len();
    // optional `v<digits>`
    let mut i = end;
    while i > 0 && b[i - 1].is_ascii_digit() {
        i -= 1;
    }
    if i < end && i > 0 && b[i - 1] == b'v' {
        end = i - 1;
    }
    let tail = &b[..end];
    let is_digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let cut = if tail.len() > 8 && is_digits(&tail[tail.len() - 8..]) {
        Some(tail.len() - 8)
    } else if tail.len() > 10 {
        let t = &tail[tail.len() - 10..];
        (is_digits(&t[..4])
            && t[4] == b'_'
            && is_digits(&t[5..7])
            && t[7] == b'_'
            && is_digits(&t[8..]))
        .then(|| tail.len() - 10)
    } else {
        None
    };
    match cut {
        Some(c) if c > 0 && b[c - 1].is_ascii_alphabetic() => &name[..c],
        _ => name,
    }
}

/// `service:Operation`, the way IAM policies name actions.
pub fn action<'a>(service: Option<&str>, operation: Option<&str>) -> Option<Text<'a>> {
    let (service, op) = (service?, strip_version_suffix(operation?));
    // Not format!: its machinery was 2.4 % of decode+normalise CPU for this one string.
    let mut out = String::with_capacity(service.len() + 1 + op.len());
    out.push_str(service);
    out.push(':');
    out.push_str(op);
    Some(Text::Owned(out))
}

/// OCSF API Activity activity_id from the operation's verb (1 Create, 2 Read, 3 Update,
/// 4 Delete, 99 Other). `read_only` wins when the cloud says so.
pub fn activity_id(operation: &str, read_only: Option<bool>) -> i32 {
    const CREATE: &[&str] = &[
        "Create",
        "Run",
        "Generate",
        "Allocate",
        "Import",
        "Copy",
        "Upload",
        "Launch",
        "Issue",
        "Register",
        "Provision",
        "Request",
        "Purchase",
        "Clone",
        "Publish",
        "New",
        "Open",
    ];
    const READ: &[&str] = &[
        "Get",
        "List",
        "Describe",
        "Lookup",
        "Search",
        "Query",
        "Head",
        "Scan",
        "Select",
        "Check",
        "Inquiry",
        "Inquire",
        "View",
        "Download",
        "Retrieve",
        "Read",
        "Verify",
        "Validate",
        "Estimate",
        "Preview",
        "Filter",
        "Decrypt",
        "Encrypt",
        "Sign",
        "Test",
        "Export",
        "Batch Get",
        "Count",
        "Show",
    ];
    const UPDATE: &[&str] = &[
        "Update",
        "Put",
        "Modify",
        "Attach",
        "Detach",
        "Enable",
        "Disable",
        "Start",
        "Stop",
        "Reboot",
        "Restart",
        "Set",
        "Associate",
        "Disassociate",
        "Authorize",
        "Revoke",
        "Add",
        "Change",
        "Reset",
        "Replace",
        "Tag",
        "Untag",
        "Assign",
        "Unassign",
        "Apply",
        "Bind",
        "Unbind",
        "Upgrade",
        "Resize",
        "Rotate",
        "Assume",
        "Accept",
        "Reject",
        "Restore",
        "Resume",
        "Suspend",
        "Edit",
        "Switch",
        "Renew",
        "Move",
        "Rename",
        "Mount",
        "Unmount",
    ];
    const DELETE: &[&str] = &[
        "Delete",
        "Terminate",
        "Remove",
        "Destroy",
        "Deregister",
        "Release",
        "Purge",
        "Unregister",
        "Drop",
        "Cancel",
        "Disassemble",
        "Deactivate",
        "Unsubscribe",
    ];
    if read_only == Some(true) {
        return 2;
    }
    let starts = |verbs: &[&str]| {
        verbs.iter().any(|v| {
            operation.starts_with(v)
                && operation[v.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_ascii_lowercase())
        })
    };
    if starts(DELETE) {
        4
    } else if starts(CREATE) {
        1
    } else if starts(UPDATE) {
        3
    } else if starts(READ) {
        2
    } else {
        99
    }
}

/// Splits a `sourceIPAddress` into (ip, domain): service names such as `AWS Internal` or
/// `signin.amazonaws.com` are not addresses.
pub fn ip_or_domain(value: Option<Text<'_>>) -> (Option<Text<'_>>, Option<Text<'_>>) {
    match value {
        None => (None, None),
        Some(v) if v.is_empty() => (None, None),
        Some(v) if v.parse::<IpAddr>().is_ok() => (Some(v), None),
        Some(v) => (None, Some(v)),
    }
}

/// Parses `+08:00`, `-05:30`, `Z` into seconds east of UTC.
pub fn parse_utc_offset(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Why a date-time text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not an ISO 8601 date-time like 2019-06-18T22:28:31Z")]
    Shape,
    #[error("year 0000 does not exist")]
    YearZero,
    #[error("month {0} does not exist")]
    Month(i64),
    #[error("{year:04}-{month:02} has no day {day} (it has {days})")]
    Day {
        year: i64,
        month: i64,
        day: i64,
        days: i64,
    },
    #[error("{0:02}:{1:02}:{2:02} is not a time of day")]
    Clock(i64, i64, i64),
    #[error("{0:?} is not a UTC offset")]
    Offset(String),
}

/// Days in a month of the proleptic Gregorian calendar.
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses the timestamp shapes audit logs use into epoch milliseconds:
/// `2019-06-18T22:28:31Z` (optionally with fraction or offset), `20131102T010628Z`, and
/// `2019-03-20 12:36:27` (no zone: `zoneless_offset_secs` applies). Dates that do not exist
/// (`2024-02-31`, year 0000, hour 24) are refused, not shifted to a neighbouring day.
pub fn parse_time(s: &str, zoneless_offset_secs: i64) -> Result<i64, TimeError> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeError> {
        let part = b.get(r).filter(|p| !p.is_empty()).ok_or(TimeError::Shape)?;
        // At most 4 digits: no overflow.
        part.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit()
                .then(|| n * 10 + i64::from(c - b'0'))
                .ok_or(TimeError::Shape)
        })
    };
    let (y, mo, d, h, mi, sec, mut rest) = if b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        && b[13] == b':'
        && b[16] == b':'
    {
        (
            num(0..4)?,
            num(5..7)?,
            num(8..10)?,
            num(11..13)?,
            num(14..16)?,
            num(17..19)?,
            19,
        )
    } else if b.len() >= 15 && b[8] == b'T' {
        (
            num(0..4)?,
            num(4..6)?,
            num(6..8)?,
            num(9..11)?,
            num(11..13)?,
            num(13..15)?,
            15,
        )
    } else {
        return Err(TimeError::Shape);
    };
    if y == 0 {
        return Err(TimeError::YearZero);
    }
    if !(1..=12).contains(&mo) {
        return Err(TimeError::Month(mo));
    }
    let days = days_in_month(y, mo);
    if !(1..=days).contains(&d) {
        return Err(TimeError::Day {
            year: y,
            month: mo,
            day: d,
            days,
        });
    }
    // Second 60 is a leap second (it reads as the next minute's first).
    if h > 23 || mi > 59 || sec > 60 {
        return Err(TimeError::Clock(h, mi, sec));
    }
    let mut millis = 0i64;
    if b.get(rest) == Some(&b'.') {
        let start = rest + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return Err(TimeError::Shape);
        }
        let frac = &b[start..end.min(start + 3)];
        let mut v = 0i64;
        for (k, c) in frac.iter().enumerate() {
            v += i64::from(c - b'0') * [100, 10, 1][k];
        }
        millis = v;
        rest = end;
    }
    let offset = match &b[rest..] {
        [] => zoneless_offset_secs,
        tail => {
            let tail = String::from_utf8_lossy(tail);
            parse_utc_offset(&tail).ok_or_else(|| TimeError::Offset(tail.into_owned()))?
        }
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Ok(secs * 1000 + millis)
}

/// [`parse_time`] for fields where an unreadable time is simply absent.
pub fn parse_time_ms(s: &str, zoneless_offset_secs: i64) -> Option<i64> {
    parse_time(s, zoneless_offset_secs).ok()
}

/// Epoch milliseconds from a number that may be seconds or milliseconds.
pub fn epoch_number_to_ms(n: f64) -> Option<i64> {
    if !n.is_finite() || n <= 0.0 {
        return None;
    }
    // Anything past 1e11 seconds (year 5138) must be milliseconds.
    let ms = if n > 1e11 { n } else { n * 1000.0 };
    (ms < 1e15).then_some(ms as i64)
}

/// Formats epoch milliseconds as `YYYY-MM-DD` (UTC), for the date partition.
/// What a JSON value is, for error texts ("a boolean").
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub fn date_of_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_strip_version_suffixes() {
        assert_eq!(
            action(Some("iam"), Some("CreateUser")).as_deref(),
            Some("iam:CreateUser")
        );
        assert_eq!(
            strip_version_suffix("CreateFunction20150331"),
            "CreateFunction"
        );
        assert_eq!(
            strip_version_suffix("UpdateFunctionCode20150331v2"),
            "UpdateFunctionCode"
        );
        assert_eq!(
            strip_version_suffix("CreateDistribution2020_05_31"),
            "CreateDistribution"
        );
        assert_eq!(strip_version_suffix("GetObject"), "GetObject");
        assert_eq!(strip_version_suffix("20150331"), "20150331");
        assert_eq!(
            service_of("cam.ap-guangzhou.api.tencentyun.com"),
            Some("cam")
        );
        assert_eq!(
            service_of("cloudaudit.api.tencentyun.com/v2/index.php"),
            Some("cloudaudit")
        );
    }

    #[test]
    fn activity_ids_follow_ocsf() {
        assert_eq!(activity_id("CreateUser", None), 1);
        assert_eq!(activity_id("RunInstances", None), 1);
        assert_eq!(activity_id("DescribeInstances", None), 2);
        assert_eq!(activity_id("AttachUserPolicy", None), 3);
        assert_eq!(activity_id("TerminateInstances", None), 4);
        assert_eq!(
            activity_id("Settle", None),
            99,
            "verb must end at a word boundary"
        );
        assert_eq!(activity_id("ConsoleLogin", None), 99);
        assert_eq!(activity_id("AssumeRole", Some(true)), 2);
    }

    #[test]
    fn times_in_every_shape() {
        assert_eq!(
            parse_time_ms("2019-06-18T22:28:31Z", 0),
            Some(1_560_896_911_000)
        );
        assert_eq!(
            parse_time_ms("20131102T010628Z", 0),
            Some(1_383_354_388_000)
        );
        assert_eq!(
            parse_time_ms("2019-03-20 12:36:27", 8 * 3600),
            Some(1_553_056_587_000)
        );
        assert_eq!(
            parse_time_ms("2019-03-20T12:36:27.5+08:00", 0),
            Some(1_553_056_587_500)
        );
        assert_eq!(parse_time_ms("yesterday", 0), None);
        assert_eq!(parse_time_ms("2019-13-20T12:36:27Z", 0), None);
        assert_eq!(
            parse_time_ms("2024-02-29T00:00:00Z", 0),
            Some(1_709_164_800_000),
            "a leap day"
        );
        assert_eq!(epoch_number_to_ms(1_680_513_809.0), Some(1_680_513_809_000));
        assert_eq!(
            epoch_number_to_ms(1_680_513_809_123.0),
            Some(1_680_513_809_123)
        );
        assert_eq!(date_of_ms(1_560_896_911_000), "2019-06-18");
        assert_eq!(date_of_ms(0), "1970-01-01");
        assert_eq!(
            ip_or_domain(Some("AWS Internal".into())),
            (None, Some("AWS Internal".into()))
        );
        assert_eq!(
            ip_or_domain(Some("2001:db8::1".into())),
            (Some("2001:db8::1".into()), None)
        );
    }

    /// Dates that do not exist are refused with the reason, not shifted to another day.
    #[test]
    fn impossible_dates_are_refused() {
        let cases = [
            ("2024-02-31T00:00:00Z", "2024-02 has no day 31 (it has 29)"),
            ("2023-02-29T00:00:00Z", "2023-02 has no day 29 (it has 28)"),
            ("2100-02-29 00:00:00", "2100-02 has no day 29 (it has 28)"),
            ("2024-04-31T00:00:00Z", "2024-04 has no day 31 (it has 30)"),
            ("20240230T000000Z", "2024-02 has no day 30 (it has 29)"),
            ("2024-06-00T00:00:00Z", "2024-06 has no day 0 (it has 30)"),
            ("0000-01-01T00:00:00Z", "year 0000 does not exist"),
            ("2024-00-10T00:00:00Z", "month 0 does not exist"),
            ("2024-01-10T24:00:00Z", "24:00:00 is not a time of day"),
            (
                "2024-01-10T10:00:00+25:00",
                "\"+25:00\" is not a UTC offset",
            ),
            (
                "June 1st",
                "not an ISO 8601 date-time like 2019-06-18T22:28:31Z",
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(
                parse_time(text, 0).map_err(|e| e.to_string()),
                Err(reason.to_string()),
                "{text}"
            );
        }
        assert_eq!(
            parse_time("2000-02-29T00:00:00Z", 0),
            Ok(951_782_400_000),
            "2000 is a leap year"
        );
    }
}
