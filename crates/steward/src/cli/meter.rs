//! `steward meter …`: the ingest service and its operator views.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use steward_meter::metrics as m;
use steward_meter::store::{self, Store};
use tokio::sync::watch;

use crate::output::{self, Format};
use steward::config::{Config, LogFormat};

#[derive(Debug, Subcommand)]
pub(crate) enum MeterCommand {
    /// Run the ingest service: consume notifications from RabbitMQ and accept Ceilometer
    /// HTTP-publisher posts; store each one durably and exactly once, then acknowledge it.
    ///
    /// Stops gracefully on SIGTERM or Ctrl-C: the batch in hand is committed and acknowledged.
    Serve,
    /// Show what the store holds: records, duplicates, quarantine, facts, gaps.
    Status(OutputArgs),
    /// Inspect inputs that could not be decoded (kept with the reason, never dropped).
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// List recorded gaps: windows in which a source could not receive.
    Gaps(GapArgs),
    /// Create the store, or upgrade its schema to this release. `serve` does this at start;
    /// every other command only reads, and refuses a store that is missing or newer.
    Migrate,
    /// Backfill from the OpenStack APIs what the notifications lost, and print what was
    /// written.
    ///
    /// Lists servers (live, and deleted since the last run), volumes, snapshots, floating IPs,
    /// routers and load balancers with admin credentials, compares them with the stored
    /// timelines, and writes the facts that are missing: exact where the API dates them
    /// (origin "reconciled": nova's launched_at/terminated_at, instance actions, created_at),
    /// estimated between two bounds where it does not (origin "estimated": a volume that
    /// vanished between two listings, dated at the earliest possible time). Idempotent: a
    /// second run writes nothing. `meter serve` runs the same every meter.reconcile.interval_secs
    /// when meter.reconcile.cloud is set.
    ///
    /// Exit status: 0 done, 1 a listing failed (the rest was reconciled; nothing is inferred
    /// from a failed listing), 2 could not run.
    Reconcile(ReconcileArgs),
    /// Usage per project and product over a period, from the stored facts.
    ///
    /// Deterministic: the same facts and catalogue give byte-identical output. Quantities are
    /// exact decimals (6 places, half to even); windows whose usage cannot be stated are listed
    /// as unknown, never billed as zero. A closed month shows its closed report, with its
    /// completeness statement (`--live` recomputes it from the current facts instead). Also
    /// served as GET /v1/reports by `meter serve`.
    Report(ReportArgs),
    /// Close a billing month: its report over the whole month, with a completeness statement,
    /// stored once and never changed.
    ///
    /// A month can close once meter.close.grace_secs (default one day) have passed after its
    /// end and a reconciliation without problems has started after that; when a cloud is
    /// configured (meter.reconcile.cloud or --os-cloud) and none has, one runs first. The
    /// statement lists the sources and their watermarks, every gap overlapping the month and
    /// how it was resolved (reconciled, estimated with bounds, unresolved), and the facts per
    /// origin. Closing a closed month changes nothing and prints what it closed as. Facts that
    /// arrive later become corrections (`steward meter corrections`). `meter serve` closes
    /// months itself (meter.close.auto).
    ///
    /// Exit status: 0 closed (now or before), 1 cannot close yet (grace not over, or no
    /// reconciliation after it), 2 could not run.
    Close(CloseArgs),
    /// Show what facts arriving after a month closed changed: corrections, each naming the
    /// closed report's digest and carrying only the delta.
    ///
    /// With --update, closed months are first compared with the current facts and a
    /// correction is stored where their usage changed (`meter serve` does this every
    /// meter.close.check_interval_secs).
    Corrections(CorrectionsArgs),
    /// Deliver a closed month to the sinks of meter.sinks: per sink, each project's slice of
    /// the closed report and each correction, exactly once.
    ///
    /// The month's rows are planned in the outbox (once: pushing again plans nothing new), then
    /// every row not yet delivered is attempted now. A sink keys what it writes by the
    /// document's digest, so a push interrupted between delivering and recording finds its own
    /// record the next time. --dry-run prints, per sink and project, what would happen (create,
    /// correction, retry, no-op, failed-permanent) and why, and changes nothing.
    ///
    /// Exit status: 0 everything delivered, 1 something failed (retried by the next push), 2
    /// could not run.
    Push(PushArgs),
    /// Forward every stored event in Ceilometer's HTTP-publisher format to the sinks of type
    /// ceilometer, from each one's durable cursor until it has caught up.
    ///
    /// At least once and in the store's order: a sink's cursor moves only after the consumer
    /// answered 2xx, so an interrupted run sends the unconfirmed events again (consumers
    /// de-duplicate on message_id). `meter serve` forwards continuously; run this where no
    /// serve does (on SQLite it refuses to run beside one).
    ///
    /// Exit status: 0 caught up, 1 a consumer failed (its events wait at the cursor), 2 could
    /// not run.
    Forward(ForwardArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ForwardArgs {
    /// Only this sink (a name from meter.sinks of type ceilometer; default: all of them).
    #[arg(long, value_name = "NAME")]
    sink: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// The closed month, e.g. 2026-11.
    #[arg(long, value_name = "YYYY-MM")]
    period: String,
    /// Only this sink (a name from meter.sinks; default: all).
    #[arg(long, value_name = "NAME")]
    sink: Option<String>,
    /// Print what would be delivered and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct CloseArgs {
    /// The month to close, e.g. 2026-11 (UTC).
    #[arg(long, value_name = "YYYY-MM")]
    period: String,
    /// The cloud to reconcile with first (default: meter.reconcile.cloud).
    #[arg(long, env = "OS_CLOUD", value_name = "NAME")]
    os_cloud: Option<String>,
    /// Close without a reconciliation after the grace: the statement then says the gaps are
    /// unresolved (for a cloud without a reconciler).
    #[arg(long)]
    without_reconcile: bool,
    /// Output format (json: the closed report).
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct CorrectionsArgs {
    /// Only this month (default: every closed month).
    #[arg(long, value_name = "YYYY-MM")]
    period: Option<String>,
    /// Compare closed months with the current facts first, and store a correction where
    /// usage changed.
    #[arg(long)]
    update: bool,
    /// Output format (json: the correction documents).
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: Format,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("when").required(true).args(["period", "from"])))]
pub(crate) struct ReportArgs {
    /// A calendar month in UTC, e.g. 2026-10.
    #[arg(long, value_name = "YYYY-MM")]
    period: Option<String>,
    /// Start of an explicit period (RFC 3339), with --to.
    #[arg(long, requires = "to", value_name = "TIME")]
    from: Option<String>,
    /// End of an explicit period (RFC 3339, exclusive).
    #[arg(long, requires = "from", value_name = "TIME")]
    to: Option<String>,
    /// The instant the report describes (RFC 3339; default: now). Usage is billed up to it;
    /// facts that arrived later but describe earlier times are included (that is what late
    /// means), so an `--as-of` in a closed month needs --live.
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
    /// Compute the report from the current facts even when the month is closed (the closed
    /// report is the default for a closed month).
    #[arg(long)]
    live: bool,
    /// Only this project.
    #[arg(long, value_name = "ID")]
    project: Option<String>,
    /// Include every resource with its intervals (in every format).
    #[arg(long)]
    detail: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Table)]
    output: ReportFormat,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    /// Aligned columns with totals, for a person.
    Table,
    /// The canonical JSON report (schema v2).
    Json,
    /// One row per project and product (with --detail: per resource and product), each
    /// with the period columns.
    Csv,
}

