//! Asset changes derived from audit events: a table of change-making calls per cloud. Only
//! successful calls count (a failed call changed nothing). Resource ids come from the request
//! or, where only the cloud knows them (e.g. RunInstances' instance ids), the response.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::{AssetChange, ChangeOrigin, ChangeType};
use crate::event::{CiemEvent, Provider, Text};

/// Where a rule finds the resources a call changed.
#[derive(Debug, Clone, Copy)]
enum Ids {
    /// A string at a path in the request (`req`) or response (`resp`), with an optional name
    /// path and related (link) path in the request.
    Field {
        from: Side,
        path: &'static [&'static str],
        name: Option<&'static [&'static str]>,
    },
    /// Every `key` of a list at `path` (objects), or the list's strings when key is empty.
    List {
        from: Side,
        path: &'static [&'static str],
        key: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Req,
    Resp,
}

/// What the state after the change is taken from.
#[derive(Debug, Clone, Copy)]
enum After {
    None,
    /// The whole request parameters.
    Request,
    /// The list item (for list ids) or the whole response.
    Item,
}

/// One change-making call.
#[derive(Debug, Clone, Copy)]
struct Rule {
    provider: Provider,
    service: &'static str,
    operation: &'static str,
    resource_type: &'static str,
    native_type: &'static str,
    change: ChangeType,
    ids: Ids,
    /// (related type, candidate request paths) for links: the user an access key or policy
    /// belongs to.
    related: Option<(&'static str, &'static [&'static [&'static str]])>,
    after: After,
    /// Whether the asset is regional (global ones get no region).
    regional: bool,
}

const fn field(from: Side, path: &'static [&'static str]) -> Ids {
    Ids::Field {
        from,
        path,
        name: None,
    }
}

const fn named(from: Side, path: &'static [&'static str], name: &'static [&'static str]) -> Ids {
    Ids::Field {
        from,
        path,
        name: Some(name),
    }
}

#[allow(clippy::too_many_arguments)]
const fn rule(
    provider: Provider,
    service: &'static str,
    operation: &'static str,
    resource_type: &'static str,
    native_type: &'static str,
    change: ChangeType,
    ids: Ids,
    after: After,
) -> Rule {
    Rule {
        provider,
        service,
        operation,
        resource_type,
        native_type,
        change,
        ids,
        related: None,
        after,
        regional: true,
    }
}

const fn global(mut r: Rule) -> Rule {
    r.regional = false;
    r
}

const fn linked(mut r: Rule, ty: &'static str, paths: &'static [&'static [&'static str]]) -> Rule {
    r.related = Some((ty, paths));
    r
}

use ChangeType::{Attached, Created, Deleted, Detached, Modified};
use Provider::{Aws, Tencent};
use Side::{Req, Resp};

const INSTANCE: &str = "AWS::EC2::Instance";
const SG: &str = "AWS::EC2::SecurityGroup";
const BUCKET: &str = "AWS::S3::Bucket";
const REQ_INSTANCES: Ids = Ids::List {
    from: Req,
    path: &["instancesSet", "items"],
    key: "instanceId",
};
const REQ_GROUP: Ids = named(Req, &["groupId"], &["groupName"]);
const REQ_BUCKET: Ids = field(Req, &["bucketName"]);
const IAM_USER: Ids = field(Req, &["userName"]);
const IAM_ROLE: Ids = field(Req, &["roleName"]);
const POLICY_ARN: Ids = field(Req, &["policyArn"]);
const KEY_ID: Ids = field(Req, &["accessKeyId"]);
const USER_NAME: &[&[&str]] = &[&["userName"]];

const TC_SG: Ids = field(Req, &["SecurityGroupId"]);
const TC_BUCKET: Ids = field(Req, &["bucketName"]);

