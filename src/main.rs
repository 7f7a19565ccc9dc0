//! The `auditlake` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use auditlake::config::{PipelineConfig, SourceConfig};
use auditlake::decode::DecodeLimits;
use auditlake::normalize::{NormalizeConfig, Normalizer};
use auditlake::pipeline::{Batcher, DecodeContext, FlushPolicy, Stats};
use auditlake::schema;
use auditlake::sink::lake::LocalLake;
use auditlake::sink::parquet::ParquetOptions;
use auditlake::sources::files::{self, FilesError};
use auditlake::sources::kafka::{KafkaError, KafkaSource};
use auditlake::sources::sqs_s3;
use auditlake::sync;

#[derive(Parser)]
#[command(
    name = "auditlake",
    version,
    about = "Multi-cloud audit logs into an analytics-ready CIEM Parquet lake"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read recorded log files (files, directory trees, or - for stdin) into the lake.
    Replay {
        /// Files or directories to read; `-` reads stdin.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Lake directory.
        #[arg(long, default_value = "./lake")]
        out: PathBuf,
        /// Decoding threads (default: the number of CPUs).
        #[arg(long)]
        threads: Option<usize>,
        /// Exit with status 3 if any input went to the dead-letter output.
        #[arg(long)]
        fail_on_dead_letter: bool,
        /// UTC offset assumed for zoneless Tencent times.
        #[arg(long, default_value = "+08:00")]
        tencent_zoneless_time_offset: String,
        /// Rows per batch (one Parquet file per partition per batch).
        #[arg(long, default_value_t = FlushPolicy::default().max_rows)]
        max_rows: usize,
    },
    /// Print the CIEM event schema (JSON, or the Markdown document with --markdown).
    Schema {
        #[arg(long)]
        markdown: bool,
        /// Print the dead-letter schema instead.
        #[arg(long)]
        dead_letters: bool,
        /// Print this table's schema: ciem_events, dead_letters, asset_changes, asset_inventory.
        #[arg(long, conflicts_with = "dead_letters")]
        table: Option<String>,
        /// Print the DDL of every dataset instead: DuckDB views or Athena/Glue tables
        /// (schemas/duckdb_views.sql, schemas/athena.sql).
        #[arg(long, value_enum, conflicts_with_all = ["markdown", "dead_letters", "table"])]
        ddl: Option<Ddl>,
        /// With --ddl athena: the lake root on S3.
        #[arg(long, requires = "ddl", default_value = "s3://<bucket>/<prefix>")]
        location: String,
    },
    /// Sync the cloud accounts of an accounts file: AccessKey check, regions, hosts and cloud
    /// products into asset_inventory, and their changes into asset_changes.
    Sync {
        #[arg(long, default_value = "pipelines/accounts.toml")]
        config: PathBuf,
        /// One run of every account (every enabled feature), then exit; without it, run each
        /// task at its interval until stopped.
        #[arg(long)]
        once: bool,
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
    },
    /// Cloud account tools.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Check config files (pipeline or accounts files; a directory means every *.toml in it)
    /// without touching any cloud or broker. Exit status 2 when any file has a problem.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run the daemon. Without --config: watch ./inbox and write ./lake.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Ddl {
    Duckdb,
    Athena,
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Call every API the enabled features need and print which succeed and which lack
    /// permission, with the policy to grant.
    Check {
        #[arg(long, default_value = "pipelines/accounts.toml")]
        config: PathBuf,
        #[arg(long)]
        account: Option<String>,
    },
}

