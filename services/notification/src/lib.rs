//! The notification service: delivers one-time codes by email, SMS and voice call.
//!
//! Verification publishes each code as a sealed (encrypted) delivery on the JetStream
//! work-queue stream `SSPR_DELIVERY`; every replica of this service pulls from one shared
//! durable consumer ([`delivery_worker`]), opens the delivery with `SSPR_CODE_KEY`, renders the
//! message ([`domain::templates`]), hands it to the SMTP server (lettre) or the SMS/voice
//! provider (the JSON webhook or Twilio, [`sms_config`]), and records the outcome
//! ([`adapters::db`]). A successful send commits the SENT record and the `code.delivered` event
//! in one transaction (outbox); a delivery given up commits FAILED, a dead letter and
//! `code.delivery_failed` together. With `SSPR_RECEIPTS_ADDR`, providers' signed delivery
//! receipts move a SENT delivery to DELIVERED or FAILED with their events ([`receipts`]). Mail
//! goes through one bounded pool of SMTP connections per replica ([`adapters::smtp`]:
//! `TCP_NODELAY`, optional STARTTLS or implicit TLS, optional login). The only request/reply
//! endpoint is
//! `sspr.rpc.notification.get_delivery` ([`handlers`]). A second durable consumer
//! ([`password_changed`]) mails "your password was changed" to the user's registered emails
//! after every password change, and alerts the other administrators when the account is an
//! administrator. A third ([`method_changes`]) announces every method change (added, confirmed
//! again, removed) to the user's other contact methods, masked, against registration takeover.
//! Every mail is rendered from [`domain::templates`] (built-in en/fr, with the
//! operator overrides of `SSPR_TEMPLATE_DIR`).
//!
//! Invariants: a code is acknowledged only once the provider accepted it, is never delivered
//! after it expired, and never appears (nor does the destination) in a log, span, record,
//! event or error message.

pub mod adapters;
mod config;
pub mod delivery_worker;
pub mod domain;
pub mod handlers;
pub mod method_changes;
pub mod password_changed;
pub mod ports;
pub mod receipts;
pub mod retention;
pub mod sms_config;

use std::sync::Arc;

use anyhow::Context;
use sspr_runtime::{Emitter, ServiceContext};
use tokio_util::sync::CancellationToken;

pub use config::{
    Config, DEFAULT_MAIL_FROM, MailTransport, SmsWebhookUrl, SmtpCredentials, SmtpOptions, SmtpTls,
    SmtpTlsCa, SmtpUrl, default_mail_from,
};
pub use lettre::message::Mailbox;

use crate::adapters::accounts::BusAccounts;
use crate::adapters::db::DbDeliveryStore;
use crate::adapters::helpdesk::BusHelpdesk;
use crate::adapters::mail_files::{FileMailer, FileSms};
use crate::adapters::receipts_db::DbReceiptStore;
use crate::adapters::sms_webhook::{NoSmsProvider, WebhookSms};
use crate::adapters::smtp::SmtpMailer;
use crate::adapters::twilio::TwilioSms;
use crate::delivery_worker::DeliveryWorker;
use crate::ports::{SharedMailer, SharedReceiptStore, SharedSmsSender};
use crate::sms_config::SmsProviderChoice;

/// Short name: database name, NATS service `sspr-notification`.
pub const SERVICE: &str = "notification";

