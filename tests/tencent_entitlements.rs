//! Tencent Cloud entitlements (`TencentCloud::entitlements`) against a fake CAM server in this
//! test: it verifies every request's TC3-HMAC-SHA256 signature (AuthFailure.SignatureFailure
//! otherwise), checks the parameters CAM requires, and serves Page/Rp pages of at most two
//! items shaped like CAM 2019-01-16's answers.

mod fake_cloud;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use auditlake::ciem::model::{
    Credential, CredentialKind, Entitlements, Policy, PolicyKind, Principal, PrincipalType,
};
use auditlake::sync::config::{AccountConfig, CloudKind, Credentials, CredentialsConfig, Feature};
use auditlake::sync::sign::tc3;
use auditlake::sync::tencent::TencentCloud;
use auditlake::sync::{ApiError, Cloud, Failure};
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
    let service = if action == "GetCallerIdentity" {
        "sts"
    } else {
        "cam"
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
    }
}

fn role(name: &str, id: &str, created_ms: i64, trust: Value, attached: &[&str]) -> Principal {
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
            ),
            role(
                "TAT_QCSLinkedRoleInCommand",
                "4611686018427000002",
                1606529152000,
                tat_trust_doc(),
                &["1001"],
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
