//! Subject names: a public contract, never renamed.
//!
//! Request/reply subjects are `sspr.rpc.<service>.<method>`; public events are
//! `sspr.events.v1.<noun>.<verb>`; deliveries are `sspr.delivery.v1.<channel>`.

/// The JetStream stream holding every public event.
pub const EVENTS_STREAM: &str = "SSPR_EVENTS";
/// Subjects captured by [`EVENTS_STREAM`].
pub const EVENTS_WILDCARD: &str = "sspr.events.v1.>";
/// The JetStream work-queue stream carrying encrypted code deliveries to notification.
pub const DELIVERY_STREAM: &str = "SSPR_DELIVERY";
/// Subjects captured by [`DELIVERY_STREAM`].
pub const DELIVERY_WILDCARD: &str = "sspr.delivery.v1.>";
/// Durable pull consumer shared by every notification replica.
pub const DELIVERY_CONSUMER: &str = "sspr-notification";
/// Durable pull consumer of [`EVENTS_STREAM`] shared by every audit replica.
pub const AUDIT_CONSUMER: &str = "sspr-audit";
/// Durable pull consumer of `user.deleted` on [`EVENTS_STREAM`] shared by enrolment replicas.
pub const ENROLMENT_USER_DELETED_CONSUMER: &str = "sspr-enrolment-user-deleted";
/// Durable pull consumer of `user.deleted` on [`EVENTS_STREAM`] shared by verification replicas.
pub const VERIFICATION_USER_DELETED_CONSUMER: &str = "sspr-verification-user-deleted";
/// Durable pull consumer of `code.*` on [`EVENTS_STREAM`] shared by verification replicas: the
/// delivery states of issued codes (`code.delivered`, `code.delivery_confirmed`,
/// `code.delivery_failed`; the other `code.*` events are skipped).
pub const VERIFICATION_CODE_DELIVERY_CONSUMER: &str = "sspr-verification-code-delivery";
/// What [`VERIFICATION_CODE_DELIVERY_CONSUMER`] is filtered to.
pub const CODE_EVENTS_WILDCARD: &str = "sspr.events.v1.code.*";

/// Durable pull consumer of `password.changed` on [`EVENTS_STREAM`] shared by notification
/// replicas (password-changed mails and admin alerts).
pub const NOTIFICATION_PASSWORD_CHANGED_CONSUMER: &str = "sspr-notification-password-changed";
/// Durable pull consumer of `method.*` on [`EVENTS_STREAM`] shared by notification replicas
/// (announcing every method change to the user's other methods).
pub const NOTIFICATION_METHOD_CHANGES_CONSUMER: &str = "sspr-notification-method-changes";
/// What [`NOTIFICATION_METHOD_CHANGES_CONSUMER`] is filtered to: `method.registered`,
/// `method.removed` (and `method.change_announced`, which it skips).
pub const METHOD_EVENTS_WILDCARD: &str = "sspr.events.v1.method.*";

/// Public event subjects.
pub mod events {
    pub const POLICY_CHANGED: &str = "sspr.events.v1.policy.changed";
    pub const METHOD_REGISTERED: &str = "sspr.events.v1.method.registered";
    pub const METHOD_REMOVED: &str = "sspr.events.v1.method.removed";
    pub const RESET_STARTED: &str = "sspr.events.v1.reset.started";
    pub const CODE_ISSUED: &str = "sspr.events.v1.code.issued";
    pub const CODE_DELIVERED: &str = "sspr.events.v1.code.delivered";
    pub const CODE_VERIFIED: &str = "sspr.events.v1.code.verified";
    pub const CODE_REJECTED: &str = "sspr.events.v1.code.rejected";
    pub const RESET_COMPLETED: &str = "sspr.events.v1.reset.completed";
    pub const PASSWORD_CHANGED: &str = "sspr.events.v1.password.changed";
    pub const USER_DELETED: &str = "sspr.events.v1.user.deleted";
    pub const ACCOUNT_LOCKED: &str = "sspr.events.v1.account.locked";
    pub const ACCOUNT_UNLOCKED: &str = "sspr.events.v1.account.unlocked";
    pub const USER_UPSERTED: &str = "sspr.events.v1.user.upserted";
    pub const GROUP_UPSERTED: &str = "sspr.events.v1.group.upserted";
    pub const GROUP_DELETED: &str = "sspr.events.v1.group.deleted";
    pub const RESET_BLOCKED: &str = "sspr.events.v1.reset.blocked";
    pub const RESET_UNBLOCKED: &str = "sspr.events.v1.reset.unblocked";
    pub const RESET_THROTTLED: &str = "sspr.events.v1.reset.throttled";
    pub const CODE_DELIVERY_FAILED: &str = "sspr.events.v1.code.delivery_failed";
    pub const CODE_DELIVERY_CONFIRMED: &str = "sspr.events.v1.code.delivery_confirmed";
    pub const SMS_BREAKER_OPENED: &str = "sspr.events.v1.sms.breaker_opened";
    pub const SMS_BREAKER_CLOSED: &str = "sspr.events.v1.sms.breaker_closed";
    pub const METHOD_CHANGE_ANNOUNCED: &str = "sspr.events.v1.method.change_announced";
    pub const ADMIN_AUTH_FAILED: &str = "sspr.events.v1.admin.auth_failed";
}

