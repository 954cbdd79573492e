//! The JetStream streams sspr relies on, created or updated at start with explicit settings.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::error::BusError;
use crate::subjects;

/// Settings of the two streams; `replicas` > 1 needs a clustered server.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub replicas: usize,
    /// How long public events stay replayable.
    pub events_max_age: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is dropped as a duplicate.
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            events_max_age: Duration::from_secs(30 * 24 * 3600),
            duplicate_window: Duration::from_secs(2 * 60),
        }
    }
}

pub fn events_config(s: &StreamSettings) -> stream::Config {
    stream::Config {
        name: subjects::EVENTS_STREAM.to_owned(),
        description: Some("sspr public events (sspr.events.v1.>)".to_owned()),
        subjects: vec![subjects::EVENTS_WILDCARD.to_owned()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age: s.events_max_age,
        duplicate_window: s.duplicate_window,
        num_replicas: s.replicas,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    }
}

pub fn delivery_config(s: &StreamSettings) -> stream::Config {
    stream::Config {
        name: subjects::DELIVERY_STREAM.to_owned(),
        description: Some("sspr encrypted code deliveries (sspr.delivery.v1.>)".to_owned()),
        subjects: vec![subjects::DELIVERY_WILDCARD.to_owned()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        // A code lives 10 minutes; a delivery older than a day is of no use to anyone.
        max_age: Duration::from_secs(24 * 3600),
        duplicate_window: s.duplicate_window,
        num_replicas: s.replicas,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}

/// Creates both streams, or updates them to these settings.
pub async fn ensure(js: &jetstream::Context, settings: &StreamSettings) -> Result<(), BusError> {
    for config in [events_config(settings), delivery_config(settings)] {
        let name = config.name.clone();
        js.create_or_update_stream(config)
            .await
            .map_err(|e| BusError::JetStream(format!("stream {name}: {e}")))?;
    }
    Ok(())
}
