//! `auditlake sync` and `accounts check` for Tencent Cloud against a fake Tencent API server
//! in this test: it verifies every request's TC3-HMAC-SHA256 signature and serves paged
//! responses shaped like Tencent's, including `AuthFailure.SecretIdNotFound` for an unknown key.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use auditlake::sync::sign::tc3;
use common::*;
use serde_json::{Value, json};

const SECRET_ID: &str = "AKIDfaketest0001";
const SECRET_KEY: &str = "fake-secret-key-never-printed";
/// The fake server returns at most this many items per page, whatever Limit asks.
const SERVER_PAGE: usize = 2;

#[derive(Default)]
struct World {
    regions: Vec<&'static str>,
    instances: BTreeMap<String, Vec<Value>>,
    groups: BTreeMap<String, Vec<Value>>,
    users: Vec<Value>,
    /// Access keys by user UIN.
    keys: BTreeMap<u64, Vec<Value>>,
    /// Actions the key is not allowed to call.
    denied: Vec<&'static str>,
    /// (action, region, secret id, signature verified)
    log: Vec<(String, String, String, bool)>,
}

fn instance(id: &str, name: &str, state: &str) -> Value {
    json!({
        "InstanceId": id, "InstanceName": name, "InstanceType": "S5.MEDIUM2", "InstanceState": state,
        "PrivateIpAddresses": ["10.0.0.5"], "PublicIpAddresses": ["203.0.113.5"],
        "Placement": {"Zone": "ap-guangzhou-3", "ProjectId": 0},
        "OsName": "TencentOS Server 3.1", "ImageId": "img-eb30mz89",
        "VirtualPrivateCloud": {"VpcId": "vpc-1", "SubnetId": "subnet-1"},
        "SecurityGroupIds": ["sg-1"], "Tags": [{"Key": "team", "Value": "blue"}],
        "CreatedTime": "2024-03-01T10:00:00Z"
    })
}

struct Fake {
    url: String,
    world: Arc<Mutex<World>>,
}

impl Fake {
    fn start(world: World) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let world = Arc::new(Mutex::new(world));
        let w = world.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let w = w.clone();
                std::thread::spawn(move || serve(stream, &w));
            }
        });
        Fake { url, world }
    }
}

fn serve(stream: TcpStream, world: &Mutex<World>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let response = answer(&request_line, &headers, &body, world);
    let text = json!({ "Response": response }).to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        text.len(),
        text
    );
}

fn error(code: &str, message: &str) -> Value {
    json!({"Error": {"Code": code, "Message": message}, "RequestId": "fake-req"})
}

