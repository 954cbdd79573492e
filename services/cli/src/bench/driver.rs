//! The bench as a gateway client: the population (users with a registered email method), the
//! policy it sets for the run and restores afterwards, and one reset flow.
//!
//! Every call carries a synthetic client address from the benchmarking range 198.18.0.0/15 in
//! `x-forwarded-for` (the stack the bench starts trusts one proxy hop), so the per-IP throttles
//! see many clients, as behind a load balancer, rather than one address at 1,000 calls/s.
//! Codes and passwords stay in memory; nothing here prints them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sspr_proto::admin::v1::{self as admin, admin_client::AdminClient};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::registration::v1::{self as registration, registration_client::RegistrationClient};
use sspr_proto::reset::v1::{self as reset, password_reset_client::PasswordResetClient};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::smtp_sink::SmtpSink;

/// The group the bench's users belong to (and the policy scopes in while it runs).
pub const GROUP: &str = "sspr-bench";
/// Password of the bench's users before their first reset.
const POPULATION_PASSWORD: &str = "sspr bench population passphrase";
/// Longest wait for a code mail.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for one gRPC call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// User `i` of the population.
pub fn user_id(i: usize) -> String {
    format!("bench-u{i}")
}

/// The mailbox of user `i`'s email method.
pub fn email(i: usize) -> String {
    format!("bench-u{i}@bench.example")
}

/// Synthetic client address number `i` (4,096 of them, in 198.18.0.0/20).
pub fn client_ip(i: usize) -> String {
    let i = i % 4096;
    format!("198.18.{}.{}", i / 256, i % 256)
}

/// The users not in a flow, least recently used first.
#[derive(Clone)]
pub struct UserPool(Arc<std::sync::Mutex<std::collections::VecDeque<usize>>>);

impl UserPool {
    pub fn new(users: usize) -> Self {
        Self(Arc::new(std::sync::Mutex::new((0..users).collect())))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle user, now busy; `None` when every user is in a flow.
    pub fn take(&self) -> Option<usize> {
        self.lock().pop_front()
    }

    pub fn give_back(&self, user: usize) {
        self.lock().push_back(user);
    }
}

/// gRPC channels to the gateway, used in turn (HTTP/2 multiplexes many calls on each).
#[derive(Clone)]
pub struct Gateway {
    channels: Arc<Vec<Channel>>,
    next: Arc<AtomicUsize>,
    admin_token: Arc<str>,
}

impl Gateway {
    pub async fn connect(url: &str, admin_token: &str, connections: usize) -> anyhow::Result<Self> {
        let mut channels = Vec::new();
        for _ in 0..connections.max(1) {
            let channel = Endpoint::from_shared(url.to_owned())
                .context("invalid gateway URL")?
                .tcp_nodelay(true)
                .timeout(CALL_TIMEOUT)
                .connect()
                .await
                .with_context(|| format!("cannot connect to the gateway at {url}"))?;
            channels.push(channel);
        }
        Ok(Self {
            channels: Arc::new(channels),
            next: Arc::new(AtomicUsize::new(0)),
            admin_token: admin_token.into(),
        })
    }

    fn channel(&self) -> Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
    }

    pub fn reset(&self) -> PasswordResetClient<Channel> {
        PasswordResetClient::new(self.channel())
    }

    pub fn registration(&self) -> RegistrationClient<Channel> {
        RegistrationClient::new(self.channel())
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel())
    }

    /// `body` with the admin bearer token.
    pub fn as_admin<T>(&self, body: T) -> anyhow::Result<tonic::Request<T>> {
        let mut req = tonic::Request::new(body);
        let value = MetadataValue::try_from(format!("Bearer {}", self.admin_token))
            .context("the admin token has invalid characters")?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}

/// `body` as sent by client `ip`.
fn from_client<T>(body: T, ip: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(body);
    if let Ok(value) = MetadataValue::try_from(ip) {
        req.metadata_mut().insert("x-forwarded-for", value);
    }
    req
}

/// The limits the bench sets for its run: every throttle at its highest allowed value, codes
/// resendable at once, so the run measures the work and not the throttles.
pub fn bench_limits(previous: Option<&admin::Limits>) -> admin::Limits {
    admin::Limits {
        email_sends_per_10_minutes: Some(100),
        failed_verifications_per_day: Some(100),
        destination_sends_per_hour: Some(1000),
        ip_start_reset_per_minute: Some(10_000),
        ip_send_code_per_minute: Some(10_000),
        user_sign_in_checks_per_hour: Some(1000),
        ip_sign_in_checks_per_minute: Some(10_000),
        resend_after_seconds: Some(0),
        new_method_cooldown_hours: Some(0),
        challenge_ip_starts_per_minute: Some(0),
        challenge_ip_failures_per_hour: Some(0),
        ..previous.cloned().unwrap_or_default()
    }
}

