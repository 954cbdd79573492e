//! The stack under test, started by the bench as separate processes (the `sspr-*` binaries of
//! the same build as the running `sspr`), each with its own SQLite file in a temporary
//! directory, on a private nats-server, mailing to the bench's SMTP sink. Separate processes so
//! that each one's CPU time can be read from `/proc`.
//!
//! Only the `SSPR_*` variables listed in [`PASSED_THROUGH`] reach the services from the
//! bench's environment (with `RUST_LOG` and `OTEL_*`); the rest is set here, so a developer's
//! shell cannot point the services at another NATS or database by accident.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use rand::RngCore;
use tokio::process::{Child, Command};

use super::cpu::Watched;
use crate::nats_server::LocalNatsServer;

/// The services behind the gateway, in start order (the gateway last: it needs the others to
/// answer); also what `sspr dev` waits for.
pub const SERVICES: [&str; 6] = [
    "directory",
    "policy",
    "enrolment",
    "verification",
    "notification",
    "audit",
];

/// Settings of the bench's environment handed to the services as they are.
pub const PASSED_THROUGH: [&str; 5] = [
    "SSPR_GATEWAY_MAX_IN_FLIGHT",
    "SSPR_RPC_MAX_IN_FLIGHT",
    "SSPR_RETENTION_DAYS",
    "SSPR_IDEMPOTENCY_HOURS",
    "SSPR_TEMPLATE_DIR",
];

/// How to start the stack.
pub struct StackSettings {
    /// Directory holding the `sspr-*` binaries.
    pub bin_dir: PathBuf,
    /// The bench's SMTP sink.
    pub smtp_addr: SocketAddr,
    /// PostgreSQL instead of SQLite files.
    pub database_url: Option<String>,
    /// Processes of the verification service (the one every reset call goes through).
    pub verification_replicas: usize,
}

/// The running processes; stopped by [`OwnStack::stop`] (killed on drop otherwise).
pub struct OwnStack {
    dir: tempfile::TempDir,
    nats: Option<LocalNatsServer>,
    nats_pid: Option<u32>,
    children: Vec<(String, Child)>,
    pub nats_url: String,
    pub grpc_url: String,
    pub admin_token: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

fn random_b64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The directory of the running executable (where cargo puts the `sspr-*` binaries too).
pub fn default_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("the running executable has no directory")
}

/// `debug` or `release`, from the binaries' directory name (cargo's layout).
pub fn profile_of(bin_dir: &Path) -> String {
    match bin_dir.file_name().and_then(|n| n.to_str()) {
        Some("release") => "release".to_owned(),
        Some("debug") => "debug".to_owned(),
        Some(other) => format!("unknown ({other})"),
        None => "unknown".to_owned(),
    }
}

impl OwnStack {
    pub async fn start(settings: &StackSettings) -> anyhow::Result<Self> {
        let binaries: Vec<(String, PathBuf)> = SERVICES
            .iter()
            .chain(std::iter::once(&"gateway"))
            .map(|s| (s.to_string(), settings.bin_dir.join(format!("sspr-{s}"))))
            .collect();
        for (_, bin) in &binaries {
            if !bin.is_file() {
                bail!(
                    "{} not found; build the services of the same profile first, e.g. `cargo build --release --bin sspr --bin sspr-gateway --bin sspr-policy --bin sspr-enrolment --bin sspr-verification --bin sspr-notification --bin sspr-directory --bin sspr-audit`, or pass --bin-dir",
                    bin.display()
                );
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("sspr-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let nats = LocalNatsServer::start(
            free_port()?,
            &dir.path().join("nats"),
            &dir.path().join("nats-server.log"),
        )
        .await?;
        let nats_url = nats.url().to_owned();
        let nats_pid = nats.pid();
        let grpc_port = free_port()?;
        let mut stack = Self {
            nats_url: nats_url.clone(),
            grpc_url: format!("http://127.0.0.1:{grpc_port}"),
            admin_token: random_b64(24),
            nats: Some(nats),
            nats_pid,
            children: Vec::new(),
            dir,
        };
        let code_key = random_b64(32);
        let client = async_nats::connect(&nats_url)
            .await
            .context("cannot connect to the bench's nats-server")?;
        for (name, bin) in binaries {
            let log_path = stack.dir.path().join(format!("{name}.log"));
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("cannot create {}", log_path.display()))?;
            let mut cmd = Command::new(&bin);
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy();
                if key.starts_with("SSPR_") && !PASSED_THROUGH.contains(&key.as_ref()) {
                    cmd.env_remove(key.as_ref());
                }
            }
            cmd.env("SSPR_NATS_URL", &nats_url)
                .env("SSPR_DATA_DIR", stack.dir.path())
                .env("SSPR_METRICS_ADDR", "off")
                .env("SSPR_CODE_KEY", &code_key)
                .env("SSPR_SMTP_URL", format!("smtp://{}", settings.smtp_addr))
                .env("SSPR_ADMIN_TOKEN", &stack.admin_token)
                .env("SSPR_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
                // The bench spreads its flows over synthetic client addresses in
                // x-forwarded-for, as a load balancer in front of the gateway would.
                .env("SSPR_TRUSTED_PROXY_HOPS", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .kill_on_drop(true);
            if let Some(url) = &settings.database_url {
                cmd.env("SSPR_DATABASE_URL", url);
            }
            let copies = if name == "verification" {
                settings.verification_replicas.max(1)
            } else {
                1
            };
            for _ in 0..copies {
                let child = cmd
                    .spawn()
                    .with_context(|| format!("cannot start {}", bin.display()))?;
                stack.children.push((name.clone(), child));
                stack
                    .wait_ready(&name, &client, grpc_port, &log_path)
                    .await?;
            }
        }
        Ok(stack)
    }

    /// Waits until the last started process answers: `$SRV.PING` for a service, a TCP connect
    /// to the gRPC port for the gateway.
    async fn wait_ready(
        &mut self,
        name: &str,
        client: &async_nats::Client,
        grpc_port: u16,
        log: &Path,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((_, child)) = self.children.last_mut()
                && let Some(status) = child.try_wait()?
            {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "sspr-{name} exited with {status} while starting:\n{}",
                    tail.join("\n")
                );
            }
            let ready = if name == "gateway" {
                tokio::net::TcpStream::connect(("127.0.0.1", grpc_port))
                    .await
                    .is_ok()
            } else {
                let ping = client.request(format!("$SRV.PING.sspr-{name}"), Default::default());
                matches!(
                    tokio::time::timeout(Duration::from_millis(500), ping).await,
                    Ok(Ok(_))
                )
            };
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "sspr-{name} did not become ready within 60 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The processes to charge CPU to.
    pub fn watched(&self) -> Vec<Watched> {
        let mut watched: Vec<Watched> = self
            .children
            .iter()
            .filter_map(|(name, child)| {
                Some(Watched {
                    name: name.clone(),
                    pid: child.id()?,
                    sspr: true,
                })
            })
            .collect();
        if let Some(pid) = self.nats_pid {
            watched.push(Watched {
                name: "nats-server".to_owned(),
                pid,
                sspr: false,
            });
        }
        watched
    }

    /// Where the services' logs are (kept only while the stack runs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the services (SIGTERM, then a kill after 5 s) and the nats-server.
    pub async fn stop(mut self) {
        for (_, child) in self.children.iter().rev() {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        for (_, child) in self.children.iter_mut() {
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        if let Some(nats) = self.nats.take() {
            nats.stop().await;
        }
    }
}
