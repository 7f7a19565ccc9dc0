//! Which files of the inbox (`auditlake run` with a files source) are ready to read: new or
//! changed files, once their size and modification time have not changed for one
//! `poll_interval_secs`. File-system notifications (the `notify` crate: inotify, FSEvents,
//! …) say which paths changed, so an idle inbox costs nothing however many files it holds; a
//! full scan runs at start, every `rescan_interval_secs` and when notifications were lost. When
//! notifications cannot be had (`notifications = false`, or the watcher cannot be created, e.g.
//! the inotify watch limit), the inbox is scanned every `poll_interval_secs`, as before.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};

use serde::Deserialize;

use super::files::{FilesError, InputFile, ReadCounters, Tree, expand_tree, replay};
use crate::batch::Batcher;
use crate::normalize::unit::DecodeContext;

/// A file's size and modification time: when two looks one interval apart agree, the file has
/// settled (it is not being copied any more).
pub(crate) type Signature = (u64, Option<SystemTime>);

type Events = Receiver<notify::Result<notify::Event>>;

pub(crate) struct Inbox {
    root: PathBuf,
    /// The root as notifications name it (absolute): their paths are given back under `root`,
    /// as the scans name them, so a file has one name whichever way it was found.
    watched: PathBuf,
    /// The lake's root: never read as input.
    lake: PathBuf,
    /// The lake's place under the inbox, when it is in it (paths of notifications are checked
    /// against it without touching the disk).
    lake_in_inbox: Option<PathBuf>,
    settle: Duration,
    /// Time between full scans.
    scan_every: Duration,
    tree: Tree,
    /// Every file looked at: its signature when last seen, and whether it has been read so.
    seen: HashMap<PathBuf, (Signature, bool)>,
    /// Files to look at again at the next settle tick (seen changing, not read yet).
    unsettled: BTreeSet<PathBuf>,
    /// Directories that appeared: walked when they appear and once more at the next tick, for
    /// files made in them before they were watched.
    new_dirs: BTreeSet<PathBuf>,
    /// The notifications; `None` when the inbox is scanned instead.
    watcher: Option<(notify::RecommendedWatcher, Events)>,
    next_tick: Instant,
    next_scan: Instant,
    /// Whether the first scan is done.
    scanned: bool,
}

/// What one look at a file found.
enum Look {
    /// Read already, unchanged since; or gone.
    Done,
    /// New or changed since the last look.
    Changing,
    /// Unchanged for one interval and not read: to be read now.
    Settled(Signature),
}

