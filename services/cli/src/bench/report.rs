//! The printed report: the settings header, the floors, one table per rate and the summary
//! against the targets. Plain text with fixed columns; the smoke test reads it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::driver::{FlowKind, Step};
use super::floors::{self, Floors};

/// Milliseconds of a microsecond histogram value.
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Every setting that changes the figures, one `name: value` line each.
pub fn header(settings: &[(String, String)]) -> String {
    let width = settings.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::from("# sspr bench\n");
    for (k, v) in settings {
        let _ = writeln!(out, "{k:<width$}  {v}");
    }
    out
}

pub fn floors(floors: &Floors) -> String {
    let mut out = String::from("\n## floors (same run, before the load)\n");
    let _ = writeln!(
        out,
        "{:<38} {:>7} {:>9} {:>9} {:>9}",
        "floor", "count", "p50 ms", "p99 ms", "max ms"
    );
    for f in &floors.floors {
        let h = &f.histogram;
        let _ = writeln!(
            out,
            "{:<38} {:>7} {:>9.3} {:>9.3} {:>9.3}",
            f.name,
            h.len(),
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        );
    }
    if let Some((per_s, threads)) = floors.hash_ceiling {
        let _ = writeln!(
            out,
            "hashing ceiling: {per_s:.1} Argon2id hashes/s on {threads} threads"
        );
    }
    for s in &floors.skipped {
        let _ = writeln!(out, "not measured: {s}");
    }
    out
}

/// What one rate measured.
pub struct RateResult {
    pub kind: FlowKind,
    pub target: f64,
    pub achieved: f64,
    pub scheduled: u64,
    pub warmup: u64,
    pub completed: u64,
    pub failed: u64,
    /// Latest start of a flow after its due time (how far the generator itself fell behind).
    pub max_start_lag: Duration,
    pub steps: BTreeMap<Step, Histogram<u64>>,
    /// (step, reason) → count, for recorded flows.
    pub errors: BTreeMap<(Step, String), u64>,
    pub warmup_errors: u64,
    /// CPU seconds per process over the recorded window: (name, is sspr, seconds).
    pub cpu: Vec<(String, bool, Option<Duration>)>,
}

impl RateResult {
    /// CPU milliseconds of every sspr process per completed flow.
    pub fn sspr_cpu_ms_per_flow(&self) -> Option<f64> {
        if self.completed == 0 {
            return None;
        }
        let total: f64 = self
            .cpu
            .iter()
            .filter(|(_, sspr, _)| *sspr)
            .filter_map(|(_, _, d)| d.map(|d| d.as_secs_f64()))
            .sum();
        Some(total * 1000.0 / self.completed as f64)
    }

    fn p(&self, step: Step, q: f64) -> Option<f64> {
        self.steps
            .get(&step)
            .filter(|h| !h.is_empty())
            .map(|h| ms(h.value_at_quantile(q)))
    }
}

