//! China Telecom e-Surfing Cloud (CTyun) for the account sync, signed with EOP
//! ([`super::sign::ctyun`]). CTyun has no who-am-I: the key check is ECS
//! `GET /v4/region/list-regions`, which also gives the regions (resource pools, by
//! `regionID`). Hosts: ECS `POST /v4/ecs/list-instances` (pageNo paging); products: VPC
//! security groups (`GET /v4/vpc/query-security-groups`, pageNo paging). Every answer carries
//! `statusCode`: 800 is success, 900 an error even with HTTP 200.
//!
//! ZOS buckets are not listed: the ZOS bucket API is S3-compatible (AWS signatures, ZOS
//! endpoints per resource pool), not an EOP call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::config::{AccountConfig, Credentials, Feature};
use super::http::{Endpoint, Http, MAX_PAGES, put_all, s, text};
use super::sign::ctyun as eop;
use super::{ApiError, Asset, Cloud, Failure, Identity, Product, opt, parse_time};
use crate::event::Provider;

/// Page size for list-instances (the API's maximum is 50).
pub const PAGE: u64 = 50;

pub struct CtyunCloud {
    credentials: Credentials,
    endpoints: BTreeMap<String, String>,
    page_size: u64,
    http: Http,
    requests: AtomicU64,
}

impl std::fmt::Debug for CtyunCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CtyunCloud")
            .field("credentials", &self.credentials)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// Classifies a CTyun error: the gateway's codes name what failed (`...AccessKey...`,
/// `...Signature...` for a key it does not accept; `...Permission...`, `...Forbidden...`
/// for a missing permission); HTTP 401/403 decide when the code does not.
fn classify(code: Option<&str>, status: u16) -> Failure {
    let c = code.unwrap_or("").to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| c.contains(w));
    if has(&[
        "permission",
        "forbidden",
        "denied",
        "unauthorized",
        "notauthorized",
    ]) {
        Failure::Denied
    } else if has(&["accesskey", "signature", "authentication", "invalidak"]) || status == 401 {
        Failure::InvalidKey
    } else if status == 403 {
        Failure::Denied
    } else {
        Failure::Other
    }
}

fn error_of(call: &'static str, status: u16, body: &Value) -> ApiError {
    let code = text(body.get("errorCode"))
        .filter(|c| !c.is_empty())
        .or_else(|| text(body.get("error")).filter(|c| !c.is_empty()));
    let message = s(body, "message")
        .or_else(|| s(body, "description"))
        .unwrap_or("")
        .to_string();
    ApiError {
        call,
        failure: classify(code.as_deref(), status),
        code: code.or_else(|| Some(format!("HTTP {status}"))),
        message,
    }
}

impl CtyunCloud {
    pub fn new(account: &AccountConfig, credentials: Credentials) -> std::io::Result<Self> {
        Ok(CtyunCloud {
            credentials,
            endpoints: account.endpoints.clone(),
            page_size: PAGE,
            http: Http::new()?,
            requests: AtomicU64::new(0),
        })
    }

    /// Smaller pages (tests exercise paging with few assets).
    pub fn with_page_size(mut self, n: u64) -> Self {
        self.page_size = n.clamp(1, PAGE);
        self
    }

    fn base(&self, service: &str) -> String {
        self.endpoints
            .get(service)
            .cloned()
            .unwrap_or_else(|| format!("https://ct{service}-global.ctapi.ctyun.cn"))
    }

