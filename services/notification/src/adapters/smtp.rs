//! Mail over SMTP: one bounded pool of lettre `AsyncSmtpConnection`s per replica, shared by
//! every delivery and notice.
//!
//! lettre's pooled `AsyncSmtpTransport` (0.11) leaves Nagle's algorithm on: the message body and
//! the final `.` leave as two small writes and the second waits for the server's delayed ACK
//! (~40 ms per mail). Here every connection starts from a `TcpStream` this module connected
//! itself with `TCP_NODELAY` set ([`connect_tcp`]), handed to
//! `AsyncSmtpConnection::connect_with_transport`.
//!
//! Invariants:
//! - A send succeeds only when the server accepted the message (250 after DATA).
//! - At most [`POOL_SIZE`] connections exist at once; idle ones are reused (checked with NOOP
//!   when idle for more than [`CHECK_IDLE_AFTER`], closed after [`MAX_IDLE`]).
//! - A connection goes back to the pool only after a transaction that ended in a known state
//!   (accepted, or refused by the server with lettre still holding the connection). A connection
//!   that failed mid-transaction, or whose send was cut by the timeout, is dropped (closed),
//!   never reused: the next mail must not inherit a half-written DATA section.
//! - Each send (waiting for a pool slot, connecting, TLS, login and the transaction) runs under
//!   [`SEND_TIMEOUT`], shorter than the queue's ack wait.
//! - TLS: none (`smtp://`), STARTTLS required (`?tls=starttls`: a server that does not offer it is
//!   refused before anything is sent), or implicit (`smtps://`). Certificates are checked against
//!   the system roots plus `SSPR_SMTP_TLS_CA`; there is no way to skip the check.
//! - Failure reasons are built from SMTP reply codes, I/O error kinds and TLS error kinds, never
//!   from the server's text (which often repeats the recipient); the password never appears.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::adapters::mail::build_message;
use crate::config::{SmtpOptions, SmtpTls, SmtpUrl};
use crate::domain::retry::SendFailure;
use crate::ports::{Mailer, OutgoingMail};

/// Longest wait for one send, pool slot, connection, TLS and login included (shorter than
/// the delivery consumer's 30 s ack wait).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections open to the server at most, per replica.
pub const POOL_SIZE: usize = 8;
/// An idle connection older than this is checked with NOOP before it carries a mail.
pub const CHECK_IDLE_AFTER: Duration = Duration::from_secs(2);
/// An idle connection older than this is closed instead of reused.
pub const MAX_IDLE: Duration = Duration::from_secs(60);

/// Why the mailer cannot be built (a bad CA file); operator-readable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SmtpSetupError(String);

