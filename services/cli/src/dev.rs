//! The whole system in one process.
//!
//! [`Stack`] starts the six services and the gateway as tasks, each with its own NATS
//! connection and its own database (SQLite file per service, or a PostgreSQL schema each),
//! exactly as the separate binaries would run. `sspr dev` adds the embedded defaults: a local
//! nats-server, mail written as .eml files, and generated keys kept in the data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use rand::RngCore;
use sspr_bus::{Bus, BusConfig};
use sspr_clock::SharedClock;
use sspr_runtime::{Secret, ServiceContext};
use sspr_storage::DbSettings;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::nats_server::LocalNatsServer;

/// How to run the stack.
pub struct StackOptions {
    pub nats_url: String,
    pub db: DbSettings,
    pub mail: sspr_notification::MailTransport,
    pub mail_from: Option<String>,
    pub sms_webhook_url: Option<String>,
    /// Without a webhook, SMS are written as text files here (`sspr dev` only).
    pub sms_dir: Option<PathBuf>,
    pub code_key: [u8; 32],
    /// The whole code key ring (current key with its id, previous keys) for verification and
    /// notification; `None` for `code_key` alone (id `0`). When set, it replaces `code_key`
    /// for codes and deliveries; decoys stay keyed by `code_key`.
    pub code_key_ring: Option<sspr_runtime::CodeKeys>,
    /// The single admin token (admin id `admin`, role admin).
    pub admin_token: String,
    /// Named admin tokens besides it, as in `SSPR_ADMIN_TOKENS` (`name:role:token` entries
    /// separated by commas or lines); `None` for none.
    pub named_admin_tokens: Option<String>,
    pub grpc_addr: SocketAddr,
    pub clock: SharedClock,
    /// Minimum time between two codes for one method.
    pub resend_after: Duration,
    /// The directory's own settings (the LDAP password writeback connector).
    pub directory: sspr_directory::Config,
    /// The policy service's own settings (the organisation's phone prefixes).
    pub policy: sspr_policy::Config,
    /// How each service connects to NATS (its own credentials, as in production with
    /// `deploy/nats/nats-server.conf`); `None`: [`anonymous_bus_config`].
    pub bus_config: Option<BusConfigFor>,
    /// Replicas of the verification service (at least 1), sharing its database; the extra
    /// ones start once the first has migrated it.
    pub verification_replicas: usize,
    /// The gateway's trusted `X-Forwarded-For` hops (0: the TCP peer is the client).
    pub trusted_proxy_hops: usize,
    /// The gateway's CAPTCHA verifier (`SSPR_CHALLENGE_VERIFY_URL`, an http:// URL) and its
    /// secret (`SSPR_CHALLENGE_SECRET`); `None`: challenge tokens are never passed.
    pub challenge_verify_url: Option<String>,
    pub challenge_secret: Option<String>,
    /// Notification's SMS provider (webhook or Twilio) and delivery receipts
    /// (`SSPR_SMS_PROVIDER`, `SSPR_TWILIO_*`, `SSPR_RECEIPTS_*`); the default: the webhook
    /// above, no receipts.
    pub sms: sspr_notification::sms_config::SmsSettings,
}

/// How the service named by the argument (`directory`, ..., `gateway`) connects to NATS.
pub type BusConfigFor = std::sync::Arc<dyn Fn(&str) -> BusConfig + Send + Sync>;

/// The default [`BusConfigFor`]: anonymous, to `nats_url`, as `sspr-<service>` with the inbox
/// prefix `_INBOX_sspr-<service>` (as the binaries connect).
pub fn anonymous_bus_config(nats_url: &str, service: &str) -> BusConfig {
    let name = format!("sspr-{service}");
    let mut config = BusConfig::new(nats_url.to_owned(), name.clone());
    config.inbox_prefix = Some(format!("_INBOX_{name}"));
    config
}

fn bus_config(service: &str, opts: &StackOptions) -> BusConfig {
    match &opts.bus_config {
        Some(config_for) => config_for(service),
        None => anonymous_bus_config(&opts.nats_url, service),
    }
}

/// The running services.
pub struct Stack {
    grpc_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

async fn context(service: &str, opts: &StackOptions) -> anyhow::Result<ServiceContext> {
    let bus = Bus::connect(&bus_config(service, opts))
        .await
        .with_context(|| format!("{service}: cannot connect to NATS at {}", opts.nats_url))?;
    let db = sspr_storage::connect(service, &opts.db).await?;
    Ok(ServiceContext {
        bus,
        db,
        clock: opts.clock.clone(),
    })
}

impl Stack {
    /// Starts every service and returns once all of them answer on NATS and the gateway listens.
    pub async fn start(opts: StackOptions) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();

