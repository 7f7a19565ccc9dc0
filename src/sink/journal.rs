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
//!
//! Several processes can share one lake when each has its own instance name (`[sink]
//! instance`): each then keeps `_auditlake/journal-<instance>.jsonl`, held by an exclusive lock
//! (`journal-<instance>.lock`) so no two processes use one name, and recovers only its own
//! batches. What the other instances committed is honoured too: when a unit is begun that this
//! journal does not record as complete, the other journals (append-only, read incrementally)
//! are consulted, so an SQS object redelivered to another process or a Kafka partition that
//! moved is not written twice. The single-process journal (`journal.jsonl`) is read as one of
//! them.

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
    /// The state as segments of `unit` (what [`UnitState::add_segment`] rebuilds it from).
    pub fn segments(&self, unit: &str) -> Vec<Segment> {
        let mut out: Vec<Segment> = self
            .ranges
            .iter()
            .map(|&(from, to)| Segment {
                unit: unit.to_string(),
                from,
                to,
                complete: false,
            })
            .collect();
        match out.last_mut() {
            Some(last) => last.complete = self.complete,
            None if self.complete => out.push(Segment {
                unit: unit.to_string(),
                from: 0,
                to: 0,
                complete: true,
            }),
            None => {}
        }
        out
    }

    /// Adds what `other` holds.
    pub fn merge(&mut self, other: &UnitState) {
        for &(f, t) in &other.ranges {
            self.add(f, t);
        }
        self.complete |= other.complete;
    }

    /// Adds a committed segment's range.
    pub fn add_segment(&mut self, s: &Segment) {
        self.add(s.from, s.to);
        self.complete |= s.complete;
    }

    /// Whether it holds all of a segment: its whole range, and its end when it has one.
    pub fn covers(&self, s: &Segment) -> bool {
        let range = s.to <= s.from || {
            let i = self.ranges.partition_point(|&(_, to)| to <= s.from);
            self.ranges
                .get(i)
                .is_some_and(|&(from, to)| from <= s.from && s.to <= to)
        };
        range && (self.complete || !s.complete)
    }

    /// The parts of the range `from..to` it does not hold, in order.
    pub fn missing(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut at = from;
        let i = self.ranges.partition_point(|&(_, t)| t <= from);
        for &(f, t) in &self.ranges[i..] {
            if at >= to || f >= to {
                break;
            }
            if f > at {
                out.push((at, f));
            }
            at = at.max(t);
        }
        if at < to {
            out.push((at, to));
        }
        out
    }

    /// The first part of the range `from..to` it holds, if any.
    pub fn overlap(&self, from: i64, to: i64) -> Option<(i64, i64)> {
        let i = self.ranges.partition_point(|&(_, t)| t <= from);
        self.ranges
            .get(i)
            .filter(|&&(f, _)| f < to)
            .map(|&(f, t)| (f.max(from), t.min(to)))
    }

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
    /// Set when the lake is shared: this process's instance name.
    instance: Option<String>,
    /// Held while the journal is open (shared lakes only); released by the OS on exit.
    _lock: Option<File>,
    /// What other instances' journals record, read incrementally.
    others: HashMap<PathBuf, OtherJournal>,
}

/// The part of another instance's journal read so far.
#[derive(Default)]
struct OtherJournal {
    /// Inode the offset belongs to (compaction replaces the file).
    inode: u64,
    offset: u64,
    prepared: HashMap<String, (Vec<String>, Vec<Segment>)>,
    units: HashMap<String, UnitState>,
}

/// Checks an instance name: it becomes part of file names.
pub fn check_instance(name: &str) -> Result<(), SinkError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(SinkError::Config(format!(
            "[sink] instance {name:?} must be 1 to 64 letters, digits, `_` or `-` (not starting with `-`)"
        )))
    }
}

