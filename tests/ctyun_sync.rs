//! `auditlake sync` and `accounts check` for China Telecom e-Surfing Cloud (CTyun) against a
//! fake CTyun OpenAPI in this test: it verifies every request's EOP signature (Beijing-time
//! `Eop-date`), serves pageNo paging, and answers the CTyun way: HTTP 200 with `statusCode`
//! 800 for success and 900 for an error (unknown key, bad signature, missing permission).

mod common;
mod fake_cloud;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use auditlake::sync::sign::ctyun as eop;
use common::*;
use fake_cloud::Request;
use serde_json::{Value, json};

const AK: &str = "ctfakeaccesskey0001";
const SK: &str = "ctyun-secret-never-printed";
const SERVER_PAGE: usize = 2;
const HUADONG1: &str = "bb9ffd42056f11e59079fa163e06b8b0";
const HUABEI2: &str = "200000001852";
const XINAN1: &str = "100054c0416811e9a6690242ac110002";
const NEW_REGION: &str = "81f7728662dd11ec810800155d307d5b";

#[derive(Default)]
struct World {
    /// (regionID, regionName)
    regions: Vec<(&'static str, &'static str)>,
    instances: BTreeMap<String, Vec<Value>>,
    groups: BTreeMap<String, Vec<Value>>,
    /// Calls the key may not make (`list-regions`, `list-instances`, `query-security-groups`).
    denied: Vec<&'static str>,
    /// (call, regionID or "", access key, signature verified)
    log: Vec<(String, String, String, bool)>,
}

fn instance(id: &str, name: &str, status: &str) -> Value {
    json!({
        "instanceID": id, "instanceName": name, "displayName": name, "instanceStatus": status,
        "osType": 1, "privateIP": "172.16.0.8", "floatingIP": "203.0.113.80",
        "azName": "cn-huadong1-jsnj1A-public-ctcloud", "vpcID": "vpc-ct1",
        "flavor": {"flavorName": "s7.large.2"}, "image": {"imageID": "img-ctyunos"},
        "secGroupList": [{"securityGroupID": "sg-ct1", "securityGroupName": "default"}],
        "createdTime": "2024-03-01T10:00:00Z"
    })
}

fn group(id: &str, name: &str) -> Value {
    json!({"id": id, "securityGroupName": name, "description": "", "vpcID": "vpc-ct1",
           "securityGroupRuleList": [], "createTime": "2024-03-01T10:00:00Z"})
}

/// Verifies the request's EOP signature with our own signer.
fn verified(r: &Request) -> (String, bool) {
    let auth = r.header("eop-authorization");
    let mut parts = auth.split(' ');
    let access = parts.next().unwrap_or("").to_string();
    let headers = parts.next().unwrap_or("");
    let signature = parts
        .next()
        .and_then(|p| p.strip_prefix("Signature="))
        .unwrap_or("");
    let query: Vec<(&str, &str)> = r
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let date = r.header("eop-date");
    let recomputed = eop::sign(
        &eop::SigningInput {
            request_id: &r.header("ctyun-eop-request-id"),
            eop_date: &date,
            query: &query,
            body: &r.body,
        },
        &access,
        SK,
    );
    // Eop-date is Beijing time (UTC+8) with a literal Z.
    let at = chrono::NaiveDateTime::parse_from_str(&date, "%Y%m%dT%H%M%SZ")
        .map(|d| d.and_utc().timestamp() - 8 * 3600)
        .unwrap_or(0);
    let ok = headers == "Headers=ctyun-eop-request-id;eop-date"
        && r.header("ctyun-eop-request-id").len() == 36
        && (chrono::Utc::now().timestamp() - at).abs() < 300
        && recomputed.signature == signature;
    (access, ok)
}

fn error(code: &str, message: &str) -> (u16, Value) {
    // CTyun answers errors with HTTP 200 and statusCode 900.
    (
        200,
        json!({"statusCode": 900, "errorCode": code, "error": code, "message": message, "returnObj": {}}),
    )
}

