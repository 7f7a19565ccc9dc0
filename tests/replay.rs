//! `auditlake replay` end to end: real files in, Parquet out, read back with DuckDB.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

fn replay(args: &[&str]) -> (i32, String, String) {
    let out = auditlake(&[&["replay"], args].concat());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lake_str(dir: &Path) -> String {
    dir.display().to_string()
}

/// One row of chosen columns for an event id, as JSON values.
fn event(lake: &Path, id: &str, columns: &str) -> Vec<Value> {
    let rows = duckdb(&format!(
        "select {columns} from {} where metadata_uid = '{id}'",
        dataset(lake, "ciem_events")
    ));
    assert_eq!(
        rows.len(),
        1,
        "expected one row for event {id}, got {rows:?}"
    );
    rows.into_iter().next().unwrap_or_default()
}

#[test]
fn bundled_samples_land_in_the_lake_and_the_damaged_file_is_dead_lettered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let samples = fixtures().join("samples");
    let (code, stdout, stderr) =
        replay(&[samples.to_str().expect("path"), "--out", &lake_str(&lake)]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("15 events written") && stdout.contains("1 dead letters"),
        "{stdout}"
    );

    let events = dataset(&lake, "ciem_events");
    assert_eq!(scalar(&format!("select count(*) from {events}")), json!(15));
    assert_eq!(
        scalar(&format!(
            "select count(distinct metadata_uid) from {events}"
        )),
        json!(15)
    );
    // The damaged file: its first record is kept, the rest is one dead letter at the damage.
    let dead = duckdb(&format!(
        "select origin_source, byte_offset, line, reason, raw_truncated, raw like '%\"http\"%' from {}",
        dataset(&lake, "dead_letters")
    ));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0][0]
            .as_str()
            .is_some_and(|s| s.ends_with("aws.execution.ec2-user-data.json"))
    );
    assert_eq!(dead[0][1], json!(3327));
    assert_eq!(dead[0][2], json!(112));
    assert_eq!(
        dead[0][3],
        json!("expected ',' or ']' after record 1 of the Records array")
    );
    assert_eq!(
        dead[0][5],
        json!(true),
        "raw text of the rest of the file is kept"
    );
    assert_eq!(
        scalar(&format!(
            "select count(*) from {events} where origin_source like '%ec2-user-data.json' and action = 'ec2:StopInstances'"
        )),
        json!(1)
    );

    // Tencent legacy shape: Beijing-time string, numeric ids, object sessionContext, token redacted.
    let legacy = event(
        &lake,
        "e92a92fc259c4a9333d2a7ce64d1ef201",
        "time, provider, account, cloud_account_uid, action, actor_credential_uid, actor_session_is_mfa, \
         request_data like '%\"Token\":\"***\"%', request_data like '%147d2c5b%', status",
    );
    assert_eq!(
        legacy,
        vec![
            json!("2019-03-20T04:36:27+00:00"),
            json!("tencent"),
            json!("1150691759"),
            json!("1150691759"),
            json!("cloudaudit:LookupEvents"),
            json!("AKID7JETaYT3IAmutX0vXCcy4q90zJNvlVZf"),
            json!(false),
            json!(true),
            json!(false),
            json!("Success"),
        ]
    );
    // Tencent current shape: integer time, nested fields as JSON strings.
    let current = event(
        &lake,
        "008ef803-4549-41fe-a7e6-433122273683",
        "time, action, actor_user_type, actor_session_is_mfa, actor_credential_kind, json_extract_string(request_data, '$.Name'), src_endpoint_ip",
    );
    assert_eq!(
        current,
        vec![
            json!("2023-04-03T09:23:29+00:00"),
            json!("cloudaudit:CreateAuditTrack"),
            json!("Root"),
            json!(true),
            json!("temporary"),
            json!("qweqwe"),
            json!("111.111.111.111"),
        ]
    );
    let aws = event(
        &lake,
        "57d3eacd-ff87-48f7-b133-a5e9da5d1395",
        "action, actor_user_type, actor_user_name, actor_credential_uid, actor_credential_kind, actor_session_issuer, actor_session_is_mfa, class_uid, activity_id, type_uid, is_read_only",
    );
    assert_eq!(
        aws,
        vec![
            json!("secretsmanager:GetSecretValue"),
            json!("AssumedRole"),
            json!("christophe.tafanidereeper"),
            json!("ASIAZ3MSJV4WY7WYVLEU"),
            json!("temporary"),
            json!("arn:aws:iam::677301038893:role/account-admin"),
            json!(true),
            json!(6003),
            json!(2),
            json!(600302),
            json!(true),
        ]
    );
}

