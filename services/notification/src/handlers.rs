//! NATS endpoints of the notification service: delivery status look-ups.
//!
//! `sspr.rpc.notification.get_delivery`: a malformed id is INVALID_ARGUMENT, an unknown one
//! NOT_FOUND. Records hold no code and no destination, so the answer never does either. The
//! answer carries the record's timestamps (`sent_at`, `finished_at`), whether it was
//! dead-lettered, and the provider (with its message id when it gave one).

use std::sync::Arc;

use sspr_bus::{Router, RpcError, subjects};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::internal::notification::v1::{
    DeliveryStatus as ProtoStatus, GetDeliveryRequest, GetDeliveryResponse,
};
use sspr_proto::time::timestamp;

use crate::domain::delivery::{Channel, DeliveryId, DeliveryStatus};
use crate::ports::{DeliveryRecord, DeliveryStore};

/// The service's endpoints.
pub fn router(store: Arc<dyn DeliveryStore>) -> Router {
    Router::new(crate::SERVICE, "sspr notification: code delivery status").route(
        subjects::rpc::notification::GET_DELIVERY,
        move |_ctx, req: GetDeliveryRequest| {
            let store = Arc::clone(&store);
            async move { get_delivery(store.as_ref(), req).await }
        },
    )
}

#[tracing::instrument(skip_all, fields(delivery_id = tracing::field::Empty))]
pub async fn get_delivery(
    store: &dyn DeliveryStore,
    req: GetDeliveryRequest,
) -> Result<GetDeliveryResponse, RpcError> {
    let id = DeliveryId::parse(&req.delivery_id).map_err(|_| {
        RpcError::invalid_argument("delivery_id must be 1 to 128 characters from [A-Za-z0-9._-]")
    })?;
    tracing::Span::current().record("delivery_id", id.as_str());
    match store.get(&id).await {
        Ok(Some(record)) => Ok(to_response(record)),
        Ok(None) => Err(RpcError::not_found("no such delivery")),
        Err(e) => {
            tracing::error!(error = %e, "reading a delivery record failed");
            Err(RpcError::internal())
        }
    }
}

fn to_response(r: DeliveryRecord) -> GetDeliveryResponse {
    let status = match r.status {
        DeliveryStatus::Queued => ProtoStatus::Queued,
        DeliveryStatus::Sending => ProtoStatus::Sending,
        DeliveryStatus::Sent => ProtoStatus::Sent,
        DeliveryStatus::Delivered => ProtoStatus::Delivered,
        DeliveryStatus::Failed => ProtoStatus::Failed,
        DeliveryStatus::Expired => ProtoStatus::Expired,
    };
    let kind = match r.channel {
        Channel::Email => MethodKind::Email,
        Channel::Sms => MethodKind::Sms,
        Channel::Voice => MethodKind::Voice,
    };
    GetDeliveryResponse {
        delivery_id: r.id.as_str().to_owned(),
        status: status as i32,
        kind: kind as i32,
        attempts: r.attempts,
        created_at: Some(timestamp(r.created_at)),
        updated_at: Some(timestamp(r.updated_at)),
        last_error: r.last_error.unwrap_or_default(),
        user_id: r.user_id,
        flow_id: r.flow_id,
        sent_at: r.sent_at.map(timestamp),
        finished_at: r.finished_at.map(timestamp),
        dead_lettered: r.dead_lettered,
        provider: r.provider,
        provider_message_id: r.provider_message_id.unwrap_or_default(),
    }
}
