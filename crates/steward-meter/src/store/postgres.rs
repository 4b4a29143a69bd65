//! PostgreSQL backend: for several `serve` replicas writing to one database.

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

use super::sql::{Backend, refuse_newer_schema, schema_version};
use super::{StoreError, redact_url};

/// The newest migration embedded for PostgreSQL.
pub(super) const SCHEMA_VERSION: i64 = 3;

/// Connects to `postgres://…` with every transaction read-only; nothing is migrated.
pub(super) async fn connect_read_only(
    url: &str,
    timeout: std::time::Duration,
) -> Result<AnyPool, StoreError> {
    AnyPoolOptions::new()
        .acquire_timeout(timeout)
        .max_connections(2)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("SET default_transaction_read_only = on")
                    .await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(|source| StoreError::Connect {
            url: redact_url(url),
            source,
        })
}

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
    if let Some(found) = schema_version(&pool, Backend::Postgres).await? {
        refuse_newer_schema(found, Backend::Postgres)?;
    }
    sqlx::migrate!("migrations/postgres")
        .run(&pool)
        .await
        .map_err(StoreError::Migrate)?;
    Ok(pool)
}
