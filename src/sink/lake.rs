//! The local lake: groups a batch's rows by partition, writes one Parquet file per partition
//! under a name derived from the batch's input (so the same input always lands under the same
//! names), and publishes them atomically through the commit journal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::columns::EventColumns;
use super::journal::{Journal, Recovery, Segment, UnitState, sync_dir, tmp_path};
use super::keys::{self, KeyStore};
use super::parquet::{ParquetOptions, Rows, write_ciem_file, write_rows_file};
use super::{SinkError, partition_value};
use crate::assets::{AssetChange, InventoryItem};
use crate::ciem::rows::{EntitlementRow, Finding};
use crate::event::{DeadLetter, Provider};
use crate::normalize::date_of_ms;

/// Rows and the input positions they came from, ready to be committed together.
#[derive(Debug, Default)]
pub struct PendingBatch {
    /// Events, already laid out as columns by partition.
    pub events: EventColumns,
    pub dead_letters: Vec<DeadLetter>,
    /// Asset changes derived from `events` (or from an account sync).
    pub asset_changes: Vec<AssetChange>,
    /// An account sync's inventory snapshot.
    pub asset_inventory: Vec<InventoryItem>,
    /// An account sync's entitlements.
    pub entitlements: Vec<EntitlementRow>,
    /// CIEM findings computed after a sync (or on demand).
    pub ciem_findings: Vec<Finding>,
    pub segments: Vec<Segment>,
    /// The positions this batch read and wrote itself: its segments less what the lake held
    /// when each unit began. A catalog shared by several hosts refuses the commit when another
    /// writer committed any of them since ([`Remote::commit`]).
    pub claims: Vec<Claim>,
    /// (date, key) of the events within the dedup horizon: committed with the rows, in
    /// `_auditlake/keys/` (see [`super::keys`]).
    pub keys: Vec<(i64, u128)>,
}

/// Positions `from..to` of an input unit that a batch read and wrote itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub unit: String,
    pub from: i64,
    pub to: i64,
}

/// What [`Remote::commit`] commits of one batch.
pub struct BatchCommit<'a> {
    pub batch: &'a str,
    pub files: &'a [CommittedFile],
    /// The input the batch covers.
    pub segments: &'a [Segment],
    /// The positions it read itself (none when a batch is finished after a crash).
    pub claims: &'a [Claim],
    /// Its event key files (paths relative to the lake root), when the remote shares keys.
    pub key_files: &'a [String],
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
    remote: Option<Box<dyn Remote>>,
    /// Set when several processes share the lake: part of this process's file names.
    instance: Option<String>,
    /// Committed event keys, opened when first needed.
    keys: Option<KeyStore>,
    key_budget: u64,
}

/// Where committed files are published when the lake is not (only) the local directory, e.g.
/// an S3 bucket. The local directory then keeps the journal and stages files until they are
/// uploaded.
/// How long a remote that records batches ([`Remote::committed`]) names them at least.
pub const BATCH_IDS_KEPT_DAYS: u64 = 30;

pub trait Remote: Send {
    /// Publishes the file at `local` as `rel` (a path relative to the lake root); the copy must
    /// become visible only when complete.
    fn put(&mut self, rel: &str, local: &Path) -> Result<(), SinkError>;
    /// Removes `rel`; removing what does not exist succeeds.
    fn delete(&mut self, rel: &str) -> Result<(), SinkError>;
    /// Makes a batch's published files visible in one commit, with the input it covers (a
    /// table catalog); by default publishing the files was the commit. A remote shared by
    /// several writers refuses the commit ([`SinkError::InputTaken`]) when another writer
    /// committed any of its claims since this one began reading them.
    fn commit(&mut self, _batch: &BatchCommit<'_>) -> Result<(), SinkError> {
        Ok(())
    }
    /// The seed of the event keys, when the remote shares them among its writers (a table
    /// catalog): then each batch's key files are published ([`Remote::put`]) and named in its
    /// commit, and [`Remote::fetch_keys`] brings the other writers' ones.
    fn key_seed(&self) -> Option<u64> {
        None
    }
    /// Copies into the lake at `root` the key files other writers committed, of dates from
    /// `oldest_day` on, except those `own` names (this writer's); returns how many.
    fn fetch_keys(
        &mut self,
        _root: &Path,
        _oldest_day: i64,
        _own: &dyn Fn(&str) -> bool,
    ) -> Result<usize, SinkError> {
        Ok(0)
    }
    /// The batches [`Remote::commit`] committed, in whole or in part (a table catalog has no
    /// transactions across tables): a batch the journal left open that is among them is
    /// finished with another [`Remote::commit`] (which must skip what it already holds) when
    /// the lake is opened, instead of being removed.
    fn committed(&mut self) -> Result<BTreeSet<String>, SinkError> {
        Ok(BTreeSet::new())
    }
    /// What the remote's commits hold of an input unit, read now (a catalog shared by several
    /// hosts: what any of them committed); None when the remote does not record input.
    fn unit(&mut self, _unit: &str) -> Result<Option<UnitState>, SinkError> {
        Ok(None)
    }
    /// Whether the local copy of a published file is only staged (and removed once the
    /// batch is committed), or is the file itself.
    fn local_is_staging(&self) -> bool {
        true
    }
}