fn answer(
    request_line: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    world: &Mutex<World>,
) -> Value {
    let h = |k: &str| headers.get(k).cloned().unwrap_or_default();
    let action = h("x-tc-action");
    let region = h("x-tc-region");
    // Authorization: TC3-HMAC-SHA256 Credential=<id>/<date>/<service>/tc3_request, SignedHeaders=..., Signature=...
    let auth = h("authorization");
    let field = |name: &str| {
        auth.split([' ', ','])
            .find_map(|p| p.strip_prefix(name))
            .unwrap_or("")
            .to_string()
    };
    let credential = field("Credential=");
    let mut parts = credential.split('/');
    let secret_id = parts.next().unwrap_or("").to_string();
    let date = parts.next().unwrap_or("").to_string();
    let service = parts.next().unwrap_or("").to_string();
    let signed_headers = field("SignedHeaders=");
    let signature = field("Signature=");
    let timestamp: i64 = h("x-tc-timestamp").parse().unwrap_or(0);
    let expected_service = match action.as_str() {
        "GetCallerIdentity" => "sts",
        "DescribeRegions" => "region",
        "DescribeInstances" => "cvm",
        "DescribeSecurityGroups" => "vpc",
        "ListUsers" | "ListAccessKeys" => "cam",
        _ => "?",
    };
    let names: Vec<&str> = signed_headers.split(';').collect();
    let values: Vec<(&str, String)> = names.iter().map(|n| (*n, h(n))).collect();
    let header_refs: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let recomputed = tc3::sign(
        &tc3::SigningInput {
            method: request_line.split(' ').next().unwrap_or(""),
            query: "",
            headers: &header_refs,
            payload: body,
            service: &service,
            timestamp,
        },
        SECRET_KEY,
    );
    let now = chrono::Utc::now().timestamp();
    let verified = request_line.starts_with("POST / ")
        && service == expected_service
        && date == tc3::date_of(timestamp)
        && (now - timestamp).abs() < 300
        && names.contains(&"host")
        && names.contains(&"content-type")
        && h("x-tc-version").len() == 10
        && recomputed.signature == signature;
    let mut w = world.lock().expect("lock");
    w.log
        .push((action.clone(), region.clone(), secret_id.clone(), verified));
    if secret_id != SECRET_ID {
        return error(
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found, please ensure that your SecretId is correct.",
        );
    }
    if !verified {
        return error(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated.",
        );
    }
    if w.denied.contains(&action.as_str()) {
        return error(
            "AuthFailure.UnauthorizedOperation",
            "you are not authorized to perform this operation",
        );
    }
    let params: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let num = |k: &str| -> usize {
        match &params[k] {
            Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
            Value::String(s) => s.parse().unwrap_or(0),
            _ => 0,
        }
    };
    let page = |items: &[Value], key: &str| -> Value {
        let offset = num("Offset");
        let limit = num("Limit").clamp(1, SERVER_PAGE);
        let slice: Vec<Value> = items.iter().skip(offset).take(limit).cloned().collect();
        json!({ key: slice, "TotalCount": items.len(), "RequestId": "fake-req" })
    };
    match action.as_str() {
        "GetCallerIdentity" => json!({
            "Arn": "qcs::cam::uin/100000000001:uin/100000000001",
            "AccountId": "100000000001", "UserId": "100000000001",
            "PrincipalId": "100000000001", "Type": "RootAccount", "RequestId": "fake-req"
        }),
        "DescribeRegions" => {
            let set: Vec<Value> = w
                .regions
                .iter()
                .map(|r| json!({"Region": r, "RegionName": r, "RegionState": "AVAILABLE"}))
                .collect();
            json!({"TotalCount": set.len(), "RegionSet": set, "RequestId": "fake-req"})
        }
        "DescribeInstances" => page(
            w.instances.get(&region).map_or(&[][..], Vec::as_slice),
            "InstanceSet",
        ),
        "DescribeSecurityGroups" => page(
            w.groups.get(&region).map_or(&[][..], Vec::as_slice),
            "SecurityGroupSet",
        ),
        "ListUsers" => json!({"Data": w.users.clone(), "RequestId": "fake-req"}),
        "ListAccessKeys" => {
            let uin = params["TargetUin"].as_u64().unwrap_or(0);
            json!({"AccessKeys": w.keys.get(&uin).cloned().unwrap_or_default(), "RequestId": "fake-req"})
        }
        other => error(
            "InvalidAction",
            &format!("unknown action {other} for the fake"),
        ),
    }
}

