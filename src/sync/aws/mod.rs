//! AWS for the account sync, through the official SDK crates: STS GetCallerIdentity (key
//! check), EC2 DescribeRegions / DescribeInstances / DescribeSecurityGroups, S3 ListBuckets,
//! IAM ListUsers + ListAccessKeys, ListRoles; IAM entitlements in [`entitlements`].

mod entitlements;

use std::collections::BTreeMap;

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::config::{AccountConfig, Feature};
use super::{ApiError, Asset, Cloud, Failure, Identity, Product, classify, opt};
use crate::ciem::model::Entitlements;
use crate::event::Provider;

pub struct AwsCloud {
    credentials: Credentials,
    home_region: String,
    endpoints: BTreeMap<String, String>,
}

impl std::fmt::Debug for AwsCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials' own Debug redacts the secret; keep it out entirely anyway.
        f.debug_struct("AwsCloud")
            .field("home_region", &self.home_region)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

pub(crate) fn api_error<E>(call: &'static str, e: SdkError<E, HttpResponse>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    // Some servers wrap the error in a shape the SDK does not parse (moto's IAM answers
    // `<ErrorResponse><Errors><Error>`): then the code and message are read from the body.
    let raw = e.raw_response();
    let body = raw
        .and_then(|r| r.body().bytes())
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("");
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let len = body[start..].find(&format!("</{name}>"))?;
        Some(body[start..start + len].to_string()).filter(|s| !s.is_empty())
    };
    let code = e.code().map(str::to_string).or_else(|| element("Code"));
    let message = e
        .message()
        .map(str::to_string)
        .or_else(|| element("Message"))
        .unwrap_or_else(|| match raw {
            Some(r) => format!("HTTP {}", r.status().as_u16()),
            None => DisplayErrorContext(&e).to_string(),
        });
    let failure = match code.as_deref() {
        Some(code) => classify(code),
        None if raw.is_some_and(|r| r.status().as_u16() == 403) => Failure::Denied,
        None => Failure::Other,
    };
    ApiError {
        call,
        failure,
        code,
        message,
    }
}

/// The next page token, or None at the end (also when a server hands back the token it was
/// given, which would otherwise page forever).
fn next_token(current: Option<&str>, previous: &Option<String>) -> Option<String> {
    let t = current.filter(|t| !t.is_empty())?;
    (previous.as_deref() != Some(t)).then(|| t.to_string())
}

/// Bounds every call: a hung endpoint must not stall the periodic sync.
pub(crate) fn timeouts() -> aws_sdk_ec2::config::timeout::TimeoutConfig {
    aws_sdk_ec2::config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .operation_attempt_timeout(std::time::Duration::from_secs(60))
        .operation_timeout(std::time::Duration::from_secs(180))
        .build()
}

fn millis(t: Option<&aws_sdk_ec2::primitives::DateTime>) -> Option<i64> {
    t.and_then(|t| t.to_millis().ok())
}

impl AwsCloud {
    pub fn new(account: &AccountConfig, creds: super::config::Credentials) -> Self {
        AwsCloud {
            credentials: Credentials::new(
                creds.access_key_id,
                creds.secret_access_key,
                creds.session_token,
                None,
                "auditlake-accounts",
            ),
            home_region: account
                .home_region
                .clone()
                .unwrap_or_else(|| "us-east-1".to_string()),
            endpoints: account.endpoints.clone(),
        }
    }

