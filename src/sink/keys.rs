//! Event keys committed with the rows they belong to: what makes "no (provider, event id) is
//! written twice" hold across restarts, for events within the **dedup horizon**.
//!
//! Every batch that writes an event whose time is within the horizon of now (default 48 h
//! either side) also writes the event's key — a 128-bit keyed hash of (provider, event id) —
//! into `_auditlake/keys/date=<event date>/<batch file name>.keys`, one sorted file per date.
//! These files are part of the batch in the commit journal: listed by its *prepare*, written
//! and fsynced beside its Parquet files, renamed into place before its *commit*; a batch that
//! never commits has them removed on restart with its Parquet files. So keys are never
//! committed without their rows, nor rows without their keys.
//!
//! Before an event within the horizon is written, its key is looked up in its date's keys,
//! loaded lazily from disk (the date an event belongs to is its own, so one date is read per
//! lookup) and kept in memory within a byte budget: dates least recently used are dropped and
//! read again when needed. Dates older than the horizon are deleted by their writer.
//! Events outside the horizon (historical replays) skip all of this and are only deduplicated
//! within one run, in memory.
//!
//! The hash is keyed by a random seed kept in `_auditlake/keys/seed`, so ids crafted to
//! collide cannot be computed without reading the lake's state.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::SinkError;
use super::journal::{sync_dir, tmp_path};
use crate::event::Provider;
use crate::normalize::date_of_ms;

const DAY_MS: i64 = 86_400_000;
const MAGIC: &[u8; 8] = b"ALKEYS1\n";
/// Bytes a key held in memory costs: 16 in a sorted vector, up to ~40 in the hash set of keys
/// added since the date was loaded (a table just grown is under half full).
const SORTED_KEY_BYTES: u64 = 16;
const FRESH_KEY_BYTES: u64 = 40;
/// A writer merges its batch key files of one date once it has this many.
const MERGE_AFTER_FILES: usize = 32;
/// Key index memory of a replay (no process-wide budget): ~1.6 to 4 M keys.
pub const DEFAULT_BUDGET_BYTES: u64 = 64 << 20;

/// How far from now (in event time, either side) an event id is guaranteed unique in the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon(Option<Duration>);

impl Horizon {
    pub const DEFAULT: Horizon = Horizon(Some(Duration::from_secs(48 * 3600)));
    pub const OFF: Horizon = Horizon(None);

    /// The horizon in milliseconds, `None` when off.
    pub fn millis(self) -> Option<i64> {
        self.0
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// Parses `off`, or a number with a unit: `90m`, `48h`, `7d` (also `s`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(Horizon::OFF);
        }
        let bad = || {
            format!(
                "invalid dedup horizon {text:?}: give `off` or a whole number with a unit, e.g. `48h`, `7d`, `90m`"
            )
        };
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = t[..split].parse().map_err(|_| bad())?;
        let unit = match &t[split..] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        let secs = n.checked_mul(unit).ok_or_else(bad)?;
        if secs == 0 {
            return Err(format!(
                "dedup horizon {text:?} is zero: use `off` to turn it off"
            ));
        }
        Ok(Horizon(Some(Duration::from_secs(secs))))
    }
}

impl Default for Horizon {
    fn default() -> Self {
        Horizon::DEFAULT
    }
}

impl std::fmt::Display for Horizon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(d) if d.as_secs() % 86_400 == 0 => write!(f, "{}d", d.as_secs() / 86_400),
            Some(d) if d.as_secs() % 3600 == 0 => write!(f, "{}h", d.as_secs() / 3600),
            Some(d) => write!(f, "{}s", d.as_secs()),
        }
    }
}

impl<'de> Deserialize<'de> for Horizon {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Horizon::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `[dedup]` of a pipeline file.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// Within this distance of now (event time, either side) no (provider, event id) is ever
    /// written twice, whatever the restarts: `off`, or e.g. `48h` (the default), `7d`.
    #[serde(default)]
    pub horizon: Horizon,
}

/// The date (days since the epoch) an event at `time_ms` belongs to, when it is within
/// `horizon_ms` of `now_ms`.
pub fn day_within(time_ms: i64, now_ms: i64, horizon_ms: i64) -> Option<i64> {
    (time_ms.abs_diff(now_ms) <= horizon_ms.unsigned_abs()).then(|| time_ms.div_euclid(DAY_MS))
}

/// `_auditlake/keys/date=<YYYY-MM-DD>/<stem>.keys`, relative to the lake root.
pub fn key_file_rel(day: i64, stem: &str) -> String {
    format!("{}/{stem}.keys", day_rel(day))
}

fn day_rel(day: i64) -> String {
    format!("_auditlake/keys/date={}", date_of_ms(day * DAY_MS))
}

