//! `auditlake validate`: what an operator sees when checking configs before deploying them.

mod common;

use std::process::Command;

use common::{auditlake, fixtures};

#[test]
fn validate_reports_every_file_and_exits_2_on_a_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("a-good.toml"),
        "name = \"good\"\n[source]\ntype = \"files\"\npath = \"${AUDITLAKE_TEST_INBOX}\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("b-typo.toml"),
        "[source]\ntype = \"files\"\npath = \"x\"\n[sink]\npath = \"lake\"\nzstd = 3\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a config").expect("write");

    let out = Command::new(common::bin())
        .args(["validate"])
        .arg(dir.path())
        .env("AUDITLAKE_TEST_INBOX", "/srv/inbox")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout
            .contains("a-good.toml: ok (pipeline \"good\": files source /srv/inbox, lake ./lake)"),
        "{stdout}"
    );
    assert!(stdout.contains("b-typo.toml: 1 problem(s)"), "{stdout}");
    assert!(stdout.contains("unknown field `zstd`"), "{stdout}");
    assert!(stdout.contains("zstd_level"), "the fix is named: {stdout}");
    assert!(!stdout.contains("notes.txt"), "{stdout}");

    // Only the good file, with its variable set: exit 0.
    let out = Command::new(common::bin())
        .args(["validate"])
        .arg(dir.path().join("a-good.toml"))
        .env("AUDITLAKE_TEST_INBOX", "/srv/inbox")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn validate_checks_secrets_are_readable_without_printing_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kafka.toml");
    std::fs::write(
        &config,
        "[source]\ntype = \"kafka\"\nregion = \"ap-guangzhou\"\ntopic = \"out-1\"\nlogset_id = \"ls-1\"\nsecret_id_env = \"AUDITLAKE_TEST_SID\"\nsecret_key_env = \"AUDITLAKE_TEST_SKEY\"\n",
    )
    .expect("write");
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = Command::new(common::bin());
        cmd.arg("validate").arg(&config);
        cmd.env_remove("AUDITLAKE_TEST_SID")
            .env_remove("AUDITLAKE_TEST_SKEY");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().expect("run")
    };
    let missing = run(&[("AUDITLAKE_TEST_SID", "AKIDsecretid")]);
    let text = String::from_utf8_lossy(&missing.stdout).to_string()
        + &String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{text}");
    assert!(text.contains("AUDITLAKE_TEST_SKEY"), "{text}");
    assert!(
        !text.contains("AKIDsecretid"),
        "a secret was printed: {text}"
    );

    let set = run(&[
        ("AUDITLAKE_TEST_SID", "AKIDsecretid"),
        ("AUDITLAKE_TEST_SKEY", "topsecretkey"),
    ]);
    let text =
        String::from_utf8_lossy(&set.stdout).to_string() + &String::from_utf8_lossy(&set.stderr);
    assert_eq!(set.status.code(), Some(0), "{text}");
    assert!(
        text.contains("kafka source kafkaconsumer-ap-guangzhou.cls.tencentyun.com:9095"),
        "{text}"
    );
    assert!(
        !text.contains("AKIDsecretid") && !text.contains("topsecretkey"),
        "{text}"
    );
}

/// docker-compose.yml cannot be run here (no Docker engine), so this keeps it honest: it is
/// valid YAML, every pipeline file a service runs exists and validates, every host path it
/// mounts from the repository exists, and the image puts the pipeline files where the
/// services look for them.
#[test]
fn compose_file_runs_shipped_configs_that_validate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(common::python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(root.join("docker-compose.yml"))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "docker-compose.yml is not valid YAML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compose: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let services = compose["services"].as_object().expect("services");
    let mut configs = Vec::new();
    for (name, service) in services {
        if let Some(args) = service["command"].as_array() {
            for arg in args.iter().filter_map(|a| a.as_str()) {
                if let Some(file) = arg.strip_prefix("/etc/auditlake/pipelines/") {
                    configs.push((name.clone(), file.to_string()));
                }
            }
        }
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let host = volume
                .as_str()
                .and_then(|v| v.split(':').next())
                .unwrap_or_default();
            if host.starts_with("./tests") || host.starts_with("./pipelines") {
                assert!(root.join(host).exists(), "{name} mounts missing {host}");
            }
        }
    }
    assert!(configs.len() >= 3, "{configs:?}");
    for (service, file) in &configs {
        let path = root.join("pipelines").join(file);
        let out = Command::new(common::bin())
            .arg("validate")
            .arg(&path)
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(0),
            "service {service} runs {file}, which does not validate:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("COPY pipelines /etc/auditlake/pipelines"),
        "the image must ship the pipeline files"
    );
}

