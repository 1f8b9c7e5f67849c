//! docker-compose.yml: its services, their environment, commands, dependencies and ports.

use std::collections::BTreeMap;

use serde_yaml::Value as Yaml;

use crate::repo::{read, root, toml_value};

pub(crate) fn compose() -> Yaml {
    let text = read("docker-compose.yml");
    let mut compose: Yaml = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("docker-compose.yml is not valid YAML: {e}"));
    // `<<: *app` merge keys, as compose applies them.
    compose
        .apply_merge()
        .unwrap_or_else(|e| panic!("docker-compose.yml: bad merge key: {e}"));
    compose
}

pub(crate) fn services(compose: &Yaml) -> BTreeMap<String, Yaml> {
    compose
        .get("services")
        .and_then(Yaml::as_mapping)
        .expect("docker-compose.yml has a `services:` mapping")
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
        .collect()
}

pub(crate) fn scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's `environment:`, as a mapping or as a list of `KEY=value`.
pub(crate) fn environment(service: &Yaml) -> BTreeMap<String, String> {
    match service.get("environment") {
        Some(Yaml::Mapping(map)) => map
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), scalar(v).unwrap_or_default())))
            .collect(),
        Some(Yaml::Sequence(list)) => list
            .iter()
            .filter_map(Yaml::as_str)
            .map(|entry| {
                let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `command:` or `entrypoint:` as words (a string is split at whitespace, as compose does).
pub(crate) fn words(value: Option<&Yaml>) -> Vec<String> {
    match value {
        Some(Yaml::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Yaml::Sequence(list)) => list.iter().filter_map(scalar).collect(),
        _ => Vec::new(),
    }
}

/// The program a built container runs: the entrypoint's first word, else the command's.
pub(crate) fn program(service: &Yaml) -> Option<String> {
    let entrypoint = words(service.get("entrypoint"));
    let command = words(service.get("command"));
    entrypoint.into_iter().chain(command).next()
}

pub(crate) fn depends_on(service: &Yaml) -> BTreeMap<String, Option<String>> {
    match service.get("depends_on") {
        Some(Yaml::Sequence(list)) => list
            .iter()
            .filter_map(Yaml::as_str)
            .map(|s| (s.to_owned(), None))
            .collect(),
        Some(Yaml::Mapping(map)) => map
            .iter()
            .filter_map(|(k, v)| {
                let condition = v.get("condition").and_then(Yaml::as_str).map(str::to_owned);
                Some((k.as_str()?.to_owned(), condition))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The port a service of ours listens on: `APP_SERVER__PORT` in compose, else `[server] port`
/// of its config file.
pub(crate) fn service_port(services: &BTreeMap<String, Yaml>, name: &str) -> Option<u16> {
    let from_env = services
        .get(name)
        .and_then(|s| environment(s).get("APP_SERVER__PORT").cloned());
    from_env
        .or_else(|| {
            let file = root().join(format!("config/{name}.toml"));
            let text = std::fs::read_to_string(file).ok()?;
            toml_value(&text, "server", "port")
        })
        .and_then(|p| p.parse().ok())
}

/// The host of `scheme://[user@]host[:port]/…` or `host:port`.
pub(crate) fn host_of(value: &str) -> Option<String> {
    let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    (!host.is_empty() && port.chars().all(|c| c.is_ascii_digit())).then(|| host.to_owned())
}
