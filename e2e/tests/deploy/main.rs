//! The deployment files agree with the code, without Docker or a network: docker-compose.yml,
//! the Dockerfile, .dockerignore and deploy/ (the nginx gateway, Prometheus, Grafana) are read
//! as files and checked against the workspace's Rust sources and config/*.toml.
//!
//! - every expected service exists, and every image is pinned;
//! - every build uses the top-level Dockerfile, and every binary a container runs is built and
//!   copied by it and exists in the workspace;
//! - every `APP_…` variable of a service names a field of its settings (`APP_A__B` → field `a`
//!   of `Settings`, field `b` of the struct `a` is), found by reading the settings sources;
//! - every file compose mounts or the Dockerfile copies exists;
//! - the gateway, Prometheus and the healthchecks use the ports the services listen on;
//! - the gateway routes reads, writes and the docs as documented, and never exposes /metrics;
//! - both APIs trust the gateway's fixed address, and only it, to name the client;
//! - every metric the Grafana dashboard queries is recorded somewhere in the workspace.
//!
//! Each test gathers every problem it finds and fails with all of them.

mod compose;
mod dockerfile;
mod nginx;
mod promql;
mod repo;
mod settings;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::{compose::*, dockerfile::*, nginx::*, promql::*, repo::*, settings::*};

/// The services built from our Dockerfile that read settings: (compose service, settings source).
pub(crate) const SETTINGS: &[(&str, &str)] = &[
    ("command-api", "command-api/src/settings.rs"),
    ("query-api", "query-api/src/settings.rs"),
    ("projector", "projector/src/settings.rs"),
];

/// Services the stack must have. The tracing back end may be Jaeger or a collector.
pub(crate) const EXPECTED_SERVICES: &[&str] = &[
    "postgres",
    "redis",
    "kafka",
    "command-api",
    "query-api",
    "projector",
    "gateway",
    "prometheus",
    "grafana",
];
pub(crate) const TRACING_SERVICES: &[&str] = &["jaeger", "collector", "otel-collector"];

/// Series the dashboard must chart (the panels the issue asks for).
pub(crate) const DASHBOARD_MUST_CHART: &[&str] = &[
    "http_requests_total",
    "http_request_duration_seconds",
    "relay_lag_events",
    "projector_lag_events",
    "projector_parked_events",
    "writer_queue_depth",
    "writer_commit_duration_seconds",
    "events_appended_total",
    "hot_reads_total",
    "read_your_writes_waits_total",
    "read_your_writes_timeouts_total",
    "rate_limit_rejections_total",
];

#[test]
fn compose_has_every_service_and_pins_every_image() {
    let compose = compose();
    let services = services(&compose);
    let mut problems = Vec::new();
    for expected in EXPECTED_SERVICES {
        if !services.contains_key(*expected) {
            problems.push(format!("no `{expected}` service"));
        }
    }
    if !TRACING_SERVICES.iter().any(|s| services.contains_key(*s)) {
        problems.push(format!(
            "no tracing back end (one of {})",
            TRACING_SERVICES.join(", ")
        ));
    }
    for (name, service) in &services {
        match service.get("image").and_then(Yaml::as_str) {
            Some(image) if !pinned(image) => problems.push(format!(
                "{name}: image `{image}` is not pinned (give it a tag other than `latest`)"
            )),
            None if service.get("build").is_none() => {
                problems.push(format!("{name}: neither `image` nor `build`"));
            }
            _ => {}
        }
        for (dependency, condition) in depends_on(service) {
            let Some(target) = services.get(&dependency) else {
                problems.push(format!(
                    "{name}: depends on `{dependency}`, no such service"
                ));
                continue;
            };
            if condition.as_deref() == Some("service_healthy")
                && target.get("healthcheck").is_none()
            {
                problems.push(format!(
                    "{name}: waits for `{dependency}` to be healthy, which has no healthcheck"
                ));
            }
        }
    }
    for (name, _) in SETTINGS {
        if let Some(service) = services.get(*name) {
            if service.get("healthcheck").is_none() {
                problems.push(format!("{name}: no healthcheck (it serves /ready)"));
            }
        }
    }
    // The relay publishes to topics that promo-topics creates: when command-api has a broker,
    // a one-shot service runs promo-topics and command-api waits for it to finish.
    let kafka = services
        .get("command-api")
        .is_some_and(|s| environment(s).contains_key("APP_KAFKA__BROKERS"));
    if kafka && workspace_binaries().contains("promo-topics") {
        let job = services
            .iter()
            .find(|(_, s)| program(s).as_deref() == Some("promo-topics"))
            .map(|(name, _)| name.clone());
        match job {
            None => problems.push("no service runs `promo-topics` to create the topics".into()),
            Some(job) => {
                let waits = services
                    .get("command-api")
                    .map(|s| depends_on(s).get(&job).cloned().flatten());
                if waits != Some(Some("service_completed_successfully".into())) {
                    problems.push(format!(
                        "command-api does not wait for `{job}` (condition: \
                         service_completed_successfully)"
                    ));
                }
            }
        }
    }
    fail_if_any("docker-compose.yml services", &problems);
}

