//! The `sspr-notification` binary's process contract: a missing or bad setting is one clear line
//! on stderr and a non-zero exit (2 for configuration), never a panic; SIGTERM stops it cleanly.

use std::time::Duration;

use base64::Engine;
use sspr_testkit::{NatsServer, ServiceBinary, SmtpSink};

const LIMIT: Duration = Duration::from_secs(20);
const SMTP: (&str, &str) = ("SSPR_SMTP_URL", "smtp://127.0.0.1:2525");

fn notification() -> ServiceBinary {
    ServiceBinary::new(env!("CARGO_BIN_EXE_sspr-notification"))
}

/// Nothing listens on its NATS URL: the process must fail on configuration before connecting.
/// Every scenario has a valid `SSPR_CODE_KEY` unless it overrides it.
fn with_a_key() -> ServiceBinary {
    let key = base64::engine::general_purpose::STANDARD.encode(sspr_testkit::random_code_key());
    notification().settings_only().env("SSPR_CODE_KEY", key)
}

#[tokio::test]
async fn refuses_to_start_without_an_smtp_server() {
    with_a_key()
        .run_with(&[])
        .await
        .assert_config_error("SSPR_SMTP_URL")
        .assert_mentions("refuses to start without an SMTP server");
}

#[tokio::test]
async fn rejects_unsupported_or_malformed_smtp_urls() {
    let http = ("SSPR_SMTP_URL", "http://mail.example.com:465");
    with_a_key()
        .run_with(&[http])
        .await
        .assert_config_error("SSPR_SMTP_URL")
        .assert_mentions("not supported");
    let bad_tls = ("SSPR_SMTP_URL", "smtp://mail.example.com:587?tls=sometimes");
    with_a_key()
        .run_with(&[bad_tls])
        .await
        .assert_config_error("SSPR_SMTP_URL")
        .assert_mentions("tls=starttls");
    let bad_port = ("SSPR_SMTP_URL", "smtp://mail.example.com:99999");
    with_a_key()
        .run_with(&[bad_port])
        .await
        .assert_config_error("SSPR_SMTP_URL")
        .assert_mentions("port");
    let credentials = ("SSPR_SMTP_URL", "smtp://user:s3cret@mail.example.com");
    with_a_key()
        .run_with(&[credentials])
        .await
        .assert_config_error("SSPR_SMTP_URL")
        .assert_not_echoed("s3cret");
}

#[tokio::test]
async fn rejects_bad_smtp_tls_and_login_settings_naming_the_variable() {
    let smtps = ("SSPR_SMTP_URL", "smtps://mail.example.com:465");
    let missing_ca = ("SSPR_SMTP_TLS_CA", "/nonexistent/sspr-ca.pem");
    with_a_key()
        .run_with(&[smtps, missing_ca])
        .await
        .assert_config_error("SSPR_SMTP_TLS_CA")
        .assert_mentions("cannot read");
    let dir = tempfile::tempdir().expect("tempdir");
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    let not_pem = not_pem.display().to_string();
    with_a_key()
        .run_with(&[smtps, ("SSPR_SMTP_TLS_CA", not_pem.as_str())])
        .await
        .assert_config_error("SSPR_SMTP_TLS_CA")
        .assert_mentions("no PEM certificate");
    let password_only = ("SSPR_SMTP_PASSWORD", "s3cret-pw");
    with_a_key()
        .run_with(&[smtps, password_only])
        .await
        .assert_config_error("SSPR_SMTP_USER")
        .assert_not_echoed("s3cret-pw");
    with_a_key()
        .run_with(&[smtps, ("SSPR_SMTP_USER", "mailer")])
        .await
        .assert_config_error("SSPR_SMTP_PASSWORD");
}

#[tokio::test]
async fn requires_the_code_key() {
    let no_key = notification().settings_only();
    let exited = no_key.run_with(&[SMTP]).await;
    exited.assert_config_error("SSPR_CODE_KEY");
    let short_key = ("SSPR_CODE_KEY", "c2hvcnQ=");
    no_key
        .run_with(&[SMTP, short_key])
        .await
        .assert_config_error("SSPR_CODE_KEY")
        .assert_mentions("32 bytes");
}

#[tokio::test]
async fn rejects_a_malformed_template_override_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("fr")).expect("mkdir");
    std::fs::write(
        dir.path().join("fr/password_changed.text.txt"),
        "Bonjour {{password}}",
    )
    .expect("write");
    let path = dir.path().to_string_lossy().into_owned();
    with_a_key()
        .run_with(&[SMTP, ("SSPR_TEMPLATE_DIR", path.as_str())])
        .await
        .assert_config_error("SSPR_TEMPLATE_DIR")
        .assert_mentions("password_changed.text.txt")
        .assert_mentions("unknown placeholder");
}

#[tokio::test]
async fn rejects_a_bad_sender_or_sms_webhook() {
    let bad_sender = ("SSPR_MAIL_FROM", "not an address");
    let exited = with_a_key().run_with(&[SMTP, bad_sender]).await;
    exited.assert_config_error("SSPR_MAIL_FROM");
    let ftp_webhook = ("SSPR_SMS_WEBHOOK_URL", "ftp://sms.example.com/x");
    with_a_key()
        .run_with(&[SMTP, ftp_webhook])
        .await
        .assert_config_error("SSPR_SMS_WEBHOOK_URL")
        .assert_mentions("http");
}

#[tokio::test]
async fn rejects_incomplete_twilio_or_receipt_settings_without_printing_the_token() {
    let twilio = ("SSPR_SMS_PROVIDER", "twilio");
    with_a_key()
        .run_with(&[SMTP, twilio])
        .await
        .assert_config_error("SSPR_TWILIO_ACCOUNT_SID");
    let sid = (
        "SSPR_TWILIO_ACCOUNT_SID",
        "AC0123456789abcdef0123456789abcdef",
    );
    let token = ("SSPR_TWILIO_AUTH_TOKEN", "secret-auth-token-0123456789");
    let exited = with_a_key().run_with(&[SMTP, twilio, sid, token]).await;
    exited.assert_config_error("SSPR_TWILIO_FROM");
    assert!(
        !exited.stderr.contains("secret-auth-token")
            && !exited.stdout.contains("secret-auth-token")
    );
    with_a_key()
        .run_with(&[SMTP, ("SSPR_RECEIPTS_ADDR", "127.0.0.1:0")])
        .await
        .assert_config_error("SSPR_RECEIPTS_PUBLIC_URL");
}

#[tokio::test]
async fn starts_serves_and_stops_on_sigterm() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let smtp = SmtpSink::start().await?;
    let bin = with_a_key().env("SSPR_SMTP_URL", smtp.url());
    // Ready once /healthz and /readyz answer 200.
    let service = bin.start(&nats, LIMIT).await?;
    service.terminate(LIMIT).await?.assert_clean_exit();
    Ok(())
}