/// Exit statuses: 0 done (dead letters are reported, not failures), 1 runtime failure (e.g.
/// output could not be written), 2 usage or configuration error, 3 dead letters with
/// --fail-on-dead-letter.
const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_DEAD_LETTERS: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(
        cli.command,
        Command::Run { .. } | Command::Sync { once: false, .. }
    ));
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let usage = e.chain().any(|c| {
                c.downcast_ref::<auditlake::config::ConfigError>().is_some()
                    || matches!(
                        c.downcast_ref::<FilesError>(),
                        Some(FilesError::Missing { .. })
                    )
                    || c.downcast_ref::<UsageError>().is_some()
                    || matches!(
                        c.downcast_ref::<KafkaError>(),
                        Some(KafkaError::Config(_) | KafkaError::SecretFile { .. })
                    )
                    || matches!(
                        c.downcast_ref::<sqs_s3::SqsS3Error>(),
                        Some(sqs_s3::SqsS3Error::Config(_))
                    )
            });
            ExitCode::from(if usage { EXIT_USAGE } else { EXIT_RUNTIME })
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn init_logging(daemon: bool) {
    let default = if daemon { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Schema {
            markdown,
            dead_letters,
            table,
            ddl,
            location,
        } => {
            match ddl {
                Some(Ddl::Duckdb) => {
                    print!("{}", schema::duckdb_views());
                    return Ok(ExitCode::SUCCESS);
                }
                Some(Ddl::Athena) => {
                    print!("{}", schema::athena_ddl(&location));
                    return Ok(ExitCode::SUCCESS);
                }
                None => {}
            }
            let name = match (&table, dead_letters) {
                (Some(t), _) => t.as_str(),
                (None, true) => "dead_letters",
                (None, false) => "ciem_events",
            };
            let (spec, json) =
                schema::table(name).ok_or_else(|| UsageError(format!("unknown table {name:?}")))?;
            if markdown {
                print!("{}", spec.to_markdown());
            } else {
                print!("{json}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            paths,
            out,
            threads,
            fail_on_dead_letter,
            tencent_zoneless_time_offset,
            max_rows,
        } => {
            let normalize = NormalizeConfig {
                tencent_zoneless_time_offset,
            };
            let flush = FlushPolicy {
                max_rows: max_rows.max(1),
                ..FlushPolicy::default()
            };
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let stats = replay(&paths, &out, threads, &normalize, flush)?;
            Ok(if fail_on_dead_letter && stats.dead_letters > 0 {
                ExitCode::from(EXIT_DEAD_LETTERS)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Sync {
            config,
            once,
            account,
        } => Ok(ExitCode::from(sync::cli::sync(
            &config,
            once,
            account.as_deref(),
        )?)),
        Command::Accounts {
            command: AccountsCommand::Check { config, account },
        } => Ok(ExitCode::from(sync::cli::accounts_check(
            &config,
            account.as_deref(),
        )?)),
        Command::Validate { paths } => {
            let files = auditlake::validate::expand(&paths)?;
            if files.is_empty() {
                return Err(UsageError("no .toml files found in the given paths".into()).into());
            }
            let env = |name: &str| std::env::var(name).ok();
            let mut failed = 0;
            for file in &files {
                let report = auditlake::validate::validate_file(file, &env);
                match (&report.summary, report.ok()) {
                    (Some(summary), true) => println!("{}: ok ({summary})", file.display()),
                    (summary, _) => {
                        failed += 1;
                        let what = summary
                            .as_deref()
                            .map(|s| format!(" ({s})"))
                            .unwrap_or_default();
                        println!(
                            "{}: {} problem(s){what}",
                            file.display(),
                            report.problems.len()
                        );
                        for p in &report.problems {
                            for (i, line) in p.lines().enumerate() {
                                println!("{}{line}", if i == 0 { "  - " } else { "    " });
                            }
                        }
                    }
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_USAGE)
            })
        }
        Command::Run { config } => {
            let cfg = match &config {
                Some(path) => PipelineConfig::load(path)?,
                None => PipelineConfig::default_inbox(),
            };
            run(cfg)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn decode_context(normalize: &NormalizeConfig, pipeline: &str) -> Result<DecodeContext> {
    let normalizer = Normalizer::new(normalize).map_err(UsageError)?;
    Ok(DecodeContext {
        normalizer,
        limits: DecodeLimits::default(),
        pipeline: Arc::from(pipeline),
    })
}

fn replay(
    paths: &[PathBuf],
    out: &std::path::Path,
    threads: usize,
    normalize: &NormalizeConfig,
    flush: FlushPolicy,
) -> Result<Stats> {
    let ctx = decode_context(normalize, "replay")?;
    let lake = LocalLake::open(out, ParquetOptions::default())
        .with_context(|| format!("cannot open the lake at {}", out.display()))?;
    let spool = tempfile::tempdir().context("cannot create a temporary directory for stdin")?;
    let inputs = files::expand(paths, Some(out), spool.path())?;
    let mut batcher = Batcher::new(lake, flush);
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

fn run(cfg: PipelineConfig) -> Result<()> {
    let ctx = decode_context(&cfg.normalize, &cfg.name)?;
    let lake = auditlake::sink::s3::open_lake(&cfg.sink)
        .with_context(|| format!("cannot open the lake at {}", cfg.sink.path.display()))?;
    let mut batcher = Batcher::new(lake, cfg.flush);
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signal_stop = stop.clone();
    std::thread::spawn(move || {
        runtime.block_on(async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            tracing::info!("shutdown requested: finishing the current file and committing");
            signal_stop.store(true, Ordering::SeqCst);
        });
    });
    let account_sync = match &cfg.accounts {
        Some(path) => Some(sync::cli::spawn_account_sync(
            path,
            &cfg.sink.path,
            stop.clone(),
        )?),
        None => None,
    };
    let stats = match &cfg.source {
        SourceConfig::Files(inbox) => {
            files::watch(inbox, &mut batcher, &ctx, &stop)?;
            batcher.stats
        }
        SourceConfig::Kafka(kafka) => KafkaSource::new(kafka, batcher)?.run(&ctx, &stop)?,
        SourceConfig::SqsS3(source) => {
            sqs_s3::run(source, &mut batcher, &ctx, &stop)?;
            batcher.stats
        }
    };
    if let Some(handle) = account_sync {
        let _ = handle.join();
    }
    let s = &stats;
    tracing::info!(
        files = s.units,
        events = s.events_written,
        dead_letters = s.dead_letters,
        "stopped"
    );
    Ok(())
}

// mimalloc: rows are allocated on decoding threads and freed on the writer thread, which
// glibc's allocator handles poorly (measured in the README's performance section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