/// Delivery subjects, one per channel.
pub mod delivery {
    pub const EMAIL: &str = "sspr.delivery.v1.email";
    pub const SMS: &str = "sspr.delivery.v1.sms";
    pub const VOICE: &str = "sspr.delivery.v1.voice";
}

/// Request/reply subjects, `sspr.rpc.<service>.<method>`.
pub mod rpc {
    pub mod directory {
        pub const SERVICE: &str = "directory";
        pub const GET_USER: &str = "sspr.rpc.directory.get_user";
        pub const AUTHENTICATE: &str = "sspr.rpc.directory.authenticate";
        pub const SET_PASSWORD: &str = "sspr.rpc.directory.set_password";
        pub const UPSERT_USER: &str = "sspr.rpc.directory.upsert_user";
        pub const DELETE_USER: &str = "sspr.rpc.directory.delete_user";
        pub const LIST_ADMINS: &str = "sspr.rpc.directory.list_admins";
        pub const UNLOCK: &str = "sspr.rpc.directory.unlock";
        pub const UPSERT_GROUP: &str = "sspr.rpc.directory.upsert_group";
        pub const DELETE_GROUP: &str = "sspr.rpc.directory.delete_group";
        pub const LIST_GROUPS: &str = "sspr.rpc.directory.list_groups";
        /// A dry run of `set_password`'s checks (policy and history); writes nothing.
        pub const CHECK_PASSWORD: &str = "sspr.rpc.directory.check_password";
        pub const LIST_USERS: &str = "sspr.rpc.directory.list_users";
    }
    pub mod policy {
        pub const SERVICE: &str = "policy";
        pub const GET_POLICY: &str = "sspr.rpc.policy.get_policy";
        pub const SET_POLICY: &str = "sspr.rpc.policy.set_policy";
        pub const EVALUATE: &str = "sspr.rpc.policy.evaluate";
        pub const CHECK_PASSWORD: &str = "sspr.rpc.policy.check_password";
        pub const GET_PASSWORD_POLICY: &str = "sspr.rpc.policy.get_password_policy";
        pub const SET_PASSWORD_POLICY: &str = "sspr.rpc.policy.set_password_policy";
        pub const PREVIEW: &str = "sspr.rpc.policy.preview";
    }
    pub mod enrolment {
        pub const SERVICE: &str = "enrolment";
        pub const BEGIN_REGISTRATION: &str = "sspr.rpc.enrolment.begin_registration";
        pub const ADD_METHOD: &str = "sspr.rpc.enrolment.add_method";
        pub const CONFIRM_METHOD: &str = "sspr.rpc.enrolment.confirm_method";
        pub const LIST_METHODS: &str = "sspr.rpc.enrolment.list_methods";
        pub const GET_DESTINATION: &str = "sspr.rpc.enrolment.get_destination";
        pub const GET_STATUS: &str = "sspr.rpc.enrolment.get_status";
        pub const LIST_OWN_METHODS: &str = "sspr.rpc.enrolment.list_own_methods";
        pub const REMOVE_METHOD: &str = "sspr.rpc.enrolment.remove_method";
        pub const MATCH_DESTINATION: &str = "sspr.rpc.enrolment.match_destination";
        pub const LIST_SECURITY_QUESTIONS: &str = "sspr.rpc.enrolment.list_security_questions";
        pub const SET_SECURITY_ANSWERS: &str = "sspr.rpc.enrolment.set_security_answers";
        pub const LIST_ANSWERED_QUESTIONS: &str = "sspr.rpc.enrolment.list_answered_questions";
        pub const CHECK_SECURITY_ANSWERS: &str = "sspr.rpc.enrolment.check_security_answers";
        pub const LIST_METHOD_KINDS: &str = "sspr.rpc.enrolment.list_method_kinds";
        pub const SEND_STEP_UP_CODE: &str = "sspr.rpc.enrolment.send_step_up_code";
        pub const VERIFY_STEP_UP_CODE: &str = "sspr.rpc.enrolment.verify_step_up_code";
        /// Full destinations of a user's methods; only notification may call it.
        pub const LIST_DESTINATIONS: &str = "sspr.rpc.enrolment.list_destinations";
    }
    pub mod verification {
        pub const SERVICE: &str = "verification";
        pub const START_RESET: &str = "sspr.rpc.verification.start_reset";
        pub const SEND_CODE: &str = "sspr.rpc.verification.send_code";
        pub const VERIFY_CODE: &str = "sspr.rpc.verification.verify_code";
        pub const GET_CODE_STATUS: &str = "sspr.rpc.verification.get_code_status";
        pub const COMPLETE_RESET: &str = "sspr.rpc.verification.complete_reset";
        pub const GET_SECURITY_QUESTIONS: &str = "sspr.rpc.verification.get_security_questions";
        pub const ANSWER_SECURITY_QUESTIONS: &str =
            "sspr.rpc.verification.answer_security_questions";
        pub const UNLOCK_ACCOUNT: &str = "sspr.rpc.verification.unlock_account";
        pub const CHECK_PASSWORD: &str = "sspr.rpc.verification.check_password";
        pub const ISSUE_CODE: &str = "sspr.rpc.verification.issue_code";
        pub const CHECK_CODE: &str = "sspr.rpc.verification.check_code";
        pub const CLEAR_BLOCK: &str = "sspr.rpc.verification.clear_block";
        pub const GET_BLOCK: &str = "sspr.rpc.verification.get_block";
    }
    pub mod notification {
        pub const SERVICE: &str = "notification";
        pub const GET_DELIVERY: &str = "sspr.rpc.notification.get_delivery";
    }
    pub mod audit {
        pub const SERVICE: &str = "audit";
        pub const LIST_EVENTS: &str = "sspr.rpc.audit.list_events";
    }
}