/// Runs the service until `shutdown` is cancelled: migrations, streams, outbox relay, the
/// delivery consumer and the NATS endpoints. On shutdown it stops pulling, finishes the
/// deliveries in flight, publishes their events, and returns.
pub async fn run(
    ctx: ServiceContext,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let emitter =
        Emitter::start_with::<adapters::migration::Migrator>(SERVICE, &ctx, retention::purges)
            .await?;
    let signal = emitter.signal();
    let store = Arc::new(DbDeliveryStore::new(ctx.db.clone(), signal));

    let (mailer, smtp): (SharedMailer, Option<Arc<SmtpMailer>>) = match config.mail {
        MailTransport::Smtp { url } => {
            tracing::info!(
                smtp = %url,
                from = %config.mail_from,
                login = config.smtp.credentials.is_some(),
                "mail goes to the SMTP server"
            );
            if config.smtp.credentials.is_some() && url.tls() == SmtpTls::None {
                tracing::warn!(
                    "SSPR_SMTP_USER is set but SSPR_SMTP_URL uses no TLS: the login crosses the network in clear"
                );
            }
            let smtp = Arc::new(
                SmtpMailer::new(url, &config.smtp, config.mail_from.clone())
                    .context("setting up the SMTP client")?,
            );
            (smtp.clone(), Some(smtp))
        }
        MailTransport::Files { dir } => {
            tracing::warn!(dir = %dir.display(), "development mode: mail is written as .eml files, not sent");
            (
                Arc::new(FileMailer::new(dir, config.mail_from.clone())),
                None,
            )
        }
    };
    let receipt_settings = config.sms.receipts.clone();
    let twilio_auth_token = match &config.sms.provider {
        SmsProviderChoice::Twilio(t) => Some(t.auth_token.clone()),
        SmsProviderChoice::Webhook => None,
    };
    let sms: SharedSmsSender = match (
        config.sms.provider,
        config.sms_webhook_url,
        config.sms_files_dir,
    ) {
        (SmsProviderChoice::Twilio(twilio), _, _) => {
            tracing::info!(host = %twilio.api_url.host_str().unwrap_or_default(), receipts = receipt_settings.is_some(), "SMS and voice calls go to Twilio");
            Arc::new(
                TwilioSms::new(twilio, receipt_settings.clone())
                    .context("building the Twilio client")?,
            )
        }
        (SmsProviderChoice::Webhook, Some(url), _) => {
            tracing::info!(host = %url.url().host_str().unwrap_or_default(), receipts = receipt_settings.is_some(), "SMS goes to the webhook");
            Arc::new(
                WebhookSms::with_receipts(url, receipt_settings.clone())
                    .context("building the SMS webhook client")?,
            )
        }
        (SmsProviderChoice::Webhook, None, Some(dir)) => {
            tracing::warn!(dir = %dir.display(), "development mode: SMS are written as text files, not sent");
            Arc::new(FileSms::new(dir))
        }
        (SmsProviderChoice::Webhook, None, None) => {
            tracing::warn!("SSPR_SMS_WEBHOOK_URL is not set: SMS deliveries will fail");
            Arc::new(NoSmsProvider)
        }
    };

    let receipt_store: SharedReceiptStore =
        Arc::new(DbReceiptStore::new(ctx.db.clone(), emitter.signal()));
    let helpdesk = Arc::new(BusHelpdesk::new(ctx.bus.clone()));
    let worker = Arc::new(DeliveryWorker {
        keys: config.code_keys,
        store: store.clone(),
        mailer: mailer.clone(),
        sms: sms.clone(),
        clock: ctx.clock.clone(),
        templates: config.templates.clone(),
        helpdesk: helpdesk.clone(),
        retry: config.retry,
        provider_messages: Some(receipt_store.clone()),
    });
    let notifier = Arc::new(password_changed::Notifier {
        store: store.clone(),
        accounts: Arc::new(BusAccounts::new(ctx.bus.clone())),
        mailer: mailer.clone(),
        templates: config.templates.clone(),
        clock: ctx.clock.clone(),
        helpdesk: helpdesk.clone(),
    });
    let announcer = Arc::new(method_changes::Announcer {
        store: store.clone(),
        accounts: Arc::new(BusAccounts::new(ctx.bus.clone())),
        mailer: mailer.clone(),
        sms,
        templates: config.templates.clone(),
        clock: ctx.clock.clone(),
        helpdesk,
    });
    let stop = shutdown.child_token();
    let receipts_server = match &receipt_settings {
        Some(settings) => {
            let receipts = Arc::new(receipts::Receipts {
                store: store.clone(),
                receipts: receipt_store,
                clock: ctx.clock.clone(),
                public_url: settings
                    .public_url
                    .as_str()
                    .trim_end_matches('/')
                    .to_owned(),
                twilio_auth_token,
                webhook_secret: config.sms.webhook_secret.clone(),
            });
            let (addr, serve) = receipts::bind(settings.addr, receipts, stop.clone())
                .await
                .with_context(|| format!("binding the receipts listener on {}", settings.addr))?;
            tracing::info!(%addr, "serving delivery receipts");
            Some(tokio::spawn(serve))
        }
        None => None,
    };
    let consumer = tokio::spawn(delivery_worker::consume(
        ctx.bus.jetstream().clone(),
        worker,
        stop.clone(),
    ));

    let consumer_watch = tokio::spawn(delivery_worker::watch_consumer(
        ctx.bus.jetstream().clone(),
        delivery_worker::CONSUMER_SAMPLE_EVERY,
        stop.clone(),
    ));

    let notices = tokio::spawn(password_changed::consume(
        ctx.bus.clone(),
        notifier,
        stop.clone(),
    ));

    let announcements = tokio::spawn(method_changes::consume(
        ctx.bus.clone(),
        announcer,
        stop.clone(),
    ));

    let served = sspr_bus::serve(
        &ctx.bus,
        handlers::router(store),
        stop.clone().cancelled_owned(),
    )
    .await;
    // If serving failed to start, stop the consumer too.
    stop.cancel();
    if let Err(e) = consumer.await {
        tracing::error!(error = %e, "the delivery consumer panicked");
    }
    if let Err(e) = consumer_watch.await {
        tracing::error!(error = %e, "the delivery consumer sampler panicked");
    }
    if let Err(e) = notices.await {
        tracing::error!(error = %e, "the password.changed consumer panicked");
    }
    if let Err(e) = announcements.await {
        tracing::error!(error = %e, "the method-change consumer panicked");
    }
    if let Some(server) = receipts_server
        && let Err(e) = server.await
    {
        tracing::error!(error = %e, "the receipts listener panicked");
    }
    emitter.finish(&ctx).await;
    if let Some(smtp) = smtp {
        smtp.shutdown().await;
    }
    served.context("serving the notification endpoints")?;
    Ok(())
}
