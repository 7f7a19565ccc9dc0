//! The `sync` and `accounts check` commands and the daemon's sync thread: what the binary
//! calls, with the output users read.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

use super::config::AccountsConfig;
use super::{Failure, SyncMetrics};
use crate::config::ConfigError;

/// Exit status when a run or a check found a problem.
pub const EXIT_RUNTIME: u8 = 1;

/// The periodic account sync beside a pipeline, on its own thread and runtime, writing to the
/// pipeline's lake; it stops when `stop` turns true.
pub fn spawn_account_sync(
    path: &Path,
    lake: &Path,
    stop: Arc<AtomicBool>,
    metrics: SyncMetrics,
) -> Result<std::thread::JoinHandle<()>> {
    let mut cfg = accounts_config(path, None)?;
    cfg.lake = lake.to_path_buf();
    let runtime = tokio_runtime()?;
    Ok(std::thread::spawn(move || {
        let (tx, rx) = tokio::sync::watch::channel(false);
        runtime.block_on(async {
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                let _ = tx.send(true);
            });
            super::run::run_periodic(&cfg, &metrics, rx).await;
        });
    }))
}

fn accounts_config(path: &Path, only: Option<&str>) -> Result<AccountsConfig> {
    let cfg = AccountsConfig::load(path)?;
    if let Some(name) = only
        && !cfg.accounts.iter().any(|a| a.name == name)
    {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            message: format!("no account named {name:?}"),
        }
        .into());
    }
    Ok(cfg)
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

pub fn sync(path: &Path, once: bool, only: Option<&str>) -> Result<u8> {
    let cfg = accounts_config(path, only)?;
    let metrics = SyncMetrics::default();
    let runtime = tokio_runtime()?;
    if !once {
        let (tx, rx) = tokio::sync::watch::channel(false);
        runtime.block_on(async {
            tokio::spawn(async move {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {},
                            _ = term.recv() => {},
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
                tracing::info!("shutdown requested: stopping the account sync");
                let _ = tx.send(true);
            });
            super::run::run_periodic(&cfg, &metrics, rx).await;
        });
        return Ok(0);
    }
    let results = runtime.block_on(super::run::sync_once(&cfg, only, &metrics));
    let mut failed = false;
    for (name, result) in results {
        match result {
            Ok(r) => {
                println!(
                    "{name}: account {} run {}: {} regions, {} assets; {} created, {} modified, {} deleted",
                    // Baidu and CTyun have no who-am-I call: no account id.
                    if r.account_uid.is_empty() {
                        "-"
                    } else {
                        &r.account_uid
                    },
                    r.run_id,
                    r.regions.len(),
                    r.assets,
                    r.created,
                    r.modified,
                    r.deleted
                );
                if r.entitlements > 0 || r.findings > 0 {
                    println!(
                        "{name}: {} entitlement rows, {} CIEM findings",
                        r.entitlements, r.findings
                    );
                }
                for e in &r.errors {
                    println!("{name}: listing failed (previous snapshot kept for it): {e}");
                }
                failed |= !r.errors.is_empty();
            }
            Err(e) => {
                println!("{name}: sync failed: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { EXIT_RUNTIME } else { 0 })
}

pub fn accounts_check(path: &Path, only: Option<&str>) -> Result<u8> {
    let cfg = accounts_config(path, only)?;
    let runtime = tokio_runtime()?;
    let results = runtime.block_on(super::run::check_accounts(&cfg, only));
    let mut all_ok = true;
    for (name, result) in results {
        println!("account {name}:");
        match result {
            Err(e) => {
                all_ok = false;
                println!("  cannot check: {e}");
            }
            Ok(calls) => {
                for c in calls {
                    let region = c.region.map(|r| format!(" ({r})")).unwrap_or_default();
                    match c.result {
                        Ok(()) => println!("  ok      {}{region}", c.call),
                        Err(e) => {
                            all_ok = false;
                            let what = match e.failure {
                                Failure::Denied => "denied ",
                                Failure::InvalidKey => "invalid",
                                Failure::Other => "error  ",
                            };
                            println!(
                                "  {what} {}{region}: {}",
                                c.call,
                                e.code.as_deref().unwrap_or(&e.message)
                            );
                            match e.failure {
                                Failure::Denied => println!("          grant: {}", c.policy),
                                Failure::InvalidKey => println!(
                                    "          the key is not accepted: check the AccessKey id and secret"
                                ),
                                // Without a code the message is already on the line above.
                                Failure::Other if e.code.is_some() => {
                                    println!("          {}", e.message)
                                }
                                Failure::Other => {}
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(if all_ok { 0 } else { EXIT_RUNTIME })
}

/// `auditlake ciem findings`: recomputes the findings of every selected account from its last
/// entitlements sync and the lake's events, writes them, and prints a summary per kind.
pub fn ciem_findings(
    path: &Path,
    only: Option<&str>,
    tracking_period_days: Option<u32>,
    as_of: Option<&str>,
) -> Result<u8> {
    let at_ms = match as_of {
        None => crate::event::now_ms(),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| {
                    d.and_time(chrono::NaiveTime::MIN)
                        .and_utc()
                        .timestamp_millis()
                })
            })
            .map_err(|_| {
                crate::errors::UsageError(format!(
                    "--as-of {text:?}: use RFC 3339 (2026-01-31T12:00:00Z) or a date (2026-01-31)"
                ))
            })?,
    };
    let mut cfg = accounts_config(path, only)?;
    if let Some(days) = tracking_period_days {
        cfg.ciem.tracking_period_days = days;
        if let Some(problem) = cfg.ciem.problem() {
            return Err(crate::errors::UsageError(problem).into());
        }
    }
    let mut failed = false;
    for account in cfg
        .accounts
        .iter()
        .filter(|a| only.is_none_or(|n| n == a.name))
    {
        let name = &account.name;
        if !account
            .features
            .contains(&super::config::Feature::Entitlements)
        {
            if only.is_some() {
                println!("{name}: the entitlements feature is off; nothing to compare");
                failed = true;
            }
            continue;
        }
        match super::entitlements::recompute(&cfg.lake, account, cfg.ciem, at_ms) {
            Ok(None) => {
                println!(
                    "{name}: no entitlements yet: run `auditlake sync --once --account {name}` first"
                );
                failed = true;
            }
            Ok(Some(r)) => {
                let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
                for f in &r.findings {
                    *kinds.entry(f.kind).or_default() += 1;
                }
                println!(
                    "{name}: {} findings over {} days ({} events in {} files; catalog {})",
                    r.findings.len(),
                    cfg.ciem.tracking_period_days,
                    r.events,
                    r.files,
                    r.catalog
                );
                for (kind, n) in kinds {
                    println!("  {kind:<24} {n}");
                }
            }
            Err(e) => {
                println!("{name}: findings failed: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { EXIT_RUNTIME } else { 0 })
}