#[test]
fn every_input_variant_is_normalised() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let variants = fixtures().join("variants");
    for name in [
        "cloudtrail-export.jsonl",
        "cls-kafka.jsonl",
        "damaged.jsonl",
    ] {
        std::fs::copy(variants.join(name), input.join(name)).expect("copy");
    }
    // The digest arrives gzip-compressed, as CloudTrail delivers it; detection is by content.
    let digest = std::fs::read(variants.join("digest.json")).expect("read digest");
    std::fs::write(input.join("digest-no-extension"), gzip(&digest)).expect("write");

    let (code, stdout, stderr) =
        replay(&[input.to_str().expect("path"), "--out", &lake_str(&lake)]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("13 events written"), "{stdout}");
    assert!(stdout.contains("1 digest records skipped"), "{stdout}");
    assert!(stdout.contains("5 dead letters"), "{stdout}");

    // CloudTrail
    assert_eq!(
        event(
            &lake,
            "ct-1",
            "action, activity_id, type_uid, actor_credential_kind, account, cloud_account_uid, src_endpoint_ip, status_id, actor_user_name"
        ),
        vec![
            json!("iam:CreateUser"),
            json!(1),
            json!(600301),
            json!("long_term"),
            json!("012345678901"),
            json!("012345678901"),
            json!("203.0.113.10"),
            json!(1),
            json!("alice")
        ]
    );
    assert_eq!(
        event(
            &lake,
            "ct-2",
            "action, api_operation, actor_credential_kind, actor_session_issuer, actor_session_is_mfa, actor_session_created_time, is_read_only, src_endpoint_ip, actor_user_name, response_data"
        ),
        vec![
            json!("lambda:CreateFunction"),
            json!("CreateFunction20150331"),
            json!("temporary"),
            json!("arn:aws:iam::012345678901:role/Deployer"),
            json!(false),
            json!("2013-11-02T01:06:28+00:00"),
            json!(false),
            json!("2001:db8::7"),
            json!("deploy"),
            Value::Null,
        ]
    );
    assert_eq!(
        event(
            &lake,
            "ct-3",
            "actor_user_uid, actor_invoked_by, src_endpoint_ip, src_endpoint_domain, activity_id, resources[1].uid, resources[1].type, resources[1].account_uid, json_extract_string(additional_data, '$.sharedEventID')"
        ),
        vec![
            json!("ec2.amazonaws.com"),
            json!("ec2.amazonaws.com"),
            Value::Null,
            json!("ec2.amazonaws.com"),
            json!(2),
            json!("arn:aws:iam::012345678901:role/EC2"),
            json!("AWS::IAM::Role"),
            json!("012345678901"),
            json!("shared-3"),
        ]
    );
    assert_eq!(
        event(
            &lake,
            "ct-4",
            "class_uid, category_uid, activity_id, activity_name, type_uid, status, actor_session_is_mfa, actor_user_type"
        ),
        vec![
            json!(3002),
            json!(3),
            json!(1),
            json!("Logon"),
            json!(300201),
            json!("Failure"),
            json!(false),
            json!("Root")
        ]
    );
    assert_eq!(
        event(
            &lake,
            "ct-5",
            "time, api_response_error, status_id, activity_id, activity_name"
        ),
        vec![
            json!("2024-05-01T10:04:00.250000+00:00"),
            json!("Client.UnauthorizedOperation"),
            json!(2),
            json!(4),
            json!("Delete")
        ]
    );
    assert_eq!(
        event(
            &lake,
            "ct-6",
            "metadata_event_type, json_extract_string(additional_data, '$.insightDetails.insightType'), actor_user_uid"
        ),
        vec![
            json!("AwsCloudTrailInsight"),
            json!("ApiCallRateInsight"),
            Value::Null
        ]
    );

    // Tencent CLS variants
    assert_eq!(
        event(
            &lake,
            "tc-1",
            "provider, action, account, actor_session_is_mfa, actor_credential_kind, actor_user_uid_alt, list_sort([r.name for r in resources if r.name is not null]), json_extract_string(request_data, '$.LoginSettings.Password'), json_extract_string(additional_data, '$.cls.tags.env'), json_extract_string(additional_data, '$.cls.source'), time"
        ),
        vec![
            json!("tencent"),
            json!("cvm:RunInstances"),
            json!("100000000001"),
            json!(true),
            json!("long_term"),
            json!("100000000011"),
            json!([]),
            json!("***"),
            json!("prod"),
            json!("10.0.0.1"),
            json!("2024-05-01T10:00:00+00:00"),
        ]
    );
    assert_eq!(
        scalar(&format!(
            "select list_sort([r.uid for r in resources]) from {} where metadata_uid = 'tc-1'",
            dataset(&lake, "ciem_events")
        )),
        json!([
            "ins-aaa111",
            "ins-bbb222",
            "qcs::cvm:ap-guangzhou:uin/100000000001:instance/ins-aaa111"
        ])
    );
    assert_eq!(
        event(
            &lake,
            "tc-2",
            "action, actor_user_name, actor_credential_kind, actor_session_is_mfa, request_data, json_extract_string(additional_data, '$.cls.tags.app'), resources, time"
        ),
        vec![
            json!("cam:CreateAccessKey"),
            json!("ops"),
            json!("temporary"),
            json!(false),
            json!("{\"TargetUin\":100000000012}"),
            json!("audit"),
            Value::Null,
            json!("2024-05-01T10:01:00+00:00"),
        ]
    );
    assert_eq!(
        event(
            &lake,
            "tc-3",
            "time, status, api_response_error, api_response_message, account, json_extract_string(additional_data, '$.cls.tags.env'), activity_id"
        ),
        vec![
            json!("2024-05-01T10:02:00+00:00"),
            json!("Failure"),
            json!("UnauthorizedOperation"),
            json!("no permission"),
            json!("100000000001"),
            json!("test"),
            json!(4),
        ]
    );
    assert_eq!(
        event(&lake, "tc-4", "action, cloud_region"),
        vec![json!("cos:PutBucket"), json!("ap-beijing")]
    );
    assert_eq!(
        event(&lake, "12345678", "action, is_read_only, activity_id"),
        vec![json!("cvm:DescribeInstances"), json!(true), json!(2)]
    );

    // Damaged lines: the good neighbours are kept, each bad line has a reason and its line.
    assert_eq!(
        scalar(&format!(
            "select list_sort(list(metadata_uid)) from {} where metadata_uid like 'dmg-%'",
            dataset(&lake, "ciem_events")
        )),
        json!(["dmg-good-1", "dmg-good-2"])
    );
    let dead = duckdb(&format!(
        "select line, reason from {} order by line",
        dataset(&lake, "dead_letters")
    ));
    let reasons: Vec<(i64, String)> = dead
        .iter()
        .map(|r| {
            (
                r[0].as_i64().unwrap_or(-1),
                r[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expect = [
        (2, "invalid JSON"),
        (3, "not a JSON object"),
        (4, "no eventTime"),
        (5, "2024-02 has no day 31"),
        (6, "not closed"),
    ];
    assert_eq!(reasons.len(), expect.len(), "{reasons:?}");
    for ((line, reason), (want_line, want)) in reasons.iter().zip(expect) {
        assert_eq!(*line, want_line, "{reasons:?}");
        assert!(
            reason.contains(want),
            "line {line}: {reason:?} should mention {want:?}"
        );
    }
}

fn records_file(prefix: &str, n: usize) -> String {
    format!("{{\"Records\":[{}]}}", records(prefix, n).join(","))
}

/// `n` CloudTrail records with ids `<prefix>-<i>`, each on one line.
fn records(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| record(prefix, i, "")).collect()
}

/// One CloudTrail record with id `<prefix>-<i>` and `padding` in its request parameters.
fn record(prefix: &str, i: usize, padding: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/u{i}","accountId":"111122223333"}},"eventTime":"2024-06-0{}T12:00:{:02}Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-west-2","eventID":"{prefix}-{i}","readOnly":true,"recipientAccountId":"111122223333","requestParameters":{{"bucketName":"b","key":"k{i}","padding":"{padding}"}}}}"#,
        1 + i % 3,
        i % 60
    )
}

/// Replays `input` into `lake` beside it; the run must succeed.
fn replay_ok(input: &Path) -> std::path::PathBuf {
    let lake = input.with_file_name("lake");
    let (code, stdout, stderr) =
        replay(&[input.to_str().expect("path"), "--out", &lake_str(&lake)]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    lake
}

/// Events per id prefix, and dead letters per file (reason, raw text), as DuckDB reads them.
fn events_by_prefix(lake: &Path) -> Vec<Vec<Value>> {
    duckdb(&format!(
        "select split_part(metadata_uid, '-', 1) p, count(*) from {} group by p order by p",
        dataset(lake, "ciem_events")
    ))
}

fn dead_letters_by_file(lake: &Path, columns: &str) -> Vec<Vec<Value>> {
    duckdb(&format!(
        "select regexp_extract(origin_source, '[^/]*$') f, {columns} from {} order by f, byte_offset",
        dataset(lake, "dead_letters")
    ))
}

/// Damage inside a file costs only the damaged part: an element that is not an object, NUL
/// bytes between elements, a second Records array, a truncated gzip of JSON Lines, trailing
/// bytes after a gzip stream.
#[test]
fn damaged_files_keep_every_good_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let write = |name: &str, bytes: &[u8]| std::fs::write(input.join(name), bytes).expect("write");
    let (a, b) = (records("a", 100), records("b", 100));
    write(
        "1-null.json",
        format!("{{\"Records\":[{},null,{}]}}", a.join(","), b.join(",")).as_bytes(),
    );
    let c = records("c", 20);
    write(
        "2-nul.json",
        format!(
            "{{\"Records\":[{},\0\0\0\0{}]}}",
            c[..10].join(","),
            c[10..].join(",")
        )
        .as_bytes(),
    );
    let d = records("d", 3);
    write(
        "3-twice.json",
        format!("{{\"Records\":[{}],\"Records\":[{},{}]}}", d[0], d[1], d[2]).as_bytes(),
    );
    let lines: String = records("e", 3000)
        .iter()
        .map(|r| format!("{r}\n"))
        .collect();
    let gz = gzip(lines.as_bytes());
    let cut = &gz[..gz.len() * 2 / 3];
    write("4-cut.jsonl.gz", cut);
    let mut plain = Vec::new();
    let _ = std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(cut), &mut plain);
    let complete = plain.iter().filter(|&&b| b == b'\n').count();
    let mut garbage = gzip(records_file("f", 50).as_bytes());
    garbage.extend_from_slice(b"this is not gzip\n");
    write("5-garbage.json.gz", &garbage);

    let lake = replay_ok(&input);
    assert_eq!(
        events_by_prefix(&lake),
        [
            ("a", 100),
            ("b", 100),
            ("c", 20),
            ("d", 3),
            ("e", complete),
            ("f", 50)
        ]
        .iter()
        .map(|(p, n)| vec![json!(p), json!(n)])
        .collect::<Vec<_>>()
    );
    let dead = dead_letters_by_file(&lake, "reason, raw, line");
    assert_eq!(dead.len(), 4, "{dead:?}");
    assert_eq!(
        dead[0][..3],
        [
            json!("1-null.json"),
            json!("record is not a JSON object"),
            json!("null")
        ]
    );
    assert_eq!(
        dead[1][..3],
        [
            json!("2-nul.json"),
            json!("4 NUL bytes in the Records array (skipped)"),
            Value::Null
        ]
    );
    assert_eq!(dead[2][0], json!("4-cut.jsonl.gz"));
    assert!(
        dead[2][1]
            .as_str()
            .is_some_and(|r| r.contains("truncated gzip")),
        "{dead:?}"
    );
    assert_eq!(
        dead[2][3],
        json!(complete + 1),
        "the dead letter is the cut line"
    );
    assert_eq!(
        dead[3][..3],
        [
            json!("5-garbage.json.gz"),
            json!(
                "17 bytes of trailing data after the gzip stream (not gzip; ignored, as gzip -d does)"
            ),
            json!("this is not gzip\n")
        ]
    );
}

