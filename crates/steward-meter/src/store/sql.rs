//! The [`Store`] implementation shared by both backends, on sqlx's `Any` driver.
//!
//! One code path for SQLite and PostgreSQL: `$n` placeholders, `ON CONFLICT … DO NOTHING` for
//! dedup, integer microseconds for times, TEXT for JSON. Only connecting and the migrations
//! differ per backend (`sqlite.rs`, `postgres.rs`).

use std::collections::HashSet;
use std::fmt::Write as _;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::{
    CommitOutcome, QuarantineEntry, ResourceFacts, SourceStats, StatusSummary, Store, StoreError,
    StoreFuture, StoreStream, StoredFact, postgres, sqlite,
};
use crate::record::{Accepted, Batch, Gap, Quarantined, Source};
use crate::time::Instant;

/// Rows per multi-row INSERT (keeps the bind count far below both backends' limits).
const ROWS_PER_STATEMENT: usize = 200;

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
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            Ok(Self {
                pool: sqlite::connect(url, timeout).await?,
                backend: Backend::Sqlite,
                url: url.to_owned(),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self {
                pool: postgres::connect(url, timeout).await?,
                backend: Backend::Postgres,
                url: url.to_owned(),
            })
        } else {
            Err(StoreError::UnsupportedUrl(super::redact_url(url)))
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying pool (for tests and read-only tools).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn commit_all(&self, batches: &[Batch]) -> Result<Vec<CommitOutcome>, StoreError> {
        let committed_at = Instant::now();
        let mut tx = self.pool.begin().await?;
        let mut seen_records = HashSet::new();
        let mut seen_facts = HashSet::new();
        let mut seen_quarantine = HashSet::new();
        let mut outcomes = Vec::with_capacity(batches.len());
        for batch in batches {
            let mut outcome = CommitOutcome::default();
            let mut accepted: Vec<&Accepted> = batch
                .accepted
                .iter()
                .filter(|a| seen_records.insert(a.record.dedup_key.as_str()))
                .collect();
            // Insert in key order: replicas committing overlapping keys (redeliveries after a
            // crash) then take their locks in the same order and cannot deadlock.
            accepted.sort_unstable_by(|x, y| x.record.dedup_key.cmp(&y.record.dedup_key));
            for chunk in accepted.chunks(ROWS_PER_STATEMENT) {
                outcome.records +=
                    insert_records(self.backend, &mut tx, chunk, committed_at).await?;
            }
            outcome.duplicates = batch.accepted.len() as u64 - outcome.records;
            let facts: Vec<(&str, &crate::facts::Fact, String)> = batch
                .accepted
                .iter()
                .flat_map(|a| {
                    a.facts
                        .iter()
                        .map(move |f| (a.record.dedup_key.as_str(), f))
                })
                .map(|(key, fact)| (key, fact, fact.semantic_key()))
                .collect();
            let total_facts = facts.len() as u64;
            let mut fresh: Vec<_> = facts
                .into_iter()
                .filter(|(_, _, k)| seen_facts.insert(k.clone()))
                .collect();
            fresh.sort_unstable_by(|x, y| x.2.cmp(&y.2));
            for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
                outcome.facts += insert_facts(self.backend, &mut tx, chunk).await?;
            }
            outcome.fact_duplicates = total_facts - outcome.facts;
            let quarantined: Vec<(&Quarantined, String)> = batch
                .quarantined
                .iter()
                .map(|q| (q, q.digest()))
                .filter(|(_, d)| seen_quarantine.insert(d.clone()))
                .collect();
            for chunk in quarantined.chunks(ROWS_PER_STATEMENT) {
                outcome.quarantined += insert_quarantine(self.backend, &mut tx, chunk).await?;
            }
            let source = batch
                .accepted
                .first()
                .map(|a| a.record.source)
                .or_else(|| batch.quarantined.first().map(|q| q.source));
            if let Some(source) = source {
                let last_received = batch
                    .accepted
                    .iter()
                    .map(|a| a.record.received_at)
                    .chain(batch.quarantined.iter().map(|q| q.received_at))
                    .max();
                bump_stats(&mut tx, source, &outcome, batch, last_received).await?;
            }
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// `($1,$2,…),($k,…)` for `rows` rows of `cols` columns; on SQLite anonymous `?`s.
///
/// Why two forms: sqlx-sqlite maps every *named* parameter (`$n`) through
/// `sqlite3_bind_parameter_name`, which is a linear search, so binding a multi-row INSERT with
/// `$n` is quadratic in its parameter count (60 % of ingest CPU in the benchmark). Anonymous
/// `?`s bind by position. PostgreSQL needs `$n`.
fn values_clause(backend: Backend, rows: usize, cols: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ",(" });
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    let _ = write!(sql, "${}", r * cols + c + 1);
                }
            }
        }
        sql.push(')');
    }
    sql
}