    fn sts(&self) -> aws_sdk_sts::Client {
        let mut b = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.home_region.clone()))
            .credentials_provider(self.credentials.clone())
            .timeout_config(timeouts());
        if let Some(url) = self.endpoints.get("sts") {
            b = b.endpoint_url(url);
        }
        aws_sdk_sts::Client::from_conf(b.build())
    }

    fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        let mut b = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .credentials_provider(self.credentials.clone())
            .timeout_config(timeouts());
        if let Some(url) = self.endpoints.get("ec2") {
            b = b.endpoint_url(url);
        }
        aws_sdk_ec2::Client::from_conf(b.build())
    }

    fn s3(&self) -> aws_sdk_s3::Client {
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.home_region.clone()))
            .credentials_provider(self.credentials.clone())
            .timeout_config(timeouts());
        if let Some(url) = self.endpoints.get("s3") {
            b = b.endpoint_url(url).force_path_style(true);
        }
        aws_sdk_s3::Client::from_conf(b.build())
    }

    fn iam(&self) -> aws_sdk_iam::Client {
        let mut b = aws_sdk_iam::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.home_region.clone()))
            .credentials_provider(self.credentials.clone())
            .timeout_config(timeouts());
        if let Some(url) = self.endpoints.get("iam") {
            b = b.endpoint_url(url);
        }
        aws_sdk_iam::Client::from_conf(b.build())
    }

    async fn describe_instances(&self, region: &str) -> Result<Vec<Asset>, ApiError> {
        const CALL: &str = "ec2:DescribeInstances";
        let client = self.ec2(region);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = client
                .describe_instances()
                .max_results(1000)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| api_error(CALL, e))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let Some(id) = i.instance_id() else { continue };
                // A terminated instance stays listed for a while; it is gone for the inventory.
                if i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("terminated") {
                    continue;
                }
                let tags = tag_map(i.tags().iter().map(|t| (t.key(), t.value())));
                let mut attributes = Map::new();
                let mut put = |k: &str, v: Option<&str>| {
                    if let Some(v) = v.filter(|v| !v.is_empty()) {
                        attributes.insert(k.to_string(), json!(v));
                    }
                };
                put("instance_type", i.instance_type().map(|t| t.as_str()));
                put("private_ip", i.private_ip_address());
                put("public_ip", i.public_ip_address());
                put("zone", i.placement().and_then(|p| p.availability_zone()));
                put("vpc_id", i.vpc_id());
                put("subnet_id", i.subnet_id());
                put("image_id", i.image_id());
                put("os", i.platform_details());
                let groups: Vec<&str> = i
                    .security_groups()
                    .iter()
                    .filter_map(|g| g.group_id())
                    .collect();
                if !groups.is_empty() {
                    attributes.insert("security_groups".into(), json!(groups));
                }
                out.push(Asset {
                    region: Some(region.to_string()),
                    resource_type: "host",
                    native_type: "AWS::EC2::Instance",
                    uid: id.to_string(),
                    name: tags.get("Name").and_then(Value::as_str).map(str::to_string),
                    status: i
                        .state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_string()),
                    created_ms: millis(i.launch_time()),
                    attributes,
                    tags,
                });
            }
            token = next_token(page.next_token(), &token);
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}

fn tag_map<'a>(
    pairs: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> Map<String, Value> {
    pairs
        .filter_map(|(k, v)| Some((k?.to_string(), json!(v.unwrap_or("")))))
        .collect()
}

impl Cloud for AwsCloud {
    fn provider(&self) -> Provider {
        Provider::Aws
    }

    fn whoami(&self) -> BoxFuture<'_, Result<Identity, ApiError>> {
        async move {
            let out = self
                .sts()
                .get_caller_identity()
                .send()
                .await
                .map_err(|e| api_error("sts:GetCallerIdentity", e))?;
            Ok(Identity {
                account_uid: out.account().unwrap_or_default().to_string(),
                principal: out.arn().unwrap_or_default().to_string(),
            })
        }
        .boxed()
    }

    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        async move {
            let out = self
                .ec2(&self.home_region)
                .describe_regions()
                .all_regions(true)
                .send()
                .await
                .map_err(|e| api_error("ec2:DescribeRegions", e))?;
            let mut regions: Vec<String> = out
                .regions()
                .iter()
                .filter(|r| r.opt_in_status() != Some("not-opted-in"))
                .filter_map(|r| r.region_name().map(str::to_string))
                .collect();
            regions.sort();
            regions.dedup();
            Ok(regions)
        }
        .boxed()
    }

    fn hosts<'a>(&'a self, region: &'a str) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        self.describe_instances(region).boxed()
    }

    fn products(&self) -> Vec<Box<dyn Product<Self>>> {
        vec![
            Box::new(SecurityGroups),
            Box::new(S3Buckets),
            Box::new(IamUsers),
            Box::new(IamRoles),
        ]
    }

    fn who_am_i_call(&self) -> &'static str {
        "sts:GetCallerIdentity"
    }

    fn regions_call(&self) -> &'static str {
        "ec2:DescribeRegions"
    }

    fn hosts_call(&self) -> &'static str {
        "ec2:DescribeInstances"
    }

    fn entitlements(&self) -> BoxFuture<'_, Result<Entitlements, ApiError>> {
        self.iam_entitlements().boxed()
    }

    fn entitlements_call(&self) -> &'static str {
        entitlements::CALLS
    }

    fn policy_for(&self, feature: Feature) -> &'static str {
        match feature {
            Feature::Hosts => "AmazonEC2ReadOnlyAccess (or ReadOnlyAccess)",
            Feature::Products => "ReadOnlyAccess",
            Feature::Entitlements => {
                "IAMReadOnlyAccess (iam:GetAccountAuthorizationDetails, iam:ListUsers, iam:ListAccessKeys, iam:GetAccessKeyLastUsed, iam:GetLoginProfile)"
            }
        }
    }
}