/// `p50 / floor p50` of one step against the named floors.
fn ratios(step: Step, p50: f64, floors: &Floors) -> String {
    let against: &[&str] = match step {
        Step::StartReset | Step::SendCode | Step::VerifyCode => {
            &[floors::NATS_RR, floors::TONIC_ECHO]
        }
        Step::Delivery => &[floors::LETTRE_NODELAY],
        Step::CompleteReset => &[floors::ARGON2],
    };
    against
        .iter()
        .filter_map(|name| {
            let f = floors.get(name)?;
            let base = f.p50_ms();
            (base > 0.0).then(|| format!("{:.1}x {}", p50 / base, short(name)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(floor: &str) -> &str {
    match floor {
        floors::NATS_RR => "NATS rr",
        floors::TONIC_ECHO => "tonic echo",
        floors::LETTRE_NODELAY => "lettre send",
        floors::ARGON2 => "Argon2id",
        other => other,
    }
}

pub fn rate(r: &RateResult, floors: &Floors) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## rate {}/s, flow {} ({} flows, {} of them warm-up)",
        r.target,
        r.kind.name(),
        r.scheduled,
        r.warmup
    );
    let _ = writeln!(
        out,
        "target {:.1}/s  achieved {:.1}/s  completed {}  failed {}  max start lag {:.3} ms",
        r.target,
        r.achieved,
        r.completed,
        r.failed,
        r.max_start_lag.as_secs_f64() * 1000.0
    );
    let _ = writeln!(
        out,
        "{:<14} {:>7} {:>9} {:>9} {:>9} {:>9}  p50 vs floor",
        "step", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for step in r.kind.steps() {
        let Some(h) = r.steps.get(step) else { continue };
        if h.is_empty() {
            let _ = writeln!(out, "{:<14} {:>7}", step.name(), 0);
            continue;
        }
        let p50 = ms(h.value_at_quantile(0.5));
        let _ = writeln!(
            out,
            "{:<14} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3}  {}",
            step.name(),
            h.len(),
            p50,
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
            ratios(*step, p50, floors),
        );
    }
    if r.errors.is_empty() {
        let _ = writeln!(out, "errors: none");
    } else {
        let list: Vec<String> = r
            .errors
            .iter()
            .map(|((step, why), n)| format!("{} {why} {n}", step.name()))
            .collect();
        let _ = writeln!(out, "errors: {}", list.join(", "));
    }
    if r.warmup_errors > 0 {
        let _ = writeln!(
            out,
            "warm-up errors (not counted above): {}",
            r.warmup_errors
        );
    }
    match r.sspr_cpu_ms_per_flow() {
        Some(total) => {
            let per: Vec<String> = r
                .cpu
                .iter()
                .map(|(name, _, d)| match d {
                    Some(d) => format!(
                        "{name} {:.3}",
                        d.as_secs_f64() * 1000.0 / r.completed.max(1) as f64
                    ),
                    None => format!("{name} ?"),
                })
                .collect();
            let _ = writeln!(
                out,
                "CPU per completed flow: {total:.3} ms (all sspr processes); per process ms: {}",
                per.join(", ")
            );
        }
        None => {
            let _ = writeln!(out, "CPU per completed flow: n/a (no flow completed)");
        }
    }
    out
}

/// The targets, as ratios.
pub fn summary(results: &[RateResult], floors: &Floors) -> String {
    let mut out = String::from("\n## against the targets\n");
    for r in results {
        let delivery_p99 = r.p(Step::Delivery, 0.99);
        let _ = write!(
            out,
            "rate {}/s: achieved {:.1}/s ({:.0}% of 1000/s target)",
            r.target,
            r.achieved,
            r.achieved / 10.0
        );
        if let Some(p99) = delivery_p99 {
            let _ = write!(
                out,
                ", delivery p99 {p99:.3} ms ({:.2}x the 25 ms target)",
                p99 / 25.0
            );
        }
        if let Some(cpu) = r.sspr_cpu_ms_per_flow() {
            let _ = write!(
                out,
                ", CPU {cpu:.3} ms/flow ({:.2}x the 1.0 ms target)",
                cpu
            );
        }
        if let (Some(nats), Some(p50)) = (floors.get(floors::NATS_RR), r.p(Step::StartReset, 0.5))
            && nats.p50_ms() > 0.0
        {
            let _ = write!(
                out,
                ", StartReset p50 {:.1}x NATS rr (target <= 3x)",
                p50 / nats.p50_ms()
            );
        }
        if r.kind == FlowKind::Full
            && let Some((ceiling, _)) = floors.hash_ceiling
            && ceiling > 0.0
        {
            let _ = write!(
                out,
                ", full resets {:.1}% of the hashing ceiling (target >= 80%)",
                r.achieved * 100.0 / ceiling
            );
        }
        let _ = writeln!(out);
    }
    out
}