#[test]
fn every_binary_is_built_by_the_dockerfile_and_exists() {
    let compose = compose();
    let services = services(&compose);
    let instructions = dockerfile();
    let bins = workspace_binaries();
    let mut problems = Vec::new();
    if !root().join("Dockerfile").is_file() {
        problems.push("no top-level Dockerfile".into());
    }
    let runs: Vec<&str> = instructions
        .iter()
        .filter(|(i, _)| i == "RUN")
        .map(|(_, rest)| rest.as_str())
        .collect();
    let all_runs = runs.join(" ");
    let words: Vec<&str> = all_runs.split_whitespace().collect();
    let built: BTreeSet<String> = words
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].to_owned())
        .collect();
    let copied: BTreeSet<String> = words
        .iter()
        .filter_map(|w| w.strip_prefix("target/release/"))
        .map(str::to_owned)
        .collect();
    if !all_runs.contains("cargo build --release --locked") {
        problems.push("the Dockerfile does not run `cargo build --release --locked`".into());
    }
    for bin in &built {
        if !bins.contains(bin) {
            problems.push(format!(
                "the Dockerfile builds `--bin {bin}`, which no package of the workspace has"
            ));
        }
        if !copied.contains(bin) {
            problems.push(format!(
                "the Dockerfile builds `{bin}` but does not copy target/release/{bin}"
            ));
        }
    }
    let installs = instructions.iter().any(|(i, rest)| {
        i == "COPY" && rest.starts_with("--from=") && rest.trim_end().ends_with("/usr/local/bin/")
    });
    if !installs {
        problems
            .push("the runtime stage does not COPY --from the builder into /usr/local/bin/".into());
    }
    // The tools an operator runs with `docker compose exec` are in the image too.
    for tool in ["promo-token", "replay-tools"] {
        if !built.contains(tool) {
            problems.push(format!("the image lacks `{tool}`"));
        }
    }
    for (name, service) in &services {
        let Some(build) = service.get("build") else {
            continue;
        };
        let (context, file) = match build {
            Yaml::String(context) => (context.clone(), "Dockerfile".to_owned()),
            _ => (
                build
                    .get("context")
                    .and_then(Yaml::as_str)
                    .unwrap_or(".")
                    .to_owned(),
                build
                    .get("dockerfile")
                    .and_then(Yaml::as_str)
                    .unwrap_or("Dockerfile")
                    .to_owned(),
            ),
        };
        if context.trim_end_matches('/') != "." || file != "Dockerfile" {
            problems.push(format!(
                "{name}: builds {context}/{file}, not the top-level Dockerfile"
            ));
        }
        match program(service) {
            None => problems.push(format!("{name}: built, but runs no `command:` of ours")),
            Some(program) => {
                if !bins.contains(&program) {
                    problems.push(format!(
                        "{name}: runs `{program}`, which is no binary of the workspace \
                         (known: {})",
                        bins.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                if !built.contains(&program) || !copied.contains(&program) {
                    problems.push(format!(
                        "{name}: runs `{program}`, which the Dockerfile does not build and copy"
                    ));
                }
            }
        }
    }
    // The builder's Rust is the release rust-toolchain.toml pins.
    let channel = toml_value(&read("rust-toolchain.toml"), "toolchain", "channel")
        .expect("rust-toolchain.toml names a channel");
    let froms: Vec<&str> = instructions
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, rest)| rest.as_str())
        .collect();
    let rust = froms.iter().find(|f| f.starts_with("rust:"));
    match rust {
        None => problems.push("no `FROM rust:…` builder stage".into()),
        Some(from) => {
            let image = from.split_whitespace().next().unwrap_or_default();
            let tag = image.trim_start_matches("rust:");
            if !(tag == channel || tag.starts_with(&format!("{channel}-"))) {
                problems.push(format!(
                    "the builder is `{image}`, rust-toolchain.toml pins {channel}"
                ));
            }
        }
    }
    let toolchain_env = instructions
        .iter()
        .filter(|(i, _)| i == "ENV")
        .any(|(_, rest)| rest.contains(&format!("RUSTUP_TOOLCHAIN={channel}")));
    if !toolchain_env {
        problems.push(format!(
            "the builder does not set RUSTUP_TOOLCHAIN={channel} (else rustup fetches the \
             components rust-toolchain.toml lists)"
        ));
    }
    for from in &froms {
        let image = from.split_whitespace().next().unwrap_or_default();
        if !pinned(image) {
            problems.push(format!("the Dockerfile's `FROM {image}` is not pinned"));
        }
    }
    let user = instructions
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, rest)| rest.split(':').next().unwrap_or_default().to_owned());
    if matches!(user.as_deref(), None | Some("root") | Some("0")) {
        problems.push("the runtime stage runs as root (add a USER)".into());
    }
    fail_if_any("Dockerfile and binaries", &problems);
}

