//! `auditlake validate`: checks configuration files without touching any cloud or broker.
//!
//! A file is a pipeline file (`[source]` …) or an accounts file (`[[account]]` …), told apart by
//! its top-level keys. Each file gets every check that needs no network: TOML syntax, unknown
//! keys, `${ENV_VAR}` interpolation, the source's own settings (Kafka endpoint and SASL
//! password, SQS settings), and that every secret a file points at can be read (its variable
//! is set or its file is readable). Secrets are read, never printed.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, PipelineConfig, SourceConfig};
use crate::normalize::Normalizer;
use crate::sources::kafka::{Secret, client_config};
use crate::sync::config::AccountsConfig;

/// What validating one file found.
#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    /// What the file configures, when it parsed (e.g. `pipeline "local": files source`).
    pub summary: Option<String>,
    /// Every problem, each saying what to change.
    pub problems: Vec<String>,
    /// The pipeline, when the file is a pipeline file that parsed.
    pub pipeline: Option<PipelineConfig>,
}

impl FileReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// A pipeline file (that parsed), which `run` would run.
    pub fn is_pipeline(&self) -> bool {
        self.pipeline.is_some()
    }
}

/// What `validate` checks besides the files' own text.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// The memory bound `run` would get.
    pub memory_limit_mib: u64,
    /// Check this machine's environment too: `${VAR}` set, every secret readable. Without it
    /// (`--no-environment`) an unset variable stands for a placeholder and secrets are not
    /// read: what a config repository's CI, or a user reading the shipped examples, checks.
    pub environment: bool,
}

/// How variables are looked up: the process environment, or (without the environment checks)
/// the environment with a placeholder for what is unset.
fn lookup(environment: bool) -> impl Fn(&str) -> Option<String> {
    move |name: &str| match crate::config::process_env(name) {
        Some(v) => Some(v),
        None if !environment => Some(format!("<{name}>")),
        None => None,
    }
}

/// `auditlake validate`: checks each of `paths` as `auditlake run --config <path>` would run
/// it — a file as one pipeline, a directory as one process running every pipeline file in it
/// (names and lakes across its files, and the memory bound for that many pipelines) — printing
/// one line per file and each problem under it. True when nothing has a problem.
pub fn check(paths: &[PathBuf], checks: Checks) -> Result<bool, ConfigError> {
    let env = lookup(checks.environment);
    let mut failed = 0;
    let mut any = false;
    for path in paths {
        let files = expand(std::slice::from_ref(path))?;
        any |= !files.is_empty();
        let mut pipelines = Vec::new();
        for file in &files {
            let report = validate_file_with(file, &env, checks.environment);
            print_report(&report);
            failed += usize::from(!report.ok());
            if let Some(cfg) = report.pipeline {
                pipelines.push((file.clone(), cfg));
            }
        }
        if pipelines.is_empty() {
            continue;
        }
        let process = if path.is_dir() {
            format!("{} as one process", path.display())
        } else {
            path.display().to_string()
        };
        let mut problems: Vec<String> = process_problems(&pipelines)
            .into_iter()
            .map(|(file, p)| format!("{}: {p}", file.display()))
            .collect();
        match crate::memory::plan(checks.memory_limit_mib, pipelines.len()) {
            Ok(plan) => println!(
                "memory limit: ok ({} MiB for {} pipeline(s): {} MiB each, a batch budget of {} MiB each)",
                checks.memory_limit_mib,
                pipelines.len(),
                plan.share_bytes >> 20,
                plan.batch_bytes >> 20
            ),
            Err(e) => problems.push(format!("memory limit: {e}")),
        }
        if !problems.is_empty() {
            failed += 1;
            println!("{process}: {} problem(s)", problems.len());
            for p in &problems {
                println!("  - {p}");
            }
        }
    }
    if !any {
        return Err(ConfigError::NoFiles);
    }
    if failed > 0 && checks.environment {
        println!(
            "(variables and secrets were checked against this machine's environment; \
             `auditlake validate --no-environment` checks the files alone)"
        );
    }
    Ok(failed == 0)
}

fn print_report(report: &FileReport) {
    let file = report.path.display();
    match (&report.summary, report.ok()) {
        (Some(summary), true) => println!("{file}: ok ({summary})"),
        (summary, _) => {
            let what = summary
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            println!("{file}: {} problem(s){what}", report.problems.len());
            for p in &report.problems {
                for (i, line) in p.lines().enumerate() {
                    println!("{}{line}", if i == 0 { "  - " } else { "    " });
                }
            }
        }
    }
}

