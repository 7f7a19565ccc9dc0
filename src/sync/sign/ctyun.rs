//! China Telecom e-Surfing Cloud (CTyun) OpenAPI signing, EOP.
//!
//! Headers: `ctyun-eop-request-id: <uuid>`, `Eop-date: yyyyMMddTHHmmssZ` (Beijing local time
//! with a literal `Z`, as the official SDKs send it), `Eop-Authorization: {AK}
//! Headers=ctyun-eop-request-id;eop-date Signature={base64}`. String to sign =
//! `ctyun-eop-request-id:{id}\neop-date:{date}\n` + `\n` + query + `\n` + hex(sha256(body)),
//! query = parameters sorted by key as `k=percent-encoded(v)` joined by `&`. Keys: kTime =
//! HMAC(SK, eop-date); kAk = HMAC(kTime, AK); kDate = HMAC(kAk, yyyymmdd); signature =
//! base64(HMAC(kDate, string to sign)).

use base64::Engine;

use super::{hmac_sha256, sha256_hex, uri_encode};

pub const SIGNED_HEADERS: &str = "ctyun-eop-request-id;eop-date";

#[derive(Debug, Clone)]
pub struct SigningInput<'a> {
    pub request_id: &'a str,
    /// `Eop-date`.
    pub eop_date: &'a str,
    /// Query parameters, unencoded.
    pub query: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub string_to_sign: String,
    pub signature: String,
    pub authorization: String,
}

/// The `Eop-date` of a UTC time: Beijing local time (UTC+8) with a literal `Z`.
pub fn eop_date(t: chrono::DateTime<chrono::Utc>) -> String {
    (t + chrono::Duration::hours(8))
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// The query string as signed (and as sent): sorted by key, values percent-encoded.
pub fn query_string(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = query.to_vec();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", uri_encode(v, false)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn sign(input: &SigningInput<'_>, access_key: &str, secret_key: &str) -> Signed {
    let string_to_sign = format!(
        "ctyun-eop-request-id:{}\neop-date:{}\n\n{}\n{}",
        input.request_id,
        input.eop_date,
        query_string(input.query),
        sha256_hex(input.body)
    );
    let day = input.eop_date.get(..8).unwrap_or(input.eop_date);
    let k_time = hmac_sha256(secret_key.as_bytes(), input.eop_date.as_bytes());
    let k_ak = hmac_sha256(&k_time, access_key.as_bytes());
    let k_date = hmac_sha256(&k_ak, day.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(&k_date, string_to_sign.as_bytes()));
    let authorization = format!("{access_key} Headers={SIGNED_HEADERS} Signature={signature}");
    Signed {
        string_to_sign,
        signature,
        authorization,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "27cfe4dc-e640-45f6-92ca-492ca73e8680";
    const DATE: &str = "20240116T160000Z";

    fn sig(query: &[(&str, &str)], body: &[u8]) -> Signed {
        sign(
            &SigningInput {
                request_id: ID,
                eop_date: DATE,
                query,
                body,
            },
            "AKEXAMPLE",
            "SKEXAMPLE",
        )
    }

    // REFERENCE §4: from running both official Python implementations.
    #[test]
    fn reproduces_the_reference_signatures() {
        let get = sig(&[], b"");
        assert_eq!(
            get.signature,
            "KtvXhqZLy1eQOiI+48XQzhWIdBlf+AdK+WgoBR3DcZo="
        );
        assert_eq!(
            get.authorization,
            "AKEXAMPLE Headers=ctyun-eop-request-id;eop-date Signature=KtvXhqZLy1eQOiI+48XQzhWIdBlf+AdK+WgoBR3DcZo="
        );
        assert_eq!(
            sig(&[("regionName", "华东1")], b"").signature,
            "+YPQBExW5Y0XnUGIZUYwPNHJTaFp3CuXSfNxjm6Vg1I="
        );
        assert_eq!(
            sig(
                &[],
                br#"{"regionID": "bb9ffd42056f11e59079fa163e06b8b0", "pageNo": 1, "pageSize": 10}"#
            )
            .signature,
            "lp4sS8TkqoJXQONbqcGs6BpVuNqNlmweKov55XxSO7I="
        );
    }

    #[test]
    fn eop_date_is_beijing_time_with_a_literal_z() {
        // 2024-01-16T08:00:00Z is 16:00 in Beijing.
        let t = chrono::DateTime::from_timestamp(1_705_392_000, 0).expect("time");
        assert_eq!(eop_date(t), DATE);
    }
}
