//! `steward-bench`: end-to-end durable-ingest benchmarks against the real broker and binary.
//!
//! ```text
//! cargo build --release -p steward -p steward-bench
//! target/release/steward-bench amqp --count 200000
//! target/release/steward-bench http --count 40000 --connections 32
//! target/release/steward-bench reconcile --servers 100000 --volumes 100000
//! ```

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use steward_bench::workload::mixed_notification;

mod reconcile;

/// The allocator the `steward` binary uses, so in-process measurements (`reconcile`) match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Durable-ingest benchmarks for Steward (results go to stdout as JSON and text).
#[derive(Debug, Parser)]
struct Cli {
    /// The steward binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/steward", global = true)]
    steward: PathBuf,
    /// RabbitMQ to use.
    #[arg(
        long,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        global = true
    )]
    amqp_url: String,
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Notifications published to RabbitMQ → committed to SQLite and acknowledged, compared
    /// with the ceiling: the same queue drained by a consumer that acks without storing.
    Amqp {
        /// Notifications per run.
        #[arg(long, default_value_t = 100_000)]
        count: usize,
    },
    /// `steward meter report` over one month of a large store: `resources` resources with
    /// `facts_per_resource` facts each (the store is generated first, or reused with --db).
    Report {
        /// Resources in the store.
        #[arg(long, default_value_t = 100_000)]
        resources: usize,
        /// Facts per resource.
        #[arg(long, default_value_t = 10)]
        facts_per_resource: usize,
        /// Keep (or reuse) the generated store here instead of a temporary folder.
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// `steward images apply --import-method upload` of one large image into the real Glance
    /// (`scripts/openstack start`, OS_CLOUD): wall time, throughput and peak RSS.
    Upload {
        /// Image size in MiB.
        #[arg(long, default_value_t = 2048)]
        size_mib: u64,
        /// The cloud in clouds.yaml.
        #[arg(long, env = "OS_CLOUD", default_value = "steward-test")]
        os_cloud: String,
    },
    /// One reconciliation of `servers` servers and `volumes` volumes, listed in pages of 1000
    /// (1 % of each drifted from the store), against a store holding them all: wall time and
    /// peak RSS of the run (a child process).
    Reconcile {
        /// Servers in the cloud and the store.
        #[arg(long, default_value_t = 100_000)]
        servers: usize,
        /// Volumes in the cloud and the store.
        #[arg(long, default_value_t = 100_000)]
        volumes: usize,
    },
    /// The measured child of `reconcile` (not for direct use).
    #[command(hide = true)]
    ReconcileRun {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        servers: usize,
        #[arg(long)]
        volumes: usize,
    },
    /// Ceilometer-style HTTP posts (one event per post, as the publisher sends them) → committed.
    Http {
        /// Posts in total.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Concurrent keep-alive connections (Ceilometer uses up to 64 publisher threads).
        #[arg(long, default_value_t = 32)]
        connections: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Bench::Reconcile { servers, volumes } => return reconcile::bench(*servers, *volumes).await,
        Bench::ReconcileRun {
            db,
            servers,
            volumes,
        } => return reconcile::run_once(db, *servers, *volumes).await,
        _ => {}
    }
    if !cli.steward.exists() {
        bail!(
            "{} not found: cargo build --release -p steward",
            cli.steward.display()
        );
    }
    match cli.command {
        Bench::Amqp { count } => amqp(&cli.steward, &cli.amqp_url, count).await,
        Bench::Http { count, connections } => http(&cli.steward, count, connections).await,
        Bench::Upload { size_mib, os_cloud } => upload(&cli.steward, size_mib, &os_cloud).await,
        Bench::Report {
            resources,
            facts_per_resource,
            db,
        } => report(&cli.steward, resources, facts_per_resource, db).await,
        Bench::Reconcile { .. } | Bench::ReconcileRun { .. } => Ok(()),
    }
}

fn run_id() -> String {
    format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    )
}

