//! Gateway clients for `sspr admin`, `sspr register` and `sspr reset`. Each prints the answer as
//! one JSON object on stdout; a refused call prints the gRPC status on stderr and fails.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use sspr_proto::admin::v1 as admin;
use sspr_proto::common::v1::{ContactMethod, MethodKind};
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// Where the gateway is and how to authenticate to its Admin API.
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// URL of the gateway's gRPC API.
    #[arg(
        long,
        env = "SSPR_GATEWAY_URL",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub gateway: String,
    /// Admin bearer token; by default SSPR_ADMIN_TOKEN, else the token `sspr dev` wrote to
    /// <data dir>/admin-token.
    #[arg(long, env = "SSPR_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Data directory of `sspr dev`, to find its admin token.
    #[arg(long, env = "SSPR_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// W3C traceparent to send with the call, to tie several calls into one trace.
    #[arg(long, global = true)]
    pub traceparent: Option<String>,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum ScopeArg {
    None,
    Selected,
    All,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum KindArg {
    Email,
    Sms,
}

impl From<KindArg> for MethodKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Email => MethodKind::Email,
            KindArg::Sms => MethodKind::Sms,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Show the self-service password reset policy.
    GetPolicy,
    /// Replace the policy.
    SetPolicy {
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// Group allowed to reset (repeat; with --scope selected).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Methods a user must verify: 1 or 2 (admins always 2).
        #[arg(long, default_value_t = 1)]
        methods_required: u32,
        /// Allowed method kinds.
        #[arg(long = "allow", value_enum, value_delimiter = ',', default_values_t = [KindArg::Email, KindArg::Sms])]
        allowed: Vec<KindArg>,
        /// Days after which registered users must confirm their methods again: 0 (never) to 730.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=730))]
        reconfirm_after_days: u32,
        /// Users must type the full destination (email address / phone number) before a code
        /// is sent to it.
        #[arg(long)]
        require_full_destination: bool,
        /// Where users get help (URL, email address or text; at most 256 characters).
        #[arg(long, default_value = "")]
        helpdesk_contact: String,
    },
    /// Show the password rules (length, banned terms, organisation name, history).
    GetPasswordPolicy,
    /// Change the password rules. Options left out keep their current value; giving
    /// --banned-term at least once replaces the whole custom list.
    SetPasswordPolicy {
        /// Shortest accepted password: 8 to 256 characters.
        #[arg(long)]
        min_length: Option<u32>,
        /// A custom banned term, 4 to 64 characters (repeat for several).
        #[arg(long = "banned-term")]
        banned_terms: Vec<String>,
        /// Remove every custom banned term.
        #[arg(long, conflicts_with = "banned_terms")]
        clear_banned_terms: bool,
        /// Refused inside passwords like the user's name; "" for none.
        #[arg(long)]
        organisation_name: Option<String>,
        /// How many of the last passwords may not be reused: 0 (off) to 24.
        #[arg(long = "history")]
        history: Option<u32>,
    },
    /// Create or update a user.
    UpsertUser {
        #[arg(long)]
        user_id: String,
        #[arg(long, default_value = "")]
        display_name: String,
        #[arg(long, default_value = "en")]
        locale: String,
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long)]
        admin: bool,
        /// Initial password (else SSPR_USER_PASSWORD; empty keeps the current one).
        #[arg(long, env = "SSPR_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Delete a user.
    DeleteUser { user_id: String },
    /// List audit records (flow steps and admin changes), oldest first, one page at a time.
    Audit {
        /// Only records about this user.
        #[arg(long = "user")]
        user: Option<String>,
        /// Only this kind of event, e.g. reset.completed.
        #[arg(long)]
        kind: Option<String>,
        /// Only records at or after this time (RFC 3339).
        #[arg(long, value_parser = parse_rfc3339)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only records before this time (RFC 3339).
        #[arg(long, value_parser = parse_rfc3339)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Records per page: 1 to 500 (default 50).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=500))]
        page_size: Option<u32>,
        /// The next_page_token of a previous answer.
        #[arg(long)]
        page_token: Option<String>,
    },
}

