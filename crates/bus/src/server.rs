//! The serving side of the bus: a NATS micro-service whose endpoints speak protobuf.
//!
//! Each endpoint is subscribed in the queue group `sspr-<service>`, so replicas share the load,
//! and the service answers `$SRV.PING`/`$SRV.INFO`/`$SRV.STATS` for discovery. Every request
//! runs in its own task, inside a span continued from the caller's `traceparent`. A refusal's
//! details go back in the `Sspr-Error-Details` header next to the micro-service error headers.
//! On shutdown
//! the endpoints stop taking requests and the ones in flight finish before `serve` returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::client::Bus;
use crate::error::{
    BusError, DETAILS_HEADER, ErrorCode, REASON_HEADER, RETRY_AFTER_HEADER, RpcError,
};
use crate::{subjects, trace};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler =
    Arc<dyn Fn(RequestContext, Bytes) -> BoxFuture<Result<Bytes, RpcError>> + Send + Sync>;

/// What a handler may know about the request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub subject: String,
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
}

impl Router {
    /// `service` is the short name (`directory`); the NATS service is `sspr-<service>`.
    pub fn new(service: &str, description: &str) -> Self {
        Self {
            service: service.to_owned(),
            description: description.to_owned(),
            routes: Vec::new(),
        }
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
    for (subject, handler, endpoint) in endpoints {
        loops.spawn(endpoint_loop(subject, handler, endpoint, stop_rx.clone()));
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

async fn endpoint_loop(
    subject: &'static str,
    handler: Handler,
    mut endpoint: service::endpoint::Endpoint,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            next = endpoint.next() => {
                let Some(request) = next else { break };
                in_flight.spawn(handle(subject, Arc::clone(&handler), request));
            }
        }
    }
    let _ = endpoint.stop().await;
    while in_flight.join_next().await.is_some() {}
}

async fn handle(subject: &'static str, handler: Handler, request: service::Request) {
    let span = tracing::info_span!(
        "nats.process",
        otel.name = %format!("process {subject}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = %subject,
        rpc.system = "nats",
        rpc.method = %subjects::method_of(subject),
        error.code = tracing::field::Empty,
    );
    trace::set_parent_from(&span, request.message.headers.as_ref());
    async {
        let ctx = RequestContext {
            subject: subject.to_owned(),
        };
        let (result, work) =
            crate::work::measure(handler(ctx, request.message.payload.clone())).await;
        crate::work::add(subject, &work);
        let mut headers = HeaderMap::new();
        let response = match result {
            Ok(body) => Ok(body),
            Err(e) => {
                let span = tracing::Span::current();
                span.record("error.code", e.code as i32);
                if matches!(e.code, ErrorCode::Internal | ErrorCode::Unavailable) {
                    span.record("otel.status_code", "ERROR");
                }
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
    .instrument(span)
    .await
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
