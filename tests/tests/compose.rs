//! Validates `docker-compose.yml`, `deploy/Dockerfile` and `deploy/observability/` (collector,
//! Prometheus, Grafana provisioning) without Docker: every service the stack needs exists, each
//! sspr service runs its own binary from the multi-stage image, points at the right
//! infrastructure by service name, depends on what it talks to, gets its secrets from the
//! environment (never hard-coded), and sets only variables the code actually reads; Prometheus
//! scrapes every sspr service where compose serves its metrics, and Grafana gets the dashboard and
//! the datasource. (What the alert rules and the dashboard query is checked against the metrics
//! catalogue in `observability.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// The sspr services and their default metrics ports.
const SSPR_SERVICES: [(&str, u16); 7] = [
    ("gateway", 9100),
    ("policy", 9101),
    ("enrolment", 9102),
    ("verification", 9103),
    ("notification", 9104),
    ("directory", 9105),
    ("audit", 9106),
];

/// Every binary the image must contain.
const BINARIES: [&str; 8] = [
    "sspr-gateway",
    "sspr-policy",
    "sspr-enrolment",
    "sspr-verification",
    "sspr-notification",
    "sspr-directory",
    "sspr-audit",
    "sspr",
];

/// The `SSPR_*` variables of the process contract (issue 2, "Process contract").
const KNOWN_SSPR_VARS: [&str; 12] = [
    "SSPR_NATS_URL",
    "SSPR_DATA_DIR",
    "SSPR_DATABASE_URL",
    "SSPR_SMTP_URL",
    "SSPR_MAIL_FROM",
    "SSPR_SMS_WEBHOOK_URL",
    "SSPR_GRPC_ADDR",
    "SSPR_ADMIN_TOKEN",
    "SSPR_ADMIN_TOKENS",
    "SSPR_ADMIN_TOKENS_FILE",
    "SSPR_CODE_KEY",
    "SSPR_METRICS_ADDR",
];

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

/// The compose file with `<<:` merge keys applied, as Docker Compose applies them.
fn compose() -> Value {
    let mut doc: Value =
        serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML");
    doc.apply_merge().expect("merge keys resolve");
    doc
}