async fn connect(url: &str) -> anyhow::Result<Connection> {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Publishes with confirms (a window of 2,000 in flight), like oslo.messaging but pipelined.
async fn publish(url: &str, exchange: &str, key: &str, bodies: &[Vec<u8>]) -> anyhow::Result<f64> {
    let conn = connect(url).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let started = Instant::now();
    let mut window = Vec::with_capacity(2000);
    for body in bodies {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        window.push(
            ch.basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await?,
        );
        if window.len() == 2000 {
            for c in window.drain(..) {
                c.await?;
            }
        }
    }
    for c in window {
        c.await?;
    }
    let rate = bodies.len() as f64 / started.elapsed().as_secs_f64();
    conn.close(200, "done".into()).await?;
    Ok(rate)
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

/// Drains `queue` acking every 500 deliveries with `multiple`, storing nothing.
async fn ceiling(url: &str, count: usize, bodies: &[Vec<u8>]) -> anyhow::Result<f64> {
    let queue = format!("steward.bench.ceiling.{}", run_id());
    let conn = connect(url).await?;
    let ch = conn.create_channel().await?;
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        quorum(),
    )
    .await?;
    publish(url, "", &queue, bodies).await?;
    ch.basic_qos(2000, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut seen = 0;
    let mut started = None;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        started.get_or_insert_with(Instant::now);
        // Touch the body as Steward must, to be fair: parse it.
        let _: serde_json::Value = serde_json::from_slice(&delivery.data)?;
        seen += 1;
        if seen % 500 == 0 || seen == count {
            delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await?;
        }
        if seen == count {
            break;
        }
    }
    let elapsed = started
        .map(|s| s.elapsed().as_secs_f64())
        .unwrap_or(f64::NAN);
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    conn.close(200, "done".into()).await?;
    Ok(count as f64 / elapsed)
}

struct Serve {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Serve {
    fn start(
        steward: &PathBuf,
        dir: tempfile::TempDir,
        yaml: &str,
        port: u16,
    ) -> anyhow::Result<Self> {
        let config = dir.path().join("steward.yaml");
        std::fs::write(&config, yaml)?;
        let log = std::fs::File::create(dir.path().join("serve.log"))?;
        let child = Command::new(steward)
            .args([
                "--config",
                config.to_str().unwrap_or_default(),
                "meter",
                "serve",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Self { child, dir, port })
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let url = format!("http://127.0.0.1:{}/readyz", self.port);
            if matches!(reqwest::get(url).await, Ok(r) if r.status() == 200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "steward not ready: {}",
            std::fs::read_to_string(self.dir.path().join("serve.log"))?
        )
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

async fn records(db: &sqlx::SqlitePool) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COALESCE(SUM(records), 0) FROM ingest_stats")
        .fetch_one(db)
        .await
        .unwrap_or(0)
}

async fn open_db(path: &std::path::Path) -> anyhow::Result<sqlx::SqlitePool> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    Ok(sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?)
}

async fn amqp(steward: &PathBuf, url: &str, count: usize) -> anyhow::Result<()> {
    let id = run_id();
    let bodies: Vec<Vec<u8>> = (0..count).map(|i| mixed_notification(&id, i)).collect();
    let mean_bytes = bodies.iter().map(Vec::len).sum::<usize>() / count.max(1);
    eprintln!("{count} notifications, {mean_bytes} bytes on average");

    let ceiling_rate = ceiling(url, count, &bodies).await?;
    eprintln!("ceiling (consume + parse + ack, no store): {ceiling_rate:.0}/s");

    // Steward: declare its queue and bindings, stop, publish a backlog, then drain it.
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let (queue, exchange) = (format!("steward.bench.{id}"), format!("steward-bench-{id}"));
    let db_path = dir.path().join("steward.db");
    let yaml = format!(
        "meter:\n  store:\n    url: sqlite://{}\n  amqp:\n    url: {url}\n    queue: {queue}\n    exchanges: [{exchange}]\n    routing_keys: [notifications.info]\n  http:\n    listen: 127.0.0.1:{port}\n",
        db_path.display()
    );
    let serve = Serve::start(steward, dir, &yaml, port)?;
    serve.wait_ready().await?;
    serve.stop()?;
    let publish_rate = publish(url, &exchange, "notifications.info", &bodies).await?;
    eprintln!("published the backlog at {publish_rate:.0}/s");

    let dir = tempfile::tempdir()?;
    let serve = Serve::start(steward, dir, &yaml, port)?;
    let db = loop {
        if let Ok(db) = open_db(&db_path).await {
            break db;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut first: Option<(Instant, i64)> = None;
    let mut rss_peak: f64 = 0.0;
    let mut rss_samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    let done = loop {
        let n = records(&db).await;
        let rss = serve.rss_mb();
        rss_peak = rss_peak.max(rss);
        if n > 0 {
            first.get_or_insert((Instant::now(), n));
            rss_samples.push(rss);
        }
        if n as usize >= count {
            break Instant::now();
        }
        if Instant::now() > deadline {
            bail!("only {n} of {count} records after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (t0, n0) = first.unwrap_or((done, 0));
    let rate = (count as i64 - n0) as f64 / done.duration_since(t0).as_secs_f64();
    rss_samples.sort_by(|a, b| a.total_cmp(b));
    let rss_median = rss_samples
        .get(rss_samples.len() / 2)
        .copied()
        .unwrap_or(0.0);
    serve.stop()?;
    let conn = connect(url).await?;
    let ch = conn.create_channel().await?;
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    conn.close(200, "done".into()).await?;

    let result = serde_json::json!({
        "bench": "amqp_to_sqlite",
        "notifications": count,
        "mean_body_bytes": mean_bytes,
        "ceiling_per_sec": ceiling_rate.round(),
        "steward_per_sec": rate.round(),
        "fraction_of_ceiling": (rate / ceiling_rate * 100.0).round() / 100.0,
        "rss_mb_median": (rss_median * 10.0).round() / 10.0,
        "rss_mb_peak": (rss_peak * 10.0).round() / 10.0,
    });
    println!("{result}");
    eprintln!(
        "steward: {rate:.0} notifications/s committed and acked ({:.0} % of the ceiling), RSS median {rss_median:.1} MB, peak {rss_peak:.1} MB",
        rate / ceiling_rate * 100.0
    );
    Ok(())
}

async fn http(steward: &PathBuf, count: usize, connections: usize) -> anyhow::Result<()> {
    let id = run_id();
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let db_path = dir.path().join("steward.db");
    let yaml = format!(
        "meter:\n  store:\n    url: sqlite://{}\n  amqp:\n    enabled: false\n  http:\n    listen: 127.0.0.1:{port}\n",
        db_path.display()
    );
    let serve = Serve::start(steward, dir, &yaml, port)?;
    serve.wait_ready().await?;
    let url = format!("http://127.0.0.1:{port}/v1/ceilometer/events");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (url, id) = (url.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut latencies = Vec::new();
            for i in (c..count).step_by(connections) {
                let body = serde_json::json!([{
                    "message_id": format!("{id}-{i}"), "event_type": "compute.instance.create.end",
                    "generated": "2026-11-25T00:35:26.638669", "raw": {},
                    "traits": [["tenant_id", 1, "p-1"], ["instance_id", 1, format!("vm-{i}")],
                               ["instance_type", 1, "SCS-2V-4"], ["vcpus", 2, 2],
                               ["launched_at", 4, "2026-11-25T00:30:57.638546"]]
                }]);
                let sent = Instant::now();
                let response = client.post(&url).body(body.to_string()).send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "answer {}",
                    response.status()
                );
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss = serve.rss_mb();
    let db = open_db(&db_path).await?;
    let stored = records(&db).await;
    serve.stop()?;
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let result = serde_json::json!({
        "bench": "http_events_to_sqlite",
        "posts": count,
        "connections": connections,
        "stored": stored,
        "posts_per_sec": (count as f64 / elapsed).round(),
        "latency_ms_p50": (pct(0.5) * 100.0).round() / 100.0,
        "latency_ms_p99": (pct(0.99) * 100.0).round() / 100.0,
        "rss_mb": (rss * 10.0).round() / 10.0,
    });
    println!("{result}");
    anyhow::ensure!(stored as usize == count, "stored {stored} of {count}");
    Ok(())
}

/// Facts of one resource over October 2026: created in September or October, then resizes,
/// stops and starts, and for some a delete inside the month.
fn resource_facts(r: usize, per_resource: usize) -> Vec<steward_meter::facts::Fact> {
    use steward_meter::facts::{Fact, FactKind, Origin, ResourceType, TimeSource};
    use steward_meter::time::Instant;
    let october = 1_790_812_800i64; // 2026-10-01T00:00:00Z
    let (resource_type, attrs): (_, serde_json::Value) = match r % 10 {
        0..=5 => (
            ResourceType::Instance,
            serde_json::json!({"flavor_name": format!("SCS-{}V-{}", 1 << (r % 3), 4 << (r % 3)), "vcpus": 1 << (r % 3)}),
        ),
        6..=8 => (
            ResourceType::Volume,
            serde_json::json!({"size_gb": 10 * (1 + r % 50), "volume_type": if r.is_multiple_of(2) { "ssd" } else { "hdd" }}),
        ),
        _ => (
            ResourceType::FloatingIp,
            serde_json::json!({"floating_ip_address": "203.0.113.1"}),
        ),
    };
    let project = format!("project-{:04}", r % 1000);
    let start = october - 86_400 * 5 + (r as i64 * 37) % (86_400 * 20);
    let kinds = [FactKind::Stopped, FactKind::Started, FactKind::Resized];
    (0..per_resource)
        .map(|i| {
            let kind = match (i, resource_type) {
                (0, _) => FactKind::Created,
                (i, _) if i + 1 == per_resource && r.is_multiple_of(3) => FactKind::Deleted,
                (_, ResourceType::Instance) => kinds[i % 3],
                _ => FactKind::Resized,
            };
            let mut attributes: std::collections::BTreeMap<String, serde_json::Value> = attrs
                .as_object()
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default();
            if kind == FactKind::Resized {
                attributes.insert("size_gb".to_owned(), serde_json::json!(10 * (1 + i)));
            }
            Fact {
                resource_type,
                resource_id: format!("{}-{r:07}", resource_type.as_str()),
                project_id: Some(project.clone()),
                user_id: None,
                kind,
                effective_at: Instant((start + i as i64 * 7_200) * 1_000_000),
                time_source: TimeSource::Payload,
                origin: Origin::Notification,
                event_type: "bench".to_owned(),
                attributes,
            }
        })
        .collect()
}

async fn report(
    steward: &PathBuf,
    resources: usize,
    per_resource: usize,
    db: Option<PathBuf>,
) -> anyhow::Result<()> {
    use steward_meter::record::{Accepted, Batch, RawRecord, RecordKind, Source};
    use steward_meter::store::{SqlStore, Store};
    let dir = tempfile::tempdir()?;
    let path = db.unwrap_or_else(|| dir.path().join("report.db"));
    let url = format!("sqlite://{}", path.display());
    let store = SqlStore::open(&url).await?;
    let existing = store.status().await?.facts_total;
    let wanted = (resources * per_resource) as i64;
    if existing != wanted {
        anyhow::ensure!(
            existing == 0,
            "{} holds {existing} facts, not {wanted}",
            path.display()
        );
        eprintln!(
            "generating {resources} resources × {per_resource} facts into {}",
            path.display()
        );
        let started = Instant::now();
        for chunk in (0..resources).collect::<Vec<_>>().chunks(2_000) {
            let accepted = chunk
                .iter()
                .map(|&r| Accepted {
                    record: RawRecord {
                        dedup_key: format!("bench:{r}"),
                        source: Source::Amqp,
                        kind: RecordKind::Notification,
                        message_id: None,
                        exchange: None,
                        routing_key: None,
                        envelope_version: None,
                        publisher_id: None,
                        event_type: None,
                        priority: None,
                        emitted_at: None,
                        received_at: steward_meter::time::Instant(0),
                        body: "{}".to_owned(),
                        scrubbed: None,
                    },
                    facts: resource_facts(r, per_resource),
                })
                .collect();
            store
                .commit(&[Batch {
                    accepted,
                    quarantined: vec![],
                }])
                .await?;
        }
        eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
    }
    store.pool().close().await;

    let config = dir.path().join("steward.yaml");
    std::fs::write(&config, format!("meter:\n  store:\n    url: {url}\n"))?;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let mut child = Command::new(steward)
            .args([
                "--config",
                config.to_str().unwrap_or_default(),
                "meter",
                "report",
                "--period",
                "2026-10",
                "-o",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let pid = child.id();
        let mut stdout = child.stdout.take().context("no stdout")?;
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut out).map(|_| out)
        });
        // VmHWM is the kernel's peak-RSS mark; read it until the process is gone.
        let mut peak_kb = 0f64;
        while child.try_wait()?.is_none() {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let wall = started.elapsed().as_secs_f64();
        let out = reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader panicked"))??;
        let report: serde_json::Value = serde_json::from_slice(&out)?;
        let projects = report["projects"].as_array().map(Vec::len).unwrap_or(0);
        eprintln!(
            "report: {wall:.2} s, peak RSS {:.1} MB, {projects} projects, {} bytes",
            peak_kb / 1024.0,
            out.len()
        );
        runs.push((wall, peak_kb / 1024.0));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (median_wall, _) = runs[runs.len() / 2];
    let peak = runs.iter().map(|r| r.1).fold(0.0, f64::max);
    println!(
        "{}",
        serde_json::json!({
            "bench": "report_month",
            "resources": resources,
            "facts": resources * per_resource,
            "wall_s_median": (median_wall * 100.0).round() / 100.0,
            "peak_rss_mb": (peak * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

/// Like [`run_measured`], also returning what the child printed to stdout.
fn run_measured_output(
    mut child: Child,
) -> anyhow::Result<(f64, f64, std::process::ExitStatus, String)> {
    let mut stdout = child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).map(|_| out)
    });
    let (wall, peak, status) = run_measured(child)?;
    let out = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    Ok((wall, peak, status, out))
}

/// Runs `child` to completion, sampling its peak RSS (VmHWM); returns (wall s, peak MB, status).
fn run_measured(mut child: Child) -> anyhow::Result<(f64, f64, std::process::ExitStatus)> {
    let started = Instant::now();
    let pid = child.id();
    let mut peak_kb = 0f64;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(kb) = text
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok((started.elapsed().as_secs_f64(), peak_kb / 1024.0, status))
}

async fn upload(steward: &PathBuf, size_mib: u64, os_cloud: &str) -> anyhow::Result<()> {
    use sha2::Digest as _;
    use std::io::Write as _;
    let dir = tempfile::tempdir()?;
    let folder = dir.path().join("release");
    std::fs::create_dir_all(&folder)?;
    eprintln!("writing a {size_mib} MiB image");
    let mut file = std::io::BufWriter::new(std::fs::File::create(folder.join("big.img"))?);
    let mut hasher = sha2::Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    for i in 0..size_mib {
        for (j, b) in block.iter_mut().enumerate() {
            *b = ((i as usize).wrapping_mul(31) ^ j.wrapping_mul(2_654_435_761)) as u8;
        }
        hasher.update(&block);
        file.write_all(&block)?;
    }
    file.flush()?;
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(folder.join("SHA256SUMS"), format!("{digest} *big.img\n"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    let name = format!("Steward Upload Bench {}", run_id());
    let defs = dir.path().join("defs.yml");
    std::fs::write(
        &defs,
        format!(
            "images:\n  - name: {name}\n    enable: true\n    format: raw\n    login: x\n    min_disk: 3\n    min_ram: 64\n    \
             status: active\n    visibility: private\n    multi: true\n    tags: []\n    meta:\n      architecture: x86_64\n      \
             os_distro: ubuntu\n      os_version: '1'\n      os_purpose: custom\n      image_description: bench\n      \
             replace_frequency: never\n      uuid_validity: none\n      provided_until: none\n    versions:\n      \
             - version: latest\n        url: http://127.0.0.1:{port}/release/big.img\n        \
             checksums_url: http://127.0.0.1:{port}/release/SHA256SUMS\n"
        ),
    )?;
    let child = Command::new(steward)
        .args([
            "images",
            "apply",
            "--os-cloud",
            os_cloud,
            "--import-method",
            "upload",
        ])
        .arg(&defs)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let (wall, peak_mb, status) = run_measured(child)?;
    let _ = server.kill();
    anyhow::ensure!(status.success(), "apply failed");
    let cloud = steward_cloud::Cloud::connect(os_cloud, None).await?;
    let mut stored = None;
    for image in cloud.images().await? {
        if image.properties.get("steward_definition") == Some(&name) {
            stored = image.size;
            cloud.delete_image(&image.id).await?;
        }
    }
    let bytes = size_mib * 1024 * 1024;
    anyhow::ensure!(
        stored == Some(bytes),
        "Glance stored {stored:?} bytes, expected {bytes}"
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "image_upload",
            "bytes": bytes,
            "wall_s": (wall * 100.0).round() / 100.0,
            "mib_per_sec": ((size_mib as f64 / wall) * 10.0).round() / 10.0,
            "peak_rss_mb": (peak_mb * 10.0).round() / 10.0,
        })
    );
    Ok(())
}