/// A record over the 64 MiB limit is one dead letter holding its first 64 KiB, in a Records
/// array and in JSON Lines, and the records after it are read.
#[test]
fn a_record_over_the_limit_is_a_dead_letter_and_reading_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let padding = "x".repeat(70 << 20);
    let g = records("g", 3);
    let big = record("big", 0, &padding);
    std::fs::write(
        input.join("records.json"),
        format!("{{\"Records\":[{},{big},{},{}]}}", g[0], g[1], g[2]),
    )
    .expect("write");
    let h = records("h", 2);
    std::fs::write(
        input.join("lines.jsonl"),
        format!("{}\n{big}\n{}\n", h[0], h[1]),
    )
    .expect("write");
    drop(padding);
    let lake = replay_ok(&input);
    assert_eq!(
        events_by_prefix(&lake),
        vec![vec![json!("g"), json!(3)], vec![json!("h"), json!(2)]]
    );
    let reason = |context: &str| {
        json!(format!(
            "record{context} of {} bytes is larger than the 67108864-byte record limit (skipped)",
            big.len()
        ))
    };
    let dead = dead_letters_by_file(&lake, "reason, length(raw), raw_truncated, line");
    assert_eq!(
        dead,
        vec![
            vec![
                json!("lines.jsonl"),
                reason(""),
                json!(65536),
                json!(true),
                json!(2)
            ],
            vec![
                json!("records.json"),
                reason(" in the Records array"),
                json!(65536),
                json!(true),
                json!(1)
            ],
        ]
    );
}