#[test]
fn every_app_variable_names_a_setting() {
    let compose = compose();
    let services = services(&compose);
    let sources = workspace_sources();
    let mut problems = Vec::new();
    let settings: BTreeMap<&str, &str> = SETTINGS.iter().copied().collect();
    for (name, service) in &services {
        let env = environment(service);
        for (variable, value) in &env {
            if variable.starts_with("APP_TELEMETRY__") {
                // Checked by `telemetry_variables_name_settings`.
                continue;
            }
            if variable.starts_with("APP_") && variable != "APP_CONFIG" {
                if let Some(file) = settings.get(name.as_str()) {
                    if let Err(problem) = check_setting(variable, file) {
                        problems.push(format!("{name}: {problem}"));
                    }
                } else if service.get("build").is_some() {
                    // A tool of ours without a settings struct reads its variables with clap's
                    // `env = "APP_…"`.
                    let wanted = format!("env = \"{variable}\"");
                    if !sources.iter().any(|(_, text)| text.contains(&wanted)) {
                        problems.push(format!(
                            "{name}: {variable} is read by nothing (no settings, no `{wanted}`)"
                        ));
                    }
                }
            }
            // Addresses point at services of this file.
            if variable.starts_with("APP_") {
                for part in value.split(',') {
                    if let Some(host) = host_of(part.trim()) {
                        if !services.contains_key(&host) {
                            problems.push(format!(
                                "{name}: {variable} points at `{host}`, which is no service"
                            ));
                        }
                    }
                }
            }
        }
        if settings.contains_key(name.as_str())
            && env.get("APP_SERVER__HOST").map(String::as_str) != Some("0.0.0.0")
        {
            problems.push(format!(
                "{name}: APP_SERVER__HOST must be 0.0.0.0, or nothing outside its container \
                 reaches it"
            ));
        }
    }
    for (name, _) in SETTINGS {
        if !services.contains_key(*name) {
            problems.push(format!("no `{name}` service"));
        }
    }
    fail_if_any("APP_ variables", &problems);
}

/// The services export traces to the OTLP endpoint compose names. Fails until every settings
/// struct has its `telemetry: service::TelemetrySettings` (otlp_endpoint, service_name).
#[test]
fn telemetry_variables_name_settings() {
    let compose = compose();
    let services = services(&compose);
    let mut problems = Vec::new();
    for (name, file) in SETTINGS {
        let Some(service) = services.get(*name) else {
            problems.push(format!("no `{name}` service"));
            continue;
        };
        let env = environment(service);
        for variable in [
            "APP_TELEMETRY__OTLP_ENDPOINT",
            "APP_TELEMETRY__SERVICE_NAME",
        ] {
            match env.get(variable) {
                None => problems.push(format!("{name}: {variable} is not set")),
                Some(_) => {
                    if let Err(problem) = check_setting(variable, file) {
                        problems.push(format!("{name}: {problem}"));
                    }
                }
            }
        }
        if env.get("APP_TELEMETRY__SERVICE_NAME").map(String::as_str) != Some(*name) {
            problems.push(format!(
                "{name}: APP_TELEMETRY__SERVICE_NAME is not `{name}`"
            ));
        }
        if let Some(endpoint) = env.get("APP_TELEMETRY__OTLP_ENDPOINT") {
            if !endpoint.ends_with(":4318") {
                problems.push(format!(
                    "{name}: APP_TELEMETRY__OTLP_ENDPOINT `{endpoint}` is not OTLP/HTTP (:4318)"
                ));
            }
        }
    }
    fail_if_any("telemetry settings", &problems);
}

