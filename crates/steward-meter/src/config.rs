//! The `meter:` section of Steward's configuration file.
//!
//! Every field has a default, so an empty file (or none) runs Steward on an embedded SQLite
//! store, the HTTP ingest on `127.0.0.1:8788` and RabbitMQ on `127.0.0.1:5672`. Field names carry
//! their units (`_ms`, `_secs`, `_bytes`). Secrets are [`Secret`]s: shown as `***` in `Debug`
//! output and logs. `docs/configuration.md` documents every field; a test parses its examples.

use std::net::SocketAddr;

use serde::Deserialize;

/// A string that must not appear in logs (passwords, tokens, URLs with credentials).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Metering configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MeterConfig {
    /// Where records and facts are stored.
    #[serde(default)]
    pub store: StoreConfig,
    /// The RabbitMQ notification source.
    #[serde(default)]
    pub amqp: AmqpConfig,
    /// The HTTP source for Ceilometer's HTTP publisher, plus `/metrics` and health endpoints.
    #[serde(default)]
    pub http: HttpConfig,
    /// The store writer (group commit).
    #[serde(default)]
    pub writer: WriterSection,
    /// The product catalogue for usage reports; the SCS default when absent.
    #[serde(default)]
    pub products: Option<Vec<crate::usage::catalogue::Product>>,
    /// Credential scrubbing of stored bodies.
    #[serde(default)]
    pub scrub: ScrubConfig,
    /// The reconciler: backfills from the OpenStack APIs what the notifications lost.
    #[serde(default)]
    pub reconcile: ReconcileConfig,
    /// Closing billing periods (calendar months, UTC) and correcting them.
    #[serde(default)]
    pub close: CloseConfig,
    /// Where closed reports and corrections are delivered (`steward meter push`).
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

/// One entry of `meter.sinks`. (No `deny_unknown_fields` here: serde does not combine it with
/// `flatten`; the kind's fields refuse unknown keys.)
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SinkConfig {
    /// The name the outbox and `--sink` know it by.
    pub name: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: SinkKind,
}

/// The kinds of sink.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkKind {
    /// JSON and CSV files under `dir`, written atomically.
    File {
        /// The folder.
        dir: std::path::PathBuf,
    },
    /// An HTTP POST per document, signed per Standard Webhooks.
    Webhook {
        /// Where to POST (`http://` or `https://`; credentials in it are redacted in messages).
        url: Secret,
        /// The signing secret: `whsec_` followed by base64 (the Standard Webhooks form), or the
        /// base64 alone; usually `${STEWARD_WEBHOOK_SECRET}`.
        secret: Secret,
        /// How long one POST may take, connection included. Default 30.
        #[serde(default = "default_webhook_timeout_secs")]
        timeout_secs: u64,
    },
    /// Per project and month one draft invoice (or sale order) in Odoo 16–19.
    Odoo {
        /// The server, `https://erp.example.net` (no path).
        url: Secret,
        /// The database.
        database: String,
        /// The login of the user Steward acts as (a bot user with invoicing rights).
        login: String,
        /// Its API key (on JSON-RPC/XML-RPC a password works too); usually `${ODOO_API_KEY}`.
        api_key: Secret,
        /// `auto` (JSON-2 on 19+, JSON-RPC before), `json-2`, `jsonrpc` or `xmlrpc`.
        #[serde(default = "default_odoo_protocol")]
        protocol: crate::sinks::odoo::rpc::Protocol,
        /// `invoice` (draft `account.move`, default) or `sale-order` (draft `sale.order`).
        #[serde(default)]
        document: crate::sinks::odoo::OdooDocument,
        /// Project id → partner `ref`; unlisted projects are looked up by their id as `ref`.
        #[serde(default)]
        partners: std::collections::BTreeMap<String, String>,
        /// Create a partner when none has the ref. Default false.
        #[serde(default)]
        create_partners: bool,
        /// Report product → `default_code`; unlisted products by their own name.
        #[serde(default)]
        products: std::collections::BTreeMap<String, String>,
        /// Create a service product when none has the code. Default false.
        #[serde(default)]
        create_products: bool,
        /// Report product → unit price to send; unlisted products are priced by Odoo.
        #[serde(default)]
        prices: std::collections::BTreeMap<String, f64>,
        /// `account.tax` ids put on every line; default none (sent explicitly as none).
        #[serde(default)]
        tax_ids: Vec<i64>,
        /// Per request. Default 30.
        #[serde(default = "default_webhook_timeout_secs")]
        timeout_secs: u64,
    },
    /// Every stored event, forwarded in Ceilometer's HTTP-publisher format (not a document
    /// sink: a stream with a durable cursor; `serve` runs it, `steward meter forward` too).
    Ceilometer {
        /// Where to POST; credentials in it become HTTP Basic authentication.
        url: Secret,
        /// A JSON array per request (Ceilometer's `batch=true`); false: one object each.
        #[serde(default = "default_true")]
        batch: bool,
        /// The most events in one array. Default 100.
        #[serde(default = "default_batch_max_events")]
        batch_max_events: u32,
        /// Include the notification as `raw` (Ceilometer's `[event] store_raw`). Default false.
        #[serde(default)]
        raw: bool,
        /// How long one POST may take. Default 10.
        #[serde(default = "default_forward_timeout_secs")]
        timeout_secs: u64,
    },
}

