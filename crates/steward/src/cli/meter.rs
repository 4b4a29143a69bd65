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
    /// as unknown, never billed as zero. Also served as GET /v1/reports by `meter serve`.
    Report(ReportArgs),
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
    /// The instant the report describes (RFC 3339; default: now). Usage is billed up to it
    /// and facts committed after it are left out, so a past `--as-of` reproduces the answer
    /// given then.
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
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
            Self::Status(args) => status(&open(&config).await?, args.output).await,
            Self::Gaps(args) => gaps(&open(&config).await?, args.limit, args.out.output).await,
            Self::Report(args) => report(&config, args).await,
            Self::Reconcile(args) => reconcile(&config, args).await,
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

async fn reconcile(config: &Config, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    init_logging(config);
    let settings = &config.meter.reconcile;
    let Some(cloud_name) = args.os_cloud.clone().or_else(|| settings.cloud.clone()) else {
        anyhow::bail!(
            "no cloud to reconcile with: give --os-cloud NAME (or OS_CLOUD), or set \
             meter.reconcile.cloud in the configuration"
        );
    };
    let url = config.meter.store.url.expose();
    let timeout = std::time::Duration::from_secs(config.meter.store.connect_timeout_secs.max(1));
    // Writing needs the store created and migrated, and (SQLite) no `serve` writing to it.
    let _lock = if !args.dry_run && url.starts_with("sqlite:") {
        Some(store::lock_writer(url).with_context(|| {
            "the store is in use (is `steward meter serve` running on it? it runs the reconciler \
             itself when meter.reconcile.cloud is set)"
        })?)
    } else {
        None
    };
    let store = if args.dry_run {
        store::open_read_only(url, timeout).await
    } else {
        store::open_with_timeout(url, timeout).await
    }
    .with_context(|| format!("opening store {}", store::redact_url(url)))?;
    let cloud = steward_cloud::Cloud::connect(&cloud_name, settings.clouds_file.as_deref())
        .await
        .with_context(|| format!("connecting to cloud {cloud_name}"))?;
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

async fn status(store: &std::sync::Arc<dyn Store>, format: Format) -> anyhow::Result<ExitCode> {
    let summary = store.status().await.context("reading status")?;
    let recent_gaps = store.gaps(5).await.context("reading gaps")?;
    let runs = store
        .reconcile_runs(1000)
        .await
        .context("reading reconciler runs")?;
    let last_reconcile = runs.first().cloned();
    if format == Format::Json {
        let gaps: Vec<_> = recent_gaps.iter().map(|g| gap_json(g, &runs)).collect();
        output::json(&serde_json::json!({
            "summary": summary,
            "recent_gaps": gaps,
            "last_reconcile": last_reconcile,
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
    let report = build_report(store.as_ref(), &request, &config.meter.catalogue())
        .await
        .context("building the report")?;
    output::print(&match args.output {
        ReportFormat::Json => report.json(),
        ReportFormat::Csv => to_csv(&report),
        ReportFormat::Table => to_table(&report),
    })?;
    Ok(ExitCode::SUCCESS)
}