/// What `run` refuses in a set of pipelines it would run in one process, each problem with the
/// file it is about: two pipelines with one name (metrics, logs and dead letters use it), or
/// two writing one lake under one writer name (each lake's writers need distinct `[sink]
/// instance` names, as separate processes sharing a lake do; at most one may be unnamed).
pub fn process_problems(pipelines: &[(PathBuf, PipelineConfig)]) -> Vec<(PathBuf, String)> {
    let mut problems = Vec::new();
    for (i, (file, cfg)) in pipelines.iter().enumerate() {
        for (other_file, other) in &pipelines[..i] {
            if other.name == cfg.name {
                problems.push((
                    file.clone(),
                    format!(
                        "pipeline name {:?} is also used by {}; give each pipeline its own `name` (metrics, logs and dead letters use it)",
                        cfg.name,
                        other_file.display()
                    ),
                ));
            }
            if lake_key(&other.sink.path) == lake_key(&cfg.sink.path)
                && other.sink.instance == cfg.sink.instance
            {
                let writer = match &cfg.sink.instance {
                    Some(name) => format!("with the same [sink] instance {name:?}"),
                    None => "both without [sink] instance".to_string(),
                };
                problems.push((
                    file.clone(),
                    format!(
                        "sink.path {} is also the lake of pipeline {:?} ({}), {writer}; pipelines sharing a lake need distinct `instance` names in [sink] (or give each its own sink.path)",
                        cfg.sink.path.display(),
                        other.name,
                        other_file.display()
                    ),
                ));
            }
        }
    }
    problems
}

/// A lake path made absolute and free of `.`/`..`, to compare two pipelines' lakes.
pub fn lake_key(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// What `run` checks of one pipeline before it starts it, beyond parsing: the source's settings
/// (with its secrets read when `environment`), the normalizer's, the writer's name, and that
/// the lake path is not a file.
pub fn pipeline_problems(
    cfg: &PipelineConfig,
    env: &dyn Fn(&str) -> Option<String>,
    environment: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    match &cfg.source {
        SourceConfig::Files(_) => {}
        SourceConfig::Kafka(k) => {
            let password = if environment {
                k.password(env)
            } else {
                Ok(Some(Secret::new("<not read>")))
            };
            match k.bootstrap().and(password) {
                Ok(password) => {
                    if let Err(e) = client_config(k, password.as_ref()) {
                        problems.push(format!("[source] {e}"));
                    }
                }
                Err(e) => problems.push(format!("[source] {e}")),
            }
        }
        SourceConfig::SqsS3(s) => {
            if let Err(e) = s.validate() {
                problems.push(format!("[source] {e}"));
            }
        }
    }
    if let Err(e) = Normalizer::new(&cfg.normalize) {
        problems.push(format!("[normalize] {e}"));
    }
    if let Some(instance) = &cfg.sink.instance
        && let Err(e) = crate::sink::journal::check_instance(instance)
    {
        problems.push(e.to_string());
    }
    problems.extend(cfg.sink.problems());
    if cfg.sink.path.is_file() {
        problems.push(format!(
            "[sink] path {} is a file, not a directory: point it at a directory (it is created when missing)",
            cfg.sink.path.display()
        ));
    }
    problems
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
    validate_file_with(path, env, true)
}

/// [`validate_file`], reading secrets only when `environment`.
pub fn validate_file_with(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    environment: bool,
) -> FileReport {
    let mut report = FileReport {
        path: path.to_path_buf(),
        summary: None,
        problems: Vec::new(),
        pipeline: None,
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
        match AccountsConfig::parse_with_env(&text, path, env) {
            Ok(cfg) => {
                report.summary = Some(format!(
                    "accounts file: {} account(s), lake {}",
                    cfg.accounts.len(),
                    cfg.lake.display()
                ));
                for account in cfg.accounts.iter().filter(|_| environment) {
                    if let Err(e) = account.credentials.load(&account.name) {
                        report.problems.push(format!("credentials: {e}"));
                    }
                }
            }
            Err(e) => report.problems.push(message(&e)),
        }
        return report;
    }
    match PipelineConfig::parse_with_env(&text, path, env) {
        Ok(cfg) => {
            report.problems = pipeline_problems(&cfg, env, environment);
            let source = match &cfg.source {
                SourceConfig::Files(inbox) => format!("files source {}", inbox.path.display()),
                SourceConfig::Kafka(k) => match k.bootstrap() {
                    Ok(servers) => format!("kafka source {servers}, topic {}", k.topic),
                    Err(_) => "kafka source".to_string(),
                },
                SourceConfig::SqsS3(s) => format!("sqs_s3 source {}", s.queue_url),
            };
            let sink = match &cfg.sink.s3 {
                Some(s3) => format!("lake s3://{}/{}", s3.bucket, s3.prefix),
                None => format!("lake {}", cfg.sink.path.display()),
            };
            report.summary = Some(format!("pipeline {:?}: {source}, {sink}", cfg.name));
            if let Some(accounts) = &cfg.accounts {
                let accounts = resolve(path, accounts);
                let inner = validate_file_with(&accounts, env, environment);
                for p in inner.problems {
                    report
                        .problems
                        .push(format!("accounts = {}: {p}", accounts.display()));
                }
            }
            report.pipeline = Some(cfg);
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
        let files = expand(&[dir.clone(), dir.join("docker")]).expect("expand");
        assert!(files.len() >= 7, "{files:?}");
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
