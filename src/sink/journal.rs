//! The commit journal: an append-only JSON-lines file under `<lake>/_auditlake/` that records
//! which input (units: files, objects, partitions; and positions within them) is durably in the
//! lake. It is what makes a replay or a restart skip input already written, and what makes a
//! crash between writing files and recording them harmless:
//!
//! 1. `prepare` lists the files a batch is about to publish (fsynced before any file appears);
//! 2. the files are written under temporary names, fsynced and renamed into place;
//! 3. `commit` records the batch's input segments (fsynced).
//!
//! On open, a `prepare` without its `commit` means the process died mid-batch: its files are
//! deleted (their input was not recorded, so it will be read again) and an `abort` is appended.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SinkError;

/// Positions `[from, to)` of one input unit that a batch wrote; `complete` when the unit ended
/// inside this batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub unit: String,
    pub from: i64,
    pub to: i64,
    pub complete: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Entry {
    Prepare {
        batch: String,
        files: Vec<String>,
        segments: Vec<Segment>,
    },
    Commit {
        batch: String,
    },
    Abort {
        batch: String,
    },
    /// A unit's state, written when the journal is compacted.
    Unit {
        unit: String,
        ranges: Vec<(i64, i64)>,
        complete: bool,
    },
}

/// What the lake already holds of one input unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// Sorted, non-overlapping half-open position ranges.
    ranges: Vec<(i64, i64)>,
    pub complete: bool,
}

impl UnitState {
    pub fn contains(&self, position: i64) -> bool {
        let i = self.ranges.partition_point(|&(_, to)| to <= position);
        self.ranges
            .get(i)
            .is_some_and(|&(from, _)| from <= position)
    }

    fn add(&mut self, from: i64, to: i64) {
        if to > from {
            self.ranges.push((from, to));
            self.ranges.sort_unstable();
            let mut merged: Vec<(i64, i64)> = Vec::with_capacity(self.ranges.len());
            for &(f, t) in &self.ranges {
                match merged.last_mut() {
                    Some(last) if f <= last.1 => last.1 = last.1.max(t),
                    _ => merged.push((f, t)),
                }
            }
            self.ranges = merged;
        }
    }
}

pub struct Journal {
    path: PathBuf,
    file: File,
    units: HashMap<String, UnitState>,
    pending: HashMap<String, Vec<Segment>>,
}

/// Journals longer than this are rewritten as one line per unit when opened.
const COMPACT_AFTER_LINES: usize = 20_000;

impl Journal {
    /// Opens (or creates) the journal of the lake at `root`, recovering from a crash.
    pub fn open(root: &Path) -> Result<Self, SinkError> {
        Self::open_with(root, &mut |_| Ok(()))
    }

    /// Like [`Journal::open`]; `remove_remote` is also called with the path (relative to the
    /// lake) of every file of an unfinished batch, before the batch is marked aborted, so a copy
    /// published elsewhere (an S3 output) is removed too.
    pub fn open_with(
        root: &Path,
        remove_remote: &mut dyn FnMut(&str) -> Result<(), SinkError>,
    ) -> Result<Self, SinkError> {
        let dir = root.join("_auditlake");
        std::fs::create_dir_all(&dir).map_err(|e| SinkError::io("create directory", &dir, e))?;
        let path = dir.join("journal.jsonl");
        let mut units: HashMap<String, UnitState> = HashMap::new();
        let mut prepared: HashMap<String, (Vec<String>, Vec<Segment>)> = HashMap::new();
        let mut lines = 0usize;
        let mut torn_tail = false;
        if path.exists() {
            let f = File::open(&path).map_err(|e| SinkError::io("open", &path, e))?;
            let all: Vec<String> = BufReader::new(f)
                .lines()
                .collect::<Result<_, _>>()
                .map_err(|e| SinkError::io("read", &path, e))?;
            let last = all.len();
            for (i, line) in all.into_iter().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                lines += 1;
                let entry: Entry = match serde_json::from_str(&line) {
                    Ok(e) => e,
                    // A crash can leave the last line half-written; anything else is damage.
                    Err(_) if i + 1 == last => {
                        torn_tail = true;
                        continue;
                    }
                    Err(e) => {
                        return Err(SinkError::Journal {
                            path,
                            line: i + 1,
                            reason: e.to_string(),
                        });
                    }
                };
                match entry {
                    Entry::Prepare {
                        batch,
                        files,
                        segments,
                    } => {
                        prepared.insert(batch, (files, segments));
                    }
                    Entry::Commit { batch } => {
                        if let Some((_, segments)) = prepared.remove(&batch) {
                            apply(&mut units, &segments);
                        }
                    }
                    Entry::Abort { batch } => {
                        prepared.remove(&batch);
                    }
                    Entry::Unit {
                        unit,
                        ranges,
                        complete,
                    } => {
                        let state = units.entry(unit).or_default();
                        for (f, t) in ranges {
                            state.add(f, t);
                        }
                        state.complete |= complete;
                    }
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| SinkError::io("open", &path, e))?;
        let mut journal = Journal {
            path,
            file,
            units,
            pending: HashMap::new(),
        };
        if torn_tail {
            journal.append_raw(b"\n")?;
        }
        for (batch, (files, _)) in prepared {
            for rel in files {
                remove_remote(&rel)?;
                let final_path = root.join(&rel);
                let tmp = tmp_path(&final_path);
                for p in [final_path, tmp] {
                    match std::fs::remove_file(&p) {
                        Ok(()) => {
                            tracing::warn!(file = %p.display(), "removed file of an unfinished batch; its input will be read again")
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(SinkError::io("remove", &p, e)),
                    }
                }
            }
            journal.append(&Entry::Abort { batch })?;
        }
        if lines > COMPACT_AFTER_LINES {
            journal.compact()?;
        }
        Ok(journal)
    }

    pub fn unit(&self, unit: &str) -> Option<&UnitState> {
        self.units.get(unit)
    }

    pub fn prepare(
        &mut self,
        batch: &str,
        files: Vec<String>,
        segments: Vec<Segment>,
    ) -> Result<(), SinkError> {
        self.append(&Entry::Prepare {
            batch: batch.to_string(),
            files,
            segments: segments.clone(),
        })?;
        self.pending.insert(batch.to_string(), segments);
        Ok(())
    }

    pub fn commit(&mut self, batch: &str) -> Result<(), SinkError> {
        self.append(&Entry::Commit {
            batch: batch.to_string(),
        })?;
        if let Some(segments) = self.pending.remove(batch) {
            apply(&mut self.units, &segments);
        }
        Ok(())
    }

    pub fn abort(&mut self, batch: &str) -> Result<(), SinkError> {
        self.pending.remove(batch);
        self.append(&Entry::Abort {
            batch: batch.to_string(),
        })
    }

    fn append(&mut self, entry: &Entry) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(entry).map_err(|e| SinkError::Schema(e.to_string()))?;
        line.push(b'\n');
        self.append_raw(&line)
    }

    fn append_raw(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.file
            .write_all(bytes)
            .map_err(|e| SinkError::io("append to", &self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| SinkError::io("fsync", &self.path, e))
    }

    /// Rewrites the journal as one `unit` line per unit (atomically, by rename).
    fn compact(&mut self) -> Result<(), SinkError> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut out = Vec::new();
        let mut names: Vec<&String> = self.units.keys().collect();
        names.sort();
        for unit in names {
            let state = &self.units[unit];
            let entry = Entry::Unit {
                unit: unit.clone(),
                ranges: state.ranges.clone(),
                complete: state.complete,
            };
            out.extend(serde_json::to_vec(&entry).map_err(|e| SinkError::Schema(e.to_string()))?);
            out.push(b'\n');
        }
        write_durably(&tmp, &self.path, &out)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| SinkError::io("open", &self.path, e))?;
        Ok(())
    }
}

