//! `auditlake sync` and `accounts check` for Huawei Cloud against a fake Huawei API in this
//! test: it verifies every request's SDK-HMAC-SHA256 signature (and `X-Project-Id`), serves
//! ECS page-number paging and VPC marker paging, and answers Huawei's error shapes: HTTP 401
//! `APIGW.0301` for an unknown key, HTTP 403 for a call the key's policies do not allow.

mod common;
mod fake_cloud;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use auditlake::sync::sign::huawei as sig;
use common::*;
use fake_cloud::Request;
use serde_json::{Value, json};

const AK: &str = "HWFAKEACCESSKEY0001";
const SK: &str = "huawei-secret-never-printed";
const DOMAIN: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const SERVER_PAGE: usize = 2;

#[derive(Default)]
struct World {
    /// (region name, project id)
    projects: Vec<(&'static str, &'static str)>,
    servers: BTreeMap<String, Vec<Value>>,
    groups: BTreeMap<String, Vec<Value>>,
    /// Services whose calls the key may not make (`ecs`, `vpc`).
    denied: Vec<&'static str>,
    /// (what, project or "", access key, signature verified)
    log: Vec<(String, String, String, bool)>,
    /// `X-Security-Token` values seen, when signed.
    tokens: Vec<String>,
    /// OBS buckets: (name, creation date).
    buckets: Vec<(&'static str, &'static str)>,
}

fn server(id: &str, name: &str, status: &str) -> Value {
    json!({
        "id": id, "name": name, "status": status,
        "flavor": {"id": "s6.large.2", "name": "s6.large.2"},
        "image": {"id": "img-euleros-2.5"},
        "addresses": {"vpc-1": [
            {"addr": "192.168.0.10", "version": 4, "OS-EXT-IPS:type": "fixed"},
            {"addr": "198.51.100.10", "version": 4, "OS-EXT-IPS:type": "floating"}
        ]},
        "OS-EXT-AZ:availability_zone": "cn-north-4a",
        "metadata": {"os_type": "Linux", "vpc_id": "vpc-1"},
        "security_groups": [{"id": "sg-a", "name": "default"}],
        "tags": ["team=blue"],
        "created": "2024-03-01T10:00:00Z"
    })
}

fn group(id: &str, name: &str) -> Value {
    json!({"id": id, "name": name, "description": "", "vpc_id": "vpc-1",
           "enterprise_project_id": "0", "security_group_rules": []})
}

/// Verifies the request's signature with our own signer, as the API gateway would.
fn verified(r: &Request) -> (String, bool) {
    let auth = r.header("authorization");
    let field = |name: &str| {
        auth.split([' ', ','])
            .find_map(|p| p.strip_prefix(name))
            .unwrap_or("")
            .to_string()
    };
    let access = field("Access=");
    let signed_headers = field("SignedHeaders=");
    let names: Vec<&str> = signed_headers.split(';').collect();
    let values: Vec<(&str, String)> = names.iter().map(|n| (*n, r.header(n))).collect();
    let headers: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let query: Vec<(&str, &str)> = r
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let recomputed = sig::sign(
        &sig::SigningInput {
            method: &r.method,
            path: &r.path,
            query: &query,
            headers: &headers,
            body: &r.body,
        },
        SK,
    );
    let date = chrono::NaiveDateTime::parse_from_str(&r.header("x-sdk-date"), "%Y%m%dT%H%M%SZ")
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(0);
    let fresh = (chrono::Utc::now().timestamp() - date).abs() < 300;
    let ok = auth.starts_with("SDK-HMAC-SHA256 ")
        && names.contains(&"host")
        && names.contains(&"x-sdk-date")
        && fresh
        && recomputed.signature == field("Signature=");
    (access, ok)
}

