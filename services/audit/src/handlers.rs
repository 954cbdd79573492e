//! The NATS endpoint of the audit service: `sspr.rpc.audit.list_events`.
//!
//! Decode, check the query ([`crate::domain::query`]), read one page, reply. Only the filters
//! that are safe to record (user id, kind) become span fields.

use sspr_bus::subjects::rpc::audit as subjects;
use sspr_bus::{RequestContext, Router, RpcError};
use sspr_proto::internal::audit::v1::{self as proto, ListEventsRequest, ListEventsResponse};
use sspr_proto::time::{from_timestamp, timestamp};

use crate::SERVICE;
use crate::adapters::store::AuditStore;
use crate::domain::query::{InvalidQuery, ListQuery, RawQuery};
use crate::domain::record::AuditRecord;
use crate::error::Error;

fn time(
    field: &'static str,
    t: Option<&prost_types::Timestamp>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Error> {
    match t {
        None => Ok(None),
        Some(t) => from_timestamp(t)
            .map(Some)
            .ok_or(Error::Invalid(InvalidQuery {
                field,
                problem: "is not a valid timestamp",
            })),
    }
}

fn to_proto(r: AuditRecord) -> proto::AuditRecord {
    proto::AuditRecord {
        event_id: r.event_id,
        occurred_at: Some(timestamp(r.occurred_at)),
        kind: r.kind,
        user_id: r.user_id,
        flow_id: r.flow_id,
        actor: r.actor,
        outcome: r.outcome,
        trace_id: r.trace_id,
        source: r.source,
        summary_json: r.summary.to_string(),
    }
}

/// One page of the audit log.
#[tracing::instrument(skip_all, fields(user_id = %req.user_id, kind = %req.kind))]
pub async fn list_events(
    store: &AuditStore,
    req: ListEventsRequest,
) -> Result<ListEventsResponse, Error> {
    let query = ListQuery::parse(RawQuery {
        user_id: &req.user_id,
        kind: &req.kind,
        from: time("from", req.from.as_ref())?,
        to: time("to", req.to.as_ref())?,
        page_size: req.page_size,
        page_token: &req.page_token,
    })?;
    let page = store.list(&query).await?;
    Ok(ListEventsResponse {
        records: page.records.into_iter().map(to_proto).collect(),
        next_page_token: page.next.map(|c| c.encode()).unwrap_or_default(),
    })
}

/// The service's router.
pub fn router(store: AuditStore) -> Router {
    Router::new(SERVICE, "sspr audit log").route(
        subjects::LIST_EVENTS,
        move |_ctx: RequestContext, req: ListEventsRequest| {
            let store = store.clone();
            async move { list_events(&store, req).await.map_err(RpcError::from) }
        },
    )
}
