//! An SMTP server for tests that speaks the real protocol (RFC 5321 subset) and keeps every
//! accepted message in memory.
//!
//! Supported: 220 greeting, EHLO (multi-line 250) / HELO, MAIL FROM, RCPT TO, DATA (354, dot
//! unstuffing, ends at CRLF.CRLF), RSET, NOOP, VRFY, QUIT (221); anything else gets 500. Several
//! connections at once and several messages per connection (lettre pools connections).
//! Optionally ([`SmtpSink::start_with`]): STARTTLS (RFC 3207) or implicit TLS, with a CA and a
//! certificate for 127.0.0.1 made by the `openssl` CLI ([`SmtpSink::ca_file`]), and AUTH PLAIN /
//! LOGIN required before MAIL.
//! Invariants: a message is recorded only when the server answers 250 to its DATA, exactly like a
//! real relay accepting responsibility for it; a rejected message (see [`SmtpSink::reject_next`])
//! is never recorded.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::collector::Collector;

const HOSTNAME: &str = "sspr-testkit";
/// Longest command line accepted (RFC 5321 allows 512; be generous with parameters).
const MAX_COMMAND_LINE: usize = 4096;
/// Largest message accepted, also advertised with SIZE.
const MAX_MESSAGE: usize = 10 * 1024 * 1024;

/// A message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (MAIL FROM), without angle brackets.
    pub from: String,
    /// The envelope recipients (RCPT TO), without angle brackets.
    pub to: Vec<String>,
    /// The message as transmitted (headers and body, CRLF line ends), after dot unstuffing.
    pub data: String,
    /// When the sink answered 250 to its DATA (the instant the "provider" took responsibility).
    pub accepted_at: std::time::SystemTime,
}

impl ReceivedMail {
    /// The first header called `name` (case-insensitive), unfolded and trimmed, still encoded
    /// (an RFC 2047 encoded-word stays as sent; use [`ReceivedMail::subject`] for the subject).
    pub fn header(&self, name: &str) -> Option<String> {
        let mut found: Option<String> = None;
        for line in self.data.split("\r\n").flat_map(|l| l.split('\n')) {
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(value) = found.as_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((key, value)) = line.split_once(':')
                && key.trim().eq_ignore_ascii_case(name)
            {
                found = Some(value.trim().to_owned());
            }
        }
        found
    }

    /// The decoded `Subject` (RFC 2047 encoded-words decoded).
    pub fn subject(&self) -> Option<String> {
        let parser = mail_parser::MessageParser::default();
        let message = parser.parse(self.data.as_bytes())?;
        message.subject().map(str::to_owned)
    }

    /// The decoded text/plain body (the text/plain alternative of a multipart message;
    /// quoted-printable, base64, 7bit and 8bit all decoded).
    pub fn text_body(&self) -> Option<String> {
        let parser = mail_parser::MessageParser::default();
        let message = parser.parse(self.data.as_bytes())?;
        message.body_text(0).map(Cow::into_owned)
    }

    /// The decoded text/html body, if the message has one.
    pub fn html_body(&self) -> Option<String> {
        let parser = mail_parser::MessageParser::default();
        let message = parser.parse(self.data.as_bytes())?;
        message.body_html(0).map(Cow::into_owned)
    }
}

/// A reply the sink gives instead of accepting a message.
#[derive(Debug, Clone)]
struct Rejection {
    code: u16,
    text: String,
}

/// How the sink protects its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpSinkTls {
    /// Plain SMTP; STARTTLS is not offered.
    #[default]
    None,
    /// Plain at first, STARTTLS offered (and the only way to TLS).
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// Options of [`SmtpSink::start_with`].
#[derive(Debug, Clone, Default)]
pub struct SmtpSinkOptions {
    pub tls: SmtpSinkTls,
    /// When set, AUTH (PLAIN or LOGIN) with this user and password is required before MAIL.
    pub login: Option<(String, String)>,
}

