//! The lake as Iceberg tables, read by readers that are not ours: `replay --format iceberg`
//! registers the files in a SQLite catalog in the lake; pyiceberg (its SQL catalog) and
//! DuckDB's iceberg extension read every table, and counts and values equal the Hive layout's
//! for the same input; replaying again adds nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};

const TABLES: [&str; 6] = [
    "ciem_events",
    "dead_letters",
    "asset_changes",
    "asset_inventory",
    "entitlements",
    "ciem_findings",
];

fn replay(lake: &Path, format: &str) -> String {
    let out = auditlake(&[
        "replay",
        fixtures().join("samples").to_str().expect("path"),
        fixtures().join("asset-changes").to_str().expect("path"),
        "--out",
        lake.to_str().expect("path"),
        "--format",
        format,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs a pyiceberg script with `cat` the lake's catalog; the script prints JSON.
fn pyiceberg(lake: &Path, script: &str) -> Value {
    let prelude = format!(
        "import json\nfrom pyiceberg.catalog.sql import SqlCatalog\n\
         cat = SqlCatalog('auditlake', uri='sqlite:///{lake}/_auditlake/iceberg/catalog.db', warehouse='file://{lake}/iceberg')\n",
        lake = lake.display()
    );
    let out = Command::new(python())
        .args(["-c", &format!("{prelude}{script}")])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pyiceberg failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pyiceberg printed JSON")
}

fn python_duckdb15() -> PathBuf {
    let path = std::env::var_os("AUDITLAKE_PYTHON_DUCKDB15")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-duckdb15/bin/python"));
    assert!(
        path.exists(),
        "DuckDB 1.5.5 with its iceberg extension not found at {}: run `bash tests/run.sh` (it creates .venv-duckdb15) or set AUDITLAKE_PYTHON_DUCKDB15",
        path.display()
    );
    path
}

/// Counts per table and the events' ids and times, as pyiceberg reads them.
fn read_with_pyiceberg(lake: &Path) -> Value {
    pyiceberg(
        lake,
        r#"
out = {}
for name in ['ciem_events', 'dead_letters', 'asset_changes', 'asset_inventory', 'entitlements', 'ciem_findings']:
    out[name] = cat.load_table('auditlake.' + name).scan().to_arrow().num_rows
events = cat.load_table('auditlake.ciem_events').scan(selected_fields=('metadata_uid', 'time', 'action', 'cloud_account_uid')).to_arrow().to_pylist()
out['events'] = sorted([e['metadata_uid'], e['time'].strftime('%Y-%m-%dT%H:%M:%S.%fZ'), e['action'], e['cloud_account_uid']] for e in events)
out['snapshots'] = len(cat.load_table('auditlake.ciem_events').snapshots())
print(json.dumps(out))
"#,
    )
}

#[test]
fn iceberg_tables_hold_what_the_hive_layout_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hive = dir.path().join("hive");
    let ice = dir.path().join("lake");
    replay(&hive, "hive");
    replay(&ice, "iceberg");

    let got = read_with_pyiceberg(&ice);
    for name in TABLES {
        let files = dataset(&hive, name);
        let want = if std::fs::read_dir(hive.join(name)).is_ok() {
            scalar(&format!("SELECT count(*) FROM {files}"))
        } else {
            json!(0)
        };
        assert_eq!(got[name], want, "rows of {name}");
    }
    assert!(got["ciem_events"].as_i64().unwrap_or(0) > 10, "{got}");
    let hive_events: Vec<Value> = duckdb(&format!(
        "SELECT metadata_uid, strftime(time, '%Y-%m-%dT%H:%M:%S.%fZ'), action, cloud_account_uid FROM {} ORDER BY ALL",
        dataset(&hive, "ciem_events")
    ))
    .into_iter()
    .map(Value::from)
    .collect();
    assert_eq!(
        got["events"],
        Value::from(hive_events),
        "event ids and times"
    );

    // DuckDB's iceberg extension reads the table from its metadata too.
    let meta = pyiceberg(
        &ice,
        "print(json.dumps(cat.load_table('auditlake.ciem_events').metadata_location.removeprefix('file://')))",
    );
    let script = r#"
import duckdb, glob, json, sys, os
con = duckdb.connect()
site = os.path.dirname(os.path.dirname(duckdb.__file__))
for name in ['avro', 'iceberg']:
    con.execute("LOAD '%s'" % glob.glob(f'{site}/duckdb_extension_{name}/extensions/*/{name}.duckdb_extension')[0])
rows = con.execute("SELECT cloud_provider, count(*), count(DISTINCT metadata_uid) FROM iceberg_scan(?) GROUP BY ALL ORDER BY 1", [sys.argv[1]]).fetchall()
print(json.dumps(rows))
"#;
    let out = Command::new(python_duckdb15())
        .args(["-c", script, meta.as_str().expect("metadata path")])
        .output()
        .expect("run duckdb 1.5.5");
    assert!(
        out.status.success(),
        "DuckDB iceberg_scan failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_provider: Value = serde_json::from_slice(&out.stdout).expect("json");
    let want: Vec<Value> = duckdb(&format!(
        "SELECT cloud_provider, count(*), count(DISTINCT metadata_uid) FROM {} GROUP BY ALL ORDER BY 1",
        dataset(&hive, "ciem_events")
    ))
    .into_iter()
    .map(Value::from)
    .collect();
    assert_eq!(by_provider, Value::from(want));

    // The page's pyiceberg example, run where the lake is, as a reader runs it.
    let printed = run_python_example("docs/iceberg.md", "SqlCatalog", dir.path());
    assert!(
        printed.contains("secretsmanager:GetSecretValue"),
        "docs/iceberg.md's example printed:\n{printed}"
    );

    // The README's example, on a lake of the samples as its command makes it.
    std::os::unix::fs::symlink(&ice, dir.path().join("lake-iceberg")).expect("symlink");
    assert!(
        common::docs::read("README.md").contains(
            "auditlake replay tests/fixtures/samples --out lake-iceberg --format iceberg"
        )
    );
    let printed = run_python_example("README.md", "lake-iceberg", dir.path());
    assert!(
        printed.contains("secretsmanager:GetSecretValue"),
        "the README's example printed:\n{printed}"
    );

    // `schema --ddl iceberg` for a pipeline writing this lake: its pyiceberg lines work as
    // printed.
    let pipeline = dir.path().join("ice.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[source]\ntype = \"files\"\npath = \"{}\"\n[sink]\npath = \"{}\"\nformat = \"iceberg\"\n",
            dir.path().display(),
            ice.display()
        ),
    )
    .expect("pipeline");
    let out = auditlake(&[
        "schema",
        "--ddl",
        "iceberg",
        "--config",
        pipeline.to_str().expect("path"),
    ]);
    let setup = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{setup}");
    let py: Vec<&str> = setup
        .split("-- pyiceberg")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a pyiceberg part")
        .lines()
        .filter_map(|l| l.strip_prefix("--   "))
        .collect();
    let script = format!(
        "{}\nprint(_.num_rows)",
        py.join("\n")
            .replace("cat.load_table", "_ = cat.load_table")
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .expect("run python");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        got["ciem_events"].to_string(),
        "schema --ddl iceberg's pyiceberg lines:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for engine in ["-- Spark", "-- Trino", "-- DuckDB"] {
        assert!(setup.contains(engine), "{engine} in:\n{setup}");
    }

    // Replaying the same input again: every file is already in the lake, no new snapshot.
    let before = got["snapshots"].clone();
    let again = replay(&ice, "iceberg");
    assert!(again.contains(", 0 events written"), "{again}");
    let after = read_with_pyiceberg(&ice);
    assert_eq!(after["ciem_events"], got["ciem_events"]);
    assert_eq!(after["snapshots"], before);
}

/// Runs the first ```python block of a page (relative to the repository) that contains
/// `needle`, in `dir`, as a reader runs it; its output.
fn run_python_example(page: &str, needle: &str, dir: &Path) -> String {
    let text = common::docs::read(page);
    let example = text
        .split("```python\n")
        .skip(1)
        .find(|block| block.contains(needle))
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("a ```python block with {needle:?} in {page}"));
    let out = Command::new(python())
        .args(["-c", example])
        .current_dir(dir)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{page}'s example failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a Python script that prints a JSON list until its first item is `want` (or 90 s):
/// the last list, or the script's error text.
fn poll_python(script: &str, want: &Value) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let out = Command::new(python())
            .args(["-c", script])
            .output()
            .expect("python");
        let v = serde_json::from_slice::<Value>(&out.stdout).unwrap_or_else(|_| {
            Value::String(
                String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .take(1500)
                    .collect(),
            )
        });
        if v[0] == *want || std::time::Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// `files` CloudTrail files of `per_file` events an hour old, ids `<tag>-<file>-<event>`.
fn cloudtrail_inputs(tag: &str, files: usize, per_file: usize) -> Vec<Vec<u8>> {
    (0..files)
        .map(|f| {
            let ids: Vec<String> = (0..per_file).map(|i| format!("{tag}-{f}-{i}")).collect();
            cloudtrail_file_at(&ids, &iso_ago(3600))
        })
        .collect()
}

/// A catalog several writers share: the URI auditlake is given, the one pyiceberg is given,
/// and the warehouse.
struct SharedCatalog {
    uri: String,
    py_uri: String,
    warehouse: PathBuf,
}

impl SharedCatalog {
    fn sqlite(dir: &Path) -> SharedCatalog {
        let shared = dir.join("shared");
        std::fs::create_dir_all(&shared).expect("mkdir");
        SharedCatalog {
            uri: format!("sqlite://{}/catalog.db?mode=rwc", shared.display()),
            py_uri: format!("sqlite:///{}/catalog.db", shared.display()),
            warehouse: shared.join("warehouse"),
        }
    }

    fn postgres(dir: &Path, pg: &common::postgres::Postgres) -> SharedCatalog {
        SharedCatalog {
            uri: pg.uri(),
            py_uri: pg.uri().replace("postgres://", "postgresql+psycopg2://"),
            warehouse: dir.join("warehouse"),
        }
    }
}

/// Two writers with separate state directories commit to one catalog's tables at once: every
/// batch of both lands once, conflicting commits are retried.
fn two_writers_commit_at_once(dir: &Path, catalog: &SharedCatalog) {
    use common::moto::Daemon;
    let (files, per_file) = (12, 40);
    let mut daemons = Vec::new();
    for w in ["a", "b"] {
        let inbox = dir.join(format!("inbox-{w}"));
        std::fs::create_dir_all(&inbox).expect("mkdir");
        for f in 0..files {
            let ids: Vec<String> = (0..per_file).map(|i| format!("{w}-{f}-{i}")).collect();
            std::fs::write(
                inbox.join(format!("f{f:02}.json.gz")),
                cloudtrail_file_at(&ids, &iso_ago(3600)),
            )
            .expect("write input");
        }
        let config = writer_config(dir, w, &inbox, catalog, per_file);
        daemons.push(Daemon::start(&config, &dir.join(format!("{w}.log"))));
    }
    let want = json!(2 * files * per_file);
    let seen = wait_for(catalog, |v| v[0] == want);
    let logs: Vec<String> = daemons.into_iter().map(|d| d.terminate()).collect();
    assert_eq!(seen[0], want, "rows; logs:\n{}", logs.join("\n---\n"));
    assert_eq!(seen[1], want, "distinct event ids");
    // Both wrote many batches into the one table (one snapshot per batch).
    assert!(
        seen[2].as_u64().unwrap_or(0) >= 2 * files as u64,
        "snapshots: {seen}"
    );
}

#[test]
fn two_writers_commit_to_one_catalog_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    two_writers_commit_at_once(dir.path(), &SharedCatalog::sqlite(dir.path()));
}

/// The catalog of several hosts: PostgreSQL, a private cluster the test starts.
#[test]
fn two_writers_commit_to_one_postgresql_catalog() {
    let pg = common::postgres::Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    two_writers_commit_at_once(dir.path(), &SharedCatalog::postgres(dir.path(), &pg));
    assert!(pg.data().exists());
}

/// A daemon's pipeline: an inbox into its own lake (its own state), the tables in the shared
/// catalog and warehouse under `shared`.
fn writer_config(
    dir: &Path,
    w: &str,
    inbox: &Path,
    catalog: &SharedCatalog,
    per_file: usize,
) -> PathBuf {
    let config = dir.join(format!("{w}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"name = "writer-{w}"
[source]
type = "files"
path = "{inbox}"
poll_interval_secs = 1
[sink]
path = "{lake}"
format = "iceberg"
[sink.iceberg]
catalog_uri = "{uri}"
warehouse = "{warehouse}"
[flush]
max_rows = {per_file}
max_age_secs = 1
"#,
            inbox = inbox.display(),
            lake = dir.join(format!("lake-{w}")).display(),
            uri = catalog.uri,
            warehouse = catalog.warehouse.display(),
        ),
    )
    .expect("write config");
    config
}

/// [rows, distinct event ids, snapshots] of `ciem_events` in the shared catalog.
fn catalog_counts(catalog: &SharedCatalog) -> Value {
    let out = Command::new(python())
        .args([
            "-c",
            &format!(
                "import json\nfrom pyiceberg.catalog.sql import SqlCatalog\n\
                 cat = SqlCatalog('auditlake', uri='{uri}', warehouse='file://{w}')\n\
                 t = cat.load_table('auditlake.ciem_events')\n\
                 ids = t.scan(selected_fields=('metadata_uid',)).to_arrow().column('metadata_uid').to_pylist()\n\
                 print(json.dumps([len(ids), len(set(ids)), len(t.snapshots())]))",
                uri = catalog.py_uri,
                w = catalog.warehouse.display()
            ),
        ])
        .output()
        .expect("python");
    serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)
}