/// Keys of one date in memory. *Resident*: every committed key is in memory. *Cold* (when the
/// date alone would not fit the budget): the committed keys stay in their files, found through
/// a sparse index (every 256th key) and one 4 KiB read per file.
#[derive(Default)]
struct Day {
    /// Resident: committed keys read from disk or settled from `committed`; sorted, unique.
    sorted: Vec<u128>,
    /// Resident: keys this process committed since (settled into `sorted` once large).
    committed: HashSet<u128, KeyHash>,
    /// Cold: the date's key files.
    cold: Option<Vec<DiskFile>>,
    /// Keys of this process's batches not committed yet: the date stays in memory while any.
    pending: HashSet<u128, KeyHash>,
    /// Key files already read (or written by this process).
    files: HashSet<String>,
    last_used: u64,
}

impl Day {
    fn contains(&self, key: u128) -> Result<bool, SinkError> {
        if self.pending.contains(&key)
            || self.committed.contains(&key)
            || sorted_contains(&self.sorted, key)
        {
            return Ok(true);
        }
        for f in self.cold.iter().flatten() {
            if f.contains(key)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn bytes(&self) -> u64 {
        let sets = (self.committed.capacity() + self.pending.capacity()) as u64;
        let cold: usize = self
            .cold
            .iter()
            .flatten()
            .map(|f| f.sample.capacity())
            .sum();
        (self.sorted.capacity() + cold) as u64 * SORTED_KEY_BYTES + sets * FRESH_KEY_BYTES / 2
    }

    /// Moves `committed` into `sorted` once it is large, to keep memory near 16 bytes a key.
    fn settle(&mut self) {
        if self.committed.len() < 65_536 || self.committed.len() * 4 < self.sorted.len() {
            return;
        }
        self.sorted.extend(self.committed.drain());
        self.sorted.sort_unstable();
        self.sorted.dedup();
        self.sorted.shrink_to_fit();
        self.committed = HashSet::default();
    }

    /// Adds committed keys read from (or written to) the file `name` at `path`.
    fn add_file(&mut self, name: String, path: &Path, keys: Vec<u128>) -> Result<(), SinkError> {
        match self.cold.as_mut() {
            Some(cold) => {
                if let Some(f) = DiskFile::open(&name, path, &keys)? {
                    cold.push(f);
                }
            }
            None => {
                self.committed.extend(keys);
                self.settle();
            }
        }
        self.files.insert(name);
        Ok(())
    }
}

/// Keys of every 256th position: a cold lookup reads one block of 256 keys (4 KiB).
const SAMPLE_EVERY: usize = 256;

/// A key file of a cold date: an open handle and its sparse index.
struct DiskFile {
    name: String,
    file: std::fs::File,
    len: usize,
    sample: Vec<u128>,
}

impl DiskFile {
    /// Opens `path` whose sorted `keys` were just read or written; `None` if it vanished
    /// (merged meanwhile: the merged file is read instead).
    fn open(name: &str, path: &Path, keys: &[u128]) -> Result<Option<Self>, SinkError> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SinkError::io("open", path, e)),
        };
        Ok(Some(DiskFile {
            name: name.to_string(),
            file,
            len: keys.len(),
            sample: keys.iter().step_by(SAMPLE_EVERY).copied().collect(),
        }))
    }

    fn contains(&self, key: u128) -> Result<bool, SinkError> {
        use std::os::unix::fs::FileExt;
        let block = self.sample.partition_point(|&k| k <= key);
        let Some(first) = block.checked_sub(1).map(|b| b * SAMPLE_EVERY) else {
            return Ok(false);
        };
        let n = SAMPLE_EVERY.min(self.len - first);
        let mut buf = vec![0u8; n * 16];
        self.file
            .read_exact_at(&mut buf, (MAGIC.len() + first * 16) as u64)
            .map_err(|e| SinkError::io("read", Path::new(&self.name), e))?;
        let keys: Vec<u128> = buf
            .chunks_exact(16)
            .filter_map(|c| c.try_into().ok().map(u128::from_le_bytes))
            .collect();
        Ok(keys.binary_search(&key).is_ok())
    }
}

/// Whether `key` is in `sorted` (sorted, uniform keys): starts where a uniform key would be
/// and widens from there, so a lookup touches a few cache lines, not log2(n).
fn sorted_contains(sorted: &[u128], key: u128) -> bool {
    let n = sorted.len();
    if n == 0 {
        return false;
    }
    let guess = ((((key >> 64) as u64 as u128) * n as u128) >> 64) as usize;
    let (mut lo, mut hi, mut step) = (guess, guess + 1, 8usize);
    while lo > 0 && sorted[lo] > key {
        lo = lo.saturating_sub(step);
        step *= 2;
    }
    step = 8;
    while hi < n && sorted[hi - 1] < key {
        hi = (hi + step).min(n);
        step *= 2;
    }
    sorted[lo..hi].binary_search(&key).is_ok()
}

