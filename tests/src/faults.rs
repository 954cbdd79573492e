//! What the fault tests do on a [`Cluster`]: register a population, drive resets the way a
//! patient client does (retrying with its idempotency key after UNAVAILABLE), and count, from
//! the SMTP sink and never from sspr's own records, how many codes were issued, delivered,
//! duplicated, lost and failed.
//!
//! Counting rules (per scenario):
//! - issued: SendCode calls answered OK to the client (an acknowledged request);
//! - delivered: issued codes that reached the sink at least once;
//! - duplicated: copies beyond the first of one code;
//! - failed: issued codes not delivered for which sspr reported `code.delivery_failed`;
//! - lost: issued codes neither delivered nor reported failed;
//! - late: copies the sink accepted after the code's `expires_at` (must be 0).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use futures::StreamExt;
use prost::Message as _;
use sspr_proto::admin::v1::{self as admin, Scope, admin_client::AdminClient};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::registration::v1::{self as registration, registration_client::RegistrationClient};
use sspr_proto::reset::v1::{self as reset, password_reset_client::PasswordResetClient};
use sspr_testkit::SmtpSink;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::cluster::{CLUSTER_ADMIN_TOKEN, Cluster, StreamEvent};
use crate::code_in;

/// Password of every member of a population.
pub const PASSWORD: &str = "correct horse battery";
/// How long a client keeps retrying one call.
/// (Longer than the idempotency lease, 60 s, after which a retry may take over a call whose
/// replica died.)
const RETRY_FOR: Duration = Duration::from_secs(120);

/// A user with one registered email method.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub method_id: String,
}

/// Whether a failed call is worth retrying with the same idempotency key.
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted
    )
}

