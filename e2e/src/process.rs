//! The service binaries as the harness starts them: where they are, and which `APP_`
//! variables each one takes.

use std::path::PathBuf;
use std::process::Command;

use crate::{COMMAND_API, PROJECTOR, QUERY_API};

pub(crate) fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// target/<profile>/, where cargo put the workspace's binaries.
pub(crate) fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf()
}

/// Whether `service` has the setting the `APP_` variable `name` sets. Every service refuses a
/// setting it does not have (`deny_unknown_fields`), so each is given only its own.
pub fn takes(service: &str, name: &str) -> bool {
    let key = name.strip_prefix("APP_").unwrap_or(name);
    let command_api_only = [
        "KAFKA__",
        "WRITER__",
        "IDEMPOTENCY__",
        "CLUSTER__",
        "HOLDS__",
    ];
    let not_projector = ["AUTH__", "RATE_LIMIT__", "DATABASE__MAX_CONNECTIONS"];
    // promo-topics' (the topics' shape), read by no service.
    let topics = [
        "KAFKA__PARTITIONS",
        "KAFKA__REPLICATION",
        "KAFKA__RETENTION_MS",
    ];
    if topics.contains(&key) {
        false
    } else if command_api_only.iter().any(|p| key.starts_with(p)) {
        service == COMMAND_API
    } else if matches!(key, "REDIS__PREFIX" | "REDIS__TIMEOUT_MS" | "SCHEMA") {
        service != COMMAND_API
    } else if matches!(
        key,
        "GENERATION_POLL_MS" | "CONSISTENCY_WAIT_MS" | "DATABASE__TIMEOUT_MS"
    ) {
        service == QUERY_API
    } else if not_projector.iter().any(|p| key.starts_with(p)) {
        service != PROJECTOR
    } else {
        true
    }
}

/// The command starting the service binary `name`, without the `APP_` variables of this
/// process's environment (the stack's `.stack/env` exports some): it runs on what the caller
/// gives it.
pub fn service_command(name: &str) -> Command {
    let mut command = Command::new(bin_dir().join(name));
    for (variable, _) in std::env::vars().filter(|(k, _)| k.starts_with("APP_")) {
        command.env_remove(variable);
    }
    command
}

/// The repository's root (this crate's parent directory), for its scripts.
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
