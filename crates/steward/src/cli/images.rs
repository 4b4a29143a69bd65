//! `steward images …`: image definitions for cloud providers.

use std::path::PathBuf;
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
}

impl ImagesCommand {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let Self::Validate {
            path,
            strict,
            output,
        } = self;
        let (images, problems) = steward_images::definition::load(&path);
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
}
