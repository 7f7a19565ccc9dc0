//! Baidu AI Cloud for the account sync, signed with bce-auth-v1 ([`super::sign::bce`]).
//! Baidu has no who-am-I: the key check is BCC `POST /v2/region/describeRegions`, whose error
//! code tells an unknown key (`InvalidAccessKeyId`, `SignatureDoesNotMatch`) from a missing
//! permission (`AccessDenied`). The same call gives the regions and their BCC endpoints.
//! Hosts: BCC `GET /v2/instance` (marker paging); products: BCC security groups
//! (`GET /v2/securityGroup`, marker paging) and BOS buckets (`GET /`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::config::{AccountConfig, Credentials, Feature};
use super::http::{Endpoint, Http, MAX_PAGES, put_all, s, tag_list, text};
use super::sign::bce;
use super::{ApiError, Asset, Cloud, Failure, Identity, Product, opt, parse_time};
use crate::event::Provider;

/// Page size for marker listings (the APIs' maximum is 1000).
pub const PAGE: u64 = 1000;

pub struct BaiduCloud {
    credentials: Credentials,
    home_region: String,
    endpoints: BTreeMap<String, String>,
    page_size: u64,
    http: Http,
    /// Region → BCC endpoint host, from the last describeRegions.
    bcc_hosts: Mutex<BTreeMap<String, String>>,
}

impl std::fmt::Debug for BaiduCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaiduCloud")
            .field("credentials", &self.credentials)
            .field("home_region", &self.home_region)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// Baidu's error shape: HTTP 4xx/5xx with `{"requestId", "code", "message"}`.
fn error_of(call: &'static str, status: u16, body: &Value) -> ApiError {
    let code = text(body.get("code"));
    let failure = match code.as_deref() {
        Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidHTTPAuthHeader") => {
            Failure::InvalidKey
        }
        Some(c) => super::classify(c),
        None if status == 401 => Failure::InvalidKey,
        None if status == 403 => Failure::Denied,
        None => Failure::Other,
    };
    ApiError {
        call,
        failure,
        code: code.or_else(|| Some(format!("HTTP {status}"))),
        message: s(body, "message").unwrap_or("").to_string(),
    }
}

impl BaiduCloud {
    pub fn new(account: &AccountConfig, credentials: Credentials) -> std::io::Result<Self> {
        Ok(BaiduCloud {
            credentials,
            home_region: account
                .home_region
                .clone()
                .unwrap_or_else(|| "bj".to_string()),
            endpoints: account.endpoints.clone(),
            page_size: PAGE,
            http: Http::new()?,
            bcc_hosts: Mutex::new(BTreeMap::new()),
        })
    }

    /// Smaller pages (tests exercise paging with few assets).
    pub fn with_page_size(mut self, n: u64) -> Self {
        self.page_size = n.clamp(1, PAGE);
        self
    }

    /// The BCC endpoint of a region: the one describeRegions named for it, else the `bcc`
    /// override, else `bcc.<region>.baidubce.com`. `None`: the endpoint of describeRegions
    /// (the `bcc` override, else `bcc.baidubce.com`).
    fn bcc(&self, region: Option<&str>) -> String {
        let configured = self.endpoints.get("bcc").cloned();
        let Some(r) = region else {
            return configured.unwrap_or_else(|| "https://bcc.baidubce.com".to_string());
        };
        let known = self
            .bcc_hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(r)
            .cloned();
        match (known, configured) {
            (Some(host), _) if host.contains("://") => host,
            (Some(host), _) => format!("https://{host}"),
            (None, Some(url)) => url,
            (None, None) => format!("https://bcc.{r}.baidubce.com"),
        }
    }

