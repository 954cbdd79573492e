//! Gateway clients for `sspr admin`, `sspr register` and `sspr reset`. Each prints the answer as
//! one JSON object on stdout; a refused call prints the gRPC status on stderr and fails.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use sspr_proto::admin::v1 as admin;
use sspr_proto::common::v1::{ContactMethod, MethodKind, SecurityAnswer, SecurityQuestion};
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
    /// Idempotency key (`x-request-id`, 1 to 128 visible ASCII characters) of the command's
    /// call: run a command again with the same one after UNAVAILABLE or DEADLINE_EXCEEDED to
    /// get the first attempt's answer instead of acting twice. Default: a fresh random one.
    #[arg(long, global = true)]
    pub request_id: Option<String>,
}

/// The command's idempotency key: `--request-id`, or one random UUID for this invocation.
fn request_id(args: &GatewayArgs) -> String {
    static FRESH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    args.request_id.clone().unwrap_or_else(|| {
        FRESH
            .get_or_init(|| uuid::Uuid::new_v4().to_string())
            .clone()
    })
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
    /// A phone call that reads the code out.
    Voice,
    /// Answers to admin-defined security questions (never for admins).
    SecurityQuestions,
}

impl From<KindArg> for MethodKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Email => MethodKind::Email,
            KindArg::Sms => MethodKind::Sms,
            KindArg::Voice => MethodKind::Voice,
            KindArg::SecurityQuestions => MethodKind::SecurityQuestions,
        }
    }
}

/// The security-question options of `set-policy` and `preview-policy`.
#[derive(Args, Debug, Clone, Default)]
pub struct QuestionArgs {
    /// A security question as ID=TEXT (repeat), e.g. --question pet="Your first pet's name?".
    #[arg(long = "question", value_parser = parse_id_value)]
    questions: Vec<(String, String)>,
    /// Questions a user answers at registration: 3 to 5 (0 = the default, 3).
    #[arg(long, default_value_t = 0)]
    questions_to_register: u32,
    /// Questions asked at reset: 3 to 5, at most --questions-to-register (0 = the default, 3).
    #[arg(long, default_value_t = 0)]
    questions_to_reset: u32,
}

impl QuestionArgs {
    fn apply(self, policy: &mut admin::Policy) {
        policy.security_questions = self
            .questions
            .into_iter()
            .map(|(question_id, text)| SecurityQuestion { question_id, text })
            .collect();
        policy.questions_required_to_register = self.questions_to_register;
        policy.questions_required_to_reset = self.questions_to_reset;
    }
}

/// The abuse-limit options of `set-policy` and `preview-policy`.
#[derive(Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// An abuse limit as NAME=VALUE (repeat), NAME a field of sspr.admin.v1.Limits, e.g.
    /// --limit phone_sends_per_hour=3 --limit breaker_min_verified_percent=25. Unset limits
    /// take their defaults; the policy service checks every range.
    #[arg(long = "limit", value_parser = parse_limit)]
    limits: Vec<(String, u32)>,
    /// An E.164 prefix SMS and voice codes may go to (repeat), e.g. --phone-prefix +44. None:
    /// the organisation's own (the policy service's SSPR_ORGANISATION_PHONE_PREFIXES).
    #[arg(long = "phone-prefix")]
    phone_prefixes: Vec<String>,
}

impl LimitArgs {
    fn apply(self, policy: &mut admin::Policy) {
        let mut limits = admin::Limits {
            phone_allowed_prefixes: self.phone_prefixes,
            ..Default::default()
        };
        for (name, value) in self.limits {
            // Names were checked by the parser.
            if let Some(slot) = sspr_policy::handlers::limit_slot(&mut limits, &name) {
                *slot = Some(value);
            }
        }
        policy.limits = Some(limits);
    }
}

/// `NAME=VALUE` of a known limit and a whole number.
fn parse_limit(raw: &str) -> Result<(String, u32), String> {
    let (name, value) = raw
        .split_once('=')
        .ok_or_else(|| "expected NAME=VALUE".to_owned())?;
    let name = name.trim();
    if sspr_policy::handlers::limit_slot(&mut admin::Limits::default(), name).is_none() {
        let names: Vec<&str> = sspr_policy::domain::limits::RANGES
            .iter()
            .map(|(n, _, _)| *n)
            .collect();
        return Err(format!(
            "unknown limit {name:?}; one of {}",
            names.join(", ")
        ));
    }
    let value = value
        .trim()
        .parse()
        .map_err(|_| format!("{name} must be a whole number"))?;
    Ok((name.to_owned(), value))
}