fn answer(r: &Request, world: &Mutex<World>) -> (u16, Value) {
    let (access, ok) = verified(r);
    let mut w = world.lock().expect("lock");
    let body = r.json();
    let (call, region) = match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/v4/region/list-regions") => ("list-regions", String::new()),
        ("POST", "/v4/ecs/list-instances") => (
            "list-instances",
            body["regionID"].as_str().unwrap_or("").to_string(),
        ),
        ("GET", "/v4/vpc/query-security-groups") => (
            "query-security-groups",
            r.param("regionID").unwrap_or_default(),
        ),
        _ => ("?", String::new()),
    };
    w.log
        .push((call.to_string(), region.clone(), access.clone(), ok));
    if access != AK {
        return error(
            "Openapi.Authentication.AccessKeyNotFound",
            "AccessKey不存在",
        );
    }
    if !ok {
        return error("Openapi.Authentication.SignatureInvalid", "签名校验失败");
    }
    if w.denied.contains(&call) {
        return error("Openapi.Permission.Denied", "用户无权限访问该接口");
    }
    let number = |v: Option<String>| v.and_then(|s| s.parse::<usize>().ok());
    let (page_no, page_size) = match call {
        "list-instances" => (
            body["pageNo"].as_u64().map(|n| n as usize),
            body["pageSize"].as_u64().map(|n| n as usize),
        ),
        _ => (number(r.param("pageNo")), number(r.param("pageSize"))),
    };
    let page_no = page_no.unwrap_or(1).max(1);
    let size = page_size.unwrap_or(10).clamp(1, SERVER_PAGE);
    let slice = |items: &[Value]| -> Vec<Value> {
        items
            .iter()
            .skip((page_no - 1) * size)
            .take(size)
            .cloned()
            .collect()
    };
    match call {
        "list-regions" => (
            200,
            json!({"statusCode": 800, "message": "success", "returnObj": {"regionList":
                w.regions.iter().map(|(id, name)| json!({"regionID": id, "regionName": name, "regionType": "public"})).collect::<Vec<_>>()}}),
        ),
        "list-instances" => {
            let all = w.instances.get(&region).cloned().unwrap_or_default();
            let results = slice(&all);
            (
                200,
                json!({"statusCode": 800, "message": "success", "returnObj": {
                    "currentCount": results.len(), "totalCount": all.len(),
                    "totalPage": all.len().div_ceil(size), "results": results}}),
            )
        }
        "query-security-groups" => {
            let all = w.groups.get(&region).cloned().unwrap_or_default();
            (
                200,
                json!({"statusCode": 800, "message": "success", "returnObj": slice(&all)}),
            )
        }
        _ => error("Openapi.Parameter.Error", "unknown API"),
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
        regions: vec![(HUADONG1, "华东1"), (HUABEI2, "华北2"), (XINAN1, "西南1")],
        ..World::default()
    };
    w.instances.insert(
        HUADONG1.into(),
        (1..=5)
            .map(|i| instance(&format!("ct-hd{i}"), &format!("hd-{i}"), "running"))
            .collect(),
    );
    w.instances
        .insert(HUABEI2.into(), vec![instance("ct-hb1", "hb-1", "running")]);
    w.instances.insert(
        XINAN1.into(),
        vec![instance("ct-xn1", "not selected", "running")],
    );
    w.groups.insert(
        HUADONG1.into(),
        (1..=3)
            .map(|i| group(&format!("sg-hd{i}"), &format!("g{i}")))
            .collect(),
    );
    w
}

