//! CPU time of processes from `/proc/<pid>/stat` (user + system, in clock ticks), so the bench
//! can charge each completed flow with the CPU every process spent on it.

use std::time::Duration;

/// A process the bench watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// `gateway`, `policy`, ..., `nats-server`, `bench`.
    pub name: String,
    pub pid: u32,
    /// Whether it is an sspr service (counted in the per-flow total).
    pub sspr: bool,
}

/// CPU seconds per watched process at one instant (`None`: the process is gone or unreadable).
#[derive(Debug, Clone)]
pub struct Sample(pub Vec<Option<Duration>>);

/// Reads every watched process now.
pub fn sample(watched: &[Watched], ticks_per_second: u64) -> Sample {
    Sample(
        watched
            .iter()
            .map(|w| {
                let stat = std::fs::read_to_string(format!("/proc/{}/stat", w.pid)).ok()?;
                let ticks = cpu_ticks(&stat)?;
                Some(Duration::from_secs_f64(
                    ticks as f64 / ticks_per_second.max(1) as f64,
                ))
            })
            .collect(),
    )
}

/// CPU spent by each process between two samples.
pub fn delta(before: &Sample, after: &Sample) -> Vec<Option<Duration>> {
    before
        .0
        .iter()
        .zip(&after.0)
        .map(|(b, a)| match (b, a) {
            (Some(b), Some(a)) => Some(a.saturating_sub(*b)),
            _ => None,
        })
        .collect()
}

/// utime + stime of a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (field 3) is index 0, so utime (14) is 11 and stime (15) is 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100, the Linux value, when that fails).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// Processes whose command name starts with `sspr-` (an already running stack), plus
/// nats-server; for `--gateway` without `--pids`.
pub fn scan_sspr_processes() -> Vec<Watched> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // argv[0]'s file name: `comm` is cut at 15 bytes (`sspr-notificati`).
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let argv0 = String::from_utf8_lossy(argv0);
        let comm = argv0.rsplit('/').next().unwrap_or_default();
        if let Some(service) = comm.strip_prefix("sspr-") {
            found.push(Watched {
                name: service.to_owned(),
                pid,
                sspr: true,
            });
        } else if comm == "nats-server" {
            found.push(Watched {
                name: "nats-server".to_owned(),
                pid,
                sspr: false,
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name).then(a.pid.cmp(&b.pid)));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_ticks_even_with_odd_command_names() {
        let stat = "4242 (sspr-gate way) (x)) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 37 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(187));
        assert_eq!(cpu_ticks("garbage"), None);
        assert_eq!(cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_has_a_readable_cpu_time_that_never_goes_backwards() {
        let me = [Watched {
            name: "bench".to_owned(),
            pid: std::process::id(),
            sspr: false,
        }];
        let tps = ticks_per_second();
        let a = sample(&me, tps);
        let b = sample(&me, tps);
        assert!(a.0[0].is_some());
        assert!(delta(&a, &b)[0].is_some());
    }
}