/// `--threads` is bounded by twice the number of CPUs, with a warning.
#[test]
fn a_thread_count_beyond_twice_the_cpus_is_lowered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(&input, records_file("t", 30)).expect("write");
    let lake = dir.path().join("lake");
    let (code, stdout, stderr) = replay(&[
        input.to_str().expect("path"),
        "--out",
        &lake_str(&lake),
        "--threads",
        "100000",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        stderr.contains(&format!(
            "--threads 100000 is more than twice the {cpus} CPUs of this machine; using {} threads",
            2 * cpus
        )),
        "{stderr}"
    );
    assert_eq!(events_by_prefix(&lake), vec![vec![json!("t"), json!(30)]]);
}

#[test]
fn gzip_files_are_streamed_and_a_truncated_gzip_keeps_its_good_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir
        .path()
        .join("AWSLogs/111122223333/CloudTrail/us-west-2/2024/06/01");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(
        input.join("good.json.gz"),
        gzip(records_file("good", 3000).as_bytes()),
    )
    .expect("write");
    let damaged = gzip(records_file("cut", 3000).as_bytes());
    std::fs::write(input.join("cut.json.gz"), &damaged[..damaged.len() / 2]).expect("write");
    let lake = dir.path().join("lake");
    let (code, stdout, stderr) = replay(&[
        dir.path().join("AWSLogs").to_str().expect("path"),
        "--out",
        &lake_str(&lake),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let events = dataset(&lake, "ciem_events");
    assert_eq!(
        scalar(&format!(
            "select count(*) from {events} where metadata_uid like 'good-%'"
        )),
        json!(3000)
    );
    let cut = scalar(&format!(
        "select count(*) from {events} where metadata_uid like 'cut-%'"
    ))
    .as_i64()
    .unwrap_or(0);
    assert!(
        cut > 500 && cut < 3000,
        "records before the cut are kept: {cut}"
    );
    let reason = scalar(&format!(
        "select reason from {}",
        dataset(&lake, "dead_letters")
    ));
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.contains("truncated gzip")),
        "{reason}"
    );
    // Three dates → three partitions, each file sorted by time.
    assert_eq!(
        scalar(&format!("select count(distinct date) from {events}")),
        json!(3)
    );
    let unsorted = scalar(&format!(
        "select count(*) from (select time < lag(time) over (partition by filename order by file_row_number) as back \
         from read_parquet('{}/ciem_events/**/*.parquet', filename = true, file_row_number = true)) where back",
        lake.display()
    ));
    assert_eq!(
        unsorted,
        json!(0),
        "rows must be sorted by time within each file"
    );
}

