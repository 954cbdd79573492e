//! `/healthz`, `/readyz` and `/metrics` over plain HTTP/1.1.
//!
//! `/healthz` answers 200 while the process runs. `/readyz` answers 200 only when the readiness
//! check passes (for a service: connected to NATS and its database answers), otherwise 503 with
//! the reason, so an orchestrator stops routing to a replica that cannot work.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Resolves to `Ok(())` when ready, or to the reason it is not.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Binds `addr`; returns the bound address and a future that serves until `shutdown` resolves.
pub async fn bind(
    addr: SocketAddr,
    ready: ReadyCheck,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, serve(listener, ready, shutdown)))
}

async fn serve(listener: TcpListener, ready: ReadyCheck, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let ready = Arc::clone(&ready);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| respond(req, Arc::clone(&ready)));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        }
    }
}

async fn respond(
    req: Request<Incoming>,
    ready: ReadyCheck,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut content_type = "text/plain";
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/metrics" => {
            content_type = crate::metrics::CONTENT_TYPE;
            (StatusCode::OK, crate::metrics::encode())
        }
        "/readyz" => match ready().await {
            Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
            Err(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    Ok(resp)
}
