//! Huawei Cloud for the account sync, signed with SDK-HMAC-SHA256 ([`super::sign::huawei`]).
//! STS `GET /v5/caller-identity` (key check), IAM `GET /v3/auth/projects` (regions: project
//! name = region code, project id = the `{project_id}` of regional paths), ECS
//! `GET /v1/{project_id}/cloudservers/detail` (page-number paging), VPC
//! `GET /v1/{project_id}/security-groups` (marker paging), OBS ListBuckets. Regional calls carry the signed
//! `X-Project-Id`, global IAM calls `X-Domain-Id` (the account id the key check found), and a
//! temporary key's token goes in `X-Security-Token`.
//!
//! OBS does not accept SDK-HMAC-SHA256: besides its own `OBS AK:signature` scheme (for which
//! REFERENCE has no vector) it speaks the S3-compatible API with AWS Signature V4, so the
//! bucket list goes through the official `aws-sdk-s3` client (signing region = the home
//! region) against `obs.<home region>.myhuaweicloud.com`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::config::{AccountConfig, Credentials, Feature};
use super::http::{Endpoint, Http, MAX_PAGES, put_all, s, text};
use super::sign::huawei as sig;
use super::{ApiError, Asset, Cloud, Failure, Identity, Product, opt, parse_time};
use crate::event::Provider;

/// Page size for listings (ECS allows up to 1000; security groups up to 2000).
pub const PAGE: u64 = 1000;

pub struct HuaweiCloud {
    credentials: Credentials,
    home_region: String,
    endpoints: BTreeMap<String, String>,
    page_size: u64,
    http: Http,
    /// Region code → project id, from the last region discovery.
    projects: Mutex<BTreeMap<String, String>>,
    /// The account (domain) id from the key check, sent as `X-Domain-Id` to global IAM.
    domain_id: Mutex<Option<String>>,
}

impl std::fmt::Debug for HuaweiCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HuaweiCloud")
            .field("credentials", &self.credentials)
            .field("home_region", &self.home_region)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// Huawei's error codes for a key the gateway does not accept.
const INVALID_CODES: &[&str] = &[
    "APIGW.0301", // Incorrect IAM authentication information (unknown AK, bad signature)
    "APIGW.0303", // Incorrect app authentication information
    "APIGW.0305", // Incorrect authentication information
];

/// Huawei's two error shapes: `{"error_code", "error_msg"}` (API gateway, IAM, VPC) and
/// `{"error": {"code", "message"}}` (ECS, Keystone).
fn error_of(call: &'static str, status: u16, body: &Value) -> ApiError {
    let code = text(body.get("error_code"))
        .or_else(|| text(body.get("error").and_then(|e| e.get("code"))));
    let message = s(body, "error_msg")
        .or_else(|| body.get("error").and_then(|e| s(e, "message")))
        .unwrap_or("")
        .to_string();
    let failure = match (code.as_deref(), status) {
        (Some(c), _) if INVALID_CODES.contains(&c) => Failure::InvalidKey,
        (_, 401) => Failure::InvalidKey,
        (_, 403) => Failure::Denied,
        _ => Failure::Other,
    };
    ApiError {
        call,
        failure,
        code: code.or_else(|| Some(format!("HTTP {status}"))),
        message,
    }
}

impl HuaweiCloud {
    pub fn new(account: &AccountConfig, credentials: Credentials) -> std::io::Result<Self> {
        Ok(HuaweiCloud {
            credentials,
            home_region: account
                .home_region
                .clone()
                .unwrap_or_else(|| "cn-north-4".to_string()),
            endpoints: account.endpoints.clone(),
            page_size: PAGE,
            http: Http::new()?,
            projects: Mutex::new(BTreeMap::new()),
            domain_id: Mutex::new(None),
        })
    }

    /// Smaller pages (tests exercise paging with few assets).
    pub fn with_page_size(mut self, n: u64) -> Self {
        self.page_size = n.clamp(1, PAGE);
        self
    }

    fn endpoint(&self, service: &str, region: &str) -> String {
        self.endpoints
            .get(service)
            .cloned()
            .unwrap_or_else(|| match service {
                "iam" => "https://iam.myhuaweicloud.com".to_string(),
                _ => format!("https://{service}.{region}.myhuaweicloud.com"),
            })
    }

