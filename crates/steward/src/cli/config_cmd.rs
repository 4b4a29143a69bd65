//! `steward config check`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use steward::config::{self, ConfigSource};

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration file: prints every problem, one per line, as
    /// FILE:LINE:COL: FIELD.PATH: MESSAGE, and exits 1 if there is any, 0 if the file is valid.
    Check {
        /// The file to check (default: --config / STEWARD_CONFIG).
        file: Option<PathBuf>,
    },
}

impl ConfigCommand {
    pub(crate) fn run(self, source: &ConfigSource) -> anyhow::Result<ExitCode> {
        let Self::Check { file } = self;
        let path = match (file, source) {
            (Some(file), _) => file,
            (None, ConfigSource::File(file)) => file.clone(),
            (None, ConfigSource::Defaults) => {
                anyhow::bail!("no file to check: give one, or set --config / STEWARD_CONFIG")
            }
        };
        match config::load(&ConfigSource::File(path.clone())) {
            Ok(_) => {
                println!("{}: ok", path.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(problems) => {
                for problem in &problems {
                    println!("{problem}");
                }
                Ok(ExitCode::from(1))
            }
        }
    }
}
