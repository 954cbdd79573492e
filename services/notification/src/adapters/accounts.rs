//! [`Accounts`] over NATS: the directory (`get_user`, `list_admins`) and enrolment
//! (`list_methods`, `get_destination`, `list_destinations`).
//!
//! Invariants: full addresses are read only for confirmed email methods and never logged; a
//! method removed between the listing and the lookup (`NOT_FOUND`) is skipped; every other
//! failure is [`LookupError::Unavailable`] (the event is retried later).

use async_trait::async_trait;
use sspr_bus::subjects::rpc::{directory, enrolment};
use sspr_bus::{Bus, BusError, ErrorCode};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::internal::directory::v1::{
    GetUserRequest, GetUserResponse, ListAdminsRequest, ListAdminsResponse, UserRecord,
};
use sspr_proto::internal::enrolment::v1::{
    GetDestinationRequest, GetDestinationResponse, ListDestinationsRequest,
    ListDestinationsResponse, ListMethodsRequest, ListMethodsResponse,
};

use crate::domain::delivery::{EmailAddress, Locale, PhoneNumber};
use crate::ports::{
    Account, Accounts, ContactAddress, ContactDestination, LookupError, RegisteredEmail,
};

/// [`Accounts`] on the bus.
#[derive(Clone)]
pub struct BusAccounts {
    bus: Bus,
}

impl BusAccounts {
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }
}

fn unavailable(what: &str, e: BusError) -> LookupError {
    LookupError::Unavailable(format!("{what}: {e}"))
}

fn account(u: UserRecord) -> Account {
    Account {
        locale: Locale::from_tag(&u.locale),
        user_id: u.user_id,
        display_name: u.display_name,
        is_admin: u.is_admin,
    }
}

#[async_trait]
impl Accounts for BusAccounts {
    async fn get_user(&self, user_id: &str) -> Result<Option<Account>, LookupError> {
        let req = GetUserRequest {
            user_id: user_id.to_owned(),
        };
        let resp: GetUserResponse = self
            .bus
            .request(directory::GET_USER, &req)
            .await
            .map_err(|e| unavailable("directory get_user", e))?;
        Ok(resp.user.filter(|_| resp.found).map(account))
    }

    async fn list_admins(&self) -> Result<Vec<Account>, LookupError> {
        let resp: ListAdminsResponse = self
            .bus
            .request(directory::LIST_ADMINS, &ListAdminsRequest {})
            .await
            .map_err(|e| unavailable("directory list_admins", e))?;
        Ok(resp.users.into_iter().map(account).collect())
    }

    async fn destinations(&self, user_id: &str) -> Result<Vec<ContactDestination>, LookupError> {
        let req = ListDestinationsRequest {
            user_id: user_id.to_owned(),
        };
        let resp: ListDestinationsResponse =
            match self.bus.request(enrolment::LIST_DESTINATIONS, &req).await {
                Ok(r) => r,
                Err(BusError::Rpc(e)) if e.code == ErrorCode::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(unavailable("enrolment list_destinations", e)),
            };
        let mut out = Vec::with_capacity(resp.destinations.len());
        for d in resp.destinations {
            let address = match MethodKind::try_from(d.kind) {
                Ok(MethodKind::Email) => EmailAddress::parse(&d.destination)
                    .ok()
                    .map(ContactAddress::Email),
                Ok(MethodKind::Sms) => PhoneNumber::parse(&d.destination)
                    .ok()
                    .map(ContactAddress::Sms),
                Ok(MethodKind::Voice) => PhoneNumber::parse(&d.destination)
                    .ok()
                    .map(ContactAddress::Voice),
                _ => None,
            };
            match address {
                Some(address) => out.push(ContactDestination {
                    method_id: d.method_id,
                    address,
                }),
                None => {
                    tracing::warn!(method_id = %d.method_id, "a registered method has no valid destination; skipped");
                }
            }
        }
        Ok(out)
    }

    async fn emails(&self, user_id: &str) -> Result<Vec<RegisteredEmail>, LookupError> {
        let req = ListMethodsRequest {
            user_id: user_id.to_owned(),
            ..Default::default()
        };
        let methods: ListMethodsResponse =
            match self.bus.request(enrolment::LIST_METHODS, &req).await {
                Ok(m) => m,
                Err(BusError::Rpc(e)) if e.code == ErrorCode::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(unavailable("enrolment list_methods", e)),
            };
        let mut emails = Vec::new();
        for method in methods.methods {
            if method.kind != MethodKind::Email as i32 {
                continue;
            }
            let req = GetDestinationRequest {
                user_id: user_id.to_owned(),
                method_id: method.method_id.clone(),
            };
            let dest: GetDestinationResponse =
                match self.bus.request(enrolment::GET_DESTINATION, &req).await {
                    Ok(d) => d,
                    Err(BusError::Rpc(e)) if e.code == ErrorCode::NotFound => continue,
                    Err(e) => return Err(unavailable("enrolment get_destination", e)),
                };
            match EmailAddress::parse(&dest.destination) {
                Ok(address) if dest.kind == MethodKind::Email as i32 => {
                    emails.push(RegisteredEmail {
                        method_id: method.method_id,
                        address,
                    });
                }
                _ => {
                    tracing::warn!(method_id = %method.method_id, "a registered email method has no valid address; skipped");
                }
            }
        }
        Ok(emails)
    }
}
