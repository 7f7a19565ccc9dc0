//! The one redaction rule set for every provider: values of object members whose names say they
//! hold a secret (session tokens, secret keys, passwords, private keys) are replaced by `"***"`
//! wherever they are nested in the JSON text we write (request, response and additional data of
//! events, the raw text of dead letters), before anything reaches the lake.
//!
//! A member name is *normalised* (its ASCII letters and digits, lower-cased; everything else
//! dropped: `X-Amz-Security-Token` → `xamzsecuritytoken`) and matched against [`RULES`]: equal
//! to one of a rule's names, or ending with one of its suffixes. A matching member's value is
//! replaced unless it is `null`, `true`, `false` or `""` (which cannot hold a secret); objects
//! and arrays are replaced whole. [`redact_json`] works on the text itself, also on damaged or
//! truncated JSON, where a secret value cut by the end of the text is replaced up to that end.

use std::borrow::Cow;
use std::sync::OnceLock;

/// What replaces a secret value.
pub const MASK: &str = "\"***\"";

/// One kind of secret and the member names that hold it (normalised, see the module docs).
pub struct Rule {
    pub kind: &'static str,
    /// Names matched whole.
    pub names: &'static [&'static str],
    /// Names matched as the end of a normalised name.
    pub suffixes: &'static [&'static str],
    /// Member names as clouds log them, for the docs and tests.
    pub examples: &'static [&'static str],
}

/// The rules, in the order the schema docs list them.
pub const RULES: &[Rule] = &[
    Rule {
        kind: "session token",
        names: &["token", "xtctoken", "samlassertion", "webidentitytoken"],
        suffixes: &["sessiontoken", "securitytoken"],
        examples: &[
            "sessionToken",
            "SessionToken",
            "x-amz-security-token",
            "SecurityToken",
            "Token",
            "X-TC-Token",
            "SAMLAssertion",
        ],
    },
    Rule {
        kind: "bearer token",
        names: &["idtoken"],
        suffixes: &["accesstoken", "refreshtoken", "authtoken", "bearertoken"],
        examples: &["AccessToken", "refreshToken", "IdToken", "authToken"],
    },
    Rule {
        kind: "secret key",
        names: &["secret"],
        suffixes: &[
            "secretaccesskey",
            "secretkey",
            "accesskeysecret",
            "clientsecret",
            "secretstring",
            "secretbinary",
        ],
        examples: &[
            "secretAccessKey",
            "SecretAccessKey",
            "aws_secret_access_key",
            "SecretKey",
            "clientSecret",
            "SecretString",
        ],
    },
    Rule {
        kind: "password",
        names: &[],
        suffixes: &["password", "passwd", "passphrase"],
        examples: &[
            "password",
            "Password",
            "newPassword",
            "masterUserPassword",
            "passwd",
            "Passphrase",
        ],
    },
    Rule {
        kind: "private key",
        names: &["keymaterial"],
        suffixes: &["privatekey"],
        examples: &[
            "privateKey",
            "PrivateKey",
            "certificatePrivateKey",
            "keyMaterial",
        ],
    },
];

/// Longest normalised name a whole-name rule can match, and room for the longest suffix.
const TAIL: usize = 24;

/// The last two normalised characters of every name and suffix in [`RULES`]: bit `b` of entry
/// `a` is set for the ending `ab`. Most member names end otherwise and are refused on sight.
fn endings() -> &'static [u128; 128] {
    static ENDINGS: OnceLock<[u128; 128]> = OnceLock::new();
    ENDINGS.get_or_init(|| {
        let mut table = [0u128; 128];
        for rule in RULES {
            for pattern in rule.names.iter().chain(rule.suffixes) {
                if let [.., a, b] = pattern.as_bytes() {
                    table[usize::from(*a & 0x7f)] |= 1 << (b & 0x7f);
                }
            }
        }
        table
    })
}

/// Whether a member named `name` (raw bytes between its quotes, without escapes) holds a
/// secret under [`RULES`].
pub fn is_secret_name(name: &[u8]) -> bool {
    if let [.., a, b] = name
        && a.is_ascii_alphanumeric()
        && b.is_ascii_alphanumeric()
        && endings()[usize::from(a.to_ascii_lowercase())] >> b.to_ascii_lowercase() & 1 == 0
    {
        return false;
    }
    // The last TAIL normalised characters, backwards; `whole` while that is all of them.
    let mut tail = [0u8; TAIL];
    let mut len = 0;
    let mut whole = true;
    for &c in name.iter().rev() {
        if c.is_ascii_alphanumeric() {
            if len == TAIL {
                whole = false;
                break;
            }
            tail[TAIL - 1 - len] = c.to_ascii_lowercase();
            len += 1;
        }
    }
    let norm = &tail[TAIL - len..];
    RULES.iter().any(|rule| {
        (whole && rule.names.iter().any(|n| n.as_bytes() == norm))
            || rule.suffixes.iter().any(|s| norm.ends_with(s.as_bytes()))
    })
}

