//! The end-to-end harness: a whole sspr system on real components, per test.
//!
//! [`World::start`] spawns a private nats-server (JetStream, temp dir, random port), a real SMTP
//! sink and an HTTP sink for SMS, fresh databases (SQLite files or a fresh PostgreSQL database),
//! and every service through [`sspr_cli::dev::Stack`], each with its own NATS connection and
//! database, then talks to the gateway over gRPC like any client. Every raw message on
//! `sspr.events.v1.>` is recorded with its headers so tests can check contents and trace context.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use sspr_cli::dev::{Stack, StackOptions};
use sspr_clock::ManualClock;
use sspr_proto::admin::v1::{self as admin, admin_client::AdminClient};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::registration::v1::{self as registration, registration_client::RegistrationClient};
use sspr_proto::reset::v1::password_reset_client::PasswordResetClient;
use sspr_testkit::{HttpSink, NatsServer, SmtpSink, TestDb};
use tonic::transport::Channel;

pub use sspr_testkit::ReceivedMail;

pub mod cluster;
pub mod faults;
mod flow;
pub mod population;

/// Admin token every test stack uses.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

/// Which database the services use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Defines, for each `scenario => sqlite_test, postgres_test;`, two tests that run the async
/// `scenario(Backend)` once on SQLite and once on PostgreSQL (which skips itself when
/// `SSPR_TEST_POSTGRES_URL` is not set, see [`World::start_or_skip`]).
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $scenario($crate::Backend::Sqlite).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            $scenario($crate::Backend::Postgres).await;
        }
    )*};
}

/// One raw message seen on `sspr.events.v1.>`.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl RawEvent {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn decode<M: prost::Message + Default>(&self) -> anyhow::Result<M> {
        Ok(M::decode(self.payload.as_slice())?)
    }
}

/// A running system and the fixtures around it.
pub struct World {
    pub nats: NatsServer,
    pub smtp: SmtpSink,
    pub sms: HttpSink,
    pub clock: ManualClock,
    pub code_key: [u8; 32],
    stack: Option<Stack>,
    channel: Channel,
    events: Arc<Mutex<Vec<RawEvent>>>,
    _db: TestDb,
}

impl World {
    /// Starts everything; `Ok(None)` when PostgreSQL was asked for but is not configured.
    pub async fn start(backend: Backend) -> anyhow::Result<Option<World>> {
        Self::start_with(backend, |_| {}).await
    }

    /// [`World::start`] for a test: `None` (after saying so on stderr) when PostgreSQL was asked
    /// for but is not configured, and a panic when the system cannot start.
    pub async fn start_or_skip(backend: Backend) -> Option<World> {
        Self::start_with_or_skip(backend, |_| {}).await
    }

    /// [`World::start_with`] for a test, as [`World::start_or_skip`].
    pub async fn start_with_or_skip(
        backend: Backend,
        configure: impl FnOnce(&mut StackOptions),
    ) -> Option<World> {
        match Self::start_with(backend, configure).await {
            Ok(Some(w)) => Some(w),
            Ok(None) => {
                eprintln!("PostgreSQL not configured (SSPR_TEST_POSTGRES_URL): skipped");
                None
            }
            Err(e) => panic!("could not start the system: {e:#}"),
        }
    }