async fn insert_records(
    backend: Backend,
    tx: &mut Transaction<'_, Any>,
    chunk: &[&Accepted],
    committed_at: Instant,
) -> Result<u64, StoreError> {
    let sql = format!(
        "INSERT INTO raw_records (dedup_key, source, kind, message_id, exchange, routing_key, \
         envelope_version, publisher_id, event_type, priority, emitted_at, received_at, \
         committed_at, body) VALUES {} ON CONFLICT (dedup_key) DO NOTHING",
        values_clause(backend, chunk.len(), 14)
    );
    let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
    for a in chunk {
        let r = &a.record;
        query = query
            .bind(r.dedup_key.as_str())
            .bind(r.source.as_str())
            .bind(r.kind.as_str())
            .bind(r.message_id.as_deref())
            .bind(r.exchange.as_deref())
            .bind(r.routing_key.as_deref())
            .bind(r.envelope_version.as_deref())
            .bind(r.publisher_id.as_deref())
            .bind(r.event_type.as_deref())
            .bind(r.priority.as_deref())
            .bind(r.emitted_at.map(Instant::micros))
            .bind(r.received_at.micros())
            .bind(committed_at.micros())
            .bind(r.body.as_str());
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

async fn insert_facts(
    backend: Backend,
    tx: &mut Transaction<'_, Any>,
    chunk: &[(&str, &crate::facts::Fact, String)],
) -> Result<u64, StoreError> {
    let sql = format!(
        "INSERT INTO facts (semantic_key, record_key, resource_type, resource_id, project_id, \
         user_id, kind, effective_at, time_source, origin, event_type, attributes) VALUES {} \
         ON CONFLICT (semantic_key) DO NOTHING",
        values_clause(backend, chunk.len(), 12)
    );
    let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
    for (record_key, f, semantic_key) in chunk {
        query = query
            .bind(semantic_key.as_str())
            .bind(*record_key)
            .bind(f.resource_type.as_str())
            .bind(f.resource_id.as_str())
            .bind(f.project_id.as_deref())
            .bind(f.user_id.as_deref())
            .bind(f.kind.as_str())
            .bind(f.effective_at.micros())
            .bind(f.time_source.as_str())
            .bind(f.origin.as_str())
            .bind(f.event_type.as_str())
            .bind(f.attributes_json());
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

async fn insert_quarantine(
    backend: Backend,
    tx: &mut Transaction<'_, Any>,
    chunk: &[(&Quarantined, String)],
) -> Result<u64, StoreError> {
    let sql = format!(
        "INSERT INTO quarantine (digest, source, reason, exchange, routing_key, received_at, \
         body) VALUES {} ON CONFLICT (digest) DO NOTHING",
        values_clause(backend, chunk.len(), 7)
    );
    let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
    for (q, digest) in chunk {
        query = query
            .bind(digest.as_str())
            .bind(q.source.as_str())
            .bind(q.reason.as_str())
            .bind(q.exchange.as_deref())
            .bind(q.routing_key.as_deref())
            .bind(q.received_at.micros())
            .bind(q.body.clone());
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

async fn bump_stats(
    tx: &mut Transaction<'_, Any>,
    source: Source,
    outcome: &CommitOutcome,
    batch: &Batch,
    last_received: Option<Instant>,
) -> Result<(), StoreError> {
    let quarantined = batch.quarantined.len() as i64;
    sqlx::query::<Any>(
        "INSERT INTO ingest_stats (source, records, duplicates, facts, fact_duplicates, \
         quarantined, last_received_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (source) DO UPDATE SET \
           records = ingest_stats.records + excluded.records, \
           duplicates = ingest_stats.duplicates + excluded.duplicates, \
           facts = ingest_stats.facts + excluded.facts, \
           fact_duplicates = ingest_stats.fact_duplicates + excluded.fact_duplicates, \
           quarantined = ingest_stats.quarantined + excluded.quarantined, \
           last_received_at = CASE \
             WHEN ingest_stats.last_received_at IS NULL \
               OR excluded.last_received_at > ingest_stats.last_received_at \
             THEN excluded.last_received_at ELSE ingest_stats.last_received_at END",
    )
    .bind(source.as_str())
    .bind(outcome.records as i64)
    .bind(outcome.duplicates as i64)
    .bind(outcome.facts as i64)
    .bind(outcome.fact_duplicates as i64)
    .bind(quarantined)
    .bind(last_received.map(Instant::micros))
    .execute(&mut **tx)
    .await?;
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
        Box::pin(self.commit_all(batches))
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

    fn heartbeat(&self, source: Source, at: Instant) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query::<Any>(
                "INSERT INTO heartbeats (source, alive_at) VALUES ($1, $2) \
                 ON CONFLICT (source) DO UPDATE SET alive_at = excluded.alive_at",
            )
            .bind(source.as_str())
            .bind(at.micros())
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn last_heartbeat(&self, source: Source) -> StoreFuture<'_, Option<Instant>> {
        Box::pin(async move {
            let row = sqlx::query::<Any>("SELECT alive_at FROM heartbeats WHERE source = $1")
                .bind(source.as_str())
                .fetch_optional(&self.pool)
                .await?;
            Ok(match row {
                Some(row) => Some(Instant(row.try_get("alive_at")?)),
                None => None,
            })
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
             AS facts FROM facts WHERE effective_at < $1 \
             GROUP BY resource_type, resource_id ORDER BY resource_type, resource_id",
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
}

#[cfg(test)]
mod unit {
    use super::{Backend, values_clause};

    #[test]
    fn values_clause_numbers_placeholders_row_major() {
        assert_eq!(
            values_clause(Backend::Postgres, 2, 3),
            "($1,$2,$3),($4,$5,$6)"
        );
        assert_eq!(values_clause(Backend::Sqlite, 2, 2), "(?,?),(?,?)");
    }
}
