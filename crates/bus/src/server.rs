//! The serving side of the bus: a NATS micro-service whose endpoints speak protobuf.
//!
//! Each endpoint is subscribed in the queue group `sspr-<service>`, so replicas share the load,
//! and the service answers `$SRV.PING`/`$SRV.INFO`/`$SRV.STATS` for discovery. Every request
//! runs in its own task, inside a span continued from the caller's `traceparent`. A refusal's
//! details go back in the `Sspr-Error-Details` header next to the micro-service error headers.
//! On shutdown
//! the endpoints stop taking requests and the ones in flight finish before `serve` returns.
//!
//! Load: at most [`Bus::max_in_flight`] requests (or [`Router::max_in_flight`]) run at once
//! across all endpoints of the service; one more is answered `UNAVAILABLE` ("server busy",
//! retry after 1 s) at once instead of queueing, so a slow dependency cannot pile up unbounded
//! work. Deadlines: a request carrying `Sspr-Deadline-Ms` runs with that budget as its task's
//! deadline ([`crate::deadline`]); one whose budget is spent before its handler starts is
//! dropped unanswered (its caller stopped waiting). Idempotency: see [`crate::idempotency`].
//!
//! Metrics: every request is recorded in `sspr_nats_server_duration_seconds{service,endpoint,
//! status}` from its arrival to its reply, `status` being `ok` or the code word of the refusal
//! (`unavailable` for a load-shed refusal, `deadline_exceeded` for one dropped unanswered).
//! `endpoint` is `<service>.<method>` ([`subjects::endpoint_of`]), never a raw subject.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::Bus;
use crate::error::{
    BusError, DETAILS_HEADER, ErrorCode, REASON_HEADER, RETRY_AFTER_HEADER, RpcError,
};
use crate::idempotency::{Idempotency, REQUEST_ID_HEADER};
use crate::{deadline, subjects, trace};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler =
    Arc<dyn Fn(RequestContext, Bytes) -> BoxFuture<Result<Bytes, RpcError>> + Send + Sync>;

/// What a handler may know about the request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub subject: String,
    /// When the caller stops waiting, if it said (also the task's [`deadline::current`]).
    pub deadline: Option<Instant>,
    /// The client's idempotency key, if the request carried a valid one.
    pub request_id: Option<String>,
}

/// Largest request body a service decodes. nats-server's own `max_payload` (1 MiB by default)
/// bounds what reaches a service at all; below it, this keeps a service from decoding (and
/// allocating for) anything bigger than any real request (the gateway takes at most 256 KiB).
pub const MAX_REQUEST_BYTES: usize = 512 * 1024;

/// The endpoints of one service.
pub struct Router {
    service: String,
    description: String,
    routes: Vec<(&'static str, Handler)>,
    max_in_flight: Option<usize>,
    idempotency: Option<Idempotency>,
    idempotent: HashSet<&'static str>,
}

impl Router {
    /// `service` is the short name (`directory`); the NATS service is `sspr-<service>`.
    pub fn new(service: &str, description: &str) -> Self {
        Self {
            service: service.to_owned(),
            description: description.to_owned(),
            routes: Vec::new(),
            max_in_flight: None,
            idempotency: None,
            idempotent: HashSet::new(),
        }
    }

    /// Serves at most `n` requests at once (at least 1) instead of the bus's
    /// [`Bus::max_in_flight`].
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }

    /// Keeps idempotency claims and answers in `idempotency`'s store, for the routes marked
    /// with [`Router::idempotent`].
    pub fn with_idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = Some(idempotency);
        self
    }

    /// Marks `subjects` (mutating routes) as honouring the `Sspr-Request-Id` idempotency key.
    /// Without [`Router::with_idempotency`] the mark has no effect.
    pub fn idempotent(mut self, subjects: &[&'static str]) -> Self {
        self.idempotent.extend(subjects.iter().copied());
        self
    }

    /// Serves `subject` with `handler`, decoding `Req` and encoding `Resp` as protobuf. A body
    /// over [`MAX_REQUEST_BYTES`] or one that does not decode is answered with
    /// `INVALID_ARGUMENT` without decoding it or calling the handler.
    pub fn route<Req, Resp, F, Fut>(mut self, subject: &'static str, handler: F) -> Self
    where
        Req: Message + Default + 'static,
        Resp: Message + 'static,
        F: Fn(RequestContext, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |ctx, body: Bytes| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                if body.len() > MAX_REQUEST_BYTES {
                    return Err(RpcError::invalid_argument("request too large"));
                }
                let req = Req::decode(body)
                    .map_err(|_| RpcError::invalid_argument("malformed request"))?;
                let resp = handler(ctx, req).await?;
                Ok(Bytes::from(resp.encode_to_vec()))
            })
        });
        self.routes.push((subject, erased));
        self
    }
}

/// Runs the service until `shutdown` resolves, then drains in-flight requests.
/// Routers of this process that are serving (endpoints subscribed, not yet shutting down).
static SERVING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether a [`serve`] of this process has its endpoints subscribed and is not shutting down:
/// part of a service's readiness, since a service only serves once its migrations ran.
pub fn is_serving() -> bool {
    SERVING.load(std::sync::atomic::Ordering::SeqCst) > 0
}

pub async fn serve(
    bus: &Bus,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BusError> {
    let name = format!("sspr-{}", router.service);
    let nats_service = bus
        .client()
        .service_builder()
        .description(&router.description)
        .queue_group(&name)
        .start(&name, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| BusError::JetStream(format!("starting service {name}: {e}")))?;

    let limit = Arc::new(Semaphore::new(
        router.max_in_flight.unwrap_or_else(|| bus.max_in_flight()),
    ));
    let mut endpoints = Vec::new();
    for (subject, handler) in router.routes {
        let endpoint = nats_service
            .endpoint_builder()
            .name(subjects::method_of(subject))
            .add(subject)
            .await
            .map_err(|e| BusError::JetStream(format!("endpoint {subject}: {e}")))?;
        endpoints.push((subject, handler, endpoint));
    }
    tracing::info!(service = %name, endpoints = endpoints.len(), "serving on nats");
    SERVING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut loops = JoinSet::new();
    for (subject, handler, nats_endpoint) in endpoints {
        let idempotency = router
            .idempotency
            .clone()
            .filter(|_| router.idempotent.contains(subject));
        let endpoint = Arc::new(Endpoint {
            service: router.service.clone(),
            subject,
            handler,
            idempotency,
        });
        loops.spawn(endpoint_loop(
            endpoint,
            nats_endpoint,
            Arc::clone(&limit),
            stop_rx.clone(),
        ));
    }
    shutdown.await;
    SERVING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    let _ = stop_tx.send(true);
    while loops.join_next().await.is_some() {}
    if let Err(e) = nats_service.stop().await {
        tracing::warn!(error = %e, service = %name, "stopping the nats service failed");
    }
    Ok(())
}

/// One served subject.
struct Endpoint {
    /// The service's short name (`directory`): the `service` label of its metrics.
    service: String,
    subject: &'static str,
    handler: Handler,
    /// Set when the route is marked idempotent and the router has a store.
    idempotency: Option<Idempotency>,
}

async fn endpoint_loop(
    endpoint: Arc<Endpoint>,
    mut nats_endpoint: service::endpoint::Endpoint,
    limit: Arc<Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            next = nats_endpoint.next() => {
                let Some(request) = next else { break };
                let received = Instant::now();
                match Arc::clone(&limit).try_acquire_owned() {
                    Ok(permit) => {
                        in_flight.spawn(handle(Arc::clone(&endpoint), request, received, permit));
                    }
                    // Full: refuse now rather than queue; the reply is cheap and needs no permit.
                    Err(_) => {
                        in_flight.spawn(refuse_busy(Arc::clone(&endpoint), request, received));
                    }
                }
            }
        }
    }
    let _ = nats_endpoint.stop().await;
    while in_flight.join_next().await.is_some() {}
}

