//! The `auditlake` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use auditlake::config::{ConfigError, PipelineConfig, SourceConfig};
use auditlake::decode::DecodeLimits;
use auditlake::memory::{self, MemoryBudget};
use auditlake::metrics::{self, PipelineMetrics, Registry};
use auditlake::normalize::{NormalizeConfig, Normalizer};
use auditlake::pipeline::{Batcher, DecodeContext, FlushPolicy, Stats};
use auditlake::schema;
use auditlake::sink::keys::{DedupConfig, Horizon};
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
        /// Threads (default: the number of CPUs; at most twice that, a larger N is lowered with a
        /// warning). 1: one thread reads, parses and writes. N > 1: N - 1 threads read and
        /// decompress the next files while one parses them into the batch, and the previous
        /// batch is encoded to Parquet in the background.
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
        /// In-memory size of a batch (its column data), in MiB. With several threads one batch is
        /// written while the next fills, so two are in memory: the default keeps peak RSS
        /// under 300 MB with 2 threads (the daemon's default is 32).
        #[arg(long, default_value_t = REPLAY_MAX_MIB)]
        max_mib: usize,
        /// Events whose time is within this distance of now are never written twice to the
        /// lake, whatever the restarts (their keys are committed with them): `off`, or e.g.
        /// `48h`, `7d`. Older events are deduplicated within this replay only.
        #[arg(long, default_value = "48h", value_parser = Horizon::parse)]
        dedup_horizon: Horizon,
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
        /// The memory bound `run` would get: checked against the number of pipeline files.
        #[arg(long, env = "AUDITLAKE_MEMORY_LIMIT_MIB", default_value_t = memory::DEFAULT_LIMIT_MIB)]
        memory_limit_mib: u64,
    },
    /// Run the daemon. Without --config: watch ./inbox and write ./lake. With a directory: run
    /// every pipeline file in it (accounts files are skipped), each restarted with backoff when
    /// it fails.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464).
        #[arg(long, env = "AUDITLAKE_METRICS_LISTEN")]
        metrics_listen: Option<String>,
        /// Memory bound of the process, in MiB, shared by all its pipelines: batch sizes,
        /// deduplication windows and queue depths are derived from it (see the README).
        #[arg(long, env = "AUDITLAKE_MEMORY_LIMIT_MIB", default_value_t = memory::DEFAULT_LIMIT_MIB)]
        memory_limit_mib: u64,
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
/// Batch size of `replay` (see its `--max-mib`): 2 threads stay under 300 MB peak RSS.
const REPLAY_MAX_MIB: usize = 24;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(
        cli.command,
        Command::Run { .. } | Command::Sync { once: false, .. }
    ));
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
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

