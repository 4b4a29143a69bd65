//! SQLite backend: one file, WAL, `synchronous=FULL` (durable against power loss).

use std::str::FromStr;

use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor};

use super::StoreError;

/// Connects to `sqlite://PATH` (creating the file and its folder) and applies migrations.
pub(super) async fn connect(
    url: &str,
    timeout: std::time::Duration,
) -> Result<AnyPool, StoreError> {
    // Validate the URL and create the folder before sqlx tries to open the file.
    let options = SqliteConnectOptions::from_str(url).map_err(|source| StoreError::Connect {
        url: url.to_owned(),
        source,
    })?;
    let path = options.get_filename();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
            path: parent.display().to_string(),
            source,
        })?;
    }
    let any_url = if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    let pool = AnyPoolOptions::new()
        .acquire_timeout(timeout)
        .max_connections(4)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                     PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
                )
                .await?;
                Ok(())
            })
        })
        .connect(&any_url)
        .await
        .map_err(|source| StoreError::Connect {
            url: url.to_owned(),
            source,
        })?;
    sqlx::migrate!("migrations/sqlite")
        .run(&pool)
        .await
        .map_err(StoreError::Migrate)?;
    Ok(pool)
}
