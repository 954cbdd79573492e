//! `deploy/observability/` checked against what sspr really exports, and `/metrics` seen end to
//! end.
//!
//! - Every PromQL expression in `alerts.yml` and in the Grafana dashboard may only name metrics of
//!   [`DESCRIPTORS`] (a histogram through its `_bucket`/`_count`/`_sum` series), or series that
//!   `alerts.yml` records itself, or Prometheus' own `up`; and only their labels (plus `le` on
//!   buckets, `job` and `instance`, which Prometheus adds), in selectors and in `by (...)`.
//! - The rule file has the shape Prometheus needs (always), passes `promtool check rules` and its
//!   unit tests `alerts_test.yml` with `promtool test rules` (when promtool is found: `SSPR_PROMTOOL` or `PATH`; `SSPR_REQUIRE_PROMTOOL=1`, set by
//!   `.ci/run` once it installed promtool, makes a missing one a failure).
//! - The dashboard is JSON Grafana can import and reads only from its `${datasource}` variable.
//! - The README lists every metric.
//! - End to end: the service binaries as separate processes (one `SSPR_METRICS_ADDR` each), one
//!   whole password reset through the gateway, then `GET /metrics` of every process: the whole
//!   catalogue is announced, in the Prometheus text format 0.0.4, and the series the reset must
//!   have produced have samples ([`EXPECTED_AFTER_ONE_RESET`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;
use sspr_telemetry::metrics::{DESCRIPTORS, Descriptor, Kind};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

const ALERTS: &str = "deploy/observability/alerts.yml";
const PROMETHEUS: &str = "deploy/observability/prometheus.yml";
const DASHBOARD: &str = "deploy/observability/grafana/code-delivery.json";

// ---------------------------------------------------------------------------------------------
// PromQL: the metric names and labels an expression uses

/// What one PromQL expression refers to.
#[derive(Debug, Default, PartialEq)]
struct Refs {
    /// Every vector selector: the metric name and the label names it matches on, with the
    /// matched value (or regex) of each.
    selectors: Vec<(String, Vec<(String, String)>)>,
    /// Label names in `by`, `without`, `on`, `ignoring`, `group_left`, `group_right`.
    grouping: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
}

/// Splits PromQL into identifiers, strings and punctuation. Numbers, durations, range and
/// subquery brackets (`[5m]`, `[1h:1m]`), Grafana variables (`$__rate_interval`,
/// `${datasource}`) and comments are dropped: none of them names a metric or a label.
fn tokens(expr: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err(format!("unterminated string in {expr}"));
                };
                i += 1;
                if d == c {
                    break;
                }
                if d == '\\' && c != '`' {
                    if let Some(&e) = chars.get(i) {
                        s.push(e);
                        i += 1;
                    }
                } else {
                    s.push(d);
                }
            }
            out.push(Tok::Str(s));
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            if i == chars.len() {
                return Err(format!("unclosed [ in {expr}"));
            }
            i += 1;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || c == '.' {
            // 0.99, 1e3, 14.4, 5m (after offset)
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '+' || chars[i] == '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    Ok(out)
}

/// Words that are never a metric name when not followed by `(`.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "and",
    "or",
    "unless",
    "bool",
    "atan2",
    "inf",
    "nan",
    "Inf",
    "NaN",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names and labels `expr` uses.
