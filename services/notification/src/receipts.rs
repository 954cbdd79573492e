//! Delivery receipts: an HTTP/1.1 listener (`SSPR_RECEIPTS_ADDR`, off by default) where SMS and
//! voice providers report what became of a message they accepted.
//!
//! Routes (POST only; the provider is given `SSPR_RECEIPTS_PUBLIC_URL` + the path):
//! - `/receipts/twilio/{delivery_id}`: Twilio's status callback (form-encoded `MessageStatus` or
//!   `CallStatus`, `MessageSid`/`CallSid`, `ErrorCode`), signed with `X-Twilio-Signature`.
//! - `/receipts/webhook/{delivery_id}`: the generic webhook's JSON
//!   `{"delivery_id": "...", "status": "delivered" | "failed"}`, signed with
//!   `X-Sspr-Signature: sha256=<hex HMAC-SHA256(SSPR_SMS_WEBHOOK_SECRET, raw body)>`.
//!
//! Answers: 204 when handled (applied, intermediate, or repeated), 403 for a missing or bad
//! signature (nothing changes), 404 for an unknown route, provider or delivery, 400 for a
//! malformed receipt, 413 over [`MAX_BODY_BYTES`], 503 when the delivery is not recorded as
//! sent yet (after a wait of up to 2 s while a send is finishing) or the database failed
//! (providers that retry come back).
//!
//! Invariants: the signature is checked before anything else is read from the body; a receipt
//! only moves a SENT delivery to DELIVERED (+ `code.delivery_confirmed` with the latency from
//! issue) or FAILED (+ `code.delivery_failed`, reason `undeliverable`), status and event in one
//! transaction; repeated or late receipts change nothing and emit nothing (see
//! [`crate::domain::receipt::decide`] and [`ReceiptStore::apply_receipt`]). No phone number,
//! provider text, token or secret is logged or stored: only ids, fixed status words and
//! numeric error codes. The receipt that changed the state (only it) is timed from the code's
//! issue in `sspr_code_delivery_receipt_duration_seconds{channel,outcome}` (delivered,
//! undeliverable).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sspr_clock::SharedClock;
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::{CodeDeliveryConfirmed, CodeDeliveryFailed, EventMeta};
use sspr_proto::time::{duration, timestamp};
use sspr_runtime::settings::Secret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::domain::delivery::{Channel, DeliveryId, DeliveryStatus};
use crate::domain::receipt::{
    self, Decision, ProviderMessageId, ReceiptOutcome, error_code, twilio_outcome, webhook_outcome,
};
use crate::ports::{DeliveryRecord, ReceiptApplied, ReceiptEvent, SharedReceiptStore, SharedStore};

/// Largest receipt body read.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// How long a receipt for a SENDING delivery waits for SENT, in steps.
const SENDING_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
const SENDING_WAITS: u32 = 20;
/// The word stored in `code.delivery_failed.reason` for a failed receipt.
pub const UNDELIVERABLE: &str = "undeliverable";

/// What the listener needs.
pub struct Receipts {
    pub store: SharedStore,
    pub receipts: SharedReceiptStore,
    pub clock: SharedClock,
    /// `SSPR_RECEIPTS_PUBLIC_URL` without a trailing slash: Twilio signs the full URL.
    pub public_url: String,
    /// Twilio's auth token, when the Twilio provider is configured.
    pub twilio_auth_token: Option<Secret<String>>,
    /// `SSPR_SMS_WEBHOOK_SECRET`, when the webhook provider signs receipts.
    pub webhook_secret: Option<Secret<String>>,
}

/// Binds `addr`; returns the bound address and the future that serves until `shutdown`.
pub async fn bind(
    addr: SocketAddr,
    receipts: Arc<Receipts>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, serve(listener, receipts, shutdown)))
}

