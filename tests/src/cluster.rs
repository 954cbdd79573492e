//! A whole sspr system as separate OS processes, for the fault tests: a private nats-server
//! (JetStream on disk), a private PostgreSQL cluster, the SMTP sink, and every service binary
//! (`sspr-<service>`) as its own process, several replicas each when asked. A test can kill a
//! replica with SIGKILL, stop one with SIGTERM, start it again, restart nats-server or the
//! database, and make the SMTP sink refuse or go away, while clients drive resets through the
//! gateways.
//!
//! Invariants: every process starts from an empty environment plus the settings below (see
//! [`sspr_testkit::ServiceBinary`]); replicas of one service share its PostgreSQL schema, so
//! they are real replicas; a replica keeps its metrics and gRPC ports across restarts; every
//! process is killed when the cluster is dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use futures::StreamExt;
use sspr_testkit::{Exited, NatsServer, PrivatePostgres, RunningService, ServiceBinary, SmtpSink};
use tonic::transport::{Channel, Endpoint};

/// Admin token of every cluster.
pub const CLUSTER_ADMIN_TOKEN: &str = "fault-test-admin-token-0123456789";

/// The services in the order they start (the gateway last).
pub const SERVICES: [&str; 6] = [
    "directory",
    "policy",
    "enrolment",
    "verification",
    "notification",
    "gateway",
];

