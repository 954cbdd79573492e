//! `HttpSink` against reqwest: requests recorded with method, path, headers and body; status
//! configurable for fault tests.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sspr_testkit::HttpSink;

#[tokio::test]
async fn records_posts_and_answers_200_json() {
    let sink = HttpSink::start().await.unwrap();
    assert!(sink.url().starts_with("http://127.0.0.1:"));
    // reqwest may be built with rustls (notification's https providers): give it ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();

    let response = client
        .post(sink.url())
        .header("content-type", "application/json")
        .header("x-test", "1")
        .body(r#"{"to":"+15551234567","text":"Code 12345678 — ok"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "{}");

    let request = sink
        .wait_for(|r| r.method == "POST", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(request.path, "/sms");
    assert_eq!(request.header("X-Test"), Some("1"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let json = request.json().unwrap();
    assert_eq!(json["to"], "+15551234567");
    assert_eq!(json["text"], "Code 12345678 — ok");

    client
        .get(format!("{}?page=2", sink.url()))
        .send()
        .await
        .unwrap();
    let all = sink
        .wait_for_count(2, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(all[1].method, "GET");
    assert_eq!(all[1].path, "/sms?page=2");
    assert_eq!(all[1].body, "");
}

#[tokio::test]
async fn status_is_configurable() {
    let sink = HttpSink::start().await.unwrap();
    // reqwest may be built with rustls (notification's https providers): give it ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    sink.respond_next(2, 503, r#"{"error":"busy"}"#).unwrap();
    for _ in 0..2 {
        let r = client.post(sink.url()).body("a").send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.text().await.unwrap(), r#"{"error":"busy"}"#);
    }
    assert_eq!(client.post(sink.url()).send().await.unwrap().status(), 200);
    sink.set_status(500).unwrap();
    assert_eq!(client.post(sink.url()).send().await.unwrap().status(), 500);
    assert!(sink.set_status(1000).is_err());
    // Every request is recorded, whatever the answer.
    assert_eq!(sink.requests().len(), 4);
    assert!(
        sink.wait_for(|r| r.method == "DELETE", Duration::from_millis(100))
            .await
            .is_err()
    );
}