async fn serve(listener: TcpListener, receipts: Arc<Receipts>, shutdown: CancellationToken) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let receipts = Arc::clone(&receipts);
                connections.spawn(async move {
                    let svc = service_fn(move |req| {
                        let receipts = Arc::clone(&receipts);
                        async move { Ok::<_, Infallible>(receipts.handle(req).await) }
                    });
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                        tracing::debug!(error = %e, "receipt connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Receipts in progress finish (they are short); new ones are refused by the closed socket.
    while connections.join_next().await.is_some() {}
}

fn reply(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// Why a receipt was not applied, as the HTTP answer.
struct Refusal(StatusCode, &'static str);

impl Receipts {
    #[tracing::instrument(
        skip_all,
        fields(
            otel.kind = "server",
            provider = tracing::field::Empty,
            delivery_id = tracing::field::Empty,
            outcome = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        )
    )]
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let span = tracing::Span::current();
        let result = self.route(req).await;
        let (status, text) = match result {
            Ok(text) => (StatusCode::NO_CONTENT, text),
            Err(Refusal(status, text)) => (status, text),
        };
        span.record("http.response.status_code", status.as_u16());
        if status.is_client_error() || status.is_server_error() {
            tracing::warn!(status = status.as_u16(), reason = text, "receipt refused");
        }
        if status == StatusCode::NO_CONTENT {
            reply(status, "")
        } else {
            reply(status, text)
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<&'static str, Refusal> {
        let path = req.uri().path().to_owned();
        let Some(rest) = path.strip_prefix("/receipts/") else {
            return Err(Refusal(StatusCode::NOT_FOUND, "not found"));
        };
        let Some((provider, id)) = rest.split_once('/') else {
            return Err(Refusal(StatusCode::NOT_FOUND, "not found"));
        };
        if req.method() != Method::POST {
            return Err(Refusal(StatusCode::METHOD_NOT_ALLOWED, "POST only"));
        }
        let span = tracing::Span::current();
        span.record("provider", provider);
        let id = DeliveryId::parse(id)
            .map_err(|_| Refusal(StatusCode::NOT_FOUND, "no such delivery"))?;
        span.record("delivery_id", id.as_str());
        match provider {
            "twilio" => self.twilio(req, &path, &id).await,
            "webhook" => self.webhook(req, &id).await,
            _ => Err(Refusal(StatusCode::NOT_FOUND, "not found")),
        }
    }

    async fn twilio(
        &self,
        req: Request<Incoming>,
        path: &str,
        id: &DeliveryId,
    ) -> Result<&'static str, Refusal> {
        let Some(token) = &self.twilio_auth_token else {
            return Err(Refusal(StatusCode::NOT_FOUND, "Twilio is not configured"));
        };
        let url = format!(
            "{}{}",
            self.public_url,
            req.uri().path_and_query().map_or(path, |pq| pq.as_str())
        );
        let signature = header(&req, "x-twilio-signature");
        let body = read_body(req).await?;
        let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        let ok = signature.is_some_and(|sig| {
            receipt::twilio_signature_ok(token.expose().as_bytes(), &url, &params, &sig)
        });
        if !ok {
            return Err(Refusal(StatusCode::FORBIDDEN, "bad signature"));
        }
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let status = param("MessageStatus")
            .or_else(|| param("CallStatus"))
            .unwrap_or_default();
        let sid = param("MessageSid").or_else(|| param("CallSid"));
        let code = param("ErrorCode").and_then(error_code);
        let Some(outcome) = twilio_outcome(status) else {
            tracing::Span::current().record("outcome", "intermediate");
            return Ok("intermediate status");
        };
        self.apply(id, outcome, status, sid, code).await
    }

    async fn webhook(
        &self,
        req: Request<Incoming>,
        id: &DeliveryId,
    ) -> Result<&'static str, Refusal> {
        let Some(secret) = &self.webhook_secret else {
            return Err(Refusal(
                StatusCode::NOT_FOUND,
                "webhook receipts are not configured",
            ));
        };
        let signature = header(&req, "x-sspr-signature");
        let body = read_body(req).await?;
        let ok = signature.is_some_and(|sig| {
            receipt::webhook_signature_ok(secret.expose().as_bytes(), &body, &sig)
        });
        if !ok {
            return Err(Refusal(StatusCode::FORBIDDEN, "bad signature"));
        }
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| Refusal(StatusCode::BAD_REQUEST, "the body is not JSON"))?;
        if json.get("delivery_id").and_then(serde_json::Value::as_str) != Some(id.as_str()) {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "delivery_id does not match the URL",
            ));
        }
        let status = json
            .get("status")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let Some(outcome) = webhook_outcome(status) else {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "status must be delivered or failed",
            ));
        };
        let word = match outcome {
            ReceiptOutcome::Delivered => "delivered",
            ReceiptOutcome::Undeliverable => "failed",
        };
        self.apply(id, outcome, word, None, None).await
    }

    /// Applies an authentic final receipt.
    async fn apply(
        &self,
        id: &DeliveryId,
        outcome: ReceiptOutcome,
        provider_status: &str,
        sid: Option<&str>,
        code: Option<&str>,
    ) -> Result<&'static str, Refusal> {
        let span = tracing::Span::current();
        let unavailable = |e: crate::ports::StoreError| {
            tracing::error!(error = %e, "delivery records unavailable for a receipt");
            Refusal(StatusCode::SERVICE_UNAVAILABLE, "try again later")
        };
        // A provider can report faster than SENT is committed (the send returned, the record
        // follows at once): a SENDING record gets a short wait before the provider is told to
        // come back (Twilio does not retry status callbacks by default).
        let mut waits = 0;
        let record = loop {
            let record = self
                .store
                .get(id)
                .await
                .map_err(unavailable)?
                .ok_or(Refusal(StatusCode::NOT_FOUND, "no such delivery"))?;
            if record.status != DeliveryStatus::Sending || waits >= SENDING_WAITS {
                break record;
            }
            waits += 1;
            tokio::time::sleep(SENDING_WAIT).await;
        };
        match receipt::decide(record.status) {
            Decision::AlreadyFinal => {
                span.record("outcome", "unchanged");
                return Ok("already final");
            }
            Decision::NotSentYet => {
                return Err(Refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the delivery is not recorded as sent yet",
                ));
            }
            Decision::Apply => {}
        }
        let message = self
            .receipts
            .provider_message(id)
            .await
            .map_err(unavailable)?;
        // A receipt about another message of the provider (its own id differs) is refused.
        if let (Some(stored), Some(sid)) = (
            message.as_ref().and_then(|m| m.message_id.as_ref()),
            sid.and_then(ProviderMessageId::parse),
        ) && *stored != sid
        {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "the message id does not match the delivery",
            ));
        }
        let now = self.clock.now();
        let issued_at = message.as_ref().map_or(record.created_at, |m| m.issued_at);
        let method_id = message.map(|m| m.method_id).unwrap_or_default();
        let event = receipt_event(&record, outcome, issued_at, &method_id, now);
        let applied = self
            .receipts
            .apply_receipt(id, &event, provider_status, code, now)
            .await
            .map_err(unavailable)?;
        match applied {
            ReceiptApplied::Applied => {
                span.record("outcome", outcome.as_str());
                // Only the receipt that changed the state is timed.
                let secs = (now - issued_at).to_std().map_or(0.0, |d| d.as_secs_f64());
                sspr_telemetry::metrics::catalogue()
                    .code_delivery_receipt_duration
                    .observe(&[record.channel.as_str(), outcome.as_str()], secs);
                tracing::info!(outcome = outcome.as_str(), "delivery receipt applied");
                Ok("applied")
            }
            ReceiptApplied::Unchanged => {
                span.record("outcome", "unchanged");
                Ok("already final")
            }
        }
    }
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Refusal> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the receipt is too large",
            ))
        }
        Err(_) => Err(Refusal(
            StatusCode::BAD_REQUEST,
            "the body could not be read",
        )),
    }
}

