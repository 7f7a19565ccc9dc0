//! `auditlake sync` and `auditlake accounts check` against moto's server (real AWS HTTP APIs
//! on loopback): create instances, buckets and users, sync, change them, sync again, and read
//! the inventory and the diff with DuckDB.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// moto's server on a free loopback port, stopped (by its PID) when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// With `INITIAL_NO_AUTH_ACTION_COUNT`, moto checks keys and IAM policies like AWS.
    fn start_with(env: &[(&str, &str)]) -> Moto {
        let exe = std::env::var_os("AUDITLAKE_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"));
        assert!(
            exe.exists(),
            "moto_server not found at {}: run `bash tests/run.sh` (it installs it) or set AUDITLAKE_MOTO_SERVER",
            exe.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        moto
    }

    /// Runs boto3 against the server (moto[server] brings boto3).
    fn boto(&self, script: &str) -> Value {
        common::moto::boto(&self.url, script)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, lake: &Path, moto: &str) -> PathBuf {
    let path = dir.join("accounts.toml");
    let text = format!(
        r#"lake = "{lake}"

[[account]]
name = "moto"
provider = "aws"
features = ["hosts", "products"]
regions = ["us-east-1", "eu-west-1"]
region_management = false

[account.credentials]
access_key_id_env = "TEST_AK"
secret_access_key_env = "TEST_SK"

[account.endpoints]
sts = "{moto}"
ec2 = "{moto}"
s3 = "{moto}"
iam = "{moto}"
"#,
        lake = lake.display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn run(args: &[&str]) -> Output {
    run_with_key(args, "AKIAMOTOTEST00000001", "moto-secret-never-printed")
}

fn run_with_key(args: &[&str], key_id: &str, secret: &str) -> Output {
    Command::new(bin())
        .args(args)
        .env("TEST_AK", key_id)
        .env("TEST_SK", secret)
        .output()
        .expect("run auditlake")
}

fn sync(config: &Path) -> String {
    let out = run(&["sync", "--config", config.to_str().expect("path"), "--once"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("moto-secret") && !stderr.contains("moto-secret"),
        "the secret must never be printed"
    );
    stdout
}

#[test]
fn sync_records_inventory_and_diffs_changes_between_runs() {
    let moto = Moto::start();
    let created = moto.boto(
        r#"
ec2 = c('ec2')
ids = [i['InstanceId'] for i in ec2.run_instances(ImageId='ami-12c6146b', MinCount=2, MaxCount=2, InstanceType='t3.micro',
    TagSpecifications=[{'ResourceType': 'instance', 'Tags': [{'Key': 'Name', 'Value': 'web'}]}])['Instances']]
eu = c('ec2', 'eu-west-1')
eu_id = eu.run_instances(ImageId='ami-12c6146b', MinCount=1, MaxCount=1)['Instances'][0]['InstanceId']
c('s3').create_bucket(Bucket='alpha-bucket')
iam = c('iam')
iam.create_user(UserName='alice')
key = iam.create_access_key(UserName='alice')['AccessKey']['AccessKeyId']
iam.create_user(UserName='bob')
iam.create_role(RoleName='deployer', AssumeRolePolicyDocument=json.dumps({'Version': '2012-10-17', 'Statement': [
    {'Effect': 'Allow', 'Principal': {'Service': 'ec2.amazonaws.com'}, 'Action': 'sts:AssumeRole'}]}))
print(json.dumps({'us': ids, 'eu': eu_id, 'key': key}))
"#,
    );
    let us: Vec<String> = serde_json::from_value(created["us"].clone()).expect("ids");
    let eu = created["eu"].as_str().expect("eu id").to_string();
    let key = created["key"].as_str().expect("key").to_string();

    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &lake, &moto.url);

    // First run: a baseline, everything in the inventory, nothing reported as changed.
    let first = sync(&config);
    assert!(first.contains("moto: account 123456789012"), "{first}");
    assert!(
        first.contains("0 created, 0 modified, 0 deleted"),
        "{first}"
    );
    let inventory = dataset(&lake, "asset_inventory");
    let rows = duckdb(&format!(
        "select resource_type, count(*) from {inventory} group by 1 order by 1"
    ));
    let counts: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or("").to_string(),
                r[1].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let count = |t: &str| counts.iter().find(|(k, _)| k == t).map_or(0, |(_, n)| *n);
    assert_eq!(count("host"), 3, "{counts:?}");
    assert_eq!(count("bucket"), 1, "{counts:?}");
    assert_eq!(count("user"), 2, "{counts:?}");
    assert_eq!(count("access_key"), 1, "{counts:?}");
    assert_eq!(count("role"), 1, "{counts:?}");
    assert!(count("security_group") >= 2, "default groups: {counts:?}");
    let host = duckdb(&format!(
        "select resource_name, status, cloud_region, account_name, cloud_account_uid, \
                json_extract_string(attributes, '$.instance_type'), \
                json_extract_string(attributes, '$.zone') like 'us-east-1%', \
                json_extract_string(attributes, '$.private_ip') is not null, created_time is not null, \
                provider, account \
         from {inventory} where resource_uid = '{}'",
        us[0]
    ));
    assert_eq!(
        host,
        vec![vec![
            json!("web"),
            json!("running"),
            json!("us-east-1"),
            json!("moto"),
            json!("123456789012"),
            json!("t3.micro"),
            json!(true),
            json!(true),
            json!(true),
            json!("aws"),
            json!("123456789012"),
        ]]
    );
    assert!(lake.join("_auditlake/sync/moto.json").exists());
    let changes = dataset(&lake, "asset_changes");

    // Change things: terminate one instance, stop another, create a bucket, delete a user,
    // deactivate a key.
    moto.boto(&format!(
        r#"
ec2 = c('ec2')
ec2.terminate_instances(InstanceIds=['{}'])
ec2.stop_instances(InstanceIds=['{}'])
c('s3').create_bucket(Bucket='beta-bucket')
iam = c('iam')
iam.delete_user(UserName='bob')
iam.delete_role(RoleName='deployer')
iam.update_access_key(UserName='alice', AccessKeyId='{key}', Status='Inactive')
print('{{}}')
"#,
        us[0], us[1]
    ));
    let second = sync(&config);
    assert!(
        second.contains("1 created, 2 modified, 3 deleted"),
        "{second}"
    );
    let rows = duckdb(&format!(
        "select resource_type, resource_uid, change_type, origin, \
                json_extract_string(before_state, '$.status'), json_extract_string(after_state, '$.status'), \
                sync_run_id is not null, source_event_id is null, coalesce(cloud_region, '') \
         from {changes} order by resource_type, resource_uid"
    ));
    let mut expected = vec![
        vec![
            json!("access_key"),
            json!(key),
            json!("modified"),
            json!("sync"),
            json!("Active"),
            json!("Inactive"),
            json!(true),
            json!(true),
            json!(""),
        ],
        vec![
            json!("bucket"),
            json!("beta-bucket"),
            json!("created"),
            json!("sync"),
            Value::Null,
            Value::Null,
            json!(true),
            json!(true),
            json!(""),
        ],
        vec![
            json!("host"),
            json!(us[0]),
            json!("deleted"),
            json!("sync"),
            json!("running"),
            Value::Null,
            json!(true),
            json!(true),
            json!("us-east-1"),
        ],
        vec![
            json!("host"),
            json!(us[1]),
            json!("modified"),
            json!("sync"),
            json!("running"),
            json!("stopped"),
            json!(true),
            json!(true),
            json!("us-east-1"),
        ],
        vec![
            json!("role"),
            json!("deployer"),
            json!("deleted"),
            json!("sync"),
            Value::Null,
            Value::Null,
            json!(true),
            json!(true),
            json!(""),
        ],
        vec![
            json!("user"),
            json!("bob"),
            json!("deleted"),
            json!("sync"),
            Value::Null,
            Value::Null,
            json!(true),
            json!(true),
            json!(""),
        ],
    ];
    expected.sort_by_key(|r| (r[0].to_string(), r[1].to_string()));
    assert_eq!(rows, expected);
    // The eu-west-1 instance is untouched; two inventory snapshots, each with its run id.
    assert_eq!(
        scalar(&format!(
            "select count(distinct run_id) from {inventory} where resource_uid = '{eu}'"
        )),
        json!(2)
    );

    // Nothing changed: a third run reports nothing, and the snapshot survived the restart.
    let third = sync(&config);
    assert!(
        third.contains("0 created, 0 modified, 0 deleted"),
        "{third}"
    );
    assert_eq!(scalar(&format!("select count(*) from {changes}")), json!(6));
}

#[test]
fn accounts_check_reports_each_call() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &lake, &moto.url);
    let out = run(&[
        "accounts",
        "check",
        "--config",
        config.to_str().expect("path"),
        "--account",
        "moto",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for call in [
        "ok      sts:GetCallerIdentity",
        "ok      ec2:DescribeRegions",
        "ok      ec2:DescribeInstances (us-east-1)",
        "ok      ec2:DescribeSecurityGroups (us-east-1)",
        "ok      s3:ListBuckets",
        "ok      iam:ListUsers",
        "ok      iam:ListRoles",
    ] {
        assert!(stdout.contains(call), "missing {call:?} in\n{stdout}");
    }

    // A missing credential is a clear error, not a crash.
    let out = Command::new(bin())
        .args([
            "accounts",
            "check",
            "--config",
            config.to_str().expect("path"),
        ])
        .env_remove("TEST_AK")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("environment variable TEST_AK is not set"),
        "{stdout}"
    );
}

#[test]
fn accounts_check_names_what_to_grant_and_rejects_an_unknown_key() {
    // moto enforcing IAM: the first three calls (creating the key) are free, the rest are
    // checked against the key's policy, as AWS does.
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]);
    let key = moto.boto(
        r#"
iam = c('iam')
iam.create_user(UserName='auditor')
k = iam.create_access_key(UserName='auditor')['AccessKey']
iam.put_user_policy(UserName='auditor', PolicyName='ec2-read', PolicyDocument=json.dumps(
    {'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': ['ec2:Describe*'], 'Resource': '*'}]}))
