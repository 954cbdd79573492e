//! SMS and voice calls through an HTTP webhook: `POST <SSPR_SMS_WEBHOOK_URL>` with the JSON body
//! `{"channel": "sms" | "voice", "to": "+336…", "body": "…", "delivery_id": "…"}`; for `voice`
//! the provider calls the number and reads `body` out. Any 2xx means the provider accepted it.
//! When receipts are on, the body also has `"status_callback"`: the URL to POST the receipt to
//! (`{"delivery_id", "status": "delivered" | "failed"}`, signed with `X-Sspr-Signature`, see
//! [`crate::receipts`]).
//!
//! Transient: connection failures, timeouts, 408, 429 and 5xx. Permanent: other answers (4xx,
//! and 3xx since redirects are not followed: the body carries a code and must not wander).
//! Reasons carry the status code only, never the provider's body nor the URL (which may hold a
//! provider token). `https://` webhooks use the rustls client of [`http_client`].

use async_trait::async_trait;
use reqwest::StatusCode;
use tracing::Instrument;

use crate::adapters::http_client::{self, HttpClientError};
use crate::config::SmsWebhookUrl;
use crate::domain::retry::SendFailure;
use crate::ports::{OutgoingSms, SmsSender};
use crate::sms_config::ReceiptSettings;

pub use crate::adapters::http_client::SEND_TIMEOUT;

pub const PROVIDER: &str = "webhook";

pub struct WebhookSms {
    client: reqwest::Client,
    url: SmsWebhookUrl,
    receipts: Option<ReceiptSettings>,
}

impl WebhookSms {
    pub fn new(url: SmsWebhookUrl) -> Result<Self, HttpClientError> {
        Self::with_receipts(url, None)
    }

    /// A webhook that is told where to send receipts (`receipts` set).
    pub fn with_receipts(
        url: SmsWebhookUrl,
        receipts: Option<ReceiptSettings>,
    ) -> Result<Self, HttpClientError> {
        Ok(Self {
            client: http_client::provider_client()?,
            url,
            receipts,
        })
    }

    /// host:port of the webhook, for spans and reasons (no path, no query).
    fn server(&self) -> String {
        http_client::server_of(self.url.url())
    }
}

#[async_trait]
impl SmsSender for WebhookSms {
    async fn send(&self, sms: &OutgoingSms) -> Result<(), SendFailure> {
        let url = self.url.url();
        let span = tracing::info_span!(
            "sms.webhook",
            otel.name = "POST sms webhook",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = "POST",
            server.address = %url.host_str().unwrap_or_default(),
            server.port = url.port_or_known_default().unwrap_or(80),
            http.response.status_code = tracing::field::Empty,
            delivery_id = %sms.delivery_id,
        );
        let mut body = serde_json::json!({
            "channel": sms.channel.as_str(),
            "to": sms.to.expose(),
            "body": sms.body,
            "delivery_id": sms.delivery_id.as_str(),
        });
        if let Some(receipts) = &self.receipts {
            body["status_callback"] = serde_json::Value::String(
                receipts.callback_url(PROVIDER, sms.delivery_id.as_str()),
            );
        }
        async {
            let result = self.client.post(url.clone()).json(&body).send().await;
            let span = tracing::Span::current();
            let failure = match result {
                Ok(response) => {
                    let status = response.status();
                    span.record("http.response.status_code", status.as_u16());
                    if status.is_success() {
                        return Ok(());
                    }
                    classify_status(&self.server(), status)
                }
                Err(e) if e.is_timeout() => {
                    SendFailure::transient(format!("the SMS webhook {} timed out", self.server()))
                }
                Err(e) if e.is_connect() => SendFailure::transient(format!(
                    "cannot connect to the SMS webhook {}",
                    self.server()
                )),
                Err(_) => SendFailure::transient(format!(
                    "the request to the SMS webhook {} failed",
                    self.server()
                )),
            };
            span.record("otel.status_code", "ERROR");
            Err(failure)
        }
        .instrument(span)
        .await
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }
}

fn classify_status(server: &str, status: StatusCode) -> SendFailure {
    let code = status.as_u16();
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        SendFailure::transient(format!(
            "the SMS webhook {server} answered HTTP {code} (will retry)"
        ))
    } else {
        SendFailure::permanent(format!(
            "the SMS webhook {server} refused the message with HTTP {code}"
        ))
    }
}

/// Used when no webhook is configured: every SMS fails permanently with a reason that tells the
/// operator what to set.
pub struct NoSmsProvider;

#[async_trait]
impl SmsSender for NoSmsProvider {
    async fn send(&self, _sms: &OutgoingSms) -> Result<(), SendFailure> {
        Err(SendFailure::permanent(
            "no SMS provider is configured: set SSPR_SMS_WEBHOOK_URL or SSPR_SMS_PROVIDER=twilio to send SMS codes",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::retry::FailureKind;

    #[test]
    fn http_statuses_are_sorted() {
        let kind = |c: u16| {
            classify_status(
                "h:1",
                StatusCode::from_u16(c).unwrap_or(StatusCode::IM_A_TEAPOT),
            )
            .kind
        };
        assert_eq!(kind(500), FailureKind::Transient);
        assert_eq!(kind(503), FailureKind::Transient);
        assert_eq!(kind(429), FailureKind::Transient);
        assert_eq!(kind(408), FailureKind::Transient);
        assert_eq!(kind(400), FailureKind::Permanent);
        assert_eq!(kind(404), FailureKind::Permanent);
        assert_eq!(kind(302), FailureKind::Permanent);
    }
}