fn kind(channel: Channel) -> i32 {
    match channel {
        Channel::Email => MethodKind::Email as i32,
        Channel::Sms => MethodKind::Sms as i32,
        Channel::Voice => MethodKind::Voice as i32,
    }
}

/// The event of a receipt: ids, kind, latency or reason; never a destination.
fn receipt_event(
    record: &DeliveryRecord,
    outcome: ReceiptOutcome,
    issued_at: DateTime<Utc>,
    method_id: &str,
    now: DateTime<Utc>,
) -> ReceiptEvent {
    let meta = EventMeta {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(timestamp(now)),
        user_id: record.user_id.clone(),
        flow_id: record.flow_id.clone(),
        source: crate::SERVICE.to_owned(),
        actor: String::new(),
    };
    match outcome {
        ReceiptOutcome::Delivered => ReceiptEvent::Confirmed(CodeDeliveryConfirmed {
            meta: Some(meta),
            delivery_id: record.id.as_str().to_owned(),
            kind: kind(record.channel),
            latency: Some(duration((now - issued_at).max(chrono::Duration::zero()))),
        }),
        ReceiptOutcome::Undeliverable => ReceiptEvent::Undeliverable(CodeDeliveryFailed {
            meta: Some(meta),
            delivery_id: record.id.as_str().to_owned(),
            kind: kind(record.channel),
            reason: UNDELIVERABLE.to_owned(),
            attempts: record.attempts,
            method_id: method_id.to_owned(),
        }),
    }
}