print(json.dumps([k['AccessKeyId'], k['SecretAccessKey']]))
"#,
    );
    let (key_id, secret) = (
        key[0].as_str().expect("key id").to_string(),
        key[1].as_str().expect("secret").to_string(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = write_config(dir.path(), &lake, &moto.url);
    let cfg = config.to_str().expect("path");

    let out = run_with_key(&["accounts", "check", "--config", cfg], &key_id, &secret);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for line in [
        "ok      sts:GetCallerIdentity",
        "ok      ec2:DescribeRegions",
        "ok      ec2:DescribeInstances (us-east-1)",
        "ok      ec2:DescribeSecurityGroups (us-east-1)",
        "denied  s3:ListBuckets: AccessDenied\n          grant: AmazonS3ReadOnlyAccess (or ReadOnlyAccess)",
        "denied  iam:ListUsers: AccessDenied\n          grant: IAMReadOnlyAccess (or ReadOnlyAccess)",
        "denied  iam:ListRoles: AccessDenied\n          grant: IAMReadOnlyAccess (or ReadOnlyAccess)",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    assert!(!stdout.contains(&secret));

    // A sync with this key keeps what it could list and says what it could not.
    let out = run_with_key(&["sync", "--config", cfg, "--once"], &key_id, &secret);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "listing failed (previous snapshot kept for it): global: s3:ListBuckets: AccessDenied"
        ),
        "{stdout}"
    );
    assert!(
        scalar(&format!(
            "select count(*) from {} where resource_type = 'security_group'",
            dataset(&lake, "asset_inventory")
        ))
        .as_i64()
        .is_some_and(|n| n >= 2)
    );

    // An unknown key: the key check says invalid, with AWS's code, and nothing is synced.
    let out = run_with_key(
        &["sync", "--config", cfg, "--once"],
        "AKIAUNKNOWN000000000",
        "nope",
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "moto: sync failed: account moto: the AccessKey is invalid (InvalidClientTokenId)"
        ),
        "{stdout}"
    );
    let out = run_with_key(
        &["accounts", "check", "--config", cfg],
        "AKIAUNKNOWN000000000",
        "nope",
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("invalid sts:GetCallerIdentity: InvalidClientTokenId"),
        "{stdout}"
    );
}