fn services(doc: &Value) -> &serde_yaml::Mapping {
    doc.get("services")
        .and_then(Value::as_mapping)
        .expect("a services: mapping")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    services(doc)
        .get(name)
        .unwrap_or_else(|| panic!("service {name} is missing"))
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// `environment:` as a map, whether written as a mapping or as a list of `K=V`.
fn environment(svc: &Value) -> BTreeMap<String, String> {
    match svc.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (str_of(k), str_of(v))).collect(),
        Some(Value::Sequence(list)) => list
            .iter()
            .map(|item| {
                let item = str_of(item);
                let (k, v) = item.split_once('=').unwrap_or((item.as_str(), ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Some(other) => panic!("environment must be a mapping or a list, got {other:?}"),
    }
}

/// `depends_on:` as name -> condition (`service_started` for the short list form).
fn depends_on(svc: &Value) -> BTreeMap<String, String> {
    match svc.get("depends_on") {
        None => BTreeMap::new(),
        Some(Value::Sequence(list)) => list
            .iter()
            .map(|v| (str_of(v), "service_started".to_owned()))
            .collect(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                let condition = v
                    .get("condition")
                    .map_or_else(|| "service_started".to_owned(), str_of);
                (str_of(k), condition)
            })
            .collect(),
        Some(other) => panic!("depends_on must be a mapping or a list, got {other:?}"),
    }
}

/// The command as a list of words.
fn command(svc: &Value) -> Vec<String> {
    match svc.get("command") {
        Some(Value::Sequence(list)) => list.iter().map(str_of).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

fn image(svc: &Value) -> String {
    svc.get("image").map(str_of).unwrap_or_default()
}

/// (host, port) of `scheme://[user[:pass]@]host[:port][/path]`, or of `host:port`.
fn host_port(value: &str) -> Option<(String, Option<u16>)> {
    let rest = value.split_once("://").map_or(value, |(_, r)| r);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse().ok()?)),
        None => (host_port, None),
    };
    if host.is_empty() {
        None
    } else {
        Some((host.to_owned(), port))
    }
}

fn names_matching(doc: &Value, pred: impl Fn(&str, &Value) -> bool) -> Vec<&str> {
    services(doc)
        .iter()
        .filter_map(|(k, v)| k.as_str().filter(|name| pred(name, v)))
        .collect()
}

fn mail_catcher(doc: &Value) -> String {
    let found = names_matching(doc, |_, v| {
        let image = image(v);
        ["mailpit", "mailhog", "smtp4dev", "mailcatcher"]
            .iter()
            .any(|m| image.contains(m))
    });
    assert_eq!(
        found.len(),
        1,
        "exactly one mail catcher service, found {found:?}"
    );
    found[0].to_owned()
}

fn trace_viewer(doc: &Value) -> String {
    let found = names_matching(doc, |_, v| {
        let image = image(v);
        ["jaeger", "zipkin", "grafana/tempo"]
            .iter()
            .any(|m| image.contains(m))
    });
    assert_eq!(
        found.len(),
        1,
        "exactly one trace viewer service, found {found:?}"
    );
    found[0].to_owned()
}

#[test]
fn infrastructure_services_exist() {
    let doc = compose();
    let nats = service(&doc, "nats");
    assert!(
        image(nats).starts_with("nats:"),
        "nats runs the official image"
    );
    let nats_cmd = command(nats);
    assert!(
        nats_cmd.iter().any(|w| w == "-js" || w == "--jetstream"),
        "JetStream enabled: {nats_cmd:?}"
    );
    assert!(
        nats_cmd.iter().any(|w| w == "-sd" || w == "--store_dir"),
        "JetStream store dir: {nats_cmd:?}"
    );

    let postgres = service(&doc, "postgres");
    assert!(image(postgres).starts_with("postgres:"));

    let collector = service(&doc, "otel-collector");
    assert!(
        image(collector).contains("opentelemetry-collector"),
        "{}",
        image(collector)
    );

    mail_catcher(&doc);
    trace_viewer(&doc);

    // Services that others wait for with service_healthy have a health check.
    for name in ["nats", "postgres"] {
        assert!(
            service(&doc, name).get("healthcheck").is_some(),
            "{name} has a healthcheck"
        );
    }
}

#[test]
fn dockerfile_is_multi_stage_and_ships_every_binary() {
    let dockerfile = read("deploy/Dockerfile");
    let from_lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim_start)
        .filter(|l| l.to_ascii_uppercase().starts_with("FROM "))
        .collect();
    assert!(from_lines.len() >= 2, "multi-stage: {from_lines:?}");
    assert!(
        dockerfile.contains("cargo build --release --locked"),
        "the builder compiles with the lock file"
    );
    // The runtime stage (after the last FROM) copies every binary by name from the builder.
    let last_from = dockerfile.rfind(from_lines[from_lines.len() - 1]).unwrap();
    let runtime_stage = &dockerfile[last_from..];
    let instructions = instructions(runtime_stage);
    let copied: BTreeSet<&str> = instructions
        .iter()
        .filter(|i| i.starts_with("COPY ") && i.contains("--from="))
        .flat_map(|i| {
            i.split_whitespace()
                .skip(1)
                .filter(|w| !w.starts_with("--"))
        })
        .filter_map(|w| w.trim_matches(['"', ',', '[', ']']).rsplit('/').next())
        .collect();
    for binary in BINARIES {
        assert!(
            copied.contains(binary),
            "deploy/Dockerfile does not copy {binary}: {copied:?}"
        );
    }
    assert!(
        runtime_stage
            .lines()
            .any(|l| l.trim_start().starts_with("USER ")),
        "runs as non-root"
    );
}

/// Dockerfile instructions with `\\` continuations joined and comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[test]
fn sspr_services_build_the_image_and_run_their_binary() {
    let doc = compose();
    for (name, metrics_port) in SSPR_SERVICES {
        let svc = service(&doc, name);
        let build = svc
            .get("build")
            .unwrap_or_else(|| panic!("{name} has no build"));
        let context = build.get("context").map_or_else(|| ".".to_owned(), str_of);
        let dockerfile = build.get("dockerfile").map(str_of).unwrap_or_default();
        let dockerfile_path = repo_root().join(&context).join(&dockerfile);
        assert_eq!(
            std::fs::canonicalize(&dockerfile_path).unwrap(),
            std::fs::canonicalize(repo_root().join("deploy/Dockerfile")).unwrap(),
            "{name} builds from deploy/Dockerfile"
        );
        let binary = format!("sspr-{name}");
        assert_eq!(command(svc).first(), Some(&binary), "{name} runs {binary}");

        let env = environment(svc);
        assert_eq!(
            env.get("OTEL_SERVICE_NAME"),
            Some(&binary),
            "{name} OTEL_SERVICE_NAME"
        );
        let metrics = env
            .get("SSPR_METRICS_ADDR")
            .unwrap_or_else(|| panic!("{name} SSPR_METRICS_ADDR"));
        assert_eq!(
            host_port(metrics),
            Some(("0.0.0.0".to_owned(), Some(metrics_port))),
            "{name} serves metrics on all interfaces of its default port"
        );
    }
}

