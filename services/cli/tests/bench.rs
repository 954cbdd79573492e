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
