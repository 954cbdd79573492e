//! The directory and enrolment services over NATS, as the [`Population`] of a policy preview.
//!
//! Only ids, names, groups, flags and method kinds travel here: never a destination.

use sspr_bus::Bus;
use sspr_bus::subjects::rpc;
use sspr_proto::internal::directory::v1 as directory;
use sspr_proto::internal::enrolment::v1 as enrolment;

use crate::error::Error;
use crate::ports::Population;

/// [`Population`] asking `sspr.rpc.directory.list_users` and
/// `sspr.rpc.enrolment.list_method_kinds`.
#[derive(Clone)]
pub struct BusPopulation {
    bus: Bus,
}

impl BusPopulation {
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }
}

#[async_trait::async_trait]
impl Population for BusPopulation {
    #[tracing::instrument(skip_all, fields(limit), err)]
    async fn list_users(
        &self,
        after_user_id: &str,
        limit: u32,
    ) -> Result<directory::ListUsersResponse, Error> {
        let request = directory::ListUsersRequest {
            page_size: limit,
            after_user_id: after_user_id.to_owned(),
        };
        Ok(self
            .bus
            .request(rpc::directory::LIST_USERS, &request)
            .await?)
    }

    #[tracing::instrument(skip_all, fields(users = user_ids.len()), err)]
    async fn method_kinds(
        &self,
        user_ids: Vec<String>,
        security_question_ids: Vec<String>,
        questions_required_to_reset: u32,
    ) -> Result<enrolment::ListMethodKindsResponse, Error> {
        let request = enrolment::ListMethodKindsRequest {
            user_ids,
            security_question_ids,
            questions_required_to_reset,
        };
        Ok(self
            .bus
            .request(rpc::enrolment::LIST_METHOD_KINDS, &request)
            .await?)
    }
}