struct SmtpState {
    mails: Arc<Collector<ReceivedMail>>,
    connections: AtomicUsize,
    tls_sessions: AtomicUsize,
    logins: AtomicUsize,
    rejections: Mutex<VecDeque<Rejection>>,
    /// While set, every message is answered with this code (an outage of the relay).
    refusing: Mutex<Option<u16>>,
    /// How long the sink waits after the final "." before answering (a slow relay).
    accept_delay: Mutex<Duration>,
    /// Messages answered with a rejection so far.
    refused: AtomicUsize,
    tls_mode: SmtpSinkTls,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    login: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpState")
            .field("tls_mode", &self.tls_mode)
            .finish_non_exhaustive()
    }
}

impl SmtpState {
    fn next_rejection(&self) -> Option<Rejection> {
        if let Some(code) = *self.refusing.lock().unwrap_or_else(|p| p.into_inner()) {
            return Some(Rejection::with_code(code));
        }
        self.rejections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    fn accept_delay(&self) -> Duration {
        *self.accept_delay.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running SMTP sink on 127.0.0.1; stops accepting when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    addr: SocketAddr,
    state: Arc<SmtpState>,
    /// The accept loop (which owns every connection); `None` while stopped.
    server: Mutex<Option<JoinHandle<()>>>,
    /// The CA and server certificate when TLS is on.
    certs: Option<tempfile::TempDir>,
}

impl SmtpSink {
    /// Binds a random port on 127.0.0.1 and starts serving plain SMTP.
    pub async fn start() -> anyhow::Result<SmtpSink> {
        Self::start_with(SmtpSinkOptions::default()).await
    }

    /// As [`SmtpSink::start`], with STARTTLS or implicit TLS and/or a required login.
    pub async fn start_with(options: SmtpSinkOptions) -> anyhow::Result<SmtpSink> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .context("binding the SMTP sink")?;
        let addr = listener.local_addr().context("SMTP sink address")?;
        let (acceptor, certs) = match options.tls {
            SmtpSinkTls::None => (None, None),
            SmtpSinkTls::StartTls | SmtpSinkTls::Implicit => {
                let dir = tempfile::tempdir().context("certificate directory")?;
                crate::slapd::generate_certificates(dir.path()).await?;
                (Some(tls_acceptor(dir.path())?), Some(dir))
            }
        };
        let state = Arc::new(SmtpState {
            mails: Collector::new(),
            connections: AtomicUsize::new(0),
            tls_sessions: AtomicUsize::new(0),
            logins: AtomicUsize::new(0),
            rejections: Mutex::new(VecDeque::new()),
            refusing: Mutex::new(None),
            accept_delay: Mutex::new(Duration::ZERO),
            refused: AtomicUsize::new(0),
            tls_mode: options.tls,
            acceptor,
            login: options.login,
        });
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(SmtpSink {
            addr,
            state,
            server: Mutex::new(Some(server)),
            certs,
        })
    }

    /// Stops the server as if the relay went down: the listening socket is closed (new
    /// connections are refused) and every open connection is dropped mid-conversation. Messages
    /// accepted so far are kept.
    pub fn stop(&self) {
        if let Some(server) = self.server.lock().unwrap_or_else(|p| p.into_inner()).take() {
            server.abort();
        }
    }

    /// Serves again on the same port after [`SmtpSink::stop`] (a no-op while running).
    pub async fn restart(&self) -> anyhow::Result<()> {
        if self
            .server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Ok(());
        }
        // The aborted accept loop may take a moment to release the port.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "SMTP sink port not free yet");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e).context("rebinding the SMTP sink's port"),
            }
        };
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&self.state)));
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
        Ok(())
    }

    /// While `Some(code)`, answers the end of every message's DATA with `code` (e.g. 451: the
    /// relay is there but defers everything) and records nothing; `None` accepts again.
    pub fn set_refusing(&self, code: Option<u16>) {
        *self
            .state
            .refusing
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = code;
    }

    /// How many messages were answered with a rejection (see [`SmtpSink::reject_next`],
    /// [`SmtpSink::set_refusing`]) so far.
    pub fn refused_count(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// Waits `delay` after each message's final "." before answering (a slow relay), so
    /// deliveries stay in flight for a while.
    pub fn set_accept_delay(&self, delay: Duration) {
        *self
            .state
            .accept_delay
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = delay;
    }

    /// The PEM file of the CA that signed the sink's certificate (TLS modes only).
    pub fn ca_file(&self) -> Option<std::path::PathBuf> {
        self.certs.as_ref().map(|d| d.path().join("ca.pem"))
    }

    /// How many TLS handshakes succeeded (STARTTLS or implicit).
    pub fn tls_sessions(&self) -> usize {
        self.state.tls_sessions.load(Ordering::SeqCst)
    }

    /// How many AUTH exchanges succeeded.
    pub fn logins(&self) -> usize {
        self.state.logins.load(Ordering::SeqCst)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The form `SSPR_SMTP_URL` takes: `smtp://127.0.0.1:<port>`, with `?tls=starttls` when
    /// the sink offers STARTTLS, or `smtps://127.0.0.1:<port>` for implicit TLS.
    pub fn url(&self) -> String {
        match self.state.tls_mode {
            SmtpSinkTls::None => format!("smtp://{}", self.addr),
            SmtpSinkTls::StartTls => format!("smtp://{}?tls=starttls", self.addr),
            SmtpSinkTls::Implicit => format!("smtps://{}", self.addr),
        }
    }

    /// Every message accepted so far, in order of acceptance.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.state.mails.snapshot()
    }

    /// How many SMTP connections clients have opened so far.
    pub fn connection_count(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Forgets the messages received so far.
    pub fn clear(&self) {
        self.state.mails.clear();
    }

    /// The first accepted message matching `pred`, waiting up to `timeout`.
    pub async fn wait_for(
        &self,
        pred: impl FnMut(&ReceivedMail) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<ReceivedMail> {
        self.state.mails.wait_for("mail", pred, timeout).await
    }

    /// All accepted messages once there are at least `n`, waiting up to `timeout`.
    pub async fn wait_for_count(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedMail>> {
        self.state.mails.wait_for_count("mails", n, timeout).await
    }

    /// Answers the end of DATA of the next `n` messages with `code` (e.g. 451 for a transient,
    /// 550 for a permanent failure) instead of 250; those messages are not recorded.
    pub fn reject_next(&self, n: usize, code: u16) {
        let mut queue = self
            .state
            .rejections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        queue.extend(std::iter::repeat_n(Rejection::with_code(code), n));
    }

    /// How many of the rejections asked for by [`SmtpSink::reject_next`] are still to come.
    pub fn pending_rejections(&self) -> usize {
        self.state
            .rejections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Drops the rejections still to come: every message is accepted again.
    pub fn clear_rejections(&self) {
        self.state
            .rejections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Rejection {
    fn with_code(code: u16) -> Rejection {
        let text = if (400..500).contains(&code) {
            "Requested action aborted: try again later"
        } else {
            "Requested action not taken: rejected by test"
        };
        Rejection {
            code,
            text: text.to_owned(),
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<SmtpState>) {
    // Connection tasks live in a JoinSet so they end with the accept loop (when the sink drops).
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    state.connections.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve_connection(stream, Arc::clone(&state)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SMTP sink accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The envelope being built between MAIL FROM and the end of DATA.
#[derive(Default)]
struct Transaction {
    from: Option<String>,
    to: Vec<String>,
}

/// The server side of the sink's TLS: the certificate for 127.0.0.1 in `dir`.
fn tls_acceptor(dir: &std::path::Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .context("reading server.pem")?
        .collect::<Result<Vec<_>, _>>()
        .context("parsing server.pem")?;
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).context("reading server.key")?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the sink's certificate")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve_connection(stream: TcpStream, state: Arc<SmtpState>) {
    if let Err(e) = serve(stream, &state).await {
        tracing::debug!(error = %e, "SMTP sink connection ended with an error");
    }
}

async fn serve(stream: TcpStream, state: &SmtpState) -> std::io::Result<()> {
    let acceptor = state.acceptor.clone();
    match (state.tls_mode, acceptor) {
        (SmtpSinkTls::Implicit, Some(acceptor)) => {
            let tls = acceptor.accept(stream).await?;
            state.tls_sessions.fetch_add(1, Ordering::SeqCst);
            converse(tls, state, true, false).await.map(|_| ())
        }
        (SmtpSinkTls::StartTls, Some(acceptor)) => {
            if let Some(plain) = converse(stream, state, true, true).await? {
                let tls = acceptor.accept(plain).await?;
                state.tls_sessions.fetch_add(1, Ordering::SeqCst);
                converse(tls, state, false, false).await?;
            }
            Ok(())
        }
        _ => converse(stream, state, true, false).await.map(|_| ()),
    }
}

/// Talks SMTP on `stream`; returns the stream when the client asked for STARTTLS (only offered
/// when `offer_starttls`), for the caller to wrap it in TLS and talk again without a greeting.
async fn converse<S>(
    stream: S,
    state: &SmtpState,
    greet: bool,
    offer_starttls: bool,
) -> std::io::Result<Option<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    if greet {
        write
            .write_all(format!("220 {HOSTNAME} ESMTP ready\r\n").as_bytes())
            .await?;
    }
    let mut logged_in = state.login.is_none();
    let mut tx = Transaction::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_COMMAND_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with(b"\n") {
            write.write_all(b"500 5.5.2 Line too long\r\n").await?;
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = match command.split_once(' ') {
            Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim()),
            None => (command.to_ascii_uppercase(), ""),
        };
        let reply: Cow<'static, str> = match verb.as_str() {
            "EHLO" => {
                tx = Transaction::default();
                let starttls = if offer_starttls {
                    "250-STARTTLS\r\n"
                } else {
                    ""
                };
                let auth = if state.login.is_some() {
                    "250-AUTH PLAIN LOGIN\r\n"
                } else {
                    ""
                };
                format!(
                    "250-{HOSTNAME} greets {arg}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
                     {starttls}{auth}250-ENHANCEDSTATUSCODES\r\n250 SIZE {MAX_MESSAGE}\r\n"
                )
                .into()
            }
            "STARTTLS" if offer_starttls => {
                write.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
                let read = reader.into_inner();
                return Ok(Some(read.unsplit(write)));
            }
            "AUTH" if state.login.is_some() => {
                let ok = match authenticate(arg, &mut reader, &mut write).await? {
                    Some((user, password)) => state
                        .login
                        .as_ref()
                        .is_some_and(|(u, p)| *u == user && *p == password),
                    None => false,
                };
                if ok {
                    logged_in = true;
                    state.logins.fetch_add(1, Ordering::SeqCst);
                    "235 2.7.0 Authentication successful\r\n".into()
                } else {
                    "535 5.7.8 Authentication credentials invalid\r\n".into()
                }
            }
            "MAIL" if !logged_in => "530 5.7.0 Authentication required\r\n".into(),
            "HELO" => {
                tx = Transaction::default();
                format!("250 {HOSTNAME}\r\n").into()
            }
            "MAIL" => match path_argument(arg, "FROM:") {
                Some(from) if tx.from.is_none() => {
                    tx.from = Some(from);
                    "250 2.1.0 OK\r\n".into()
                }
                Some(_) => "503 5.5.1 Nested MAIL command\r\n".into(),
                None => "501 5.5.4 Syntax: MAIL FROM:<address>\r\n".into(),
            },
            "RCPT" => match path_argument(arg, "TO:") {
                _ if tx.from.is_none() => "503 5.5.1 Need MAIL before RCPT\r\n".into(),
                Some(to) if !to.is_empty() => {
                    tx.to.push(to);
                    "250 2.1.5 OK\r\n".into()
                }
                _ => "501 5.5.4 Syntax: RCPT TO:<address>\r\n".into(),
            },
            "DATA" if tx.from.is_none() || tx.to.is_empty() => {
                "503 5.5.1 Need MAIL and RCPT before DATA\r\n".into()
            }
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let data = match read_data(&mut reader).await? {
                    Some(data) => data,
                    None => return Ok(None),
                };
                let from = tx.from.take().unwrap_or_default();
                let to = std::mem::take(&mut tx.to);
                let delay = state.accept_delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if data.len() > MAX_MESSAGE {
                    "552 5.3.4 Message too big\r\n".into()
                } else if let Some(rejection) = state.next_rejection() {
                    state.refused.fetch_add(1, Ordering::SeqCst);
                    format!("{} {}\r\n", rejection.code, rejection.text).into()
                } else {
                    let data = String::from_utf8_lossy(&data).into_owned();
                    state.mails.push(ReceivedMail {
                        from,
                        to,
                        data,
                        accepted_at: std::time::SystemTime::now(),
                    });
                    "250 2.0.0 OK: queued\r\n".into()
                }
            }
            "RSET" => {
                tx = Transaction::default();
                "250 2.0.0 OK\r\n".into()
            }
            "NOOP" => "250 2.0.0 OK\r\n".into(),
            "VRFY" => "252 2.1.5 Cannot VRFY user, but will accept message\r\n".into(),
            "QUIT" => {
                write
                    .write_all(format!("221 2.0.0 {HOSTNAME} closing\r\n").as_bytes())
                    .await?;
                return Ok(None);
            }
            _ => "500 5.5.2 Command not recognized\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// Reads the credentials of `AUTH PLAIN [initial]` or `AUTH LOGIN`; `None` when malformed.
async fn authenticate<R, W>(
    arg: &str,
    reader: &mut R,
    write: &mut W,
) -> std::io::Result<Option<(String, String)>>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |s: &str| {
        b64.decode(s.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    let mut parts = arg.split_whitespace();
    let mechanism = parts.next().unwrap_or_default().to_ascii_uppercase();
    let initial = parts.next().map(str::to_owned);
    let mut next_line = async |prompt: &[u8]| -> std::io::Result<String> {
        write.write_all(prompt).await?;
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        Ok(line)
    };
    match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(i) => i,
                None => next_line(b"334 \r\n").await?,
            };
            let Some(decoded) = decode(&response) else {
                return Ok(None);
            };
            let mut fields = decoded.split('\0');
            let (_authzid, user, password) = (fields.next(), fields.next(), fields.next());
            Ok(user
                .zip(password)
                .map(|(u, p)| (u.to_owned(), p.to_owned())))
        }
        "LOGIN" => {
            let user = next_line(b"334 VXNlcm5hbWU6\r\n").await?;
            let password = next_line(b"334 UGFzc3dvcmQ6\r\n").await?;
            Ok(decode(&user).zip(decode(&password)))
        }
        _ => Ok(None),
    }
}

/// `FROM:<a@b> SIZE=1` -> `a@b` (also accepts a missing space after the colon and no brackets).
fn path_argument(arg: &str, keyword: &str) -> Option<String> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let path = match rest.strip_prefix('<') {
        Some(inner) => inner.split_once('>')?.0,
        None => rest.split_whitespace().next()?,
    };
    Some(path.to_owned())
}

/// Reads DATA lines until `.` alone on a line, undoing dot stuffing. `None` if the client
/// disconnected before the end.
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(Some(data));
        }
        // Keep reading past the limit (so the reply comes at the right time) but stop storing.
        if data.len() <= MAX_MESSAGE {
            let unstuffed = if line.starts_with(b".") {
                &line[1..]
            } else {
                &line[..]
            };
            data.extend_from_slice(unstuffed);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        assert_eq!(
            path_argument("FROM:<a@b.c> SIZE=10", "FROM:").as_deref(),
            Some("a@b.c")
        );
        assert_eq!(
            path_argument("from: <a@b.c>", "FROM:").as_deref(),
            Some("a@b.c")
        );
        assert_eq!(path_argument("FROM:<>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_argument("TO:a@b.c", "TO:").as_deref(), Some("a@b.c"));
        assert_eq!(path_argument("FROM:<a@b.c>", "TO:"), None);
        assert_eq!(path_argument("", "TO:"), None);
    }

    #[test]
    fn reads_unfolded_headers() {
        let mail = ReceivedMail {
            from: String::new(),
            to: vec![],
            data: "Subject: hello\r\n world\r\nX-Test: 1\r\n\r\nX-Test: body\r\n".into(),
            accepted_at: std::time::SystemTime::now(),
        };
        assert_eq!(mail.header("subject").as_deref(), Some("hello world"));
        assert_eq!(mail.header("x-test").as_deref(), Some("1"));
        assert_eq!(mail.header("missing"), None);
    }

    #[tokio::test]
    async fn unstuffs_dots() {
        let mut input: &[u8] = b"a\r\n..b\r\n.\r\nnext";
        let data = read_data(&mut input).await.unwrap().unwrap();
        assert_eq!(data, b"a\r\n.b\r\n");
        let mut cut: &[u8] = b"a\r\n";
        assert!(read_data(&mut cut).await.unwrap().is_none());
    }
}
