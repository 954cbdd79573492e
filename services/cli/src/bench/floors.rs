//! The physical floors on this machine, measured in the same run before the load: what the
//! cheapest possible version of each hop costs, so every step of a flow can be stated as a
//! multiple of its floor.
//!
//! - NATS request/reply: raw async-nats, a trivial responder on its own connection.
//! - JetStream publish ack: raw async-nats on a scratch file-storage stream (deleted after).
//! - tonic unary echo: gRPC health `Check` on a tonic server in this process.
//! - lettre send to the bench's sink: one `AsyncSmtpConnection` on a `TCP_NODELAY` socket, as
//!   notification sends; and lettre's stock pooled transport, for contrast (it writes the body
//!   and the final `.` separately without `TCP_NODELAY`, meeting the delayed ACK).
//! - One Argon2id hash with the directory's own parameters and code, and the hashing ceiling:
//!   hashes per second with one hashing thread per core.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use lettre::AsyncTransport;

/// A histogram of microseconds, 1 µs to 10 min, three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .expect("constant bounds that hdrhistogram accepts")
}

/// Records `d` in microseconds (saturating at the histogram's top).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(d.as_micros().max(1).min(u128::from(u64::MAX)) as u64);
}

/// One measured floor.
pub struct Floor {
    pub name: &'static str,
    pub histogram: Histogram<u64>,
}

impl Floor {
    /// Median in milliseconds.
    pub fn p50_ms(&self) -> f64 {
        self.histogram.value_at_quantile(0.5) as f64 / 1000.0
    }
}

/// Every floor of a run (those that could not be measured are absent).
#[derive(Default)]
pub struct Floors {
    pub floors: Vec<Floor>,
    /// Argon2id hashes per second on all cores, and the number of threads.
    pub hash_ceiling: Option<(f64, usize)>,
    /// Why a floor is missing.
    pub skipped: Vec<String>,
}

pub const NATS_RR: &str = "NATS request/reply";
pub const JS_ACK: &str = "JetStream publish ack";
pub const TONIC_ECHO: &str = "tonic unary echo";
pub const LETTRE_NODELAY: &str = "lettre send (pooled, TCP_NODELAY)";
pub const LETTRE_STOCK: &str = "lettre send (stock pooled transport)";
pub const ARGON2: &str = "Argon2id hash";

impl Floors {
    pub fn get(&self, name: &str) -> Option<&Floor> {
        self.floors.iter().find(|f| f.name == name)
    }
}

/// How many samples to take of each floor.
#[derive(Debug, Clone, Copy)]
pub struct FloorSamples {
    pub fast: usize,
    pub stock_lettre: usize,
    pub argon2: usize,
    pub ceiling_time: Duration,
}

/// Measures every floor; `nats_url` `None` skips the two NATS floors.
pub async fn measure(nats_url: Option<&str>, sink: SocketAddr, samples: FloorSamples) -> Floors {
    let mut floors = Floors::default();
    match nats_url {
        Some(url) => {
            push(
                &mut floors,
                NATS_RR,
                nats_round_trip(url, samples.fast).await,
            );
            push(&mut floors, JS_ACK, jetstream_ack(url, samples.fast).await);
        }
        None => floors
            .skipped
            .push("NATS floors: no NATS URL (pass --nats-url)".to_owned()),
    }
    push(&mut floors, TONIC_ECHO, tonic_echo(samples.fast).await);
    push(
        &mut floors,
        LETTRE_NODELAY,
        lettre_nodelay(sink, samples.fast).await,
    );
    push(
        &mut floors,
        LETTRE_STOCK,
        lettre_stock(sink, samples.stock_lettre).await,
    );
    let argon2 = samples.argon2;
    match tokio::task::spawn_blocking(move || argon2_hashes(argon2)).await {
        Ok(h) => push(&mut floors, ARGON2, h),
        Err(e) => floors.skipped.push(format!("{ARGON2}: {e}")),
    }
    let time = samples.ceiling_time;
    match tokio::task::spawn_blocking(move || hash_ceiling(time)).await {
        Ok(Ok(c)) => floors.hash_ceiling = Some(c),
        Ok(Err(e)) => floors.skipped.push(format!("hashing ceiling: {e:#}")),
        Err(e) => floors.skipped.push(format!("hashing ceiling: {e}")),
    }
    floors
}

fn push(floors: &mut Floors, name: &'static str, result: anyhow::Result<Histogram<u64>>) {
    match result {
        Ok(histogram) => floors.floors.push(Floor { name, histogram }),
        Err(e) => floors.skipped.push(format!("{name}: {e:#}")),
    }
}

