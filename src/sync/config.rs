//! `pipelines/accounts.toml`: the cloud accounts the sync reads, with what the onboarding
//! guides let a user choose per account (features, regions, region management, intervals).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsConfig {
    /// Lake root the inventory and asset changes are written to.
    #[serde(default = "default_lake")]
    pub lake: PathBuf,
    #[serde(default, rename = "account")]
    pub accounts: Vec<AccountConfig>,
    /// The CIEM findings' settings (tracking period, key age).
    #[serde(default)]
    pub ciem: crate::ciem::findings::Settings,
}

fn default_lake() -> PathBuf {
    PathBuf::from("./lake")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloudKind {
    Aws,
    Tencent,
    Huawei,
    Baidu,
    Ctyun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Feature {
    /// Virtual machines (EC2, CVM).
    Hosts,
    /// Cloud products: buckets, security groups, users and their keys.
    Products,
    /// Identities, their policies and credentials (the `entitlements` dataset), and the CIEM
    /// findings recomputed after each run.
    Entitlements,
}

impl CloudKind {
    pub fn provider(self) -> crate::event::Provider {
        use crate::event::Provider;
        match self {
            CloudKind::Aws => Provider::Aws,
            CloudKind::Tencent => Provider::Tencent,
            CloudKind::Huawei => Provider::Huawei,
            CloudKind::Baidu => Provider::Baidu,
            CloudKind::Ctyun => Provider::Ctyun,
        }
    }
}

/// `"all"` or a list of region codes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Regions {
    Keyword(String),
    List(Vec<String>),
}

impl Default for Regions {
    fn default() -> Self {
        Regions::Keyword("all".to_string())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Unique name; names the snapshot file and the `account_name` column.
    pub name: String,
    pub provider: CloudKind,
    pub credentials: CredentialsConfig,
    #[serde(default = "default_features")]
    pub features: Vec<Feature>,
    #[serde(default)]
    pub regions: Regions,
    /// When on, regions that appear in the account later are synced too.
    #[serde(default = "default_true")]
    pub region_management: bool,
    #[serde(default)]
    pub intervals: Intervals,
    /// Endpoint overrides per service (AWS `sts`, `ec2`, `s3`, `iam`; Tencent `sts`,
    /// `region`, `cvm`, `vpc`, `cam`; Huawei `sts`, `iam`, `ecs`, `vpc`, `obs`; Baidu `bcc`, `bos`;
    /// CTyun `ecs`, `vpc`), e.g. for tests or private endpoints. An override serves every
    /// region.
    #[serde(default)]
    pub endpoints: BTreeMap<String, String>,
    /// Region used for global calls (AWS STS/IAM/S3 list; Tencent CAM/STS; Huawei STS/OBS;
    /// Baidu BOS bucket list).
    #[serde(default)]
    pub home_region: Option<String>,
}

fn default_features() -> Vec<Feature> {
    vec![Feature::Hosts, Feature::Products]
}

fn default_true() -> bool {
    true
}

/// Where the key comes from: environment variable names or files (never the secret itself).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
    pub session_token_file: Option<PathBuf>,
}

impl std::fmt::Debug for CredentialsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only names of variables and files are here, but keep the habit of not printing them.
        f.debug_struct("CredentialsConfig")
            .field("access_key_id_env", &self.access_key_id_env)
            .field("secret_access_key_env", &self.secret_access_key_env)
            .field("access_key_id_file", &self.access_key_id_file)
            .field("secret_access_key_file", &self.secret_access_key_file)
            .finish_non_exhaustive()
    }
}