#[test]
fn both_apis_share_a_required_auth_secret_that_is_not_the_development_one() {
    let compose = compose();
    let services = services(&compose);
    let development = auth::DEVELOPMENT_SECRET.to_owned();
    let mut problems = Vec::new();
    let mut secrets = BTreeSet::new();
    for name in ["command-api", "query-api"] {
        let secret = services
            .get(name)
            .and_then(|s| environment(s).get("APP_AUTH__SECRET").cloned());
        let Some(secret) = secret else {
            problems.push(format!(
                "{name}: no APP_AUTH__SECRET: off loopback it refuses the development secret"
            ));
            continue;
        };
        if secret.contains(&development) {
            problems.push(format!(
                "{name}: APP_AUTH__SECRET is the development secret"
            ));
        }
        if let Some(default) = secret
            .split_once(":-")
            .map(|(_, d)| d.trim_end_matches('}'))
        {
            if default.len() < 32 {
                problems.push(format!(
                    "{name}: the default of APP_AUTH__SECRET is under 32 bytes"
                ));
            }
        } else if !secret.starts_with("${") && secret.len() < 32 {
            problems.push(format!("{name}: APP_AUTH__SECRET is under 32 bytes"));
        }
        secrets.insert(secret);
    }
    if secrets.len() > 1 {
        problems.push(
            "command-api and query-api have different APP_AUTH__SECRETs: a login's token would \
             not work on the query API"
                .into(),
        );
    }
    fail_if_any("auth secret", &problems);
}

#[test]
fn both_apis_trust_the_gateway_and_only_it_to_name_the_client() {
    let compose = compose();
    let services = services(&compose);
    let gateway = &services["gateway"];
    let address = gateway
        .get("networks")
        .and_then(|n| n.get("default"))
        .and_then(|d| d.get("ipv4_address"))
        .and_then(scalar);
    let mut problems = Vec::new();
    let Some(address) = address else {
        fail_if_any(
            "trusted proxies",
            &["the gateway has no fixed ipv4_address: the APIs cannot trust it".to_owned()],
        );
        return;
    };
    for name in ["command-api", "query-api"] {
        let trusted = services
            .get(name)
            .and_then(|s| environment(s).get("APP_SERVER__TRUSTED_PROXIES").cloned());
        if trusted.as_deref() != Some(address.as_str()) {
            problems.push(format!(
                "{name}: APP_SERVER__TRUSTED_PROXIES is {trusted:?}, not the gateway's {address}: \
                 sign-in limits would count the gateway, or believe anyone's X-Forwarded-For"
            ));
        }
    }
    // The gateway must pass the client on, appended to what it was told (the APIs take the
    // rightmost address they do not trust).
    let (file, config) = gateway_config(&services);
    let mut headers = Vec::new();
    nginx_all(&config, "proxy_set_header", &mut headers);
    if !headers.iter().any(|h| {
        h.args
            .first()
            .is_some_and(|n| n.eq_ignore_ascii_case("x-forwarded-for"))
            && h.args.get(1).map(String::as_str) == Some("$proxy_add_x_forwarded_for")
    }) {
        problems.push(format!(
            "{file}: no `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for`"
        ));
    }
    fail_if_any("trusted proxies", &problems);
}