fn write_config(dir: &Path, lake: &Path, url: &str) -> PathBuf {
    let path = dir.join("accounts.toml");
    let text = format!(
        r#"lake = "{lake}"

[[account]]
name = "tc"
provider = "tencent"
regions = ["ap-guangzhou", "ap-shanghai"]
region_management = true

[account.credentials]
access_key_id_env = "TC_ID"
secret_access_key_env = "TC_KEY"

[account.endpoints]
sts = "{url}"
region = "{url}"
cvm = "{url}"
vpc = "{url}"
cam = "{url}"
"#,
        lake = lake.display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn run(args: &[&str], secret_id: &str) -> Output {
    Command::new(bin())
        .args(args)
        .env("TC_ID", secret_id)
        .env("TC_KEY", SECRET_KEY)
        .output()
        .expect("run auditlake")
}

fn world() -> World {
    let mut w = World {
        regions: vec!["ap-beijing", "ap-guangzhou", "ap-shanghai"],
        ..World::default()
    };
    w.instances.insert(
        "ap-guangzhou".into(),
        (1..=5)
            .map(|i| instance(&format!("ins-gz{i}"), &format!("gz-{i}"), "RUNNING"))
            .collect(),
    );
    w.instances.insert(
        "ap-shanghai".into(),
        vec![instance("ins-sh1", "sh-1", "RUNNING")],
    );
    w.instances.insert(
        "ap-beijing".into(),
        vec![instance("ins-bj1", "not selected", "RUNNING")],
    );
    w.groups.insert(
        "ap-guangzhou".into(),
        (1..=3)
            .map(|i| json!({"SecurityGroupId": format!("sg-gz{i}"), "SecurityGroupName": format!("g{i}"), "SecurityGroupDesc": "", "ProjectId": "0", "IsDefault": false, "CreatedTime": "2024-03-01 10:00:00", "TagSet": []}))
            .collect(),
    );
    w.users = vec![
        json!({"Uin": 100000000002u64, "Name": "dev", "Uid": 2, "Remark": "", "ConsoleLogin": 1, "CreateTime": "2024-03-01 10:00:00"}),
        json!({"Uin": 100000000003u64, "Name": "ops", "Uid": 3, "Remark": "", "ConsoleLogin": 0, "CreateTime": "2024-03-01 10:00:00"}),
    ];
    w.keys.insert(
        100000000002,
        vec![json!({"AccessKeyId": "AKIDdevkey0001", "Status": "Active", "CreateTime": "2024-03-01 10:05:00"})],
    );
    w
}

#[test]
fn tencent_sync_pages_every_region_verifies_signatures_and_diffs() {
    let fake = Fake::start(world());
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &lake, &fake.url);
    let cfg = config.to_str().expect("path");

    let out = run(&["sync", "--config", cfg, "--once"], SECRET_ID);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("tc: account 100000000001")
            && stdout.contains("2 regions, 12 assets; 0 created, 0 modified, 0 deleted"),
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET_KEY) && !stderr.contains(SECRET_KEY));
    {
        let w = fake.world.lock().expect("lock");
        assert!(
            w.log.iter().all(|(_, _, _, ok)| *ok),
            "every request must carry a valid TC3 signature: {:?}",
            w.log
        );
        // 5 instances in Guangzhou at 2 per page: 3 pages; Beijing is not selected.
        let pages = |action: &str, region: &str| {
            w.log
                .iter()
                .filter(|(a, r, _, _)| a == action && r == region)
                .count()
        };
        assert_eq!(pages("DescribeInstances", "ap-guangzhou"), 3);
        assert_eq!(pages("DescribeInstances", "ap-shanghai"), 1);
        assert_eq!(pages("DescribeInstances", "ap-beijing"), 0);
        assert_eq!(pages("DescribeSecurityGroups", "ap-guangzhou"), 2);
    }
    let inventory = dataset(&lake, "asset_inventory");
    let host = duckdb(&format!(
        "select resource_name, status, cloud_region, json_extract_string(attributes, '$.zone'), \
                json_extract_string(tags, '$.team'), created_time, provider, account \
         from {inventory} where resource_uid = 'ins-gz4'"
    ));
    assert_eq!(
        host,
        vec![vec![
            json!("gz-4"),
            json!("RUNNING"),
            json!("ap-guangzhou"),
            json!("ap-guangzhou-3"),
            json!("blue"),
            json!("2024-03-01T10:00:00+00:00"),
            json!("tencent"),
            json!("100000000001"),
        ]]
    );

    // Change: one instance gone, one stopped, a user added, a new region with an instance.
    {
        let mut w = fake.world.lock().expect("lock");
        let gz = w.instances.get_mut("ap-guangzhou").expect("gz");
        gz.retain(|i| i["InstanceId"] != "ins-gz2");
        gz[0]["InstanceState"] = json!("STOPPED");
        if let Some(k) = w.keys.get_mut(&100000000002) {
            k[0]["Status"] = json!("Inactive");
        }
        w.users.push(json!({"Uin": 100000000004u64, "Name": "intruder", "Uid": 4, "CreateTime": "2024-03-02 10:00:00"}));
        w.regions.push("ap-singapore");
        w.instances.insert(
            "ap-singapore".into(),
            vec![instance("ins-sg1", "sg-1", "RUNNING")],
        );
    }
    let out = run(&["sync", "--config", cfg, "--once"], SECRET_ID);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    // Region management: ap-singapore appeared after the first sync and is synced (a baseline).
    assert!(
        stdout.contains("3 regions, 13 assets; 1 created, 2 modified, 1 deleted"),
        "{stdout}"
    );
    let changes = duckdb(&format!(
        "select resource_type, resource_uid, change_type, origin, coalesce(cloud_region, '') \
         from {} order by resource_uid",
        dataset(&lake, "asset_changes")
    ));
    assert_eq!(
        changes,
        vec![
            vec![
                json!("access_key"),
                json!("AKIDdevkey0001"),
                json!("modified"),
                json!("sync"),
                json!("")
            ],
            vec![
                json!("host"),
                json!("ins-gz1"),
                json!("modified"),
                json!("sync"),
                json!("ap-guangzhou")
            ],
            vec![
                json!("host"),
                json!("ins-gz2"),
                json!("deleted"),
                json!("sync"),
                json!("ap-guangzhou")
            ],
            vec![
                json!("user"),
                json!("intruder"),
                json!("created"),
                json!("sync"),
                json!("")
            ],
        ]
    );
    assert_eq!(
        scalar(&format!(
            "select count(*) from {inventory} where resource_uid = 'ins-sg1'"
        )),
        json!(1)
    );
}