/// The limits an admin set, by name (unset ones left out), and the phone allowlist.
fn limits_json(limits: Option<&admin::Limits>) -> Value {
    let mut copy = limits.cloned().unwrap_or_default();
    let mut out = serde_json::Map::new();
    for (name, _, _) in sspr_policy::domain::limits::RANGES {
        if let Some(Some(value)) = sspr_policy::handlers::limit_slot(&mut copy, name).as_deref() {
            out.insert((*name).to_owned(), json!(value));
        }
    }
    out.insert(
        "phone_allowed_prefixes".to_owned(),
        json!(copy.phone_allowed_prefixes),
    );
    Value::Object(out)
}

/// `ID=VALUE` (a question and its text, or a question and an answer).
fn parse_id_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((id, value)) if !id.trim().is_empty() => Ok((id.trim().to_owned(), value.to_owned())),
        _ => Err("expected ID=TEXT".to_owned()),
    }
}

/// A proposed policy, with the options of `set-policy`.
#[derive(Args, Debug, Clone)]
pub struct ProposedPolicyArgs {
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
    /// Users must type the full destination (email address / phone number) before a code is
    /// sent to it.
    #[arg(long)]
    require_full_destination: bool,
    /// Where users get help (URL, email address or text; at most 256 characters).
    #[arg(long, default_value = "")]
    helpdesk_contact: String,
    /// A verified user whose account is locked may unlock it without a new password.
    #[arg(long)]
    allow_unlock: bool,
    #[command(flatten)]
    questions: QuestionArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

impl ProposedPolicyArgs {
    fn into_policy(self) -> admin::Policy {
        let scope = match self.scope {
            ScopeArg::None => admin::Scope::None,
            ScopeArg::Selected => admin::Scope::Selected,
            ScopeArg::All => admin::Scope::All,
        };
        let mut policy = admin::Policy {
            scope: scope as i32,
            group_ids: self.groups,
            methods_required: self.methods_required,
            allowed_methods: self
                .allowed
                .into_iter()
                .map(|k| MethodKind::from(k) as i32)
                .collect(),
            reconfirm_after_days: self.reconfirm_after_days,
            require_full_destination: self.require_full_destination,
            helpdesk_contact: self.helpdesk_contact,
            allow_unlock: self.allow_unlock,
            ..Default::default()
        };
        self.questions.apply(&mut policy);
        self.limits.apply(&mut policy);
        policy
    }
}

fn previewed_user_json(u: &admin::PreviewedUser) -> Value {
    json!({
        "user_id": u.user_id,
        "display_name": u.display_name,
        "is_admin": u.is_admin,
        "reason": u.reason,
        "usable_methods": u.usable_methods,
        "methods_required": u.methods_required,
    })
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Show the self-service password reset policy.
    GetPolicy,
    /// Replace the policy.
    SetPolicy {
        #[command(flatten)]
        policy: ProposedPolicyArgs,
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
    /// Report, without saving anything, which users could not reset under a proposed policy
    /// (same options as set-policy): the totals, then every unable user with the reason.
    PreviewPolicy {
        #[command(flatten)]
        policy: ProposedPolicyArgs,
        /// Unable users fetched per request: 1 to 500 (0 = the gateway's default, 100).
        #[arg(long, default_value_t = 0)]
        page_size: u32,
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
        /// Lock (true) or unlock (false) the account; left out keeps its state.
        #[arg(long)]
        locked: Option<bool>,
    },
    /// Delete a user.
    DeleteUser { user_id: String },
    /// Look up or unlock one user (helpdesk).
    #[command(subcommand)]
    User(UserCommand),
    /// Create, delete or list groups (groups nest through --member).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Show one code delivery (its id is in the code.issued event and the audit log): status
    /// (queued, sending, sent, delivered, failed, expired), attempts, timestamps, provider.
    Delivery { delivery_id: String },
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

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Show one user's account, with its locked state and effective groups.
    Get { user_id: String },
    /// Clear the locked state of an account.
    Unlock { user_id: String },
    /// Whether the user is blocked from self-service reset (too many failed verifications).
    Block { user_id: String },
    /// Lift a self-service reset block and clear the user's counters.
    ClearBlock { user_id: String },
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create or replace a group.
    Upsert {
        group_id: String,
        #[arg(long, default_value = "")]
        display_name: String,
        /// A group nested in this one (repeat); its members are members of this group too.
        #[arg(long = "member")]
        members: Vec<String>,
    },
    /// Delete a group and every membership in it.
    Delete { group_id: String },
    /// List groups sorted by id, one page at a time.
    List {
        /// Groups per page: 1 to 500 (default 100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=500))]
        page_size: Option<u32>,
        /// The next_page_token of a previous answer.
        #[arg(long)]
        page_token: Option<String>,
    },
}

fn user_json(u: &admin::User) -> Value {
    json!({
        "user_id": u.user_id, "display_name": u.display_name, "locale": u.locale,
        "group_ids": u.group_ids, "effective_group_ids": u.effective_group_ids,
        "is_admin": u.is_admin, "enabled": u.enabled, "locked": u.locked,
        "has_password": u.has_password,
    })
}

fn group_json(g: &admin::Group) -> Value {
    json!({
        "group_id": g.group_id, "display_name": g.display_name,
        "member_group_ids": g.member_group_ids,
    })
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
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        #[arg(long, value_enum)]
        kind: KindArg,
        #[arg(long)]
        destination: String,
    },
    /// Confirm a method with the code it received (again, to re-confirm it).
    Confirm {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        #[arg(long, allow_hyphen_values = true)]
        method: String,
        #[arg(long, allow_hyphen_values = true)]
        code: String,
    },
    /// Send a code to one of the user's registered methods, to prove it before changing
    /// methods (needed when the user already had one at `begin`: step_up_required).
    StepUpSend {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        #[arg(long, allow_hyphen_values = true)]
        method: String,
    },
    /// Check the step-up code; the session may then add, replace or remove methods.
    StepUpVerify {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        #[arg(long, allow_hyphen_values = true)]
        method: String,
        #[arg(long, allow_hyphen_values = true)]
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
        #[arg(long, allow_hyphen_values = true)]
        session: String,
    },
    /// Remove one of the session user's confirmed methods.
    Remove {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        #[arg(long, allow_hyphen_values = true)]
        method: String,
    },
    /// List the security questions to choose from and how many to answer.
    Questions {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
    },
    /// Register (or replace) security-question answers. Without --answer, asks on the
    /// terminal: each question in turn, Enter to skip one, until enough are answered.
    Answer {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        /// An answer as QUESTION_ID=ANSWER (repeat).
        #[arg(long = "answer", value_parser = parse_id_value)]
        answers: Vec<(String, String)>,
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
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        #[arg(long, allow_hyphen_values = true)]
        method: String,
        /// The method's full destination, when the policy asks for it.
        #[arg(long = "confirm-destination", default_value = "")]
        confirm_destination: String,
    },
    /// Verify a received code.
    Verify {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        #[arg(long, allow_hyphen_values = true)]
        method: String,
        #[arg(long, allow_hyphen_values = true)]
        code: String,
    },
    /// Where the last code sent to a method stands (pending, sent, failed, expired) and, when
    /// it failed or expired, the other methods to ask a code for instead.
    Status {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        #[arg(long, allow_hyphen_values = true)]
        method: String,
    },
    /// Show the security questions picked for a security-questions method.
    Questions {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        #[arg(long, allow_hyphen_values = true)]
        method: String,
    },
    /// Answer the picked security questions. Without --answer, asks for the picked questions
    /// on the terminal.
    Answer {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        #[arg(long, allow_hyphen_values = true)]
        method: String,
        /// An answer as QUESTION_ID=ANSWER (repeat).
        #[arg(long = "answer", value_parser = parse_id_value)]
        answers: Vec<(String, String)>,
    },
    /// Set the new password.
    Complete {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        #[arg(long, env = "SSPR_NEW_PASSWORD", hide_env_values = true)]
        new_password: String,
    },
    /// Check a candidate password without setting it: the broken rules and a strength estimate.
    Check {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
        #[arg(long, env = "SSPR_NEW_PASSWORD", hide_env_values = true)]
        new_password: String,
    },
    /// Unlock the locked account of a verified flow instead of choosing a new password (when
    /// the policy allows it).
    Unlock {
        #[arg(long, allow_hyphen_values = true)]
        session: String,
    },
}

/// A password strength estimate as the CLI prints it.
fn strength_json(s: sspr_proto::common::v1::PasswordStrength) -> Value {
    json!({"score": s.score, "guesses_log10": s.guesses_log10, "suggestions": s.suggestions})
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
    // The gateway reads it on mutating calls only; reads ignore it.
    let id = request_id(args);
    let value = MetadataValue::try_from(id.as_str())
        .ok()
        .filter(|_| sspr_bus::idempotency::parse_request_id(&id).is_ok())
        .context("--request-id must be 1 to 128 visible ASCII characters")?;
    req.metadata_mut().insert("x-request-id", value);
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
        Ok(MethodKind::Voice) => "voice",
        Ok(MethodKind::SecurityQuestions) => "security-questions",
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

/// GetCodeStatus as the CLI prints it: `state` as a lowercase word, `alternatives` as methods.
fn code_status_json(r: &reset::GetCodeStatusResponse) -> Value {
    let state = match reset::CodeDeliveryState::try_from(r.state) {
        Ok(reset::CodeDeliveryState::Pending) => "pending",
        Ok(reset::CodeDeliveryState::Sent) => "sent",
        Ok(reset::CodeDeliveryState::Failed) => "failed",
        Ok(reset::CodeDeliveryState::Expired) => "expired",
        _ => "unspecified",
    };
    json!({"state": state, "alternatives": methods_json(&r.alternatives)})
}

/// A delivery's status as the lowercase word the README uses.
fn delivery_status_name(status: i32) -> &'static str {
    match admin::DeliveryStatus::try_from(status) {
        Ok(admin::DeliveryStatus::Queued) => "queued",
        Ok(admin::DeliveryStatus::Sending) => "sending",
        Ok(admin::DeliveryStatus::Sent) => "sent",
        Ok(admin::DeliveryStatus::Delivered) => "delivered",
        Ok(admin::DeliveryStatus::Failed) => "failed",
        Ok(admin::DeliveryStatus::Expired) => "expired",
        _ => "unspecified",
    }
}

fn delivery_json(d: &admin::Delivery) -> Value {
    json!({
        "delivery_id": d.delivery_id,
        "status": delivery_status_name(d.status),
        "kind": kind_name(d.kind),
        "attempts": d.attempts,
        "created_at": time_json(&d.created_at),
        "updated_at": time_json(&d.updated_at),
        "sent_at": time_json(&d.sent_at),
        "finished_at": time_json(&d.finished_at),
        "last_error": d.last_error,
        "dead_lettered": d.dead_lettered,
        "provider": d.provider,
        "provider_message_id": d.provider_message_id,
        "user_id": d.user_id,
        "flow_id": d.flow_id,
    })
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
        "allow_unlock": p.allow_unlock,
        "security_questions": p.security_questions.iter()
            .map(|q| json!({"question_id": q.question_id, "text": q.text}))
            .collect::<Vec<_>>(),
        "questions_required_to_register": p.questions_required_to_register,
        "questions_required_to_reset": p.questions_required_to_reset,
        "limits": limits_json(p.limits.as_ref()),
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
        AdminCommand::SetPolicy { policy } => {
            let policy = policy.into_policy();
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
        AdminCommand::PreviewPolicy { policy, page_size } => {
            let policy = policy.into_policy();
            let mut unable = Vec::new();
            let mut page_token = String::new();
            let totals = loop {
                let page = client
                    .preview_policy(request(
                        args,
                        admin::PreviewPolicyRequest {
                            policy: Some(policy.clone()),
                            page_size,
                            page_token,
                        },
                        t,
                    )?)
                    .await
                    .map_err(status_error)?
                    .into_inner();
                unable.extend(page.unable.iter().map(previewed_user_json));
                if page.next_page_token.is_empty() {
                    break (page.users_total, page.users_able, page.users_unable);
                }
                page_token = page.next_page_token;
            };
            print(json!({
                "users_total": totals.0,
                "users_able": totals.1,
                "users_unable": totals.2,
                "unable": unable,
            }));
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
            locked,
        } => {
            let body = admin::UpsertUserRequest {
                user_id,
                display_name,
                locale,
                group_ids: groups,
                is_admin,
                password: password.unwrap_or_default(),
                enabled: None,
                locked,
            };
            let u = client
                .upsert_user(request(args, body, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(user_json(&u));
        }
        AdminCommand::User(UserCommand::Get { user_id }) => {
            let u = client
                .get_user(request(args, admin::GetUserRequest { user_id }, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(user_json(&u));
        }
        AdminCommand::User(UserCommand::Unlock { user_id }) => {
            let u = client
                .unlock_user(request(args, admin::UnlockUserRequest { user_id }, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(user_json(&u));
        }
        AdminCommand::User(UserCommand::Block { user_id }) => {
            let b = client
                .get_block(request(args, admin::GetBlockRequest { user_id }, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({
                "blocked": b.blocked,
                "blocked_until": time_json(&b.blocked_until),
                "failed_verifications": b.failed_verifications,
            }));
        }
        AdminCommand::Delivery { delivery_id } => {
            let d = client
                .get_delivery(request(args, admin::GetDeliveryRequest { delivery_id }, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(delivery_json(&d));
        }
        AdminCommand::User(UserCommand::ClearBlock { user_id }) => {
            let r = client
                .clear_block(request(args, admin::ClearBlockRequest { user_id }, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({"was_blocked": r.was_blocked}));
        }
        AdminCommand::Group(GroupCommand::Upsert {
            group_id,
            display_name,
            members,
        }) => {
            let group = admin::Group {
                group_id,
                display_name,
                member_group_ids: members,
            };
            let g = client
                .upsert_group(request(
                    args,
                    admin::UpsertGroupRequest { group: Some(group) },
                    t,
                )?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(group_json(&g));
        }
        AdminCommand::Group(GroupCommand::Delete { group_id }) => {
            client
                .delete_group(request(
                    args,
                    admin::DeleteGroupRequest {
                        group_id: group_id.clone(),
                    },
                    t,
                )?)
                .await
                .map_err(status_error)?;
            print(json!({"deleted": group_id}));
        }
        AdminCommand::Group(GroupCommand::List {
            page_size,
            page_token,
        }) => {
            let body = admin::ListGroupsRequest {
                page_size: page_size.unwrap_or_default(),
                page_token: page_token.unwrap_or_default(),
            };
            let page = client
                .list_groups(request(args, body, t)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({
                "groups": page.groups.iter().map(group_json).collect::<Vec<_>>(),
                "next_page_token": page.next_page_token,
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
                "step_up_required": r.step_up_required,
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
        RegisterCommand::StepUpSend { session, method } => {
            let body = registration::SendStepUpCodeRequest {
                session_id: session,
                method_id: method,
            };
            let r = client
                .send_step_up_code(request(args, body, None)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({
                "expires_at": time_json(&r.expires_at),
                "resend_after": time_json(&r.resend_after),
            }));
        }
        RegisterCommand::StepUpVerify {
            session,
            method,
            code,
        } => {
            let body = registration::VerifyStepUpCodeRequest {
                session_id: session,
                method_id: method,
                code,
            };
            client
                .verify_step_up_code(request(args, body, None)?)
                .await
                .map_err(status_error)?;
            print(json!({"stepped_up": true}));
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
        RegisterCommand::Questions { session } => {
            let body = registration::ListSecurityQuestionsRequest {
                session_id: session,
            };
            let r = client
                .list_security_questions(request(args, body, None)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({
                "questions": questions_json(&r.questions),
                "answers_required": r.answers_required,
            }));
        }
        RegisterCommand::Answer { session, answers } => {
            let answers = if answers.is_empty() {
                let body = registration::ListSecurityQuestionsRequest {
                    session_id: session.clone(),
                };
                let listed = client
                    .list_security_questions(request(args, body, None)?)
                    .await
                    .map_err(status_error)?
                    .into_inner();
                if listed.questions.is_empty() {
                    bail!("security questions are not available for this account");
                }
                ask_answers(&listed.questions, listed.answers_required as usize, true)?
            } else {
                to_answers(answers)
            };
            let body = registration::SetSecurityAnswersRequest {
                session_id: session,
                answers,
            };
            let r = client
                .set_security_answers(request(args, body, None)?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({
                "method_id": r.method_id,
                "registration_complete": r.registration_complete,
            }));
        }
    }
    Ok(())
}

fn questions_json(questions: &[SecurityQuestion]) -> Value {
    Value::Array(
        questions
            .iter()
            .map(|q| json!({"question_id": q.question_id, "text": q.text}))
            .collect(),
    )
}

fn to_answers(pairs: Vec<(String, String)>) -> Vec<SecurityAnswer> {
    pairs
        .into_iter()
        .map(|(question_id, answer)| SecurityAnswer {
            question_id,
            answer,
        })
        .collect()
}

/// Asks each question on stderr and reads answers from stdin until `wanted` are given; with
/// `skippable`, an empty line skips a question. Answers are never printed back.
fn ask_answers(
    questions: &[SecurityQuestion],
    wanted: usize,
    skippable: bool,
) -> anyhow::Result<Vec<SecurityAnswer>> {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut answers = Vec::new();
    for q in questions {
        if answers.len() == wanted {
            break;
        }
        let hint = if skippable { " (Enter to skip)" } else { "" };
        eprint!("{}{hint}: ", q.text);
        let line = lines
            .next()
            .context("stdin closed before every question was answered")?
            .context("reading an answer")?;
        if line.trim().is_empty() && skippable {
            continue;
        }
        answers.push(SecurityAnswer {
            question_id: q.question_id.clone(),
            answer: line,
        });
    }
    if answers.len() < wanted {
        bail!("{wanted} answers are required, got {}", answers.len());
    }
    Ok(answers)
}

pub async fn reset(args: &GatewayArgs, command: ResetCommand) -> anyhow::Result<()> {
    let mut client = reset::password_reset_client::PasswordResetClient::new(channel(args).await?);
    match command {
        ResetCommand::Start { user_id, locale } => {
            let r = client
                .start_reset(request(
                    args,
                    reset::StartResetRequest {
                        user_id,
                        locale,
                        challenge_token: String::new(),
                    },
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
            print(json!({
                "methods_remaining": r.methods_remaining,
                "unlock_available": r.unlock_available,
            }));
        }
        ResetCommand::Status { session, method } => {
            let r = client
                .get_code_status(request(
                    args,
                    reset::GetCodeStatusRequest {
                        session_id: session,
                        method_id: method,
                    },
                    None,
                )?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(code_status_json(&r));
        }
        ResetCommand::Questions { session, method } => {
            let r = client
                .get_security_questions(request(
                    args,
                    reset::GetSecurityQuestionsRequest {
                        session_id: session,
                        method_id: method,
                    },
                    None,
                )?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({"questions": questions_json(&r.questions)}));
        }
        ResetCommand::Answer {
            session,
            method,
            answers,
        } => {
            let answers = if answers.is_empty() {
                let picked = client
                    .get_security_questions(request(
                        args,
                        reset::GetSecurityQuestionsRequest {
                            session_id: session.clone(),
                            method_id: method.clone(),
                        },
                        None,
                    )?)
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .questions;
                ask_answers(&picked, picked.len(), false)?
            } else {
                to_answers(answers)
            };
            let r = client
                .answer_security_questions(request(
                    args,
                    reset::AnswerSecurityQuestionsRequest {
                        session_id: session,
                        method_id: method,
                        answers,
                    },
                    None,
                )?)
                .await
                .map_err(status_error)?
                .into_inner();
            print(json!({
                "methods_remaining": r.methods_remaining,
                "unlock_available": r.unlock_available,
            }));
        }
        ResetCommand::Complete {
            session,
            new_password,
        } => {
            let body = reset::CompleteResetRequest {
                session_id: session,
                new_password,
            };
            let r = client
                .complete_reset(request(args, body, None)?)
                .await
                .map_err(status_error)?
                .into_inner();
            let strength = r.strength.map(strength_json);
            print(json!({"completed": true, "strength": strength}));
        }
        ResetCommand::Check {
            session,
            new_password,
        } => {
            let body = reset::CheckPasswordRequest {
                session_id: session,
                password: new_password,
            };
            let r = client
                .check_password(request(args, body, None)?)
                .await
                .map_err(status_error)?
                .into_inner();
            let strength = r.strength.map(strength_json);
            let violations: Vec<_> = r
                .violations
                .iter()
                .map(|v| json!({"rule": v.rule, "description": v.description}))
                .collect();
            print(json!({
                "acceptable": r.acceptable,
                "violations": violations,
                "strength": strength,
            }));
        }
        ResetCommand::Unlock { session } => {
            let body = reset::UnlockAccountRequest {
                session_id: session,
            };
            client
                .unlock_account(request(args, body, None)?)
                .await
                .map_err(status_error)?;
            print(json!({"unlocked": true}));
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

    #[derive(Parser)]
    struct ArgsCli {
        #[command(flatten)]
        gateway: GatewayArgs,
    }

    fn sent_id(args: &GatewayArgs) -> anyhow::Result<String> {
        let req = request(args, (), None)?;
        Ok(req
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned())
    }

    #[test]
    fn every_call_of_a_command_carries_one_request_id() {
        let fresh = ArgsCli::try_parse_from(["sspr"]).unwrap().gateway;
        let id = sent_id(&fresh).unwrap();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert_eq!(sent_id(&fresh).unwrap(), id, "one key per command");
        let chosen = ArgsCli::try_parse_from(["sspr", "--request-id", "retry-7"])
            .unwrap()
            .gateway;
        assert_eq!(sent_id(&chosen).unwrap(), "retry-7");
        let bad = ArgsCli::try_parse_from(["sspr", "--request-id", "has space"])
            .unwrap()
            .gateway;
        assert!(sent_id(&bad).is_err());
    }

    #[test]
    fn reset_status_parses_and_prints_a_lowercase_state_and_the_alternatives() {
        let cli = ResetCli::try_parse_from([
            "sspr",
            "status",
            "--session",
            "-abc_DEF",
            "--method",
            "m-sms-1",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            ResetCommand::Status { session, method } if session == "-abc_DEF" && method == "m-sms-1"
        ));
        let printed = code_status_json(&reset::GetCodeStatusResponse {
            state: reset::CodeDeliveryState::Failed as i32,
            alternatives: vec![ContactMethod {
                method_id: "m-email-1".into(),
                kind: MethodKind::Email as i32,
                masked_destination: "a•••@e•••.com".into(),
            }],
        });
        assert_eq!(
            printed,
            json!({"state": "failed", "alternatives": [
                {"method_id": "m-email-1", "kind": "email", "masked_destination": "a•••@e•••.com"}
            ]})
        );
        for (state, word) in [
            (reset::CodeDeliveryState::Pending, "pending"),
            (reset::CodeDeliveryState::Sent, "sent"),
            (reset::CodeDeliveryState::Expired, "expired"),
            (reset::CodeDeliveryState::Unspecified, "unspecified"),
        ] {
            let printed = code_status_json(&reset::GetCodeStatusResponse {
                state: state as i32,
                alternatives: Vec::new(),
            });
            assert_eq!(printed, json!({"state": word, "alternatives": []}));
        }
    }

    #[test]
    fn delivery_arguments_parse_and_print_lowercase_words() {
        let cli = Cli::try_parse_from(["sspr", "delivery", "0190aaaa-bbbb"]).unwrap();
        assert!(
            matches!(cli.command, AdminCommand::Delivery { delivery_id } if delivery_id == "0190aaaa-bbbb")
        );
        assert!(Cli::try_parse_from(["sspr", "delivery"]).is_err());
        let d = admin::Delivery {
            delivery_id: "d-1".into(),
            status: admin::DeliveryStatus::Delivered as i32,
            kind: MethodKind::Sms as i32,
            attempts: 2,
            created_at: Some(prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 0,
            }),
            provider: "twilio".into(),
            provider_message_id: "SM1".into(),
            ..Default::default()
        };
        let v = delivery_json(&d);
        assert_eq!(v["status"], "delivered");
        assert_eq!(v["kind"], "sms");
        assert_eq!(v["attempts"], 2);
        assert_eq!(v["created_at"], "2026-01-01T00:00:00+00:00");
        assert_eq!(v["sent_at"], Value::Null);
        assert_eq!(v["provider_message_id"], "SM1");
        for (status, word) in [
            (admin::DeliveryStatus::Queued, "queued"),
            (admin::DeliveryStatus::Sending, "sending"),
            (admin::DeliveryStatus::Sent, "sent"),
            (admin::DeliveryStatus::Failed, "failed"),
            (admin::DeliveryStatus::Expired, "expired"),
        ] {
            assert_eq!(delivery_status_name(status as i32), word);
        }
    }

    #[test]
    fn user_group_lock_and_unlock_arguments_parse() {
        let cli = Cli::try_parse_from(["sspr", "user", "get", "alice"]).unwrap();
        assert!(
            matches!(cli.command, AdminCommand::User(UserCommand::Get { user_id }) if user_id == "alice")
        );
        let cli = Cli::try_parse_from(["sspr", "user", "unlock", "alice"]).unwrap();
        assert!(
            matches!(cli.command, AdminCommand::User(UserCommand::Unlock { user_id }) if user_id == "alice")
        );
        let cli = Cli::try_parse_from(["sspr", "user", "clear-block", "alice"]).unwrap();
        assert!(
            matches!(cli.command, AdminCommand::User(UserCommand::ClearBlock { user_id }) if user_id == "alice")
        );
        let cli = Cli::try_parse_from([
            "sspr",
            "group",
            "upsert",
            "staff",
            "--display-name",
            "Staff",
            "--member",
            "engineering",
            "--member",
            "sales",
        ])
        .unwrap();
        let AdminCommand::Group(GroupCommand::Upsert {
            group_id,
            display_name,
            members,
        }) = cli.command
        else {
            panic!("not group upsert");
        };
        assert_eq!(
            (group_id.as_str(), display_name.as_str()),
            ("staff", "Staff")
        );
        assert_eq!(members, vec!["engineering", "sales"]);
        assert!(Cli::try_parse_from(["sspr", "group", "delete", "staff"]).is_ok());
        let cli = Cli::try_parse_from(["sspr", "group", "list", "--page-size", "10"]).unwrap();
        assert!(matches!(
            cli.command,
            AdminCommand::Group(GroupCommand::List {
                page_size: Some(10),
                ..
            })
        ));
        assert!(Cli::try_parse_from(["sspr", "group", "list", "--page-size", "501"]).is_err());
        for (raw, want) in [("true", Some(true)), ("false", Some(false))] {
            let cli =
                Cli::try_parse_from(["sspr", "upsert-user", "--user-id", "a", "--locked", raw])
                    .unwrap();
            assert!(
                matches!(cli.command, AdminCommand::UpsertUser { locked, .. } if locked == want)
            );
        }
        let cli = Cli::try_parse_from(["sspr", "upsert-user", "--user-id", "a"]).unwrap();
        assert!(matches!(
            cli.command,
            AdminCommand::UpsertUser { locked: None, .. }
        ));
        assert!(
            Cli::try_parse_from(["sspr", "upsert-user", "--user-id", "a", "--locked"]).is_err()
        );
        let cli = Cli::try_parse_from(["sspr", "set-policy", "--scope", "all", "--allow-unlock"])
            .unwrap();
        assert!(matches!(
            cli.command,
            AdminCommand::SetPolicy {
                policy: ProposedPolicyArgs {
                    allow_unlock: true,
                    ..
                },
                ..
            }
        ));
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
            policy:
                ProposedPolicyArgs {
                    reconfirm_after_days,
                    ..
                },
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
                policy: ProposedPolicyArgs {
                    reconfirm_after_days: 0,
                    ..
                },
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
    fn limit_flags_parse_into_the_policy() {
        let cli = Cli::try_parse_from([
            "sspr",
            "set-policy",
            "--scope",
            "all",
            "--limit",
            "phone_sends_per_hour=3",
            "--limit",
            "breaker_min_verified_percent=0",
            "--phone-prefix",
            "+44",
            "--phone-prefix",
            "+353",
        ])
        .unwrap();
        let AdminCommand::SetPolicy {
            policy: ProposedPolicyArgs { limits, .. },
            ..
        } = cli.command
        else {
            panic!("not set-policy");
        };
        let mut policy = admin::Policy::default();
        limits.apply(&mut policy);
        let set = policy.limits.expect("limits");
        assert_eq!(set.phone_sends_per_hour, Some(3));
        assert_eq!(set.breaker_min_verified_percent, Some(0));
        assert_eq!(set.code_length, None);
        assert_eq!(set.phone_allowed_prefixes, vec!["+44", "+353"]);
        assert_eq!(
            limits_json(Some(&set)),
            json!({
                "phone_sends_per_hour": 3,
                "breaker_min_verified_percent": 0,
                "phone_allowed_prefixes": ["+44", "+353"],
            })
        );
        for bad in [
            "sms_per_year=3",
            "phone_sends_per_hour",
            "phone_sends_per_hour=x",
        ] {
            assert!(
                Cli::try_parse_from(["sspr", "set-policy", "--scope", "all", "--limit", bad])
                    .is_err(),
                "{bad}"
            );
        }
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
            policy:
                ProposedPolicyArgs {
                    require_full_destination,
                    helpdesk_contact,
                    ..
                },
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
                policy: ProposedPolicyArgs {
                    require_full_destination: false,
                    ..
                },
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
    fn reset_check_and_unlock_parse() {
        let cli = ResetCli::try_parse_from([
            "sspr",
            "check",
            "--session",
            "s",
            "--new-password",
            "a candidate",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            ResetCommand::Check { ref session, ref new_password }
                if session == "s" && new_password == "a candidate"
        ));
        // Session ids are base64url: one may start with '-'.
        let cli = ResetCli::try_parse_from(["sspr", "unlock", "--session", "-x1"]).unwrap();
        assert!(matches!(cli.command, ResetCommand::Unlock { ref session } if session == "-x1"));
        let cli =
            ResetCli::try_parse_from(["sspr", "send", "--session", "-a", "--method", "m"]).unwrap();
        assert!(matches!(cli.command, ResetCommand::Send { ref session, .. } if session == "-a"));
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
    fn security_question_options_parse() {
        let cli = Cli::try_parse_from([
            "sspr",
            "set-policy",
            "--scope",
            "all",
            "--allow",
            "email,security-questions",
            "--question",
            "pet=Your first pet's name?",
            "--question",
            "city=Where were you born? (a=b)",
            "--questions-to-register",
            "4",
            "--questions-to-reset",
            "3",
        ])
        .unwrap();
        let AdminCommand::SetPolicy {
            policy: ProposedPolicyArgs {
                allowed, questions, ..
            },
            ..
        } = cli.command
        else {
            panic!("not set-policy");
        };
        assert_eq!(allowed, vec![KindArg::Email, KindArg::SecurityQuestions]);
        let mut policy = admin::Policy::default();
        questions.apply(&mut policy);
        assert_eq!(policy.security_questions.len(), 2);
        assert_eq!(policy.security_questions[1].question_id, "city");
        assert_eq!(
            policy.security_questions[1].text,
            "Where were you born? (a=b)"
        );
        assert_eq!(policy.questions_required_to_register, 4);
        assert_eq!(policy.questions_required_to_reset, 3);
        assert!(
            Cli::try_parse_from(["sspr", "set-policy", "--scope", "all", "--question", "=x"])
                .is_err()
        );

        let cli = RegisterCli::try_parse_from([
            "sspr",
            "answer",
            "--session",
            "s",
            "--answer",
            "pet=Rex",
            "--answer",
            "city=Rome",
        ])
        .unwrap();
        let RegisterCommand::Answer { answers, .. } = cli.command else {
            panic!("not answer");
        };
        assert_eq!(answers[0], ("pet".to_owned(), "Rex".to_owned()));
        let cli = ResetCli::try_parse_from([
            "sspr",
            "answer",
            "--session",
            "s",
            "--method",
            "m",
            "--answer",
            "pet=Rex",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, ResetCommand::Answer { ref answers, .. } if answers.len() == 1)
        );
        let cli =
            ResetCli::try_parse_from(["sspr", "questions", "--session", "s", "--method", "m"])
                .unwrap();
        assert!(matches!(cli.command, ResetCommand::Questions { .. }));
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
    fn preview_policy_takes_the_set_policy_options() {
        let cli = Cli::try_parse_from([
            "sspr",
            "preview-policy",
            "--scope",
            "selected",
            "--group",
            "staff",
            "--methods-required",
            "2",
            "--allow",
            "email",
            "--page-size",
            "1",
        ])
        .unwrap();
        let AdminCommand::PreviewPolicy { policy, page_size } = cli.command else {
            panic!("not preview-policy");
        };
        assert_eq!(page_size, 1);
        let policy = policy.into_policy();
        assert_eq!(policy.scope, admin::Scope::Selected as i32);
        assert_eq!(policy.group_ids, ["staff"]);
        assert_eq!(policy.methods_required, 2);
        assert_eq!(policy.allowed_methods, [MethodKind::Email as i32]);
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
