//! The [`Store`] implementation shared by both backends, on sqlx's `Any` driver.
//!
//! One code path for SQLite and PostgreSQL: `$n` placeholders, `ON CONFLICT … DO NOTHING` for
//! dedup, integer microseconds for times, TEXT for JSON. Only connecting and the migrations
//! differ per backend (`sqlite.rs`, `postgres.rs`). Commits go through `commit.rs`.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row};

use super::{
    CommitOutcome, Coverage, QuarantineEntry, ResourceFacts, SourceStats, StatusSummary, Store,
    StoreError, StoreFuture, StoreStream, StoredFact, postgres, sqlite,
};
use crate::record::{Batch, Gap, Source};
use crate::time::Instant;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A store on an sqlx `Any` pool; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// The URL, for SQLite's bulk-read connection (see [`SqlStore::facts_until`]).
    url: String,
}

impl SqlStore {
    /// Connects to `url` and applies the backend's migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with_timeout(url, super::DEFAULT_CONNECT_TIMEOUT).await
    }

    /// Like [`SqlStore::open`], giving up on an unreachable database after `timeout`.
    pub async fn open_with_timeout(
        url: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let store = Self::connect(url, timeout, false).await?;
        // A store migrated by a newer Steward is refused before anything is applied to it.
        if let Some(found) = schema_version(&store.pool, store.backend).await? {
            refuse_newer_schema(found, store.backend)?;
        }
        migrator(store.backend)
            .run(&store.pool)
            .await
            .map_err(StoreError::Migrate)?;
        Ok(store)
    }

    /// Opens an existing store for reading only; see [`super::open_read_only`].
    pub async fn open_read_only(
        url: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let store = Self::connect(url, timeout, true).await?;
        match schema_version(&store.pool, store.backend).await? {
            None => Err(StoreError::NotAStore {
                url: super::redact_url(url),
            }),
            Some(found) => {
                refuse_newer_schema(found, store.backend)?;
                Ok(store)
            }
        }
    }

    /// A pool on `url` for its backend, without migrating.
    async fn connect(
        url: &str,
        timeout: std::time::Duration,
        read_only: bool,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (pool, backend) = if url.starts_with("sqlite:") {
            (
                sqlite::connect(url, timeout, read_only).await?,
                Backend::Sqlite,
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (
                postgres::connect(url, timeout, read_only).await?,
                Backend::Postgres,
            )
        } else {
            return Err(StoreError::UnsupportedUrl(super::redact_url(url)));
        };
        Ok(Self {
            pool,
            backend,
            url: url.to_owned(),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying pool (for tests and read-only tools).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// The newest migration applied to the store, or `None` when it holds no Steward schema.
async fn schema_version(pool: &AnyPool, backend: Backend) -> Result<Option<i64>, StoreError> {
    let exists = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
        }
    };
    let row = sqlx::query::<Any>(exists).fetch_one(pool).await?;
    if row.try_get::<i64, _>(0)? == 0 {
        return Ok(None);
    }
    let row = sqlx::query::<Any>(
        "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM _sqlx_migrations WHERE success",
    )
    .fetch_one(pool)
    .await?;
    Ok(Some(row.try_get::<i64, _>(0)?))
}

/// The migrations embedded for `backend`.
fn migrator(backend: Backend) -> sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("migrations/postgres"),
    }
}

/// [`StoreError::SchemaTooNew`] when the store was migrated past what this binary embeds.
fn refuse_newer_schema(found: i64, backend: Backend) -> Result<(), StoreError> {
    let supported = migrator(backend)
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    Ok(())
}

/// Parses one aggregated row (see [`Store::resources_until`]).
pub(super) fn resource_facts(
    resource_type: String,
    resource_id: String,
    facts: &str,
) -> Result<ResourceFacts, StoreError> {
    let facts = serde_json::from_str(facts).map_err(|e| {
        StoreError::Query(sqlx::Error::Decode(
            format!("facts of {resource_id}: {e}").into(),
        ))
    })?;
    Ok(ResourceFacts {
        resource_type,
        resource_id,
        facts,
    })
}

