//! The client side of the bus: protobuf request/reply and JetStream publishing.
//!
//! Every request is a client span (`send <subject>`) and is recorded in
//! `sspr_nats_client_duration_seconds{endpoint,status}`: `status` is `ok`, the refusal's code
//! word, or what the bus saw (`timeout`, `no_responders`, `deadline_exceeded`, ...; see
//! [`BusError::status_word`]). Every JetStream publish is a producer span.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use prost::Message;
use tracing::Instrument;

use crate::access::{NatsAuth, NatsTls};
use crate::error::{
    BadRequest, BusError, DETAILS_HEADER, ErrorCode, REASON_HEADER, RETRY_AFTER_HEADER, RpcError,
};
use crate::trace;

/// How to reach NATS.
#[derive(Debug, Clone)]
pub struct BusConfig {
    pub url: String,
    /// Name shown in `nats server report connections`, e.g. "sspr-verification".
    pub client_name: String,
    /// Default timeout of a request/reply call.
    pub request_timeout: Duration,
    /// The connection's NATS identity.
    pub auth: NatsAuth,
    /// Client TLS settings.
    pub tls: NatsTls,
    /// Prefix of this connection's reply subjects (`_INBOX` when `None`). Services use
    /// `_INBOX_<client name>` so the server can keep other identities off their replies.
    pub inbox_prefix: Option<String>,
    /// Most requests a service served on this connection handles at once
    /// (`SSPR_RPC_MAX_IN_FLIGHT`); more are refused with `UNAVAILABLE` at once.
    pub max_in_flight: usize,
}

/// Default of [`BusConfig::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

impl BusConfig {
    pub fn new(url: impl Into<String>, client_name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            client_name: client_name.into(),
            request_timeout: Duration::from_secs(10),
            auth: NatsAuth::default(),
            tls: NatsTls::default(),
            inbox_prefix: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// A connected bus handle; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    request_timeout: Duration,
    max_in_flight: usize,
}

impl Bus {
    /// Connects, retrying the first connection for a short while so services can start in any
    /// order next to a nats-server that is still coming up.
    pub async fn connect(config: &BusConfig) -> Result<Self, async_nats::ConnectError> {
        let mut options =
            crate::access::apply(async_nats::ConnectOptions::new(), &config.auth, &config.tls)
                .await?;
        if let Some(prefix) = &config.inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        let client = options
            .name(&config.client_name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(config.request_timeout))
            .connect(&config.url)
            .await?;
        // retry_on_initial_connect returns at once; wait until the connection is really up.
        let mut waited = Duration::ZERO;
        while client.connection_state() != async_nats::connection::State::Connected
            && waited < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
        Ok(Self::from_client(client, config.request_timeout)
            .with_max_in_flight(config.max_in_flight))
    }