fn refs(expr: &str) -> Result<Refs, String> {
    let toks = tokens(expr)?;
    let mut refs = Refs::default();
    let mut i = 0;
    while i < toks.len() {
        let Tok::Ident(word) = &toks[i] else {
            if toks[i] == Tok::Punct('{') {
                return Err(format!("a selector without a metric name in {expr}"));
            }
            i += 1;
            continue;
        };
        let next = toks.get(i + 1);
        if GROUPING.contains(&word.as_str()) {
            i += 1;
            if toks.get(i) == Some(&Tok::Punct('(')) {
                i += 1;
                while let Some(t) = toks.get(i) {
                    i += 1;
                    match t {
                        Tok::Punct(')') => break,
                        Tok::Ident(label) => {
                            refs.grouping.insert(label.clone());
                        }
                        Tok::Punct(',') => {}
                        other => {
                            return Err(format!("unexpected {other:?} in a label list: {expr}"));
                        }
                    }
                }
            }
        } else if word == "offset" {
            i += 1; // the duration is dropped by the tokenizer
        } else if next == Some(&Tok::Punct('(')) || KEYWORDS.contains(&word.as_str()) {
            i += 1; // a function or an aggregation
        } else {
            let mut matchers = Vec::new();
            i += 1;
            if toks.get(i) == Some(&Tok::Punct('{')) {
                i += 1;
                loop {
                    match toks.get(i) {
                        Some(Tok::Punct('}')) => {
                            i += 1;
                            break;
                        }
                        Some(Tok::Punct(',')) => i += 1,
                        Some(Tok::Ident(label)) => {
                            // =, !=, =~ or !~, then the value
                            let mut j = i + 1;
                            while matches!(toks.get(j), Some(Tok::Punct('=' | '!' | '~'))) {
                                j += 1;
                            }
                            let Some(Tok::Str(value)) = toks.get(j) else {
                                return Err(format!("matcher on {label} without a value: {expr}"));
                            };
                            if j == i + 1 {
                                return Err(format!(
                                    "matcher on {label} without an operator: {expr}"
                                ));
                            }
                            matchers.push((label.clone(), value.clone()));
                            i = j + 1;
                        }
                        other => return Err(format!("unexpected {other:?} in a selector: {expr}")),
                    }
                }
            }
            refs.selectors.push((word.clone(), matchers));
        }
    }
    Ok(refs)
}

/// Whether brackets and quotes balance (outside strings).
fn balanced(expr: &str) -> bool {
    let mut stack = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '{' | '[' => stack.push(c),
            ')' | '}' | ']' => {
                let open = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                if stack.pop() != Some(open) {
                    return false;
                }
            }
            _ => {}
        }
    }
    stack.is_empty() && quote.is_none()
}