/// A crash's prepared batches at open: finished through the remote when it committed them in
/// part or whole, else their published copies removed.
struct RemoteRecovery<'a> {
    root: &'a Path,
    remote: Option<&'a mut Box<dyn Remote>>,
    /// What the remote committed, read once, on the first prepared batch.
    started: Option<BTreeSet<String>>,
}

impl Recovery for RemoteRecovery<'_> {
    fn roll_forward(
        &mut self,
        batch: &str,
        files: &[String],
        segments: &[Segment],
    ) -> Result<bool, SinkError> {
        let Some(remote) = self.remote.as_mut() else {
            return Ok(false);
        };
        if self.started.is_none() {
            self.started = Some(remote.committed()?);
        }
        if !self.started.as_ref().is_some_and(|s| s.contains(batch)) {
            // Not among the batches the remote names — but its batch id may have aged out of a
            // catalog's record (expired snapshots), or another writer committed the same
            // input: when the remote holds all of its input, its files may be referenced, so
            // they are kept and the batch is recorded as done.
            // Written within the time the remote keeps batch ids: had it committed, the remote
            // would name it, so its files are unreferenced (another writer committed the input).
            let recent = files.iter().any(|rel| {
                std::fs::metadata(self.root.join(rel))
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| {
                        t.elapsed()
                            .is_ok_and(|age| age.as_secs() < (BATCH_IDS_KEPT_DAYS - 1) * 86_400)
                    })
            });
            let mut held = !recent && !segments.is_empty();
            for s in segments {
                held = held && remote.unit(&s.unit)?.is_some_and(|u| u.covers(s));
            }
            if held {
                tracing::warn!(
                    batch,
                    "an unfinished batch older than the remote's record of batch ids, whose input the remote holds: its files are kept (a table may reference them)"
                );
            }
            return Ok(held);
        }
        let files = files
            .iter()
            .filter(|rel| !rel.starts_with("_auditlake/"))
            .map(|rel| committed_file(self.root, rel))
            .collect::<Result<Vec<_>, _>>()?;
        // Part of the batch is committed already (its claims and keys with the first table):
        // the rest is finished unconditionally.
        remote.commit(&BatchCommit {
            batch,
            files: &files,
            segments,
            claims: &[],
            key_files: &[],
        })?;
        Ok(true)
    }

    fn remove(&mut self, rel: &str) -> Result<(), SinkError> {
        match self.remote.as_mut() {
            // The lake's own state (key files) is never published.
            Some(r) if !rel.starts_with("_auditlake/") => r.delete(rel),
            _ => Ok(()),
        }
    }
}

/// A published file of the lake, described again from the file itself (rows from its footer).
fn committed_file(root: &Path, rel: &str) -> Result<CommittedFile, SinkError> {
    let path = root.join(rel);
    let file = std::fs::File::open(&path).map_err(|e| SinkError::io("open", &path, e))?;
    let bytes = file
        .metadata()
        .map_err(|e| SinkError::io("stat", &path, e))?
        .len();
    let reader = parquet::file::reader::SerializedFileReader::new(file)
        .map_err(|e| SinkError::parquet(&path, e))?;
    use parquet::file::reader::FileReader;
    let rows = usize::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0);
    Ok(CommittedFile {
        path: rel.to_string(),
        rows,
        bytes,
    })
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