#[test]
fn every_mounted_or_copied_file_exists() {
    let compose = compose();
    let services = services(&compose);
    let root = root();
    let mut problems = Vec::new();
    let named: BTreeSet<String> = compose
        .get("volumes")
        .and_then(Yaml::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(Yaml::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for (name, service) in &services {
        for (source, target) in bind_mounts(service) {
            if is_host_path(&source) {
                if !root.join(&source).exists() {
                    problems.push(format!(
                        "{name}: mounts `{source}` (→ {target}), which does not exist"
                    ));
                }
            } else if !named.contains(&source) {
                problems.push(format!(
                    "{name}: mounts the volume `{source}`, not declared under `volumes:`"
                ));
            }
        }
    }
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_matches('/').to_owned())
        .collect();
    let is_ignored = |path: &str| {
        let first = path
            .trim_start_matches("./")
            .split('/')
            .next()
            .unwrap_or_default();
        ignored.iter().any(|pattern| pattern == first)
    };
    for (instruction, rest) in dockerfile() {
        if (instruction != "COPY" && instruction != "ADD") || rest.starts_with("--from=") {
            continue;
        }
        let args: Vec<&str> = rest
            .split_whitespace()
            .filter(|a| !a.starts_with("--"))
            .collect();
        let Some((_, sources)) = args.split_last() else {
            continue;
        };
        for source in sources {
            if !root.join(source).exists() {
                problems.push(format!(
                    "the Dockerfile copies `{source}`, which does not exist"
                ));
            }
            if *source != "." && is_ignored(source) {
                problems.push(format!(
                    "the Dockerfile copies `{source}`, which .dockerignore leaves out"
                ));
            }
        }
        if sources.contains(&".") {
            // The whole workspace is copied: nothing cargo needs may be ignored.
            let needed = members().into_keys().chain([
                "Cargo.toml".into(),
                "Cargo.lock".into(),
                "config".into(),
            ]);
            for path in needed {
                if is_ignored(&path) {
                    problems.push(format!(
                        "`{path}` is needed to build, but .dockerignore leaves it out"
                    ));
                }
            }
        }
    }
    if !ignored.iter().any(|p| p == "target") {
        problems.push(".dockerignore does not leave out target/".into());
    }
    fail_if_any("mounted and copied files", &problems);
}

#[test]
fn the_gateway_prometheus_and_healthchecks_use_the_services_ports() {
    let compose = compose();
    let services = services(&compose);
    let mut problems = Vec::new();
    let mut ports = BTreeMap::new();
    for (name, _) in SETTINGS {
        match service_port(&services, name) {
            Some(port) => {
                ports.insert(name.to_string(), port);
            }
            None => problems.push(format!("{name}: no port in compose or config/{name}.toml")),
        }
    }
    let check = |problems: &mut Vec<String>, what: &str, address: &str| {
        let Some((host, port)) = address.rsplit_once(':') else {
            problems.push(format!("{what}: `{address}` names no port"));
            return;
        };
        match ports.get(host) {
            Some(expected) if port.parse::<u16>().ok() != Some(*expected) => {
                problems.push(format!(
                    "{what}: `{address}`, but {host} listens on {expected}"
                ));
            }
            None if services.contains_key(host) => {}
            None => problems.push(format!("{what}: `{host}` is no service")),
            _ => {}
        }
    };
    // The gateway's upstreams.
    let (file, config) = gateway_config(&services);
    let mut upstream_servers = Vec::new();
    let mut upstreams = Vec::new();
    nginx_all(&config, "upstream", &mut upstreams);
    for upstream in upstreams {
        for server in upstream.block.iter().filter(|d| d.name == "server") {
            if let Some(address) = server.args.first() {
                check(&mut problems, &file, address);
                upstream_servers.push(address.clone());
            }
        }
    }
    for name in ["command-api", "query-api"] {
        if !upstream_servers
            .iter()
            .any(|a| a.starts_with(&format!("{name}:")))
        {
            problems.push(format!("{file}: no upstream for {name}"));
        }
    }
    // Prometheus.
    let prometheus_file = services
        .get("prometheus")
        .and_then(|s| {
            bind_mounts(s)
                .into_iter()
                .find(|(_, target)| target.ends_with("prometheus.yml"))
        })
        .map(|(source, _)| source.trim_start_matches("./").to_owned())
        .unwrap_or_else(|| "deploy/prometheus/prometheus.yml".into());
    let prometheus: Yaml = serde_yaml::from_str(&read(&prometheus_file))
        .unwrap_or_else(|e| panic!("{prometheus_file} is not valid YAML: {e}"));
    let mut scraped = BTreeSet::new();
    for job in prometheus
        .get("scrape_configs")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        let path = job
            .get("metrics_path")
            .and_then(Yaml::as_str)
            .unwrap_or("/metrics");
        let configs = |key: &str| {
            job.get(key)
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
        };
        let fixed = configs("static_configs").into_iter().flat_map(|c| {
            c.get("targets")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(Yaml::as_str)
                .map(|t| (t.to_owned(), false))
                .collect::<Vec<_>>()
        });
        // DNS discovery of a service's name: every replica's address, at `port`.
        let discovered = configs("dns_sd_configs").into_iter().flat_map(|c| {
            let port = c.get("port").and_then(scalar).unwrap_or_default();
            c.get("names")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(Yaml::as_str)
                .map(|n| (format!("{n}:{port}"), true))
                .collect::<Vec<_>>()
        });
        for (target, every_replica) in fixed.chain(discovered) {
            let target = target.as_str();
            let host = target.split(':').next().unwrap_or_default();
            let replicas = services
                .get(host)
                .and_then(|s| s.get("deploy"))
                .and_then(|d| d.get("replicas"))
                .and_then(Yaml::as_u64)
                .unwrap_or(1);
            if replicas > 1 && !every_replica {
                problems.push(format!(
                    "{prometheus_file}: {target} is a static target of {replicas} replicas: each \
                     scrape reaches one of them (use dns_sd_configs)"
                ));
            }
            if ports.contains_key(host) {
                check(&mut problems, &prometheus_file, target);
                if path != "/metrics" {
                    problems.push(format!(
                        "{prometheus_file}: {target} scraped at {path}, not /metrics"
                    ));
                }
                scraped.insert(host.to_owned());
            }
        }
    }
    for name in ports.keys() {
        if !scraped.contains(name) {
            problems.push(format!("{prometheus_file}: does not scrape {name}"));
        }
    }
    // The healthchecks ask the port the service listens on.
    for (name, port) in &ports {
        let test = services
            .get(name)
            .map(|s| words(s.get("healthcheck").and_then(|h| h.get("test"))).join(" "))
            .unwrap_or_default();
        if !test.contains(&format!(":{port}/")) {
            problems.push(format!(
                "{name}: the healthcheck `{test}` does not ask port {port}"
            ));
        }
    }
    fail_if_any("ports", &problems);
}