fn write_config(dir: &Path, lake: &Path, url: &str) -> PathBuf {
    let path = dir.join("accounts.toml");
    let text = format!(
        r#"lake = "{lake}"

[[account]]
name = "ct"
provider = "ctyun"
regions = ["{HUADONG1}", "{HUABEI2}"]
region_management = true

[account.credentials]
access_key_id_env = "CT_AK"
secret_access_key_env = "CT_SK"

[account.endpoints]
ecs = "{url}"
vpc = "{url}"
"#,
        lake = lake.display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn run(args: &[&str], ak: &str) -> Output {
    fake_cloud::run(&bin(), args, ("CT_AK", ak), ("CT_SK", SK))
}

#[test]
fn ctyun_sync_pages_every_region_verifies_signatures_and_diffs() {
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
        stdout.contains("ct: account - run")
            && stdout.contains("2 regions, 9 assets; 0 created, 0 modified, 0 deleted"),
        "{stdout}"
    );
    assert!(!stdout.contains(SK) && !stderr.contains(SK));
    {
        let w = fake.world.lock().expect("lock");
        assert!(
            w.log.iter().all(|(_, _, _, ok)| *ok),
            "every request must carry a valid EOP signature: {:?}",
            w.log
        );
        let calls = |call: &str, region: &str| {
            w.log
                .iter()
                .filter(|(c, r, _, _)| c == call && r == region)
                .count()
        };
        // 5 instances at 2 per page: pageNo 1, 2, 3 (totalCount ends it). 西南1 is not selected.
        assert_eq!(calls("list-instances", HUADONG1), 3);
        assert_eq!(calls("list-instances", HUABEI2), 1);
        assert_eq!(calls("list-instances", XINAN1), 0);
        // 3 groups at 2 per page, then the empty page (this listing has no totalCount).
        assert_eq!(calls("query-security-groups", HUADONG1), 3);
    }
    let inventory = dataset(&lake, "asset_inventory");
    let host = duckdb(&format!(
        "select resource_name, status, cloud_region, json_extract_string(attributes, '$.zone'), \
                json_extract_string(attributes, '$.instance_type'), \
                json_extract_string(attributes, '$.private_ips[0]'), \
                json_extract_string(attributes, '$.public_ips[0]'), \
                json_extract_string(attributes, '$.security_groups[0]'), created_time, provider \
         from {inventory} where resource_uid = 'ct-hd4'"
    ));
    assert_eq!(
        host,
        vec![vec![
            json!("hd-4"),
            json!("running"),
            json!(HUADONG1),
            json!("cn-huadong1-jsnj1A-public-ctcloud"),
            json!("s7.large.2"),
            json!("172.16.0.8"),
            json!("203.0.113.80"),
            json!("sg-ct1"),
            json!("2024-03-01T10:00:00+00:00"),
            json!("ctyun"),
        ]]
    );

    {
        let mut w = fake.world.lock().expect("lock");
        let hd = w.instances.get_mut(HUADONG1).expect("hd");
        hd.retain(|i| i["instanceID"] != "ct-hd2");
        hd[0]["instanceStatus"] = json!("stopped");
        w.groups
            .get_mut(HUADONG1)
            .expect("groups")
            .push(group("sg-hd9", "opened-by-someone"));
        w.regions.push((NEW_REGION, "华南2"));
        w.instances.insert(
            NEW_REGION.into(),
            vec![instance("ct-hn1", "hn-1", "running")],
        );
    }
    let out = run(&["sync", "--config", cfg, "--once"], AK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("3 regions, 10 assets; 1 created, 1 modified, 1 deleted"),
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
                json!("ct-hd1"),
                json!("modified"),
                json!("sync"),
                json!(HUADONG1),
                json!("ctyun"),
                json!("running"),
                json!("stopped")
            ],
            vec![
                json!("host"),
                json!("ct-hd2"),
                json!("deleted"),
                json!("sync"),
                json!(HUADONG1),
                json!("ctyun"),
                json!("running"),
                Value::Null
            ],
            vec![
                json!("security_group"),
                json!("sg-hd9"),
                json!("created"),
                json!("sync"),
                json!(HUADONG1),
                json!("ctyun"),
                Value::Null,
                Value::Null
            ],
        ]
    );
    assert_eq!(
        scalar(&format!(
            "select count(*) from {inventory} where resource_uid = 'ct-hn1'"
        )),
        json!(1)
    );
}

#[test]
fn an_unknown_access_key_and_a_wrong_secret_are_invalid_keys() {
    let fake = start(world());
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &lake, &fake.url);
    let cfg = config.to_str().expect("path");

    let out = run(&["accounts", "check", "--config", cfg], "ctunknownkey");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "invalid ecs:ListRegions: Openapi.Authentication.AccessKeyNotFound\n          the key is not accepted"
        ),
        "{stdout}"
    );
    let out = run(&["sync", "--config", cfg, "--once"], "ctunknownkey");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "ct: sync failed: account ct: the AccessKey is invalid (Openapi.Authentication.AccessKeyNotFound)"
        ),
        "{stdout}"
    );
    assert!(!lake.join("asset_inventory").exists());

    let out = fake_cloud::run(
        &bin(),
        &["accounts", "check", "--config", cfg],
        ("CT_AK", AK),
        ("CT_SK", "not-the-secret"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("invalid ecs:ListRegions: Openapi.Authentication.SignatureInvalid"),
        "{stdout}"
    );

    let out = run(&["accounts", "check", "--config", cfg], AK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    for call in [
        "ok      ecs:ListRegions",
        &format!("ok      ecs:ListInstances ({HUADONG1})"),
        &format!("ok      vpc:QuerySecurityGroups ({HUADONG1})"),
    ] {
        assert!(stdout.contains(call), "missing {call:?} in\n{stdout}");
    }
}

#[test]
fn a_key_without_permission_is_reported_with_the_policy_to_grant() {
    let mut w = world();
    w.denied = vec!["list-instances", "query-security-groups"];
    let fake = start(w);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &dir.path().join("lake"), &fake.url);
    let cfg = config.to_str().expect("path");
    let out = run(&["accounts", "check", "--config", cfg], AK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok      ecs:ListRegions"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "denied  ecs:ListInstances ({HUADONG1}): Openapi.Permission.Denied\n          grant: ecs viewer (resource-pool scope) + ctiam viewer (global)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "denied  vpc:QuerySecurityGroups ({HUADONG1}): Openapi.Permission.Denied\n          grant: vpc viewer (resource-pool scope)"
        )),
        "{stdout}"
    );

    fake.world.lock().expect("lock").denied = vec!["list-regions"];
    let out = run(&["sync", "--config", cfg, "--once"], AK);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("the AccessKey is insufficient_permission (Openapi.Permission.Denied)"),
        "{stdout}"
    );
}
