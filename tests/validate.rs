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
