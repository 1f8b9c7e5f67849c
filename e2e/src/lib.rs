//! End-to-end harness. [`System::start`] runs the real `command-api` (with its relay),
//! `projector` and `query-api` binaries — the ones cargo built next to the test executable —
//! over the local stack, isolated per test: a new database, its own topics and Redis key
//! prefix. Processes can be killed with SIGKILL and restarted; [`servers`] gives a test a
//! Redis or a broker of its own to stop and start.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod cluster;
mod consume;
mod process;
mod replay;
mod scrape;
pub mod servers;
pub mod sockets;

pub use consume::Consumed;
use process::{bin_dir, env_or};
pub use process::{service_command, takes};
pub use scrape::Scrape;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

pub const COMMAND_API: &str = "command-api";
pub const PROJECTOR: &str = "projector";
pub const QUERY_API: &str = "query-api";

/// Settings for holds as short as a second, and deadlines looked for every 100 ms, so a test
/// waits little for its holds and points to expire.
pub const SHORT_HOLDS: &[(&str, &str)] = &[
    ("APP_HOLDS__MIN_TTL_SECONDS", "1"),
    ("APP_HOLDS__DEADLINE_POLL_MS", "100"),
];

/// The HS256 secret the services are started with (`APP_AUTH__SECRET`).
pub const SECRET: &str = "e2e-tests-secret-0123456789abcdef-0123";

/// A token signed with [`SECRET`] for `sub` as `role`, valid for a day.
pub fn token(role: auth::Role, sub: &str) -> String {
    auth::Minter::new(&auth::AuthSettings {
        secret: Some(SECRET.into()),
        ..auth::AuthSettings::default()
    })
    .unwrap()
    .mint(sub, role, Duration::from_secs(86_400))
    .unwrap()
}

/// A client that sends an admin's token with every request.
pub fn admin_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", token(auth::Role::Admin, "e2e"))
            .parse()
            .unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

pub struct System {
    /// Sends an admin's token (see [`token`] for others).
    pub client: reqwest::Client,
    pub command: String,
    pub query: String,
    /// The projector's /health and /ready.
    pub projector: String,
    pub pool: PgPool,
    pub topic_prefix: String,
    pub brokers: String,
    db_name: String,
    admin_url: String,
    env: Vec<(String, String)>,
    processes: HashMap<&'static str, Child>,
}

impl std::fmt::Debug for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("System")
            .field("db", &self.db_name)
            .field("topics", &self.topic_prefix)
            .finish()
    }
}

/// What an HTTP call answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<String>,
}

impl System {
    /// The topics' spec on `brokers`: the default, replicated on every broker named (up to 3).
    pub fn topic_spec(brokers: &str) -> messaging::TopicSpec {
        let named = brokers.split(',').filter(|b| !b.is_empty()).count();
        messaging::TopicSpec {
            replication: named.clamp(1, 3) as i32,
            ..messaging::TopicSpec::default()
        }
    }

    /// Starts the three services over a fresh database; `redis_url` overrides the stack's.
    pub async fn start_with(redis_url: Option<String>, extra_env: &[(&str, &str)]) -> System {
        Self::start_on(redis_url, None, extra_env).await
    }

    /// As [`System::start_with`]; `brokers` overrides the stack's broker too.
    pub async fn start_on(
        redis_url: Option<String>,
        brokers: Option<String>,
        extra_env: &[(&str, &str)],
    ) -> System {
        Self::start_over(None, redis_url, brokers, extra_env).await
    }

