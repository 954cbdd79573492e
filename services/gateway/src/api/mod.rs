//! The public gRPC services: each method validates its input at the edge, makes one NATS
//! request to the internal service that owns the answer, and maps the reply back.
//!
//! No business rule lives here. Bodies are never logged: they carry passwords, codes and
//! session ids.

pub mod admin;
pub mod registration;
pub mod reset;

use sspr_bus::Bus;
use tonic::Request;

use crate::challenge::ChallengeVerifier;
use crate::domain::client_ip;

/// What every public service needs: the bus, and how to tell who the client is.
#[derive(Clone)]
pub struct Edge {
    bus: Bus,
    trusted_proxy_hops: usize,
    challenge: Option<ChallengeVerifier>,
}

impl Edge {
    pub fn new(bus: Bus, trusted_proxy_hops: usize) -> Self {
        Self {
            bus,
            trusted_proxy_hops,
            challenge: None,
        }
    }

    /// The same edge, checking challenge tokens with `verifier`.
    pub fn with_challenge(mut self, verifier: ChallengeVerifier) -> Self {
        self.challenge = Some(verifier);
        self
    }

    /// Whether `token` (non-empty) passes the configured challenge verifier; false without
    /// one, without a token, or when the verifier fails.
    pub(crate) async fn challenge_passed(&self, token: &str, client_ip: &str) -> bool {
        match &self.challenge {
            Some(verifier) if !token.is_empty() => verifier.verify(token, client_ip).await,
            _ => false,
        }
    }

    pub(crate) fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The client's IP address: from `X-Forwarded-For` behind trusted proxies, otherwise the
    /// TCP peer.
    pub(crate) fn client_ip<T>(&self, request: &Request<T>) -> String {
        let forwarded = request
            .metadata()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>();
        client_ip::resolve(forwarded, request.remote_addr(), self.trusted_proxy_hops)
    }
}