#[test]
fn sspr_services_point_at_the_infrastructure() {
    let doc = compose();
    let postgres_env = environment(service(&doc, "postgres"));

    for (name, _) in SSPR_SERVICES {
        let env = environment(service(&doc, name));
        let nats = env
            .get("SSPR_NATS_URL")
            .unwrap_or_else(|| panic!("{name} SSPR_NATS_URL"));
        assert!(nats.starts_with("nats://"), "{name}: {nats}");
        assert_eq!(
            host_port(nats),
            Some(("nats".to_owned(), Some(4222))),
            "{name} SSPR_NATS_URL"
        );

        let otel = env
            .get("OTEL_EXPORTER_OTLP_ENDPOINT")
            .unwrap_or_else(|| panic!("{name} OTEL_EXPORTER_OTLP_ENDPOINT"));
        assert_eq!(
            host_port(otel),
            Some(("otel-collector".to_owned(), Some(4317))),
            "{name} exports OTLP/gRPC to the collector"
        );

        match (name, env.get("SSPR_DATABASE_URL")) {
            ("gateway", None) => {}
            ("gateway", Some(_)) => panic!("the gateway owns no database"),
            (_, None) => panic!("{name} has no SSPR_DATABASE_URL"),
            (_, Some(url)) => {
                assert!(
                    url.starts_with("postgres://") || url.starts_with("postgresql://"),
                    "{name}: {url}"
                );
                assert_eq!(
                    host_port(url).map(|(h, _)| h).as_deref(),
                    Some("postgres"),
                    "{name}"
                );
                // The credentials and database are the ones the postgres container creates.
                let rest = url.split_once("://").unwrap().1;
                let (userinfo, path) = rest.split_once('@').unwrap();
                let (user, password) = userinfo.split_once(':').unwrap();
                let db = path.split_once('/').unwrap().1.split('?').next().unwrap();
                assert_eq!(
                    postgres_env.get("POSTGRES_USER").map(String::as_str),
                    Some(user)
                );
                assert_eq!(
                    postgres_env.get("POSTGRES_PASSWORD").map(String::as_str),
                    Some(password)
                );
                assert_eq!(
                    postgres_env.get("POSTGRES_DB").map(String::as_str),
                    Some(db)
                );
            }
        }
    }
}

#[test]
fn sspr_services_depend_on_every_host_they_name() {
    let doc = compose();
    let all: BTreeSet<String> = services(&doc).keys().map(str_of).collect();
    for (name, _) in SSPR_SERVICES {
        let svc = service(&doc, name);
        let deps = depends_on(svc);
        for dep in deps.keys() {
            assert!(all.contains(dep), "{name} depends on unknown service {dep}");
        }
        for (key, value) in environment(svc) {
            let Some((host, _)) = host_port(&value) else {
                continue;
            };
            if all.contains(&host) {
                assert!(
                    deps.contains_key(&host),
                    "{name} uses {host} in {key} but does not depend on it"
                );
            }
        }
        for infra in ["nats", "postgres"] {
            if let Some(condition) = deps.get(infra) {
                assert_eq!(
                    condition, "service_healthy",
                    "{name} waits for {infra} to be healthy"
                );
            }
        }
        assert!(deps.contains_key("nats"), "{name} depends on nats");
    }
}

#[test]
fn notification_mails_through_the_catcher() {
    let doc = compose();
    let catcher = mail_catcher(&doc);
    let env = environment(service(&doc, "notification"));
    let smtp = env
        .get("SSPR_SMTP_URL")
        .expect("notification SSPR_SMTP_URL");
    assert!(smtp.starts_with("smtp://"), "{smtp}");
    let (host, port) = host_port(smtp).unwrap();
    assert_eq!(host, catcher);
    if image(service(&doc, &catcher)).contains("mailpit") {
        assert_eq!(port, Some(1025), "Mailpit listens for SMTP on 1025");
    }
    assert!(env.contains_key("SSPR_MAIL_FROM"));
}

