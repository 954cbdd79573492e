//! `sspr events tail`: prints the public events of `SSPR_EVENTS` as they arrive, one JSON line
//! each, decoded from protobuf by name with the descriptor set `sspr-proto` embeds:
//!
//! ```json
//! {"subject":"sspr.events.v1.code.issued","stream_sequence":7,"time":"2026-12-07T12:00:00.1Z","message":"sspr.events.v1.CodeIssued","event":{...}}
//! ```
//!
//! The message type follows from the subject: `sspr.events.v1.<noun>.<verb>` carries
//! `sspr.events.v1.<Noun><Verb>` (e.g. `code.delivery_failed` → `CodeDeliveryFailed`); a subject
//! without a known message, or a payload that does not decode, is printed with its payload in
//! base64 and `"event": null`, never dropped.
//!
//! Invariants:
//! - `--subject` filters must lie within `sspr.events.v1.>` (NATS wildcards `*` and a final `>`
//!   allowed); anything else is refused before connecting.
//! - Without `--since`, only events published after the start are printed; `--since` takes an
//!   RFC 3339 time or a duration back from now (`30s`, `10m`, `2h`, `7d`).
//! - By default an ephemeral ordered consumer (no state left on the server, nothing
//!   acknowledged); `--durable NAME` uses a durable consumer of that name instead, each event
//!   acknowledged once printed, so the next run continues where this one stopped (an existing
//!   durable keeps the filter and start it was created with).
//! - It stops on Ctrl-C, or after `--limit N` events, and returns how many it printed.
//! - Events never carry secrets (see the README), so printing them whole is safe.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use async_nats::jetstream::{self, consumer};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use sspr_bus::subjects;

/// The package of every public event.
pub const EVENTS_PACKAGE: &str = "sspr.events.v1";

/// What `sspr events tail` was asked for.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    /// Subject filters within `sspr.events.v1.>`; empty means all events.
    pub subjects: Vec<String>,
    /// Print events published at or after this time; `None`: only new events.
    pub since: Option<DateTime<Utc>>,
    /// A durable consumer name instead of an ephemeral ordered consumer.
    pub durable: Option<String>,
    /// Stop after this many events.
    pub limit: Option<u64>,
}

/// Checks a `--subject` filter: `sspr.events.v1.` followed by non-empty tokens, where a token
/// may be `*` and the last may be `>`.
pub fn parse_subject(raw: &str) -> anyhow::Result<String> {
    let raw = raw.trim();
    let prefix = format!("{EVENTS_PACKAGE}.");
    let Some(rest) = raw.strip_prefix(&prefix) else {
        bail!(
            "--subject {raw:?}: must be within {}",
            subjects::EVENTS_WILDCARD
        );
    };
    let tokens: Vec<&str> = rest.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        let ok = match *token {
            "" => false,
            "*" => true,
            ">" => last,
            t => t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        };
        if !ok {
            bail!(
                "--subject {raw:?}: tokens are letters, digits, '_' or '-', '*' for one token, '>' only at the end"
            );
        }
    }
    Ok(raw.to_owned())
}

/// Parses `--since`: an RFC 3339 time, or a duration back from `now` such as `90s`, `10m`,
/// `2h` or `7d`.
pub fn parse_since(raw: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = || {
        anyhow!(
            "--since {raw:?}: expected an RFC 3339 time (2026-12-07T12:00:00Z) or a duration such as 30s, 10m, 2h, 7d"
        )
    };
    let unit_at = raw.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = raw.split_at(unit_at);
    let n: i64 = number.parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    let ago = match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    now.checked_sub_signed(ago).ok_or_else(bad)
}

/// Turns event payloads into JSON, knowing each subject's message from the descriptors.
#[derive(Debug, Clone)]
pub struct EventDecoder {
    pool: DescriptorPool,
}

impl EventDecoder {
    /// From the descriptor set `sspr-proto` embeds.
    pub fn new() -> anyhow::Result<Self> {
        let pool = DescriptorPool::decode(sspr_proto::FILE_DESCRIPTOR_SET)
            .context("decoding the embedded protobuf descriptors")?;
        Ok(Self { pool })
    }

