//! Baidu AI Cloud request signing, bce-auth-v1.
//!
//! auth prefix = `bce-auth-v1/{AK}/{timestamp}/{expiry}`; signing key = hex(HMAC-SHA256(SK,
//! prefix)); canonical request = method \n URI-encoded path (`/` kept) \n sorted encoded query
//! (without `authorization`) \n canonical headers (`name:value`, lower-cased names, encoded
//! trimmed values, sorted, joined by `\n`, no trailing newline); signature =
//! hex(HMAC-SHA256(key = the signing key's **hex string** as bytes, canonical request)).
//! Authorization = `{prefix}/{signed headers or empty for the default set}/{signature}`.

use super::{canonical_query, hmac_sha256, uri_encode};

pub const DEFAULT_EXPIRY: u32 = 1800;

#[derive(Debug, Clone)]
pub struct SigningInput<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    /// The request's headers (all of them; which are signed is decided below).
    pub headers: &'a [(&'a str, &'a str)],
    /// `x-bce-date`, `YYYY-MM-DDTHH:MM:SSZ`.
    pub timestamp: &'a str,
    pub expiry: u32,
    /// Headers to sign; `None` signs the default set (host, content-length, content-type,
    /// content-md5 and every `x-bce-*`), and the Authorization names none.
    pub signed_headers: Option<&'a [&'a str]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub canonical_request: String,
    pub signing_key: String,
    pub signature: String,
    pub authorization: String,
}

/// The `x-bce-date` value of a time.
pub fn bce_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn is_default(name: &str) -> bool {
    matches!(
        name,
        "host" | "content-length" | "content-type" | "content-md5"
    ) || name.starts_with("x-bce-")
}

pub fn sign(input: &SigningInput<'_>, access_key: &str, secret_key: &str) -> Signed {
    let prefix = format!(
        "bce-auth-v1/{access_key}/{}/{}",
        input.timestamp, input.expiry
    );
    let signing_key = hex::encode(hmac_sha256(secret_key.as_bytes(), prefix.as_bytes()));
    let wanted: Option<Vec<String>> = input
        .signed_headers
        .map(|l| l.iter().map(|h| h.trim().to_ascii_lowercase()).collect());
    let mut headers: Vec<String> = input
        .headers
        .iter()
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim()))
        .filter(|(k, v)| {
            !v.is_empty()
                && match &wanted {
                    Some(w) => w.contains(k),
                    None => is_default(k),
                }
        })
        .map(|(k, v)| format!("{}:{}", uri_encode(&k, false), uri_encode(v, false)))
        .collect();
    headers.sort();
    let query: Vec<(&str, &str)> = input
        .query
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        .copied()
        .collect();
    let canonical_request = format!(
        "{}\n{}\n{}\n{}",
        input.method,
        uri_encode(input.path, true),
        canonical_query(&query),
        headers.join("\n")
    );
    let signature = hex::encode(hmac_sha256(
        signing_key.as_bytes(),
        canonical_request.as_bytes(),
    ));
    let named = match &wanted {
        Some(w) => {
            let mut w = w.clone();
            w.sort();
            w.join(";")
        }
        None => String::new(),
    };
    let authorization = format!("{prefix}/{named}/{signature}");
    Signed {
        canonical_request,
        signing_key,
        signature,
        authorization,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADERS: &[(&str, &str)] = &[
        ("Host", "bj.bcebos.com"),
        ("Content-Type", "text/plain"),
        ("Content-Length", "8"),
        ("Content-Md5", "NFzcPqhviddjRNnSOGo4rw=="),
        ("x-bce-date", "2015-04-27T08:23:49Z"),
    ];

    fn input(signed_headers: Option<&'static [&'static str]>) -> SigningInput<'static> {
        SigningInput {
            method: "PUT",
            path: "/v1/test/myfolder/readme.txt",
            query: &[
                ("partNumber", "9"),
                ("uploadId", "a44cc9bab11cbd156984767aad637851"),
            ],
            headers: HEADERS,
            timestamp: "2015-04-27T08:23:49Z",
            expiry: 1800,
            signed_headers,
        }
    }

    // REFERENCE §4: Baidu's documented example.
    #[test]
    fn reproduces_the_documented_authorization_with_the_default_headers() {
        let signed = sign(&input(None), &"a".repeat(32), &"b".repeat(32));
        assert_eq!(
            signed.signing_key,
            "1d5ce5f464064cbee060330d973218821825ac6952368a482a592e6615aef479"
        );
        assert_eq!(
            signed.canonical_request,
            "PUT\n/v1/test/myfolder/readme.txt\npartNumber=9&uploadId=a44cc9bab11cbd156984767aad637851\n\
             content-length:8\ncontent-md5:NFzcPqhviddjRNnSOGo4rw%3D%3D\ncontent-type:text%2Fplain\n\
             host:bj.bcebos.com\nx-bce-date:2015-04-27T08%3A23%3A49Z"
        );
        assert_eq!(
            signed.authorization,
            "bce-auth-v1/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/2015-04-27T08:23:49Z/1800//d74a04362e6a848f5b39b15421cb449427f419c95a480fd6b8cf9fc783e2999e"
        );
    }

    #[test]
    fn reproduces_the_documented_signature_with_two_signed_headers() {
        let signed = sign(
            &input(Some(&["host", "x-bce-date"])),
            &"a".repeat(32),
            &"b".repeat(32),
        );
        assert_eq!(
            signed.signature,
            "1b8de5a23a56eef657c69f94c621e7acd227d049a4ba577f537d5e5cebf0cf32"
        );
        assert!(
            signed.authorization.ends_with(
                "/1800/host;x-bce-date/1b8de5a23a56eef657c69f94c621e7acd227d049a4ba577f537d5e5cebf0cf32"
            ),
            "{}",
            signed.authorization
        );
    }
}
