//! The file sink: every document as files under one folder, written atomically.
//!
//! Layout: `<dir>/<period>/<project>/report-<digest>.json` and `.csv` (a closed report's
//! project slice) and `correction-<n>-<digest>.json`; `<project>` is `_unowned` for usage no
//! fact names an owner of; `<digest>` the first 16 hex digits of the document's digest.
//!
//! Invariants:
//! - **Atomic**: each file is written to a temporary name in its folder, fsynced, renamed into
//!   place and the folder fsynced: a reader sees the whole file or none.
//! - **Rerun is a no-op**: a file already there with the same bytes is left as it is; the
//!   digest in the name means a different document never overwrites another.

#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{AttemptError, Document, Sink, SinkFuture};
use crate::report::to_csv;
use crate::usage::period::Period;

/// Writes documents under `dir`.
#[derive(Debug, Clone)]
pub struct FileSink {
    name: String,
    dir: PathBuf,
}

impl FileSink {
    /// A sink called `name` writing under `dir` (created when missing).
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            dir: dir.into(),
        }
    }

    /// The files of `document`: (path, bytes).
    fn files(&self, document: &Document) -> Vec<(PathBuf, Vec<u8>)> {
        let short = |digest: &str| {
            digest
                .trim_start_matches("sha256:")
                .chars()
                .take(16)
                .collect::<String>()
        };
        let folder = |period: &Period, project: &Option<String>| {
            self.dir
                .join(crate::close::period_label(period))
                .join(project.as_deref().map_or("_unowned".to_owned(), safe_name))
        };
        match document {
            Document::Report(report) => {
                let period = Period {
                    start: report.period.start,
                    end: report.period.end,
                };
                let base = folder(&period, &report.project)
                    .join(format!("report-{}", short(&report.content_digest)));
                vec![
                    (base.with_extension("json"), report.json().into_bytes()),
                    (base.with_extension("csv"), to_csv(report).into_bytes()),
                ]
            }
            Document::Correction {
                correction,
                project_id,
            } => {
                let period = Period {
                    start: correction.period.start,
                    end: correction.period.end,
                };
                let name = format!(
                    "correction-{}-{}.json",
                    correction.sequence,
                    short(&correction.content_digest)
                );
                vec![(
                    folder(&period, project_id).join(name),
                    correction.json().into_bytes(),
                )]
            }
        }
    }
}

/// A project id as a path component: anything but `[A-Za-z0-9._-]` becomes `_`, and `.`/`..`
/// cannot escape the folder.
fn safe_name(id: &str) -> String {
    let name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.chars().all(|c| c == '.') {
        format!("_{name}")
    } else {
        name
    }
}

/// Writes `bytes` to `path` atomically; a file with the same bytes already there is kept.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)?;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let temp = folder.join(format!(
        ".steward-{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(folder)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(
        &'a self,
        document: &'a Document,
    ) -> SinkFuture<'a, Result<String, AttemptError>> {
        Box::pin(async move {
            let files = self.files(document);
            let written = tokio::task::spawn_blocking(move || {
                for (path, bytes) in &files {
                    write_atomically(path, bytes).map_err(|e| {
                        AttemptError::Transient(format!("writing {}: {e}", path.display()))
                    })?;
                }
                Ok::<_, AttemptError>(files.first().map(|(p, _)| p.display().to_string()))
            })
            .await
            .map_err(|e| AttemptError::Transient(format!("file sink task: {e}")))??;
            Ok(written.unwrap_or_default())
        })
    }

    fn preview<'a>(&'a self, document: &'a Document) -> SinkFuture<'a, Option<String>> {
        Box::pin(async move {
            let files = self.files(document);
            let same = files
                .iter()
                .all(|(path, bytes)| std::fs::read(path).is_ok_and(|found| &found == bytes));
            let first = files.first().map(|(p, _)| p.display().to_string())?;
            Some(if same {
                format!("no-op: {first} is there with the same bytes")
            } else {
                format!("write {first} ({} file(s))", files.len())
            })
        })
    }
}
