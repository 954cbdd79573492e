//! Global tracing subscriber and OpenTelemetry tracer provider.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid OTLP exporter settings: {0}")]
    Exporter(String),
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(String),
}

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes spans not yet exported.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter. Call once, at the end of `main`.
    pub fn shutdown(self) {
        if let Some(Err(e)) = self.meters.map(|m| m.shutdown()) {
            eprintln!("telemetry: shutting down the metrics exporter failed: {e}");
        }
        if let Some(provider) = self.provider {
            if let Err(e) = provider.force_flush() {
                eprintln!("telemetry: flushing spans failed: {e}");
            }
            if let Err(e) = provider.shutdown() {
                eprintln!("telemetry: shutting down the exporter failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber for `default_service_name` (overridden by
/// `OTEL_SERVICE_NAME`). Must run inside a Tokio runtime when an OTLP endpoint is set.
///
/// When a global subscriber is already installed (several services in one process, or tests)
/// this keeps it and returns a handle that owns nothing.
pub fn init(default_service_name: &str) -> Result<Telemetry, TelemetryError> {
    let service_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| default_service_name.to_owned());
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(&spec).map_err(|e| TelemetryError::Filter(e.to_string()))?
        }
        _ => EnvFilter::new("info,async_nats=warn,sqlx=warn,sea_orm=warn,h2=warn,tower=warn"),
    };

    let mut builder = provider_builder(&service_name);
    let exporting = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .map(|v| !v.trim().is_empty())
        .unwrap_or(false);
    let mut meters = None;
    if exporting {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
        let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        meters = Some(
            SdkMeterProvider::builder()
                .with_resource(resource(&service_name))
                .with_periodic_exporter(metric_exporter)
                .build(),
        );
    }
    let mut telemetry = install(
        builder.build(),
        filter,
        BoxMakeWriter::new(std::io::stderr),
        true,
    );
    // The meter provider goes in before the first instrument is made (the catalogue), so every
    // metric reaches OTLP as well as /metrics.
    if telemetry.provider.is_some() {
        if let Some(meters) = meters {
            opentelemetry::global::set_meter_provider(meters.clone());
            telemetry.meters = Some(meters);
        }
    } else if let Some(meters) = meters {
        let _ = meters.shutdown();
    }
    let _ = crate::metrics::catalogue();
    Ok(telemetry)
}

/// For tests that must see exactly what production emits (the secret-hygiene test): installs
/// the same subscriber as [`init`] (the same log layer and the same OpenTelemetry layer and
/// tracer provider), but with the log filter `filter` (e.g. `trace`), log lines written
/// without colours to `log_writer`, and every finished span handed at once to `exporter`.
///
/// Like [`init`], the first caller in a process wins; call it before anything else installs a
/// subscriber (e.g. first thing in a test binary of its own).
pub fn init_with_exporter<E>(
    service_name: &str,
    filter: &str,
    exporter: E,
    log_writer: BoxMakeWriter,
) -> Result<Telemetry, TelemetryError>
where
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
{
    let filter = EnvFilter::try_new(filter).map_err(|e| TelemetryError::Filter(e.to_string()))?;
    let provider = provider_builder(service_name)
        .with_simple_exporter(exporter)
        .build();
    Ok(install(provider, filter, log_writer, false))
}

/// async-nats logs every protocol operation at TRACE with its content: message payloads (the
/// owner-only requests carry passwords and codes, replies carry session ids) and the CONNECT
/// line (the NATS password). Those events never reach the log, whatever `RUST_LOG` asks for;
/// its DEBUG and higher events (connection state, subjects, no payloads) still do. Proven by
/// the secret-hygiene test (`tests/tests/attack_secrets.rs`), which logs at TRACE.
fn no_protocol_dumps()
-> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(|meta| {
        !(*meta.level() == tracing::Level::TRACE && meta.target().starts_with("async_nats"))
    })
}

fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .build()
}

fn provider_builder(service_name: &str) -> opentelemetry_sdk::trace::TracerProviderBuilder {
    SdkTracerProvider::builder().with_resource(resource(service_name))
}

fn install(
    provider: SdkTracerProvider,
    filter: EnvFilter,
    log_writer: BoxMakeWriter,
    ansi: bool,
) -> Telemetry {
    let tracer = provider.tracer("sspr");
    let dispatch = crate::log_format::DispatchSlot::default();
    let format = tracing_subscriber::fmt::format().with_target(true);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(log_writer)
        .fmt_fields(crate::log_format::TraceIdFields::default());
    // Production keeps the default (colours unless NO_COLOR is set); captures want plain text.
    let (fmt, format) = if ansi {
        (fmt, format)
    } else {
        (fmt.with_ansi(false), format.with_ansi(false))
    };
    // Every line inside a traced span ends in `trace_id=<32 hex>` (see `log_format`).
    let fmt = fmt
        .event_format(crate::log_format::TraceIdFormat {
            inner: format,
            dispatch: dispatch.clone(),
        })
        .with_filter(filter.and(no_protocol_dumps()));
    // Spans reach OpenTelemetry whatever the log level, so traces stay whole.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let installed = tracing_subscriber::registry()
        .with(crate::log_format::DispatchCapture(dispatch))
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    if installed {
        opentelemetry::global::set_tracer_provider(provider.clone());
        Telemetry {
            provider: Some(provider),
            meters: None,
        }
    } else {
        let _ = provider.shutdown();
        Telemetry {
            provider: None,
            meters: None,
        }
    }
}
