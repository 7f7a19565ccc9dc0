//! Tencent Cloud for the account sync: API 3.0 over HTTPS, signed with TC3-HMAC-SHA256
//! ([`super::sign::tc3`]). STS GetCallerIdentity (key check), Region DescribeRegions
//! (Product=cvm), CVM DescribeInstances (Offset/Limit paging), VPC DescribeSecurityGroups,
//! CAM ListUsers + ListAccessKeys; the CAM entitlements are in [`cam`].

mod cam;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};

use super::config::{AccountConfig, Credentials, Feature};
use super::sign::tc3;
use super::{ApiError, Asset, Cloud, Failure, Identity, Product, classify, opt, parse_time};
use crate::ciem::model::Entitlements;
use crate::event::Provider;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Page size for Offset/Limit listings (the APIs' maximum is 100).
pub const PAGE: u64 = 100;
/// A listing longer than this many pages is treated as a misbehaving server.
const MAX_PAGES: usize = 10_000;
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct TencentCloud {
    credentials: Credentials,
    home_region: String,
    endpoints: BTreeMap<String, String>,
    page_size: u64,
    http: HttpsClient,
}

impl std::fmt::Debug for TencentCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TencentCloud")
            .field("credentials", &self.credentials)
            .field("home_region", &self.home_region)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl TencentCloud {
    pub fn new(account: &AccountConfig, credentials: Credentials) -> std::io::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(TencentCloud {
            credentials,
            home_region: account
                .home_region
                .clone()
                .unwrap_or_else(|| "ap-guangzhou".to_string()),
            endpoints: account.endpoints.clone(),
            page_size: PAGE,
            http: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Smaller pages (tests exercise paging with few assets).
    pub fn with_page_size(mut self, n: u64) -> Self {
        self.page_size = n.clamp(1, PAGE);
        self
    }

    /// Calls `action` of `service` and returns the `Response` object.
    pub async fn call(
        &self,
        service: &str,
        version: &str,
        action: &'static str,
        region: Option<&str>,
        params: &Value,
    ) -> Result<Map<String, Value>, ApiError> {
        let err = |failure, code: Option<String>, message: String| ApiError {
            call: action,
            failure,
            code,
            message,
        };
        let base = self
            .endpoints
            .get(service)
            .cloned()
            .unwrap_or_else(|| format!("https://{service}.tencentcloudapi.com"));
        let uri: hyper::Uri = base
            .parse()
            .map_err(|e| err(Failure::Other, None, format!("endpoint {base:?}: {e}")))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| {
                err(
                    Failure::Other,
                    None,
                    format!("endpoint {base:?} has no host"),
                )
            })?;
        let payload = params.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let content_type = "application/json; charset=utf-8";
        let signed = tc3::sign(
            &tc3::SigningInput {
                method: "POST",
                query: "",
                headers: &[("content-type", content_type), ("host", &host)],
                payload: payload.as_bytes(),
                service,
                timestamp,
            },
            &self.credentials.secret_access_key,
        );
        let mut req = hyper::Request::post(uri)
            .header("Content-Type", content_type)
            .header("Host", &host)
            .header("X-TC-Action", action)
            .header("X-TC-Version", version)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header(
                "Authorization",
                tc3::authorization(&self.credentials.access_key_id, &signed),
            );
        if let Some(region) = region {
            req = req.header("X-TC-Region", region);
        }
        if let Some(token) = &self.credentials.session_token {
            req = req.header("X-TC-Token", token);
        }
        let req = req
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| err(Failure::Other, None, e.to_string()))?;
        let resp = tokio::time::timeout(TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| {
                err(
                    Failure::Other,
                    None,
                    format!("no answer from {host} in {TIMEOUT:?}"),
                )
            })?
            .map_err(|e| err(Failure::Other, None, format!("{host}: {e}")))?;
        let status = resp.status();
        let body = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| err(Failure::Other, None, format!("{host}: body timed out")))?
            .map_err(|e| err(Failure::Other, None, format!("{host}: {e}")))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            err(
                Failure::Other,
                None,
                format!("{host} answered HTTP {status} with no JSON: {e}"),
            )
        })?;
        let Some(Value::Object(mut response)) = value.get("Response").cloned() else {
            return Err(err(
                Failure::Other,
                None,
                format!("{host} answered HTTP {status} without a Response object"),
            ));
        };
        if let Some(error) = response.remove("Error") {
            let code = error
                .get("Code")
                .and_then(Value::as_str)
                .map(str::to_string);
            let message = error
                .get("Message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Err(err(
                code.as_deref().map_or(Failure::Other, classify),
                code,
                message,
            ));
        }
        Ok(response)
    }

    /// An Offset/Limit listing: every page until `TotalCount` items (or a short page).
    async fn paged(
        &self,
        service: &str,
        version: &str,
        action: &'static str,
        region: &str,
        list_key: &str,
        string_numbers: bool,
    ) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        for _ in 0..MAX_PAGES {
            let params = if string_numbers {
                json!({"Offset": offset.to_string(), "Limit": self.page_size.to_string()})
            } else {
                json!({"Offset": offset, "Limit": self.page_size})
            };
            let page = self
                .call(service, version, action, Some(region), &params)
                .await?;
            let items = page
                .get(list_key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = page.get("TotalCount").and_then(Value::as_u64);
            let n = items.len() as u64;
            out.extend(items);
            offset += n;
            // TotalCount decides when present (a server may return shorter pages than asked).
            let done = n == 0
                || match total {
                    Some(t) => offset >= t,
                    None => n < self.page_size,
                };
            if done {
                return Ok(out);
            }
        }
        Err(ApiError {
            call: action,
            failure: Failure::Other,
            code: None,
            message: format!("more than {MAX_PAGES} pages: the server does not honour Offset"),
        })
    }
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn tags(list: Option<&Value>) -> Map<String, Value> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some((
                s(t, "Key")?.to_string(),
                t.get("Value").cloned().unwrap_or(Value::Null),
            ))
        })
        .collect()
}

