//! `sspr bench`: an open-loop load generator for the reset flow, with the physical floors of
//! the machine measured in the same run.
//!
//! By default it starts the stack itself as separate processes ([`stack`]) mailing to its own
//! SMTP sink ([`smtp_sink`]); with `--gateway` it drives a running stack whose `SSPR_SMTP_URL`
//! points at `--smtp-listen`. For each rate, flows are started at fixed intervals
//! ([`schedule`]) whether or not earlier ones finished, and latencies go to HdrHistograms from
//! the flows' due times, so a stall shows as latency (no coordinated omission).
//!
//! The policy's throttles are lifted for the run and the previous policy is put back
//! afterwards, also after an error or Ctrl-C. Nothing secret is printed: codes and passwords
//! never leave memory; the admin token of the stack it starts is random and never shown.

pub mod cpu;
pub mod driver;
pub mod floors;
pub mod report;
pub mod schedule;
pub mod smtp_sink;
pub mod stack;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;

use driver::{FlowKind, Gateway, Step};
use report::RateResult;
use schedule::Schedule;
use smtp_sink::SmtpSink;
use stack::{OwnStack, StackSettings};

/// `sspr bench`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Arrival rates to run, in flows per second, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "100,250,500,1000")]
    pub rates: Vec<f64>,
    /// Recorded time per rate (e.g. 10s, 500ms, 1m).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Unrecorded warm-up before each rate's recorded time, at the same rate.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// Users in the population, used in turn; default: enough that no user has two flows at
    /// once unless a flow takes over half a second (half the highest rate) and that no user gets
    /// more than 80 codes in the whole run (the email throttle allows 100 per 10 minutes), at
    /// least 20. Each costs two Argon2id hashes to set up.
    #[arg(long)]
    pub users: Option<usize>,
    /// `start-send`: StartReset + SendCode (+ the mail's delivery); `full`: also VerifyCode
    /// with the mailed code and CompleteReset.
    #[arg(long, value_enum, default_value = "start-send")]
    pub flow: FlowKind,
    /// Directory of the sspr-* binaries to start; default: the running sspr's own directory
    /// (same target directory and profile).
    #[arg(long, alias = "release-binaries")]
    pub bin_dir: Option<PathBuf>,
    /// Give the started services this PostgreSQL URL instead of SQLite files.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Processes of the verification service in the started stack.
    #[arg(long, default_value_t = 1)]
    pub verification_replicas: usize,
    /// Drive an already running gateway instead of starting a stack (its notification's
    /// SSPR_SMTP_URL must point at --smtp-listen).
    #[arg(long, requires = "smtp_listen")]
    pub gateway: Option<String>,
    /// The Admin API token of --gateway.
    #[arg(long, env = "SSPR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Where the bench's SMTP sink listens (default: any free port on 127.0.0.1 for the
    /// started stack).
    #[arg(long)]
    pub smtp_listen: Option<SocketAddr>,
    /// With --gateway: the NATS server, for the NATS floors (skipped without it).
    #[arg(long)]
    pub nats_url: Option<String>,
    /// With --gateway: the processes to charge CPU to (comma-separated pids); default: every
    /// process named sspr-* and nats-server on this machine.
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// gRPC connections to the gateway (calls are spread over them).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Samples of each fast floor (NATS, JetStream, tonic, lettre with TCP_NODELAY).
    #[arg(long, default_value_t = 2000)]
    pub floor_samples: usize,
    /// Users registered at once while populating.
    #[arg(long, default_value_t = 8)]
    pub populate_concurrency: usize,
}

