//! Helpers shared by the integration tests: the binary, fixtures, and DuckDB (the way users
//! read the lake).
#![allow(dead_code)]

pub mod docs;
pub mod moto;
pub mod postgres;
pub mod tansu;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test: this build's, or `AUDITLAKE_BIN` (a copy kept aside, to run a long
/// test repeatedly while the tree is edited and rebuilt).
pub fn bin() -> PathBuf {
    std::env::var_os("AUDITLAKE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_auditlake")))
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs `auditlake <args>` and returns its output.
pub fn auditlake(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run auditlake")
}

pub fn python() -> PathBuf {
    let path = std::env::var_os("AUDITLAKE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "Python with duckdb not found at {}: run the suite with `bash tests/run.sh` (it creates .venv), or set AUDITLAKE_PYTHON",
        path.display()
    );
    path
}

/// Runs SQL in DuckDB and returns the rows as JSON values (timestamps as ISO strings).
pub fn duckdb(sql: &str) -> Vec<Vec<serde_json::Value>> {
    duckdb_in(Path::new("."), sql)
}

/// As [`duckdb`], in the directory `dir`: relative paths in the SQL (`'lake/...'`) resolve
/// against it, as they do for a user who runs the query where the lake was written.
pub fn duckdb_in(dir: &Path, sql: &str) -> Vec<Vec<serde_json::Value>> {
    let script = r#"
import duckdb, json, sys, datetime, decimal
def conv(v):
    if isinstance(v, (datetime.datetime, datetime.date)): return v.isoformat()
    if isinstance(v, decimal.Decimal): return float(v)
    if isinstance(v, (list, tuple)): return [conv(x) for x in v]
    if isinstance(v, dict): return {k: conv(x) for k, x in v.items()}
    return v
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
rows = con.execute(sys.argv[1]).fetchall()
print(json.dumps([[conv(v) for v in r] for r in rows]))
"#;
    let out = Command::new(python())
        .args(["-c", script, sql])
        .current_dir(dir)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "duckdb failed for {sql}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("duckdb output is JSON")
}

/// `read_parquet(...)` over a lake dataset, as docs/queries.md tells users to read it.
pub fn dataset(lake: &Path, name: &str) -> String {
    format!(
        "read_parquet('{}/{name}/**/*.parquet', hive_partitioning = true, hive_types_autocast = false)",
        lake.display()
    )
}

pub fn scalar(sql: &str) -> serde_json::Value {
    duckdb(sql)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .unwrap_or(serde_json::Value::Null)
}

/// Rows of `ciem_events` in the lake (0 before its first file).
pub fn event_count(lake: &Path) -> i64 {
    if parquet_files(&lake.join("ciem_events")).is_empty() {
        return 0;
    }
    scalar(&format!(
        "select count(*) from {}",
        dataset(lake, "ciem_events")
    ))
    .as_i64()
    .unwrap_or(-1)
}

/// Every `*.parquet` file under `dir`, relative, sorted.
pub fn parquet_files(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// GET `path` from a local HTTP server (the daemon's `--metrics-listen`): (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// The value of the sample `series` (`name{labels}`) in a Prometheus exposition.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

/// A gzipped CloudTrail delivery file of `n` S3 `GetObject` events with ids `<tag>-<i>`;
/// `padding` extra bytes in each event's `requestParameters` make the events larger.
pub fn cloudtrail_file(tag: &str, n: usize, padding: usize) -> Vec<u8> {
    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    cloudtrail_file_with(&ids, padding, |i| {
        format!("2024-06-01T12:{:02}:{:02}Z", (i / 60) % 60, i % 60)
    })
}

/// As [`cloudtrail_file`], with the given event ids, all at `time` (ISO 8601).
pub fn cloudtrail_file_at(ids: &[String], time: &str) -> Vec<u8> {
    cloudtrail_file_with(ids, 0, |_| time.to_string())
}

/// A Tencent CloudAudit event as CLS delivers it (JSON) with id `id`, at `time` (seconds since
/// the epoch).
pub fn cloudaudit_event(id: &str, time: i64) -> String {
    serde_json::json!({
        "userIdentity": {"type": "CAMUser", "principalId": "100000000011", "accountId": "100000000001", "userName": "ops"},
        "eventTime": time,
        "eventSource": "cvm.tencentcloudapi.com",
        "eventName": "DescribeInstances",
        "eventRegion": "ap-guangzhou",
        "eventType": "ApiCall",
        "sourceIPAddress": "192.0.2.1",
        "requestID": format!("req-{id}"),
        "eventID": id,
        "errorCode": 0
    })
    .to_string()
}

/// ISO 8601 (UTC, seconds) of `secs` before now (negative: after).
pub fn iso_ago(secs: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn cloudtrail_file_with(ids: &[String], padding: usize, time: impl Fn(usize) -> String) -> Vec<u8> {
    let records: Vec<serde_json::Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut request = serde_json::json!({"bucketName": "data", "key": format!("k{i}")});
            if padding > 0 {
                request["padding"] = serde_json::json!("x".repeat(padding));
            }
            serde_json::json!({
                "eventVersion": "1.08",
                "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::111122223333:user/u{}", i % 7),
                                 "accountId": "111122223333", "accessKeyId": "AKIAEXAMPLE"},
                "eventTime": time(i),
                "eventSource": "s3.amazonaws.com",
                "eventName": "GetObject",
                "awsRegion": "us-west-2",
                "sourceIPAddress": "198.51.100.7",
                "eventID": id,
                "readOnly": true,
                "recipientAccountId": "111122223333",
                "requestParameters": request
            })
        })
        .collect();
    gzip(
        serde_json::json!({ "Records": records })
            .to_string()
            .as_bytes(),
    )
}
