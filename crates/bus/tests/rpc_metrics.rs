//! RED metrics of the bus over a real private nats-server (`SSPR_NATS_SERVER_BIN` or
//! `nats-server` on `PATH`): every request a service answers is counted in
//! `sspr_nats_server_duration_seconds{service,endpoint,status}` and every request made through
//! [`Bus::request`] in `sspr_nats_client_duration_seconds{endpoint,status}`, with the exact
//! status the caller saw (`ok`, the refusal's code word, `unavailable` for a load-shed refusal,
//! `no_responders`, `timeout`). Read back from the Prometheus text that `/metrics` serves.
//!
//! The registry is per process and tests run in parallel: each test uses service and endpoint
//! names of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use sspr_bus::{Bus, BusConfig, BusError, RequestContext, Router, RpcError, serve};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const OK: &str = "sspr.rpc.redtest.echo";
const REFUSES: &str = "sspr.rpc.redtest.refuse";
const SLOW: &str = "sspr.rpc.redbusy.wait";
const FAST: &str = "sspr.rpc.redbusy.quick";
const NOBODY: &str = "sspr.rpc.rednobody.call";
const STUCK: &str = "sspr.rpc.redstuck.hang";

async fn nats_server() -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(
        std::env::var("SSPR_NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned()),
    )
    .args(["-a", "127.0.0.1", "-p", &port.to_string()])
    .kill_on_drop(true)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("nats-server on PATH");
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, format!("nats://127.0.0.1:{port}"))
}

async fn connect(url: &str, timeout: Duration) -> Bus {
    let mut config = BusConfig::new(url, "rpc-metrics-test");
    config.request_timeout = timeout;
    Bus::connect(&config).await.unwrap()
}

/// Serves `router` with one more endpoint, `sspr.rpc.<service>.ready`, until `stop`, and waits
/// until that endpoint answers (it is subscribed last, so every other one is then too). The
/// probes use the raw client, so the bus client does not count them.
async fn start(bus: &Bus, service: &'static str, router: Router, stop: &CancellationToken) {
    let subject: &'static str = format!("sspr.rpc.{service}.ready").leak();
    let router = router.route(subject, |_: RequestContext, _: String| async move {
        Ok::<_, RpcError>(String::new())
    });
    let served = bus.clone();
    let token = stop.clone();
    tokio::spawn(async move { serve(&served, router, token.cancelled_owned()).await });
    for _ in 0..250 {
        match bus
            .client()
            .request(subject.to_owned(), Default::default())
            .await
        {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            _ => return,
        }
    }
    panic!("{subject} never answered");
}