#[test]
fn replaying_the_same_input_again_yields_the_same_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let variants = fixtures().join("variants");
    let v = variants.to_str().expect("path");
    assert_eq!(replay(&[v, "--out", &lake_str(&lake)]).0, 0);
    let files = parquet_files(&lake);
    let count = scalar(&format!(
        "select count(*) from {}",
        dataset(&lake, "ciem_events")
    ));

    // Again: the journal knows every file, nothing is read.
    let (code, stdout, _) = replay(&[v, "--out", &lake_str(&lake)]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("4 files (4 already in the lake, skipped), 0 events written"),
        "{stdout}"
    );
    // Again without the journal: files are rewritten under the same names.
    std::fs::remove_dir_all(lake.join("_auditlake")).expect("rm journal");
    let (code, stdout, _) = replay(&[v, "--out", &lake_str(&lake), "--threads", "1"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("13 events written"), "{stdout}");
    assert_eq!(
        parquet_files(&lake)
            .iter()
            .filter(|f| f.starts_with("ciem_events"))
            .collect::<Vec<_>>(),
        files
            .iter()
            .filter(|f| f.starts_with("ciem_events"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        scalar(&format!(
            "select count(*) from {}",
            dataset(&lake, "ciem_events")
        )),
        count
    );
}

#[test]
fn duplicate_events_are_written_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(input.join("a.json"), records_file("dup", 10)).expect("write");
    // A second delivery of half of the same events, in another file.
    std::fs::write(input.join("b.json"), records_file("dup", 5)).expect("write");
    let lake = dir.path().join("lake");
    let (code, stdout, _) = replay(&[input.to_str().expect("path"), "--out", &lake_str(&lake)]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("10 events written, 5 duplicates dropped"),
        "{stdout}"
    );
    assert_eq!(
        scalar(&format!(
            "select count(*) from {}",
            dataset(&lake, "ciem_events")
        )),
        json!(10)
    );
}

#[test]
fn partition_values_from_events_cannot_leave_the_output_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("evil.json");
    std::fs::write(
        &input,
        r#"{"eventTime":"2024-01-01T00:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","eventID":"evil-1","recipientAccountId":"../../../escaped"}
{"eventTime":"2024-01-01T00:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","eventID":"evil-2","recipientAccountId":"/abs\\path"}
{"eventTime":"2024-01-01T00:00:02Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","eventID":"no-account-1","recipientAccountId":""}
{"eventTime":"2024-01-01T00:00:01Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","eventID":"no-account-2"}"#,
    )
    .expect("write");
    let lake = dir.path().join("out/lake");
    assert_eq!(
        replay(&[input.to_str().expect("path"), "--out", &lake_str(&lake)]).0,
        0
    );
    let all = parquet_files(dir.path());
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(
        all.iter()
            .all(|f| f.starts_with("out/lake/ciem_events/provider=aws/")),
        "{all:?}"
    );
    let mut dirs: Vec<&str> = all.iter().filter_map(|f| f.split('/').nth(4)).collect();
    dirs.sort();
    assert_eq!(
        dirs,
        vec![
            "account=%2E.%2F..%2F..%2Fescaped",
            "account=%2Fabs%5Cpath",
            "account=unknown"
        ]
    );
    // An empty and a missing account share one directory: both rows are kept, in time order.
    assert_eq!(
        scalar(&format!(
            "select list(metadata_uid order by file_row_number) from read_parquet('{}/ciem_events/*/account=unknown/*/*.parquet', file_row_number = true)",
            lake.display()
        )),
        json!(["no-account-2", "no-account-1"])
    );
    // Hive-style escaping: readers decode the partition value back to the original.
    assert_eq!(
        scalar(&format!(
            "select list_sort(list(account)) from {} where metadata_uid like 'evil-%'",
            dataset(&lake, "ciem_events")
        )),
        json!(["../../../escaped", "/abs\\path"])
    );
    assert_eq!(
        scalar(&format!(
            "select list_sort(list(cloud_account_uid)) from {} where metadata_uid like 'evil-%'",
            dataset(&lake, "ciem_events")
        )),
        json!(["../../../escaped", "/abs\\path"])
    );
}