const DELIVERY_COLUMNS: &str = "id, sink, period_start, period_end, project_id, kind, digest, \
     state, attempts, last_error, remote_id, next_attempt_at, created_at, updated_at";

fn delivery_from_row(row: &AnyRow) -> Result<super::Delivery, sqlx::Error> {
    let project: String = row.try_get("project_id")?;
    Ok(super::Delivery {
        id: row.try_get("id")?,
        sink: row.try_get("sink")?,
        period_start: Instant(row.try_get("period_start")?),
        period_end: Instant(row.try_get("period_end")?),
        project_id: (!project.is_empty()).then_some(project),
        kind: row.try_get("kind")?,
        digest: row.try_get("digest")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        remote_id: row.try_get("remote_id")?,
        next_attempt_at: Instant(row.try_get("next_attempt_at")?),
        created_at: Instant(row.try_get("created_at")?),
        updated_at: Instant(row.try_get("updated_at")?),
    })
}

const FACT_COLUMNS: &str = "semantic_key, record_key, resource_type, resource_id, project_id, \
     kind, effective_at, time_source, origin, attributes";

fn fact_from_row(row: &AnyRow) -> Result<StoredFact, sqlx::Error> {
    Ok(StoredFact {
        semantic_key: row.try_get("semantic_key")?,
        record_key: row.try_get("record_key")?,
        resource_type: row.try_get("resource_type")?,
        resource_id: row.try_get("resource_id")?,
        project_id: row.try_get("project_id")?,
        kind: row.try_get("kind")?,
        effective_at: Instant(row.try_get("effective_at")?),
        time_source: row.try_get("time_source")?,
        origin: row.try_get("origin")?,
        attributes: row.try_get("attributes")?,
    })
}

fn gap_from_row(row: &AnyRow) -> Result<Gap, sqlx::Error> {
    let source: String = row.try_get("source")?;
    Ok(Gap {
        id: row.try_get("id")?,
        source: Source::parse(&source).unwrap_or(Source::Amqp),
        started_at: Instant(row.try_get("started_at")?),
        ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(Instant),
        cause: row.try_get("cause")?,
    })
}

fn quarantine_from_row(row: &AnyRow) -> Result<QuarantineEntry, sqlx::Error> {
    Ok(QuarantineEntry {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        reason: row.try_get("reason")?,
        exchange: row.try_get("exchange")?,
        routing_key: row.try_get("routing_key")?,
        received_at: Instant(row.try_get("received_at")?),
        body: row.try_get("body")?,
    })
}

impl Store for SqlStore {
    fn commit<'a>(&'a self, batches: &'a [Batch]) -> StoreFuture<'a, Vec<CommitOutcome>> {
        Box::pin(super::commit::commit(&self.pool, self.backend, batches))
    }