impl LocalLake {
    pub fn open(root: &Path, options: ParquetOptions) -> Result<Self, SinkError> {
        Self::open_instance(root, options, None, None)
    }

    /// Opens the lake as `instance` of several processes sharing it (`None`: the only
    /// process), publishing to `remote` if given. A shared lake's files are named
    /// `part-<instance>-<batch>.parquet` and its journal is `_auditlake/journal-<instance>.jsonl`.
    pub fn open_instance(
        root: &Path,
        options: ParquetOptions,
        instance: Option<&str>,
        mut remote: Option<Box<dyn Remote>>,
    ) -> Result<Self, SinkError> {
        if root.exists() && !root.is_dir() {
            return Err(SinkError::Config(format!(
                "the lake {} is a file, not a directory: give a directory (--out, or [sink] path)",
                root.display()
            )));
        }
        std::fs::create_dir_all(root).map_err(|e| SinkError::io("create directory", root, e))?;
        let journal = Journal::open_instance(
            root,
            instance,
            &mut RemoteRecovery {
                root,
                remote: remote.as_mut(),
                started: None,
            },
        )?;
        Ok(LocalLake {
            root: root.to_path_buf(),
            journal,
            options,
            remote,
            instance: instance.map(str::to_string),
            keys: None,
            key_budget: keys::DEFAULT_BUDGET_BYTES,
        })
    }

    /// The lake's committed event keys, opened on first use.
    fn key_store(&mut self) -> Result<&mut KeyStore, SinkError> {
        if self.keys.is_none() {
            self.keys = Some(KeyStore::open(
                &self.root,
                self.instance.as_deref(),
                self.key_budget,
                self.remote.as_ref().and_then(|r| r.key_seed()),
            )?);
        }
        self.keys
            .as_mut()
            .ok_or_else(|| SinkError::Schema("key index not open".into()))
    }

    /// Bytes of memory the committed event keys may hold (hot dates; cold ones are read again
    /// from disk when needed).
    pub fn set_key_budget(&mut self, bytes: u64) {
        self.key_budget = bytes;
        if let Some(k) = self.keys.as_mut() {
            k.set_budget(bytes);
        }
    }

    /// The key of the event `id` of `provider`, dated `day`, the first time it is seen in
    /// what the lake has committed (every writer's, in a shared lake) or in this process's
    /// pending batches; `None` when it was seen before.
    pub fn first_sighting(
        &mut self,
        day: i64,
        provider: Provider,
        id: &str,
    ) -> Result<Option<u128>, SinkError> {
        self.key_store()?;
        let LocalLake { journal, keys, .. } = self;
        let Some(keys) = keys.as_mut() else {
            return Err(SinkError::Schema("key index not open".into()));
        };
        let key = keys.key(provider, id);
        if journal.is_shared() && !keys.has_day(day) {
            journal.refresh_shared()?;
        }
        let first = keys.first_sighting(day, key, &|rel| journal.uncommitted_elsewhere(rel))?;
        Ok(first.then_some(key))
    }

    /// Reads the keys other writers committed since they were last read: of a shared lake
    /// directory, or those a remote shares (fetched first, for dates within `horizon_ms`).
    pub fn refresh_keys(&mut self, horizon_ms: i64) -> Result<(), SinkError> {
        if let Some(remote) = self.remote.as_mut()
            && remote.key_seed().is_some()
        {
            let instance = self.instance.as_deref();
            let own = |name: &str| keys::is_writers(name, instance);
            let oldest = keys::oldest_day(crate::event::now_ms(), horizon_ms);
            if remote.fetch_keys(&self.root, oldest, &own)? > 0
                && let Some(keys) = self.keys.as_mut()
            {
                keys.refresh(&|_| false)?;
            }
            return Ok(());
        }
        let LocalLake { journal, keys, .. } = self;
        if let Some(keys) = keys.as_mut()
            && journal.is_shared()
        {
            journal.refresh_shared()?;
            keys.refresh(&|rel| journal.uncommitted_elsewhere(rel))?;
        }
        Ok(())
    }

    /// Forgets keys held in memory that may not be committed (after a failed batch).
    pub fn forget_keys(&mut self) {
        if let Some(k) = self.keys.as_mut() {
            k.forget();
        }
    }