    /// As [`World::start`], letting `configure` change the stack's options (for example the
    /// directory's LDAP connector) before anything starts.
    pub async fn start_with(
        backend: Backend,
        configure: impl FnOnce(&mut StackOptions),
    ) -> anyhow::Result<Option<World>> {
        // The real telemetry setup (with its OpenTelemetry layer), so trace context is created
        // and propagated exactly as in the binaries; the first test to get here installs it.
        let _ = sspr_telemetry::init("sspr-e2e");
        let db = match backend {
            Backend::Sqlite => TestDb::sqlite()?,
            Backend::Postgres => match TestDb::postgres().await? {
                Some(db) => db,
                None => return Ok(None),
            },
        };
        let nats = NatsServer::start().await?;
        let smtp = SmtpSink::start().await?;
        let sms = HttpSink::start().await?;
        let clock = ManualClock::new(chrono::Utc::now());
        let code_key = sspr_testkit::random_code_key();

        let events = Arc::new(Mutex::new(Vec::new()));
        let client = nats.connect().await?;
        let mut sub = client.subscribe("sspr.events.v1.>").await?;
        client.flush().await?;
        let sink = Arc::clone(&events);
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let headers = msg
                    .headers
                    .as_ref()
                    .map(|h| {
                        h.iter()
                            .flat_map(|(k, vs)| {
                                vs.iter().map(move |v| (k.to_string(), v.to_string()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut guard = sink.lock().unwrap_or_else(|p| p.into_inner());
                guard.push(RawEvent {
                    subject: msg.subject.to_string(),
                    headers,
                    payload: msg.payload.to_vec(),
                });
            }
        });

        let mut opts = Self::options(&nats, &db, &smtp, &sms, code_key, &clock)?;
        configure(&mut opts);
        let stack = Stack::start(opts).await?;
        let channel = Channel::from_shared(format!("http://{}", stack.grpc_addr()))?
            .connect()
            .await?;
        Ok(Some(World {
            nats,
            smtp,
            sms,
            clock,
            code_key,
            stack: Some(stack),
            channel,
            events,
            _db: db,
        }))
    }

    /// The stack options every test starts from.
    fn options(
        nats: &NatsServer,
        db: &TestDb,
        smtp: &SmtpSink,
        sms: &HttpSink,
        code_key: [u8; 32],
        clock: &ManualClock,
    ) -> anyhow::Result<StackOptions> {
        Ok(StackOptions {
            nats_url: nats.url(),
            db: db.settings(),
            mail: sspr_cli::dev::smtp_transport(&smtp.url())?,
            mail_from: Some("sspr <no-reply@sspr.test>".to_owned()),
            sms_webhook_url: Some(sms.url()),
            sms_dir: None,
            code_key,
            code_key_ring: None,
            admin_token: ADMIN_TOKEN.to_owned(),
            named_admin_tokens: None,
            grpc_addr: "127.0.0.1:0".parse()?,
            clock: Arc::new(clock.clone()),
            resend_after: Duration::ZERO,
            directory: sspr_directory::Config::default(),
            policy: sspr_policy::Config::default(),
            bus_config: None,
            verification_replicas: 1,
            trusted_proxy_hops: 0,
            challenge_verify_url: None,
            challenge_secret: None,
            sms: Default::default(),
        })
    }

    /// Stops every service and starts them again on the same NATS server, databases, sinks
    /// and clock, with the default options changed by `configure` (e.g. a rotated code key):
    /// what a rolling redeploy does. The events recorded so far are kept.
    pub async fn restart_with(
        &mut self,
        configure: impl FnOnce(&mut StackOptions),
    ) -> anyhow::Result<()> {
        if let Some(stack) = self.stack.take() {
            stack.stop().await;
        }
        let mut opts = Self::options(
            &self.nats,
            &self._db,
            &self.smtp,
            &self.sms,
            self.code_key,
            &self.clock,
        )?;
        configure(&mut opts);
        let stack = Stack::start(opts).await?;
        self.channel = Channel::from_shared(format!("http://{}", stack.grpc_addr()))?
            .connect()
            .await?;
        self.stack = Some(stack);
        Ok(())
    }

    /// The database settings the services use (to look at what they store).
    pub fn db_settings(&self) -> sspr_storage::DbSettings {
        self._db.settings()
    }

    pub fn reset(&self) -> PasswordResetClient<Channel> {
        PasswordResetClient::new(self.channel.clone())
    }

    pub fn registration(&self) -> RegistrationClient<Channel> {
        RegistrationClient::new(self.channel.clone())
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
    }

    /// Wraps `body` with the admin bearer token.
    pub fn as_admin<T>(body: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(body);
        if let Ok(v) = format!("Bearer {ADMIN_TOKEN}").parse() {
            req.metadata_mut().insert("authorization", v);
        }
        req
    }

    pub async fn set_policy(
        &self,
        scope: admin::Scope,
        groups: &[&str],
        methods_required: u32,
    ) -> anyhow::Result<admin::Policy> {
        let policy = admin::Policy {
            scope: scope as i32,
            group_ids: groups.iter().map(|g| g.to_string()).collect(),
            methods_required,
            allowed_methods: vec![MethodKind::Email as i32, MethodKind::Sms as i32],
            ..Default::default()
        };
        Ok(self
            .admin()
            .set_policy(Self::as_admin(admin::SetPolicyRequest {
                policy: Some(policy),
            }))
            .await?
            .into_inner())
    }

    pub async fn upsert_user(
        &self,
        user_id: &str,
        password: &str,
        groups: &[&str],
        is_admin: bool,
    ) -> anyhow::Result<admin::User> {
        let body = admin::UpsertUserRequest {
            user_id: user_id.to_owned(),
            display_name: format!("User {user_id}"),
            locale: "en".to_owned(),
            group_ids: groups.iter().map(|g| g.to_string()).collect(),
            is_admin,
            password: password.to_owned(),
            enabled: None,
            locked: None,
        };
        Ok(self
            .admin()
            .upsert_user(Self::as_admin(body))
            .await?
            .into_inner())
    }

    /// Waits for a mail to `to` beyond the first `seen` ones to that address and returns it.
    pub async fn mail_to(&self, to: &str, seen: usize) -> anyhow::Result<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mails: Vec<ReceivedMail> = self
                .smtp
                .messages()
                .into_iter()
                .filter(|m| m.to.iter().any(|t| t.contains(to)))
                .collect();
            if let Some(m) = mails.get(seen) {
                return Ok(m.clone());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "no mail #{} to {to} within 15 s (got {})",
                    seen + 1,
                    mails.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Number of mails received so far for `to`.
    pub fn mail_count(&self, to: &str) -> usize {
        self.smtp
            .messages()
            .iter()
            .filter(|m| m.to.iter().any(|t| t.contains(to)))
            .count()
    }

    /// Waits for the next code mailed to `to` (beyond the first `seen` mails to that address)
    /// and extracts it from the text/plain part. Mails without a code, such as the
    /// password-changed notice of an earlier reset that may land in between, are skipped.
    pub async fn next_code(&self, to: &str, seen: usize) -> anyhow::Result<String> {
        let mut index = seen;
        loop {
            let mail = self.mail_to(to, index).await?;
            let text = mail.text_body().context("mail without a text part")?;
            if let Some(code) = code_in(&text) {
                return Ok(code);
            }
            index += 1;
        }
    }

    /// Sends a reset code to the email method `method_id` of the flow `session_id` and returns
    /// the code read from the mail that arrives at `address`.
    pub async fn send_reset_code(
        &self,
        session_id: &str,
        method_id: &str,
        address: &str,
    ) -> anyhow::Result<String> {
        let seen = self.mail_count(address);
        self.reset()
            .send_code(sspr_proto::reset::v1::SendCodeRequest {
                session_id: session_id.to_owned(),
                method_id: method_id.to_owned(),
                ..Default::default()
            })
            .await?;
        self.next_code(address, seen).await
    }

    /// Registers `address` as an email method for the user with `password`; returns its id.
    pub async fn register_email(
        &self,
        user_id: &str,
        password: &str,
        address: &str,
    ) -> anyhow::Result<String> {
        let mut reg = self.registration();
        let begin = reg
            .begin_registration(registration::BeginRegistrationRequest {
                user_id: user_id.to_owned(),
                password: password.to_owned(),
                locale: "en".to_owned(),
            })
            .await?
            .into_inner();
        let seen = self.mail_count(address);
        let add = registration::AddMethodRequest {
            session_id: begin.session_id.clone(),
            kind: MethodKind::Email as i32,
            destination: address.to_owned(),
        };
        let added = match reg.add_method(add.clone()).await {
            Ok(added) => added.into_inner(),
            // A user who already has a method must prove one before adding another
            // (re-confirming an existing address needs nothing).
            Err(status) if begin.step_up_required => {
                if status.code() != tonic::Code::FailedPrecondition {
                    return Err(status.into());
                }
                self.step_up(&begin).await?;
                reg.add_method(add).await?.into_inner()
            }
            Err(status) => return Err(status.into()),
        };
        let code = self.next_code(address, seen).await?;
        reg.confirm_method(registration::ConfirmMethodRequest {
            session_id: begin.session_id,
            method_id: added.method_id.clone(),
            code,
        })
        .await?;
        Ok(added.method_id)
    }

    /// Steps up the registration session `begin` with a code mailed to the user's first
    /// registered email method (SendStepUpCode, then VerifyStepUpCode), so it may add methods.
    pub async fn step_up(
        &self,
        begin: &registration::BeginRegistrationResponse,
    ) -> anyhow::Result<()> {
        let method = begin
            .registered
            .iter()
            .find(|m| m.kind == MethodKind::Email as i32)
            .context("no registered email method to step up with")?;
        let seen = self.smtp.messages().len();
        let mut reg = self.registration();
        reg.send_step_up_code(registration::SendStepUpCodeRequest {
            session_id: begin.session_id.clone(),
            method_id: method.method_id.clone(),
        })
        .await?;
        let code = self.next_code_anywhere(seen).await?;
        reg.verify_step_up_code(registration::VerifyStepUpCodeRequest {
            session_id: begin.session_id.clone(),
            method_id: method.method_id.clone(),
            code,
        })
        .await?;
        Ok(())
    }

    /// Waits for a mail carrying a code, to any address, beyond the first `seen` mails of all.
    pub async fn next_code_anywhere(&self, seen: usize) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let code = self
                .smtp
                .messages()
                .into_iter()
                .skip(seen)
                .find_map(|m| m.text_body().and_then(|t| code_in(&t)));
            if let Some(code) = code {
                return Ok(code);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no mail with a code within 15 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every event recorded so far.
    pub fn events(&self) -> Vec<RawEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until an event on `subject` satisfying `pred` was recorded.
    pub async fn wait_event(
        &self,
        subject: &str,
        pred: impl Fn(&RawEvent) -> bool,
    ) -> anyhow::Result<RawEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(e) = self
                .events()
                .into_iter()
                .find(|e| e.subject == subject && pred(e))
            {
                return Ok(e);
            }
            if tokio::time::Instant::now() > deadline {
                let seen: Vec<String> = self.events().into_iter().map(|e| e.subject).collect();
                bail!("no event on {subject} within 15 s; seen: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every service.
    pub async fn stop(mut self) {
        if let Some(stack) = self.stack.take() {
            stack.stop().await;
        }
    }
}

/// A well-formed code of the same length that is not `code`.
pub fn other_code(code: &str) -> String {
    let digit = if code.starts_with('0') { "1" } else { "0" };
    digit.repeat(code.len())
}

/// The first line of `text` that is only 6 to 10 digits.
pub fn code_in(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| (6..=10).contains(&w.len()))
        .map(str::to_owned)
}