    fn open_gap<'a>(
        &'a self,
        source: Source,
        started_at: Instant,
        cause: &'a str,
    ) -> StoreFuture<'a, i64> {
        Box::pin(async move {
            let row = sqlx::query::<Any>(
                "INSERT INTO gaps (source, started_at, cause) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(source.as_str())
            .bind(started_at.micros())
            .bind(cause)
            .fetch_one(&self.pool)
            .await?;
            Ok(row.try_get::<i64, _>("id")?)
        })
    }

    fn close_gap(&self, id: i64, ended_at: Instant) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query::<Any>("UPDATE gaps SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
                .bind(ended_at.micros())
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn record_gap<'a>(
        &'a self,
        source: Source,
        started_at: Instant,
        ended_at: Instant,
        cause: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let done = sqlx::query::<Any>(
                "INSERT INTO gaps (source, started_at, ended_at, cause) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(source.as_str())
            .bind(started_at.micros())
            .bind(ended_at.micros())
            .bind(cause)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn close_stale_gaps(&self, source: Source, ended_at: Instant) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let done = sqlx::query::<Any>(
                "UPDATE gaps SET ended_at = $1, cause = cause || ' (closed at restart)' \
                 WHERE source = $2 AND ended_at IS NULL",
            )
            .bind(ended_at.micros())
            .bind(source.as_str())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    fn gaps(&self, limit: u32) -> StoreFuture<'_, Vec<Gap>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(
                "SELECT id, source, started_at, ended_at, cause FROM gaps \
                 ORDER BY started_at DESC, id DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().map(gap_from_row).collect::<Result<_, _>>()?)
        })
    }

    fn heartbeat<'a>(
        &'a self,
        source: Source,
        replica: &'a str,
        started_at: Instant,
        at: Instant,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query::<Any>(
                "INSERT INTO replica_heartbeats (source, replica, started_at, alive_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (source, replica) DO UPDATE SET alive_at = excluded.alive_at",
            )
            .bind(source.as_str())
            .bind(replica)
            .bind(started_at.micros())
            .bind(at.micros())
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn heartbeats(&self, source: Source) -> StoreFuture<'_, Vec<super::Heartbeat>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(
                "SELECT replica, started_at, alive_at FROM replica_heartbeats \
                 WHERE source = $1 ORDER BY alive_at, replica",
            )
            .bind(source.as_str())
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(super::Heartbeat {
                        replica: row.try_get("replica")?,
                        started_at: Instant(row.try_get("started_at")?),
                        alive_at: Instant(row.try_get("alive_at")?),
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    fn status(&self) -> StoreFuture<'_, StatusSummary> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(
                "SELECT source, records, duplicates, facts, fact_duplicates, quarantined, \
                 last_received_at FROM ingest_stats ORDER BY source",
            )
            .fetch_all(&self.pool)
            .await?;
            let sources = rows
                .iter()
                .map(|row| {
                    Ok(SourceStats {
                        source: row.try_get("source")?,
                        records: row.try_get("records")?,
                        duplicates: row.try_get("duplicates")?,
                        facts: row.try_get("facts")?,
                        fact_duplicates: row.try_get("fact_duplicates")?,
                        quarantined: row.try_get("quarantined")?,
                        last_received_at: row
                            .try_get::<Option<i64>, _>("last_received_at")?
                            .map(Instant),
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let count = |sql: &'static str| {
                let pool = &self.pool;
                async move {
                    let row = sqlx::query::<Any>(sql).fetch_one(pool).await?;
                    row.try_get::<i64, _>(0)
                }
            };
            Ok(StatusSummary {
                records_total: sources.iter().map(|s| s.records).sum(),
                facts_total: sources.iter().map(|s| s.facts).sum(),
                quarantined_total: count("SELECT COUNT(*) FROM quarantine").await?,
                gaps_total: count("SELECT COUNT(*) FROM gaps").await?,
                gaps_open: count("SELECT COUNT(*) FROM gaps WHERE ended_at IS NULL").await?,
                sources,
            })
        })
    }

    fn quarantine_list(&self, limit: u32) -> StoreFuture<'_, Vec<QuarantineEntry>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(
                "SELECT id, source, reason, exchange, routing_key, received_at, body \
                 FROM quarantine ORDER BY id DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .iter()
                .map(quarantine_from_row)
                .collect::<Result<_, _>>()?)
        })
    }

    fn quarantine_get(&self, id: i64) -> StoreFuture<'_, Option<QuarantineEntry>> {
        Box::pin(async move {
            let row = sqlx::query::<Any>(
                "SELECT id, source, reason, exchange, routing_key, received_at, body \
                 FROM quarantine WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.as_ref().map(quarantine_from_row).transpose()?)
        })
    }

    fn facts(&self, limit: u32) -> StoreFuture<'_, Vec<StoredFact>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
                "SELECT {FACT_COLUMNS} FROM facts ORDER BY id LIMIT $1"
            )))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(fact_from_row)
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    fn resources_until(&self, until: Instant) -> StoreStream<'_, ResourceFacts> {
        if self.backend == Backend::Sqlite {
            return sqlite::resources_until(&self.url, until);
        }
        // PostgreSQL aggregates each resource's facts into one JSON array: one row per
        // resource instead of one per fact.
        let rows = sqlx::query::<Any>(
            "SELECT resource_type, resource_id, CAST(json_agg(json_build_array(kind, \
             effective_at, project_id, origin, CAST(attributes AS json))) AS TEXT) \
             AS facts FROM facts GROUP BY resource_type, resource_id \
             HAVING MIN(effective_at) < $1 ORDER BY resource_type, resource_id",
        )
        .bind(until.micros())
        .fetch(&self.pool);
        Box::pin(futures_lite::StreamExt::map(rows, |row| {
            let row = row.map_err(StoreError::from)?;
            resource_facts(
                row.try_get(0)?,
                row.try_get(1)?,
                &row.try_get::<String, _>(2)?,
            )
        }))
    }

    fn coverage(&self) -> StoreFuture<'_, Coverage> {
        Box::pin(async move {
            // Each MIN and MAX is answered from an index (raw_records.received_at,
            // facts.effective_at); quarantine is small.
            let row = sqlx::query::<Any>(
                "SELECT (SELECT MIN(received_at) FROM raw_records), \
                 (SELECT MAX(received_at) FROM raw_records), \
                 (SELECT MIN(received_at) FROM quarantine), \
                 (SELECT MAX(received_at) FROM quarantine), \
                 (SELECT MIN(effective_at) FROM facts)",
            )
            .fetch_one(&self.pool)
            .await?;
            let get = |i: usize| row.try_get::<Option<i64>, _>(i).map(|t| t.map(Instant));
            let pick = |a: Option<Instant>,
                        b: Option<Instant>,
                        f: fn(Instant, Instant) -> Instant| {
                match (a, b) {
                    (Some(a), Some(b)) => Some(f(a, b)),
                    (a, b) => a.or(b),
                }
            };
            Ok(Coverage {
                first_input_at: pick(get(0)?, get(2)?, std::cmp::min),
                last_input_at: pick(get(1)?, get(3)?, std::cmp::max),
                first_fact_at: get(4)?,
            })
        })
    }

    fn gaps_overlapping(&self, start: Instant, end: Instant) -> StoreFuture<'_, Vec<Gap>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(
                "SELECT id, source, started_at, ended_at, cause FROM gaps \
                 WHERE started_at < $2 AND (ended_at IS NULL OR ended_at > $1) \
                 ORDER BY started_at, id",
            )
            .bind(start.micros())
            .bind(end.micros())
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().map(gap_from_row).collect::<Result<_, _>>()?)
        })
    }

    fn record_reconcile_run<'a>(&'a self, run: &'a super::ReconcileRun) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query::<Any>(
                "INSERT INTO reconcile_runs (started_at, finished_at, listed, resources_seen, \
                 facts_written, estimated, problems) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(run.started_at.micros())
            .bind(run.finished_at.micros())
            .bind(run.listed.join(","))
            .bind(run.resources_seen)
            .bind(run.facts_written)
            .bind(run.estimated)
            .bind(run.problems.clone())
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn reconcile_runs(&self, limit: u32) -> StoreFuture<'_, Vec<super::ReconcileRun>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(
                "SELECT started_at, finished_at, listed, resources_seen, facts_written, \
                 estimated, problems FROM reconcile_runs ORDER BY started_at DESC, id DESC \
                 LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let listed: String = row.try_get("listed")?;
                    Ok(super::ReconcileRun {
                        started_at: Instant(row.try_get("started_at")?),
                        finished_at: Instant(row.try_get("finished_at")?),
                        listed: listed
                            .split(',')
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned)
                            .collect(),
                        resources_seen: row.try_get("resources_seen")?,
                        facts_written: row.try_get("facts_written")?,
                        estimated: row.try_get("estimated")?,
                        problems: row.try_get("problems")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    fn record_volume_types<'a>(
        &'a self,
        types: &'a [(String, String)],
        seen_at: Instant,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            for (id, name) in types {
                sqlx::query::<Any>(
                    "INSERT INTO volume_types (id, name, seen_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, seen_at = excluded.seen_at",
                )
                .bind(id.as_str())
                .bind(name.as_str())
                .bind(seen_at.micros())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn volume_type_names(&self) -> StoreFuture<'_, std::collections::BTreeMap<String, String>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>("SELECT id, name FROM volume_types")
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|row| Ok((row.try_get("id")?, row.try_get("name")?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    fn insert_closed_period<'a>(
        &'a self,
        period: &'a super::ClosedPeriod,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let done = sqlx::query::<Any>(
                "INSERT INTO closed_periods (period_start, period_end, closed_at, digest, \
                 catalogue, report, facts_seen) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (period_start, period_end) DO NOTHING",
            )
            .bind(period.start.micros())
            .bind(period.end.micros())
            .bind(period.closed_at.micros())
            .bind(period.digest.clone())
            .bind(period.catalogue.clone())
            .bind(period.report.clone())
            .bind(period.facts_seen)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn closed_period(
        &self,
        start: Instant,
        end: Instant,
    ) -> StoreFuture<'_, Option<super::ClosedPeriod>> {
        Box::pin(async move {
            let row = sqlx::query::<Any>(
                "SELECT id, period_start, period_end, closed_at, digest, catalogue, report, \
                 facts_seen FROM closed_periods WHERE period_start = $1 AND period_end = $2",
            )
            .bind(start.micros())
            .bind(end.micros())
            .fetch_optional(&self.pool)
            .await?;
            row.map(|row| {
                Ok(super::ClosedPeriod {
                    id: row.try_get("id")?,
                    start: Instant(row.try_get("period_start")?),
                    end: Instant(row.try_get("period_end")?),
                    closed_at: Instant(row.try_get("closed_at")?),
                    digest: row.try_get("digest")?,
                    catalogue: row.try_get("catalogue")?,
                    report: row.try_get("report")?,
                    facts_seen: row.try_get("facts_seen")?,
                })
            })
            .transpose()
            .map_err(|e: sqlx::Error| StoreError::from(e))
        })
    }

    fn closed_periods(&self) -> StoreFuture<'_, Vec<super::PeriodSummary>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(
                "SELECT p.period_start, p.period_end, p.closed_at, p.digest, \
                 (SELECT COUNT(*) FROM period_corrections c WHERE c.period_id = p.id) AS n, \
                 (SELECT c.digest FROM period_corrections c WHERE c.period_id = p.id \
                  ORDER BY c.sequence DESC LIMIT 1) AS latest \
                 FROM closed_periods p ORDER BY p.period_start DESC, p.period_end DESC",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(super::PeriodSummary {
                        start: Instant(row.try_get("period_start")?),
                        end: Instant(row.try_get("period_end")?),
                        closed_at: Instant(row.try_get("closed_at")?),
                        digest: row.try_get("digest")?,
                        corrections: row.try_get("n")?,
                        latest_correction: row.try_get("latest")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    fn insert_correction<'a>(
        &'a self,
        period_id: i64,
        correction: &'a super::StoredCorrection,
        facts_seen: i64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query::<Any>(
                "INSERT INTO period_corrections (period_id, sequence, created_at, digest, \
                 correction, basis) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (period_id, sequence) DO NOTHING",
            )
            .bind(period_id)
            .bind(correction.sequence)
            .bind(correction.created_at.micros())
            .bind(correction.digest.clone())
            .bind(correction.correction.clone())
            .bind(correction.basis.clone())
            .execute(&mut *tx)
            .await?;
            let new = done.rows_affected() == 1;
            if new {
                sqlx::query::<Any>("UPDATE closed_periods SET facts_seen = $1 WHERE id = $2")
                    .bind(facts_seen)
                    .bind(period_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(new)
        })
    }

    fn corrections(&self, period_id: i64) -> StoreFuture<'_, Vec<super::StoredCorrection>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(
                "SELECT sequence, created_at, digest, correction, basis FROM period_corrections \
                 WHERE period_id = $1 ORDER BY sequence",
            )
            .bind(period_id)
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(super::StoredCorrection {
                        sequence: row.try_get("sequence")?,
                        created_at: Instant(row.try_get("created_at")?),
                        digest: row.try_get("digest")?,
                        correction: row.try_get("correction")?,
                        basis: row.try_get("basis")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    fn fact_count_before(&self, until: Instant) -> StoreFuture<'_, i64> {
        Box::pin(async move {
            let row = sqlx::query::<Any>("SELECT COUNT(*) FROM facts WHERE effective_at < $1")
                .bind(until.micros())
                .fetch_one(&self.pool)
                .await?;
            Ok(row.try_get::<i64, _>(0)?)
        })
    }

    fn mark_period_checked(&self, period_id: i64, facts_seen: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // Only forward: a slower replica must not move the mark back.
            sqlx::query::<Any>(
                "UPDATE closed_periods SET facts_seen = $1 WHERE id = $2 AND facts_seen < $1",
            )
            .bind(facts_seen)
            .bind(period_id)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }
    fn plan_deliveries<'a>(
        &'a self,
        deliveries: &'a [super::Delivery],
        now: Instant,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let mut new = 0;
            for d in deliveries {
                let done = sqlx::query::<Any>(
                    "INSERT INTO outbox (sink, period_start, period_end, project_id, kind, \
                     digest, state, attempts, next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'planned', 0, $7, $7, $7) \
                     ON CONFLICT (sink, period_start, period_end, project_id, digest) DO NOTHING",
                )
                .bind(d.sink.clone())
                .bind(d.period_start.micros())
                .bind(d.period_end.micros())
                .bind(d.project_id.clone().unwrap_or_default())
                .bind(d.kind.clone())
                .bind(d.digest.clone())
                .bind(now.micros())
                .execute(&mut *tx)
                .await?;
                new += done.rows_affected();
            }
            tx.commit().await?;
            Ok(new)
        })
    }

    fn deliveries<'a>(
        &'a self,
        sink: Option<&'a str>,
        start: Instant,
        end: Instant,
    ) -> StoreFuture<'a, Vec<super::Delivery>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE period_start = $1 AND period_end = $2 \
                 AND ($3 = '' OR sink = $3) ORDER BY id"
            )))
            .bind(start.micros())
            .bind(end.micros())
            .bind(sink.unwrap_or("").to_owned())
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(delivery_from_row)
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    fn due_deliveries<'a>(
        &'a self,
        sink: &'a str,
        now: Instant,
        limit: u32,
    ) -> StoreFuture<'a, Vec<super::Delivery>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE sink = $1 \
                 AND state IN ('planned', 'sent') AND next_attempt_at <= $2 \
                 ORDER BY next_attempt_at, id LIMIT $3"
            )))
            .bind(sink.to_owned())
            .bind(now.micros())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(delivery_from_row)
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    fn outbox_summary(&self) -> StoreFuture<'_, Vec<(String, String, i64)>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(
                "SELECT sink, state, COUNT(*) AS n FROM outbox GROUP BY sink, state \
                 ORDER BY sink, state",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok((
                        row.try_get("sink")?,
                        row.try_get("state")?,
                        row.try_get("n")?,
                    ))
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    fn update_delivery<'a>(
        &'a self,
        id: i64,
        update: &'a super::DeliveryUpdate,
        now: Instant,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query::<Any>(
                "UPDATE outbox SET state = $1, attempts = $2, last_error = $3, \
                 remote_id = COALESCE($4, remote_id), next_attempt_at = $5, updated_at = $6 \
                 WHERE id = $7",
            )
            .bind(update.state.clone())
            .bind(update.attempts)
            .bind(update.last_error.clone())
            .bind(update.remote_id.clone())
            .bind(update.next_attempt_at.micros())
            .bind(now.micros())
            .bind(id)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn events_after(
        &self,
        after: super::ForwardPosition,
        limit: u32,
    ) -> StoreFuture<'_, Vec<super::StoredEvent>> {
        Box::pin(async move {
            let sql = match self.backend {
                Backend::Sqlite => {
                    "SELECT 0 AS txid, 0 AS emitted_key, id, kind, message_id, event_type, \
                     publisher_id, emitted_at, received_at, body FROM raw_records \
                     WHERE $1 = 0 AND $2 = 0 AND id > $3 \
                     AND kind IN ('notification', 'ceilometer_event') \
                     ORDER BY id LIMIT $4"
                }
                Backend::Postgres => {
                    "SELECT CAST(CAST(txid AS TEXT) AS BIGINT) AS txid, \
                     COALESCE(emitted_at, 0) AS emitted_key, id, kind, message_id, \
                     event_type, publisher_id, emitted_at, received_at, body FROM raw_records \
                     WHERE (txid, COALESCE(emitted_at, 0), id) \
                     > (CAST(CAST($1 AS TEXT) AS xid8), $2, $3) \
                     AND txid < pg_snapshot_xmin(pg_current_snapshot()) \
                     AND kind IN ('notification', 'ceilometer_event') \
                     ORDER BY txid, COALESCE(emitted_at, 0), id LIMIT $4"
                }
            };
            let rows = sqlx::query::<Any>(sql)
                .bind(after.txid)
                .bind(after.emitted_at)
                .bind(after.record_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(super::StoredEvent {
                        position: super::ForwardPosition {
                            txid: row.try_get("txid")?,
                            emitted_at: row.try_get("emitted_key")?,
                            record_id: row.try_get("id")?,
                        },
                        kind: row.try_get("kind")?,
                        message_id: row.try_get("message_id")?,
                        event_type: row.try_get("event_type")?,
                        publisher_id: row.try_get("publisher_id")?,
                        emitted_at: row.try_get::<Option<i64>, _>("emitted_at")?.map(Instant),
                        received_at: Instant(row.try_get("received_at")?),
                        body: row.try_get("body")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    fn events_behind(&self, after: super::ForwardPosition) -> StoreFuture<'_, i64> {
        Box::pin(async move {
            let sql = match self.backend {
                Backend::Sqlite => {
                    "SELECT COUNT(*) FROM raw_records WHERE $1 = 0 AND $2 = 0 AND id > $3 \
                     AND kind IN ('notification', 'ceilometer_event')"
                }
                Backend::Postgres => {
                    "SELECT COUNT(*) FROM raw_records \
                     WHERE (txid, COALESCE(emitted_at, 0), id) \
                     > (CAST(CAST($1 AS TEXT) AS xid8), $2, $3) \
                     AND kind IN ('notification', 'ceilometer_event')"
                }
            };
            let row = sqlx::query::<Any>(sql)
                .bind(after.txid)
                .bind(after.emitted_at)
                .bind(after.record_id)
                .fetch_one(&self.pool)
                .await?;
            Ok(row.try_get(0)?)
        })
    }

    fn forward_cursors(&self) -> StoreFuture<'_, Vec<super::ForwardCursor>> {
        Box::pin(async move {
            let rows = sqlx::query::<Any>(
                "SELECT sink, txid, emitted_at, record_id, forwarded, updated_at \
                 FROM forward_cursors ORDER BY sink",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(super::ForwardCursor {
                        sink: row.try_get("sink")?,
                        position: super::ForwardPosition {
                            txid: row.try_get("txid")?,
                            emitted_at: row.try_get("emitted_at")?,
                            record_id: row.try_get("record_id")?,
                        },
                        forwarded: row.try_get("forwarded")?,
                        updated_at: Instant(row.try_get("updated_at")?),
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    fn advance_forward_cursor<'a>(
        &'a self,
        sink: &'a str,
        to: super::ForwardPosition,
        events: u64,
        now: Instant,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query::<Any>(
                "INSERT INTO forward_cursors \
                 (sink, txid, emitted_at, record_id, forwarded, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (sink) DO UPDATE SET txid = excluded.txid, \
                 emitted_at = excluded.emitted_at, record_id = excluded.record_id, \
                 forwarded = forward_cursors.forwarded + excluded.forwarded, \
                 updated_at = excluded.updated_at \
                 WHERE (forward_cursors.txid, forward_cursors.emitted_at, forward_cursors.record_id) \
                 < (excluded.txid, excluded.emitted_at, excluded.record_id)",
            )
            .bind(sink.to_owned())
            .bind(to.txid)
            .bind(to.emitted_at)
            .bind(to.record_id)
            .bind(i64::try_from(events).unwrap_or(i64::MAX))
            .bind(now.micros())
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }
}
