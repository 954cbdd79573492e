//! Test harness: a private nats-server, a real SMTP sink, an HTTP sink for the SMS webhook, a
//! fresh database, and the notification service running in-process. Deliveries are published
//! exactly as verification publishes them: sealed with the code key, on
//! `sspr.delivery.v1.<channel>`, with `Nats-Msg-Id` and a `traceparent` header.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use prost::Message;
use sspr_bus::{Bus, BusConfig, BusError, subjects};
use sspr_notification::adapters::db::{DbDeliveryStore, dead_letters};
use sspr_notification::domain::retry::RetryPolicy;
use sspr_notification::{Config, MailTransport, SmsWebhookUrl, SmtpTlsCa, SmtpUrl};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::{CodeDelivered, CodeDeliveryFailed, CodePurpose};
use sspr_proto::internal::notification::v1::{
    Delivery, DeliveryStatus, GetDeliveryRequest, GetDeliveryResponse,
};
use sspr_runtime::{Secret, ServiceContext};
use sspr_storage::outbox::OutboxSignal;
use sspr_testkit::{HttpSink, NatsServer, SmtpSink, SmtpSinkOptions, SmtpSinkTls, TestDb};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(20);

/// Which mail transport and SMS settings the service gets.
pub enum Setup {
    /// SMTP to the sink, SMS to the HTTP sink.
    Standard,
    /// SMTP to the sink, no SMS webhook.
    NoSms,
    /// Mail written as .eml files into the harness's mail dir.
    Files,
    /// SMTP to a sink that offers STARTTLS (required by the URL), trusting the sink's CA.
    StartTls,
}

pub struct Harness {
    pub nats: NatsServer,
    pub smtp: SmtpSink,
    pub http: HttpSink,
    pub db: TestDb,
    pub bus: Bus,
    pub key: [u8; 32],
    pub mail_dir: tempfile::TempDir,
    shutdown: CancellationToken,
    service: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Harness {
    /// On a fresh SQLite database.
    pub async fn start(setup: Setup) -> anyhow::Result<Harness> {
        Self::start_on(setup, TestDb::sqlite()?).await
    }

    /// On the given database (SQLite or PostgreSQL).
    pub async fn start_on(setup: Setup, db: TestDb) -> anyhow::Result<Harness> {
        Self::start_configured(setup, db, |_, _| {}).await
    }

    /// As [`Harness::start_on`], with `configure` changing the service's settings last (it
    /// gets the HTTP sink, e.g. to make it the Twilio API).
    pub async fn start_configured(
        setup: Setup,
        db: TestDb,
        configure: impl FnOnce(&mut Config, &HttpSink),
    ) -> anyhow::Result<Harness> {
        // Installs the OpenTelemetry layer (no exporter) so spans carry real trace ids.
        let _ = sspr_telemetry::init("sspr-notification-test");
        let nats = NatsServer::start().await?;
        let smtp = match setup {
            Setup::StartTls => {
                SmtpSink::start_with(SmtpSinkOptions {
                    tls: SmtpSinkTls::StartTls,
                    login: None,
                })
                .await?
            }
            _ => SmtpSink::start().await?,
        };
        let http = HttpSink::start().await?;
        let mail_dir = tempfile::tempdir()?;
        let key = sspr_testkit::random_code_key();
        let bus = Bus::connect(&BusConfig::new(nats.url(), "notification-test")).await?;

        let smtp_url = SmtpUrl::parse(&smtp.url()).map_err(anyhow::Error::msg)?;
        let mail = match setup {
            Setup::Files => MailTransport::Files {
                dir: mail_dir.path().join("mail"),
            },
            _ => MailTransport::Smtp { url: smtp_url },
        };
        let mut config = Config::new(mail, Secret::new(key));
        config.retry = fast_retry();
        if let Some(ca) = smtp.ca_file() {
            config.smtp.tls_ca = Some(SmtpTlsCa::load(&ca).map_err(anyhow::Error::msg)?);
        }
        if matches!(setup, Setup::Files) {
            // `sspr dev`: no SMS provider, SMS written as files.
            config.sms_files_dir = Some(mail_dir.path().join("sms"));
        } else if !matches!(setup, Setup::NoSms) {
            config.sms_webhook_url =
                Some(SmsWebhookUrl::parse(&http.url()).map_err(anyhow::Error::msg)?);
        }

        configure(&mut config, &http);

        let service_bus = Bus::connect(&BusConfig::new(nats.url(), "sspr-notification")).await?;
        let db_conn = sspr_storage::connect(sspr_notification::SERVICE, &db.settings()).await?;
        let ctx = ServiceContext {
            bus: service_bus,
            db: db_conn,
            clock: sspr_clock::system(),
        };
        let shutdown = CancellationToken::new();
        let service = tokio::spawn(sspr_notification::run(ctx, config, shutdown.clone()));

        let harness = Harness {
            nats,
            smtp,
            http,
            db,
            bus,
            key,
            mail_dir,
            shutdown,
            service: Some(service),
        };
        harness.wait_until_serving().await?;
        Ok(harness)
    }

    /// Waits until the get_delivery endpoint answers (the service has migrated and is serving).
    async fn wait_until_serving(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.get_delivery("probe").await {
                Err(BusError::Rpc(_)) => return Ok(()),
                Ok(_) => return Ok(()),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => bail!("notification never started serving: {e}"),
            }
        }
    }