/// Counters of the key index, for the run summary and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyStats {
    pub dates_loaded: u64,
    pub files_read: u64,
    pub dates_dropped_from_memory: u64,
    /// Dates whose committed keys were too many for the budget: looked up on disk.
    pub cold_dates: u64,
    pub damaged_files: u64,
}

/// The committed event keys of a lake, for one writer.
pub struct KeyStore {
    root: PathBuf,
    seed: u64,
    instance: Option<String>,
    /// The key directory is this writer's alone: the other writers' files in it are copies
    /// fetched through a table catalog (an Iceberg lake), pruned like its own.
    private: bool,
    days: HashMap<i64, Day>,
    clock: u64,
    budget: u64,
    /// Bytes held by `days` (recomputed when a date is loaded or settles).
    held: u64,
    pub stats: KeyStats,
}

/// Hashes a key that is already a keyed uniform hash: keeps its low 64 bits.
#[derive(Default, Clone, Copy)]
pub struct KeyHash;

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used for `u128` keys; any other input still hashes.
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

impl KeyStore {
    /// Opens the key index of the lake at `root` (creating its seed on first use) for the
    /// writer `instance` (`None`: the lake's only writer).
    ///
    /// `catalog_seed`: the seed every writer of an Iceberg lake shares (kept by the catalog),
    /// so keys from other hosts' key files compare with this one's. The directory is then this
    /// writer's alone; key files made with another seed (a state directory from before) are
    /// removed, as they could not be compared.
    pub fn open(
        root: &Path,
        instance: Option<&str>,
        budget: u64,
        catalog_seed: Option<u64>,
    ) -> Result<Self, SinkError> {
        let dir = root.join("_auditlake/keys");
        std::fs::create_dir_all(&dir).map_err(|e| SinkError::io("create directory", &dir, e))?;
        let seed = match catalog_seed {
            Some(seed) => adopt_seed(&dir, seed)?,
            None => read_or_create_seed(&dir.join("seed"))?,
        };
        Ok(KeyStore {
            root: root.to_path_buf(),
            seed,
            instance: instance.map(str::to_string),
            private: catalog_seed.is_some(),
            days: HashMap::new(),
            clock: 0,
            budget,
            held: 0,
            stats: KeyStats::default(),
        })
    }

    pub fn set_budget(&mut self, bytes: u64) {
        self.budget = bytes;
    }

