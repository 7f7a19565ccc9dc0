//! Sinks: where normalised rows become committed Parquet files.
//!
//! Layout under the output directory:
//! ```text
//! ciem_events/provider=<p>/account=<a>/date=<YYYY-MM-DD>/part-<batch>.parquet
//! dead_letters/date=<YYYY-MM-DD>/part-<batch>.parquet
//! asset_changes/provider=<p>/account=<a>/date=<YYYY-MM-DD>/part-<batch>.parquet
//! asset_inventory/provider=<p>/account=<a>/date=<YYYY-MM-DD>/part-<batch>.parquet
//! _auditlake/journal.jsonl          commit journal (what input is already in the lake)
//! _auditlake/journal-<instance>.jsonl   the journal of one instance of a shared lake
//! _auditlake/keys/date=<YYYY-MM-DD>/*.keys  committed event keys (the dedup horizon)
//! ```

pub mod columns;
pub mod fenced_catalog;
pub mod glue_catalog;
pub mod iceberg;
pub mod journal;
pub mod keys;
pub mod lake;
pub mod parquet;
pub mod read;
pub mod s3;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use self::parquet::ParquetOptions;
use self::s3::S3LakeConfig;
use crate::event::Provider;
use crate::normalize::date_of_ms;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode Parquet file {path}: {source}")]
    Parquet {
        path: PathBuf,
        source: ::parquet::errors::ParquetError,
    },
    #[error("schema mismatch: {0}")]
    Schema(String),
    #[error("invalid sink configuration: {0}")]
    Config(String),
    #[error(
        "instance {instance:?} of this lake is used by another process ({lock} is locked): give every process sharing a lake its own `[sink] instance`"
    )]
    InstanceBusy { instance: String, lock: PathBuf },
    #[error(
        "the lake {root} is in use by another auditlake process ({lock} is locked): wait for it to finish, write to another lake, or give every process sharing this lake its own `[sink] instance`"
    )]
    LakeBusy { root: PathBuf, lock: PathBuf },
    #[error("commit journal {path} is damaged at line {line}: {reason}")]
    Journal {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("Iceberg: {0}")]
    Iceberg(String),
    #[error(
        "input {unit} positions {from}..{to} were committed by another writer while this one read them (a Kafka partition or an SQS message moved to another host mid-batch): this batch is dropped and its input read again from what the lake holds"
    )]
    InputTaken { unit: String, from: i64, to: i64 },
}

