//! The files source: replays files and directory trees (as copied from a trail bucket) or
//! stdin; the inbox daemon ([`super::inbox`]) reads its files with the same functions. A file
//! is one input unit, identified by a hash of its content, so a copy under another name is not
//! ingested twice.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use crate::batch::{Batcher, UnitStart};
use crate::decode::{self, Content, Input};
use crate::event::now_ms;
use crate::normalize::Stamp;
use crate::normalize::unit::{DecodeContext, Item, decode_content};
use crate::sink::SinkError;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("input {path} does not exist")]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// One file to read; `name` is what rows record as their origin.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub name: Arc<str>,
}

/// Expands paths into the files to read, in a stable order: files as given, directories
/// recursively (sorted, hidden entries and `exclude` skipped). `-` (stdin) and any other input
/// that is not a regular file (a pipe such as `<(gunzip -c f.gz)`, a device) cannot be sized
/// or read twice: it is spooled to a temporary file in `spool_dir` as it is read, so it is
/// hashed and read like any file and memory does not grow with it.
pub fn expand(
    paths: &[PathBuf],
    exclude: Option<&Path>,
    spool_dir: &Path,
) -> Result<Vec<InputFile>, FilesError> {
    expand_tree(paths, exclude, spool_dir, &mut Tree::default())
}

/// [`expand`], walking directories with `tree`.
pub(crate) fn expand_tree(
    paths: &[PathBuf],
    exclude: Option<&Path>,
    spool_dir: &Path,
    tree: &mut Tree,
) -> Result<Vec<InputFile>, FilesError> {
    let exclude = exclude.and_then(|p| p.canonicalize().ok());
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let spooled = spool(&mut io::stdin().lock(), spool_dir, out.len(), path)?;
            out.push(InputFile {
                path: spooled,
                name: Arc::from("stdin"),
            });
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => FilesError::Missing { path: path.clone() },
            _ => FilesError::Io {
                path: path.clone(),
                source,
            },
        })?;
        if meta.is_dir() {
            tree.walk(path, exclude.as_deref(), &mut out)?;
        } else {
            let name = Arc::from(path.display().to_string());
            let path = if meta.is_file() {
                path.clone()
            } else {
                let mut f = File::open(path).map_err(|source| FilesError::Io {
                    path: path.clone(),
                    source,
                })?;
                spool(&mut f, spool_dir, out.len(), path)?
            };
            out.push(InputFile { path, name });
        }
    }
    Ok(out)
}

/// Copies `input` (read as `given`) into a new file in `spool_dir`; returns its path.
fn spool(
    input: &mut impl Read,
    spool_dir: &Path,
    n: usize,
    given: &Path,
) -> Result<PathBuf, FilesError> {
    let spooled = spool_dir.join(format!(".input-{}-{n}.spool", std::process::id()));
    let mut f = File::create(&spooled).map_err(|source| FilesError::Io {
        path: spooled.clone(),
        source,
    })?;
    io::copy(input, &mut f).map_err(|source| FilesError::Io {
        path: given.to_path_buf(),
        source,
    })?;
    Ok(spooled)
}

/// A walk of directory trees that follows symbolic links to directories, each directory at
/// most once: a link back up the tree (a loop), or to a directory already read, is not
/// followed, and said once in a warning (once per `Tree`: the inbox keeps one across scans).
#[derive(Default)]
pub(crate) struct Tree {
    /// Links already warned about.
    reported: std::collections::HashSet<PathBuf>,
}

/// A directory's identity: (device, inode).
fn dir_key(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// One walk of a [`Tree`].
struct Walk<'a> {
    tree: &'a mut Tree,
    exclude: Option<&'a Path>,
    /// Directories walked so far, and those being walked (the current path from the root).
    visited: std::collections::HashSet<(u64, u64)>,
    ancestors: Vec<(u64, u64)>,
    out: &'a mut Vec<InputFile>,
}

impl Tree {
    /// Adds the files under `dir` to `out`, sorted by name.
    pub(crate) fn walk(
        &mut self,
        dir: &Path,
        exclude: Option<&Path>,
        out: &mut Vec<InputFile>,
    ) -> Result<(), FilesError> {
        Walk {
            tree: self,
            exclude,
            visited: Default::default(),
            ancestors: Vec::new(),
            out,
        }
        .dir(dir)
    }
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path) -> Result<(), FilesError> {
        if self
            .exclude
            .is_some_and(|ex| dir.canonicalize().is_ok_and(|d| d == ex))
        {
            return Ok(());
        }
        let io_err = |source| FilesError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let key = dir_key(&std::fs::metadata(dir).map_err(io_err)?);
        if !self.visited.insert(key) {
            if self.tree.reported.insert(dir.to_path_buf()) {
                let target = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
                if self.ancestors.contains(&key) {
                    tracing::warn!(link = %dir.display(), target = %target.display(), "symbolic link loop: the link leads back to a directory it is in; not followed");
                } else {
                    tracing::warn!(link = %dir.display(), target = %target.display(), "directory already read by another path (a symbolic link); not read again");
                }
            }
            return Ok(());
        }
        self.ancestors.push(key);
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io_err)?
            .collect::<Result<_, _>>()
            .map_err(io_err)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let mut kind = entry.file_type().map_err(io_err)?;
            if kind.is_symlink() {
                // Followed; a dangling link is passed over, as before.
                match std::fs::metadata(&path) {
                    Ok(target) => kind = target.file_type(),
                    Err(_) => continue,
                }
            }
            if kind.is_dir() {
                self.dir(&path)?;
            } else if kind.is_file() {
                self.out.push(InputFile {
                    name: Arc::from(path.display().to_string()),
                    path,
                });
            }
        }
        self.ancestors.pop();
        Ok(())
    }
}

