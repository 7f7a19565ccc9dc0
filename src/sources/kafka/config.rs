//! The Kafka source's `[source]` section (`type = "kafka"`: Tencent Cloud CLS or any
//! cluster), its secrets, and the librdkafka settings made from it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use serde::Deserialize;

use super::KafkaError;

/// Which Tencent Cloud network reaches the CLS Kafka endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// `kafkaconsumer-<region>.cls.tencentyun.com:9095`, from a CVM/VPC in the region.
    #[default]
    Private,
    /// `kafkaconsumer-<region>.cls.tencentcs.com:9096`, over the internet.
    Public,
}

/// Where a consumer group without a committed offset starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    #[default]
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    SaslPlaintext,
    SaslSsl,
    Ssl,
}

impl SecurityProtocol {
    fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
            SecurityProtocol::Ssl => "SSL",
        }
    }
    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[default]
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `[source]` with `type = "kafka"`. See `pipelines/tencent-cls.toml` for a commented example.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Tencent Cloud region of the CLS logset (e.g. `ap-guangzhou`); derives the endpoint.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub network: Network,
    /// `host:port[,host:port]`, instead of `region` (any Kafka cluster).
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// Topic name (for CLS: the one the console shows under "consume over Kafka").
    pub topic: String,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    #[serde(default)]
    pub start_position: StartPosition,
    /// CLS logset ID: the SASL username.
    #[serde(default)]
    pub logset_id: Option<String>,
    /// SASL username for other clusters (instead of `logset_id`).
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variables holding the Tencent SecretId and SecretKey (the SASL password is
    /// `SecretId#SecretKey`).
    #[serde(default = "default_secret_id_env")]
    pub secret_id_env: String,
    #[serde(default = "default_secret_key_env")]
    pub secret_key_env: String,
    /// Files holding the SecretId / SecretKey (take precedence over the variables).
    #[serde(default)]
    pub secret_id_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// For other clusters: a variable or a file holding the whole SASL password.
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Default: `sasl_plaintext` with a username (always for CLS), `plaintext` otherwise.
    #[serde(default)]
    pub security_protocol: Option<SecurityProtocol>,
    #[serde(default)]
    pub sasl_mechanism: SaslMechanism,
    /// Seconds between lag reports (librdkafka statistics); 0 turns them off.
    #[serde(default = "default_lag_interval")]
    pub lag_report_secs: u64,
    /// Extra librdkafka settings, passed through as given.
    #[serde(default)]
    pub librdkafka: Passthrough,
}

fn default_group_id() -> String {
    "auditlake".to_string()
}
fn default_secret_id_env() -> String {
    "TENCENTCLOUD_SECRET_ID".to_string()
}
fn default_secret_key_env() -> String {
    "TENCENTCLOUD_SECRET_KEY".to_string()
}
fn default_lag_interval() -> u64 {
    30
}

/// librdkafka settings from the config; values of secret-looking keys never show in `Debug`.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Passthrough(pub BTreeMap<String, String>);

fn is_secret_setting(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.contains(".key") || k.contains("jaas")
}

impl fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret_setting(k) { "***" } else { v };
                (k, shown)
            }))
            .finish()
    }
}

/// Settings librdkafka must not take from the passthrough table: they would break the
/// offsets-after-durability guarantee, or put a secret in the config file.
const RESERVED: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "sasl.password",
    "group.id",
    "bootstrap.servers",
];

/// A secret string: its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The client settings: an ordered list of librdkafka key/value pairs. `Debug` hides secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSettings(pub Vec<(String, String)>);

