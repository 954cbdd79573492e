//! [`Helpdesk`] over NATS: the policy service's `get_policy`, read for every mail so that a
//! change of the contact shows in the next mail (the request is small).
//!
//! Invariants: a look-up waits at most [`LOOKUP_TIMEOUT`], far less than the bus's default
//! request timeout, because it sits on the code's path to the user: when the policy service
//! or NATS is slow or away, the mail goes at once with the last contact this process saw (or
//! none), instead of holding the code for seconds. Any failure without a remembered contact is
//! [`LookupError::Unavailable`]; callers decide whether to mail without the contact.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sspr_bus::Bus;
use sspr_bus::subjects::rpc::policy;
use sspr_proto::internal::policy::v1::{GetPolicyRequest, GetPolicyResponse};

use crate::ports::{Helpdesk, LookupError};

/// Longest wait for the policy service's answer.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// [`Helpdesk`] on the bus.
pub struct BusHelpdesk {
    bus: Bus,
    /// The last contact the policy service answered.
    last: Mutex<Option<String>>,
}

impl BusHelpdesk {
    pub fn new(bus: Bus) -> Self {
        Self {
            bus,
            last: Mutex::new(None),
        }
    }

    fn remembered(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl Helpdesk for BusHelpdesk {
    async fn contact(&self) -> Result<String, LookupError> {
        let lookup = self
            .bus
            .request::<_, GetPolicyResponse>(policy::GET_POLICY, &GetPolicyRequest {});
        let failure = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(resp)) => {
                let contact = resp.policy.map(|p| p.helpdesk_contact).unwrap_or_default();
                *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(contact.clone());
                return Ok(contact);
            }
            Ok(Err(e)) => format!("policy get_policy: {e}"),
            Err(_) => format!(
                "policy get_policy did not answer within {} ms",
                LOOKUP_TIMEOUT.as_millis()
            ),
        };
        match self.remembered() {
            Some(contact) => {
                tracing::warn!(reason = %failure, "helpdesk contact look-up failed; using the last one seen");
                Ok(contact)
            }
            None => Err(LookupError::Unavailable(failure)),
        }
    }
}