    /// Deletes this writer's key files of dates the horizon no longer reaches.
    pub fn prune_keys(&mut self, now_ms: i64, horizon_ms: i64) -> Result<(), SinkError> {
        self.key_store()?.prune(now_ms, horizon_ms)
    }

    /// Counters of the key index.
    pub fn key_stats(&self) -> keys::KeyStats {
        self.keys
            .as_ref()
            .map(|k| k.stats.clone())
            .unwrap_or_default()
    }

    /// A lake published to `remote`, with its journal (and files being staged) under `root`.
    /// Files of batches left unfinished by a crash are removed from the remote as well.
    pub fn open_with_remote(
        root: &Path,
        options: ParquetOptions,
        remote: Box<dyn Remote>,
    ) -> Result<Self, SinkError> {
        Self::open_instance(root, options, None, Some(remote))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn unit(&self, unit: &str) -> Option<&UnitState> {
        self.journal.unit(unit)
    }

    /// What the lake holds of `unit`, including what other instances sharing the lake
    /// committed: through their journals, and through the remote's record of every writer's
    /// commits (an Iceberg catalog's snapshot summaries), whatever host they ran on.
    pub fn unit_shared(&mut self, unit: &str) -> Option<UnitState> {
        let mut known = self.journal.unit_shared(unit);
        if known.as_ref().is_some_and(|u| u.complete) {
            return known;
        }
        if let Some(remote) = self.remote.as_mut() {
            match remote.unit(unit) {
                Ok(Some(held)) => known.get_or_insert_with(UnitState::default).merge(&held),
                Ok(None) => {}
                // Input read again is written again: reported, as when a journal is unreadable.
                Err(e) => tracing::warn!(error = %e, "cannot read what the catalog holds"),
            }
        }
        known
    }

    /// Writes and publishes a batch. On error nothing of the batch is visible and its input is
    /// not recorded, so it will be read again.
    pub fn commit(&mut self, batch: PendingBatch) -> Result<Vec<CommittedFile>, SinkError> {
        match self.stage(batch)? {
            Some(staged) => self.publish(staged.write()),
            None => Ok(Vec::new()),
        }
    }

    /// Commit, step 1: records in the journal which files the batch will publish. The
    /// returned batch can be written on another thread while this lake stages the next one.
    pub fn stage(&mut self, batch: PendingBatch) -> Result<Option<StagedBatch>, SinkError> {
        if batch.segments.is_empty()
            && batch.events.is_empty()
            && batch.dead_letters.is_empty()
            && batch.asset_changes.is_empty()
            && batch.asset_inventory.is_empty()
            && batch.entitlements.is_empty()
            && batch.ciem_findings.is_empty()
        {
            return Ok(None);
        }
        let id = batch_id(&batch.segments);
        let name = match &self.instance {
            None => format!("part-{}.parquet", &id[..24]),
            Some(instance) => format!("part-{instance}-{}.parquet", &id[..24]),
        };
        let mut dirs: BTreeSet<String> = batch.events.dirs().map(str::to_string).collect();
        dirs.extend(batch.dead_letters.iter().map(dead_letter_dir));
        dirs.extend(batch.asset_changes.iter().map(asset_change_dir));
        dirs.extend(batch.asset_inventory.iter().map(inventory_dir));
        dirs.extend(batch.entitlements.iter().map(entitlement_dir));
        dirs.extend(batch.ciem_findings.iter().map(finding_dir));
        let mut files: Vec<String> = dirs.iter().map(|dir| format!("{dir}/{name}")).collect();
        let stem = name.trim_end_matches(".parquet");
        let key_days: BTreeSet<i64> = batch.keys.iter().map(|&(day, _)| day).collect();
        files.extend(key_days.iter().map(|&day| keys::key_file_rel(day, stem)));
        self.journal.prepare(&id, files, batch.segments.clone())?;
        Ok(Some(StagedBatch {
            id,
            name,
            batch,
            root: self.root.clone(),
            options: self.options,
        }))
    }

    /// Commit, step 3: makes the written files visible and records the batch's input; or, if
    /// writing failed, removes what was written and aborts the batch.
    pub fn publish(
        &mut self,
        written: Result<WrittenBatch, FailedBatch>,
    ) -> Result<Vec<CommittedFile>, SinkError> {
        match written {
            Ok(mut w) => {
                let result = w.files.iter().try_for_each(|f| {
                    let dest = self.root.join(&f.path);
                    std::fs::rename(tmp_path(&dest), &dest)
                        .map_err(|e| SinkError::io("rename", &dest, e))?;
                    sync_dir(&dest)
                });
                let result = result.and_then(|()| self.upload(&w.files));
                let result = result.and_then(|()| match self.remote.as_mut() {
                    Some(r) => {
                        // Keys shared through the remote are published with the batch (from
                        // their temporary names: they are renamed into place after the
                        // commit) and named in it.
                        let mut key_files = Vec::new();
                        if r.key_seed().is_some() {
                            for k in &w.key_files {
                                r.put(&k.path, &tmp_path(&self.root.join(&k.path)))?;
                                key_files.push(k.path.clone());
                            }
                        }
                        r.commit(&BatchCommit {
                            batch: &w.id,
                            files: &w.files,
                            segments: &w.segments,
                            claims: &w.claims,
                            key_files: &key_files,
                        })
                    }
                    None => Ok(()),
                });
                // Keys last: once they are in place, only the commit line is missing, and a
                // crash before it removes keys and rows alike.
                let result = result.and_then(|()| {
                    w.key_files.iter().try_for_each(|k| {
                        let dest = self.root.join(&k.path);
                        std::fs::rename(tmp_path(&dest), &dest)
                            .map_err(|e| SinkError::io("rename", &dest, e))?;
                        sync_dir(&dest)
                    })
                });
                match result {
                    Ok(()) => {
                        self.journal.commit(&w.id)?;
                        if let Some(store) = self.keys.as_mut() {
                            for k in &mut w.key_files {
                                store.committed(k.day, &k.path, std::mem::take(&mut k.keys));
                            }
                        }
                        if self.remote.as_ref().is_some_and(|r| r.local_is_staging()) {
                            // Published remotely and committed: the staged copies can go.
                            for f in &w.files {
                                let _ = std::fs::remove_file(self.root.join(&f.path));
                            }
                        }
                        for f in &w.files {
                            tracing::info!(file = %f.path, rows = f.rows, bytes = f.bytes, "committed file");
                        }
                        Ok(w.files)
                    }
                    // A commit the remote made in part (some tables of a catalog) cannot be
                    // taken back: the batch stays prepared, and the next open finishes it.
                    Err(error)
                        if self
                            .remote
                            .as_mut()
                            .and_then(|r| r.committed().ok())
                            .is_some_and(|c| c.contains(&w.id)) =>
                    {
                        tracing::error!(batch = %w.id, error = %error, "batch committed to some tables only; it is finished when the lake is opened again");
                        Err(error)
                    }
                    Err(error) => {
                        let paths = w.files.into_iter().map(|f| f.path);
                        let paths = paths.chain(w.key_files.into_iter().map(|k| k.path));
                        self.publish(Err(FailedBatch {
                            id: w.id,
                            paths: paths.collect(),
                            error,
                        }))
                    }
                }
            }
            Err(failed) => {
                for rel in &failed.paths {
                    let p = self.root.join(rel);
                    let _ = std::fs::remove_file(tmp_path(&p));
                    let _ = std::fs::remove_file(&p);
                }
                // A remote copy that cannot be removed now keeps the batch open in the
                // journal: the next open removes it before anything is read again.
                let mut removed = true;
                if let Some(remote) = self.remote.as_mut() {
                    // Key files (`_auditlake/`) are never published.
                    for rel in failed
                        .paths
                        .iter()
                        .filter(|p| !p.starts_with("_auditlake/"))
                    {
                        if let Err(e) = remote.delete(rel) {
                            tracing::error!(file = %rel, error = %e, "cannot remove the remote copy of a failed batch; it is removed on the next start");
                            removed = false;
                        }
                    }
                }
                if removed {
                    let _ = self.journal.abort(&failed.id);
                }
                Err(failed.error)
            }
        }
    }

    /// Publishes a batch's files to the remote, if there is one.
    fn upload(&mut self, files: &[CommittedFile]) -> Result<(), SinkError> {
        if let Some(remote) = self.remote.as_mut() {
            for f in files {
                remote.put(&f.path, &self.root.join(&f.path))?;
            }
        }
        Ok(())
    }
}

/// `<dataset>/provider=…/account=…/date=…`, the layout shared by the asset datasets.
fn dataset_dir(dataset: &str, provider: Provider, account: Option<&str>, time_ms: i64) -> String {
    format!(
        "{dataset}/provider={}/account={}/date={}",
        provider.as_str(),
        partition_value(account),
        date_of_ms(time_ms)
    )
}

fn asset_change_dir(c: &AssetChange) -> String {
    dataset_dir(
        "asset_changes",
        c.cloud_provider,
        c.cloud_account_uid.as_deref(),
        c.time_ms,
    )
}

fn inventory_dir(i: &InventoryItem) -> String {
    dataset_dir(
        "asset_inventory",
        i.cloud_provider,
        i.cloud_account_uid.as_deref(),
        i.run_time_ms,
    )
}

fn entitlement_dir(e: &EntitlementRow) -> String {
    dataset_dir(
        "entitlements",
        e.cloud_provider,
        e.cloud_account_uid.as_deref(),
        e.run_time_ms,
    )
}

fn finding_dir(f: &Finding) -> String {
    dataset_dir(
        "ciem_findings",
        f.cloud_provider,
        f.cloud_account_uid.as_deref(),
        f.computed_time_ms,
    )
}

/// Rows grouped by the partition directory `dir` gives each.
fn by_dir<T>(rows: &[T], dir: impl Fn(&T) -> String) -> BTreeMap<String, Vec<&T>> {
    let mut out: BTreeMap<String, Vec<&T>> = BTreeMap::new();
    for r in rows {
        out.entry(dir(r)).or_default().push(r);
    }
    out
}

fn dead_letter_dir(d: &DeadLetter) -> String {
    format!("dead_letters/date={}", date_of_ms(d.ingest_time_ms))
}

/// A batch recorded in the journal, ready to be encoded.
pub struct StagedBatch {
    id: String,
    name: String,
    batch: PendingBatch,
    root: PathBuf,
    options: ParquetOptions,
}

/// A batch whose files are written (fsynced) under temporary names.
pub struct WrittenBatch {
    id: String,
    files: Vec<CommittedFile>,
    /// The input the batch covers.
    segments: Vec<Segment>,
    claims: Vec<Claim>,
    key_files: Vec<KeyFile>,
}

/// The event keys of one date that a batch commits.
struct KeyFile {
    day: i64,
    /// Relative to the lake root.
    path: String,
    /// The keys, sorted.
    keys: Vec<u128>,
}

/// A batch that could not be written.
pub struct FailedBatch {
    id: String,
    /// Its files, relative to the lake root (key files under `_auditlake/` included).
    paths: Vec<String>,
    error: SinkError,
}

impl StagedBatch {
    /// Commit, step 2 (the expensive one): sorts, encodes and writes every file of the batch
    /// under a temporary name. Touches no shared state, so it can run on any thread.
    pub fn write(self) -> Result<WrittenBatch, FailedBatch> {
        let StagedBatch {
            id,
            name,
            batch,
            root,
            options,
        } = self;
        let PendingBatch {
            events,
            dead_letters,
            asset_changes,
            asset_inventory,
            entitlements,
            ciem_findings,
            segments,
            claims,
            keys: mut event_keys,
        } = batch;
        let events = events.into_partitions();
        let dead = by_dir(&dead_letters, dead_letter_dir);
        let mut changes = by_dir(&asset_changes, asset_change_dir);
        for rows in changes.values_mut() {
            rows.sort_by_key(|c| c.time_ms);
        }
        let inventory = by_dir(&asset_inventory, inventory_dir);
        let grants = by_dir(&entitlements, entitlement_dir);
        let findings = by_dir(&ciem_findings, finding_dir);
        // Every file's path, for removing what was written if one fails.
        let paths: Vec<String> = events
            .iter()
            .map(|(dir, _)| dir)
            .chain(dead.keys())
            .chain(changes.keys())
            .chain(inventory.keys())
            .chain(grants.keys())
            .chain(findings.keys())
            .map(|dir| format!("{dir}/{name}"))
            .collect();
        event_keys.sort_unstable();
        let stem = name.trim_end_matches(".parquet");
        let key_paths: Vec<String> = event_keys
            .chunk_by(|a, b| a.0 == b.0)
            .map(|c| keys::key_file_rel(c[0].0, stem))
            .collect();
        let mut files = Vec::with_capacity(paths.len());
        let mut key_files = Vec::with_capacity(key_paths.len());
        let result = (|| {
            for (day_keys, rel) in event_keys.chunk_by(|a, b| a.0 == b.0).zip(&key_paths) {
                let dest = root.join(rel);
                if let Some(dir) = dest.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| SinkError::io("create directory", dir, e))?;
                }
                let sorted: Vec<u128> = day_keys.iter().map(|&(_, k)| k).collect();
                keys::write_key_file(&tmp_path(&dest), &sorted)?;
                key_files.push(KeyFile {
                    day: day_keys[0].0,
                    path: rel.clone(),
                    keys: sorted,
                });
            }
            for (dir, rows) in events {
                let n = rows.len();
                files.push(write_tmp(&root, &dir, &name, n, |p| {
                    write_ciem_file(p, rows, options)
                })?);
            }
            write_dataset(&root, &dead, &name, options, &mut files)?;
            write_dataset(&root, &changes, &name, options, &mut files)?;
            write_dataset(&root, &inventory, &name, options, &mut files)?;
            write_dataset(&root, &grants, &name, options, &mut files)?;
            write_dataset(&root, &findings, &name, options, &mut files)?;
            Ok(())
        })();
        match result {
            Ok(()) => Ok(WrittenBatch {
                id,
                files,
                segments,
                claims,
                key_files,
            }),
            Err(error) => Err(FailedBatch {
                id,
                paths: paths.into_iter().chain(key_paths).collect(),
                error,
            }),
        }
    }
}