fn default_webhook_timeout_secs() -> u64 {
    30
}

fn default_odoo_protocol() -> crate::sinks::odoo::rpc::Protocol {
    crate::sinks::odoo::rpc::Protocol::Auto
}

fn default_batch_max_events() -> u32 {
    100
}

fn default_forward_timeout_secs() -> u64 {
    10
}

impl SinkConfig {
    /// The sink these settings describe (settings that [`MeterConfig::problems`] passes).
    pub fn build(&self) -> Result<Box<dyn crate::sinks::Sink>, String> {
        match &self.kind {
            SinkKind::File { dir } => {
                Ok(Box::new(crate::sinks::file::FileSink::new(&self.name, dir)))
            }
            SinkKind::Webhook {
                url,
                secret,
                timeout_secs,
            } => Ok(Box::new(crate::sinks::webhook::WebhookSink::new(
                &self.name,
                url.expose(),
                secret.expose(),
                std::time::Duration::from_secs(*timeout_secs),
            )?)),
            SinkKind::Odoo {
                url,
                database,
                login,
                api_key,
                protocol,
                document,
                partners,
                create_partners,
                products,
                create_products,
                prices,
                tax_ids,
                timeout_secs,
            } => Ok(Box::new(crate::sinks::odoo::OdooSink::new(
                &self.name,
                crate::sinks::odoo::settings(
                    url.expose(),
                    database,
                    login,
                    api_key.expose(),
                    *protocol,
                    std::time::Duration::from_secs(*timeout_secs),
                ),
                crate::sinks::odoo::Mapping {
                    document: *document,
                    partners: partners.clone(),
                    create_partners: *create_partners,
                    products: products.clone(),
                    create_products: *create_products,
                    prices: prices.clone(),
                    tax_ids: tax_ids.clone(),
                },
            )?)),
            SinkKind::Ceilometer { .. } => Err(format!(
                "sink {} forwards events continuously (type ceilometer): \
                 see `steward meter forward`",
                self.name
            )),
        }
    }

    /// Whether this sink delivers closed periods' documents through the outbox (`push`);
    /// a `ceilometer` sink streams events instead.
    pub fn delivers_documents(&self) -> bool {
        !matches!(self.kind, SinkKind::Ceilometer { .. })
    }

    /// The event forwarder these settings describe, `None` for a document sink.
    pub fn forwarder(
        &self,
    ) -> Option<Result<crate::sinks::ceilometer::CeilometerForwarder, String>> {
        match &self.kind {
            SinkKind::Ceilometer {
                url,
                batch,
                batch_max_events,
                raw,
                timeout_secs,
            } => Some(crate::sinks::ceilometer::CeilometerForwarder::new(
                &self.name,
                url.expose(),
                &crate::sinks::ceilometer::ForwarderSettings {
                    batch: *batch,
                    batch_max_events: *batch_max_events,
                    raw: *raw,
                    timeout: std::time::Duration::from_secs(*timeout_secs),
                },
            )),
            _ => None,
        }
    }

