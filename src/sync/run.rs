//! Running the sync for configured accounts: once (`auditlake sync --once`, cron, tests) or
//! periodically with each account's intervals (the daemon), and `auditlake accounts check`.

use std::path::Path;
use std::time::{Duration, Instant};

use super::aws::AwsCloud;
use super::baidu::BaiduCloud;
use super::config::{AccountConfig, AccountsConfig, CloudKind, Feature};
use super::ctyun::CtyunCloud;
use super::huawei::HuaweiCloud;
use super::tencent::TencentCloud;
use super::{CallCheck, KeyStatus, RunReport, SyncError, SyncMetrics, check_account, check_key};
use crate::ciem::findings::Settings;

/// A configured account's cloud client.
pub enum AnyCloud {
    Aws(AwsCloud),
    Tencent(Box<TencentCloud>),
    Huawei(Box<HuaweiCloud>),
    Baidu(Box<BaiduCloud>),
    Ctyun(Box<CtyunCloud>),
}

/// Runs `$body` with `$c` bound to the concrete cloud of an [`AnyCloud`].
macro_rules! with_cloud {
    ($any:expr, $c:ident => $body:expr) => {
        match $any {
            AnyCloud::Aws($c) => $body,
            AnyCloud::Tencent($c) => {
                let $c = $c.as_ref();
                $body
            }
            AnyCloud::Huawei($c) => {
                let $c = $c.as_ref();
                $body
            }
            AnyCloud::Baidu($c) => {
                let $c = $c.as_ref();
                $body
            }
            AnyCloud::Ctyun($c) => {
                let $c = $c.as_ref();
                $body
            }
        }
    };
}

impl AnyCloud {
    pub fn connect(account: &AccountConfig) -> Result<Self, SyncError> {
        let credentials = account.credentials.load(&account.name)?;
        let tls = |e: std::io::Error| SyncError::Api {
            account: account.name.clone(),
            source: super::ApiError {
                call: "tls setup",
                failure: super::Failure::Other,
                code: None,
                message: e.to_string(),
            },
        };
        Ok(match account.provider {
            CloudKind::Aws => AnyCloud::Aws(AwsCloud::new(account, credentials)),
            CloudKind::Tencent => AnyCloud::Tencent(Box::new(
                TencentCloud::new(account, credentials).map_err(tls)?,
            )),
            CloudKind::Huawei => AnyCloud::Huawei(Box::new(
                HuaweiCloud::new(account, credentials).map_err(tls)?,
            )),
            CloudKind::Baidu => AnyCloud::Baidu(Box::new(
                BaiduCloud::new(account, credentials).map_err(tls)?,
            )),
            CloudKind::Ctyun => AnyCloud::Ctyun(Box::new(
                CtyunCloud::new(account, credentials).map_err(tls)?,
            )),
        })
    }
}

/// One sync run of one account with the given features.
pub async fn sync_account(
    account: &AccountConfig,
    features: &[Feature],
    lake: &Path,
    ciem: Settings,
    metrics: &SyncMetrics,
) -> Result<RunReport, SyncError> {
    let cloud = AnyCloud::connect(account)?;
    with_cloud!(&cloud, c => super::run_account(c, account, features, lake, ciem, metrics).await)
}

/// The features of an account that are enabled and not switched off by their interval.
fn enabled(account: &AccountConfig) -> Vec<Feature> {
    account
        .features
        .iter()
        .copied()
        .filter(|f| match f {
            Feature::Hosts => account.intervals.hosts.0.is_some(),
            Feature::Products => account.intervals.products.0.is_some(),
            Feature::Entitlements => account.intervals.entitlements.0.is_some(),
        })
        .collect()
}

/// One run of every selected account (every enabled feature).
pub async fn sync_once(
    cfg: &AccountsConfig,
    only: Option<&str>,
    metrics: &SyncMetrics,
) -> Vec<(String, Result<RunReport, SyncError>)> {
    let mut out = Vec::new();
    for account in cfg
        .accounts
        .iter()
        .filter(|a| only.is_none_or(|n| n == a.name))
    {
        let result = sync_account(account, &enabled(account), &cfg.lake, cfg.ciem, metrics).await;
        out.push((account.name.clone(), result));
    }
    out
}

/// `accounts check` for every selected account.
pub async fn check_accounts(
    cfg: &AccountsConfig,
    only: Option<&str>,
) -> Vec<(String, Result<Vec<CallCheck>, SyncError>)> {
    let mut out = Vec::new();
    for account in cfg
        .accounts
        .iter()
        .filter(|a| only.is_none_or(|n| n == a.name))
    {
        let result = match AnyCloud::connect(account) {
            Ok(cloud) => Ok(with_cloud!(&cloud, c => check_account(c, account).await)),
            Err(e) => Err(e),
        };
        out.push((account.name.clone(), result));
    }
    out
}

/// Runs every account's tasks at their intervals until `stop` turns true. Each task first
/// runs at start. A key check that finds the key invalid is logged once per state change
/// (by [`check_key`]); host and product syncs of that account fail the same way until fixed.
pub async fn run_periodic(
    cfg: &AccountsConfig,
    metrics: &SyncMetrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    struct Task<'a> {
        account: &'a AccountConfig,
        /// None: the key check; Some: a sync of these features.
        features: Option<Vec<Feature>>,
        every: Duration,
        due: Instant,
    }
    let mut tasks: Vec<Task> = Vec::new();
    let now = Instant::now();
    for account in &cfg.accounts {
        if let Some(every) = account.intervals.key_check.0 {
            tasks.push(Task {
                account,
                features: None,
                every,
                due: now,
            });
        }
        let on = enabled(account);
        for (feature, interval) in [
            (Feature::Hosts, account.intervals.hosts.0),
            (Feature::Products, account.intervals.products.0),
            (Feature::Entitlements, account.intervals.entitlements.0),
        ] {
            if let Some(every) = interval
                && on.contains(&feature)
            {
                tasks.push(Task {
                    account,
                    features: Some(vec![feature]),
                    every,
                    due: now,
                });
            }
        }
    }
    if tasks.is_empty() {
        tracing::warn!("no account has a task switched on; the sync has nothing to do");
    }
    loop {
        let Some(next) = tasks.iter().map(|t| t.due).min() else {
            let _ = stop.changed().await;
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        for task in tasks.iter_mut().filter(|t| t.due <= Instant::now()) {
            task.due = Instant::now() + task.every;
            let name = &task.account.name;
            match &task.features {
                None => {
                    let checked = match AnyCloud::connect(task.account) {
                        Ok(cloud) => {
                            Some(with_cloud!(&cloud, c => check_key(c, name, metrics).await.0))
                        }
                        Err(e) => {
                            tracing::error!(account = %name, error = %e, "cannot check the AccessKey");
                            None
                        }
                    };
                    if let Some(c) = checked
                        && c.status != KeyStatus::Valid
                    {
                        tracing::debug!(account = %name, status = c.status.as_str(), "key check");
                    }
                }
                Some(features) => {
                    let result =
                        sync_account(task.account, features, &cfg.lake, cfg.ciem, metrics).await;
                    metrics.record_run(name, result.is_ok());
                    match result {
                        Ok(r) => tracing::info!(
                            account = %name, run = %r.run_id, assets = r.assets, created = r.created,
                            modified = r.modified, deleted = r.deleted, errors = r.errors.len(),
                            "sync run done"
                        ),
                        Err(e) => tracing::error!(account = %name, error = %e, "sync run failed"),
                    }
                }
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}
