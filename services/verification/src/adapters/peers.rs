//! NATS clients of the services verification consults: directory, policy and enrolment.
//!
//! Each call is a protobuf request/reply through [`Bus::request`], which carries the current
//! trace context. Requests to `set_password` carry a password: it is never logged here.

use sspr_bus::subjects::rpc::{directory, enrolment, policy};
use sspr_bus::{Bus, BusError};
use sspr_proto::internal::directory::v1 as dir;
use sspr_proto::internal::enrolment::v1 as enr;
use sspr_proto::internal::policy::v1 as pol;

/// The other services, reached over the bus.
#[derive(Clone)]
pub struct Peers {
    bus: Bus,
}

impl Peers {
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }

    /// The directory's record of `user_id`, `None` when there is no such user.
    pub async fn get_user(&self, user_id: &str) -> Result<Option<dir::UserRecord>, BusError> {
        let resp: dir::GetUserResponse = self
            .bus
            .request(
                directory::GET_USER,
                &dir::GetUserRequest {
                    user_id: user_id.to_owned(),
                },
            )
            .await?;
        Ok(if resp.found { resp.user } else { None })
    }

    /// What the SSPR policy says for this user.
    pub async fn evaluate(
        &self,
        request: pol::EvaluateRequest,
    ) -> Result<pol::EvaluateResponse, BusError> {
        self.bus.request(policy::EVALUATE, &request).await
    }

    /// The user's confirmed methods, masked.
    pub async fn list_methods(&self, user_id: &str) -> Result<enr::ListMethodsResponse, BusError> {
        self.bus
            .request(
                enrolment::LIST_METHODS,
                &enr::ListMethodsRequest {
                    user_id: user_id.to_owned(),
                },
            )
            .await
    }

    /// The full destination of one method, to address a delivery.
    pub async fn get_destination(
        &self,
        user_id: &str,
        method_id: &str,
    ) -> Result<enr::GetDestinationResponse, BusError> {
        self.bus
            .request(
                enrolment::GET_DESTINATION,
                &enr::GetDestinationRequest {
                    user_id: user_id.to_owned(),
                    method_id: method_id.to_owned(),
                },
            )
            .await
    }

    /// Whether a typed destination names one confirmed method's destination.
    pub async fn match_destination(
        &self,
        user_id: &str,
        method_id: &str,
        candidate: &str,
    ) -> Result<enr::MatchDestinationResponse, BusError> {
        self.bus
            .request(
                enrolment::MATCH_DESTINATION,
                &enr::MatchDestinationRequest {
                    user_id: user_id.to_owned(),
                    method_id: method_id.to_owned(),
                    candidate: candidate.to_owned(),
                },
            )
            .await
    }

    /// Asks the directory to set the password (it checks it against the password policy).
    pub async fn set_password(&self, request: &dir::SetPasswordRequest) -> Result<(), BusError> {
        let _: dir::SetPasswordResponse =
            self.bus.request(directory::SET_PASSWORD, request).await?;
        Ok(())
    }
}
