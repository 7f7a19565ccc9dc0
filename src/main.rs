//! The `auditlake` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use auditlake::batch::FlushPolicy;
use auditlake::errors::{UsageError, error_text, is_usage};
use auditlake::memory;
use auditlake::normalize::NormalizeConfig;
use auditlake::replay::{REPLAY_MAX_MIB, replay, replay_threads};
use auditlake::schema;
use auditlake::sink::keys::{DedupConfig, Horizon};
use auditlake::{daemon, sync};

#[derive(Parser)]
#[command(
    name = "auditlake",
    version,
    about = "Multi-cloud audit logs into an analytics-ready CIEM Parquet lake"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: `text` (human-readable lines) or `json` (one object a line). By
    /// default `text`, except `run` and `sync` without --once off a terminal (journald, files,
    /// log shippers), which log JSON.
    #[arg(long, global = true, env = "AUDITLAKE_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
        /// `hive` (Hive-partitioned Parquet) or `iceberg` (the same files as Iceberg tables in
        /// a SQLite catalog in the lake; docs/iceberg.md).
        #[arg(long, default_value = "hive")]
        format: auditlake::sink::LakeFormat,
    },
    /// Print the CIEM event schema (JSON, or the Markdown document with --markdown).
    Schema {
        #[arg(long)]
        markdown: bool,
        /// Print the dead-letter schema instead.
        #[arg(long)]
        dead_letters: bool,
        /// Print this table's schema: ciem_events, dead_letters, asset_changes, asset_inventory,
        /// entitlements, ciem_findings.
        #[arg(long, conflicts_with = "dead_letters")]
        table: Option<String>,
        /// Print the DDL of every dataset instead: DuckDB views or Athena/Glue tables
        /// (schemas/duckdb_views.sql, schemas/athena.sql).
        #[arg(long, value_enum, conflicts_with_all = ["markdown", "dead_letters", "table"])]
        ddl: Option<Ddl>,
        /// With --ddl athena: the lake root on S3.
        #[arg(long, requires = "ddl", default_value = "s3://<bucket>/<prefix>")]
        location: String,
        /// With --ddl iceberg: the pipeline whose lake to describe (default: a lake in ./lake
        /// with the default catalog).
        #[arg(long, requires = "ddl")]
        config: Option<PathBuf>,
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
    /// CIEM: granted versus used (docs/ciem.md).
    Ciem {
        #[command(subcommand)]
        command: CiemCommand,
    },
    /// Check config files without touching any cloud or broker, as `run --config <path>` would
    /// load each path: a file as one pipeline, a directory as one process running every
    /// pipeline file in it (accounts files are checked too). Exit status 2 on any problem.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Do not check this machine's environment: unset `${VAR}`s stand for placeholders and
        /// secrets are not read (for checking config files where they will not run, e.g. in CI).
        #[arg(long)]
        no_environment: bool,
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
        /// deduplication windows and queue depths are derived from it (see docs/daemon.md).
        #[arg(long, env = "AUDITLAKE_MEMORY_LIMIT_MIB", default_value_t = memory::DEFAULT_LIMIT_MIB)]
        memory_limit_mib: u64,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Ddl {
    Duckdb,
    Athena,
    /// What pyiceberg, Spark, Trino, Athena and DuckDB need to read the Iceberg tables of a
    /// pipeline's lake (its [sink] from --config).
    Iceberg,
}

#[derive(Subcommand)]
enum CiemCommand {
    /// Recompute the findings (unused roles, users, keys, passwords, services and actions, root
    /// use, old keys, full-admin grants) of the accounts with the entitlements feature, from
    /// their last sync and the lake's events, and write them to ciem_findings.
    Findings {
        #[arg(long, default_value = "pipelines/accounts.toml")]
        config: PathBuf,
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
        /// Days of events to compare, 1 to 365 (default: [ciem] tracking_period_days, or 90).
        #[arg(long)]
        tracking_period_days: Option<u32>,
        /// Compute as of this time (RFC 3339 or YYYY-MM-DD, UTC) instead of now: the period
        /// ends there (to look back at an incident, or at an older lake).
        #[arg(long)]
        as_of: Option<String>,
    },
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
    init_logging(
        matches!(
            cli.command,
            Command::Run { .. } | Command::Sync { once: false, .. }
        ),
        cli.log_format,
    );
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            let usage = is_usage(&e);
            ExitCode::from(if usage { EXIT_USAGE } else { EXIT_RUNTIME })
        }
    }
}

/// Daemons (`run`, `sync` without --once) log at info, JSON off a terminal; the other
/// commands log warnings as text lines. `--log-format` / `AUDITLAKE_LOG_FORMAT` override the
/// format, `RUST_LOG` the level.
fn init_logging(daemon: bool, format: Option<LogFormat>) {
    let default = if daemon { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal);
    let json = match format {
        Some(format) => format == LogFormat::Json,
        None => daemon && !terminal,
    };
    if json {
        builder.json().init();
    } else {
        builder.init();
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
            config,
        } => {
            match ddl {
                Some(Ddl::Iceberg) => {
                    let lake = match &config {
                        Some(path) => auditlake::config::PipelineConfig::load(path)?.sink,
                        None => auditlake::sink::LakeConfig {
                            format: auditlake::sink::LakeFormat::Iceberg,
                            ..auditlake::sink::LakeConfig::default()
                        },
                    };
                    print!("{}", auditlake::sink::iceberg::reader_setup(&lake));
                    return Ok(ExitCode::SUCCESS);
                }
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
            format,
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
            let stats = replay(&paths, &out, threads, &normalize, flush, dedup, format)?;
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
        Command::Ciem {
            command:
                CiemCommand::Findings {
                    config,
                    account,
                    tracking_period_days,
                    as_of,
                },
        } => Ok(ExitCode::from(sync::cli::ciem_findings(
            &config,
            account.as_deref(),
            tracking_period_days,
            as_of.as_deref(),
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
            no_environment,
        } => Ok(
            if auditlake::validate::check(
                &paths,
                auditlake::validate::Checks {
                    memory_limit_mib,
                    environment: !no_environment,
                },
            )? {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_USAGE)
            },
        ),
        Command::Run {
            config,
            metrics_listen,
            memory_limit_mib,
        } => {
            daemon::run(
                config.as_deref(),
                metrics_listen.as_deref(),
                memory_limit_mib,
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
