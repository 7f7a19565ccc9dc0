//! The SQS + S3 source's `[source]` section (`type = "sqs_s3"`).

use serde::Deserialize;

use super::SqsS3Error;
use super::notification::KeyFilter;

/// What happens to a message whose objects keep failing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPoison {
    /// After `max_receive_count` receives: write a dead-letter row (reason, message id, body) to
    /// the lake's `dead_letters/`, then delete the message.
    #[default]
    DeadLetter,
    /// Never delete it: the queue's own redrive policy moves it to its dead-letter queue.
    QueueRedrive,
}

/// Optional role to assume on top of the default credential chain.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssumeRoleConfig {
    pub role_arn: String,
    #[serde(default)]
    pub session_name: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
}

impl std::fmt::Debug for AssumeRoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRoleConfig")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field(
                "external_id",
                &self.external_id.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Settings of the SQS + S3 source (`[source] type = "sqs_s3"`). Credentials are never part
/// of it: they come from the AWS default chain (environment, profile, web identity, instance
/// or task role).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsS3Config {
    pub queue_url: String,
    /// AWS region; default: from the queue URL, else the AWS default chain.
    #[serde(default)]
    pub region: Option<String>,
    /// Named profile of `~/.aws/config` (default: the chain's own choice).
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub assume_role: Option<AssumeRoleConfig>,
    /// Endpoint for both SQS and S3 (S3-compatible stores, tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Path-style S3 addressing; default: on when `endpoint_url` is set.
    #[serde(default)]
    pub force_path_style: Option<bool>,
    /// Long-poll wait, 0–20 s.
    #[serde(default = "default_wait")]
    pub wait_time_secs: i32,
    /// Messages per receive, 1–10.
    #[serde(default = "default_max_messages")]
    pub max_messages: i32,
    /// Visibility timeout requested on receive and renewed while objects are in progress.
    #[serde(default = "default_visibility")]
    pub visibility_timeout_secs: i32,
    /// Objects downloaded and decoded at once.
    #[serde(default = "default_in_flight")]
    pub max_objects_in_flight: usize,
    /// Receives after which a failing message is dead-lettered (`ApproximateReceiveCount`).
    #[serde(default = "default_max_receive")]
    pub max_receive_count: u32,
    #[serde(default)]
    pub on_poison: OnPoison,
    #[serde(default)]
    pub key_filter: KeyFilter,
    /// When not empty, only keys starting with one of these are read.
    #[serde(default)]
    pub key_prefixes: Vec<String>,
    /// On shutdown, how long objects in progress may take to finish before they are abandoned
    /// (their messages are then redelivered later; what was committed is not read again).
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// A download (or a receive) that makes no progress for this long is given up: the object
    /// is retried through redelivery instead of its message being kept invisible forever.
    #[serde(default = "default_stall")]
    pub stall_timeout_secs: u64,
}

fn default_wait() -> i32 {
    20
}
fn default_max_messages() -> i32 {
    10
}
fn default_visibility() -> i32 {
    300
}
fn default_in_flight() -> usize {
    8
}
fn default_max_receive() -> u32 {
    5
}
fn default_grace() -> u64 {
    30
}
fn default_stall() -> u64 {
    60
}

impl SqsS3Config {
    /// The settings' own checks (ranges, required values), without touching AWS.
    pub fn validate(&self) -> Result<(), SqsS3Error> {
        let bad = |m: &str| Err(SqsS3Error::Config(m.to_string()));
        if self.queue_url.trim().is_empty() {
            return bad("queue_url is empty");
        }
        if !(0..=20).contains(&self.wait_time_secs) {
            return bad("wait_time_secs must be between 0 and 20");
        }
        if !(1..=10).contains(&self.max_messages) {
            return bad("max_messages must be between 1 and 10");
        }
        if !(1..=43_200).contains(&self.visibility_timeout_secs) {
            return bad("visibility_timeout_secs must be between 1 and 43200");
        }
        if self.max_objects_in_flight == 0 {
            return bad("max_objects_in_flight must be at least 1");
        }
        if self.max_receive_count == 0 {
            return bad("max_receive_count must be at least 1");
        }
        if self.stall_timeout_secs == 0 {
            return bad("stall_timeout_secs must be at least 1");
        }
        Ok(())
    }
}

/// The region in an AWS queue URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
pub fn region_from_queue_url(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let mut parts = host.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("sqs"), Some(region), Some("amazonaws")) => Some(region.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_from_aws_queue_urls() {
        assert_eq!(
            region_from_queue_url("https://sqs.eu-west-1.amazonaws.com/111122223333/trail"),
            Some("eu-west-1".to_string())
        );
        assert_eq!(
            region_from_queue_url("http://127.0.0.1:5000/123456789012/q"),
            None
        );
    }

    #[test]
    fn config_defaults_and_validation() {
        let cfg: SqsS3Config =
            toml::from_str("queue_url = 'https://sqs.us-east-1.amazonaws.com/1/q'").expect("toml");
        assert_eq!(cfg.wait_time_secs, 20);
        assert_eq!(cfg.max_messages, 10);
        assert_eq!(cfg.key_filter, KeyFilter::Cloudtrail);
        assert_eq!(cfg.on_poison, OnPoison::DeadLetter);
        assert!(cfg.validate().is_ok());
        let bad: SqsS3Config = toml::from_str("queue_url = 'q'\nmax_messages = 11").expect("toml");
        assert!(bad.validate().is_err());
    }

    #[test]
    fn assume_role_debug_hides_the_external_id() {
        let cfg: SqsS3Config = toml::from_str(
            "queue_url = 'q'\n[assume_role]\nrole_arn = 'arn:aws:iam::1:role/r'\nexternal_id = 'sekrit'",
        )
        .expect("toml");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(shown.contains("arn:aws:iam::1:role/r"), "{shown}");
    }
}
