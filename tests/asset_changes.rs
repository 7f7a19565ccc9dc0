//! Asset changes derived from audit events: replay fixtures with a successful and a failed
//! call of every tracked call, read `asset_changes` back with DuckDB.

mod common;

use common::*;
use serde_json::{Value, json};

fn replay_fixtures() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let out = auditlake(&[
        "replay",
        fixtures().join("asset-changes").to_str().expect("path"),
        "--out",
        lake.to_str().expect("path"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, lake, stdout)
}

#[test]
fn every_tracked_call_yields_its_change_and_failed_calls_none() {
    let (_dir, lake, stdout) = replay_fixtures();
    assert!(stdout.contains("97 events written"), "{stdout}");
    assert!(stdout.contains("50 asset changes"), "{stdout}");
    let changes = dataset(&lake, "asset_changes");

    // Failed calls changed nothing: no row points at a failed event.
    assert_eq!(
        scalar(&format!(
            "select count(*) from {changes} where source_event_id like '%-fail'"
        )),
        json!(0)
    );
    // Every successful tracked call produced at least one row.
    let calls = duckdb(&format!(
        "select count(distinct source_event_id) from {changes} where origin = 'audit'"
    ));
    assert_eq!(calls, vec![vec![json!(48)]]);

    let rows = duckdb(&format!(
        "select cloud_provider, action, resource_type, native_type, resource_uid, coalesce(resource_name, ''), \
         change_type, coalesce(related_type, ''), coalesce(related_uid, ''), coalesce(cloud_region, '') \
         from {changes} order by cloud_provider, time, resource_uid"
    ));
    let got: Vec<String> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.as_str().unwrap_or("?").to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let expected = [
        "aws ec2:RunInstances host AWS::EC2::Instance i-0aaa0000000000001 web created   us-east-1",
        "aws ec2:RunInstances host AWS::EC2::Instance i-0aaa0000000000002 web created   us-east-1",
        "aws ec2:TerminateInstances host AWS::EC2::Instance i-0aaa0000000000001  deleted   us-east-1",
        "aws ec2:StartInstances host AWS::EC2::Instance i-0aaa0000000000001  modified   us-east-1",
        "aws ec2:StopInstances host AWS::EC2::Instance i-0aaa0000000000001  modified   us-east-1",
        "aws ec2:CreateSecurityGroup security_group AWS::EC2::SecurityGroup sg-0bbb000000000001 web-sg created   us-east-1",
        "aws ec2:DeleteSecurityGroup security_group AWS::EC2::SecurityGroup sg-0bbb000000000001  deleted   us-east-1",
        "aws ec2:AuthorizeSecurityGroupIngress security_group AWS::EC2::SecurityGroup sg-0bbb000000000001  modified   us-east-1",
        "aws ec2:AuthorizeSecurityGroupEgress security_group AWS::EC2::SecurityGroup sg-0bbb000000000001  modified   us-east-1",
        "aws ec2:RevokeSecurityGroupIngress security_group AWS::EC2::SecurityGroup sg-0bbb000000000001  modified   us-east-1",
        "aws ec2:RevokeSecurityGroupEgress security_group AWS::EC2::SecurityGroup sg-0bbb000000000001  modified   us-east-1",
        "aws s3:CreateBucket bucket AWS::S3::Bucket alice-data  created   ",
        "aws s3:DeleteBucket bucket AWS::S3::Bucket alice-data  deleted   ",
        "aws s3:PutBucketPolicy bucket AWS::S3::Bucket alice-data  modified   ",
        "aws s3:DeleteBucketPolicy bucket AWS::S3::Bucket alice-data  modified   ",
        "aws s3:PutBucketAcl bucket AWS::S3::Bucket alice-data  modified   ",
        "aws s3:PutBucketPublicAccessBlock bucket AWS::S3::Bucket alice-data  modified   ",
        "aws s3:DeleteBucketPublicAccessBlock bucket AWS::S3::Bucket alice-data  modified   ",
        "aws iam:CreateUser user AWS::IAM::User bob  created   ",
        "aws iam:DeleteUser user AWS::IAM::User bob  deleted   ",
        "aws iam:CreateRole role AWS::IAM::Role deployer  created   ",
        "aws iam:DeleteRole role AWS::IAM::Role deployer  deleted   ",
        "aws iam:CreateAccessKey access_key AWS::IAM::AccessKey AKIAEXAMPLEBOB01  created user bob ",
        "aws iam:UpdateAccessKey access_key AWS::IAM::AccessKey AKIAEXAMPLEBOB01  modified user bob ",
        "aws iam:DeleteAccessKey access_key AWS::IAM::AccessKey AKIAEXAMPLEBOB01  deleted user bob ",
        "aws iam:AttachUserPolicy policy AWS::IAM::ManagedPolicy arn:aws:iam::aws:policy/AdministratorAccess  attached user bob ",
        "aws iam:DetachUserPolicy policy AWS::IAM::ManagedPolicy arn:aws:iam::aws:policy/AdministratorAccess  detached user bob ",
        "aws iam:AttachRolePolicy policy AWS::IAM::ManagedPolicy arn:aws:iam::aws:policy/AdministratorAccess  attached role deployer ",
        "aws iam:DetachRolePolicy policy AWS::IAM::ManagedPolicy arn:aws:iam::aws:policy/AdministratorAccess  detached role deployer ",
        "aws iam:AttachGroupPolicy policy AWS::IAM::ManagedPolicy arn:aws:iam::aws:policy/AdministratorAccess  attached group admins ",
        "aws iam:DetachGroupPolicy policy AWS::IAM::ManagedPolicy arn:aws:iam::aws:policy/AdministratorAccess  detached group admins ",
        "aws iam:CreateLoginProfile login_profile AWS::IAM::LoginProfile bob  created user bob ",
        "aws iam:UpdateLoginProfile login_profile AWS::IAM::LoginProfile bob  modified user bob ",
        "aws iam:DeleteLoginProfile login_profile AWS::IAM::LoginProfile bob  deleted user bob ",
        "tencent cvm:RunInstances host cvm/instance ins-aaaa0001  created   ap-guangzhou",
        "tencent cvm:RunInstances host cvm/instance ins-aaaa0002  created   ap-guangzhou",
        "tencent cvm:TerminateInstances host cvm/instance ins-aaaa0001  deleted   ap-guangzhou",
        "tencent vpc:CreateSecurityGroup security_group vpc/securitygroup sg-tc000001 app-sg created   ap-guangzhou",
        "tencent vpc:CreateSecurityGroupPolicies security_group vpc/securitygroup sg-tc000001  modified   ap-guangzhou",
        "tencent vpc:DeleteSecurityGroupPolicies security_group vpc/securitygroup sg-tc000001  modified   ap-guangzhou",
        "tencent vpc:DeleteSecurityGroup security_group vpc/securitygroup sg-tc000001  deleted   ap-guangzhou",
        "tencent cam:AddUser user cam/user dave  created   ",
        "tencent cam:CreateAccessKey access_key cam/accesskey AKIDDAVE0001  created user 100000000009 ",
        "tencent cam:UpdateAccessKey access_key cam/accesskey AKIDDAVE0001  modified user 100000000009 ",
        "tencent cam:DeleteAccessKey access_key cam/accesskey AKIDDAVE0001  deleted user 100000000009 ",
        "tencent cam:AttachUserPolicy policy cam/policy 1  attached user 100000000009 ",
        "tencent cam:DetachUserPolicy policy cam/policy 1  detached user 100000000009 ",
        "tencent cam:DeleteUser user cam/user dave  deleted   ",
        "tencent cos:PutBucket bucket cos/bucket carol-logs-1250000000  created   ap-guangzhou",
        "tencent cos:DeleteBucket bucket cos/bucket carol-logs-1250000000  deleted   ap-guangzhou",
    ];
    let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    assert_eq!(got, expected);
}

#[test]
fn changes_carry_actor_credential_tags_state_and_join_back_to_events() {
    let (_dir, lake, _) = replay_fixtures();
    let changes = dataset(&lake, "asset_changes");
    let events = dataset(&lake, "ciem_events");
    let row = duckdb(&format!(
        "select c.actor_user_uid, c.actor_user_name, c.actor_credential_uid, c.tags, c.after_state, \
                c.cloud_account_uid, e.action, c.origin, c.sync_run_id, c.time = e.time \
         from {changes} c join {events} e on e.metadata_uid = c.source_event_id \
         where c.resource_uid = 'i-0aaa0000000000002'"
    ));
    assert_eq!(row.len(), 1, "{row:?}");
    let r = &row[0];
    assert_eq!(r[0], json!("arn:aws:iam::111122223333:user/alice"));
    assert_eq!(r[1], json!("alice"));
    assert_eq!(r[2], json!("AKIAEXAMPLEALICE"));
    let tags: Value = serde_json::from_str(r[3].as_str().expect("tags")).expect("tags JSON");
    assert_eq!(tags, json!({"Name": "web", "env": "prod"}));
    let after: Value = serde_json::from_str(r[4].as_str().expect("after")).expect("after JSON");
    assert_eq!(after["instanceType"], json!("t3.micro"));
    assert_eq!(r[5], json!("111122223333"));
    assert_eq!(r[6], json!("ec2:RunInstances"));
    assert_eq!(r[7], json!("audit"));
    assert_eq!(r[8], Value::Null);
    assert_eq!(r[9], json!(true));

    // The bucket policy that was set is kept as the state after the change.
    let policy = scalar(&format!(
        "select after_state from {changes} where action = 's3:PutBucketPolicy'"
    ));
    assert!(
        policy.as_str().is_some_and(|p| p.contains("s3:GetObject")),
        "{policy}"
    );
    // Partitioned like ciem_events.
    let files = parquet_files(&lake.join("asset_changes"));
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("provider=aws/account=111122223333/date=2024-03-01/")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("provider=tencent/account=100000000001/date=2024-03-01/")),
        "{files:?}"
    );
}

