//! A private PostgreSQL cluster on a loopback port for the tests (the shared Iceberg catalog of
//! several hosts): Debian's `postgresql` binaries (`AUDITLAKE_PG_BIN`, else
//! `/usr/lib/postgresql/<newest>/bin`), `initdb` into a temporary directory, stopped when
//! dropped. As root the cluster runs as the `postgres` user, as PostgreSQL requires.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    _dir: tempfile::TempDir,
    pub port: u16,
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AUDITLAKE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("PostgreSQL not found under /usr/lib/postgresql: run `bash tests/run.sh` (it installs Debian's postgresql as root) or set AUDITLAKE_PG_BIN")
    })
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:", dir.path().to_str().expect("path")])
                .status()
                .expect("chown");
            assert!(ok.success(), "chown the cluster directory to postgres");
        }
        let port = super::free_port();
        let pg = Postgres {
            bin,
            data,
            as_postgres,
            _dir: dir,
            port,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                pg.data.to_str().expect("path"),
                "-U",
                "auditlake",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {}",
            pg.data.display()
        );
        pg.run(
            "pg_ctl",
            &[
                "-D",
                pg.data.to_str().expect("path"),
                "-o",
                &opts,
                "-l",
                pg.data.join("log").to_str().expect("path"),
                "-w",
                "start",
            ],
        );
        pg
    }

    /// A PostgreSQL tool as the cluster's owner (`postgres` when we are root).
    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args);
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool, args)
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URI of the cluster's `postgres` database.
    pub fn uri(&self) -> String {
        format!("postgres://auditlake@127.0.0.1:{}/postgres", self.port)
    }

    pub fn data(&self) -> &Path {
        &self.data
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap_or_default().to_string();
        let _ = self
            .command("pg_ctl", &["-D", &data, "-m", "immediate", "stop"])
            .output();
    }
}