#[derive(Debug, Args)]
pub(crate) struct ReconcileArgs {
    /// The cloud in clouds.yaml (admin credentials); default: meter.reconcile.cloud.
    #[arg(long, env = "OS_CLOUD", value_name = "NAME")]
    os_cloud: Option<String>,
    /// Run once and exit (the default is to run every meter.reconcile.interval_secs until
    /// interrupted).
    #[arg(long)]
    once: bool,
    /// Print what would be written and write nothing (implies --once).
    #[arg(long)]
    dry_run: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct GapArgs {
    /// Most gaps to show, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QuarantineCommand {
    /// List quarantine entries, newest first.
    List {
        /// Most entries to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show one entry with its reason and the body as received.
    Show {
        /// The entry id (from `list`).
        id: i64,
        #[command(flatten)]
        out: OutputArgs,
    },
}

impl MeterCommand {
    pub(crate) async fn run(self, config: Config) -> anyhow::Result<ExitCode> {
        match self {
            Self::Serve => serve(config).await,
            Self::Migrate => migrate(&config).await,
            Self::Status(args) => status(&open(&config).await?, &config, args.output).await,
            Self::Gaps(args) => gaps(&open(&config).await?, args.limit, args.out.output).await,
            Self::Report(args) => report(&config, args).await,
            Self::Reconcile(args) => reconcile(&config, args).await,
            Self::Close(args) => close(&config, args).await,
            Self::Corrections(args) => corrections(&config, args).await,
            Self::Push(args) => push(&config, args).await,
            Self::Forward(args) => forward(&config, args).await,
            Self::Quarantine(QuarantineCommand::List { limit, out }) => {
                quarantine_list(&open(&config).await?, limit, out.output).await
            }
            Self::Quarantine(QuarantineCommand::Show { id, out }) => {
                quarantine_show(&open(&config).await?, id, out.output).await
            }
        }
    }
}

/// Opens the store for reading: never creates or migrates it.
async fn open(config: &Config) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    let url = config.meter.store.url.expose();
    let timeout = std::time::Duration::from_secs(config.meter.store.connect_timeout_secs.max(1));
    store::open_read_only(url, timeout)
        .await
        .with_context(|| format!("opening store {}", store::redact_url(url)))
}

async fn migrate(config: &Config) -> anyhow::Result<ExitCode> {
    let url = config.meter.store.url.expose();
    let timeout = std::time::Duration::from_secs(config.meter.store.connect_timeout_secs.max(1));
    store::open_with_timeout(url, timeout)
        .await
        .with_context(|| format!("migrating store {}", store::redact_url(url)))?;
    println!("{}: schema up to date", store::redact_url(url));
    Ok(ExitCode::SUCCESS)
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), m::LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(m::BATCH_SIZE.to_owned()), m::SIZE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(m::COMMIT_INPUTS.to_owned()), m::SIZE_BUCKETS)?
        .install_recorder()
        .context("installing the metrics recorder")
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    init_logging(&config);
    let handle = install_metrics()?;
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: committing and acknowledging what is in hand");
        let _ = stop.send(true);
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now; unacknowledged inputs will be redelivered");
        std::process::exit(130);
    });
    steward_meter::serve::serve(config.meter, Some(handle), shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Opens the store to write to it (created and migrated), holding the SQLite writer lock;
/// `read_only` opens it for reading only.
async fn open_for_writing(
    config: &Config,
    read_only: bool,
) -> anyhow::Result<(std::sync::Arc<dyn Store>, Option<store::WriterLock>)> {
    let url = config.meter.store.url.expose();
    let timeout = std::time::Duration::from_secs(config.meter.store.connect_timeout_secs.max(1));
    // Writing needs the store created and migrated, and (SQLite) no `serve` writing to it.
    let lock = if !read_only && url.starts_with("sqlite:") {
        Some(store::lock_writer(url).with_context(|| {
            "the store is in use (is `steward meter serve` running on it? it reconciles and \
             closes periods itself)"
        })?)
    } else {
        None
    };
    let store = if read_only {
        store::open_read_only(url, timeout).await
    } else {
        store::open_with_timeout(url, timeout).await
    }
    .with_context(|| format!("opening store {}", store::redact_url(url)))?;
    Ok((store, lock))
}

async fn connect_cloud(config: &Config, name: &str) -> anyhow::Result<steward_cloud::Cloud> {
    steward_cloud::Cloud::connect(name, config.meter.reconcile.clouds_file.as_deref())
        .await
        .with_context(|| format!("connecting to cloud {name}"))
}

async fn reconcile(config: &Config, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    init_logging(config);
    let settings = &config.meter.reconcile;
    let Some(cloud_name) = args.os_cloud.clone().or_else(|| settings.cloud.clone()) else {
        anyhow::bail!(
            "no cloud to reconcile with: give --os-cloud NAME (or OS_CLOUD), or set \
             meter.reconcile.cloud in the configuration"
        );
    };
    let (store, _lock) = open_for_writing(config, args.dry_run).await?;
    let cloud = connect_cloud(config, &cloud_name).await?;
    let options = settings.options(args.dry_run);
    let every = std::time::Duration::from_secs(settings.interval_secs.max(60));
    loop {
        let outcome = steward_meter::ingest::reconcile::reconcile(store.as_ref(), &cloud, &options)
            .await
            .context("reconciling")?;
        print_reconcile(&outcome, args.dry_run, args.output)?;
        if args.once || args.dry_run {
            return Ok(if outcome.run.problems.is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = wait_for_signal() => return Ok(ExitCode::SUCCESS),
        }
    }
}

async fn close(config: &Config, args: CloseArgs) -> anyhow::Result<ExitCode> {
    use steward_meter::close::{CloseError, CloseOptions, CloseOutcome, close_period};
    init_logging(config);
    let period = steward_meter::usage::period::Period::month(&args.period)?;
    let (store, _lock) = open_for_writing(config, false).await?;
    let catalogue = config.meter.catalogue();
    let options = CloseOptions {
        now: steward_meter::time::Instant::now(),
        grace_secs: config.meter.close.grace_secs,
        without_reconcile: args.without_reconcile || config.meter.close.without_reconcile,
    };
    let mut outcome = close_period(store.as_ref(), &period, &catalogue, &options).await;
    if let Err(CloseError::AwaitingReconcile { .. }) = &outcome {
        let cloud_name = args
            .os_cloud
            .clone()
            .or_else(|| config.meter.reconcile.cloud.clone());
        if let Some(cloud_name) = cloud_name {
            eprintln!("reconciling with cloud {cloud_name} before the close …");
            let cloud = connect_cloud(config, &cloud_name).await?;
            let run = steward_meter::ingest::reconcile::reconcile(
                store.as_ref(),
                &cloud,
                &config.meter.reconcile.options(false),
            )
            .await
            .context("reconciling before the close")?;
            print_reconcile(&run, false, Format::Table)?;
            let options = CloseOptions {
                now: steward_meter::time::Instant::now(),
                ..options
            };
            outcome = close_period(store.as_ref(), &period, &catalogue, &options).await;
        }
    }
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e @ (CloseError::TooEarly { .. } | CloseError::AwaitingReconcile { .. })) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e).context(format!("closing {}", args.period)),
    };
    let report = outcome.report();
    if args.output == Format::Json {
        output::print(&report.json())?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = match &outcome {
        CloseOutcome::Closed(_) => "closed",
        CloseOutcome::AlreadyClosed(_) => "was already closed; nothing changed",
    };
    let mut text = format!("{} {verb}: {}\n", args.period, report.content_digest);
    text.push_str(&completeness_text(report));
    output::print(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The completeness statement of a closed report, for a person.
fn completeness_text(report: &steward_meter::report::Report) -> String {
    let Some(c) = &report.completeness else {
        return String::new();
    };
    let mut text = format!("closed at {}: {}\n", c.closed_at, c.summary);
    if !c.gaps.is_empty() {
        let mut rows = vec![
            [
                "SOURCE",
                "FROM",
                "TO",
                "RESOLUTION",
                "RECONCILED AT",
                "ESTIMATES",
                "CAUSE",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for g in &c.gaps {
            rows.push(vec![
                g.source.clone(),
                g.start.to_rfc3339(),
                time_or_dash(g.end),
                serde_json::to_value(g.resolution)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                time_or_dash(g.resolved_by_reconcile_at),
                g.estimates.len().to_string(),
                g.cause.clone(),
            ]);
        }
        text.push_str(&output::table(&rows));
    }
    for e in &c.estimates {
        text.push_str(&format!(
            "estimated: {} {} {} between {} and {}\n",
            e.resource_type.as_str(),
            e.resource_id,
            e.kind,
            e.not_before,
            e.not_after
        ));
    }
    text
}

async fn push(config: &Config, args: PushArgs) -> anyhow::Result<ExitCode> {
    use steward_meter::sinks::outbox::{
        CONFIRMED, RetryPolicy, deliver, describe_plan, plan_period, rows_for_period,
    };
    let period = steward_meter::usage::period::Period::month(&args.period)?;
    let configured = &config.meter.sinks;
    if configured.is_empty() {
        anyhow::bail!(
            "no sinks configured: add meter.sinks (e.g. `- name: files`, `type: file`, \
             `dir: /var/lib/steward/reports`; see docs/configuration.md)"
        );
    }
    let sinks: Vec<&steward_meter::config::SinkConfig> = match &args.sink {
        Some(name) => match configured.iter().find(|s| &s.name == name) {
            Some(s) if !s.delivers_documents() => anyhow::bail!(
                "sink {name:?} forwards events continuously (type ceilometer), it has no \
                 documents to push: `serve` runs it, or `steward meter forward --sink {name}`"
            ),
            Some(s) => vec![s],
            None => anyhow::bail!(
                "no sink {name:?} in meter.sinks (configured: {})",
                configured
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        None => configured
            .iter()
            .filter(|s| s.delivers_documents())
            .collect(),
    };
    if sinks.is_empty() {
        anyhow::bail!(
            "meter.sinks has only event forwarders (type ceilometer), no sink for documents: \
             add a file or webhook sink (docs/sinks.md)"
        );
    }
    let names: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
    if !args.dry_run {
        init_logging(config);
    }
    let (store, _lock) = open_for_writing(config, args.dry_run).await?;
    if store
        .closed_period(period.start, period.end)
        .await
        .context("reading the closed period")?
        .is_none()
    {
        anyhow::bail!(
            "{0} is not closed: `steward meter close --period {0}` first (only closed months are \
             delivered)",
            args.period
        );
    }
    let now = steward_meter::time::Instant::now();
    if args.dry_run {
        let existing = store
            .deliveries(None, period.start, period.end)
            .await
            .context("reading the outbox")?;
        let wanted = rows_for_period(store.as_ref(), &period, &names, now)
            .await
            .context("planning")?;
        let mut lines = describe_plan(&wanted, &existing);
        // What each sink would do with what is not delivered yet, asked of the sink itself.
        for sink_config in &sinks {
            let Ok(sink) = sink_config.build() else {
                continue;
            };
            for (line, row) in lines.iter_mut().zip(&wanted) {
                let done = existing.iter().any(|e| {
                    e.sink == row.sink
                        && e.project_id == row.project_id
                        && e.digest == row.digest
                        && e.state != steward_meter::sinks::outbox::PLANNED
                });
                if row.sink != sink_config.name || done {
                    continue;
                }
                let Ok(document) =
                    steward_meter::sinks::outbox::document(store.as_ref(), row).await
                else {
                    continue;
                };
                if let Some(said) = sink.preview(&document).await {
                    line.push_str(&format!(" → {said}"));
                }
            }
        }
        if args.output == Format::Json {
            output::json(&lines)?;
        } else {
            let mut text = lines.join("\n");
            text.push('\n');
            output::print(&text)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let planned = plan_period(store.as_ref(), &period, &names, now)
        .await
        .context("planning the deliveries")?;
    let rows = store
        .deliveries(None, period.start, period.end)
        .await
        .context("reading the outbox")?;
    let mut failed = 0;
    let mut text = format!(
        "{} {}: {planned} new row(s) planned\n",
        args.period,
        names.join(", ")
    );
    let mut outcomes = Vec::new();
    for sink_config in &sinks {
        let sink = sink_config
            .build()
            .map_err(|e| anyhow::anyhow!("meter.sinks[{}]: {e}", sink_config.name))?;
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| r.sink == sink_config.name)
            .cloned()
            .collect();
        for (row, update) in deliver(
            store.as_ref(),
            sink.as_ref(),
            mine,
            now,
            &RetryPolicy::default(),
        )
        .await
        .context("delivering")?
        {
            let project = row.project_id.as_deref().unwrap_or("(no project)");
            if update.state != CONFIRMED {
                failed += 1;
            }
            text.push_str(&format!(
                "{} {project} {}: {}{}\n",
                row.sink,
                row.kind,
                update.state,
                match (&update.remote_id, &update.last_error) {
                    (Some(id), _) => format!(" ({id})"),
                    (None, Some(e)) => format!(" ({e})"),
                    (None, None) => String::new(),
                }
            ));
            outcomes.push(serde_json::json!({
                "sink": row.sink, "project_id": row.project_id, "kind": row.kind,
                "digest": row.digest, "state": update.state, "attempts": update.attempts,
                "remote_id": update.remote_id, "last_error": update.last_error,
            }));
        }
    }
    if args.output == Format::Json {
        output::json(&serde_json::json!({"planned": planned, "deliveries": outcomes}))?;
    } else {
        output::print(&text)?;
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn forward(config: &Config, args: ForwardArgs) -> anyhow::Result<ExitCode> {
    let forwarders: Vec<_> = config
        .meter
        .sinks
        .iter()
        .filter(|s| args.sink.as_ref().is_none_or(|name| &s.name == name))
        .filter_map(|s| s.forwarder().map(|f| (s.name.clone(), f)))
        .collect();
    if forwarders.is_empty() {
        anyhow::bail!(match &args.sink {
            Some(name) => format!(
                "no sink {name:?} of type ceilometer in meter.sinks (docs/sinks.md#ceilometer)"
            ),
            None => "no sink of type ceilometer in meter.sinks: add one (`- name: legacy`, \
                     `type: ceilometer`, `url: http://consumer:8088/post_json`; docs/sinks.md)"
                .to_owned(),
        });
    }
    init_logging(config);
    let (store, _lock) = open_for_writing(config, false).await?;
    let mut failed = 0;
    let mut text = String::new();
    let mut json = Vec::new();
    for (name, forwarder) in forwarders {
        let forwarder = forwarder.map_err(|e| anyhow::anyhow!("meter.sinks[{name}]: {e}"))?;
        let mut total = steward_meter::sinks::ceilometer::Pass::default();
        let error = loop {
            match forwarder.forward_once(store.as_ref(), 100).await {
                Ok(pass) => {
                    total.events += pass.events;
                    total.requests += pass.requests;
                    total.unconvertible += pass.unconvertible;
                    total.position = pass.position;
                    if pass.requests < 100 {
                        break None;
                    }
                    tracing::info!(sink = %name, forwarded = total.events, "forwarding");
                }
                Err((pass, error)) => {
                    total.events += pass.events;
                    total.requests += pass.requests;
                    total.unconvertible += pass.unconvertible;
                    total.position = pass.position;
                    break Some(error);
                }
            }
        };
        let behind = store
            .events_behind(total.position)
            .await
            .context("counting the events behind")?;
        text.push_str(&format!(
            "{name}: forwarded {} event(s) in {} request(s); cursor at record {}; {behind} behind",
            total.events, total.requests, total.position.record_id
        ));
        if total.unconvertible > 0 {
            text.push_str(&format!(
                "; {} stored event(s) could not be converted (see the log)",
                total.unconvertible
            ));
        }
        if let Some(error) = &error {
            failed += 1;
            text.push_str(&format!("; stopped: {error}"));
        }
        text.push('\n');
        json.push(serde_json::json!({
            "sink": name, "events": total.events, "requests": total.requests,
            "unconvertible": total.unconvertible, "position": total.position,
            "behind": behind, "error": error.map(|e| e.to_string()),
        }));
    }
    if args.output == Format::Json {
        output::json(&json)?;
    } else {
        output::print(&text)?;
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn corrections(config: &Config, args: CorrectionsArgs) -> anyhow::Result<ExitCode> {
    use steward_meter::close::correction::{CheckOutcome, check_period, stored_correction};
    let (store, _lock) = if args.update {
        init_logging(config);
        open_for_writing(config, false).await?
    } else {
        (open(config).await?, None)
    };
    let wanted = args
        .period
        .as_deref()
        .map(steward_meter::usage::period::Period::month)
        .transpose()?;
    let mut periods = store
        .closed_periods()
        .await
        .context("reading closed periods")?;
    if let Some(p) = &wanted {
        periods.retain(|c| c.start == p.start && c.end == p.end);
        if periods.is_empty() {
            anyhow::bail!(
                "{} is not closed (see `steward meter status`; `steward meter close --period {0}` closes it)",
                args.period.as_deref().unwrap_or_default()
            );
        }
    }
    let mut all = Vec::new();
    let mut text = String::new();
    for summary in periods.iter().rev() {
        let label = steward_meter::close::period_label(&steward_meter::usage::period::Period {
            start: summary.start,
            end: summary.end,
        });
        let Some(closed) = store
            .closed_period(summary.start, summary.end)
            .await
            .context("reading a closed period")?
        else {
            continue;
        };
        if args.update {
            let found = check_period(store.as_ref(), &closed, steward_meter::time::Instant::now())
                .await
                .with_context(|| format!("checking {label} for late facts"))?;
            let said = match found {
                CheckOutcome::NothingNew => "no late facts".to_owned(),
                CheckOutcome::Unchanged => "late facts, usage unchanged".to_owned(),
                CheckOutcome::Corrected(c) => format!("correction {} stored", c.sequence),
                CheckOutcome::CorrectedElsewhere => "corrected by another writer".to_owned(),
            };
            text.push_str(&format!("{label}: {said}\n"));
        }
        let stored = store
            .corrections(closed.id)
            .await
            .context("reading corrections")?;
        text.push_str(&format!(
            "{label}: closed at {} as {}; {} correction(s)\n",
            closed.closed_at,
            closed.digest,
            stored.len()
        ));
        for s in &stored {
            let c = stored_correction(s)
                .with_context(|| format!("reading correction {} of {label}", s.sequence))?;
            text.push_str(&format!(
                "  #{} at {} {} (previous {})\n",
                c.sequence,
                c.as_of,
                c.content_digest,
                c.previous.as_deref().unwrap_or(&c.corrects)
            ));
            for p in &c.projects {
                let project = p.project_id.as_deref().unwrap_or("(no project)");
                for l in &p.lines {
                    text.push_str(&format!(
                        "    {project} {} {} {}\n",
                        l.product, l.quantity, l.unit
                    ));
                }
                for u in &p.unknown_added {
                    text.push_str(&format!(
                        "    {project} now unknown: {} {} {}..{} ({})\n",
                        u.resource_type.as_str(),
                        u.resource_id,
                        u.start,
                        u.end,
                        u.reason
                    ));
                }
                for u in &p.unknown_removed {
                    text.push_str(&format!(
                        "    {project} now known: {} {} {}..{}\n",
                        u.resource_type.as_str(),
                        u.resource_id,
                        u.start,
                        u.end
                    ));
                }
            }
            all.push(c);
        }
    }
    if args.output == Format::Json {
        output::json(&all)?;
    } else {
        if periods.is_empty() {
            text.push_str("no period is closed yet\n");
        }
        output::print(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_reconcile(
    outcome: &steward_meter::ingest::reconcile::Outcome,
    dry_run: bool,
    format: Format,
) -> anyhow::Result<()> {
    let run = &outcome.run;
    if format == Format::Json {
        let changes: Vec<serde_json::Value> = outcome
            .changes
            .iter()
            .map(|p| {
                let f = &p.fact;
                serde_json::json!({
                    "resource_type": f.resource_type.as_str(),
                    "resource_id": f.resource_id,
                    "project_id": f.project_id,
                    "kind": f.kind.as_str(),
                    "effective_at": f.effective_at,
                    "origin": f.origin.as_str(),
                    "attributes": f.attributes,
                    "why": p.why,
                })
            })
            .collect();
        let looked_at: Vec<serde_json::Value> = outcome
            .looked_at
            .iter()
            .map(|(id, why)| serde_json::json!({"server_id": id, "why": why}))
            .collect();
        return output::json(&serde_json::json!({
            "dry_run": dry_run,
            "run": run,
            "changes": changes,
            "servers_read": looked_at,
        }));
    }
    let mut text = String::new();
    for line in steward_meter::ingest::reconcile::describe(&outcome.changes) {
        text.push_str(&line);
        text.push('\n');
    }
    let verb = if dry_run { "would write" } else { "wrote" };
    text.push_str(&format!(
        "{} resources listed ({}); instance actions read for {} servers; {verb} {} facts ({} estimated)\n",
        run.resources_seen,
        if run.listed.is_empty() {
            "nothing".to_owned()
        } else {
            run.listed.join(", ")
        },
        outcome.looked_at.len(),
        run.facts_written,
        run.estimated,
    ));
    if let Some(problems) = &run.problems {
        text.push_str(&format!("problems: {problems}\n"));
    }
    output::print(&text)
}

fn time_or_dash(t: Option<steward_meter::time::Instant>) -> String {
    t.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".to_owned())
}

async fn status(
    store: &std::sync::Arc<dyn Store>,
    config: &Config,
    format: Format,
) -> anyhow::Result<ExitCode> {
    use steward_meter::close::task::{PeriodStanding, standings};
    let summary = store.status().await.context("reading status")?;
    let periods = standings(
        store.as_ref(),
        &config.meter.close,
        steward_meter::time::Instant::now(),
        4,
    )
    .await
    .context("reading period states")?;
    let recent_gaps = store.gaps(5).await.context("reading gaps")?;
    let runs = store
        .reconcile_runs(1000)
        .await
        .context("reading reconciler runs")?;
    let last_reconcile = runs.first().cloned();
    let outbox = store.outbox_summary().await.context("reading the outbox")?;
    let mut forwarders = Vec::new();
    for cursor in store
        .forward_cursors()
        .await
        .context("reading the forwarders' cursors")?
    {
        let behind = store
            .events_behind(cursor.position)
            .await
            .context("counting the events behind")?;
        forwarders.push((cursor, behind));
    }
    if format == Format::Json {
        let gaps: Vec<_> = recent_gaps.iter().map(|g| gap_json(g, &runs)).collect();
        output::json(&serde_json::json!({
            "summary": summary,
            "recent_gaps": gaps,
            "last_reconcile": last_reconcile,
            "outbox": outbox
                .iter()
                .map(|(sink, state, rows)| serde_json::json!({"sink": sink, "state": state, "rows": rows}))
                .collect::<Vec<_>>(),
            "forwarders": forwarders
                .iter()
                .map(|(cursor, behind)| serde_json::json!({
                    "sink": cursor.sink, "position": cursor.position,
                    "forwarded": cursor.forwarded, "updated_at": cursor.updated_at,
                    "behind": behind,
                }))
                .collect::<Vec<_>>(),
            "periods": periods
                .iter()
                .map(|(period, standing)| {
                    let mut v = serde_json::to_value(standing).unwrap_or_default();
                    v["period"] = serde_json::Value::String(period.clone());
                    v
                })
                .collect::<Vec<_>>(),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "SOURCE",
            "RECORDS",
            "DUPLICATES",
            "FACTS",
            "QUARANTINED",
            "LAST RECEIVED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in &summary.sources {
        rows.push(vec![
            s.source.clone(),
            s.records.to_string(),
            s.duplicates.to_string(),
            s.facts.to_string(),
            s.quarantined.to_string(),
            time_or_dash(s.last_received_at),
        ]);
    }
    let mut text = output::table(&rows);
    text.push_str(&format!(
        "\nrecords {}  facts {}  quarantined {}  gaps {} ({} open)\n",
        summary.records_total,
        summary.facts_total,
        summary.quarantined_total,
        summary.gaps_total,
        summary.gaps_open
    ));
    match &last_reconcile {
        Some(run) => text.push_str(&format!(
            "last reconcile: {} ({:.1} s) listed {} ({} resources), wrote {} facts ({} estimated){}\n",
            run.finished_at,
            (run.finished_at.micros() - run.started_at.micros()) as f64 / 1e6,
            if run.listed.is_empty() {
                "nothing".to_owned()
            } else {
                run.listed.join(", ")
            },
            run.resources_seen,
            run.facts_written,
            run.estimated,
            run.problems
                .as_deref()
                .map(|p| format!("; problems: {p}"))
                .unwrap_or_default()
        )),
        None => text.push_str("last reconcile: never\n"),
    }
    let mut sinks: Vec<&str> = outbox.iter().map(|(sink, _, _)| sink.as_str()).collect();
    sinks.dedup();
    for sink in sinks {
        let counts: Vec<String> = outbox
            .iter()
            .filter(|(s, _, _)| s == sink)
            .map(|(_, state, rows)| format!("{rows} {state}"))
            .collect();
        text.push_str(&format!("outbox {sink}: {}\n", counts.join(", ")));
    }
    for (cursor, behind) in &forwarders {
        text.push_str(&format!(
            "forwarder {}: {} event(s) forwarded, {behind} behind, last moved {}\n",
            cursor.sink,
            cursor.forwarded,
            cursor.updated_at.to_rfc3339()
        ));
    }
    for (period, standing) in &periods {
        let said = match standing {
            PeriodStanding::Open => "open".to_owned(),
            PeriodStanding::InGrace { closes_from } => format!("over; closes from {closes_from}"),
            PeriodStanding::AwaitingReconcile { closes_from } => format!(
                "awaiting a reconciliation that starts after {closes_from} before it can close"
            ),
            PeriodStanding::Closed {
                closed_at,
                digest,
                corrections,
            } => format!("closed at {closed_at} as {digest}; {corrections} correction(s)"),
        };
        text.push_str(&format!("period {period}: {said}\n"));
    }
    if !recent_gaps.is_empty() {
        text.push_str("\nrecent gaps (steward meter gaps lists all):\n");
        text.push_str(&gap_table(&recent_gaps, &runs));
    }
    output::print(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn gap_json(g: &steward_meter::record::Gap, runs: &[store::ReconcileRun]) -> serde_json::Value {
    serde_json::json!({
        "id": g.id,
        "source": g.source.as_str(),
        "start": g.started_at,
        "end": g.ended_at,
        "cause": g.cause,
        "resolved_by_reconcile_at": steward_meter::ingest::reconcile::gap_resolved_at(g, runs),
    })
}

fn gap_table(gaps: &[steward_meter::record::Gap], runs: &[store::ReconcileRun]) -> String {
    let mut rows = vec![
        [
            "ID",
            "SOURCE",
            "FROM",
            "TO",
            "SECONDS",
            "RECONCILED",
            "CAUSE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for g in gaps {
        let seconds = g
            .ended_at
            .map(|end| format!("{:.3}", (end.micros() - g.started_at.micros()) as f64 / 1e6))
            .unwrap_or_else(|| "open".to_owned());
        rows.push(vec![
            g.id.to_string(),
            g.source.as_str().to_owned(),
            g.started_at.to_rfc3339(),
            time_or_dash(g.ended_at),
            seconds,
            time_or_dash(steward_meter::ingest::reconcile::gap_resolved_at(g, runs)),
            g.cause.clone(),
        ]);
    }
    output::table(&rows)
}

async fn gaps(
    store: &std::sync::Arc<dyn Store>,
    limit: u32,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let gaps = store.gaps(limit).await.context("reading gaps")?;
    let runs = store
        .reconcile_runs(1000)
        .await
        .context("reading reconciler runs")?;
    match format {
        Format::Json => output::json(&gaps.iter().map(|g| gap_json(g, &runs)).collect::<Vec<_>>())?,
        Format::Table => output::print(&gap_table(&gaps, &runs))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn quarantine_json(q: &store::QuarantineEntry, with_body: bool) -> serde_json::Value {
    let mut value = serde_json::json!({
        "id": q.id,
        "source": q.source,
        "reason": q.reason,
        "exchange": q.exchange,
        "routing_key": q.routing_key,
        "received_at": q.received_at,
        "body_bytes": q.body.len(),
    });
    if with_body {
        value["body"] = serde_json::Value::String(String::from_utf8_lossy(&q.body).into_owned());
    }
    value
}

async fn quarantine_list(
    store: &std::sync::Arc<dyn Store>,
    limit: u32,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let entries = store
        .quarantine_list(limit)
        .await
        .context("reading quarantine")?;
    if format == Format::Json {
        output::json(
            &entries
                .iter()
                .map(|q| quarantine_json(q, false))
                .collect::<Vec<_>>(),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        ["ID", "SOURCE", "RECEIVED", "BYTES", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    for q in &entries {
        rows.push(vec![
            q.id.to_string(),
            q.source.clone(),
            q.received_at.to_rfc3339(),
            q.body.len().to_string(),
            q.reason.clone(),
        ]);
    }
    output::print(&output::table(&rows))?;
    Ok(ExitCode::SUCCESS)
}

async fn quarantine_show(
    store: &std::sync::Arc<dyn Store>,
    id: i64,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let Some(q) = store
        .quarantine_get(id)
        .await
        .context("reading quarantine")?
    else {
        anyhow::bail!("no quarantine entry {id} (see `steward meter quarantine list`)");
    };
    if format == Format::Json {
        output::json(&quarantine_json(&q, true))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!(
        "id:          {}\nsource:      {}\nreceived:    {}\nreason:      {}\n",
        q.id, q.source, q.received_at, q.reason
    );
    if let (Some(exchange), Some(key)) = (&q.exchange, &q.routing_key) {
        text.push_str(&format!("exchange:    {exchange}\nrouting key: {key}\n"));
    }
    text.push_str(&format!(
        "body ({} bytes):\n{}\n",
        q.body.len(),
        String::from_utf8_lossy(&q.body)
    ));
    output::print(&text)?;
    Ok(ExitCode::SUCCESS)
}

async fn report(config: &Config, args: ReportArgs) -> anyhow::Result<ExitCode> {
    use steward_meter::report::{ReportRequest, build_report, to_csv, to_table};
    use steward_meter::usage::period::Period;
    let period = match (&args.period, &args.from, &args.to) {
        (Some(month), _, _) => Period::month(month)?,
        (None, Some(from), Some(to)) => Period::from_rfc3339(from, to)?,
        _ => anyhow::bail!("give --period YYYY-MM, or --from and --to"),
    };
    let as_of = match &args.as_of {
        None => steward_meter::time::Instant::now(),
        Some(text) => match steward_meter::time::parse_timestamp(text) {
            Ok(Some(t)) => t,
            _ => {
                anyhow::bail!("--as-of {text:?} is not an RFC 3339 time like 2026-10-01T00:00:00Z")
            }
        },
    };
    let store = open(config).await?;
    let request = ReportRequest {
        period,
        as_of,
        project: args.project,
        detail: args.detail,
    };
    let closed = if args.live {
        None
    } else {
        steward_meter::close::closed_view(store.as_ref(), &period, request.project.as_deref())
            .await
            .context("reading the closed report")?
    };
    if closed.is_some() && (args.detail || args.as_of.is_some()) {
        anyhow::bail!(
            "{} is closed: its report is stored without detail and as of its close; add --live \
             to compute it from the current facts",
            steward_meter::close::period_label(&period)
        );
    }
    let report = match closed {
        Some(report) => report,
        None => build_report(store.as_ref(), &request, &config.meter.catalogue())
            .await
            .context("building the report")?,
    };
    output::print(&match args.output {
        ReportFormat::Json => report.json(),
        ReportFormat::Csv => to_csv(&report),
        ReportFormat::Table => to_table(&report),
    })?;
    Ok(ExitCode::SUCCESS)
}
