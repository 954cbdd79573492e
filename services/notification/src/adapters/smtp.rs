//! Mail over SMTP with lettre: one pooled `AsyncSmtpTransport` shared by every delivery.
//!
//! Invariants:
//! - A send succeeds only when the server accepted the message (250 after DATA).
//! - A send never runs longer than [`SEND_TIMEOUT`] from the caller's point of view (shorter than
//!   the queue's ack wait). The send itself runs in its own task with lettre's per-command
//!   timeout and is *not* cancelled at that deadline: dropping a pooled connection in the middle
//!   of a transaction could hand a half-written DATA section to the next mail on that
//!   connection. A late success after the deadline can at worst cause a duplicate mail on retry.
//! - Failure reasons are built from SMTP reply codes and I/O error kinds only, never from the
//!   server's text, which often repeats the recipient address.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tracing::Instrument;

use crate::adapters::mail::build_message;
use crate::config::SmtpUrl;
use crate::domain::retry::SendFailure;
use crate::ports::{Mailer, OutgoingMail};

/// Longest wait for one send, connection included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of each SMTP command and of connecting.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections kept open to the server.
const POOL_SIZE: u32 = 8;

pub struct SmtpMailer {
    transport: Arc<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    server: SmtpUrl,
}

impl SmtpMailer {
    /// Builds the pool; no connection is opened until the first mail.
    pub fn new(server: SmtpUrl, from: Mailbox) -> Self {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host())
            .port(server.port())
            .timeout(Some(COMMAND_TIMEOUT))
            .pool_config(
                PoolConfig::new()
                    .max_size(POOL_SIZE)
                    .idle_timeout(Duration::from_secs(60)),
            )
            .build();
        Self {
            transport: Arc::new(transport),
            from,
            server,
        }
    }

    /// Closes pooled connections politely (QUIT).
    pub async fn shutdown(&self) {
        self.transport.shutdown().await;
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), SendFailure> {
        let span = tracing::info_span!(
            "smtp.send",
            otel.name = "smtp send",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            server.address = %self.server.host(),
            server.port = self.server.port(),
            delivery_id = %mail.delivery_id,
            smtp.reply_code = tracing::field::Empty,
        );
        let message = build_message(&self.from, mail)?;
        let transport = Arc::clone(&self.transport);
        let server = self.server.clone();
        let task = tokio::spawn(
            async move {
                let result = transport.send(message).await;
                let span = tracing::Span::current();
                match &result {
                    Ok(response) => {
                        span.record("smtp.reply_code", tracing::field::display(response.code()));
                    }
                    Err(e) => {
                        span.record("otel.status_code", "ERROR");
                        if let Some(code) = e.status() {
                            span.record("smtp.reply_code", tracing::field::display(code));
                        }
                    }
                }
                result.map(|_| ()).map_err(|e| classify(&server, &e))
            }
            .instrument(span),
        );
        match tokio::time::timeout(SEND_TIMEOUT, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(SendFailure::transient(format!(
                "the SMTP send task failed: {join}"
            ))),
            Err(_) => Err(SendFailure::transient(format!(
                "the SMTP server {} did not accept the message within {} s",
                self.server,
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// Sorts a lettre error into transient or permanent, with a reason safe to store.
fn classify(server: &SmtpUrl, e: &lettre::transport::smtp::Error) -> SendFailure {
    if let Some(code) = e.status() {
        return if e.is_permanent() {
            SendFailure::permanent(format!(
                "the SMTP server {server} refused the message permanently (reply {code})"
            ))
        } else {
            SendFailure::transient(format!(
                "the SMTP server {server} deferred the message (reply {code})"
            ))
        };
    }
    if e.is_timeout() {
        return SendFailure::transient(format!("the SMTP server {server} timed out"));
    }
    if e.is_client() {
        // lettre's client errors are fixed texts (e.g. "server does not support SMTPUTF8").
        return SendFailure::permanent(format!(
            "the SMTP exchange with {server} cannot succeed: {e}"
        ));
    }
    match io_error_kind(e) {
        Some(kind) => {
            SendFailure::transient(format!("cannot talk to the SMTP server {server}: {kind}"))
        }
        None => SendFailure::transient(format!(
            "the SMTP exchange with {server} failed (connection or protocol error)"
        )),
    }
}

fn io_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}