#[test]
fn an_unknown_secret_id_is_reported_as_an_invalid_key() {
    let fake = Fake::start(world());
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &lake, &fake.url);
    let cfg = config.to_str().expect("path");

    let out = run(&["accounts", "check", "--config", cfg], "AKIDunknown");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("invalid sts:GetCallerIdentity: AuthFailure.SecretIdNotFound"),
        "{stdout}"
    );
    assert!(stdout.contains("the key is not accepted"), "{stdout}");

    let out = run(&["sync", "--config", cfg, "--once"], "AKIDunknown");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("the AccessKey is invalid (AuthFailure.SecretIdNotFound)"),
        "{stdout}"
    );
    assert!(!lake.join("asset_inventory").exists());

    // With the right key every call passes.
    let out = run(&["accounts", "check", "--config", cfg], SECRET_ID);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    for call in [
        "ok      sts:GetCallerIdentity",
        "ok      region:DescribeRegions",
        "ok      cvm:DescribeInstances (ap-guangzhou)",
        "ok      vpc:DescribeSecurityGroups (ap-guangzhou)",
        "ok      cam:ListUsers",
    ] {
        assert!(stdout.contains(call), "missing {call:?} in\n{stdout}");
    }
}

#[test]
fn accounts_check_names_the_policy_for_a_denied_call() {
    let mut w = world();
    w.denied = vec!["ListUsers"];
    let fake = Fake::start(w);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &dir.path().join("lake"), &fake.url);
    let out = run(
        &[
            "accounts",
            "check",
            "--config",
            config.to_str().expect("path"),
            "--account",
            "tc",
        ],
        SECRET_ID,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("ok      cvm:DescribeInstances (ap-guangzhou)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("denied  cam:ListUsers: AuthFailure.UnauthorizedOperation\n          grant: QcloudCamReadOnlyAccess"),
        "{stdout}"
    );
}