    /// A fresh `ctyun-eop-request-id` (UUID-shaped).
    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let h =
            xxhash_rust::xxh3::xxh3_128(format!("{nanos}/{n}/{}", std::process::id()).as_bytes());
        let x = format!("{h:032x}");
        format!(
            "{}-{}-4{}-{}-{}",
            &x[0..8],
            &x[8..12],
            &x[13..16],
            &x[16..20],
            &x[20..32]
        )
    }

    /// A signed call; returns `returnObj` of a `statusCode` 800 answer.
    async fn call(
        &self,
        call: &'static str,
        service: &str,
        method: &str,
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
        let endpoint = Endpoint::parse(&self.base(service)).map_err(other)?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let request_id = self.request_id();
        let date = eop::eop_date(chrono::Utc::now());
        let signed = eop::sign(
            &eop::SigningInput {
                request_id: &request_id,
                eop_date: &date,
                query,
                body: payload.as_bytes(),
            },
            &self.credentials.access_key_id,
            &self.credentials.secret_access_key,
        );
        let headers: Vec<(String, String)> = vec![
            ("Content-Type".into(), "application/json".into()),
            ("Host".into(), endpoint.host.clone()),
            ("ctyun-eop-request-id".into(), request_id),
            ("Eop-date".into(), date),
            ("Eop-Authorization".into(), signed.authorization),
        ];
        let qs = eop::query_string(query);
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
        let mut json = answer.json();
        let status_code = text(json.get("statusCode"));
        if !(200..300).contains(&answer.status) || status_code.as_deref() != Some("800") {
            if json.is_null() && (200..300).contains(&answer.status) {
                return Err(other(format!(
                    "{} answered HTTP {} with no JSON",
                    endpoint.host, answer.status
                )));
            }
            return Err(error_of(call, answer.status, &json));
        }
        Ok(json
            .get_mut("returnObj")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }

    /// A pageNo listing: pages from 1 until `totalCount` items or an empty page.
    async fn paged<'f>(
        &self,
        call: &'static str,
        fetch: impl Fn(u64) -> BoxFuture<'f, Result<Value, ApiError>>,
        list_keys: &[&str],
    ) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES as u64 {
            let r = fetch(page).await?;
            let items: Vec<Value> = match &r {
                Value::Array(a) => a.clone(),
                obj => list_keys
                    .iter()
                    .find_map(|k| obj.get(*k).and_then(Value::as_array))
                    .cloned()
                    .unwrap_or_default(),
            };
            let n = items.len();
            out.extend(items);
            let total = r.get("totalCount").and_then(Value::as_u64);
            if n == 0 || total.is_some_and(|t| out.len() as u64 >= t) {
                return Ok(out);
            }
        }
        Err(ApiError {
            call,
            failure: Failure::Other,
            code: None,
            message: format!("more than {MAX_PAGES} pages: the server does not honour pageNo"),
        })
    }
}

impl Cloud for CtyunCloud {
    fn provider(&self) -> Provider {
        Provider::Ctyun
    }

    /// No who-am-I on CTyun: list-regions answering 800 proves the key; the account id is
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
                .call(
                    self.regions_call(),
                    "ecs",
                    "GET",
                    "/v4/region/list-regions",
                    &[],
                    None,
                )
                .await?;
            let mut regions: Vec<String> = r
                .get("regionList")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|x| s(x, "regionID").map(str::to_string))
                .collect();
            regions.sort();
            regions.dedup();
            Ok(regions)
        }
        .boxed()
    }

    fn hosts<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let call = self.hosts_call();
            let items = self
                .paged(
                    call,
                    |page| {
                        let body =
                            json!({"regionID": region, "pageNo": page, "pageSize": self.page_size});
                        async move {
                            self.call(
                                call,
                                "ecs",
                                "POST",
                                "/v4/ecs/list-instances",
                                &[],
                                Some(&body),
                            )
                            .await
                        }
                        .boxed()
                    },
                    &["results"],
                )
                .await?;
            Ok(items
                .iter()
                .filter_map(|i| {
                    let id = s(i, "instanceID")?;
                    let ips = |k: &str| {
                        json!(
                            s(i, k)
                                .filter(|ip| !ip.is_empty())
                                .map(|ip| vec![ip.to_string()])
                                .unwrap_or_default()
                        )
                    };
                    let groups: Vec<Value> = i
                        .get("secGroupList")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|g| g.get("securityGroupID").cloned())
                        .collect();
                    let mut attributes = Map::new();
                    put_all(
                        &mut attributes,
                        vec![
                            (
                                "instance_type",
                                i.get("flavor").and_then(|f| f.get("flavorName")).cloned(),
                            ),
                            ("private_ips", Some(ips("privateIP"))),
                            ("public_ips", Some(ips("floatingIP"))),
                            ("zone", i.get("azName").cloned()),
                            ("vpc_id", i.get("vpcID").cloned()),
                            ("security_groups", Some(json!(groups))),
                            (
                                "image_id",
                                i.get("image").and_then(|f| f.get("imageID")).cloned(),
                            ),
                            ("os", i.get("osType").cloned()),
                        ],
                    );
                    Some(Asset {
                        region: Some(region.to_string()),
                        resource_type: "host",
                        native_type: "ecs/instance",
                        uid: id.to_string(),
                        name: opt(s(i, "instanceName").or_else(|| s(i, "displayName"))),
                        status: opt(s(i, "instanceStatus")),
                        created_ms: parse_time(s(i, "createdTime")),
                        attributes,
                        tags: Map::new(),
                    })
                })
                .collect())
        }
        .boxed()
    }

    fn products(&self) -> Vec<Box<dyn Product<Self>>> {
        vec![Box::new(SecurityGroups)]
    }

    fn who_am_i_call(&self) -> &'static str {
        // The key check is the region list (CTyun has no who-am-I).
        "ecs:ListRegions"
    }

    fn regions_call(&self) -> &'static str {
        "ecs:ListRegions"
    }

    fn hosts_call(&self) -> &'static str {
        "ecs:ListInstances"
    }

    fn policy_for(&self, feature: Feature) -> &'static str {
        match feature {
            Feature::Hosts => "ecs viewer (resource-pool scope) + ctiam viewer (global)",
            Feature::Products => "vpc viewer (resource-pool scope) + ctiam viewer (global)",
            Feature::Entitlements => "not supported on CTyun yet",
        }
    }
}