/// An error and its causes, `: `-separated, leaving out a cause whose text the message before
/// it already ends with (errors that put their source in their own message, as most of ours
/// do, would otherwise print it twice: "…: Permission denied (os error 13): Permission denied
/// (os error 13)").
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

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
            max_mib,
            dedup_horizon,
        } => {
            let normalize = NormalizeConfig {
                tencent_zoneless_time_offset,
            };
            let flush = FlushPolicy {
                max_rows: max_rows.max(1),
                max_mib: max_mib.max(1),
                ..FlushPolicy::default()
            };
            let threads = replay_threads(threads);
            let dedup = DedupConfig {
                horizon: dedup_horizon,
            };
            let stats = replay(&paths, &out, threads, &normalize, flush, dedup)?;
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
        Command::Validate {
            paths,
            memory_limit_mib,
        } => {
            let files = auditlake::validate::expand(&paths)?;
            if files.is_empty() {
                return Err(UsageError("no .toml files found in the given paths".into()).into());
            }
            let env = |name: &str| std::env::var(name).ok();
            let mut failed = 0;
            let mut pipelines = 0;
            for file in &files {
                let report = auditlake::validate::validate_file(file, &env);
                pipelines += usize::from(report.is_pipeline());
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
            if pipelines > 0 {
                match memory::plan(memory_limit_mib, pipelines) {
                    Ok(plan) => println!(
                        "memory limit: ok ({memory_limit_mib} MiB for {pipelines} pipeline(s): {} MiB each, a batch budget of {} MiB each)",
                        plan.share_bytes >> 20,
                        plan.batch_bytes >> 20
                    ),
                    Err(e) => {
                        failed += 1;
                        println!("memory limit: 1 problem(s)\n  - {e}");
                    }
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_USAGE)
            })
        }
        Command::Run {
            config,
            metrics_listen,
            memory_limit_mib,
        } => {
            run(
                config.as_deref(),
                metrics_listen.as_deref(),
                memory_limit_mib,
            )?;
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

/// `--threads`, or the number of CPUs; at most twice the number of CPUs (more only adds
/// threads that wait, each holding an opened file), with a warning saying so.
fn replay_threads(asked: Option<usize>) -> usize {
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

fn replay(
    paths: &[PathBuf],
    out: &std::path::Path,
    threads: usize,
    normalize: &NormalizeConfig,
    flush: FlushPolicy,
    dedup: DedupConfig,
) -> Result<Stats> {
    let ctx = decode_context(normalize, "replay")?;
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

/// The pipelines `--config` names: one file (run as before: a failure stops the process), or a
/// directory of pipeline files (each supervised and restarted with backoff).
fn load_pipelines(config: Option<&Path>) -> Result<(Vec<(PathBuf, PipelineConfig)>, bool)> {
    let Some(path) = config else {
        return Ok((
            vec![(PathBuf::from("(default)"), PipelineConfig::default_inbox())],
            false,
        ));
    };
    if !path.is_dir() {
        return Ok((
            vec![(path.to_path_buf(), PipelineConfig::load(path)?)],
            false,
        ));
    }
    let invalid = |file: &Path, message: String| ConfigError::Invalid {
        path: file.to_path_buf(),
        message,
    };
    let files = auditlake::validate::expand(&[path.to_path_buf()])?;
    let mut pipelines: Vec<(PathBuf, PipelineConfig)> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
            path: file.clone(),
            reason: source,
        })?;
        if auditlake::validate::is_accounts_file(&text) {
            continue;
        }
        let cfg = PipelineConfig::parse(&text, &file)?;
        let lake = lake_key(&cfg.sink.path);
        for (other_file, other) in &pipelines {
            if other.name == cfg.name {
                return Err(invalid(
                    &file,
                    format!(
                        "pipeline name {:?} is also used by {}; give each pipeline its own `name` (metrics, logs and dead letters use it)",
                        cfg.name,
                        other_file.display()
                    ),
                )
                .into());
            }
            if lake_key(&other.sink.path) == lake {
                return Err(invalid(
                    &file,
                    format!(
                        "sink.path {} is also the lake of pipeline {:?} ({}); two pipelines of one process cannot share a lake: give each its own sink.path",
                        cfg.sink.path.display(),
                        other.name,
                        other_file.display()
                    ),
                )
                .into());
            }
        }
        pipelines.push((file, cfg));
    }
    if pipelines.is_empty() {
        return Err(invalid(path, "no pipeline *.toml file in this directory".into()).into());
    }
    Ok((pipelines, true))
}

/// A lake path made absolute and free of `.`/`..`, to compare two pipelines' lakes.
fn lake_key(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn source_kind(source: &SourceConfig) -> &'static str {
    match source {
        SourceConfig::Files(_) => "files",
        SourceConfig::Kafka(_) => "kafka",
        SourceConfig::SqsS3(_) => "sqs_s3",
    }
}

/// Sets `stop` on SIGTERM or Ctrl-C.
fn on_shutdown(stop: Arc<AtomicBool>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
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
            stop.store(true, Ordering::SeqCst);
        });
    });
    Ok(())
}