/// The policy for the run: `previous` with the bench's group in scope, one email method
/// enough, no full-destination prompt and [`bench_limits`].
pub fn bench_policy(previous: &admin::Policy) -> admin::Policy {
    let mut policy = previous.clone();
    match admin::Scope::try_from(policy.scope) {
        Ok(admin::Scope::All) => {}
        Ok(admin::Scope::Selected) => {
            if !policy.group_ids.iter().any(|g| g == GROUP) {
                policy.group_ids.push(GROUP.to_owned());
            }
        }
        _ => {
            policy.scope = admin::Scope::Selected as i32;
            policy.group_ids = vec![GROUP.to_owned()];
        }
    }
    if !policy.allowed_methods.contains(&(MethodKind::Email as i32)) {
        policy.allowed_methods.push(MethodKind::Email as i32);
    }
    policy.methods_required = 1;
    policy.require_full_destination = false;
    policy.limits = Some(bench_limits(previous.limits.as_ref()));
    policy
}

/// "name: before → during" for every limit the bench changes (for the report's header).
pub fn changed_limits(previous: &admin::Policy, during: &admin::Policy) -> Vec<String> {
    let show = |v: Option<u32>| v.map_or("default".to_owned(), |v| v.to_string());
    let before = previous.limits.clone().unwrap_or_default();
    let after = during.limits.clone().unwrap_or_default();
    let pairs = [
        (
            "email_sends_per_10_minutes",
            before.email_sends_per_10_minutes,
            after.email_sends_per_10_minutes,
        ),
        (
            "failed_verifications_per_day",
            before.failed_verifications_per_day,
            after.failed_verifications_per_day,
        ),
        (
            "destination_sends_per_hour",
            before.destination_sends_per_hour,
            after.destination_sends_per_hour,
        ),
        (
            "ip_start_reset_per_minute",
            before.ip_start_reset_per_minute,
            after.ip_start_reset_per_minute,
        ),
        (
            "ip_send_code_per_minute",
            before.ip_send_code_per_minute,
            after.ip_send_code_per_minute,
        ),
        (
            "user_sign_in_checks_per_hour",
            before.user_sign_in_checks_per_hour,
            after.user_sign_in_checks_per_hour,
        ),
        (
            "ip_sign_in_checks_per_minute",
            before.ip_sign_in_checks_per_minute,
            after.ip_sign_in_checks_per_minute,
        ),
        (
            "resend_after_seconds",
            before.resend_after_seconds,
            after.resend_after_seconds,
        ),
        (
            "new_method_cooldown_hours",
            before.new_method_cooldown_hours,
            after.new_method_cooldown_hours,
        ),
        (
            "challenge_ip_starts_per_minute",
            before.challenge_ip_starts_per_minute,
            after.challenge_ip_starts_per_minute,
        ),
        (
            "challenge_ip_failures_per_hour",
            before.challenge_ip_failures_per_hour,
            after.challenge_ip_failures_per_hour,
        ),
    ];
    let mut out: Vec<String> = pairs
        .iter()
        .filter(|(_, b, a)| b != a)
        .map(|(name, b, a)| format!("{name} {} -> {}", show(*b), show(*a)))
        .collect();
    if previous.methods_required != during.methods_required {
        out.push(format!(
            "methods_required {} -> {}",
            previous.methods_required, during.methods_required
        ));
    }
    if previous.require_full_destination != during.require_full_destination {
        out.push("require_full_destination true -> false".to_owned());
    }
    if previous.scope != during.scope || previous.group_ids != during.group_ids {
        out.push(format!("scope: group {GROUP} added"));
    }
    out
}

pub async fn get_policy(gw: &Gateway) -> anyhow::Result<admin::Policy> {
    Ok(gw
        .admin()
        .get_policy(gw.as_admin(admin::GetPolicyRequest {})?)
        .await
        .context("Admin.GetPolicy")?
        .into_inner())
}

pub async fn set_policy(gw: &Gateway, policy: admin::Policy) -> anyhow::Result<()> {
    gw.admin()
        .set_policy(gw.as_admin(admin::SetPolicyRequest {
            policy: Some(policy),
        })?)
        .await
        .context("Admin.SetPolicy")?;
    Ok(())
}

