//! The metrics every sspr process exports, under one name in both places they go:
//!
//! - a Prometheus registry (the maintained `prometheus-client` crate), served as
//!   `GET /metrics` in the Prometheus text format beside `/healthz` and `/readyz` on
//!   `SSPR_METRICS_ADDR`;
//! - OpenTelemetry instruments, exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! An OpenTelemetry instrument is named with the full Prometheus name (`..._seconds`,
//! `..._total`), so a collector that turns OTLP into Prometheus keeps the names identical.
//!
//! [`catalogue`] is the one list of metric names: dashboards and alert rules in
//! `deploy/observability/` may only query names it holds (a test checks them against what a
//! running stack serves). Label values are words from a small closed set (a channel, an outcome,
//! an endpoint name); never a user id, a destination, a code or anything else a user typed.

use std::sync::{Mutex, OnceLock};

use opentelemetry::KeyValue;
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::metrics::histogram::Histogram as PromHistogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Latency buckets for in-process calls (seconds): 0.5 ms to 10 s.
pub const CALL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for code delivery (seconds): 5 ms to 5 minutes, with 10 s (the delivery SLO) on a
/// boundary.
pub const DELIVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Buckets for one Argon2id hash (seconds).
pub const HASH_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
];

/// What kind of series a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Histogram,
    Gauge,
}

/// One entry of the catalogue: the exported name (as Prometheus shows it), what it measures,
/// and its label names.
#[derive(Clone, Copy, Debug)]
pub struct Descriptor {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

fn state() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Registry::default()))
}

fn meter() -> opentelemetry::metrics::Meter {
    opentelemetry::global::meter("sspr")
}

fn labels(names: &'static [&'static str], values: &[&str]) -> Labels {
    debug_assert_eq!(names.len(), values.len(), "label values for {names:?}");
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (*n, (*v).to_owned()))
        .collect()
}

fn attributes(names: &'static [&'static str], values: &[&str]) -> Vec<KeyValue> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| KeyValue::new(*n, (*v).to_owned()))
        .collect()
}

/// A monotonically increasing count. The name ends in `_total`.
pub struct Counter {
    d: Descriptor,
    prom: Family<Labels, PromCounter>,
    otel: opentelemetry::metrics::Counter<u64>,
}

impl Counter {
    fn new(d: Descriptor) -> Self {
        let prom = Family::<Labels, PromCounter>::default();
        // prometheus-client appends `_total` itself.
        let base = d.name.strip_suffix("_total").unwrap_or(d.name);
        lock(state()).register(base, d.help, prom.clone());
        let otel = meter().u64_counter(d.name).with_description(d.help).build();
        Counter { d, prom, otel }
    }

    /// Adds one for the series with these label values (in the order of the descriptor's labels).
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }

    pub fn add(&self, values: &[&str], n: u64) {
        self.prom
            .get_or_create(&labels(self.d.labels, values))
            .inc_by(n);
        self.otel.add(n, &attributes(self.d.labels, values));
    }

    /// The current count of one series (for tests and `sspr bench`).
    pub fn get(&self, values: &[&str]) -> u64 {
        self.prom
            .get_or_create(&labels(self.d.labels, values))
            .get()
    }
}

#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<PromHistogram> for Buckets {
    fn new_metric(&self) -> PromHistogram {
        PromHistogram::new(self.0.iter().copied())
    }
}

/// A distribution of values (durations in seconds).
pub struct Histogram {
    d: Descriptor,
    prom: Family<Labels, PromHistogram, Buckets>,
    otel: opentelemetry::metrics::Histogram<f64>,
}

impl Histogram {
    fn new(d: Descriptor, buckets: &'static [f64]) -> Self {
        let prom = Family::new_with_constructor(Buckets(buckets));
        lock(state()).register(d.name, d.help, prom.clone());
        let otel = meter()
            .f64_histogram(d.name)
            .with_description(d.help)
            .with_unit("s")
            .with_boundaries(buckets.to_vec())
            .build();
        Histogram { d, prom, otel }
    }