/// Writes one file per partition of a dataset's rows to its temporary name.
fn write_dataset<T: Rows>(
    root: &Path,
    partitions: &BTreeMap<String, Vec<&T>>,
    name: &str,
    options: ParquetOptions,
    files: &mut Vec<CommittedFile>,
) -> Result<(), SinkError> {
    for (dir, rows) in partitions {
        files.push(write_tmp(root, dir, name, rows.len(), |p| {
            write_rows_file(p, rows, options)
        })?);
    }
    Ok(())
}

/// Writes one file of a batch to its temporary name.
fn write_tmp(
    root: &Path,
    dir: &str,
    name: &str,
    rows: usize,
    write: impl FnOnce(&Path) -> Result<u64, SinkError>,
) -> Result<CommittedFile, SinkError> {
    let dir_path = root.join(dir);
    std::fs::create_dir_all(&dir_path)
        .map_err(|e| SinkError::io("create directory", &dir_path, e))?;
    let bytes = write(&tmp_path(&dir_path.join(name)))?;
    Ok(CommittedFile {
        path: format!("{dir}/{name}"),
        rows,
        bytes,
    })
}

/// Writes a batch that records no input (an account-sync run: inventory and asset changes)
/// straight into the lake as `part-<id>.parquet` per partition, without the commit journal, so
/// a separate process can write while a pipeline owns the journal. Files appear by rename
/// once all are written; on error the written ones are removed.
pub fn write_unjournaled(
    root: &Path,
    id: &str,
    batch: PendingBatch,
    options: ParquetOptions,
) -> Result<Vec<CommittedFile>, SinkError> {
    let staged = StagedBatch {
        id: id.to_string(),
        name: format!("part-{}.parquet", partition_value(Some(id))),
        batch,
        root: root.to_path_buf(),
        options,
    };
    let written = match staged.write() {
        Ok(w) => w,
        Err(failed) => {
            for rel in &failed.paths {
                let _ = std::fs::remove_file(tmp_path(&root.join(rel)));
            }
            return Err(failed.error);
        }
    };
    let published = written.files.iter().enumerate().try_for_each(|(i, f)| {
        let dest = root.join(&f.path);
        std::fs::rename(tmp_path(&dest), &dest)
            .map_err(|e| (i, SinkError::io("rename", &dest, e)))?;
        sync_dir(&dest).map_err(|e| (i + 1, e))
    });
    if let Err((renamed, error)) = published {
        // All or nothing: take back what was published, drop what was not.
        for (i, f) in written.files.iter().enumerate() {
            let p = root.join(&f.path);
            let _ = std::fs::remove_file(if i < renamed { p } else { tmp_path(&p) });
        }
        return Err(error);
    }
    Ok(written.files)
}