    /// What is wrong with these settings, as `(field, message)` under `sinks[<index>]`.
    fn problems(&self) -> Vec<(&'static str, String)> {
        match &self.kind {
            SinkKind::File { .. } => Vec::new(),
            SinkKind::Webhook {
                url,
                secret,
                timeout_secs,
            } => {
                let mut out = Vec::new();
                if let Err(e) = crate::sinks::http::parse_url(url.expose()) {
                    out.push(("url", e));
                }
                if let Err(e) = crate::sinks::webhook::signing_key(secret.expose()) {
                    out.push(("secret", e));
                }
                if *timeout_secs == 0 {
                    out.push(("timeout_secs", "must be at least 1".to_owned()));
                }
                out
            }
            SinkKind::Odoo {
                url,
                database,
                login,
                api_key,
                prices,
                timeout_secs,
                ..
            } => {
                let mut out = Vec::new();
                if let Err(e) = crate::sinks::odoo::rpc::base_url(url.expose()) {
                    out.push(("url", e));
                }
                for (field, value) in [("database", database), ("login", login)] {
                    if value.trim().is_empty() {
                        out.push((field, "must not be empty".to_owned()));
                    }
                }
                if let Some(problem) = secret_problem(api_key.expose()) {
                    out.push(("api_key", problem));
                }
                if let Some((product, _)) = prices.iter().find(|(_, p)| !p.is_finite() || **p < 0.0)
                {
                    out.push(("prices", format!("the price of {product:?} must be >= 0")));
                }
                if *timeout_secs == 0 {
                    out.push(("timeout_secs", "must be at least 1".to_owned()));
                }
                out
            }
            SinkKind::Ceilometer {
                url,
                batch_max_events,
                timeout_secs,
                ..
            } => {
                let mut out = Vec::new();
                if let Err(e) = crate::sinks::http::parse_url(url.expose()) {
                    out.push(("url", e));
                }
                if !(1..=10_000).contains(batch_max_events) {
                    out.push(("batch_max_events", "must be 1 to 10000".to_owned()));
                }
                if *timeout_secs == 0 {
                    out.push(("timeout_secs", "must be at least 1".to_owned()));
                }
                out
            }
        }
    }
}

/// `meter.close`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloseConfig {
    /// Close each calendar month automatically in `serve` once its grace has passed and a
    /// reconciliation has run after it.
    #[serde(default = "default_true")]
    pub auto: bool,
    /// Seconds after a month's end before it may close: late notifications, Ceilometer
    /// posts and backfill arrive in it.
    #[serde(default = "default_close_grace_secs")]
    pub grace_secs: u64,
    /// Close without a reconciliation after the grace (for a cloud without a reconciler): the
    /// completeness statement then states every gap as unresolved.
    #[serde(default)]
    pub without_reconcile: bool,
    /// Seconds between checks of closed periods for late facts (corrections).
    #[serde(default = "default_close_check_interval_secs")]
    pub check_interval_secs: u64,
}