    /// The message carried on `subject` (`sspr.events.v1.<noun>.<verb>`), if there is one.
    pub fn message_for(&self, subject: &str) -> Option<MessageDescriptor> {
        let rest = subject.strip_prefix(EVENTS_PACKAGE)?.strip_prefix('.')?;
        let name: String = rest
            .split(['.', '_'])
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        self.pool
            .get_message_by_name(&format!("{EVENTS_PACKAGE}.{name}"))
    }

    /// The decoded event as JSON text (proto field names in declaration order, every field
    /// shown, enums by name), or `None` when the subject has no known message or the payload
    /// does not decode.
    pub fn event_json(&self, subject: &str, payload: &[u8]) -> Option<(String, String)> {
        let desc = self.message_for(subject)?;
        let message = DynamicMessage::decode(desc.clone(), payload).ok()?;
        let options = SerializeOptions::new()
            .use_proto_field_name(true)
            .skip_default_fields(false);
        let mut out = serde_json::Serializer::new(Vec::new());
        message.serialize_with_options(&mut out, &options).ok()?;
        let text = String::from_utf8(out.into_inner()).ok()?;
        Some((desc.full_name().to_owned(), text))
    }

    /// One output line: the subject, stream sequence, time and message name, then the event
    /// (in this order, so the line reads well in a terminal).
    pub fn line(
        &self,
        subject: &str,
        stream_sequence: u64,
        time: DateTime<Utc>,
        payload: &[u8],
    ) -> String {
        let json = |v: serde_json::Value| v.to_string();
        let head = format!(
            "{{\"subject\":{},\"stream_sequence\":{stream_sequence},\"time\":{}",
            json(subject.into()),
            json(time.to_rfc3339_opts(SecondsFormat::Micros, true).into()),
        );
        match self.event_json(subject, payload) {
            Some((message, event)) => {
                format!(
                    "{head},\"message\":{},\"event\":{event}}}",
                    json(message.into())
                )
            }
            None => format!(
                "{head},\"message\":null,\"event\":null,\"payload_base64\":{}}}",
                json(
                    base64::engine::general_purpose::STANDARD
                        .encode(payload)
                        .into()
                )
            ),
        }
    }
}

fn deliver_policy(since: Option<DateTime<Utc>>) -> anyhow::Result<consumer::DeliverPolicy> {
    Ok(match since {
        None => consumer::DeliverPolicy::New,
        Some(t) => {
            let nanos = t
                .timestamp_nanos_opt()
                .ok_or_else(|| anyhow!("--since {t} is out of range"))?;
            consumer::DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
                    .map_err(|e| anyhow!("--since {t}: {e}"))?,
            }
        }
    })
}

