//! `SmtpSink` against lettre's real async SMTP transport: pooled connection, several messages,
//! MIME decoding of non-ASCII subjects and bodies, rejections.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sspr_testkit::SmtpSink;

fn transport(sink: &SmtpSink) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.port())
        .timeout(Some(Duration::from_secs(5)))
        .build()
}

fn mailbox(s: &str) -> Mailbox {
    s.parse().unwrap()
}

#[tokio::test]
async fn receives_two_mails_over_one_connection() {
    let sink = SmtpSink::start().await.unwrap();
    assert_eq!(sink.url(), format!("smtp://127.0.0.1:{}", sink.port()));
    let smtp = transport(&sink);

    let ascii = Message::builder()
        .from(mailbox("SSPR <no-reply@example.org>"))
        .to(mailbox("alice@example.org"))
        .subject("Your code")
        .multipart(MultiPart::alternative_plain_html(
            "Your code is 12345678.\n.leading dot line\n".to_owned(),
            "<p>Your code is <b>12345678</b>.</p>".to_owned(),
        ))
        .unwrap();
    smtp.send(ascii).await.unwrap();
    // lettre returns a connection to its pool in a spawned task: let it run before sending again.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let unicode_text = "Votre code est 87654321 — ne le partagez pas. Привет, Zoë! ✓\n".repeat(3);
    let unicode = Message::builder()
        .from(mailbox("SSPR <no-reply@example.org>"))
        .to(mailbox("Zoë <zoe@example.org>"))
        .to(mailbox("bob@example.org"))
        .subject("Réinitialisation du mot de passe ✓ Привет")
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(unicode_text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body("<p>Привет</p>".to_owned()),
                ),
        )
        .unwrap();
    smtp.send(unicode).await.unwrap();

    let mails = sink
        .wait_for_count(2, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(mails.len(), 2);
    assert_eq!(
        sink.connection_count(),
        1,
        "lettre's pool should reuse one connection"
    );

    let first = &mails[0];
    assert_eq!(first.from, "no-reply@example.org");
    assert_eq!(first.to, vec!["alice@example.org".to_owned()]);
    assert_eq!(first.subject().as_deref(), Some("Your code"));
    let body = first.text_body().unwrap();
    assert!(body.contains("Your code is 12345678."), "{body:?}");
    assert!(
        body.contains("\n.leading dot line"),
        "dot unstuffing: {body:?}"
    );
    assert!(first.html_body().unwrap().contains("<b>12345678</b>"));
    assert!(
        first
            .header("content-type")
            .unwrap()
            .starts_with("multipart/alternative")
    );

    let second = sink
        .wait_for(
            |m| m.to.contains(&"zoe@example.org".to_owned()),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(
        second.to,
        vec!["zoe@example.org".to_owned(), "bob@example.org".to_owned()]
    );
    assert_eq!(
        second.subject().as_deref(),
        Some("Réinitialisation du mot de passe ✓ Привет")
    );
    // lettre picked quoted-printable for the text and base64 for the HTML: both decoded here.
    assert!(second.data.contains("quoted-printable"));
    assert_eq!(second.html_body().unwrap(), "<p>Привет</p>");
    // Encoded on the wire (RFC 2047), decoded by subject().
    assert!(
        second.header("subject").unwrap().contains("=?utf-8?"),
        "{:?}",
        second.header("subject")
    );
    assert_eq!(
        second.text_body().unwrap().replace("\r\n", "\n"),
        unicode_text
    );
}

#[tokio::test]
async fn many_connections_at_once() {
    let sink = SmtpSink::start().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..5 {
        let smtp = transport(&sink);
        tasks.push(tokio::spawn(async move {
            let msg = Message::builder()
                .from(mailbox("a@example.org"))
                .to(mailbox(&format!("user{i}@example.org")))
                .subject(format!("mail {i}"))
                .body(format!("body {i}"))
                .unwrap();
            smtp.send(msg).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mails = sink
        .wait_for_count(5, Duration::from_secs(5))
        .await
        .unwrap();
    for i in 0..5 {
        let mail = mails
            .iter()
            .find(|m| m.to == vec![format!("user{i}@example.org")])
            .unwrap();
        assert_eq!(mail.text_body().unwrap().trim_end(), format!("body {i}"));
    }
}

#[tokio::test]
async fn rejects_the_next_messages_on_request() {
    let sink = SmtpSink::start().await.unwrap();
    let smtp = transport(&sink);
    let msg = |n: u32| {
        Message::builder()
            .from(mailbox("a@example.org"))
            .to(mailbox("b@example.org"))
            .subject(format!("try {n}"))
            .body(String::from("x"))
            .unwrap()
    };
    sink.reject_next(1, 451);
    sink.reject_next(1, 550);
    let transient = smtp.send(msg(1)).await.unwrap_err();
    assert!(transient.is_transient(), "{transient:?}");
    let permanent = smtp.send(msg(2)).await.unwrap_err();
    assert!(permanent.is_permanent(), "{permanent:?}");
    smtp.send(msg(3)).await.unwrap();
    let mails = sink
        .wait_for_count(1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject().as_deref(), Some("try 3"));
    assert!(
        sink.wait_for(
            |m| m.subject().as_deref() == Some("try 1"),
            Duration::from_millis(200)
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn speaks_smtp_to_a_raw_client() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let sink = SmtpSink::start().await.unwrap();
    let stream = tokio::net::TcpStream::connect(sink.addr()).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut expect = async |prefix: &str| {
        let line = lines.next_line().await.unwrap().unwrap();
        assert!(line.starts_with(prefix), "expected {prefix}, got {line}");
        line
    };
    expect("220 ").await;
    w.write_all(b"HELO me\r\n").await.unwrap();
    expect("250 ").await;
    w.write_all(b"BOGUS\r\n").await.unwrap();
    expect("500 ").await;
    w.write_all(b"DATA\r\n").await.unwrap();
    expect("503 ").await;
    w.write_all(b"NOOP\r\nMAIL FROM:<a@x>\r\nRSET\r\nMAIL FROM:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n")
        .await
        .unwrap();
    for code in ["250 ", "250 ", "250 ", "250 ", "250 ", "354 "] {
        expect(code).await;
    }
    w.write_all(b"Subject: raw\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
        .await
        .unwrap();
    expect("250 ").await;
    expect("221 ").await;
    let mail = sink
        .wait_for_count(1, Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(mail.from, "b@x");
    assert_eq!(mail.data, "Subject: raw\r\n\r\n.dot\r\n");
}
