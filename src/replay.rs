//! `auditlake replay`: recorded log files (files, directory trees, stdin) into the lake, with
//! progress on the terminal and a summary at the end.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::batch::{Batcher, FlushPolicy, Stats};
use crate::normalize::NormalizeConfig;
use crate::normalize::unit::DecodeContext;
use crate::sink::keys::DedupConfig;
use crate::sink::s3::open_lake;
use crate::sink::{LakeConfig, LakeFormat};
use crate::sources::files;

/// Batch size of `replay` (see its `--max-mib`): 2 threads stay under 300 MB peak RSS.
pub const REPLAY_MAX_MIB: usize = 24;

/// `--threads`, or the number of CPUs; at most twice the number of CPUs (more only adds
/// threads that wait, each holding an opened file), with a warning saying so.
pub fn replay_threads(asked: Option<usize>) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let most = 2 * cpus;
    match asked {
        None => cpus,
        Some(n) if n > most => {
            eprintln!(
                "warning: --threads {n} is more than twice the {cpus} CPUs of this machine; \
                 using {most} threads"
            );
            most
        }
        Some(n) => n,
    }
}

pub fn replay(
    paths: &[PathBuf],
    out: &Path,
    threads: usize,
    normalize: &NormalizeConfig,
    flush: FlushPolicy,
    dedup: DedupConfig,
    format: LakeFormat,
) -> Result<Stats> {
    let ctx = DecodeContext::new(normalize, "replay").map_err(crate::errors::UsageError)?;
    let lake = open_lake(&LakeConfig {
        path: out.to_path_buf(),
        format,
        ..LakeConfig::default()
    })
    .with_context(|| format!("cannot open the lake at {}", out.display()))?;
    let spool = tempfile::tempdir().context("cannot create a temporary directory for stdin")?;
    let inputs = files::expand(paths, Some(out), spool.path())?;
    let mut batcher = Batcher::new(lake, flush).with_dedup(dedup);
    if threads > 1 {
        batcher = batcher.pipelined();
    }
    let started = Instant::now();
    let counters = Arc::new(files::ReadCounters::default());
    let progress = Progress::new(&inputs, counters.clone());
    let (done, ticks) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let progress = &progress;
        scope.spawn(move || progress.run(&ticks, started));
        let read = files::replay(&inputs, &mut batcher, &ctx, threads, &counters);
        drop(done);
        read
    })?;
    batcher.finish()?;
    let s = &batcher.stats;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay summary: {} files ({} already in the lake, skipped), {} events written, {} duplicates dropped, \
         {} digest records skipped, {} dead letters, {} asset changes, {} Parquet files committed, {:.2} s ({:.0} events/s)",
        s.units,
        s.units_already_in_lake,
        s.events_written,
        s.duplicates_dropped,
        s.digests_skipped,
        s.dead_letters,
        s.asset_changes_written,
        s.files_committed,
        secs,
        s.events_written as f64 / secs.max(1e-9)
    );
    if s.dead_letters > 0 {
        println!(
            "dead letters are in {}/dead_letters/ (reason, source, byte offset, raw text)",
            out.display()
        );
    }
    Ok(batcher.stats.clone())
}

/// Progress of a replay, as it reads: a bar on a terminal (bytes, events, and the time left
/// when the inputs' total size is known), plain `progress:` lines every 10 s otherwise
/// (`AUDITLAKE_PROGRESS_INTERVAL_MS` sets another interval).
struct Progress {
    counters: Arc<files::ReadCounters>,
    files: u64,
    /// The inputs' total size; `None` when one cannot be sized.
    total_bytes: Option<u64>,
    terminal: bool,
}

/// How often the bar is redrawn.
const BAR_TICK: Duration = Duration::from_millis(200);
/// How often a plain line is printed off a terminal, unless `AUDITLAKE_PROGRESS_INTERVAL_MS`
/// says otherwise.
const LINE_INTERVAL: Duration = Duration::from_secs(10);

impl Progress {
    fn new(inputs: &[files::InputFile], counters: Arc<files::ReadCounters>) -> Self {
        let total_bytes = inputs
            .iter()
            .map(|i| std::fs::metadata(&i.path).ok().map(|m| m.len()))
            .sum();
        Progress {
            counters,
            files: inputs.len() as u64,
            total_bytes,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Shows the progress until `done` is dropped.
    fn run(&self, done: &mpsc::Receiver<()>, started: Instant) {
        let bar = self.terminal.then(|| self.bar());
        let interval = match &bar {
            Some(_) => BAR_TICK,
            None => std::env::var("AUDITLAKE_PROGRESS_INTERVAL_MS")
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map_or(LINE_INTERVAL, Duration::from_millis),
        };
        while let Err(mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(interval) {
            let c = &self.counters;
            let (files, bytes, events) = (
                c.files.load(Ordering::Relaxed),
                c.bytes(),
                c.events.load(Ordering::Relaxed),
            );
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            let rate = events as f64 / secs;
            match &bar {
                Some(bar) => {
                    bar.set_position(bytes);
                    bar.set_message(format!(
                        "{files}/{} files, {events} events, {rate:.0} events/s",
                        self.files
                    ));
                }
                None => eprintln!("{}", self.line(files, bytes, events, secs)),
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }

    fn bar(&self) -> indicatif::ProgressBar {
        let (bar, template) = match self.total_bytes {
            Some(total) => (
                indicatif::ProgressBar::new(total),
                "{bar:30} {bytes}/{total_bytes} {msg}, {eta} left",
            ),
            None => (
                indicatif::ProgressBar::no_length(),
                "{spinner} {bytes} read, {msg}",
            ),
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar
    }

    /// A plain progress line: files, bytes (of the total, with the time left), events.
    fn line(&self, files: u64, bytes: u64, events: u64, secs: f64) -> String {
        use indicatif::{HumanBytes, HumanDuration};
        let read = match self.total_bytes {
            Some(total) if total > 0 => {
                let left = (bytes > 0 && bytes < total).then(|| {
                    let secs = secs * (total - bytes) as f64 / bytes as f64;
                    format!(
                        ", about {} left",
                        HumanDuration(Duration::from_secs_f64(secs))
                    )
                });
                format!(
                    "{} of {} read ({:.0} %){}",
                    HumanBytes(bytes),
                    HumanBytes(total),
                    bytes as f64 * 100.0 / total as f64,
                    left.unwrap_or_default()
                )
            }
            _ => format!("{} read", HumanBytes(bytes)),
        };
        format!(
            "progress: {files}/{} files, {read}, {events} events read, {:.0} events/s",
            self.files,
            events as f64 / secs
        )
    }
}
