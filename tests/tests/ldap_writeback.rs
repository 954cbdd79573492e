//! LDAP password writeback end to end: the whole stack with the directory's LDAP connector
//! pointed at a real OpenLDAP `slapd` (StartTLS, a writeback account that may only change
//! passwords). A self-service reset through the gateway's public API must be visible in LDAP:
//! a new bind with the new password succeeds and one with the old password fails.
//!
//! Skipped when slapd is not installed, unless `SSPR_REQUIRE_LDAP_TESTS` is set (CI sets it).

use sspr_directory::adapters::ldap::{LdapMode, LdapSettings};
use sspr_proto::admin::v1::Scope;
use sspr_proto::reset::v1 as reset;
use sspr_runtime::settings::Secret;
use sspr_testkit::Slapd;
use sspr_tests::{Backend, World, on_both_backends};

const FIRST_PASSWORD: &str = "Vq3!mXt8#Lp0-Juniper-Bridge";
const NEW_PASSWORD: &str = "Hk6$wRz2&Nc9-Harbour-Compass";
const ADDRESS: &str = "alice@example.org";

async fn reset_through_the_gateway_is_written_to_ldap(backend: Backend) {
    let Some(slapd) = Slapd::start_or_skip().await.expect("slapd") else {
        return;
    };
    let settings = LdapSettings::new(
        &slapd.url(),
        Slapd::SERVICE_DN,
        Secret::new(Slapd::SERVICE_PASSWORD.to_owned()),
        Slapd::USER_DN_TEMPLATE,
        LdapMode::OpenLdap,
        Some(slapd.ca_file()),
    )
    .expect("LDAP settings");
    let Some(world) =
        World::start_with_or_skip(backend, |opts| opts.directory.ldap = Some(settings)).await
    else {
        return;
    };

    world
        .set_policy(Scope::All, &[], 1)
        .await
        .expect("set policy");
    // Setting the account's password through the Admin API writes it back too.
    world
        .upsert_user("alice", FIRST_PASSWORD, &[], false)
        .await
        .expect("upsert alice");
    assert!(
        slapd
            .bind_works(Slapd::ALICE_DN, FIRST_PASSWORD)
            .await
            .expect("bind"),
        "the admin-set password reached LDAP"
    );
    assert!(
        !slapd
            .bind_works(Slapd::ALICE_DN, Slapd::ALICE_PASSWORD)
            .await
            .expect("bind"),
        "the LDAP seed password no longer works"
    );

    let method_id = world
        .register_email("alice", FIRST_PASSWORD, ADDRESS)
        .await
        .expect("register email");
    let mut client = world.reset();
    let started = client
        .start_reset(reset::StartResetRequest {
            user_id: "alice".into(),
            locale: "en".into(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner();
    let code = world
        .send_reset_code(&started.session_id, &method_id, ADDRESS)
        .await
        .expect("reset code");
    client
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: method_id.clone(),
            code,
        })
        .await
        .expect("verify");
    client
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("complete");

    assert!(
        slapd
            .bind_works(Slapd::ALICE_DN, NEW_PASSWORD)
            .await
            .expect("bind"),
        "a new LDAP bind with the new password succeeds"
    );
    assert!(
        !slapd
            .bind_works(Slapd::ALICE_DN, FIRST_PASSWORD)
            .await
            .expect("bind"),
        "a bind with the old password fails"
    );
    world.stop().await;
}

on_both_backends! {
    reset_through_the_gateway_is_written_to_ldap => reset_is_written_back_to_ldap_sqlite, reset_is_written_back_to_ldap_postgres;
}