fn parse_rfc3339(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| "expected an RFC 3339 time such as 2026-01-31T09:00:00Z".to_owned())
}

#[derive(Subcommand, Debug)]
pub enum RegisterCommand {
    /// Sign in and open a registration session.
    Begin {
        #[arg(long)]
        user_id: String,
        #[arg(long, env = "SSPR_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "")]
        locale: String,
    },
    /// Add a method; a code is sent to it.
    Add {
        #[arg(long)]
        session: String,
        #[arg(long, value_enum)]
        kind: KindArg,
        #[arg(long)]
        destination: String,
    },
    /// Confirm a method with the code it received (again, to re-confirm it).
    Confirm {
        #[arg(long)]
        session: String,
        #[arg(long)]
        method: String,
        #[arg(long)]
        code: String,
    },
    /// Whether the user must register or re-confirm (checks the password, opens no session).
    Status {
        #[arg(long)]
        user_id: String,
        #[arg(long, env = "SSPR_USER_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// List the session user's confirmed methods.
    List {
        #[arg(long)]
        session: String,
    },
    /// Remove one of the session user's confirmed methods.
    Remove {
        #[arg(long)]
        session: String,
        #[arg(long)]
        method: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ResetCommand {
    /// Start a reset for a user id.
    Start {
        #[arg(long)]
        user_id: String,
        #[arg(long, default_value = "")]
        locale: String,
    },
    /// Send a code to one of the listed methods.
    Send {
        #[arg(long)]
        session: String,
        #[arg(long)]
        method: String,
        /// The method's full destination, when the policy asks for it.
        #[arg(long = "confirm-destination", default_value = "")]
        confirm_destination: String,
    },
    /// Verify a received code.
    Verify {
        #[arg(long)]
        session: String,
        #[arg(long)]
        method: String,
        #[arg(long)]
        code: String,
    },
    /// Set the new password.
    Complete {
        #[arg(long)]
        session: String,
        #[arg(long, env = "SSPR_NEW_PASSWORD", hide_env_values = true)]
        new_password: String,
    },
}

async fn channel(args: &GatewayArgs) -> anyhow::Result<Channel> {
    Channel::from_shared(args.gateway.clone())
        .with_context(|| format!("invalid gateway URL {:?}", args.gateway))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the gateway at {}", args.gateway))
}

fn admin_token(args: &GatewayArgs) -> anyhow::Result<String> {
    if let Some(t) = &args.token {
        return Ok(t.clone());
    }
    let path = args.data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t.trim().to_owned()),
        Err(_) => bail!(
            "no admin token: set SSPR_ADMIN_TOKEN or --token (or run `sspr dev`, which writes {})",
            path.display()
        ),
    }
}

fn request<T>(
    args: &GatewayArgs,
    body: T,
    token: Option<&str>,
) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(body);
    if let Some(token) = token {
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .context("the admin token has invalid characters")?;
        req.metadata_mut().insert("authorization", value);
    }
    if let Some(tp) = &args.traceparent {
        let value = MetadataValue::try_from(tp.as_str()).context("invalid traceparent")?;
        req.metadata_mut().insert("traceparent", value);
    }
    Ok(req)
}

/// The status as one line, plus one line per rule of its `google.rpc.BadRequest` details.
fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", status_text(&s))
}

fn status_text(s: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", s.code(), s.message());
    if let Some(details) = sspr_bus::BadRequest::from_status_details(s.details()) {
        for v in details.field_violations {
            text.push_str(&format!(
                "\n  - {} [{}]: {}",
                v.field, v.reason, v.description
            ));
        }
    }
    text
}

fn print(v: Value) {
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

fn kind_name(kind: i32) -> &'static str {
    match MethodKind::try_from(kind) {
        Ok(MethodKind::Email) => "email",
        Ok(MethodKind::Sms) => "sms",
        _ => "unspecified",
    }
}