#[test]
fn a_memory_limit_too_small_for_the_pipelines_is_refused_by_validate_and_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["a", "b", "c"] {
        std::fs::write(
            dir.path().join(format!("{name}.toml")),
            format!(
                "name = \"{name}\"\n[source]\ntype = \"files\"\npath = \"{inbox}\"\n[sink]\npath = \"{lake}\"\n",
                inbox = dir.path().join(format!("inbox-{name}")).display(),
                lake = dir.path().join(format!("lake-{name}")).display(),
            ),
        )
        .expect("write");
    }
    let validate = |limit: &str| {
        Command::new(common::bin())
            .arg("validate")
            .arg(dir.path())
            .env("AUDITLAKE_MEMORY_LIMIT_MIB", limit)
            .output()
            .expect("run")
    };
    let out = validate("200");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("memory limit of 200 MiB is too small for 3 pipeline(s)")
            && stdout.contains("at least 360 MiB"),
        "{stdout}"
    );
    let out = validate("360");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("memory limit: ok (360 MiB for 3 pipeline(s)"),
        "{stdout}"
    );

    // `run` refuses to start with the same message, before reading anything.
    let out = Command::new(common::bin())
        .args(["run", "--memory-limit-mib", "200", "--config"])
        .arg(dir.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("memory limit of 200 MiB is too small for 3 pipeline(s)"),
        "{stderr}"
    );
    assert!(!dir.path().join("lake-a").exists(), "nothing was started");
}