#[test]
fn secrets_come_from_the_environment_not_the_file() {
    let doc = compose();
    let key_of = |name: &str| {
        environment(service(&doc, name))
            .get("SSPR_CODE_KEY")
            .cloned()
            .unwrap_or_else(|| panic!("{name} has no SSPR_CODE_KEY"))
    };
    let verification = key_of("verification");
    let notification = key_of("notification");
    assert_eq!(
        verification, notification,
        "verification and notification share one code key"
    );
    assert!(
        verification.starts_with("${SSPR_CODE_KEY:?"),
        "the key is required from the environment: {verification}"
    );

    let gateway = environment(service(&doc, "gateway"));
    let token = gateway
        .get("SSPR_ADMIN_TOKEN")
        .expect("gateway SSPR_ADMIN_TOKEN");
    assert!(
        token.starts_with("${SSPR_ADMIN_TOKEN:?"),
        "the admin token is required from the environment"
    );
    let grpc = gateway
        .get("SSPR_GRPC_ADDR")
        .expect("gateway SSPR_GRPC_ADDR");
    assert_eq!(host_port(grpc), Some(("0.0.0.0".to_owned(), Some(50051))));
    let ports: Vec<String> = service(&doc, "gateway")
        .get("ports")
        .and_then(Value::as_sequence)
        .map(|p| p.iter().map(str_of).collect())
        .unwrap_or_default();
    assert!(
        ports.iter().any(|p| p.ends_with(":50051") || p == "50051"),
        "gRPC port published: {ports:?}"
    );

    // Only these two services hold the code key.
    for (name, _) in SSPR_SERVICES {
        if name != "verification" && name != "notification" {
            assert!(
                !environment(service(&doc, name)).contains_key("SSPR_CODE_KEY"),
                "{name} must not get the code key"
            );
        }
    }
}

#[test]
fn collector_config_is_mounted_parses_and_exports_to_the_viewer() {
    let doc = compose();
    let viewer = trace_viewer(&doc);
    let collector = service(&doc, "otel-collector");
    let mounts: Vec<String> = collector
        .get("volumes")
        .and_then(Value::as_sequence)
        .expect("the collector mounts its config")
        .iter()
        .map(str_of)
        .collect();
    let config_mount = mounts
        .iter()
        .find(|m| m.contains(".yaml") || m.contains(".yml"))
        .expect("a YAML config is mounted");
    let host_path = config_mount.split(':').next().unwrap();
    let path = repo_root().join(host_path);
    assert!(path.is_file(), "{} exists", path.display());
    let config: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap())
        .expect("collector config is YAML");

    let grpc = &config["receivers"]["otlp"]["protocols"]["grpc"];
    assert!(!grpc.is_null(), "OTLP gRPC receiver");
    if let Some(endpoint) = grpc.get("endpoint").and_then(Value::as_str) {
        assert!(endpoint.ends_with(":4317"), "{endpoint}");
    }
    assert!(
        !config["receivers"]["otlp"]["protocols"]["http"].is_null(),
        "OTLP HTTP receiver"
    );

    let pipeline = &config["service"]["pipelines"]["traces"];
    let list = |key: &str| -> Vec<String> {
        pipeline[key]
            .as_sequence()
            .map(|s| s.iter().map(str_of).collect())
            .unwrap_or_default()
    };
    assert_eq!(list("receivers"), vec!["otlp".to_owned()]);
    assert!(list("processors").iter().any(|p| p == "batch"));
    let exporters = list("exporters");
    assert!(
        exporters.iter().any(|e| e == "debug"),
        "debug exporter: {exporters:?}"
    );
    let to_viewer = exporters.iter().any(|e| {
        config["exporters"][e.as_str()]["endpoint"]
            .as_str()
            .and_then(host_port)
            .is_some_and(|(host, _)| host == viewer)
    });
    assert!(
        to_viewer,
        "a traces exporter sends to {viewer}: {exporters:?}"
    );
    for e in &exporters {
        assert!(
            !config["exporters"][e.as_str()].is_null() || e == "debug",
            "exporter {e} is defined"
        );
    }
    assert!(
        depends_on(collector).contains_key(&viewer),
        "the collector depends on {viewer}"
    );
}

/// Every `"SSPR_..."` / `"OTEL_..."` string literal in the Rust sources of the workspace.
fn variables_in_code() -> BTreeSet<String> {
    fn walk(dir: &Path, found: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    walk(&path, found);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for piece in text.split('"').skip(1).step_by(2) {
                    if (piece.starts_with("SSPR_") || piece.starts_with("OTEL_"))
                        && piece
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    {
                        found.insert(piece.to_owned());
                    }
                }
            }
        }
    }
    let mut found = BTreeSet::new();
    for dir in ["crates", "services"] {
        walk(&repo_root().join(dir), &mut found);
    }
    found
}