/// A key pair read from the environment or files. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("account {account}: {what} is not configured (set {what}_env or {what}_file)")]
    Missing { account: String, what: &'static str },
    #[error("account {account}: environment variable {var} is not set")]
    Env { account: String, var: String },
    #[error("account {account}: cannot read {path}: {source}")]
    File {
        account: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CredentialsConfig {
    fn one(
        account: &str,
        env: &Option<String>,
        file: &Option<PathBuf>,
    ) -> Result<Option<String>, CredentialsError> {
        if let Some(var) = env {
            return match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
                _ => Err(CredentialsError::Env {
                    account: account.to_string(),
                    var: var.clone(),
                }),
            };
        }
        if let Some(path) = file {
            return std::fs::read_to_string(path)
                .map(|s| Some(s.trim().to_string()))
                .map_err(|source| CredentialsError::File {
                    account: account.to_string(),
                    path: path.clone(),
                    source,
                });
        }
        Ok(None)
    }

    pub fn load(&self, account: &str) -> Result<Credentials, CredentialsError> {
        let missing = |what| CredentialsError::Missing {
            account: account.to_string(),
            what,
        };
        let access_key_id = Self::one(account, &self.access_key_id_env, &self.access_key_id_file)?
            .ok_or_else(|| missing("access_key_id"))?;
        let secret_access_key = Self::one(
            account,
            &self.secret_access_key_env,
            &self.secret_access_key_file,
        )?
        .ok_or_else(|| missing("secret_access_key"))?;
        let session_token = Self::one(account, &self.session_token_env, &self.session_token_file)?;
        Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token,
        })
    }
}

/// How often each task runs: `"30m"`, `"1h"`, `"1d"`, or `"off"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intervals {
    #[serde(default = "default_hosts_interval")]
    pub hosts: Interval,
    #[serde(default = "default_products_interval")]
    pub products: Interval,
    #[serde(default = "default_key_check_interval")]
    pub key_check: Interval,
    #[serde(default = "default_entitlements_interval")]
    pub entitlements: Interval,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            hosts: default_hosts_interval(),
            products: default_products_interval(),
            key_check: default_key_check_interval(),
            entitlements: default_entitlements_interval(),
        }
    }
}

fn default_hosts_interval() -> Interval {
    Interval(Some(Duration::from_secs(3600)))
}
fn default_products_interval() -> Interval {
    Interval(Some(Duration::from_secs(6 * 3600)))
}
fn default_entitlements_interval() -> Interval {
    Interval(Some(Duration::from_secs(6 * 3600)))
}
fn default_key_check_interval() -> Interval {
    Interval(Some(Duration::from_secs(3600)))
}

/// A task interval; `None` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Option<Duration>);

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_interval(&s).map_err(serde::de::Error::custom)
    }
}

pub fn parse_interval(s: &str) -> Result<Interval, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(Interval(None));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("interval {s:?}: expected e.g. \"30m\", \"1h\", \"1d\" or \"off\""))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "interval {s:?}: unit must be s, m, h or d (or \"off\")"
            ));
        }
    };
    if secs == 0 {
        return Err(format!("interval {s:?} is zero: use \"off\" to disable"));
    }
    Ok(Interval(Some(Duration::from_secs(secs))))
}

