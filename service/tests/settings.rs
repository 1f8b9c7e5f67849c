//! The settings loader against the process environment (its own test binary: it sets
//! variables, which no other test of this process may read meanwhile).

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    server: Server,
    #[serde(default)]
    log: service::LogSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    port: u16,
}

fn load() -> Result<Settings, String> {
    service::load_settings("/nonexistent/settings", &[("server.port", "1")])
        .map_err(|e| e.to_string())
}

#[test]
fn variables_set_settings_and_a_misspelt_one_is_an_error_naming_it() {
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("APP_")) {
        std::env::remove_var(name);
    }
    // APP_CONFIG names the file; it is not a setting.
    std::env::set_var("APP_CONFIG", "/nonexistent/settings");
    std::env::set_var("APP_SERVER__PORT", "8123");
    std::env::set_var("APP_LOG__LEVEL", "debug");
    let settings = load().unwrap();
    assert_eq!(settings.server.port, 8123);
    assert_eq!(settings.log.level, "debug");

    std::env::set_var("APP_SERVER__PROT", "8124");
    let error = load().unwrap_err();
    assert!(
        error.contains("unknown field `prot`") && error.contains("server"),
        "{error}"
    );
    std::env::remove_var("APP_SERVER__PROT");

    std::env::set_var("APP_LOG__LEVLE", "debug");
    let error = load().unwrap_err();
    assert!(error.contains("unknown field `levle`"), "{error}");
    std::env::remove_var("APP_LOG__LEVLE");

    std::env::set_var("APP_KAFKA__BROKERS", "127.0.0.1:1");
    let error = load().unwrap_err();
    assert!(error.contains("unknown field `kafka`"), "{error}");
}