    /// A signed request; returns the JSON body of a 2xx answer.
    async fn request(
        &self,
        call: &'static str,
        method: &str,
        base: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let other = |message: String| ApiError {
            call,
            failure: Failure::Other,
            code: None,
            message,
        };
        let endpoint = Endpoint::parse(base).map_err(other)?;
        let date = bce::bce_date(chrono::Utc::now());
        let payload = body.map(Value::to_string).unwrap_or_default();
        let mut headers: Vec<(String, String)> = vec![
            ("Host".into(), endpoint.host.clone()),
            ("x-bce-date".into(), date.clone()),
        ];
        let mut signed_names = vec!["host", "x-bce-date"];
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-bce-security-token".into(), token.clone()));
            signed_names.push("x-bce-security-token");
        }
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let signed = bce::sign(
            &bce::SigningInput {
                method,
                path,
                query,
                headers: &refs,
                timestamp: &date,
                expiry: bce::DEFAULT_EXPIRY,
                signed_headers: Some(&signed_names),
            },
            &self.credentials.access_key_id,
            &self.credentials.secret_access_key,
        );
        headers.push(("Authorization".into(), signed.authorization));
        if body.is_some() {
            headers.push((
                "Content-Type".into(),
                "application/json;charset=utf-8".into(),
            ));
        }
        let qs = super::sign::canonical_query(query);
        let url = if qs.is_empty() {
            format!("{}{path}", endpoint.base)
        } else {
            format!("{}{path}?{qs}", endpoint.base)
        };
        let answer = self
            .http
            .send(method, &url, &headers, payload.into_bytes())
            .await
            .map_err(other)?;
        let json = answer.json();
        if !(200..300).contains(&answer.status) {
            return Err(error_of(call, answer.status, &json));
        }
        if json.is_null() {
            return Err(other(format!(
                "{} answered HTTP {} with no JSON",
                endpoint.host, answer.status
            )));
        }
        Ok(json)
    }

    /// A marker listing: every page while `isTruncated`, following `nextMarker`.
    async fn marker_paged(
        &self,
        call: &'static str,
        base: &str,
        path: &str,
        list_key: &str,
    ) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        let max_keys = self.page_size.to_string();
        for _ in 0..MAX_PAGES {
            let mut query = vec![("maxKeys", max_keys.as_str())];
            if let Some(m) = &marker {
                query.push(("marker", m.as_str()));
            }
            let r = self.request(call, "GET", base, path, &query, None).await?;
            out.extend(
                r.get(list_key)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            let next = s(&r, "nextMarker").filter(|m| !m.is_empty());
            match next {
                Some(m) if r.get("isTruncated") == Some(&json!(true)) => {
                    if marker.as_deref() == Some(m) {
                        break;
                    }
                    marker = Some(m.to_string());
                }
                _ => return Ok(out),
            }
        }
        Err(ApiError {
            call,
            failure: Failure::Other,
            code: None,
            message: format!(
                "the server does not advance nextMarker (or more than {MAX_PAGES} pages)"
            ),
        })
    }
}

impl Cloud for BaiduCloud {
    fn provider(&self) -> Provider {
        Provider::Baidu
    }

    /// No who-am-I on Baidu: describeRegions answering proves the key; the account id is
    /// not known (the principal is the AccessKey id).
    fn whoami(&self) -> BoxFuture<'_, Result<Identity, ApiError>> {
        async move {
            self.regions().await?;
            Ok(Identity {
                account_uid: String::new(),
                principal: self.credentials.access_key_id.clone(),
            })
        }
        .boxed()
    }

    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        async move {
            let r = self
                .request(
                    self.regions_call(),
                    "POST",
                    &self.bcc(None),
                    "/v2/region/describeRegions",
                    &[],
                    Some(&json!({})),
                )
                .await?;
            let mut found = BTreeMap::new();
            for x in r
                .get("regions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(id) = s(x, "regionId") {
                    found.insert(
                        id.to_string(),
                        s(x, "regionEndpoint").unwrap_or_default().to_string(),
                    );
                }
            }
            let regions = found.keys().cloned().collect();
            found.retain(|_, v| !v.is_empty());
            *self.bcc_hosts.lock().unwrap_or_else(|p| p.into_inner()) = found;
            Ok(regions)
        }
        .boxed()
    }

    fn hosts<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let items = self
                .marker_paged(
                    self.hosts_call(),
                    &self.bcc(Some(region)),
                    "/v2/instance",
                    "instances",
                )
                .await?;
            Ok(items
                .iter()
                .filter_map(|i| {
                    let id = s(i, "id")?;
                    let ip_list = |k: &str| {
                        json!(
                            s(i, k)
                                .filter(|ip| !ip.is_empty())
                                .map(|ip| vec![ip.to_string()])
                                .unwrap_or_default()
                        )
                    };
                    let mut attributes = Map::new();
                    put_all(
                        &mut attributes,
                        vec![
                            ("instance_type", i.get("instanceType").cloned()),
                            ("private_ips", Some(ip_list("internalIp"))),
                            ("public_ips", Some(ip_list("publicIp"))),
                            ("zone", i.get("zoneName").cloned()),
                            ("vpc_id", i.get("vpcId").cloned()),
                            ("subnet_id", i.get("subnetId").cloned()),
                            ("image_id", i.get("imageId").cloned()),
                            ("os", i.get("osName").cloned()),
                        ],
                    );
                    Some(Asset {
                        region: Some(region.to_string()),
                        resource_type: "host",
                        native_type: "bcc/instance",
                        uid: id.to_string(),
                        name: opt(s(i, "name")),
                        status: opt(s(i, "status")),
                        created_ms: parse_time(s(i, "createTime")),
                        attributes,
                        tags: tag_list(i.get("tags"), "tagKey", "tagValue"),
                    })
                })
                .collect())
        }
        .boxed()
    }

    fn products(&self) -> Vec<Box<dyn Product<Self>>> {
        vec![Box::new(SecurityGroups), Box::new(Buckets)]
    }

    fn who_am_i_call(&self) -> &'static str {
        // The key check is the region list (Baidu has no who-am-I).
        "bcc:DescribeRegions"
    }

    fn regions_call(&self) -> &'static str {
        "bcc:DescribeRegions"
    }

    fn hosts_call(&self) -> &'static str {
        "bcc:ListInstances"
    }

    fn policy_for(&self, feature: Feature) -> &'static str {
        match feature {
            Feature::Hosts => "BCCReadAccessPolicy (or GlobalReadPolicy)",
            Feature::Products => "IAMReadAccessPolicy + GlobalReadPolicy",
            Feature::Entitlements => "not supported on Baidu AI Cloud yet",
        }
    }
}