/// The `_count` of the histogram series `name{labels}` in the Prometheus text, 0 if absent.
fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let prefix = format!("{name}_count{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap();
            let inside = &series[prefix.len()..series.len() - 1];
            let mut pairs: Vec<&str> = inside.split(',').collect();
            pairs.sort_unstable();
            let mut wanted: Vec<String> =
                labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            wanted.sort_unstable();
            pairs == wanted
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

fn server_count(text: &str, service: &str, endpoint: &str, status: &str) -> u64 {
    count(
        text,
        "sspr_nats_server_duration_seconds",
        &[
            ("service", service),
            ("endpoint", endpoint),
            ("status", status),
        ],
    )
}

fn client_count(text: &str, endpoint: &str, status: &str) -> u64 {
    count(
        text,
        "sspr_nats_client_duration_seconds",
        &[("endpoint", endpoint), ("status", status)],
    )
}

#[tokio::test]
async fn answers_and_refusals_are_counted_by_endpoint_and_status() {
    let (_nats, url) = nats_server().await;
    let bus = connect(&url, Duration::from_secs(10)).await;
    let stop = CancellationToken::new();
    let router = Router::new("redtest", "metrics test")
        .route(OK, |_: RequestContext, req: String| async move {
            Ok::<_, RpcError>(req)
        })
        .route(REFUSES, |_: RequestContext, _: String| async move {
            Err::<String, _>(RpcError::not_found("no such thing"))
        });
    start(&bus, "redtest", router, &stop).await;

    for _ in 0..3 {
        let echoed: String = bus.request(OK, &"hello".to_owned()).await.unwrap();
        assert_eq!(echoed, "hello");
    }
    for _ in 0..2 {
        let refused = bus
            .request::<String, String>(REFUSES, &"x".to_owned())
            .await;
        assert!(matches!(refused, Err(BusError::Rpc(ref e)) if e.code.as_str() == "not_found"));
    }
    // A body that does not decode as the route's request: INVALID_ARGUMENT from the bus itself.
    let malformed = bus
        .request::<prost_types::Duration, String>(
            OK,
            &prost_types::Duration {
                seconds: -1,
                nanos: -1,
            },
        )
        .await;
    assert!(
        matches!(malformed, Err(BusError::Rpc(ref e)) if e.code.as_str() == "invalid_argument"),
        "{malformed:?}"
    );
    // Nobody serves this one.
    let nobody = bus.request::<String, String>(NOBODY, &"x".to_owned()).await;
    assert!(
        matches!(nobody, Err(BusError::NoResponders(_))),
        "{nobody:?}"
    );

    let text = sspr_telemetry::metrics::encode();
    assert_eq!(
        server_count(&text, "redtest", "redtest.echo", "ok"),
        3,
        "{text}"
    );
    assert_eq!(
        server_count(&text, "redtest", "redtest.echo", "invalid_argument"),
        1
    );
    assert_eq!(
        server_count(&text, "redtest", "redtest.refuse", "not_found"),
        2
    );
    assert_eq!(server_count(&text, "redtest", "redtest.refuse", "ok"), 0);
    assert_eq!(client_count(&text, "redtest.echo", "ok"), 3);
    assert_eq!(client_count(&text, "redtest.echo", "invalid_argument"), 1);
    assert_eq!(client_count(&text, "redtest.refuse", "not_found"), 2);
    assert_eq!(client_count(&text, "rednobody.call", "no_responders"), 1);
    // Label values are endpoint names, never raw subjects.
    assert!(!text.contains("endpoint=\"sspr.rpc."), "{text}");
    stop.cancel();
}

#[tokio::test]
async fn a_load_shed_refusal_counts_as_unavailable() {
    let (_nats, url) = nats_server().await;
    let bus = connect(&url, Duration::from_secs(10)).await;
    let stop = CancellationToken::new();
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let (r, e) = (Arc::clone(&release), Arc::clone(&entered));
    // One request at a time: while SLOW is held, anything else is refused at once.
    let router = Router::new("redbusy", "metrics test")
        .max_in_flight(1)
        .route(SLOW, move |_: RequestContext, req: String| {
            let (release, entered) = (Arc::clone(&r), Arc::clone(&e));
            async move {
                if req == "hold" {
                    entered.notify_one();
                    release.notified().await;
                }
                Ok::<_, RpcError>(req)
            }
        })
        .route(FAST, |_: RequestContext, req: String| async move {
            Ok::<_, RpcError>(req)
        });
    start(&bus, "redbusy", router, &stop).await;

    let held = tokio::spawn({
        let bus = bus.clone();
        async move {
            bus.request::<String, String>(SLOW, &"hold".to_owned())
                .await
        }
    });
    entered.notified().await;
    let refused = bus.request::<String, String>(FAST, &"x".to_owned()).await;
    assert!(
        matches!(refused, Err(BusError::Rpc(ref e)) if e.code.as_str() == "unavailable"),
        "{refused:?}"
    );
    release.notify_one();
    assert_eq!(held.await.unwrap().unwrap(), "hold");

    let text = sspr_telemetry::metrics::encode();
    assert_eq!(
        server_count(&text, "redbusy", "redbusy.quick", "unavailable"),
        1,
        "{text}"
    );
    assert_eq!(server_count(&text, "redbusy", "redbusy.wait", "ok"), 1);
    assert_eq!(client_count(&text, "redbusy.quick", "unavailable"), 1);
    assert_eq!(client_count(&text, "redbusy.wait", "ok"), 1);
    stop.cancel();
}

#[tokio::test]
async fn a_request_nobody_answers_in_time_counts_as_timeout() {
    let (_nats, url) = nats_server().await;
    let bus = connect(&url, Duration::from_millis(300)).await;
    let stop = CancellationToken::new();
    let release = Arc::new(Notify::new());
    let r = Arc::clone(&release);
    let router = Router::new("redstuck", "metrics test").route(
        STUCK,
        move |_: RequestContext, req: String| {
            let release = Arc::clone(&r);
            async move {
                if req == "hang" {
                    release.notified().await;
                }
                Ok::<_, RpcError>(req)
            }
        },
    );
    start(&bus, "redstuck", router, &stop).await;
    let timed_out = bus
        .request::<String, String>(STUCK, &"hang".to_owned())
        .await;
    assert!(
        matches!(timed_out, Err(BusError::Timeout(_))),
        "{timed_out:?}"
    );
    release.notify_one();

    let text = sspr_telemetry::metrics::encode();
    assert_eq!(client_count(&text, "redstuck.hang", "timeout"), 1, "{text}");
    assert_eq!(client_count(&text, "redstuck.hang", "ok"), 0);
    stop.cancel();
}