/// Creates user `i` (in [`GROUP`]) and registers its email method through the registration
/// API, reading the confirmation code from the sink; a user that already has an email method
/// (an earlier run) is kept as it is.
pub async fn populate_user(gw: &Gateway, sink: &SmtpSink, i: usize) -> anyhow::Result<()> {
    let user = user_id(i);
    let ip = client_ip(i);
    gw.admin()
        .upsert_user(gw.as_admin(admin::UpsertUserRequest {
            user_id: user.clone(),
            display_name: format!("Bench user {i}"),
            locale: "en".to_owned(),
            group_ids: vec![GROUP.to_owned()],
            password: POPULATION_PASSWORD.to_owned(),
            ..Default::default()
        })?)
        .await
        .with_context(|| format!("Admin.UpsertUser {user}"))?;
    let mut reg = gw.registration();
    let begin = reg
        .begin_registration(from_client(
            registration::BeginRegistrationRequest {
                user_id: user.clone(),
                password: POPULATION_PASSWORD.to_owned(),
                locale: "en".to_owned(),
            },
            &ip,
        ))
        .await
        .with_context(|| format!("Registration.BeginRegistration {user}"))?
        .into_inner();
    if begin
        .registered
        .iter()
        .any(|m| m.kind == MethodKind::Email as i32)
    {
        return Ok(());
    }
    let address = email(i);
    let delivered = sink.expect(&address);
    let added = reg
        .add_method(from_client(
            registration::AddMethodRequest {
                session_id: begin.session_id.clone(),
                kind: MethodKind::Email as i32,
                destination: address,
            },
            &ip,
        ))
        .await
        .with_context(|| format!("Registration.AddMethod {user}"))?
        .into_inner();
    let code = tokio::time::timeout(DELIVERY_TIMEOUT, delivered)
        .await
        .ok()
        .and_then(Result::ok)
        .with_context(|| format!("no registration code for {user} within {DELIVERY_TIMEOUT:?}"))?
        .code;
    reg.confirm_method(from_client(
        registration::ConfirmMethodRequest {
            session_id: begin.session_id,
            method_id: added.method_id,
            code,
        },
        &ip,
    ))
    .await
    .with_context(|| format!("Registration.ConfirmMethod {user}"))?;
    Ok(())
}

/// A measured part of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    StartReset,
    SendCode,
    /// SendCode sent → the sink accepted the mail's final `.`.
    Delivery,
    VerifyCode,
    CompleteReset,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::StartReset,
        Step::SendCode,
        Step::Delivery,
        Step::VerifyCode,
        Step::CompleteReset,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::StartReset => "StartReset",
            Step::SendCode => "SendCode",
            Step::Delivery => "delivery",
            Step::VerifyCode => "VerifyCode",
            Step::CompleteReset => "CompleteReset",
        }
    }
}

/// Which calls a flow makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FlowKind {
    /// StartReset, SendCode and the mail's delivery.
    StartSend,
    /// StartReset, SendCode, delivery, VerifyCode with the mailed code, CompleteReset.
    Full,
}

impl FlowKind {
    pub fn steps(self) -> &'static [Step] {
        match self {
            FlowKind::StartSend => &Step::ALL[..3],
            FlowKind::Full => &Step::ALL,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FlowKind::StartSend => "start-send",
            FlowKind::Full => "full",
        }
    }
}

/// What one flow measured.
#[derive(Debug, Default)]
pub struct FlowOutcome {
    /// Latency of each step that finished successfully.
    pub latencies: Vec<(Step, Duration)>,
    /// The step that failed and why (a gRPC code name, or `timeout`).
    pub error: Option<(Step, String)>,
    /// When the flow ended (successfully or not).
    pub ended: Option<Instant>,
}

impl FlowOutcome {
    pub fn completed(&self) -> bool {
        self.error.is_none()
    }

    fn fail(mut self, step: Step, why: impl Into<String>) -> Self {
        self.error = Some((step, why.into()));
        self.ended = Some(Instant::now());
        self
    }
}