/// Prints events with `print` (one JSON line each) until `shutdown` completes or `options.limit`
/// events were printed; returns how many were printed.
pub async fn tail(
    js: &jetstream::Context,
    options: &TailOptions,
    mut print: impl FnMut(String),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<u64> {
    let filters: Vec<String> = if options.subjects.is_empty() {
        vec![subjects::EVENTS_WILDCARD.to_owned()]
    } else {
        options
            .subjects
            .iter()
            .map(|s| parse_subject(s))
            .collect::<anyhow::Result<_>>()?
    };
    let decoder = EventDecoder::new()?;
    let policy = deliver_policy(options.since)?;
    let stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .map_err(|e| anyhow!("cannot open stream {}: {e}", subjects::EVENTS_STREAM))?;
    tokio::pin!(shutdown);
    let mut printed = 0u64;
    if options.limit == Some(0) {
        return Ok(0);
    }
    let mut emit = |message: &jetstream::Message| -> anyhow::Result<u64> {
        let info = message
            .info()
            .map_err(|e| anyhow!("a message without JetStream metadata: {e}"))?;
        let nanos = i64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(i64::MAX);
        let time = DateTime::from_timestamp_nanos(nanos);
        let sequence = info.stream_sequence;
        print(decoder.line(&message.subject, sequence, time, &message.payload));
        Ok(sequence)
    };
    let done = |printed: u64| options.limit.is_some_and(|limit| printed >= limit);
    match &options.durable {
        None => {
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subjects: filters,
                    deliver_policy: policy,
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow!("cannot create an ordered consumer: {e}"))?;
            let mut messages = consumer
                .messages()
                .await
                .map_err(|e| anyhow!("cannot pull events: {e}"))?;
            loop {
                let next = tokio::select! {
                    _ = &mut shutdown => break,
                    next = messages.next() => next,
                };
                let Some(message) = next else { break };
                let message = message.map_err(|e| anyhow!("pulling events failed: {e}"))?;
                emit(&message)?;
                printed += 1;
                if done(printed) {
                    break;
                }
            }
        }
        Some(name) => {
            // An existing durable is opened as it is: its position, filter and start stay
            // those of its creation (the server refuses to move a start time).
            let consumer: consumer::PullConsumer = stream
                .get_or_create_consumer(
                    name,
                    consumer::pull::Config {
                        durable_name: Some(name.clone()),
                        description: Some("sspr events tail".to_owned()),
                        filter_subjects: filters,
                        deliver_policy: policy,
                        ack_policy: consumer::AckPolicy::Explicit,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| anyhow!("cannot create or open durable consumer {name}: {e}"))?;
            // Fetch no more than is left to print, so that stopping at the limit leaves no
            // event delivered but unacknowledged (it would come back only after the ack wait).
            'fetch: loop {
                let left = options
                    .limit
                    .map_or(64, |limit| limit.saturating_sub(printed))
                    .min(64);
                let batch = consumer
                    .fetch()
                    .max_messages(usize::try_from(left).unwrap_or(64))
                    .expires(Duration::from_secs(5))
                    .messages();
                let mut batch = tokio::select! {
                    _ = &mut shutdown => break 'fetch,
                    b = batch => b.map_err(|e| anyhow!("cannot pull events: {e}"))?,
                };
                loop {
                    let next = tokio::select! {
                        _ = &mut shutdown => break 'fetch,
                        next = batch.next() => next,
                    };
                    let Some(message) = next else { break };
                    let message = message.map_err(|e| anyhow!("pulling events failed: {e}"))?;
                    let sequence = emit(&message)?;
                    printed += 1;
                    message
                        .ack()
                        .await
                        .map_err(|e| anyhow!("acknowledging event {sequence} failed: {e}"))?;
                    if done(printed) {
                        break 'fetch;
                    }
                }
            }
        }
    }
    Ok(printed)
}

