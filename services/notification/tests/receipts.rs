//! SMS/voice providers and delivery receipts over real HTTP: the notification service in
//! process, a fake Twilio API (the testkit HTTP sink answering like Twilio: it checks the
//! account path, basic auth, form encoding and required fields), and status callbacks POSTed
//! to the receipts listener with valid and invalid signatures. Receipts run on SQLite and, when
//! `SSPR_TEST_POSTGRES_URL` is set, PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use base64::Engine as _;
use common::{Harness, Setup, delivery, traceparent};
use futures::StreamExt;
use prost::Message;
use sea_orm::EntityTrait;
use sspr_bus::subjects;
use sspr_notification::domain::receipt::{twilio_signature, webhook_signature};
use sspr_notification::sms_config::{
    ReceiptSettings, SmsProviderChoice, SmsSettings, TwilioSender, TwilioSettings,
};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::{CodeDeliveryConfirmed, CodeDeliveryFailed, CodePurpose};
use sspr_proto::internal::notification::v1::DeliveryStatus;
use sspr_runtime::Secret;
use sspr_testkit::{HttpSink, ReceivedRequest, TestDb};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token-0123456789";
const FROM: &str = "+15005550006";
const PHONE: &str = "+33612345678";
const WEBHOOK_SECRET: &str = "webhook-receipt-secret-0123";

fn form(r: &ReceivedRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(r.body.as_bytes())
        .into_owned()
        .collect()
}

