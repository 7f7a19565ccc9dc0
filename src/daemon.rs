//! `auditlake run`: the daemon. Loads the pipelines `--config` names, bounds their memory,
//! serves metrics, starts the account syncs, and runs each pipeline — supervised and restarted
//! with backoff when the config is a directory — until SIGTERM or Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::batch::Batcher;
use crate::config::{ConfigError, PipelineConfig, SourceConfig};
use crate::errors::{UsageError, error_text};
use crate::memory::{self, MemoryBudget};
use crate::metrics::{self, PipelineMetrics, Registry};
use crate::normalize::unit::DecodeContext;
use crate::sources::inbox;
use crate::sources::kafka::KafkaSource;
use crate::sources::sqs_s3;
use crate::sync;
use crate::validate;

/// The pipelines `--config` names: one file (run as before: a failure stops the process), or a
/// directory of pipeline files (each supervised and restarted with backoff). Everything
/// `validate` checks is checked here, by the same functions, before anything starts: a
/// configuration problem is an error now, not a pipeline restarted forever.
pub fn load_pipelines(config: Option<&Path>) -> Result<(Vec<(PathBuf, PipelineConfig)>, bool)> {
    let (pipelines, supervised) = match config {
        None => (
            vec![(PathBuf::from("(default)"), PipelineConfig::default_inbox())],
            false,
        ),
        Some(path) if !path.is_dir() => (
            vec![(path.to_path_buf(), PipelineConfig::load(path)?)],
            false,
        ),
        Some(path) => {
            let mut pipelines = Vec::new();
            for file in validate::expand(&[path.to_path_buf()])? {
                let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                    path: file.clone(),
                    reason: source,
                })?;
                if !validate::is_accounts_file(&text) {
                    let cfg = PipelineConfig::parse(&text, &file)?;
                    pipelines.push((file, cfg));
                }
            }
            if pipelines.is_empty() {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    message: "no pipeline *.toml file in this directory".into(),
                }
                .into());
            }
            (pipelines, true)
        }
    };
    let mut problems = validate::process_problems(&pipelines);
    for (file, cfg) in &pipelines {
        for p in validate::pipeline_problems(cfg, &crate::config::process_env, true) {
            problems.push((file.clone(), p));
        }
    }
    if let Some((file, message)) = problems.into_iter().next() {
        return Err(ConfigError::Invalid {
            path: file,
            message,
        }
        .into());
    }
    Ok((pipelines, supervised))
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

pub fn run(
    config: Option<&Path>,
    metrics_listen: Option<&str>,
    memory_limit_mib: u64,
) -> Result<()> {
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
    registry.set_memory(budget.plan.limit_bytes, budget.batch_total, {
        let budget = budget.clone();
        move || budget.pending()
    });
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
    let mut sync_metrics = None;
    for (cfg, _) in &pipelines {
        if let Some(path) = &cfg.accounts {
            let metrics = sync_metrics
                .get_or_insert_with(|| sync::SyncMetrics::reporting_to(registry.account_sync()));
            account_syncs.push(sync::cli::spawn_account_sync(
                path,
                &cfg.sink.path,
                stop.clone(),
                metrics.clone(),
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
        m.restarts.inc();
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
    let ctx = DecodeContext::new(&cfg.normalize, &cfg.name).map_err(UsageError)?;
    let lake = crate::sink::s3::open_lake(&cfg.sink)
        .with_context(|| format!("cannot open the lake at {}", cfg.sink.path.display()))?;
    let mut batcher = Batcher::new(lake, cfg.flush)
        .with_dedup(cfg.dedup)
        .with_metrics(m.clone())
        .with_budget(budget.share());
    let stats = match &cfg.source {
        SourceConfig::Files(inbox) => {
            inbox::watch(inbox, &mut batcher, &ctx, stop)?;
            batcher.stats
        }
        SourceConfig::Kafka(kafka) => KafkaSource::new(kafka, batcher)?.run(&ctx, stop)?,
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