/// How far a replay has read, for its progress display; updated as files are parsed.
#[derive(Debug, Default)]
pub struct ReadCounters {
    /// Files parsed.
    pub files: AtomicU64,
    /// Bytes of the files parsed.
    done_bytes: AtomicU64,
    /// Bytes read of the file being parsed, when it is streamed (over [`READ_ONCE_UP_TO`]);
    /// one read in memory counts when it is parsed.
    current_bytes: AtomicU64,
    /// Events read (before deduplication).
    pub events: AtomicU64,
}

impl ReadCounters {
    /// Bytes of input read so far.
    pub fn bytes(&self) -> u64 {
        self.done_bytes.load(Ordering::Relaxed) + self.current_bytes.load(Ordering::Relaxed)
    }

    fn file_done(&self, bytes: u64) {
        self.current_bytes.store(0, Ordering::Relaxed);
        self.done_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.files.fetch_add(1, Ordering::Relaxed);
    }
}

/// A file being streamed, counting the bytes read from it into [`ReadCounters`] (one atomic
/// add per read of the decoder's 128 KiB buffer).
struct Counting {
    file: File,
    counters: Arc<ReadCounters>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.counters
            .current_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Events are added to [`ReadCounters::events`] in steps of this many.
const EVENTS_STEP: u64 = 1024;

/// The unit id of a file: a hash of its bytes (XXH3-128; the one-shot and streaming digests
/// agree, so a file gets the same id whichever way it was read).
fn unit_id(digest: u128) -> String {
    format!("file:{digest:032x}")
}

/// The unit id of a file, read in a streaming pass.
fn unit_id_streaming(f: &mut File) -> io::Result<String> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(unit_id(h.digest128()))
}

/// Files up to this size are read once: hashed, then decoded from memory (and decompressed
/// whole when they decompress to at most [`crate::decode::WHOLE_UP_TO`]). Larger ones are
/// read twice, streaming (memory must not grow with file size). Reading the bench corpus
/// twice cost ~5 % of a replay.
const READ_ONCE_UP_TO: u64 = 8 << 20;

/// Opens a file as a unit: its id, its size and its bytes (whole, or a reader of them).
fn open_unit(path: &Path, counters: &Arc<ReadCounters>) -> io::Result<(String, u64, Input)> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len <= READ_ONCE_UP_TO {
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0) + 1);
        f.read_to_end(&mut bytes)?;
        let id = unit_id(xxhash_rust::xxh3::xxh3_128(&bytes));
        return Ok((id, len, Input::Whole(bytes)));
    }
    let id = unit_id_streaming(&mut f)?;
    f.seek(io::SeekFrom::Start(0))?;
    let counting = Counting {
        file: f,
        counters: counters.clone(),
    };
    Ok((id, len, Input::Stream(Box::new(counting))))
}

/// A file opened as a unit: its id and its content (read, hashed and, when held whole,
/// decompressed), or why it could not be read.
enum Opened {
    Unit {
        id: String,
        /// The file's size.
        bytes: u64,
        content: io::Result<Content>,
    },
    Unreadable(io::Error),
}

fn open_file(input: &InputFile, ctx: &DecodeContext, counters: &Arc<ReadCounters>) -> Opened {
    match open_unit(&input.path, counters) {
        Ok((id, bytes, file)) => Opened::Unit {
            id,
            bytes,
            content: decode::open(file, ctx.limits),
        },
        Err(e) => Opened::Unreadable(e),
    }
}