/// The descriptor a series name belongs to (a histogram's `_bucket`, `_count`, `_sum` included),
/// and whether it is the `_bucket` series.
fn descriptor_of(series: &str) -> Option<(&'static Descriptor, bool)> {
    if let Some(d) = DESCRIPTORS.iter().find(|d| d.name == series) {
        return Some((d, false));
    }
    for suffix in ["_bucket", "_count", "_sum"] {
        if let Some(base) = series.strip_suffix(suffix)
            && let Some(d) = DESCRIPTORS
                .iter()
                .find(|d| d.name == base && d.kind == Kind::Histogram)
        {
            return Some((d, suffix == "_bucket"));
        }
    }
    None
}

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Checks one expression: every name is known, every label belongs to it. `recorded` maps the
/// names recorded by rules of the same file to their labels. Returns the problems found.
fn check_expr(
    place: &str,
    expr: &str,
    recorded: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let refs = match refs(expr) {
        Ok(r) => r,
        Err(e) => return vec![format!("{place}: {e}")],
    };
    let mut problems = Vec::new();
    if refs.selectors.is_empty() {
        problems.push(format!("{place}: no metric in {expr}"));
    }
    let mut in_scope: BTreeSet<String> = TARGET_LABELS.iter().map(|l| (*l).to_owned()).collect();
    for (name, matchers) in &refs.selectors {
        let labels: BTreeSet<String> = if let Some((d, bucket)) = descriptor_of(name) {
            let mut l: BTreeSet<String> = d.labels.iter().map(|l| (*l).to_owned()).collect();
            if bucket {
                l.insert("le".to_owned());
            }
            l
        } else if let Some(l) = recorded.get(name) {
            l.clone()
        } else if name == "up" {
            BTreeSet::new()
        } else {
            problems.push(format!("{place}: {name} is not a metric sspr exports"));
            continue;
        };
        for (label, _) in matchers {
            if !labels.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                problems.push(format!("{place}: {name} has no label {label}"));
            }
        }
        in_scope.extend(labels);
    }
    for label in &refs.grouping {
        if !in_scope.contains(label) {
            problems.push(format!(
                "{place}: groups by {label}, which none of its metrics has"
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// alerts.yml

fn alert_groups() -> Value {
    serde_yaml::from_str(&read(ALERTS)).expect("alerts.yml is YAML")
}

/// Every rule as (group name, rule).
fn rules(doc: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups: a list") {
        let name = group["name"]
            .as_str()
            .expect("a group has a name")
            .to_owned();
        for rule in group["rules"]
            .as_sequence()
            .unwrap_or_else(|| panic!("group {name} has rules"))
        {
            out.push((name.clone(), rule.clone()));
        }
    }
    out
}

/// Names recorded by the file's recording rules, with the labels they keep (their `by (...)`).
fn recorded(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    rules(doc)
        .iter()
        .filter_map(|(_, r)| {
            let name = r["record"].as_str()?;
            let expr = r["expr"].as_str()?;
            Some((name.to_owned(), refs(expr).ok()?.grouping))
        })
        .collect()
}

fn is_duration(s: &str) -> bool {
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ms", "s", "m", "h", "d", "w", "y"]
            .iter()
            .find(|u| rest.starts_with(**u))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
        parts += 1;
    }
    parts > 0
}

#[test]
fn alert_rules_have_the_shape_prometheus_needs() {
    let doc = alert_groups();
    let all = rules(&doc);
    let mut group_names = BTreeSet::new();
    for group in doc["groups"].as_sequence().unwrap() {
        assert!(
            group_names.insert(group["name"].as_str().unwrap().to_owned()),
            "group names are unique"
        );
    }
    let mut alerts = BTreeSet::new();
    for (group, rule) in &all {
        let expr = rule["expr"].as_str().unwrap_or_default();
        assert!(!expr.trim().is_empty(), "{group}: a rule without expr");
        assert!(balanced(expr), "{group}: unbalanced expression {expr}");
        if let Some(record) = rule["record"].as_str() {
            assert!(
                rule.get("alert").is_none(),
                "{record}: both record and alert"
            );
            assert_eq!(
                record.split(':').count(),
                3,
                "{record}: recorded names follow level:metric:operations"
            );
            continue;
        }
        let alert = rule["alert"]
            .as_str()
            .unwrap_or_else(|| panic!("{group}: a rule with neither alert nor record: {rule:?}"));
        assert!(alerts.insert(alert.to_owned()), "{alert} is defined twice");
        assert!(
            alert.starts_with("Sspr") && alert.chars().all(|c| c.is_ascii_alphanumeric()),
            "{alert}: alert names are SsprCamelCase"
        );
        let for_ = rule["for"]
            .as_str()
            .unwrap_or_else(|| panic!("{alert} has no `for`"));
        assert!(is_duration(for_), "{alert}: for: {for_}");
        let severity = rule["labels"]["severity"]
            .as_str()
            .unwrap_or_else(|| panic!("{alert} has no severity label"));
        assert!(
            ["page", "ticket"].contains(&severity),
            "{alert}: severity {severity}"
        );
        for key in ["summary", "description", "runbook"] {
            let text = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{alert} has no {key} annotation");
        }
    }
    // The alerts the brief of issue 6 asks for: delivery SLO burn, delivery failures, SMS
    // breaker, consumer lag, throttle spikes, outbox backlog, a target down.
    for needed in [
        "SsprCodeDeliveryBudgetFastBurn",
        "SsprCodeDeliveryBudgetSlowBurn",
        "SsprCodeDeliveryFailures",
        "SsprSmsBreakerOpen",
        "SsprDeliveryQueueLag",
        "SsprThrottleSpike",
        "SsprOutboxBacklogGrowing",
        "SsprTargetDown",
    ] {
        assert!(alerts.contains(needed), "{needed} is missing");
    }
}

#[test]
fn alert_rules_use_only_exported_metrics_and_their_labels() {
    let doc = alert_groups();
    let recorded = recorded(&doc);
    assert!(!recorded.is_empty(), "the SLO ratios are recorded");
    let mut problems = Vec::new();
    for (group, rule) in rules(&doc) {
        let name = rule["alert"]
            .as_str()
            .or_else(|| rule["record"].as_str())
            .unwrap_or("?");
        let expr = rule["expr"].as_str().unwrap_or_default();
        // A recording rule may not build on another recorded name of the file (one level only),
        // an alert may.
        let known = if rule.get("record").is_some() {
            BTreeMap::new()
        } else {
            recorded.clone()
        };
        problems.extend(check_expr(&format!("{group}/{name}"), expr, &known));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// promtool from `SSPR_PROMTOOL` or `PATH`; `None` (after saying so) when there is none and
/// `SSPR_REQUIRE_PROMTOOL` is not `1`.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("SSPR_PROMTOOL")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        });
    if found.is_none() {
        assert_ne!(
            std::env::var("SSPR_REQUIRE_PROMTOOL").as_deref(),
            Ok("1"),
            "SSPR_REQUIRE_PROMTOOL=1 but no promtool (SSPR_PROMTOOL or PATH)"
        );
        eprintln!("promtool not found (SSPR_PROMTOOL or PATH): skipped, the schema checks ran");
    }
    found
}

fn run_promtool(promtool: &Path, args: &[&str]) {
    let out = std::process::Command::new(promtool)
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("running promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "promtool {args:?}: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

#[test]
fn alert_rules_pass_promtool() {
    if let Some(promtool) = promtool() {
        run_promtool(&promtool, &["check", "rules", ALERTS]);
    }
}

/// `deploy/observability/alerts_test.yml`: each alert fires on the series that should trip it
/// (written as the services write them) and stays quiet on healthy ones.
#[test]
fn alert_rules_fire_on_their_promtool_unit_tests() {
    if let Some(promtool) = promtool() {
        run_promtool(
            &promtool,
            &["test", "rules", "deploy/observability/alerts_test.yml"],
        );
    }
}

#[test]
fn prometheus_config_passes_promtool_and_loads_the_alerts() {
    let config: Value = serde_yaml::from_str(&read(PROMETHEUS)).expect("prometheus.yml is YAML");
    let rule_files: Vec<&str> = config["rule_files"]
        .as_sequence()
        .expect("rule_files")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(rule_files, ["alerts.yml"]);
    if let Some(promtool) = promtool() {
        run_promtool(&promtool, &["check", "config", PROMETHEUS]);
    }
}

// ---------------------------------------------------------------------------------------------
// the Grafana dashboard

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dash: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p.clone());
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested.iter().cloned());
        }
    }
    out
}