/// OBS over its S3-compatible API: AWS Signature V4 made by the official SDK (not verified
/// here, only its scope: key id, home region, service `s3`).
fn answer_obs(r: &Request, world: &Mutex<World>) -> (u16, Value) {
    let auth = r.header("authorization");
    let scope_ok = auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={AK}/"))
        && auth.contains("/cn-north-4/s3/aws4_request");
    let mut w = world.lock().expect("lock");
    w.log
        .push(("obs".into(), String::new(), AK.into(), scope_ok));
    let xml = |s: &str| json!(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>{s}"));
    if !scope_ok {
        return (
            403,
            xml("<Error><Code>SignatureDoesNotMatch</Code><Message>bad</Message></Error>"),
        );
    }
    if w.denied.contains(&"obs") {
        return (
            403,
            xml(
                "<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>fake</RequestId><HostId>fake</HostId></Error>",
            ),
        );
    }
    let buckets: String = w
        .buckets
        .iter()
        .map(|(n, d)| format!("<Bucket><Name>{n}</Name><CreationDate>{d}</CreationDate></Bucket>"))
        .collect();
    (
        200,
        xml(&format!(
            "<ListAllMyBucketsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Owner><ID>{DOMAIN}</ID></Owner><Buckets>{buckets}</Buckets></ListAllMyBucketsResult>"
        )),
    )
}

fn answer(r: &Request, world: &Mutex<World>) -> (u16, Value) {
    if r.path == "/" {
        return answer_obs(r, world);
    }
    let (access, ok) = verified(r);
    let mut w = world.lock().expect("lock");
    let segments: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let (what, project) = match segments.as_slice() {
        ["v5", "caller-identity"] => ("caller-identity", ""),
        ["v3", "auth", "projects"] => ("projects", ""),
        ["v1", p, "cloudservers", "detail"] => ("servers", *p),
        ["v1", p, "security-groups"] => ("security-groups", *p),
        _ => ("?", ""),
    };
    // Regional calls must name their project in X-Project-Id, global IAM calls the account
    // in X-Domain-Id; both signed.
    let signed = r.header("authorization");
    let ok = ok
        && (project.is_empty()
            || (r.header("x-project-id") == project && signed.contains("x-project-id")))
        && (what != "projects"
            || (r.header("x-domain-id") == DOMAIN && signed.contains("x-domain-id")));
    w.log
        .push((what.to_string(), project.to_string(), access.clone(), ok));
    let token = r.header("x-security-token");
    if !token.is_empty() && signed.contains("x-security-token") {
        w.tokens.push(token);
    }
    if access != AK || !ok {
        return (
            401,
            json!({"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information: verify aksk signature fail", "request_id": "fake"}),
        );
    }
    let service = match what {
        "servers" => "ecs",
        "security-groups" => "vpc",
        _ => "",
    };
    if w.denied.contains(&service) {
        return (
            403,
            json!({"error_code": "APIGW.0302", "error_msg": format!("Policy doesn't allow {service}:*:list to be performed."), "request_id": "fake"}),
        );
    }
    let region = w
        .projects
        .iter()
        .find(|(_, id)| *id == project)
        .map(|(n, _)| n.to_string())
        .unwrap_or_default();
    match what {
        "caller-identity" => (
            200,
            json!({"account_id": DOMAIN, "principal_id": "u-1", "principal_urn": format!("iam::{DOMAIN}:user:auditlake")}),
        ),
        "projects" => {
            let mut list: Vec<Value> = w
                .projects
                .iter()
                .map(|(n, id)| json!({"id": id, "name": n, "domain_id": DOMAIN, "enabled": true}))
                .collect();
            list.push(json!({"id": "mos-id", "name": "MOS", "domain_id": DOMAIN, "enabled": true}));
            list.push(json!({"id": "sub-id", "name": "cn-north-4_dev", "domain_id": DOMAIN, "enabled": true}));
            (200, json!({"projects": list, "links": {}}))
        }
        "servers" => {
            let all = w.servers.get(&region).cloned().unwrap_or_default();
            let limit: usize = r
                .param("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(25)
                .clamp(1, SERVER_PAGE);
            // `offset` is a page number from 1.
            let page: usize = r
                .param("offset")
                .and_then(|l| l.parse().ok())
                .unwrap_or(1)
                .max(1);
            let slice: Vec<Value> = all
                .iter()
                .skip((page - 1) * limit)
                .take(limit)
                .cloned()
                .collect();
            (200, json!({"count": all.len(), "servers": slice}))
        }
        "security-groups" => {
            let all = w.groups.get(&region).cloned().unwrap_or_default();
            let start = match r.param("marker") {
                Some(m) => all
                    .iter()
                    .position(|g| g["id"] == json!(m))
                    .map_or(all.len(), |i| i + 1),
                None => 0,
            };
            let slice: Vec<Value> = all.iter().skip(start).take(SERVER_PAGE).cloned().collect();
            (200, json!({"security_groups": slice}))
        }
        _ => (
            404,
            json!({"error_code": "APIGW.0101", "error_msg": "The API does not exist or has not been published in the environment"}),
        ),
    }
}

struct Fake {
    url: String,
    world: Arc<Mutex<World>>,
}

fn start(world: World) -> Fake {
    let world = Arc::new(Mutex::new(world));
    let w = world.clone();
    let url = fake_cloud::start(Arc::new(move |r: &Request| answer(r, &w)));
    Fake { url, world }
}

fn world() -> World {
    let mut w = World {
        projects: vec![
            ("cn-north-4", "p-cn-north-4"),
            ("cn-east-3", "p-cn-east-3"),
            ("ap-southeast-1", "p-ap-southeast-1"),
        ],
        ..World::default()
    };
    w.servers.insert(
        "cn-north-4".into(),
        (1..=5)
            .map(|i| server(&format!("ecs-n{i}"), &format!("n-{i}"), "ACTIVE"))
            .collect(),
    );
    w.servers
        .insert("cn-east-3".into(), vec![server("ecs-e1", "e-1", "ACTIVE")]);
    w.servers.insert(
        "ap-southeast-1".into(),
        vec![server("ecs-ap1", "not selected", "ACTIVE")],
    );
    w.groups.insert(
        "cn-north-4".into(),
        (1..=3)
            .map(|i| group(&format!("sg-n{i}"), &format!("g{i}")))
            .collect(),
    );
    w.buckets = vec![
        ("obs-logs", "2024-03-01T10:00:00.000Z"),
        ("obs-web", "2024-03-02T10:00:00.000Z"),
    ];
    w
}

fn write_config(dir: &Path, lake: &Path, url: &str) -> PathBuf {
    let path = dir.join("accounts.toml");
    let text = format!(
        r#"lake = "{lake}"

[[account]]
name = "hw"
provider = "huawei"
regions = ["cn-north-4", "cn-east-3"]
region_management = true

[account.credentials]
access_key_id_env = "HW_AK"
secret_access_key_env = "HW_SK"

[account.endpoints]
sts = "{url}"
iam = "{url}"
ecs = "{url}"
vpc = "{url}"
obs = "{url}"
"#,
        lake = lake.display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn run(args: &[&str], ak: &str) -> Output {
    fake_cloud::run(&bin(), args, ("HW_AK", ak), ("HW_SK", SK))
}

#[test]
fn huawei_sync_pages_every_region_verifies_signatures_and_diffs() {
    let fake = start(world());
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &lake, &fake.url);
    let cfg = config.to_str().expect("path");

    let out = run(&["sync", "--config", cfg, "--once"], AK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("hw: account {DOMAIN}"))
            && stdout.contains("2 regions, 11 assets; 0 created, 0 modified, 0 deleted"),
        "{stdout}"
    );
    assert!(!stdout.contains(SK) && !stderr.contains(SK));
    {
        let w = fake.world.lock().expect("lock");
        assert!(
            w.log.iter().all(|(_, _, _, ok)| *ok),
            "every request must carry a valid SDK-HMAC-SHA256 signature: {:?}",
            w.log
        );
        let calls = |what: &str, project: &str| {
            w.log
                .iter()
                .filter(|(a, p, _, _)| a == what && p == project)
                .count()
        };
        // 5 servers at 2 per page: pages 1, 2, 3. ap-southeast-1 is not selected.
        assert_eq!(calls("servers", "p-cn-north-4"), 3);
        assert_eq!(calls("servers", "p-cn-east-3"), 1);
        assert_eq!(calls("servers", "p-ap-southeast-1"), 0);
        // 3 groups at 2 per page, then the empty page that ends a marker listing.
        assert_eq!(calls("security-groups", "p-cn-north-4"), 3);
    }
    let inventory = dataset(&lake, "asset_inventory");
    let host = duckdb(&format!(
        "select resource_name, status, cloud_region, json_extract_string(attributes, '$.zone'), \
                json_extract_string(attributes, '$.instance_type'), \
                json_extract_string(attributes, '$.private_ips[0]'), \
                json_extract_string(attributes, '$.public_ips[0]'), \
                json_extract_string(tags, '$.team'), created_time, provider, account \
         from {inventory} where resource_uid = 'ecs-n4'"
    ));
    assert_eq!(
        host,
        vec![vec![
            json!("n-4"),
            json!("ACTIVE"),
            json!("cn-north-4"),
            json!("cn-north-4a"),
            json!("s6.large.2"),
            json!("192.168.0.10"),
            json!("198.51.100.10"),
            json!("blue"),
            json!("2024-03-01T10:00:00+00:00"),
            json!("huawei"),
            json!(DOMAIN),
        ]]
    );

    // Change: one server gone, one stopped, a group added, a new region with a server.
    {
        let mut w = fake.world.lock().expect("lock");
        let n = w.servers.get_mut("cn-north-4").expect("n");
        n.retain(|i| i["id"] != "ecs-n2");
        n[0]["status"] = json!("SHUTOFF");
        w.groups
            .get_mut("cn-north-4")
            .expect("groups")
            .push(group("sg-n9", "opened-by-someone"));
        w.buckets.retain(|(n, _)| *n != "obs-web");
        w.projects.push(("la-south-2", "p-la-south-2"));
        w.servers.insert(
            "la-south-2".into(),
            vec![server("ecs-la1", "la-1", "ACTIVE")],
        );
    }
    let out = run(&["sync", "--config", cfg, "--once"], AK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    // Region management: la-south-2 appeared after the first sync and is synced (a baseline).
    assert!(
        stdout.contains("3 regions, 11 assets; 1 created, 1 modified, 2 deleted"),
        "{stdout}"
    );
    let changes = duckdb(&format!(
        "select resource_type, resource_uid, change_type, origin, cloud_region, provider, \
                json_extract_string(before_state, '$.status'), json_extract_string(after_state, '$.status') \
         from {} order by resource_uid",
        dataset(&lake, "asset_changes")
    ));
    assert_eq!(
        changes,
        vec![
            vec![
                json!("host"),
                json!("ecs-n1"),
                json!("modified"),
                json!("sync"),
                json!("cn-north-4"),
                json!("huawei"),
                json!("ACTIVE"),
                json!("SHUTOFF")
            ],
            vec![
                json!("host"),
                json!("ecs-n2"),
                json!("deleted"),
                json!("sync"),
                json!("cn-north-4"),
                json!("huawei"),
                json!("ACTIVE"),
                Value::Null
            ],
            vec![
                json!("bucket"),
                json!("obs-web"),
                json!("deleted"),
                json!("sync"),
                Value::Null,
                json!("huawei"),
                Value::Null,
                Value::Null
            ],
            vec![
                json!("security_group"),
                json!("sg-n9"),
                json!("created"),
                json!("sync"),
                json!("cn-north-4"),
                json!("huawei"),
                Value::Null,
                Value::Null
            ],
        ]
    );
    assert_eq!(
        scalar(&format!(
            "select count(*) from {inventory} where resource_uid = 'ecs-la1'"
        )),
        json!(1)
    );
}

#[test]
fn an_unknown_access_key_is_reported_as_an_invalid_key() {
    let fake = start(world());
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &lake, &fake.url);
    let cfg = config.to_str().expect("path");

    let out = run(&["accounts", "check", "--config", cfg], "HWUNKNOWNKEY");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "invalid sts:GetCallerIdentity: APIGW.0301\n          the key is not accepted"
        ),
        "{stdout}"
    );
    let out = run(&["sync", "--config", cfg, "--once"], "HWUNKNOWNKEY");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("hw: sync failed: account hw: the AccessKey is invalid (APIGW.0301)"),
        "{stdout}"
    );
    assert!(!lake.join("asset_inventory").exists());

    // The right key id with a wrong secret: the signature does not verify.
    let out = fake_cloud::run(
        &bin(),
        &["accounts", "check", "--config", cfg],
        ("HW_AK", AK),
        ("HW_SK", "not-the-secret"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("invalid sts:GetCallerIdentity: APIGW.0301"),
        "{stdout}"
    );

    let out = run(&["accounts", "check", "--config", cfg], AK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    for call in [
        "ok      sts:GetCallerIdentity",
        "ok      iam:KeystoneListAuthProjects",
        "ok      ecs:ListServersDetails (cn-north-4)",
        "ok      vpc:ListSecurityGroups (cn-north-4)",
        "ok      obs:ListBuckets",
    ] {
        assert!(stdout.contains(call), "missing {call:?} in\n{stdout}");
    }
}

#[test]
fn accounts_check_names_the_policy_for_a_denied_call() {
    let mut w = world();
    w.denied = vec!["ecs", "vpc", "obs"];
    let fake = start(w);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &dir.path().join("lake"), &fake.url);
    let out = run(
        &[
            "accounts",
            "check",
            "--config",
            config.to_str().expect("path"),
        ],
        AK,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok      sts:GetCallerIdentity"), "{stdout}");
    assert!(
        stdout.contains(
            "denied  ecs:ListServersDetails (cn-north-4): APIGW.0302\n          grant: ECS ReadOnlyAccess + IAM ReadOnlyAccess"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "denied  vpc:ListSecurityGroups (cn-north-4): APIGW.0302\n          grant: Tenant Guest (or VPC ReadOnlyAccess)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "denied  obs:ListBuckets: AccessDenied\n          grant: Tenant Guest (or OBS ReadOnlyAccess)"
        ),
        "{stdout}"
    );
}

#[test]
fn a_temporary_key_sends_its_security_token_signed() {
    let fake = start(world());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &dir.path().join("lake"), &fake.url);
    let text = std::fs::read_to_string(&config).expect("read").replace(
        "secret_access_key_env = \"HW_SK\"\n",
        "secret_access_key_env = \"HW_SK\"\nsession_token_env = \"HW_TOKEN\"\n",
    );
    std::fs::write(&config, text).expect("write");
    let out = std::process::Command::new(bin())
        .args([
            "accounts",
            "check",
            "--config",
            config.to_str().expect("path"),
        ])
        .env("HW_AK", AK)
        .env("HW_SK", SK)
        .env("HW_TOKEN", "temporary-token-value")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("temporary-token-value") && !stderr.contains("temporary-token-value"));
    let w = fake.world.lock().expect("lock");
    assert!(w.log.iter().all(|(_, _, _, ok)| *ok), "{:?}", w.log);
    // Every API-gateway request carries the token, signed (OBS gets it through the SDK).
    assert_eq!(
        w.tokens.len(),
        w.log.iter().filter(|(what, ..)| what != "obs").count()
    );
    assert!(w.tokens.iter().all(|t| t == "temporary-token-value"));
}
