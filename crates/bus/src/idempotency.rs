//! Idempotency keys: a retried request gets the first attempt's answer instead of running again.
//!
//! A client names a mutating call with `x-request-id`; the gateway forwards it in the
//! [`REQUEST_ID_HEADER`] header of the NATS request it makes for that call ([`scope`]). A
//! [`Router`](crate::Router) given an [`IdempotencyStore`] and routes marked idempotent then:
//!
//! 1. **claims** the key for the route before the handler runs (a `pending` row); a concurrent
//!    duplicate waits for the first attempt's answer, or gets `UNAVAILABLE` "in progress" once
//!    its budget is spent; a pending row older than [`LEASE`] (its replica died) is taken over;
//! 2. runs the handler;
//! 3. **stores** the answer (the response bytes, or a refusal with its details) unless it is
//!    transient (`UNAVAILABLE`, `INTERNAL`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`): then the
//!    claim is released and a retry runs the handler again.
//!
//! A key reused for a different request body on the same route is `INVALID_ARGUMENT`.
//!
//! Invariants (what sits at rest):
//! - the key itself is never stored: rows are found by a SHA-256 of (route, key);
//! - the request is stored only as an HMAC over (route, key, body) under the service's secret
//!   (verification: derived from its code key), never in clear;
//! - the answer is sealed (XChaCha20-Poly1305) under a key derived from the secret, the route,
//!   the key and the request body, so an answer that holds a secret (StartReset's session id,
//!   BeginRegistration's session) can only be opened by someone who sends the same request
//!   with the same key, which is the client that got it in the first place. Services without a
//!   secret rely on the request id and the body alone: clients must use unguessable ids (the
//!   CLI sends a random UUID).
//! - Nothing here logs a key, a body or an answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, KeyInit, Mac};
use prost::Message;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{BadRequest, ErrorCode, RpcError};

/// Request header: the client's idempotency key (its `x-request-id`), forwarded by the gateway.
pub const REQUEST_ID_HEADER: &str = "Sspr-Request-Id";

/// Longest accepted key, in characters.
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// How long a claim holds before another attempt may take it over (its replica is presumed
/// dead). Longer than any call may run at the gateway (30 s).
pub const LEASE: Duration = Duration::from_secs(60);

/// Longest a duplicate waits for the first attempt's answer before answering "in progress".
const MAX_WAIT: Duration = Duration::from_secs(5);
const POLL_EVERY: Duration = Duration::from_millis(50);

type HmacSha256 = Hmac<Sha256>;

/// Checks an idempotency key: 1 to 128 visible ASCII characters (no spaces).
pub fn parse_request_id(value: &str) -> Result<&str, RpcError> {
    if value.is_empty()
        || value.len() > MAX_REQUEST_ID_CHARS
        || !value.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(RpcError::invalid_argument(
            "x-request-id must be 1 to 128 visible ASCII characters",
        ));
    }
    Ok(value)
}

tokio::task_local! {
    static OUTGOING: String;
}

/// Runs `fut` with `request_id` forwarded on every request it makes (gateway side).
pub async fn scope<F: Future>(request_id: Option<String>, fut: F) -> F::Output {
    match request_id {
        Some(id) => OUTGOING.scope(id, fut).await,
        None => fut.await,
    }
}

tokio::task_local! {
    static SERVING: String;
}

/// While an idempotent handler runs: a tag naming (route, key) — the same hash the rows are
/// found by, never the key itself — for handlers that record "done by request R" on their own
/// state row in the same transaction as the change, so a retry after a crash between that
/// commit and the stored answer can be answered from state. `None` outside such a handler.
pub fn serving_tag() -> Option<String> {
    SERVING.try_with(Clone::clone).ok()
}

/// The key to forward on requests made from this task, if any.
pub(crate) fn outgoing() -> Option<String> {
    OUTGOING.try_with(Clone::clone).ok()
}

/// Why the idempotency store failed (a database error, already logged by nobody: the router
/// logs it without the key).
#[derive(Debug, thiserror::Error)]
#[error("idempotency store: {0}")]
pub struct StoreError(pub String);

/// A stored row as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// Another attempt holds the claim and has not answered yet.
    Pending { request_hash: String },
    /// The answer, sealed.
    Done {
        request_hash: String,
        sealed: Vec<u8>,
    },
}

/// The outcome of [`IdempotencyStore::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This attempt holds the claim: run the handler.
    Claimed,
    /// A row exists (and is not a stale claim).
    Existing(Existing),
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where claims and answers are kept: a table in the owning service's database
/// (`sspr_storage::idempotency`), so every replica sees the same rows.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Inserts a pending row for `lookup` unless one exists. A pending row claimed more than
    /// `lease` ago is taken over (and counts as claimed).
    fn claim<'a>(
        &'a self,
        lookup: &'a str,
        route: &'a str,
        request_hash: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// Stores the sealed answer on the claimed row.
    fn complete<'a>(
        &'a self,
        lookup: &'a str,
        sealed: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes a pending row (the attempt failed transiently; a retry runs again).
    fn release<'a>(&'a self, lookup: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// The idempotency secret derived from a 32-byte service key (e.g. verification's decoy key),
