//! LDAP password writeback against a real OpenLDAP `slapd` (`sspr_testkit::Slapd`, StartTLS,
//! a writeback account that may only write `userPassword`), with the directory's and the
//! policy service's `run` on a private nats-server and SQLite.
//!
//! Skipped ("slapd not installed: skipped") when slapd is missing, unless
//! `SSPR_REQUIRE_LDAP_TESTS` is set (CI sets it after installing slapd).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, LdapConnSettings, Mod};
use sspr_bus::subjects::rpc::directory as rpc;
use sspr_bus::{Bus, BusConfig, BusError, ErrorCode};
use sspr_directory::adapters::ldap::{LdapMode, LdapSettings};
use sspr_proto::internal::directory::v1::{
    AuthenticateRequest, AuthenticateResponse, GetUserRequest, GetUserResponse, SetPasswordRequest,
    SetPasswordResponse, UpsertUserRequest, UpsertUserResponse,
};
use sspr_runtime::settings::Secret;
use sspr_testkit::{NatsServer, Slapd, TestDb};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const NEW_PASSWORD: &str = "Tq7#vLp2!xRz9wMn-Orchard";
const REFUSED_PASSWORD: &str = "Kb4$Wm8&Yc1^Zd6*-Lantern";

async fn start<F>(
    nats: &NatsServer,
    db: &TestDb,
    service: &str,
    run: impl FnOnce(sspr_runtime::ServiceContext, CancellationToken) -> F,
) -> (CancellationToken, JoinHandle<anyhow::Result<()>>)
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let bus = Bus::connect(&BusConfig::new(nats.url(), format!("sspr-{service}")))
        .await
        .expect("service bus");
    let conn = sspr_storage::connect(service, &db.settings())
        .await
        .expect("database");
    let ctx = sspr_runtime::ServiceContext {
        bus,
        db: conn,
        clock: sspr_clock::system(),
    };
    let token = CancellationToken::new();
    let task = tokio::spawn(run(ctx, token.clone()));
    (token, task)
}

async fn wait_ready(bus: &Bus, subject: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match bus
            .request::<_, GetUserResponse>(subject, &GetUserRequest::default())
            .await
        {
            Err(BusError::NoResponders(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(BusError::NoResponders(_)) => panic!("nothing answers on {subject}"),
            _ => return,
        }
    }
}

async fn authenticates(bus: &Bus, password: &str) -> bool {
    match bus
        .request::<_, AuthenticateResponse>(
            rpc::AUTHENTICATE,
            &AuthenticateRequest {
                user_id: "alice".into(),
                password: password.into(),
            },
        )
        .await
    {
        Ok(_) => true,
        Err(BusError::Rpc(e)) if e.code == ErrorCode::Unauthenticated => false,
        Err(e) => panic!("authenticate failed: {e}"),
    }
}

async fn set_password(bus: &Bus, password: &str) -> Result<SetPasswordResponse, BusError> {
    bus.request::<_, SetPasswordResponse>(
        rpc::SET_PASSWORD,
        &SetPasswordRequest {
            user_id: "alice".into(),
            new_password: password.into(),
            reason: "self_service_reset".into(),
            flow_id: "flow-ldap-1".into(),
        },
    )
    .await
}

#[tokio::test]
async fn passwords_are_written_back_to_openldap_and_a_failed_writeback_changes_nothing() {
    let Some(mut slapd) = Slapd::start_or_skip().await.expect("slapd") else {
        return;
    };
    sspr_testkit::init_test_tracing();
    let nats = NatsServer::start().await.expect("nats-server");
    let db = TestDb::sqlite().expect("sqlite");
    let settings = LdapSettings::new(
        &slapd.url(),
        Slapd::SERVICE_DN,
        Secret::new(Slapd::SERVICE_PASSWORD.to_owned()),
        Slapd::USER_DN_TEMPLATE,
        LdapMode::OpenLdap,
        Some(slapd.ca_file()),
    )
    .expect("LDAP settings");
    let config = sspr_directory::Config {
        ldap: Some(settings.clone()),
        ..Default::default()
    };
    let directory = start(&nats, &db, sspr_directory::SERVICE, |ctx, token| {
        sspr_directory::run(ctx, config, token)
    })
    .await;
    let policy_config = sspr_policy::Config::from_env().expect("policy config");
    let policy = start(&nats, &db, sspr_policy::SERVICE, |ctx, token| {
        sspr_policy::run(ctx, policy_config, token)
    })
    .await;
    let bus = Bus::connect(&BusConfig::new(nats.url(), "ldap-test"))
        .await
        .expect("client bus");
    wait_ready(&bus, rpc::GET_USER).await;
    wait_ready(&bus, sspr_bus::subjects::rpc::policy::GET_POLICY).await;

    // alice exists locally without a password (nothing to write back) and in LDAP.
    bus.request::<_, UpsertUserResponse>(
        rpc::UPSERT_USER,
        &UpsertUserRequest {
            user_id: "alice".into(),
            display_name: "Alice Liddell".into(),
            locale: "en".into(),
            ..Default::default()
        },
    )
    .await
    .expect("upsert alice");

    // The change reaches LDAP: a new bind with the new password works, the old one fails.
    set_password(&bus, NEW_PASSWORD)
        .await
        .expect("set_password");
    assert!(
        slapd
            .bind_works(Slapd::ALICE_DN, NEW_PASSWORD)
            .await
            .expect("bind")
    );
    assert!(
        !slapd
            .bind_works(Slapd::ALICE_DN, Slapd::ALICE_PASSWORD)
            .await
            .expect("bind")
    );
    assert!(authenticates(&bus, NEW_PASSWORD).await);

    // The writeback account may write passwords only: changing another attribute is refused.
    let (conn, mut ldap) = LdapConnAsync::with_settings(
        LdapConnSettings::new()
            .set_starttls(true)
            .set_config(settings.tls.clone().expect("CA configured")),
        &slapd.url(),
    )
    .await
    .expect("connect as the writeback account");
    ldap3::drive!(conn);
    ldap.simple_bind(Slapd::SERVICE_DN, Slapd::SERVICE_PASSWORD)
        .await
        .expect("bind")
        .success()
        .expect("the writeback account binds");
    let modify = ldap
        .modify(
            Slapd::ALICE_DN,
            vec![Mod::Replace("mail", HashSet::from(["mallory@example.org"]))],
        )
        .await
        .expect("modify answered");
    assert_eq!(modify.rc, 50, "insufficientAccessRights, got {modify:?}");
    let _ = ldap.unbind().await;

    // LDAP down: the change fails as UNAVAILABLE and nothing changes locally.
    slapd.stop().await.expect("stop slapd");
    let err = match set_password(&bus, REFUSED_PASSWORD).await {
        Err(BusError::Rpc(e)) => e,
        other => panic!("expected an RPC error, got {other:?}"),
    };
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    assert!(!err.message.contains(REFUSED_PASSWORD));
    assert!(authenticates(&bus, NEW_PASSWORD).await);
    assert!(!authenticates(&bus, REFUSED_PASSWORD).await);

    for (token, task) in [directory, policy] {
        token.cancel();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("run returns after shutdown")
            .expect("no panic")
            .expect("run ends cleanly");
    }
    db.cleanup().await.expect("cleanup");
}