fn apply(units: &mut HashMap<String, UnitState>, segments: &[Segment]) {
    for s in segments {
        let state = units.entry(s.unit.clone()).or_default();
        state.add(s.from, s.to);
        state.complete |= s.complete;
    }
}

/// `<name>.tmp` beside `path`: never matched by `*.parquet` globs.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `tmp`, fsyncs, renames to `dest` and fsyncs the directory.
pub fn write_durably(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    let mut f = File::create(tmp).map_err(|e| SinkError::io("create", tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| SinkError::io("write", tmp, e))?;
    f.sync_all().map_err(|e| SinkError::io("fsync", tmp, e))?;
    std::fs::rename(tmp, dest).map_err(|e| SinkError::io("rename", tmp, e))?;
    sync_dir(dest)
}

pub fn sync_dir(path: &Path) -> Result<(), SinkError> {
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| SinkError::io("fsync directory", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(unit: &str, from: i64, to: i64, complete: bool) -> Vec<Segment> {
        vec![Segment {
            unit: unit.into(),
            from,
            to,
            complete,
        }]
    }

    #[test]
    fn committed_segments_survive_reopen_and_unfinished_batches_are_undone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        {
            let mut j = Journal::open(root).expect("open");
            j.prepare("b1", vec![], seg("u1", 0, 10, false))
                .expect("prepare");
            j.commit("b1").expect("commit");
            j.prepare("b2", vec![], seg("u1", 10, 15, true))
                .expect("prepare");
            j.commit("b2").expect("commit");
            std::fs::create_dir_all(root.join("x")).expect("mkdir");
            std::fs::write(root.join("x/part-b3.parquet"), b"half").expect("write");
            j.prepare(
                "b3",
                vec!["x/part-b3.parquet".into()],
                seg("u2", 0, 5, true),
            )
            .expect("prepare");
            // crash: no commit for b3
        }
        let j = Journal::open(root).expect("reopen");
        let u1 = j.unit("u1").expect("u1");
        assert!(u1.complete && u1.contains(0) && u1.contains(14) && !u1.contains(15));
        assert!(j.unit("u2").is_none(), "uncommitted batch must not count");
        assert!(
            !root.join("x/part-b3.parquet").exists(),
            "files of the unfinished batch are removed"
        );
    }

    #[test]
    fn torn_last_line_is_tolerated_and_compaction_keeps_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        {
            let mut j = Journal::open(root).expect("open");
            j.prepare("b1", vec![], seg("u1", 0, 3, true))
                .expect("prepare");
            j.commit("b1").expect("commit");
        }
        let path = root.join("_auditlake/journal.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(b"{\"op\":\"prep").expect("write");
        drop(f);
        let mut j = Journal::open(root).expect("reopen");
        assert!(j.unit("u1").is_some_and(|u| u.complete));
        j.compact().expect("compact");
        let j = Journal::open(root).expect("reopen after compaction");
        assert!(j.unit("u1").is_some_and(|u| u.complete && u.contains(2)));
    }
}
