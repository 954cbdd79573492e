//! An HTTP/1.1 server for tests (the SMS webhook's peer) that records every request.
//!
//! Any method and path is accepted. The answer is `200 {}` (JSON) unless changed with
//! [`HttpSink::set_status`] (every later request) or [`HttpSink::respond_next`] (the next N),
//! or computed from the request by a [`Responder`] ([`HttpSink::set_responder`]; e.g. a fake
//! provider API that checks authentication and fields like the real one). Queued
//! `respond_next` answers come first, then the responder, then the default.
//! Invariant: every request is recorded, whatever the answer, in the order it arrived, with its
//! whole body (so a test can check what a failed delivery attempt sent).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::collector::Collector;

/// A request the sink received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query, e.g. `/sms?x=1`.
    pub path: String,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, as UTF-8 (lossy).
    pub body: String,
}

impl ReceivedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body).context("request body is not JSON")
    }
}

#[derive(Debug, Clone)]
struct Reply {
    status: StatusCode,
    body: String,
}

/// Computes the answer to a request: `Some((status, JSON body))`, or `None` for the default.
pub type Responder = Arc<dyn Fn(&ReceivedRequest) -> Option<(u16, String)> + Send + Sync>;

struct HttpState {
    requests: Arc<Collector<ReceivedRequest>>,
    default_reply: Mutex<Reply>,
    next_replies: Mutex<VecDeque<Reply>>,
    responder: Mutex<Option<Responder>>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

impl HttpState {
    fn reply(&self, request: &ReceivedRequest) -> Reply {
        let next = self
            .next_replies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        if let Some(next) = next {
            return next;
        }
        let responder = self
            .responder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((status, body)) = responder.and_then(|r| r(request))
            && let Ok(status) = StatusCode::from_u16(status)
        {
            return Reply { status, body };
        }
        self.default_reply
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A running HTTP sink on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct HttpSink {
    addr: SocketAddr,
    state: Arc<HttpState>,
    server: JoinHandle<()>,
}

impl HttpSink {
    /// Binds a random port on 127.0.0.1 and starts serving.
    pub async fn start() -> anyhow::Result<HttpSink> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .context("binding the HTTP sink")?;
        let addr = listener.local_addr().context("HTTP sink address")?;
        let state = Arc::new(HttpState {
            requests: Collector::new(),
            default_reply: Mutex::new(Reply {
                status: StatusCode::OK,
                body: "{}".to_owned(),
            }),
            next_replies: Mutex::new(VecDeque::new()),
            responder: Mutex::new(None),
        });
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(HttpSink {
            addr,
            state,
            server,
        })
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/sms` (any path is accepted; this one reads well in logs).
    pub fn url(&self) -> String {
        format!("http://{}/sms", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.state.requests.snapshot()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        self.state.requests.clear();
    }

    /// The first request matching `pred`, waiting up to `timeout`.
    pub async fn wait_for(
        &self,
        pred: impl FnMut(&ReceivedRequest) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<ReceivedRequest> {
        self.state
            .requests
            .wait_for("HTTP request", pred, timeout)
            .await
    }

    /// All requests once there are at least `n`, waiting up to `timeout`.
    pub async fn wait_for_count(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedRequest>> {
        self.state
            .requests
            .wait_for_count("HTTP requests", n, timeout)
            .await
    }

    /// Answers every later request with `status` (body `{}`), e.g. 500 for a broken provider.
    pub fn set_status(&self, status: u16) -> anyhow::Result<()> {
        let status = StatusCode::from_u16(status).context("invalid HTTP status")?;
        *self
            .state
            .default_reply
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Reply {
            status,
            body: "{}".to_owned(),
        };
        Ok(())
    }

    /// Computes later answers with `responder` (after any queued `respond_next` answers).
    pub fn set_responder(
        &self,
        responder: impl Fn(&ReceivedRequest) -> Option<(u16, String)> + Send + Sync + 'static,
    ) {
        *self
            .state
            .responder
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(responder));
    }

    /// Answers the next `n` requests with `status` and `body`, then goes back to the default.
    pub fn respond_next(&self, n: usize, status: u16, body: &str) -> anyhow::Result<()> {
        let status = StatusCode::from_u16(status).context("invalid HTTP status")?;
        let reply = Reply {
            status,
            body: body.to_owned(),
        };
        let mut queue = self
            .state
            .next_replies
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        queue.extend(std::iter::repeat_n(reply, n));
        Ok(())
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<HttpState>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = Arc::clone(&state);
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let state = Arc::clone(&state);
                            async move { Ok::<_, Infallible>(handle(req, &state).await) }
                        });
                        if let Err(e) = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                        {
                            tracing::debug!(error = %e, "HTTP sink connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP sink accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(req: Request<Incoming>, state: &HttpState) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(e) => {
            tracing::debug!(error = %e, "HTTP sink could not read a request body");
            String::new()
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.to_string());
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let request = ReceivedRequest {
        method: parts.method.to_string(),
        path,
        headers,
        body,
    };
    let reply = state.reply(&request);
    state.requests.push(request);
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = reply.status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