/// so the key itself is used for nothing else.
pub fn secret_from(service_key: &[u8; 32]) -> [u8; 32] {
    mac(service_key, &[b"sspr-idempotency-secret-v1"])
}

/// A router's idempotency settings: the store and the service's secret.
#[derive(Clone)]
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    secret: [u8; 32],
}

impl Idempotency {
    /// `secret`: 32 bytes only this service holds (verification: derived from its code key),
    /// mixed into the request hash and the sealing key; `None` for services without one.
    pub fn new(store: Arc<dyn IdempotencyStore>, secret: Option<[u8; 32]>) -> Self {
        Self {
            store,
            secret: secret.unwrap_or([0; 32]),
        }
    }

    /// Runs `handler` at most once per (route, key): see the module documentation.
    pub(crate) async fn run<F, Fut>(
        &self,
        route: &str,
        key: &str,
        body: &[u8],
        handler: F,
    ) -> Result<Bytes, RpcError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, RpcError>>,
    {
        let keys = Keys::derive(&self.secret, route, key, body);
        let waited_since = tokio::time::Instant::now();
        let wait_until = crate::deadline::current()
            .unwrap_or(waited_since + MAX_WAIT)
            .min(waited_since + MAX_WAIT);
        loop {
            let claim = self
                .store
                .claim(&keys.lookup, route, &keys.request_hash, LEASE)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "claiming an idempotency key failed");
                    RpcError::unavailable("try again shortly")
                })?;
            match claim {
                Claim::Claimed => break,
                Claim::Existing(Existing::Done {
                    request_hash,
                    sealed,
                }) => {
                    if request_hash != keys.request_hash {
                        return Err(reused());
                    }
                    return keys.open(&sealed).unwrap_or_else(|| {
                        tracing::error!("a stored idempotent answer does not open");
                        Err(RpcError::internal())
                    });
                }
                Claim::Existing(Existing::Pending { request_hash }) => {
                    if request_hash != keys.request_hash {
                        return Err(reused());
                    }
                    if tokio::time::Instant::now() + POLL_EVERY >= wait_until {
                        return Err(RpcError::unavailable(
                            "a request with this x-request-id is in progress; try again shortly",
                        )
                        .with_retry_after(1));
                    }
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
        }

        let result = SERVING.scope(keys.lookup.clone(), handler()).await;
        if is_transient(&result) {
            if let Err(e) = self.store.release(&keys.lookup).await {
                tracing::warn!(error = %e, "releasing an idempotency claim failed");
            }
            return result;
        }
        match keys.seal(&result) {
            Some(sealed) => {
                if let Err(e) = self.store.complete(&keys.lookup, sealed).await {
                    // The answer still goes out; a retry after the lease runs the handler again.
                    tracing::warn!(error = %e, "storing an idempotent answer failed");
                }
            }
            None => tracing::error!("sealing an idempotent answer failed"),
        }
        result
    }
}

fn reused() -> RpcError {
    RpcError::invalid_argument("x-request-id was already used for a different request")
}

/// Answers a retry must not replay: the next attempt may well succeed.
fn is_transient(result: &Result<Bytes, RpcError>) -> bool {
    matches!(
        result,
        Err(e) if matches!(
            e.code,
            ErrorCode::Unavailable
                | ErrorCode::Internal
                | ErrorCode::DeadlineExceeded
                | ErrorCode::ResourceExhausted
        )
    )
}

/// What is stored for an answer, before sealing.
#[derive(Clone, PartialEq, prost::Message)]
struct StoredAnswer {
    /// The encoded response (when `error_code` is 0).
    #[prost(bytes = "vec", tag = "1")]
    body: Vec<u8>,
    /// The refusal's gRPC code; 0 for a response.
    #[prost(uint32, tag = "2")]
    error_code: u32,
    #[prost(string, tag = "3")]
    message: String,
    #[prost(message, optional, tag = "4")]
    details: Option<BadRequest>,
    #[prost(uint64, optional, tag = "5")]
    retry_after_secs: Option<u64>,
    #[prost(string, optional, tag = "6")]
    reason: Option<String>,
}

/// The values derived from one request: see the module invariants.
struct Keys {
    lookup: String,
    request_hash: String,
    seal_key: [u8; 32],
}

fn mac(secret: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = match <HmacSha256 as KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; a 32-byte key cannot be refused.
        Err(_) => unreachable!("HMAC accepts a 32-byte key"),
    };
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