/// The method part of `sspr.rpc.<service>.<method>`, used as the endpoint name.
pub fn method_of(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or(subject)
}

/// The endpoint name of a request/reply subject, `<service>.<method>` for
/// `sspr.rpc.<service>.<method>` (e.g. `verification.start_reset`), and `other` for any other
/// subject: the `endpoint` label of the RPC metrics, so a label value is always a name from
/// this module, never a subject built at run time.
pub fn endpoint_of(subject: &str) -> &str {
    let Some(rest) = subject.strip_prefix("sspr.rpc.") else {
        return "other";
    };
    let word = |w: &str| {
        !w.is_empty()
            && w.len() <= 64
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    match rest.split_once('.') {
        Some((service, method)) if word(service) && word(method) => rest,
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_names_not_raw_subjects() {
        assert_eq!(
            endpoint_of(rpc::verification::START_RESET),
            "verification.start_reset"
        );
        assert_eq!(endpoint_of(rpc::audit::LIST_EVENTS), "audit.list_events");
        for other in [
            "sspr.rpc.verification",
            "sspr.rpc.a.b.c",
            "sspr.rpc.A.b",
            "sspr.rpc..b",
            "sspr.events.v1.code.issued",
            "$SRV.PING",
            "",
        ] {
            assert_eq!(endpoint_of(other), "other", "{other:?}");
        }
    }
}