/// Waits until `done` holds of the catalog's counts (or 180 s).
fn wait_for(catalog: &SharedCatalog, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let seen = catalog_counts(catalog);
        if done(&seen) || std::time::Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Another host — its own state directory, no shared disk but the catalog — given input a
/// first host already committed (a redelivered message, a moved partition) skips it: what the
/// tables hold is read from their snapshot summaries, not from a local journal.
#[test]
fn a_second_host_skips_what_the_catalog_holds() {
    use common::moto::Daemon;
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = SharedCatalog::sqlite(dir.path());
    let (files, per_file) = (4, 30);
    let inputs = cloudtrail_inputs("h", files, per_file);
    let mut logs = Vec::new();
    for (w, with) in [("first", files), ("second", files + 1)] {
        let inbox = dir.path().join(format!("inbox-{w}"));
        std::fs::create_dir_all(&inbox).expect("mkdir");
        for (f, bytes) in inputs.iter().enumerate() {
            std::fs::write(inbox.join(format!("in{f}.json.gz")), bytes).expect("write");
        }
        if with > files {
            // The second host also gets one new file: it does write what is new. Half of
            // that file repeats events of the first host's (the same event ids in another
            // object, as CloudTrail may deliver): the event keys the first host committed
            // reach the second through the catalog, so those are duplicates there.
            let ids: Vec<String> = (0..per_file)
                .map(|i| {
                    if i < per_file / 2 {
                        format!("new-{i}")
                    } else {
                        format!("h-0-{i}")
                    }
                })
                .collect();
            std::fs::write(
                inbox.join("new.json.gz"),
                cloudtrail_file_at(&ids, &iso_ago(3600)),
            )
            .expect("write");
        }
        let config = writer_config(dir.path(), w, &inbox, &shared, per_file);
        let daemon = Daemon::start(&config, &dir.path().join(format!("{w}.log")));
        let total = json!(files * per_file + (with - files) * (per_file / 2));
        let seen = wait_for(&shared, |v| v[0] == total);
        // Give a duplicate time to show up before stopping.
        std::thread::sleep(std::time::Duration::from_secs(3));
        logs.push(daemon.terminate());
        let seen_after = catalog_counts(&shared);
        assert_eq!(seen[0], total, "{w}: rows; log:\n{}", logs.join("\n---\n"));
        assert_eq!(seen_after[0], total, "{w}: rows after a pause");
        assert_eq!(seen_after[1], total, "{w}: distinct ids");
    }
    let second = &logs[1];
    assert_eq!(
        second.matches("input already in the lake, skipped").count(),
        files,
        "the second host skips the first host's files:\n{second}"
    );
}

/// `kill -9` of a writer mid-stream, again and again, on a PostgreSQL catalog: after the last
/// restart every event is in the table once, and every file the table references is readable.
#[test]
fn nothing_lost_or_doubled_over_repeated_kill_9() {
    use common::moto::Daemon;
    let pg = common::postgres::Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = SharedCatalog::postgres(dir.path(), &pg);
    let (files, per_file) = (60, 40);
    let inbox = dir.path().join("inbox-k");
    std::fs::create_dir_all(&inbox).expect("mkdir");
    for f in 0..files {
        let ids: Vec<String> = (0..per_file).map(|i| format!("k-{f}-{i}")).collect();
        std::fs::write(
            inbox.join(format!("f{f:02}.json.gz")),
            cloudtrail_file_at(&ids, &iso_ago(3600)),
        )
        .expect("write input");
    }
    // Batches of half a file: commits happen all the time.
    let config = writer_config(dir.path(), "k", &inbox, &catalog, per_file / 2);
    let log = dir.path().join("k.log");
    let mut kills = 0;
    for pause_ms in [700, 450, 900, 300, 600] {
        let daemon = Daemon::start(&config, &log);
        std::thread::sleep(std::time::Duration::from_millis(pause_ms));
        let done = catalog_counts(&catalog)[0] == json!(files * per_file);
        daemon.sigkill();
        if done {
            break;
        }
        kills += 1;
    }
    let daemon = Daemon::start(&config, &log);
    let want = json!(files * per_file);
    let seen = wait_for(&catalog, |v| v[0] == want);
    let text = daemon.terminate();
    let all = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "kills {kills}; batches removed on restart {}, finished on restart {}, inputs skipped {}",
        all.matches("removed file of an unfinished batch").count(),
        all.matches("finished and recorded").count(),
        all.matches("input already in the lake, skipped").count()
    );
    assert!(kills >= 2, "the writer was killed mid-stream {kills} times");
    assert_eq!(seen[0], want, "rows after {kills} kills; log:\n{text}");
    assert_eq!(seen[1], want, "distinct event ids");
}

