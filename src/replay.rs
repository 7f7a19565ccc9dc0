//! `auditlake replay`: recorded log files (files, directory trees, stdin) into the lake, with
//! progress on the terminal and a summary at the end.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::batch::{Batcher, FlushPolicy, Stats};
use crate::normalize::NormalizeConfig;
use crate::normalize::unit::DecodeContext;
use crate::sink::keys::DedupConfig;
use crate::sink::lake::LocalLake;
use crate::sink::parquet::ParquetOptions;
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
) -> Result<Stats> {
    let ctx = DecodeContext::new(normalize, "replay").map_err(crate::errors::UsageError)?;
    let lake = LocalLake::open(out, ParquetOptions::default())
        .with_context(|| format!("cannot open the lake at {}", out.display()))?;
    let spool = tempfile::tempdir().context("cannot create a temporary directory for stdin")?;
    let inputs = files::expand(paths, Some(out), spool.path())?;
    let mut batcher = Batcher::new(lake, flush).with_dedup(dedup);
    if threads > 1 {
        batcher = batcher.pipelined();
    }
    let started = Instant::now();
    let progress = Progress::new(inputs.len() as u64);
    files::replay(&inputs, &mut batcher, &ctx, threads, &mut |b| {
        progress.update(&b.stats, started)
    })?;
    batcher.finish()?;
    progress.finish();
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

/// A progress bar on a terminal, plain lines every 10 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: std::cell::Cell<Instant>,
    total: u64,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg}")
            {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            last_line: std::cell::Cell::new(Instant::now()),
            total,
        }
    }

    fn update(&self, s: &Stats, started: Instant) {
        let rate = s.events_written as f64 / started.elapsed().as_secs_f64().max(1e-9);
        match &self.bar {
            Some(bar) => {
                bar.set_position(s.units);
                bar.set_message(format!(
                    "{} events committed, {rate:.0} events/s",
                    s.events_written
                ));
            }
            None if self.last_line.get().elapsed().as_secs() >= 10 => {
                self.last_line.set(Instant::now());
                eprintln!(
                    "progress: {}/{} files, {} events committed, {rate:.0} events/s",
                    s.units, self.total, s.events_written
                );
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
