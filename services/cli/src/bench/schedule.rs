//! The open-loop arrival schedule: flow `i` of a run at `rate` per second is due at
//! `t0 + i / rate`, whatever happened to the flows before it. Latencies are measured from these
//! due times, so a stalled system shows up as latency instead of as fewer requests (no
//! coordinated omission).

use std::time::Duration;

/// Fixed-interval arrivals for one rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Flows per second (> 0).
    pub rate: f64,
    /// Flows due before this offset are warm-up: run, but not recorded.
    pub warmup: Duration,
    /// The recorded part of the run.
    pub duration: Duration,
}

impl Schedule {
    /// Number of flows in the whole run (warm-up included).
    pub fn len(&self) -> u64 {
        self.count_before(self.warmup + self.duration)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of warm-up flows: the first ones, due before `warmup`.
    pub fn warmup_len(&self) -> u64 {
        self.count_before(self.warmup)
    }

    /// Offset from the run's start at which flow `i` is due.
    pub fn due(&self, i: u64) -> Duration {
        // Whole nanoseconds, rounded: exact for every rate that divides a second evenly.
        Duration::from_nanos((i as f64 * 1e9 / self.rate).round() as u64)
    }

    /// Whether flow `i` is recorded (not warm-up).
    pub fn is_recorded(&self, i: u64) -> bool {
        i >= self.warmup_len()
    }

    /// Flows due strictly before `offset`: the smallest `i` with `i / rate >= offset`.
    fn count_before(&self, offset: Duration) -> u64 {
        if self.rate <= 0.0 {
            return 0;
        }
        // ceil(offset * rate), computed on whole nanoseconds to avoid 0.1 + 0.2 surprises.
        let nanos = offset.as_nanos() as f64 * self.rate;
        let exact = (nanos / 1e9).round();
        if (exact * 1e9 - nanos).abs() < 1.0 {
            exact as u64
        } else {
            (nanos / 1e9).ceil() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_due_at_fixed_intervals_from_the_start() {
        let s = Schedule {
            rate: 250.0,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
        };
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(4));
        assert_eq!(s.due(250), Duration::from_secs(1));
        assert_eq!(s.due(2999), Duration::from_millis(11_996));
        assert_eq!(s.len(), 3000);
        assert_eq!(s.warmup_len(), 500);
        assert!(!s.is_recorded(499));
        assert!(s.is_recorded(500));
    }

    #[test]
    fn every_due_time_lies_inside_the_run_and_they_never_go_backwards() {
        for rate in [0.5, 3.0, 7.0, 100.0, 333.0, 1000.0] {
            let s = Schedule {
                rate,
                warmup: Duration::from_millis(1500),
                duration: Duration::from_millis(2300),
            };
            let end = s.warmup + s.duration;
            let mut last = Duration::ZERO;
            for i in 0..s.len() {
                let due = s.due(i);
                assert!(due < end, "rate {rate}: flow {i} due {due:?} after {end:?}");
                assert!(due >= last);
                last = due;
                assert_eq!(s.is_recorded(i), due >= s.warmup, "rate {rate} flow {i}");
            }
            assert!(
                s.due(s.len()) >= end,
                "rate {rate}: a flow is missing at the end"
            );
        }
    }

    #[test]
    fn without_warmup_every_flow_is_recorded() {
        let s = Schedule {
            rate: 10.0,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
        };
        assert_eq!(s.len(), 10);
        assert_eq!(s.warmup_len(), 0);
        assert!(s.is_recorded(0));
        let none = Schedule { rate: 0.0, ..s };
        assert!(none.is_empty());
    }
}