#[test]
fn the_gateway_routes_reads_writes_and_docs_and_hides_metrics() {
    let compose = compose();
    let services = services(&compose);
    let (file, config) = gateway_config(&services);
    let mut problems = Vec::new();
    let servers = nginx_servers(&config);
    if servers.is_empty() {
        problems.push(format!("{file}: no `server {{ }}` block"));
    }
    let service_of = |address: &String| address.split(':').next().unwrap_or_default().to_owned();
    let mut locations: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for server in &servers {
        for location in server.block.iter().filter(|d| d.name == "location") {
            let path = location.args.last().cloned().unwrap_or_default();
            if path.contains("metrics") {
                problems.push(format!("{file}: `location {path}` exposes metrics"));
            }
            let proxy = location
                .block
                .iter()
                .find(|d| d.name == "proxy_pass")
                .and_then(|d| d.args.first());
            if let Some(url) = proxy {
                if !path.starts_with("/api/") {
                    problems.push(format!(
                        "{file}: `location {path}` proxies outside /api/ (it would expose \
                         /metrics, /health, /ready)"
                    ));
                }
                let targets = proxy_targets(&config, url)
                    .into_iter()
                    .map(|(key, hosts)| (key, hosts.iter().map(service_of).collect()))
                    .collect();
                locations.insert(path, targets);
            }
        }
    }
    let one = |s: &str| -> BTreeSet<String> { std::iter::once(s.to_owned()).collect() };
    let expect = |problems: &mut Vec<String>, path: &str, key: &str, service: &str| {
        let got = locations
            .get(path)
            .and_then(|t| t.get(key).or_else(|| t.get("*")));
        if got != Some(&one(service)) {
            problems.push(format!(
                "{file}: `location {path}` ({key}) goes to {got:?}, not {service}"
            ));
        }
    };
    expect(&mut problems, "/api/v1/auth/", "*", "command-api");
    expect(&mut problems, "/api/v1/", "GET", "query-api");
    expect(&mut problems, "/api/v1/", "HEAD", "query-api");
    expect(&mut problems, "/api/v1/", "default", "command-api");
    expect(&mut problems, "/api/docs/command", "*", "command-api");
    expect(&mut problems, "/api/docs/query", "*", "query-api");
    expect(&mut problems, "/api/docs", "*", "command-api");
    // Nothing blanks the headers the services read.
    let mut set_headers = Vec::new();
    nginx_all(&config, "proxy_set_header", &mut set_headers);
    for header in [
        "authorization",
        "idempotency-key",
        "x-min-position",
        "x-request-id",
        "x-correlation-id",
        "traceparent",
    ] {
        if set_headers.iter().any(|d| {
            d.args
                .first()
                .is_some_and(|h| h.eq_ignore_ascii_case(header))
        }) {
            problems.push(format!(
                "{file}: `proxy_set_header {header}` replaces the client's"
            ));
        }
    }
    let forwarded_for = set_headers.iter().any(|d| {
        d.args
            .first()
            .is_some_and(|h| h.eq_ignore_ascii_case("x-forwarded-for"))
            && d.args.get(1).map(String::as_str) == Some("$proxy_add_x_forwarded_for")
    });
    if !forwarded_for {
        problems.push(format!("{file}: X-Forwarded-For is not set"));
    }
    let mut off = Vec::new();
    nginx_all(&config, "proxy_pass_request_headers", &mut off);
    if off
        .iter()
        .any(|d| d.args.first().map(String::as_str) == Some("off"))
    {
        problems.push(format!(
            "{file}: proxy_pass_request_headers off drops every header"
        ));
    }
    // The body limit is command-api's; its default is the edge's (every server's).
    let settings = read("problem/src/edge.rs");
    let default = settings
        .split("fn default_max_body_bytes()")
        .nth(1)
        .and_then(|rest| rest.split('{').nth(1))
        .and_then(|body| body.split('}').next())
        .map(|expr| {
            expr.split('*')
                .map(|n| n.trim().replace('_', "").parse::<u64>().unwrap_or(0))
                .product::<u64>()
        })
        .expect("problem/src/edge.rs has default_max_body_bytes()");
    let limit = services
        .get("command-api")
        .and_then(|s| environment(s).get("APP_SERVER__MAX_BODY_BYTES").cloned())
        .or_else(|| toml_value(&read("config/command-api.toml"), "server", "max_body_bytes"))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(default);
    let mut sizes = Vec::new();
    nginx_all(&config, "client_max_body_size", &mut sizes);
    let size = sizes.first().and_then(|d| d.args.first()).map(|v| {
        let v = v.to_ascii_lowercase();
        let (digits, unit) = v.split_at(v.trim_end_matches(['k', 'm', 'g']).len());
        let factor = match unit {
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            _ => 1,
        };
        digits.parse::<u64>().unwrap_or(0) * factor
    });
    if size != Some(limit) {
        problems.push(format!(
            "{file}: client_max_body_size is {size:?} bytes, command-api's max_body_bytes {limit}"
        ));
    }
    // The published port reaches the port nginx listens on.
    let mut listens = Vec::new();
    nginx_all(&config, "listen", &mut listens);
    let listen: BTreeSet<String> = listens
        .iter()
        .filter_map(|d| d.args.first())
        .map(|a| a.rsplit(':').next().unwrap_or(a).to_owned())
        .collect();
    let published = services
        .get("gateway")
        .and_then(|g| g.get("ports"))
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(scalar)
        .map(|p| p.rsplit(':').next().unwrap_or_default().to_owned())
        .collect::<Vec<_>>();
    if published.is_empty() {
        problems.push("the gateway publishes no port".into());
    }
    for port in published {
        if !listen.contains(&port) {
            problems.push(format!(
                "the gateway publishes container port {port}; nginx listens on {listen:?}"
            ));
        }
    }
    fail_if_any("gateway routes", &problems);
}