fn methods_json(methods: &[ContactMethod]) -> Value {
    Value::Array(
        methods
            .iter()
            .map(|m| json!({"method_id": m.method_id, "kind": kind_name(m.kind), "masked_destination": m.masked_destination}))
            .collect(),
    )
}

fn time_json(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref()
        .and_then(sspr_proto::time::from_timestamp)
        .map(|t| Value::String(t.to_rfc3339()))
        .unwrap_or(Value::Null)
}

fn policy_json(p: &admin::Policy) -> Value {
    let scope = match admin::Scope::try_from(p.scope) {
        Ok(admin::Scope::None) => "none",
        Ok(admin::Scope::Selected) => "selected",
        Ok(admin::Scope::All) => "all",
        _ => "unspecified",
    };
    json!({
        "scope": scope,
        "group_ids": p.group_ids,
        "methods_required": p.methods_required,
        "allowed_methods": p.allowed_methods.iter().map(|k| kind_name(*k)).collect::<Vec<_>>(),
        "version": p.version,
        "reconfirm_after_days": p.reconfirm_after_days,
        "require_full_destination": p.require_full_destination,
        "helpdesk_contact": p.helpdesk_contact,
    })
}

fn password_policy_json(p: &admin::PasswordPolicy) -> Value {
    json!({
        "min_length": p.min_length,
        "max_length": p.max_length,
        "custom_banned_terms": p.custom_banned_terms,
        "organisation_name": p.organisation_name,
        "history_count": p.history_count,
        "version": p.version,
    })
}

/// Options of `set-password-policy`; `None` keeps the current value.
#[derive(Debug, Default)]
struct PasswordPolicyChange {
    min_length: Option<u32>,
    banned_terms: Option<Vec<String>>,
    organisation_name: Option<String>,
    history: Option<u32>,
}

impl PasswordPolicyChange {
    fn apply(self, mut current: admin::PasswordPolicy) -> admin::PasswordPolicy {
        if let Some(n) = self.min_length {
            current.min_length = n;
        }
        if let Some(terms) = self.banned_terms {
            current.custom_banned_terms = terms;
        }
        if let Some(name) = self.organisation_name {
            current.organisation_name = name;
        }
        if let Some(n) = self.history {
            current.history_count = n;
        }
        current
    }
}

