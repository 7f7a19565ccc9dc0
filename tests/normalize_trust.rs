//! What normalisation promises at the edges, seen in the lake through DuckDB: no secret is
//! written (one redaction rule set, every reading path), CloudTrail records without an eventID
//! (eventVersion 1.0) land under an id derived from their content, and dates that do not exist
//! are dead letters with the reason.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Secret values planted in the input: none may appear anywhere in the lake.
const SECRETS: &[&str] = &[
    "IQoJb3JpZ2luX2VjEAssumeRoleSessionTokenSECRET",
    "IQoJWebIdentitySessionTokenSECRET",
    "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRETKEY",
    "hunter2-login-password",
    "FQoGZXIvYXdzGetSessionTokenSECRET",
    "DeadLetterSessionTokenSECRET",
];

/// Replays `paths` into `lake` and checks the summary's counts of events and dead letters.
fn replay(paths: &[&Path], lake: &Path, events: usize, dead: usize) {
    let mut args = vec!["replay".to_string()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    args.extend(["--out".to_string(), lake.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = auditlake(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{events} events written"))
            && stdout.contains(&format!("{dead} dead letters")),
        "{stdout}"
    );
}

fn record(id: &str, time: &str, name: &str, user_agent: &str, rest: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","principalId":"AIDA1","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","accessKeyId":"AKIAALICE","userName":"alice"}},"eventTime":"{time}","eventSource":"{}.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"{user_agent}","eventID":"{id}","eventType":"AwsApiCall","recipientAccountId":"111122223333"{rest}}}"#,
        if name == "CreateAccessKey" || name == "CreateLoginProfile" {
            "iam"
        } else {
            "sts"
        }
    )
}