#[test]
fn the_dashboard_charts_only_recorded_metrics() {
    let compose = compose();
    let services = services(&compose);
    let sources = workspace_sources();
    let mut problems = Vec::new();
    let dashboard: Json = serde_json::from_str(&read("deploy/grafana/dashboards/promo.json"))
        .unwrap_or_else(|e| panic!("deploy/grafana/dashboards/promo.json is not JSON: {e}"));
    let datasources: Yaml = serde_yaml::from_str(&read(
        "deploy/grafana/provisioning/datasources/prometheus.yml",
    ))
    .unwrap_or_else(|e| panic!("the Grafana datasource file is not YAML: {e}"));
    let uids: BTreeSet<String> = datasources
        .get("datasources")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("uid").and_then(Yaml::as_str).map(str::to_owned))
        .collect();
    let mut panels = Vec::new();
    fn collect<'a>(list: &'a Json, out: &mut Vec<&'a Json>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(inner) = panel.get("panels") {
                collect(inner, out);
            }
        }
    }
    collect(&dashboard["panels"], &mut panels);
    let mut charted = BTreeSet::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel `{title}` has no query"));
        }
        for datasource in
            std::iter::once(&panel["datasource"]).chain(targets.iter().map(|t| &t["datasource"]))
        {
            if let Some(uid) = datasource.get("uid").and_then(Json::as_str) {
                if !uids.contains(uid) {
                    problems.push(format!(
                        "panel `{title}`: data source `{uid}` is not provisioned"
                    ));
                }
            }
        }
        for target in &targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            let series = promql_series(expr);
            if series.is_empty() {
                problems.push(format!("panel `{title}`: `{expr}` selects no series"));
            }
            for name in series {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .filter(|base| recorded_as_histogram(&sources, base));
                let recorded = match base {
                    Some(base) => base.to_owned(),
                    None if !recorded_at(&sources, &name).is_empty() => name.clone(),
                    None => {
                        problems.push(format!(
                            "panel `{title}`: `{name}` is recorded nowhere in the workspace's \
                             sources (no `\"{name}\"` outside describe_*!)"
                        ));
                        continue;
                    }
                };
                charted.insert(recorded);
            }
        }
    }
    for name in DASHBOARD_MUST_CHART {
        if !charted.contains(*name) {
            problems.push(format!("no panel charts `{name}`"));
        }
    }
    // Grafana finds the dashboard where compose mounts it.
    let providers: Yaml = serde_yaml::from_str(&read(
        "deploy/grafana/provisioning/dashboards/dashboards.yml",
    ))
    .unwrap_or_else(|e| panic!("the Grafana dashboard provider file is not YAML: {e}"));
    let mounts = services.get("grafana").map(bind_mounts).unwrap_or_default();
    for provider in providers
        .get("providers")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        let path = provider
            .get("options")
            .and_then(|o| o.get("path"))
            .and_then(Yaml::as_str)
            .unwrap_or_default();
        let mounted = mounts.iter().any(|(source, target)| {
            target.trim_end_matches('/') == path.trim_end_matches('/')
                && root().join(source).join("promo.json").is_file()
        });
        if !mounted {
            problems.push(format!(
                "the dashboard provider reads `{path}`, where compose mounts no directory with \
                 promo.json"
            ));
        }
    }
    if !mounts.iter().any(|(source, target)| {
        source.ends_with("provisioning") && target == "/etc/grafana/provisioning"
    }) {
        problems.push(
            "grafana: deploy/grafana/provisioning is not mounted at /etc/grafana/provisioning"
                .into(),
        );
    }
    fail_if_any("Grafana dashboard", &problems);
}