    /// Stops the service and returns its result.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.service.take() {
            Some(task) => tokio::time::timeout(WAIT, task)
                .await
                .context("service did not stop")??,
            None => Ok(()),
        }
    }

    /// Seals `delivery` with the harness key and publishes it like verification does.
    pub async fn publish(&self, delivery: &Delivery, traceparent: &str) -> anyhow::Result<()> {
        self.publish_sealed_with(&self.key, delivery, traceparent)
            .await
    }

    pub async fn publish_sealed_with(
        &self,
        key: &[u8; 32],
        delivery: &Delivery,
        traceparent: &str,
    ) -> anyhow::Result<()> {
        self.publish_raw(key, delivery, traceparent, &delivery.delivery_id)
            .await
    }

    /// Publishes with an explicit `Nats-Msg-Id` (a different one makes the stream accept a
    /// second copy of the same delivery, as a redelivery would look).
    pub async fn publish_raw(
        &self,
        key: &[u8; 32],
        delivery: &Delivery,
        traceparent: &str,
        msg_id: &str,
    ) -> anyhow::Result<()> {
        let sealed = sspr_bus::sealed::seal(key, delivery)?;
        let subject = match MethodKind::try_from(delivery.kind) {
            Ok(MethodKind::Sms) => subjects::delivery::SMS,
            Ok(MethodKind::Voice) => subjects::delivery::VOICE,
            _ => subjects::delivery::EMAIL,
        };
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", traceparent);
        self.bus
            .publish_durable(
                subject,
                msg_id,
                headers,
                Bytes::from(sealed.encode_to_vec()),
            )
            .await?;
        Ok(())
    }

    pub async fn get_delivery(&self, id: &str) -> Result<GetDeliveryResponse, BusError> {
        self.bus
            .request(
                subjects::rpc::notification::GET_DELIVERY,
                &GetDeliveryRequest {
                    delivery_id: id.to_owned(),
                },
            )
            .await
    }

    /// Waits until the record of `id` has `status`.
    pub async fn wait_status(
        &self,
        id: &str,
        status: DeliveryStatus,
    ) -> anyhow::Result<GetDeliveryResponse> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = None;
        while tokio::time::Instant::now() < deadline {
            match self.get_delivery(id).await {
                Ok(r) if r.status == status as i32 => return Ok(r),
                other => last = Some(format!("{other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("delivery {id} never reached {status:?}; last answer {last:?}")
    }

    /// The `code.delivered` event for `delivery_id`, with its raw payload and headers.
    pub async fn wait_code_delivered(
        &self,
        delivery_id: &str,
    ) -> anyhow::Result<(CodeDelivered, Bytes, Option<HeaderMap>)> {
        let stream = self
            .bus
            .jetstream()
            .get_stream(subjects::EVENTS_STREAM)
            .await?;
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                filter_subject: subjects::events::CODE_DELIVERED.to_owned(),
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, messages.next())
                .await
                .with_context(|| format!("no code.delivered event for {delivery_id}"))?;
            let Some(message) = next else {
                bail!("event stream ended")
            };
            let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
            let event = CodeDelivered::decode(message.payload.clone())?;
            if event.delivery_id == delivery_id {
                return Ok((event, message.payload.clone(), message.headers.clone()));
            }
        }
    }

    /// The `code.delivery_failed` event for `delivery_id`, with its raw payload.
    pub async fn wait_delivery_failed(
        &self,
        delivery_id: &str,
    ) -> anyhow::Result<(CodeDeliveryFailed, Bytes)> {
        let stream = self
            .bus
            .jetstream()
            .get_stream(subjects::EVENTS_STREAM)
            .await?;
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                filter_subject: subjects::events::CODE_DELIVERY_FAILED.to_owned(),
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, messages.next())
                .await
                .with_context(|| format!("no code.delivery_failed event for {delivery_id}"))?;
            let Some(message) = next else {
                bail!("event stream ended")
            };
            let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
            let event = CodeDeliveryFailed::decode(message.payload.clone())?;
            if event.delivery_id == delivery_id {
                return Ok((event, message.payload.clone()));
            }
        }
    }

    /// How many `code.delivery_failed` events the stream holds.
    pub async fn delivery_failed_count(&self) -> anyhow::Result<u64> {
        let stream = self
            .bus
            .jetstream()
            .get_stream(subjects::EVENTS_STREAM)
            .await?;
        let mut consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                filter_subject: subjects::events::CODE_DELIVERY_FAILED.to_owned(),
                ..Default::default()
            })
            .await?;
        Ok(consumer.info().await?.num_pending)
    }

    /// A second connection to the service's database, with its delivery store (as another
    /// replica would see it).
    pub async fn store(&self) -> anyhow::Result<(sea_orm::DatabaseConnection, DbDeliveryStore)> {
        let conn = sspr_storage::connect(sspr_notification::SERVICE, &self.db.settings()).await?;
        let store = DbDeliveryStore::new(conn.clone(), OutboxSignal::default());
        Ok((conn, store))
    }

    /// The dead-letter entry of `delivery_id`, if any.
    pub async fn dead_letter(
        &self,
        delivery_id: &str,
    ) -> anyhow::Result<Option<dead_letters::Model>> {
        use sea_orm::EntityTrait;
        let (conn, _) = self.store().await?;
        Ok(dead_letters::Entity::find_by_id(delivery_id.to_owned())
            .one(&conn)
            .await?)
    }

    /// Waits until the delivery consumer has nothing pending and nothing awaiting an ack.
    pub async fn wait_queue_drained(&self) -> anyhow::Result<()> {
        let stream = self
            .bus
            .jetstream()
            .get_stream(subjects::DELIVERY_STREAM)
            .await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let info = stream.consumer_info(subjects::DELIVERY_CONSUMER).await?;
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "delivery queue not drained: {} pending, {} awaiting ack",
                    info.num_pending,
                    info.num_ack_pending
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many messages the delivery stream still holds.
    pub async fn delivery_stream_len(&self) -> anyhow::Result<u64> {
        let mut stream = self
            .bus
            .jetstream()
            .get_stream(subjects::DELIVERY_STREAM)
            .await?;
        Ok(stream.info().await?.state.messages)
    }

    /// How many `code.delivered` events the stream holds.
    pub async fn code_delivered_count(&self) -> anyhow::Result<u64> {
        let stream = self
            .bus
            .jetstream()
            .get_stream(subjects::EVENTS_STREAM)
            .await?;
        let mut consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                filter_subject: subjects::events::CODE_DELIVERED.to_owned(),
                ..Default::default()
            })
            .await?;
        Ok(consumer.info().await?.num_pending)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A delivery as verification would build it, issued `age` ago and valid 10 minutes.
