//! `auditlake run`: the embedded default daemon watching an inbox, stopped by SIGTERM and
//! restarted, reading each file once.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn start(config: &Path, cwd: &Path) -> Child {
    Command::new(bin())
        .args(["run", "--config", config.to_str().expect("path")])
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon")
}

fn count(lake: &Path) -> i64 {
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

fn wait_for_rows(lake: &Path, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if count(lake) >= want {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("lake never reached {want} rows (has {})", count(lake));
}

fn stop(child: Child) -> String {
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "daemon must exit 0 on SIGTERM; log:\n{log}"
    );
    log
}

#[test]
fn inbox_daemon_reads_each_file_once_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("local.toml");
    // The shipped config, with short intervals for the test.
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/local.toml"))
            .expect("read");
    let cfg = shipped
        .replace("poll_interval_secs = 2", "poll_interval_secs = 1")
        .replace("max_age_secs = 60", "max_age_secs = 1");
    std::fs::write(&config, cfg).expect("write config");
    let inbox = dir.path().join("inbox");
    let lake = dir.path().join("lake");
    let variants = fixtures().join("variants");

    let daemon = start(&config, dir.path());
    std::fs::create_dir_all(inbox.join("2024/05/01")).expect("mkdir");
    std::fs::copy(
        variants.join("cloudtrail-export.jsonl"),
        inbox.join("2024/05/01/a.jsonl"),
    )
    .expect("copy");
    wait_for_rows(&lake, 6);
    // While the daemon runs, its lake has one writer: a replay into it is refused, not raced.
    let replay = Command::new(bin())
        .args(["replay", "--out", lake.to_str().expect("path")])
        .arg(variants.join("cls-kafka.jsonl"))
        .output()
        .expect("run replay");
    let stderr = String::from_utf8_lossy(&replay.stderr);
    assert_eq!(replay.status.code(), Some(1), "replay must fail: {stderr}");
    assert!(
        stderr.contains("is in use by another auditlake process"),
        "the error says why: {stderr}"
    );
    assert_eq!(count(&lake), 6, "the refused replay wrote nothing");
    let log = stop(daemon);
    assert!(
        log.contains("committed file"),
        "one log line per committed file: {log}"
    );

    // Restart: the same content under another name is not read again; a new file is.
    let daemon = start(&config, dir.path());
    std::fs::copy(
        variants.join("cloudtrail-export.jsonl"),
        inbox.join("copy-of-a.jsonl"),
    )
    .expect("copy");
    std::fs::copy(variants.join("cls-kafka.jsonl"), inbox.join("b.jsonl")).expect("copy");
    wait_for_rows(&lake, 11);
    std::thread::sleep(Duration::from_secs(3)); // a few more scans: nothing else may appear
    stop(daemon);
    assert_eq!(count(&lake), 11);
    assert_eq!(
        scalar(&format!(
            "select count(distinct metadata_uid) from {}",
            dataset(&lake, "ciem_events")
        )),
        json!(11)
    );
}

#[test]
fn sigterm_mid_file_commits_what_was_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&inbox).expect("mkdir");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\ntype = \"files\"\npath = \"{}\"\npoll_interval_secs = 1\n[sink]\npath = \"{}\"\n[flush]\nmax_age_secs = 3600\n",
            inbox.display(),
            lake.display()
        ),
    )
    .expect("write");
    std::fs::copy(
        fixtures().join("variants/cls-kafka.jsonl"),
        inbox.join("b.jsonl"),
    )
    .expect("copy");
    let daemon = start(&config, dir.path());
    // The file is read after one settle interval; with a one-hour age limit nothing is
    // committed until shutdown, which must commit it.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        count(&lake),
        0,
        "nothing is committed before the flush policy says so"
    );
    stop(daemon);
    assert_eq!(count(&lake), 5);
}
