//! An OTLP/gRPC trace and metrics receiver for tests: what an OpenTelemetry collector would
//! receive.
//!
//! It implements the real `opentelemetry.proto.collector.trace.v1.TraceService` and
//! `opentelemetry.proto.collector.metrics.v1.MetricsService` over tonic, so
//! services export to it exactly as to a production collector (`OTEL_EXPORTER_OTLP_ENDPOINT` =
//! [`OtlpReceiver::endpoint`]). Invariant: every span of every export request is kept, flattened,
//! with the `service.name` of its resource, so a test can follow one trace across processes.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::collector::Collector;

/// One span as received, with ids in lower-case hex (as in a `traceparent`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `service.name` of the resource that exported the span (empty if missing).
    pub service_name: String,
    /// `internal`, `server`, `client`, `producer`, `consumer` or `unspecified`.
    pub kind: String,
    /// Span attributes; non-string values rendered as text (`true`, `42`, `[a, b]`).
    pub attributes: Vec<(String, String)>,
    /// Name of the instrumentation scope (the tracer's name).
    pub scope_name: String,
    /// `unset`, `ok` or `error`.
    pub status: String,
    /// The status message (set with an error status).
    pub status_message: String,
    /// The span's links, as (trace id, span id) in lower-case hex: the contexts of other
    /// traces the span's work was done for (a batch publishing messages of several requests).
    pub links: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// The value of attribute `key`, if present.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True when the span links to a span of trace `trace_id`.
    pub fn links_to_trace(&self, trace_id: &str) -> bool {
        self.links.iter().any(|(t, _)| t == trace_id)
    }

    /// True for a span without a parent.
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_empty()
    }
}

/// One data point of a metric as received: the metric's name and kind, the exporting
/// service, the point's attributes, and its value (a sum's or gauge's value, a histogram's
/// count).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMetricPoint {
    pub name: String,
    /// `sum`, `gauge`, `histogram` or `exponential_histogram`.
    pub kind: String,
    pub unit: String,
    pub service_name: String,
    pub attributes: Vec<(String, String)>,
    pub value: f64,
}

impl ReceivedMetricPoint {
    /// The value of attribute `key`, rendered as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A running OTLP gRPC receiver on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Arc<Collector<ReceivedSpan>>,
    metrics: Arc<Collector<ReceivedMetricPoint>>,
    server: JoinHandle<()>,
}

