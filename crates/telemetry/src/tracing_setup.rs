//! Global tracing subscriber and OpenTelemetry tracer provider.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
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
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter. Call once, at the end of `main`.
    pub fn shutdown(self) {
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

    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service_name.clone())
            .build(),
    );
    let exporting = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .map(|v| !v.trim().is_empty())
        .unwrap_or(false);
    if exporting {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("sspr");

    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_filter(filter);
    // Spans reach OpenTelemetry whatever the log level, so traces stay whole.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let installed = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    if installed {
        opentelemetry::global::set_tracer_provider(provider.clone());
        Ok(Telemetry {
            provider: Some(provider),
        })
    } else {
        let _ = provider.shutdown();
        Ok(Telemetry { provider: None })
    }
}