    /// A signed GET; returns the JSON body of a 2xx answer.
    async fn get(
        &self,
        call: &'static str,
        service: &str,
        region: &str,
        path: &str,
        query: &[(&str, &str)],
        project_id: Option<&str>,
    ) -> Result<Value, ApiError> {
        let other = |message: String| ApiError {
            call,
            failure: Failure::Other,
            code: None,
            message,
        };
        let endpoint = Endpoint::parse(&self.endpoint(service, region)).map_err(other)?;
        let date = sig::sdk_date(chrono::Utc::now());
        let mut headers: Vec<(String, String)> = vec![
            ("Content-Type".into(), "application/json".into()),
            ("Host".into(), endpoint.host.clone()),
            (sig::DATE_HEADER.into(), date),
        ];
        if let Some(p) = project_id {
            headers.push(("X-Project-Id".into(), p.to_string()));
        } else if service == "iam" {
            let domain = self
                .domain_id
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(d) = domain {
                headers.push(("X-Domain-Id".into(), d));
            }
        }
        if let Some(token) = &self.credentials.session_token {
            headers.push(("X-Security-Token".into(), token.clone()));
        }
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let signed = sig::sign(
            &sig::SigningInput {
                method: "GET",
                path,
                query,
                headers: &refs,
                body: b"",
            },
            &self.credentials.secret_access_key,
        );
        headers.push((
            "Authorization".into(),
            sig::authorization(&self.credentials.access_key_id, &signed),
        ));
        let qs = super::sign::canonical_query(query);
        let url = if qs.is_empty() {
            format!("{}{path}", endpoint.base)
        } else {
            format!("{}{path}?{qs}", endpoint.base)
        };
        let answer = self
            .http
            .send("GET", &url, &headers, Vec::new())
            .await
            .map_err(other)?;
        let body = answer.json();
        if !(200..300).contains(&answer.status) {
            return Err(error_of(call, answer.status, &body));
        }
        if body.is_null() {
            return Err(other(format!(
                "{} answered HTTP {} with no JSON",
                endpoint.host, answer.status
            )));
        }
        Ok(body)
    }

    /// The project id of a region, from region discovery (run it when not known yet).
    async fn project_id(&self, call: &'static str, region: &str) -> Result<String, ApiError> {
        let known = |c: &Self| {
            c.projects
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(region)
                .cloned()
        };
        if let Some(id) = known(self) {
            return Ok(id);
        }
        self.regions().await?;
        known(self).ok_or_else(|| ApiError {
            call,
            failure: Failure::Other,
            code: None,
            message: format!("no IAM project for region {region}"),
        })
    }
}

fn huawei_tags(list: Option<&Value>) -> Map<String, Value> {
    // ECS answers `tags: ["key=value", ...]`; VPC `[{key, value}]`.
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| match t {
            Value::String(kv) => {
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                Some((k.to_string(), json!(v)))
            }
            other => Some((
                s(other, "key")?.to_string(),
                other.get("value").cloned().unwrap_or(Value::Null),
            )),
        })
        .collect()
}

fn host(region: &str, i: &Value) -> Option<Asset> {
    let id = s(i, "id")?;
    let mut private = Vec::new();
    let mut public = Vec::new();
    for addrs in i
        .get("addresses")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.values())
    {
        for a in addrs.as_array().into_iter().flatten() {
            let Some(addr) = s(a, "addr") else { continue };
            match s(a, "OS-EXT-IPS:type") {
                Some("floating") => public.push(addr.to_string()),
                _ => private.push(addr.to_string()),
            }
        }
    }
    let groups: Vec<Value> = i
        .get("security_groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("id").or_else(|| g.get("name")).cloned())
        .collect();
    let metadata = i.get("metadata");
    let meta = |k: &str| metadata.and_then(|m| m.get(k)).cloned();
    let mut attributes = Map::new();
    put_all(
        &mut attributes,
        vec![
            (
                "instance_type",
                i.get("flavor").and_then(|f| f.get("id")).cloned(),
            ),
            ("private_ips", Some(json!(private))),
            ("public_ips", Some(json!(public))),
            ("zone", i.get("OS-EXT-AZ:availability_zone").cloned()),
            ("vpc_id", meta("vpc_id")),
            ("security_groups", Some(json!(groups))),
            (
                "image_id",
                i.get("image").and_then(|f| f.get("id")).cloned(),
            ),
            ("os", meta("os_type")),
        ],
    );
    Some(Asset {
        region: Some(region.to_string()),
        resource_type: "host",
        native_type: "ecs/cloudserver",
        uid: id.to_string(),
        name: opt(s(i, "name")),
        status: opt(s(i, "status")),
        created_ms: parse_time(s(i, "created")),
        attributes,
        tags: huawei_tags(i.get("tags")),
    })
}

impl Cloud for HuaweiCloud {
    fn provider(&self) -> Provider {
        Provider::Huawei
    }

