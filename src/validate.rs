//! `auditlake validate`: checks configuration files without touching any cloud or broker.
//!
//! A file is a pipeline file (`[source]` …) or an accounts file (`[[account]]` …), told apart by
//! its top-level keys. Each file gets every check that needs no network: TOML syntax, unknown
//! keys, `${ENV_VAR}` interpolation, the source's own settings (Kafka endpoint and SASL
//! password, SQS settings), and that every secret a file points at can be read (its variable
//! is set or its file is readable). Secrets are read, never printed.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, PipelineConfig, SourceConfig};
use crate::sync::config::AccountsConfig;

/// What validating one file found.
#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    /// What the file configures, when it parsed (e.g. `pipeline "local": files source`).
    pub summary: Option<String>,
    /// Every problem, each saying what to change.
    pub problems: Vec<String>,
}

impl FileReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// A pipeline file (that parsed), which `run` would run.
    pub fn is_pipeline(&self) -> bool {
        self.summary
            .as_deref()
            .is_some_and(|s| s.starts_with("pipeline "))
    }
}

/// `auditlake validate`: checks every config file of `paths` (a directory: each `*.toml` in
/// it) and the memory bound `run` would get for its pipelines, printing one line per file and
/// each problem under it. True when nothing has a problem.
pub fn check(paths: &[PathBuf], memory_limit_mib: u64) -> Result<bool, ConfigError> {
    let files = expand(paths)?;
    if files.is_empty() {
        return Err(ConfigError::NoFiles);
    }
    let env = |name: &str| std::env::var(name).ok();
    let mut failed = 0;
    let mut pipelines = 0;
    for file in &files {
        let report = validate_file(file, &env);
        pipelines += usize::from(report.is_pipeline());
        match (&report.summary, report.ok()) {
            (Some(summary), true) => println!("{}: ok ({summary})", file.display()),
            (summary, _) => {
                failed += 1;
                let what = summary
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                println!(
                    "{}: {} problem(s){what}",
                    file.display(),
                    report.problems.len()
                );
                for p in &report.problems {
                    for (i, line) in p.lines().enumerate() {
                        println!("{}{line}", if i == 0 { "  - " } else { "    " });
                    }
                }
            }
        }
    }
    if pipelines > 0 {
        match crate::memory::plan(memory_limit_mib, pipelines) {
            Ok(plan) => println!(
                "memory limit: ok ({memory_limit_mib} MiB for {pipelines} pipeline(s): {} MiB each, a batch budget of {} MiB each)",
                plan.share_bytes >> 20,
                plan.batch_bytes >> 20
            ),
            Err(e) => {
                failed += 1;
                println!("memory limit: 1 problem(s)\n  - {e}");
            }
        }
    }
    Ok(failed == 0)
}