    pub fn observe(&self, values: &[&str], v: f64) {
        self.prom
            .get_or_create(&labels(self.d.labels, values))
            .observe(v);
        self.otel.record(v, &attributes(self.d.labels, values));
    }

    /// Records the time since `start`.
    pub fn observe_since(&self, values: &[&str], start: std::time::Instant) {
        self.observe(values, start.elapsed().as_secs_f64());
    }
}

/// A value that goes up and down: set from a reading (a backlog, a lag), or moved by
/// [`Gauge::add`] (work in flight).
pub struct Gauge {
    d: Descriptor,
    prom: Family<Labels, PromGauge>,
    otel: OtelGauge,
}

/// The one OpenTelemetry instrument behind a [`Gauge`]: a gauge for readings, an up-down
/// counter for work in flight.
enum OtelGauge {
    Set(opentelemetry::metrics::Gauge<i64>),
    Add(opentelemetry::metrics::UpDownCounter<i64>),
}

impl Gauge {
    fn new(d: Descriptor, updown: bool) -> Self {
        let prom = Family::<Labels, PromGauge>::default();
        lock(state()).register(d.name, d.help, prom.clone());
        let m = meter();
        let otel = if updown {
            OtelGauge::Add(
                m.i64_up_down_counter(d.name)
                    .with_description(d.help)
                    .build(),
            )
        } else {
            OtelGauge::Set(m.i64_gauge(d.name).with_description(d.help).build())
        };
        Gauge { d, prom, otel }
    }

    /// Sets the series to a reading. For gauges that are read, not moved.
    pub fn set(&self, values: &[&str], v: i64) {
        self.prom
            .get_or_create(&labels(self.d.labels, values))
            .set(v);
        match &self.otel {
            OtelGauge::Set(g) => g.record(v, &attributes(self.d.labels, values)),
            OtelGauge::Add(_) => debug_assert!(false, "{} is moved with add()", self.d.name),
        }
    }

    /// Moves the series by `delta`. For gauges of work in flight.
    pub fn add(&self, values: &[&str], delta: i64) {
        self.prom
            .get_or_create(&labels(self.d.labels, values))
            .inc_by(delta);
        match &self.otel {
            OtelGauge::Add(c) => c.add(delta, &attributes(self.d.labels, values)),
            OtelGauge::Set(_) => debug_assert!(false, "{} is set, not moved", self.d.name),
        }
    }

    pub fn get(&self, values: &[&str]) -> i64 {
        self.prom
            .get_or_create(&labels(self.d.labels, values))
            .get()
    }

    /// Adds one now and takes it away when the guard drops.
    pub fn track(&'static self, values: &[&str]) -> InFlight {
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        self.add(&refs, 1);
        InFlight {
            gauge: self,
            values,
        }
    }
}