impl Default for CloseConfig {
    fn default() -> Self {
        Self {
            auto: true,
            grace_secs: default_close_grace_secs(),
            without_reconcile: false,
            check_interval_secs: default_close_check_interval_secs(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_close_grace_secs() -> u64 {
    86_400
}
fn default_close_check_interval_secs() -> u64 {
    3_600
}

/// `meter.reconcile`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// The cloud in clouds.yaml whose APIs are read, with admin rights (every project's
    /// resources). Unset: `serve` runs no reconciler; `steward meter reconcile` then takes
    /// `--os-cloud` or `OS_CLOUD`.
    #[serde(default)]
    pub cloud: Option<String>,
    /// An explicit clouds.yaml (default: `OS_CLIENT_CONFIG_FILE`, then the standard places).
    #[serde(default)]
    pub clouds_file: Option<std::path::PathBuf>,
    /// Seconds between runs in `serve` (a run also follows the start and every closed gap).
    #[serde(default = "default_reconcile_interval_secs")]
    pub interval_secs: u64,
    /// How far before the previous listing nova's `changes-since` reaches back.
    #[serde(default = "default_reconcile_margin_secs")]
    pub margin_secs: u64,
    /// Servers whose instance actions are read at once.
    #[serde(default = "default_reconcile_concurrency")]
    pub concurrency: usize,
    /// The resource types to list: any of `instance`, `volume`, `snapshot`, `floating_ip`,
    /// `router`, `load_balancer` (default: all; leave out a service the cloud does not run).
    #[serde(default = "default_reconcile_resources")]
    pub resources: Vec<String>,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            cloud: None,
            clouds_file: None,
            interval_secs: default_reconcile_interval_secs(),
            margin_secs: default_reconcile_margin_secs(),
            concurrency: default_reconcile_concurrency(),
            resources: default_reconcile_resources(),
        }
    }
}

fn default_reconcile_interval_secs() -> u64 {
    900
}
fn default_reconcile_margin_secs() -> u64 {
    300
}
fn default_reconcile_concurrency() -> usize {
    8
}
fn default_reconcile_resources() -> Vec<String> {
    crate::ingest::reconcile::RECONCILED
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect()
}

impl ReconcileConfig {
    /// The run options these settings give (unknown resource names are left out; see
    /// [`MeterConfig::problems`]).
    pub fn options(&self, dry_run: bool) -> crate::ingest::reconcile::ReconcileOptions {
        crate::ingest::reconcile::ReconcileOptions {
            dry_run,
            margin_secs: self.margin_secs,
            concurrency: self.concurrency.max(1),
            resources: self
                .resources
                .iter()
                .filter_map(|r| crate::facts::ResourceType::parse(r))
                .filter(|t| crate::ingest::reconcile::RECONCILED.contains(t))
                .collect(),
        }
    }
}

/// `meter.scrub`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScrubConfig {
    /// Object keys whose values are replaced before anything is stored, at any depth of a body
    /// (compared ignoring ASCII case and a leading `_context_`). Replaces the default list
    /// ([`crate::scrub::DEFAULT_KEYS`]: tokens, passwords and secrets), so list them all.
    #[serde(default = "default_scrub_keys")]
    pub keys: Vec<String>,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        Self {
            keys: default_scrub_keys(),
        }
    }
}

impl ScrubConfig {
    /// The scrubber for these keys.
    pub fn scrubber(&self) -> crate::scrub::Scrubber {
        crate::scrub::Scrubber::new(self.keys.iter().map(String::as_str))
    }
}

fn default_scrub_keys() -> Vec<String> {
    crate::scrub::DEFAULT_KEYS
        .iter()
        .map(|k| (*k).to_owned())
        .collect()
}

impl MeterConfig {
    /// The product catalogue in force.
    pub fn catalogue(&self) -> Vec<crate::usage::catalogue::Product> {
        self.products
            .clone()
            .unwrap_or_else(crate::usage::catalogue::default_catalogue)
    }
}

/// `meter.store`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (embedded, one file) or `postgres://USER:PASSWORD@HOST/DB` (several
    /// replicas). Default `sqlite://./steward-data/steward.db`.
    #[serde(default = "default_store_url")]
    pub url: Secret,
    /// How long to keep trying to reach the database before giving up with an error.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: default_store_url(),
            connect_timeout_secs: default_connect_timeout_secs(),
        }
    }
}

fn default_connect_timeout_secs() -> u64 {
    10
}

fn default_store_url() -> Secret {
    Secret::new("sqlite://./steward-data/steward.db")
}

/// The type of Steward's own queue.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Replicated, durable (RabbitMQ ≥ 3.8). The default.
    Quorum,
    /// A durable classic queue, for brokers without quorum queues.
    Classic,
}