/// Parses `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, unit) = raw
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((raw, "s"), |i| (&raw[..i], &raw[i..]));
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration such as 10s, 500ms or 2m, got {raw:?}"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {raw:?} (ms, s or m)")),
    };
    if !(0.0..86_400.0).contains(&secs) {
        return Err(format!("{raw:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `sspr bench`.
pub async fn main(opts: BenchOptions) -> anyhow::Result<()> {
    if opts.rates.is_empty() || opts.rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        bail!("--rates must be positive numbers");
    }
    if opts.duration.is_zero() {
        bail!("--duration must be more than zero");
    }
    let sink_addr = opts
        .smtp_listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let sink = Arc::new(
        SmtpSink::bind(sink_addr)
            .await
            .with_context(|| format!("the SMTP sink cannot listen on {sink_addr}"))?,
    );
    let mut settings: Vec<(String, String)> = Vec::new();
    let (own_stack, gateway_url, admin_token, nats_url, watched) = match &opts.gateway {
        None => {
            let bin_dir = match &opts.bin_dir {
                Some(d) => d.clone(),
                None => stack::default_bin_dir()?,
            };
            eprintln!("sspr bench: starting the stack from {}", bin_dir.display());
            let own = OwnStack::start(&StackSettings {
                bin_dir: bin_dir.clone(),
                smtp_addr: sink.addr(),
                database_url: opts.database_url.clone(),
                verification_replicas: opts.verification_replicas,
            })
            .await?;
            settings.push((
                "stack".into(),
                format!(
                    "started by the bench: one process per service from {} (logs in {})",
                    bin_dir.display(),
                    own.dir().display()
                ),
            ));
            settings.push(("profile".into(), stack::profile_of(&bin_dir)));
            settings.push((
                "storage".into(),
                match &opts.database_url {
                    Some(_) => "PostgreSQL (a schema per service; synchronous_commit as the server is configured)".into(),
                    None => "SQLite, one file per service, journal_mode=WAL, synchronous=NORMAL".into(),
                },
            ));
            settings.push((
                "replicas".into(),
                format!(
                    "1 of each service, verification {}",
                    opts.verification_replicas.max(1)
                ),
            ));
            let (g, a, n) = (
                own.grpc_url.clone(),
                own.admin_token.clone(),
                Some(own.nats_url.clone()),
            );
            let watched = own.watched();
            (Some(own), g, a, n, watched)
        }
        Some(url) => {
            let token = opts
                .admin_token
                .clone()
                .context("--gateway needs --admin-token (or SSPR_ADMIN_TOKEN)")?;
            let watched = if opts.pids.is_empty() {
                cpu::scan_sspr_processes()
            } else {
                opts.pids
                    .iter()
                    .map(|pid| cpu::Watched {
                        name: process_name(*pid),
                        pid: *pid,
                        sspr: process_name(*pid).starts_with("sspr-"),
                    })
                    .collect()
            };
            settings.push(("stack".into(), format!("already running, gateway {url}")));
            settings.push((
                "profile".into(),
                "as built by whoever started the stack".into(),
            ));
            settings.push((
                "storage".into(),
                "as configured on the running stack".into(),
            ));
            settings.push(("replicas".into(), "as deployed".into()));
            (None, url.clone(), token, opts.nats_url.clone(), watched)
        }
    };
    let result = run(
        &opts,
        &sink,
        &gateway_url,
        &admin_token,
        nats_url.as_deref(),
        watched,
        settings,
    )
    .await;
    if let Some(own) = own_stack {
        own.stop().await;
    }
    result
}

/// See `--users`.
fn default_users(opts: &BenchOptions) -> usize {
    let max_rate = opts.rates.iter().cloned().fold(0.0, f64::max);
    let per_rate = (opts.warmup + opts.duration).as_secs_f64();
    let total: f64 = opts.rates.iter().map(|r| r * per_rate).sum();
    let users = (max_rate / 2.0).max(total / 80.0).ceil();
    (users as usize).max(20)
}

fn process_name(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| {
            let argv0 = c.split(|b| *b == 0).next()?.to_vec();
            let argv0 = String::from_utf8_lossy(&argv0).into_owned();
            argv0.rsplit('/').next().map(str::to_owned)
        })
        .unwrap_or_else(|| format!("pid {pid}"))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Everything after the stack is up: floors, policy, population, the rates; the policy is put
/// back whatever happens.
#[allow(clippy::too_many_arguments)]
async fn run(
    opts: &BenchOptions,
    sink: &Arc<SmtpSink>,
    gateway_url: &str,
    admin_token: &str,
    nats_url: Option<&str>,
    mut watched: Vec<cpu::Watched>,
    mut settings: Vec<(String, String)>,
) -> anyhow::Result<()> {
    watched.push(cpu::Watched {
        name: "bench".to_owned(),
        pid: std::process::id(),
        sspr: false,
    });
    let users = opts.users.unwrap_or_else(|| default_users(opts)).max(1);
    let gw = Gateway::connect(gateway_url, admin_token, opts.connections).await?;

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    settings.push((
        "machine".into(),
        format!("{threads} CPUs ({}), {}", cpu_model(), memory()),
    ));
    settings.push((
        "bench binary".into(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .into(),
    ));
    settings.push((
        "tracing/OTLP".into(),
        match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Ok(e) if !e.is_empty() => format!("OTLP on ({e})"),
            _ => "OTLP off (OTEL_EXPORTER_OTLP_ENDPOINT unset); fmt logs to files".into(),
        },
    ));
    settings.push((
        "RUST_LOG".into(),
        env_or(
            "RUST_LOG",
            "unset (services' default: info,async_nats=warn,sqlx=warn,sea_orm=warn,h2=warn,tower=warn)",
        ),
    ));
    settings.push((
        "Argon2id".into(),
        format!(
            "m={} KiB, t={}, p={} (directory's parameters)",
            sspr_directory::domain::password::M_COST_KIB,
            sspr_directory::domain::password::T_COST,
            sspr_directory::domain::password::P_COST
        ),
    ));
    settings.push((
        "in-flight limits".into(),
        format!(
            "gateway {} (SSPR_GATEWAY_MAX_IN_FLIGHT), each service {} (SSPR_RPC_MAX_IN_FLIGHT)",
            env_or(
                "SSPR_GATEWAY_MAX_IN_FLIGHT",
                &sspr_gateway::DEFAULT_MAX_IN_FLIGHT.to_string()
            ),
            env_or(
                "SSPR_RPC_MAX_IN_FLIGHT",
                &sspr_bus::DEFAULT_MAX_IN_FLIGHT.to_string()
            ),
        ),
    ));
    settings.push((
        "load".into(),
        format!(
            "flow {}, rates {:?}/s, {:?} recorded after {:?} warm-up per rate, {users} users, {} gRPC connections, client IPs from 198.18.0.0/20 in x-forwarded-for",
            opts.flow.name(),
            opts.rates,
            opts.duration,
            opts.warmup,
            opts.connections.max(1)
        ),
    ));

    eprintln!("sspr bench: measuring the floors");
    let floors = floors::measure(
        nats_url,
        sink.addr(),
        floors::FloorSamples {
            fast: opts.floor_samples.max(10),
            stock_lettre: (opts.floor_samples / 20).clamp(5, 100),
            argon2: 20,
            ceiling_time: Duration::from_secs(3),
        },
    )
    .await;

    let previous = driver::get_policy(&gw).await?;
    let during = driver::bench_policy(&previous);
    let changed = driver::changed_limits(&previous, &during);
    settings.push((
        "policy changed for the run".into(),
        if changed.is_empty() {
            "nothing".into()
        } else {
            changed.join("; ")
        },
    ));
    driver::set_policy(&gw, during).await?;

    let outcome = tokio::select! {
        r = load(opts, sink, &gw, users, watched, &settings, &floors) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    eprintln!("sspr bench: restoring the previous policy");
    if let Err(e) = driver::set_policy(&gw, previous).await {
        eprintln!("sspr bench: could not restore the policy: {e:#}");
        if outcome.is_ok() {
            return Err(e.context("restoring the policy"));
        }
    }
    outcome
}

fn memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB RAM", kib / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "RAM unknown".to_owned())
}

/// The population, then every rate; prints as it goes.
async fn load(
    opts: &BenchOptions,
    sink: &Arc<SmtpSink>,
    gw: &Gateway,
    users: usize,
    watched: Vec<cpu::Watched>,
    settings: &[(String, String)],
    floors: &floors::Floors,
) -> anyhow::Result<()> {
    eprintln!("sspr bench: registering {users} users");
    let started = Instant::now();
    let mut registering = futures::stream::iter(0..users)
        .map(|i| driver::populate_user(gw, sink, i))
        .buffer_unordered(opts.populate_concurrency.max(1));
    while let Some(r) = registering.next().await {
        r?;
    }
    drop(registering);
    eprintln!(
        "sspr bench: {users} users ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut stdout = std::io::stdout();
    let _ = write!(stdout, "{}", report::header(settings));
    let _ = write!(stdout, "{}", report::floors(floors));
    let _ = stdout.flush();

    let ticks = cpu::ticks_per_second();
    let mut results = Vec::new();
    let pool = driver::UserPool::new(users);
    for &rate in &opts.rates {
        eprintln!("sspr bench: rate {rate}/s");
        let schedule = Schedule {
            rate,
            warmup: opts.warmup,
            duration: opts.duration,
        };
        let r = run_rate(schedule, opts.flow, gw, sink, &pool, &watched, ticks).await;
        let _ = write!(stdout, "{}", report::rate(&r, floors));
        let _ = stdout.flush();
        results.push(r);
        // Let queues and outboxes drain before the next rate.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = write!(stdout, "{}", report::summary(&results, floors));
    let _ = stdout.flush();
    Ok(())
}

/// One rate: flows started at their due times, each as its own task; then every flow awaited.
#[allow(clippy::too_many_arguments)]
async fn run_rate(
    schedule: Schedule,
    kind: FlowKind,
    gw: &Gateway,
    sink: &Arc<SmtpSink>,
    pool: &driver::UserPool,
    watched: &[cpu::Watched],
    ticks: u64,
) -> RateResult {
    let t0 = Instant::now() + Duration::from_millis(20);
    let measure_start = t0 + schedule.warmup;
    let mut cpu_before = None;
    let mut flows = Vec::with_capacity(schedule.len() as usize);
    let mut max_start_lag = Duration::ZERO;
    for i in 0..schedule.len() {
        let due = t0 + schedule.due(i);
        if i == schedule.warmup_len() {
            tokio::time::sleep_until(due.into()).await;
            cpu_before = Some(cpu::sample(watched, ticks));
        }
        let now = Instant::now();
        if now < due {
            tokio::time::sleep_until(due.into()).await;
        } else if schedule.is_recorded(i) {
            max_start_lag = max_start_lag.max(now - due);
        }
        // A user has one flow at a time (its mails are told apart by recipient); when every
        // user is busy the flow fails at once, as a client that found no account to use.
        let flow = match pool.take() {
            Some(user) => {
                let (gw, sink, pool) = (gw.clone(), sink.clone(), pool.clone());
                tokio::spawn(async move {
                    let outcome = driver::run_flow(gw, sink, kind, i, user, due).await;
                    pool.give_back(user);
                    outcome
                })
            }
            None => tokio::spawn(async {
                driver::FlowOutcome {
                    error: Some((Step::StartReset, "no idle bench user".to_owned())),
                    ended: Some(Instant::now()),
                    ..Default::default()
                }
            }),
        };
        flows.push((schedule.is_recorded(i), flow));
    }
    let mut steps: BTreeMap<Step, hdrhistogram::Histogram<u64>> = kind
        .steps()
        .iter()
        .map(|s| (*s, floors::histogram()))
        .collect();
    let mut errors = BTreeMap::new();
    let (mut completed, mut failed, mut warmup_errors) = (0, 0, 0);
    let mut last_end = measure_start;
    for (recorded, flow) in flows {
        let outcome = match flow.await {
            Ok(o) => o,
            Err(_) => driver::FlowOutcome {
                error: Some((Step::StartReset, "panicked".to_owned())),
                ..Default::default()
            },
        };
        if !recorded {
            warmup_errors += u64::from(!outcome.completed());
            continue;
        }
        for (step, d) in &outcome.latencies {
            if let Some(h) = steps.get_mut(step) {
                floors::record(h, *d);
            }
        }
        match &outcome.error {
            None => completed += 1,
            Some(e) => {
                failed += 1;
                *errors.entry(e.clone()).or_insert(0) += 1;
            }
        }
        if let Some(end) = outcome.ended {
            last_end = last_end.max(end);
        }
    }
    // Background work the flows caused (outbox relays, audit, acks) is charged too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_after = cpu::sample(watched, ticks);
    let cpu_before = cpu_before.unwrap_or_else(|| cpu_after.clone());
    let deltas = cpu::delta(&cpu_before, &cpu_after);
    let window = last_end.saturating_duration_since(measure_start);
    let achieved = if window.is_zero() {
        0.0
    } else {
        completed as f64 / window.as_secs_f64().max(schedule.duration.as_secs_f64())
    };
    RateResult {
        kind,
        target: schedule.rate,
        achieved,
        scheduled: schedule.len(),
        warmup: schedule.warmup_len(),
        completed,
        failed,
        max_start_lag,
        steps,
        errors,
        warmup_errors,
        cpu: watched
            .iter()
            .zip(deltas)
            .map(|(w, d)| (w.name.clone(), w.sspr, d))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchOptions,
    }

    fn options(args: &[&str]) -> BenchOptions {
        Cli::parse_from(std::iter::once("bench").chain(args.iter().copied())).bench
    }

    #[test]
    fn the_default_population_spreads_flows_and_codes_thin_enough() {
        // 22,200 flows in all; the highest rate alone needs 500 users for 0.5 s per flow.
        assert_eq!(default_users(&options(&[])), 500);
        // A long run at a low rate: at most 80 codes per user.
        assert_eq!(
            default_users(&options(&[
                "--rates",
                "50",
                "--duration",
                "10m",
                "--warmup",
                "0s"
            ])),
            375
        );
        assert_eq!(default_users(&options(&["--rates", "4"])), 20);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