fn run(config: Option<&Path>, metrics_listen: Option<&str>, memory_limit_mib: u64) -> Result<()> {
    let (pipelines, supervised) = load_pipelines(config)?;
    let plan = memory::plan(memory_limit_mib, pipelines.len()).map_err(UsageError)?;
    tracing::info!(
        limit_mib = memory_limit_mib,
        pipelines = plan.pipelines,
        share_mib = plan.share_bytes >> 20,
        batch_mib = plan.batch_bytes >> 20,
        dedup_keys = plan.dedup_keys,
        key_index_mib = plan.key_index_bytes >> 20,
        queue_mib = plan.queue_bytes >> 20,
        "memory budget"
    );
    let budget = MemoryBudget::new(plan);
    let registry = Arc::new(Registry::default());
    registry.set_memory(budget.clone());
    let stop = Arc::new(AtomicBool::new(false));
    on_shutdown(stop.clone())?;
    let pipelines: Vec<_> = pipelines
        .into_iter()
        .map(|(_, cfg)| {
            let m = registry.pipeline(&cfg.name, source_kind(&cfg.source));
            (cfg, m)
        })
        .collect();
    if let Some(addr) = metrics_listen {
        let local = metrics::serve(addr, registry.clone())
            .map_err(|e| UsageError(format!("cannot serve metrics on {addr}: {e}")))?;
        tracing::info!(address = %local, "serving /metrics, /healthz and /readyz");
    }
    let mut account_syncs = Vec::new();
    for (cfg, _) in &pipelines {
        if let Some(path) = &cfg.accounts {
            account_syncs.push(sync::cli::spawn_account_sync(
                path,
                &cfg.sink.path,
                stop.clone(),
                registry.account_sync(),
            )?);
        }
    }
    let result = if supervised {
        let threads: Vec<_> = pipelines
            .into_iter()
            .map(|(cfg, m)| {
                let stop = stop.clone();
                let budget = budget.clone();
                std::thread::Builder::new()
                    .name(format!("pipeline-{}", cfg.name))
                    .spawn(move || supervise(&cfg, &m, &stop, &budget))
            })
            .collect::<std::io::Result<_>>()?;
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    } else {
        let mut result = Ok(());
        for (cfg, m) in &pipelines {
            m.started();
            result = run_pipeline(cfg, m, &stop, &budget);
            m.stopped();
        }
        result
    };
    // A failed pipeline ends the process: let the account sync stop too.
    stop.store(true, Ordering::SeqCst);
    for handle in account_syncs {
        let _ = handle.join();
    }
    result
}

/// Runs a pipeline until `stop`, restarting it with exponential backoff (1 s doubling to
/// 60 s; back to 1 s after it ran for 5 minutes) whenever it fails.
fn supervise(
    cfg: &PipelineConfig,
    m: &Arc<PipelineMetrics>,
    stop: &Arc<AtomicBool>,
    budget: &Arc<MemoryBudget>,
) {
    let _span = tracing::info_span!("pipeline", pipeline = %cfg.name).entered();
    let mut backoff = Duration::from_secs(1);
    loop {
        m.started();
        let began = Instant::now();
        let error = match run_pipeline(cfg, m, stop, budget) {
            Ok(()) if stop.load(Ordering::SeqCst) => break,
            Ok(()) => "the source stopped on its own".to_string(),
            Err(e) => error_text(&e),
        };
        m.failed(&error);
        if began.elapsed() >= Duration::from_secs(300) {
            backoff = Duration::from_secs(1);
        }
        tracing::error!(error = %error, retry_in_secs = backoff.as_secs(), "pipeline failed; it will be restarted");
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
        m.restarts.fetch_add(1, Ordering::Relaxed);
        tracing::info!("restarting pipeline");
    }
    m.stopped();
}

fn run_pipeline(
    cfg: &PipelineConfig,
    m: &Arc<PipelineMetrics>,
    stop: &Arc<AtomicBool>,
    budget: &Arc<MemoryBudget>,
) -> Result<()> {
    let ctx = decode_context(&cfg.normalize, &cfg.name)?;
    let lake = auditlake::sink::s3::open_lake(&cfg.sink)
        .with_context(|| format!("cannot open the lake at {}", cfg.sink.path.display()))?;
    let mut batcher = Batcher::new(lake, cfg.flush)
        .with_dedup(cfg.dedup)
        .with_metrics(m.clone())
        .with_budget(budget.share());
    let stats = match &cfg.source {
        SourceConfig::Files(inbox) => {
            files::watch(inbox, &mut batcher, &ctx, stop)?;
            batcher.stats
        }
        SourceConfig::Kafka(kafka) => {
            let source = KafkaSource::new(kafka, batcher)?;
            m.set_kafka(source.handle());
            source.run(&ctx, stop)?
        }
        SourceConfig::SqsS3(source) => {
            sqs_s3::run(source, &mut batcher, &ctx, stop)?;
            batcher.stats
        }
    };
    let s = &stats;
    tracing::info!(
        pipeline = %cfg.name,
        files = s.units,
        events = s.events_written,
        dead_letters = s.dead_letters,
        "stopped"
    );
    Ok(())
}