/// Snapshots stay bounded: past `max_snapshots` the older half is expired, the input those
/// snapshots recorded carried into the table's input checkpoint first — so another host given
/// the same input afterwards still skips all of it.
#[test]
fn expired_snapshots_keep_the_input_record() {
    use common::moto::Daemon;
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = SharedCatalog::sqlite(dir.path());
    let (files, per_file) = (14, 20);
    let inputs = cloudtrail_inputs("x", files, per_file);
    let mut logs = Vec::new();
    for w in ["first", "second"] {
        let inbox = dir.path().join(format!("inbox-{w}"));
        std::fs::create_dir_all(&inbox).expect("mkdir");
        for (f, bytes) in inputs.iter().enumerate() {
            std::fs::write(inbox.join(format!("in{f:02}.json.gz")), bytes).expect("write");
        }
        let config = writer_config(dir.path(), w, &inbox, &shared, per_file);
        let text = std::fs::read_to_string(&config).expect("config");
        std::fs::write(
            &config,
            text.replace("[flush]", "max_snapshots = 4\n[flush]"),
        )
        .expect("config");
        let daemon = Daemon::start(&config, &dir.path().join(format!("{w}.log")));
        let total = json!(files * per_file);
        let seen = wait_for(&shared, |v| v[0] == total);
        std::thread::sleep(std::time::Duration::from_secs(3));
        logs.push(daemon.terminate());
        let after = catalog_counts(&shared);
        assert_eq!(seen[0], total, "{w}: rows; log:\n{}", logs.join("\n---\n"));
        assert_eq!(after[0], total, "{w}: rows after a pause");
        assert_eq!(after[1], total, "{w}: distinct ids");
        assert!(
            after[2].as_u64().is_some_and(|n| (1..=4).contains(&n)),
            "{w}: snapshots bounded by max_snapshots: {after}"
        );
    }
    assert!(
        logs[0].contains("expired old snapshots"),
        "the first host expired snapshots:\n{}",
        logs[0]
    );
    assert_eq!(
        logs[1]
            .matches("input already in the lake, skipped")
            .count(),
        files,
        "the second host skips every file, most recorded only in checkpoints:\n{}",
        logs[1]
    );
}

