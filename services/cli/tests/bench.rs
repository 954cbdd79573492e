//! `sspr bench` end to end: the `sspr` binary starts its own stack (the sspr-* binaries of the
//! same build, a private nats-server, its own SMTP sink), measures the floors, registers its
//! users, runs the full flow at two tiny rates and prints the report. Only the report's shape
//! and the counts are checked (benchmarks measure; tests prove behaviour, never timings).

use std::path::{Path, PathBuf};
use std::process::Command;

const SERVICES: [&str; 7] = [
    "sspr-gateway",
    "sspr-policy",
    "sspr-enrolment",
    "sspr-verification",
    "sspr-notification",
    "sspr-directory",
    "sspr-audit",
];

/// The service binaries beside `sspr`, built (same profile, same target directory) when a
/// `cargo test -p sspr-cli` did not build them.
fn service_binaries(bin_dir: &Path) {
    if SERVICES.iter().all(|s| bin_dir.join(s).is_file()) {
        return;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.arg("build");
    for s in SERVICES {
        build.args(["--bin", s]);
    }
    if bin_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building the service binaries failed");
}

/// The first whole number after `label` in `line`.
fn number_after(line: &str, label: &str) -> Option<u64> {
    let rest = &line[line.find(label)? + label.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn bench_runs_the_full_flow_against_its_own_stack_and_prints_every_table() {
    let sspr = PathBuf::from(env!("CARGO_BIN_EXE_sspr"));
    let bin_dir = sspr.parent().expect("a directory").to_path_buf();
    service_binaries(&bin_dir);

    let out = Command::new(&sspr)
        .args([
            "bench",
            "--rates",
            "4,8",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            "--users",
            "24",
            "--flow",
            "full",
            "--floor-samples",
            "40",
        ])
        .env_remove("SSPR_ADMIN_TOKEN")
        .output()
        .expect("sspr runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sspr bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // The header names every setting that changes the figures.
    for setting in [
        "# sspr bench",
        "profile",
        "storage ",
        "SQLite",
        "replicas",
        "tracing/OTLP",
        "RUST_LOG",
        "Argon2id  ",
        "m=19456 KiB, t=2, p=1",
        "in-flight limits",
        "policy changed for the run",
        "ip_start_reset_per_minute",
        "machine",
    ] {
        assert!(stdout.contains(setting), "no {setting:?} in\n{stdout}");
    }
    // Every floor was measured.
    for floor in [
        "NATS request/reply",
        "JetStream publish ack",
        "tonic unary echo",
        "lettre send (pooled, TCP_NODELAY)",
        "lettre send (stock pooled transport)",
        "Argon2id hash",
        "hashing ceiling:",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(floor)),
            "floor {floor:?} missing in\n{stdout}"
        );
    }
    assert!(!stdout.contains("not measured"), "{stdout}");

    // One table per rate, each with every step of the full flow, completed flows and no errors.
    for rate in ["4", "8"] {
        let start = stdout
            .find(&format!("## rate {rate}/s, flow full"))
            .unwrap_or_else(|| panic!("no table for rate {rate} in\n{stdout}"));
        let table: Vec<&str> = stdout[start..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("##") && !l.is_empty())
            .collect();
        let summary = table[0];
        let completed = number_after(summary, "completed").expect("completed count");
        assert!(completed > 0, "no completed flow at rate {rate}: {summary}");
        assert_eq!(number_after(summary, "failed"), Some(0), "{summary}");
        let columns: Vec<&str> = table[1]
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            columns,
            [
                "step",
                "count",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "p50 vs floor"
            ],
            "{}",
            table[1]
        );
        for step in [
            "StartReset",
            "SendCode",
            "delivery",
            "VerifyCode",
            "CompleteReset",
        ] {
            let row = table
                .iter()
                .find(|l| l.split_whitespace().next() == Some(step))
                .unwrap_or_else(|| panic!("no {step} row at rate {rate}:\n{}", table.join("\n")));
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(cells[1].parse::<u64>().ok(), Some(completed), "{row}");
            for value in &cells[2..6] {
                assert!(value.parse::<f64>().is_ok(), "{row}");
            }
            assert!(row.contains('x'), "no ratio to a floor: {row}");
        }
        assert!(table.contains(&"errors: none"), "{}", table.join("\n"));
        let cpu = table
            .iter()
            .find(|l| l.starts_with("CPU per completed flow:"))
            .expect("a CPU line");
        for process in [
            "gateway",
            "verification",
            "notification",
            "nats-server",
            "bench",
        ] {
            assert!(cpu.contains(process), "{cpu}");
        }
    }
    assert!(stdout.contains("## against the targets"), "{stdout}");
    assert!(stdout.contains("of the hashing ceiling"), "{stdout}");
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The parts of a policy the bench may touch, to compare before and after.
fn touched(p: &sspr_proto::admin::v1::Policy) -> impl PartialEq + std::fmt::Debug {
    (
        p.scope,
        p.group_ids.clone(),
        p.methods_required,
        p.allowed_methods.clone(),
        p.require_full_destination,
        p.limits.clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_against_a_running_stack_puts_the_policy_back_after_ctrl_c() -> anyhow::Result<()> {
    use sspr_proto::admin::v1::{self as admin, admin_client::AdminClient};
    use sspr_proto::common::v1::MethodKind;
    use tokio::io::AsyncBufReadExt;

    const TOKEN: &str = "bench-test-admin-token-0123456789";
    let sspr = PathBuf::from(env!("CARGO_BIN_EXE_sspr"));
    let nats = sspr_testkit::NatsServer::start().await?;
    let data = tempfile::tempdir()?;
    let smtp_port = free_port();
    let stack = sspr_cli::dev::Stack::start(sspr_cli::dev::StackOptions {
        nats_url: nats.url(),
        db: sspr_storage::DbSettings {
            data_dir: data.path().to_path_buf(),
            database_url: None,
        },
        mail: sspr_cli::dev::smtp_transport(&format!("smtp://127.0.0.1:{smtp_port}"))?,
        mail_from: None,
        sms_webhook_url: None,
        sms_dir: None,
        code_key: [7u8; 32],
        code_key_ring: None,
        admin_token: TOKEN.to_owned(),
        named_admin_tokens: None,
        grpc_addr: "127.0.0.1:0".parse()?,
        clock: sspr_clock::system(),
        resend_after: std::time::Duration::ZERO,
        directory: sspr_directory::Config::default(),
        policy: sspr_policy::Config::default(),
        bus_config: None,
        verification_replicas: 1,
        trusted_proxy_hops: 1,
        challenge_verify_url: None,
        challenge_secret: None,
        sms: Default::default(),
    })
    .await?;
    let gateway = format!("http://{}", stack.grpc_addr());
    let mut client = AdminClient::connect(gateway.clone()).await?;
    let as_admin = |body| {
        let mut req = tonic::Request::new(body);
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {TOKEN}").parse().expect("ascii"),
        );
        req
    };
    let get = |client: &mut AdminClient<tonic::transport::Channel>| {
        let mut client = client.clone();
        let req = as_admin(admin::GetPolicyRequest {});
        async move { anyhow::Ok(client.get_policy(req).await?.into_inner()) }
    };
    // The organisation's own policy, which the bench must leave as it found it.
    let mut req = tonic::Request::new(admin::SetPolicyRequest {
        policy: Some(admin::Policy {
            scope: admin::Scope::Selected as i32,
            group_ids: vec!["staff".to_owned()],
            methods_required: 2,
            allowed_methods: vec![MethodKind::Email as i32, MethodKind::Sms as i32],
            limits: Some(admin::Limits {
                email_sends_per_10_minutes: Some(7),
                code_length: Some(9),
                ..Default::default()
            }),
            ..Default::default()
        }),
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse()?);
    client.set_policy(req).await?;
    let before = get(&mut client).await?;

    let mut bench = tokio::process::Command::new(&sspr)
        .args([
            "bench",
            "--gateway",
            &gateway,
            "--smtp-listen",
            &format!("127.0.0.1:{smtp_port}"),
            "--nats-url",
            &nats.url(),
            "--rates",
            "3",
            "--duration",
            "120s",
            "--warmup",
            "0s",
            "--users",
            "4",
            "--floor-samples",
            "20",
        ])
        .env("SSPR_ADMIN_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stderr = bench.stderr.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let running = tokio::time::timeout(std::time::Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await? {
            let started = line.contains("rate 3/s");
            seen.push(line);
            if started {
                return anyhow::Ok(true);
            }
        }
        Ok(false)
    })
    .await;
    assert!(
        matches!(running, Ok(Ok(true))),
        "the bench never reached its load: {seen:?}"
    );
    // Under load, the throttles are out of the way and the bench's users are in scope.
    let during = get(&mut client).await?;
    let limits = during.limits.clone().unwrap_or_default();
    assert_eq!(limits.ip_start_reset_per_minute, Some(10_000));
    assert_eq!(limits.code_length, Some(9), "unrelated limits are kept");
    assert!(during.group_ids.contains(&"sspr-bench".to_owned()));
    assert_eq!(during.methods_required, 1);

    let pid = bench.id().expect("running").to_string();
    let sent = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await?;
    assert!(sent.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), bench.wait()).await??;
    assert!(!status.success(), "an interrupted bench reports failure");
    while let Ok(Some(line)) = lines.next_line().await {
        seen.push(line);
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("restoring the previous policy")),
        "{seen:?}"
    );
    let after = get(&mut client).await?;
    assert_eq!(touched(&after), touched(&before));
    stack.stop().await;
    Ok(())
}
