//! The HTTP client and JSON helpers shared by the clouds whose requests we sign ourselves
//! (Huawei, Baidu, CTyun).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};

const TIMEOUT: Duration = Duration::from_secs(30);
/// A listing longer than this many pages is treated as a misbehaving server.
pub const MAX_PAGES: usize = 10_000;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Clone)]
pub struct Http {
    client: HttpsClient,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Http")
    }
}

/// A base URL split into what signing needs.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `scheme://authority`, no trailing slash.
    pub base: String,
    /// The `Host` header value.
    pub host: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("endpoint {url:?}: {e}"))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| format!("endpoint {url:?} has no host"))?;
        let scheme = uri.scheme_str().unwrap_or("https");
        Ok(Endpoint {
            base: format!("{scheme}://{host}"),
            host,
        })
    }
}

/// An HTTP answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Http {
    pub fn new() -> std::io::Result<Http> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Http {
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Sends one request; the error is a message for [`super::ApiError`].
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let mut req = hyper::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("{url}: {e}"))?;
        let resp = tokio::time::timeout(TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("no answer from {url} in {TIMEOUT:?}"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status().as_u16();
        let body = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| format!("{url}: body timed out"))?
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

/// A string field.
pub fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// A field as a string, whether the API sends it as a string or a number.
pub fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Copies the present, non-null values into `attributes` under the given names.
pub fn put_all(attributes: &mut Map<String, Value>, pairs: Vec<(&str, Option<Value>)>) {
    for (k, v) in pairs {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            attributes.insert(k.to_string(), v);
        }
    }
}

/// `[{key, value}]` style tag lists (the field names vary per cloud) as a map.
pub fn tag_list(list: Option<&Value>, key: &str, value: &str) -> Map<String, Value> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some((
                s(t, key)?.to_string(),
                t.get(value).cloned().unwrap_or(Value::Null),
            ))
        })
        .collect()
}