/// STS responses carry a session token next to a non-secret accessKeyId: the token is `***`,
/// the id kept, on the fast reader (read in place in a Records file, and per JSON line) and on
/// serde_json's path (a record with an escape); a secret access key and a password too; a
/// dead letter's raw text and the asset changes derived from the events hold none either.
#[test]
fn secrets_never_reach_the_lake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let assume = record(
        "sts-assume",
        "2024-06-01T10:00:00Z",
        "AssumeRole",
        "aws-cli/2.15",
        r#","requestParameters":{"roleArn":"arn:aws:iam::111122223333:role/Admin","roleSessionName":"alice"},"responseElements":{"credentials":{"accessKeyId":"ASIAASSUMEROLE0001","sessionToken":"IQoJb3JpZ2luX2VjEAssumeRoleSessionTokenSECRET","expiration":"Jun 1, 2024, 11:00:00 AM"},"assumedRoleUser":{"assumedRoleId":"AROA1:alice","arn":"arn:aws:sts::111122223333:assumed-role/Admin/alice"}}"#,
    );
    // The escaped quote in userAgent sends this record to serde_json.
    let web = record(
        "sts-web",
        "2024-06-01T10:01:00Z",
        "AssumeRoleWithWebIdentity",
        r#"aws-sdk \"go\""#,
        r#","responseElements":{"credentials":{"accessKeyId":"ASIAWEBIDENTITY001","sessionToken":"IQoJWebIdentitySessionTokenSECRET","expiration":"Jun 1, 2024, 11:01:00 AM"}}"#,
    );
    let key = record(
        "iam-key",
        "2024-06-01T10:02:00Z",
        "CreateAccessKey",
        "console.amazonaws.com",
        r#","requestParameters":{"userName":"bob"},"responseElements":{"accessKey":{"accessKeyId":"AKIABOBKEY00000001","secretAccessKey":"wJalrXUtnFEMIK7MDENGbPxRfiCYSECRETKEY","status":"Active","userName":"bob"}}"#,
    );
    let login = record(
        "iam-login",
        "2024-06-01T10:03:00Z",
        "CreateLoginProfile",
        "console.amazonaws.com",
        r#","requestParameters":{"userName":"bob","password":"hunter2-login-password","passwordResetRequired":true},"responseElements":{"loginProfile":{"userName":"bob","passwordResetRequired":true}}"#,
    );
    let unreadable = record(
        "sts-bad-time",
        "yesterday",
        "GetSessionToken",
        "aws-cli/2.15",
        r#","responseElements":{"credentials":{"accessKeyId":"ASIADEADLETTER0001","sessionToken":"DeadLetterSessionTokenSECRET"}}"#,
    );
    let records = dir
        .path()
        .join("111122223333_CloudTrail_us-east-1_20240601T1000Z_a.json");
    std::fs::write(
        &records,
        format!("{{\"Records\":[{assume},{web},{key},{login},{unreadable}]}}"),
    )
    .expect("write");
    let session = record(
        "sts-session",
        "2024-06-01T10:05:00Z",
        "GetSessionToken",
        "aws-cli/2.15",
        r#","requestParameters":{"durationSeconds":43200},"responseElements":{"credentials":{"accessKeyId":"ASIAGETSESSION0001","sessionToken":"FQoGZXIvYXdzGetSessionTokenSECRET","expiration":"Jun 1, 2024, 10:05:00 PM"}}"#,
    );
    let lines = dir.path().join("export.jsonl");
    std::fs::write(&lines, format!("{session}\n")).expect("write");
    let lake = dir.path().join("lake");
    replay(&[&records, &lines], &lake, 5, 1);

    let events = dataset(&lake, "ciem_events");
    let rows = duckdb(&format!(
        "select metadata_uid, json_extract_string(response_data, '$.credentials.sessionToken'), \
         json_extract_string(response_data, '$.credentials.accessKeyId') \
         from {events} where response_data like '%credentials%' order by metadata_uid"
    ));
    assert_eq!(
        rows,
        vec![
            vec![
                json!("sts-assume"),
                json!("***"),
                json!("ASIAASSUMEROLE0001")
            ],
            vec![
                json!("sts-session"),
                json!("***"),
                json!("ASIAGETSESSION0001")
            ],
            vec![json!("sts-web"), json!("***"), json!("ASIAWEBIDENTITY001")],
        ]
    );
    assert_eq!(
        duckdb(&format!(
            "select json_extract_string(response_data, '$.accessKey.secretAccessKey'), \
             json_extract_string(response_data, '$.accessKey.accessKeyId'), actor_credential_uid \
             from {events} where metadata_uid = 'iam-key'"
        )),
        vec![vec![
            json!("***"),
            json!("AKIABOBKEY00000001"),
            json!("AKIAALICE")
        ]]
    );
    assert_eq!(
        duckdb(&format!(
            "select json_extract_string(request_data, '$.password'), \
             json_extract(request_data, '$.passwordResetRequired') \
             from {events} where metadata_uid = 'iam-login'"
        )),
        vec![vec![json!("***"), json!("true")]]
    );
    let dead = dataset(&lake, "dead_letters");
    let dead_rows = duckdb(&format!(
        "select reason, raw like '%\"sessionToken\":\"***\"%', raw like '%ASIADEADLETTER0001%' from {dead}"
    ));
    assert_eq!(
        dead_rows,
        vec![vec![
            json!(
                "CloudTrail record has an unreadable eventTime \"yesterday\": not an ISO 8601 date-time like 2019-06-18T22:28:31Z"
            ),
            json!(true),
            json!(true)
        ]]
    );
    // No planted secret anywhere, in any column of any dataset (asset changes are derived
    // from the events' requests and responses).
    let assets = dataset(&lake, "asset_changes");
    assert_eq!(
        scalar(&format!("select count(*) from {assets}")),
        json!(2),
        "the access key and the login profile"
    );
    for secret in SECRETS {
        for table in [&events, &dead, &assets] {
            assert_eq!(
                scalar(&format!(
                    "select count(*) from {table} t where t::varchar like '%{secret}%'"
                )),
                json!(0),
                "{secret} in {table}"
            );
        }
    }
}

