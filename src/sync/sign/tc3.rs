//! Tencent Cloud API 3.0 request signing, TC3-HMAC-SHA256.
//!
//! canonical request = method \n / \n query \n canonical headers \n signed headers \n
//! hex(sha256(payload)); string to sign = `TC3-HMAC-SHA256` \n timestamp \n
//! `date/service/tc3_request` \n hex(sha256(canonical request)); key chain
//! HMAC("TC3"+SecretKey, date) → service → "tc3_request"; signature = hex(HMAC(key, string)).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "TC3-HMAC-SHA256";

/// One request to sign. `headers` are the headers to sign, in any order, with their values as
/// sent (names are lower-cased and sorted, values trimmed; `x-tc-action`'s value is signed
/// lower-cased, as Tencent's SDKs do).
#[derive(Debug, Clone)]
pub struct SigningInput<'a> {
    pub method: &'a str,
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
    pub service: &'a str,
    pub timestamp: i64,
}

/// The parts of a signature, exposed for tests and for the fake server that verifies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub canonical_request: String,
    pub hashed_canonical_request: String,
    pub string_to_sign: String,
    pub signed_headers: String,
    pub credential_scope: String,
    pub signature: String,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The UTC date of a Unix timestamp, `YYYY-MM-DD`.
pub fn date_of(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".to_string())
}

pub fn sign(input: &SigningInput<'_>, secret_key: &str) -> Signed {
    let mut headers: Vec<(String, String)> = input
        .headers
        .iter()
        .map(|(k, v)| {
            let name = k.trim().to_ascii_lowercase();
            let value = if name == "x-tc-action" {
                v.trim().to_ascii_lowercase()
            } else {
                v.trim().to_string()
            };
            (name, value)
        })
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n/\n{}\n{}\n{}\n{}",
        input.method,
        input.query,
        canonical_headers,
        signed_headers,
        sha256_hex(input.payload)
    );
    let hashed_canonical_request = sha256_hex(canonical_request.as_bytes());
    let date = date_of(input.timestamp);
    let credential_scope = format!("{date}/{}/tc3_request", input.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{credential_scope}\n{hashed_canonical_request}",
        input.timestamp
    );
    let k_date = hmac(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac(&k_date, input.service.as_bytes());
    let k_signing = hmac(&k_service, b"tc3_request");
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    Signed {
        canonical_request,
        hashed_canonical_request,
        string_to_sign,
        signed_headers,
        credential_scope,
        signature,
    }
}

/// The `Authorization` header value.
pub fn authorization(secret_id: &str, signed: &Signed) -> String {
    format!(
        "{ALGORITHM} Credential={secret_id}/{}, SignedHeaders={}, Signature={}",
        signed.credential_scope, signed.signed_headers, signed.signature
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // REFERENCE §4: Tencent's documented example.
    const PAYLOAD: &str =
        r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
    const CONTENT_TYPE: &str = "application/json; charset=utf-8";

    #[test]
    fn reproduces_the_documented_signature() {
        let signed = sign(
            &SigningInput {
                method: "POST",
                query: "",
                headers: &[
                    ("Content-Type", CONTENT_TYPE),
                    ("Host", "cvm.tencentcloudapi.com"),
                ],
                payload: PAYLOAD.as_bytes(),
                service: "cvm",
                timestamp: 1551113065,
            },
            "Gu5t9xGARNpq86cd98joQYCN3*******",
        );
        assert_eq!(signed.credential_scope, "2019-02-25/cvm/tc3_request");
        assert_eq!(signed.signed_headers, "content-type;host");
        assert_eq!(
            signed.signature,
            "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
        );
        assert_eq!(
            authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******", &signed),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/tc3_request, \
             SignedHeaders=content-type;host, Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
        );
    }

    #[test]
    fn reproduces_the_signature_with_the_action_header_signed() {
        let signed = sign(
            &SigningInput {
                method: "POST",
                query: "",
                headers: &[
                    ("Content-Type", CONTENT_TYPE),
                    ("Host", "cvm.tencentcloudapi.com"),
                    ("X-TC-Action", "DescribeInstances"),
                ],
                payload: PAYLOAD.as_bytes(),
                service: "cvm",
                timestamp: 1551113065,
            },
            &"*".repeat(32),
        );
        assert_eq!(signed.signed_headers, "content-type;host;x-tc-action");
        assert_eq!(
            signed.hashed_canonical_request,
            "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
        );
        assert_eq!(
            signed.signature,
            "10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f"
        );
    }
}