impl AccountsConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            reason: source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::parse_with_env(text, path, &crate::config::process_env)
    }

    /// [`AccountsConfig::parse`] with `${NAME}` looked up by `env`.
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let text = crate::config::interpolate_with(text, path, env)?;
        let cfg: AccountsConfig = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if let Some(problem) = cfg.ciem.problem() {
            return Err(invalid(problem));
        }
        let mut names = std::collections::HashSet::new();
        for a in &cfg.accounts {
            if a.name.is_empty() || !names.insert(a.name.as_str()) {
                return Err(invalid(format!(
                    "account names must be unique and not empty: {:?}",
                    a.name
                )));
            }
            if a.features.contains(&Feature::Entitlements)
                && !matches!(a.provider, CloudKind::Aws | CloudKind::Tencent)
            {
                return Err(invalid(format!(
                    "account {}: feature \"entitlements\" is supported for aws and tencent accounts only (see docs/ciem.md)",
                    a.name
                )));
            }
            if let Regions::Keyword(k) = &a.regions
                && k != "all"
            {
                return Err(invalid(format!(
                    "account {}: regions must be \"all\" or a list of region codes",
                    a.name
                )));
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_accounts_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/accounts.toml");
        let cfg = AccountsConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.accounts.len(), 1);
        let a = &cfg.accounts[0];
        assert_eq!(a.provider, CloudKind::Aws);
        assert_eq!(
            a.features,
            vec![Feature::Hosts, Feature::Products, Feature::Entitlements]
        );
        assert_eq!(a.regions, Regions::Keyword("all".into()));
        assert_eq!(a.intervals.products.0, Some(Duration::from_secs(6 * 3600)));
    }

    #[test]
    fn shipped_examples_of_every_cloud_parse_when_uncommented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/accounts.toml");
        let text = std::fs::read_to_string(&path).expect("read");
        // Uncomment the example lines (tables and `key = value`), not the prose.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        }) =>
                {
                    rest.to_string()
                }
                _ => l.to_string(),
            })
            .map(|l| l + "\n")
            .collect();
        let cfg = AccountsConfig::parse(&uncommented, &path).unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<CloudKind> = cfg.accounts.iter().map(|a| a.provider).collect();
        assert_eq!(
            kinds,
            vec![
                CloudKind::Aws,
                CloudKind::Tencent,
                CloudKind::Huawei,
                CloudKind::Baidu,
                CloudKind::Ctyun
            ]
        );
        let huawei = &cfg.accounts[2];
        assert_eq!(huawei.home_region.as_deref(), Some("cn-north-4"));
        assert_eq!(
            huawei.regions,
            Regions::List(vec!["cn-north-4".into(), "cn-east-3".into()])
        );
        assert!(cfg.accounts[4].endpoints.contains_key("ecs"));
    }

    #[test]
    fn intervals_parse_and_off_disables() {
        assert_eq!(parse_interval("off"), Ok(Interval(None)));
        assert_eq!(
            parse_interval("30m"),
            Ok(Interval(Some(Duration::from_secs(1800))))
        );
        assert_eq!(
            parse_interval("1d"),
            Ok(Interval(Some(Duration::from_secs(86_400))))
        );
        assert!(parse_interval("0h").is_err());
        assert!(parse_interval("5 parsecs").is_err());
    }

    #[test]
    fn bad_regions_keyword_and_duplicate_names_are_errors() {
        let one = |name: &str, regions: &str| {
            format!(
                "[[account]]\nname = \"{name}\"\nprovider = \"aws\"\nregions = {regions}\n[account.credentials]\naccess_key_id_env = \"A\"\nsecret_access_key_env = \"B\"\n"
            )
        };
        let p = Path::new("accounts.toml");
        assert!(AccountsConfig::parse(&one("a", "\"some\""), p).is_err());
        let twice = format!("{}{}", one("a", "\"all\""), one("a", "[\"us-east-1\"]"));
        assert!(AccountsConfig::parse(&twice, p).is_err());
        assert!(AccountsConfig::parse(&one("a", "[\"us-east-1\"]"), p).is_ok());
    }

    #[test]
    fn secrets_are_read_from_files_and_never_debug_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = dir.path().join("id");
        let secret = dir.path().join("secret");
        std::fs::write(&id, "AKIDFILE\n").expect("write");
        std::fs::write(&secret, "s3cr3t-value\n").expect("write");
        let creds = CredentialsConfig {
            access_key_id_file: Some(id),
            secret_access_key_file: Some(secret),
            ..CredentialsConfig::default()
        }
        .load("acct")
        .expect("load");
        assert_eq!(creds.access_key_id, "AKIDFILE");
        assert_eq!(creds.secret_access_key, "s3cr3t-value");
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("s3cr3t") && shown.contains("AKIDFILE"),
            "{shown}"
        );
        let missing = CredentialsConfig::default()
            .load("acct")
            .expect_err("missing");
        assert!(missing.to_string().contains("access_key_id"), "{missing}");
    }
}
