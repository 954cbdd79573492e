//! `Admin.GetDelivery` at the gateway: admin and helpdesk tokens may call it, a malformed id is
//! INVALID_ARGUMENT before anything reaches notification, notification's NOT_FOUND passes
//! through, and every field of notification's record reaches the caller. Notification is a
//! stand-in on the real subject (the real service is exercised end to end by `sspr-tests`'s
//! `delivery_status`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ADMIN_TOKEN, Gateway, HELPDESK_TOKEN, ts, with_token};
use sspr_bus::subjects::rpc::notification;
use sspr_bus::{Router, RpcError};
use sspr_proto::admin::v1 as admin;
use sspr_proto::common::v1::MethodKind;
use sspr_proto::internal::notification::v1 as notif;
use tonic::Code;

const KNOWN: &str = "0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000";

/// Starts a notification stand-in that records the ids asked for: `KNOWN` is a delivered SMS,
/// anything else NOT_FOUND (as the real service answers).
async fn notification_stand_in(gw: &Gateway) -> Arc<Mutex<Vec<String>>> {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    let router = Router::new("notification", "stand-in notification service").route(
        notification::GET_DELIVERY,
        move |_ctx, req: notif::GetDeliveryRequest| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(req.delivery_id.clone());
                if req.delivery_id != KNOWN {
                    return Err(RpcError::not_found("no such delivery"));
                }
                Ok(notif::GetDeliveryResponse {
                    delivery_id: req.delivery_id,
                    status: notif::DeliveryStatus::Delivered as i32,
                    kind: MethodKind::Sms as i32,
                    attempts: 2,
                    created_at: Some(ts(1_700_000_000)),
                    updated_at: Some(ts(1_700_000_030)),
                    last_error: "the SMS webhook h:1 answered HTTP 503 (will retry)".into(),
                    user_id: "alice".into(),
                    flow_id: "flow-1".into(),
                    sent_at: Some(ts(1_700_000_010)),
                    finished_at: Some(ts(1_700_000_030)),
                    dead_lettered: false,
                    provider: "twilio".into(),
                    provider_message_id: "SM0123456789abcdef0123456789abcdef".into(),
                })
            }
        },
    );
    let bus = gw.bus.clone();
    let token = gw.shutdown.clone();
    tokio::spawn(async move {
        sspr_bus::serve(&bus, router, token.cancelled_owned())
            .await
            .expect("stand-in serves");
    });
    for _ in 0..200 {
        if gw
            .bus
            .client()
            .request(notification::GET_DELIVERY, Default::default())
            .await
            .is_ok()
        {
            asked.lock().unwrap().clear();
            return asked;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the notification stand-in never answered");
}

#[tokio::test]
async fn admins_and_helpdesk_read_a_delivery_with_every_field() {
    let gw = Gateway::start().await;
    let asked = notification_stand_in(&gw).await;
    let mut client = gw.admin();
    for token in [ADMIN_TOKEN, HELPDESK_TOKEN] {
        let d = client
            .get_delivery(with_token(
                admin::GetDeliveryRequest {
                    delivery_id: KNOWN.into(),
                },
                token,
            ))
            .await
            .expect("admin and helpdesk may read deliveries")
            .into_inner();
        assert_eq!(
            d,
            admin::Delivery {
                delivery_id: KNOWN.into(),
                status: admin::DeliveryStatus::Delivered as i32,
                kind: MethodKind::Sms as i32,
                attempts: 2,
                created_at: Some(ts(1_700_000_000)),
                updated_at: Some(ts(1_700_000_030)),
                last_error: "the SMS webhook h:1 answered HTTP 503 (will retry)".into(),
                user_id: "alice".into(),
                flow_id: "flow-1".into(),
                sent_at: Some(ts(1_700_000_010)),
                finished_at: Some(ts(1_700_000_030)),
                dead_lettered: false,
                provider: "twilio".into(),
                provider_message_id: "SM0123456789abcdef0123456789abcdef".into(),
            }
        );
    }
    assert_eq!(*asked.lock().unwrap(), [KNOWN, KNOWN]);
}

#[tokio::test]
async fn malformed_ids_are_refused_at_the_edge_and_unknown_ones_are_not_found() {
    let gw = Gateway::start().await;
    let asked = notification_stand_in(&gw).await;
    let mut client = gw.admin();
    for bad in ["", "has space", "../etc/passwd", &"x".repeat(129)] {
        let status = client
            .get_delivery(with_token(
                admin::GetDeliveryRequest {
                    delivery_id: bad.into(),
                },
                ADMIN_TOKEN,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
        assert!(status.message().contains("delivery_id"), "{status:?}");
    }
    assert!(
        asked.lock().unwrap().is_empty(),
        "nothing reached notification"
    );

    let status = client
        .get_delivery(with_token(
            admin::GetDeliveryRequest {
                delivery_id: "0190ffff-0000-7000-8000-000000000000".into(),
            },
            HELPDESK_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no such delivery");

    let status = client
        .get_delivery(tonic::Request::new(admin::GetDeliveryRequest {
            delivery_id: KNOWN.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(asked.lock().unwrap().len(), 1);
}