    /// As [`System::start_on`]; `database` (an admin URL) overrides the stack's PostgreSQL.
    pub async fn start_over(
        database: Option<String>,
        redis_url: Option<String>,
        brokers: Option<String>,
        extra_env: &[(&str, &str)],
    ) -> System {
        let admin_url = database.unwrap_or_else(|| {
            env_or(
                "DATABASE_URL",
                "postgres://promo:promo@127.0.0.1:55432/promo",
            )
        });
        let brokers = brokers.unwrap_or_else(|| env_or("APP_KAFKA__BROKERS", "127.0.0.1:59092"));
        let redis_url =
            redis_url.unwrap_or_else(|| env_or("APP_REDIS__URL", "redis://127.0.0.1:56379/"));
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let db_name = format!("e2e_{id}");
        let admin = PgPool::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db_name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let (server, _) = admin_url.rsplit_once('/').unwrap();
        let db_url = format!("{server}/{db_name}");
        let topic_prefix = format!("e2e-{id}.");
        let topics = messaging::system_topics(&topic_prefix);
        messaging::ensure_topics(&brokers, &topics, &Self::topic_spec(&brokers))
            .await
            .unwrap();

        let mut env: Vec<(String, String)> = vec![
            ("APP_CONFIG".into(), "/nonexistent".into()),
            ("APP_SERVER__PORT".into(), "0".into()),
            ("APP_DATABASE__URL".into(), db_url.clone()),
            ("APP_REDIS__URL".into(), redis_url),
            ("APP_REDIS__PREFIX".into(), format!("e2e:{id}:")),
            ("APP_KAFKA__BROKERS".into(), brokers.clone()),
            ("APP_KAFKA__TOPIC_PREFIX".into(), topic_prefix.clone()),
            ("APP_LOG__FORMAT".into(), "json".into()),
            ("APP_AUTH__SECRET".into(), SECRET.into()),
            ("APP_RATE_LIMIT__PREFIX".into(), format!("e2e:{id}:rl:")),
            (
                "RUST_LOG".into(),
                "warn,command_api=info,query_api=info,projector=info,relay=info".into(),
            ),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let pool = PgPool::connect(&db_url).await.unwrap();
        let mut system = System {
            client: admin_client(),
            command: String::new(),
            query: String::new(),
            projector: String::new(),
            pool,
            topic_prefix,
            brokers,
            db_name,
            admin_url,
            env,
            processes: HashMap::new(),
        };
        // The command API migrates the log; the query API creates the read-model schema.
        system.launch(COMMAND_API).await;
        system.launch(QUERY_API).await;
        system.launch(PROJECTOR).await;
        system
    }

    pub async fn start() -> System {
        Self::start_with(None, &[]).await
    }

    /// Starts (or restarts) one service and waits until it listens (APIs) or runs.
    pub async fn launch(&mut self, name: &'static str) {
        self.launch_with(name, &[]).await;
    }

    /// Starts the command API again on the port it had (after a kill), so what knows its
    /// address — a gateway in front of it — reaches it again.
    pub async fn relaunch_command_api(&mut self) {
        let port = self.command.rsplit(':').next().unwrap_or("0").to_owned();
        self.launch_with(COMMAND_API, &[("APP_SERVER__PORT", port.as_str())])
            .await;
    }

    async fn launch_with(&mut self, name: &'static str, overrides: &[(&str, &str)]) {
        let (child, port) = self.spawn(name, overrides).await;
        match name {
            COMMAND_API => {
                self.command = format!("http://127.0.0.1:{}", port.expect("command-api port"))
            }
            QUERY_API => self.query = format!("http://127.0.0.1:{}", port.expect("query-api port")),
            _ => {
                if let Some(port) = port {
                    self.projector = format!("http://127.0.0.1:{port}");
                }
            }
        }
        self.processes.insert(name, child);
    }

    /// Starts a process of service `name` on this system's settings with `overrides` (another
    /// command-api instance, say), and waits until it listens (APIs) or runs; its port.
    pub async fn spawn(
        &self,
        name: &'static str,
        overrides: &[(&str, &str)],
    ) -> (Child, Option<u16>) {
        let own = self
            .env
            .iter()
            .filter(|(k, _)| takes(name, k))
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k));
        let mut child = service_command(name)
            .envs(own.map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(overrides.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} from {}: {e}", bin_dir().display()));
        let stdout = child.stdout.take().unwrap();
        let wanted = format!("{name} listening");
        let read = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut port = None;
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                let Ok(log) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if log["message"] == wanted.as_str() {
                    port = log["port"].as_u64();
                    // The projector answers /health before it follows the log: wait for that.
                    if name != PROJECTOR {
                        break;
                    }
                }
                if log["message"] == "projector following the log" {
                    break;
                }
            }
            // E2E_LOGS=1 echoes the rest of the service's log to the test's stderr.
            let echo = std::env::var_os("E2E_LOGS").is_some();
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    if echo {
                        eprintln!("[{name}] {line}");
                    }
                }
            });
            port
        });
        // A service that never says it listens (a log filter that hides the line, a start
        // that hangs) fails the test instead of holding it, and CI, for ever.
        const STARTUP: Duration = Duration::from_secs(90);
        let port = match tokio::time::timeout(STARTUP, read).await {
            Ok(read) => read.unwrap(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name} did not log that it listens (or follows the log) within {STARTUP:?}"
                );
            }
        };
        (child, port.and_then(|p| u16::try_from(p).ok()))
    }

    /// The database URL of this system (for tools that check the log).
    pub fn database_url(&self) -> String {
        let (server, _) = self.admin_url.rsplit_once('/').unwrap();
        format!("{server}/{}", self.db_name)
    }

    /// Path of a workspace binary built next to the test executable.
    pub fn binary(name: &str) -> PathBuf {
        bin_dir().join(name)
    }

    /// The process id of a running service.
    pub fn pid(&self, name: &'static str) -> Option<u32> {
        self.processes.get(name).map(Child::id)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self, name: &'static str) {
        if let Some(mut child) = self.processes.remove(name) {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the process to exit; how long that took (at most 10 s, then
    /// SIGKILL and a panic).
    pub fn terminate(&mut self, name: &'static str) -> Duration {
        let mut child = self.processes.remove(name).unwrap();
        let sent = std::time::Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        while sent.elapsed() < Duration::from_secs(10) {
            if child.try_wait().unwrap().is_some() {
                return sent.elapsed();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("{name} did not stop within 10 s of SIGTERM");
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.post_to(&self.command, path, body).await
    }

    /// [`Self::post`] to the command API at `base` (another instance of a cluster).
    pub async fn post_to(&self, base: &str, path: &str, body: Value) -> Answer {
        let response = self
            .client
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    /// A product at 1,000 and a flash sale of `quantity` units of it at 500, open from a
    /// minute ago for a day, as the admin; the sale's id.
    pub async fn open_sale(&self, quantity: i64) -> String {
        self.open_sale_at(&self.command, quantity).await
    }

    /// [`Self::open_sale`] through the command API at `base`: in a cluster, the instance picks
    /// an id it owns, so the sale is that member's.
    pub async fn open_sale_at(&self, base: &str, quantity: i64) -> String {
        let product = self
            .post_to(
                base,
                "/api/v1/products",
                serde_json::json!({ "name": "P", "price": 1000 }),
            )
            .await;
        assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
        let now = chrono::Utc::now();
        let sale = self
            .post_to(base, "/api/v1/time-sales", serde_json::json!({ "productId": product.body["productId"],
                "discountPrice": 500, "quantity": quantity, "startAt": now - chrono::Duration::minutes(1),
                "endAt": now + chrono::Duration::days(1) }))
            .await;
        assert_eq!(sale.status, StatusCode::CREATED, "{}", sale.body);
        sale.body["timeSaleId"].as_str().unwrap().to_owned()
    }

    /// A query, waiting for the projections to reach `min_position` when given.
    pub async fn get(&self, path: &str, min_position: Option<i64>) -> Answer {
        let mut request = self.client.get(format!("{}{}", self.query, path));
        if let Some(position) = min_position {
            request = request.header("X-Min-Position", position.to_string());
        }
        answer(request.send().await.unwrap()).await
    }

    /// Waits until the relay has published everything committed so far.
    pub async fn relayed(&self) -> i64 {
        let head = eventlog::EventLog::from_pool(self.pool.clone())
            .head()
            .await
            .unwrap();
        for _ in 0..600 {
            let checkpoint = relay::checkpoint(&self.pool).await.unwrap();
            if checkpoint >= head {
                return head;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the relay never reached position {head}");
    }

    /// The checkout holds of the log still open: `timesale.reserved` with no confirmation,
    /// release or expiry of the same reservation after it.
    pub async fn open_holds(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM events r WHERE r.event_type = 'timesale.reserved' AND NOT EXISTS \
             (SELECT 1 FROM events e WHERE e.event_type IN ('timesale.reservation_confirmed', \
             'timesale.reservation_released', 'timesale.reservation_expired') \
             AND e.data->>'reservationId' = r.data->>'reservationId')",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// The data of every event of `event_type` in the log, in log order.
    pub async fn logged(&self, event_type: &str) -> Vec<Value> {
        sqlx::query_scalar("SELECT data FROM events WHERE event_type = $1 ORDER BY position")
            .bind(event_type)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// Waits until the log holds an event of `event_type`; fails with `never` after 20 s.
    pub async fn until_logged(&self, event_type: &str, never: &str) {
        let started = std::time::Instant::now();
        while self.logged(event_type).await.is_empty() {
            assert!(started.elapsed() < Duration::from_secs(20), "{never}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the projections' watermark reaches the log head.
    pub async fn projected(&self) -> i64 {
        let head = eventlog::EventLog::from_pool(self.pool.clone())
            .head()
            .await
            .unwrap();
        for _ in 0..1200 {
            let live = readmodel::generation::current(&self.pool, "rm").await;
            let watermark = match live {
                Ok(live) => readmodel::watermark::read(&self.pool, &live.schema)
                    .await
                    .unwrap_or(0),
                Err(_) => 0,
            };
            if watermark >= head {
                return head;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the projections never reached position {head}");
    }

    /// Stops every process and drops the database.
    pub async fn stop(mut self) {
        for name in [PROJECTOR, QUERY_API, COMMAND_API] {
            self.kill(name);
        }
        self.pool.close().await;
        // The stack's broker would otherwise keep every test's topics.
        let _ =
            messaging::delete_topics(&self.brokers, &messaging::system_topics(&self.topic_prefix))
                .await;
        if let Ok(admin) = PgPool::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ))
            .execute(&admin)
            .await;
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        for (_, mut child) in self.processes.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        body,
        retry_after,
    }
}