    /// The key of an event id.
    pub fn key(&self, provider: Provider, id: &str) -> u128 {
        let seed = self.seed ^ (provider as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        xxhash_rust::xxh3::xxh3_128_with_seed(id.as_bytes(), seed)
    }

    /// True (and the key is remembered as uncommitted) the first time `key` is seen on `day`,
    /// in the lake or in this process. `skip` tells which key files are not committed yet
    /// (another writer's batch between its prepare and commit).
    pub fn first_sighting(
        &mut self,
        day: i64,
        key: u128,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<bool, SinkError> {
        self.clock += 1;
        if !self.days.contains_key(&day) {
            self.load(day, skip)?;
        }
        let Some(d) = self.days.get_mut(&day) else {
            return Ok(true);
        };
        d.last_used = self.clock;
        if d.contains(key)? {
            return Ok(false);
        }
        let before = d.bytes();
        d.pending.insert(key);
        self.held = self.held.saturating_sub(before) + d.bytes();
        Ok(true)
    }

    /// A batch committed `keys` (sorted) of `day` in the file `rel` (relative to the lake root).
    pub fn committed(&mut self, day: i64, rel: &str, keys: Vec<u128>) {
        let result = (|| {
            if let Some(d) = self.days.get_mut(&day) {
                for k in &keys {
                    d.pending.remove(k);
                }
                d.pending.shrink_to_fit();
                let name = rel.rsplit('/').next().unwrap_or(rel).to_string();
                d.add_file(name, &self.root.join(rel), keys)?;
            }
            self.merge_own_files(day)
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot index or merge the event key files of a date; they are read again later");
            self.days.remove(&day);
        }
        self.recount();
        self.evict(None);
    }

    /// Forgets what is in memory (after a batch failed: its keys are not committed); dates are
    /// read again from disk when next needed.
    pub fn forget(&mut self) {
        self.days.clear();
        self.held = 0;
    }

    /// Reads the key files that other writers committed since the dates in memory were read.
    pub fn refresh(&mut self, skip: &dyn Fn(&str) -> bool) -> Result<(), SinkError> {
        let days: Vec<i64> = self.days.keys().copied().collect();
        for day in days {
            let dir = self.root.join(day_rel(day));
            let names = list_key_files(&dir)?;
            let Some(d) = self.days.get_mut(&day) else {
                continue;
            };
            for name in names {
                if d.files.contains(&name) || skip(&format!("{}/{name}", day_rel(day))) {
                    continue;
                }
                let path = dir.join(&name);
                if let Some(keys) = read_key_file(&path, &mut self.stats)? {
                    d.add_file(name, &path, keys)?;
                }
            }
        }
        self.recount();
        Ok(())
    }

    /// Whether the keys of `day` are in memory.
    pub fn has_day(&self, day: i64) -> bool {
        self.days.contains_key(&day)
    }

    /// Bytes the index holds in memory.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    fn recount(&mut self) {
        self.held = self.days.values().map(Day::bytes).sum();
    }

    /// Reads a date's committed keys: into memory when they fit half the budget, else as a
    /// cold date (sparse index, lookups on disk).
    fn load(&mut self, day: i64, skip: &dyn Fn(&str) -> bool) -> Result<(), SinkError> {
        let dir = self.root.join(day_rel(day));
        let names: Vec<String> = list_key_files(&dir)?
            .into_iter()
            .filter(|name| !skip(&format!("{}/{name}", day_rel(day))))
            .collect();
        let on_disk: u64 = names
            .iter()
            .filter_map(|n| std::fs::metadata(dir.join(n)).ok())
            .map(|m| m.len())
            .sum();
        let mut d = Day {
            cold: (on_disk > self.budget / 2).then(Vec::new),
            last_used: self.clock,
            ..Day::default()
        };
        self.stats.cold_dates += u64::from(d.cold.is_some());
        for name in names {
            let path = dir.join(&name);
            if let Some(keys) = read_key_file(&path, &mut self.stats)? {
                if d.cold.is_none() {
                    d.sorted.extend(keys);
                    d.files.insert(name);
                } else {
                    d.add_file(name, &path, keys)?;
                }
            }
        }
        d.sorted.sort_unstable();
        d.sorted.dedup();
        d.sorted.shrink_to_fit();
        self.stats.dates_loaded += 1;
        self.held += d.bytes();
        self.days.insert(day, d);
        self.evict(Some(day));
        Ok(())
    }

    /// While over budget: drops the least recently used date without uncommitted keys, else
    /// turns the largest resident date cold.
    fn evict(&mut self, keep: Option<i64>) {
        while self.held > self.budget {
            let victim = self
                .days
                .iter()
                .filter(|(day, d)| d.pending.is_empty() && Some(**day) != keep)
                .min_by_key(|(_, d)| d.last_used)
                .map(|(day, _)| *day);
            if let Some(day) = victim {
                if let Some(d) = self.days.remove(&day) {
                    self.held = self.held.saturating_sub(d.bytes());
                    self.stats.dates_dropped_from_memory += 1;
                }
                continue;
            }
            let largest = self
                .days
                .iter()
                .filter(|(_, d)| d.cold.is_none())
                .max_by_key(|(_, d)| d.bytes())
                .map(|(day, _)| *day);
            let Some(day) = largest else { break };
            if let Err(e) = self.make_cold(day) {
                tracing::warn!(error = %e, "cannot index the event keys of a date on disk; it stays in memory");
                break;
            }
        }
    }

    /// Lets a resident date's committed keys go from memory: they are looked up in its files.
    fn make_cold(&mut self, day: i64) -> Result<(), SinkError> {
        let dir = self.root.join(day_rel(day));
        let Some(d) = self.days.get_mut(&day) else {
            return Ok(());
        };
        let mut cold = Vec::new();
        let mut names: Vec<String> = d.files.iter().cloned().collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            if let Some(keys) = read_key_file(&path, &mut self.stats)?
                && let Some(f) = DiskFile::open(&name, &path, &keys)?
            {
                cold.push(f);
            }
        }
        d.sorted = Vec::new();
        d.committed = HashSet::default();
        d.cold = Some(cold);
        self.stats.cold_dates += 1;
        self.recount();
        Ok(())
    }

    /// Whether a key file name is this writer's.
    fn is_own(&self, name: &str) -> bool {
        is_writers(name, self.instance.as_deref())
    }

    /// Once a date has many of this writer's batch key files, merges them into one (written
    /// and renamed into place before the inputs are removed: a crash leaves keys twice, never
    /// none). Merged files are merged again once there are several.
    fn merge_own_files(&mut self, day: i64) -> Result<(), SinkError> {
        let dir = self.root.join(day_rel(day));
        let names = list_key_files(&dir)?;
        let own: Vec<&String> = names.iter().filter(|n| self.is_own(n)).collect();
        let parts: Vec<&String> = own
            .iter()
            .copied()
            .filter(|n| n.starts_with("part-"))
            .collect();
        let inputs: Vec<&String> = if parts.len() >= MERGE_AFTER_FILES {
            parts
        } else if own.len() - parts.len() >= 8 {
            own
        } else {
            return Ok(());
        };
        let mut keys = Vec::new();
        for name in &inputs {
            if let Some(k) = read_key_file(&dir.join(name), &mut self.stats)? {
                keys.extend(k);
            }
        }
        keys.sort_unstable();
        keys.dedup();
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for name in &inputs {
            h.update(name.as_bytes());
        }
        let name = match &self.instance {
            Some(i) => format!("merged-{i}-{:032x}.keys", h.digest128()),
            None => format!("merged-{:032x}.keys", h.digest128()),
        };
        let dest = dir.join(&name);
        write_key_file(&tmp_path(&dest), &keys)?;
        std::fs::rename(tmp_path(&dest), &dest).map_err(|e| SinkError::io("rename", &dest, e))?;
        sync_dir(&dest)?;
        for name in &inputs {
            let p = dir.join(name);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SinkError::io("remove", &p, e)),
            }
        }
        if let Some(d) = self.days.get_mut(&day) {
            if let Some(cold) = d.cold.as_mut() {
                cold.retain(|f| !inputs.contains(&&f.name));
                if let Some(f) = DiskFile::open(&name, &dest, &keys)? {
                    cold.push(f);
                }
            }
            d.files.insert(name);
        }
        Ok(())
    }

    /// Deletes this writer's key files of dates that ended more than a day before the
    /// horizon begins: no event in the horizon can belong to them. (All of them when the
    /// directory is private: the others are fetched copies.)
    pub fn prune(&mut self, now_ms: i64, horizon_ms: i64) -> Result<(), SinkError> {
        let oldest = oldest_day(now_ms, horizon_ms);
        let base = self.root.join("_auditlake/keys");
        let entries = match std::fs::read_dir(&base) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(SinkError::io("list", &base, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| SinkError::io("list", &base, e))?;
            let name = entry.file_name();
            let Some(date) = name.to_str().and_then(|n| n.strip_prefix("date=")) else {
                continue;
            };
            let Some(day) = crate::normalize::parse_time_ms(&format!("{date}T00:00:00Z"), 0)
                .map(|ms| ms.div_euclid(DAY_MS))
            else {
                continue;
            };
            if day >= oldest {
                continue;
            }
            let dir = entry.path();
            for file in list_key_files(&dir)? {
                if self.private || self.is_own(&file) {
                    let p = dir.join(&file);
                    if let Err(e) = std::fs::remove_file(&p)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        return Err(SinkError::io("remove", &p, e));
                    }
                }
            }
            // Removed only once empty: other writers may still have files there.
            let _ = std::fs::remove_dir(&dir);
            self.days.remove(&day);
        }
        Ok(())
    }
}

