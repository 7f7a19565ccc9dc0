//! No (provider, event id) twice across restarts, within the dedup horizon: the same event
//! delivered in two inputs (CloudTrail does this, sometimes hours apart; so can CLS) read by
//! separate runs — `replay` twice, and the inbox, SQS and Kafka daemons stopped with SIGTERM
//! and SIGKILL between the inputs — lands once. Past the horizon it may land twice, as
//! documented.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::moto::{Aws, Daemon, Moto};
use common::tansu::{Tansu, produce_one_per_batch};
use common::*;

fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// (rows, distinct event ids) in the lake's `ciem_events`.
fn counts(lake: &Path) -> (i64, i64) {
    if parquet_files(&lake.join("ciem_events")).is_empty() {
        return (0, 0);
    }
    let row = duckdb(&format!(
        "select count(*), count(distinct metadata_uid) from {}",
        dataset(lake, "ciem_events")
    ));
    (
        row[0][0].as_i64().unwrap_or(-1),
        row[0][1].as_i64().unwrap_or(-1),
    )
}

/// The ids in the lake that are not in `want`, and those of `want` missing from it.
fn diff(lake: &Path, want: &[String]) -> (Vec<String>, Vec<String>) {
    let have: std::collections::BTreeSet<String> = duckdb(&format!(
        "select distinct metadata_uid from {}",
        dataset(lake, "ciem_events")
    ))
    .into_iter()
    .filter_map(|r| r[0].as_str().map(str::to_string))
    .collect();
    let want: std::collections::BTreeSet<String> = want.iter().cloned().collect();
    (
        have.difference(&want).cloned().collect(),
        want.difference(&have).cloned().collect(),
    )
}

fn wait_for(what: &str, daemon: &mut Daemon, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        daemon.assert_running();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn replay(file: &Path, lake: &Path, horizon: &str) -> String {
    let out = auditlake(&[
        "replay",
        file.to_str().expect("path"),
        "--out",
        lake.to_str().expect("path"),
        "--dedup-horizon",
        horizon,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "replay failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn replays_of_two_files_sharing_event_ids_write_each_event_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let (a, b) = (dir.path().join("a.json.gz"), dir.path().join("b.json.gz"));
    let recent = iso_ago(3600);
    std::fs::write(&a, cloudtrail_file_at(&ids("e", 0..100), &recent)).expect("write");
    std::fs::write(&b, cloudtrail_file_at(&ids("e", 50..150), &recent)).expect("write");

    replay(&a, &lake, "48h");
    let second = replay(&b, &lake, "48h");
    assert!(second.contains("50 duplicates dropped"), "{second}");
    assert_eq!(counts(&lake), (150, 150));
    assert_eq!(diff(&lake, &ids("e", 0..150)), (vec![], vec![]));
    let keys = lake.join("_auditlake/keys");
    assert!(
        std::fs::read_dir(&keys).is_ok_and(|d| d.count() >= 2),
        "the keys are committed beside the journal"
    );
}

#[test]
fn a_duplicate_three_days_old_lands_twice_with_a_48h_horizon_and_once_with_7d() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = iso_ago(3 * 86_400);
    // The same 10 events delivered in two files (different files: another key order).
    let (c, d) = (dir.path().join("c.json.gz"), dir.path().join("d.json.gz"));
    let mut reversed = ids("old", 0..10);
    reversed.reverse();
    std::fs::write(&c, cloudtrail_file_at(&ids("old", 0..10), &old)).expect("write");
    std::fs::write(&d, cloudtrail_file_at(&reversed, &old)).expect("write");

    let short = dir.path().join("lake-48h");
    replay(&c, &short, "48h");
    replay(&d, &short, "48h");
    assert_eq!(
        counts(&short),
        (20, 10),
        "outside the horizon, separate runs may write an event twice (documented)"
    );

    let long = dir.path().join("lake-7d");
    replay(&c, &long, "7d");
    replay(&d, &long, "7d");
    assert_eq!(counts(&long), (10, 10));

    let off = dir.path().join("lake-off");
    replay(&c, &off, "off");
    replay(&d, &off, "off");
    assert_eq!(counts(&off), (20, 10), "`off` keeps no keys");
    assert!(!off.join("_auditlake/keys").exists());
}

/// Writes `name` into `dir` atomically (the inbox may see it at any moment).
fn drop_file(dir: &Path, name: &str, bytes: Vec<u8>) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

/// The sequence every daemon test runs: `deliver(ids)` hands the pipeline events with those
/// ids (sharing half of them with the delivery before); between deliveries the daemon is
/// stopped with SIGTERM, then killed with SIGKILL, and started again. Then every event must be
/// in the lake exactly once.
fn deliver_across_restarts(
    config: &Path,
    lake: &Path,
    prefix: &str,
    mut deliver: impl FnMut(usize, &[String]),
) {
    let log = config.with_extension("log");
    let steps = [(0..100, "sigterm"), (50..150, "sigkill"), (0..200, "end")];
    for (n, (range, then)) in steps.into_iter().enumerate() {
        let mut daemon = Daemon::start(config, &log);
        let want = range.end as i64;
        deliver(n, &ids(prefix, range));
        wait_for(&format!("{want} distinct events"), &mut daemon, || {
            counts(lake).1 >= want
        });
        match then {
            "sigterm" => drop(daemon.terminate()),
            "sigkill" => daemon.sigkill(),
            _ => {
                let log = daemon.terminate();
                assert_eq!(counts(lake), (200, 200), "{log}");
            }
        }
    }
    assert_eq!(diff(lake, &ids(prefix, 0..200)), (vec![], vec![]));
}

#[test]
fn inbox_daemon_restarted_with_sigterm_and_sigkill_writes_each_event_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inbox, lake) = (dir.path().join("inbox"), dir.path().join("lake"));
    let config = dir.path().join("inbox.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"inbox-dedup\"\n[source]\ntype = \"files\"\npath = \"{}\"\npoll_interval_secs = 1\n[sink]\npath = \"{}\"\n[flush]\nmax_age_secs = 1\n",
            inbox.display(),
            lake.display()
        ),
    )
    .expect("config");
    let now = iso_ago(60);
    deliver_across_restarts(&config, &lake, "i", |n, ids| {
        drop_file(
            &inbox,
            &format!("{n}.json.gz"),
            cloudtrail_file_at(ids, &now),
        );
    });
}

