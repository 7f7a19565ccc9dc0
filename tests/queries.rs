//! Downstream: the DDL in `schemas/` and what the documentation shows. Two lakes: the
//! newcomer's (`replay tests/fixtures/samples --out lake`, the README's first command), on which
//! the README's queries, the `duckdb -c` lines in the comments of `pipelines/*.toml`, the SQL
//! blocks of `docs/` and the compose trial's query must return rows as shown; and a fixture lake
//! (samples, variants and query fixtures) on which every SQL block of the section "CIEM queries"
//! of `docs/queries.md` runs through DuckDB on `schemas/duckdb_views.sql` and must return the
//! rows the fixtures were crafted to produce. Also: the README's quoted replay output, the
//! commands and flags it and `docs/commands.md` show, and every relative link of the pages.

mod common;

use std::path::{Path, PathBuf};

use common::docs::{as_run, has_rows, read, sql_blocks};
use common::*;
use serde_json::{Value, json};

/// The README section whose queries need an account synced with entitlements.
const CIEM_SECTION: &str = "CIEM: granted versus used";

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `auditlake replay <inputs> --out lake` in a fresh directory, as a user does in the
/// repository (`inputs` are fixture directories); returns the directory and replay's stdout.
fn replayed(inputs: &[&str]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fixtures();
    let out = std::process::Command::new(bin())
        .arg("replay")
        .args(inputs.iter().map(|i| f.join(i)))
        .args(["--out", "lake"])
        .current_dir(dir.path())
        .output()
        .expect("run auditlake");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, stdout)
}

/// Replays samples + variants + the query fixture into a fresh lake.
fn fixture_lake() -> (tempfile::TempDir, PathBuf) {
    let (dir, stdout) = replayed(&["samples", "variants", "queries"]);
    assert!(stdout.contains("54 events written"), "{stdout}");
    let lake = dir.path().join("lake");
    (dir, lake)
}

/// The README's first command, `replay tests/fixtures/samples --out lake`: the bundled samples,
/// one of them damaged on purpose. Returns the directory holding `lake/`.
fn sample_lake() -> (tempfile::TempDir, String) {
    replayed(&["samples"])
}

/// The files of the repository directory `dir` whose names end in `.ext`, by name: (name, text).
fn files_in(dir: &str, ext: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(manifest().join(dir))
        .unwrap_or_else(|e| panic!("{dir}/: {e}"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read"))
        })
        .collect();
    files.sort();
    files
}

