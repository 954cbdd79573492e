//! Runs a service binary as a child process, for the tests of the process contract every
//! `sspr-<svc>` binary keeps: a bad setting is exactly one clear line on stderr
//! (`sspr-<svc>: ...` naming the variable, never echoing a secret) and exit code 2, never a
//! panic; a started binary answers `/healthz` and `/readyz` with 200 on its metrics address and
//! exits 0 on SIGTERM.
//!
//! Invariants: the child starts from an EMPTY environment plus `PATH` and the variables the test
//! sets, so a developer's `SSPR_*` or `OTEL_*` variables never leak into a scenario; every wait
//! has a deadline; a child is killed when its handle (or the future waiting on it) is dropped;
//! stdout and stderr are drained concurrently so a chatty child never blocks on a full pipe.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use sspr_testkit::ServiceBinary;
//! let policy = ServiceBinary::new("/path/to/sspr-policy"); // env!("CARGO_BIN_EXE_sspr-policy")
//! // A scenario decided by the settings alone (no NATS, no metrics port, scratch data dir).
//! let short_key = "c2hvcnQ=";
//! policy
//!     .clone()
//!     .settings_only()
//!     .run_with(&[("SSPR_CODE_KEY", short_key)])
//!     .await
//!     .assert_config_error("SSPR_CODE_KEY")
//!     .assert_not_echoed(short_key);
//!
//! // The real thing: SSPR_NATS_URL, SSPR_DATA_DIR (a temp dir) and SSPR_METRICS_ADDR (a free
//! // port) are set; `start` returns once /healthz and /readyz answer 200.
//! let nats = sspr_testkit::NatsServer::start().await?;
//! let mut service = policy.start(&nats, Duration::from_secs(30)).await?;
//! // ... `service.eventually(timeout, || bus.request(..))` until it answers over NATS ...
//! service.terminate(Duration::from_secs(20)).await?.assert_clean_exit();
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::nats::NatsServer;
use crate::support::free_port;

/// A NATS URL nothing listens on, for scenarios that must fail on their settings before they
/// try to connect.
pub const UNREACHABLE_NATS_URL: &str = "nats://127.0.0.1:1";

const DATA_DIR: &str = "SSPR_DATA_DIR";
/// The limit of [`ServiceBinary::run_with`].
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often readiness and [`RunningService::eventually`] retry.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Upper bound for one HTTP probe, so a stuck connection cannot eat the whole deadline.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the output pipes to close once the child has exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How many trailing stderr lines an error message carries.
const TAIL_LINES: usize = 20;

/// A service binary and the environment to start it with; cheap to clone, so a test file can
/// build its common settings once and add one bad setting per scenario.
#[derive(Debug, Clone)]
pub struct ServiceBinary {
    path: PathBuf,
    args: Vec<OsString>,
    env: BTreeMap<OsString, OsString>,
    /// Give each run a fresh temporary `SSPR_DATA_DIR` unless the test sets one.
    scratch_data_dir: bool,
}

impl ServiceBinary {
    /// The binary at `path` (usually `env!("CARGO_BIN_EXE_sspr-<svc>")`) with an environment of
    /// only this process's `PATH`.
    pub fn new(path: impl Into<PathBuf>) -> ServiceBinary {
        let mut env = BTreeMap::new();
        if let Some(path) = std::env::var_os("PATH") {
            env.insert(OsString::from("PATH"), path);
        }
        ServiceBinary {
            path: path.into(),
            args: Vec::new(),
            env,
            scratch_data_dir: false,
        }
    }

    /// For scenarios decided by the settings alone: `SSPR_NATS_URL` points where nothing listens
    /// ([`UNREACHABLE_NATS_URL`]), `SSPR_METRICS_ADDR` is `off` (nothing binds a port), and each
    /// run gets a fresh temporary `SSPR_DATA_DIR` (nothing touches real data). Later `env` calls
    /// override these.
    pub fn settings_only(mut self) -> ServiceBinary {
        self.scratch_data_dir = true;
        self.env("SSPR_NATS_URL", UNREACHABLE_NATS_URL)
            .env("SSPR_METRICS_ADDR", "off")
    }