/// Applies one journal entry to a unit table and the batches prepared but not finished.
fn replay(
    entry: Entry,
    units: &mut HashMap<String, UnitState>,
    prepared: &mut HashMap<String, (Vec<String>, Vec<Segment>)>,
) {
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
                apply(units, &segments);
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

/// What opening a journal does with a batch a crash left prepared, beside the local files.
pub trait Recovery {
    /// Whether the batch reached its commit point elsewhere (a catalog), in part or whole; if
    /// so, this finishes it there and it is recorded as committed, its files kept.
    fn roll_forward(
        &mut self,
        batch: &str,
        files: &[String],
        segments: &[Segment],
    ) -> Result<bool, SinkError>;
    /// Removes a published copy of `rel` (relative to the lake) of an unfinished batch, before
    /// the batch is marked aborted.
    fn remove(&mut self, rel: &str) -> Result<(), SinkError>;
}

/// A lake with nothing beside its directory.
pub struct LocalOnly;

impl Recovery for LocalOnly {
    fn roll_forward(&mut self, _: &str, _: &[String], _: &[Segment]) -> Result<bool, SinkError> {
        Ok(false)
    }
    fn remove(&mut self, _: &str) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Journals longer than this are rewritten as one line per unit when opened.
const COMPACT_AFTER_LINES: usize = 20_000;

impl Journal {
    /// Opens (or creates) the journal of the lake at `root`, recovering from a crash.
    pub fn open(root: &Path) -> Result<Self, SinkError> {
        Self::open_instance(root, None, &mut LocalOnly)
    }

    /// Like [`Journal::open_with`], for the instance `instance` of a lake shared by several
    /// processes (`None`: the single-process journal). Fails if another process holds the
    /// instance.
    pub fn open_instance(
        root: &Path,
        instance: Option<&str>,
        recovery: &mut dyn Recovery,
    ) -> Result<Self, SinkError> {
        let dir = root.join("_auditlake");
        std::fs::create_dir_all(&dir).map_err(|e| SinkError::io("create directory", &dir, e))?;
        // Every writer holds an exclusive lock for as long as it runs: a named instance its
        // own, the single unnamed writer the lake's (so a `replay` into a running daemon's lake,
        // or a second unnamed daemon, is refused instead of racing on one journal).
        let (path, lock_path) = match instance {
            None => (dir.join("journal.jsonl"), dir.join("journal.lock")),
            Some(name) => {
                check_instance(name)?;
                (
                    dir.join(format!("journal-{name}.jsonl")),
                    dir.join(format!("journal-{name}.lock")),
                )
            }
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| SinkError::io("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(match instance {
                    Some(name) => SinkError::InstanceBusy {
                        instance: name.to_string(),
                        lock: lock_path,
                    },
                    None => SinkError::LakeBusy {
                        root: root.to_path_buf(),
                        lock: lock_path,
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(SinkError::io("lock", &lock_path, e));
            }
        }
        let lock = Some(lock);
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
                replay(entry, &mut units, &mut prepared);
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
            instance: instance.map(str::to_string),
            _lock: lock,
            others: HashMap::new(),
        };
        if torn_tail {
            journal.append_raw(b"\n")?;
        }
        for (batch, (files, segments)) in prepared {
            // Committed, in part or whole, where the commit point is (an Iceberg catalog)
            // before the crash: the batch is in the lake, so it is finished and recorded, not
            // removed.
            if recovery.roll_forward(&batch, &files, &segments)? {
                tracing::info!(batch = %batch, "batch committed to the catalog before a restart: finished and recorded");
                journal.append(&Entry::Commit { batch })?;
                apply(&mut journal.units, &segments);
                continue;
            }
            for rel in files {
                recovery.remove(&rel)?;
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

    /// What this journal records of `unit`.
    pub fn unit(&self, unit: &str) -> Option<&UnitState> {
        self.units.get(unit)
    }

    /// What the lake holds of `unit` according to this journal and, in a shared lake when this
    /// journal does not record the unit as complete, every other instance's journal too.
    pub fn unit_shared(&mut self, unit: &str) -> Option<UnitState> {
        let own = self.units.get(unit).cloned();
        if self.instance.is_none() || own.as_ref().is_some_and(|u| u.complete) {
            return own;
        }
        if let Err(e) = self.refresh_others() {
            // Reading them again later is enough: at worst input is written twice, which the
            // event-id dedup of the lake's readers removes.
            tracing::warn!(error = %e, "cannot read the journals of the other instances");
        }
        let mut merged = own;
        for other in self.others.values() {
            if let Some(state) = other.units.get(unit) {
                let m = merged.get_or_insert_with(UnitState::default);
                for &(f, t) in &state.ranges {
                    m.add(f, t);
                }
                m.complete |= state.complete;
            }
        }
        merged
    }

    /// Whether this lake is shared by several named instances.
    pub fn is_shared(&self) -> bool {
        self.instance.is_some()
    }

    /// Catches up with the other instances' journals (shared lakes only).
    pub fn refresh_shared(&mut self) -> Result<(), SinkError> {
        if self.instance.is_none() {
            return Ok(());
        }
        self.refresh_others()
    }

    /// Whether `rel` is a file of another instance's batch that is prepared but not committed
    /// (as far as its journal was read by [`Journal::refresh_shared`]).
    pub fn uncommitted_elsewhere(&self, rel: &str) -> bool {
        self.others.values().any(|o| {
            o.prepared
                .values()
                .any(|(files, _)| files.iter().any(|f| f == rel))
        })
    }

    /// Reads what was appended to the other instances' journals since the last call.
    fn refresh_others(&mut self) -> Result<(), SinkError> {
        use std::io::{Read, Seek, SeekFrom};
        use std::os::unix::fs::MetadataExt;
        let Some(dir) = self.path.parent() else {
            return Ok(());
        };
        let entries = std::fs::read_dir(dir).map_err(|e| SinkError::io("list", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| SinkError::io("list", dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path == self.path || !name.starts_with("journal") || !name.ends_with(".jsonl") {
                continue;
            }
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SinkError::io("stat", &path, e)),
            };
            let other = self.others.entry(path.clone()).or_default();
            if other.inode != meta.ino() || meta.len() < other.offset {
                *other = OtherJournal {
                    inode: meta.ino(),
                    ..OtherJournal::default()
                };
            }
            if meta.len() == other.offset {
                continue;
            }
            let mut f = File::open(&path).map_err(|e| SinkError::io("open", &path, e))?;
            f.seek(SeekFrom::Start(other.offset))
                .map_err(|e| SinkError::io("read", &path, e))?;
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)
                .map_err(|e| SinkError::io("read", &path, e))?;
            // Only whole lines: the last one may still be being written.
            let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            for line in bytes[..end].split(|&b| b == b'\n') {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                // A torn line left by a crash is followed by a newline when its owner reopens.
                if let Ok(entry) = serde_json::from_slice::<Entry>(line) {
                    replay(entry, &mut other.units, &mut other.prepared);
                }
            }
            other.offset += end as u64 + 1;
        }
        Ok(())
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
    fn a_unit_names_the_positions_it_lacks_and_the_first_it_holds() {
        let mut u = UnitState::default();
        for (from, to) in [(10, 20), (30, 40)] {
            u.add_segment(&seg("u", from, to, false)[0]);
        }
        assert_eq!(u.missing(0, 50), [(0, 10), (20, 30), (40, 50)]);
        assert_eq!(u.missing(12, 35), [(20, 30)]);
        assert_eq!(u.missing(10, 20), []);
        assert_eq!(u.missing(20, 30), [(20, 30)]);
        assert_eq!(UnitState::default().missing(3, 7), [(3, 7)]);
        assert_eq!(u.overlap(0, 10), None);
        assert_eq!(u.overlap(20, 30), None);
        assert_eq!(u.overlap(0, 11), Some((10, 11)));
        assert_eq!(u.overlap(25, 45), Some((30, 40)));
        assert_eq!(u.overlap(15, 16), Some((15, 16)));
        assert_eq!(u.overlap(40, 99), None);
    }

    #[test]
    fn a_batch_the_catalog_committed_is_rolled_forward_not_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("x")).expect("mkdir");
        {
            let mut j = Journal::open(root).expect("open");
            for b in ["b1", "b2"] {
                let rel = format!("x/part-{b}.parquet");
                std::fs::write(root.join(&rel), b"rows").expect("write");
                j.prepare(b, vec![rel], seg(b, 0, 5, true))
                    .expect("prepare");
            }
            // crash after the catalog's commit of b1, before that of b2
        }
        struct Catalog(Vec<String>);
        impl Recovery for Catalog {
            fn roll_forward(
                &mut self,
                b: &str,
                _: &[String],
                _: &[Segment],
            ) -> Result<bool, SinkError> {
                self.0.push(b.to_string());
                Ok(b == "b1")
            }
            fn remove(&mut self, _: &str) -> Result<(), SinkError> {
                Ok(())
            }
        }
        let mut catalog = Catalog(Vec::new());
        let j = Journal::open_instance(root, None, &mut catalog).expect("reopen");
        catalog.0.sort();
        assert_eq!(
            catalog.0,
            ["b1", "b2"],
            "every prepared batch is asked about"
        );
        assert!(
            j.unit("b1").is_some_and(|u| u.complete),
            "b1 is in the lake"
        );
        assert!(root.join("x/part-b1.parquet").exists(), "its file is kept");
        assert!(j.unit("b2").is_none());
        assert!(
            !root.join("x/part-b2.parquet").exists(),
            "b2's file is removed"
        );
        drop(j);
        // Recorded: a plain reopen knows b1 too.
        let j = Journal::open(root).expect("reopen");
        assert!(j.unit("b1").is_some());
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
    fn a_lake_without_instances_has_one_writer_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Journal::open(dir.path()).expect("open");
        let busy = Journal::open(dir.path()).err().map(|e| e.to_string());
        assert!(
            busy.as_deref()
                .is_some_and(|m| m.contains("is in use by another auditlake process")),
            "{busy:?}"
        );
        drop(first);
        Journal::open(dir.path()).expect("free again once the writer is gone");
    }

    #[test]
    fn a_unit_state_is_rebuilt_from_its_segments() {
        let mut st = UnitState::default();
        for (from, to, complete) in [(0, 5, false), (9, 12, false), (5, 7, true)] {
            st.add_segment(&Segment {
                unit: "u".into(),
                from,
                to,
                complete,
            });
        }
        let mut again = UnitState::default();
        for seg in st.segments("u") {
            again.add_segment(&seg);
        }
        assert_eq!(again, st);
        let done = UnitState {
            ranges: Vec::new(),
            complete: true,
        };
        let mut again = UnitState::default();
        for seg in done.segments("u") {
            again.add_segment(&seg);
        }
        assert_eq!(again, done);
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
        drop(j); // the lake has one writer at a time
        let j = Journal::open(root).expect("reopen after compaction");
        assert!(j.unit("u1").is_some_and(|u| u.complete && u.contains(2)));
    }

    #[test]
    fn instances_share_a_lake_each_with_its_own_locked_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let mut a = Journal::open_instance(root, Some("a"), &mut LocalOnly).expect("open a");
        let busy = Journal::open_instance(root, Some("a"), &mut LocalOnly)
            .err()
            .expect("a second process cannot use instance a");
        assert!(matches!(busy, SinkError::InstanceBusy { .. }), "{busy}");
        assert!(Journal::open_instance(root, Some("../x"), &mut LocalOnly).is_err());
        let mut b = Journal::open_instance(root, Some("b"), &mut LocalOnly).expect("open b");

        // a commits an object and part of a partition; b sees both when it begins them.
        a.prepare("a1", vec![], seg("s3:obj", 0, 4, true))
            .expect("prepare");
        a.commit("a1").expect("commit");
        a.prepare("a2", vec![], seg("kafka:t/0", 0, 10, false))
            .expect("prepare");
        a.commit("a2").expect("commit");
        assert!(b.unit_shared("s3:obj").is_some_and(|u| u.complete));
        // b's own commits and a's later ones are merged.
        b.prepare("b1", vec![], seg("kafka:t/0", 20, 30, false))
            .expect("prepare");
        b.commit("b1").expect("commit");
        a.prepare("a3", vec![], seg("kafka:t/0", 10, 15, false))
            .expect("prepare");
        a.commit("a3").expect("commit");
        // A prepared batch that is not committed counts for nobody.
        a.prepare("a4", vec![], seg("kafka:t/0", 15, 20, false))
            .expect("prepare");
        let p = b.unit_shared("kafka:t/0").expect("partition");
        assert!(p.contains(0) && p.contains(14) && p.contains(25));
        assert!(!p.contains(15) && !p.contains(30));

        // b dies with a batch open: reopening b removes only b's file, never a's.
        std::fs::create_dir_all(root.join("x")).expect("mkdir");
        std::fs::write(root.join("x/part-a-1.parquet"), b"a").expect("write");
        std::fs::write(root.join("x/part-b-1.parquet"), b"b").expect("write");
        b.prepare(
            "b2",
            vec!["x/part-b-1.parquet".into()],
            seg("u", 0, 1, true),
        )
        .expect("prepare");
        drop(b);
        let b = Journal::open_instance(root, Some("b"), &mut LocalOnly).expect("reopen b");
        assert!(!root.join("x/part-b-1.parquet").exists());
        assert!(root.join("x/part-a-1.parquet").exists());
        assert!(b.unit("kafka:t/0").is_some_and(|u| u.contains(25)));

        // The single-process journal of a lake that becomes shared is honoured.
        drop(a);
        let mut legacy = Journal::open(root).expect("legacy");
        legacy
            .prepare("l1", vec![], seg("old", 0, 1, true))
            .expect("prepare");
        legacy.commit("l1").expect("commit");
        let mut a = Journal::open_instance(root, Some("a"), &mut LocalOnly).expect("reopen a");
        assert!(a.unit_shared("old").is_some_and(|u| u.complete));
    }
}