/// Calls `call` with one `x-request-id` until it succeeds, fails for good, or [`RETRY_FOR`]
/// passes; returns the answer and how many attempts it took.
pub async fn with_retries<T, F, Fut>(mut call: F) -> (Result<T, Status>, u32)
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let request_id = uuid::Uuid::new_v4().to_string();
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    let mut attempts = 0;
    let mut pause = Duration::from_millis(100);
    loop {
        attempts += 1;
        match call(request_id.clone()).await {
            Ok(v) => return (Ok(v), attempts),
            Err(status) if retryable(&status) && tokio::time::Instant::now() < deadline => {
                if std::env::var_os("SSPR_FAULT_TRACE").is_some() {
                    eprintln!(
                        "  retry {request_id} attempt {attempts} at {:?}: {:?} {}",
                        SystemTime::now(),
                        status.code(),
                        status.message()
                    );
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(status) => return (Err(status), attempts),
        }
    }
}

/// `body` with an `x-request-id` (and, for admin calls, the bearer token).
pub fn keyed<T>(body: T, request_id: &str, as_admin: bool) -> Request<T> {
    let mut req = Request::new(body);
    if let Ok(v) = request_id.parse() {
        req.metadata_mut().insert("x-request-id", v);
    }
    if as_admin && let Ok(v) = format!("Bearer {CLUSTER_ADMIN_TOKEN}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

/// Sets a policy for everyone with one email method, with throttles out of the way (the fault
/// tests are about delivery, not about the throttles).
pub async fn open_policy(channel: &Channel) -> anyhow::Result<()> {
    let limits = admin::Limits {
        phone_sends_per_hour: Some(100),
        email_sends_per_10_minutes: Some(100),
        failed_verifications_per_day: Some(100),
        destination_sends_per_hour: Some(1000),
        ip_start_reset_per_minute: Some(10_000),
        ip_send_code_per_minute: Some(10_000),
        user_sign_in_checks_per_hour: Some(1000),
        ip_sign_in_checks_per_minute: Some(10_000),
        resend_after_seconds: Some(0),
        ..Default::default()
    };
    let policy = admin::Policy {
        scope: Scope::All as i32,
        methods_required: 1,
        allowed_methods: vec![MethodKind::Email as i32],
        limits: Some(limits),
        ..Default::default()
    };
    let (result, _) = with_retries(|id| {
        let mut client = AdminClient::new(channel.clone());
        let body = admin::SetPolicyRequest {
            policy: Some(policy.clone()),
        };
        async move { client.set_policy(keyed(body, &id, true)).await }
    })
    .await;
    result.context("set_policy")?;
    Ok(())
}

/// Creates `n` users (`<prefix>-<i>`), each with a confirmed email method
/// `<prefix>-<i>@faults.test`, `concurrency` at a time; clears the sink afterwards.
pub async fn populate(
    channel: &Channel,
    smtp: &SmtpSink,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Member>> {
    let members = futures::stream::iter(0..n)
        .map(|i| register(channel, smtp, format!("{prefix}-{i}")))
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<Member>>>()?;
    smtp.clear();
    Ok(members)
}

async fn register(channel: &Channel, smtp: &SmtpSink, user_id: String) -> anyhow::Result<Member> {
    let email = format!("{user_id}@faults.test");
    let admin_client = AdminClient::new(channel.clone());
    let (user, _) = with_retries(|id| {
        let body = admin::UpsertUserRequest {
            user_id: user_id.clone(),
            display_name: user_id.clone(),
            locale: "en".to_owned(),
            password: PASSWORD.to_owned(),
            ..Default::default()
        };
        let mut c = admin_client.clone();
        async move { c.upsert_user(keyed(body, &id, true)).await }
    })
    .await;
    user.with_context(|| format!("upsert {user_id}"))?;
    let reg = RegistrationClient::new(channel.clone());
    let (begin, _) = with_retries(|id| {
        let body = registration::BeginRegistrationRequest {
            user_id: user_id.clone(),
            password: PASSWORD.to_owned(),
            locale: "en".to_owned(),
        };
        let mut c = reg.clone();
        async move { c.begin_registration(keyed(body, &id, false)).await }
    })
    .await;
    let begin = begin
        .with_context(|| format!("begin_registration {user_id}"))?
        .into_inner();
    let (added, _) = with_retries(|id| {
        let body = registration::AddMethodRequest {
            session_id: begin.session_id.clone(),
            kind: MethodKind::Email as i32,
            destination: email.clone(),
        };
        let mut c = reg.clone();
        async move { c.add_method(keyed(body, &id, false)).await }
    })
    .await;
    let added = added
        .with_context(|| format!("add_method {user_id}"))?
        .into_inner();
    let mail = smtp
        .wait_for(
            |m| m.to.iter().any(|t| t == &email),
            Duration::from_secs(30),
        )
        .await
        .with_context(|| format!("registration code for {user_id}"))?;
    let code = mail
        .text_body()
        .and_then(|t| code_in(&t))
        .context("registration mail without a code")?;
    let (confirmed, _) = with_retries(|id| {
        let body = registration::ConfirmMethodRequest {
            session_id: begin.session_id.clone(),
            method_id: added.method_id.clone(),
            code: code.clone(),
        };
        let mut c = reg.clone();
        async move { c.confirm_method(keyed(body, &id, false)).await }
    })
    .await;
    confirmed.with_context(|| format!("confirm_method {user_id}"))?;
    Ok(Member {
        user_id,
        email,
        method_id: added.method_id,
    })
}

/// How one client's reset went.
#[derive(Debug, Clone, Default)]
pub struct ResetRun {
    pub user_id: String,
    pub email: String,
    pub flow_id: String,
    /// SendCode answered OK.
    pub issued: bool,
    pub expires_at: Option<SystemTime>,
    /// The code read from the sink (when one came within the wait).
    pub code: Option<String>,
    pub completed: bool,
    /// Calls that needed more than one attempt.
    pub retried_calls: u32,
    /// The first error that ended the flow, if any.
    pub error: Option<String>,
}

/// Options of a reset run.
#[derive(Debug, Clone, Copy)]
pub struct ResetOptions {
    /// How long to wait for the code mail after SendCode.
    pub code_wait: Duration,
    /// Go on to VerifyCode and CompleteReset once the code arrived.
    pub complete: bool,
}

/// One user's whole reset: StartReset, SendCode, wait for the code in the sink, VerifyCode,
/// CompleteReset, each call retried with its idempotency key.
pub async fn reset_once(
    channel: &Channel,
    smtp: &SmtpSink,
    member: &Member,
    options: ResetOptions,
) -> ResetRun {
    let mut run = ResetRun {
        user_id: member.user_id.clone(),
        email: member.email.clone(),
        ..Default::default()
    };
    let client = PasswordResetClient::new(channel.clone());
    let (started, attempts) = with_retries(|id| {
        let body = reset::StartResetRequest {
            user_id: member.user_id.clone(),
            locale: "en".to_owned(),
            ..Default::default()
        };
        let mut c = client.clone();
        async move { c.start_reset(keyed(body, &id, false)).await }
    })
    .await;
    run.retried_calls += u32::from(attempts > 1);
    let started = match started {
        Ok(s) => s.into_inner(),
        Err(e) => {
            run.error = Some(format!("start_reset: {e:?}"));
            return run;
        }
    };
    run.flow_id = started.flow_id.clone();
    let seen_codes = codes_to(smtp, &member.email);
    let (sent, attempts) = with_retries(|id| {
        let body = reset::SendCodeRequest {
            session_id: started.session_id.clone(),
            method_id: member.method_id.clone(),
            ..Default::default()
        };
        let mut c = client.clone();
        async move { c.send_code(keyed(body, &id, false)).await }
    })
    .await;
    run.retried_calls += u32::from(attempts > 1);
    let sent = match sent {
        Ok(s) => s.into_inner(),
        Err(e) => {
            run.error = Some(format!("send_code: {e:?}"));
            return run;
        }
    };
    run.issued = true;
    run.expires_at = sent.expires_at.and_then(|t| {
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(
            u64::try_from(t.seconds).ok()?,
            u32::try_from(t.nanos).ok()?,
        ))
    });
    let deadline = tokio::time::Instant::now() + options.code_wait;
    let code = loop {
        let now_codes = codes_to(smtp, &member.email);
        if let Some(code) = now_codes.iter().find(|c| !seen_codes.contains(*c)) {
            break Some(code.clone());
        }
        if tokio::time::Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    run.code = code.clone();
    let Some(code) = code else {
        run.error = Some("no code arrived".to_owned());
        return run;
    };
    if !options.complete {
        return run;
    }
    let (verified, attempts) = with_retries(|id| {
        let body = reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: member.method_id.clone(),
            code: code.clone(),
        };
        let mut c = client.clone();
        async move { c.verify_code(keyed(body, &id, false)).await }
    })
    .await;
    run.retried_calls += u32::from(attempts > 1);
    if let Err(e) = verified {
        run.error = Some(format!("verify_code: {e:?}"));
        return run;
    }
    let new_password = format!(
        "fault tolerant passphrase {}",
        uuid::Uuid::new_v4().simple()
    );
    let (completed, attempts) = with_retries(|id| {
        let body = reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: new_password.clone(),
        };
        let mut c = client.clone();
        async move { c.complete_reset(keyed(body, &id, false)).await }
    })
    .await;
    run.retried_calls += u32::from(attempts > 1);
    match completed {
        Ok(_) => run.completed = true,
        Err(e) => run.error = Some(format!("complete_reset: {e:?}")),
    }
    run
}

/// The codes mailed to `to` so far.
fn codes_to(smtp: &SmtpSink, to: &str) -> Vec<String> {
    smtp.messages()
        .iter()
        .filter(|m| m.to.iter().any(|t| t == to))
        .filter_map(|m| m.text_body().and_then(|t| code_in(&t)))
        .collect()
}

/// Runs `reset_once` for every member, `concurrency` at a time.
pub async fn run_resets(
    channel: &Channel,
    smtp: &SmtpSink,
    members: &[Member],
    concurrency: usize,
    options: ResetOptions,
) -> Vec<ResetRun> {
    futures::stream::iter(members.iter())
        .map(|m| reset_once(channel, smtp, m, options))
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// The tally of one scenario.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub scenario: String,
    pub resets: usize,
    pub issued: usize,
    pub delivered: usize,
    pub duplicated: usize,
    pub lost: usize,
    pub failed: usize,
    pub late: usize,
    pub completed: usize,
    pub retried_calls: u32,
    /// The duplicated codes, for the report: (user id, copies, first acceptance).
    pub duplicates: Vec<(String, usize, SystemTime)>,
    pub notes: Vec<String>,
}

/// Counts a scenario from the sink (every accepted copy of each issued code) and from the
/// `code.delivery_failed` events of `events`.
pub fn tally(scenario: &str, runs: &[ResetRun], smtp: &SmtpSink, events: &[StreamEvent]) -> Tally {
    let failed_flows: BTreeSet<String> = events
        .iter()
        .filter(|e| e.subject == sspr_bus::subjects::events::CODE_DELIVERY_FAILED)
        .filter_map(|e| {
            sspr_proto::events::v1::CodeDeliveryFailed::decode(e.payload.as_slice()).ok()
        })
        .filter_map(|e| e.meta.map(|m| m.flow_id))
        .collect();
    // Every copy of every code, per recipient.
    let mut copies: BTreeMap<(String, String), Vec<SystemTime>> = BTreeMap::new();
    for mail in smtp.messages() {
        let Some(code) = mail.text_body().and_then(|t| code_in(&t)) else {
            continue;
        };
        for to in &mail.to {
            copies
                .entry((to.clone(), code.clone()))
                .or_default()
                .push(mail.accepted_at);
        }
    }
    let mut t = Tally {
        scenario: scenario.to_owned(),
        resets: runs.len(),
        ..Default::default()
    };
    for run in runs {
        t.retried_calls += run.retried_calls;
        t.completed += usize::from(run.completed);
        if !run.issued {
            continue;
        }
        t.issued += 1;
        // The code this flow issued: the one the client read, else any code to this address
        // (one flow per address per scenario).
        let times: Vec<SystemTime> = match &run.code {
            Some(code) => copies
                .get(&(run.email.clone(), code.clone()))
                .cloned()
                .unwrap_or_default(),
            None => copies
                .iter()
                .filter(|((to, _), _)| to == &run.email)
                .flat_map(|(_, v)| v.clone())
                .collect(),
        };
        if times.is_empty() {
            if failed_flows.contains(&run.flow_id) {
                t.failed += 1;
            } else {
                t.lost += 1;
                t.notes.push(format!(
                    "lost: {} (flow {}): {}",
                    run.user_id,
                    run.flow_id,
                    run.error.clone().unwrap_or_default()
                ));
            }
            continue;
        }
        t.delivered += 1;
        if times.len() > 1 {
            t.duplicated += times.len() - 1;
            let first = times
                .iter()
                .min()
                .copied()
                .unwrap_or(SystemTime::UNIX_EPOCH);
            t.duplicates.push((run.user_id.clone(), times.len(), first));
        }
        if let Some(expires) = run.expires_at {
            t.late += times.iter().filter(|at| **at > expires).count();
        }
    }
    t
}

impl Tally {
    /// Prints the scenario's line of the report (with a header) on stderr, and appends it to
    /// the file named by `SSPR_FAULT_REPORT` when set (`.ci/run` prints that file at the end,
    /// since the test harness keeps a passing test's output to itself).
    pub fn print(&self) {
        if let Some(path) = std::env::var_os("SSPR_FAULT_REPORT") {
            use std::io::Write as _;
            let mut line = format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                self.scenario,
                self.issued,
                self.delivered,
                self.duplicated,
                self.lost,
                self.failed,
                self.late,
                self.completed,
                self.resets
            );
            for (user, copies, _) in &self.duplicates {
                line.push_str(&format!("|   duplicate: {user}, {copies} copies (in flight at the fault) | | | | | | | | |\n"));
            }
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = written {
                eprintln!("could not append to the fault report: {e}");
            }
        }
        eprintln!(
            "\n| scenario | resets | issued | delivered | duplicated | lost | failed | late | completed | retried calls |\n\
             |---|---|---|---|---|---|---|---|---|---|\n\
             | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.scenario,
            self.resets,
            self.issued,
            self.delivered,
            self.duplicated,
            self.lost,
            self.failed,
            self.late,
            self.completed,
            self.retried_calls
        );
        for note in &self.notes {
            eprintln!("  {note}");
        }
        for (user, copies, _) in &self.duplicates {
            eprintln!("  duplicated: {user} received {copies} copies of one code");
        }
    }

    /// Nothing lost, nothing late, nothing duplicated.
    pub fn assert_exact(&self) -> anyhow::Result<()> {
        if self.lost != 0 || self.late != 0 || self.duplicated != 0 {
            bail!(
                "{}: lost {}, late {}, duplicated {}",
                self.scenario,
                self.lost,
                self.late,
                self.duplicated
            );
        }
        Ok(())
    }
}

/// Waits until the sink has stopped receiving for `quiet` (or `max` passes).
pub async fn settle(smtp: &SmtpSink, quiet: Duration, max: Duration) {
    let deadline = tokio::time::Instant::now() + max;
    let mut last = smtp.messages().len();
    let mut since = tokio::time::Instant::now();
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = smtp.messages().len();
        if now != last {
            last = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

/// Reads the delivery consumer's state: (ack pending, pending, redelivered).
pub async fn delivery_consumer_state(cluster: &Cluster) -> anyhow::Result<(usize, u64, usize)> {
    let client = cluster.nats.connect().await?;
    let js = async_nats::jetstream::new(client);
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream(
            sspr_bus::subjects::DELIVERY_CONSUMER,
            sspr_bus::subjects::DELIVERY_STREAM,
        )
        .await
        .context("delivery consumer")?;
    let info = consumer.info().await.context("consumer info")?;
    Ok((info.num_ack_pending, info.num_pending, info.num_redelivered))
}