/// An Iceberg REST catalog (tests/fixtures/rest_catalog.py: the REST protocol over pyiceberg's
/// SQL catalog, as Apache's iceberg-rest-fixture adapts the JDBC catalog), with OAuth2 client
/// credentials from the environment: a writer commits through it, pyiceberg's REST client
/// reads every event.
#[test]
fn rest_catalog_with_oauth2_client_credentials() {
    use common::moto::Daemon;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let warehouse = dir.path().join("warehouse");
    std::fs::create_dir_all(&warehouse).expect("mkdir");
    let mut server = Command::new(python())
        .args([
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/rest_catalog.py")
                .to_str()
                .expect("path"),
            "--port",
            &port.to_string(),
            "--db",
            dir.path().join("rest.db").to_str().expect("path"),
            "--warehouse",
            &format!("file://{}", warehouse.display()),
            "--credential",
            "auditlake:s3cr3t-rest",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("rest.log")).expect("rest log"))
        .spawn()
        .expect("start the REST catalog");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "REST catalog did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).expect("mkdir");
    let (files, per_file) = (3, 25);
    for f in 0..files {
        let ids: Vec<String> = (0..per_file).map(|i| format!("r-{f}-{i}")).collect();
        std::fs::write(
            inbox.join(format!("r{f}.json.gz")),
            cloudtrail_file_at(&ids, &iso_ago(3600)),
        )
        .expect("write input");
    }
    let config = dir.path().join("rest.toml");
    std::fs::write(
        &config,
        format!(
            r#"name = "rest"
[source]
type = "files"
path = "{inbox}"
poll_interval_secs = 1
[sink]
path = "{state}"
format = "iceberg"
[sink.iceberg]
catalog = "rest"
catalog_uri = "http://127.0.0.1:{port}"
credential_env = "AUDITLAKE_TEST_REST_CREDENTIAL"
[flush]
max_rows = {per_file}
max_age_secs = 1
"#,
            inbox = inbox.display(),
            state = dir.path().join("state").display(),
        ),
    )
    .expect("write config");
    let log = dir.path().join("rest-writer.log");
    let daemon = Daemon::start_with(
        &bin(),
        &config,
        &log,
        &[("AUDITLAKE_TEST_REST_CREDENTIAL", "auditlake:s3cr3t-rest")],
    );
    let script = format!(
        r#"import json
from pyiceberg.catalog.rest import RestCatalog
cat = RestCatalog('auditlake', uri='http://127.0.0.1:{port}', credential='auditlake:s3cr3t-rest')
t = cat.load_table('auditlake.ciem_events')
ids = t.scan(selected_fields=('metadata_uid',)).to_arrow().column('metadata_uid').to_pylist()
print(json.dumps([len(ids), len(set(ids)), len(t.snapshots())]))
"#
    );
    let want = json!(files * per_file);
    let seen = poll_python(&script, &want);
    let text = daemon.terminate();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(seen[0], want, "rows: {seen}\n{text}");
    assert_eq!(seen[1], want, "distinct ids");
    assert!(
        !text.contains("s3cr3t-rest"),
        "the client secret is never logged"
    );
}