    fn whoami(&self) -> BoxFuture<'_, Result<Identity, ApiError>> {
        async move {
            let r = self
                .get(
                    self.who_am_i_call(),
                    "sts",
                    &self.home_region,
                    "/v5/caller-identity",
                    &[],
                    None,
                )
                .await?;
            let account = text(r.get("account_id")).unwrap_or_default();
            if !account.is_empty() {
                *self.domain_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(account.clone());
            }
            Ok(Identity {
                account_uid: account,
                principal: s(&r, "principal_urn").unwrap_or_default().to_string(),
            })
        }
        .boxed()
    }

    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        async move {
            let r = self
                .get(
                    self.regions_call(),
                    "iam",
                    &self.home_region,
                    "/v3/auth/projects",
                    &[],
                    None,
                )
                .await?;
            let mut found = BTreeMap::new();
            for p in r
                .get("projects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(name), Some(id)) = (s(p, "name"), s(p, "id")) else {
                    continue;
                };
                // `MOS` is the project of the marketplace, `cn-north-4_dev` a sub-project;
                // neither is a region.
                if name == "MOS" || name.contains('_') || p.get("enabled") == Some(&json!(false)) {
                    continue;
                }
                found.insert(name.to_string(), id.to_string());
            }
            let regions = found.keys().cloned().collect();
            *self.projects.lock().unwrap_or_else(|p| p.into_inner()) = found;
            Ok(regions)
        }
        .boxed()
    }

    fn hosts<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let call = self.hosts_call();
            let project = self.project_id(call, region).await?;
            let path = format!("/v1/{project}/cloudservers/detail");
            let limit = self.page_size.to_string();
            let mut out = Vec::new();
            let mut seen = 0u64;
            // `offset` is a page number, from 1.
            for page in 1..=MAX_PAGES {
                let page_no = page.to_string();
                let r = self
                    .get(
                        call,
                        "ecs",
                        region,
                        &path,
                        &[("limit", &limit), ("offset", &page_no)],
                        Some(&project),
                    )
                    .await?;
                let servers = r
                    .get("servers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let n = servers.len() as u64;
                seen += n;
                out.extend(servers.iter().filter_map(|i| host(region, i)));
                let done = n == 0
                    || match r.get("count").and_then(Value::as_u64) {
                        Some(total) => seen >= total,
                        None => n < self.page_size,
                    };
                if done {
                    return Ok(out);
                }
            }
            Err(ApiError {
                call,
                failure: Failure::Other,
                code: None,
                message: format!("more than {MAX_PAGES} pages: the server does not honour offset"),
            })
        }
        .boxed()
    }

    fn products(&self) -> Vec<Box<dyn Product<Self>>> {
        vec![Box::new(SecurityGroups), Box::new(ObsBuckets)]
    }

    fn who_am_i_call(&self) -> &'static str {
        "sts:GetCallerIdentity"
    }

    fn regions_call(&self) -> &'static str {
        "iam:KeystoneListAuthProjects"
    }

    fn hosts_call(&self) -> &'static str {
        "ecs:ListServersDetails"
    }

    fn policy_for(&self, feature: Feature) -> &'static str {
        match feature {
            Feature::Hosts => "ECS ReadOnlyAccess + IAM ReadOnlyAccess",
            Feature::Products => "Tenant Guest + IAM ReadOnlyAccess",
            Feature::Entitlements => "not supported on Huawei Cloud yet",
        }
    }
}

/// OBS buckets (one global listing), over OBS's S3-compatible API.
struct ObsBuckets;

impl Product<HuaweiCloud> for ObsBuckets {
    fn call(&self) -> &'static str {
        "obs:ListBuckets"
    }
    fn policy(&self) -> &'static str {
        "Tenant Guest (or OBS ReadOnlyAccess)"
    }
    fn regional(&self) -> bool {
        false
    }
    fn resource_types(&self) -> &'static [&'static str] {
        &["bucket"]
    }
    fn list<'a>(
        &'a self,
        cloud: &'a HuaweiCloud,
        _region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            use aws_sdk_s3::config::{BehaviorVersion, Credentials as S3Credentials, Region};
            let url =
                cloud.endpoints.get("obs").cloned().unwrap_or_else(|| {
                    format!("https://obs.{}.myhuaweicloud.com", cloud.home_region)
                });
            let config = aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(cloud.home_region.clone()))
                .credentials_provider(S3Credentials::new(
                    cloud.credentials.access_key_id.clone(),
                    cloud.credentials.secret_access_key.clone(),
                    cloud.credentials.session_token.clone(),
                    None,
                    "auditlake-huawei-obs",
                ))
                .timeout_config(super::aws::timeouts())
                .endpoint_url(url)
                .force_path_style(true)
                .build();
            let page = aws_sdk_s3::Client::from_conf(config)
                .list_buckets()
                .send()
                .await
                .map_err(|e| super::aws::api_error(self.call(), e))?;
            Ok(page
                .buckets()
                .iter()
                .filter_map(|b| {
                    let name = b.name()?;
                    let mut attributes = Map::new();
                    if let Some(r) = b.bucket_region() {
                        attributes.insert("bucket_region".into(), json!(r));
                    }
                    Some(Asset {
                        region: None,
                        resource_type: "bucket",
                        native_type: "obs/bucket",
                        uid: name.to_string(),
                        name: Some(name.to_string()),
                        status: None,
                        created_ms: b.creation_date().and_then(|t| t.to_millis().ok()),
                        attributes,
                        tags: Map::new(),
                    })
                })
                .collect())
        }
        .boxed()
    }
}