pub async fn admin(args: &GatewayArgs, command: AdminCommand) -> anyhow::Result<()> {
    let token = admin_token(args)?;
    let mut client = admin::admin_client::AdminClient::new(channel(args).await?);
    let t = Some(token.as_str());
    match command {
        AdminCommand::GetPolicy => {
            let p = client
                .get_policy(request(args, admin::GetPolicyRequest {}, t)?)
                .await
                .map_err(status_error)?;
            print(policy_json(p.get_ref()));
        }
        AdminCommand::SetPolicy {
            scope,
            groups,
            methods_required,
            allowed,
            reconfirm_after_days,
            require_full_destination,
            helpdesk_contact,
        } => {
            let scope = match scope {
                ScopeArg::None => admin::Scope::None,
                ScopeArg::Selected => admin::Scope::Selected,
                ScopeArg::All => admin::Scope::All,
            };
            let policy = admin::Policy {
                scope: scope as i32,
                group_ids: groups,
                methods_required,
                allowed_methods: allowed
                    .into_iter()
                    .map(|k| MethodKind::from(k) as i32)
                    .collect(),
                version: 0,
                reconfirm_after_days,
                require_full_destination,
                helpdesk_contact,
                ..Default::default()
            };
            let p = client
                .set_policy(request(
                    args,
                    admin::SetPolicyRequest {
                        policy: Some(policy),
                    },
                    t,
                )?)
                .await
                .map_err(status_error)?;
            print(policy_json(p.get_ref()));
        }
        AdminCommand::GetPasswordPolicy => {
            let p = client
                .get_password_policy(request(args, admin::GetPasswordPolicyRequest {}, t)?)
                .await
                .map_err(status_error)?;
            print(password_policy_json(p.get_ref()));
        }
        AdminCommand::SetPasswordPolicy {
            min_length,
            banned_terms,
            clear_banned_terms,
            organisation_name,
            history,
        } => {
            let change = PasswordPolicyChange {
                min_length,
                banned_terms: if clear_banned_terms {
                    Some(Vec::new())
                } else if banned_terms.is_empty() {
                    None
                } else {
                    Some(banned_terms)
                },
                organisation_name,
                history,
            };
            let current = client
                .get_password_policy(request(args, admin::GetPasswordPolicyRequest {}, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            let p = client
                .set_password_policy(request(
                    args,
                    admin::SetPasswordPolicyRequest {
                        policy: Some(change.apply(current)),
                    },
                    t,
                )?)
                .await
                .map_err(status_error)?;
            print(password_policy_json(p.get_ref()));
        }
        AdminCommand::UpsertUser {
            user_id,
            display_name,
            locale,
            groups,
            admin: is_admin,
            password,
        } => {
            let body = admin::UpsertUserRequest {
                user_id,
                display_name,
                locale,
                group_ids: groups,
                is_admin,
                password: password.unwrap_or_default(),
                enabled: None,
                locked: None,
            };
            let u = client
                .upsert_user(request(args, body, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({
                "user_id": u.user_id, "display_name": u.display_name, "locale": u.locale,
                "group_ids": u.group_ids, "is_admin": u.is_admin, "enabled": u.enabled,
                "has_password": u.has_password,
            }));
        }
        AdminCommand::DeleteUser { user_id } => {
            client
                .delete_user(request(
                    args,
                    admin::DeleteUserRequest {
                        user_id: user_id.clone(),
                    },
                    t,
                )?)
                .await
                .map_err(status_error)?;
            print(json!({"deleted": user_id}));
        }
        AdminCommand::Audit {
            user,
            kind,
            since,
            until,
            page_size,
            page_token,
        } => {
            let body = admin::ListAuditEventsRequest {
                user_id: user.unwrap_or_default(),
                kind: kind.unwrap_or_default(),
                from: since.map(sspr_proto::time::timestamp),
                to: until.map(sspr_proto::time::timestamp),
                page_size: page_size.unwrap_or_default(),
                page_token: page_token.unwrap_or_default(),
            };
            let page = client
                .list_audit_events(request(args, body, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(audit_json(&page));
        }
    }
    Ok(())
}

fn audit_json(page: &admin::ListAuditEventsResponse) -> Value {
    let records: Vec<Value> = page
        .records
        .iter()
        .map(|r| {
            json!({
                "event_id": r.event_id,
                "occurred_at": time_json(&r.occurred_at),
                "kind": r.kind,
                "user_id": r.user_id,
                "flow_id": r.flow_id,
                "actor": r.actor,
                "outcome": r.outcome,
                "trace_id": r.trace_id,
                "source": r.source,
                "summary": serde_json::from_str::<Value>(&r.summary_json).unwrap_or(Value::Null),
            })
        })
        .collect();
    json!({"records": records, "next_page_token": page.next_page_token})
}

pub async fn register(args: &GatewayArgs, command: RegisterCommand) -> anyhow::Result<()> {
    let mut client =
        registration::registration_client::RegistrationClient::new(channel(args).await?);
    match command {
        RegisterCommand::Begin {
            user_id,
            password,
            locale,
        } => {
            let r = client
                .begin_registration(request(
                    args,
                    registration::BeginRegistrationRequest {
                        user_id,
                        password,
                        locale,
                    },
                    None,
                )?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({
                "session_id": r.session_id,
                "methods_required": r.methods_required,
                "allowed_kinds": r.allowed_kinds.iter().map(|k| kind_name(*k)).collect::<Vec<_>>(),
                "registered": methods_json(&r.registered),
                "registration_required": r.registration_required,
                "reconfirm_required": r.reconfirm_required,
                "expires_at": time_json(&r.expires_at),
            }));
        }
        RegisterCommand::Add {
            session,
            kind,
            destination,
        } => {
            let body = registration::AddMethodRequest {
                session_id: session,
                kind: MethodKind::from(kind) as i32,
                destination,
            };
            let r = client
                .add_method(request(args, body, None)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({"method_id": r.method_id, "expires_at": time_json(&r.expires_at)}));
        }
        RegisterCommand::Confirm {
            session,
            method,
            code,
        } => {
            let body = registration::ConfirmMethodRequest {
                session_id: session,
                method_id: method,
                code,
            };
            let r = client
                .confirm_method(request(args, body, None)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({"registration_complete": r.registration_complete}));
        }
        RegisterCommand::Status { user_id, password } => {
            let body = registration::GetStatusRequest { user_id, password };
            let r = client
                .get_status(request(args, body, None)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({
                "eligible": r.eligible,
                "registration_required": r.registration_required,
                "reconfirm_required": r.reconfirm_required,
                "methods_required": r.methods_required,
                "methods_registered": r.methods_registered,
            }));
        }
        RegisterCommand::List { session } => {
            let body = registration::ListMethodsRequest {
                session_id: session,
            };
            let r = client
                .list_methods(request(args, body, None)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({"methods": methods_json(&r.methods)}));
        }
        RegisterCommand::Remove { session, method } => {
            let body = registration::RemoveMethodRequest {
                session_id: session,
                method_id: method,
            };
            client
                .remove_method(request(args, body, None)?)
                .await
                .map_err(status_error)?;
            print(json!({"removed": true}));
        }
    }
    Ok(())
}

pub async fn reset(args: &GatewayArgs, command: ResetCommand) -> anyhow::Result<()> {
    let mut client = reset::password_reset_client::PasswordResetClient::new(channel(args).await?);
    match command {
        ResetCommand::Start { user_id, locale } => {
            let r = client
                .start_reset(request(
                    args,
                    reset::StartResetRequest { user_id, locale },
                    None,
                )?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({
                "session_id": r.session_id,
                "flow_id": r.flow_id,
                "methods": methods_json(&r.methods),
                "methods_required": r.methods_required,
                "expires_at": time_json(&r.expires_at),
                "helpdesk_contact": r.helpdesk_contact,
            }));
        }
        ResetCommand::Send {
            session,
            method,
            confirm_destination,
        } => {
            let r = client
                .send_code(request(
                    args,
                    reset::SendCodeRequest {
                        session_id: session,
                        method_id: method,
                        destination_confirmation: confirm_destination,
                    },
                    None,
                )?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(
                json!({"expires_at": time_json(&r.expires_at), "resend_after": time_json(&r.resend_after)}),
            );
        }
        ResetCommand::Verify {
            session,
            method,
            code,
        } => {
            let body = reset::VerifyCodeRequest {
                session_id: session,
                method_id: method,
                code,
            };
            let r = client
                .verify_code(request(args, body, None)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({"methods_remaining": r.methods_remaining}));
        }
        ResetCommand::Complete {
            session,
            new_password,
        } => {
            let body = reset::CompleteResetRequest {
                session_id: session,
                new_password,
            };
            client
                .complete_reset(request(args, body, None)?)
                .await
                .map_err(status_error)?;
            print(json!({"completed": true}));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AdminCommand,
    }

    #[derive(Parser)]
    struct RegisterCli {
        #[command(subcommand)]
        command: RegisterCommand,
    }

    #[test]
    fn reconfirm_after_days_is_parsed_and_bounded() {
        let cli = Cli::try_parse_from([
            "sspr",
            "set-policy",
            "--scope",
            "all",
            "--reconfirm-after-days",
            "180",
        ])
        .unwrap();
        let AdminCommand::SetPolicy {
            reconfirm_after_days,
            ..
        } = cli.command
        else {
            panic!("not set-policy");
        };
        assert_eq!(reconfirm_after_days, 180);
        let cli = Cli::try_parse_from(["sspr", "set-policy", "--scope", "all"]).unwrap();
        assert!(matches!(
            cli.command,
            AdminCommand::SetPolicy {
                reconfirm_after_days: 0,
                ..
            }
        ));
        assert!(
            Cli::try_parse_from([
                "sspr",
                "set-policy",
                "--scope",
                "all",
                "--reconfirm-after-days",
                "731"
            ])
            .is_err()
        );
    }

    #[test]
    fn destination_and_helpdesk_flags_parse() {
        let cli = Cli::try_parse_from([
            "sspr",
            "set-policy",
            "--scope",
            "all",
            "--require-full-destination",
            "--helpdesk-contact",
            "https://help.example.com",
        ])
        .unwrap();
        let AdminCommand::SetPolicy {
            require_full_destination,
            helpdesk_contact,
            ..
        } = cli.command
        else {
            panic!("not set-policy");
        };
        assert!(require_full_destination);
        assert_eq!(helpdesk_contact, "https://help.example.com");
        let cli = Cli::try_parse_from(["sspr", "set-policy", "--scope", "all"]).unwrap();
        assert!(matches!(
            cli.command,
            AdminCommand::SetPolicy {
                require_full_destination: false,
                ..
            }
        ));
    }

    #[derive(Parser)]
    struct ResetCli {
        #[command(subcommand)]
        command: ResetCommand,
    }

    #[test]
    fn reset_send_takes_a_destination_confirmation() {
        let cli = ResetCli::try_parse_from([
            "sspr",
            "send",
            "--session",
            "s",
            "--method",
            "m",
            "--confirm-destination",
            "Alice@Example.com",
        ])
        .unwrap();
        let ResetCommand::Send {
            confirm_destination,
            ..
        } = cli.command
        else {
            panic!("not send");
        };
        assert_eq!(confirm_destination, "Alice@Example.com");
        let cli =
            ResetCli::try_parse_from(["sspr", "send", "--session", "s", "--method", "m"]).unwrap();
        assert!(matches!(
            cli.command,
            ResetCommand::Send { ref confirm_destination, .. } if confirm_destination.is_empty()
        ));
    }

    #[test]
    fn register_status_list_and_remove_parse() {
        let cli = RegisterCli::try_parse_from([
            "sspr",
            "status",
            "--user-id",
            "alice",
            "--password",
            "pw",
        ])
        .unwrap();
        assert!(matches!(cli.command, RegisterCommand::Status { .. }));
        let cli = RegisterCli::try_parse_from(["sspr", "list", "--session", "s"]).unwrap();
        assert!(matches!(cli.command, RegisterCommand::List { .. }));
        let cli =
            RegisterCli::try_parse_from(["sspr", "remove", "--session", "s", "--method", "m_1"])
                .unwrap();
        let RegisterCommand::Remove { session, method } = cli.command else {
            panic!("not remove");
        };
        assert_eq!((session.as_str(), method.as_str()), ("s", "m_1"));
        assert!(RegisterCli::try_parse_from(["sspr", "remove", "--session", "s"]).is_err());
    }

    #[test]
    fn audit_arguments_parse() {
        let cli = Cli::try_parse_from([
            "sspr",
            "audit",
            "--user",
            "alice",
            "--kind",
            "reset.completed",
            "--since",
            "2026-01-31T09:00:00+01:00",
            "--page-size",
            "10",
        ])
        .unwrap();
        let AdminCommand::Audit {
            user,
            kind,
            since,
            until,
            page_size,
            page_token,
        } = cli.command
        else {
            panic!("not the audit command");
        };
        assert_eq!(user.as_deref(), Some("alice"));
        assert_eq!(kind.as_deref(), Some("reset.completed"));
        assert_eq!(since.unwrap().to_rfc3339(), "2026-01-31T08:00:00+00:00");
        assert_eq!((until, page_size, page_token), (None, Some(10), None));
        assert!(Cli::try_parse_from(["sspr", "audit", "--since", "yesterday"]).is_err());
        assert!(Cli::try_parse_from(["sspr", "audit", "--page-size", "501"]).is_err());
        assert!(Cli::try_parse_from(["sspr", "audit", "--page-size", "0"]).is_err());
    }

    #[test]
    fn password_policy_arguments_parse_and_keep_what_is_not_given() {
        let cli = Cli::try_parse_from([
            "sspr",
            "set-password-policy",
            "--min-length",
            "12",
            "--banned-term",
            "contoso",
            "--banned-term",
            "quokka",
            "--history",
            "2",
        ])
        .unwrap();
        let AdminCommand::SetPasswordPolicy {
            min_length,
            banned_terms,
            clear_banned_terms,
            organisation_name,
            history,
        } = cli.command
        else {
            panic!("not set-password-policy");
        };
        assert_eq!(min_length, Some(12));
        assert_eq!(banned_terms, ["contoso", "quokka"]);
        assert!(!clear_banned_terms);
        let current = admin::PasswordPolicy {
            min_length: 8,
            custom_banned_terms: vec!["old".into()],
            organisation_name: "Contoso".into(),
            history_count: 0,
            version: 3,
            max_length: 256,
        };
        let next = PasswordPolicyChange {
            min_length,
            banned_terms: Some(banned_terms),
            organisation_name,
            history,
        }
        .apply(current.clone());
        assert_eq!(next.min_length, 12);
        assert_eq!(next.custom_banned_terms, ["contoso", "quokka"]);
        assert_eq!(next.organisation_name, "Contoso", "kept");
        assert_eq!(next.history_count, 2);
        assert_eq!(
            PasswordPolicyChange::default().apply(current.clone()),
            current
        );
        assert!(
            Cli::try_parse_from([
                "sspr",
                "set-password-policy",
                "--clear-banned-terms",
                "--banned-term",
                "x"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["sspr", "get-password-policy"]).is_ok());
    }

    /// Protobuf length-delimited field `tag` holding `bytes` (all lengths here are < 128).
    fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3) | 2, u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn refusals_print_each_rule() {
        let violation = [
            field(1, b"new_password"),
            field(2, b"must be at least 8 characters"),
            field(3, b"too_short"),
        ]
        .concat();
        let bad_request = field(1, &violation);
        let any = [
            field(1, sspr_bus::BadRequest::TYPE_URL.as_bytes()),
            field(2, &bad_request),
        ]
        .concat();
        let status = tonic::Status::with_details(
            tonic::Code::InvalidArgument,
            "password rejected: must be at least 8 characters",
            field(3, &any).into(),
        );
        assert_eq!(
            status_text(&status),
            "InvalidArgument: password rejected: must be at least 8 characters\n  - new_password \
             [too_short]: must be at least 8 characters"
        );
        let plain = tonic::Status::not_found("unknown user");
        assert_eq!(status_text(&plain), "NotFound: unknown user");
    }

    #[test]
    fn audit_pages_print_as_json() {
        let page = admin::ListAuditEventsResponse {
            records: vec![admin::AuditRecord {
                event_id: "e1".into(),
                kind: "reset.started".into(),
                summary_json: r#"{"client_ip":"192.0.2.1"}"#.into(),
                ..Default::default()
            }],
            next_page_token: "t".into(),
        };
        let v = audit_json(&page);
        assert_eq!(v["records"][0]["kind"], "reset.started");
        assert_eq!(v["records"][0]["summary"]["client_ip"], "192.0.2.1");
        assert_eq!(v["records"][0]["occurred_at"], Value::Null);
        assert_eq!(v["next_page_token"], "t");
    }
}
