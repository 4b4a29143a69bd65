//! `steward images …`: image definitions for cloud providers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use steward_images::problem::Severity;

use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub(crate) enum ImagesCommand {
    /// Check image definitions (osism openstack-image-manager YAML, as is): schema, Glance
    /// vocabulary, checksums, and the SCS-0102 properties each image would carry.
    ///
    /// Prints FILE:LINE: SEVERITY: FIELD: MESSAGE per problem. Exits 1 when there is an error
    /// (with --strict also on warnings), 0 otherwise.
    Validate {
        /// A definition file or a folder of *.yml/*.yaml files.
        #[arg(default_value = "images")]
        path: PathBuf,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Compare the definitions with Glance and print what `apply` would create, update (rename,
    /// relabel, hide), deactivate or delete, each with its reason. Only images carrying
    /// Steward's `steward_definition` property are considered; others are never touched.
    ///
    /// With --check, exits 1 when anything would change (for CI), else 0.
    Plan {
        /// A definition file or a folder of *.yml/*.yaml files.
        #[arg(default_value = "images")]
        path: PathBuf,
        /// The cloud: a clouds.yaml entry (OS_CLIENT_CONFIG_FILE, ./clouds.yaml,
        /// ~/.config/openstack/, /etc/openstack/), or, when neither this nor OS_CLOUD is given,
        /// the openrc variables in the environment (OS_AUTH_URL, OS_USERNAME, …).
        #[arg(long, env = "OS_CLOUD", value_name = "NAME", default_value = steward_cloud::ENV_CLOUD, hide_default_value = true)]
        os_cloud: String,
        /// Exit 1 when the plan is not empty.
        #[arg(long)]
        check: bool,
        /// Accept md5 digests for upstreams that publish nothing better (a warning is printed).
        #[arg(long)]
        allow_md5: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
    /// Converge Glance to the definitions: create and import new versions (private until their
    /// checksum is verified), correct drift with one PATCH per image, rotate, deactivate or delete
    /// old generations per uuid_validity. Safe to re-run; a second run changes nothing.
    Apply {
        /// A definition file or a folder of *.yml/*.yaml files.
        #[arg(default_value = "images")]
        path: PathBuf,
        /// The cloud: a clouds.yaml entry (OS_CLIENT_CONFIG_FILE, ./clouds.yaml,
        /// ~/.config/openstack/, /etc/openstack/), or, when neither this nor OS_CLOUD is given,
        /// the openrc variables in the environment (OS_AUTH_URL, OS_USERNAME, …).
        #[arg(long, env = "OS_CLOUD", value_name = "NAME", default_value = steward_cloud::ENV_CLOUD, hide_default_value = true)]
        os_cloud: String,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Accept md5 digests for upstreams that publish nothing better (a warning is printed).
        #[arg(long)]
        allow_md5: bool,
        /// How image data gets into Glance: `auto` (web-download, falling back to a streamed
        /// upload when Glance cannot import), `web-download`, or `upload`.
        #[arg(long, value_enum, default_value_t = ImportMethodArg::Auto)]
        import_method: ImportMethodArg,
        /// A version with a `mirror_url` is imported from its mirror (as openstack-image-manager
        /// does; `image_source` stays `url`). With this flag, a mirror that cannot be read or
        /// imported from is replaced by the upstream `url`, verified against the same checksum.
        #[arg(long)]
        fallback_to_upstream: bool,
    },
    /// Ask every upstream what it offers now: the newest version (is the definition behind?),
    /// and what blocks a verifiable automated import (no checksum file, only md5, no stable
    /// latest pointer, no readable build date, URL gone). Exits 1 when anything is found.
    Outdated {
        /// A definition file or a folder of *.yml/*.yaml files.
        #[arg(default_value = "images")]
        path: PathBuf,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Format,
    },
}

/// `--import-method` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ImportMethodArg {
    /// Web-download, falling back to upload.
    Auto,
    /// Glance downloads the upstream.
    WebDownload,
    /// Steward downloads, verifies and streams the data to Glance.
    Upload,
}

impl ImagesCommand {
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Validate {
                path,
                strict,
                output,
            } => validate(&path, strict, output),
            Self::Outdated { path, output } => outdated(&path, output).await,
            Self::Apply {
                path,
                os_cloud,
                dry_run,
                allow_md5,
                import_method,
                fallback_to_upstream,
            } => {
                apply(
                    &path,
                    &os_cloud,
                    dry_run,
                    allow_md5,
                    import_method,
                    fallback_to_upstream,
                )
                .await
            }
            Self::Plan {
                path,
                os_cloud,
                check,
                allow_md5,
                output,
            } => plan(&path, &os_cloud, check, allow_md5, output).await,
        }
    }
}