/// Work in flight on a [`Gauge`]; dropping it takes the work away again.
pub struct InFlight {
    gauge: &'static Gauge,
    values: Vec<String>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let refs: Vec<&str> = self.values.iter().map(String::as_str).collect();
        self.gauge.add(&refs, -1);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

macro_rules! catalogue {
    ($( $field:ident : $kind:ident $(($extra:expr))? = $name:literal [$($label:literal),*] $help:literal; )*) => {
        /// Every metric sspr exports. Get it with [`catalogue()`].
        pub struct Catalogue {
            $( #[doc = $help] pub $field: $kind, )*
        }

        /// The descriptors of every metric in [`Catalogue`], in declaration order.
        pub const DESCRIPTORS: &[Descriptor] = &[
            $( Descriptor { name: $name, kind: Kind::$kind, help: $help, labels: &[$($label),*] }, )*
        ];

        impl Catalogue {
            fn build() -> Self {
                let mut d = DESCRIPTORS.iter().copied();
                let mut next = || d.next().unwrap_or_else(|| unreachable!("one descriptor per field"));
                Catalogue {
                    $( $field: catalogue!(@make $kind next() $(, $extra)?), )*
                }
            }
        }
    };
    (@make Counter $d:expr) => { Counter::new($d) };
    (@make Histogram $d:expr, $buckets:expr) => { Histogram::new($d, $buckets) };
    (@make Gauge $d:expr, $updown:expr) => { Gauge::new($d, $updown) };
}

catalogue! {
    // --- code delivery (notification) ---------------------------------------------------------
    code_delivery_duration: Histogram(DELIVERY_BUCKETS) = "sspr_code_delivery_duration_seconds"
        ["channel", "outcome"]
        "Time from a code being issued to the mail or SMS provider accepting it (outcome accepted), or to the delivery giving up (failed, expired). channel: email, sms, voice";
    code_delivery_receipt_duration: Histogram(DELIVERY_BUCKETS) = "sspr_code_delivery_receipt_duration_seconds"
        ["channel", "outcome"]
        "Time from a code being issued to the provider's delivery receipt. outcome: delivered, failed, undeliverable";
    delivery_attempts: Counter = "sspr_delivery_attempts_total"
        ["channel", "result"]
        "Delivery attempts by result: sent, retry (a transient failure, to be retried), failed (given up), dropped (expired or already final)";
    sms_breaker_open: Gauge(false) = "sspr_sms_breaker_open"
        []
        "1 while the SMS circuit breaker is open (SMS sends refused), else 0";
    jetstream_consumer_pending: Gauge(false) = "sspr_jetstream_consumer_pending"
        ["stream", "consumer"]
        "Messages in the stream not yet delivered to the consumer (its lag)";
    jetstream_consumer_ack_pending: Gauge(false) = "sspr_jetstream_consumer_ack_pending"
        ["stream", "consumer"]
        "Messages delivered to the consumer and not yet acknowledged";
    jetstream_consumer_redelivered: Gauge(false) = "sspr_jetstream_consumer_redelivered"
        ["stream", "consumer"]
        "Messages the server currently counts as redelivered to the consumer";
    jetstream_redeliveries: Counter = "sspr_jetstream_redeliveries_total"
        ["stream", "consumer"]
        "Messages this process received for at least the second time";

    // --- the reset flow (verification) --------------------------------------------------------
    reset_outcomes: Counter = "sspr_reset_outcomes_total"
        ["outcome", "reason"]
        "Reset flow steps by outcome (started, code_sent, verified, completed, blocked, failed) and reason (ok, or why it was blocked or failed)";
    throttled: Counter = "sspr_throttled_total"
        ["scope"]
        "Requests refused by a throttle, by the throttle's scope";
    sms_sends_refused: Counter = "sspr_sms_sends_refused_total"
        ["reason"]
        "SMS and voice codes refused by the SMS-pumping defences, by the limit's name (phone_country_not_allowed, phone_budget_per_hour, phone_budget_per_prefix_per_hour, sms_breaker_open)";

    // --- RPC: NATS endpoints and gRPC methods ------------------------------------------------
    nats_server_duration: Histogram(CALL_BUCKETS) = "sspr_nats_server_duration_seconds"
        ["service", "endpoint", "status"]
        "Time a NATS endpoint took to answer, by status (ok, or the error code word)";
    nats_client_duration: Histogram(CALL_BUCKETS) = "sspr_nats_client_duration_seconds"
        ["endpoint", "status"]
        "Time a NATS request took as its caller saw it, by status (ok, or the error code word)";
    grpc_server_duration: Histogram(CALL_BUCKETS) = "sspr_grpc_server_duration_seconds"
        ["method", "code"]
        "Time a gRPC call took in the gateway, by full method name and gRPC status code name";
    grpc_server_in_flight: Gauge(true) = "sspr_grpc_server_in_flight"
        []
        "gRPC calls in progress in the gateway";

    // --- outbox (every service that owns data) ------------------------------------------------
    outbox_backlog: Gauge(false) = "sspr_outbox_backlog"
        ["service"]
        "Events committed to the outbox and not yet published to JetStream";
    outbox_oldest_age: Gauge(false) = "sspr_outbox_oldest_age_seconds"
        ["service"]
        "Age in seconds of the oldest unpublished outbox event (0 when none)";
    outbox_published: Counter = "sspr_outbox_published_total"
        ["service"]
        "Outbox events published to JetStream";

    // --- password hashing (directory, enrolment) ----------------------------------------------
    argon2_duration: Histogram(HASH_BUCKETS) = "sspr_argon2_duration_seconds"
        ["operation"]
        "Time one Argon2id operation took (operation: hash, verify)";
    argon2_in_flight: Gauge(true) = "sspr_argon2_in_flight"
        []
        "Argon2id operations in progress";
}

/// The metrics of this process, registered on first use.
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(Catalogue::build)
}

/// Runs one Argon2id computation (`operation`: `hash` or `verify`), timed in
/// `sspr_argon2_duration_seconds{operation}` and counted in `sspr_argon2_in_flight` while it
/// runs. Call it around the computation alone (on the blocking pool, not around a queue wait).
pub fn argon2<T>(operation: &'static str, work: impl FnOnce() -> T) -> T {
    let metrics = catalogue();
    let _in_flight = metrics.argon2_in_flight.track(&[]);
    let started = std::time::Instant::now();
    let result = work();
    metrics.argon2_duration.observe_since(&[operation], started);
    result
}

/// The registry in the Prometheus text format (version 0.0.4), as `/metrics` serves it.
pub fn encode() -> String {
    let _ = catalogue();
    let mut out = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &lock(state())).is_err() {
        out.clear();
    }
    // The encoder leaves out a family with no series yet; every metric is announced anyway, so
    // a scrape always shows the whole catalogue.
    for d in DESCRIPTORS {
        if !out.contains(&format!("# TYPE {} ", d.name)) {
            let kind = match d.kind {
                Kind::Counter => "counter",
                Kind::Histogram => "histogram",
                Kind::Gauge => "gauge",
            };
            out.push_str(&format!(
                "# HELP {} {}.\n# TYPE {} {kind}\n",
                d.name, d.help, d.name
            ));
        }
    }
    out
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_descriptor_is_served_with_its_exact_name() {
        let c = catalogue();
        c.delivery_attempts.inc(&["email", "sent"]);
        c.code_delivery_duration
            .observe(&["email", "accepted"], 0.012);
        c.argon2_in_flight.add(&[], 1);
        c.outbox_backlog.set(&["directory"], 3);
        let text = encode();
        for d in DESCRIPTORS {
            assert!(
                text.contains(&format!("# TYPE {} ", d.name)),
                "{} missing from:\n{text}",
                d.name
            );
        }
        assert!(text.contains("sspr_delivery_attempts_total{channel=\"email\",result=\"sent\"} 1"));
        assert!(text.contains(
            "sspr_code_delivery_duration_seconds_bucket{le=\"0.025\",channel=\"email\",outcome=\"accepted\"} 1"
        ) || text.contains(
            "sspr_code_delivery_duration_seconds_bucket{channel=\"email\",outcome=\"accepted\",le=\"0.025\"} 1"
        ), "{text}");
        assert!(text.contains("sspr_outbox_backlog{service=\"directory\"} 3"));
    }

    #[test]
    fn names_follow_the_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for d in DESCRIPTORS {
            assert!(seen.insert(d.name), "{} twice", d.name);
            assert!(d.name.starts_with("sspr_"), "{}", d.name);
            match d.kind {
                Kind::Counter => assert!(d.name.ends_with("_total"), "{}", d.name),
                Kind::Histogram => assert!(d.name.ends_with("_seconds"), "{}", d.name),
                Kind::Gauge => assert!(!d.name.ends_with("_total"), "{}", d.name),
            }
        }
    }
}