impl Cloud for TencentCloud {
    fn provider(&self) -> Provider {
        Provider::Tencent
    }

    fn whoami(&self) -> BoxFuture<'_, Result<Identity, ApiError>> {
        async move {
            let r = self
                .call(
                    "sts",
                    "2018-08-13",
                    "GetCallerIdentity",
                    Some(&self.home_region),
                    &json!({}),
                )
                .await?;
            let account = r
                .get("AccountId")
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            Ok(Identity {
                account_uid: account,
                principal: s(&Value::Object(r.clone()), "Arn")
                    .unwrap_or_default()
                    .to_string(),
            })
        }
        .boxed()
    }

    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        async move {
            let r = self
                .call(
                    "region",
                    "2022-06-27",
                    "DescribeRegions",
                    None,
                    &json!({"Product": "cvm"}),
                )
                .await?;
            let mut regions: Vec<String> = r
                .get("RegionSet")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|x| s(x, "RegionState").is_none_or(|st| st == "AVAILABLE"))
                .filter_map(|x| s(x, "Region").map(str::to_string))
                .collect();
            regions.sort();
            regions.dedup();
            Ok(regions)
        }
        .boxed()
    }

    fn hosts<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let items = self
                .paged(
                    "cvm",
                    "2017-03-12",
                    "DescribeInstances",
                    region,
                    "InstanceSet",
                    false,
                )
                .await?;
            Ok(items
                .iter()
                .filter_map(|i| {
                    let id = s(i, "InstanceId")?;
                    let mut attributes = Map::new();
                    for (k, v) in [
                        ("instance_type", i.get("InstanceType")),
                        ("private_ips", i.get("PrivateIpAddresses")),
                        ("public_ips", i.get("PublicIpAddresses")),
                        ("zone", i.get("Placement").and_then(|p| p.get("Zone"))),
                        (
                            "vpc_id",
                            i.get("VirtualPrivateCloud").and_then(|p| p.get("VpcId")),
                        ),
                        (
                            "subnet_id",
                            i.get("VirtualPrivateCloud").and_then(|p| p.get("SubnetId")),
                        ),
                        ("security_groups", i.get("SecurityGroupIds")),
                        ("image_id", i.get("ImageId")),
                        ("os", i.get("OsName")),
                    ] {
                        if let Some(v) = v.filter(|v| !v.is_null()) {
                            attributes.insert(k.to_string(), v.clone());
                        }
                    }
                    Some(Asset {
                        region: Some(region.to_string()),
                        resource_type: "host",
                        native_type: "cvm/instance",
                        uid: id.to_string(),
                        name: opt(s(i, "InstanceName")),
                        status: opt(s(i, "InstanceState")),
                        created_ms: parse_time(s(i, "CreatedTime")),
                        attributes,
                        tags: tags(i.get("Tags")),
                    })
                })
                .collect())
        }
        .boxed()
    }

    fn products(&self) -> Vec<Box<dyn Product<Self>>> {
        vec![Box::new(SecurityGroups), Box::new(CamUsers)]
    }

    fn who_am_i_call(&self) -> &'static str {
        "sts:GetCallerIdentity"
    }

    fn regions_call(&self) -> &'static str {
        "region:DescribeRegions"
    }

    fn hosts_call(&self) -> &'static str {
        "cvm:DescribeInstances"
    }

    fn policy_for(&self, feature: Feature) -> &'static str {
        match feature {
            Feature::Hosts => "QcloudCVMReadOnlyAccess",
            Feature::Products => "CloudResourceReadOnlyAccess + QcloudCamReadOnlyAccess",
            Feature::Entitlements => "QcloudCamReadOnlyAccess",
        }
    }

    fn entitlements(&self) -> BoxFuture<'_, Result<Entitlements, ApiError>> {
        self.cam_entitlements().boxed()
    }

    fn entitlements_call(&self) -> &'static str {
        cam::CALLS
    }
}