#[test]
fn sqs_daemon_restarted_with_sigterm_and_sigkill_writes_each_event_once() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let queue = aws.queue("dedup", 3);
    aws.bucket("trail");
    aws.notify("trail", &queue);
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = dir.path().join("sqs.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"sqs-dedup\"\n[source]\ntype = \"sqs_s3\"\nqueue_url = \"{queue}\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nwait_time_secs = 1\nvisibility_timeout_secs = 3\n[sink]\npath = \"{}\"\n[flush]\nmax_age_secs = 1\n",
            moto.endpoint,
            lake.display()
        ),
    )
    .expect("config");
    let now = iso_ago(60);
    deliver_across_restarts(&config, &lake, "s", |n, ids| {
        let key = format!("AWSLogs/111122223333/CloudTrail/us-west-2/2026/12/03/obj{n}.json.gz");
        aws.put("trail", &key, cloudtrail_file_at(ids, &now));
    });
}

#[test]
fn kafka_daemon_restarted_with_sigterm_and_sigkill_writes_each_event_once() {
    let tansu = Tansu::start();
    tansu.create_topic("audit", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let config = dir.path().join("kafka.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"kafka-dedup\"\n[source]\ntype = \"kafka\"\nbootstrap_servers = \"{}\"\ntopic = \"audit\"\ngroup_id = \"dedup\"\nstart_position = \"earliest\"\n[source.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n[sink]\npath = \"{}\"\n[flush]\nmax_age_secs = 1\n",
            tansu.bootstrap(),
            lake.display()
        ),
    )
    .expect("config");
    let now = chrono::Utc::now().timestamp() - 60;
    // The same events again in new messages (new offsets), read by a new process. One message
    // per batch: the restarts resume from committed offsets, and tansu skips the rest of a
    // batch fetched from its middle (tests/common/tansu.rs).
    deliver_across_restarts(&config, &lake, "k", |_, ids| {
        let messages: Vec<(i32, String)> = ids
            .iter()
            .map(|id| (0, cloudaudit_event(id, now)))
            .collect();
        produce_one_per_batch(&tansu.bootstrap(), "audit", "none", &messages);
    });
}
