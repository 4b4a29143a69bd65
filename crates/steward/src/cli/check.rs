//! `steward check`: conformance checks against a cloud, with results an operator and a CI
//! system can read (`-o table|json|junit`); exit 0 all pass, 1 findings, 2 could not run.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use steward_checks::model::{CheckResult, Status, Summary};
use steward_checks::output::{self, Format};

/// Output formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum CheckFormat {
    /// Aligned columns and a summary line.
    #[default]
    Table,
    /// Every result with its evidence, and the summary.
    Json,
    /// JUnit XML for CI systems (FAIL and WARN as failures, ABORT as errors).
    Junit,
}

/// Which SCS-0102 version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum ScsVersion {
    /// v1 (certificate scope v5.1): os_purpose and its uniqueness recommended.
    V1,
    /// v2 (the next scope): os_purpose and uniqueness mandatory.
    #[default]
    V2,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CheckCommand {
    /// SCS-0102 image metadata on every public and community image (hidden ones included):
    /// the mandatory properties and their values, min_disk against the stored size, build date
    /// against registration, hash algorithm, one visible generic image per distro and version,
    /// and recency per replace_frequency. Rotated generations (renamed `<name> (YYYYMMDD)` or
    /// `<name> YYYYMMDD`, or hidden) with a current successor pass. The rules are those of
    /// `steward images validate`.
    Images {
        /// The cloud: a clouds.yaml entry, or, when neither this nor OS_CLOUD is given, the
        /// openrc variables in the environment.
        #[arg(long, env = "OS_CLOUD", value_name = "NAME", default_value = steward_cloud::ENV_CLOUD, hide_default_value = true)]
        os_cloud: String,
        /// The SCS-0102 version to check against.
        #[arg(long, value_enum, default_value_t)]
        scs_version: ScsVersion,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: CheckFormat,
    },
}

impl CheckCommand {
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Images {
                os_cloud,
                scs_version,
                output,
            } => {
                let version = match scs_version {
                    ScsVersion::V1 => steward_checks::images::Version::V1,
                    ScsVersion::V2 => steward_checks::images::Version::V2,
                };
                let results = match steward_cloud::Cloud::connect(&os_cloud, None).await {
                    Ok(cloud) => match cloud.images().await {
                        Ok(images) => {
                            steward_checks::images::check(&images, chrono::Utc::now(), version)
                        }
                        Err(e) => vec![aborted("scs-0102", &format!("listing images: {e}"))],
                    },
                    Err(e) => vec![aborted(
                        "scs-0102",
                        &format!("connecting to cloud {os_cloud}: {e}"),
                    )],
                };
                print(&results, output)
            }
        }
    }
}

fn aborted(standard: &str, message: &str) -> CheckResult {
    CheckResult::new(
        format!("{standard}-run"),
        (standard, "-"),
        Status::Abort,
        message,
    )
}

fn print(results: &[CheckResult], format: CheckFormat) -> anyhow::Result<ExitCode> {
    let format = match format {
        CheckFormat::Table => Format::Table,
        CheckFormat::Json => Format::Json,
        CheckFormat::Junit => Format::Junit,
    };
    crate::output::print(&output::render(results, format))?;
    Ok(ExitCode::from(Summary::of(results).exit_code()))
}
