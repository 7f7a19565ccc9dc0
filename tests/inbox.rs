//! `auditlake run`: the embedded default daemon watching an inbox, stopped by SIGTERM and
//! restarted, reading each file once.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn start(config: &Path, cwd: &Path) -> Logged {
    start_logged(&["--config", config.to_str().expect("path")], cwd, &[])
}

fn count(lake: &Path) -> i64 {
    event_count(lake)
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
        .replace("max_age_secs = 5", "max_age_secs = 1");
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
    let log = daemon.stop();
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
    daemon.stop();
    assert_eq!(count(&lake), 11);
    assert_eq!(
        scalar(&format!(
            "select count(distinct metadata_uid) from {}",
            dataset(&lake, "ciem_events")
        )),
        json!(11)
    );
}

/// (The inbox is scanned here, without notifications: the fallback is tested too.)
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
            "[source]\ntype = \"files\"\npath = \"{}\"\npoll_interval_secs = 1\nnotifications = false\n[sink]\npath = \"{}\"\n[flush]\nmax_age_secs = 3600\n",
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
    daemon.stop();
    assert_eq!(count(&lake), 5);
}

/// A daemon whose stderr is collected as it runs, so a test can wait for a log line.
struct Logged {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

/// Starts `auditlake run <args>` in `cwd` with `env` set.
fn start_logged(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Logged {
    use std::io::BufRead;
    let mut child = Command::new(bin())
        .arg("run")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    Logged { child, log, reader }
}

impl Logged {
    fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// Waits (a minute at most) for a log line holding every one of `words`; returns it.
    fn wait_for_line(&self, words: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(line) = self
                .log()
                .lines()
                .find(|l| words.iter().all(|w| l.contains(w)))
            {
                return line.to_string();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no log line with {words:?}; log:\n{}", self.log());
    }

    /// SIGTERM; the daemon must exit 0. Returns the whole log.
    fn stop(self) -> String {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let mut child = self.child;
        let status = child.wait().expect("wait");
        self.reader.join().expect("reader");
        let log = self.log.lock().expect("log").clone();
        assert!(
            status.success(),
            "daemon must exit 0 on SIGTERM; log:\n{log}"
        );
        log
    }
}

/// The first try: `auditlake run` with no config over ./inbox. The daemon says what it takes,
/// what it finished and what it commits, shows rows within seconds, and says when a file's
/// content is already in the lake.
#[test]
fn the_inbox_daemon_says_what_it_reads_and_skips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    let lake = dir.path().join("lake");
    let variants = fixtures().join("variants");
    let daemon = start_logged(&[], dir.path(), &[]);
    daemon.wait_for_line(&["watching inbox"]);
    std::fs::copy(
        variants.join("cloudtrail-export.jsonl"),
        inbox.join("first.jsonl"),
    )
    .expect("copy");
    let size = std::fs::metadata(inbox.join("first.jsonl"))
        .expect("stat")
        .len()
        .to_string();
    let taken = daemon.wait_for_line(&["input taken", "first.jsonl"]);
    assert!(taken.contains(&size), "the size is logged: {taken}");
    // Off a terminal the daemon logs JSON, one object a line.
    let taken: serde_json::Value = serde_json::from_str(&taken).expect("a JSON log line");
    assert_eq!(taken["fields"]["bytes"].to_string(), size);
    let finished = daemon.wait_for_line(&["input finished", "first.jsonl"]);
    let finished: serde_json::Value = serde_json::from_str(&finished).expect("JSON");
    assert_eq!(finished["fields"]["events"], json!(6), "{finished}");
    assert_eq!(finished["fields"]["dead_letters"], json!(0), "{finished}");
    assert!(finished["fields"]["seconds"].is_string(), "{finished}");
    // The default flush age is seconds, not a minute: rows come while the test waits.
    let committed = daemon.wait_for_line(&["batch committed", "first.jsonl"]);
    assert!(committed.contains("\"events\":6"), "{committed}");
    wait_for_rows(&lake, 6);

    // The same content under another name: read, found in the lake, and said so.
    std::fs::copy(inbox.join("first.jsonl"), inbox.join("renamed-copy.jsonl")).expect("copy");
    daemon.wait_for_line(&["already in the lake, skipped", "renamed-copy.jsonl"]);
    let log = daemon.stop();
    assert!(
        !log.lines()
            .any(|l| l.contains("input finished") && l.contains("renamed-copy.jsonl")),
        "the copy is not read: {log}"
    );
    assert_eq!(count(&lake), 6);
}

/// A directory linked into the inbox is watched like one in it (it was passed over in
/// silence). With `AUDITLAKE_LOG_FORMAT=text` the daemon logs text lines off a terminal.
#[test]
fn the_inbox_follows_symlinked_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&inbox).expect("mkdir");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::os::unix::fs::symlink(&elsewhere, inbox.join("linked")).expect("symlink");
    std::fs::create_dir_all(inbox.join("sub")).expect("mkdir");
    std::os::unix::fs::symlink("..", inbox.join("sub/loop")).expect("symlink");
    std::fs::copy(
        fixtures().join("variants/cloudtrail-export.jsonl"),
        elsewhere.join("a.jsonl"),
    )
    .expect("copy");
    let daemon = start_logged(&[], dir.path(), &[("AUDITLAKE_LOG_FORMAT", "text")]);
    let finished = daemon.wait_for_line(&["input finished", "inbox/linked/a.jsonl"]);
    assert!(
        serde_json::from_str::<serde_json::Value>(&finished).is_err() && finished.contains("INFO"),
        "a text line: {finished}"
    );
    wait_for_rows(&dir.path().join("lake"), 6);
    let log = daemon.stop();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("symbolic link loop") && l.contains("sub/loop"))
            .count(),
        1,
        "the loop is reported once, however many scans: {log}"
    );
}

/// New files are learnt from file-system notifications: one written into a deep directory made
/// after the start is read promptly although the full rescan would come only in an hour.
#[test]
fn a_file_in_a_new_deep_directory_is_read_on_notification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    let lake = dir.path().join("lake");
    let config = dir.path().join("c.toml");
    // Relative paths, as in the shipped config (the daemon runs in `dir`).
    std::fs::write(
        &config,
        "[source]\ntype = \"files\"\npath = \"./inbox\"\npoll_interval_secs = 1\nrescan_interval_secs = 3600\n[sink]\npath = \"./lake\"\n[flush]\nmax_age_secs = 1\n",
    )
    .expect("write");
    let daemon = start(&config, dir.path());
    let watching = daemon.wait_for_line(&["watching inbox"]);
    assert!(watching.contains("\"notifications\":true"), "{watching}");
    // After the first scan, only a notification tells of the new directory.
    daemon.wait_for_line(&["inbox scanned", "\"files\":0"]);
    let deep = inbox.join("2024/05/01/us-east-1/deeper");
    std::fs::create_dir_all(&deep).expect("mkdir");
    std::fs::copy(
        fixtures().join("variants/cloudtrail-export.jsonl"),
        deep.join("a.jsonl"),
    )
    .expect("copy");
    daemon.wait_for_line(&["input finished", "us-east-1/deeper/a.jsonl"]);
    wait_for_rows(&lake, 6);
    daemon.stop();
}
