//! PostgreSQL backend: for several `serve` replicas writing to one database.

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use super::{StoreError, redact_url};

/// Connects to `postgres://…` and applies migrations (serialised by sqlx's advisory lock).
pub(super) async fn connect(
    url: &str,
    timeout: std::time::Duration,
) -> Result<AnyPool, StoreError> {
    let pool = AnyPoolOptions::new()
        .acquire_timeout(timeout)
        .max_connections(8)
        .connect(url)
        .await
        .map_err(|source| StoreError::Connect {
            url: redact_url(url),
            source,
        })?;
    sqlx::migrate!("migrations/postgres")
        .run(&pool)
        .await
        .map_err(StoreError::Migrate)?;
    Ok(pool)
}
