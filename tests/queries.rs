//! Downstream: the DDL in `schemas/` and the README's CIEM queries. A fixture lake is built by
//! replaying the sample, variant and query fixtures; every SQL block of the README section
//! "CIEM queries" runs through DuckDB on `schemas/duckdb_views.sql` and must return the rows
//! the fixtures were crafted to produce.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(manifest().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Replays samples + variants + the query fixture into a fresh lake.
fn fixture_lake() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let f = fixtures();
    let out = auditlake(&[
        "replay",
        f.join("samples").to_str().expect("path"),
        f.join("variants").to_str().expect("path"),
        f.join("queries").to_str().expect("path"),
        "--out",
        lake.to_str().expect("path"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("54 events written"), "{stdout}");
    (dir, lake)
}

/// `SET VARIABLE lake` and the checked-in views file, as the README tells users to load them.
fn with_views(lake: &Path, sql: &str) -> String {
    format!(
        "SET VARIABLE lake = '{}';\n{}\n{sql}",
        lake.display(),
        read("schemas/duckdb_views.sql")
    )
}

/// Every ```sql block of the README section "CIEM queries", under its `###` heading.
fn readme_queries() -> Vec<(String, String)> {
    let readme = read("README.md");
    let mut in_section = false;
    let mut heading = String::new();
    let mut block: Option<String> = None;
    let mut out = Vec::new();
    for line in readme.lines() {
        if let Some(sql) = block.as_mut() {
            if line.trim_start().starts_with("```") {
                out.push((heading.clone(), block.take().unwrap_or_default()));
            } else {
                sql.push_str(line);
                sql.push('\n');
            }
            continue;
        }
        if let Some(h) = line.strip_prefix("## ") {
            in_section = h.trim() == "CIEM queries";
        } else if let Some(h) = line.strip_prefix("### ") {
            heading = h.trim().to_string();
        } else if in_section && line.trim() == "```sql" {
            block = Some(String::new());
        }
    }
    out
}

fn ts(s: &str) -> Value {
    json!(format!("{s}+00:00"))
}

#[test]
fn every_readme_ciem_query_returns_its_rows_on_the_fixture_lake() {
    let (_dir, lake) = fixture_lake();
    let bob = "arn:aws:iam::111122223333:user/bob";
    let expected: Vec<(&str, Value)> = vec![
        (
            "Unused permissions per principal (90 days)",
            // The account's newest event is 2025-03-30T10:00 (Builder's PutItem through a second
            // session), so the window starts 2024-12-30. bob's s3:GetObject is used again,
            // his denied ec2:DeleteVpc was never a use, Builder's PutItem counts for the role.
            json!([
                [
                    "aws",
                    "111122223333",
                    "arn:aws:iam::111122223333:role/Builder",
                    "kms:Decrypt",
                    ts("2024-11-01T10:01:00"),
                    149
                ],
                [
                    "aws",
                    "111122223333",
                    bob,
                    "iam:ListUsers",
                    ts("2024-10-01T09:05:00"),
                    180
                ],
            ]),
        ),
        (
            "Access keys used from more than one IP address on one day",
            // carol's key changed address overnight: not reported.
            json!([
                [
                    "aws",
                    "111122223333",
                    "AKIAQUERYBOB00000001",
                    bob,
                    "2025-03-20",
                    ["198.51.100.20", "203.0.113.99"],
                    2
                ],
                [
                    "tencent",
                    "100000000001",
                    "AKIDEXAMPLE0000000000000000000001",
                    "100000000011",
                    "2024-05-01",
                    ["192.0.2.8", "192.0.2.9"],
                    2
                ],
            ]),
        ),
        (
            "Root activity",
            // The SSM call on root's behalf (invokedBy) is left out.
            json!([
                [
                    ts("2019-03-20T04:36:27"),
                    "tencent",
                    "1150691759",
                    "cloudaudit:LookupEvents",
                    "Success",
                    null,
                    "59.37.125.124",
                    false
                ],
                [
                    ts("2023-04-03T09:23:29"),
                    "tencent",
                    "1000000000",
                    "cloudaudit:CreateAuditTrack",
                    "Success",
                    null,
                    "111.111.111.111",
                    true
                ],
                [
                    ts("2024-05-01T10:02:00"),
                    "tencent",
                    "100000000001",
                    "vpc:DeleteSecurityGroup",
                    "Failure",
                    "UnauthorizedOperation",
                    "192.0.2.10",
                    null
                ],
                [
                    ts("2024-05-01T10:03:00"),
                    "aws",
                    "012345678901",
                    "signin:ConsoleLogin",
                    "Failure",
                    null,
                    "198.51.100.4",
                    false
                ],
                [
                    ts("2025-03-15T06:00:00"),
                    "aws",
                    "111122223333",
                    "iam:CreateAccessKey",
                    "Success",
                    null,
                    "192.0.2.50",
                    null
                ],
            ]),
        ),
        (
            "Console logins without MFA",
            // erin used MFA; dave's failed attempt and the sample's failed root login are
            // not sign-ins.
            json!([[
                ts("2025-03-25T08:00:00"),
                "aws",
                "111122223333",
                "IAMUser",
                "arn:aws:iam::111122223333:user/dave",
                "192.0.2.60",
                "aws-cli/2.22",
                false
            ],]),
        ),
        (
            "AccessDenied bursts",
            // trent's five denials are split by a 20-minute pause into runs of three and two.
            json!([[
                "aws",
                "111122223333",
                "arn:aws:iam::111122223333:user/mallory",
                ts("2025-03-28T02:00:00"),
                ts("2025-03-28T02:08:00"),
                6,
                [
                    "ec2:DescribeInstances",
                    "iam:GetAccountAuthorizationDetails",
                    "iam:ListRoles",
                    "kms:ListKeys",
                    "s3:ListBuckets",
                    "secretsmanager:ListSecrets"
                ]
            ],]),
        ),
    ];

    let queries = readme_queries();
    let headings: Vec<&str> = queries.iter().map(|(h, _)| h.as_str()).collect();
    let expected_headings: Vec<&str> = expected.iter().map(|(h, _)| *h).collect();
    assert_eq!(
        headings, expected_headings,
        "README \"CIEM queries\": one ```sql block per query heading, each with expected rows here"
    );
    for ((heading, sql), (_, rows)) in queries.iter().zip(&expected) {
        let got = Value::Array(
            duckdb(&with_views(&lake, sql))
                .into_iter()
                .map(Value::Array)
                .collect(),
        );
        assert_eq!(&got, rows, "README query \"{heading}\":\n{sql}");
    }
}

/// Independent of `src/schema.rs`: how each schema type must read in Athena.
fn athena_type(ty: &str) -> &'static str {
    match ty {
        "utf8" => "string",
        "int32" => "int",
        "int64" => "bigint",
        "bool" => "boolean",
        "timestamp_ms_utc" => "timestamp",
        "resources" => "array<struct<uid:string,type:string,name:string,account_uid:string>>",
        other => panic!("schema type {other} has no Athena type in this test"),
    }
}