impl ClientSettings {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.0 {
            c.set(k, v);
        }
        c.set_log_level(RDKafkaLogLevel::Warning);
        c
    }
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret_setting(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

impl KafkaConfig {
    /// Reads the SASL password the config points at (None when SASL is not used). `env` looks
    /// variables up (the process environment in production).
    pub fn password(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, KafkaError> {
        if !self.protocol()?.sasl() {
            return Ok(None);
        }
        let read = |what: &'static str, path: &Path| -> Result<String, KafkaError> {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|source| KafkaError::SecretFile {
                    what,
                    path: path.to_path_buf(),
                    source,
                })
        };
        if let Some(path) = &self.password_file {
            return Ok(Some(Secret(read("SASL password", path)?)));
        }
        if let Some(var) = &self.password_env {
            return match env(var).filter(|v| !v.is_empty()) {
                Some(v) => Ok(Some(Secret(v))),
                None => Err(KafkaError::Config(format!(
                    "the SASL password variable {var} is not set"
                ))),
            };
        }
        let part = |what: &'static str, file: &Option<PathBuf>, var: &str| {
            match file {
            Some(path) => read(what, path),
            None => env(var)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    KafkaError::Config(format!(
                        "the {what} is needed for the SASL password: set the environment variable {var} or {what_file} in the config",
                        what_file = if what == "SecretId" { "secret_id_file" } else { "secret_key_file" }
                    ))
                }),
        }
        };
        let id = part("SecretId", &self.secret_id_file, &self.secret_id_env)?;
        let key = part("SecretKey", &self.secret_key_file, &self.secret_key_env)?;
        Ok(Some(Secret(format!("{id}#{key}"))))
    }

    fn username(&self) -> Result<Option<&str>, KafkaError> {
        match (&self.logset_id, &self.username) {
            (Some(_), Some(_)) => Err(KafkaError::Config(
                "set logset_id (Tencent CLS) or username, not both".to_string(),
            )),
            (Some(u), None) | (None, Some(u)) if u.trim().is_empty() => Err(KafkaError::Config(
                "the SASL username (logset_id) is empty".to_string(),
            )),
            (Some(u), None) | (None, Some(u)) => Ok(Some(u.trim())),
            (None, None) => Ok(None),
        }
    }

    fn protocol(&self) -> Result<SecurityProtocol, KafkaError> {
        Ok(match self.security_protocol {
            Some(p) => p,
            None if self.region.is_some() || self.username()?.is_some() => {
                SecurityProtocol::SaslPlaintext
            }
            None => SecurityProtocol::Plaintext,
        })
    }

    /// `host:port` list: explicit, or the CLS endpoint of the region and network.
    pub fn bootstrap(&self) -> Result<String, KafkaError> {
        match (&self.bootstrap_servers, &self.region) {
            (Some(_), Some(_)) => Err(KafkaError::Config(
                "set region (Tencent CLS) or bootstrap_servers, not both".to_string(),
            )),
            (Some(servers), None) if servers.trim().is_empty() => {
                Err(KafkaError::Config("bootstrap_servers is empty".to_string()))
            }
            (Some(servers), None) => Ok(servers.trim().to_string()),
            (None, Some(region)) => {
                let valid = region.starts_with(|c: char| c.is_ascii_lowercase())
                    && region
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if !valid {
                    return Err(KafkaError::Config(format!(
                        "region {region:?} is not a Tencent Cloud region like \"ap-guangzhou\""
                    )));
                }
                Ok(match self.network {
                    Network::Private => format!("kafkaconsumer-{region}.cls.tencentyun.com:9095"),
                    Network::Public => format!("kafkaconsumer-{region}.cls.tencentcs.com:9096"),
                })
            }
            (None, None) => Err(KafkaError::Config(
                "set region (Tencent CLS) or bootstrap_servers".to_string(),
            )),
        }
    }
}

