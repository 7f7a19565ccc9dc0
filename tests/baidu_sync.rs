//! `auditlake sync` and `accounts check` for Baidu AI Cloud against a fake Baidu API in this
//! test: one fake server for the global calls (BCC describeRegions, BOS ListBuckets) and one
//! per region (the endpoints describeRegions names), all verifying every request's
//! bce-auth-v1 signature, serving marker paging (`isTruncated`/`nextMarker`) and Baidu's error
//! shape: HTTP 403 `{"code": "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied"}`.

mod common;
mod fake_cloud;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use auditlake::sync::sign::bce;
use common::*;
use fake_cloud::Request;
use serde_json::{Value, json};

const AK: &str = "bdfakeaccesskey00000000000000001";
const SK: &str = "baidu-secret-never-printed";
const SERVER_PAGE: usize = 2;

#[derive(Default)]
struct World {
    /// Region → the URL of its fake BCC server.
    regions: BTreeMap<String, String>,
    instances: BTreeMap<String, Vec<Value>>,
    groups: BTreeMap<String, Vec<Value>>,
    buckets: Vec<Value>,
    /// Calls the key may not make (`describeRegions`, `instance`, `securityGroup`, `buckets`).
    denied: Vec<&'static str>,
    /// (call, region or "", access key, signature verified)
    log: Vec<(String, String, String, bool)>,
}

fn instance(id: &str, name: &str, status: &str) -> Value {
    json!({
        "id": id, "name": name, "status": status, "instanceType": "N3",
        "internalIp": "192.168.16.4", "publicIp": "203.0.113.40",
        "zoneName": "cn-bj-a", "vpcId": "vpc-bd1", "subnetId": "sbn-bd1",
        "imageId": "m-ubuntu2204", "osName": "Ubuntu",
        "createTime": "2024-03-01T10:00:00Z",
        "tags": [{"tagKey": "team", "tagValue": "blue"}]
    })
}

fn group(id: &str, name: &str) -> Value {
    json!({"id": id, "name": name, "desc": "", "vpcId": "vpc-bd1", "rules": [],
           "tags": [], "createdTime": "2024-03-01T10:00:00Z"})
}

/// Verifies the request's bce-auth-v1 signature with our own signer.
fn verified(r: &Request) -> (String, bool) {
    let auth = r.header("authorization");
    let parts: Vec<&str> = auth.split('/').collect();
    let [
        version,
        access,
        timestamp,
        expiry,
        signed_headers,
        signature,
    ] = parts.as_slice()
    else {
        return (String::new(), false);
    };
    let names: Vec<&str> = signed_headers.split(';').collect();
    let values: Vec<(&str, String)> = names.iter().map(|n| (*n, r.header(n))).collect();
    let headers: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let query: Vec<(&str, &str)> = r
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let recomputed = bce::sign(
        &bce::SigningInput {
            method: &r.method,
            path: &r.path,
            query: &query,
            headers: &headers,
            timestamp,
            expiry: expiry.parse().unwrap_or(0),
            signed_headers: Some(&names),
        },
        access,
        SK,
    );
    let at = chrono::DateTime::parse_from_rfc3339(timestamp)
        .map(|t| t.timestamp())
        .unwrap_or(0);
    let ok = *version == "bce-auth-v1"
        && names.contains(&"host")
        && r.header("x-bce-date") == *timestamp
        && (chrono::Utc::now().timestamp() - at).abs() < 300
        && recomputed.signature == *signature;
    (access.to_string(), ok)
}

fn error(code: &str, message: &str) -> (u16, Value) {
    (
        403,
        json!({"requestId": "fake-req", "code": code, "message": message}),
    )
}

