//! Pipeline configuration (`pipelines/*.toml`). Each section's type lives next to the code it
//! configures; this file only assembles them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::batch::FlushPolicy;
use crate::normalize::NormalizeConfig;
use crate::sink::keys::DedupConfig;
use crate::sources::inbox::InboxConfig;
use crate::sources::sqs_s3::SqsS3Config;

/// `[sink]`: where the lake is written (its type lives with the sink).
pub use crate::sink::LakeConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The OS error is part of the message, not a `source()`: a chain printer would say it twice.
    #[error("cannot read config {path}: {reason}")]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("no .toml files found in the given paths")]
    NoFiles,
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
    /// `[dedup] horizon`: how far from now event ids are kept unique across restarts.
    #[serde(default)]
    pub dedup: DedupConfig,
    #[serde(default)]
    pub normalize: NormalizeConfig,
    /// An accounts file (`pipelines/accounts.toml`): the daemon also runs the periodic account
    /// sync, writing to this pipeline's lake.
    #[serde(default)]
    pub accounts: Option<PathBuf>,
}

fn default_name() -> String {
    "local".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Watch a directory for CloudTrail / CloudAudit files.
    Files(InboxConfig),
    /// Consume a Kafka topic (Tencent Cloud CLS "consume over Kafka", or any cluster).
    Kafka(Box<crate::sources::kafka::KafkaConfig>),
    /// S3 event notifications on an SQS queue; the objects they name are read from S3.
    SqsS3(Box<SqsS3Config>),
}

/// See [`PipelineConfig::default_inbox`].
pub const INBOX_MAX_AGE_SECS: u64 = 5;

impl PipelineConfig {
    /// The embedded default: watch `./inbox`, write `./lake`.
    /// `max_age_secs` of the inbox pipeline (`run` without --config, `pipelines/local.toml`):
    /// a file dropped into the inbox shows as rows within seconds. The library's default
    /// (60 s) stays for the other sources, whose steady streams make fewer, larger files so.
    pub fn default_inbox() -> Self {
        PipelineConfig {
            name: default_name(),
            source: SourceConfig::Files(InboxConfig::new(PathBuf::from("./inbox"))),
            sink: LakeConfig::default(),
            flush: FlushPolicy {
                max_age_secs: INBOX_MAX_AGE_SECS,
                ..FlushPolicy::default()
            },
            dedup: DedupConfig::default(),
            normalize: NormalizeConfig::default(),
            accounts: None,
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            reason: source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::parse_with_env(text, path, &process_env)
    }

    /// [`PipelineConfig::parse`] with `${NAME}` looked up by `env`.
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = interpolate_with(text, path, env)?;
        toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// The process environment's variable `name`, as config files see it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Replaces `${NAME}` with what `lookup` gives for `NAME` ([`process_env`] when running; `$${`
/// stands for a literal `${`). A variable that is not set is an error naming it and its line,
/// so a config never silently runs with an empty value. Secrets belong in variables or files,
/// not in the config text: interpolated values are used, never printed.
pub fn interpolate_with(
    text: &str,
    path: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        // Comment lines are left alone: commented-out examples may name unset variables.
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            interpolate_line(line, index + 1, &mut out, &lookup).map_err(invalid)?;
        }
    }
    Ok(out)
}

fn interpolate_line(
    line_text: &str,
    line: usize,
    out: &mut String,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let mut rest = line_text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err(format!(
                    "line {line}: `${{` without a closing `}}` (write `$${{` for a literal `${{`)"
                ));
            };
            let name = &after[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "line {line}: `${{{name}}}` is not an environment variable name (letters, digits, _)"
                ));
            }
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(format!(
                        "line {line}: environment variable {name} is not set (the config refers to it as ${{{name}}}); set it or change the config"
                    ));
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_cls_pipeline_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/tencent-cls.toml");
        let cfg = PipelineConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let SourceConfig::Kafka(kafka) = cfg.source else {
            panic!("not a kafka source");
        };
        let keys = |name: &str| match name {
            "TENCENTCLOUD_SECRET_ID" => Some("AKIDexample".to_string()),
            "TENCENTCLOUD_SECRET_KEY" => Some("keyEXAMPLE".to_string()),
            _ => None,
        };
        let password = kafka.password(&keys).expect("password");
        let s = crate::sources::kafka::client_config(&kafka, password.as_ref()).expect("settings");
        assert_eq!(
            s.get("bootstrap.servers"),
            Some("kafkaconsumer-ap-guangzhou.cls.tencentyun.com:9095")
        );
        assert_eq!(s.get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(s.get("enable.auto.commit"), Some("false"));
    }

    #[test]
    fn shipped_sqs_pipeline_parses_and_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("pipelines")
            .join("aws-cloudtrail.toml");
        let cfg = PipelineConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let SourceConfig::SqsS3(source) = cfg.source else {
            panic!("aws-cloudtrail.toml must use the sqs_s3 source");
        };
        source.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(source.visibility_timeout_secs, 300);
    }

    #[test]
    fn shipped_local_configs_parse() {
        for name in ["local.toml", "docker/local.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("pipelines")
                .join(name);
            let cfg = PipelineConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(cfg.source, SourceConfig::Files(_)), "{name}");
        }
    }

    #[test]
    fn environment_variables_are_interpolated() {
        let env = |name: &str| match name {
            "LAKE_DIR" => Some("/data/lake".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let p = Path::new("t.toml");
        let out = interpolate_with("path = \"${LAKE_DIR}/x${EMPTY}\" # $5 $${HOME}\n", p, env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, "path = \"/data/lake/x\" # $5 ${HOME}\n");
        let err = interpolate_with("a = 1\npath = \"${NOPE}\"\n", p, env)
            .expect_err("unset variable")
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("NOPE is not set"),
            "{err}"
        );
        let err = interpolate_with("x = \"${A-B}\"", p, env)
            .expect_err("bad name")
            .to_string();
        assert!(err.contains("not an environment variable name"), "{err}");
        let err = interpolate_with("x = \"${OPEN\"", p, env)
            .expect_err("unclosed")
            .to_string();
        assert!(err.contains("without a closing"), "{err}");
        let out = interpolate_with("  # secret = \"${NOPE}\"\nx = 1", p, env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out, "  # secret = \"${NOPE}\"\nx = 1",
            "comment lines are left alone"
        );
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