/// TLS settings for one server, built once.
struct Tls {
    /// For STARTTLS (lettre upgrades the connection).
    starttls: TlsParameters,
    /// For implicit TLS (tokio-rustls before the greeting).
    implicit: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

pub struct SmtpMailer {
    server: SmtpUrl,
    from: Mailbox,
    hello: ClientId,
    tls: Option<Tls>,
    credentials: Option<Credentials>,
    send_timeout: Duration,
    slots: Semaphore,
    idle: Mutex<Vec<Idle>>,
}

impl SmtpMailer {
    /// Builds the pool (no connection is opened until the first mail) and the TLS settings;
    /// fails when the CA file or the host name cannot be used.
    pub fn new(
        server: SmtpUrl,
        options: &SmtpOptions,
        from: Mailbox,
    ) -> Result<Self, SmtpSetupError> {
        let tls = match server.tls() {
            SmtpTls::None => None,
            SmtpTls::StartTls | SmtpTls::Implicit => Some(build_tls(&server, options)?),
        };
        let credentials = options
            .credentials
            .as_ref()
            .map(|c| Credentials::new(c.user.clone(), c.password.expose().clone()));
        Ok(Self {
            server,
            from,
            hello: ClientId::default(),
            tls,
            credentials,
            send_timeout: SEND_TIMEOUT,
            slots: Semaphore::new(POOL_SIZE),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Another limit than [`SEND_TIMEOUT`] for each send (tests).
    pub fn with_send_timeout(mut self, limit: Duration) -> Self {
        self.send_timeout = limit;
        self
    }

    /// Closes idle connections politely (QUIT).
    pub async fn shutdown(&self) {
        let idle = std::mem::take(&mut *self.lock_idle());
        for mut i in idle {
            let _ = tokio::time::timeout(Duration::from_secs(1), i.conn.quit()).await;
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection that still answers, if any.
    async fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let Idle { mut conn, since } = self.lock_idle().pop()?;
            let age = since.elapsed();
            if age > MAX_IDLE {
                continue;
            }
            if age > CHECK_IDLE_AFTER && !conn.test_connected().await {
                continue;
            }
            return Some(conn);
        }
    }

    fn put_back(&self, conn: AsyncSmtpConnection) {
        if !conn.has_broken() {
            self.lock_idle().push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Opens a connection: TCP (no Nagle), TLS as configured, EHLO, login.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendFailure> {
        let server = &self.server;
        let tcp = connect_tcp(server.host(), server.port())
            .await
            .map_err(|e| {
                SendFailure::transient(format!(
                    "cannot connect to the SMTP server {server}: {}",
                    io_reason(&e)
                ))
            })?;
        let mut conn = match (server.tls(), &self.tls) {
            (SmtpTls::Implicit, Some(tls)) => {
                let stream = tls
                    .implicit
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|e| SendFailure::transient(tls_reason(server, &e)))?;
                AsyncSmtpConnection::connect_with_transport(
                    Box::new(ImplicitTls(stream)),
                    &self.hello,
                )
                .await
                .map_err(|e| classify(server, &e))?
            }
            _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                .await
                .map_err(|e| classify(server, &e))?,
        };
        if let (SmtpTls::StartTls, Some(tls)) = (server.tls(), &self.tls) {
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(SendFailure::transient(format!(
                    "the SMTP server {server} does not offer STARTTLS, which SSPR_SMTP_URL requires (?tls=starttls); nothing was sent"
                )));
            }
            conn.starttls(tls.starttls.clone(), &self.hello)
                .await
                .map_err(|e| SendFailure::transient(tls_reason(server, &e)))?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| {
                    let reply = e
                        .status()
                        .map(|c| format!(" (reply {c})"))
                        .unwrap_or_default();
                    SendFailure::transient(format!(
                        "the SMTP server {server} refused the login of SSPR_SMTP_USER{reply}"
                    ))
                })?;
        }
        Ok(conn)
    }

    /// One transaction on a pooled connection; see the module invariants.
    async fn transact(&self, envelope: &Envelope, message: &[u8]) -> Result<u16, SendFailure> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| SendFailure::transient("the SMTP pool is shut down"))?;
        let mut conn = match self.take_idle().await {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let result = conn.send(envelope, message).await;
        // After an error lettre has aborted the connection (has_broken), unless it refused
        // before sending anything; put_back keeps only intact ones.
        self.put_back(conn);
        match result {
            Ok(response) => Ok(u16::from(response.code())),
            Err(e) => Err(classify(&self.server, &e)),
        }
    }
}

/// Connects a TCP stream to `host:port` with `TCP_NODELAY` set, under [`CONNECT_TIMEOUT`].
pub async fn connect_tcp(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let connect = async {
        match host.parse::<IpAddr>() {
            Ok(ip) => TcpStream::connect((ip, port)).await,
            Err(_) => TcpStream::connect((host, port)).await,
        }
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), SendFailure> {
        let span = tracing::info_span!(
            "smtp.send",
            otel.name = "smtp send",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            server.address = %self.server.host(),
            server.port = self.server.port(),
            delivery_id = %mail.delivery_id,
            smtp.reply_code = tracing::field::Empty,
        );
        let message = build_message(&self.from, mail)?;
        let envelope = message.envelope().clone();
        let bytes = message.formatted();
        async {
            let span = tracing::Span::current();
            let limit = self.send_timeout;
            let sending = self.transact(&envelope, &bytes);
            let result = match tokio::time::timeout(limit, sending).await {
                Ok(result) => result,
                // The transaction's future (and with it the connection) was dropped.
                Err(_) => Err(SendFailure::transient(format!(
                    "the SMTP server {} did not accept the message within {limit:?}",
                    self.server
                ))),
            };
            match &result {
                Ok(code) => {
                    span.record("smtp.reply_code", code);
                }
                Err(_) => {
                    span.record("otel.status_code", "ERROR");
                }
            }
            result.map(|_| ())
        }
        .instrument(span)
        .await
    }

    fn provider(&self) -> &'static str {
        "smtp"
    }
}

/// The TLS settings for `server`: system roots plus the optional CA, checked now.
fn build_tls(server: &SmtpUrl, options: &SmtpOptions) -> Result<Tls, SmtpSetupError> {
    let server_name = ServerName::try_from(server.host().to_owned()).map_err(|_| {
        SmtpSetupError(format!(
            "SSPR_SMTP_URL: {} is not a host name TLS can check a certificate against",
            server.host()
        ))
    })?;
    let mut starttls = TlsParameters::builder(server.host().to_owned())
        .certificate_store(CertificateStore::Default);
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(ca) = &options.tls_ca {
        let bad = |_| {
            SmtpSetupError(format!(
                "SSPR_SMTP_TLS_CA: {} holds a certificate that cannot be used",
                ca.path().display()
            ))
        };
        starttls = starttls
            .add_root_certificate(Certificate::from_pem(ca.pem()).map_err(|e| bad(e.to_string()))?);
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        for cert in CertificateDer::pem_slice_iter(ca.pem()) {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    let starttls = starttls.build_rustls().map_err(|_| {
        SmtpSetupError("SSPR_SMTP_URL: the TLS settings for the SMTP server cannot be built".into())
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| SmtpSetupError("SSPR_SMTP_URL: no TLS version available".into()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Tls {
        starttls,
        implicit: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

/// An implicit-TLS stream as lettre takes it.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Sorts a lettre error into transient or permanent, with a reason safe to store.
fn classify(server: &SmtpUrl, e: &lettre::transport::smtp::Error) -> SendFailure {
    if let Some(code) = e.status() {
        return if e.is_permanent() {
            SendFailure::permanent(format!(
                "the SMTP server {server} refused the message permanently (reply {code})"
            ))
        } else {
            SendFailure::transient(format!(
                "the SMTP server {server} deferred the message (reply {code})"
            ))
        };
    }
    if let Some(reason) = rustls_reason(e) {
        return SendFailure::transient(format!(
            "TLS with the SMTP server {server} failed: {reason}"
        ));
    }
    if e.is_timeout() {
        return SendFailure::transient(format!("the SMTP server {server} timed out"));
    }
    if e.is_client() {
        // lettre's client errors are fixed texts (e.g. "server does not support SMTPUTF8").
        return SendFailure::permanent(format!(
            "the SMTP exchange with {server} cannot succeed: {e}"
        ));
    }
    match io_error_kind(e) {
        Some(kind) => {
            SendFailure::transient(format!("cannot talk to the SMTP server {server}: {kind}"))
        }
        None => SendFailure::transient(format!(
            "the SMTP exchange with {server} failed (connection or protocol error)"
        )),
    }
}

/// The reason of a failed TLS handshake (implicit or STARTTLS).
fn tls_reason(server: &SmtpUrl, e: &(dyn std::error::Error + 'static)) -> String {
    match rustls_reason(e) {
        Some(reason) => format!("TLS with the SMTP server {server} failed: {reason}"),
        None => match io_error_kind(e) {
            Some(kind) => format!("TLS with the SMTP server {server} failed: {kind}"),
            None => format!("TLS with the SMTP server {server} failed"),
        },
    }
}

/// An operator-readable reason when a rustls error is in the chain.
fn rustls_reason(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::CertificateError as C;
    let tls = find::<rustls::Error>(e)?;
    Some(match tls {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "certificate not trusted (unknown issuer; set SSPR_SMTP_TLS_CA to its CA)".to_owned()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "certificate not valid for this host name".to_owned()
        }
        rustls::Error::InvalidCertificate(C::Expired)
        | rustls::Error::InvalidCertificate(C::ExpiredContext { .. }) => {
            "certificate expired".to_owned()
        }
        rustls::Error::InvalidCertificate(other) => format!("certificate refused ({other:?})"),
        other => format!("{other}"),
    })
}

/// The first error of type `T` in the chain, looking inside `io::Error`s too (whose `source`
/// skips the wrapped error itself).
fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(found) = find::<T>(inner)
        {
            return Some(found);
        }
        next = err.source();
    }
    None
}

fn io_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    find::<std::io::Error>(e).map(std::io::Error::kind)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        kind => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stream_handed_to_lettre_has_nodelay() -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let stream = connect_tcp("127.0.0.1", port).await?;
        assert!(stream.nodelay()?, "TCP_NODELAY is not set");
        let stream = connect_tcp("localhost", port).await?;
        assert!(stream.nodelay()?);
        Ok(())
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_transient_failure() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let url =
            SmtpUrl::parse(&format!("smtp://127.0.0.1:{port}")).map_err(anyhow::Error::msg)?;
        let mailer = SmtpMailer::new(
            url,
            &SmtpOptions::default(),
            crate::config::default_mail_from(),
        )?;
        let e = mailer.connect().await.err().expect("refused");
        assert_eq!(e.kind, crate::domain::retry::FailureKind::Transient);
        assert!(
            e.detail
                .contains("cannot connect to the SMTP server smtp://127.0.0.1"),
            "{}",
            e.detail
        );
        assert!(e.detail.contains("refused"), "{}", e.detail);
        Ok(())
    }
}