/// The change-making calls. A call not listed here changes no tracked asset.
#[rustfmt::skip]
static RULES: &[Rule] = &[
    // AWS EC2 instances
    rule(Aws, "ec2", "RunInstances", "host", INSTANCE, Created,
        Ids::List { from: Resp, path: &["instancesSet", "items"], key: "instanceId" }, After::Item),
    rule(Aws, "ec2", "TerminateInstances", "host", INSTANCE, Deleted, REQ_INSTANCES, After::None),
    rule(Aws, "ec2", "StartInstances", "host", INSTANCE, Modified, REQ_INSTANCES, After::None),
    rule(Aws, "ec2", "StopInstances", "host", INSTANCE, Modified, REQ_INSTANCES, After::None),
    // AWS EC2 security groups
    rule(Aws, "ec2", "CreateSecurityGroup", "security_group", SG, Created,
        named(Resp, &["groupId"], &["groupName"]), After::Request),
    rule(Aws, "ec2", "DeleteSecurityGroup", "security_group", SG, Deleted, REQ_GROUP, After::None),
    rule(Aws, "ec2", "AuthorizeSecurityGroupIngress", "security_group", SG, Modified, REQ_GROUP, After::Request),
    rule(Aws, "ec2", "AuthorizeSecurityGroupEgress", "security_group", SG, Modified, REQ_GROUP, After::Request),
    rule(Aws, "ec2", "RevokeSecurityGroupIngress", "security_group", SG, Modified, REQ_GROUP, After::Request),
    rule(Aws, "ec2", "RevokeSecurityGroupEgress", "security_group", SG, Modified, REQ_GROUP, After::Request),
    // AWS S3 buckets
    global(rule(Aws, "s3", "CreateBucket", "bucket", BUCKET, Created, REQ_BUCKET, After::None)),
    global(rule(Aws, "s3", "DeleteBucket", "bucket", BUCKET, Deleted, REQ_BUCKET, After::None)),
    global(rule(Aws, "s3", "PutBucketPolicy", "bucket", BUCKET, Modified, REQ_BUCKET, After::Request)),
    global(rule(Aws, "s3", "DeleteBucketPolicy", "bucket", BUCKET, Modified, REQ_BUCKET, After::Request)),
    global(rule(Aws, "s3", "PutBucketAcl", "bucket", BUCKET, Modified, REQ_BUCKET, After::Request)),
    global(rule(Aws, "s3", "PutBucketPublicAccessBlock", "bucket", BUCKET, Modified, REQ_BUCKET, After::Request)),
    global(rule(Aws, "s3", "DeleteBucketPublicAccessBlock", "bucket", BUCKET, Modified, REQ_BUCKET, After::Request)),
    global(rule(Aws, "s3", "PutPublicAccessBlock", "bucket", BUCKET, Modified, REQ_BUCKET, After::Request)),
    global(rule(Aws, "s3", "DeletePublicAccessBlock", "bucket", BUCKET, Modified, REQ_BUCKET, After::Request)),
    // AWS IAM
    global(rule(Aws, "iam", "CreateUser", "user", "AWS::IAM::User", Created, IAM_USER, After::Item)),
    global(rule(Aws, "iam", "DeleteUser", "user", "AWS::IAM::User", Deleted, IAM_USER, After::None)),
    global(rule(Aws, "iam", "CreateRole", "role", "AWS::IAM::Role", Created, IAM_ROLE, After::Item)),
    global(rule(Aws, "iam", "DeleteRole", "role", "AWS::IAM::Role", Deleted, IAM_ROLE, After::None)),
    global(linked(rule(Aws, "iam", "CreateAccessKey", "access_key", "AWS::IAM::AccessKey", Created,
        field(Resp, &["accessKey", "accessKeyId"]), After::None), "user", &[&["userName"], &["accessKey", "userName"]])),
    global(linked(rule(Aws, "iam", "DeleteAccessKey", "access_key", "AWS::IAM::AccessKey", Deleted, KEY_ID, After::None), "user", USER_NAME)),
    global(linked(rule(Aws, "iam", "UpdateAccessKey", "access_key", "AWS::IAM::AccessKey", Modified, KEY_ID, After::Request), "user", USER_NAME)),
    global(linked(rule(Aws, "iam", "AttachUserPolicy", "policy", "AWS::IAM::ManagedPolicy", Attached, POLICY_ARN, After::None), "user", USER_NAME)),
    global(linked(rule(Aws, "iam", "DetachUserPolicy", "policy", "AWS::IAM::ManagedPolicy", Detached, POLICY_ARN, After::None), "user", USER_NAME)),
    global(linked(rule(Aws, "iam", "AttachRolePolicy", "policy", "AWS::IAM::ManagedPolicy", Attached, POLICY_ARN, After::None), "role", &[&["roleName"]])),
    global(linked(rule(Aws, "iam", "DetachRolePolicy", "policy", "AWS::IAM::ManagedPolicy", Detached, POLICY_ARN, After::None), "role", &[&["roleName"]])),
    global(linked(rule(Aws, "iam", "AttachGroupPolicy", "policy", "AWS::IAM::ManagedPolicy", Attached, POLICY_ARN, After::None), "group", &[&["groupName"]])),
    global(linked(rule(Aws, "iam", "DetachGroupPolicy", "policy", "AWS::IAM::ManagedPolicy", Detached, POLICY_ARN, After::None), "group", &[&["groupName"]])),
    global(linked(rule(Aws, "iam", "CreateLoginProfile", "login_profile", "AWS::IAM::LoginProfile", Created, IAM_USER, After::None), "user", USER_NAME)),
    global(linked(rule(Aws, "iam", "UpdateLoginProfile", "login_profile", "AWS::IAM::LoginProfile", Modified, IAM_USER, After::None), "user", USER_NAME)),
    global(linked(rule(Aws, "iam", "DeleteLoginProfile", "login_profile", "AWS::IAM::LoginProfile", Deleted, IAM_USER, After::None), "user", USER_NAME)),
    // AWS, beyond the minimum: instance attributes, rule edits, inline policies, trust
    // policies, policy versions, group membership
    rule(Aws, "ec2", "ModifyInstanceAttribute", "host", INSTANCE, Modified, field(Req, &["instanceId"]), After::Request),
    rule(Aws, "ec2", "ModifySecurityGroupRules", "security_group", SG, Modified,
        field(Req, &["ModifySecurityGroupRulesRequest", "GroupId"]), After::Request),
    global(linked(rule(Aws, "iam", "PutUserPolicy", "policy", "AWS::IAM::UserPolicy", Attached,
        field(Req, &["policyName"]), After::Request), "user", USER_NAME)),
    global(linked(rule(Aws, "iam", "DeleteUserPolicy", "policy", "AWS::IAM::UserPolicy", Detached,
        field(Req, &["policyName"]), After::None), "user", USER_NAME)),
    global(linked(rule(Aws, "iam", "PutRolePolicy", "policy", "AWS::IAM::RolePolicy", Attached,
        field(Req, &["policyName"]), After::Request), "role", &[&["roleName"]])),
    global(linked(rule(Aws, "iam", "DeleteRolePolicy", "policy", "AWS::IAM::RolePolicy", Detached,
        field(Req, &["policyName"]), After::None), "role", &[&["roleName"]])),
    global(rule(Aws, "iam", "UpdateAssumeRolePolicy", "role", "AWS::IAM::Role", Modified, IAM_ROLE, After::Request)),
    global(rule(Aws, "iam", "CreatePolicyVersion", "policy", "AWS::IAM::ManagedPolicy", Modified, POLICY_ARN, After::Request)),
    global(rule(Aws, "iam", "SetDefaultPolicyVersion", "policy", "AWS::IAM::ManagedPolicy", Modified, POLICY_ARN, After::Request)),
    global(linked(rule(Aws, "iam", "AddUserToGroup", "group", "AWS::IAM::Group", Attached,
        field(Req, &["groupName"]), After::None), "user", USER_NAME)),
    global(linked(rule(Aws, "iam", "RemoveUserFromGroup", "group", "AWS::IAM::Group", Detached,
        field(Req, &["groupName"]), After::None), "user", USER_NAME)),
    // Tencent CVM
    rule(Tencent, "cvm", "StartInstances", "host", "cvm/instance", Modified,
        Ids::List { from: Req, path: &["InstanceIds"], key: "" }, After::None),
    rule(Tencent, "cvm", "StopInstances", "host", "cvm/instance", Modified,
        Ids::List { from: Req, path: &["InstanceIds"], key: "" }, After::None),
    rule(Tencent, "cvm", "ModifyInstancesAttribute", "host", "cvm/instance", Modified,
        Ids::List { from: Req, path: &["InstanceIds"], key: "" }, After::Request),
    rule(Tencent, "vpc", "ModifySecurityGroupPolicies", "security_group", "vpc/securitygroup", Modified, TC_SG, After::Request),
    rule(Tencent, "vpc", "ReplaceSecurityGroupPolicy", "security_group", "vpc/securitygroup", Modified, TC_SG, After::Request),
    global(rule(Tencent, "cam", "CreateRole", "role", "cam/role", Created,
        named(Req, &["RoleName"], &["RoleName"]), After::Request)),
    global(rule(Tencent, "cam", "DeleteRole", "role", "cam/role", Deleted,
        named(Req, &["RoleName"], &["RoleName"]), After::None)),
    global(linked(rule(Tencent, "cam", "AttachRolePolicy", "policy", "cam/policy", Attached,
        field(Req, &["PolicyId"]), After::None), "role", &[&["AttachRoleName"], &["AttachRoleId"]])),
    global(linked(rule(Tencent, "cam", "DetachRolePolicy", "policy", "cam/policy", Detached,
        field(Req, &["PolicyId"]), After::None), "role", &[&["DetachRoleName"], &["DetachRoleId"]])),
    rule(Tencent, "cvm", "RunInstances", "host", "cvm/instance", Created,
        Ids::List { from: Resp, path: &["InstanceIdSet"], key: "" }, After::Request),
    rule(Tencent, "cvm", "TerminateInstances", "host", "cvm/instance", Deleted,
        Ids::List { from: Req, path: &["InstanceIds"], key: "" }, After::None),
    // Tencent VPC security groups
    rule(Tencent, "vpc", "CreateSecurityGroup", "security_group", "vpc/securitygroup", Created,
        named(Resp, &["SecurityGroup", "SecurityGroupId"], &["GroupName"]), After::Request),
    rule(Tencent, "vpc", "DeleteSecurityGroup", "security_group", "vpc/securitygroup", Deleted, TC_SG, After::None),
    rule(Tencent, "vpc", "CreateSecurityGroupPolicies", "security_group", "vpc/securitygroup", Modified, TC_SG, After::Request),
    rule(Tencent, "vpc", "DeleteSecurityGroupPolicies", "security_group", "vpc/securitygroup", Modified, TC_SG, After::Request),
    // Tencent CAM
    global(rule(Tencent, "cam", "AddUser", "user", "cam/user", Created, field(Req, &["Name"]), After::Item)),
    global(rule(Tencent, "cam", "DeleteUser", "user", "cam/user", Deleted, field(Req, &["Name"]), After::None)),
    global(linked(rule(Tencent, "cam", "CreateAccessKey", "access_key", "cam/accesskey", Created,
        field(Resp, &["AccessKey", "AccessKeyId"]), After::None), "user", &[&["TargetUin"]])),
    global(linked(rule(Tencent, "cam", "DeleteAccessKey", "access_key", "cam/accesskey", Deleted,
        field(Req, &["AccessKeyId"]), After::None), "user", &[&["TargetUin"]])),
    global(linked(rule(Tencent, "cam", "UpdateAccessKey", "access_key", "cam/accesskey", Modified,
        field(Req, &["AccessKeyId"]), After::Request), "user", &[&["TargetUin"]])),
    global(linked(rule(Tencent, "cam", "AttachUserPolicy", "policy", "cam/policy", Attached,
        field(Req, &["PolicyId"]), After::None), "user", &[&["AttachUin"]])),
    global(linked(rule(Tencent, "cam", "DetachUserPolicy", "policy", "cam/policy", Detached,
        field(Req, &["PolicyId"]), After::None), "user", &[&["DetachUin"]])),
    // Tencent COS
    rule(Tencent, "cos", "PutBucket", "bucket", "cos/bucket", Created, TC_BUCKET, After::None),
    rule(Tencent, "cos", "DeleteBucket", "bucket", "cos/bucket", Deleted, TC_BUCKET, After::None),
];