impl Inbox {
    pub(crate) fn open(config: &InboxConfig, lake: &Path) -> Inbox {
        let settle = Duration::from_secs(config.poll_interval_secs.max(1));
        let watcher = if config.notifications {
            match notifications(&config.path) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(inbox = %config.path.display(), error = %e, poll_interval_secs = settle.as_secs(), "cannot watch the inbox for changes; scanning it every poll interval instead");
                    None
                }
            }
        } else {
            None
        };
        let scan_every = match watcher {
            Some(_) => Duration::from_secs(config.rescan_interval_secs.max(1)),
            None => settle,
        };
        let lake_in_inbox = lake.canonicalize().ok().and_then(|lake| {
            let root = config.path.canonicalize().ok()?;
            lake.strip_prefix(root).ok().map(Path::to_path_buf)
        });
        let now = Instant::now();
        let watched = std::env::current_dir()
            .map(|cwd| cwd.join(&config.path))
            .unwrap_or_else(|_| config.path.clone());
        Inbox {
            root: config.path.clone(),
            watched,
            lake: lake.to_path_buf(),
            lake_in_inbox,
            settle,
            scan_every,
            tree: Tree::default(),
            seen: HashMap::new(),
            unsettled: BTreeSet::new(),
            new_dirs: BTreeSet::new(),
            watcher,
            next_tick: now + settle,
            next_scan: now,
            scanned: false,
        }
    }

    /// True when changes are learnt from notifications.
    pub(crate) fn notified(&self) -> bool {
        self.watcher.is_some()
    }

    /// Waits at most `wait` for changes; returns the files to read now, in path order.
    pub(crate) fn ready(
        &mut self,
        wait: Duration,
    ) -> Result<Vec<(PathBuf, Signature)>, FilesError> {
        let mut rescan = false;
        let mut lost = false;
        let mut changed = Vec::new();
        if let Some((_, events)) = &self.watcher {
            let first = match events.recv_timeout(wait) {
                Ok(event) => Some(event),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    lost = true;
                    None
                }
            };
            for event in first.into_iter().chain(events.try_iter()) {
                match event {
                    Ok(event) if event.need_rescan() => rescan = true,
                    // Opening and reading (ours too) change nothing.
                    Ok(notify::Event {
                        kind:
                            EventKind::Access(AccessKind::Open(_) | AccessKind::Read)
                            | EventKind::Access(AccessKind::Close(AccessMode::Read)),
                        ..
                    }) => {}
                    Ok(event) => changed.extend(event.paths),
                    Err(e) => {
                        tracing::warn!(error = %e, "inbox notification error; scanning the inbox");
                        rescan = true;
                    }
                }
            }
        } else {
            std::thread::sleep(wait);
        }
        if lost {
            tracing::warn!(
                "inbox notifications stopped; scanning the inbox every poll interval instead"
            );
            self.watcher = None;
            self.scan_every = self.settle;
            rescan = true;
        }
        for path in changed {
            if let Ok(rel) = path.strip_prefix(&self.watched) {
                let path = self.root.join(rel);
                self.changed(&path)?;
            }
        }
        let now = Instant::now();
        let mut ready = Vec::new();
        if now >= self.next_tick {
            self.next_tick = now + self.settle;
            for dir in std::mem::take(&mut self.new_dirs) {
                self.walk(&dir)?;
            }
            for path in std::mem::take(&mut self.unsettled) {
                match self.look(&path) {
                    Look::Settled(sig) => ready.push((path, sig)),
                    Look::Changing => {
                        self.unsettled.insert(path);
                    }
                    Look::Done => {}
                }
            }
        }
        if rescan || now >= self.next_scan {
            self.next_scan = now + self.scan_every;
            let root = self.root.clone();
            let files = self.walk(&root)?;
            if !self.scanned {
                self.scanned = true;
                tracing::info!(inbox = %self.root.display(), files, "inbox scanned; new files are read once they have settled");
            }
        }
        Ok(ready)
    }

    /// Records that `path` was read with signature `sig`.
    pub(crate) fn read(&mut self, path: PathBuf, sig: Signature) {
        self.seen.insert(path, (sig, true));
    }

    /// A path a notification named: a file is looked at, a directory walked.
    fn changed(&mut self, path: &Path) -> Result<(), FilesError> {
        if self.unsettled.contains(path) || self.ignored(path) {
            return Ok(());
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                self.walk(path)?;
                self.new_dirs.insert(path.to_path_buf());
            }
            Ok(_) => self.consider(path),
            Err(_) => {
                self.seen.remove(path);
            }
        }
        Ok(())
    }

    /// Hidden paths and the lake's own files are not input.
    fn ignored(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return true;
        };
        rel.components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
            || self
                .lake_in_inbox
                .as_ref()
                .is_some_and(|lake| rel.starts_with(lake))
    }

    /// Looks at every file under `dir`; returns how many there are.
    fn walk(&mut self, dir: &Path) -> Result<usize, FilesError> {
        let files = match expand_tree(
            &[dir.to_path_buf()],
            Some(&self.lake),
            &self.root,
            &mut self.tree,
        ) {
            Ok(files) => files,
            // A directory that went away between the notification and the walk.
            Err(FilesError::Missing { .. }) if dir != self.root => return Ok(0),
            Err(e) => return Err(e),
        };
        for input in &files {
            if !self.unsettled.contains(&input.path) {
                self.consider(&input.path);
            }
        }
        Ok(files.len())
    }

    /// A first look at a file not waiting to settle: changed ones wait for the next tick.
    fn consider(&mut self, path: &Path) {
        if let Look::Changing = self.look(path) {
            self.unsettled.insert(path.to_path_buf());
        }
    }

    fn look(&mut self, path: &Path) -> Look {
        let Ok(meta) = std::fs::metadata(path) else {
            self.seen.remove(path);
            return Look::Done;
        };
        let sig = (meta.len(), meta.modified().ok());
        match self.seen.get(path) {
            Some((prev, true)) if *prev == sig => Look::Done,
            Some((prev, false)) if *prev == sig => Look::Settled(sig),
            _ => {
                self.seen.insert(path.to_path_buf(), (sig, false));
                Look::Changing
            }
        }
    }
}