/// VPC security groups, per region.
struct SecurityGroups;

impl Product<TencentCloud> for SecurityGroups {
    fn call(&self) -> &'static str {
        "vpc:DescribeSecurityGroups"
    }
    fn policy(&self) -> &'static str {
        "CloudResourceReadOnlyAccess (or QcloudVPCReadOnlyAccess)"
    }
    fn regional(&self) -> bool {
        true
    }
    fn resource_types(&self) -> &'static [&'static str] {
        &["security_group"]
    }
    fn list<'a>(
        &'a self,
        cloud: &'a TencentCloud,
        region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let region = region.unwrap_or(&cloud.home_region);
            let items = cloud
                .paged(
                    "vpc",
                    "2017-03-12",
                    "DescribeSecurityGroups",
                    region,
                    "SecurityGroupSet",
                    true,
                )
                .await?;
            Ok(items
                .iter()
                .filter_map(|g| {
                    let id = s(g, "SecurityGroupId")?;
                    let mut attributes = Map::new();
                    for k in ["SecurityGroupDesc", "ProjectId", "IsDefault"] {
                        if let Some(v) = g.get(k) {
                            attributes.insert(k.to_string(), v.clone());
                        }
                    }
                    Some(Asset {
                        region: Some(region.to_string()),
                        resource_type: "security_group",
                        native_type: "vpc/securitygroup",
                        uid: id.to_string(),
                        name: opt(s(g, "SecurityGroupName")),
                        status: None,
                        created_ms: parse_time(s(g, "CreatedTime")),
                        attributes,
                        tags: tags(g.get("TagSet")),
                    })
                })
                .collect())
        }
        .boxed()
    }
}

/// CAM sub-users with their API keys (global).
struct CamUsers;

impl Product<TencentCloud> for CamUsers {
    fn call(&self) -> &'static str {
        "cam:ListUsers"
    }
    fn policy(&self) -> &'static str {
        "QcloudCamReadOnlyAccess"
    }
    fn regional(&self) -> bool {
        false
    }
    fn resource_types(&self) -> &'static [&'static str] {
        &["user", "access_key"]
    }
    fn list<'a>(
        &'a self,
        cloud: &'a TencentCloud,
        _region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let r = cloud
                .call("cam", "2019-01-16", "ListUsers", None, &json!({}))
                .await?;
            let mut out = Vec::new();
            for u in r
                .get("Data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = s(u, "Name") else { continue };
                let mut attributes = Map::new();
                for k in ["Uin", "Uid", "Remark", "ConsoleLogin"] {
                    if let Some(v) = u.get(k) {
                        attributes.insert(k.to_string(), v.clone());
                    }
                }
                // The user's API keys (CAM ListAccessKeys, same read-only policy).
                if let Some(uin) = u.get("Uin").filter(|v| !v.is_null()) {
                    let keys = cloud
                        .call(
                            "cam",
                            "2019-01-16",
                            "ListAccessKeys",
                            None,
                            &json!({ "TargetUin": uin }),
                        )
                        .await?;
                    let mut ids = Vec::new();
                    for k in keys
                        .get("AccessKeys")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let Some(id) = s(k, "AccessKeyId") else {
                            continue;
                        };
                        ids.push(id.to_string());
                        let mut key_attributes = Map::new();
                        key_attributes.insert("user".into(), json!(name));
                        key_attributes.insert("Uin".into(), uin.clone());
                        out.push(Asset {
                            region: None,
                            resource_type: "access_key",
                            native_type: "cam/accesskey",
                            uid: id.to_string(),
                            name: Some(name.to_string()),
                            status: opt(s(k, "Status")),
                            created_ms: parse_time(s(k, "CreateTime")),
                            attributes: key_attributes,
                            tags: Map::new(),
                        });
                    }
                    attributes.insert("access_keys".into(), json!(ids));
                }
                out.push(Asset {
                    region: None,
                    resource_type: "user",
                    native_type: "cam/user",
                    uid: name.to_string(),
                    name: Some(name.to_string()),
                    status: None,
                    created_ms: parse_time(s(u, "CreateTime")),
                    attributes,
                    tags: Map::new(),
                });
            }
            Ok(out)
        }
        .boxed()
    }
}
