//! TLS at both edges of the gateway, with certificates issued in the test by a private CA (the
//! `openssl` CLI):
//! - gRPC (`SSPR_GRPC_TLS_CERT`/`SSPR_GRPC_TLS_KEY`): a client that trusts the CA completes a
//!   call, while a plaintext client and a client that does not trust the CA fail;
//! - NATS (`SSPR_NATS_TLS_CA`): the bus reaches a TLS-only nats-server when it trusts the CA, and
//!   does not without it.

use std::path::Path;
use std::process::Command;

use sspr_bus::{Bus, BusConfig, NatsTls};
use sspr_testkit::{NatsConfig, NatsServer};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Issues a CA and a server certificate for `localhost` / 127.0.0.1 into `dir`.
fn issue_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl CLI runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=sspr test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the extensions");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "server.ext",
    ]);
}

async fn check(channel: Channel) -> Result<i32, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_grpc_over_tls_and_refuses_plaintext() {
    let dir = tempfile::tempdir().expect("temp dir");
    issue_certificates(dir.path());
    let nats = NatsServer::start().await.expect("nats-server");
    let bus = Bus::connect(&BusConfig::new(nats.url(), "sspr-gateway"))
        .await
        .expect("connect");
    let config = sspr_gateway::Config {
        grpc_addr: "127.0.0.1:0".parse().expect("address"),
        admin_tokens: sspr_gateway::admin_tokens(
            Some("tls-test-admin-token-0123456789".to_owned()),
            None,
            None,
        )
        .expect("admin token"),
        trusted_proxy_hops: 0,
        challenge: None,
        tls: sspr_gateway::tls::GrpcTls::parse(
            Some(dir.path().join("server.pem").display().to_string()),
            Some(dir.path().join("server.key").display().to_string()),
        )
        .expect("both files"),
        max_in_flight: sspr_gateway::DEFAULT_MAX_IN_FLIGHT,
    };
    let shutdown = CancellationToken::new();
    let (addr, serve) = sspr_gateway::bind(bus, config, shutdown.clone())
        .await
        .expect("the gateway starts with its certificate");
    let server = tokio::spawn(serve);

    // A client that trusts the CA completes a call.
    let ca = std::fs::read(dir.path().join("ca.pem")).expect("ca.pem");
    let trusted = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("uri")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost"),
        )
        .expect("client TLS")
        .connect()
        .await
        .expect("TLS handshake with a trusted certificate");
    assert_eq!(check(trusted).await.expect("health over TLS"), 1); // SERVING

    // Plaintext to the TLS port fails.
    let plaintext = match Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
    {
        Ok(channel) => check(channel).await.map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    assert!(
        plaintext.is_err(),
        "a plaintext call succeeded on the TLS port"
    );

    // A client that does not trust the CA fails the handshake.
    let untrusted = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("uri")
        .tls_config(ClientTlsConfig::new().domain_name("localhost"))
        .expect("client TLS")
        .connect()
        .await;
    let untrusted = match untrusted {
        Ok(channel) => check(channel).await.map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    assert!(untrusted.is_err(), "a client without the CA got through");

    shutdown.cancel();
    server
        .await
        .expect("server task")
        .expect("the server stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_parse_stops_the_gateway_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").expect("write");
    std::fs::write(dir.path().join("key.pem"), "not a key").expect("write");
    let nats = NatsServer::start().await.expect("nats-server");
    let bus = Bus::connect(&BusConfig::new(nats.url(), "sspr-gateway"))
        .await
        .expect("connect");
    let config = sspr_gateway::Config {
        grpc_addr: "127.0.0.1:0".parse().expect("address"),
        admin_tokens: sspr_gateway::admin_tokens(
            Some("tls-test-admin-token-0123456789".to_owned()),
            None,
            None,
        )
        .expect("admin token"),
        trusted_proxy_hops: 0,
        challenge: None,
        tls: Some(sspr_gateway::tls::GrpcTls {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        }),
        max_in_flight: sspr_gateway::DEFAULT_MAX_IN_FLIGHT,
    };
    let started = sspr_gateway::bind(bus, config, CancellationToken::new()).await;
    assert!(
        started.is_err(),
        "the gateway started with a broken certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_reaches_a_tls_only_nats_server_when_it_trusts_its_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    issue_certificates(dir.path());
    let config = dir.path().join("nats-tls.conf");
    std::fs::write(
        &config,
        format!(
            "jetstream: enabled\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
            dir.path().join("server.pem").display(),
            dir.path().join("server.key").display()
        ),
    )
    .expect("write the server config");
    let ca = dir.path().join("ca.pem");
    let nats = NatsServer::start_with_config(NatsConfig {
        file: config,
        env: Vec::new(),
        probe_user: None,
        probe_tls_ca: Some(ca.clone()),
    })
    .await
    .expect("a TLS-only nats-server");

    let mut trusted = BusConfig::new(nats.url(), "sspr-gateway");
    trusted.tls = NatsTls {
        ca: Some(ca),
        client_cert: None,
    };
    let bus = Bus::connect(&trusted).await.expect("connect over TLS");
    assert!(bus.is_connected(), "the bus is not connected over TLS");
    let mut sub = bus
        .client()
        .subscribe("tls.check")
        .await
        .expect("subscribe");
    bus.client()
        .publish("tls.check", "over tls".into())
        .await
        .expect("publish");
    let got = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        futures::StreamExt::next(&mut sub),
    )
    .await
    .expect("a message within 5 s")
    .expect("a message");
    assert_eq!(&got.payload[..], b"over tls");

    // Without the CA the handshake fails (and plaintext is refused by the TLS-only server).
    let untrusted = async_nats::ConnectOptions::new()
        .require_tls(true)
        .connection_timeout(std::time::Duration::from_secs(2))
        .connect(nats.url())
        .await;
    assert!(untrusted.is_err(), "connected without trusting the CA");
}
