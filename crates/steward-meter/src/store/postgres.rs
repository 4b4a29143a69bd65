//! PostgreSQL backend: for several `serve` replicas writing to one database.

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

use super::{StoreError, redact_url};

/// Connects to `postgres://…`: a pool of 8 for `serve` (migrated by the caller, serialised by
/// sqlx's advisory lock), or, `read_only`, a pool of 2 whose every transaction is read-only.
pub(super) async fn connect(
    url: &str,
    timeout: std::time::Duration,
    read_only: bool,
) -> Result<AnyPool, StoreError> {
    AnyPoolOptions::new()
        .acquire_timeout(timeout)
        .max_connections(if read_only { 2 } else { 8 })
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if read_only {
                    conn.execute("SET default_transaction_read_only = on")
                        .await?;
                }
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
