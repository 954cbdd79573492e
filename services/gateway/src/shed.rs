//! Load shedding at the edge: at most `SSPR_GATEWAY_MAX_IN_FLIGHT` public calls run at once.
//!
//! A tower layer on the whole server takes a permit for each call to a public service and holds
//! it until the response is produced; when none is free the call is answered at once with
//! `UNAVAILABLE` ("server busy"), `retry-after: 1` metadata and `google.rpc.RetryInfo`, instead
//! of queueing work that would only time out. gRPC health and reflection (`/grpc.*`) are never
//! shed, so a busy gateway still answers its orchestrator's probes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sspr_bus::{BusError, RpcError};
use tokio::sync::Semaphore;
use tonic::codegen::http;

use crate::error::GatewayError;

/// Default of `SSPR_GATEWAY_MAX_IN_FLIGHT`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;

/// Bounds concurrent public calls; see the module documentation.
#[derive(Clone)]
pub(crate) struct ShedLayer {
    permits: Arc<Semaphore>,
}

impl ShedLayer {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            permits: Arc::clone(&self.permits),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

/// The refusal sent when every permit is taken.
fn busy<B: Default>() -> http::Response<B> {
    let status: tonic::Status = GatewayError::Bus(BusError::Rpc(
        RpcError::unavailable("server busy, try again shortly").with_retry_after(1),
    ))
    .into();
    status.into_http()
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for Shed<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = http::Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqB>) -> Self::Future {
        // The service polled ready is the one that must take the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if request.uri().path().starts_with("/grpc.") {
            return Box::pin(inner.call(request));
        }
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Box::pin(async move {
                let response = inner.call(request).await;
                drop(permit);
                response
            }),
            Err(_) => {
                tracing::debug!("public call refused: too many calls in flight");
                Box::pin(async { Ok(busy()) })
            }
        }
    }
}