fn validate(path: &Path, strict: bool, output: Format) -> anyhow::Result<ExitCode> {
    let (images, problems) = steward_images::definition::load(path);
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = problems.len() - errors;
    match output {
        Format::Json => output::json(&serde_json::json!({
            "definitions": images.len(),
            "errors": errors,
            "warnings": warnings,
            "problems": problems,
        }))?,
        Format::Table => {
            let mut text: String = problems.iter().map(|p| format!("{p}\n")).collect();
            text.push_str(&format!(
                "{}: {} definition(s), {errors} error(s), {warnings} warning(s)\n",
                path.display(),
                images.len()
            ));
            output::print(&text)?;
        }
    }
    let failed = errors > 0 || (strict && warnings > 0);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn outdated(path: &Path, output: Format) -> anyhow::Result<ExitCode> {
    let definitions = load_valid(path)?;
    let client = steward_images::upstream::client();
    let mut resolved = Vec::new();
    for definition in definitions.iter().filter(|d| d.enable) {
        resolved.push(steward_images::upstream::resolve(&client, definition).await);
    }
    let findings = resolved
        .iter()
        .filter(|r| {
            r.behind || !r.problems.is_empty() || r.versions.iter().any(|v| !v.problems.is_empty())
        })
        .count();
    match output {
        Format::Json => output::json(&resolved)?,
        Format::Table => {
            let mut rows = vec![
                ["DEFINITION", "LISTED", "NEWEST UPSTREAM", "BEHIND"]
                    .map(String::from)
                    .to_vec(),
            ];
            let mut fix = String::new();
            for r in &resolved {
                rows.push(vec![
                    r.name.clone(),
                    r.listed.clone(),
                    r.newest.clone().unwrap_or_else(|| "?".to_owned()),
                    if r.behind { "yes" } else { "no" }.to_owned(),
                ]);
                for p in &r.problems {
                    fix.push_str(&format!("  {}: {}\n", r.name, p));
                }
                for v in &r.versions {
                    for p in &v.problems {
                        fix.push_str(&format!("  {} {}: {}\n", r.name, v.version, p));
                    }
                }
            }
            let mut text = output::table(&rows);
            if !fix.is_empty() {
                text.push_str("\nupstreams that need fixing for verifiable automated import:\n");
                text.push_str(&fix);
            }
            output::print(&text)?;
        }
    }
    Ok(if findings > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Definitions without errors, or an error that says how to see them.
fn load_valid(path: &Path) -> anyhow::Result<Vec<steward_images::definition::ImageDefinition>> {
    let (loaded, problems) = steward_images::definition::load(path);
    if problems.iter().any(|p| p.severity == Severity::Error) {
        anyhow::bail!(
            "{0} has errors: run `steward images validate {0}`",
            path.display()
        );
    }
    Ok(loaded.into_iter().map(|(_, d)| d).collect())
}

/// What `plan` and `apply` both start from.
struct Planned {
    cloud: steward_cloud::Cloud,
    http: steward_images::upstream::HttpClient,
    actions: Vec<steward_images::plan::Action>,
    blocked: Vec<String>,
}

impl Planned {
    async fn new(path: &Path, os_cloud: &str, allow_md5: bool) -> anyhow::Result<Self> {
        if allow_md5 {
            eprintln!(
                "warning: --allow-md5: md5 digests are accepted; md5 is not collision-resistant, \
                 ask those upstreams for sha256 or sha512 (steward images outdated lists them)"
            );
        }
        use anyhow::Context as _;
        let definitions = load_valid(path)?;
        let cloud = steward_cloud::Cloud::connect(os_cloud, None)
            .await
            .with_context(|| format!("connecting to cloud {os_cloud}"))?;
        let images = cloud.images().await.context("listing images")?;
        let http = steward_images::upstream::client();
        let (desired, blocked) =
            steward_images::plan::resolve_all(&http, &definitions, allow_md5).await;
        let today = chrono::Utc::now().date_naive();
        let actions = steward_images::plan::plan(&desired, &images, today);
        Ok(Self {
            cloud,
            http,
            actions,
            blocked,
        })
    }

    /// The plan as text, with a `?` line per version that could not be planned. When nothing
    /// but blocked versions remains, it says so instead of "no changes".
    fn text(&self) -> String {
        let mut text = if self.actions.is_empty() && !self.blocked.is_empty() {
            String::new()
        } else {
            steward_images::plan::render(&self.actions)
        };
        for b in &self.blocked {
            text.push_str(&format!("? {b}\n"));
        }
        if !self.blocked.is_empty() {
            text.push_str(&format!(
                "{} version(s) blocked: fix them or disable them (enable: false); {}\n",
                self.blocked.len(),
                if self.actions.is_empty() {
                    "nothing else to change".to_owned()
                } else {
                    format!("{} other change(s) above", self.actions.len())
                }
            ));
        }
        text
    }
}

async fn plan(
    path: &Path,
    os_cloud: &str,
    check: bool,
    allow_md5: bool,
    output: Format,
) -> anyhow::Result<ExitCode> {
    let planned = Planned::new(path, os_cloud, allow_md5).await?;
    match output {
        Format::Json => output::json(
            &serde_json::json!({ "actions": planned.actions, "blocked": planned.blocked }),
        )?,
        Format::Table => output::print(&planned.text())?,
    }
    let changes = !planned.actions.is_empty() || !planned.blocked.is_empty();
    Ok(if check && changes {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn apply(
    path: &Path,
    os_cloud: &str,
    dry_run: bool,
    allow_md5: bool,
    method: ImportMethodArg,
    fallback_to_upstream: bool,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use std::io::IsTerminal as _;
    use steward_images::apply::{ApplyOptions, ImportMethod};
    let planned = Planned::new(path, os_cloud, allow_md5).await?;
    output::print(&planned.text())?;
    if dry_run {
        eprintln!("dry run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    let Planned {
        cloud,
        http,
        actions,
        blocked,
    } = planned;
    let options = ApplyOptions {
        method: match method {
            ImportMethodArg::Auto => ImportMethod::Auto,
            ImportMethodArg::WebDownload => ImportMethod::WebDownload,
            ImportMethodArg::Upload => ImportMethod::Upload,
        },
        progress_bars: std::io::stderr().is_terminal(),
        allow_md5,
        fallback_to_upstream,
        ..ApplyOptions::default()
    };
    steward_images::apply::apply(&cloud, &http, &actions, options, |line| eprintln!("{line}"))
        .await
        .context("applying the plan")?;
    if blocked.is_empty() {
        eprintln!("applied {} action(s)", actions.len());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "applied {} action(s); {} version(s) could not be planned",
            actions.len(),
            blocked.len()
        );
        Ok(ExitCode::from(1))
    }
}