#[test]
fn errors_name_their_cause_once_and_a_file_given_as_lake_is_called_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let input = fixtures().join("samples/aws-cloudtrail");
    let input = input.to_str().expect("path");

    let out = auditlake(&["replay", input, "--out", file.to_str().expect("path")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is a file, not a directory"), "{err}");

    let below = file.join("lake");
    let out = auditlake(&["replay", input, "--out", below.to_str().expect("path")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("os error 20").count(), 1, "said once: {err}");
}

/// `auditlake validate <path>`: exit status and stdout.
fn validate(path: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(common::bin())
        .arg("validate")
        .arg(path)
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs `auditlake run --config <config>`, which must refuse to start: exit status 2 within a
/// minute (a pipeline restarted with backoff would never exit). Returns stderr.
fn run_refuses(config: &std::path::Path) -> String {
    let mut child = Command::new(common::bin())
        .arg("run")
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "run --config {} did not refuse to start: {}",
                config.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(status.code(), Some(2), "{}: {stderr}", config.display());
    stderr
}

/// `validate <path>` must refuse what `run --config <path>` refuses, for the same reason:
/// each case is a config `run` rejects before reading anything, as a file and inside a
/// directory (where `run` supervises its pipelines and restarted a bad one forever).
#[test]
fn validate_catches_everything_run_rejects_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let lake_file = root.join("lake-is-a-file");
    std::fs::write(&lake_file, "x").expect("write");
    let inbox = root.join("inbox");
    let kafka =
        "[source]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:9\"\ngroup_id = \"g\"\n";
    let sqs =
        "[source]\ntype = \"sqs_s3\"\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n";
    let files = format!(
        "[source]\ntype = \"files\"\npath = \"{}\"\n",
        inbox.display()
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown-key", format!("{files}poll_secs = 1\n"), "poll_secs"),
        ("unset-variable", "[source]\ntype = \"files\"\npath = \"${AUDITLAKE_TEST_UNSET_X}\"\n".into(), "AUDITLAKE_TEST_UNSET_X"),
        ("kafka-empty-topic", format!("{kafka}topic = \" \"\n"), "topic is empty"),
        ("kafka-reserved-key", format!("{kafka}topic = \"t\"\n[source.librdkafka]\n\"enable.auto.commit\" = \"true\"\n"), "managed by auditlake"),
        ("kafka-missing-secret", "[source]\ntype = \"kafka\"\nregion = \"ap-guangzhou\"\ntopic = \"t\"\nlogset_id = \"l\"\nsecret_id_env = \"AUDITLAKE_TEST_UNSET_SID\"\nsecret_key_env = \"AUDITLAKE_TEST_UNSET_SKEY\"\n".into(), "AUDITLAKE_TEST_UNSET_SID"),
        ("sqs-wait-time", format!("{sqs}wait_time_secs = 30\n"), "wait_time_secs must be between 0 and 20"),
        ("normalize-offset", format!("{files}[normalize]\ntencent_zoneless_time_offset = \"+25:00\"\n"), "tencent_zoneless_time_offset"),
        ("instance-name", format!("{files}[sink]\ninstance = \"a/b\"\n"), "instance"),
        ("lake-is-a-file", format!("{files}[sink]\npath = \"{}\"\n", lake_file.display()), "is a file, not a directory"),
        ("iceberg-s3-local-warehouse", format!("{files}[sink]\nformat = \"iceberg\"\n[sink.s3]\nbucket = \"b\"\nregion = \"us-east-1\"\n[sink.iceberg]\nwarehouse = \"/tmp/w\"\n"), "warehouse = \"/tmp/w\" is a local path"),
        ("glue-without-s3", format!("{files}[sink]\nformat = \"iceberg\"\n[sink.iceberg]\ncatalog = \"glue\"\n"), "add [sink.s3]"),
        ("rest-without-uri", format!("{files}[sink]\nformat = \"iceberg\"\n[sink.iceberg]\ncatalog = \"rest\"\n"), "needs catalog_uri"),
        ("iceberg-without-format", format!("{files}[sink]\n[sink.iceberg]\nnamespace = \"x\"\n"), "add format = \"iceberg\""),
    ];
    for (name, text, says) in &cases {
        let file = root.join(format!("{name}.toml"));
        std::fs::write(&file, text).expect("write");
        refused_alike(&file, says);

        // The same file with a good one, as a directory `run` supervises.
        let process = root.join(format!("dir-{name}"));
        std::fs::create_dir(&process).expect("mkdir");
        std::fs::write(process.join("bad.toml"), text).expect("write");
        std::fs::write(
            process.join("good.toml"),
            format!(
                "name = \"good\"\n{files}[sink]\npath = \"{}\"\n",
                root.join("lake-good").display()
            ),
        )
        .expect("write");
        refused_alike(&process, says);
    }

    // Across the files of one directory: a name used twice, a lake written by two unnamed
    // pipelines.
    for (name, second, says) in [
        (
            "same-name",
            format!(
                "name = \"a\"\n{files}[sink]\npath = \"{}\"\n",
                root.join("lake-2").display()
            ),
            "pipeline name \"a\" is also used by",
        ),
        (
            "same-lake",
            format!(
                "name = \"b\"\n{files}[sink]\npath = \"{}\"\n",
                root.join("lake-1").display()
            ),
            "is also the lake of pipeline \"a\"",
        ),
    ] {
        let process = root.join(name);
        std::fs::create_dir(&process).expect("mkdir");
        std::fs::write(
            process.join("a.toml"),
            format!(
                "name = \"a\"\n{files}[sink]\npath = \"{}\"\n",
                root.join("lake-1").display()
            ),
        )
        .expect("write");
        std::fs::write(process.join("b.toml"), second).expect("write");
        refused_alike(&process, says);
        // Each file alone is fine.
        let (code, stdout) = validate(&process.join("b.toml"));
        assert_eq!(code, Some(0), "{stdout}");
    }
}

/// `validate <path>` exits 2 and `run --config <path>` refuses to start, both saying `says`.
fn refused_alike(path: &std::path::Path, says: &str) {
    let (code, stdout) = validate(path);
    assert_eq!(code, Some(2), "validate {}: {stdout}", path.display());
    assert!(
        stdout.contains(says),
        "validate must say {says:?}: {stdout}"
    );
    let stderr = run_refuses(path);
    assert!(stderr.contains(says), "run must say {says:?}: {stderr}");
}

/// The shipped examples validate as shipped: each file, and each directory as the one process
/// `run --config <dir>` would run — without this machine's secrets (`--no-environment`), and
/// in full once the variables the examples name are set.
#[test]
fn the_shipped_examples_validate_as_shipped() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let validate = |args: &[&std::path::Path], flags: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(common::bin())
            .arg("validate")
            .args(flags)
            .args(args)
            .env_remove("TENCENTCLOUD_SECRET_ID")
            .env_remove("AUDITLAKE_AWS_PROD_ACCESS_KEY_ID")
            .envs(env.iter().copied())
            .current_dir(root)
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for dir in ["pipelines", "pipelines/docker"] {
        let dir = root.join(dir);
        let (code, stdout) = validate(&[&dir], &["--no-environment"], &[]);
        assert_eq!(code, Some(0), "{}: {stdout}", dir.display());
        assert!(stdout.contains("memory limit: ok"), "{stdout}");
        for file in std::fs::read_dir(&dir).expect("read_dir") {
            let file = file.expect("entry").path();
            if file.extension().is_some_and(|x| x == "toml") {
                let (code, stdout) = validate(&[&file], &["--no-environment"], &[]);
                assert_eq!(code, Some(0), "{stdout}");
            }
        }
    }
    // Without the variables the examples name, the full check says which are missing ...
    let pipelines = root.join("pipelines");
    let (code, stdout) = validate(&[&pipelines], &[], &[]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stdout.contains("TENCENTCLOUD_SECRET_ID"), "{stdout}");
    assert!(
        stdout.contains("--no-environment"),
        "the way to check the files alone is named: {stdout}"
    );
    // ... and passes once they are set.
    let secrets = [
        ("TENCENTCLOUD_SECRET_ID", "AKIDexample"),
        ("TENCENTCLOUD_SECRET_KEY", "example"),
        ("AUDITLAKE_AWS_PROD_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AUDITLAKE_AWS_PROD_SECRET_ACCESS_KEY", "example"),
    ];
    let (code, stdout) = validate(&[&pipelines], &[], &secrets);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        !stdout.contains("AKIDexample"),
        "secrets are never printed: {stdout}"
    );
}