/// VPC security groups, per region (marker paging).
struct SecurityGroups;

impl Product<HuaweiCloud> for SecurityGroups {
    fn call(&self) -> &'static str {
        "vpc:ListSecurityGroups"
    }
    fn policy(&self) -> &'static str {
        "Tenant Guest (or VPC ReadOnlyAccess)"
    }
    fn regional(&self) -> bool {
        true
    }
    fn resource_types(&self) -> &'static [&'static str] {
        &["security_group"]
    }
    fn list<'a>(
        &'a self,
        cloud: &'a HuaweiCloud,
        region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let call = self.call();
            let region = region.unwrap_or(&cloud.home_region);
            let project = cloud.project_id(call, region).await?;
            let path = format!("/v1/{project}/security-groups");
            let limit = cloud.page_size.to_string();
            let mut out = Vec::new();
            let mut marker: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let mut query = vec![("limit", limit.as_str())];
                if let Some(m) = &marker {
                    query.push(("marker", m.as_str()));
                }
                let r = cloud
                    .get(call, "vpc", region, &path, &query, Some(&project))
                    .await?;
                let groups = r
                    .get("security_groups")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let last = groups.last().and_then(|g| s(g, "id")).map(str::to_string);
                for g in &groups {
                    let Some(id) = s(g, "id") else { continue };
                    let mut attributes = Map::new();
                    put_all(
                        &mut attributes,
                        vec![
                            ("description", g.get("description").cloned()),
                            ("vpc_id", g.get("vpc_id").cloned()),
                            (
                                "enterprise_project_id",
                                g.get("enterprise_project_id").cloned(),
                            ),
                            ("rules", g.get("security_group_rules").cloned()),
                        ],
                    );
                    out.push(Asset {
                        region: Some(region.to_string()),
                        resource_type: "security_group",
                        native_type: "vpc/securitygroup",
                        uid: id.to_string(),
                        name: opt(s(g, "name")),
                        status: None,
                        created_ms: parse_time(s(g, "created_at")),
                        attributes,
                        tags: huawei_tags(g.get("tags")),
                    });
                }
                // The v1 API gives no "more" flag: an empty page ends the listing (a short
                // page does not: a server may cap the page below `limit`).
                if last.is_none() || last == marker {
                    return Ok(out);
                }
                marker = last;
            }
            Err(ApiError {
                call,
                failure: Failure::Other,
                code: None,
                message: format!("more than {MAX_PAGES} pages: the server does not honour marker"),
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_shapes_are_read_and_classified() {
        let gw = error_of(
            "x",
            401,
            &json!({"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information"}),
        );
        assert_eq!(
            (gw.failure, gw.code.as_deref()),
            (Failure::InvalidKey, Some("APIGW.0301"))
        );
        let ecs = error_of(
            "x",
            403,
            &json!({"error": {"code": "Ecs.0319", "message": "Policy doesn't allow ecs:cloudServers:list to be performed."}}),
        );
        assert_eq!(
            (ecs.failure, ecs.code.as_deref()),
            (Failure::Denied, Some("Ecs.0319"))
        );
        assert!(ecs.message.contains("ecs:cloudServers:list"));
        let keystone = error_of(
            "x",
            500,
            &json!({"error": {"code": 500, "message": "boom"}}),
        );
        assert_eq!(
            (keystone.failure, keystone.code.as_deref()),
            (Failure::Other, Some("500"))
        );
    }

    #[test]
    fn servers_map_to_the_common_host_attributes() {
        let h = host(
            "cn-north-4",
            &json!({"id": "i1", "name": "web", "status": "ACTIVE",
                    "addresses": {"vpc": [{"addr": "10.0.0.2", "OS-EXT-IPS:type": "fixed"},
                                          {"addr": "1.2.3.4", "OS-EXT-IPS:type": "floating"}]},
                    "flavor": {"id": "s6.small.1"}, "tags": ["env=prod", "bare"],
                    "security_groups": [{"name": "default"}]}),
        )
        .expect("host");
        assert_eq!(h.attributes["private_ips"], json!(["10.0.0.2"]));
        assert_eq!(h.attributes["public_ips"], json!(["1.2.3.4"]));
        assert_eq!(h.attributes["security_groups"], json!(["default"]));
        assert_eq!(h.tags["env"], json!("prod"));
        assert_eq!(h.tags["bare"], json!(""));
        assert!(host("r", &json!({"name": "no id"})).is_none());
    }
}