/// Answers `UNAVAILABLE` without running the handler: the service is at its in-flight limit.
async fn refuse_busy(endpoint: Arc<Endpoint>, request: service::Request, received: Instant) {
    tracing::debug!(
        subject = endpoint.subject,
        "refused: too many requests in flight"
    );
    let busy = RpcError::unavailable("server busy, try again shortly").with_retry_after(1);
    respond(request, Err(busy)).await;
    endpoint.observe(ErrorCode::Unavailable.as_str(), received);
}

impl Endpoint {
    /// Records one request in `sspr_nats_server_duration_seconds`: `status` is `ok` or the
    /// code word of the refusal, the time counts from when the request was received.
    fn observe(&self, status: &str, received: Instant) {
        sspr_telemetry::metrics::catalogue()
            .nats_server_duration
            .observe(
                &[&self.service, subjects::endpoint_of(self.subject), status],
                received.elapsed().as_secs_f64(),
            );
    }
}

async fn handle(
    endpoint: Arc<Endpoint>,
    request: service::Request,
    received: Instant,
    _permit: OwnedSemaphorePermit,
) {
    let subject = endpoint.subject;
    let headers = request.message.headers.as_ref();
    // The budget counts from when this process received the request.
    let deadline = headers
        .and_then(|h| h.get(deadline::DEADLINE_HEADER))
        .and_then(|v| deadline::parse_header(v.as_str()))
        .map(|budget| received + budget);
    if deadline.is_some_and(|d| Instant::now() >= d) {
        // The caller has stopped waiting: no work, no answer.
        tracing::debug!(
            subject,
            "dropped: the caller's deadline passed before it was served"
        );
        endpoint.observe(ErrorCode::DeadlineExceeded.as_str(), received);
        return;
    }
    let raw_request_id = headers
        .and_then(|h| h.get(REQUEST_ID_HEADER))
        .map(|v| v.as_str().to_owned());
    // OpenTelemetry messaging conventions (the request is a message processed by this
    // consumer) with the RPC attributes of the call it carries. The subject is a constant of
    // `subjects`: it never holds an id or a secret.
    let span = tracing::info_span!(
        "nats.process",
        otel.name = %format!("process {subject}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = %subject,
        messaging.consumer.group.name = %format!("sspr-{}", endpoint.service),
        rpc.system = "nats",
        rpc.service = %endpoint.service,
        rpc.method = %subjects::method_of(subject),
        error.code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    trace::set_parent_from(&span, headers);
    async {
        let body = request.message.payload.clone();
        let run = async {
            let request_id = match raw_request_id
                .as_deref()
                .map(crate::idempotency::parse_request_id)
            {
                None => None,
                Some(Ok(id)) => Some(id.to_owned()),
                Some(Err(e)) => return Err(e),
            };
            let ctx = RequestContext {
                subject: subject.to_owned(),
                deadline,
                request_id: request_id.clone(),
            };
            match (&endpoint.idempotency, request_id) {
                (Some(idempotency), Some(key)) => {
                    idempotency
                        .run(subject, &key, &body, || {
                            (endpoint.handler)(ctx, body.clone())
                        })
                        .await
                }
                _ => (endpoint.handler)(ctx, body.clone()).await,
            }
        };
        let (result, work) = crate::work::measure(deadline::scope(deadline, run)).await;
        crate::work::add(subject, &work);
        let status = match &result {
            Ok(_) => "ok",
            Err(e) => {
                let span = tracing::Span::current();
                span.record("error.code", e.code as i32);
                span.record("error.type", e.code.as_str());
                if e.code.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                }
                e.code.as_str()
            }
        };
        respond(request, result).await;
        endpoint.observe(status, received);
    }
    .instrument(span)
    .await
}

/// Sends `result` as the reply: the body, or the refusal in the micro-service error headers
/// with its details, retry-after and reason headers.
async fn respond(request: service::Request, result: Result<Bytes, RpcError>) {
    let mut headers = HeaderMap::new();
    let response = match result {
        Ok(body) => Ok(body),
        Err(e) => {
            if let Some(details) = &e.details {
                headers.insert(DETAILS_HEADER, details.to_header_value().as_str());
            }
            if let Some(secs) = e.retry_after_secs {
                headers.insert(RETRY_AFTER_HEADER, secs.to_string().as_str());
            }
            if let Some(reason) = &e.reason {
                headers.insert(REASON_HEADER, reason.as_str());
            }
            Err(service::error::Error {
                status: e.message,
                code: e.code as usize,
            })
        }
    };
    if let Err(e) = request.respond_with_headers(response, headers).await {
        tracing::warn!(error = %e, "could not send the reply");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! A real request/reply over a private nats-server (from `PATH`): refusal details survive
    //! the reply header and a service that passes the refusal on unchanged.

    use std::time::Duration;

    use super::*;
    use crate::client::BusConfig;
    use crate::error::FieldViolation;

    const INNER: &str = "sspr.rpc.bustest.inner";
    const OUTER: &str = "sspr.rpc.bustest.outer";

    async fn nats_server() -> (tokio::process::Child, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(
            std::env::var("SSPR_NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned()),
        )
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server on PATH");
        for _ in 0..250 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (child, format!("nats://127.0.0.1:{port}"))
    }

    fn refusal() -> RpcError {
        RpcError::invalid_argument("password rejected: too short; too common").with_violations(
            vec![
                FieldViolation::new("new_password", "too short", "too_short"),
                FieldViolation::new("new_password", "too common", "banned_term"),
            ],
        )
    }

    #[tokio::test]
    async fn details_survive_a_reply_and_a_passthrough_hop() {
        let (_server, url) = nats_server().await;
        let bus = Bus::connect(&BusConfig::new(&url, "bus-test"))
            .await
            .unwrap();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.changed().await;
        };

        let inner = Router::new("bustest-inner", "refuses with details")
            .route(INNER, |_: RequestContext, _: ()| async {
                Err::<(), _>(refusal())
            });
        let relay = bus.clone();
        let outer = Router::new("bustest-outer", "passes refusals on").route(
            OUTER,
            move |_: RequestContext, req: ()| {
                let relay = relay.clone();
                async move {
                    relay
                        .request::<(), ()>(INNER, &req)
                        .await
                        .map_err(BusError::into_rpc)
                }
            },
        );
        let a = tokio::spawn({
            let bus = bus.clone();
            let rx = stop_rx.clone();
            async move { serve(&bus, inner, stopped(rx)).await }
        });
        let b = tokio::spawn({
            let bus = bus.clone();
            async move { serve(&bus, outer, stopped(stop_rx)).await }
        });

        let mut direct = None;
        for _ in 0..100 {
            match bus.request::<(), ()>(INNER, &()).await {
                Err(BusError::NoResponders(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => {
                    direct = Some(other);
                    break;
                }
            }
        }
        match direct.expect("the inner service answered") {
            Err(BusError::Rpc(e)) => assert_eq!(e, refusal()),
            other => panic!("expected the refusal, got {other:?}"),
        }
        let mut relayed = None;
        for _ in 0..100 {
            match bus.request::<(), ()>(OUTER, &()).await {
                Err(BusError::NoResponders(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => {
                    relayed = Some(other);
                    break;
                }
            }
        }
        match relayed.expect("the outer service answered") {
            Err(BusError::Rpc(e)) => assert_eq!(e, refusal(), "details survive the hop"),
            other => panic!("expected the refusal, got {other:?}"),
        }

        let _ = stop_tx.send(true);
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
    }
}