/// Pipelines of one process may share a lake when each writer has its own `[sink] instance`
/// (at most one unnamed), as processes sharing a lake do: `validate` accepts the directory and
/// `run` writes both pipelines' events into the one lake.
#[test]
fn pipelines_of_one_process_share_a_lake_under_distinct_instance_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let lake = root.join("lake");
    let process = root.join("pipelines");
    std::fs::create_dir(&process).expect("mkdir");
    for (name, instance) in [("a", ""), ("b", "instance = \"b\"\n")] {
        let inbox = root.join(format!("inbox-{name}"));
        std::fs::create_dir(&inbox).expect("mkdir");
        std::fs::write(
            inbox.join(format!("{name}.json")),
            common::cloudtrail_file(name, 3, 0),
        )
        .expect("write");
        std::fs::write(
            process.join(format!("{name}.toml")),
            format!(
                "name = \"{name}\"\n[source]\ntype = \"files\"\npath = \"{}\"\npoll_interval_secs = 1\n[sink]\npath = \"{}\"\n{instance}[flush]\nmax_age_secs = 1\n",
                inbox.display(),
                lake.display()
            ),
        )
        .expect("write");
    }
    let (code, stdout) = validate(&process);
    assert_eq!(code, Some(0), "{stdout}");

    let mut child = Command::new(common::bin())
        .arg("run")
        .arg("--config")
        .arg(&process)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let count = || common::event_count(&lake);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count() < 6 && std::time::Instant::now() < deadline {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "run exited early"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(count(), 6, "{log}");
    assert!(lake.join("_auditlake/journal.jsonl").exists(), "{log}");
    assert!(lake.join("_auditlake/journal-b.jsonl").exists(), "{log}");
}