/// How long a replica may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of a workspace binary (`sspr-verification`, ...), built next to the test executables by
/// `cargo test --workspace`.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("current exe")?;
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("target dir")?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not built: run `cargo test --workspace` (which builds every binary) or `cargo build --workspace --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// One replica of one service.
pub struct Replica {
    pub service: &'static str,
    pub index: usize,
    pub metrics_port: u16,
    pub grpc_port: Option<u16>,
    process: Option<RunningService>,
    /// Extra settings of this replica only.
    env: Vec<(String, String)>,
}

impl Replica {
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }
    pub fn name(&self) -> String {
        format!("sspr-{}#{}", self.service, self.index)
    }
}

/// The running system.
pub struct Cluster {
    pub nats: NatsServer,
    pub smtp: std::sync::Arc<SmtpSink>,
    pub postgres: PrivatePostgres,
    code_key: String,
    data: tempfile::TempDir,
    replicas: Vec<Replica>,
    /// Settings given to every process.
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts nats-server, PostgreSQL, the SMTP sink and `replicas[service]` replicas of every
    /// service (1 for those not named), each ready before the next service starts.
    pub async fn start(
        replicas: &[(&'static str, usize)],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Cluster> {
        let nats = NatsServer::start().await?;
        let smtp = std::sync::Arc::new(SmtpSink::start().await?);
        let postgres = PrivatePostgres::start().await?;
        let code_key =
            base64::engine::general_purpose::STANDARD.encode(sspr_testkit::random_code_key());
        let counts: BTreeMap<&str, usize> = replicas.iter().copied().collect();
        let mut cluster = Cluster {
            nats,
            smtp,
            postgres,
            code_key,
            data: tempfile::tempdir().context("cluster data dir")?,
            replicas: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        for service in SERVICES {
            for index in 0..counts.get(service).copied().unwrap_or(1) {
                let metrics_port = sspr_testkit::free_port().context("port")?;
                let grpc_port = if service == "gateway" {
                    Some(sspr_testkit::free_port().context("port")?)
                } else {
                    None
                };
                cluster.replicas.push(Replica {
                    service,
                    index,
                    metrics_port,
                    grpc_port,
                    process: None,
                    env: Vec::new(),
                });
            }
            let indexes: Vec<usize> = cluster
                .replicas
                .iter()
                .filter(|r| r.service == service)
                .map(|r| r.index)
                .collect();
            // Replicas of one service start together (and race on their migrations).
            let starts = indexes.iter().map(|&i| cluster.spawn(service, i));
            let spawned: Vec<anyhow::Result<(usize, RunningService)>> =
                futures::future::join_all(starts).await;
            for result in spawned {
                let (i, process) = result?;
                cluster.replica_mut(service, i)?.process = Some(process);
            }
            cluster.wait_serving(service).await?;
        }
        Ok(cluster)
    }

    /// Waits until every running replica of `service` answers NATS discovery (`$SRV.PING`):
    /// `/readyz` says connected, this says its endpoints are subscribed (after its migrations).
    pub async fn wait_serving(&self, service: &str) -> anyhow::Result<()> {
        if service == "gateway" {
            return Ok(());
        }
        let expected = self
            .replicas
            .iter()
            .filter(|r| r.service == service && r.is_running())
            .count();
        let client = self.nats.connect().await?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let inbox = client.new_inbox();
            let mut sub = client.subscribe(inbox.clone()).await?;
            client
                .publish_with_reply(format!("$SRV.PING.sspr-{service}"), inbox, "".into())
                .await?;
            let mut answered = 0;
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(300), sub.next()).await
            {
                answered += 1;
            }
            if answered >= expected {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("only {answered} of {expected} sspr-{service} replicas answer $SRV.PING");
            }
        }
    }

    fn binary(&self, replica: &Replica) -> anyhow::Result<ServiceBinary> {
        let mut bin = ServiceBinary::new(workspace_binary(&format!("sspr-{}", replica.service))?)
            .env("SSPR_NATS_URL", self.nats.url())
            .env("SSPR_DATABASE_URL", self.postgres.url())
            .env("SSPR_DATA_DIR", self.data.path())
            .env("SSPR_SMTP_URL", self.smtp.url())
            .env("SSPR_CODE_KEY", &self.code_key)
            .env("SSPR_ADMIN_TOKEN", CLUSTER_ADMIN_TOKEN)
            .env(
                "SSPR_METRICS_ADDR",
                format!("127.0.0.1:{}", replica.metrics_port),
            )
            .env("SSPR_RESEND_AFTER_SECS", "0")
            .env("RUST_LOG", "warn");
        if let Some(port) = replica.grpc_port {
            bin = bin.env("SSPR_GRPC_ADDR", format!("127.0.0.1:{port}"));
        }
        for (k, v) in self.env.iter().chain(replica.env.iter()) {
            bin = bin.env(k, v);
        }
        Ok(bin)
    }

    fn spawn(
        &self,
        service: &'static str,
        index: usize,
    ) -> impl Future<Output = anyhow::Result<(usize, RunningService)>> + use<> {
        let prepared = self
            .replica(service, index)
            .and_then(|r| Ok((self.binary(r)?, r.metrics_port, r.name())));
        async move {
            let (bin, port, name) = prepared?;
            let mut process = bin.spawn().with_context(|| format!("starting {name}"))?;
            process
                .wait_ready(port, READY_TIMEOUT)
                .await
                .with_context(|| format!("{name} did not become ready"))?;
            Ok((index, process))
        }
    }

    fn replica(&self, service: &str, index: usize) -> anyhow::Result<&Replica> {
        self.replicas
            .iter()
            .find(|r| r.service == service && r.index == index)
            .with_context(|| format!("no replica sspr-{service}#{index}"))
    }

    fn replica_mut(&mut self, service: &str, index: usize) -> anyhow::Result<&mut Replica> {
        self.replicas
            .iter_mut()
            .find(|r| r.service == service && r.index == index)
            .with_context(|| format!("no replica sspr-{service}#{index}"))
    }

    /// Every replica, in start order.
    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    /// Gives one replica an extra setting from its next start on.
    pub fn set_replica_env(
        &mut self,
        service: &str,
        index: usize,
        key: &str,
        value: &str,
    ) -> anyhow::Result<()> {
        self.replica_mut(service, index)?
            .env
            .push((key.to_owned(), value.to_owned()));
        Ok(())
    }

    /// Starts a stopped replica again (same ports, same database).
    pub async fn start_replica(
        &mut self,
        service: &'static str,
        index: usize,
    ) -> anyhow::Result<()> {
        if self.replica(service, index)?.is_running() {
            return Ok(());
        }
        let (_, process) = self.spawn(service, index).await?;
        self.replica_mut(service, index)?.process = Some(process);
        self.wait_serving(service).await
    }

    /// `kill -9` of one replica.
    pub async fn kill(&mut self, service: &str, index: usize) -> anyhow::Result<Exited> {
        let process = self
            .replica_mut(service, index)?
            .process
            .take()
            .with_context(|| format!("sspr-{service}#{index} is not running"))?;
        process.kill().await
    }

    /// SIGTERM to one replica; returns how it exited and how long it took, failing when it
    /// takes longer than `bound`.
    pub async fn terminate(
        &mut self,
        service: &str,
        index: usize,
        bound: Duration,
    ) -> anyhow::Result<(Exited, Duration)> {
        let mut process = self
            .replica_mut(service, index)?
            .process
            .take()
            .with_context(|| format!("sspr-{service}#{index} is not running"))?;
        let started = tokio::time::Instant::now();
        process.send_sigterm().await?;
        let exited = process.wait_exit(bound).await?;
        Ok((exited, started.elapsed()))
    }

    /// The stderr of a running replica so far (for diagnostics).
    pub fn stderr(&self, service: &str, index: usize) -> String {
        self.replica(service, index)
            .ok()
            .and_then(|r| r.process.as_ref())
            .map(RunningService::stderr)
            .unwrap_or_default()
    }

    /// A channel that balances over every gateway replica that was started; a call to a dead
    /// gateway fails with UNAVAILABLE and the client retries (see `faults::Retrying`).
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let endpoints: Vec<Endpoint> = self
            .replicas
            .iter()
            .filter_map(|r| r.grpc_port)
            .map(|port| {
                Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .map(|e| {
                        e.connect_timeout(Duration::from_secs(2))
                            .timeout(Duration::from_secs(20))
                    })
                    .context("endpoint")
            })
            .collect::<anyhow::Result<_>>()?;
        if endpoints.len() == 1 {
            let endpoint = endpoints.into_iter().next().context("one endpoint")?;
            return endpoint
                .connect()
                .await
                .context("connecting to the gateway");
        }
        Ok(Channel::balance_list(endpoints.into_iter()))
    }

    /// Every message of the `SSPR_EVENTS` stream as (subject, `Nats-Msg-Id`, payload), read
    /// from the start with an ordered consumer.
    pub async fn stream_events(&self) -> anyhow::Result<Vec<StreamEvent>> {
        let client = self.nats.connect().await?;
        let js = async_nats::jetstream::new(client);
        let mut stream = js
            .get_stream(sspr_bus::subjects::EVENTS_STREAM)
            .await
            .context("SSPR_EVENTS")?;
        let total = stream.info().await.context("stream info")?.state.messages;
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .context("ordered consumer")?;
        let mut messages = consumer.messages().await.context("messages")?;
        let mut out = Vec::new();
        while (out.len() as u64) < total {
            let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .context("reading SSPR_EVENTS timed out")?;
            let Some(message) = next else { break };
            let message = message.context("reading SSPR_EVENTS")?;
            let msg_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            out.push(StreamEvent {
                subject: message.subject.to_string(),
                msg_id,
                payload: message.payload.to_vec(),
            });
        }
        Ok(out)
    }

    /// The message ids of every event the services committed to their outboxes (real rows,
    /// not decoy stand-ins), read from each service's schema; with whether each was marked
    /// published.
    pub async fn outbox_event_ids(&self) -> anyhow::Result<Vec<(String, String, bool)>> {
        use sspr_storage::sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
        let db = Database::connect(self.postgres.url())
            .await
            .context("connecting to the cluster's database")?;
        let mut out = Vec::new();
        for service in [
            "directory",
            "policy",
            "enrolment",
            "verification",
            "notification",
        ] {
            let sql = format!(
                "SELECT msg_id, subject, published_at IS NOT NULL AS published \
                 FROM sspr_{service}.outbox WHERE subject LIKE 'sspr.events.%' \
                 AND NOT (traceparent IS NULL AND published_at = created_at)"
            );
            let rows = db
                .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
                .await
                .with_context(|| format!("reading sspr_{service}.outbox"))?;
            for row in rows {
                let msg_id: String = row.try_get("", "msg_id")?;
                let subject: String = row.try_get("", "subject")?;
                let published: bool = row.try_get("", "published")?;
                out.push((msg_id, subject, published));
            }
        }
        Ok(out)
    }
}

impl Cluster {
    /// Runs a read-only diagnostic query on the cluster's database and renders each row as
    /// text (every selected column must be castable to text: write `col::text`).
    pub async fn diagnose(&self, sql: &str) -> Vec<String> {
        use sspr_storage::sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
        let Ok(db) = Database::connect(self.postgres.url()).await else {
            return vec!["(database unreachable)".to_owned()];
        };
        match db
            .query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
            .await
        {
            Ok(rows) => rows
                .iter()
                .map(|row| {
                    (0..)
                        .map_while(|i| row.try_get_by_index::<Option<String>>(i).ok())
                        .map(|v| v.unwrap_or_else(|| "NULL".to_owned()))
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .collect(),
            Err(e) => vec![format!("(query failed: {e})")],
        }
    }
}

/// One message of `SSPR_EVENTS`.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub subject: String,
    pub msg_id: String,
    pub payload: Vec<u8>,
}
