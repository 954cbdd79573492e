//! A private PostgreSQL cluster for one test, which the test may stop and start again: for the
//! fault tests that restart the database under load (the shared server of
//! `SSPR_TEST_POSTGRES_URL` must never be restarted by a test).
//!
//! The cluster is made with `initdb` in a temporary directory and run with `pg_ctl` on a free
//! loopback port, with trust authentication for `postgres` on 127.0.0.1 only. PostgreSQL refuses
//! to run as root, so when this process is root the commands run as the `postgres` user
//! (`runuser -u postgres`) and the directory is handed to that user.
//!
//! Invariants: the cluster listens on 127.0.0.1 only, on a port nobody else was given, keeps its
//! data in a directory the fixture owns, and is stopped (immediate mode) and removed on drop.
//! `start` and `restart` return once the server accepts connections; data written before
//! `stop` is still there after `restart` (the data directory is kept, fsync stays on).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::process::Command;

use crate::support::free_port;

/// A running (or stopped) private PostgreSQL cluster.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin_dir: PathBuf,
    dir: TempDir,
    port: u16,
    /// Run the server's commands as the `postgres` user (this process is root).
    as_postgres: bool,
    running: bool,
}

impl PrivatePostgres {
    /// Where the server binaries are: the newest `/usr/lib/postgresql/<version>/bin` with
    /// `initdb` and `pg_ctl`, else `initdb` on `PATH`.
    fn find_bin_dir() -> Option<PathBuf> {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
                    .then_some((version, bin))
            })
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Some(bin);
        }
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        })
    }

    /// Whether this machine can run a private cluster (server binaries installed, and a
    /// `postgres` user when running as root).
    pub fn available() -> bool {
        Self::find_bin_dir().is_some() && (!is_root() || postgres_user_exists())
    }

    /// Creates a cluster with `initdb` and starts it.
    pub async fn start() -> anyhow::Result<PrivatePostgres> {
        let bin_dir = Self::find_bin_dir().context(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install the postgresql package",
        )?;
        let as_postgres = is_root();
        if as_postgres && !postgres_user_exists() {
            bail!("running as root and there is no postgres user to run PostgreSQL as");
        }
        let dir = tempfile::Builder::new()
            .prefix("sspr-pg-")
            .tempdir()
            .context("creating the cluster directory")?;
        let mut pg = PrivatePostgres {
            bin_dir,
            dir,
            port: free_port().context("picking a PostgreSQL port")?,
            as_postgres,
            running: false,
        };
        if pg.as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .await
                .context("chown of the cluster directory")?;
            if !status.success() {
                bail!("chown postgres of {} failed", pg.dir.path().display());
            }
        }
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
            Duration::from_secs(120),
        )
        .await?;
        pg.restart().await?;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server: `fast` mode (clients disconnected, clean shutdown), or `immediate`
    /// (like a crash: no checkpoint, recovery at the next start) when `crash` is set.
    pub async fn stop(&mut self, crash: bool) -> anyhow::Result<()> {
        let data = self.data_dir();
        let mode = if crash { "immediate" } else { "fast" };
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
            Duration::from_secs(60),
        )
        .await?;
        self.running = false;
        Ok(())
    }

    /// Starts the server (again) on the same port with the same data; returns once it accepts
    /// connections.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let data = self.data_dir();
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
            Duration::from_secs(90),
        )
        .await?;
        self.running = true;
        Ok(())
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    async fn run(
        &self,
        tool: &str,
        args: &[&std::ffi::OsStr],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let program = self.bin_dir.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = tokio::time::timeout(timeout, command.output())
            .await
            .with_context(|| format!("{tool} did not finish within {timeout:?}"))?
            .with_context(|| format!("running {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{tool} failed ({}): {}{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.log_text()
            );
        }
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let data = self.data_dir();
        let program = self.bin_dir.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        let _ = command
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    // `id -u` avoids unsafe libc calls; only asked once per fixture.
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn postgres_user_exists() -> bool {
    std::process::Command::new("id")
        .arg("postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
