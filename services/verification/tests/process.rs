//! The binary's process contract: a missing or bad setting is one clear line on stderr and a
//! non-zero exit, never a panic.

use sspr_testkit::ServiceBinary;

/// Nothing listens on its NATS URL: the process must fail on configuration before connecting.
fn verification() -> ServiceBinary {
    ServiceBinary::new(env!("CARGO_BIN_EXE_sspr-verification")).settings_only()
}

#[tokio::test]
async fn without_a_code_key_it_exits_2_naming_the_variable() {
    verification()
        .run_with(&[])
        .await
        .assert_config_error("SSPR_CODE_KEY");
}

#[tokio::test]
async fn a_short_code_key_is_refused_without_printing_it() {
    // 16 bytes, base64.
    let short = "c2VjcmV0c2VjcmV0c2VjcmU=";
    let exited = verification().run_with(&[("SSPR_CODE_KEY", short)]).await;
    exited
        .assert_config_error("SSPR_CODE_KEY")
        .assert_not_echoed(short);
}

#[tokio::test]
async fn a_bad_resend_wait_is_refused() {
    let key = (
        "SSPR_CODE_KEY",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    );
    let exited = verification()
        .run_with(&[key, ("SSPR_RESEND_AFTER_SECS", "soon")])
        .await;
    exited.assert_config_error("SSPR_RESEND_AFTER_SECS");
}
