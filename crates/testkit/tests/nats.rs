//! `NatsServer` against the real async-nats client: JetStream streams and KV (needs >= 2.10),
//! stop and restart on the same port with the same store.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use sspr_testkit::NatsServer;

#[tokio::test]
async fn jetstream_stream_and_kv_work() {
    let server = NatsServer::start().await.expect("start nats-server");
    assert!(server.url().starts_with("nats://127.0.0.1:"));
    let client = server.connect().await.expect("connect");
    let js = jetstream::new(client.clone());

    let stream = js
        .create_stream(stream::Config {
            name: "TESTKIT".into(),
            subjects: vec!["testkit.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create stream");
    js.publish("testkit.hello", "world".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let msg = stream
        .get_last_raw_message_by_subject("testkit.hello")
        .await
        .unwrap();
    assert_eq!(&msg.payload[..], b"world");

    // KV bucket creation is what Debian's nats-server 2.9 cannot do with this client.
    let bucket = js
        .create_key_value(kv::Config {
            bucket: "testkit".into(),
            history: 2,
            ..Default::default()
        })
        .await
        .expect("create KV bucket");
    bucket.put("k", "v1".into()).await.unwrap();
    assert_eq!(bucket.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));
}

#[tokio::test]
async fn two_servers_run_side_by_side() {
    let a = NatsServer::start().await.unwrap();
    let b = NatsServer::start().await.unwrap();
    assert_ne!(a.port(), b.port());
    a.connect().await.unwrap();
    b.connect().await.unwrap();
}

#[tokio::test]
async fn restart_keeps_port_and_jetstream_data() {
    let mut server = NatsServer::start().await.unwrap();
    let port = server.port();
    {
        let js = jetstream::new(server.connect().await.unwrap());
        js.create_stream(stream::Config {
            name: "KEEP".into(),
            subjects: vec!["keep.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        js.publish("keep.one", "1".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    server.stop().await.unwrap();
    assert!(!server.is_running());
    let refused =
        tokio::time::timeout(Duration::from_secs(2), async_nats::connect(server.url())).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "connected to a stopped server"
    );

    server.restart().await.unwrap();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    let js = jetstream::new(server.connect().await.unwrap());
    let mut stream = js
        .get_stream("KEEP")
        .await
        .expect("stream survives restart");
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn process_is_killed_on_drop() {
    let server = NatsServer::start().await.unwrap();
    let url = server.url();
    drop(server);
    // Give the kernel a moment to release the socket.
    let mut gone = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(url.trim_start_matches("nats://"))
            .await
            .is_err()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "nats-server still accepts connections after drop");
}

/// Set in the child process of `server_dies_with_the_test_process`.
const ORPHAN_ENV: &str = "SSPR_TESTKIT_ORPHAN_CHILD";

#[tokio::test]
async fn server_dies_with_the_test_process() {
    if std::env::var_os(ORPHAN_ENV).is_some() {
        return;
    }
    // Run `orphan_child` in a separate process: it starts a server and exits without dropping it.
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "orphan_child", "--nocapture", "--test-threads=1"])
        .env(ORPHAN_ENV, "1")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let port: u16 = stdout
        .lines()
        .find_map(|l| l.split_once("ORPHAN_PORT=").map(|(_, port)| port.trim()))
        .unwrap_or_else(|| panic!("no port from the child: {stdout}"))
        .parse()
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "nats-server outlived the process that started it");
    // The child could not run its destructors: remove its temp dir here.
    if let Some(dir) = stdout.lines().find_map(|l| {
        l.split_once("ORPHAN_DIR=")
            .map(|(_, d)| d.trim().to_owned())
    }) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Helper for `server_dies_with_the_test_process`; does nothing in a normal run.
#[tokio::test]
async fn orphan_child() {
    if std::env::var_os(ORPHAN_ENV).is_none() {
        return;
    }
    let server = NatsServer::start().await.unwrap();
    println!("ORPHAN_PORT={}", server.port());
    let dir = server.store_dir().parent().unwrap().to_owned();
    println!("ORPHAN_DIR={}", dir.display());
    std::mem::forget(server);
    std::process::exit(0);
}
