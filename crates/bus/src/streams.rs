//! The JetStream streams sspr relies on, with explicit settings: created or updated by
//! `sspr provision` (production) or at a service's start when they are missing (development).

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::error::BusError;
use crate::subjects;

/// Settings of the two streams; `replicas` > 1 needs a clustered server. Deployments set them
/// with `SSPR_STREAM_REPLICAS`, `SSPR_EVENTS_MAX_AGE_DAYS` and `SSPR_DUPLICATE_WINDOW_SECS`
/// (read by `sspr_runtime::settings::stream_settings`, used by every service and by
/// `sspr provision`); the defaults below are theirs.
///
/// Neither stream is limited in bytes or message count: age alone bounds them, so no event is
/// discarded before its time and no delivery is refused for space.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Makes sure both streams exist with these settings, as a service does at start.
///
/// A stream that already has them is left alone, so a service whose NATS identity may not
/// create or update streams (production: `sspr provision` owns them, see
/// `deploy/nats/nats-server.conf`) starts fine once they were provisioned. A stream that is
/// missing or differs is created or updated, which only works with that right (`sspr dev`,
/// tests, a server without authorization).
pub async fn ensure(js: &jetstream::Context, settings: &StreamSettings) -> Result<(), BusError> {
    for config in [events_config(settings), delivery_config(settings)] {
        if let Ok(stream) = js.get_stream(&config.name).await
            && same_settings(&stream.cached_info().config, &config)
        {
            continue;
        }
        create_or_update(js, config).await?;
    }
    Ok(())
}

/// Creates both streams, or updates them to these settings (`sspr provision`).
pub async fn provision(js: &jetstream::Context, settings: &StreamSettings) -> Result<(), BusError> {
    for config in [events_config(settings), delivery_config(settings)] {
        create_or_update(js, config).await?;
    }
    Ok(())
}

async fn create_or_update(js: &jetstream::Context, config: stream::Config) -> Result<(), BusError> {
    let name = config.name.clone();
    js.create_or_update_stream(config).await.map_err(|e| {
        BusError::JetStream(format!(
            "stream {name}: {e} (if this NATS identity may not manage streams, run `sspr provision` first)"
        ))
    })?;
    Ok(())
}

/// The settings sspr chooses, compared with what the server reports (which fills in the rest).
fn same_settings(actual: &stream::Config, wanted: &stream::Config) -> bool {
    actual.subjects == wanted.subjects
        && actual.retention == wanted.retention
        && actual.storage == wanted.storage
        && actual.max_age == wanted.max_age
        && actual.duplicate_window == wanted.duplicate_window
        && actual.num_replicas == wanted.num_replicas
        && actual.discard == wanted.discard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_with_other_limits_is_not_the_same() {
        let s = StreamSettings::default();
        assert!(same_settings(&events_config(&s), &events_config(&s)));
        let mut shorter = events_config(&s);
        shorter.max_age = Duration::from_secs(60);
        assert!(!same_settings(&shorter, &events_config(&s)));
        assert!(!same_settings(&delivery_config(&s), &events_config(&s)));
    }
}