/// The librdkafka settings for `cfg`, given the SASL password (see [`KafkaConfig::password`]).
/// Auto-commit and automatic offset storing are always off.
pub fn client_config(
    cfg: &KafkaConfig,
    password: Option<&Secret>,
) -> Result<ClientSettings, KafkaError> {
    if cfg.topic.trim().is_empty() {
        return Err(KafkaError::Config("topic is empty".to_string()));
    }
    if cfg.group_id.trim().is_empty() {
        return Err(KafkaError::Config("group_id is empty".to_string()));
    }
    let mut s: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| s.push((k.to_string(), v.to_string()));
    set("bootstrap.servers", &cfg.bootstrap()?);
    let protocol = cfg.protocol()?;
    set("security.protocol", protocol.as_librdkafka());
    if protocol.sasl() {
        let Some(user) = cfg.username()? else {
            return Err(KafkaError::Config(
                "SASL needs a username: set logset_id (Tencent CLS) or username".to_string(),
            ));
        };
        let Some(password) = password else {
            return Err(KafkaError::Config("SASL needs a password".to_string()));
        };
        set("sasl.mechanisms", cfg.sasl_mechanism.as_librdkafka());
        set("sasl.username", user);
        set("sasl.password", password.expose());
    }
    set("group.id", cfg.group_id.trim());
    set(
        "auto.offset.reset",
        match cfg.start_position {
            StartPosition::Earliest => "earliest",
            StartPosition::Latest => "latest",
        },
    );
    set("enable.auto.commit", "false");
    set("enable.auto.offset.store", "false");
    set("client.id", "auditlake");
    if cfg.lag_report_secs > 0 {
        set(
            "statistics.interval.ms",
            &(cfg.lag_report_secs.saturating_mul(1000)).to_string(),
        );
    }
    for (k, v) in &cfg.librdkafka.0 {
        if RESERVED.contains(&k.as_str()) {
            return Err(KafkaError::Config(format!(
                "{k} cannot be set in [source.librdkafka]: it is managed by auditlake"
            )));
        }
        s.push((k.clone(), v.clone()));
    }
    Ok(ClientSettings(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> KafkaConfig {
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    const KEYS: &[(&str, &str)] = &[
        ("TENCENTCLOUD_SECRET_ID", "AKIDexample"),
        ("TENCENTCLOUD_SECRET_KEY", "keyEXAMPLE"),
    ];

    fn settings(toml_text: &str) -> Result<ClientSettings, KafkaError> {
        let cfg = parse(toml_text);
        let password = cfg.password(&env(KEYS))?;
        client_config(&cfg, password.as_ref())
    }

    #[test]
    fn cls_settings_are_exactly_what_tencent_documents() {
        let s = settings(
            r#"
            region = "ap-guangzhou"
            topic = "out-0a1b2c3d"
            logset_id = "0f8e7d6c-logset"
            group_id = "ciem"
            "#,
        )
        .expect("settings");
        let expected: Vec<(String, String)> = [
            (
                "bootstrap.servers",
                "kafkaconsumer-ap-guangzhou.cls.tencentyun.com:9095",
            ),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "0f8e7d6c-logset"),
            ("sasl.password", "AKIDexample#keyEXAMPLE"),
            ("group.id", "ciem"),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("client.id", "auditlake"),
            ("statistics.interval.ms", "30000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(s.0, expected);

        let public = settings(
            r#"
            region = "na-siliconvalley"
            network = "public"
            topic = "t"
            logset_id = "ls"
            start_position = "latest"
            "#,
        )
        .expect("settings");
        assert_eq!(
            public.get("bootstrap.servers"),
            Some("kafkaconsumer-na-siliconvalley.cls.tencentcs.com:9096")
        );
        assert_eq!(public.get("auto.offset.reset"), Some("latest"));
        assert_eq!(public.get("group.id"), Some("auditlake"));
    }

    #[test]
    fn secrets_come_from_files_and_never_show() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = dir.path().join("id");
        let key = dir.path().join("key");
        std::fs::write(&id, "AKIDfile\n").expect("write");
        std::fs::write(&key, "s3cr3tKEY\n").expect("write");
        let cfg = parse(&format!(
            "region = 'ap-beijing'\ntopic = 't'\nlogset_id = 'ls'\nsecret_id_file = '{}'\nsecret_key_file = '{}'\n[librdkafka]\n'ssl.key.password' = 'pem-pass'\n'fetch.wait.max.ms' = '100'\n",
            id.display(),
            key.display()
        ));
        let password = cfg.password(&env(&[])).expect("password");
        let s = client_config(&cfg, password.as_ref()).expect("settings");
        assert_eq!(s.get("sasl.password"), Some("AKIDfile#s3cr3tKEY"));
        assert_eq!(s.get("fetch.wait.max.ms"), Some("100"));
        for shown in [
            format!("{s:?}"),
            format!("{cfg:?}"),
            format!("{password:?}"),
        ] {
            assert!(
                !shown.contains("s3cr3tKEY") && !shown.contains("pem-pass"),
                "{shown}"
            );
        }
    }

    #[test]
    fn mistakes_are_clear_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "topic = 't'\n",
                "set region (Tencent CLS) or bootstrap_servers",
            ),
            (
                "region = 'ap-guangzhou'\nbootstrap_servers = 'h:1'\ntopic = 't'\nlogset_id = 'l'\n",
                "not both",
            ),
            (
                "region = 'ap-guangzhou.evil.com:1#'\ntopic = 't'\nlogset_id = 'l'\n",
                "not a Tencent Cloud region",
            ),
            (
                "region = 'ap-guangzhou'\ntopic = 't'\n",
                "SASL needs a username",
            ),
            (
                "bootstrap_servers = 'h:1'\ntopic = 't'\n[librdkafka]\n'enable.auto.commit' = 'true'\n",
                "managed by auditlake",
            ),
            ("bootstrap_servers = 'h:1'\ntopic = ' '\n", "topic is empty"),
        ];
        for (text, expected) in cases {
            let err = settings(text).expect_err(text);
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
        let cfg = parse("region = 'ap-guangzhou'\ntopic = 't'\nlogset_id = 'l'\n");
        let err = cfg.password(&env(&[])).expect_err("no keys");
        assert!(err.to_string().contains("TENCENTCLOUD_SECRET_ID"), "{err}");
        // A plain cluster needs no credentials at all.
        let s = settings("bootstrap_servers = '127.0.0.1:9092'\ntopic = 't'\n").expect("plain");
        assert_eq!(s.get("security.protocol"), Some("PLAINTEXT"));
        assert_eq!(s.get("sasl.password"), None);
        // SCRAM with a password variable.
        let cfg = parse(
            "bootstrap_servers = 'h:1'\ntopic = 't'\nusername = 'u'\nsasl_mechanism = 'SCRAM-SHA-512'\nsecurity_protocol = 'sasl_ssl'\npassword_env = 'PW'\n",
        );
        let pw = cfg.password(&env(&[("PW", "pw-value")])).expect("password");
        let s = client_config(&cfg, pw.as_ref()).expect("settings");
        assert_eq!(s.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(s.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(s.get("sasl.password"), Some("pw-value"));
    }
}

#[cfg(test)]
mod build_tests {
    use rdkafka::consumer::BaseConsumer;

    use super::*;

    /// librdkafka is built with what the issue asks for: SASL PLAIN and SCRAM over TLS, and
    /// snappy/LZ4 (client creation fails on settings the build does not support).
    #[test]
    fn librdkafka_supports_sasl_scram_tls_snappy_and_lz4() {
        let cfg: KafkaConfig = toml::from_str(
            "bootstrap_servers = '127.0.0.1:1'\ntopic = 't'\nusername = 'u'\nsecurity_protocol = 'sasl_ssl'\nsasl_mechanism = 'SCRAM-SHA-256'\n",
        )
        .expect("config");
        let settings = client_config(&cfg, Some(&Secret::new("pw"))).expect("settings");
        let consumer: Result<BaseConsumer, _> = settings.client_config().create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
        for codec in ["snappy", "lz4"] {
            let producer: Result<rdkafka::producer::BaseProducer, _> = ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:1")
                .set("compression.type", codec)
                .create();
            assert!(producer.is_ok(), "{codec}: {:?}", producer.err());
        }
    }
}