const DATASETS: [&str; 4] = [
    "ciem_events",
    "dead_letters",
    "asset_changes",
    "asset_inventory",
];

fn schema_json(name: &str) -> Value {
    serde_json::from_str(&read(&format!("schemas/{name}.json"))).expect("schema JSON")
}

#[test]
fn ddl_files_are_what_the_schema_generates() {
    for (kind, file) in [
        ("duckdb", "schemas/duckdb_views.sql"),
        ("athena", "schemas/athena.sql"),
    ] {
        let out = auditlake(&["schema", "--ddl", kind]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            read(file),
            "{file} is stale: regenerate with `auditlake schema --ddl {kind} > {file}`"
        );
    }

    // Every column of every dataset, with its type, in schema order; partitions projected.
    let athena = read("schemas/athena.sql");
    let statements: Vec<&str> = athena
        .split("CREATE EXTERNAL TABLE IF NOT EXISTS ")
        .skip(1)
        .collect();
    assert_eq!(statements.len(), DATASETS.len());
    for (name, stmt) in DATASETS.iter().zip(statements) {
        let spec = schema_json(name);
        let body = stmt.split("\n)\n").next().expect("column list");
        let columns: Vec<String> = body
            .lines()
            .skip(1)
            .map(|l| l.trim().trim_end_matches(',').to_string())
            .collect();
        let want: Vec<String> = spec["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| {
                format!(
                    "`{}` {}",
                    c["name"].as_str().expect("name"),
                    athena_type(c["type"].as_str().expect("type"))
                )
            })
            .collect();
        assert!(stmt.starts_with(&format!("{name} (\n")), "{stmt}");
        assert_eq!(columns, want, "athena.sql columns of {name}");
        let parts: Vec<String> = spec["partitioning"]
            .as_array()
            .expect("partitioning")
            .iter()
            .map(|p| p.as_str().expect("partition").to_string())
            .collect();
        let partitioned = format!(
            "PARTITIONED BY ({})",
            parts
                .iter()
                .map(|p| format!("`{p}` string"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(stmt.contains(&partitioned), "{name}: {stmt}");
        assert!(
            stmt.contains(&format!("LOCATION 's3://<bucket>/<prefix>/{name}/'")),
            "{stmt}"
        );
        let template: String = parts.iter().map(|p| format!("{p}=${{{p}}}/")).collect();
        assert!(
            stmt.contains(&format!(
                "'storage.location.template' = 's3://<bucket>/<prefix>/{name}/{template}'"
            )),
            "{stmt}"
        );
        for p in &parts {
            assert!(
                stmt.contains(&format!("'projection.{p}.type' = ")),
                "{name}: {p} not projected"
            );
        }
    }
    assert!(athena.contains("'projection.date.format' = 'yyyy-MM-dd'"));

    let out = auditlake(&[
        "schema",
        "--ddl",
        "athena",
        "--location",
        "s3://trail-lake/audit/",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("LOCATION 's3://trail-lake/audit/ciem_events/'"),
        "{text}"
    );
    assert!(!text.contains("<bucket>"), "{text}");
}

#[test]
fn duckdb_views_read_the_lake_with_the_schema_types() {
    let (_dir, lake) = fixture_lake();
    for name in DATASETS {
        let spec = schema_json(name);
        let mut want: Vec<String> = spec["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["name"].as_str().expect("name").to_string())
            .collect();
        want.extend(
            spec["partitioning"]
                .as_array()
                .expect("partitioning")
                .iter()
                .map(|p| p.as_str().expect("partition").to_string()),
        );
        let described = duckdb(&with_views(&lake, &format!("DESCRIBE {name}")));
        let view: Vec<(String, String)> = described
            .iter()
            .map(|r| {
                (
                    r[0].as_str().expect("name").to_string(),
                    r[1].as_str().expect("type").to_string(),
                )
            })
            .collect();
        let names: Vec<&str> = view.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, want, "columns of view {name}");
        for p in spec["partitioning"].as_array().expect("partitioning") {
            let p = p.as_str().expect("partition");
            assert!(
                view.contains(&(p.to_string(), "VARCHAR".to_string())),
                "{name}.{p} must be a string"
            );
        }

        let count = scalar(&with_views(&lake, &format!("SELECT count(*) FROM {name}")));
        if name == "asset_inventory" {
            // No account sync ran: an empty view, not an error.
            assert_eq!(count, json!(0));
            continue;
        }
        // Same rows and the same types as reading the files directly (no silent casts).
        let direct = dataset(&lake, name);
        assert_eq!(
            count,
            scalar(&format!("SELECT count(*) FROM {direct}")),
            "{name}"
        );
        assert!(
            count.as_i64().unwrap_or(0) > 0,
            "{name} has no rows in the fixture lake"
        );
        let mut files: Vec<(String, String)> = duckdb(&format!("DESCRIBE SELECT * FROM {direct}"))
            .iter()
            .map(|r| {
                (
                    r[0].as_str().expect("name").to_string(),
                    r[1].as_str().expect("type").to_string(),
                )
            })
            .collect();
        let mut view = view;
        files.sort();
        view.sort();
        assert_eq!(
            view, files,
            "view {name} and its files disagree on columns or types"
        );
    }
    // Partition pruning reaches the files through the view.
    let plan = duckdb(&with_views(
        &lake,
        "EXPLAIN SELECT count(*) FROM ciem_events WHERE account = '111122223333'",
    ));
    let plan = plan
        .iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    let files = parquet_files(&lake.join("ciem_events"));
    let account = files
        .iter()
        .filter(|f| f.contains("account=111122223333/"))
        .count();
    assert!(account > 0 && account < files.len());
    assert!(
        plan.contains(&format!("Scanning Files: {account}/{}", files.len())),
        "{plan}"
    );
}