/// Rules by operation name: every event of every pipeline is looked up here.
fn rules_by_operation() -> &'static HashMap<&'static str, Vec<&'static Rule>> {
    static MAP: OnceLock<HashMap<&'static str, Vec<&'static Rule>>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map: HashMap<&'static str, Vec<&'static Rule>> = HashMap::new();
        for r in RULES {
            map.entry(r.operation).or_default().push(r);
        }
        map
    })
}

fn find_rule(e: &CiemEvent<'_>) -> Option<&'static Rule> {
    let operation = e.api_operation.as_deref()?;
    let candidates = rules_by_operation().get(operation)?;
    let service = e.service.as_deref()?;
    candidates
        .iter()
        .copied()
        .find(|r| r.provider == e.cloud_provider && r.service == service)
}

/// JSON text as a value; Tencent responses may be wrapped in `Response`.
fn parse(text: Option<&str>) -> Value {
    let v = text
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .unwrap_or(Value::Null);
    match v {
        Value::Object(mut m) if m.len() == 1 && m.contains_key("Response") => {
            m.remove("Response").unwrap_or(Value::Null)
        }
        other => other,
    }
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// A scalar as text (numbers too: Tencent UINs are numbers).
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Tags as a JSON object: AWS `tagSpecificationSet.items[].tags[{key,value}]`, Tencent
/// `TagSpecification[].Tags[{Key,Value}]`, or a plain list of such pairs.
fn tags_of(request: &Value, item: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let mut add_pairs = |list: &Value| {
        for t in list.as_array().into_iter().flatten() {
            let k = t
                .get("key")
                .or_else(|| t.get("Key"))
                .and_then(Value::as_str);
            let v = t.get("value").or_else(|| t.get("Value"));
            if let (Some(k), Some(v)) = (k, v) {
                out.insert(k.to_string(), v.clone());
            }
        }
    };
    if let Some(item) = item
        && let Some(items) = at(item, &["tagSet", "items"])
    {
        add_pairs(items);
    }
    for spec in at(request, &["tagSpecificationSet", "items"])
        .or_else(|| request.get("TagSpecification"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(list) = at(spec, &["tags"]).or_else(|| spec.get("Tags")) {
            add_pairs(list);
        }
    }
    out
}

fn owned(text: &Option<Text<'_>>) -> Option<String> {
    text.as_deref().map(str::to_string)
}

/// The asset changes an audit event records; empty for reads, failures and untracked calls.
pub fn changes(e: &CiemEvent<'_>) -> Vec<AssetChange> {
    if e.status_id != 1 {
        return Vec::new();
    }
    let Some(rule) = find_rule(e) else {
        return Vec::new();
    };
    let request = parse(e.request_data.as_deref());
    // Most rules find everything in the request: the response is parsed only when asked for.
    let response_cell = std::cell::OnceCell::new();
    let response = || response_cell.get_or_init(|| parse(e.response_data.as_deref()));
    let side = |s: Side| match s {
        Side::Req => &request,
        Side::Resp => response(),
    };
    // (uid, name, the item it came from)
    let mut found: Vec<(String, Option<String>, Option<&Value>)> = Vec::new();
    match rule.ids {
        Ids::Field { from, path, name } => {
            let uid = text(at(side(from), path));
            let name = name.and_then(|p| text(at(&request, p)).or_else(|| text(at(response(), p))));
            if let Some(uid) = uid {
                found.push((uid, name, None));
            } else if let Some(name) = name {
                // e.g. DeleteSecurityGroup by name in a default VPC
                found.push((name.clone(), Some(name), None));
            }
        }
        Ids::List { from, path, key } => {
            for item in at(side(from), path)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let uid = if key.is_empty() {
                    text(Some(item))
                } else {
                    text(item.get(key))
                };
                if let Some(uid) = uid {
                    found.push((uid, None, Some(item)));
                }
            }
        }
    }
    // S3 and COS: some records name the bucket only in `resources`.
    if found.is_empty() && rule.resource_type == "bucket" {
        let from_request = ["bucketName", "Bucket", "bucket"]
            .iter()
            .find_map(|k| text(request.get(*k)));
        let from_resources = e.resources.iter().find_map(|r| {
            r.name
                .as_deref()
                .map(str::to_string)
                .or_else(|| {
                    // `qcs::cos:ap-guangzhou:uid/1250000000:bucket-1250000000/` → the bucket
                    r.uid.as_deref().map(|u| {
                        let u = u.trim_end_matches('/');
                        u.rsplit([':', '/']).next().unwrap_or(u).to_string()
                    })
                })
                .filter(|s| !s.is_empty() && s != "*")
        });
        if let Some(b) = from_request.or(from_resources) {
            found.push((b, None, None));
        }
    }
    let related = rule.related.and_then(|(ty, paths)| {
        paths
            .iter()
            .find_map(|p| text(at(&request, p)).or_else(|| text(at(response(), p))))
            .map(|uid| (ty, uid))
    });
    let request_tags = tags_of(&request, None);
    found
        .into_iter()
        .map(|(uid, name, item)| {
            let mut tags = request_tags.clone();
            if let Some(item) = item {
                tags.extend(tags_of(&Value::Null, Some(item)));
            }
            let name =
                name.or_else(|| tags.get("Name").and_then(Value::as_str).map(str::to_string));
            let after = match rule.after {
                After::None => None,
                After::Request => owned(&e.request_data),
                After::Item => match item {
                    Some(item) => Some(item.to_string()),
                    None => owned(&e.response_data).or_else(|| owned(&e.request_data)),
                },
            };
            AssetChange {
                time_ms: e.time_ms,
                cloud_provider: e.cloud_provider,
                cloud_account_uid: owned(&e.cloud_account_uid),
                cloud_region: if rule.regional {
                    owned(&e.cloud_region)
                } else {
                    None
                },
                resource_type: rule.resource_type.to_string(),
                native_type: Some(rule.native_type.to_string()),
                resource_uid: uid,
                resource_name: name,
                change_type: rule.change,
                origin: ChangeOrigin::Audit,
                action: owned(&e.action),
                related_type: related.as_ref().map(|(t, _)| t.to_string()),
                related_uid: related.as_ref().map(|(_, u)| u.clone()),
                actor_user_uid: owned(&e.actor_user_uid),
                actor_user_name: owned(&e.actor_user_name),
                actor_credential_uid: owned(&e.actor_credential_uid),
                source_event_id: Some(e.metadata_uid.to_string()),
                sync_run_id: None,
                before_state: None,
                after_state: after,
                tags: (!tags.is_empty()).then(|| Value::Object(tags).to_string()),
                ingest_time_ms: e.ingest_time_ms,
            }
        })
        .collect()
}

/// The calls this module tracks, as `provider service:Operation` (for documentation).
pub fn tracked_calls() -> impl Iterator<Item = String> {
    RULES
        .iter()
        .map(|r| format!("{} {}:{}", r.provider.as_str(), r.service, r.operation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_has_one_rule_and_the_docs_list_it() {
        let calls: Vec<String> = tracked_calls().collect();
        let unique: std::collections::HashSet<&String> = calls.iter().collect();
        assert_eq!(unique.len(), calls.len(), "a call has two rules");
        // docs/accounts.md names calls in groups (`Create/DeleteUser`): look for the verb-less noun.
        let readme = include_str!("../../docs/accounts.md");
        const VERBS: &[&str] = &[
            "Create",
            "Delete",
            "Put",
            "Update",
            "Attach",
            "Detach",
            "Authorize",
            "Revoke",
            "Run",
            "Terminate",
            "Start",
            "Stop",
            "Add",
        ];
        for r in RULES {
            let noun = VERBS
                .iter()
                .find_map(|v| r.operation.strip_prefix(v))
                .unwrap_or(r.operation);
            assert!(
                readme.contains(noun),
                "docs/accounts.md does not mention {}",
                r.operation
            );
        }
    }
}