    /// Appends a command-line argument (service binaries take none; fixtures' own tests do).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> ServiceBinary {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Sets `key` to `value` in the child's environment.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> ServiceBinary {
        self.env
            .insert(key.as_ref().to_owned(), value.as_ref().to_owned());
        self
    }

    /// Sets every `(key, value)` pair, in order (a later pair wins).
    pub fn envs<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> ServiceBinary
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (key, value) in vars {
            self = self.env(key, value);
        }
        self
    }

    /// Removes `key` from the child's environment (including `PATH`).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> ServiceBinary {
        self.env.remove(key.as_ref());
        self
    }

    /// The binary's file name (e.g. `sspr-policy`): the prefix of its error line.
    pub fn name(&self) -> String {
        binary_name(&self.path)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        command
            .args(&self.args)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs the binary to completion and returns how it ended; kills it and fails if it is still
    /// running after `timeout`.
    pub async fn run_to_exit(&self, timeout: Duration) -> anyhow::Result<Exited> {
        let name = self.name();
        let mut command = self.command();
        let scratch = if self.scratch_data_dir && !self.env.contains_key(OsStr::new(DATA_DIR)) {
            Some(scratch_dir()?)
        } else {
            None
        };
        if let Some(dir) = &scratch {
            command.env(DATA_DIR, dir.path());
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.path.display()))?;
        // Dropping the timed-out future drops the child, which kills it (`kill_on_drop`).
        let output = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| anyhow!("{name} did not exit within {timeout:?}"))?
            .with_context(|| format!("collecting the output of {name}"))?;
        Ok(Exited {
            binary: name,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// [`run_to_exit`](Self::run_to_exit) with `vars` added, for a test: panics if the binary
    /// cannot be started or runs longer than 30 s.
    pub async fn run_with(&self, vars: &[(&str, &str)]) -> Exited {
        let run = self.clone().envs(vars.iter().copied());
        match run.run_to_exit(RUN_TIMEOUT).await {
            Ok(exited) => exited,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// The scenarios every binary shares because it reads `sspr_runtime::CommonSettings` before
    /// anything else: a bad `SSPR_METRICS_ADDR` and a non-PostgreSQL `SSPR_DATABASE_URL` each
    /// end in a configuration error naming the variable ([`Exited::assert_config_error`]).
    pub async fn assert_refuses_bad_common_settings(&self) {
        let bin = self.clone().settings_only();
        bin.run_with(&[("SSPR_METRICS_ADDR", "not-an-address")])
            .await
            .assert_config_error("SSPR_METRICS_ADDR");
        bin.run_with(&[("SSPR_DATABASE_URL", "mysql://nope")])
            .await
            .assert_config_error("SSPR_DATABASE_URL");
    }

    /// Starts the binary the usual way for a test and waits until it is ready: `SSPR_NATS_URL`
    /// points at `nats`, `SSPR_DATA_DIR` at a fresh temporary directory owned by the returned
    /// handle (see [`RunningService::data_dir`]), `SSPR_METRICS_ADDR` at a free port of 127.0.0.1
    /// (see [`RunningService::wait_ready`] for what "ready" means). Other settings come from
    /// this builder.
    pub async fn start(
        &self,
        nats: &NatsServer,
        timeout: Duration,
    ) -> anyhow::Result<RunningService> {
        let data_dir = scratch_dir()?;
        let port = free_port().context("picking a metrics port")?;
        let mut service = self
            .clone()
            .env("SSPR_NATS_URL", nats.url())
            .env(DATA_DIR, data_dir.path())
            .env("SSPR_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .spawn()?;
        service.data_dir = Some(data_dir);
        service.wait_ready(port, timeout).await?;
        Ok(service)
    }

    /// Starts the binary in the background; it is killed when the returned handle is dropped.
    /// Must be called inside a tokio runtime.
    pub fn spawn(&self) -> anyhow::Result<RunningService> {
        let mut child = self
            .command()
            .spawn()
            .with_context(|| format!("starting {}", self.path.display()))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut drains = Vec::new();
        if let Some(pipe) = child.stdout.take() {
            drains.push(tokio::spawn(drain(pipe, stdout.clone())));
        }
        if let Some(pipe) = child.stderr.take() {
            drains.push(tokio::spawn(drain(pipe, stderr.clone())));
        }
        Ok(RunningService {
            name: self.name(),
            child,
            stdout,
            stderr,
            drains,
            data_dir: None,
        })
    }
}

/// How a binary ended: its status and everything it wrote.
#[derive(Debug, Clone)]
pub struct Exited {
    /// The binary's file name, e.g. `sspr-policy`.
    pub binary: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Exited {
    /// A configuration error: exit code 2, and stderr is exactly one non-empty line that starts
    /// with `<binary>: `, names `variable`, and is not a panic.
    #[track_caller]
    pub fn assert_config_error(&self, variable: &str) -> &Exited {
        let stderr = &self.stderr;
        assert_eq!(
            self.status.code(),
            Some(2),
            "a bad {variable}: configuration errors exit with 2; stderr: {stderr:?}"
        );
        assert_no_panic(stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(
            lines.len() == 1 && !lines[0].trim().is_empty(),
            "a bad {variable}: exactly one line on stderr, got {stderr:?}"
        );
        assert!(
            lines[0].starts_with(&self.prefix()),
            "a bad {variable}: the line names the binary {:?}: {stderr:?}",
            self.binary
        );
        assert!(
            lines[0].contains(variable),
            "the line names {variable}: {stderr:?}"
        );
        self
    }

    /// A start-up failure once logging may already be on: exit code `code`, and among possibly
    /// other (log) lines exactly one starts with `<binary>: ` and mentions `text`; no panic.
    #[track_caller]
    pub fn assert_error_line(&self, code: i32, text: &str) -> &Exited {
        assert_eq!(
            self.status.code(),
            Some(code),
            "exit code; stderr: {}",
            self.stderr
        );
        assert_no_panic(&self.stderr);
        self.assert_mentions(text)
    }

    /// Exactly one stderr line starts with `<binary>: `, and it contains `text`.
    #[track_caller]
    pub fn assert_mentions(&self, text: &str) -> &Exited {
        let prefix = self.prefix();
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|line| line.starts_with(&prefix))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "exactly one {prefix:?} line on stderr, got: {}",
            self.stderr
        );
        assert!(
            errors[0].contains(text),
            "{:?} should mention {text:?}",
            errors[0]
        );
        self
    }

    /// `secret` appears in neither stdout nor stderr.
    #[track_caller]
    pub fn assert_not_echoed(&self, secret: &str) -> &Exited {
        assert!(
            !self.stderr.contains(secret) && !self.stdout.contains(secret),
            "a secret value was printed: {}",
            self.stderr
        );
        self
    }

    /// Exit code 0 and no panic on stderr.
    #[track_caller]
    pub fn assert_clean_exit(&self) -> &Exited {
        assert!(
            self.status.success(),
            "exit status {}; stderr: {}",
            self.status,
            self.stderr
        );
        assert_no_panic(&self.stderr);
        self
    }

    fn prefix(&self) -> String {
        format!("{}: ", self.binary)
    }
}

/// A started binary; killed on drop unless [`RunningService::terminate`] already stopped it.
#[derive(Debug)]
pub struct RunningService {
    name: String,
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    drains: Vec<JoinHandle<()>>,
    /// The `SSPR_DATA_DIR` that [`ServiceBinary::start`] made; removed on drop.
    data_dir: Option<TempDir>,
}

impl RunningService {
    /// Waits until both `/healthz` and `/readyz` on `127.0.0.1:metrics_port` answer 200. Fails
    /// early, with the tail of stderr, if the process exits first; fails after `timeout`.
    pub async fn wait_ready(&mut self, metrics_port: u16, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.fail_if_exited("before it was ready").await?;
            let healthz = http_status(metrics_port, "/healthz").await;
            let readyz = http_status(metrics_port, "/readyz").await;
            if healthz == Some(200) && readyz == Some(200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} not ready within {timeout:?} (/healthz: {healthz:?}, /readyz: {readyz:?}); \
                     stderr tail:\n{}",
                    self.name,
                    self.stderr_tail()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Retries `attempt` (e.g. a NATS request to the service) until it succeeds and returns its
    /// value. Fails early, with the tail of stderr, if the process exits; fails after `timeout`
    /// with the last error.
    pub async fn eventually<T, E, F, Fut>(
        &mut self,
        timeout: Duration,
        mut attempt: F,
    ) -> anyhow::Result<T>
    where
        E: Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            self.fail_if_exited("while a test was waiting for it")
                .await?;
            let last_error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} never succeeded within {timeout:?}: {last_error}; stderr tail:\n{}",
                    self.name,
                    self.stderr_tail()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Sends SIGTERM (through `kill -TERM <pid>`) and waits up to `timeout` for the process to
    /// exit; fails if it had already exited or does not exit in time (it is killed then).
    pub async fn terminate(mut self, timeout: Duration) -> anyhow::Result<Exited> {
        self.fail_if_exited("before SIGTERM").await?;
        let pid = self
            .child
            .id()
            .ok_or_else(|| anyhow!("{} has no pid", self.name))?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed: {sent}");
        }
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.with_context(|| format!("waiting for {}", self.name))?,
            Err(_) => {
                let _ = self.child.kill().await;
                bail!(
                    "{} did not exit within {timeout:?} of SIGTERM; stderr tail:\n{}",
                    self.name,
                    self.stderr_tail()
                );
            }
        };
        self.finish_draining().await;
        Ok(Exited {
            binary: self.name.clone(),
            status,
            stdout: snapshot(&self.stdout),
            stderr: snapshot(&self.stderr),
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the process with SIGKILL — a crash: no shutdown code runs, nothing is flushed —
    /// and waits for it to exit; fails if it had already exited.
    pub async fn kill(mut self) -> anyhow::Result<Exited> {
        self.fail_if_exited("before SIGKILL").await?;
        self.child
            .kill()
            .await
            .with_context(|| format!("killing {}", self.name))?;
        let status = self
            .child
            .wait()
            .await
            .with_context(|| format!("waiting for {}", self.name))?;
        self.finish_draining().await;
        Ok(Exited {
            binary: self.name.clone(),
            status,
            stdout: snapshot(&self.stdout),
            stderr: snapshot(&self.stderr),
        })
    }

    /// Sends SIGTERM without waiting; pair with [`RunningService::wait_exit`].
    pub async fn send_sigterm(&mut self) -> anyhow::Result<()> {
        let pid = self
            .child
            .id()
            .ok_or_else(|| anyhow!("{} has no pid", self.name))?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed: {sent}");
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit on its own (e.g. after SIGTERM).
    pub async fn wait_exit(mut self, timeout: Duration) -> anyhow::Result<Exited> {
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.with_context(|| format!("waiting for {}", self.name))?,
            Err(_) => {
                let _ = self.child.kill().await;
                bail!(
                    "{} did not exit within {timeout:?}; stderr tail:\n{}",
                    self.name,
                    self.stderr_tail()
                );
            }
        };
        self.finish_draining().await;
        Ok(Exited {
            binary: self.name.clone(),
            status,
            stdout: snapshot(&self.stdout),
            stderr: snapshot(&self.stderr),
        })
    }

    /// The `SSPR_DATA_DIR` that [`ServiceBinary::start`] gave the process (`None` after `spawn`).
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_ref().map(TempDir::path)
    }

    /// Everything the process has written to stderr so far.
    pub fn stderr(&self) -> String {
        snapshot(&self.stderr)
    }

    async fn fail_if_exited(&mut self, when: &str) -> anyhow::Result<()> {
        if let Some(status) = self
            .child
            .try_wait()
            .with_context(|| format!("polling {}", self.name))?
        {
            self.finish_draining().await;
            bail!(
                "{} exited {when} with {status}; stderr tail:\n{}",
                self.name,
                self.stderr_tail()
            );
        }
        Ok(())
    }

    /// Once the process has exited: waits for the last bytes of its output to be collected
    /// (the pipes close with the process).
    async fn finish_draining(&mut self) {
        for drain in std::mem::take(&mut self.drains) {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
        }
    }

    fn stderr_tail(&self) -> String {
        let stderr = self.stderr();
        let lines: Vec<&str> = stderr.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        // `kill_on_drop` also does this; being explicit makes the intent visible.
        let _ = self.child.start_kill();
        for drain in &self.drains {
            drain.abort();
        }
    }
}

fn scratch_dir() -> anyhow::Result<TempDir> {
    tempfile::Builder::new()
        .prefix("sspr-service-")
        .tempdir()
        .context("creating a data dir for the service")
}

fn binary_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[track_caller]
fn assert_no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
}

async fn drain(mut pipe: impl AsyncRead + Unpin, sink: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut sink) = sink.lock() {
            sink.extend_from_slice(&buf[..n]);
        }
    }
}

fn snapshot(buffer: &Mutex<Vec<u8>>) -> String {
    buffer
        .lock()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// The status code of a plain HTTP/1.1 `GET <path>` on 127.0.0.1:`port`, if anything answers.
async fn http_status(port: u16, path: &str) -> Option<u16> {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let response = String::from_utf8_lossy(&response);
        let mut status_line = response.lines().next()?.split_whitespace();
        if !status_line.next()?.starts_with("HTTP/1.") {
            return None;
        }
        status_line.next()?.parse().ok()
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe).await.ok()?
}
