//! Tencent Cloud entitlements (`TencentCloud::entitlements`) against a fake CAM server in this
//! test: it verifies every request's TC3-HMAC-SHA256 signature (AuthFailure.SignatureFailure
//! otherwise), checks the parameters CAM requires, and serves Page/Rp pages of at most two
//! items shaped like CAM 2019-01-16's answers.

mod common;
mod fake_cloud;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use auditlake::ciem::model::{
    Credential, CredentialKind, Entitlements, Policy, PolicyKind, Principal, PrincipalType,
};
use auditlake::sync::config::{AccountConfig, CloudKind, Credentials, CredentialsConfig, Feature};
use auditlake::sync::sign::tc3;
use auditlake::sync::tencent::TencentCloud;
use auditlake::sync::{ApiError, Cloud, Failure};
use common::{bin, dataset, duckdb};
use fake_cloud::Request;
use serde_json::{Value, json};

const SECRET_ID: &str = "AKIDfakecam0001";
const SECRET_KEY: &str = "fake-cam-secret-never-printed";
const OWNER: u64 = 100000000001;
const ALICE: u64 = 100000000011;
const BOB: u64 = 100000000012;
/// The fake returns at most this many items per page, whatever Rp asks.
const SERVER_PAGE: usize = 2;

#[derive(Debug, Clone)]
struct Logged {
    action: String,
    service: String,
    region: String,
    verified: bool,
    params: Value,
}

#[derive(Default)]
struct World {
    users: Vec<Value>,
    /// GroupInfo rows.
    groups: Vec<Value>,
    /// Group ids by member UIN.
    members: BTreeMap<u64, Vec<u64>>,
    group_policies: BTreeMap<u64, Vec<u64>>,
    /// Directly attached policies by user UIN.
    user_policies: BTreeMap<u64, Vec<u64>>,
    roles: Vec<Value>,
    role_policies: BTreeMap<String, Vec<u64>>,
    /// GetPolicy answers by policy id.
    policies: BTreeMap<u64, Value>,
    keys: BTreeMap<u64, Vec<Value>>,
    last_used: BTreeMap<&'static str, Value>,
    last_login: BTreeMap<u64, Value>,
    denied: Vec<&'static str>,
    /// Answer every page with the first one.
    ignore_page: bool,
    /// Actions answered once with RequestLimitExceeded before they succeed.
    throttle_once: BTreeSet<&'static str>,
    log: Vec<Logged>,
}

fn error(code: &str, message: &str) -> Value {
    json!({"Error": {"Code": code, "Message": message}, "RequestId": "fake-req"})
}

fn admin_doc() -> Value {
    json!({"version": "2.0", "statement": [{"effect": "allow", "action": "*", "resource": "*"}]})
}

fn cvm_read_doc() -> Value {
    json!({"version": "2.0", "statement": [{"effect": "allow", "action": ["cvm:Describe*", "cvm:Inquiry*"], "resource": "*"}]})
}

fn deploy_doc() -> Value {
    json!({"version": "2.0", "statement": [
        {"effect": "allow", "action": ["cvm:*", "cos:PutObject"], "resource": "*"},
        {"effect": "deny", "action": "cam:*", "resource": "*"}
    ]})
}

fn trust_doc() -> Value {
    json!({"version": "2.0", "statement": [{"action": "name/sts:AssumeRole", "effect": "allow",
        "principal": {"qcs": [format!("qcs::cam::uin/{OWNER}:root")]}}]})
}

fn tat_trust_doc() -> Value {
    json!({"version": "2.0", "statement": [{"action": "sts:AssumeRole", "effect": "allow",
        "principal": {"service": ["command.tat.cloud.tencent.com"]}}]})
}

