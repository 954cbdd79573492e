//! Deadlines, load shedding and idempotency keys over a real private nats-server
//! (`SSPR_NATS_SERVER_BIN` or `nats-server` on `PATH`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sspr_bus::idempotency::{
    Claim, Existing, Idempotency, IdempotencyStore, REQUEST_ID_HEADER, StoreError,
};
use sspr_bus::{Bus, BusConfig, BusError, ErrorCode, RequestContext, Router, RpcError, serve};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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

/// Starts `router` and waits until `subject` answers something other than "no responders".
async fn start(bus: &Bus, router: Router, subject: &str, stop: &CancellationToken) {
    let served = bus.clone();
    let stop = stop.clone();
    tokio::spawn(async move { serve(&served, router, stop.cancelled_owned()).await });
    for _ in 0..250 {
        let probe = bus
            .client()
            .request(
                subject.to_owned(),
                prost::Message::encode_to_vec(&"probe".to_owned()).into(),
            )
            .await;
        match probe {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            _ => return,
        }
    }
    panic!("{subject} never answered");
}

async fn connect(url: &str) -> Bus {
    Bus::connect(&BusConfig::new(url, "bus-load-test"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_full_service_refuses_at_once_instead_of_queueing() {
    const SLOW: &str = "sspr.rpc.loadtest.slow";
    let (_server, url) = nats_server().await;
    let bus = connect(&url).await;
    let stop = CancellationToken::new();
    let entered = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let router = Router::new("loadtest", "slow handlers")
        .max_in_flight(2)
        .route(SLOW, {
            let entered = Arc::clone(&entered);
            let release = Arc::clone(&release);
            move |_: RequestContext, req: String| {
                let entered = Arc::clone(&entered);
                let release = Arc::clone(&release);
                async move {
                    if req != "probe" {
                        entered.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                    }
                    Ok::<_, RpcError>(req)
                }
            }
        });
    start(&bus, router, SLOW, &stop).await;

    let slow: Vec<_> = (0..2)
        .map(|i| {
            let bus = bus.clone();
            tokio::spawn(async move {
                bus.request::<String, String>(SLOW, &format!("slow-{i}"))
                    .await
            })
        })
        .collect();
    let waited = Instant::now();
    while entered.load(Ordering::SeqCst) < 2 {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "the slow requests never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Both slots are taken: the next requests are refused now, not queued.
    for _ in 0..5 {
        let asked = Instant::now();
        let refused = bus
            .request::<String, String>(SLOW, &"third".to_owned())
            .await;
        match refused {
            Err(BusError::Rpc(e)) => {
                assert_eq!(e.code, ErrorCode::Unavailable);
                assert_eq!(e.retry_after_secs, Some(1));
            }
            other => panic!("expected UNAVAILABLE, got {other:?}"),
        }
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "refused at once"
        );
    }
    assert_eq!(
        entered.load(Ordering::SeqCst),
        2,
        "the refused requests never ran"
    );

    release.notify_waiters();
    for handle in slow {
        assert!(handle.await.unwrap().is_ok());
    }
    // Capacity is back.
    let again = bus
        .request::<String, String>(SLOW, &"probe".to_owned())
        .await;
    assert_eq!(again.unwrap(), "probe");
    stop.cancel();
}

#[tokio::test]
async fn the_callers_budget_reaches_every_hop_and_ends_the_wait() {
    const OUTER: &str = "sspr.rpc.deadlinetest.outer";
    const INNER: &str = "sspr.rpc.deadlinetest.inner";
    const SLEEPY: &str = "sspr.rpc.deadlinetest.sleepy";
    let (_server, url) = nats_server().await;
    let bus = connect(&url).await;
    let stop = CancellationToken::new();
    let seen = Arc::new(Mutex::new(Vec::<(&'static str, Option<Duration>)>::new()));
    let ran = Arc::new(AtomicUsize::new(0));

    let inner = Router::new("deadlinetest-inner", "records its budget")
        .route(INNER, {
            let seen = Arc::clone(&seen);
            move |ctx: RequestContext, req: String| {
                let seen = Arc::clone(&seen);
                async move {
                    let left = ctx
                        .deadline
                        .map(|d| d.saturating_duration_since(Instant::now()));
                    seen.lock().unwrap().push(("inner", left));
                    Ok::<_, RpcError>(req)
                }
            }
        })
        .route(SLEEPY, {
            let ran = Arc::clone(&ran);
            move |_: RequestContext, req: String| {
                let ran = Arc::clone(&ran);
                async move {
                    if req != "probe" {
                        ran.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                    Ok::<_, RpcError>(req)
                }
            }
        });
    let relay = bus.clone();
    let outer = Router::new("deadlinetest-outer", "calls inner").route(OUTER, {
        let seen = Arc::clone(&seen);
        move |_: RequestContext, req: String| {
            let seen = Arc::clone(&seen);
            let relay = relay.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push(("outer", sspr_bus::deadline::remaining()));
                tokio::time::sleep(Duration::from_millis(100)).await;
                relay
                    .request::<String, String>(INNER, &req)
                    .await
                    .map_err(BusError::into_rpc)
            }
        }
    });
    start(&bus, inner, INNER, &stop).await;
    start(&bus, outer, OUTER, &stop).await;
    seen.lock().unwrap().clear();

    // Without a deadline nothing is propagated.
    let plain: String = bus.request(OUTER, &"a".to_owned()).await.unwrap();
    assert_eq!(plain, "a");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![("outer", None), ("inner", None)]
    );
    seen.lock().unwrap().clear();

    // With one, each hop sees what is left, and the inner hop less than the outer.
    let budget = Duration::from_millis(1500);
    let answered: String = sspr_bus::deadline::scope(Some(Instant::now() + budget), async {
        bus.request(OUTER, &"b".to_owned()).await
    })
    .await
    .unwrap();
    assert_eq!(answered, "b");
    let seen_now = seen.lock().unwrap().clone();
    let outer_left = seen_now[0].1.expect("the outer hop has a deadline");
    let inner_left = seen_now[1].1.expect("the inner hop has a deadline");
    assert!(outer_left <= budget, "{outer_left:?}");
    assert!(
        inner_left + Duration::from_millis(90) <= outer_left,
        "inner {inner_left:?} after outer {outer_left:?}"
    );

    // A budget beyond the request timeout (10 s) travels as the timeout: the caller waits no
    // longer than that.
    seen.lock().unwrap().clear();
    let _: String =
        sspr_bus::deadline::scope(Some(Instant::now() + Duration::from_secs(60)), async {
            bus.request(OUTER, &"c".to_owned()).await
        })
        .await
        .unwrap();
    let outer_left = seen.lock().unwrap()[0].1.expect("a deadline");
    assert!(outer_left <= Duration::from_secs(10), "{outer_left:?}");

    // A slow answer ends the wait at the deadline, not at the 10 s request timeout.
    let asked = Instant::now();
    let late =
        sspr_bus::deadline::scope(Some(Instant::now() + Duration::from_millis(300)), async {
            bus.request::<String, String>(SLEEPY, &"slow".to_owned())
                .await
        })
        .await;
    assert!(
        matches!(late, Err(BusError::DeadlineExceeded(_))),
        "{late:?}"
    );
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(
        BusError::DeadlineExceeded(SLEEPY.into()).into_rpc().code,
        ErrorCode::DeadlineExceeded
    );

    // A deadline that already passed sends nothing.
    let before = ran.load(Ordering::SeqCst);
    let spent = sspr_bus::deadline::scope(Some(Instant::now()), async {
        bus.request::<String, String>(SLEEPY, &"never".to_owned())
            .await
    })
    .await;
    assert!(
        matches!(spent, Err(BusError::DeadlineExceeded(_))),
        "{spent:?}"
    );

    // A request that arrives with its budget spent is dropped without running the handler.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(sspr_bus::deadline::DEADLINE_HEADER, "0");
    let raw = bus
        .client()
        .send_request(
            SLEEPY.to_owned(),
            async_nats::Request::new()
                .payload(prost::Message::encode_to_vec(&"dropped".to_owned()).into())
                .headers(headers)
                .timeout(Some(Duration::from_millis(300))),
        )
        .await;
    assert!(raw.is_err(), "no answer for a spent budget");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ran.load(Ordering::SeqCst), before, "the handler never ran");
    stop.cancel();
}

/// An idempotency store in memory, with the same semantics as the database one.
#[derive(Default)]
struct MemoryStore {
    /// lookup -> (request hash, sealed answer once done)
    rows: Mutex<HashMap<String, Row>>,
}

type Row = (String, Option<Vec<u8>>);

impl IdempotencyStore for MemoryStore {
    fn claim<'a>(
        &'a self,
        lookup: &'a str,
        _route: &'a str,
        request_hash: &'a str,
        _lease: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Claim, StoreError>> + Send + 'a>>
    {
        Box::pin(async move {
            let mut rows = self.rows.lock().unwrap();
            Ok(match rows.get(lookup) {
                None => {
                    rows.insert(lookup.to_owned(), (request_hash.to_owned(), None));
                    Claim::Claimed
                }
                Some((hash, None)) => Claim::Existing(Existing::Pending {
                    request_hash: hash.clone(),
                }),
                Some((hash, Some(sealed))) => Claim::Existing(Existing::Done {
                    request_hash: hash.clone(),
                    sealed: sealed.clone(),
                }),
            })
        })
    }

    fn complete<'a>(
        &'a self,
        lookup: &'a str,
        sealed: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + 'a>>
    {
        Box::pin(async move {
            if let Some(row) = self.rows.lock().unwrap().get_mut(lookup) {
                row.1 = Some(sealed);
            }
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        lookup: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + 'a>>
    {
        Box::pin(async move {
            self.rows.lock().unwrap().remove(lookup);
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_first_answer() {
    const ISSUE: &str = "sspr.rpc.idemtest.issue";
    const PLAIN: &str = "sspr.rpc.idemtest.plain";
    let (_server, url) = nats_server().await;
    let bus = connect(&url).await;
    let stop = CancellationToken::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = {
        let runs = Arc::clone(&runs);
        move |_: RequestContext, req: String| {
            let runs = Arc::clone(&runs);
            async move {
                if req == "probe" {
                    return Ok(req);
                }
                let n = runs.fetch_add(1, Ordering::SeqCst);
                match req.as_str() {
                    "flaky" if n.is_multiple_of(2) => Err(RpcError::unavailable("try again")),
                    "refused" => Err(RpcError::failed_precondition("no").with_reason("NOPE")),
                    "slow" => {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        Ok(format!("{req}#{n}"))
                    }
                    _ => Ok(format!("{req}#{n}")),
                }
            }
        }
    };
    let store = Arc::new(MemoryStore::default());
    let router = Router::new("idemtest", "counts runs")
        .route(ISSUE, handler.clone())
        .route(PLAIN, handler)
        .idempotent(&[ISSUE])
        .with_idempotency(Idempotency::new(store.clone(), Some([3; 32])));
    start(&bus, router, ISSUE, &stop).await;
    runs.store(0, Ordering::SeqCst);

    let with_key = |key: &'static str, subject: &'static str, body: &'static str| {
        let bus = bus.clone();
        async move {
            sspr_bus::idempotency::scope(Some(key.to_owned()), async {
                bus.request::<String, String>(subject, &body.to_owned())
                    .await
            })
            .await
        }
    };

    let first = with_key("k-1", ISSUE, "a").await.unwrap();
    let second = with_key("k-1", ISSUE, "a").await.unwrap();
    assert_eq!(first, "a#0");
    assert_eq!(second, first, "the retry got the first answer");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");
    assert!(
        store
            .rows
            .lock()
            .unwrap()
            .values()
            .all(|(_, sealed)| !sealed
                .as_ref()
                .is_some_and(|s| s.windows(3).any(|w| w == b"a#0"))),
        "answers are sealed at rest"
    );

    // The same key with another request: refused, nothing runs.
    match with_key("k-1", ISSUE, "b").await {
        Err(BusError::Rpc(e)) => assert_eq!(e.code, ErrorCode::InvalidArgument),
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
    // Another key runs again; no key runs every time; an unmarked route ignores the key.
    assert_eq!(with_key("k-2", ISSUE, "a").await.unwrap(), "a#1");
    assert_eq!(
        bus.request::<String, String>(ISSUE, &"a".into())
            .await
            .unwrap(),
        "a#2"
    );
    assert_eq!(with_key("k-1", PLAIN, "a").await.unwrap(), "a#3");
    assert_eq!(with_key("k-1", PLAIN, "a").await.unwrap(), "a#4");

    // Refusals are answers too; transient failures are not stored, so the retry runs.
    runs.store(10, Ordering::SeqCst);
    let refused = with_key("k-3", ISSUE, "refused").await;
    let again = with_key("k-3", ISSUE, "refused").await;
    match (&refused, &again) {
        (Err(BusError::Rpc(a)), Err(BusError::Rpc(b))) => {
            assert_eq!(a, b);
            assert_eq!(a.reason.as_deref(), Some("NOPE"));
        }
        other => panic!("expected two refusals, got {other:?}"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 11);
    runs.store(12, Ordering::SeqCst);
    match with_key("k-4", ISSUE, "flaky").await {
        Err(BusError::Rpc(e)) => assert_eq!(e.code, ErrorCode::Unavailable),
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    assert_eq!(with_key("k-4", ISSUE, "flaky").await.unwrap(), "flaky#13");
    assert_eq!(with_key("k-4", ISSUE, "flaky").await.unwrap(), "flaky#13");

    // A concurrent duplicate waits for the first attempt and gets its answer.
    let (a, b) = tokio::join!(with_key("k-5", ISSUE, "slow"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        with_key("k-5", ISSUE, "slow").await
    });
    assert_eq!(a.unwrap(), "slow#14");
    assert_eq!(b.unwrap(), "slow#14");
    assert_eq!(runs.load(Ordering::SeqCst), 15);

    // A malformed key is refused before anything runs.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(REQUEST_ID_HEADER, "has space");
    let reply = bus
        .client()
        .send_request(
            ISSUE.to_owned(),
            async_nats::Request::new()
                .payload(prost::Message::encode_to_vec(&"a".to_owned()).into())
                .headers(headers),
        )
        .await
        .unwrap();
    let code = reply
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::service::NATS_SERVICE_ERROR_CODE))
        .map(|v| v.as_str().to_owned());
    assert_eq!(code.as_deref(), Some("3"));
    assert_eq!(runs.load(Ordering::SeqCst), 15);
    stop.cancel();
}