/// EC2 security groups with their rules, per region.
struct SecurityGroups;

impl Product<AwsCloud> for SecurityGroups {
    fn call(&self) -> &'static str {
        "ec2:DescribeSecurityGroups"
    }
    fn policy(&self) -> &'static str {
        "AmazonEC2ReadOnlyAccess (or ReadOnlyAccess)"
    }
    fn regional(&self) -> bool {
        true
    }
    fn resource_types(&self) -> &'static [&'static str] {
        &["security_group"]
    }
    fn list<'a>(
        &'a self,
        cloud: &'a AwsCloud,
        region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let region = region.unwrap_or(&cloud.home_region);
            let client = cloud.ec2(region);
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = client
                    .describe_security_groups()
                    .max_results(1000)
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| api_error(self.call(), e))?;
                for g in page.security_groups() {
                    let Some(id) = g.group_id() else { continue };
                    let rules = |perms: &[aws_sdk_ec2::types::IpPermission]| -> Value {
                        perms
                            .iter()
                            .map(|p| {
                                json!({
                                    "protocol": p.ip_protocol(),
                                    "from_port": p.from_port(),
                                    "to_port": p.to_port(),
                                    "cidrs": p.ip_ranges().iter().filter_map(|r| r.cidr_ip()).collect::<Vec<_>>(),
                                    "groups": p.user_id_group_pairs().iter().filter_map(|r| r.group_id()).collect::<Vec<_>>(),
                                })
                            })
                            .collect()
                    };
                    let mut attributes = Map::new();
                    attributes.insert("vpc_id".into(), json!(g.vpc_id()));
                    attributes.insert("description".into(), json!(g.description()));
                    attributes.insert("ingress".into(), rules(g.ip_permissions()));
                    attributes.insert("egress".into(), rules(g.ip_permissions_egress()));
                    out.push(Asset {
                        region: Some(region.to_string()),
                        resource_type: "security_group",
                        native_type: "AWS::EC2::SecurityGroup",
                        uid: id.to_string(),
                        name: opt(g.group_name()),
                        status: None,
                        created_ms: None,
                        attributes,
                        tags: tag_map(g.tags().iter().map(|t| (t.key(), t.value()))),
                    });
                }
                token = next_token(page.next_token(), &token);
                if token.is_none() {
                    return Ok(out);
                }
            }
        }
        .boxed()
    }
}

/// S3 buckets (one global list).
struct S3Buckets;

impl Product<AwsCloud> for S3Buckets {
    fn call(&self) -> &'static str {
        "s3:ListBuckets"
    }
    fn policy(&self) -> &'static str {
        "AmazonS3ReadOnlyAccess (or ReadOnlyAccess)"
    }
    fn regional(&self) -> bool {
        false
    }
    fn resource_types(&self) -> &'static [&'static str] {
        &["bucket"]
    }
    fn list<'a>(
        &'a self,
        cloud: &'a AwsCloud,
        _region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let client = cloud.s3();
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = client
                    .list_buckets()
                    .set_continuation_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| api_error(self.call(), e))?;
                for b in page.buckets() {
                    let Some(name) = b.name() else { continue };
                    let mut attributes = Map::new();
                    if let Some(r) = b.bucket_region() {
                        attributes.insert("bucket_region".into(), json!(r));
                    }
                    out.push(Asset {
                        region: None,
                        resource_type: "bucket",
                        native_type: "AWS::S3::Bucket",
                        uid: name.to_string(),
                        name: Some(name.to_string()),
                        status: None,
                        created_ms: b.creation_date().and_then(|t| t.to_millis().ok()),
                        attributes,
                        tags: Map::new(),
                    });
                }
                token = next_token(page.continuation_token(), &token);
                if token.is_none() {
                    return Ok(out);
                }
            }
        }
        .boxed()
    }
}

/// IAM users and their access keys (global).
struct IamUsers;