/// The SQL of every `duckdb -c "..."` command in `text`: a page, or the comments of a config
/// file (`#` markers are taken off first, so a command may continue on the next comment line).
fn duckdb_commands(text: &str, comments: bool) -> Vec<String> {
    let text: String = text
        .lines()
        .filter_map(|l| {
            if !comments {
                return Some(l);
            }
            l.trim_start().strip_prefix('#').map(str::trim_start)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("duckdb -c \"") {
        rest = &rest[at + "duckdb -c \"".len()..];
        let end = rest
            .find('"')
            .unwrap_or_else(|| panic!("unclosed `duckdb -c \"`: {rest}"));
        out.push(rest[..end].to_string());
        rest = &rest[end + 1..];
    }
    out
}

/// Every `read_parquet(...)` of `sql` keeps the Hive partitions as strings: without
/// `hive_types_autocast = false` DuckDB turns `account` into a number (dropping the leading
/// zeros of AWS account ids) and `date` into a date.
fn partitions_read_as_strings(sql: &str) -> Result<(), String> {
    let folded: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    for call in folded.split("read_parquet(").skip(1) {
        let args = call.split(')').next().unwrap_or_default().replace(' ', "");
        if !args.contains("hive_types_autocast=false") {
            return Err("read_parquet without hive_types_autocast = false".into());
        }
    }
    Ok(())
}

/// The first ` ```text ` block of the README after the replay command: what it prints.
fn readme_replay_output(readme: &str) -> Vec<String> {
    let after = readme
        .split("cargo run --release -- replay tests/fixtures/samples --out lake")
        .nth(1)
        .expect("README: the first command");
    let block = after
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README: a ```text block with what the first command prints");
    block.lines().map(str::to_string).collect()
}

/// A summary line without its timing (`..., 0.04 s (413 events/s)`), which varies.
fn untimed(line: &str) -> &str {
    line.rsplit_once(", ")
        .filter(|(_, t)| t.ends_with("events/s)"))
        .map_or(line, |(l, _)| l)
}

/// The `python3 -c "..."` commands of `text`, whole, as a reader pastes them into a shell.
fn python_commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("python3 -c \"") {
        rest = &rest[at..];
        let body = &rest["python3 -c \"".len()..];
        let end = body.find('"').expect("unclosed python3 -c \"");
        out.push(rest[.."python3 -c \"".len() + end + 1].to_string());
        rest = &body[end + 1..];
    }
    out
}

#[test]
fn the_readme_and_pipeline_queries_return_rows_on_the_sample_lake() {
    let (dir, stdout) = sample_lake();
    let readme = read("README.md");
    // What the README says the first command prints is what it prints (but for its timing).
    let shown = readme_replay_output(&readme);
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        shown.iter().map(|l| untimed(l)).collect::<Vec<_>>(),
        printed.iter().map(|l| untimed(l)).collect::<Vec<_>>(),
        "README: what `replay tests/fixtures/samples --out lake` prints"
    );

    let mut problems = Vec::new();
    let mut check = |place: &str, sql: &str, rows: &[Vec<Value>]| {
        if let Err(e) = partitions_read_as_strings(sql) {
            problems.push(format!("{place}: {e}:\n{sql}"));
        }
        if !has_rows(rows) {
            problems.push(format!("{place}: {} rows:\n{sql}", rows.len()));
        }
    };

    let commands = duckdb_commands(&readme, false);
    for sql in &commands {
        check("README duckdb -c", sql, &duckdb_in(dir.path(), sql));
    }
    for (section, heading, sql) in sql_blocks(&readme) {
        if section == CIEM_SECTION {
            continue; // needs a synced account: tests/ciem.rs runs it on its lake
        }
        let rows = duckdb_in(dir.path(), &as_run(&sql));
        check(&format!("README ```sql under {heading:?}"), &sql, &rows);
    }

    let mut with_queries = Vec::new();
    for (name, text) in files_in("pipelines", "toml") {
        for sql in duckdb_commands(&text, true) {
            let place = format!("pipelines/{name}");
            check(&place, &sql, &duckdb_in(dir.path(), &sql));
            with_queries.push(name.clone());
        }
    }
    for name in ["local.toml", "aws-cloudtrail.toml", "tencent-cls.toml"] {
        if !with_queries.iter().any(|n| n == name) {
            problems.push(format!(
                "pipelines/{name} shows no `# ... duckdb -c \"...\"` query"
            ));
        }
    }

    // The first query: the sample of a secrets-retrieval scenario makes 10 GetSecretValue
    // calls, the most frequent call of the samples.
    match commands.first() {
        None => problems.push("README shows no `duckdb -c \"...\"` query".into()),
        Some(sql) => {
            let rows = duckdb_in(dir.path(), sql);
            let top = rows.first().cloned().unwrap_or_default();
            if !(top.contains(&json!("secretsmanager:GetSecretValue")) && top.contains(&json!(10)))
            {
                problems.push(format!("README's first query, first row: {top:?}"));
            }
            // The Python alternative is the same query, and runs as pasted into a shell
            // (`python3` being a Python with duckdb, as after `pip install duckdb`).
            let pasted = python_commands(&readme);
            match pasted.first() {
                None => problems.push("README shows no `python3 -c \"...\"` query".into()),
                Some(cmd) => {
                    if !cmd.contains(&format!("duckdb.sql('''{sql}''')")) {
                        problems.push(format!("README: the Python query is not the first:\n{cmd}"));
                    }
                    let script = format!("python3() {{ \"$PY\" \"$@\"; }}\n{cmd}\n");
                    let out = std::process::Command::new("bash")
                        .args(["-c", &script])
                        .env("PY", python())
                        .current_dir(dir.path())
                        .output()
                        .expect("bash");
                    let text = String::from_utf8_lossy(&out.stdout);
                    if !(out.status.success() && text.contains("secretsmanager:GetSecretValue")) {
                        problems.push(format!(
                            "README's Python query printed:\n{text}\n{}",
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The blocks of `docs/queries.md` before its CIEM section: what a reader of the README runs
/// next, on the same lake.
#[test]
fn the_queries_page_returns_rows_on_the_sample_lake() {
    let (dir, _) = sample_lake();
    let page = read("docs/queries.md");
    let blocks: Vec<(String, String, String)> = sql_blocks(&page)
        .into_iter()
        .filter(|(section, _, _)| section != "CIEM queries")
        .collect();
    assert!(
        blocks.len() >= 3,
        "docs/queries.md: files, dead letters and views, each a ```sql block: {blocks:?}"
    );
    for (_, heading, sql) in &blocks {
        partitions_read_as_strings(sql).unwrap_or_else(|e| panic!("{heading}: {e}:\n{sql}"));
        let rows = duckdb_in(dir.path(), &as_run(sql));
        assert!(
            has_rows(&rows),
            "docs/queries.md {heading:?}: {rows:?}\n{sql}"
        );
    }
    // The views example names the samples' AWS account: its 13 events (one of them before the
    // damage in the damaged file).
    let (_, _, views) = blocks
        .iter()
        .find(|(_, _, sql)| sql.contains(".read schemas/duckdb_views.sql"))
        .expect("docs/queries.md: the views example");
    assert_eq!(duckdb_in(dir.path(), &as_run(views)), vec![vec![json!(13)]]);
    // The dead letter of the damaged sample.
    let (_, _, dead) = blocks
        .iter()
        .find(|(_, _, sql)| sql.contains("lake/dead_letters/"))
        .expect("docs/queries.md: a dead-letter query");
    let rows = duckdb_in(dir.path(), &as_run(dead));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0][0]
            .as_str()
            .is_some_and(|s| s.ends_with("aws.execution.ec2-user-data.json")),
        "{rows:?}"
    );
}

/// The SQL blocks of the other pages run on a lake of the samples and the asset-change
/// fixtures, and return rows — but for the Kafka gap query, which has nothing to find in
/// replayed files (its rows are checked by `tests/kafka.rs` through the metric and the row).
#[test]
fn the_other_pages_queries_run() {
    let (dir, _) = replayed(&["samples", "asset-changes"]);
    let mut ran = Vec::new();
    for (name, text) in files_in("docs", "md") {
        // queries.md has its own test; ciem.md needs a synced account (tests/ciem.rs).
        if name == "queries.md" || name == "ciem.md" {
            continue;
        }
        for (section, heading, sql) in sql_blocks(&text) {
            partitions_read_as_strings(&sql).unwrap_or_else(|e| panic!("{name}: {e}:\n{sql}"));
            let rows = duckdb_in(dir.path(), &as_run(&sql));
            if heading != "Gaps" {
                assert!(
                    has_rows(&rows),
                    "docs/{name} {section:?} {heading:?}: no rows\n{sql}"
                );
            }
            ran.push(format!("{name}: {heading}"));
        }
    }
    for want in ["tencent.md: Gaps", "accounts.md: Changes from audit events"] {
        assert!(
            ran.iter().any(|r| r == want),
            "no ```sql block {want:?}: {ran:?}"
        );
    }
}

/// `SET VARIABLE lake` and the checked-in views file, as the README tells users to load them.
fn with_views(lake: &Path, sql: &str) -> String {
    format!(
        "SET VARIABLE lake = '{}';\n{}\n{sql}",
        lake.display(),
        read("schemas/duckdb_views.sql")
    )
}

/// Every ```sql block of the section "CIEM queries" of `docs/queries.md`, under its heading.
fn ciem_queries() -> Vec<(String, String)> {
    sql_blocks(&read("docs/queries.md"))
        .into_iter()
        .filter(|(section, _, _)| section == "CIEM queries")
        .map(|(_, heading, sql)| (heading, sql))
        .collect()
}

fn ts(s: &str) -> Value {
    json!(format!("{s}+00:00"))
}

#[test]
fn every_ciem_query_of_the_docs_returns_its_rows_on_the_fixture_lake() {
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

    let queries = ciem_queries();
    let headings: Vec<&str> = queries.iter().map(|(h, _)| h.as_str()).collect();
    let expected_headings: Vec<&str> = expected.iter().map(|(h, _)| *h).collect();
    assert_eq!(
        headings, expected_headings,
        "docs/queries.md \"CIEM queries\": one ```sql block per query heading, each with expected rows here"
    );
    for ((heading, sql), (_, rows)) in queries.iter().zip(&expected) {
        let got = Value::Array(
            duckdb(&with_views(&lake, sql))
                .into_iter()
                .map(Value::Array)
                .collect(),
        );
        assert_eq!(&got, rows, "docs/queries.md query \"{heading}\":\n{sql}");
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

const DATASETS: [&str; 6] = [
    "ciem_events",
    "dead_letters",
    "asset_changes",
    "asset_inventory",
    "entitlements",
    "ciem_findings",
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
        if ["asset_inventory", "entitlements", "ciem_findings"].contains(&name) {
            // No account sync ran: an empty view, not an error (tests/ciem.rs reads them).
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

/// GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown page's headings (outside code blocks).
fn anchors(page: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every relative link of the README and of `docs/` names a file of the repository, and every
/// `#anchor` a heading of its page: pages moved into `docs/` link with `../`.
#[test]
fn documentation_links_resolve() {
    let mut pages = vec![("README.md".to_string(), read("README.md"))];
    pages.extend(
        files_in("docs", "md")
            .into_iter()
            .map(|(name, text)| (format!("docs/{name}"), text)),
    );
    let mut broken = Vec::new();
    let mut links = 0;
    for (name, text) in &pages {
        let page = manifest().join(name);
        for target in text.split("](").skip(1).filter_map(|t| t.split(')').next()) {
            if target.starts_with("http") || target.contains(' ') {
                continue;
            }
            links += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                page.clone()
            } else {
                page.parent().expect("dir").join(file)
            };
            if !path.exists() {
                broken.push(format!("{name}: {target} (no such file)"));
            } else if !fragment.is_empty() {
                let headings = anchors(&std::fs::read_to_string(&path).unwrap_or_default());
                if !headings.iter().any(|h| h == fragment) {
                    broken.push(format!("{name}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(links > 20, "only {links} relative links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The query of the compose file's `query` service (`docker compose --profile try run --rm
/// query`, in docs/daemon.md) returns rows on a lake like the trial's: its `/lake/*/` is the
/// directory holding the trial's lakes, here the one holding `lake/`.
#[test]
fn the_compose_trial_query_returns_rows() {
    let (dir, _) = sample_lake();
    let compose = read("docker-compose.yml");
    let sql = compose
        .split("duckdb.sql(\"\"\"")
        .nth(1)
        .and_then(|s| s.split("\"\"\")").next())
        .expect("docker-compose.yml: the query service's duckdb.sql(\"\"\"...\"\"\")");
    partitions_read_as_strings(sql).unwrap_or_else(|e| panic!("docker-compose.yml: {e}"));
    assert!(sql.contains("'/lake/*/"), "{sql}");
    let rows = duckdb_in(dir.path(), &sql.replace("'/lake/*/", "'./*/"));
    assert!(has_rows(&rows), "{sql}");
    assert!(
        rows.iter()
            .any(|r| r.contains(&json!("secretsmanager:GetSecretValue"))),
        "{rows:?}"
    );
}

/// The commands of the README's table and of docs/commands.md: each subcommand exists and
/// each flag shown is one its `--help` lists.
#[test]
fn documented_commands_and_flags_exist() {
    let readme = read("README.md");
    let mut shown: Vec<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `auditlake "))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    assert!(shown.len() >= 6, "README: the commands table: {shown:?}");
    let page = read("docs/commands.md");
    let block = page
        .split("```\n")
        .nth(1)
        .expect("docs/commands.md: a code block");
    let from_page = shown.len();
    for line in block.lines() {
        let line = line.split('#').next().unwrap_or_default();
        match line.strip_prefix("auditlake ") {
            Some(command) => shown.push(command.to_string()),
            None if line.trim_start().starts_with("[--") => {
                let last = shown.last_mut().expect("a continuation after a command");
                last.push(' ');
                last.push_str(line.trim());
            }
            None => {}
        }
    }
    assert!(shown.len() >= from_page + 6, "docs/commands.md: {shown:?}");
    for command in &shown {
        let words: Vec<&str> = command
            .split_whitespace()
            .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase()))
            .collect();
        let mut args = words.clone();
        args.push("--help");
        let out = auditlake(&args);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "auditlake {words:?}: {help}");
        for flag in command
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--"))
        {
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "`auditlake {command}`: {flag} is not in `auditlake {} --help`",
                words.join(" ")
            );
        }
    }
}
