//! The binary's process contract: a missing or bad setting is one clear line on stderr and a
//! non-zero exit, never a panic.

use std::process::Command;

fn run(envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let data = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sspr-verification"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SSPR_DATA_DIR", data.path())
        // Nothing listens here: the process must fail on configuration before connecting.
        .env("SSPR_NATS_URL", "nats://127.0.0.1:1")
        .env("SSPR_METRICS_ADDR", "off");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run sspr-verification");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_clear_line(stderr: &str, needle: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr: {stderr:?}");
    assert!(lines[0].starts_with("sspr-verification: "), "{stderr:?}");
    assert!(lines[0].contains(needle), "{stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

#[test]
fn without_a_code_key_it_exits_2_naming_the_variable() {
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_one_clear_line(&stderr, "SSPR_CODE_KEY");
}

#[test]
fn a_short_code_key_is_refused_without_printing_it() {
    // 16 bytes, base64.
    let short = "c2VjcmV0c2VjcmV0c2VjcmU=";
    let (code, stderr) = run(&[("SSPR_CODE_KEY", short)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_one_clear_line(&stderr, "SSPR_CODE_KEY");
    assert!(!stderr.contains(short), "the key value was printed");
}

#[test]
fn a_bad_resend_wait_is_refused() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let (code, stderr) = run(&[("SSPR_CODE_KEY", key), ("SSPR_RESEND_AFTER_SECS", "soon")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_one_clear_line(&stderr, "SSPR_RESEND_AFTER_SECS");
}