impl Product<AwsCloud> for IamUsers {
    fn call(&self) -> &'static str {
        "iam:ListUsers"
    }
    fn policy(&self) -> &'static str {
        "IAMReadOnlyAccess (or ReadOnlyAccess)"
    }
    fn regional(&self) -> bool {
        false
    }
    fn resource_types(&self) -> &'static [&'static str] {
        &["user", "access_key"]
    }
    fn list<'a>(
        &'a self,
        cloud: &'a AwsCloud,
        _region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let client = cloud.iam();
            let mut out = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let page = client
                    .list_users()
                    .set_marker(marker.clone())
                    .send()
                    .await
                    .map_err(|e| api_error(self.call(), e))?;
                for u in page.users() {
                    let name = u.user_name();
                    let keys = client
                        .list_access_keys()
                        .user_name(name)
                        .send()
                        .await
                        .map_err(|e| api_error("iam:ListAccessKeys", e))?;
                    let mut key_ids = Vec::new();
                    for k in keys.access_key_metadata() {
                        let Some(id) = k.access_key_id() else {
                            continue;
                        };
                        key_ids.push(id.to_string());
                        let mut attributes = Map::new();
                        attributes.insert("user".into(), json!(name));
                        out.push(Asset {
                            region: None,
                            resource_type: "access_key",
                            native_type: "AWS::IAM::AccessKey",
                            uid: id.to_string(),
                            name: Some(name.to_string()),
                            status: k.status().map(|s| s.as_str().to_string()),
                            created_ms: k.create_date().and_then(|t| t.to_millis().ok()),
                            attributes,
                            tags: Map::new(),
                        });
                    }
                    let mut attributes = Map::new();
                    attributes.insert("arn".into(), json!(u.arn()));
                    attributes.insert("user_id".into(), json!(u.user_id()));
                    attributes.insert("access_keys".into(), json!(key_ids));
                    out.push(Asset {
                        region: None,
                        resource_type: "user",
                        native_type: "AWS::IAM::User",
                        uid: name.to_string(),
                        name: Some(name.to_string()),
                        status: None,
                        created_ms: u.create_date().to_millis().ok(),
                        attributes,
                        tags: tag_map(u.tags().iter().map(|t| (Some(t.key()), Some(t.value())))),
                    });
                }
                marker = if page.is_truncated() {
                    next_token(page.marker(), &marker)
                } else {
                    None
                };
                if marker.is_none() {
                    return Ok(out);
                }
            }
        }
        .boxed()
    }
}

/// IAM roles (global): who can assume what is half of an entitlement picture.
struct IamRoles;

impl Product<AwsCloud> for IamRoles {
    fn call(&self) -> &'static str {
        "iam:ListRoles"
    }
    fn policy(&self) -> &'static str {
        "IAMReadOnlyAccess (or ReadOnlyAccess)"
    }
    fn regional(&self) -> bool {
        false
    }
    fn resource_types(&self) -> &'static [&'static str] {
        &["role"]
    }
    fn list<'a>(
        &'a self,
        cloud: &'a AwsCloud,
        _region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Asset>, ApiError>> {
        async move {
            let client = cloud.iam();
            let mut out = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let page = client
                    .list_roles()
                    .set_marker(marker.clone())
                    .send()
                    .await
                    .map_err(|e| api_error(self.call(), e))?;
                for r in page.roles() {
                    let mut attributes = Map::new();
                    attributes.insert("arn".into(), json!(r.arn()));
                    attributes.insert("role_id".into(), json!(r.role_id()));
                    attributes.insert("path".into(), json!(r.path()));
                    if let Some(doc) = r.assume_role_policy_document() {
                        // URL-encoded JSON, as IAM returns it.
                        attributes.insert("assume_role_policy_document".into(), json!(doc));
                    }
                    out.push(Asset {
                        region: None,
                        resource_type: "role",
                        native_type: "AWS::IAM::Role",
                        uid: r.role_name().to_string(),
                        name: Some(r.role_name().to_string()),
                        status: None,
                        created_ms: r.create_date().to_millis().ok(),
                        attributes,
                        tags: tag_map(r.tags().iter().map(|t| (Some(t.key()), Some(t.value())))),
                    });
                }
                marker = if page.is_truncated() {
                    next_token(page.marker(), &marker)
                } else {
                    None
                };
                if marker.is_none() {
                    return Ok(out);
                }
            }
        }
        .boxed()
    }
}
