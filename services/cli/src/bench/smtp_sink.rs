//! The bench's own SMTP receiver: just enough ESMTP (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP,
//! QUIT, with PIPELINING) to accept the notification service's mails as fast as the socket
//! allows, note the instant the final `.` arrived, and hand the code in the body to the flow
//! waiting for that recipient.
//!
//! - Replies to pipelined commands are written together once the buffered input is used up,
//!   and the socket has `TCP_NODELAY`, so the sink itself never adds a delayed-ACK stall.
//! - The code is the first line of the message that is 6 to 10 ASCII digits and nothing else
//!   (the built-in templates put it alone on a line; headers and MIME boundaries never match).
//! - Codes are handed over in memory only; nothing is logged or written to disk.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest line accepted (a mail line may be up to 998 octets; anything far beyond is abuse).
const MAX_LINE: usize = 64 * 1024;

/// A mail with a code, as the waiting flow receives it.
#[derive(Debug)]
pub struct Delivered {
    pub code: String,
    /// When the final `.` of DATA was read.
    pub accepted_at: Instant,
}

#[derive(Default)]
struct Shared {
    waiters: Mutex<HashMap<String, oneshot::Sender<Delivered>>>,
    accepted: AtomicU64,
    unclaimed_codes: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Delivered>>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn accept(&self, recipients: Vec<String>, code: Option<String>, accepted_at: Instant) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let Some(code) = code else { return };
        let mut claimed = false;
        let mut waiters = self.lock();
        for rcpt in recipients {
            if let Some(tx) = waiters.remove(&rcpt) {
                claimed |= tx
                    .send(Delivered {
                        code: code.clone(),
                        accepted_at,
                    })
                    .is_ok();
            }
        }
        if !claimed {
            self.unclaimed_codes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The running sink; stops when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Listens on `addr` (port 0: any free port).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accepting.clone();
                tokio::spawn(async move {
                    // A client that goes away mid-session is no concern of the sink.
                    let _ = serve(stream, shared).await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next mail with a code to `recipient` (case-insensitive) goes to the returned
    /// receiver; replaces an earlier waiter for the same recipient.
    pub fn expect(&self, recipient: &str) -> oneshot::Receiver<Delivered> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .lock()
            .insert(recipient.to_ascii_lowercase(), tx);
        rx
    }

    /// Mails accepted so far (with or without a code).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Mails with a code nobody was waiting for (a flow that gave up, or a stray resend).
    pub fn unclaimed_codes(&self) -> u64 {
        self.shared.unclaimed_codes.load(Ordering::Relaxed)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut session = Session::default();
    let mut out = Vec::with_capacity(256);
    write.write_all(GREETING).await?;
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let step = session.line(&line);
        match step {
            Step::Nothing => {}
            Step::Reply(reply) => out.extend_from_slice(reply),
            Step::Accepted { recipients, code } => {
                shared.accept(recipients, code, Instant::now());
                out.extend_from_slice(b"250 2.0.0 accepted\r\n");
            }
            Step::Quit => {
                out.extend_from_slice(b"221 2.0.0 bye\r\n");
                write.write_all(&out).await?;
                return Ok(());
            }
        }
        // Answer a pipelined batch in one write, once every buffered command is handled.
        if !out.is_empty() && reader.buffer().is_empty() {
            write.write_all(&out).await?;
            out.clear();
        }
    }
}

const GREETING: &[u8] = b"220 sspr-bench ESMTP\r\n";

/// What the connection must do after one input line.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Inside DATA: nothing to answer.
    Nothing,
    Reply(&'static [u8]),
    /// The final `.`: the message is accepted (answer 250).
    Accepted {
        recipients: Vec<String>,
        code: Option<String>,
    },
    /// QUIT: answer 221 and close.
    Quit,
}

/// The protocol state of one connection, fed line by line (IO-free, for the tests).
#[derive(Debug, Default)]
pub struct Session {
    in_data: bool,
    recipients: Vec<String>,
    code: Option<String>,
}

impl Session {
    /// Handles one line, CRLF (or LF) included.
    pub fn line(&mut self, raw: &[u8]) -> Step {
        let line = trim_eol(raw);
        if self.in_data {
            if line == b"." {
                self.in_data = false;
                return Step::Accepted {
                    recipients: std::mem::take(&mut self.recipients),
                    code: self.code.take(),
                };
            }
            // Dot-unstuffing does not matter for a line of digits; only look for the code.
            if self.code.is_none() {
                self.code = code_line(line);
            }
            return Step::Nothing;
        }
        let verb: Vec<u8> = line.iter().take(4).map(u8::to_ascii_uppercase).collect();
        match verb.as_slice() {
            b"EHLO" => Step::Reply(b"250-sspr-bench\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
            b"HELO" => Step::Reply(b"250 sspr-bench\r\n"),
            b"MAIL" => {
                self.recipients.clear();
                self.code = None;
                Step::Reply(b"250 2.1.0 ok\r\n")
            }
            b"RCPT" => match address(line) {
                Some(rcpt) => {
                    self.recipients.push(rcpt);
                    Step::Reply(b"250 2.1.5 ok\r\n")
                }
                None => Step::Reply(b"501 5.1.3 bad recipient\r\n"),
            },
            b"DATA" if self.recipients.is_empty() => Step::Reply(b"503 5.5.1 no recipients\r\n"),
            b"DATA" => {
                self.in_data = true;
                self.code = None;
                Step::Reply(b"354 end with <CRLF>.<CRLF>\r\n")
            }
            b"RSET" => {
                self.recipients.clear();
                self.code = None;
                Step::Reply(b"250 2.0.0 ok\r\n")
            }
            b"NOOP" => Step::Reply(b"250 2.0.0 ok\r\n"),
            b"QUIT" => Step::Quit,
            _ => Step::Reply(b"502 5.5.2 not implemented\r\n"),
        }
    }
}

fn trim_eol(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

/// The lowercased address between `<` and `>` of `RCPT TO:<a@b>`.
fn address(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    let start = text.find('<')? + 1;
    let end = start + text[start..].find('>')?;
    let addr = text[start..end].trim();
    (!addr.is_empty()).then(|| addr.to_ascii_lowercase())
}

/// `Some(code)` when the line is 6 to 10 ASCII digits (surrounding blanks allowed).
pub fn code_line(line: &[u8]) -> Option<String> {
    let trimmed = line.trim_ascii();
    ((6..=10).contains(&trimmed.len()) && trimmed.iter().all(u8::is_ascii_digit))
        .then(|| String::from_utf8_lossy(trimmed).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(session: &mut Session, lines: &[&str]) -> Vec<Step> {
        lines
            .iter()
            .map(|l| session.line(format!("{l}\r\n").as_bytes()))
            .collect()
    }

    #[test]
    fn a_mail_is_accepted_with_its_recipients_and_the_code_on_its_own_line() {
        let mut s = Session::default();
        let steps = feed(
            &mut s,
            &[
                "EHLO notification",
                "MAIL FROM:<no-reply@sspr.localhost>",
                "RCPT TO:<Bench-U7@Bench.Example>",
                "DATA",
                "Date: Mon, 07 Dec 2026 14:44:53 +0000",
                "Message-ID: <1733582693123456.42@sspr>",
                "Content-Type: text/plain; charset=utf-8",
                "",
                "Your password reset code is:",
                "",
                "04817263",
                "",
                "This code is valid for 10 minutes. 12345678 is not the code.",
                ".",
            ],
        );
        assert!(
            matches!(steps[0], Step::Reply(r) if r.starts_with(b"250-") && r.windows(10).any(|w| w == b"PIPELINING"))
        );
        assert_eq!(steps[3], Step::Reply(b"354 end with <CRLF>.<CRLF>\r\n"));
        assert!(steps[4..13].iter().all(|s| *s == Step::Nothing));
        assert_eq!(
            steps[13],
            Step::Accepted {
                recipients: vec!["bench-u7@bench.example".to_owned()],
                code: Some("04817263".to_owned()),
            }
        );
        // The session is ready for the next transaction on the same connection.
        assert_eq!(s.line(b"QUIT\r\n"), Step::Quit);
    }

    #[test]
    fn a_mail_without_a_code_line_is_accepted_without_a_code() {
        let mut s = Session::default();
        let steps = feed(
            &mut s,
            &[
                "HELO x",
                "MAIL FROM:<a@b>",
                "RCPT TO:<c@d>",
                "DATA",
                "Your password was changed at 2026-12-07 14:44.",
                "1234567890123",
                "..leading dot",
                ".",
            ],
        );
        assert_eq!(
            steps[7],
            Step::Accepted {
                recipients: vec!["c@d".to_owned()],
                code: None,
            }
        );
    }

    #[test]
    fn protocol_errors_get_smtp_errors_not_acceptance() {
        let mut s = Session::default();
        assert_eq!(
            s.line(b"DATA\r\n"),
            Step::Reply(b"503 5.5.1 no recipients\r\n")
        );
        assert_eq!(
            s.line(b"RCPT TO:\r\n"),
            Step::Reply(b"501 5.1.3 bad recipient\r\n")
        );
        assert_eq!(
            s.line(b"VRFY x\r\n"),
            Step::Reply(b"502 5.5.2 not implemented\r\n")
        );
        assert_eq!(s.line(b"noop\n"), Step::Reply(b"250 2.0.0 ok\r\n"));
        // RSET forgets the recipients given so far.
        s.line(b"MAIL FROM:<a@b>\r\n");
        s.line(b"RCPT TO:<c@d>\r\n");
        s.line(b"RSET\r\n");
        assert_eq!(
            s.line(b"DATA\r\n"),
            Step::Reply(b"503 5.5.1 no recipients\r\n")
        );
    }

    #[test]
    fn code_lines_are_6_to_10_digits_alone() {
        assert_eq!(code_line(b"123456"), Some("123456".to_owned()));
        assert_eq!(code_line(b"  0123456789 "), Some("0123456789".to_owned()));
        assert_eq!(code_line(b"12345"), None);
        assert_eq!(code_line(b"12345678901"), None);
        assert_eq!(code_line(b"code 12345678"), None);
        assert_eq!(code_line(b""), None);
    }

    #[tokio::test]
    async fn pipelined_mails_over_lettre_reach_their_waiters() {
        use lettre::AsyncTransport;
        let sink = SmtpSink::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let waiting = sink.expect("someone@bench.example");
        let mailer =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(sink.addr().port())
                .build();
        let mail = lettre::Message::builder()
            .from("a@bench.example".parse().expect("from"))
            .to("Someone@bench.example".parse().expect("to"))
            .subject("code")
            .body("Your code:\r\n\r\n55501234\r\n".to_owned())
            .expect("mail");
        mailer.send(mail).await.expect("sent");
        let got = waiting.await.expect("delivered");
        assert_eq!(got.code, "55501234");
        assert_eq!(sink.accepted(), 1);
        assert_eq!(sink.unclaimed_codes(), 0);
    }
}
