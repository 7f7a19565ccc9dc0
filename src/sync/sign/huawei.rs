//! Huawei Cloud API Gateway signing, SDK-HMAC-SHA256.
//!
//! canonical request = method \n canonical URI (always ending in `/`) \n canonical query \n
//! canonical headers (`name:value\n`, lower-cased, sorted) \n signed headers \n
//! hex(sha256(body)); string to sign = `SDK-HMAC-SHA256` \n X-Sdk-Date \n
//! hex(sha256(canonical request)); signature = hex(HMAC-SHA256(SK, string to sign)).
//! Every header given is signed; callers add `X-Project-Id` (regional APIs), `X-Domain-Id`
//! (global APIs) and `X-Security-Token` (temporary keys) before signing.

use super::{canonical_query, hmac_sha256, sha256_hex, uri_encode};

pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
pub const DATE_HEADER: &str = "X-Sdk-Date";

#[derive(Debug, Clone)]
pub struct SigningInput<'a> {
    pub method: &'a str,
    /// The path as sent (without the query).
    pub path: &'a str,
    /// Query parameters, unencoded.
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign, including `host` and `x-sdk-date`.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub canonical_request: String,
    pub hashed_canonical_request: String,
    pub string_to_sign: String,
    pub signed_headers: String,
    pub signature: String,
}

/// The `X-Sdk-Date` value of a time: `YYYYMMDDTHHMMSSZ` (UTC).
pub fn sdk_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

pub fn sign(input: &SigningInput<'_>, secret_key: &str) -> Signed {
    let mut uri: String = input
        .path
        .split('/')
        .map(|seg| uri_encode(seg, false))
        .collect::<Vec<_>>()
        .join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    let mut headers: Vec<(String, String)> = input
        .headers
        .iter()
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let date = headers
        .iter()
        .find(|(k, _)| k == "x-sdk-date")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let canonical_request = format!(
        "{}\n{uri}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        input.method,
        canonical_query(input.query),
        sha256_hex(input.body)
    );
    let hashed_canonical_request = sha256_hex(canonical_request.as_bytes());
    let string_to_sign = format!("{ALGORITHM}\n{date}\n{hashed_canonical_request}");
    let signature = hex::encode(hmac_sha256(
        secret_key.as_bytes(),
        string_to_sign.as_bytes(),
    ));
    Signed {
        canonical_request,
        hashed_canonical_request,
        string_to_sign,
        signed_headers,
        signature,
    }
}

/// The `Authorization` header value.
pub fn authorization(access_key: &str, signed: &Signed) -> String {
    format!(
        "{ALGORITHM} Access={access_key}, SignedHeaders={}, Signature={}",
        signed.signed_headers, signed.signature
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // REFERENCE §4: Huawei's documented example.
    #[test]
    fn reproduces_the_documented_signature() {
        let signed = sign(
            &SigningInput {
                method: "GET",
                path: "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
                query: &[
                    ("marker", "13551d6b-755d-4757-b956-536f674975c0"),
                    ("limit", "2"),
                ],
                headers: &[
                    ("Content-Type", "application/json"),
                    ("Host", "service.region.example.com"),
                    ("X-Sdk-Date", "20191115T033655Z"),
                ],
                body: b"",
            },
            "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
        );
        assert!(
            signed
                .canonical_request
                .starts_with("GET\n/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\nlimit=2&marker="),
            "{}",
            signed.canonical_request
        );
        assert_eq!(signed.signed_headers, "content-type;host;x-sdk-date");
        assert_eq!(
            signed.hashed_canonical_request,
            "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
        );
        assert_eq!(
            signed.signature,
            "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
        );
        assert_eq!(
            authorization("QTWAOYTTINDUT2QVKYUC", &signed),
            "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, \
             Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
        );
    }

    #[test]
    fn project_and_token_headers_are_signed() {
        let base = SigningInput {
            method: "GET",
            path: "/v1/p/cloudservers/detail",
            query: &[("offset", "1")],
            headers: &[("Host", "h"), ("X-Sdk-Date", "20191115T033655Z")],
            body: b"",
        };
        let plain = sign(&base, "sk");
        let with = sign(
            &SigningInput {
                headers: &[
                    ("Host", "h"),
                    ("X-Sdk-Date", "20191115T033655Z"),
                    ("X-Project-Id", "p"),
                    ("X-Security-Token", "tok"),
                ],
                ..base
            },
            "sk",
        );
        assert_eq!(
            with.signed_headers,
            "host;x-project-id;x-sdk-date;x-security-token"
        );
        assert_ne!(plain.signature, with.signature);
        let t = chrono::DateTime::from_timestamp(1_573_789_015, 0).expect("time");
        assert_eq!(sdk_date(t), "20191115T033655Z");
    }
}