/// BCC security groups, per region (marker paging).
struct SecurityGroups;

impl Product<BaiduCloud> for SecurityGroups {
    fn call(&self) -> &'static str {
        "bcc:ListSecurityGroups"
    }
    fn policy(&self) -> &'static str {
        "GlobalReadPolicy (or BCCReadAccessPolicy)"
    }
    fn regional(&self) -> bool {
        true
    }
    fn resource_types(&self) -> &'static [&'static str] {
        &["security_group"]
    }
    fn list<'a>(
        &'a self,
        cloud: &'a BaiduCloud,
        region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let region = region.unwrap_or(&cloud.home_region);
            let items = cloud
                .marker_paged(
                    self.call(),
                    &cloud.bcc(Some(region)),
                    "/v2/securityGroup",
                    "securityGroups",
                )
                .await?;
            Ok(items
                .iter()
                .filter_map(|g| {
                    let id = s(g, "id")?;
                    let mut attributes = Map::new();
                    put_all(
                        &mut attributes,
                        vec![
                            ("description", g.get("desc").cloned()),
                            ("vpc_id", g.get("vpcId").cloned()),
                            ("rules", g.get("rules").cloned()),
                        ],
                    );
                    Some(Asset {
                        region: Some(region.to_string()),
                        resource_type: "security_group",
                        native_type: "bcc/securitygroup",
                        uid: id.to_string(),
                        name: opt(s(g, "name")),
                        status: None,
                        created_ms: parse_time(s(g, "createdTime")),
                        attributes,
                        tags: tag_list(g.get("tags"), "tagKey", "tagValue"),
                    })
                })
                .collect())
        }
        .boxed()
    }
}

/// BOS buckets of the account (one global listing).
struct Buckets;

impl Product<BaiduCloud> for Buckets {
    fn call(&self) -> &'static str {
        "bos:ListBuckets"
    }
    fn policy(&self) -> &'static str {
        "GlobalReadPolicy (or the BOS read-only policy)"
    }
    fn regional(&self) -> bool {
        false
    }
    fn resource_types(&self) -> &'static [&'static str] {
        &["bucket"]
    }
    fn list<'a>(
        &'a self,
        cloud: &'a BaiduCloud,
        _region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let base = cloud
                .endpoints
                .get("bos")
                .cloned()
                .unwrap_or_else(|| format!("https://{}.bcebos.com", cloud.home_region));
            let r = cloud
                .request(self.call(), "GET", &base, "/", &[], None)
                .await?;
            let owner = r.get("owner").and_then(|o| o.get("id")).cloned();
            Ok(r.get("buckets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|b| {
                    let name = s(b, "name")?;
                    let mut attributes = Map::new();
                    put_all(
                        &mut attributes,
                        vec![
                            ("bucket_region", b.get("location").cloned()),
                            ("owner_id", owner.clone()),
                        ],
                    );
                    Some(Asset {
                        region: None,
                        resource_type: "bucket",
                        native_type: "bos/bucket",
                        uid: name.to_string(),
                        name: Some(name.to_string()),
                        status: None,
                        created_ms: parse_time(s(b, "creationDate")),
                        attributes,
                        tags: Map::new(),
                    })
                })
                .collect())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baidu_error_codes_decide_the_key_status() {
        let e = |code: &str| {
            error_of(
                "x",
                403,
                &json!({"requestId": "r", "code": code, "message": "m"}),
            )
        };
        assert_eq!(e("InvalidAccessKeyId").failure, Failure::InvalidKey);
        assert_eq!(e("SignatureDoesNotMatch").failure, Failure::InvalidKey);
        assert_eq!(e("AccessDenied").failure, Failure::Denied);
        assert_eq!(e("InternalError").failure, Failure::Other);
        assert_eq!(error_of("x", 403, &Value::Null).failure, Failure::Denied);
    }
}