impl OtlpReceiver {
    /// Binds a random port on 127.0.0.1 and starts serving the OTLP TraceService.
    pub async fn start() -> anyhow::Result<OtlpReceiver> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .context("binding the OTLP receiver")?;
        let addr = listener.local_addr().context("OTLP receiver address")?;
        let spans = Collector::new();
        let metrics = Collector::new();
        let service = TraceServiceServer::new(Receiver {
            spans: Arc::clone(&spans),
        });
        let metrics_service = MetricsServiceServer::new(MetricsReceiver {
            points: Arc::clone(&metrics),
        });
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tokio::spawn(async move {
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .add_service(metrics_service)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::warn!(error = %e, "OTLP receiver stopped");
            }
        });
        Ok(OtlpReceiver {
            addr,
            spans,
            metrics,
            server,
        })
    }

    /// `http://127.0.0.1:<port>`, the form `OTEL_EXPORTER_OTLP_ENDPOINT` takes.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every span received so far, in order of arrival.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.snapshot()
    }

    /// The spans of one trace received so far.
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }

    /// Every metric data point received so far, in order of arrival (a metric exported
    /// periodically shows once per export).
    pub fn metric_points(&self) -> Vec<ReceivedMetricPoint> {
        self.metrics.snapshot()
    }

    /// Forgets the spans received so far.
    pub fn clear(&self) {
        self.spans.clear();
    }

    /// The first span matching `pred`, waiting up to `timeout`.
    pub async fn wait_for(
        &self,
        pred: impl FnMut(&ReceivedSpan) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<ReceivedSpan> {
        self.spans.wait_for("span", pred, timeout).await
    }

    /// All spans once there are at least `n`, waiting up to `timeout`.
    pub async fn wait_for_count(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedSpan>> {
        self.spans.wait_for_count("spans", n, timeout).await
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Receiver {
    spans: Arc<Collector<ReceivedSpan>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref())
                .map(render_value)
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                let scope_name = scope_spans.scope.map(|s| s.name).unwrap_or_default();
                for span in scope_spans.spans {
                    let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
                    let (status, status_message) = match span.status {
                        Some(s) => (
                            StatusCode::try_from(s.code).unwrap_or(StatusCode::Unset),
                            s.message,
                        ),
                        None => (StatusCode::Unset, String::new()),
                    };
                    self.spans.push(ReceivedSpan {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        service_name: service_name.clone(),
                        kind: kind_name(kind).to_owned(),
                        attributes: span.attributes.iter().map(render_attribute).collect(),
                        scope_name: scope_name.clone(),
                        status: status_name(status).to_owned(),
                        status_message,
                        links: span
                            .links
                            .iter()
                            .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

struct MetricsReceiver {
    points: Arc<Collector<ReceivedMetricPoint>>,
}

#[tonic::async_trait]
impl MetricsService for MetricsReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        for resource_metrics in request.into_inner().resource_metrics {
            let service_name = resource_metrics
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref())
                .map(render_value)
                .unwrap_or_default();
            for scope_metrics in resource_metrics.scope_metrics {
                for m in scope_metrics.metrics {
                    let point =
                        |kind: &str, attributes: &[KeyValue], value: f64| ReceivedMetricPoint {
                            name: m.name.clone(),
                            kind: kind.to_owned(),
                            unit: m.unit.clone(),
                            service_name: service_name.clone(),
                            attributes: attributes.iter().map(render_attribute).collect(),
                            value,
                        };
                    let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| {
                        match p.value {
                            Some(number_data_point::Value::AsDouble(v)) => v,
                            Some(number_data_point::Value::AsInt(v)) => v as f64,
                            None => 0.0,
                        }
                    };
                    match &m.data {
                        Some(metric::Data::Sum(sum)) => {
                            for p in &sum.data_points {
                                self.points.push(point("sum", &p.attributes, number(p)));
                            }
                        }
                        Some(metric::Data::Gauge(gauge)) => {
                            for p in &gauge.data_points {
                                self.points.push(point("gauge", &p.attributes, number(p)));
                            }
                        }
                        Some(metric::Data::Histogram(h)) => {
                            for p in &h.data_points {
                                self.points
                                    .push(point("histogram", &p.attributes, p.count as f64));
                            }
                        }
                        Some(metric::Data::ExponentialHistogram(h)) => {
                            for p in &h.data_points {
                                self.points.push(point(
                                    "exponential_histogram",
                                    &p.attributes,
                                    p.count as f64,
                                ));
                            }
                        }
                        Some(metric::Data::Summary(_)) | None => {}
                    }
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

fn kind_name(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Unspecified => "unspecified",
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

fn status_name(code: StatusCode) -> &'static str {
    match code {
        StatusCode::Unset => "unset",
        StatusCode::Ok => "ok",
        StatusCode::Error => "error",
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn render_attribute(kv: &KeyValue) -> (String, String) {
    (
        kv.key.clone(),
        kv.value.as_ref().map(render_value).unwrap_or_default(),
    )
}

fn render_value(value: &AnyValue) -> String {
    match &value.value {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(render_value).collect();
            format!("[{}]", items.join(", "))
        }
        Some(any_value::Value::KvlistValue(l)) => {
            let items: Vec<String> = l
                .values
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}",
                        kv.key,
                        kv.value.as_ref().map(render_value).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Some(any_value::Value::StringValueStrindex(i)) => format!("#{i}"),
    }
}

#[cfg(test)]
mod tests {
    use super::hex;

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x0a, 0xff, 0x00]), "0aff00");
        assert_eq!(hex(&[]), "");
    }
}