/// The documented id of a record without an eventID: `sha256:` and the first 32 hex digits of
/// the SHA-256 of its text.
fn content_id(record: &str) -> String {
    let digest = Sha256::digest(record.trim().as_bytes());
    format!("sha256:{}", hex::encode(&digest[..16]))
}

/// A 2014 archive (eventVersion 1.0, no eventID) replays completely: every record lands under
/// its content id, the same on every run and whichever reader reads it, and a record delivered
/// in two files lands once. Dates that do not exist and non-string times are dead letters
/// that say why, and their neighbours are kept.
#[test]
fn records_without_event_id_land_and_impossible_dates_are_dead_letters() {
    let v1 = |time: &str, name: &str, ua: &str| {
        format!(
            r#"{{"eventVersion":"1.0","userIdentity":{{"type":"IAMUser","principalId":"AIDA1","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","accessKeyId":"AKIAALICE","userName":"alice"}},"eventTime":{time},"eventSource":"ec2.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"{ua}","requestParameters":{{"instancesSet":{{}}}},"responseElements":null}}"#
        )
    };
    let a = v1(
        "\"2014-03-06T21:22:54Z\"",
        "DescribeInstances",
        "aws-cli/1.3",
    );
    let b = v1("\"2014-03-06T21:22:55Z\"", "StopInstances", "aws-cli/1.3");
    // An escape: read by serde_json, not the fast reader.
    let c = v1(
        "\"2014-03-06T21:22:56Z\"",
        "StartInstances",
        r#"aws-cli/1.3 \"x\""#,
    );
    let bad_day = v1("\"2014-02-29T00:00:00Z\"", "RebootInstances", "aws-cli/1.3");
    let year_zero = v1("\"0000-03-06T00:00:00Z\"", "RebootInstances", "aws-cli/1.3");
    let number = v1("1394140974", "RebootInstances", "aws-cli/1.3");
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir
        .path()
        .join("111122223333_CloudTrail_us-east-1_20140306T2125Z_a.json.gz");
    std::fs::write(
        &archive,
        gzip(format!("{{\"Records\":[{a},{bad_day},{b},{year_zero},{c},{number}]}}").as_bytes()),
    )
    .expect("write");
    // `a` delivered again, in another file and shape.
    let again = dir.path().join("again.jsonl");
    std::fs::write(&again, format!("  {a}\r\n")).expect("write");

    let mut ids_per_run = Vec::new();
    for run in ["one", "two"] {
        let lake = dir.path().join(run);
        replay(&[&archive, &again], &lake, 3, 3);
        let events = dataset(&lake, "ciem_events");
        let rows = duckdb(&format!(
            "select api_operation, metadata_uid from {events} order by time"
        ));
        ids_per_run.push(rows);
        let dead = duckdb(&format!(
            "select reason from {} order by origin_position",
            dataset(&lake, "dead_letters")
        ));
        assert_eq!(
            dead,
            vec![
                vec![json!(
                    "CloudTrail record has an unreadable eventTime \"2014-02-29T00:00:00Z\": 2014-02 has no day 29 (it has 28)"
                )],
                vec![json!(
                    "CloudTrail record has an unreadable eventTime \"0000-03-06T00:00:00Z\": year 0000 does not exist"
                )],
                vec![json!(
                    "CloudTrail eventTime is a number, expected an ISO 8601 string"
                )],
            ]
        );
    }
    assert_eq!(
        ids_per_run[0],
        vec![
            vec![json!("DescribeInstances"), json!(content_id(&a))],
            vec![json!("StopInstances"), json!(content_id(&b))],
            vec![json!("StartInstances"), json!(content_id(&c))],
        ]
    );
    assert_eq!(ids_per_run[0], ids_per_run[1], "stable across runs");
}