pub fn delivery(
    kind: MethodKind,
    destination: &str,
    code: &str,
    purpose: CodePurpose,
    locale: &str,
) -> Delivery {
    delivery_issued_at(
        kind,
        destination,
        code,
        purpose,
        locale,
        Utc::now() - chrono::Duration::seconds(2),
    )
}

pub fn delivery_issued_at(
    kind: MethodKind,
    destination: &str,
    code: &str,
    purpose: CodePurpose,
    locale: &str,
    issued_at: DateTime<Utc>,
) -> Delivery {
    Delivery {
        delivery_id: uuid::Uuid::now_v7().to_string(),
        kind: kind as i32,
        destination: destination.to_owned(),
        code: code.to_owned(),
        purpose: purpose as i32,
        locale: locale.to_owned(),
        user_id: "alice".to_owned(),
        flow_id: format!("flow-{}", uuid::Uuid::new_v4().simple()),
        issued_at: Some(sspr_proto::time::timestamp(issued_at)),
        expires_at: Some(sspr_proto::time::timestamp(
            issued_at + chrono::Duration::minutes(10),
        )),
        method_id: "method-1".to_owned(),
    }
}

/// Retries after 100 ms, 200 ms, ... (at most 1 s), five sends as in production.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        ..RetryPolicy::default()
    }
}

/// A fresh W3C traceparent; returns (header, trace id).
pub fn traceparent() -> (String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let span_id = &uuid::Uuid::new_v4().simple().to_string()[..16];
    (format!("00-{trace_id}-{span_id}-01"), trace_id)
}

/// True when `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
