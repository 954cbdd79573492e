//! Reads one series out of the Prometheus text that `sspr_telemetry::metrics::encode()` (and
//! `GET /metrics`) produce, so tests can compare a metric before and after what they drive.
//!
//! Tests of one binary share the process-wide registry: compare deltas, never absolutes.

/// The value of the series `name` whose labels include every `(label, value)` of `labels`
/// (other labels are ignored), summed over the matching series; 0 when none matches.
/// `name` is the exported series name: `..._total` for a counter, `..._count` or `..._sum` for
/// a histogram, the bare name for a gauge.
pub fn series_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let have: Vec<&str> = series_labels.split(',').collect();
            wanted
                .iter()
                .all(|w| have.contains(&w.as_str()))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_series_by_name_and_labels() {
        let text = "# TYPE a counter\n\
                    a_total{channel=\"email\",result=\"sent\"} 3\n\
                    a_total{channel=\"sms\",result=\"sent\"} 4\n\
                    h_count{operation=\"hash\"} 2\n\
                    g 7\n";
        assert_eq!(series_value(text, "a_total", &[("channel", "email")]), 3.0);
        assert_eq!(series_value(text, "a_total", &[("result", "sent")]), 7.0);
        assert_eq!(series_value(text, "h_count", &[("operation", "hash")]), 2.0);
        assert_eq!(
            series_value(text, "h_count", &[("operation", "verify")]),
            0.0
        );
        assert_eq!(series_value(text, "g", &[]), 7.0);
    }
}