#[test]
fn periodic_sync_runs_at_its_interval_and_stops_on_sigterm() {
    let fake = Fake::start(world());
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &lake, &fake.url);
    let text = std::fs::read_to_string(&config).expect("read")
        + "\n[account.intervals]\nhosts = \"1s\"\nproducts = \"off\"\nkey_check = \"1s\"\n";
    std::fs::write(&config, text).expect("write");
    let mut child = Command::new(bin())
        .args(["sync", "--config", config.to_str().expect("path")])
        .env("TC_ID", SECRET_ID)
        .env("TC_KEY", SECRET_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sync");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let runs = || {
        fake.world
            .lock()
            .expect("lock")
            .log
            .iter()
            .filter(|(a, r, _, _)| a == "DescribeInstances" && r == "ap-shanghai")
            .count()
    };
    while runs() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(
        runs() >= 3,
        "expected three host syncs in the interval loop: {stderr}"
    );
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("sync run done"), "{stderr}");
    // Products are off: no security groups or users were listed.
    let w = fake.world.lock().expect("lock");
    assert!(
        !w.log
            .iter()
            .any(|(a, _, _, _)| a == "ListUsers" || a == "DescribeSecurityGroups"),
        "{:?}",
        w.log
    );
    assert!(lake.join("_auditlake/sync/tc.json").exists());
}

#[test]
fn an_invalid_key_is_logged_once_per_state_change() {
    let fake = Fake::start(world());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &dir.path().join("lake"), &fake.url);
    let text = std::fs::read_to_string(&config).expect("read")
        + "\n[account.intervals]\nhosts = \"off\"\nproducts = \"off\"\nkey_check = \"1s\"\n";
    std::fs::write(&config, text).expect("write");
    let mut child = Command::new(bin())
        .args(["sync", "--config", config.to_str().expect("path")])
        .env("TC_ID", "AKIDrevoked")
        .env("TC_KEY", SECRET_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sync");
    let checks = || {
        fake.world
            .lock()
            .expect("lock")
            .log
            .iter()
            .filter(|(a, _, _, _)| a == "GetCallerIdentity")
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while checks() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "{stderr}");
    assert!(checks() >= 3, "{stderr}");
    assert_eq!(
        stderr.matches("AccessKey is INVALID").count(),
        1,
        "logged once, not at every check:\n{stderr}"
    );
    assert!(stderr.contains("AuthFailure.SecretIdNotFound"), "{stderr}");
    assert!(!stderr.contains(SECRET_KEY));
}

#[test]
fn the_daemon_runs_the_account_sync_into_its_lake() {
    let fake = Fake::start(world());
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("daemon-lake");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).expect("inbox");
    // The accounts file names another lake: the daemon writes to its own.
    let accounts = write_config(dir.path(), &dir.path().join("unused"), &fake.url);
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "name = \"t\"\naccounts = \"{}\"\n[source]\ntype = \"files\"\npath = \"{}\"\npoll_interval_secs = 1\n[sink]\npath = \"{}\"\n",
            accounts.display(),
            inbox.display(),
            lake.display()
        ),
    )
    .expect("write");
    let mut child = Command::new(bin())
        .args(["run", "--config", pipeline.to_str().expect("path")])
        .env("TC_ID", SECRET_ID)
        .env("TC_KEY", SECRET_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start daemon");
    let snapshot = lake.join("_auditlake/sync/tc.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !snapshot.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "{stderr}");
    assert!(snapshot.exists(), "no sync run within 30 s: {stderr}");
    assert_eq!(
        scalar(&format!(
            "select count(*) from {} where resource_type = 'host'",
            dataset(&lake, "asset_inventory")
        )),
        json!(6)
    );
    assert!(!dir.path().join("unused").exists());
}