/// A recursive watcher of `root` and the channel of its notifications.
fn notifications(root: &Path) -> notify::Result<(notify::RecommendedWatcher, Events)> {
    let (tx, rx) = channel();
    let mut watcher = notify::recommended_watcher(tx)?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    Ok((watcher, rx))
}

/// Settings of the inbox watcher (`auditlake run` with a files source).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    /// Directory watched recursively for new files.
    pub path: PathBuf,
    /// A file is read once its size and modification time have not changed for this many
    /// seconds (so files still being copied are not read half-way); without notifications,
    /// also the time between scans.
    #[serde(default = "default_poll_secs")]
    pub poll_interval_secs: u64,
    /// Learn of new and changed files from file-system notifications (inotify, FSEvents, …)
    /// instead of scanning every `poll_interval_secs`. Off for file systems that do not send
    /// them for changes made elsewhere (NFS, SMB, some container bind mounts).
    #[serde(default = "default_notifications")]
    pub notifications: bool,
    /// With notifications: seconds between full scans of the inbox, a safety net for changes
    /// the notifications missed.
    #[serde(default = "default_rescan_secs")]
    pub rescan_interval_secs: u64,
}

impl InboxConfig {
    /// The defaults, watching `path`.
    pub fn new(path: PathBuf) -> Self {
        InboxConfig {
            path,
            poll_interval_secs: default_poll_secs(),
            notifications: default_notifications(),
            rescan_interval_secs: default_rescan_secs(),
        }
    }
}

fn default_poll_secs() -> u64 {
    2
}
fn default_notifications() -> bool {
    true
}
fn default_rescan_secs() -> u64 {
    60
}

/// Watches the inbox until `stop` is set: each new, settled file is read once (the lake's
/// journal is the checkpoint, so restarts do not re-read files). On stop, the file being read
/// is finished and everything pending is committed.
pub fn watch(
    config: &InboxConfig,
    batcher: &mut Batcher,
    ctx: &DecodeContext,
    stop: &AtomicBool,
) -> Result<(), FilesError> {
    std::fs::create_dir_all(&config.path).map_err(|source| FilesError::Io {
        path: config.path.clone(),
        source,
    })?;
    let mut inbox = Inbox::open(config, batcher.lake().root());
    tracing::info!(inbox = %config.path.display(), lake = %batcher.lake().root().display(), notifications = inbox.notified(), "watching inbox");
    let counters = Arc::new(ReadCounters::default());
    while !stop.load(Ordering::SeqCst) {
        for (path, sig) in inbox.ready(Duration::from_millis(100))? {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let input = InputFile {
                name: Arc::from(path.display().to_string()),
                path,
            };
            replay(std::slice::from_ref(&input), batcher, ctx, 1, &counters)?;
            if let Some(m) = batcher.metrics() {
                m.input_bytes.inc_by(sig.0);
            }
            inbox.read(input.path, sig);
            if batcher.is_due() {
                batcher.flush()?;
            }
        }
        if batcher.is_due() {
            batcher.flush()?;
        }
    }
    batcher.flush()?;
    tracing::info!("inbox watcher stopped; everything read is committed");
    Ok(())
}