/// `meter.amqp`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// Consume notifications from RabbitMQ. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Broker URL, `amqp://USER:PASSWORD@HOST:PORT/VHOST` (vhost `/` is `%2f`).
    #[serde(default = "default_amqp_url")]
    pub url: Secret,
    /// Steward's own queue. Never one of the producers' shared queues (`notifications.info`).
    #[serde(default = "default_queue")]
    pub queue: String,
    /// `quorum` (default) or `classic`. An existing queue is used as it is.
    #[serde(default = "default_queue_type")]
    pub queue_type: QueueType,
    /// Exchanges to bind to: each service's `control_exchange`.
    #[serde(default = "default_exchanges")]
    pub exchanges: Vec<String>,
    /// Durability for exchanges Steward has to create because they do not exist yet; must match
    /// the producers' `amqp_durable_queues`/`rabbit_quorum_queue` (oslo default: false).
    #[serde(default)]
    pub exchange_durable: bool,
    /// Routing keys bound on every exchange.
    #[serde(default = "default_routing_keys")]
    pub routing_keys: Vec<String>,
    /// Most unacknowledged deliveries the broker may send ahead (AMQP prefetch). Steward lowers
    /// it while messages are large, so that prefetch × message size stays within
    /// `max_inflight_bytes`.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// Memory budget for deliveries received but not yet acknowledged. AMQP prefetch counts
    /// messages, not bytes: Steward sizes it from the largest message seen recently and commits
    /// a batch early once it holds a quarter of this.
    #[serde(default = "default_max_inflight_bytes")]
    pub max_inflight_bytes: usize,
    /// Commit after this many deliveries…
    #[serde(default = "default_batch_max_messages")]
    pub batch_max_messages: usize,
    /// …or this long after the first delivery of a batch, whichever comes first.
    #[serde(default = "default_batch_max_wait_ms")]
    pub batch_max_wait_ms: u64,
    /// First reconnect delay; doubles per failure up to `reconnect_max_ms`.
    #[serde(default = "default_reconnect_initial_ms")]
    pub reconnect_initial_ms: u64,
    /// Longest reconnect delay.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// How long one connection attempt (TCP, TLS, login, vhost) may take before it counts as
    /// unreachable and is retried.
    #[serde(default = "default_amqp_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: default_amqp_url(),
            queue: default_queue(),
            queue_type: default_queue_type(),
            exchanges: default_exchanges(),
            exchange_durable: false,
            routing_keys: default_routing_keys(),
            prefetch: default_prefetch(),
            max_inflight_bytes: default_max_inflight_bytes(),
            batch_max_messages: default_batch_max_messages(),
            batch_max_wait_ms: default_batch_max_wait_ms(),
            reconnect_initial_ms: default_reconnect_initial_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            connect_timeout_secs: default_amqp_connect_timeout_secs(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_amqp_url() -> Secret {
    Secret::new("amqp://guest:guest@127.0.0.1:5672/%2f")
}
fn default_queue() -> String {
    "steward.notifications".to_owned()
}
fn default_queue_type() -> QueueType {
    QueueType::Quorum
}
fn default_exchanges() -> Vec<String> {
    [
        "nova",
        "cinder",
        "openstack",
        "glance",
        "neutron",
        "octavia",
    ]
    .map(String::from)
    .to_vec()
}
fn default_routing_keys() -> Vec<String> {
    [
        "notifications.info",
        "notifications.error",
        "versioned_notifications.info",
        "versioned_notifications.error",
    ]
    .map(String::from)
    .to_vec()
}
fn default_prefetch() -> u16 {
    2000
}
fn default_max_inflight_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_batch_max_messages() -> usize {
    500
}
fn default_batch_max_wait_ms() -> u64 {
    20
}
fn default_reconnect_initial_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_amqp_connect_timeout_secs() -> u64 {
    10
}

/// `meter.http`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Accept Ceilometer HTTP-publisher posts. `/metrics`, `/healthz` and `/readyz` are served
    /// on the same listener either way. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Listen address. Default `127.0.0.1:8788`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest accepted body; larger posts get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// When set, ingest requests must carry `Authorization: Bearer TOKEN`, or HTTP Basic auth
    /// with TOKEN as the password (Ceilometer can only send Basic: `http://steward:TOKEN@host/…`).
    #[serde(default, deserialize_with = "present_secret")]
    pub bearer_token: Option<Secret>,
    /// TCP listen backlog (Ceilometer loses data on refused connections: keep it large).
    #[serde(default = "default_listen_backlog")]
    pub listen_backlog: u32,
    /// How often the HTTP source records that it is alive; downtime longer than this becomes a
    /// gap at the next start.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// Longest time a client may take to send a request's head; slower clients are dropped.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Longest time a client may take to send a request's body; then `408` and nothing stored.
    #[serde(default = "default_body_read_timeout_secs")]
    pub body_read_timeout_secs: u64,
    /// After SIGTERM, how long requests in flight may take to finish before they are dropped
    /// unanswered (their senders retry; nothing unanswered was acknowledged).
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_listen(),
            max_body_bytes: default_max_body_bytes(),
            bearer_token: None,
            listen_backlog: default_listen_backlog(),
            heartbeat_secs: default_heartbeat_secs(),
            header_read_timeout_secs: default_header_read_timeout_secs(),
            body_read_timeout_secs: default_body_read_timeout_secs(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8788))
}
fn default_max_body_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_listen_backlog() -> u32 {
    4096
}
fn default_heartbeat_secs() -> u64 {
    5
}
fn default_header_read_timeout_secs() -> u64 {
    10
}
fn default_body_read_timeout_secs() -> u64 {
    60
}
fn default_shutdown_grace_secs() -> u64 {
    10
}