/// Whether a key file name is the writer `instance`'s: `part-[<instance>-]<hex>.keys` or
/// `merged-[<instance>-]<hex>.keys`.
pub fn is_writers(name: &str, instance: Option<&str>) -> bool {
    let Some(rest) = name
        .strip_prefix("part-")
        .or_else(|| name.strip_prefix("merged-"))
    else {
        return false;
    };
    let Some(rest) = rest.strip_suffix(".keys") else {
        return false;
    };
    let hex = match instance {
        Some(i) => match rest.strip_prefix(i).and_then(|r| r.strip_prefix('-')) {
            Some(h) => h,
            None => return false,
        },
        None => rest,
    };
    !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The oldest date whose keys matter for events within `horizon_ms` of `now_ms` (older ones
/// are pruned).
pub fn oldest_day(now_ms: i64, horizon_ms: i64) -> i64 {
    (now_ms.saturating_sub(horizon_ms)).div_euclid(DAY_MS) - 1
}

/// The date of a key file from its path (`…/date=YYYY-MM-DD/<name>.keys`).
pub fn day_of_key_file(path: &str) -> Option<i64> {
    let date = path.rsplit('/').nth(1)?.strip_prefix("date=")?;
    crate::normalize::parse_time_ms(&format!("{date}T00:00:00Z"), 0).map(|ms| ms.div_euclid(DAY_MS))
}

/// A new random seed for the keyed hash.
pub fn new_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

/// Makes `seed` the seed of the key directory `dir`: written when missing; when the
/// directory has another one, its key files are removed first (keys made with another seed
/// cannot be compared).
fn adopt_seed(dir: &Path, seed: u64) -> Result<u64, SinkError> {
    let path = dir.join("seed");
    let local = match std::fs::read_to_string(&path) {
        Ok(text) => Some(u64::from_str_radix(text.trim(), 16).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(SinkError::io("read", &path, e)),
    };
    match local {
        Some(Some(local)) if local == seed => return Ok(seed),
        // A new state directory: its key files (if any) are copies made with this seed.
        None => {}
        Some(_) => {
            tracing::warn!(
                dir = %dir.display(),
                "this state directory's event keys were made with another seed than the catalog's: they are removed, and the keys every writer committed to the catalog are fetched again"
            );
            let entries = std::fs::read_dir(dir).map_err(|e| SinkError::io("list", dir, e))?;
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("date=") {
                    let p = entry.path();
                    std::fs::remove_dir_all(&p).map_err(|e| SinkError::io("remove", &p, e))?;
                }
            }
        }
    }
    let tmp = tmp_path(&path);
    std::fs::write(&tmp, format!("{seed:016x}\n"))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .map_err(|e| SinkError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| SinkError::io("rename", &path, e))?;
    sync_dir(&path)?;
    Ok(seed)
}

fn read_or_create_seed(path: &Path) -> Result<u64, SinkError> {
    match std::fs::read_to_string(path) {
        Ok(text) => u64::from_str_radix(text.trim(), 16).map_err(|_| {
            SinkError::Config(format!(
                "{} is damaged (expected 16 hex digits): without it the committed event keys cannot be read; remove the directory {} to start the key index afresh",
                path.display(),
                path.parent().map(|p| p.display().to_string()).unwrap_or_default()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = new_seed();
            let tmp = tmp_path(path);
            std::fs::write(&tmp, format!("{seed:016x}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .map_err(|e| SinkError::io("write", &tmp, e))?;
            // A link fails if another writer created the seed meanwhile: then use theirs.
            let linked = std::fs::hard_link(&tmp, path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {
                    sync_dir(path)?;
                    Ok(seed)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    read_or_create_seed(path)
                }
                Err(e) => Err(SinkError::io("create", path, e)),
            }
        }
        Err(e) => Err(SinkError::io("read", path, e)),
    }
}

fn list_key_files(dir: &Path) -> Result<Vec<String>, SinkError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SinkError::io("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SinkError::io("list", dir, e))?;
        if let Some(name) = entry.file_name().to_str()
            && name.ends_with(".keys")
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Writes sorted keys: the magic, the keys (16 bytes little-endian each), and an xxh3 of
/// them; fsynced.
pub fn write_key_file(path: &Path, keys: &[u128]) -> Result<u64, SinkError> {
    use std::io::Write;
    let mut bytes = Vec::with_capacity(MAGIC.len() + keys.len() * 16 + 8);
    bytes.extend_from_slice(MAGIC);
    for k in keys {
        bytes.extend_from_slice(&k.to_le_bytes());
    }
    let sum = xxhash_rust::xxh3::xxh3_64(&bytes[MAGIC.len()..]);
    bytes.extend_from_slice(&sum.to_le_bytes());
    let mut f = std::fs::File::create(path).map_err(|e| SinkError::io("create", path, e))?;
    f.write_all(&bytes)
        .map_err(|e| SinkError::io("write", path, e))?;
    f.sync_all().map_err(|e| SinkError::io("fsync", path, e))?;
    Ok(bytes.len() as u64)
}

/// Reads a key file; `None` (with a warning) when it is damaged or vanished meanwhile (merged
/// by its writer: the merged file is read instead).
fn read_key_file(path: &Path, stats: &mut KeyStats) -> Result<Option<Vec<u128>>, SinkError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SinkError::io("read", path, e)),
    };
    stats.files_read += 1;
    let body_len = bytes.len().checked_sub(MAGIC.len() + 8);
    let ok = bytes.starts_with(MAGIC) && body_len.is_some_and(|n| n % 16 == 0);
    let body = &bytes[MAGIC.len().min(bytes.len())..bytes.len().saturating_sub(8)];
    let sum_ok = ok
        && bytes[bytes.len() - 8..]
            .try_into()
            .is_ok_and(|s: [u8; 8]| u64::from_le_bytes(s) == xxhash_rust::xxh3::xxh3_64(body));
    if !sum_ok {
        stats.damaged_files += 1;
        tracing::warn!(file = %path.display(), "damaged event key file ignored: events whose keys it held may be written again");
        return Ok(None);
    }
    Ok(Some(
        body.chunks_exact(16)
            .filter_map(|c| c.try_into().ok().map(u128::from_le_bytes))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> bool {
        false
    }

    #[test]
    fn a_catalog_seed_replaces_another_and_its_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let rel = key_file_rel(20_000, "part-a-00");
        let own = KeyStore::open(root, Some("a"), 1 << 20, None).expect("open");
        let key = own.key(Provider::Aws, "e1");
        std::fs::create_dir_all(root.join(&rel).parent().expect("dir")).expect("mkdir");
        write_key_file(&root.join(&rel), &[key]).expect("write");
        let local = own.seed;
        drop(own);
        // The same seed keeps the keys; another removes them.
        let same = KeyStore::open(root, Some("a"), 1 << 20, Some(local)).expect("open");
        assert_eq!(same.key(Provider::Aws, "e1"), key);
        assert!(root.join(&rel).exists());
        let other = KeyStore::open(root, Some("a"), 1 << 20, Some(local ^ 1)).expect("open");
        assert_ne!(other.key(Provider::Aws, "e1"), key);
        assert!(!root.join(&rel).exists(), "keys of another seed removed");
        let again = KeyStore::open(root, Some("a"), 1 << 20, None).expect("open");
        assert_eq!(
            again.seed,
            local ^ 1,
            "the catalog's seed is the directory's now"
        );
    }

    #[test]
    fn horizons_parse_and_print() {
        assert_eq!(Horizon::parse("off"), Ok(Horizon::OFF));
        assert_eq!(
            Horizon::parse("48h").map(|h| h.millis()),
            Ok(Some(48 * 3_600_000))
        );
        assert_eq!(Horizon::parse("7d").map(|h| h.to_string()), Ok("7d".into()));
        assert_eq!(
            Horizon::parse("90m").map(|h| h.millis()),
            Ok(Some(5_400_000))
        );
        for bad in ["", "48", "h", "2w", "-1d", "0h", "1.5d"] {
            assert!(Horizon::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn events_belong_to_their_own_date_within_the_horizon_only() {
        let now = 20_000 * DAY_MS + 3_600_000;
        let h = 48 * 3_600_000;
        assert_eq!(day_within(now, now, h), Some(20_000));
        assert_eq!(day_within(now - h, now, h), Some(19_998));
        assert_eq!(day_within(now - h - 1, now, h), None);
        assert_eq!(day_within(now + h, now, h), Some(20_002));
        assert_eq!(day_within(i64::MIN, now, h), None);
    }

    #[test]
    fn sorted_lookup_finds_every_key_and_no_other() {
        let mut rng = crate::testing::xorshift(7);
        for n in [0usize, 1, 2, 17, 1000, 50_000] {
            let mut keys: Vec<u128> = (0..n)
                .map(|_| (u128::from(rng()) << 64) | u128::from(rng()))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            for &k in &keys {
                assert!(sorted_contains(&keys, k));
            }
            for _ in 0..1000 {
                let k = (u128::from(rng()) << 64) | u128::from(rng());
                assert_eq!(sorted_contains(&keys, k), keys.binary_search(&k).is_ok());
            }
            // Skewed keys (not uniform) are still found.
            let skewed: Vec<u128> = (0..n as u128).map(|i| i * 3).collect();
            for &k in skewed.iter().step_by(7) {
                assert!(sorted_contains(&skewed, k));
                assert!(!sorted_contains(&skewed, k + 1));
            }
        }
    }

    #[test]
    fn committed_keys_are_seen_by_the_next_process_and_memory_stays_in_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let mut a = KeyStore::open(root, None, 1 << 20, None).expect("open");
        let k1 = a.key(Provider::Aws, "event-1");
        assert!(a.first_sighting(20_000, k1, &none).expect("look up"));
        assert!(!a.first_sighting(20_000, k1, &none).expect("look up"));
        assert_ne!(
            k1,
            a.key(Provider::Tencent, "event-1"),
            "providers have their own keys"
        );
        let rel = key_file_rel(20_000, "part-0123abcd");
        std::fs::create_dir_all(root.join(&rel).parent().expect("dir")).expect("mkdir");
        write_key_file(&root.join(&rel), &[k1]).expect("write");
        a.committed(20_000, &rel, vec![k1]);
        drop(a);

        let mut b = KeyStore::open(root, None, 1 << 20, None).expect("reopen");
        assert_eq!(
            b.key(Provider::Aws, "event-1"),
            k1,
            "the seed is the lake's"
        );
        assert!(!b.first_sighting(20_000, k1, &none).expect("look up"));
        // A file another writer has not committed yet is not trusted.
        let mut c = KeyStore::open(root, None, 1 << 20, None).expect("open");
        assert!(
            c.first_sighting(20_000, k1, &|f| f == rel)
                .expect("look up")
        );

        // Many dates within a small budget: the oldest unpinned ones leave memory.
        let mut d = KeyStore::open(root, None, 64 << 10, None).expect("open");
        for day in 0..40 {
            let keys: Vec<u128> = (0..1000u128).map(|i| i + day * 1_000_000).collect();
            let rel = key_file_rel(day as i64, "part-aa");
            std::fs::create_dir_all(root.join(&rel).parent().expect("dir")).expect("mkdir");
            write_key_file(&root.join(&rel), &keys).expect("write");
            assert!(
                !d.first_sighting(day as i64, keys[500], &none)
                    .expect("look up")
            );
        }
        assert!(d.held_bytes() <= 64 << 10, "{} bytes held", d.held_bytes());
        assert!(d.stats.dates_dropped_from_memory > 0);
        // A date dropped from memory is read again when needed.
        assert!(!d.first_sighting(0, 7, &none).expect("look up"));
    }

    #[test]
    fn a_date_too_large_for_the_budget_is_looked_up_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let day = 20_100;
        let mut rng = crate::testing::xorshift(11);
        let mut keys: Vec<u128> = (0..20_000)
            .map(|_| (u128::from(rng()) << 64) | u128::from(rng()))
            .collect();
        keys.sort_unstable();
        let rel = key_file_rel(day, "part-01");
        std::fs::create_dir_all(root.join(&rel).parent().expect("dir")).expect("mkdir");
        write_key_file(&root.join(&rel), &keys).expect("write");

        // 320 KB of keys, 64 KiB of budget: the date is cold from the start.
        let mut s = KeyStore::open(root, None, 64 << 10, None).expect("open");
        for &k in keys
            .iter()
            .step_by(97)
            .chain([keys[0], keys[19_999]].iter())
        {
            assert!(!s.first_sighting(day, k, &none).expect("look up"), "{k:x}");
        }
        assert_eq!(s.stats.cold_dates, 1);
        assert!(s.held_bytes() < 64 << 10, "{}", s.held_bytes());
        let new = 12345u128;
        assert!(s.first_sighting(day, new, &none).expect("look up"));
        assert!(!s.first_sighting(day, new, &none).expect("pending"));
        let rel2 = key_file_rel(day, "part-02");
        write_key_file(&root.join(&rel2), &[new]).expect("write");
        s.committed(day, &rel2, vec![new]);
        assert!(
            !s.first_sighting(day, new, &none)
                .expect("committed, on disk")
        );

        // A resident date that outgrows the budget turns cold once its keys are committed.
        let mut r = KeyStore::open(root, None, 256 << 10, None).expect("open");
        let other = 20_101;
        let grown: Vec<u128> = (0..20_000u128).map(|i| i << 100 | i).collect();
        for &k in &grown {
            assert!(r.first_sighting(other, k, &none).expect("look up"));
        }
        let rel3 = key_file_rel(other, "part-03");
        std::fs::create_dir_all(root.join(&rel3).parent().expect("dir")).expect("mkdir");
        let mut sorted = grown.clone();
        sorted.sort_unstable();
        write_key_file(&root.join(&rel3), &sorted).expect("write");
        r.committed(other, &rel3, sorted);
        assert!(r.held_bytes() <= 256 << 10, "{}", r.held_bytes());
        for &k in grown.iter().step_by(101) {
            assert!(!r.first_sighting(other, k, &none).expect("look up"));
        }
    }

    #[test]
    fn damaged_key_files_are_ignored_with_a_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rel = key_file_rel(5, "part-ff");
        let path = dir.path().join(&rel);
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        write_key_file(&path, &[1, 2, 3]).expect("write");
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[10] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        let mut s = KeyStore::open(dir.path(), None, 1 << 20, None).expect("open");
        assert!(s.first_sighting(5, 1, &none).expect("look up"));
        assert_eq!(s.stats.damaged_files, 1);
    }

    #[test]
    fn a_writer_merges_its_own_files_and_prunes_old_dates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let mut s = KeyStore::open(root, Some("a"), 1 << 20, None).expect("open");
        let day = 20_000;
        let ddir = root.join(day_rel(day));
        std::fs::create_dir_all(&ddir).expect("mkdir");
        write_key_file(&ddir.join("part-b-00ff.keys"), &[999]).expect("other writer");
        for i in 0..MERGE_AFTER_FILES as u128 {
            let rel = key_file_rel(day, &format!("part-a-{i:04x}"));
            write_key_file(&root.join(&rel), &[i]).expect("write");
            s.committed(day, &rel, vec![i]);
        }
        let names = list_key_files(&ddir).expect("list");
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("merged-a-")));
        assert!(
            names.contains(&"part-b-00ff.keys".to_string()),
            "others' files stay"
        );
        let mut fresh = KeyStore::open(root, Some("c"), 1 << 20, None).expect("open");
        for k in [0u128, 31, 999] {
            assert!(!fresh.first_sighting(day, k, &none).expect("look up"));
        }
        s.prune((day + 10) * DAY_MS, 48 * 3_600_000).expect("prune");
        assert_eq!(
            list_key_files(&ddir).expect("list"),
            vec!["part-b-00ff.keys"]
        );
    }
}
