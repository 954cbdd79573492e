//! `sspr`: run the whole system for development, and talk to a running gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sspr_cli::client::{self, AdminCommand, GatewayArgs, RegisterCommand, ResetCommand};

#[derive(Parser)]
#[command(name = "sspr", version, about = "Self-service password reset")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in this process on embedded defaults: a local nats-server, SQLite files
    /// and mail written as .eml files under the data directory.
    Dev {
        /// Where databases, mail, the NATS store and the generated keys live.
        #[arg(long, env = "SSPR_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Address of the public gRPC API.
        #[arg(long, env = "SSPR_GRPC_ADDR", default_value = "127.0.0.1:50051")]
        grpc_addr: std::net::SocketAddr,
    },
    /// Create or update the JetStream streams and every service's durable consumer (run once
    /// per deployment and after upgrades, with the `provision` NATS identity from
    /// SSPR_NATS_USER/SSPR_NATS_PASSWORD, SSPR_NATS_CREDS or SSPR_NATS_NKEY_SEED).
    Provision {
        /// Stream replicas (up to the number of servers in the NATS cluster); default
        /// SSPR_STREAM_REPLICAS, else 1. Max age and duplicate window come from
        /// SSPR_EVENTS_MAX_AGE_DAYS and SSPR_DUPLICATE_WINDOW_SECS, as for the services.
        #[arg(long)]
        replicas: Option<usize>,
    },
    /// Watch the public events (SSPR_EVENTS) as JSON lines.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Administration through the gateway's Admin API.
    Admin {
        #[command(flatten)]
        gateway: GatewayArgs,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Register contact methods as an end user would at sign-in.
    Register {
        #[command(flatten)]
        gateway: GatewayArgs,
        #[command(subcommand)]
        command: RegisterCommand,
    },
    /// Reset a password as an end user would.
    Reset {
        #[command(flatten)]
        gateway: GatewayArgs,
        #[command(subcommand)]
        command: ResetCommand,
    },
    /// Open-loop load benchmark of the reset flow at fixed arrival rates, with the machine's
    /// physical floors (NATS, JetStream, tonic, SMTP, Argon2id) measured in the same run.
    /// Starts its own stack (the sspr-* binaries beside this one) unless --gateway is given.
    Bench(sspr_cli::bench::BenchOptions),
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print every event as one JSON line (subject, stream sequence, time, decoded event) until
    /// Ctrl-C or --limit; connects with SSPR_NATS_URL and the SSPR_NATS_* identity.
    Tail {
        /// Only these subjects (NATS wildcards within sspr.events.v1.>); repeatable.
        #[arg(long = "subject", value_name = "SUBJECT")]
        subjects: Vec<String>,
        /// Start from this RFC 3339 time or this long ago (30s, 10m, 2h, 7d); default: new
        /// events only.
        #[arg(long)]
        since: Option<String>,
        /// Use (and create) a durable consumer of this name, acknowledging what was printed,
        /// instead of an ephemeral ordered one.
        #[arg(long)]
        durable: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev {
            data_dir,
            grpc_addr,
        } => sspr_cli::dev::main(data_dir, grpc_addr).await,
        Command::Provision { replicas } => sspr_cli::provision::main(replicas).await,
        Command::Events {
            command:
                EventsCommand::Tail {
                    subjects,
                    since,
                    durable,
                    limit,
                },
        } => events_tail(subjects, since, durable, limit).await,
        Command::Admin { gateway, command } => client::admin(&gateway, command).await,
        Command::Register { gateway, command } => client::register(&gateway, command).await,
        Command::Reset { gateway, command } => client::reset(&gateway, command).await,
        Command::Bench(options) => sspr_cli::bench::main(options).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sspr: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn events_tail(
    subjects: Vec<String>,
    since: Option<String>,
    durable: Option<String>,
    limit: Option<u64>,
) -> anyhow::Result<()> {
    let since = since
        .map(|raw| sspr_cli::events::parse_since(&raw, chrono::Utc::now()))
        .transpose()?;
    sspr_cli::events::main(sspr_cli::events::TailOptions {
        subjects,
        since,
        durable,
        limit,
    })
    .await
}
