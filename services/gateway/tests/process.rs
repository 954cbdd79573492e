//! The `sspr-gateway` binary refuses bad settings with one clear line and a non-zero exit.

use sspr_testkit::ServiceBinary;

/// Nothing listens on its NATS URL: the process must fail on its settings before it tries NATS.
fn gateway() -> ServiceBinary {
    ServiceBinary::new(env!("CARGO_BIN_EXE_sspr-gateway")).settings_only()
}

const ADMIN_TOKEN: (&str, &str) = ("SSPR_ADMIN_TOKEN", "a-long-enough-admin-token");

#[tokio::test]
async fn missing_admin_token_exits_2_naming_it() {
    let exited = gateway().run_with(&[]).await;
    exited.assert_config_error("SSPR_ADMIN_TOKEN");
}

#[tokio::test]
async fn short_admin_token_exits_2_without_echoing_it() {
    let exited = gateway()
        .run_with(&[("SSPR_ADMIN_TOKEN", "tooShortSecret")])
        .await;
    exited
        .assert_config_error("SSPR_ADMIN_TOKEN")
        .assert_not_echoed("tooShortSecret");
}

#[tokio::test]
async fn bad_named_admin_tokens_exit_2_without_echoing_them() {
    let exited = gateway()
        .run_with(&[("SSPR_ADMIN_TOKENS", "alice:admin:tooShortSecret")])
        .await;
    exited
        .assert_config_error("SSPR_ADMIN_TOKENS")
        .assert_not_echoed("tooShortSecret");
    let exited = gateway()
        .run_with(&[
            ADMIN_TOKEN,
            ("SSPR_ADMIN_TOKENS", "alice:admin:a-long-enough-admin-token"),
        ])
        .await;
    exited
        .assert_config_error("SSPR_ADMIN_TOKENS")
        .assert_not_echoed("a-long-enough-admin-token");
}

#[tokio::test]
async fn bad_listen_address_exits_2_naming_it() {
    let bad_address = ("SSPR_GRPC_ADDR", "not an address");
    let exited = gateway().run_with(&[ADMIN_TOKEN, bad_address]).await;
    exited.assert_config_error("SSPR_GRPC_ADDR");
}

#[tokio::test]
async fn bad_proxy_hops_exits_2_naming_it() {
    let bad_hops = ("SSPR_TRUSTED_PROXY_HOPS", "many");
    let exited = gateway().run_with(&[ADMIN_TOKEN, bad_hops]).await;
    exited.assert_config_error("SSPR_TRUSTED_PROXY_HOPS");
}
