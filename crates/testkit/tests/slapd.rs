//! The `Slapd` fixture: a real slapd with StartTLS where the seeded accounts can bind.

use sspr_testkit::Slapd;

#[tokio::test]
async fn seeded_accounts_bind_over_starttls_and_wrong_passwords_do_not() {
    let Some(mut slapd) = Slapd::start_or_skip().await.expect("slapd starts") else {
        return;
    };
    assert!(slapd.url().starts_with("ldap://127.0.0.1:"));
    assert!(slapd.ca_file().is_file());
    assert!(
        slapd
            .bind_works(Slapd::ALICE_DN, Slapd::ALICE_PASSWORD)
            .await
            .expect("ldapwhoami")
    );
    assert!(
        !slapd
            .bind_works(Slapd::ALICE_DN, "not-alices-password")
            .await
            .expect("ldapwhoami")
    );
    assert!(
        slapd
            .bind_works(Slapd::SERVICE_DN, Slapd::SERVICE_PASSWORD)
            .await
            .expect("ldapwhoami")
    );
    assert!(
        slapd
            .bind_works(Slapd::ADMIN_DN, Slapd::ADMIN_PASSWORD)
            .await
            .expect("ldapwhoami")
    );

    slapd.stop().await.expect("stop");
    assert!(
        slapd
            .bind_works(Slapd::ALICE_DN, Slapd::ALICE_PASSWORD)
            .await
            .is_err(),
        "a stopped slapd answers nothing"
    );
}