/// Every `expr` of every panel target, with the panel's title.
fn dashboard_exprs(dash: &serde_json::Value) -> Vec<(String, String)> {
    panels(dash)
        .iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or("").to_owned()))
        })
        .collect()
}

#[test]
fn dashboard_is_a_grafana_dashboard_on_its_datasource_variable() {
    let dash = dashboard();
    assert!(
        dash["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && u.len() <= 40),
        "uid"
    );
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dash["schemaVersion"].as_u64().unwrap_or(0) >= 38);
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");

    let mut ids = BTreeSet::new();
    let all = panels(&dash);
    assert!(all.len() > 10, "{} panels", all.len());
    for p in &all {
        let id = p["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} twice");
        let grid = &p["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(grid[k].is_u64(), "panel {id} gridPos.{k}");
        }
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24);
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "panel {id} has a title");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "{title}: a target without expr"
            );
            assert!(
                refs.insert(t["refId"].as_str().expect("refId").to_owned()),
                "{title}: refId twice"
            );
        }
    }
    // The only datasource anywhere is the variable.
    fn walk(v: &serde_json::Value, at: &str, found: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    if k == "datasource" && at != "templating" {
                        let uid = child["uid"].as_str().or_else(|| child.as_str());
                        if uid != Some("${datasource}") {
                            found.push(format!("{child}"));
                        }
                    }
                    walk(child, if k == "templating" { k } else { at }, found);
                }
            }
            serde_json::Value::Array(items) => {
                for child in items {
                    walk(child, at, found);
                }
            }
            _ => {}
        }
    }
    let mut other = Vec::new();
    walk(&dash, "", &mut other);
    assert!(
        other.is_empty(),
        "datasources other than ${{datasource}}: {other:?}"
    );
}

