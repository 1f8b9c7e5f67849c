//! `promo-token`: mints a bearer token with the services' own `[auth]` settings (the file of
//! `--config`, default `config/command-api`, overridden by `APP_AUTH__…` variables), for
//! operators, the demo, the benchmark and tests. Prints the token.
//!
//!     promo-token --role service --sub checkout --ttl 1h
//!     promo-token --role user --sub 42
//!     promo-token --role admin --sub ops --ttl 15m

use std::process::ExitCode;

use auth::{AuthSettings, Minter, Role};
use clap::{Parser, ValueEnum};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    name = "promo-token",
    version,
    about = "Mint a bearer token for the promotion APIs"
)]
struct Cli {
    /// admin, user or service.
    #[arg(long, value_enum)]
    role: RoleArg,
    /// The subject: the shop's user id for a user, a name for a service or an admin.
    #[arg(long)]
    sub: String,
    /// How long the token is valid: 90s, 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = auth::parse_ttl)]
    ttl: std::time::Duration,
    /// The settings file the `[auth]` section is read from (as `APP_CONFIG` would name it).
    #[arg(long, default_value = "config/command-api")]
    config: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    User,
    Service,
}

#[derive(Debug, Deserialize)]
struct Settings {
    #[serde(default)]
    auth: AuthSettings,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let role = match cli.role {
        RoleArg::Admin => Role::Admin,
        RoleArg::User => Role::User,
        RoleArg::Service => Role::Service,
    };
    if role == Role::User && cli.sub.parse::<i64>().map_or(true, |id| id <= 0) {
        eprintln!("error: a user's --sub is the shop's user id (a positive integer)");
        return ExitCode::from(2);
    }
    let file = std::env::var("APP_CONFIG").unwrap_or(cli.config);
    let settings: Settings = match service::load_settings(&file, &[]) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: settings: {e}");
            return ExitCode::from(2);
        }
    };
    match Minter::new(&settings.auth).and_then(|m| m.mint(&cli.sub, role, cli.ttl)) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
