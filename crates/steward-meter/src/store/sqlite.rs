//! SQLite backend: one file, WAL, `synchronous=FULL` (durable against power loss).

use std::str::FromStr;

use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor};

use super::{ResourceFacts, StoreError, StoreStream};
use crate::time::Instant;

/// The one-writer lock of a SQLite store: an exclusive OS lock on `PATH.lock`, held by `serve`
/// for as long as it runs and released by the OS when the process ends (also on SIGKILL).
#[derive(Debug)]
pub struct WriterLock {
    _file: std::fs::File,
}

/// Takes the writer lock of the SQLite store at `url` (creating its folder); a second `serve`
/// on the same file gets [`StoreError::InUse`] naming the process that holds it. Two writers
/// would each record the other's uptime as its own downtime and compete for the write lock.
pub fn lock_writer(url: &str) -> Result<WriterLock, StoreError> {
    use std::io::{Read, Seek, Write};
    let db = database_file(url, true)?;
    let path = {
        let mut p = db.as_os_str().to_owned();
        p.push(".lock");
        std::path::PathBuf::from(p)
    };
    let lock_error = |source| StoreError::Lock {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(StoreError::InUse {
                path: db.display().to_string(),
                holder: holder.trim().to_owned(),
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(lock_error(source)),
    }
    // Say who holds it, for the next one that tries.
    file.set_len(0).map_err(lock_error)?;
    file.rewind().map_err(lock_error)?;
    write!(file, "pid {} on {}", std::process::id(), crate::host_name()).map_err(lock_error)?;
    file.flush().map_err(lock_error)?;
    Ok(WriterLock { _file: file })
}

/// The database file a `sqlite://` URL names; with `create_folder`, its folder is created.
fn database_file(url: &str, create_folder: bool) -> Result<std::path::PathBuf, StoreError> {
    let options = SqliteConnectOptions::from_str(url).map_err(|source| StoreError::Connect {
        url: super::redact_url(url),
        source,
    })?;
    let db = options.get_filename().to_path_buf();
    if create_folder && let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
            path: parent.display().to_string(),
            source,
        })?;
    }
    Ok(db)
}

/// `url` with SQLite's open `mode` (`ro`, `rwc`) added.
fn with_mode(url: &str, mode: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode={mode}")
}

/// Connects to `sqlite://PATH`: for `serve`, creating the file and its folder (WAL,
/// `synchronous=FULL`; migrated by the caller); `read_only`, an existing file only, with no
/// file, folder, journal change or migration.
pub(super) async fn connect(
    url: &str,
    timeout: std::time::Duration,
    read_only: bool,
) -> Result<AnyPool, StoreError> {
    // Validate the URL (and create the folder) before sqlx tries to open the file.
    let path = database_file(url, !read_only)?;
    if read_only && !path.is_file() {
        return Err(StoreError::Missing {
            path: path.display().to_string(),
        });
    }
    let (mode, connections, pragmas) = if read_only {
        ("ro", 2, "PRAGMA busy_timeout=10000; PRAGMA query_only=ON;")
    } else {
        (
            "rwc",
            4,
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
             PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
        )
    };
    AnyPoolOptions::new()
        .acquire_timeout(timeout)
        .max_connections(connections)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                conn.execute(pragmas).await?;
                Ok(())
            })
        })
        .connect(&with_mode(url, mode))
        .await
        .map_err(|source| StoreError::Connect {
            url: super::redact_url(url),
            source,
        })
}

/// Facts effective before `until`, one item per resource, for reports.
///
/// Built for a month of a large cloud (1,000,000 facts): SQLite aggregates each resource's
/// facts into one JSON array, so the driver hands over one row per resource instead of one per
/// fact (the `Any` pool converts every row and passes it from SQLite's worker thread one at a
/// time, about 10 µs a row); a dedicated read-only connection of the typed driver with a large
/// row buffer reads them, and resources travel on in chunks of 256.
pub(super) fn resources_until(url: &str, until: Instant) -> StoreStream<'static, ResourceFacts> {
    use futures_lite::StreamExt;
    use sqlx::Row;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<ResourceFacts>, StoreError>>(8);
    let url = url.to_owned();
    tokio::spawn(async move {
        let run = async {
            let options = SqliteConnectOptions::from_str(&url)?
                .read_only(true)
                .row_buffer_size(4096);
            let mut conn = sqlx::ConnectOptions::connect(&options).await?;
            let mut rows = sqlx::query(
                "SELECT resource_type, resource_id, json_group_array(json_array(kind, \
                 effective_at, project_id, origin, json(attributes))) \
                 FROM facts GROUP BY resource_type, resource_id \
                 HAVING MIN(effective_at) < ?1 ORDER BY resource_type, resource_id",
            )
            .bind(until.micros())
            .fetch(&mut conn);
            let mut chunk = Vec::with_capacity(256);
            while let Some(row) = rows.next().await {
                let row = row.map_err(StoreError::from)?;
                chunk.push(super::sql::resource_facts(
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get::<&str, _>(2)?,
                )?);
                if chunk.len() == 256 && tx.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                    return Ok(());
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(Ok(chunk)).await;
            }
            Ok::<(), StoreError>(())
        };
        if let Err(error) = run.await {
            let _ = tx.send(Err(error)).await;
        }
    });
    let chunks = futures_lite::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Box::pin(chunks.flat_map(|chunk| {
        let items: Vec<Result<ResourceFacts, StoreError>> = match chunk {
            Ok(resources) => resources.into_iter().map(Ok).collect(),
            Err(error) => vec![Err(error)],
        };
        futures_lite::stream::iter(items)
    }))
}