/// `meter.writer`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WriterSection {
    /// Most inputs committed in one transaction (group commit across batches and requests).
    #[serde(default = "default_max_records_per_commit")]
    pub max_records_per_commit: usize,
}

impl Default for WriterSection {
    fn default() -> Self {
        Self {
            max_records_per_commit: default_max_records_per_commit(),
        }
    }
}

fn default_max_records_per_commit() -> usize {
    4000
}

impl MeterConfig {
    /// Problems that the types alone cannot rule out, as `(field path, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut bad = |field: &str, message: &str| {
            problems.push((format!("meter.{field}"), message.to_owned()));
        };
        let url = self.store.url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            bad("store.url", "must start with sqlite:// or postgres://");
        }
        let r = &self.reconcile;
        for name in &r.resources {
            let known = crate::facts::ResourceType::parse(name)
                .is_some_and(|t| crate::ingest::reconcile::RECONCILED.contains(&t));
            if !known {
                bad(
                    "reconcile.resources",
                    &format!(
                        "{name:?} is not one of instance, volume, snapshot, floating_ip, router, \
                         load_balancer"
                    ),
                );
            }
        }
        if r.interval_secs < 60 {
            bad("reconcile.interval_secs", "must be at least 60");
        }
        if r.concurrency == 0 {
            bad("reconcile.concurrency", "must be at least 1");
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            if sink.name.trim().is_empty() {
                bad("sinks[].name", "must not be empty");
            } else if !names.insert(sink.name.as_str()) {
                bad("sinks[].name", &format!("{:?} is given twice", sink.name));
            }
            for (field, message) in sink.problems() {
                bad(&format!("sinks[{i}].{field}"), &message);
            }
        }
        if self.close.check_interval_secs < 60 {
            bad("close.check_interval_secs", "must be at least 60");
        }
        if self.close.grace_secs > 31 * 86_400 {
            bad(
                "close.grace_secs",
                "must be at most 31 days (2678400): a month could not close before the next one ended",
            );
        }
        let a = &self.amqp;
        if !(a.url.expose().starts_with("amqp://") || a.url.expose().starts_with("amqps://")) {
            bad("amqp.url", "must start with amqp:// or amqps://");
        }
        if a.queue.is_empty() {
            bad("amqp.queue", "must not be empty");
        }
        if a.queue.starts_with("notifications.") || a.queue.starts_with("versioned_notifications.")
        {
            bad(
                "amqp.queue",
                "must not be a producers' shared queue: declaring it with other arguments makes \
                 OpenStack services drop notifications",
            );
        }
        if a.exchanges.is_empty() {
            bad("amqp.exchanges", "must name at least one exchange");
        }
        if a.routing_keys.is_empty() {
            bad("amqp.routing_keys", "must name at least one routing key");
        }
        if a.batch_max_messages == 0 {
            bad("amqp.batch_max_messages", "must be at least 1");
        }
        if usize::from(a.prefetch) < a.batch_max_messages {
            bad("amqp.prefetch", "must be at least amqp.batch_max_messages");
        }
        if a.max_inflight_bytes < 1024 * 1024 {
            bad(
                "amqp.max_inflight_bytes",
                "must be at least 1048576 (1 MiB)",
            );
        }
        if a.reconnect_initial_ms == 0 || a.reconnect_max_ms < a.reconnect_initial_ms {
            bad(
                "amqp.reconnect_max_ms",
                "must be >= reconnect_initial_ms > 0",
            );
        }
        if a.connect_timeout_secs == 0 {
            bad("amqp.connect_timeout_secs", "must be at least 1");
        }
        if self.http.max_body_bytes == 0 {
            bad("http.max_body_bytes", "must be at least 1");
        }
        if let Some(problem) = self
            .http
            .bearer_token
            .as_ref()
            .and_then(|token| secret_problem(token.expose()))
        {
            bad("http.bearer_token", &problem);
        }
        for (field, url) in [("store.url", &self.store.url), ("amqp.url", &a.url)] {
            if let Some(problem) = url_password_problem(url.expose()) {
                bad(field, &problem);
            }
        }
        if self.writer.max_records_per_commit == 0 {
            bad("writer.max_records_per_commit", "must be at least 1");
        }
        if let Some(products) = &self.products {
            for (index, message) in crate::usage::catalogue::catalogue_problems(products) {
                match index {
                    Some(i) => bad(&format!("products[{i}]"), &message),
                    None => bad("products", &message),
                }
            }
        }
        problems
    }
}

