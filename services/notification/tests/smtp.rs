//! The SMTP adapter against the testkit's real SMTP sink: the connection pool (bounded, reused,
//! broken connections dropped), TLS (STARTTLS, implicit, refusals with clear reasons) and AUTH.
//! The delivery-level outcomes of SMTP replies (dead letters, retries) are in `delivery.rs`.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use sspr_notification::adapters::smtp::{POOL_SIZE, SmtpMailer};
use sspr_notification::domain::delivery::{Code, DeliveryId, EmailAddress, Locale, Purpose};
use sspr_notification::domain::retry::FailureKind;
use sspr_notification::domain::templates;
use sspr_notification::ports::{Mailer, OutgoingMail};
use sspr_notification::{SmtpCredentials, SmtpOptions, SmtpTlsCa, SmtpUrl, default_mail_from};
use sspr_runtime::Secret;
use sspr_testkit::{SmtpSink, SmtpSinkOptions, SmtpSinkTls};

const WAIT: Duration = Duration::from_secs(10);

fn mail(n: usize) -> OutgoingMail {
    OutgoingMail {
        delivery_id: DeliveryId::parse(&format!("d-{n}")).unwrap(),
        to: EmailAddress::parse(&format!("user{n}@example.com")).unwrap(),
        content: templates::email(
            Purpose::Reset,
            Locale::En,
            &Code::parse("24681357").unwrap(),
            10,
        ),
    }
}

fn mailer(url: &str, options: &SmtpOptions) -> anyhow::Result<SmtpMailer> {
    let url = SmtpUrl::parse(url).map_err(anyhow::Error::msg)?;
    Ok(SmtpMailer::new(url, options, default_mail_from())?)
}

fn trusting(sink: &SmtpSink) -> anyhow::Result<SmtpOptions> {
    let ca = sink.ca_file().expect("a TLS sink has a CA");
    Ok(SmtpOptions {
        tls_ca: Some(SmtpTlsCa::load(&ca).map_err(anyhow::Error::msg)?),
        credentials: None,
    })
}

#[tokio::test]
async fn mails_share_a_bounded_pool_of_reused_connections() -> anyhow::Result<()> {
    let sink = SmtpSink::start().await?;
    let mailer = mailer(&sink.url(), &SmtpOptions::default())?;
    let burst = 40;
    let sends = (0..burst).map(|n| {
        let mail = mail(n);
        let mailer = &mailer;
        async move { mailer.send(&mail).await }
    });
    for result in futures::future::join_all(sends).await {
        result?;
    }
    assert_eq!(sink.wait_for_count(burst, WAIT).await?.len(), burst);
    let opened = sink.connection_count();
    assert!(
        (1..=POOL_SIZE).contains(&opened),
        "{burst} concurrent mails opened {opened} connections (pool of {POOL_SIZE})"
    );
    // Later mails reuse the idle connections.
    for n in burst..burst + 10 {
        mailer.send(&mail(n)).await?;
    }
    assert_eq!(sink.messages().len(), burst + 10);
    assert_eq!(
        sink.connection_count(),
        opened,
        "idle connections were not reused"
    );
    mailer.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_connection_whose_transaction_failed_is_not_reused() -> anyhow::Result<()> {
    let sink = SmtpSink::start().await?;
    let mailer = mailer(&sink.url(), &SmtpOptions::default())?;
    mailer.send(&mail(1)).await?;
    assert_eq!(sink.connection_count(), 1);
    sink.reject_next(1, 451);
    let failure = mailer.send(&mail(2)).await.expect_err("deferred");
    assert_eq!(failure.kind, FailureKind::Transient);
    assert!(failure.detail.contains("reply 451"), "{}", failure.detail);
    mailer.send(&mail(3)).await?;
    assert_eq!(
        sink.connection_count(),
        2,
        "the connection that saw the failed transaction was reused"
    );
    sink.reject_next(1, 550);
    let failure = mailer.send(&mail(4)).await.expect_err("refused");
    assert_eq!(failure.kind, FailureKind::Permanent);
    assert!(
        !failure.detail.contains("user4@example.com"),
        "{}",
        failure.detail
    );
    Ok(())
}

#[tokio::test]
async fn a_server_that_stalls_is_given_up_at_the_send_timeout_and_its_connection_dropped()
-> anyhow::Result<()> {
    // Accepts connections and never greets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    let mailer = mailer(&format!("smtp://127.0.0.1:{port}"), &SmtpOptions::default())?
        .with_send_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let failure = mailer.send(&mail(1)).await.expect_err("timed out");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(failure.kind, FailureKind::Transient);
    assert!(
        failure
            .detail
            .contains("did not accept the message within 300ms"),
        "{}",
        failure.detail
    );
    mailer.send(&mail(2)).await.expect_err("timed out again");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the cut connection was reused"
    );
    server.abort();
    Ok(())
}