/// Whether the member name at `quoted` (its text between the quotes, as written, escapes and
/// all) holds a secret. Escaped names are decoded first.
fn is_secret_member(quoted: &str) -> bool {
    if !quoted.contains('\\') {
        return is_secret_name(quoted.as_bytes());
    }
    match serde_json::from_str::<String>(&format!("\"{quoted}\"")) {
        Ok(name) => is_secret_name(name.as_bytes()),
        // A damaged escape: judge the name as written.
        Err(_) => is_secret_name(quoted.as_bytes()),
    }
}

/// Whether the fast reader must hand a member name to [`redact_json`]: it holds a secret, or it
/// is escaped (then only the decoded name can tell).
pub fn needs_redaction(name: &[u8]) -> bool {
    memchr::memchr(b'\\', name).is_some() || is_secret_name(name)
}

/// `text` with the value of every secret member replaced by `"***"` (borrowed when there is
/// none). Valid JSON stays valid JSON; damaged text is redacted as far as it can be read.
pub fn redact_json(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while let Some(q) = memchr::memchr(b'"', &b[i..]) {
        let start = i + q;
        let end = string_end(b, start);
        i = end;
        let colon = skip_ws(b, end);
        if b.get(colon) != Some(&b':') {
            continue;
        }
        // A member name: its string is closed, so `end - 1` is its closing quote.
        if !text.get(start + 1..end - 1).is_some_and(is_secret_member) {
            continue;
        }
        let value = skip_ws(b, colon + 1);
        let value_end = value_end(b, value);
        i = value_end;
        let kept = match &b[value..value_end] {
            b"" | b"null" | b"true" | b"false" | b"\"\"" => true,
            v => v == MASK.as_bytes(),
        };
        if !kept {
            out.push_str(&text[copied..value]);
            out.push_str(MASK);
            copied = value_end;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\t' | b'\r')) {
        i += 1;
    }
    i
}

/// The position after the string starting at the quote at `i` (the end of the text when it
/// is not closed).
fn string_end(b: &[u8], i: usize) -> usize {
    let mut i = i + 1;
    while let Some(k) = memchr::memchr2(b'"', b'\\', &b[i.min(b.len())..]) {
        i += k;
        if b[i] == b'"' {
            return i + 1;
        }
        i += 2;
    }
    b.len()
}

/// The position after the value starting at `i`: a string, a container (to its matching
/// bracket, strings skipped) or a scalar (to the next delimiter); the end of the text when the
/// value is cut by it. Always at a character boundary.
fn value_end(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        None => b.len(),
        Some(b'"') => string_end(b, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut k = i;
            while k < b.len() {
                match b[k] {
                    b'"' => {
                        k = string_end(b, k);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return k + 1;
                        }
                    }
                    _ => {}
                }
                k += 1;
            }
            b.len()
        }
        Some(_) => {
            let mut k = i;
            while k < b.len() && !matches!(b[k], b',' | b'}' | b']' | b' ' | b'\n' | b'\t' | b'\r')
            {
                k += 1;
            }
            k
        }
    }
}