    /// Wraps an existing client.
    pub fn from_client(client: async_nats::Client, request_timeout: Duration) -> Self {
        let js = jetstream::new(client.clone());
        Self {
            client,
            js,
            request_timeout,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// The same handle, serving at most `max_in_flight` requests at once (at least 1).
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight.max(1);
        self
    }

    /// Most requests a service served on this handle runs at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// True while the client holds a live connection to the server.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Sends `request` to `subject` and decodes the protobuf reply. A refusal by the remote
    /// handler comes back as [`BusError::Rpc`] with its code, message and details.
    ///
    /// Inside a call with a deadline ([`crate::deadline`]) the request waits at most the time
    /// left (never more than the configured timeout), carries it in the `Sspr-Deadline-Ms`
    /// header, and is not sent at all once the deadline passed ([`BusError::DeadlineExceeded`]).
    /// Inside the gateway's [`crate::idempotency::scope`] it carries the client's idempotency
    /// key.
    pub async fn request<Req, Resp>(&self, subject: &str, request: &Req) -> Result<Resp, BusError>
    where
        Req: Message,
        Resp: Message + Default,
    {
        // OpenTelemetry messaging conventions (a request is a message sent to the subject) with
        // the RPC attributes of the call. Callers pass a constant of `subjects`: no id, no secret.
        let endpoint = crate::subjects::endpoint_of(subject);
        let span = tracing::info_span!(
            "nats.request",
            otel.name = %format!("send {subject}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            messaging.system = "nats",
            messaging.operation.type = "send",
            messaging.operation.name = "request",
            messaging.destination.name = %subject,
            rpc.system = "nats",
            rpc.service = endpoint.split_once('.').map_or("other", |(service, _)| service),
            rpc.method = %crate::subjects::method_of(subject),
            error.type = tracing::field::Empty,
        );
        crate::work::record_request(subject);
        let started = std::time::Instant::now();
        let result = self
            .send_request(subject, request)
            .instrument(span.clone())
            .await;
        let status = match &result {
            Ok(_) => "ok",
            Err(e) => {
                span.record("error.type", e.status_word());
                let server_fault = match e {
                    BusError::Rpc(rpc) => rpc.code.is_server_error(),
                    _ => true,
                };
                if server_fault {
                    span.record("otel.status_code", "ERROR");
                }
                e.status_word()
            }
        };
        sspr_telemetry::metrics::catalogue()
            .nats_client_duration
            .observe_since(&[endpoint, status], started);
        result
    }

    /// [`Bus::request`] without its span and metrics.
    async fn send_request<Req, Resp>(&self, subject: &str, request: &Req) -> Result<Resp, BusError>
    where
        Req: Message,
        Resp: Message + Default,
    {
        {
            let mut headers = HeaderMap::new();
            trace::inject_current(&mut headers);
            let budget = crate::deadline::remaining();
            let timeout = match budget {
                Some(left) if left < Duration::from_millis(1) => {
                    return Err(BusError::DeadlineExceeded(subject.to_owned()));
                }
                Some(left) => {
                    // What we will wait, so the service never works longer than we listen.
                    let wait = left.min(self.request_timeout);
                    headers.insert(
                        crate::deadline::DEADLINE_HEADER,
                        crate::deadline::header_value(wait).as_str(),
                    );
                    wait
                }
                None => self.request_timeout,
            };
            let budget_bound = budget.is_some_and(|left| left <= self.request_timeout);
            if let Some(key) = crate::idempotency::outgoing() {
                headers.insert(crate::idempotency::REQUEST_ID_HEADER, key.as_str());
            }
            let req = async_nats::Request::new()
                .payload(Bytes::from(request.encode_to_vec()))
                .headers(headers)
                .timeout(Some(timeout));
            let reply = self
                .client
                .send_request(subject.to_owned(), req)
                .await
                .map_err(|e| match e.kind() {
                    RequestErrorKind::NoResponders => BusError::NoResponders(subject.to_owned()),
                    RequestErrorKind::TimedOut if budget_bound => {
                        BusError::DeadlineExceeded(subject.to_owned())
                    }
                    RequestErrorKind::TimedOut => BusError::Timeout(subject.to_owned()),
                    _ => BusError::Request {
                        subject: subject.to_owned(),
                        source: e,
                    },
                })?;
            if let Some(headers) = reply.headers.as_ref()
                && let Some(code) = headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE)
            {
                let code = code.as_str().parse::<usize>().unwrap_or(13);
                let message = headers
                    .get(async_nats::service::NATS_SERVICE_ERROR)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                // Details that do not parse are dropped: the code and message still stand.
                let details = headers
                    .get(DETAILS_HEADER)
                    .and_then(|v| BadRequest::from_header_value(v.as_str()));
                let mut error = RpcError::new(ErrorCode::from_number(code), message);
                error.details = details;
                error.retry_after_secs = headers
                    .get(RETRY_AFTER_HEADER)
                    .and_then(|v| v.as_str().trim().parse::<u64>().ok());
                error.reason = headers
                    .get(REASON_HEADER)
                    .map(|v| v.as_str().trim())
                    .filter(|r| {
                        !r.is_empty()
                            && r.len() <= 64
                            && r.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                    })
                    .map(str::to_owned);
                return Err(BusError::Rpc(error));
            }
            Resp::decode(reply.payload).map_err(|source| BusError::Decode {
                subject: subject.to_owned(),
                source,
            })
        }
    }

    /// Publishes to JetStream with `Nats-Msg-Id` = `msg_id` and waits for the stream's ack.
    /// A publish the stream recognises as a duplicate counts as success.
    ///
    /// Traced as a producer span `send <subject>`. When `headers` carry no `traceparent`, the
    /// message carries this span's context. When they already carry one from another trace
    /// (the outbox relay publishes rows written earlier under the requests that caused them),
    /// that context stays on the message, so its consumers join the trace of the request, and
    /// the publish span gets a link to it rather than a parent.
    pub async fn publish_durable(
        &self,
        subject: &str,
        msg_id: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<(), BusError> {
        let mut results = self
            .publish_durable_batch(vec![DurableMessage {
                subject: subject.to_owned(),
                msg_id: msg_id.to_owned(),
                headers,
                payload,
            }])
            .await;
        match results.pop() {
            Some(result) => result,
            None => unreachable!("one result per message"),
        }
    }

    /// Publishes `messages` to JetStream in order, pipelined: every message is handed to the
    /// connection before any acknowledgement is awaited, so a batch costs about one round trip
    /// instead of one per message. Each message is traced like [`Bus::publish_durable`] and
    /// deduplicated by its message id. Returns one result per message, in order; a failed one
    /// may be retried (a copy that did reach the stream is dropped by the duplicate window).
    pub async fn publish_durable_batch(
        &self,
        messages: Vec<DurableMessage>,
    ) -> Vec<Result<(), BusError>> {
        let mut pending = Vec::with_capacity(messages.len());
        for DurableMessage {
            subject,
            msg_id,
            mut headers,
            payload,
        } in messages
        {
            let span = publish_span(&subject, &mut headers);
            headers.insert("Nats-Msg-Id", msg_id.as_str());
            let sent = self
                .js
                .send_publish(
                    subject.clone(),
                    jetstream::message::PublishMessage::build()
                        .payload(payload)
                        .headers(headers),
                )
                .instrument(span.clone())
                .await;
            pending.push((span, subject, sent));
        }
        let acks = pending.into_iter().map(|(span, subject, sent)| {
            let in_span = span.clone();
            async move {
                let err = |message: String| BusError::Publish {
                    subject: subject.clone(),
                    message,
                };
                let result = match sent {
                    Err(e) => Err(err(e.to_string())),
                    Ok(ack) => match ack.await {
                        Ok(_) => Ok(()),
                        Err(e) if e.kind() == PublishErrorKind::TimedOut => {
                            Err(err("ack timed out".into()))
                        }
                        Err(e) => Err(err(e.to_string())),
                    },
                };
                if let Err(e) = &result {
                    span.record("error.type", e.status_word());
                    span.record("otel.status_code", "ERROR");
                }
                result
            }
            .instrument(in_span)
        });
        futures::future::join_all(acks).await
    }

    /// Flushes pending writes to the server (used at shutdown).
    pub async fn flush(&self) {
        if let Err(e) = self.client.flush().await {
            tracing::warn!(error = %e, "flushing the nats connection failed");
        }
    }
}

/// The producer span `send <subject>` of a JetStream publish. When `headers` carry no
/// `traceparent`, the message will carry this span's context; when they carry one from another
/// trace, that context stays and the span links to it.
fn publish_span(subject: &str, headers: &mut HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        "nats.publish",
        otel.name = %format!("send {subject}"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = %subject,
        error.type = tracing::field::Empty,
    );
    match trace::context_in(headers) {
        Some(origin) => trace::link_if_foreign(&span, origin),
        None => trace::inject(&span, headers),
    }
    span
}

/// One message for [`Bus::publish_durable_batch`].
#[derive(Debug, Clone)]
pub struct DurableMessage {
    pub subject: String,
    /// The JetStream message id (`Nats-Msg-Id`) the stream deduplicates by.
    pub msg_id: String,
    /// Extra headers, e.g. the `traceparent` of the request the message was written under.
    pub headers: HeaderMap,
    pub payload: Bytes,
}