/// `sspr events tail`: connects like `sspr provision` does (`SSPR_NATS_URL` and the
/// `SSPR_NATS_*` identity), prints to stdout until Ctrl-C or the limit.
pub async fn main(options: TailOptions) -> anyhow::Result<()> {
    for s in &options.subjects {
        parse_subject(s)?;
    }
    let url = sspr_runtime::settings::var("SSPR_NATS_URL")
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let mut config = sspr_bus::BusConfig::new(url.clone(), "sspr-events-tail");
    config.auth = sspr_runtime::settings::nats_auth()?;
    config.tls = sspr_runtime::settings::nats_tls()?;
    let bus = sspr_bus::Bus::connect(&config)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))?;
    use std::io::Write;
    let stdout = std::io::stdout();
    tail(
        bus.jetstream(),
        &options,
        |line| {
            let mut out = stdout.lock();
            // A closed pipe (e.g. `| head`) ends the output, not the program with a panic.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        },
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await?;
    Ok(())
}

/// Every subject declared in `sspr_bus::subjects::events`, read from its source so that a new
/// constant is covered without anyone listing it again (used by the tests of the decoder and of
/// the README's event catalogue).
pub fn declared_event_subjects(subjects_rs: &str) -> Vec<String> {
    let Some(start) = subjects_rs.find("pub mod events {") else {
        return Vec::new();
    };
    let body = &subjects_rs[start..];
    let body = &body[..body.find("\n}").unwrap_or(body.len())];
    body.lines()
        .filter(|l| l.trim_start().starts_with("pub const "))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECTS_RS: &str = include_str!("../../../crates/bus/src/subjects.rs");
    const README: &str = include_str!("../../../README.md");

    /// The README's event catalogue lists every subject of `subjects::events` with its message
    /// and emitter (a table row) and an example line as `sspr events tail` prints it.
    #[test]
    fn the_readme_catalogue_documents_every_event() {
        let start = README.find("\n## Events").expect("an Events section");
        let rest = &README[start + 1..];
        let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
        let all = declared_event_subjects(SUBJECTS_RS);
        assert!(!all.is_empty());
        for subject in all {
            assert!(
                section.contains(&format!("| `{subject}` |")),
                "README: no catalogue row for {subject}"
            );
            assert!(
                section.contains(&format!("{{\"subject\":\"{subject}\",")),
                "README: no example of {subject}"
            );
        }
    }

    #[test]
    fn every_event_subject_has_a_message() {
        let decoder = EventDecoder::new().expect("descriptors");
        let all = declared_event_subjects(SUBJECTS_RS);
        assert!(all.len() >= 25, "found {} subjects", all.len());
        assert!(all.iter().any(|s| s == subjects::events::ADMIN_AUTH_FAILED));
        for subject in &all {
            assert!(
                decoder.message_for(subject).is_some(),
                "{subject} has no message in {EVENTS_PACKAGE}"
            );
        }
        assert_eq!(
            decoder
                .message_for(subjects::events::CODE_DELIVERY_FAILED)
                .map(|m| m.full_name().to_owned())
                .as_deref(),
            Some("sspr.events.v1.CodeDeliveryFailed")
        );
        // Fields in declaration order; undecodable payloads are shown, not dropped.
        let t = DateTime::from_timestamp(0, 0).unwrap_or_default();
        let line = decoder.line(subjects::events::USER_DELETED, 3, t, &[]);
        assert_eq!(
            line,
            r#"{"subject":"sspr.events.v1.user.deleted","stream_sequence":3,"time":"1970-01-01T00:00:00.000000Z","message":"sspr.events.v1.UserDeleted","event":{}}"#
        );
        let line = decoder.line("sspr.events.v1.no.such", 4, t, &[1, 2]);
        assert!(
            line.ends_with(r#""message":null,"event":null,"payload_base64":"AQI="}"#),
            "{line}"
        );
        assert!(decoder.message_for("sspr.events.v1.no.such").is_none());
    }

    #[test]
    fn subjects_stay_within_the_events() {
        for ok in [
            "sspr.events.v1.>",
            "sspr.events.v1.code.*",
            "sspr.events.v1.*.deleted",
            "sspr.events.v1.code.delivery_failed",
        ] {
            assert!(parse_subject(ok).is_ok(), "{ok}");
        }
        for bad in [
            "sspr.events.v2.code.issued",
            "sspr.delivery.v1.email",
            ">",
            "sspr.events.v1.",
            "sspr.events.v1.>.x",
            "sspr.events.v1.code..issued",
            "sspr.events.v1.co de",
        ] {
            assert!(parse_subject(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn since_is_a_time_or_a_duration_back() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let at = |s: &str| parse_since(s, now).ok().map(|t| t.to_rfc3339());
        assert_eq!(at("10m").as_deref(), Some("2026-12-07T11:50:00+00:00"));
        assert_eq!(at("2h").as_deref(), Some("2026-12-07T10:00:00+00:00"));
        assert_eq!(at("1d").as_deref(), Some("2026-12-06T12:00:00+00:00"));
        assert_eq!(at("30s").as_deref(), Some("2026-12-07T11:59:30+00:00"));
        assert_eq!(
            at("2026-12-01T08:00:00+01:00").as_deref(),
            Some("2026-12-01T07:00:00+00:00")
        );
        for bad in ["", "m", "10", "10w", "-5m", "yesterday", "99999999999999d"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
