//! Pipeline configuration (`pipelines/*.toml`). Each section's type lives next to the code it
//! configures; this file only assembles them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::normalize::NormalizeConfig;
use crate::pipeline::FlushPolicy;
use crate::sink::parquet::ParquetOptions;
use crate::sink::s3::S3LakeConfig;
use crate::sources::files::InboxConfig;
use crate::sources::sqs_s3::SqsS3Config;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Name recorded with dead letters and in logs.
    #[serde(default = "default_name")]
    pub name: String,
    pub source: SourceConfig,
    #[serde(default)]
    pub sink: LakeConfig,
    #[serde(default)]
    pub flush: FlushPolicy,
    #[serde(default)]
    pub normalize: NormalizeConfig,
}

fn default_name() -> String {
    "local".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Watch a directory for CloudTrail / CloudAudit files.
    Files(InboxConfig),
    /// S3 event notifications on an SQS queue; the objects they name are read from S3.
    SqsS3(Box<SqsS3Config>),
}

/// Where the lake is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// Lake root directory.
    #[serde(default = "default_lake")]
    pub path: PathBuf,
    /// ZSTD level (1 fastest … 22 smallest).
    #[serde(default = "default_zstd")]
    pub zstd_level: i32,
    /// Rows per Parquet row group.
    #[serde(default = "default_row_group")]
    pub row_group_rows: usize,
    /// Publish the lake to S3 instead; `path` then holds the journal and staged files.
    #[serde(default)]
    pub s3: Option<S3LakeConfig>,
}

fn default_lake() -> PathBuf {
    PathBuf::from("./lake")
}
fn default_zstd() -> i32 {
    ParquetOptions::default().zstd_level
}
fn default_row_group() -> usize {
    ParquetOptions::default().row_group_rows
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            path: default_lake(),
            zstd_level: default_zstd(),
            row_group_rows: default_row_group(),
            s3: None,
        }
    }
}

impl LakeConfig {
    pub fn parquet(&self) -> ParquetOptions {
        ParquetOptions {
            zstd_level: self.zstd_level,
            row_group_rows: self.row_group_rows,
        }
    }
}

impl PipelineConfig {
    /// The embedded default: watch `./inbox`, write `./lake`.
    pub fn default_inbox() -> Self {
        PipelineConfig {
            name: default_name(),
            source: SourceConfig::Files(InboxConfig {
                path: PathBuf::from("./inbox"),
                poll_interval_secs: 2,
            }),
            sink: LakeConfig::default(),
            flush: FlushPolicy::default(),
            normalize: NormalizeConfig::default(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_local_configs_parse() {
        for name in ["local.toml", "docker-local.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("pipelines")
                .join(name);
            let cfg = PipelineConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(cfg.source, SourceConfig::Files(_)), "{name}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = PipelineConfig::parse(
            "[source]\ntype='files'\npath='x'\npoll='1'\n",
            Path::new("t.toml"),
        )
        .expect_err("unknown key must fail");
        assert!(err.to_string().contains("poll"), "{err}");
    }
}