#[test]
fn replaying_again_adds_no_duplicate_changes() {
    let (_dir, lake, _) = replay_fixtures();
    let again = auditlake(&[
        "replay",
        fixtures().join("asset-changes").to_str().expect("path"),
        "--out",
        lake.to_str().expect("path"),
    ]);
    assert!(again.status.success());
    assert_eq!(
        scalar(&format!(
            "select count(*) from {}",
            dataset(&lake, "asset_changes")
        )),
        json!(50)
    );
}

#[test]
fn ids_are_found_in_the_shapes_clouds_log_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let out = auditlake(&[
        "replay",
        fixtures()
            .join("asset-change-shapes")
            .to_str()
            .expect("path"),
        "--out",
        lake.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = duckdb(&format!(
        "select source_event_id, resource_type, resource_uid, coalesce(resource_name, ''), change_type, \
                coalesce(cloud_region, ''), actor_credential_uid \
         from {} order by source_event_id",
        dataset(&lake, "asset_changes")
    ));
    assert_eq!(
        rows,
        vec![
            // addressed by name only: the name is the id
            vec![
                json!("shape-aws-sg-by-name"),
                json!("security_group"),
                json!("legacy-sg"),
                json!("legacy-sg"),
                json!("deleted"),
                json!("eu-west-1"),
                json!("ASIAEXAMPLECI0001")
            ],
            // bucket only in resourceName, a qcs resource string
            vec![
                json!("shape-tc-cos-resource"),
                json!("bucket"),
                json!("media-1250000000"),
                json!(""),
                json!("created"),
                json!("ap-guangzhou"),
                json!("AKIDEXAMPLETC01")
            ],
            // response logged as a JSON string wrapped in Response
            vec![
                json!("shape-tc-run-wrapped"),
                json!("host"),
                json!("ins-wrapped1"),
                json!(""),
                json!("created"),
                json!("ap-shanghai"),
                json!("AKIDEXAMPLETC01")
            ],
        ]
    );
}

#[test]
fn further_change_calls_are_tracked_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let out = auditlake(&[
        "replay",
        fixtures().join("asset-change-more").to_str().expect("path"),
        "--out",
        lake.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = duckdb(&format!(
        "select action || ' ' || resource_type || ' ' || resource_uid || ' ' || change_type \
                || coalesce(' ' || related_type || ':' || related_uid, '') \
         from {} order by cloud_provider, time, resource_uid",
        dataset(&lake, "asset_changes")
    ));
    let got: Vec<&str> = rows.iter().filter_map(|r| r[0].as_str()).collect();
    assert_eq!(
        got,
        [
            "ec2:ModifyInstanceAttribute host i-0ccc modified",
            "ec2:ModifySecurityGroupRules security_group sg-0ddd modified",
            "iam:PutUserPolicy policy inline-admin attached user:bob",
            "iam:DeleteUserPolicy policy inline-admin detached user:bob",
            "iam:PutRolePolicy policy deploy attached role:deployer",
            "iam:DeleteRolePolicy policy deploy detached role:deployer",
            "iam:UpdateAssumeRolePolicy role deployer modified",
            "iam:CreatePolicyVersion policy arn:aws:iam::111122223333:policy/ops modified",
            "iam:SetDefaultPolicyVersion policy arn:aws:iam::111122223333:policy/ops modified",
            "iam:AddUserToGroup group admins attached user:bob",
            "iam:RemoveUserFromGroup group admins detached user:bob",
            "cvm:StartInstances host ins-m1 modified",
            "cvm:StopInstances host ins-m1 modified",
            "cvm:ModifyInstancesAttribute host ins-m1 modified",
            "cvm:ModifyInstancesAttribute host ins-m2 modified",
            "vpc:ModifySecurityGroupPolicies security_group sg-m1 modified",
            "vpc:ReplaceSecurityGroupPolicy security_group sg-m1 modified",
            "cam:CreateRole role ci-role created",
            "cam:AttachRolePolicy policy 7 attached role:ci-role",
            "cam:DetachRolePolicy policy 7 detached role:ci-role",
            "cam:DeleteRole role ci-role deleted",
        ]
    );
}
