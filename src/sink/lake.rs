//! The local lake: groups a batch's rows by partition, writes one Parquet file per partition
//! under a name derived from the batch's input (so the same input always lands under the same
//! names), and publishes them atomically through the commit journal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::journal::{Journal, Segment, UnitState, sync_dir, tmp_path};
use super::parquet::{ParquetOptions, write_ciem_file, write_dead_letter_file};
use super::{SinkError, partition_value};
use crate::event::{CiemEvent, DeadLetter, Provider};
use crate::normalize::date_of_ms;

/// Rows and the input positions they came from, ready to be committed together.
#[derive(Debug, Default)]
pub struct PendingBatch {
    pub events: Vec<CiemEvent>,
    pub dead_letters: Vec<DeadLetter>,
    pub segments: Vec<Segment>,
}

/// One file made visible by a commit.
#[derive(Debug, Clone)]
pub struct CommittedFile {
    /// Path relative to the lake root.
    pub path: String,
    pub rows: usize,
    pub bytes: u64,
}

pub struct LocalLake {
    root: PathBuf,
    journal: Journal,
    options: ParquetOptions,
}

/// Stable id of a batch, from the input segments it holds.
pub fn batch_id(segments: &[Segment]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for s in segments {
        h.update(s.unit.as_bytes());
        h.update(&[0]);
        h.update(&s.from.to_le_bytes());
        h.update(&s.to.to_le_bytes());
        h.update(&[u8::from(s.complete)]);
    }
    format!("{:032x}", h.digest128())
}

/// The partition an event belongs to: provider, account, UTC day.
type PartitionKey<'a> = (Provider, Option<&'a str>, i64);

fn partition_key(e: &CiemEvent) -> PartitionKey<'_> {
    (
        e.cloud_provider,
        e.cloud_account_uid.as_deref(),
        e.time_ms.div_euclid(86_400_000),
    )
}

/// `ciem_events/provider=…/account=…/date=…` for a partition key.
fn partition_dir((provider, account, day): PartitionKey<'_>) -> String {
    format!(
        "ciem_events/provider={}/account={}/date={}",
        provider.as_str(),
        partition_value(account),
        date_of_ms(day * 86_400_000)
    )
}

impl LocalLake {
    pub fn open(root: &Path, options: ParquetOptions) -> Result<Self, SinkError> {
        std::fs::create_dir_all(root).map_err(|e| SinkError::io("create directory", root, e))?;
        let journal = Journal::open(root)?;
        Ok(LocalLake {
            root: root.to_path_buf(),
            journal,
            options,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn unit(&self, unit: &str) -> Option<&UnitState> {
        self.journal.unit(unit)
    }

    /// Writes and publishes a batch. On error nothing of the batch is visible and its input is
    /// not recorded, so it will be read again.
    pub fn commit(&mut self, batch: PendingBatch) -> Result<Vec<CommittedFile>, SinkError> {
        if batch.segments.is_empty() && batch.events.is_empty() && batch.dead_letters.is_empty() {
            return Ok(Vec::new());
        }
        let id = batch_id(&batch.segments);
        let name = format!("part-{}.parquet", &id[..24]);

        let mut by_key: BTreeMap<PartitionKey, Vec<&CiemEvent>> = BTreeMap::new();
        for e in &batch.events {
            by_key.entry(partition_key(e)).or_default().push(e);
        }
        // Distinct keys can share a directory (an empty and a missing account are both
        // `unknown`; cut values), so groups are merged by directory, then sorted by time. Only
        // references move, not the (large) rows.
        let mut events: BTreeMap<String, Vec<&CiemEvent>> = BTreeMap::new();
        for (key, rows) in by_key {
            events.entry(partition_dir(key)).or_default().extend(rows);
        }
        for rows in events.values_mut() {
            rows.sort_unstable_by(|a, b| {
                (a.time_ms, &a.origin.source, a.origin.position).cmp(&(
                    b.time_ms,
                    &b.origin.source,
                    b.origin.position,
                ))
            });
        }
        let mut dead: BTreeMap<String, Vec<&DeadLetter>> = BTreeMap::new();
        for d in &batch.dead_letters {
            dead.entry(format!(
                "dead_letters/date={}",
                date_of_ms(d.ingest_time_ms)
            ))
            .or_default()
            .push(d);
        }
        let files: Vec<String> = events
            .keys()
            .chain(dead.keys())
            .map(|dir| format!("{dir}/{name}"))
            .collect();
        self.journal
            .prepare(&id, files.clone(), batch.segments.clone())?;

        let result = (|| {
            let mut out = Vec::with_capacity(files.len());
            for (dir, rows) in &events {
                out.push(self.publish(dir, &name, rows.len(), |p| {
                    write_ciem_file(p, rows, self.options)
                })?);
            }
            for (dir, rows) in &dead {
                out.push(self.publish(dir, &name, rows.len(), |p| {
                    write_dead_letter_file(p, rows, self.options)
                })?);
            }
            Ok(out)
        })();
        match result {
            Ok(out) => {
                self.journal.commit(&id)?;
                Ok(out)
            }
            Err(e) => {
                for rel in &files {
                    let p = self.root.join(rel);
                    let _ = std::fs::remove_file(tmp_path(&p));
                    let _ = std::fs::remove_file(&p);
                }
                let _ = self.journal.abort(&id);
                Err(e)
            }
        }
    }

    fn publish(
        &self,
        dir: &str,
        name: &str,
        rows: usize,
        write: impl FnOnce(&Path) -> Result<u64, SinkError>,
    ) -> Result<CommittedFile, SinkError> {
        let dir_path = self.root.join(dir);
        std::fs::create_dir_all(&dir_path)
            .map_err(|e| SinkError::io("create directory", &dir_path, e))?;
        let dest = dir_path.join(name);
        let tmp = tmp_path(&dest);
        let bytes = write(&tmp)?;
        std::fs::rename(&tmp, &dest).map_err(|e| SinkError::io("rename", &tmp, e))?;
        sync_dir(&dest)?;
        let path = format!("{dir}/{name}");
        tracing::info!(file = %path, rows, bytes, "committed file");
        Ok(CommittedFile { path, rows, bytes })
    }
}
