//! `password.changed` notices against a real nats-server and SMTP sink, with stand-in
//! directory and enrolment responders: the user is mailed at every registered email in their
//! locale, administrators are alerted when an administrator's password changes, and a
//! redelivered event sends nothing twice.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use common::{Harness, Setup, WAIT};
use prost::Message;
use sspr_bus::subjects::{self, rpc};
use sspr_bus::{RequestContext, Router, RpcError};
use sspr_proto::common::v1::{ContactMethod, MethodKind};
use sspr_proto::events::v1::{EventMeta, PasswordChanged};
use sspr_proto::internal::directory::v1::{
    GetUserRequest, GetUserResponse, ListAdminsRequest, ListAdminsResponse, UserRecord,
};
use sspr_proto::internal::enrolment::v1::{
    Destination, GetDestinationRequest, GetDestinationResponse, ListDestinationsRequest,
    ListDestinationsResponse, ListMethodsRequest, ListMethodsResponse,
};
use tokio_util::sync::CancellationToken;

struct Person {
    record: UserRecord,
    methods: Vec<(MethodKind, &'static str)>,
}

fn person(
    id: &str,
    name: &str,
    locale: &str,
    admin: bool,
    methods: Vec<(MethodKind, &'static str)>,
) -> Person {
    Person {
        record: UserRecord {
            user_id: id.into(),
            display_name: name.into(),
            locale: locale.into(),
            group_ids: vec![],
            is_admin: admin,
            enabled: true,
            has_password: true,
            ..Default::default()
        },
        methods,
    }
}

fn people() -> Arc<HashMap<String, Person>> {
    let list = vec![
        person(
            "alice",
            "Alice Martin",
            "en-GB",
            false,
            vec![
                (MethodKind::Email, "alice@example.com"),
                (MethodKind::Sms, "+33612345678"),
                (MethodKind::Email, "alice.home@example.org"),
            ],
        ),
        person(
            "zoe",
            "Zoé Dupont",
            "fr-FR",
            false,
            vec![(MethodKind::Email, "zoe@example.fr")],
        ),
        person(
            "root",
            "Root Admin",
            "en",
            true,
            vec![
                (MethodKind::Email, "root@example.com"),
                (MethodKind::Sms, "+33600000001"),
            ],
        ),
        person(
            "marie",
            "Marie Admin",
            "fr-FR",
            true,
            vec![
                (MethodKind::Email, "marie@example.fr"),
                (MethodKind::Sms, "+33600000002"),
            ],
        ),
    ];
    Arc::new(
        list.into_iter()
            .map(|p| (p.record.user_id.clone(), p))
            .collect(),
    )
}

/// Serves `get_user`, `list_admins`, `list_methods`, `get_destination` and
/// `list_destinations` from `people`.
fn stand_ins(h: &Harness, stop: &CancellationToken) {
    let people = people();
    let (p1, p2, p3, p4, p5) = (
        people.clone(),
        people.clone(),
        people.clone(),
        people.clone(),
        people.clone(),
    );
    let directory = Router::new("directory", "stand-in directory")
        .route(
            rpc::directory::GET_USER,
            move |_: RequestContext, req: GetUserRequest| {
                let p = p1.clone();
                async move {
                    let user = p.get(&req.user_id).map(|p| p.record.clone());
                    Ok::<_, RpcError>(GetUserResponse {
                        found: user.is_some(),
                        user,
                    })
                }
            },
        )
        .route(
            rpc::directory::LIST_ADMINS,
            move |_: RequestContext, _: ListAdminsRequest| {
                let p = p2.clone();
                async move {
                    let mut users: Vec<UserRecord> = p
                        .values()
                        .filter(|p| p.record.is_admin)
                        .map(|p| p.record.clone())
                        .collect();
                    users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
                    Ok::<_, RpcError>(ListAdminsResponse { users })
                }
            },
        );
    let enrolment = Router::new("enrolment", "stand-in enrolment")
        .route(
            rpc::enrolment::LIST_METHODS,
            move |_: RequestContext, req: ListMethodsRequest| {
                let p = p3.clone();
                async move {
                    let methods = p
                        .get(&req.user_id)
                        .map(|p| {
                            p.methods
                                .iter()
                                .enumerate()
                                .map(|(i, (kind, _))| ContactMethod {
                                    method_id: format!("m{i}"),
                                    kind: *kind as i32,
                                    masked_destination: "•••".into(),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok::<_, RpcError>(ListMethodsResponse {
                        methods,
                        ..Default::default()
                    })
                }
            },
        )
        .route(
            rpc::enrolment::GET_DESTINATION,
            move |_: RequestContext, req: GetDestinationRequest| {
                let p = p4.clone();
                async move {
                    let found = p.get(&req.user_id).and_then(|p| {
                        let i: usize = req.method_id.strip_prefix('m')?.parse().ok()?;
                        p.methods.get(i).copied()
                    });
                    match found {
                        Some((kind, dest)) => Ok(GetDestinationResponse {
                            kind: kind as i32,
                            destination: dest.into(),
                        }),
                        None => Err(RpcError::not_found("no such method")),
                    }
                }
            },
        )
        .route(
            rpc::enrolment::LIST_DESTINATIONS,
            move |_: RequestContext, req: ListDestinationsRequest| {
                let p = p5.clone();
                async move {
                    let destinations = p
                        .get(&req.user_id)
                        .map(|p| {
                            p.methods
                                .iter()
                                .enumerate()
                                .map(|(i, (kind, dest))| Destination {
                                    method_id: format!("m{i}"),
                                    kind: *kind as i32,
                                    destination: (*dest).into(),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok::<_, RpcError>(ListDestinationsResponse { destinations })
                }
            },
        );
    for router in [directory, enrolment] {
        let bus = h.bus.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            sspr_bus::serve(&bus, router, stop.cancelled_owned())
                .await
                .unwrap();
        });
    }
}

fn event(user_id: &str, reason: &str) -> (String, Vec<u8>) {
    let event_id = uuid::Uuid::now_v7().to_string();
    let at = Utc
        .with_ymd_and_hms(2026, 11, 24, 9, 30, 0)
        .single()
        .unwrap();
    let payload = PasswordChanged {
        meta: Some(EventMeta {
            event_id: event_id.clone(),
            occurred_at: Some(sspr_proto::time::timestamp(at)),
            user_id: user_id.into(),
            flow_id: "flow-1".into(),
            source: "directory".into(),
            actor: String::new(),
        }),
        reason: reason.into(),
    }
    .encode_to_vec();
    (event_id, payload)
}

async fn publish(h: &Harness, msg_id: &str, payload: &[u8]) {
    h.bus
        .publish_durable(
            subjects::events::PASSWORD_CHANGED,
            msg_id,
            HeaderMap::new(),
            Bytes::copy_from_slice(payload),
        )
        .await
        .unwrap();
}

async fn start() -> (Harness, CancellationToken) {
    let h = Harness::start(Setup::Standard).await.unwrap();
    let stop = CancellationToken::new();
    stand_ins(&h, &stop);
    // Let the stand-ins register before the first event.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (h, stop)
}

const SETTLE: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn the_user_is_mailed_at_every_registered_email_once() {
    let (mut h, stop) = start().await;
    let (event_id, payload) = event("alice", "self_service_reset");
    publish(&h, &event_id, &payload).await;
    let mails = h.smtp.wait_for_count(2, WAIT).await.unwrap();
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, vec!["alice.home@example.org", "alice@example.com"]);
    for m in &mails {
        assert_eq!(m.subject().as_deref(), Some("Your password was changed"));
        let text = m.text_body().unwrap();
        assert!(text.contains("Hello Alice Martin,"), "{text}");
        assert!(text.contains("2026-11-24 09:30 UTC"), "{text}");
        assert!(text.contains("contact your helpdesk"), "{text}");
        assert!(m.html_body().unwrap().contains("2026-11-24 09:30 UTC"));
    }
    assert!(h.http.requests().is_empty(), "no SMS for a notice");

    // The same event again (a redelivery under another message id): nothing is sent twice.
    publish(&h, &format!("{event_id}-again"), &payload).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(h.smtp.messages().len(), 2, "no duplicate mail");

    stop.cancel();
    h.stop().await.unwrap();
}

#[tokio::test]
async fn a_french_user_gets_french_mail_and_admin_wording_differs() {
    let (mut h, stop) = start().await;
    let (event_id, payload) = event("zoe", "admin");
    publish(&h, &event_id, &payload).await;
    let mail = h
        .smtp
        .wait_for(|m| m.to == ["zoe@example.fr"], WAIT)
        .await
        .unwrap();
    assert_eq!(
        mail.subject().as_deref(),
        Some("Votre mot de passe a été modifié")
    );
    let text = mail.text_body().unwrap();
    assert!(text.contains("Bonjour Zoé Dupont,"), "{text}");
    assert!(text.contains("par un administrateur"), "{text}");
    stop.cancel();
    h.stop().await.unwrap();
}

#[tokio::test]
async fn an_admin_reset_alerts_the_other_admins() {
    let (mut h, stop) = start().await;
    let (event_id, payload) = event("root", "self_service_reset");
    publish(&h, &event_id, &payload).await;
    let mails = h.smtp.wait_for_count(2, WAIT).await.unwrap();
    let own = mails
        .iter()
        .find(|m| m.to == ["root@example.com"])
        .expect("root is told");
    assert_eq!(own.subject().as_deref(), Some("Your password was changed"));
    let alert = mails
        .iter()
        .find(|m| m.to == ["marie@example.fr"])
        .expect("marie is alerted");
    assert_eq!(
        alert.subject().as_deref(),
        Some("Réinitialisation du mot de passe d'un administrateur : root")
    );
    let text = alert.text_body().unwrap();
    assert!(text.contains("root (Root Admin)"), "{text}");
    assert!(text.contains("2026-11-24 09:30 UTC"), "{text}");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        h.smtp.messages().len(),
        2,
        "root gets no alert about itself"
    );

    // Records: one SENT delivery per mail.
    stop.cancel();
    h.stop().await.unwrap();
}

/// `method.registered` published twice under different message ids (a re-publication after the
/// duplicate window): the user's other methods are told once.
#[tokio::test]
async fn a_method_change_published_twice_is_announced_once() {
    let (mut h, stop) = start().await;
    let event_id = uuid::Uuid::now_v7().to_string();
    let payload = sspr_proto::events::v1::MethodRegistered {
        meta: Some(EventMeta {
            event_id: event_id.clone(),
            occurred_at: Some(sspr_proto::time::timestamp(Utc::now())),
            user_id: "alice".into(),
            flow_id: "flow-2".into(),
            source: "enrolment".into(),
            actor: String::new(),
        }),
        method_id: "m1".into(),
        kind: MethodKind::Sms as i32,
        masked_destination: "+•• •••• ••78".into(),
        methods_registered: 3,
    }
    .encode_to_vec();
    for msg_id in [event_id.clone(), format!("{event_id}-again")] {
        h.bus
            .publish_durable(
                subjects::events::METHOD_REGISTERED,
                &msg_id,
                HeaderMap::new(),
                Bytes::from(payload.clone()),
            )
            .await
            .unwrap();
    }
    let mails = h.smtp.wait_for_count(2, WAIT).await.unwrap();
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, vec!["alice.home@example.org", "alice@example.com"]);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(h.smtp.messages().len(), 2, "no second announcement");
    assert!(
        h.http.requests().is_empty(),
        "the new SMS method is not told"
    );
    stop.cancel();
    h.stop().await.unwrap();
}