#[test]
fn dashboard_queries_use_only_exported_metrics_and_their_labels() {
    let dash = dashboard();
    let mut problems = Vec::new();
    let exprs = dashboard_exprs(&dash);
    for (title, expr) in &exprs {
        assert!(balanced(expr), "{title}: unbalanced {expr}");
        problems.extend(check_expr(title, expr, &BTreeMap::new()));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // What issue 6 asks the dashboard to show.
    let all: String = exprs.iter().map(|(_, e)| e.as_str()).collect();
    for needed in [
        "sspr_code_delivery_duration_seconds_bucket",
        "sspr_code_delivery_receipt_duration_seconds_bucket",
        "sspr_delivery_attempts_total",
        "sspr_jetstream_consumer_pending",
        "sspr_jetstream_consumer_ack_pending",
        "sspr_jetstream_redeliveries_total",
        "sspr_outbox_backlog",
        "sspr_sms_breaker_open",
        "sspr_reset_outcomes_total",
        "sspr_grpc_server_duration_seconds",
        "sspr_nats_server_duration_seconds",
        "sspr_argon2_duration_seconds",
        "sspr_argon2_in_flight",
    ] {
        assert!(all.contains(needed), "the dashboard does not show {needed}");
    }
}

/// Every series name the alert rules and the dashboard query (recorded names and `up` aside).
fn queried_names() -> BTreeSet<String> {
    let doc = alert_groups();
    let recorded = recorded(&doc);
    let mut exprs: Vec<String> = rules(&doc)
        .iter()
        .filter_map(|(_, r)| r["expr"].as_str().map(str::to_owned))
        .collect();
    exprs.extend(dashboard_exprs(&dashboard()).into_iter().map(|(_, e)| e));
    exprs
        .iter()
        .flat_map(|e| refs(e).unwrap().selectors)
        .map(|(name, _)| name)
        .filter(|n| n != "up" && !recorded.contains_key(n))
        .collect()
}

/// `le` matchers must match the SLO bound as the services write it (`10`) and as Prometheus 3
/// normalises it (`10.0`).
#[test]
fn le_matchers_match_the_bounds_the_services_write() {
    let c = sspr_telemetry::metrics::catalogue();
    c.code_delivery_duration
        .observe(&["email", "accepted"], 0.5);
    let text = sspr_telemetry::metrics::encode();
    let written: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("sspr_code_delivery_duration_seconds_bucket{"))
        .filter_map(|l| {
            let (_, rest) = l.split_once("le=\"")?;
            Some(rest.split('"').next()?.to_owned())
        })
        .collect();
    let ten = written
        .iter()
        .find(|b| b.parse::<f64>().ok() == Some(10.0))
        .unwrap_or_else(|| panic!("no 10 s bucket in {written:?}"))
        .clone();

    let doc = alert_groups();
    let mut exprs: Vec<String> = rules(&doc)
        .iter()
        .filter_map(|(_, r)| r["expr"].as_str().map(str::to_owned))
        .collect();
    exprs.extend(dashboard_exprs(&dashboard()).into_iter().map(|(_, e)| e));
    let mut checked = 0;
    for expr in &exprs {
        for (_, matchers) in refs(expr).unwrap().selectors {
            for (label, value) in matchers {
                if label != "le" {
                    continue;
                }
                // `=~"a|b"` alternatives, anchored as Prometheus anchors regexes, where `.`
                // stands for any character.
                let matches = |bound: &str| {
                    value.split('|').any(|alternative| {
                        let alternative = alternative.replace("\\.", ".");
                        alternative.len() == bound.len()
                            && alternative
                                .chars()
                                .zip(bound.chars())
                                .all(|(p, c)| p == c || p == '.')
                    })
                };
                assert!(matches(&ten), "le {value:?} misses {ten:?} in {expr}");
                assert!(matches("10.0"), "le {value:?} misses \"10.0\" in {expr}");
                assert!(matches("10"), "le {value:?} misses \"10\" in {expr}");
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "the SLO queries match le");
}

// ---------------------------------------------------------------------------------------------
// README

#[test]
fn readme_documents_every_metric() {
    let readme = read("README.md");
    let section = readme
        .split("\n## Observability")
        .nth(1)
        .expect("README has an Observability section");
    let section = section.split("\n## ").next().unwrap_or(section);
    for d in DESCRIPTORS {
        assert!(
            section.contains(&format!("`{}`", d.name)),
            "{} is not in the README's Observability section",
            d.name
        );
        for label in d.labels {
            assert!(
                section.contains(label),
                "label {label} of {} is not in the README",
                d.name
            );
        }
    }
    for alert in rules(&alert_groups())
        .iter()
        .filter_map(|(_, r)| r["alert"].as_str().map(str::to_owned))
    {
        assert!(
            section.contains(&alert),
            "alert {alert} is not in the README"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// the extractor itself

#[test]
fn refs_finds_names_matchers_and_grouping() {
    let r = refs(
        r#"histogram_quantile(0.99, sum by (le, channel) (rate(sspr_code_delivery_duration_seconds_bucket{outcome="accepted",le=~"10|10.0"}[$__rate_interval])))
           / on (channel) group_left max without (instance) (x_total offset 1d) and absent(up{job="a\"b"} == 1) > 14.4 * 1e-3"#,
    )
    .unwrap();
    let names: Vec<&str> = r.selectors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "sspr_code_delivery_duration_seconds_bucket",
            "x_total",
            "up"
        ]
    );
    assert_eq!(
        r.selectors[0].1,
        [
            ("outcome".to_owned(), "accepted".to_owned()),
            ("le".to_owned(), "10|10.0".to_owned())
        ]
    );
    assert_eq!(r.selectors[2].1, [("job".to_owned(), "a\"b".to_owned())]);
    let grouping: Vec<&str> = r.grouping.iter().map(String::as_str).collect();
    assert_eq!(grouping, ["channel", "instance", "le"]);
    assert!(refs(r#"sum({__name__="x"})"#).is_err());
    assert!(balanced(r#"a{b="(("}[5m:1m]"#));
    assert!(!balanced("sum(rate(x[5m])"));
}

#[test]
fn check_expr_refuses_unknown_names_and_foreign_labels() {
    let none = BTreeMap::new();
    assert!(
        check_expr(
            "t",
            "sum by (channel) (rate(sspr_delivery_attempts_total[5m]))",
            &none
        )
        .is_empty()
    );
    assert!(
        check_expr(
            "t",
            "sspr_code_delivery_duration_seconds_count{channel=\"sms\"}",
            &none
        )
        .is_empty()
    );
    assert_eq!(
        check_expr("t", "rate(sspr_no_such_metric_total[5m])", &none).len(),
        1
    );
    assert_eq!(
        check_expr("t", "sspr_delivery_attempts_total{outcome=\"x\"}", &none).len(),
        1,
        "outcome is not a label of attempts"
    );
    assert_eq!(
        check_expr("t", "sum by (method) (sspr_outbox_backlog)", &none).len(),
        1
    );
    assert_eq!(
        check_expr("t", "sspr_outbox_backlog{le=\"1\"}", &none).len(),
        1,
        "le only on buckets"
    );
    assert_eq!(
        check_expr("t", "sspr_sms_breaker_open_count", &none).len(),
        1,
        "suffixes only on histograms"
    );
}

// ---------------------------------------------------------------------------------------------
// end to end: /metrics of every process after one reset

/// One series the reset must have produced: a series name, label values it must have (a value
/// ending in `*` matches by prefix, one starting with `*` by suffix), and who records it.
struct Expected {
    series: &'static str,
    labels: &'static [(&'static str, &'static str)],
    recorded_by: &'static str,
}

/// What one full password reset (StartReset → SendCode → code from the SMTP sink → VerifyCode
/// → CompleteReset) must leave on the `/metrics` of the processes, summed over all of them.
const EXPECTED_AFTER_ONE_RESET: &[Expected] = &[
    Expected {
        series: "sspr_grpc_server_duration_seconds_count",
        labels: &[("method", "*CompleteReset")],
        recorded_by: "gateway (rpc)",
    },
    Expected {
        series: "sspr_nats_server_duration_seconds_count",
        labels: &[
            ("service", "verification"),
            ("endpoint", "verification.complete_reset"),
            ("status", "ok"),
        ],
        recorded_by: "every service's NATS endpoints (rpc)",
    },
    Expected {
        series: "sspr_nats_client_duration_seconds_count",
        labels: &[
            ("endpoint", "verification.complete_reset"),
            ("status", "ok"),
        ],
        recorded_by: "the gateway's requests (rpc)",
    },
    Expected {
        series: "sspr_code_delivery_duration_seconds_count",
        labels: &[("channel", "email"), ("outcome", "accepted")],
        recorded_by: "notification (signals)",
    },
    Expected {
        series: "sspr_reset_outcomes_total",
        labels: &[("outcome", "completed")],
        recorded_by: "verification (signals)",
    },
    Expected {
        series: "sspr_outbox_published_total",
        labels: &[],
        recorded_by: "every outbox relay (signals)",
    },
    Expected {
        series: "sspr_argon2_duration_seconds_count",
        labels: &[],
        recorded_by: "directory (signals)",
    },
];

/// One parsed `/metrics` answer.
struct Scrape {
    process: String,
    /// `# TYPE` lines: family name → kind.
    types: BTreeMap<String, String>,
    /// (series name, labels, value).
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// `name{a="x",b="y"} 1.5` → (name, labels, value).
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.to_owned(), BTreeMap::new(), value));
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = BTreeMap::new();
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        while i < chars.len() && chars[i] != '=' {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        i += 1; // =
        if chars.get(i) != Some(&'"') {
            return None;
        }
        i += 1;
        let mut v = String::new();
        while i < chars.len() && chars[i] != '"' {
            if chars[i] == '\\' {
                i += 1;
            }
            if let Some(&c) = chars.get(i) {
                v.push(c);
            }
            i += 1;
        }
        i += 1; // closing quote
        if chars.get(i) == Some(&',') {
            i += 1;
        }
        labels.insert(key.trim().to_owned(), v);
    }
    Some((name.to_owned(), labels, value))
}

/// `GET /metrics` on 127.0.0.1:port over plain HTTP/1.1: asserts the status and content type,
/// parses the body.
async fn scrape(process: &str, port: u16) -> Scrape {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("{process}: connecting to 127.0.0.1:{port}: {e}"));
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("{process}: /metrics did not answer"))
        .unwrap();
    let raw = String::from_utf8(raw).expect("/metrics is UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "{process}: /metrics answered {status}"
    );
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let content_type = headers.get("content-type").cloned().unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"),
        "{process}: content type {content_type}"
    );
    assert_eq!(content_type, sspr_telemetry::metrics::CONTENT_TYPE);
    assert!(
        !headers
            .get("transfer-encoding")
            .is_some_and(|t| t.contains("chunked")),
        "{process}: a plain body"
    );
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            // Prometheus refuses a scrape that types one family twice.
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{process}: # TYPE {name} twice"
            );
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let sample = parse_sample(line)
                .unwrap_or_else(|| panic!("{process}: unparsable sample line {line:?}"));
            samples.push(sample);
        }
    }
    Scrape {
        process: process.to_owned(),
        types,
        samples,
    }
}