#[test]
fn exit_status_tells_usage_errors_failures_and_strict_runs_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let (code, _, stderr) = replay(&["/no/such/input", "--out", &lake_str(&lake)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("/no/such/input does not exist"), "{stderr}");

    let damaged = fixtures().join("variants/damaged.jsonl");
    let d = damaged.to_str().expect("path");
    let (code, stdout, _) = replay(&[d, "--out", &lake_str(&lake), "--fail-on-dead-letter"]);
    assert_eq!(code, 3, "{stdout}");
    assert_eq!(
        replay(&[d, "--out", &lake_str(&dir.path().join("lake2"))]).0,
        0,
        "dead letters alone are not a failure"
    );

    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").expect("write");
    let (code, _, stderr) = replay(&[d, "--out", &lake_str(&blocker)]);
    assert_eq!(
        code, 1,
        "output that cannot be written is a failure: {stderr}"
    );
    assert!(stderr.contains("cannot"), "{stderr}");
}

#[test]
fn stdin_is_read_with_dash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let mut child = Command::new(bin())
        .args(["replay", "-", "--out", &lake_str(&lake)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let data = std::fs::read(fixtures().join("variants/cloudtrail-export.jsonl")).expect("read");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&gzip(&data))
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        duckdb(&format!(
            "select count(*), any_value(origin_source) from {}",
            dataset(&lake, "ciem_events")
        )),
        vec![vec![json!(6), json!("stdin")]]
    );
}

