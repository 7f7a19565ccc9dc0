//! `auditlake validate`: what an operator sees when checking configs before deploying them.

mod common;

use std::process::Command;

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