/// Runs `op` `warmup` times unmeasured, then `n` times measured.
async fn timed<F, Fut>(n: usize, mut op: F) -> anyhow::Result<Histogram<u64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for _ in 0..(n / 10).max(1) {
        op().await?;
    }
    let mut h = histogram();
    for _ in 0..n {
        let t = Instant::now();
        op().await?;
        record(&mut h, t.elapsed());
    }
    Ok(h)
}

async fn nats_round_trip(url: &str, n: usize) -> anyhow::Result<Histogram<u64>> {
    let responder = async_nats::connect(url).await.context("connect")?;
    let requester = async_nats::connect(url).await.context("connect")?;
    let subject = format!("sspr-bench.echo.{}", std::process::id());
    let mut sub = responder.subscribe(subject.clone()).await?;
    responder.flush().await?;
    let echo = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = responder.publish(reply, msg.payload).await;
            }
        }
    });
    let payload = bytes::Bytes::from_static(&[7u8; 64]);
    let result = timed(n, || {
        let (requester, subject, payload) = (&requester, subject.clone(), payload.clone());
        async move {
            requester.request(subject, payload).await?;
            Ok(())
        }
    })
    .await;
    echo.abort();
    result
}

async fn jetstream_ack(url: &str, n: usize) -> anyhow::Result<Histogram<u64>> {
    let client = async_nats::connect(url).await.context("connect")?;
    let js = async_nats::jetstream::new(client);
    let name = format!("SSPR_BENCH_SCRATCH_{}", std::process::id());
    let subject = format!("sspr-bench.scratch.{}", std::process::id());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        storage: async_nats::jetstream::stream::StorageType::File,
        max_messages: 100_000,
        ..Default::default()
    })
    .await
    .context("cannot create the scratch stream")?;
    let payload = bytes::Bytes::from_static(&[7u8; 256]);
    let result = timed(n, || {
        let (js, subject, payload) = (&js, subject.clone(), payload.clone());
        async move {
            js.publish(subject, payload).await?.await?;
            Ok(())
        }
    })
    .await;
    let _ = js.delete_stream(&name).await;
    result
}

async fn tonic_echo(n: usize) -> anyhow::Result<Histogram<u64>> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (_reporter, health) = tonic_health::server::health_reporter();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let client = HealthClient::new(channel);
    let result = timed(n, || {
        let mut client = client.clone();
        async move {
            client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            Ok(())
        }
    })
    .await;
    server.abort();
    result
}

fn floor_mail() -> anyhow::Result<lettre::Message> {
    Ok(lettre::Message::builder()
        .from("floor@bench.example".parse()?)
        .to("floor@bench.example".parse()?)
        .subject("Your password reset code")
        .body("Your password reset code is:\r\n\r\n12345678\r\n\r\nThis code is valid for 10 minutes.\r\n".to_owned())?)
}

async fn lettre_nodelay(sink: SocketAddr, n: usize) -> anyhow::Result<Histogram<u64>> {
    use lettre::transport::smtp::client::AsyncSmtpConnection;
    use lettre::transport::smtp::extension::ClientId;
    let tcp = tokio::net::TcpStream::connect(sink).await?;
    tcp.set_nodelay(true)?;
    let hello = ClientId::Domain("sspr-bench".to_owned());
    let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello).await?;
    let mail = floor_mail()?;
    let (envelope, bytes) = (mail.envelope().clone(), mail.formatted());
    let conn = tokio::sync::Mutex::new(&mut conn);
    timed(n, || async {
        conn.lock().await.send(&envelope, &bytes).await?;
        Ok(())
    })
    .await
}

async fn lettre_stock(sink: SocketAddr, n: usize) -> anyhow::Result<Histogram<u64>> {
    let mailer = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(
        sink.ip().to_string(),
    )
    .port(sink.port())
    .build();
    let mail = floor_mail()?;
    timed(n, || {
        let (mailer, mail) = (&mailer, mail.clone());
        async move {
            mailer.send(mail).await?;
            Ok(())
        }
    })
    .await
}

fn argon2_hashes(n: usize) -> anyhow::Result<Histogram<u64>> {
    use sspr_directory::domain::password::{Password, hash};
    let password = Password::new("sspr bench floor passphrase");
    let mut h = histogram();
    hash(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
    for _ in 0..n {
        let t = Instant::now();
        hash(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
        record(&mut h, t.elapsed());
    }
    Ok(h)
}

/// Hashes per second with one hashing thread per core, for `time`.
fn hash_ceiling(time: Duration) -> anyhow::Result<(f64, usize)> {
    use sspr_directory::domain::password::{Password, hash};
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = Instant::now();
    let counts: Vec<anyhow::Result<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let password = Password::new("sspr bench ceiling passphrase");
                    let mut done = 0u64;
                    while start.elapsed() < time {
                        hash(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a hashing thread panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut total = 0;
    for c in counts {
        total += c?;
    }
    Ok((total as f64 / elapsed, threads))
}