#[test]
fn sspr_services_set_only_documented_variables() {
    let doc = compose();
    let in_code = variables_in_code();
    for (name, _) in SSPR_SERVICES {
        for key in environment(service(&doc, name)).keys() {
            assert!(
                key.starts_with("SSPR_") || key.starts_with("OTEL_") || key == "RUST_LOG",
                "{name}: unexpected variable {key}"
            );
            if key.starts_with("SSPR_") {
                assert!(
                    KNOWN_SSPR_VARS.contains(&key.as_str()),
                    "{name}: {key} is not a known SSPR_ variable"
                );
            }
            if key != "RUST_LOG" {
                assert!(
                    in_code.contains(key),
                    "{name}: {key} is read nowhere in crates/ or services/"
                );
            }
        }
    }
}

#[test]
fn host_port_parses_urls() {
    assert_eq!(
        host_port("nats://nats:4222"),
        Some(("nats".into(), Some(4222)))
    );
    assert_eq!(
        host_port("postgres://u:p@postgres:5432/db"),
        Some(("postgres".into(), Some(5432)))
    );
    assert_eq!(
        host_port("http://otel-collector:4317"),
        Some(("otel-collector".into(), Some(4317)))
    );
    assert_eq!(host_port("smtp://mailpit"), Some(("mailpit".into(), None)));
    assert_eq!(
        host_port("0.0.0.0:9100"),
        Some(("0.0.0.0".into(), Some(9100)))
    );
    assert_eq!(host_port("${SSPR_CODE_KEY:?set it}"), None);
}