fn field(r: &ReceivedRequest, name: &str) -> Option<String> {
    form(r).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Answers like Twilio: 401 without the account's basic auth, 404 off the account's paths,
/// 400 with a Twilio error code when a required field is missing, else 201 with a new SID.
fn act_as_twilio(sink: &HttpSink) {
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"))
    );
    sink.set_responder(move |r| {
        if r.header("authorization") != Some(auth.as_str()) {
            return Some((
                401,
                r#"{"code": 20003, "message": "Authenticate", "status": 401}"#.into(),
            ));
        }
        if r.method != "POST"
            || !r
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
        {
            return Some((400, r#"{"code": 20001, "status": 400}"#.into()));
        }
        let base = format!("/2010-04-01/Accounts/{SID}/");
        let has = |n: &str| field(r, n).is_some_and(|v| !v.is_empty());
        let (prefix, ok) = if r.path == format!("{base}Messages.json") {
            (
                "SM",
                has("To") && (has("From") || has("MessagingServiceSid")) && has("Body"),
            )
        } else if r.path == format!("{base}Calls.json") {
            (
                "CA",
                has("To") && has("From") && (has("Twiml") || has("Url")),
            )
        } else {
            return Some((404, r#"{"code": 20404, "status": 404}"#.into()));
        };
        if !ok {
            return Some((
                400,
                r#"{"code": 21604, "message": "A 'To' phone number is required.", "status": 400}"#
                    .into(),
            ));
        }
        let sid = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
        Some((201, format!(r#"{{"sid": "{sid}", "status": "queued"}}"#)))
    });
}

/// Twilio as the provider, receipts on a free port (returned as the public URL).
async fn start_twilio(db: TestDb, receipts: bool) -> anyhow::Result<(Harness, Option<String>)> {
    let port = sspr_testkit::free_port()?;
    let public = format!("http://127.0.0.1:{port}");
    let public_for_config = public.clone();
    let harness = Harness::start_configured(Setup::Standard, db, move |config, http| {
        act_as_twilio(http);
        config.sms = SmsSettings {
            provider: SmsProviderChoice::Twilio(TwilioSettings {
                account_sid: SID.into(),
                auth_token: Secret::new(TOKEN.into()),
                sender: TwilioSender {
                    from: Some(FROM.into()),
                    messaging_service_sid: None,
                },
                api_url: reqwest::Url::parse(&format!("http://{}", http.addr())).unwrap(),
            }),
            receipts: receipts.then(|| ReceiptSettings {
                addr: format!("127.0.0.1:{port}").parse().unwrap(),
                public_url: reqwest::Url::parse(&public_for_config).unwrap(),
            }),
            webhook_secret: None,
        };
    })
    .await?;
    Ok((harness, receipts.then_some(public)))
}

fn client() -> reqwest::Client {
    sspr_notification::adapters::http_client::provider_client().unwrap()
}

/// POSTs a Twilio status callback for `delivery_id`, signed with `token`.
async fn twilio_callback(
    public: &str,
    delivery_id: &str,
    params: &[(&str, &str)],
    token: &str,
) -> u16 {
    post_twilio(
        format!("{public}/receipts/twilio/{delivery_id}"),
        params,
        token,
    )
    .await
}

/// POSTs a Twilio status callback to `url`, signed with `token`.
async fn post_twilio(url: String, params: &[(&str, &str)], token: &str) -> u16 {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let signature = twilio_signature(token.as_bytes(), &url, &owned);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().copied())
        .finish();
    client()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(body)
        .send()
        .await
        .expect("the receipts listener answers")
        .status()
        .as_u16()
}

/// Every event on `subject` about `delivery_id`, decoded.
async fn events<M: Message + Default>(h: &Harness, subject: &str) -> Vec<M> {
    let stream = h
        .bus
        .jetstream()
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .unwrap();
    let mut consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            filter_subject: subject.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = consumer.info().await.unwrap().num_pending;
    let mut out = Vec::new();
    if pending == 0 {
        return out;
    }
    let mut messages = consumer.messages().await.unwrap();
    while out.len() < pending as usize {
        let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await
        else {
            break;
        };
        out.push(M::decode(m.payload.clone()).unwrap());
    }
    out
}

/// Waits until the outbox relay published `n` events on `subject`.
async fn wait_events<M: Message + Default>(h: &Harness, subject: &str, n: usize) -> Vec<M> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let found = events::<M>(h, subject).await;
        if found.len() >= n || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn twilio_gets_sms_and_calls_like_its_rest_api_and_its_sid_is_kept() -> anyhow::Result<()> {
    let (h, _) = start_twilio(TestDb::sqlite()?, false).await?;
    let sms = delivery(MethodKind::Sms, PHONE, "48213790", CodePurpose::Reset, "en");
    h.publish(&sms, &traceparent().0).await?;
    h.wait_status(&sms.delivery_id, DeliveryStatus::Sent)
        .await?;
    let r = h.http.wait_for_count(1, common::WAIT).await?.remove(0);
    assert_eq!(r.path, format!("/2010-04-01/Accounts/{SID}/Messages.json"));
    assert_eq!(field(&r, "To").as_deref(), Some(PHONE));
    assert_eq!(field(&r, "From").as_deref(), Some(FROM));
    assert!(field(&r, "Body").unwrap().contains("48213790"));
    assert_eq!(field(&r, "StatusCallback"), None, "receipts are off");
    // The SID of Twilio's answer is kept with the delivery.
    let db = sspr_storage::connect(sspr_notification::SERVICE, &h.db.settings()).await?;
    let noted = sspr_notification::adapters::receipts_db::entity::Entity::find_by_id(
        sms.delivery_id.clone(),
    )
    .one(&db)
    .await?
    .expect("the provider message is noted");
    assert_eq!(noted.provider, "twilio");
    let sid = noted.provider_message_id.expect("sid");
    assert!(sid.starts_with("SM") && sid.len() == 34, "{sid}");

    let call = delivery(
        MethodKind::Voice,
        PHONE,
        "55501234",
        CodePurpose::Reset,
        "en",
    );
    h.publish(&call, &traceparent().0).await?;
    h.wait_status(&call.delivery_id, DeliveryStatus::Sent)
        .await?;
    let r = h.http.wait_for_count(2, common::WAIT).await?.remove(1);
    assert_eq!(r.path, format!("/2010-04-01/Accounts/{SID}/Calls.json"));
    let twiml = field(&r, "Twiml").unwrap();
    assert!(twiml.starts_with("<Response><Say>") && twiml.ends_with("</Say></Response>"));
    assert!(twiml.contains("5, 5, 5, 0, 1, 2, 3, 4"), "{twiml}");
    assert_eq!(field(&r, "Body"), None);
    Ok(())
}

#[tokio::test]
async fn twilio_refusals_fail_with_the_code_only_and_429_500_are_retried() -> anyhow::Result<()> {
    let (h, _) = start_twilio(TestDb::sqlite()?, false).await?;
    // An invalid number: 400 with Twilio's code; the message (which echoes the number) is
    // never kept.
    h.http.respond_next(
        1,
        400,
        &format!(r#"{{"code": 21211, "message": "The 'To' number {PHONE} is not a valid phone number.", "status": 400}}"#),
    )?;
    let refused = delivery(MethodKind::Sms, PHONE, "11112222", CodePurpose::Reset, "en");
    h.publish(&refused, &traceparent().0).await?;
    let failed = h
        .wait_status(&refused.delivery_id, DeliveryStatus::Failed)
        .await?;
    assert!(
        failed.last_error.contains("HTTP 400, error 21211"),
        "{failed:?}"
    );
    assert!(!failed.last_error.contains(PHONE) && !failed.last_error.contains("valid"));
    assert_eq!(failed.attempts, 1, "a 4xx is not retried");

    // 429 then 500: transient, retried, then accepted.
    h.http.clear();
    h.http
        .respond_next(1, 429, r#"{"code": 20429, "status": 429}"#)?;
    h.http.respond_next(1, 500, "{}")?;
    let retried = delivery(MethodKind::Sms, PHONE, "33334444", CodePurpose::Reset, "en");
    h.publish(&retried, &traceparent().0).await?;
    let sent = h
        .wait_status(&retried.delivery_id, DeliveryStatus::Sent)
        .await?;
    assert_eq!(sent.attempts, 3);
    assert_eq!(h.http.requests().len(), 3);
    Ok(())
}

/// Twilio can call back before the SENT record is committed: the fake sends the `delivered`
/// callback while it is still answering the send (blocking 400 ms), so the receipt finds the
/// delivery SENDING; it waits for SENT instead of being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receipt_racing_the_send_waits_for_sent() -> anyhow::Result<()> {
    let (h, _) = start_twilio(TestDb::sqlite()?, true).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    h.http.set_responder(move |r| {
        let callback = field(r, "StatusCallback")?;
        let tx = tx.clone();
        // A thread of its own: the sink's worker is blocked below, on purpose.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let status = runtime.block_on(post_twilio(
                callback,
                &[("MessageStatus", "delivered")],
                TOKEN,
            ));
            let _ = tx.send(status);
        });
        std::thread::sleep(Duration::from_millis(400));
        Some((
            201,
            r#"{"sid": "SM0123456789abcdef0123456789abcdef"}"#.into(),
        ))
    });
    let sms = delivery(MethodKind::Sms, PHONE, "48213790", CodePurpose::Reset, "en");
    h.publish(&sms, &traceparent().0).await?;
    let status = tokio::time::timeout(common::WAIT, rx.recv()).await?;
    assert_eq!(status, Some(204));
    h.wait_status(&sms.delivery_id, DeliveryStatus::Delivered)
        .await?;
    Ok(())
}

#[tokio::test]
async fn twilio_receipts_sqlite() -> anyhow::Result<()> {
    twilio_receipts(TestDb::sqlite()?).await
}

#[tokio::test]
async fn twilio_receipts_postgres() -> anyhow::Result<()> {
    let Some(db) = TestDb::postgres().await? else {
        return Ok(());
    };
    twilio_receipts(db).await
}

/// Provider fake → notification → signed callbacks: a bad signature changes nothing; a valid
/// `delivered` makes it DELIVERED with one `code.delivery_confirmed` however often it is
/// repeated; `undelivered` makes another FAILED with `code.delivery_failed` (`undeliverable`);
/// nothing moves a final state backwards.
async fn twilio_receipts(db: TestDb) -> anyhow::Result<()> {
    let (h, public) = start_twilio(db, true).await?;
    let public = public.unwrap();
    let sms = delivery(MethodKind::Sms, PHONE, "48213790", CodePurpose::Reset, "en");
    h.publish(&sms, &traceparent().0).await?;
    h.wait_status(&sms.delivery_id, DeliveryStatus::Sent)
        .await?;
    let r = h.http.wait_for_count(1, common::WAIT).await?.remove(0);
    let callback = format!("{public}/receipts/twilio/{}", sms.delivery_id);
    assert_eq!(
        field(&r, "StatusCallback").as_deref(),
        Some(callback.as_str())
    );
    // The SID Twilio answered; the fake's answer is not recorded, so read it from a receipt
    // with a wrong SID first: refused.
    let delivered = [
        ("MessageSid", "SMffffffffffffffffffffffffffffffff"),
        ("MessageStatus", "delivered"),
        ("AccountSid", SID),
        ("To", PHONE),
    ];

    // Forged: signed with another token. 403, nothing changes.
    assert_eq!(
        twilio_callback(
            &public,
            &sms.delivery_id,
            &delivered,
            "not-the-auth-token-123"
        )
        .await,
        403
    );
    // No signature at all.
    let status = client()
        .post(&callback)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("MessageStatus=delivered")
        .send()
        .await?
        .status();
    assert_eq!(status.as_u16(), 403);
    // Authentic but about another message SID: refused.
    assert_eq!(
        twilio_callback(&public, &sms.delivery_id, &delivered, TOKEN).await,
        400
    );
    assert_eq!(
        h.get_delivery(&sms.delivery_id).await?.status,
        DeliveryStatus::Sent as i32
    );

    // Intermediate statuses are acknowledged and ignored.
    assert_eq!(
        twilio_callback(
            &public,
            &sms.delivery_id,
            &[("MessageStatus", "sent"), ("AccountSid", SID)],
            TOKEN
        )
        .await,
        204
    );
    // Delivered (no SID given: the URL names the delivery), twice.
    let ok = [
        ("MessageStatus", "delivered"),
        ("AccountSid", SID),
        ("To", PHONE),
    ];
    assert_eq!(
        twilio_callback(&public, &sms.delivery_id, &ok, TOKEN).await,
        204
    );
    assert_eq!(
        twilio_callback(&public, &sms.delivery_id, &ok, TOKEN).await,
        204
    );
    h.wait_status(&sms.delivery_id, DeliveryStatus::Delivered)
        .await?;
    // A late failure never moves DELIVERED back.
    assert_eq!(
        twilio_callback(
            &public,
            &sms.delivery_id,
            &[("MessageStatus", "undelivered"), ("ErrorCode", "30003")],
            TOKEN
        )
        .await,
        204
    );
    assert_eq!(
        h.get_delivery(&sms.delivery_id).await?.status,
        DeliveryStatus::Delivered as i32
    );
    let confirmed: Vec<CodeDeliveryConfirmed> =
        wait_events(&h, subjects::events::CODE_DELIVERY_CONFIRMED, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let confirmed_again: Vec<CodeDeliveryConfirmed> =
        events(&h, subjects::events::CODE_DELIVERY_CONFIRMED).await;
    assert_eq!(confirmed.len(), 1);
    assert_eq!(confirmed_again.len(), 1, "a repeated receipt emits nothing");
    let c = &confirmed[0];
    assert_eq!(c.delivery_id, sms.delivery_id);
    assert_eq!(c.kind, MethodKind::Sms as i32);
    let latency = c.latency.expect("latency");
    assert!(
        latency.seconds >= 2,
        "from issue (2 s before publishing): {latency:?}"
    );
    assert_eq!(c.meta.as_ref().unwrap().user_id, "alice");

    // Undelivered: FAILED with the error code, and code.delivery_failed (undeliverable).
    let lost = delivery(MethodKind::Sms, PHONE, "99990000", CodePurpose::Reset, "en");
    h.publish(&lost, &traceparent().0).await?;
    h.wait_status(&lost.delivery_id, DeliveryStatus::Sent)
        .await?;
    let undelivered = [
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
        ("To", PHONE),
    ];
    assert_eq!(
        twilio_callback(&public, &lost.delivery_id, &undelivered, TOKEN).await,
        204
    );
    let failed = h
        .wait_status(&lost.delivery_id, DeliveryStatus::Failed)
        .await?;
    assert!(
        failed.last_error.contains("undelivered, error 30003"),
        "{failed:?}"
    );
    assert!(!failed.last_error.contains(PHONE));
    let failures: Vec<CodeDeliveryFailed> =
        wait_events(&h, subjects::events::CODE_DELIVERY_FAILED, 1).await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].delivery_id, lost.delivery_id);
    assert_eq!(failures[0].reason, "undeliverable");
    // And a late "delivered" does not revive it.
    assert_eq!(
        twilio_callback(&public, &lost.delivery_id, &ok, TOKEN).await,
        204
    );
    assert_eq!(
        h.get_delivery(&lost.delivery_id).await?.status,
        DeliveryStatus::Failed as i32
    );

    // Unknown deliveries and routes.
    assert_eq!(
        twilio_callback(&public, "0190ffff-0000-7000-8000-000000000000", &ok, TOKEN).await,
        404
    );
    assert_eq!(
        client()
            .post(format!("{public}/receipts/other/x"))
            .send()
            .await?
            .status()
            .as_u16(),
        404
    );
    Ok(())
}

#[tokio::test]
async fn webhook_receipts_are_signed_with_the_webhook_secret_sqlite() -> anyhow::Result<()> {
    webhook_receipts(TestDb::sqlite()?).await
}

#[tokio::test]
async fn webhook_receipts_are_signed_with_the_webhook_secret_postgres() -> anyhow::Result<()> {
    let Some(db) = TestDb::postgres().await? else {
        return Ok(());
    };
    webhook_receipts(db).await
}

/// The generic webhook's receipts: signature over the raw body, concurrent copies applied
/// once, oversized and early receipts refused.
async fn webhook_receipts(db: TestDb) -> anyhow::Result<()> {
    let port = sspr_testkit::free_port()?;
    let public = format!("http://127.0.0.1:{port}");
    let public_for_config = public.clone();
    let h = Harness::start_configured(Setup::Standard, db, move |config, _| {
        config.sms = SmsSettings {
            provider: SmsProviderChoice::Webhook,
            receipts: Some(ReceiptSettings {
                addr: format!("127.0.0.1:{port}").parse().unwrap(),
                public_url: reqwest::Url::parse(&public_for_config).unwrap(),
            }),
            webhook_secret: Some(Secret::new(WEBHOOK_SECRET.into())),
        };
    })
    .await?;
    let sms = delivery(MethodKind::Sms, PHONE, "48213790", CodePurpose::Reset, "en");
    h.publish(&sms, &traceparent().0).await?;
    h.wait_status(&sms.delivery_id, DeliveryStatus::Sent)
        .await?;
    let sent = h
        .http
        .wait_for_count(1, common::WAIT)
        .await?
        .remove(0)
        .json()?;
    let callback = format!("{public}/receipts/webhook/{}", sms.delivery_id);
    assert_eq!(sent["status_callback"], callback.as_str(), "{sent}");
    assert_eq!(
        sent["delivery_id"],
        sms.delivery_id.as_str(),
        "contract kept"
    );

    let body =
        serde_json::json!({"delivery_id": sms.delivery_id, "status": "delivered"}).to_string();
    let post = |signature: String, body: String| {
        let callback = callback.clone();
        async move {
            client()
                .post(callback)
                .header("content-type", "application/json")
                .header("x-sspr-signature", signature)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let forged = webhook_signature(b"another-secret-0123456789", body.as_bytes());
    assert_eq!(post(forged, body.clone()).await, 403);
    // A valid signature over another body does not sign this one.
    let other = webhook_signature(WEBHOOK_SECRET.as_bytes(), b"{}");
    assert_eq!(post(other, body.clone()).await, 403);
    assert_eq!(
        h.get_delivery(&sms.delivery_id).await?.status,
        DeliveryStatus::Sent as i32
    );
    // Oversized bodies are refused before anything is parsed.
    assert_eq!(post(String::new(), "x".repeat(20 * 1024)).await, 413);

    // Eight copies of the same receipt at once (as from retrying providers or two replicas):
    // one status change, one event.
    let good = webhook_signature(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    let answers = futures::future::join_all((0..8).map(|_| post(good.clone(), body.clone()))).await;
    assert!(answers.iter().all(|s| *s == 204), "{answers:?}");
    h.wait_status(&sms.delivery_id, DeliveryStatus::Delivered)
        .await?;
    let confirmed: Vec<CodeDeliveryConfirmed> =
        wait_events(&h, subjects::events::CODE_DELIVERY_CONFIRMED, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(confirmed.len(), 1);
    let again: Vec<CodeDeliveryConfirmed> =
        events(&h, subjects::events::CODE_DELIVERY_CONFIRMED).await;
    assert_eq!(again.len(), 1, "one event for eight copies");

    // A receipt for a delivery not recorded as sent yet (the provider answered 500, a retry is
    // pending): 503, so the provider tries again later; nothing changes.
    h.http.respond_next(1, 500, "{}")?;
    let pending = delivery(MethodKind::Sms, PHONE, "12121212", CodePurpose::Reset, "en");
    h.publish(&pending, &traceparent().0).await?;
    h.wait_status(&pending.delivery_id, DeliveryStatus::Queued)
        .await?;
    let early =
        serde_json::json!({"delivery_id": pending.delivery_id, "status": "failed"}).to_string();
    let sig = webhook_signature(WEBHOOK_SECRET.as_bytes(), early.as_bytes());
    let url = format!("{public}/receipts/webhook/{}", pending.delivery_id);
    let status = client()
        .post(url)
        .header("x-sspr-signature", sig)
        .body(early)
        .send()
        .await?
        .status()
        .as_u16();
    assert_eq!(status, 503);
    h.wait_status(&pending.delivery_id, DeliveryStatus::Sent)
        .await?;

    // Signed, but about another delivery than the URL names.
    let wrong = serde_json::json!({"delivery_id": "other", "status": "failed"}).to_string();
    let sig = webhook_signature(WEBHOOK_SECRET.as_bytes(), wrong.as_bytes());
    assert_eq!(post(sig, wrong).await, 400);
    Ok(())
}
