//! Harness for end-to-end tests: the real `steward` binary, real RabbitMQ, real HTTP, a real
//! SQLite file. Each test gets its own exchange, queue, port and data folder, so tests can run
//! in parallel against one broker.
//!
//! RabbitMQ: `STEWARD_TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`). A missing
//! broker fails the tests loudly; the test command starts one (scripts/test).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

pub fn amqp_url() -> String {
    std::env::var("STEWARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A unique suffix for names of this test run.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// One `steward meter serve` under test.
pub struct Steward {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub port: u16,
    pub queue: String,
    pub exchange: String,
    child: Option<Child>,
    pub restarts: u32,
}

impl Steward {
    /// A configuration with its own queue, exchange, port and SQLite file; `extra_http` is
    /// appended to the `http:` section.
    pub fn new(tag: &str, extra_http: &str) -> Self {
        let name = unique(tag);
        Self::configure(
            None,
            &format!("steward.test.{name}"),
            &format!("steward-test-{name}"),
            extra_http,
        )
    }

    /// Another replica: same queue and exchange as `other`, its own port and folder, the given
    /// store (several replicas share one PostgreSQL).
    pub fn replica(other: &Steward, store_url: &str) -> Self {
        Self::configure(Some(store_url), &other.queue, &other.exchange, "")
    }

    /// A configuration with the given store (default: SQLite in the test's folder).
    pub fn configure(
        store_url: Option<&str>,
        queue: &str,
        exchange: &str,
        extra_http: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (queue, exchange) = (queue.to_owned(), exchange.to_owned());
        let port = free_port();
        let config = dir.path().join("steward.yaml");
        let db = match store_url {
            Some(url) => url.to_owned(),
            None => format!("sqlite://{}", dir.path().join("data/steward.db").display()),
        };
        let yaml = format!(
            "meter:\n  store:\n    url: {db}\n  amqp:\n    url: {amqp}\n    queue: {queue}\n    \
             exchanges: [{exchange}]\n    routing_keys: [notifications.info]\n    \
             reconnect_initial_ms: 100\n    reconnect_max_ms: 1000\n  http:\n    listen: 127.0.0.1:{port}\n    \
             heartbeat_secs: 1\n{extra_http}log:\n  level: info\n",
            amqp = amqp_url(),
        );
        std::fs::write(&config, yaml).unwrap();
        Self {
            dir,
            config,
            port,
            queue,
            exchange,
            child: None,
            restarts: 0,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data/steward.db")
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts `steward meter serve` and waits until `/readyz` answers 200.
    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("serve.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(["--config", self.config.to_str().unwrap(), "meter", "serve"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.restarts += 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.is_ready().await {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("steward exited during start-up ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "steward not ready in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// True when `/readyz` answers 200 (the AMQP source is consuming).
    pub async fn is_ready(&self) -> bool {
        let url = format!("{}/readyz", self.base_url());
        matches!(reqwest::get(url).await, Ok(r) if r.status() == 200)
    }

    /// Waits until `/readyz` answers 200 again.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.is_ready().await {
            assert!(
                Instant::now() < deadline,
                "steward not ready again in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id of the running `serve`.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Peak resident memory of the running `serve` so far (VmHWM), in bytes.
    #[allow(dead_code)]
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib * 1024
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        status.code()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Runs a CLI command with this configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_steward"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a CLI command with this configuration and without `OS_CLOUD` in its environment
    /// (the test scripts export it for the OpenStack groups).
    #[allow(dead_code)] // each test binary uses its own part of the shared harness
    pub fn cli_without_cloud(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_steward"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("OS_CLOUD")
            .output()
            .unwrap()
    }

    /// `steward meter status -o json`.
    pub fn status(&self) -> Value {
        let out = self.cli(&["meter", "status", "-o", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A read-only pool on the store file.
    /// Publishes `bodies` to this Steward's exchange (`notifications.info`, with confirms) and
    /// waits until its store holds `records` raw records; returns the store.
    #[allow(dead_code)] // each test binary uses its own part of the shared harness
    pub async fn publish_and_wait(
        &self,
        bodies: Vec<Vec<u8>>,
        records: i64,
        timeout: Duration,
    ) -> SqlitePool {
        let p = Publisher::connect().await;
        p.publish(&self.exchange, "notifications.info", bodies)
            .await;
        p.close().await;
        let db = self.db().await;
        assert_eq!(
            wait_for_count(&db, "SELECT COUNT(*) FROM raw_records", records, timeout).await,
            records
        );
        db
    }

    pub async fn db(&self) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(self.db_path())
            .read_only(true);
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap()
    }

    /// Removes this test's queue and exchange from the broker.
    pub async fn cleanup_broker(&self) {
        let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let _ = ch
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = ch
            .exchange_delete(
                self.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = conn.close(200, "bye".into()).await;
    }
}

impl Drop for Steward {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh PostgreSQL database for one test: its URL, or `None` when the test command was told
/// to leave PostgreSQL out (`STEWARD_TEST_SKIP_POSTGRES=1`). A missing server fails loudly.
#[allow(dead_code)] // each test binary uses its own part of the shared harness
pub async fn postgres_database(tag: &str) -> Option<String> {
    use sqlx::Connection as _;
    if std::env::var("STEWARD_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        return None;
    }
    let admin_url = std::env::var("STEWARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = unique(&format!("steward_t_{tag}")).replace('-', "_");
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is needed at {admin_url}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    Some(format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0))
}

/// Drops a database made by [`postgres_database`].
#[allow(dead_code)]
pub async fn drop_postgres_database(url: &str) {
    use sqlx::Connection as _;
    let (base, name) = url.rsplit_once('/').unwrap();
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

/// One number from PostgreSQL.
#[allow(dead_code)]
pub async fn pg_count(db: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(db)
        .await
        .unwrap()
}

/// Polls `sql` on PostgreSQL until it returns `want` or `timeout` passes; returns the last value.
#[allow(dead_code)]
pub async fn pg_wait_for(db: &sqlx::PgPool, sql: &str, want: i64, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let n = pg_count(db, sql).await;
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One Ceilometer HTTP-publisher post (`batch=true`) holding event `i` of `run`.
#[allow(dead_code)]
pub fn ceilometer_event(run: &str, i: usize) -> String {
    serde_json::json!([{
        "message_id": format!("{run}-{i:06}"),
        "event_type": "compute.instance.create.end",
        "generated": "2026-11-25T00:35:26.638669",
        "raw": {},
        "traits": [
            ["tenant_id", 1, "p-1"], ["instance_id", 1, format!("vm-{run}-{i}")],
            ["instance_type", 1, "SCS-2V-4"], ["vcpus", 2, 2],
            ["launched_at", 4, "2026-11-25T00:30:57.638546"]
        ]
    }])
    .to_string()
}

/// The value of one Prometheus counter or gauge line (`name{labels} value`), 0 when absent.
#[allow(dead_code)]
pub async fn metric(base_url: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub async fn count(db: &SqlitePool, sql: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(db)
        .await
        .unwrap()
        .get::<i64, _>(0)
}

/// Polls `sql` until it returns `want` or `timeout` passes; returns the last value.
pub async fn wait_for_count(db: &SqlitePool, sql: &str, want: i64, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let n = count(db, sql).await;
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A publisher with confirms, like oslo.messaging's rabbit driver.
pub struct Publisher {
    conn: Connection,
    channel: lapin::Channel,
}

impl Publisher {
    pub async fn connect() -> Self {
        let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("RabbitMQ is needed at {}: {e}", amqp_url()));
        let channel = conn.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Self { conn, channel }
    }

    /// Publishes every body persistently and waits for the broker's confirms.
    pub async fn publish(&self, exchange: &str, routing_key: &str, bodies: Vec<Vec<u8>>) {
        let mut pending = Vec::with_capacity(512);
        for body in bodies {
            let confirm = self
                .channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/json".into()),
                )
                .await
                .unwrap();
            pending.push(confirm);
            if pending.len() >= 512 {
                for c in pending.drain(..) {
                    assert!(c.await.unwrap().is_ack(), "broker refused a message");
                }
            }
        }
        for c in pending {
            assert!(c.await.unwrap().is_ack(), "broker refused a message");
        }
    }

    pub async fn close(self) {
        let _ = self.conn.close(200, "done".into()).await;
    }
}

#[allow(unused_imports)] // each test binary uses its own part of the shared harness
pub use steward_bench::workload::{mixed_expected_facts, mixed_notification, oslo_v2};

/// Ingests one server of each of `projects` (May 2023) through RabbitMQ and `serve`, stops
/// serve and closes May without a reconciliation; returns the run id (for later servers).
#[allow(dead_code)]
pub async fn closed_may_with(steward: &mut Steward, projects: &[&str]) -> String {
    let run = unique("may");
    steward.start().await;
    steward
        .publish_and_wait(
            projects
                .iter()
                .enumerate()
                .map(|(g, p)| server_of(&run, g, p))
                .collect(),
            projects.len() as i64,
            Duration::from_secs(60),
        )
        .await;
    steward.terminate();
    let closed = steward.cli(&[
        "meter",
        "close",
        "--period",
        "2023-05",
        "--without-reconcile",
    ]);
    assert!(
        closed.status.success(),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    run
}

/// The create notification of server group `group` of the mixed workload, owned by `project`
/// (its tenant replaced).
#[allow(dead_code)]
pub fn server_of(run: &str, group: usize, project: &str) -> Vec<u8> {
    String::from_utf8(mixed_notification(run, group * 10))
        .unwrap()
        .replace("a3f2c6b0e1d94b6f8c1f1d7e2a9b0c11", project)
        .into_bytes()
}