        let ctx = context(sspr_directory::SERVICE, &opts).await?;
        let (cfg, token) = (opts.directory.clone(), shutdown.clone());
        tasks.spawn(async move { ("directory", sspr_directory::run(ctx, cfg, token).await) });

        let ctx = context(sspr_policy::SERVICE, &opts).await?;
        let (cfg, token) = (opts.policy.clone(), shutdown.clone());
        tasks.spawn(async move { ("policy", sspr_policy::run(ctx, cfg, token).await) });

        let ctx = context(sspr_enrolment::SERVICE, &opts).await?;
        let (cfg, token) = (sspr_enrolment::Config::default(), shutdown.clone());
        tasks.spawn(async move { ("enrolment", sspr_enrolment::run(ctx, cfg, token).await) });

        let ctx = context(sspr_verification::SERVICE, &opts).await?;
        let ring = opts
            .code_key_ring
            .clone()
            .unwrap_or_else(|| sspr_runtime::CodeKeys::single(Secret::new(opts.code_key)));
        let mut cfg =
            sspr_verification::Config::with_keys(ring.clone(), Secret::new(opts.code_key));
        cfg.resend_after =
            chrono::Duration::from_std(opts.resend_after).context("resend_after is too large")?;
        let token = shutdown.clone();
        let verification_cfg = cfg.clone();
        tasks.spawn(async move {
            (
                "verification",
                sspr_verification::run(ctx, cfg, token).await,
            )
        });

        let ctx = context(sspr_notification::SERVICE, &opts).await?;
        let mut cfg = sspr_notification::Config::new(opts.mail.clone(), Secret::new(opts.code_key));
        cfg.code_keys = ring;
        if let sspr_notification::MailTransport::Smtp { url } = &opts.mail {
            // SSPR_SMTP_TLS_CA, SSPR_SMTP_USER and SSPR_SMTP_PASSWORD, as the binary reads them.
            cfg.smtp = sspr_notification::SmtpOptions::from_env(Some(url))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if let Some(from) = &opts.mail_from {
            cfg.mail_from = from
                .parse()
                .context("SSPR_MAIL_FROM is not a valid mailbox")?;
        }
        cfg.sms_files_dir = opts.sms_dir.clone();
        cfg.sms = opts.sms.clone();
        if let Some(url) = &opts.sms_webhook_url {
            cfg.sms_webhook_url = Some(
                sspr_notification::SmsWebhookUrl::parse(url)
                    .map_err(|p| anyhow::anyhow!("SSPR_SMS_WEBHOOK_URL {p}"))?,
            );
        }
        let token = shutdown.clone();
        tasks.spawn(async move {
            (
                "notification",
                sspr_notification::run(ctx, cfg, token).await,
            )
        });

        let ctx = context(sspr_audit::SERVICE, &opts).await?;
        let (cfg, token) = (sspr_audit::Config::default(), shutdown.clone());
        tasks.spawn(async move { ("audit", sspr_audit::run(ctx, cfg, token).await) });

        let bus = Bus::connect(&bus_config("gateway", &opts)).await?;
        let cfg = sspr_gateway::Config {
            grpc_addr: opts.grpc_addr,
            admin_tokens: sspr_gateway::admin_tokens(
                Some(opts.admin_token.clone()),
                opts.named_admin_tokens.clone(),
                None,
            )?,
            trusted_proxy_hops: opts.trusted_proxy_hops,
            tls: None,
            challenge: sspr_gateway::challenge::ChallengeConfig::parse(
                opts.challenge_verify_url.clone(),
                opts.challenge_secret.clone(),
            )?,
            max_in_flight: sspr_gateway::DEFAULT_MAX_IN_FLIGHT,
        };
        let (grpc_addr, serve) = sspr_gateway::bind(bus.clone(), cfg, shutdown.clone()).await?;
        tasks.spawn(async move { ("gateway", serve.await) });

        let mut stack = Self {
            grpc_addr,
            shutdown,
            tasks,
        };
        if let Err(e) = stack.wait_until_serving(&bus).await {
            stack.stop().await;
            return Err(e);
        }
        let replicas = opts.verification_replicas.max(1);
        for _ in 1..replicas {
            let ctx = context(sspr_verification::SERVICE, &opts).await?;
            let (cfg, token) = (verification_cfg.clone(), stack.shutdown.clone());
            stack.tasks.spawn(async move {
                (
                    "verification",
                    sspr_verification::run(ctx, cfg, token).await,
                )
            });
        }
        if let Err(e) = stack
            .wait_for_replicas(&bus, "verification", replicas)
            .await
        {
            stack.stop().await;
            return Err(e);
        }
        Ok(stack)
    }

