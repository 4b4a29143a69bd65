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
    /// SCS-0104 standard images: each mandatory image offered (FAIL when missing), each
    /// recommended one (WARN), every matching image's image_source under an allowed prefix,
    /// and the newest generation not past its replace_frequency (WARN: stale). The lists are
    /// the standard's annexes (`--scope v5`: certificate scope v5.1 and next; `v4`), or an
    /// annex file given with --spec.
    StandardImages {
        /// The cloud: a clouds.yaml entry, or, when neither this nor OS_CLOUD is given, the
        /// openrc variables in the environment.
        #[arg(long, env = "OS_CLOUD", value_name = "NAME", default_value = steward_cloud::ENV_CLOUD, hide_default_value = true)]
        os_cloud: String,
        /// The built-in annex: v5 (scs-0104-v1-images-v5.yaml) or v4 (scs-0104-v1-images.yaml).
        #[arg(long, default_value = "v5", value_parser = ["v5", "v4"])]
        scope: String,
        /// An annex file in the standard's YAML format instead of the built-in one.
        #[arg(long, value_name = "FILE")]
        spec: Option<std::path::PathBuf>,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: CheckFormat,
    },
    /// SCS-0101 entropy: every public flavor's hw_rng:allowed and every public or community
    /// image's hw_rng_model=virtio, reported per flavor and image (WARN: recommended by
    /// scs-0101 v1.0). The in-guest tests (entropy_avail = 256, rngtest) need a booted server
    /// and are reported as SKIP.
    Entropy {
        /// The cloud: a clouds.yaml entry, or, when neither this nor OS_CLOUD is given, the
        /// openrc variables in the environment. Needs admin to see every flavor.
        #[arg(long, env = "OS_CLOUD", value_name = "NAME", default_value = steward_cloud::ENV_CLOUD, hide_default_value = true)]
        os_cloud: String,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: CheckFormat,
    },
    /// Load-balancer health monitors: creates a network, a load balancer on provider P, a TCP
    /// listener, a pool, a member and an HTTP health monitor, waiting for ACTIVE after each;
    /// where the provider refuses HTTP monitors (OVN: 501) a TCP monitor is used and reported
    /// (WARN). Everything is deleted at the end — also after a failure, a timeout or Ctrl-C —
    /// and the deletion verified; leftovers of a killed earlier run are removed first.
    Loadbalancer {
        /// The Octavia provider: amphora, ovn, …
        #[arg(long, default_value = "amphora")]
        provider: String,
        /// The cloud: a clouds.yaml entry, or, when neither this nor OS_CLOUD is given, the
        /// openrc variables in the environment.
        #[arg(long, env = "OS_CLOUD", value_name = "NAME", default_value = steward_cloud::ENV_CLOUD, hide_default_value = true)]
        os_cloud: String,
        /// Give up (and clean up) after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: CheckFormat,
    },
}

/// The images of `os_cloud`, or the ABORT result saying why they could not be listed.
async fn images(
    os_cloud: &str,
    standard: &str,
) -> Result<Vec<steward_cloud::ImageRecord>, CheckResult> {
    let cloud = steward_cloud::Cloud::connect(os_cloud, None)
        .await
        .map_err(|e| aborted(standard, &format!("connecting to cloud {os_cloud}: {e}")))?;
    cloud
        .images()
        .await
        .map_err(|e| aborted(standard, &format!("listing images: {e}")))
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
                let results = match images(&os_cloud, "scs-0102").await {
                    Ok(images) => {
                        steward_checks::images::check(&images, chrono::Utc::now(), version)
                    }
                    Err(aborted) => vec![aborted],
                };
                print(&results, output)
            }
            Self::StandardImages {
                os_cloud,
                scope,
                spec,
                output,
            } => {
                use steward_checks::standard_images::{builtin, parse_spec};
                let spec = match &spec {
                    Some(path) => {
                        let text = std::fs::read_to_string(path)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                        parse_spec(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                    }
                    None => builtin(&scope)
                        .ok_or_else(|| anyhow::anyhow!("no built-in annex {scope:?}"))?,
                };
                let results = match images(&os_cloud, "scs-0104").await {
                    Ok(images) => {
                        steward_checks::standard_images::check(&images, &spec, chrono::Utc::now())
                    }
                    Err(aborted) => vec![aborted],
                };
                print(&results, output)
            }
            Self::Loadbalancer {
                provider,
                os_cloud,
                timeout_secs,
                output,
            } => {
                let cloud = match steward_cloud::Cloud::connect(&os_cloud, None).await {
                    Ok(cloud) => std::sync::Arc::new(cloud),
                    Err(e) => {
                        return print(
                            &[aborted(
                                "octavia-health-monitor",
                                &format!("connecting to cloud {os_cloud}: {e}"),
                            )],
                            output,
                        );
                    }
                };
                let run = format!("{:x}", std::process::id());
                let mut results = steward_checks::runner::run(
                    steward_checks::loadbalancer::CHECK,
                    ("octavia-health-monitor", "v1"),
                    std::time::Duration::from_secs(timeout_secs),
                    async {
                        let _ = tokio::signal::ctrl_c().await;
                    },
                    |cleanup| {
                        steward_checks::loadbalancer::check(cloud.clone(), provider, run, cleanup)
                    },
                )
                .await;
                if !results.iter().any(|r| r.id.ends_with("-cleanup")) {
                    results.push(CheckResult::new(
                        "lb-cleanup",
                        ("octavia-health-monitor", "v1"),
                        Status::Pass,
                        "everything the check created was deleted, and is gone",
                    ));
                }
                print(&results, output)
            }
            Self::Entropy { os_cloud, output } => {
                let results = match steward_cloud::Cloud::connect(&os_cloud, None).await {
                    Err(e) => vec![aborted(
                        "scs-0101",
                        &format!("connecting to cloud {os_cloud}: {e}"),
                    )],
                    Ok(cloud) => match (cloud.flavors().await, cloud.images().await) {
                        (Ok(flavors), Ok(images)) => {
                            steward_checks::entropy::check(&flavors, &images)
                        }
                        (Err(e), _) => vec![aborted("scs-0101", &format!("listing flavors: {e}"))],
                        (_, Err(e)) => vec![aborted("scs-0101", &format!("listing images: {e}"))],
                    },
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