impl Keys {
    fn derive(secret: &[u8; 32], route: &str, key: &str, body: &[u8]) -> Self {
        let mut lookup = Sha256::new();
        for part in [
            b"sspr-idempotency-v1".as_slice(),
            route.as_bytes(),
            key.as_bytes(),
        ] {
            lookup.update((part.len() as u64).to_be_bytes());
            lookup.update(part);
        }
        Self {
            lookup: hex(&lookup.finalize()),
            request_hash: hex(&mac(
                secret,
                &[b"request", route.as_bytes(), key.as_bytes(), body],
            )),
            seal_key: mac(secret, &[b"seal", route.as_bytes(), key.as_bytes(), body]),
        }
    }

    fn seal(&self, result: &Result<Bytes, RpcError>) -> Option<Vec<u8>> {
        let stored = match result {
            Ok(body) => StoredAnswer {
                body: body.to_vec(),
                ..Default::default()
            },
            Err(e) => StoredAnswer {
                body: Vec::new(),
                error_code: e.code as u32,
                message: e.message.clone(),
                details: e.details.clone(),
                retry_after_secs: e.retry_after_secs,
                reason: e.reason.clone(),
            },
        };
        let cipher = XChaCha20Poly1305::new((&self.seal_key).into());
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &stored.encode_to_vec(),
                    aad: self.lookup.as_bytes(),
                },
            )
            .ok()?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Some(sealed)
    }

    fn open(&self, sealed: &[u8]) -> Option<Result<Bytes, RpcError>> {
        if sealed.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        let cipher = XChaCha20Poly1305::new((&self.seal_key).into());
        let plain = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: self.lookup.as_bytes(),
                },
            )
            .ok()?;
        let stored = StoredAnswer::decode(plain.as_slice()).ok()?;
        if stored.error_code == 0 {
            return Some(Ok(Bytes::from(stored.body)));
        }
        let mut e = RpcError::new(
            ErrorCode::from_number(stored.error_code as usize),
            stored.message,
        );
        e.details = stored.details;
        e.retry_after_secs = stored.retry_after_secs;
        e.reason = stored.reason;
        Some(Err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_visible_ascii_up_to_128() {
        assert!(parse_request_id("a").is_ok());
        assert!(parse_request_id("3f2b5c1e-0000-4000-8000-000000000000").is_ok());
        assert!(parse_request_id(&"x".repeat(128)).is_ok());
        for bad in ["", " ", "a b", "é", "tab\there"] {
            let e = parse_request_id(bad).expect_err(bad);
            assert_eq!(e.code, ErrorCode::InvalidArgument);
        }
        assert!(parse_request_id(&"x".repeat(129)).is_err());
    }

    #[test]
    fn answers_open_only_with_the_same_request_and_key() {
        let secret = [7u8; 32];
        let keys = Keys::derive(&secret, "sspr.rpc.x.y", "key-1", b"body");
        let answer: Result<Bytes, RpcError> = Ok(Bytes::from_static(b"session-secret"));
        let sealed = keys.seal(&answer).expect("seals");
        assert!(
            !sealed
                .windows(b"session-secret".len())
                .any(|w| w == b"session-secret"),
            "the answer is not stored in clear"
        );
        assert_eq!(keys.open(&sealed), Some(answer));
        for other in [
            Keys::derive(&secret, "sspr.rpc.x.y", "key-1", b"other body"),
            Keys::derive(&secret, "sspr.rpc.x.y", "key-2", b"body"),
            Keys::derive(&secret, "sspr.rpc.x.z", "key-1", b"body"),
            Keys::derive(&[8u8; 32], "sspr.rpc.x.y", "key-1", b"body"),
        ] {
            assert_eq!(other.open(&sealed), None);
            assert_ne!(other.request_hash, keys.request_hash);
        }
        // The lookup does not depend on the body: a reused key finds the row.
        assert_eq!(
            Keys::derive(&secret, "sspr.rpc.x.y", "key-1", b"other").lookup,
            keys.lookup
        );
        assert!(!keys.lookup.contains("key-1"));

        let refusal: Result<Bytes, RpcError> =
            Err(RpcError::failed_precondition("no").with_reason("SOME_REASON"));
        let sealed = keys.seal(&refusal).expect("seals");
        assert_eq!(keys.open(&sealed), Some(refusal));
    }

    #[test]
    fn transient_failures_are_not_stored() {
        for code in [
            ErrorCode::Unavailable,
            ErrorCode::Internal,
            ErrorCode::DeadlineExceeded,
            ErrorCode::ResourceExhausted,
        ] {
            assert!(is_transient(&Err(RpcError::new(code, "m"))));
        }
        assert!(!is_transient(&Err(RpcError::failed_precondition("m"))));
        assert!(!is_transient(&Ok(Bytes::new())));
    }
}