#[tokio::test]
async fn starttls_delivers_over_tls() -> anyhow::Result<()> {
    let sink = SmtpSink::start_with(SmtpSinkOptions {
        tls: SmtpSinkTls::StartTls,
        login: None,
    })
    .await?;
    assert!(sink.url().ends_with("?tls=starttls"));
    let mailer = mailer(&sink.url(), &trusting(&sink)?)?;
    mailer.send(&mail(1)).await?;
    mailer.send(&mail(2)).await?;
    let got = sink.wait_for_count(2, WAIT).await?;
    assert!(got[0].text_body().unwrap_or_default().contains("24681357"));
    assert_eq!(sink.tls_sessions(), 1, "one TLS session, reused");
    assert_eq!(sink.connection_count(), 1);
    Ok(())
}

#[tokio::test]
async fn implicit_tls_delivers() -> anyhow::Result<()> {
    let sink = SmtpSink::start_with(SmtpSinkOptions {
        tls: SmtpSinkTls::Implicit,
        login: None,
    })
    .await?;
    assert!(sink.url().starts_with("smtps://"));
    let mailer = mailer(&sink.url(), &trusting(&sink)?)?;
    mailer.send(&mail(1)).await?;
    sink.wait_for_count(1, WAIT).await?;
    assert_eq!(sink.tls_sessions(), 1);
    Ok(())
}

#[tokio::test]
async fn a_server_without_starttls_is_refused_when_it_is_required() -> anyhow::Result<()> {
    let sink = SmtpSink::start().await?;
    let mailer = mailer(
        &format!("{}?tls=starttls", sink.url()),
        &SmtpOptions::default(),
    )?;
    let failure = mailer.send(&mail(1)).await.expect_err("refused");
    assert_eq!(failure.kind, FailureKind::Transient);
    assert!(
        failure.detail.contains("does not offer STARTTLS"),
        "{}",
        failure.detail
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sink.messages().is_empty(), "mail went out in clear");
    Ok(())
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_with_a_clear_reason() -> anyhow::Result<()> {
    for tls in [SmtpSinkTls::Implicit, SmtpSinkTls::StartTls] {
        let sink = SmtpSink::start_with(SmtpSinkOptions { tls, login: None }).await?;
        // System roots only: the sink's private CA is not among them.
        let mailer = mailer(&sink.url(), &SmtpOptions::default())?;
        let failure = mailer.send(&mail(1)).await.expect_err("refused");
        assert!(
            failure.detail.contains("certificate not trusted")
                && failure.detail.contains("SSPR_SMTP_TLS_CA"),
            "{tls:?}: {}",
            failure.detail
        );
        assert!(sink.messages().is_empty());
    }
    Ok(())
}

#[tokio::test]
async fn the_login_is_given_and_a_wrong_password_is_reported_without_it() -> anyhow::Result<()> {
    let sink = SmtpSink::start_with(SmtpSinkOptions {
        tls: SmtpSinkTls::StartTls,
        login: Some(("mailer".into(), "correct horse".into())),
    })
    .await?;
    let mut options = trusting(&sink)?;
    options.credentials = Some(SmtpCredentials {
        user: "mailer".into(),
        password: Secret::new("correct horse".into()),
    });
    mailer(&sink.url(), &options)?.send(&mail(1)).await?;
    sink.wait_for_count(1, WAIT).await?;
    assert_eq!(sink.logins(), 1);

    options.credentials = Some(SmtpCredentials {
        user: "mailer".into(),
        password: Secret::new("wrong battery".into()),
    });
    let failure = mailer(&sink.url(), &options)?
        .send(&mail(2))
        .await
        .expect_err("refused");
    assert!(
        failure
            .detail
            .contains("refused the login of SSPR_SMTP_USER (reply 535)"),
        "{}",
        failure.detail
    );
    assert!(!failure.detail.contains("wrong battery"));
    assert_eq!(sink.messages().len(), 1);
    Ok(())
}

/// Per-mail time of the pool (TCP_NODELAY) against lettre's pooled `AsyncSmtpTransport`, one
/// mail after the other over reused connections. Prints the numbers; asserts nothing about time.
/// `cargo test -p sspr-notification --test smtp -- --ignored --nocapture`
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn measure_per_mail_time_against_lettres_pooled_transport() -> anyhow::Result<()> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    const N: usize = 100;
    let sink = SmtpSink::start().await?;

    let old = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.port())
        .build();
    let message = |n: usize| {
        sspr_notification::adapters::mail::build_message(&default_mail_from(), &mail(n))
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    old.send(message(0)?).await?; // warm: connection open
    let started = Instant::now();
    for n in 1..=N {
        old.send(message(n)?).await?;
    }
    let old_ms = started.elapsed().as_secs_f64() * 1000.0 / N as f64;

    let new = mailer(&sink.url(), &SmtpOptions::default())?;
    new.send(&mail(0)).await?;
    let started = Instant::now();
    for n in 1..=N {
        new.send(&mail(n)).await?;
    }
    let new_ms = started.elapsed().as_secs_f64() * 1000.0 / N as f64;
    println!(
        "per mail over {N} sequential sends: lettre AsyncSmtpTransport {old_ms:.2} ms, sspr pool (TCP_NODELAY) {new_ms:.2} ms"
    );
    Ok(())
}