/// Decodes one opened file into the batcher, each item as soon as it is read, borrowing from
/// the decoder's buffer: nothing is copied but into the batch's columns.
fn consume(
    input: &InputFile,
    opened: Opened,
    batcher: &mut Batcher,
    ctx: &DecodeContext,
    counters: &ReadCounters,
) -> Result<(), SinkError> {
    let stamp = Stamp {
        source: input.name.clone(),
        partition: None,
        ingest_time_ms: now_ms(),
    };
    // Unreadable input is a dead letter of its own, keyed by path.
    let (id, bytes, content) = match opened {
        Opened::Unit { id, bytes, content } => (id, Some(bytes), Ok(content)),
        Opened::Unreadable(e) => (format!("unreadable:{}", input.name), None, Err(e)),
    };
    if batcher.begin_named_unit(&id, &input.name, bytes) == UnitStart::AlreadyInLake {
        counters.file_done(bytes.unwrap_or(0));
        return Ok(());
    }
    match content {
        Ok(content) => {
            let mut result = Ok(());
            let mut events = 0u64;
            decode_content(content, ctx, &stamp, &mut |position, item| {
                if matches!(item, Item::Event(_)) {
                    events += 1;
                    if events.is_multiple_of(EVENTS_STEP) {
                        counters.events.fetch_add(EVENTS_STEP, Ordering::Relaxed);
                    }
                }
                match batcher.push(&id, position, item) {
                    Ok(_) => ControlFlow::Continue(()),
                    Err(e) => {
                        result = Err(e);
                        ControlFlow::Break(())
                    }
                }
            });
            counters
                .events
                .fetch_add(events % EVENTS_STEP, Ordering::Relaxed);
            result?;
        }
        Err(e) => {
            let dead = crate::event::DeadLetter::new(
                ctx.pipeline.clone(),
                stamp.origin(0),
                format!("cannot read file: {e}"),
                &[],
                0,
                stamp.ingest_time_ms,
            );
            batcher.push(&id, 0, Item::Dead(dead))?;
        }
    }
    batcher.end_unit(&id);
    counters.file_done(bytes.unwrap_or(0));
    Ok(())
}

/// Reads `inputs` in order into the batcher. With `threads` > 1, `threads - 1` helper threads
/// read, hash and decompress the next files while this thread parses them into the batch
/// (and, with a pipelined batcher, another thread encodes the previous batch): events are then
/// made and batched exactly as with one thread, borrowing from the file's buffer, so they are
/// never copied into owned rows or freed across threads. The batcher receives files in input
/// order, so batches (and file names) are the same whatever the thread count. Memory stays
/// bounded: each helper holds at most one opened file ahead (content over
/// [`crate::decode::WHOLE_UP_TO`] is a stream, decompressed as it is parsed). `counters`
/// follow the reading as it goes.
pub fn replay(
    inputs: &[InputFile],
    batcher: &mut Batcher,
    ctx: &DecodeContext,
    threads: usize,
    counters: &Arc<ReadCounters>,
) -> Result<(), SinkError> {
    if threads <= 1 {
        for input in inputs {
            consume(
                input,
                open_file(input, ctx, counters),
                batcher,
                ctx,
                counters,
            )?;
        }
        return Ok(());
    }
    let helpers = threads - 1;
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = sync_channel::<(&InputFile, SyncSender<Opened>)>(helpers);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (order_tx, order_rx) = sync_channel::<(&InputFile, Receiver<Opened>)>(helpers);
        scope.spawn(move || {
            for input in inputs {
                let (tx, rx) = sync_channel(1);
                if order_tx.send((input, rx)).is_err() || job_tx.send((input, tx)).is_err() {
                    return;
                }
            }
        });
        for _ in 0..helpers {
            let job_rx = job_rx.clone();
            scope.spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((input, tx)) = job else { return };
                    if tx.send(open_file(input, ctx, counters)).is_err() {
                        return;
                    }
                }
            });
        }
        for (input, rx) in order_rx {
            // A helper that died (it cannot, short of a panic) leaves the file to this thread.
            let opened = rx
                .recv()
                .unwrap_or_else(|_| open_file(input, ctx, counters));
            consume(input, opened, batcher, ctx, counters)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small files are hashed in memory, large ones streaming: both give the id the journal
    /// already knows them by, and the bytes that are decoded are the file's.
    #[test]
    fn open_unit_gives_the_streaming_id_and_the_whole_file() {
        let dir = std::env::temp_dir().join(format!("auditlake-open-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, len) in [
            ("small", 1000usize),
            ("large", (READ_ONCE_UP_TO + 4097) as usize),
        ] {
            let path = dir.join(name);
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            std::fs::write(&path, &bytes).unwrap();
            let (id, _, input) = open_unit(&path, &Arc::default()).unwrap();
            let streamed = unit_id_streaming(&mut File::open(&path).unwrap()).unwrap();
            assert_eq!(id, streamed, "{name}");
            assert_eq!(matches!(input, Input::Whole(_)), name == "small", "{name}");
            let read = match input {
                Input::Whole(bytes) => bytes,
                Input::Stream(mut reader) => {
                    let mut read = Vec::new();
                    reader.read_to_end(&mut read).unwrap();
                    read
                }
            };
            assert!(read == bytes, "{name}: the reader gave other bytes");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A pipe is spooled like stdin: a regular file with its bytes, named as given (before,
    /// it was read whole into memory, however large).
    #[test]
    fn a_pipe_is_spooled_like_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let (fifo, bytes) = (fifo.clone(), bytes.clone());
            std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
        };
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let inputs = expand(std::slice::from_ref(&fifo), None, &spool).unwrap();
        assert_eq!(inputs.len(), 1);
        assert_eq!(&*inputs[0].name, fifo.display().to_string());
        // (Not spooled, the writer would wait for a reader: no join before this.)
        assert!(inputs[0].path.starts_with(&spool), "{:?}", inputs[0].path);
        writer.join().unwrap();
        assert!(std::fs::metadata(&inputs[0].path).unwrap().is_file());
        assert!(std::fs::read(&inputs[0].path).unwrap() == bytes);
    }
}
