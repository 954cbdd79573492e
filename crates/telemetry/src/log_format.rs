//! The log line format: `tracing-subscriber`'s full text format, plus the OpenTelemetry trace
//! id of the span the event happened in, as a last field `trace_id=<32 hex digits>`.
//!
//! So a log line can be found from a trace (and a trace from a log line) in any log store.
//! Lines emitted outside any traced span carry no `trace_id`. The trace id is that of the
//! nearest enclosing span the OpenTelemetry layer knows (it only sees INFO and higher spans),
//! whatever the log filter lets through: a WARN line inside an INFO span that the log filter
//! hides still carries its trace id.
//!
//! How: [`TraceIdFormat`] looks the trace id up before the line is written and leaves it for
//! [`TraceIdFields`], which writes it right after the event's own fields (so colours and the
//! rest of the line stay exactly as `tracing-subscriber` writes them). The span lookup goes
//! through the subscriber's [`Dispatch`], captured once by [`DispatchCapture`].

use std::cell::Cell;
use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::{TraceContextExt, TraceId};
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full, Writer};
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::{LookupSpan, Registry};

/// Where the subscriber's dispatch is kept once it is registered.
pub(crate) type DispatchSlot = Arc<OnceLock<WeakDispatch>>;

thread_local! {
    /// The trace id of the event being formatted on this thread, waiting for its fields.
    static PENDING: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// A layer that does nothing but remember the dispatch it is part of.
pub(crate) struct DispatchCapture(pub(crate) DispatchSlot);

impl<S: Subscriber> Layer<S> for DispatchCapture {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// The event formatter: the full format, with the trace id handed to [`TraceIdFields`].
pub(crate) struct TraceIdFormat {
    pub(crate) inner: Format<Full, SystemTime>,
    pub(crate) dispatch: DispatchSlot,
}

impl<S> FormatEvent<S, TraceIdFields> for TraceIdFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, TraceIdFields>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let trace_id = self
            .dispatch
            .get()
            .and_then(WeakDispatch::upgrade)
            .and_then(|dispatch| trace_id_of(event, &dispatch));
        PENDING.with(|p| p.set(trace_id));
        let result = self.inner.format_event(ctx, writer, event);
        PENDING.with(|p| p.set(None));
        result
    }
}

/// The field formatter: the default one, plus ` trace_id=…` after an event's fields.
/// Span fields (formatted when a span is created or recorded) never get it.
#[derive(Default)]
pub(crate) struct TraceIdFields {
    inner: DefaultFields,
}

impl<'writer> FormatFields<'writer> for TraceIdFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        self.inner.format_fields(writer.by_ref(), fields)?;
        match PENDING.with(Cell::take) {
            Some(trace_id) => write!(writer, " trace_id={trace_id}"),
            None => Ok(()),
        }
    }
}

/// The trace id of the nearest span around `event` that has a valid OpenTelemetry context.
fn trace_id_of(event: &Event<'_>, dispatch: &Dispatch) -> Option<TraceId> {
    let registry = dispatch.downcast_ref::<Registry>()?;
    let start = match event.parent() {
        Some(parent) => parent.clone(),
        None if event.is_contextual() => dispatch.current_span().id()?.clone(),
        None => return None,
    };
    let span = registry.span(&start)?;
    span.scope().find_map(|s| {
        let cx = tracing_opentelemetry::get_otel_context(&s.id(), dispatch)?;
        let span = cx.span();
        let context = span.span_context();
        context.is_valid().then(|| context.trace_id())
    })
}