fn duck_type(ty: &str) -> &'static str {
    match ty {
        "utf8" => "VARCHAR",
        "int32" => "INTEGER",
        "int64" => "BIGINT",
        "bool" => "BOOLEAN",
        "timestamp_ms_utc" => "TIMESTAMP WITH TIME ZONE",
        "resources" => {
            "STRUCT(uid VARCHAR, \"type\" VARCHAR, \"name\" VARCHAR, account_uid VARCHAR)[]"
        }
        other => panic!("unknown schema type {other}"),
    }
}

#[test]
fn parquet_schema_matches_the_checked_in_schema_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let damaged = fixtures().join("variants/damaged.jsonl");
    assert_eq!(
        replay(&[damaged.to_str().expect("path"), "--out", &lake_str(&lake)]).0,
        0
    );
    for (table, file) in [
        ("ciem_events", "ciem_events.json"),
        ("dead_letters", "dead_letters.json"),
    ] {
        let spec: Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("schemas")
                    .join(file),
            )
            .expect("read schema"),
        )
        .expect("schema json");
        let want: Vec<Vec<Value>> = spec["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| {
                vec![
                    c["name"].clone(),
                    json!(duck_type(c["type"].as_str().expect("type"))),
                ]
            })
            .collect();
        let got = duckdb(&format!(
            "select column_name, column_type from (describe select * from read_parquet('{}/{table}/**/*.parquet', hive_partitioning = false))",
            lake.display()
        ));
        assert_eq!(
            got, want,
            "{table}: Parquet schema drifted from schemas/{file}"
        );
        let version = scalar(&format!(
            "select decode(value) from parquet_kv_metadata('{}/{table}/**/*.parquet') where decode(key) = 'auditlake.schema_version' limit 1",
            lake.display()
        ));
        assert_eq!(version, spec["version"]);
    }
}

#[test]
fn schema_command_prints_the_checked_in_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let json_out = auditlake(&["schema"]);
    assert_eq!(
        String::from_utf8_lossy(&json_out.stdout),
        std::fs::read_to_string(root.join("ciem_events.json")).expect("read")
    );
    let md = auditlake(&["schema", "--markdown"]);
    assert_eq!(
        String::from_utf8_lossy(&md.stdout),
        std::fs::read_to_string(root.join("ciem_events.md")).expect("read"),
        "schemas/ciem_events.md is stale: regenerate with `auditlake schema --markdown > schemas/ciem_events.md`"
    );
    let md = auditlake(&["schema", "--markdown", "--dead-letters"]);
    assert_eq!(
        String::from_utf8_lossy(&md.stdout),
        std::fs::read_to_string(root.join("dead_letters.md")).expect("read"),
        "schemas/dead_letters.md is stale: regenerate with `auditlake schema --markdown --dead-letters > schemas/dead_letters.md`"
    );
}