/// VPC security groups, per region (pageNo paging).
struct SecurityGroups;

impl Product<CtyunCloud> for SecurityGroups {
    fn call(&self) -> &'static str {
        "vpc:QuerySecurityGroups"
    }
    fn policy(&self) -> &'static str {
        "vpc viewer (resource-pool scope)"
    }
    fn regional(&self) -> bool {
        true
    }
    fn resource_types(&self) -> &'static [&'static str] {
        &["security_group"]
    }
    fn list<'a>(
        &'a self,
        cloud: &'a CtyunCloud,
        region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let call = self.call();
            let Some(region) = region else {
                return Ok(Vec::new());
            };
            let size = cloud.page_size.to_string();
            let items = cloud
                .paged(
                    call,
                    |page| {
                        let size = size.clone();
                        async move {
                            let page = page.to_string();
                            cloud
                                .call(
                                    call,
                                    "vpc",
                                    "GET",
                                    "/v4/vpc/query-security-groups",
                                    &[("regionID", region), ("pageNo", &page), ("pageSize", &size)],
                                    None,
                                )
                                .await
                        }
                        .boxed()
                    },
                    &["securityGroups", "results"],
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
                            ("description", g.get("description").cloned()),
                            ("vpc_id", g.get("vpcID").cloned()),
                            ("rules", g.get("securityGroupRuleList").cloned()),
                        ],
                    );
                    Some(Asset {
                        region: Some(region.to_string()),
                        resource_type: "security_group",
                        native_type: "vpc/securitygroup",
                        uid: id.to_string(),
                        name: opt(s(g, "securityGroupName")),
                        status: None,
                        created_ms: parse_time(s(g, "createTime")),
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
    fn status_code_900_errors_are_classified_from_their_code() {
        let e = error_of(
            "x",
            200,
            &json!({"statusCode": 900, "errorCode": "Openapi.Authentication.AccessKeyNotFound", "message": "m"}),
        );
        assert_eq!(e.failure, Failure::InvalidKey);
        let e = error_of(
            "x",
            200,
            &json!({"statusCode": 900, "error": "Ecs.Permission.Forbidden", "message": "m"}),
        );
        assert_eq!(
            (e.failure, e.code.as_deref()),
            (Failure::Denied, Some("Ecs.Permission.Forbidden"))
        );
        let e = error_of(
            "x",
            200,
            &json!({"statusCode": 900, "errorCode": "Ecs.Instance.NotFound"}),
        );
        assert_eq!(e.failure, Failure::Other);
        assert_eq!(
            error_of("x", 401, &Value::Null).failure,
            Failure::InvalidKey
        );
    }

    #[test]
    fn request_ids_are_uuid_shaped_and_differ() {
        let account: AccountConfig = toml::from_str(
            "name = \"c\"\nprovider = \"ctyun\"\n[credentials]\naccess_key_id_env = \"A\"\n",
        )
        .expect("account");
        let cloud = CtyunCloud::new(
            &account,
            Credentials {
                access_key_id: "AK".into(),
                secret_access_key: "very-secret".into(),
                session_token: None,
            },
        )
        .expect("client");
        let (a, b) = (cloud.request_id(), cloud.request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert!(!format!("{cloud:?}").contains("very-secret"));
    }
}