fn label_matches(wanted: &str, actual: &str) -> bool {
    if let Some(suffix) = wanted.strip_prefix('*') {
        actual.ends_with(suffix)
    } else if let Some(prefix) = wanted.strip_suffix('*') {
        actual.starts_with(prefix)
    } else {
        wanted == actual
    }
}

/// The sum of the samples of `e` over every scrape, and the processes that had some.
fn total(scrapes: &[Scrape], e: &Expected) -> (f64, Vec<String>) {
    let mut sum = 0.0;
    let mut seen_in = Vec::new();
    for s in scrapes {
        let here: f64 = s
            .samples
            .iter()
            .filter(|(name, labels, _)| {
                name == e.series
                    && e.labels.iter().all(|(k, v)| {
                        labels
                            .get(*k)
                            .is_some_and(|actual| label_matches(v, actual))
                    })
            })
            .map(|(_, _, v)| v)
            .sum();
        if here > 0.0 {
            seen_in.push(s.process.clone());
        }
        sum += here;
    }
    (sum, seen_in)
}

#[test]
fn expectations_name_exported_series() {
    for e in EXPECTED_AFTER_ONE_RESET {
        let (d, _) = descriptor_of(e.series)
            .unwrap_or_else(|| panic!("{} is not in the catalogue", e.series));
        for (label, _) in e.labels {
            assert!(d.labels.contains(label), "{} has no label {label}", d.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reset_shows_on_the_metrics_of_every_process() {
    use sspr_testkit::{PrivatePostgres, ServiceBinary};
    use sspr_tests::cluster::{Cluster, workspace_binary};
    use sspr_tests::faults::{self, ResetOptions};

    // The same requirement as the fault suite: separate processes on a private PostgreSQL.
    if !PrivatePostgres::available() {
        assert_ne!(
            std::env::var("SSPR_REQUIRE_FAULT_TESTS").as_deref(),
            Ok("1"),
            "SSPR_REQUIRE_FAULT_TESTS=1 but PostgreSQL's server binaries (initdb, pg_ctl) are missing"
        );
        eprintln!("skipped: install the postgresql package (initdb, pg_ctl) to run this test");
        return;
    }
    let cluster = Cluster::start(&[], &[])
        .await
        .unwrap_or_else(|e| panic!("the cluster did not start: {e:#}"));
    // The cluster runs the six services of a reset; the audit service is one more process.
    let audit_port = sspr_testkit::free_port().unwrap();
    let mut audit = ServiceBinary::new(workspace_binary("sspr-audit").unwrap())
        .env("SSPR_NATS_URL", cluster.nats.url())
        .env("SSPR_DATABASE_URL", cluster.postgres.url())
        .env("SSPR_METRICS_ADDR", format!("127.0.0.1:{audit_port}"))
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("starting sspr-audit");
    audit
        .wait_ready(audit_port, Duration::from_secs(60))
        .await
        .expect("sspr-audit ready");

    let channel = cluster.channel().await.expect("gateway channel");
    faults::open_policy(&channel).await.expect("policy");
    let members = faults::populate(&channel, &cluster.smtp, "obs", 1, 1)
        .await
        .expect("one registered user");
    let run = faults::reset_once(
        &channel,
        &cluster.smtp,
        &members[0],
        ResetOptions {
            code_wait: Duration::from_secs(60),
            complete: true,
        },
    )
    .await;
    assert!(run.completed, "the reset did not complete: {:?}", run.error);

    let mut processes: Vec<(String, u16)> = cluster
        .replicas()
        .iter()
        .map(|r| (r.name(), r.metrics_port))
        .collect();
    processes.push(("sspr-audit#0".to_owned(), audit_port));
    assert_eq!(processes.len(), 7, "every sspr service: {processes:?}");

    // Counters move right after the calls they count; give the asynchronous ones (delivery
    // accepted, outbox relay) a moment to show, without asserting on how long it took.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let scrapes = loop {
        let mut scrapes = Vec::new();
        for (name, port) in &processes {
            scrapes.push(scrape(name, *port).await);
        }
        let done = EXPECTED_AFTER_ONE_RESET
            .iter()
            .all(|e| total(&scrapes, e).0 > 0.0);
        if done || tokio::time::Instant::now() > deadline {
            break scrapes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    for s in &scrapes {
        for d in DESCRIPTORS {
            let kind = match d.kind {
                Kind::Counter => "counter",
                Kind::Histogram => "histogram",
                Kind::Gauge => "gauge",
            };
            assert_eq!(
                s.types.get(d.name).map(String::as_str),
                Some(kind),
                "{}: # TYPE {} {kind} missing",
                s.process,
                d.name
            );
        }
    }
    // What the dashboard and the alerts query is what the processes serve.
    let served: BTreeSet<&str> = scrapes
        .iter()
        .flat_map(|s| s.types.keys().map(String::as_str))
        .collect();
    for name in queried_names() {
        let family = descriptor_of(&name).map_or(name.as_str(), |(d, _)| d.name);
        assert!(
            served.contains(family),
            "{name} is queried but no process serves it"
        );
    }
    // Every sample belongs to a descriptor and carries exactly its labels.
    for s in &scrapes {
        for (name, labels, _) in &s.samples {
            let (d, bucket) = descriptor_of(name)
                .unwrap_or_else(|| panic!("{}: {name} is not in the catalogue", s.process));
            let mut want: BTreeSet<&str> = d.labels.iter().copied().collect();
            if bucket {
                want.insert("le");
            }
            let got: BTreeSet<&str> = labels.keys().map(String::as_str).collect();
            assert_eq!(got, want, "{}: labels of {name}", s.process);
        }
    }

    let mut missing = Vec::new();
    for e in EXPECTED_AFTER_ONE_RESET {
        let (sum, seen_in) = total(&scrapes, e);
        eprintln!(
            "{:<45} {:?}: {sum} in {seen_in:?} (recorded by {})",
            e.series, e.labels, e.recorded_by
        );
        if sum <= 0.0 {
            missing.push(format!("{} {:?}", e.series, e.labels));
        }
    }
    assert!(
        missing.is_empty(),
        "no samples after one reset for: {missing:?}"
    );
    drop(audit);
}