/// The rules as a Markdown section, for the schema documents.
pub fn rules_markdown(columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| format!("`{c}`")).collect();
    let mut out = format!(
        "## Secrets\n\n\
         Before anything is written, the JSON text in {} goes through one redaction rule set, the \
         same for every cloud: at any depth of the JSON text, the value of a member whose name holds a secret \
         is replaced by `\"***\"`, unless it is `null`, `true`, `false` or `\"\"`; objects and \
         arrays are replaced whole. A name is matched after normalising it to its ASCII letters \
         and digits, lower-cased (`X-Amz-Security-Token` → `xamzsecuritytoken`): equal to a \
         name below, or ending with a suffix below. Damaged or truncated text is redacted as far \
         as it can be read (a secret cut by the end of the text is replaced to that end). Ids \
         that are not secrets (`accessKeyId`, `secretId`) are kept.\n\n\
         | secret | whole names | name endings | e.g. |\n|---|---|---|---|\n",
        cols.join(", ")
    );
    let list = |items: &[&str]| {
        if items.is_empty() {
            "—".to_string()
        } else {
            items
                .iter()
                .map(|i| format!("`{i}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for rule in RULES {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            rule.kind,
            list(rule.names),
            list(rule.suffixes),
            list(rule.examples)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str) -> String {
        redact_json(text).into_owned()
    }

    /// Every example of every rule is redacted, at the top and nested in objects and arrays.
    #[test]
    fn every_rule_redacts_its_examples_at_any_depth() {
        for rule in RULES {
            for name in rule.examples {
                assert!(is_secret_name(name.as_bytes()), "{}: {name}", rule.kind);
                let text = format!(
                    r#"{{"{name}":"s3cr3t","a":{{"b":[{{"{name}":"s3cr3t","keep":"x"}}]}}}}"#
                );
                assert_eq!(
                    redacted(&text),
                    format!(r#"{{"{name}":"***","a":{{"b":[{{"{name}":"***","keep":"x"}}]}}}}"#),
                    "{}: {name}",
                    rule.kind
                );
            }
        }
    }

    /// The quick refusal by ending never refuses a name a rule matches.
    #[test]
    fn endings_refuse_no_rule_name() {
        for rule in RULES {
            for name in rule.names {
                assert!(
                    is_secret_name(name.to_ascii_uppercase().as_bytes()),
                    "{name}"
                );
            }
            for suffix in rule.suffixes {
                let name = format!("x_{}", suffix.to_ascii_uppercase());
                assert!(is_secret_name(name.as_bytes()), "{name}");
            }
        }
        for kept in [
            "accessKeyId",
            "instancesSet",
            "key",
            "roleArn",
            "nextToken",
            "Name",
        ] {
            assert!(!is_secret_name(kept.as_bytes()), "{kept}");
        }
    }

    #[test]
    fn session_tokens() {
        assert_eq!(
            redacted(
                r#"{"credentials":{"accessKeyId":"ASIAX","sessionToken":"IQoJb3JpZ2luX2VjE","expiration":"Jun 1, 2024"}}"#
            ),
            r#"{"credentials":{"accessKeyId":"ASIAX","sessionToken":"***","expiration":"Jun 1, 2024"}}"#
        );
        assert_eq!(
            redacted(r#"{"X-TC-Token":"t","nextToken":"n","clientToken":"c"}"#),
            r#"{"X-TC-Token":"***","nextToken":"n","clientToken":"c"}"#
        );
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(
            redacted(
                r#"{"AuthenticationResult":{"AccessToken":"a","IdToken":"i","RefreshToken":"r","TokenType":"Bearer"}}"#
            ),
            r#"{"AuthenticationResult":{"AccessToken":"***","IdToken":"***","RefreshToken":"***","TokenType":"Bearer"}}"#
        );
    }

    #[test]
    fn secret_keys() {
        assert_eq!(
            redacted(
                r#"{"accessKey":{"accessKeyId":"AKIA1","secretAccessKey":"wJalr","status":"Active"},"SecretId":"AKID1","SecretKey":"k"}"#
            ),
            r#"{"accessKey":{"accessKeyId":"AKIA1","secretAccessKey":"***","status":"Active"},"SecretId":"AKID1","SecretKey":"***"}"#
        );
    }

    #[test]
    fn passwords() {
        assert_eq!(
            redacted(
                r#"{"LoginSettings":{"Password":"p"},"masterUserPassword":12345,"passwordResetRequired":true,"PasswordPolicy":{"MinimumPasswordLength":8},"requirePassword":false}"#
            ),
            r#"{"LoginSettings":{"Password":"***"},"masterUserPassword":"***","passwordResetRequired":true,"PasswordPolicy":{"MinimumPasswordLength":8},"requirePassword":false}"#
        );
    }

    #[test]
    fn private_keys() {
        assert_eq!(
            redacted(
                r#"{"keyPair":{"PublicKey":"pub","PrivateKey":"-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----\n"},"keyMaterial":["a","b"],"keyName":"k"}"#
            ),
            r#"{"keyPair":{"PublicKey":"pub","PrivateKey":"***"},"keyMaterial":"***","keyName":"k"}"#
        );
    }

    #[test]
    fn names_are_normalised_and_escapes_decoded() {
        assert_eq!(
            redacted(r#"{"aws_secret_access_key":"k","x-amz-security-token":"t"}"#),
            r#"{"aws_secret_access_key":"***","x-amz-security-token":"***"}"#
        );
        assert_eq!(
            redacted(r#"{"pass\u0077ord" : "p", "a\"b":"c"}"#),
            r#"{"pass\u0077ord" : "***", "a\"b":"c"}"#
        );
        assert!(needs_redaction(br"pass\u0077ord"));
        // Values that name a secret are not members: kept.
        assert_eq!(
            redacted(r#"{"k":"password","l":["sessionToken"]}"#),
            r#"{"k":"password","l":["sessionToken"]}"#
        );
    }

    #[test]
    fn values_without_a_secret_are_kept_and_unchanged_text_is_borrowed() {
        let text = r#"{"password":null,"sessionToken":"","secret":true,"token":"***"}"#;
        assert!(matches!(redact_json(text), Cow::Borrowed(_)));
        assert_eq!(
            redacted(r#"{"password":{"value":"p","n":[1,"}"]},"after":1}"#),
            r#"{"password":"***","after":1}"#
        );
    }

    #[test]
    fn damaged_and_truncated_text_is_redacted_as_far_as_it_goes() {
        assert_eq!(
            redacted(r#"{"a":1,"sessionToken":"IQoJb3Jp"#),
            r#"{"a":1,"sessionToken":"***""#
        );
        assert_eq!(redacted(r#"{"password":{"x":"y"#), r#"{"password":"***""#);
        assert_eq!(redacted(r#"{"password": 123"#), r#"{"password": "***""#);
        assert_eq!(redacted(r#"{"password":"#), r#"{"password":"#);
        assert_eq!(
            redacted(r#"garbage "Password":"p" , "x"#),
            r#"garbage "Password":"***" , "x"#
        );
    }
}