/// Marker paging as BCC does it: `marker` is the id the page starts at.
fn page(items: &[Value], r: &Request, key: &str) -> Value {
    let start = match r.param("marker") {
        Some(m) => items
            .iter()
            .position(|i| i["id"] == json!(m))
            .unwrap_or(items.len()),
        None => 0,
    };
    let max: usize = r
        .param("maxKeys")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1000)
        .clamp(1, SERVER_PAGE);
    let slice: Vec<Value> = items.iter().skip(start).take(max).cloned().collect();
    let next = items.get(start + max);
    json!({
        key: slice,
        "marker": r.param("marker").unwrap_or_default(),
        "isTruncated": next.is_some(),
        "nextMarker": next.map(|i| i["id"].clone()).unwrap_or(json!("")),
        "maxKeys": max
    })
}

/// `region` is None for the global server.
fn answer(r: &Request, region: Option<&str>, world: &Mutex<World>) -> (u16, Value) {
    let (access, ok) = verified(r);
    let mut w = world.lock().expect("lock");
    let call = match (r.method.as_str(), r.path.as_str(), region) {
        ("POST", "/v2/region/describeRegions", None) => "describeRegions",
        ("GET", "/", None) => "buckets",
        ("GET", "/v2/instance", Some(_)) => "instance",
        ("GET", "/v2/securityGroup", Some(_)) => "securityGroup",
        _ => "?",
    };
    w.log.push((
        call.to_string(),
        region.unwrap_or("").to_string(),
        access.clone(),
        ok,
    ));
    if access != AK {
        return error(
            "InvalidAccessKeyId",
            "The access key ID you provided does not exist.",
        );
    }
    if !ok {
        return error(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    if w.denied.contains(&call) {
        return error("AccessDenied", "Access denied.");
    }
    let region = region.unwrap_or("");
    match call {
        "describeRegions" => (
            200,
            json!({"regions": w.regions.iter().map(|(id, url)| json!({"regionId": id, "regionName": id, "regionEndpoint": url})).collect::<Vec<_>>()}),
        ),
        "buckets" => (
            200,
            json!({"owner": {"id": "owner-bd-1", "displayName": "auditlake"}, "buckets": w.buckets.clone()}),
        ),
        "instance" => (
            200,
            page(
                w.instances.get(region).map_or(&[][..], Vec::as_slice),
                r,
                "instances",
            ),
        ),
        "securityGroup" => (
            200,
            page(
                w.groups.get(region).map_or(&[][..], Vec::as_slice),
                r,
                "securityGroups",
            ),
        ),
        _ => (
            404,
            json!({"requestId": "fake-req", "code": "NoSuchURL", "message": "not found"}),
        ),
    }
}

struct Fake {
    url: String,
    world: Arc<Mutex<World>>,
}

impl Fake {
    /// Adds a region served by its own fake server.
    fn add_region(&self, region: &str) {
        let w = self.world.clone();
        let name = region.to_string();
        let url = fake_cloud::start(Arc::new(move |r: &Request| answer(r, Some(&name), &w)));
        self.world
            .lock()
            .expect("lock")
            .regions
            .insert(region.to_string(), url);
    }
}

fn start(world: World, regions: &[&str]) -> Fake {
    let world = Arc::new(Mutex::new(world));
    let w = world.clone();
    let url = fake_cloud::start(Arc::new(move |r: &Request| answer(r, None, &w)));
    let fake = Fake { url, world };
    for r in regions {
        fake.add_region(r);
    }
    fake
}

fn world() -> World {
    let mut w = World::default();
    w.instances.insert(
        "bj".into(),
        (1..=5)
            .map(|i| instance(&format!("i-bj{i}"), &format!("bj-{i}"), "Running"))
            .collect(),
    );
    w.instances
        .insert("gz".into(), vec![instance("i-gz1", "gz-1", "Running")]);
    w.instances.insert(
        "su".into(),
        vec![instance("i-su1", "not selected", "Running")],
    );
    w.groups.insert(
        "bj".into(),
        (1..=3)
            .map(|i| group(&format!("g-bj{i}"), &format!("g{i}")))
            .collect(),
    );
    w.buckets = vec![
        json!({"name": "logs-bucket", "location": "bj", "creationDate": "2024-03-01T10:00:00Z"}),
        json!({"name": "web-bucket", "location": "gz", "creationDate": "2024-03-02T10:00:00Z"}),
    ];
    w
}

fn write_config(dir: &Path, lake: &Path, url: &str) -> PathBuf {
    let path = dir.join("accounts.toml");
    let text = format!(
        r#"lake = "{lake}"

[[account]]
name = "bd"
provider = "baidu"
regions = ["bj", "gz"]
region_management = true

[account.credentials]
access_key_id_env = "BD_AK"
secret_access_key_env = "BD_SK"

[account.endpoints]
bcc = "{url}"
bos = "{url}"
"#,
        lake = lake.display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn run(args: &[&str], ak: &str) -> Output {
    fake_cloud::run(&bin(), args, ("BD_AK", ak), ("BD_SK", SK))
}

#[test]
fn baidu_sync_pages_every_region_verifies_signatures_and_diffs() {
    let fake = start(world(), &["bj", "gz", "su"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &lake, &fake.url);
    let cfg = config.to_str().expect("path");

    let out = run(&["sync", "--config", cfg, "--once"], AK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Baidu has no who-am-I: the account id is not known.
    assert!(
        stdout.contains("bd: account - run")
            && stdout.contains("2 regions, 11 assets; 0 created, 0 modified, 0 deleted"),
        "{stdout}"
    );
    assert!(!stdout.contains(SK) && !stderr.contains(SK));
    {
        let w = fake.world.lock().expect("lock");
        assert!(
            w.log.iter().all(|(_, _, _, ok)| *ok),
            "every request must carry a valid bce-auth-v1 signature: {:?}",
            w.log
        );
        let calls = |call: &str, region: &str| {
            w.log
                .iter()
                .filter(|(c, r, _, _)| c == call && r == region)
                .count()
        };
        // 5 instances at 2 per page: 3 pages (marker paging). su is not selected.
        assert_eq!(calls("instance", "bj"), 3);
        assert_eq!(calls("instance", "gz"), 1);
        assert_eq!(calls("instance", "su"), 0);
        assert_eq!(calls("securityGroup", "bj"), 2);
        assert_eq!(calls("buckets", ""), 1);
    }
    let inventory = dataset(&lake, "asset_inventory");
    let host = duckdb(&format!(
        "select resource_name, status, cloud_region, json_extract_string(attributes, '$.zone'), \
                json_extract_string(attributes, '$.instance_type'), \
                json_extract_string(attributes, '$.private_ips[0]'), \
                json_extract_string(attributes, '$.public_ips[0]'), \
                json_extract_string(tags, '$.team'), created_time, provider, account \
         from {inventory} where resource_uid = 'i-bj4'"
    ));
    assert_eq!(
        host,
        vec![vec![
            json!("bj-4"),
            json!("Running"),
            json!("bj"),
            json!("cn-bj-a"),
            json!("N3"),
            json!("192.168.16.4"),
            json!("203.0.113.40"),
            json!("blue"),
            json!("2024-03-01T10:00:00+00:00"),
            json!("baidu"),
            // The lake partitions by account; an account without a known id is "unknown".
            json!("unknown"),
        ]]
    );
    assert_eq!(
        scalar(&format!(
            "select json_extract_string(attributes, '$.bucket_region') from {inventory} \
             where resource_type = 'bucket' and resource_uid = 'web-bucket'"
        )),
        json!("gz")
    );

    // Change: an instance gone, one stopped, a bucket gone, a group in gz, a new region.
    {
        let mut w = fake.world.lock().expect("lock");
        let bj = w.instances.get_mut("bj").expect("bj");
        bj.retain(|i| i["id"] != "i-bj2");
        bj[0]["status"] = json!("Stopped");
        w.buckets.retain(|b| b["name"] != "web-bucket");
        w.groups
            .insert("gz".into(), vec![group("g-gz1", "opened-by-someone")]);
        w.instances
            .insert("hkg".into(), vec![instance("i-hkg1", "hkg-1", "Running")]);
    }
    fake.add_region("hkg");
    let out = run(&["sync", "--config", cfg, "--once"], AK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("3 regions, 11 assets; 1 created, 1 modified, 2 deleted"),
        "{stdout}"
    );
    let changes = duckdb(&format!(
        "select resource_type, resource_uid, change_type, origin, coalesce(cloud_region, ''), provider, \
                json_extract_string(after_state, '$.status') \
         from {} order by resource_uid",
        dataset(&lake, "asset_changes")
    ));
    assert_eq!(
        changes,
        vec![
            vec![
                json!("security_group"),
                json!("g-gz1"),
                json!("created"),
                json!("sync"),
                json!("gz"),
                json!("baidu"),
                Value::Null
            ],
            vec![
                json!("host"),
                json!("i-bj1"),
                json!("modified"),
                json!("sync"),
                json!("bj"),
                json!("baidu"),
                json!("Stopped")
            ],
            vec![
                json!("host"),
                json!("i-bj2"),
                json!("deleted"),
                json!("sync"),
                json!("bj"),
                json!("baidu"),
                Value::Null
            ],
            vec![
                json!("bucket"),
                json!("web-bucket"),
                json!("deleted"),
                json!("sync"),
                json!(""),
                json!("baidu"),
                Value::Null
            ],
        ]
    );
    assert_eq!(
        scalar(&format!(
            "select count(*) from {inventory} where resource_uid = 'i-hkg1'"
        )),
        json!(1)
    );
}

#[test]
fn an_unknown_access_key_and_a_wrong_secret_are_invalid_keys() {
    let fake = start(world(), &["bj", "gz"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &lake, &fake.url);
    let cfg = config.to_str().expect("path");

    let out = run(&["accounts", "check", "--config", cfg], "bdunknownkey");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "invalid bcc:DescribeRegions: InvalidAccessKeyId\n          the key is not accepted"
        ),
        "{stdout}"
    );
    let out = run(&["sync", "--config", cfg, "--once"], "bdunknownkey");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .contains("bd: sync failed: account bd: the AccessKey is invalid (InvalidAccessKeyId)"),
        "{stdout}"
    );
    assert!(!lake.join("asset_inventory").exists());

    let out = fake_cloud::run(
        &bin(),
        &["accounts", "check", "--config", cfg],
        ("BD_AK", AK),
        ("BD_SK", "not-the-secret"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("invalid bcc:DescribeRegions: SignatureDoesNotMatch"),
        "{stdout}"
    );

    let out = run(&["accounts", "check", "--config", cfg], AK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    for call in [
        "ok      bcc:DescribeRegions",
        "ok      bcc:ListInstances (bj)",
        "ok      bcc:ListSecurityGroups (bj)",
        "ok      bos:ListBuckets",
    ] {
        assert!(stdout.contains(call), "missing {call:?} in\n{stdout}");
    }
}

#[test]
fn a_key_without_permission_is_reported_with_the_policy_to_grant() {
    let mut w = world();
    w.denied = vec!["instance", "buckets"];
    let fake = start(w, &["bj", "gz"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &dir.path().join("lake"), &fake.url);
    let cfg = config.to_str().expect("path");
    let out = run(&["accounts", "check", "--config", cfg], AK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok      bcc:DescribeRegions"), "{stdout}");
    assert!(
        stdout.contains(
            "denied  bcc:ListInstances (bj): AccessDenied\n          grant: BCCReadAccessPolicy (or GlobalReadPolicy)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("denied  bos:ListBuckets: AccessDenied\n          grant: GlobalReadPolicy"),
        "{stdout}"
    );

    // The key check itself denied: the status is "insufficient permission", not "invalid".
    fake.world.lock().expect("lock").denied = vec!["describeRegions"];
    let out = run(&["sync", "--config", cfg, "--once"], AK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("the AccessKey is insufficient_permission (AccessDenied)"),
        "{stdout}"
    );
}