/// `host:container[:mode]` bind mounts of a service as (host path relative to the repo, path in
/// the container); named volumes are left out.
fn bind_mounts(svc: &Value) -> Vec<(String, String)> {
    svc.get("volumes")
        .and_then(Value::as_sequence)
        .map(|v| v.iter().map(str_of).collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .filter(|m| m.starts_with("./"))
        .map(|m| {
            let mut parts = m.split(':');
            (
                parts.next().unwrap().trim_start_matches("./").to_owned(),
                parts.next().expect("a container path").to_owned(),
            )
        })
        .collect()
}

/// The container path where `host` (relative to the repo) is mounted in `svc`.
fn mounted_at(svc: &Value, name: &str, host: &str) -> String {
    let mounts = bind_mounts(svc);
    let (_, at) = mounts
        .iter()
        .find(|(h, _)| h == host)
        .unwrap_or_else(|| panic!("{name} does not mount {host}: {mounts:?}"));
    at.clone()
}

fn profiles(svc: &Value) -> Vec<String> {
    svc.get("profiles")
        .and_then(Value::as_sequence)
        .map(|p| p.iter().map(str_of).collect())
        .unwrap_or_default()
}

#[test]
fn collector_turns_otlp_metrics_into_a_prometheus_endpoint() {
    let config: Value =
        serde_yaml::from_str(&read("deploy/observability/otel-collector.yaml")).unwrap();
    for pipeline in ["traces", "metrics"] {
        let p = &config["service"]["pipelines"][pipeline];
        let list = |key: &str| -> Vec<String> {
            p[key]
                .as_sequence()
                .unwrap_or_else(|| panic!("{pipeline} pipeline has {key}"))
                .iter()
                .map(str_of)
                .collect()
        };
        assert_eq!(list("receivers"), ["otlp"], "{pipeline}");
        let processors = list("processors");
        assert_eq!(
            processors.first().map(String::as_str),
            Some("memory_limiter"),
            "{pipeline}: the memory limiter comes first"
        );
        assert_eq!(
            processors.last().map(String::as_str),
            Some("batch"),
            "{pipeline}: batch comes last"
        );
        for processor in &processors {
            assert!(
                !config["processors"][processor.as_str()].is_null(),
                "processor {processor} is defined"
            );
        }
        for exporter in list("exporters") {
            assert!(
                config["exporters"].get(exporter.as_str()).is_some(),
                "exporter {exporter} is defined"
            );
        }
    }
    let metrics_exporters: Vec<String> = config["service"]["pipelines"]["metrics"]["exporters"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert!(metrics_exporters.iter().any(|e| e == "prometheus"));
    let prometheus = &config["exporters"]["prometheus"];
    assert_eq!(
        host_port(prometheus["endpoint"].as_str().expect("endpoint")),
        Some(("0.0.0.0".to_owned(), Some(8889)))
    );
    assert_eq!(
        prometheus["add_metric_suffixes"].as_bool(),
        Some(false),
        "the names already end in their unit and _total: keep them as the services serve them"
    );
}

#[test]
fn prometheus_scrapes_every_sspr_service_where_compose_serves_its_metrics() {
    let doc = compose();
    let prometheus = service(&doc, "prometheus");
    assert!(image(prometheus).starts_with("prom/prometheus:"));
    assert_eq!(profiles(prometheus), ["observability"], "optional");
    let config_at = mounted_at(
        prometheus,
        "prometheus",
        "deploy/observability/prometheus.yml",
    );
    let alerts_at = mounted_at(prometheus, "prometheus", "deploy/observability/alerts.yml");
    // rule_files: [alerts.yml] is relative to the config file.
    assert_eq!(
        Path::new(&alerts_at).parent(),
        Path::new(&config_at).parent(),
        "alerts.yml sits beside prometheus.yml"
    );
    for (host, _) in bind_mounts(prometheus) {
        assert!(repo_root().join(&host).is_file(), "{host} exists");
    }
    assert!(
        command(prometheus)
            .iter()
            .any(|w| w == &format!("--config.file={config_at}")),
        "prometheus reads the mounted config"
    );

    let config: Value = serde_yaml::from_str(&read("deploy/observability/prometheus.yml")).unwrap();
    let jobs: BTreeMap<String, Vec<String>> = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .map(|job| {
            let targets = job["static_configs"]
                .as_sequence()
                .into_iter()
                .flatten()
                .flat_map(|c| c["targets"].as_sequence().into_iter().flatten())
                .map(str_of)
                .collect();
            (str_of(&job["job_name"]), targets)
        })
        .collect();
    let all: BTreeSet<String> = services(&doc).keys().map(str_of).collect();
    for (name, _) in SSPR_SERVICES {
        let env = environment(service(&doc, name));
        let (_, port) = host_port(&env["SSPR_METRICS_ADDR"]).unwrap();
        let job = format!("sspr-{name}");
        let targets = jobs
            .get(&job)
            .unwrap_or_else(|| panic!("no scrape job {job}: {jobs:?}"));
        assert_eq!(
            targets,
            &[format!("{name}:{}", port.unwrap())],
            "{job} scrapes {name}'s SSPR_METRICS_ADDR"
        );
    }
    for (job, targets) in &jobs {
        for target in targets {
            let (host, _) = host_port(target).unwrap();
            assert!(all.contains(&host), "{job} scrapes unknown host {host}");
        }
    }
    assert!(
        jobs.contains_key("otel-collector"),
        "the collector's own metrics"
    );
}

#[test]
fn grafana_is_provisioned_with_prometheus_and_the_dashboard() {
    let doc = compose();
    let grafana = service(&doc, "grafana");
    assert!(image(grafana).starts_with("grafana/grafana:"));
    assert_eq!(profiles(grafana), ["observability"], "optional");
    assert!(depends_on(grafana).contains_key("prometheus"));
    let provisioning = mounted_at(
        grafana,
        "grafana",
        "deploy/observability/grafana/provisioning",
    );
    assert_eq!(provisioning, "/etc/grafana/provisioning");
    let dashboard_at = mounted_at(
        grafana,
        "grafana",
        "deploy/observability/grafana/code-delivery.json",
    );

    let providers: Value = serde_yaml::from_str(&read(
        "deploy/observability/grafana/provisioning/dashboards/sspr.yml",
    ))
    .unwrap();
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("a file provider path");
    assert_eq!(
        Path::new(&dashboard_at).parent(),
        Some(Path::new(path)),
        "the dashboard is mounted where the provider looks"
    );

    let datasources: Value = serde_yaml::from_str(&read(
        "deploy/observability/grafana/provisioning/datasources/prometheus.yml",
    ))
    .unwrap();
    let ds = &datasources["datasources"][0];
    assert_eq!(ds["type"].as_str(), Some("prometheus"));
    assert_eq!(
        host_port(ds["url"].as_str().unwrap()),
        Some(("prometheus".to_owned(), Some(9090)))
    );

    // Nothing the sspr services need waits for the optional ones.
    for (name, _) in SSPR_SERVICES {
        let deps = depends_on(service(&doc, name));
        assert!(!deps.contains_key("prometheus") && !deps.contains_key("grafana"));
        assert!(
            profiles(service(&doc, name)).is_empty(),
            "{name} always runs"
        );
    }
}
