//! The batcher on Iceberg tables that writers with their own state directories share: the
//! conditional commit (claims) and the event keys shared through the catalog.

use std::path::Path;

use super::{Batcher, FlushPolicy};
use crate::sink::SinkError;
use crate::sink::iceberg::{IcebergConfig, IcebergTables};
use crate::sink::lake::LocalLake;
use crate::sink::parquet::ParquetOptions;

/// Parquet files under `dir`, at any depth.
fn parquet_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                let p = e.path();
                if p.is_dir() {
                    parquet_files(&p)
                } else {
                    usize::from(p.extension().is_some_and(|x| x == "parquet"))
                }
            })
            .sum()
    })
}

/// One catalog (SQLite, under `dir`) that writers with their own state directories share.
fn shared_catalog(dir: &Path) -> IcebergConfig {
    IcebergConfig {
        catalog_uri: Some(format!(
            "sqlite://{}?mode=rwc",
            dir.join("catalog.db").display()
        )),
        warehouse: Some(dir.join("warehouse").display().to_string()),
        ..IcebergConfig::default()
    }
}

/// A writer of the [`shared_catalog`] with its state directory `dir/name`.
fn writer(dir: &Path, name: &str) -> Batcher {
    let options = ParquetOptions {
        timestamps_us: true,
        ..Default::default()
    };
    let root = dir.join(name);
    let tables = IcebergTables::open(&root, &shared_catalog(dir), None).expect("tables");
    let lake =
        LocalLake::open_instance(&root, options, Some(name), Some(Box::new(tables))).expect("lake");
    Batcher::new(lake, FlushPolicy::default())
}

/// Rows each append to `ciem_events` added, sorted.
fn rows_added(dir: &Path) -> Vec<u64> {
    let mut tables =
        IcebergTables::open(&dir.join("reader"), &shared_catalog(dir), None).expect("tables");
    let mut added: Vec<u64> = tables.snapshot_rows()["ciem_events"]
        .iter()
        .map(|(_, rows)| *rows)
        .collect();
    added.sort_unstable();
    added
}

/// Two writers on one catalog read the same positions of a unit (a Kafka partition that
/// moved while its old owner still held a batch; an SQS message redelivered to another
/// host while the first still read it): the second commit is refused, nothing is written
/// twice, and the refused writer's next read skips what the first committed.
#[test]
fn a_batch_whose_input_another_writer_committed_meanwhile_is_refused() {
    use crate::normalize::unit::tests::{decode, message};
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = "kafka:t/0";
    let read = |b: &mut Batcher, from: i64, to: i64| {
        for p in from..to {
            b.push_all(unit, p, decode(&message(&format!("e{p}")), p))
                .expect("push");
        }
    };
    let (mut a, mut b) = (writer(dir.path(), "a"), writer(dir.path(), "b"));
    a.begin_unit(unit);
    read(&mut a, 0, 10);
    // (Had both read exactly 0..10, the batches would have one id: the second would be
    // taken as committed already, its files unreferenced.)
    b.begin_unit(unit);
    read(&mut b, 0, 12);
    b.flush().expect("b commits first");
    let err = a.flush().expect_err("a's batch repeats what b committed");
    assert!(
        matches!(&err, SinkError::InputTaken { unit: u, from: 0, to: 10 } if u == unit),
        "{err}"
    );
    assert_eq!(
        parquet_files(&dir.path().join("a/ciem_events")),
        0,
        "a's files removed"
    );
    // `a` reads the unit again (its pipeline restarted): b's positions are skipped.
    a.begin_unit(unit);
    read(&mut a, 0, 15);
    a.flush().expect("a commits what is new");
    assert_eq!(a.stats.positions_already_in_lake, 12);
    assert_eq!(
        rows_added(dir.path()),
        [3, 12],
        "rows each commit added: every position once"
    );
}

/// Writers with their own state directories share the event keys through the catalog:
/// an event id one committed is a duplicate for the other (the same event in another
/// input, within the dedup horizon), and both hash ids with the catalog's seed.
#[test]
fn event_ids_another_writer_committed_are_duplicates_here() {
    use crate::normalize::unit::tests::decode;
    let dir = tempfile::tempdir().expect("tempdir");
    let recent = |id: &str| {
        let secs = crate::event::now_ms() / 1000 - 60;
        format!(
            r#"{{"eventID":"{id}","eventTime":{secs},"eventSource":"cvm.tencentcloudapi.com","eventName":"RunInstances","eventRegion":"ap-guangzhou","userIdentity":{{"accountId":"1"}}}}"#
        )
        .into_bytes()
    };
    let read = |w: &mut Batcher, unit: &str, ids: &[&str]| {
        w.begin_unit(unit);
        for (p, id) in ids.iter().enumerate() {
            let p = i64::try_from(p).expect("position");
            w.push_all(unit, p, decode(&recent(id), p)).expect("push");
        }
        w.end_unit(unit);
        w.flush().expect("commit");
    };
    let (mut a, mut b) = (writer(dir.path(), "a"), writer(dir.path(), "b"));
    read(&mut b, "file:x", &["e1", "e2"]);
    read(&mut a, "file:y", &["e1", "e3"]);
    assert_eq!(
        (a.stats.events_written, a.stats.duplicates_dropped),
        (1, 1),
        "e1 is b's"
    );
    // And back: b sees what a committed since.
    read(&mut b, "file:z", &["e3", "e4"]);
    assert_eq!(b.stats.duplicates_dropped, 1, "e3 is a's");
    assert_eq!(rows_added(dir.path()), [1, 1, 2], "every event id once");
    let seed = |w: &str| {
        std::fs::read_to_string(dir.path().join(w).join("_auditlake/keys/seed")).expect("seed")
    };
    assert_eq!(seed("a"), seed("b"), "one seed, the catalog's");
}
