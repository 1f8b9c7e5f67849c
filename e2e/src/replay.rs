//! replay-tools against a system: the binary, and the library's verification.

use std::process::Command;

use crate::System;

impl System {
    /// Where this system's read models live, for replay-tools.
    pub fn replay_target(&self) -> replay_tools::Target {
        let env = |key: &str| {
            self.env
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        replay_tools::Target {
            pool: self.pool.clone(),
            redis_url: env("APP_REDIS__URL"),
            base: "rm".into(),
            prefix: env("APP_REDIS__PREFIX"),
        }
    }

    /// Runs the replay-tools binary against this system; (exit code, stdout).
    pub fn replay_tools(&self, args: &[&str]) -> (i32, String) {
        let output = Command::new(Self::binary("replay-tools"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("APP_KAFKA__BROKERS", &self.brokers)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        eprintln!(
            "replay-tools {args:?}: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), stdout)
    }

    /// What `replay-tools verify` finds: every difference between the live read models
    /// (tables and Redis) and a projection of the log with the same code.
    pub async fn read_model_differences(&self) -> Vec<String> {
        replay_tools::verify(&self.replay_target(), &indicatif::ProgressBar::hidden())
            .await
            .unwrap()
            .differences
    }
}