fn world() -> World {
    let mut w = World {
        users: vec![
            json!({"Uin": ALICE, "Name": "alice", "Uid": 11, "Remark": "", "ConsoleLogin": 0,
               "PhoneNum": "", "CountryCode": "86", "Email": "", "CreateTime": "2024-01-10 09:00:00", "NickName": "alice"}),
            json!({"Uin": BOB, "Name": "bob", "Uid": 12, "Remark": "deployer", "ConsoleLogin": 1,
               "PhoneNum": "", "CountryCode": "86", "Email": "", "CreateTime": "2024-02-01 08:00:00", "NickName": "bob"}),
        ],
        groups: vec![
            json!({"GroupId": 90001, "GroupName": "ops", "CreateTime": "2024-01-05 10:00:00", "Remark": ""}),
            json!({"GroupId": 90002, "GroupName": "empty", "CreateTime": "2024-01-06 10:00:00", "Remark": ""}),
            json!({"GroupId": 90003, "GroupName": "auditors", "CreateTime": "2024-01-07 10:00:00", "Remark": ""}),
        ],
        ..World::default()
    };
    w.members.insert(ALICE, vec![90001]);
    w.group_policies.insert(90001, vec![1001, 2002]);
    w.group_policies.insert(90003, vec![1]);
    w.user_policies.insert(BOB, vec![1, 1001, 2001]);
    w.roles = vec![
        json!({"RoleId": "4611686018427000001", "RoleName": "deployer", "PolicyDocument": trust_doc().to_string(),
               "Description": "", "AddTime": "2024-03-05 11:00:00", "UpdateTime": "2024-03-05 11:00:00",
               "ConsoleLogin": 0, "RoleType": "user", "SessionDuration": 7200, "Tags": []}),
        json!({"RoleId": "4611686018427000002", "RoleName": "TAT_QCSLinkedRoleInCommand",
               "PolicyDocument": tat_trust_doc().to_string(), "Description": "", "AddTime": "2020-11-28 10:05:52",
               "UpdateTime": "2020-11-28 10:05:52", "ConsoleLogin": 0, "RoleType": "service_linked",
               "DeletionTaskId": null, "SessionDuration": 43200, "Tags": []}),
    ];
    w.role_policies
        .insert("4611686018427000001".into(), vec![2001]);
    w.role_policies
        .insert("4611686018427000002".into(), vec![1001]);
    let policy = |name: &str, kind: u64, doc: String| {
        json!({"PolicyName": name, "Description": "", "Type": kind, "AddTime": "2024-01-01 00:00:00",
               "UpdateTime": "2024-01-01 00:00:00", "PolicyDocument": doc, "PresetAlias": "",
               "IsServiceLinkedRolePolicy": 0, "RequestId": "fake-req"})
    };
    w.policies
        .insert(1, policy("AdministratorAccess", 2, admin_doc().to_string()));
    w.policies.insert(
        1001,
        policy("QcloudCVMReadOnlyAccess", 2, cvm_read_doc().to_string()),
    );
    w.policies
        .insert(2001, policy("deploy-custom", 1, deploy_doc().to_string()));
    // Cut short: not JSON.
    w.policies.insert(
        2002,
        policy("broken-doc", 1, r#"{"version":"2.0","statement":["#.into()),
    );
    w.keys.insert(
        ALICE,
        vec![json!({"AccessKeyId": "AKIDalice0001", "Status": 0, "CreateTime": "2024-01-10 09:05:00"})],
    );
    w.keys.insert(
        BOB,
        vec![
            json!({"AccessKeyId": "AKIDbob0001", "Status": "Active", "CreateTime": "2024-02-01 08:10:00"}),
            json!({"AccessKeyId": "AKIDbob0002", "Status": "Active", "CreateTime": "2024-03-01 12:00:00"}),
        ],
    );
    // Alice's key has only the day; Bob's second key was never used.
    w.last_used.insert(
        "AKIDalice0001",
        json!({"SecretId": "AKIDalice0001", "LastUsedDate": "2024-04-01", "LastSecretUsedDate": 0}),
    );
    w.last_used.insert(
        "AKIDbob0001",
        json!({"SecretId": "AKIDbob0001", "LastUsedDate": "2024-05-02", "LastSecretUsedDate": 1714640000000u64}),
    );
    w.last_used.insert(
        "AKIDbob0002",
        json!({"SecretId": "AKIDbob0002", "LastUsedDate": "", "LastSecretUsedDate": 0}),
    );
    w.last_login.insert(
        BOB,
        json!({"Uid": 12, "Uin": BOB, "Name": "bob", "UserType": 2, "Remark": "",
               "CreateTime": "2024-02-01 08:00:00", "LastLoginIp": "203.0.113.9", "LastLoginTime": "2024-05-03 09:30:00"}),
    );
    w.last_login.insert(
        ALICE,
        json!({"Uid": 11, "Uin": ALICE, "Name": "alice", "UserType": 2, "Remark": "",
               "CreateTime": "2024-01-10 09:00:00", "LastLoginIp": "", "LastLoginTime": null}),
    );
    w
}

/// Checks the request's TC3 signature against the secret key, as Tencent's gateway does.
fn verify(r: &Request, service: &str) -> bool {
    let auth = r.header("authorization");
    let field = |name: &str| {
        auth.split([' ', ','])
            .find_map(|p| p.strip_prefix(name))
            .unwrap_or("")
            .to_string()
    };
    let credential = field("Credential=");
    let mut scope = credential.split('/');
    let (id, date, scope_service) = (
        scope.next().unwrap_or(""),
        scope.next().unwrap_or(""),
        scope.next().unwrap_or(""),
    );
    let signed_headers = field("SignedHeaders=");
    let names: Vec<&str> = signed_headers.split(';').collect();
    let values: Vec<(&str, String)> = names.iter().map(|n| (*n, r.header(n))).collect();
    let headers: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let timestamp: i64 = r.header("x-tc-timestamp").parse().unwrap_or(0);
    let recomputed = tc3::sign(
        &tc3::SigningInput {
            method: &r.method,
            query: "",
            headers: &headers,
            payload: &r.body,
            service: scope_service,
            timestamp,
        },
        SECRET_KEY,
    );
    r.method == "POST"
        && r.path == "/"
        && auth.starts_with("TC3-HMAC-SHA256 ")
        && id == SECRET_ID
        && scope_service == service
        && date == tc3::date_of(timestamp)
        && (chrono::Utc::now().timestamp() - timestamp).abs() < 300
        && names.contains(&"host")
        && names.contains(&"content-type")
        && r.header("x-tc-version").len() == 10
        && recomputed.signature == field("Signature=")
}

fn answer(r: &Request, world: &Mutex<World>) -> (u16, Value) {
    let action = r.header("x-tc-action");
    let service = match action.as_str() {
        "GetCallerIdentity" => "sts",
        // A sync run lists the regions before its features.
        "DescribeRegions" => "region",
        _ => "cam",
    };
    let verified = verify(r, service);
    let params = r.json();
    let mut w = world.lock().expect("lock");
    w.log.push(Logged {
        action: action.clone(),
        service: service.to_string(),
        region: r.header("x-tc-region"),
        verified,
        params: params.clone(),
    });
    let response = if verified && w.throttle_once.remove(action.as_str()) {
        error(
            "RequestLimitExceeded",
            "Your current request times equals to `5` in a second",
        )
    } else {
        respond(&action, verified, &params, &w)
    };
    (200, json!({ "Response": response }))
}

fn respond(action: &str, verified: bool, params: &Value, w: &World) -> Value {
    if !verified {
        return error(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated.",
        );
    }
    if w.denied.contains(&action) {
        return error(
            "AuthFailure.UnauthorizedOperation",
            "you are not authorized to perform this operation",
        );
    }
    let int = |k: &str| params[k].as_u64();
    let missing = |k: &str| error("MissingParameter", &format!("{k} is required"));
    // Page/Rp listings: Page from 1, Rp 1..=200 required.
    let paged = |rows: Vec<Value>, key: &str| -> Value {
        let (Some(page), Some(rp)) = (int("Page"), int("Rp")) else {
            return missing("Page and Rp");
        };
        if page == 0 || rp == 0 || rp > 200 {
            return error("InvalidParameter", "Page from 1, Rp 1..=200");
        }
        let page = if w.ignore_page { 1 } else { page as usize };
        let size = (rp as usize).min(SERVER_PAGE);
        let slice: Vec<Value> = rows
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .cloned()
            .collect();
        json!({ key: slice, "TotalNum": rows.len(), "RequestId": "fake-req" })
    };
    let policy_row = |id: u64, type_field: &str| -> Value {
        let p = &w.policies[&id];
        let kind = p["Type"].as_u64().unwrap_or(0);
        match type_field {
            // ListAttachedUserAllPolicies: PolicyId as a string, StrategyType "1"/"2".
            "StrategyType" => {
                json!({"PolicyId": id.to_string(), "PolicyName": p["PolicyName"], "Description": "",
                       "AddTime": "2024-01-01 00:00:00", "StrategyType": kind.to_string(), "CreateMode": "2"})
            }
            // Group and role listings: PolicyId a number, PolicyType User/QCS.
            _ => {
                json!({"PolicyId": id, "PolicyName": p["PolicyName"], "AddTime": "2024-01-01 00:00:00",
                       "CreateMode": 2, "PolicyType": if kind == 2 { "QCS" } else { "User" }})
            }
        }
    };
    match action {
        "GetCallerIdentity" => json!({
            "Arn": format!("qcs::cam::uin/{OWNER}:uin/{OWNER}"), "AccountId": OWNER.to_string(),
            "UserId": OWNER.to_string(), "PrincipalId": OWNER.to_string(), "Type": "RootAccount",
            "RequestId": "fake-req"
        }),
        "DescribeRegions" => json!({"TotalCount": 1, "RequestId": "fake-req",
            "RegionSet": [{"Region": "ap-shanghai", "RegionName": "East China (Shanghai)", "RegionState": "AVAILABLE"}]}),
        "ListUsers" => json!({"Data": w.users, "RequestId": "fake-req"}),
        "ListGroups" => paged(w.groups.clone(), "GroupInfo"),
        "ListGroupsForUser" => {
            let Some(uin) = int("SubUin") else {
                return missing("SubUin");
            };
            let ids = w.members.get(&uin).cloned().unwrap_or_default();
            let rows = w
                .groups
                .iter()
                .filter(|g| g["GroupId"].as_u64().is_some_and(|id| ids.contains(&id)))
                .cloned()
                .collect();
            paged(rows, "GroupInfo")
        }
        "ListAttachedGroupPolicies" => {
            let Some(group) = int("TargetGroupId") else {
                return missing("TargetGroupId");
            };
            let ids = w.group_policies.get(&group).cloned().unwrap_or_default();
            paged(
                ids.iter().map(|id| policy_row(*id, "PolicyType")).collect(),
                "List",
            )
        }
        "ListAttachedUserAllPolicies" => {
            let (Some(uin), Some(attach_type)) = (int("TargetUin"), int("AttachType")) else {
                return missing("TargetUin and AttachType");
            };
            let mut rows = Vec::new();
            if attach_type != 2 {
                for id in w.user_policies.get(&uin).into_iter().flatten() {
                    rows.push(policy_row(*id, "StrategyType"));
                }
            }
            if attach_type != 1 {
                for group in w.members.get(&uin).into_iter().flatten() {
                    for id in w.group_policies.get(group).into_iter().flatten() {
                        let mut row = policy_row(*id, "StrategyType");
                        row["Groups"] = json!([{"GroupId": group, "GroupName": "g"}]);
                        rows.push(row);
                    }
                }
            }
            paged(rows, "PolicyList")
        }
        "DescribeRoleList" => paged(w.roles.clone(), "List"),
        "ListAttachedRolePolicies" => {
            let Some(role) = params["RoleId"].as_str() else {
                return missing("RoleId");
            };
            let ids = w.role_policies.get(role).cloned().unwrap_or_default();
            paged(
                ids.iter().map(|id| policy_row(*id, "PolicyType")).collect(),
                "List",
            )
        }
        "GetPolicy" => match int("PolicyId").and_then(|id| w.policies.get(&id)) {
            Some(p) => p.clone(),
            None => error("ResourceNotFound.PolicyIdNotFound", "policy not found"),
        },
        "ListAccessKeys" => {
            let Some(uin) = int("TargetUin") else {
                return missing("TargetUin");
            };
            json!({"AccessKeys": w.keys.get(&uin).cloned().unwrap_or_default(), "RequestId": "fake-req"})
        }
        "GetSecurityLastUsed" => {
            let ids: Vec<&str> = params["SecretIdList"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if ids.is_empty() || ids.len() > 10 {
                return error("InvalidParameter", "SecretIdList holds 1 to 10 ids");
            }
            let rows: Vec<Value> = ids
                .iter()
                .filter_map(|id| w.last_used.get(id).cloned())
                .collect();
            json!({"SecretIdLastUsedRows": rows, "RequestId": "fake-req"})
        }
        "DescribeSubAccounts" => {
            let uins: Vec<u64> = params["FilterSubAccountUin"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .collect();
            if uins.is_empty() || uins.len() > 50 {
                return error("InvalidParameter", "FilterSubAccountUin holds 1 to 50 UINs");
            }
            let rows: Vec<Value> = uins
                .iter()
                .filter_map(|u| w.last_login.get(u).cloned())
                .collect();
            json!({"SubAccounts": rows, "RequestId": "fake-req"})
        }
        other => error(
            "InvalidAction",
            &format!("unknown action {other} for the fake"),
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

fn cloud(url: &str, secret_key: &str) -> TencentCloud {
    let account = AccountConfig {
        name: "tc".into(),
        provider: CloudKind::Tencent,
        credentials: CredentialsConfig::default(),
        features: vec![Feature::Entitlements],
        regions: Default::default(),
        region_management: true,
        intervals: Default::default(),
        endpoints: [("cam", url), ("sts", url)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        home_region: Some("ap-shanghai".into()),
    };
    TencentCloud::new(
        &account,
        Credentials {
            access_key_id: SECRET_ID.into(),
            secret_access_key: secret_key.into(),
            session_token: None,
        },
    )
    .expect("client")
}

fn user(
    uid: u64,
    name: &str,
    alt: &str,
    created_ms: i64,
    groups: &[&str],
    attached: &[&str],
) -> Principal {
    Principal {
        kind: PrincipalType::User,
        uid: uid.to_string(),
        name: name.into(),
        alt_uid: Some(alt.into()),
        created_ms: Some(created_ms),
        last_used_ms: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        attached: attached.iter().map(|a| a.to_string()).collect(),
        inline: vec![],
        trust: None,
        service_linked: false,
    }
}

fn group(uid: &str, name: &str, created_ms: i64, attached: &[&str]) -> Principal {
    Principal {
        kind: PrincipalType::Group,
        uid: uid.into(),
        name: name.into(),
        alt_uid: None,
        created_ms: Some(created_ms),
        last_used_ms: None,
        groups: vec![],
        attached: attached.iter().map(|a| a.to_string()).collect(),
        inline: vec![],
        trust: None,
        service_linked: false,
    }
}

fn role(
    name: &str,
    id: &str,
    created_ms: i64,
    trust: Value,
    attached: &[&str],
    service_linked: bool,
) -> Principal {
    let arn = format!("qcs::cam::uin/{OWNER}:roleName/{name}");
    Principal {
        kind: PrincipalType::Role,
        uid: arn.clone(),
        name: name.into(),
        alt_uid: Some(id.into()),
        created_ms: Some(created_ms),
        last_used_ms: None,
        groups: vec![],
        attached: attached.iter().map(|a| a.to_string()).collect(),
        inline: vec![],
        trust: Some(Policy {
            uid: format!("{arn}/trust"),
            name: "trust".into(),
            kind: PolicyKind::Trust,
            version: None,
            document: Some(trust),
        }),
        service_linked,
    }
}

fn policy(uid: &str, name: &str, kind: PolicyKind, document: Option<Value>) -> Policy {
    Policy {
        uid: uid.into(),
        name: name.into(),
        kind,
        version: None,
        document,
    }
}

fn key(
    id: &str,
    owner: u64,
    status: &str,
    created_ms: i64,
    last_used_ms: Option<i64>,
) -> Credential {
    Credential {
        kind: CredentialKind::AccessKey,
        uid: id.into(),
        principal_uid: owner.to_string(),
        status: Some(status.into()),
        created_ms: Some(created_ms),
        last_used_ms,
        last_used_service: None,
    }
}

#[tokio::test]
async fn cam_entitlements_match_the_account_and_every_request_is_signed() {
    let mut w = world();
    // CAM allows ListAttachedUserAllPolicies 5 times a second: a throttled call is retried.
    w.throttle_once.insert("ListAttachedUserAllPolicies");
    let fake = start(w);
    let cloud = cloud(&fake.url, SECRET_KEY);
    let got = cloud.entitlements().await.expect("entitlements");

    let expected = Entitlements {
        principals: vec![
            user(ALICE, "alice", "11", 1704848400000, &["90001"], &[]),
            user(BOB, "bob", "12", 1706745600000, &[], &["1", "1001", "2001"]),
            group("90001", "ops", 1704420000000, &["1001", "2002"]),
            group("90002", "empty", 1704506400000, &[]),
            group("90003", "auditors", 1704592800000, &["1"]),
            role(
                "deployer",
                "4611686018427000001",
                1709607600000,
                trust_doc(),
                &["2001"],
                false,
            ),
            role(
                "TAT_QCSLinkedRoleInCommand",
                "4611686018427000002",
                1606529152000,
                tat_trust_doc(),
                &["1001"],
                true,
            ),
        ],
        policies: vec![
            policy(
                "1",
                "AdministratorAccess",
                PolicyKind::CloudManaged,
                Some(admin_doc()),
            ),
            policy(
                "1001",
                "QcloudCVMReadOnlyAccess",
                PolicyKind::CloudManaged,
                Some(cvm_read_doc()),
            ),
            policy(
                "2001",
                "deploy-custom",
                PolicyKind::Managed,
                Some(deploy_doc()),
            ),
            // Its document is not JSON: kept, without the document.
            policy("2002", "broken-doc", PolicyKind::Managed, None),
        ],
        credentials: vec![
            // Status 0 is Inactive; only the day of last use is known (midnight Beijing time).
            key(
                "AKIDalice0001",
                ALICE,
                "Inactive",
                1704848700000,
                Some(1711900800000),
            ),
            key(
                "AKIDbob0001",
                BOB,
                "Active",
                1706746200000,
                Some(1714640000000),
            ),
            key("AKIDbob0002", BOB, "Active", 1709265600000, None),
            Credential {
                kind: CredentialKind::ConsolePassword,
                uid: format!("{BOB}#password"),
                principal_uid: BOB.to_string(),
                status: Some("Active".into()),
                created_ms: None,
                last_used_ms: Some(1714699800000),
                last_used_service: None,
            },
        ],
        documents: true,
    };
    // Field by field first, for a readable failure.
    assert_eq!(got.principals, expected.principals);
    assert_eq!(got.policies, expected.policies);
    assert_eq!(got.credentials, expected.credentials);
    assert_eq!(got, expected);
    // The deny and the wildcard action of the custom policy survive as parsed JSON.
    let deploy = &got.policies[2].document.as_ref().expect("document")["statement"];
    assert_eq!(deploy[1]["effect"], "deny");
    assert_eq!(deploy[0]["action"][0], "cvm:*");

    let w = fake.world.lock().expect("lock");
    let log = &w.log;
    assert!(!log.is_empty());
    for l in log {
        assert!(l.verified, "unverified request: {l:?}");
        assert_eq!(l.region, "ap-shanghai", "{l:?}");
        // Every call is one `accounts check` names.
        assert!(
            cloud
                .entitlements_call()
                .contains(&format!("{}:{}", l.service, l.action)),
            "{} not in {}",
            l.action,
            cloud.entitlements_call()
        );
    }
    let calls = |action: &str| -> Vec<&Value> {
        log.iter()
            .filter(|l| l.action == action)
            .map(|l| &l.params)
            .collect()
    };
    // Three groups at two per page: two pages, then each group's policies once.
    assert_eq!(calls("ListGroups").len(), 2);
    let group_ids: BTreeSet<u64> = calls("ListAttachedGroupPolicies")
        .iter()
        .filter_map(|p| p["TargetGroupId"].as_u64())
        .collect();
    assert_eq!(calls("ListAttachedGroupPolicies").len(), 3);
    assert_eq!(group_ids, BTreeSet::from([90001, 90002, 90003]));
    // Direct attachments only (the group's are on the group), Bob's three over two pages.
    let direct = calls("ListAttachedUserAllPolicies");
    assert!(direct.iter().all(|p| p["AttachType"] == 1), "{direct:?}");
    let bob_pages: Vec<u64> = direct
        .iter()
        .filter(|p| p["TargetUin"] == BOB)
        .filter_map(|p| p["Page"].as_u64())
        .collect();
    assert_eq!(bob_pages, vec![1, 2]);
    // Alice's first request was throttled and asked again.
    let alice_pages: Vec<u64> = direct
        .iter()
        .filter(|p| p["TargetUin"] == ALICE)
        .filter_map(|p| p["Page"].as_u64())
        .collect();
    assert_eq!(alice_pages, vec![1, 1]);
    // Each distinct policy fetched once.
    let fetched: Vec<u64> = calls("GetPolicy")
        .iter()
        .filter_map(|p| p["PolicyId"].as_u64())
        .collect();
    assert_eq!(fetched, vec![1, 1001, 2001, 2002]);
    assert_eq!(
        calls("GetSecurityLastUsed"),
        vec![&json!({"SecretIdList": ["AKIDalice0001", "AKIDbob0001", "AKIDbob0002"]})]
    );
    assert_eq!(
        calls("DescribeSubAccounts"),
        vec![&json!({"FilterSubAccountUin": [BOB]})]
    );
    assert_eq!(calls("ListAccessKeys").len(), 2);
    assert_eq!(calls("GetCallerIdentity").len(), 1);
}

/// A failed CAM call fails the run with an ApiError naming the call. GetPolicy is no
/// exception: an attached policy recorded without its document would read as one that grants
/// nothing, so the sync keeps its previous picture rather than record an incomplete one.
#[tokio::test]
async fn cam_errors_fail_the_run_naming_the_call() {
    let mut w = world();
    w.denied.push("GetPolicy");
    let fake = start(w);
    let e: ApiError = cloud(&fake.url, SECRET_KEY)
        .entitlements()
        .await
        .expect_err("GetPolicy is denied");
    assert_eq!(e.call, "GetPolicy");
    assert_eq!(e.failure, Failure::Denied);
    assert_eq!(e.code.as_deref(), Some("AuthFailure.UnauthorizedOperation"));
    assert_eq!(
        e.to_string(),
        "GetPolicy: AuthFailure.UnauthorizedOperation: you are not authorized to perform this operation"
    );
    assert_eq!(
        fake.world
            .lock()
            .expect("lock")
            .log
            .last()
            .map(|l| l.action.clone()),
        Some("GetPolicy".to_string())
    );

    // A wrong secret key: the fake rejects the signature of the first call.
    let fake = start(world());
    let wrong = "not-the-fake-cam-secret";
    let e = cloud(&fake.url, wrong)
        .entitlements()
        .await
        .expect_err("bad signature");
    assert_eq!(e.call, "GetCallerIdentity");
    assert_eq!(e.failure, Failure::InvalidKey);
    assert_eq!(e.code.as_deref(), Some("AuthFailure.SignatureFailure"));
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains(wrong) && !text.contains(SECRET_KEY),
        "{text}"
    );
    let w = fake.world.lock().expect("lock");
    assert_eq!(w.log.len(), 1);
    assert!(!w.log[0].verified);
}

#[tokio::test]
async fn cam_server_that_ignores_page_is_an_error_not_a_loop() {
    let mut w = world();
    w.ignore_page = true;
    let fake = start(w);
    let e = cloud(&fake.url, SECRET_KEY)
        .entitlements()
        .await
        .expect_err("pages repeat");
    assert_eq!(e.call, "ListGroups");
    assert_eq!(e.failure, Failure::Other);
    assert!(e.message.contains("does not honour Page"), "{}", e.message);
    assert_eq!(
        fake.world
            .lock()
            .expect("lock")
            .log
            .iter()
            .filter(|l| l.action == "ListGroups")
            .count(),
        2
    );
}

// ---- End to end through the binary: replay CloudAudit events, sync, read the lake. ----

const DEPLOYER_ID: &str = "4611686018427000001";
const DAY: i64 = 86_400;

/// The role ARN as cam.rs builds it, which a role session's `sessionContext.roleArn` carries.
fn role_arn(name: &str) -> String {
    format!("qcs::cam::uin/{OWNER}:roleName/{name}")
}

/// A CloudAudit event (current shape: Unix seconds, sessionContext as JSON text) by `identity`
/// calling `service:name` at `time` (Unix seconds).
fn audit_event(id: &str, time: i64, identity: Value, action: &str) -> String {
    let (service, name) = action.split_once(':').expect("service:Action");
    json!({
        "userIdentity": identity,
        "eventTime": time,
        "eventSource": format!("{service}.tencentcloudapi.com"),
        "eventName": name,
        "eventRegion": "ap-shanghai",
        "eventType": "ApiCall",
        "eventVersion": 2,
        "sourceIPAddress": "203.0.113.20",
        "requestID": format!("req-{id}"),
        "eventID": id,
        "errorCode": 0
    })
    .to_string()
}

fn identity(kind: &str, principal: &str, secret_id: &str, session: Value) -> Value {
    json!({"type": kind, "principalId": principal, "accountId": OWNER.to_string(),
           "secretId": secret_id, "userName": "", "sessionContext": session.to_string()})
}

/// The lake the sync compares against, written by `auditlake replay` from CloudAudit events:
/// - bob, two days ago, `cvm:DescribeInstances` with his key AKIDbob0001;
/// - the `deployer` role (granted `cvm:*` and `cos:PutObject`), two hours ago, a session
///   calling `cvm:RunInstances` twice: of the cvm actions the lake knows it used only that one;
/// - the root account, two hours ago, `cam:ListUsers`.
///
/// The recent events share one second, so they are one date partition whatever the hour.
fn replay_fixture(dir: &Path) -> PathBuf {
    let now = chrono::Utc::now().timestamp();
    let recent = now - 2 * 3600;
    let bob = identity(
        "CAMUser",
        &BOB.to_string(),
        "AKIDbob0001",
        json!({"uin": BOB, "ownerUin": OWNER}),
    );
    let session = identity(
        "AssumedRole",
        &format!("{DEPLOYER_ID}:ci-deploy"),
        "AKIDtmpdeploy",
        json!({"uin": OWNER, "ownerUin": OWNER, "roleArn": role_arn("deployer"), "token": "t0k"}),
    );
    let root = identity(
        "Root",
        &OWNER.to_string(),
        "AKIDroot0001",
        json!({"uin": OWNER, "ownerUin": OWNER}),
    );
    let events = [
        audit_event("ev-bob-1", now - 2 * DAY, bob, "cvm:DescribeInstances"),
        audit_event("ev-role-1", recent, session.clone(), "cvm:RunInstances"),
        audit_event("ev-role-2", recent, session, "cvm:RunInstances"),
        audit_event("ev-root-1", recent, root, "cam:ListUsers"),
    ];
    let input = dir.join("cloudaudit.json");
    std::fs::write(&input, events.join("\n")).expect("write events");
    let lake = dir.join("lake");
    let (code, stdout, stderr) = run(&[
        "replay",
        input.to_str().expect("path"),
        "--out",
        lake.to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "replay: {stdout}\n{stderr}");
    let seen = duckdb(&format!(
        "select count(*), count(distinct account) from {}",
        dataset(&lake, "ciem_events")
    ));
    assert_eq!(seen, vec![vec![json!(4), json!(1)]], "{stdout}");
    lake
}

/// Runs the binary with the fake account's key in the environment: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env("TC_ID", SECRET_ID)
        .env("TC_KEY", SECRET_KEY)
        .output()
        .expect("run auditlake");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn accounts_file(dir: &Path, lake: &Path, url: &str) -> PathBuf {
    let path = dir.join("accounts.toml");
    let text = format!(
        r#"lake = "{lake}"

[[account]]
name = "tc"
provider = "tencent"
features = ["entitlements"]
home_region = "ap-shanghai"

[account.credentials]
access_key_id_env = "TC_ID"
secret_access_key_env = "TC_KEY"

[account.endpoints]
sts = "{url}"
region = "{url}"
cam = "{url}"
"#,
        lake = lake.display()
    );
    std::fs::write(&path, text).expect("accounts file");
    path
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// (kind, principal_name, resource_uid) of the findings of one run.
fn finding_keys(lake: &Path, run_id: &str) -> Vec<Vec<Value>> {
    duckdb(&format!(
        "select kind, principal_name, resource_uid from {} where run_id = '{run_id}' order by all",
        dataset(lake, "ciem_findings")
    ))
}

fn finding(kind: &str, principal: &str, resource: Option<&str>) -> Vec<Value> {
    vec![json!(kind), json!(principal), json!(resource)]
}

#[test]
fn sync_writes_tencent_entitlements_and_findings_against_replayed_cloudaudit_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = replay_fixture(dir.path());
    let mut w = world();
    // A second user role that nobody used.
    w.roles.push(json!({"RoleId": "4611686018427000003", "RoleName": "readonly-ci",
        "PolicyDocument": trust_doc().to_string(), "Description": "", "AddTime": "2024-03-06 11:00:00",
        "UpdateTime": "2024-03-06 11:00:00", "ConsoleLogin": 0, "RoleType": "user",
        "SessionDuration": 3600, "Tags": []}));
    w.role_policies
        .insert("4611686018427000003".into(), vec![1001]);
    let fake = start(w);
    let config = accounts_file(dir.path(), &lake, &fake.url);
    let config = config.to_str().expect("path");

    let (code, stdout, stderr) = run(&["sync", "--config", config, "--once"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(SECRET_KEY) && !stderr.contains(SECRET_KEY),
        "{stdout}\n{stderr}"
    );

    let ent = dataset(&lake, "entitlements");
    // One run; rows per principal (groups hold their policies directly; `empty` holds none).
    let runs = duckdb(&format!(
        "select count(distinct run_id), count(*), min(cloud_account_uid), min(account) from {ent}"
    ));
    assert_eq!(
        runs,
        vec![vec![
            json!(1),
            json!(23),
            json!(OWNER.to_string()),
            json!(OWNER.to_string())
        ]]
    );
    let per_principal = duckdb(&format!(
        "select principal_type, principal_name, count(*) from {ent} group by all order by all"
    ));
    assert_eq!(
        per_principal,
        vec![
            vec![json!("group"), json!("auditors"), json!(1)],
            vec![json!("group"), json!("ops"), json!(3)],
            vec![json!("role"), json!("TAT_QCSLinkedRoleInCommand"), json!(3)],
            vec![json!("role"), json!("deployer"), json!(4)],
            vec![json!("role"), json!("readonly-ci"), json!(3)],
            vec![json!("user"), json!("alice"), json!(3)],
            vec![json!("user"), json!("bob"), json!(6)],
        ]
    );
    // Alice holds everything through the `ops` group, the unreadable document included.
    let alice = duckdb(&format!(
        "select principal_uid, via, via_uid, policy_uid, policy_name, policy_type, effect, action, resource, policy_error
         from {ent} where principal_name = 'alice' order by policy_uid, action"
    ));
    let ops =
        |policy: &str, name: &str, effect: Value, action: Value, resource: Value, error: Value| {
            vec![
                json!(ALICE.to_string()),
                json!("group"),
                json!("90001"),
                json!(policy),
                json!(name),
                json!(if policy == "1001" {
                    "cloud_managed"
                } else {
                    "managed"
                }),
                effect,
                action,
                resource,
                error,
            ]
        };
    assert_eq!(
        alice,
        vec![
            ops(
                "1001",
                "QcloudCVMReadOnlyAccess",
                json!("Allow"),
                json!("cvm:Describe*"),
                json!("*"),
                Value::Null
            ),
            ops(
                "1001",
                "QcloudCVMReadOnlyAccess",
                json!("Allow"),
                json!("cvm:Inquiry*"),
                json!("*"),
                Value::Null
            ),
            ops(
                "2002",
                "broken-doc",
                Value::Null,
                Value::Null,
                Value::Null,
                json!("the cloud did not return a readable document")
            ),
        ]
    );
    // The deployer role: its trust policy (who may assume it) and the custom policy's Deny.
    let deployer = duckdb(&format!(
        "select principal_uid, via, policy_uid, policy_type, statement_index, effect, action, resource, trusted_principal
         from {ent} where principal_name = 'deployer' order by via, statement_index, action"
    ));
    let arn = role_arn("deployer");
    let direct = |index: i64, effect: &str, action: &str| {
        vec![
            json!(arn),
            json!("direct"),
            json!("2001"),
            json!("managed"),
            json!(index),
            json!(effect),
            json!(action),
            json!("*"),
            Value::Null,
        ]
    };
    assert_eq!(
        deployer,
        vec![
            direct(0, "Allow", "cos:PutObject"),
            direct(0, "Allow", "cvm:*"),
            direct(1, "Deny", "cam:*"),
            vec![
                json!(arn),
                json!("role_trust"),
                json!(format!("{arn}/trust")),
                json!("trust"),
                json!(0),
                json!("Allow"),
                json!("sts:AssumeRole"),
                Value::Null,
                json!(format!(r#"{{"qcs":["qcs::cam::uin/{OWNER}:root"]}}"#))
            ],
        ]
    );

    // The findings: (kind, principal, resource). The TAT role is service-linked: not judged.
    let runs = duckdb(&format!(
        "select distinct run_id, tracking_period_days from {}",
        dataset(&lake, "ciem_findings")
    ));
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0][1], json!(90));
    let sync_run = runs[0][0].as_str().expect("run_id").to_string();
    assert!(stdout.contains(&format!("run {sync_run}:")), "{stdout}");
    assert!(
        stdout.contains("tc: 23 entitlement rows, 12 CIEM findings"),
        "{stdout}"
    );
    let bob_password = format!("{BOB}#password");
    assert_eq!(
        finding_keys(&lake, &sync_run),
        vec![
            // AdministratorAccess (`*` on `*`), directly attached.
            finding("full_admin", "bob", Some("1")),
            finding("old_access_key", "bob", Some("AKIDbob0001")),
            finding("old_access_key", "bob", Some("AKIDbob0002")),
            finding("root_use", "root", None),
            // AKIDbob0001 was used in the lake; AKIDbob0002 never. Alice's key is inactive.
            finding("unused_access_key", "bob", Some("AKIDbob0002")),
            finding("unused_actions", "bob", Some("cvm")),
            finding("unused_actions", "deployer", Some("cvm")),
            finding(
                "unused_console_password",
                "bob",
                Some(bob_password.as_str())
            ),
            finding("unused_role", "readonly-ci", None),
            finding("unused_service", "bob", Some("cos")),
            finding("unused_service", "deployer", Some("cos")),
            finding("unused_user", "alice", None),
        ]
    );
    let detail = |kind: &str, principal: &str, fields: &str| -> Vec<Value> {
        duckdb(&format!(
            "select {fields} from {} where run_id = '{sync_run}' and kind = '{kind}' and principal_name = '{principal}'",
            dataset(&lake, "ciem_findings")
        ))
        .into_iter()
        .next()
        .unwrap_or_default()
    };
    // `cvm:*` expanded against the cvm actions the lake knows: RunInstances used (twice, by a
    // session of the role), DescribeInstances (seen from bob) not.
    assert_eq!(
        detail(
            "unused_actions",
            "deployer",
            "principal_type, principal_uid, detail::json->>'used_actions', detail::json->>'unused_actions', detail::json->>'granted_by', catalog, last_activity_time is not null"
        ),
        vec![
            json!("role"),
            json!(role_arn("deployer")),
            json!(r#"["cvm:RunInstances"]"#),
            json!(r#"["cvm:DescribeInstances"]"#),
            json!(r#"["deploy-custom"]"#),
            json!("lake"),
            json!(true)
        ]
    );
    assert_eq!(
        detail(
            "unused_actions",
            "bob",
            "principal_uid, detail::json->>'used_actions', detail::json->>'unused_actions'"
        ),
        vec![
            json!(BOB.to_string()),
            json!(r#"["cvm:DescribeInstances"]"#),
            json!(r#"["cvm:RunInstances"]"#),
        ]
    );
    assert_eq!(
        detail(
            "root_use",
            "root",
            "principal_type, principal_uid, detail::json->>'events', detail::json->>'recent_actions'"
        ),
        vec![
            json!("root"),
            json!(OWNER.to_string()),
            json!("1"),
            json!(r#"["cam:ListUsers"]"#)
        ]
    );
    assert_eq!(
        detail(
            "unused_user",
            "alice",
            "principal_uid, detail::json->>'events_in_period'"
        ),
        vec![json!(ALICE.to_string()), json!("0")]
    );
    // The saved entitlements that `ciem findings` reads.
    assert!(
        lake.join("_auditlake/sync/tc.entitlements.json").is_file(),
        "no saved entitlements"
    );

    // A second run after deploy-custom is detached from the deployer role: a detach.
    fake.world
        .lock()
        .expect("lock")
        .role_policies
        .insert(DEPLOYER_ID.into(), vec![]);
    let (code, stdout, stderr) = run(&["sync", "--config", config, "--once"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(SECRET_KEY) && !stderr.contains(SECRET_KEY),
        "{stdout}\n{stderr}"
    );
    // Nor is it anywhere in the lake (Parquet, saved entitlements, snapshots).
    let files = walk(&lake);
    assert!(
        files.iter().any(|f| f.ends_with("tc.entitlements.json")),
        "{files:?}"
    );
    for file in files {
        let bytes = std::fs::read(&file).expect("read lake file");
        assert!(
            !bytes
                .windows(SECRET_KEY.len())
                .any(|w| w == SECRET_KEY.as_bytes()),
            "secret in {}",
            file.display()
        );
    }
    let changes = duckdb(&format!(
        "select change_type, resource_uid, resource_name from {} where origin = 'sync' order by all",
        dataset(&lake, "asset_changes")
    ));
    assert_eq!(
        changes,
        vec![vec![
            json!("detached"),
            json!(format!("{}|2001", role_arn("deployer"))),
            json!("deployer / deploy-custom")
        ]]
    );

    // Findings on demand over one day: bob's event (two days ago) falls out of the period, and
    // with it DescribeInstances from the catalog; the deployer now holds only its trust policy.
    let (code, stdout, stderr) = run(&[
        "ciem",
        "findings",
        "--config",
        config,
        "--tracking-period-days",
        "1",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        stdout,
        "tc: 10 findings over 1 days (3 events in 1 files; catalog lake)\n\
         \x20 full_admin               1\n\
         \x20 old_access_key           2\n\
         \x20 root_use                 1\n\
         \x20 unused_access_key        2\n\
         \x20 unused_console_password  1\n\
         \x20 unused_role              1\n\
         \x20 unused_user              2\n"
    );
    let runs = duckdb(&format!(
        "select run_id, tracking_period_days, count(*) from {} group by all order by tracking_period_days",
        dataset(&lake, "ciem_findings")
    ));
    assert_eq!(runs.len(), 3, "{runs:?}");
    let on_demand = runs[0][0].as_str().expect("run_id").to_string();
    assert!(on_demand.starts_with("tc-findings-"), "{on_demand}");
    assert_eq!(runs[0][1..], [json!(1), json!(10)]);
    assert_eq!(
        finding_keys(&lake, &on_demand),
        vec![
            finding("full_admin", "bob", Some("1")),
            finding("old_access_key", "bob", Some("AKIDbob0001")),
            finding("old_access_key", "bob", Some("AKIDbob0002")),
            finding("root_use", "root", None),
            finding("unused_access_key", "bob", Some("AKIDbob0001")),
            finding("unused_access_key", "bob", Some("AKIDbob0002")),
            finding(
                "unused_console_password",
                "bob",
                Some(bob_password.as_str())
            ),
            finding("unused_role", "readonly-ci", None),
            finding("unused_user", "alice", None),
            finding("unused_user", "bob", None),
        ]
    );
}