/// The AWS Glue Data Catalog (moto's Glue) with the tables in S3 (moto's S3): a writer
/// commits, pyiceberg's own Glue catalog finds the tables and reads every event from S3.
#[test]
fn glue_catalog_with_the_tables_in_s3() {
    use common::moto::{Aws, Daemon, Moto};
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.bucket("lake");
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).expect("mkdir");
    let (files, per_file) = (3, 20);
    for (f, bytes) in cloudtrail_inputs("g", files, per_file).iter().enumerate() {
        std::fs::write(inbox.join(format!("g{f}.json.gz")), bytes).expect("write input");
    }
    let config = dir.path().join("glue.toml");
    std::fs::write(
        &config,
        format!(
            r#"name = "glue"
[source]
type = "files"
path = "{inbox}"
poll_interval_secs = 1
[sink]
path = "{state}"
format = "iceberg"
[sink.s3]
bucket = "lake"
prefix = "tables"
region = "us-east-1"
endpoint_url = "{endpoint}"
[sink.iceberg]
catalog = "glue"
catalog_uri = "{endpoint}"
[flush]
max_rows = {per_file}
max_age_secs = 1
"#,
            inbox = inbox.display(),
            state = dir.path().join("state").display(),
            endpoint = moto.endpoint,
        ),
    )
    .expect("write config");
    let daemon = Daemon::start(&config, &dir.path().join("glue.log"));
    let script = format!(
        r#"import json
from pyiceberg.catalog.glue import GlueCatalog
cat = GlueCatalog('auditlake', **{{'glue.endpoint': '{e}', 'glue.region': 'us-east-1',
    'glue.access-key-id': 'testing', 'glue.secret-access-key': 'testing',
    's3.endpoint': '{e}', 's3.access-key-id': 'testing', 's3.secret-access-key': 'testing',
    's3.region': 'us-east-1'}})
t = cat.load_table('auditlake.ciem_events')
ids = t.scan(selected_fields=('metadata_uid',)).to_arrow().column('metadata_uid').to_pylist()
files = [task.file.file_path for task in t.scan().plan_files()]
print(json.dumps([len(ids), len(set(ids)), sorted(set(f.split('/ciem_events/')[0] for f in files)), t.metadata_location.startswith('s3://lake/tables/iceberg/auditlake.db/ciem_events/metadata/'), len(t.snapshots())]))
"#,
        e = moto.endpoint
    );
    let want = json!(files * per_file);
    let seen = poll_python(&script, &want);
    let log = daemon.terminate();
    assert_eq!(seen[0], want, "rows: {seen}\n{log}");
    assert_eq!(seen[1], want, "distinct ids");
    assert_eq!(
        seen[2],
        json!(["s3://lake/tables"]),
        "data files in the bucket"
    );
    assert_eq!(seen[3], json!(true), "metadata in the warehouse: {seen}");
    assert!(
        seen[4].as_u64().unwrap_or(0) >= files as u64,
        "one commit per batch: {seen}"
    );
}