/// A secret field that is present must hold a value: `bearer_token:` with nothing after it
/// would otherwise read as "no token" and turn authentication off.
fn present_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(value) => Ok(Some(Secret::new(value))),
        None => Err(serde::de::Error::custom(
            "is empty: set a token, or remove the field to run without authentication",
        )),
    }
}

/// Why a secret is unusable: empty, blank, or padded with whitespace (an env file's newline).
fn secret_problem(secret: &str) -> Option<String> {
    if secret.trim().is_empty() {
        Some(
            "is empty: an empty token would let anyone in; set a token, or remove the field \
             to run without authentication"
                .to_owned(),
        )
    } else if secret.trim() != secret {
        Some("starts or ends with whitespace (a stray newline from an env file?)".to_owned())
    } else {
        None
    }
}

/// A URL whose password is given but empty or blank (`user:@host`, `?password=`).
fn url_password_problem(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
        && password.trim().is_empty()
    {
        return Some("the password in the URL is empty".to_owned());
    }
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    for pair in query.split('&') {
        if let Some((key, value)) = pair.split_once('=')
            && key.eq_ignore_ascii_case("password")
            && value.trim().is_empty()
        {
            return Some("the password in the URL is empty".to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let config = MeterConfig::default();
        let debug = format!("{config:?}");
        assert!(!debug.contains("guest:guest"), "{debug}");
        assert!(debug.contains("***"));
    }

    #[test]
    fn defaults_have_no_problems() {
        assert_eq!(
            MeterConfig::default().problems(),
            Vec::<(String, String)>::new()
        );
    }

    #[test]
    fn shared_producer_queue_is_refused() {
        let mut config = MeterConfig::default();
        config.amqp.queue = "notifications.info".to_owned();
        let problems = config.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "meter.amqp.queue");
    }
}

#[cfg(test)]
mod sink_config_tests {
    use super::{SinkConfig, SinkKind};

    #[test]
    fn a_file_sink_parses_and_unknown_keys_are_refused() {
        let sink: SinkConfig = serde_json::from_value(serde_json::json!(
            {"name": "files", "type": "file", "dir": "/srv/reports"}))
        .unwrap();
        assert_eq!(sink.name, "files");
        assert_eq!(
            sink.kind,
            SinkKind::File {
                dir: "/srv/reports".into()
            }
        );
        let unknown = serde_json::from_value::<SinkConfig>(serde_json::json!(
            {"name": "files", "type": "file", "dir": "/srv", "dri": "typo"}));
        assert!(unknown.is_err(), "{unknown:?}");
        let kind = serde_json::from_value::<SinkConfig>(serde_json::json!(
            {"name": "x", "type": "ftp"}));
        assert!(kind.unwrap_err().to_string().contains("ftp"));
    }

    #[test]
    fn a_webhook_needs_an_http_url_and_a_base64_secret_and_names_the_sink() {
        let config: super::MeterConfig = serde_json::from_value(serde_json::json!({"sinks": [
            {"name": "good", "type": "webhook", "url": "https://h/x",
             "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
            {"name": "bad", "type": "webhook", "url": "ftp://h/x", "secret": "not base64!",
             "timeout_secs": 0},
        ]}))
        .unwrap();
        let fields: Vec<String> = config.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "meter.sinks[1].url",
                "meter.sinks[1].secret",
                "meter.sinks[1].timeout_secs"
            ]
        );
        assert!(config.sinks[0].build().is_ok());
        assert!(format!("{:?}", config.sinks[0]).contains("***"));
        assert!(!format!("{:?}", config.sinks[0]).contains("MfKQ9r8"));
        let missing = serde_json::from_value::<SinkConfig>(serde_json::json!(
            {"name": "x", "type": "webhook", "url": "https://h/x"}));
        assert!(missing.unwrap_err().to_string().contains("secret"));
    }

    #[test]
    fn an_odoo_sink_needs_a_bare_url_a_key_and_sane_prices() {
        let config: super::MeterConfig = serde_json::from_value(serde_json::json!({"sinks": [
            {"name": "erp", "type": "odoo", "url": "https://erp.example.net",
             "database": "prod", "login": "billing-bot", "api_key": "k3y",
             "document": "sale-order", "protocol": "xmlrpc", "tax_ids": [1],
             "prices": {"instance:SCS-2V-4": 0.021}},
            {"name": "bad", "type": "odoo", "url": "https://erp.example.net/odoo",
             "database": "", "login": "bot", "api_key": " k3y\n",
             "prices": {"x": -1.0}, "timeout_secs": 0},
        ]}))
        .unwrap();
        let fields: Vec<String> = config.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "meter.sinks[1].url",
                "meter.sinks[1].database",
                "meter.sinks[1].api_key",
                "meter.sinks[1].prices",
                "meter.sinks[1].timeout_secs"
            ]
        );
        assert!(config.sinks[0].build().is_ok());
        assert!(!format!("{:?}", config.sinks[0]).contains("k3y"));
        let typo = serde_json::from_value::<SinkConfig>(serde_json::json!(
            {"name": "x", "type": "odoo", "url": "https://h", "database": "d", "login": "l",
             "api_key": "k", "protocol": "json2"}));
        assert!(typo.unwrap_err().to_string().contains("json-2"));
        let json2 = serde_json::from_value::<SinkConfig>(serde_json::json!(
            {"name": "x", "type": "odoo", "url": "https://h", "database": "d", "login": "l",
             "api_key": "k", "protocol": "json-2"}));
        assert!(json2.is_ok(), "{json2:?}");
    }

    #[test]
    fn a_ceilometer_sink_is_a_forwarder_not_a_document_sink() {
        let config: super::MeterConfig = serde_json::from_value(serde_json::json!({"sinks": [
            {"name": "legacy", "type": "ceilometer", "url": "http://u:p@consumer:8088/post_json"},
            {"name": "bad", "type": "ceilometer", "url": "udp://x", "batch_max_events": 0},
        ]}))
        .unwrap();
        let fields: Vec<String> = config.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            ["meter.sinks[1].url", "meter.sinks[1].batch_max_events"]
        );
        let legacy = &config.sinks[0];
        assert!(!legacy.delivers_documents());
        assert!(
            legacy
                .build()
                .unwrap_err()
                .contains("steward meter forward")
        );
        assert!(legacy.forwarder().unwrap().is_ok());
        assert!(!format!("{legacy:?}").contains("u:p@"));
    }
}