fn code_name(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

/// Runs flow number `n` for user `user` as scheduled at `due`: StartReset's latency counts
/// from `due` (so a late start shows), each later call from the moment it was sent (right
/// after the step before it).
pub async fn run_flow(
    gw: Gateway,
    sink: Arc<SmtpSink>,
    kind: FlowKind,
    n: u64,
    user: usize,
    due: Instant,
) -> FlowOutcome {
    let mut out = FlowOutcome::default();
    let ip = client_ip(n as usize);
    let mut client = gw.reset();
    let started = match client
        .start_reset(from_client(
            reset::StartResetRequest {
                user_id: user_id(user),
                locale: "en".to_owned(),
                ..Default::default()
            },
            &ip,
        ))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return out.fail(Step::StartReset, code_name(&s)),
    };
    out.latencies.push((Step::StartReset, due.elapsed()));
    let Some(method) = started
        .methods
        .iter()
        .find(|m| m.kind == MethodKind::Email as i32)
    else {
        return out.fail(Step::StartReset, "no email method");
    };
    let method_id = method.method_id.clone();
    let delivered = sink.expect(&email(user));
    let sent = Instant::now();
    if let Err(s) = client
        .send_code(from_client(
            reset::SendCodeRequest {
                session_id: started.session_id.clone(),
                method_id: method_id.clone(),
                ..Default::default()
            },
            &ip,
        ))
        .await
    {
        return out.fail(Step::SendCode, code_name(&s));
    }
    out.latencies.push((Step::SendCode, sent.elapsed()));
    let mail = match tokio::time::timeout(DELIVERY_TIMEOUT, delivered).await {
        Ok(Ok(mail)) => mail,
        Ok(Err(_)) => return out.fail(Step::Delivery, "superseded"),
        Err(_) => return out.fail(Step::Delivery, "timeout"),
    };
    out.latencies.push((
        Step::Delivery,
        mail.accepted_at.saturating_duration_since(sent),
    ));
    if kind == FlowKind::StartSend {
        out.ended = Some(Instant::now());
        return out;
    }
    let verify = Instant::now();
    if let Err(s) = client
        .verify_code(from_client(
            reset::VerifyCodeRequest {
                session_id: started.session_id.clone(),
                method_id,
                code: mail.code,
            },
            &ip,
        ))
        .await
    {
        return out.fail(Step::VerifyCode, code_name(&s));
    }
    out.latencies.push((Step::VerifyCode, verify.elapsed()));
    let complete = Instant::now();
    if let Err(s) = client
        .complete_reset(from_client(
            reset::CompleteResetRequest {
                session_id: started.session_id,
                new_password: new_password(),
            },
            &ip,
        ))
        .await
    {
        return out.fail(Step::CompleteReset, code_name(&s));
    }
    out.latencies
        .push((Step::CompleteReset, complete.elapsed()));
    out.ended = Some(Instant::now());
    out
}

/// A fresh random passphrase (never printed).
fn new_password() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("bench {hex} Passphrase")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_in_one_flow_at_a_time_and_idle_users_go_round() {
        let pool = UserPool::new(2);
        assert_eq!(pool.take(), Some(0));
        assert_eq!(pool.take(), Some(1));
        assert_eq!(pool.take(), None, "both are busy");
        pool.give_back(1);
        pool.give_back(0);
        assert_eq!(pool.take(), Some(1), "least recently used first");
    }

    #[test]
    fn client_addresses_stay_in_the_benchmarking_range() {
        assert_eq!(client_ip(0), "198.18.0.0");
        assert_eq!(client_ip(257), "198.18.1.1");
        assert_eq!(client_ip(4095), "198.18.15.255");
        assert_eq!(client_ip(4096), "198.18.0.0");
    }

    #[test]
    fn the_bench_policy_scopes_its_group_in_and_lifts_the_throttles() {
        let previous = admin::Policy {
            scope: admin::Scope::Selected as i32,
            group_ids: vec!["staff".to_owned()],
            methods_required: 2,
            allowed_methods: vec![MethodKind::Sms as i32],
            limits: Some(admin::Limits {
                code_length: Some(6),
                ..Default::default()
            }),
            ..Default::default()
        };
        let during = bench_policy(&previous);
        assert_eq!(during.group_ids, vec!["staff", GROUP]);
        assert_eq!(during.methods_required, 1);
        assert!(during.allowed_methods.contains(&(MethodKind::Email as i32)));
        let limits = during.limits.clone().expect("limits");
        assert_eq!(limits.code_length, Some(6), "unrelated limits are kept");
        assert_eq!(limits.ip_start_reset_per_minute, Some(10_000));
        let changed = changed_limits(&previous, &during);
        assert!(changed.contains(&"ip_start_reset_per_minute default -> 10000".to_owned()));
        assert!(changed.contains(&"methods_required 2 -> 1".to_owned()));

        let nobody = bench_policy(&admin::Policy::default());
        assert_eq!(nobody.scope, admin::Scope::Selected as i32);
        assert_eq!(nobody.group_ids, vec![GROUP]);
    }
}