/// The first command of the README, off a terminal (piped, as here): the damaged sample's
/// dead-letter warning is a human-readable line, not JSON; `AUDITLAKE_LOG_FORMAT=json` or
/// `--log-format json` asks for JSON.
#[test]
fn replay_warnings_are_text_lines_unless_json_is_asked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let samples = fixtures().join("samples");
    let run = |lake: &str, env: Option<&str>, flag: Option<&str>| {
        let mut cmd = Command::new(bin());
        cmd.arg("replay")
            .arg(&samples)
            .args(["--out", &lake_str(&dir.path().join(lake))])
            .env_remove("AUDITLAKE_LOG_FORMAT");
        if let Some(env) = env {
            cmd.env("AUDITLAKE_LOG_FORMAT", env);
        }
        if let Some(flag) = flag {
            cmd.args(["--log-format", flag]);
        }
        let out = cmd.output().expect("run replay");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let text = run("a", None, None);
    let warning = text
        .lines()
        .find(|l| l.contains("dead letter"))
        .unwrap_or_else(|| panic!("a dead-letter warning: {text}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("aws.execution.ec2-user-data.json"),
        "{warning}"
    );
    assert!(
        serde_json::from_str::<Value>(warning).is_err(),
        "not JSON: {warning}"
    );
    assert!(
        !warning.contains('\u{1b}'),
        "no colour codes off a terminal: {warning:?}"
    );

    for (lake, env, flag) in [("b", Some("json"), None), ("c", None, Some("json"))] {
        let json = run(lake, env, flag);
        let warning = json
            .lines()
            .find(|l| l.contains("dead letter"))
            .unwrap_or_else(|| panic!("a dead-letter warning: {json}"));
        let warning: Value = serde_json::from_str(warning).expect("a JSON line");
        assert_eq!(warning["level"], json!("WARN"), "{warning}");
    }
    // The flag wins over the variable.
    let text = run("d", Some("json"), Some("text"));
    assert!(
        text.lines()
            .any(|l| l.contains("dead letter") && serde_json::from_str::<Value>(l).is_err()),
        "{text}"
    );
}

/// A tree with a symbolic link to a directory elsewhere: its files are read (they were passed
/// over in silence). A link back up the tree ends the walk there, with a warning naming it.
#[test]
fn symlinked_directories_are_followed_and_a_loop_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(tree.join("real")).expect("mkdir");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let variants = fixtures().join("variants");
    std::fs::copy(
        variants.join("cloudtrail-export.jsonl"),
        tree.join("real/a.jsonl"),
    )
    .expect("copy");
    std::fs::copy(variants.join("cls-kafka.jsonl"), elsewhere.join("b.jsonl")).expect("copy");
    std::os::unix::fs::symlink(&elsewhere, tree.join("linked")).expect("symlink");
    std::os::unix::fs::symlink("..", tree.join("real/loop")).expect("symlink");

    let lake = dir.path().join("lake");
    let (code, stdout, stderr) = replay(&[tree.to_str().expect("path"), "--out", &lake_str(&lake)]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("2 files"), "both files are read: {stdout}");
    assert_eq!(
        scalar(&format!(
            "select count(*) from {} where origin_source like '%/tree/linked/b.jsonl'",
            dataset(&lake, "ciem_events")
        )),
        json!(5),
        "the linked directory's file is named by its path in the tree"
    );
    assert_eq!(
        scalar(&format!(
            "select count(*) from {}",
            dataset(&lake, "ciem_events")
        )),
        json!(11)
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("symbolic link loop"))
        .collect();
    assert_eq!(warnings.len(), 1, "the loop is reported once: {stderr}");
    assert!(warnings[0].contains("real/loop"), "{stderr}");
}

/// One big file, off a terminal: `progress:` lines come while it is read (not only between
/// files), with bytes read of the total, the time left and the events read so far.
#[test]
fn progress_lines_show_bytes_and_events_while_one_big_file_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample =
        std::fs::read_to_string(fixtures().join("variants/cloudtrail-export.jsonl")).expect("read");
    let line = sample.lines().next().expect("a record");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(dir.path().join("big.jsonl")).expect("create"),
    );
    let n = 30_000;
    for i in 0..n {
        writeln!(
            file,
            "{}",
            line.replace("\"ct-1\"", &format!("\"big-{i}\""))
        )
        .expect("write");
    }
    drop(file);
    let out = Command::new(bin())
        .arg("replay")
        .arg(dir.path().join("big.jsonl"))
        .args(["--out", &lake_str(&dir.path().join("lake"))])
        .env("AUDITLAKE_PROGRESS_INTERVAL_MS", "20")
        .output()
        .expect("run replay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{n} events written")),
        "{out:?}"
    );
    let events_read = |l: &str| -> Option<u64> {
        l.split(", ")
            .find_map(|part| part.strip_suffix(" events read"))
            .and_then(|n| n.parse().ok())
    };
    // Lines while the file is being read: some bytes of the total, some of the events.
    let midway: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("progress: 0/1 files, "))
        .filter(|l| l.contains(" MiB of ") && l.contains(" left"))
        .filter(|l| events_read(l).is_some_and(|e| e > 0 && e < n))
        .collect();
    assert!(
        !midway.is_empty(),
        "progress lines with bytes and events before the end: {stderr}"
    );
}