#[test]
fn the_promql_reader_finds_series_and_skips_the_rest() {
    let series = |e: &str| promql_series(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        series("histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket[1m])))"),
        ["http_request_duration_seconds_bucket"]
    );
    assert_eq!(
        series(
            r#"sum by (process) (rate(http_requests_total{status=~"5..", route!="x"}[$__rate_interval])) / on(process) group_left up"#
        ),
        ["http_requests_total", "up"]
    );
    assert_eq!(
        series("max(relay_lag_events) offset 5m"),
        ["relay_lag_events"]
    );
    assert!(series("vector(1)").is_empty());
}

/// The Kafka of the compose file is the major version the local stack, the tests and CI run
/// (scripts/kafka/node.sh), on one node or three; the cluster's extra nodes are a profile.
#[test]
fn compose_runs_the_local_stacks_kafka_major_version_on_one_node_or_three() {
    let compose = compose();
    let services = services(&compose);
    let node = read("scripts/kafka/node.sh");
    let local = node
        .lines()
        .find_map(|l| l.strip_prefix("VERSION=${PROMO_KAFKA_VERSION:-"))
        .and_then(|rest| rest.strip_suffix('}'))
        .expect("scripts/kafka/node.sh sets VERSION=${PROMO_KAFKA_VERSION:-x.y.z}");
    let major = |version: &str| version.split('.').next().unwrap_or_default().to_owned();
    let mut problems = Vec::new();
    let kafkas: Vec<(&String, &Yaml)> = services
        .iter()
        .filter(|(_, s)| {
            s.get("image")
                .and_then(Yaml::as_str)
                .is_some_and(|i| i.starts_with("apache/kafka:"))
        })
        .collect();
    for (name, service) in &kafkas {
        let image = service
            .get("image")
            .and_then(Yaml::as_str)
            .unwrap_or_default();
        let tag = image.rsplit(':').next().unwrap_or_default();
        if major(tag) != major(local) {
            problems.push(format!(
                "{name}: {image} is Kafka {}, the local stack runs {local}",
                major(tag)
            ));
        }
    }
    let always: Vec<&&String> = kafkas
        .iter()
        .filter(|(_, s)| s.get("profiles").is_none())
        .map(|(name, _)| name)
        .collect();
    if always.len() != 1 {
        problems.push(format!(
            "one Kafka node without a profile expected, found {always:?}"
        ));
    }
    if kafkas.len() != 3 {
        problems.push(format!(
            "three Kafka nodes expected (two by profile), found {}",
            kafkas.len()
        ));
    }
    fail_if_any("docker-compose.yml Kafka", &problems);
}

/// `./dev` and `scripts/bench.sh` (scripts/service-env.sh) give each service the same `APP_`
/// variables the end-to-end harness does (`e2e::takes`): every service refuses a setting it
/// does not have, so a table that drifts stops a service in one of them.
#[test]
fn the_launchers_give_each_service_the_same_variables() {
    let names = [
        "APP_SERVER__PORT",
        "APP_DATABASE__URL",
        "APP_DATABASE__MAX_CONNECTIONS",
        "APP_DATABASE__TIMEOUT_MS",
        "APP_REDIS__URL",
        "APP_REDIS__PREFIX",
        "APP_REDIS__TIMEOUT_MS",
        "APP_KAFKA__BROKERS",
        "APP_KAFKA__TOPIC_PREFIX",
        "APP_KAFKA__PARTITIONS",
        "APP_KAFKA__REPLICATION",
        "APP_KAFKA__RETENTION_MS",
        "APP_WRITER__MAX_BATCH",
        "APP_IDEMPOTENCY__RETENTION_HOURS",
        "APP_AUTH__SECRET",
        "APP_RATE_LIMIT__PREFIX",
        "APP_SCHEMA",
        "APP_GENERATION_POLL_MS",
        "APP_CONSISTENCY_WAIT_MS",
        "APP_LOG__LEVEL",
        "APP_TELEMETRY__OTLP_ENDPOINT",
    ];
    let mut script = String::from("source scripts/service-env.sh\n");
    for service in [e2e::COMMAND_API, e2e::QUERY_API, e2e::PROJECTOR] {
        for name in names {
            script.push_str(&format!(
                "takes {service} {name} && echo {service} {name} yes || echo {service} {name} no\n"
            ));
        }
    }
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(repo::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut differ = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut words = line.split(' ');
        let (service, name, shell) = (
            words.next().unwrap(),
            words.next().unwrap(),
            words.next().unwrap() == "yes",
        );
        if shell != e2e::takes(service, name) {
            differ.push(format!("{service} {name}: the script says {shell}"));
        }
    }
    assert_eq!(differ.len(), 0, "{differ:#?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        3 * names.len()
    );
}