/// Expands directories into the `*.toml` files directly inside them (sorted), keeps files.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let read_err = |source| ConfigError::Read {
                path: path.clone(),
                reason: source,
            };
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(read_err)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(read_err)?;
            found.retain(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"));
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Validates one file; `env` looks environment variables up (the process environment in
/// production) for the secrets checks.
pub fn validate_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> FileReport {
    let mut report = FileReport {
        path: path.to_path_buf(),
        summary: None,
        problems: Vec::new(),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            report
                .problems
                .push(format!("cannot read the file: {e}; check the path"));
            return report;
        }
    };
    if is_accounts_file(&text) {
        match AccountsConfig::parse(&text, path) {
            Ok(cfg) => {
                report.summary = Some(format!(
                    "accounts file: {} account(s), lake {}",
                    cfg.accounts.len(),
                    cfg.lake.display()
                ));
                for account in &cfg.accounts {
                    if let Err(e) = account.credentials.load(&account.name) {
                        report.problems.push(format!("credentials: {e}"));
                    }
                }
            }
            Err(e) => report.problems.push(message(&e)),
        }
        return report;
    }
    match PipelineConfig::parse(&text, path) {
        Ok(cfg) => {
            let source = match &cfg.source {
                SourceConfig::Files(inbox) => format!("files source {}", inbox.path.display()),
                SourceConfig::Kafka(k) => match k.bootstrap() {
                    Ok(servers) => {
                        if let Err(e) = k.password(env) {
                            report.problems.push(format!("[source] {e}"));
                        }
                        format!("kafka source {servers}, topic {}", k.topic)
                    }
                    Err(e) => {
                        report.problems.push(format!("[source] {e}"));
                        "kafka source".to_string()
                    }
                },
                SourceConfig::SqsS3(s) => format!("sqs_s3 source {}", s.queue_url),
            };
            let sink = match &cfg.sink.s3 {
                Some(s3) => format!("lake s3://{}/{}", s3.bucket, s3.prefix),
                None => format!("lake {}", cfg.sink.path.display()),
            };
            report.summary = Some(format!("pipeline {:?}: {source}, {sink}", cfg.name));
            if let Some(instance) = &cfg.sink.instance
                && let Err(e) = crate::sink::journal::check_instance(instance)
            {
                report.problems.push(e.to_string());
            }
            if let Some(accounts) = &cfg.accounts {
                let accounts = resolve(path, accounts);
                let inner = validate_file(&accounts, env);
                for p in inner.problems {
                    report
                        .problems
                        .push(format!("accounts = {}: {p}", accounts.display()));
                }
            }
        }
        Err(e) => report.problems.push(message(&e)),
    }
    report
}

/// A relative path in a config is relative to the working directory, as everywhere else in
/// auditlake; fall back to the config's directory when that is where the file is.
fn resolve(config: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    match config.parent() {
        Some(dir) if dir.join(path).exists() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// True for an accounts file (top-level `[[account]]`, no `[source]`), not a pipeline file.
pub fn is_accounts_file(text: &str) -> bool {
    match text.parse::<toml::Table>() {
        Ok(table) => table.contains_key("account") && !table.contains_key("source"),
        Err(_) => false,
    }
}

/// The error without the file name (the report prints it once).
fn message(e: &ConfigError) -> String {
    match e {
        ConfigError::Invalid { message, .. } => message.trim_end().to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn every_shipped_config_parses_and_names_what_it_runs() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
        let files = expand(std::slice::from_ref(&dir)).expect("expand");
        assert!(files.len() >= 5, "{files:?}");
        for file in files {
            let report = validate_file(&file, &no_env);
            let summary = report.summary.unwrap_or_default();
            assert!(
                !summary.is_empty(),
                "{}: {:?}",
                file.display(),
                report.problems
            );
            // Secrets are not set here, and the shipped files must say which are missing
            // rather than fail to parse.
            for p in &report.problems {
                assert!(
                    p.contains("not set") || p.contains("credentials") || p.contains("password"),
                    "{}: {p}",
                    file.display()
                );
            }
        }
    }

    #[test]
    fn problems_name_the_key_and_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let typo = write(
            dir.path(),
            "typo.toml",
            "[source]\ntype = \"files\"\npath = \"x\"\npoll_secs = 1\n",
        );
        let r = validate_file(&typo, &no_env);
        assert!(!r.ok());
        assert!(r.problems[0].contains("poll_secs"), "{:?}", r.problems);
        assert!(
            r.problems[0].contains("poll_interval_secs"),
            "{:?}",
            r.problems
        );

        let unset = write(
            dir.path(),
            "unset.toml",
            "[source]\ntype = \"files\"\npath = \"${AUDITLAKE_TEST_UNSET_INBOX}\"\n",
        );
        let r = validate_file(&unset, &no_env);
        assert!(
            r.problems[0].contains("AUDITLAKE_TEST_UNSET_INBOX is not set")
                && r.problems[0].contains("line 3"),
            "{:?}",
            r.problems
        );

        let kafka = write(
            dir.path(),
            "kafka.toml",
            "[source]\ntype = \"kafka\"\nregion = \"ap-guangzhou\"\nbootstrap_servers = \"a:1\"\ntopic = \"t\"\nlogset_id = \"l\"\n",
        );
        let r = validate_file(&kafka, &no_env);
        assert!(
            r.problems.iter().any(|p| p.contains("not both")),
            "{:?}",
            r.problems
        );

        let good = write(
            dir.path(),
            "good.toml",
            "name = \"x\"\n[source]\ntype = \"files\"\npath = \"inbox\"\n",
        );
        let r = validate_file(&good, &no_env);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(
            r.summary.as_deref(),
            Some("pipeline \"x\": files source inbox, lake ./lake")
        );
    }
}
