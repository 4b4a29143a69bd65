//! Command-line interface: one module per subcommand, each owning its arguments and `run`.

mod check;
mod config_cmd;
mod images;
mod meter;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use steward::config::{self, Config, ConfigSource};

const EXAMPLES: &str = "Examples:
  steward meter serve                             ingest on the embedded defaults
  steward meter report --period 2026-10 -o json   usage report for October
  steward images validate images/                 check image definitions
  steward images plan --os-cloud prod --check     what apply would change (exit 1 if anything)
  steward check images --os-cloud prod -o junit   SCS-0102 on every public image, for CI
  steward config check /etc/steward/steward.yaml  validate a configuration file";

/// Steward: operator software for Sovereign Cloud Stack (SCS) OpenStack clouds.
///
/// Metering for billing that never loses usage: `steward meter serve` consumes OpenStack
/// notifications from RabbitMQ and Ceilometer's HTTP publisher and stores every one durably and
/// exactly once; `steward meter report` turns them into usage per project and product. With no
/// configuration it runs on an embedded SQLite store (./steward-data/steward.db), listens on
/// 127.0.0.1:8788 and consumes from amqp://guest:guest@127.0.0.1:5672/.
///
/// Image management: `steward images` keeps Glance images current, verified and labelled per
/// SCS-0102 from osism openstack-image-manager definitions.
#[derive(Debug, Parser)]
#[command(
    name = "steward",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Configuration file (YAML). Without one, every setting has its default.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "STEWARD_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,

    /// Log line format on stderr, overriding `log.format`: `text` (colours only at a terminal)
    /// or `json` (one object per line, for log collectors).
    #[arg(
        long,
        global = true,
        env = "STEWARD_LOG_FORMAT",
        value_enum,
        value_name = "FORMAT"
    )]
    log_format: Option<config::LogFormat>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Metering: the ingest service, its status, quarantine and gaps, usage reports.
    #[command(subcommand)]
    Meter(meter::MeterCommand),
    /// Image management: validate definitions, check upstreams, plan and apply to Glance.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Conformance checks: SCS image metadata (more checks follow: standard images, entropy,
    /// Ceph RGW, load-balancer health monitors).
    #[command(subcommand)]
    Check(check::CheckCommand),
    /// Configuration: validate a file.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
}

impl Cli {
    /// Runs the chosen command.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let source = match &self.config {
            Some(path) => ConfigSource::File(path.clone()),
            None => ConfigSource::Defaults,
        };
        match self.command {
            Command::Meter(command) => {
                let mut config = load(&source)?;
                if let Some(format) = self.log_format {
                    config.log.format = format;
                }
                command.run(config).await
            }
            Command::Images(command) => command.run().await,
            Command::Check(command) => command.run().await,
            Command::Config(command) => command.run(&source),
        }
    }
}

/// Loads the configuration or fails with every located problem.
fn load(source: &ConfigSource) -> anyhow::Result<Config> {
    config::load(source).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("invalid configuration:\n  {}", lines.join("\n  "))
    })
}