    /// Waits until every service answers `$SRV.PING`, or one of them fails to start.
    async fn wait_until_serving(&mut self, bus: &Bus) -> anyhow::Result<()> {
        let services = crate::bench::stack::SERVICES;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for service in services {
            let subject = format!("$SRV.PING.sspr-{service}");
            loop {
                if let Some(Ok((name, result))) = self.tasks.try_join_next() {
                    anyhow::bail!("{name} stopped while starting: {:?}", result.err());
                }
                let ping = bus.client().request(subject.clone(), Default::default());
                if tokio::time::timeout(Duration::from_millis(500), ping)
                    .await
                    .is_ok_and(|r| r.is_ok())
                {
                    break;
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "{service} did not start within 30 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Waits until `count` instances of `service` answer one `$SRV.PING`.
    async fn wait_for_replicas(
        &mut self,
        bus: &Bus,
        service: &str,
        count: usize,
    ) -> anyhow::Result<()> {
        use futures::StreamExt;
        if count <= 1 {
            return Ok(());
        }
        let client = bus.client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok((name, result))) = self.tasks.try_join_next() {
                anyhow::bail!("{name} stopped while starting: {:?}", result.err());
            }
            let inbox = client.new_inbox();
            let mut replies = client.subscribe(inbox.clone()).await?;
            client
                .publish_with_reply(
                    format!("$SRV.PING.sspr-{service}"),
                    inbox,
                    Default::default(),
                )
                .await?;
            client.flush().await?;
            let mut answered = 0;
            let window = tokio::time::sleep(Duration::from_millis(300));
            tokio::pin!(window);
            loop {
                tokio::select! {
                    _ = &mut window => break,
                    reply = replies.next() => match reply {
                        Some(_) => answered += 1,
                        None => break,
                    },
                }
            }
            if answered >= count {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "only {answered} of {count} {service} replicas started within 30 s"
            );
        }
    }

    /// Address of the public gRPC API.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Resolves when a service stopped on its own (an error), with its name and outcome.
    pub async fn stopped(&mut self) -> Option<(&'static str, anyhow::Result<()>)> {
        match self.tasks.join_next().await? {
            Ok(r) => Some(r),
            Err(e) => Some(("task", Err(anyhow::anyhow!("a service task panicked: {e}")))),
        }
    }

    /// Stops every service and waits for them to drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok((name, Err(e))) => {
                    tracing::warn!(service = name, error = %format!("{e:#}"), "stopped with an error")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "a service task panicked"),
            }
        }
    }
}

