//! `sspr provision`: creates or updates the JetStream streams (`SSPR_EVENTS`, `SSPR_DELIVERY`)
//! and every service's durable consumer, with the settings the services expect, under an
//! identity of its own (`provision` in `deploy/nats/nats-server.conf`, the only one allowed to
//! manage streams).
//!
//! Invariants: it is idempotent (running it again changes nothing), and the consumer settings
//! are taken from the services' own crates, so a service that finds its consumer provisioned
//! sees exactly the configuration it would have created. It never deletes a stream, a consumer
//! or a message.

use anyhow::Context;
use async_nats::jetstream::{self, consumer::pull};
use sspr_bus::streams::StreamSettings;
use sspr_bus::{Bus, BusConfig, subjects};

/// What `sspr provision` needs: where NATS is, who to be, and the stream settings.
#[derive(Debug, Clone)]
pub struct ProvisionOptions {
    pub bus: BusConfig,
    pub streams: StreamSettings,
}

impl ProvisionOptions {
    /// From `SSPR_NATS_URL` and the `SSPR_NATS_*` credential and TLS variables, as
    /// `sspr-provision` with the inbox prefix `_INBOX_sspr-provision`; the stream settings from
    /// `SSPR_STREAM_REPLICAS`, `SSPR_EVENTS_MAX_AGE_DAYS` and `SSPR_DUPLICATE_WINDOW_SECS`
    /// (what the services read too), `replicas` overriding the first when given.
    pub fn from_env(replicas: Option<usize>) -> anyhow::Result<Self> {
        let url = sspr_runtime::settings::var("SSPR_NATS_URL")
            .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
        let mut bus = BusConfig::new(url, "sspr-provision");
        bus.auth = sspr_runtime::settings::nats_auth()?;
        bus.tls = sspr_runtime::settings::nats_tls()?;
        bus.inbox_prefix = Some("_INBOX_sspr-provision".to_owned());
        let mut streams = sspr_runtime::settings::stream_settings()?;
        if let Some(replicas) = replicas {
            anyhow::ensure!(
                (1..=sspr_runtime::settings::MAX_STREAM_REPLICAS).contains(&replicas),
                "--replicas: expected 1 to {}, got {replicas}",
                sspr_runtime::settings::MAX_STREAM_REPLICAS
            );
            streams.replicas = replicas;
        }
        Ok(Self { bus, streams })
    }
}

/// Every durable consumer of the system: (stream, settings).
pub fn durable_consumers() -> Vec<(&'static str, pull::Config)> {
    vec![
        (
            subjects::DELIVERY_STREAM,
            sspr_notification::delivery_worker::consumer_config(),
        ),
        (
            subjects::EVENTS_STREAM,
            sspr_audit::projector::consumer_config(),
        ),
        (
            subjects::EVENTS_STREAM,
            sspr_enrolment::user_deleted::consumer_spec().config(),
        ),
        (
            subjects::EVENTS_STREAM,
            sspr_verification::user_deleted::consumer_spec().config(),
        ),
        (
            subjects::EVENTS_STREAM,
            sspr_verification::delivery_events::consumer_spec().config(),
        ),
        (
            subjects::EVENTS_STREAM,
            sspr_notification::password_changed::consumer_spec().config(),
        ),
        (
            subjects::EVENTS_STREAM,
            sspr_notification::method_changes::consumer_spec().config(),
        ),
    ]
}

/// Creates or updates the streams, then the durable consumers; returns one line per object.
pub async fn provision(
    js: &jetstream::Context,
    streams: &StreamSettings,
) -> anyhow::Result<Vec<String>> {
    sspr_bus::streams::provision(js, streams).await?;
    let mut done = vec![
        format!("stream {}", subjects::EVENTS_STREAM),
        format!("stream {}", subjects::DELIVERY_STREAM),
    ];
    for (stream, config) in durable_consumers() {
        let name = config.durable_name.clone().unwrap_or_default();
        js.get_stream(stream)
            .await
            .with_context(|| format!("opening stream {stream}"))?
            .create_consumer(config)
            .await
            .with_context(|| format!("creating consumer {name} on {stream}"))?;
        done.push(format!("consumer {stream}/{name}"));
    }
    Ok(done)
}

/// `sspr provision`: connects with its own identity and provisions everything.
pub async fn main(replicas: Option<usize>) -> anyhow::Result<()> {
    let options = ProvisionOptions::from_env(replicas)?;
    let bus = connect(&options.bus).await?;
    for line in provision(bus.jetstream(), &options.streams).await? {
        println!("provisioned {line}");
    }
    bus.flush().await;
    Ok(())
}

async fn connect(config: &BusConfig) -> anyhow::Result<Bus> {
    let bus = Bus::connect(config)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.url))?;
    anyhow::ensure!(
        bus.is_connected(),
        "cannot connect to NATS at {} (check SSPR_NATS_USER/SSPR_NATS_PASSWORD, SSPR_NATS_CREDS or SSPR_NATS_NKEY_SEED)",
        config.url
    );
    Ok(bus)
}