impl SinkError {
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        SinkError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn parquet(path: &Path, source: ::parquet::errors::ParquetError) -> Self {
        SinkError::Parquet {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `ciem_events/provider=…/account=…/date=…` for a partition key.
fn partition_dir((provider, account, day): (Provider, Option<&str>, i64)) -> String {
    format!(
        "ciem_events/provider={}/account={}/date={}",
        provider.as_str(),
        partition_value(account),
        date_of_ms(day * 86_400_000)
    )
}

/// A Hive partition value made safe for a path component: bytes outside `[A-Za-z0-9_.-]` are
/// percent-encoded (so `/`, `\` and NUL cannot appear), a leading dot too (no `.` or `..`
/// entries, no hidden directories), empty becomes `unknown`, and length is capped.
pub fn partition_value(value: Option<&str>) -> String {
    let value = value.unwrap_or("");
    if value.is_empty() {
        return "unknown".to_string();
    }
    let mut out = String::with_capacity(value.len());
    for (i, b) in value.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        if out.len() >= 96 {
            out.push_str("%E2%80%A6"); // …: cut, and visibly so
            break;
        }
    }
    out
}

/// Where the lake is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// Lake root directory.
    #[serde(default = "default_lake")]
    pub path: PathBuf,
    /// ZSTD level (1 fastest, the default … 22 smallest).
    #[serde(default = "default_zstd")]
    pub zstd_level: i32,
    /// Rows per Parquet row group.
    #[serde(default = "default_row_group")]
    pub row_group_rows: usize,
    /// `hive` (the default): Hive-partitioned Parquet files; `iceberg`: the same files as
    /// Apache Iceberg tables in a catalog (`[sink.iceberg]`, docs/iceberg.md).
    #[serde(default)]
    pub format: LakeFormat,
    /// The Iceberg catalog and namespace (with `format = "iceberg"`).
    #[serde(default)]
    pub iceberg: Option<iceberg::IcebergConfig>,
    /// Publish the lake to S3 instead; `path` then holds the journal and staged files.
    #[serde(default)]
    pub s3: Option<S3LakeConfig>,
    /// This process's name when several processes share the lake (one Kafka consumer group,
    /// one SQS queue): unique per process and stable across its restarts, e.g.
    /// `"${HOSTNAME}"`. Unset: the only process writing the lake.
    #[serde(default)]
    pub instance: Option<String>,
}

/// Runs a future on `rt` from a thread of its own, so it works whether or not the caller is
/// inside another async runtime (the lake's remotes are called from both).
pub(crate) fn block_on<T: Send>(
    rt: &tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = T> + Send,
) -> T {
    std::thread::scope(|s| match s.spawn(|| rt.block_on(fut)).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// How the lake's files are organised for readers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LakeFormat {
    /// Hive-partitioned Parquet (`<dataset>/provider=…/account=…/date=…/`).
    #[default]
    Hive,
    /// Apache Iceberg tables over those files.
    Iceberg,
}

impl std::str::FromStr for LakeFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hive" => Ok(LakeFormat::Hive),
            "iceberg" => Ok(LakeFormat::Iceberg),
            other => Err(format!(
                "unknown lake format {other:?}: use hive or iceberg"
            )),
        }
    }
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
            format: LakeFormat::Hive,
            iceberg: None,
            s3: None,
            instance: None,
        }
    }
}

impl LakeConfig {
    /// What in the `[sink]` combination cannot run (checked by `validate` and at start).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.format == LakeFormat::Hive && self.iceberg.is_some() {
            out.push(
                "[sink.iceberg] is set but [sink] format is \"hive\": add format = \"iceberg\" to [sink], or remove [sink.iceberg]"
                    .to_string(),
            );
        }
        if let Some(ice) = self.iceberg.as_ref() {
            use iceberg::CatalogKind;
            if ice.catalog == CatalogKind::Glue && self.s3.is_none() {
                out.push("[sink.iceberg] catalog = \"glue\" keeps the tables in S3: add [sink.s3] (the bucket of the tables' files and metadata)".to_string());
            }
            if ice.catalog == CatalogKind::Rest && ice.catalog_uri.is_none() {
                out.push("[sink.iceberg] catalog = \"rest\" needs catalog_uri, the REST catalog's URL (https://…)".to_string());
            }
        }
        if self.format == LakeFormat::Iceberg
            && self.s3.is_some()
            && let Some(w) = self.iceberg.as_ref().and_then(|i| i.warehouse.as_deref())
            && !w.starts_with("s3://")
        {
            out.push(format!(
                "[sink.iceberg] warehouse = {w:?} is a local path while [sink.s3] puts the tables' files in S3: hosts without this disk could not read the tables; set an s3:// warehouse or leave it unset (s3://<bucket>/<prefix>/iceberg)"
            ));
        }
        out
    }

    pub fn parquet(&self) -> ParquetOptions {
        ParquetOptions {
            zstd_level: self.zstd_level,
            row_group_rows: self.row_group_rows,
            timestamps_us: self.format == LakeFormat::Iceberg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_cannot_escape() {
        assert_eq!(partition_value(Some("123456789012")), "123456789012");
        assert_eq!(partition_value(Some("../../etc")), "%2E.%2F..%2Fetc");
        assert_eq!(partition_value(Some("..")), "%2E.");
        assert_eq!(partition_value(Some("a/b\\c\0")), "a%2Fb%5Cc%00");
        assert_eq!(partition_value(Some("")), "unknown");
        assert_eq!(partition_value(None), "unknown");
        assert!(partition_value(Some(&"x".repeat(500))).len() < 120);
    }
}