/// Reads a secret kept in `path`, or creates it with 32 random bytes (mode 0600).
fn persistent_secret(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_owned());
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let value = base64::engine::general_purpose::STANDARD.encode(bytes);
    std::fs::write(path, format!("{value}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(value)
}

fn dev_nats_port() -> u16 {
    // 4222 when free; otherwise (another server already runs there) any free port.
    match std::net::TcpListener::bind(("127.0.0.1", 4222)) {
        Ok(_) => 4222,
        Err(_) => std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(4222),
    }
}

/// Mail through the SMTP server at `url` (`smtp://host:port`).
pub fn smtp_transport(url: &str) -> anyhow::Result<sspr_notification::MailTransport> {
    let url =
        sspr_notification::SmtpUrl::parse(url).map_err(|p| anyhow::anyhow!("SSPR_SMTP_URL {p}"))?;
    Ok(sspr_notification::MailTransport::Smtp { url })
}

/// `sspr dev`.
pub async fn main(data_dir: PathBuf, grpc_addr: SocketAddr) -> anyhow::Result<()> {
    let telemetry = sspr_telemetry::init("sspr-dev")?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;

    let mut local_nats = None;
    let nats_url = match sspr_runtime::settings::var("SSPR_NATS_URL") {
        Some(url) => url,
        None => {
            let server = LocalNatsServer::start(
                dev_nats_port(),
                &data_dir.join("nats"),
                &data_dir.join("nats-server.log"),
            )
            .await?;
            let url = server.url().to_owned();
            local_nats = Some(server);
            url
        }
    };
    let code_key_b64 = match sspr_runtime::settings::var("SSPR_CODE_KEY") {
        Some(k) => k,
        None => persistent_secret(&data_dir.join("code-key"))?,
    };
    let code_key_ring = sspr_runtime::CodeKeys::parse(
        &code_key_b64,
        sspr_runtime::settings::var(sspr_runtime::code_keys::PREVIOUS_KEYS_VAR).as_deref(),
    )?;
    let code_key = *code_key_ring.current().key.expose();
    let admin_token = match sspr_runtime::settings::var("SSPR_ADMIN_TOKEN") {
        Some(t) => t,
        None => persistent_secret(&data_dir.join("admin-token"))?,
    };
    // Named tokens from the variable and the file together; the gateway validates them all.
    let named_admin_tokens = match (
        sspr_runtime::settings::var("SSPR_ADMIN_TOKENS"),
        sspr_runtime::settings::var("SSPR_ADMIN_TOKENS_FILE"),
    ) {
        (list, None) => list,
        (list, Some(path)) => {
            let file = std::fs::read_to_string(&path)
                .with_context(|| format!("SSPR_ADMIN_TOKENS_FILE: cannot read {path:?}"))?;
            Some(format!("{}\n{file}", list.unwrap_or_default()))
        }
    };
    let (mail, mail_desc) = match sspr_runtime::settings::var("SSPR_SMTP_URL") {
        Some(url) => (smtp_transport(&url)?, url),
        None => {
            let dir = data_dir.join("mail");
            std::fs::create_dir_all(&dir)?;
            let desc = format!(
                "files in {} (SMS in {})",
                dir.display(),
                data_dir.join("sms").display()
            );
            (sspr_notification::MailTransport::Files { dir }, desc)
        }
    };
    let db = DbSettings {
        data_dir: data_dir.clone(),
        database_url: sspr_runtime::settings::var("SSPR_DATABASE_URL"),
    };
    let opts = StackOptions {
        nats_url: nats_url.clone(),
        db,
        mail,
        mail_from: sspr_runtime::settings::var("SSPR_MAIL_FROM"),
        sms_webhook_url: sspr_runtime::settings::var("SSPR_SMS_WEBHOOK_URL"),
        sms_dir: Some(data_dir.join("sms")),
        code_key,
        code_key_ring: Some(code_key_ring),
        admin_token,
        named_admin_tokens,
        grpc_addr,
        clock: sspr_clock::system(),
        resend_after: Duration::from_secs(30),
        directory: sspr_directory::Config::from_env()?,
        policy: sspr_policy::Config::from_env()?,
        bus_config: None,
        verification_replicas: 1,
        trusted_proxy_hops: 0,
        challenge_verify_url: sspr_runtime::settings::var("SSPR_CHALLENGE_VERIFY_URL"),
        challenge_secret: sspr_runtime::settings::var("SSPR_CHALLENGE_SECRET"),
        sms: sspr_notification::sms_config::SmsSettings::from_env(
            sspr_runtime::settings::var("SSPR_SMS_WEBHOOK_URL").is_some(),
        )?,
    };
    let mut stack = Stack::start(opts).await?;
    let shutdown = sspr_runtime::shutdown_token();
    let metrics_addr = sspr_runtime::settings::socket_addr("SSPR_METRICS_ADDR", "127.0.0.1:9100")?;
    let health_bus = Bus::connect(&BusConfig::new(nats_url.clone(), "sspr-dev-health")).await?;
    sspr_runtime::serve_health(
        metrics_addr,
        sspr_runtime::ready_check(health_bus, None),
        &shutdown,
    )
    .await?;

    eprintln!(
        "sspr dev is running\n  gRPC API:     http://{}\n  NATS:         {nats_url}\n  mail:         {mail_desc}\n  admin token:  {} (or SSPR_ADMIN_TOKEN)\n  health:       http://{metrics_addr}/readyz\nPress Ctrl-C to stop.",
        stack.grpc_addr(),
        data_dir.join("admin-token").display(),
    );

    let outcome = tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        stopped = stack.stopped() => match stopped {
            Some((name, Err(e))) => Err(e.context(format!("{name} stopped"))),
            Some((name, Ok(()))) => Err(anyhow::anyhow!("{name} stopped unexpectedly")),
            None => Ok(()),
        },
    };
    stack.stop().await;
    if let Some(server) = local_nats {
        server.stop().await;
    }
    telemetry.shutdown();
    outcome
}
