//! [`Helpdesk`] over NATS: the policy service's `get_policy`, read for every mail so that a
//! change of the contact shows in the next mail (the request is small and mails are few).
//!
//! Invariant: any failure is [`LookupError::Unavailable`]; callers decide whether to mail
//! without the contact.

use async_trait::async_trait;
use sspr_bus::Bus;
use sspr_bus::subjects::rpc::policy;
use sspr_proto::internal::policy::v1::{GetPolicyRequest, GetPolicyResponse};

use crate::ports::{Helpdesk, LookupError};

/// [`Helpdesk`] on the bus.
#[derive(Clone)]
pub struct BusHelpdesk {
    bus: Bus,
}

impl BusHelpdesk {
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }
}

#[async_trait]
impl Helpdesk for BusHelpdesk {
    async fn contact(&self) -> Result<String, LookupError> {
        let resp: GetPolicyResponse = self
            .bus
            .request(policy::GET_POLICY, &GetPolicyRequest {})
            .await
            .map_err(|e| LookupError::Unavailable(format!("policy get_policy: {e}")))?;
        Ok(resp.policy.map(|p| p.helpdesk_contact).unwrap_or_default())
    }
}
