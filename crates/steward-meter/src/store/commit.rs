//! The commit path: one transaction per group of batches, and its three outcomes.
//!
//! # Outcomes
//!
//! - **Delivered.** `COMMIT` returned `Ok` on the connection that ran the whole transaction;
//!   everything in the group is durable and may be acknowledged.
//! - **Errored** (transient). A failure that says nothing about any one input: the connection
//!   was lost, the database is locked or busy, the disk is full, an I/O error, a serialization
//!   failure or deadlock. Nothing of the group is kept; the caller nacks with requeue or answers
//!   503, and the input comes back.
//! - **Rejected.** The database refused a value for what it is (PostgreSQL SQLSTATE classes 22
//!   data exception, 23 integrity violation, 54 program limit; SQLite `SQLITE_CONSTRAINT`,
//!   `SQLITE_TOOBIG`, `SQLITE_MISMATCH`; a value that cannot be encoded). The group is then
//!   written again input by input, each in its own savepoint: an input the database refuses is
//!   quarantined with the database's reason, every other input is committed. A poison input
//!   therefore never loops and never blocks what follows, and is never dropped.
//!
//! Before any SQL runs, inputs that no backend could keep identically are split off and
//! quarantined with a reason naming the field ([`unstorable`]): a NUL character in any text
//! (PostgreSQL refuses it in `TEXT`; SQLite would keep it and truncate it in some functions) and
//! identifiers longer than [`MAX_IDENTIFIER_BYTES`] (PostgreSQL cannot index them). So SQLite and
//! PostgreSQL store the same things, and the common poison costs no failed transaction.
//!
//! # Connection hygiene
//!
//! A transaction is begun with an explicit `BEGIN` (`BEGIN IMMEDIATE` on SQLite) and ended with
//! `COMMIT` on the same pooled connection, and a connection on which any statement of the
//! transaction failed is **closed, never returned to the pool**. SQLite may roll a transaction
//! back by itself after `SQLITE_FULL` or an I/O error; a connection whose transaction state is
//! uncertain would otherwise carry on inside a transaction that never ends: later "commits" on it
//! succeed as nested savepoints that never reach the file, while every other connection waits
//! on its write lock ("database is locked"). With an explicit `BEGIN`, a connection still inside
//! a transaction fails loudly instead of nesting.

use std::collections::HashSet;
use std::fmt::Write as _;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};

use super::sql::Backend;
use super::{CommitOutcome, Rejected, StoreError};
use crate::facts::Fact;
use crate::record::{Accepted, Batch, Quarantined, Source};
use crate::time::Instant;

/// Rows per multi-row INSERT (keeps the bind count far below both backends' limits).
const ROWS_PER_STATEMENT: usize = 200;

/// Longest identifier (ids, keys, names) kept; PostgreSQL's B-tree entries hold at most about
/// 2,700 bytes, and no OpenStack identifier comes near this.
pub const MAX_IDENTIFIER_BYTES: usize = 1024;

/// Commits `batches` in one transaction; see the module docs for the outcomes.
pub(super) async fn commit(
    pool: &AnyPool,
    backend: Backend,
    batches: &[Batch],
) -> Result<Vec<CommitOutcome>, StoreError> {
    let plans: Vec<BatchPlan<'_>> = batches.iter().map(BatchPlan::new).collect();
    match in_transaction(pool, backend, &plans, Mode::Together).await {
        Err(error) if error.is_rejection() => {
            tracing::warn!(
                error = %crate::ingest::writer::anyhow_like(&error),
                "the store refused an input; committing input by input to quarantine it"
            );
            in_transaction(pool, backend, &plans, Mode::OneByOne).await
        }
        other => other,
    }
}

/// How the inputs of a group are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Multi-row statements: the fast path.
    Together,
    /// One input per savepoint, quarantining what the database refuses.
    OneByOne,
}

/// One batch, split into what will be written and what was refused before any SQL.
struct BatchPlan<'a> {
    batch: &'a Batch,
    keep: Vec<&'a Accepted>,
    refused: Vec<(&'a Accepted, String)>,
}

impl<'a> BatchPlan<'a> {
    fn new(batch: &'a Batch) -> Self {
        let mut keep = Vec::with_capacity(batch.accepted.len());
        let mut refused = Vec::new();
        for a in &batch.accepted {
            match unstorable(a) {
                None => keep.push(a),
                Some(reason) => refused.push((a, reason)),
            }
        }
        Self {
            batch,
            keep,
            refused,
        }
    }
}

/// A pooled connection that is closed instead of returned to the pool unless the transaction
/// on it ended cleanly (also when the commit future is dropped half-way).
struct TxConnection {
    conn: PoolConnection<Any>,
    clean: bool,
}

impl Drop for TxConnection {
    fn drop(&mut self) {
        if !self.clean {
            self.conn.close_on_drop();
        }
    }
}

async fn in_transaction(
    pool: &AnyPool,
    backend: Backend,
    plans: &[BatchPlan<'_>],
    mode: Mode,
) -> Result<Vec<CommitOutcome>, StoreError> {
    let mut tx = TxConnection {
        conn: pool.acquire().await?,
        clean: false,
    };
    let begin = match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    let result = async {
        sqlx::raw_sql(begin).execute(&mut *tx.conn).await?;
        let outcomes = write_group(&mut tx.conn, backend, plans, mode).await?;
        sqlx::raw_sql("COMMIT").execute(&mut *tx.conn).await?;
        Ok::<_, StoreError>(outcomes)
    }
    .await;
    match result {
        Ok(outcomes) => {
            tx.clean = true;
            Ok(outcomes)
        }
        Err(error) => {
            // Best effort; the connection is closed either way (see the module docs).
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *tx.conn).await;
            Err(error)
        }
    }
}

async fn write_group(
    conn: &mut AnyConnection,
    backend: Backend,
    plans: &[BatchPlan<'_>],
    mode: Mode,
) -> Result<Vec<CommitOutcome>, StoreError> {
    let committed_at = Instant::now();
    let mut seen_records = HashSet::new();
    let mut seen_quarantine = HashSet::new();
    let mut outcomes = Vec::with_capacity(plans.len());
    for plan in plans {
        let mut outcome = CommitOutcome::default();
        let mut refused: Vec<(&Accepted, String)> = plan.refused.clone();
        let mut first_seen: Vec<&Accepted> = plan
            .keep
            .iter()
            .copied()
            .filter(|a| seen_records.insert(a.record.dedup_key.as_str()))
            .collect();
        match backend {
            // Insert in key order: replicas committing overlapping keys (redeliveries after a
            // crash) then take their locks in the same order and cannot deadlock.
            Backend::Postgres => {
                first_seen.sort_unstable_by(|x, y| x.record.dedup_key.cmp(&y.record.dedup_key));
            }
            // One writer, no lock order to keep: insert in emission order, so that ids —
            // the order event forwarders read in — follow the services' own order.
            Backend::Sqlite => first_seen.sort_unstable_by(|x, y| {
                (x.record.emitted_at, &x.record.dedup_key)
                    .cmp(&(y.record.emitted_at, &y.record.dedup_key))
            }),
        }
        match mode {
            Mode::Together => {
                for chunk in first_seen.chunks(ROWS_PER_STATEMENT) {
                    outcome.records += insert_records(backend, conn, chunk, committed_at).await?;
                }
                let mut facts = facts_of(&plan.keep);
                let total = facts.len() as u64;
                preferred_copies(&mut facts);
                for chunk in facts.chunks(ROWS_PER_STATEMENT) {
                    outcome.facts += insert_facts(backend, conn, chunk).await?;
                }
                outcome.fact_duplicates = total - outcome.facts;
            }
            Mode::OneByOne => {
                for a in &first_seen {
                    let mut facts = facts_of(std::slice::from_ref(a));
                    preferred_copies(&mut facts);
                    sqlx::raw_sql("SAVEPOINT steward_input")
                        .execute(&mut *conn)
                        .await?;
                    let written = async {
                        let records =
                            insert_records(backend, conn, std::slice::from_ref(a), committed_at)
                                .await?;
                        let facts_written = if facts.is_empty() {
                            0
                        } else {
                            insert_facts(backend, conn, &facts).await?
                        };
                        Ok::<_, StoreError>((records, facts_written))
                    }
                    .await;
                    match written {
                        Ok((records, facts_written)) => {
                            sqlx::raw_sql("RELEASE SAVEPOINT steward_input")
                                .execute(&mut *conn)
                                .await?;
                            outcome.records += records;
                            outcome.facts += facts_written;
                        }
                        Err(error) if error.is_rejection() => {
                            sqlx::raw_sql("ROLLBACK TO SAVEPOINT steward_input")
                                .execute(&mut *conn)
                                .await?;
                            let reason = format!("the database refused it: {}", db_reason(&error));
                            refused.push((a, reason));
                        }
                        Err(error) => return Err(error),
                    }
                }
                let refused_keys: HashSet<&str> = refused
                    .iter()
                    .map(|(a, _)| a.record.dedup_key.as_str())
                    .collect();
                let offered = plan
                    .keep
                    .iter()
                    .filter(|a| !refused_keys.contains(a.record.dedup_key.as_str()))
                    .map(|a| a.facts.len() as u64)
                    .sum::<u64>();
                outcome.fact_duplicates = offered.saturating_sub(outcome.facts);
            }
        }
        let refused_count = refused.len();
        outcome.duplicates = (plan.batch.accepted.len() - refused_count) as u64 - outcome.records;
        let refused_entries: Vec<Quarantined> = refused
            .iter()
            .map(|(a, reason)| quarantine_entry(a, reason))
            .collect();
        let quarantined: Vec<(&Quarantined, String)> = plan
            .batch
            .quarantined
            .iter()
            .chain(&refused_entries)
            .map(|q| (q, q.digest()))
            .filter(|(_, d)| seen_quarantine.insert(d.clone()))
            .collect();
        for chunk in quarantined.chunks(ROWS_PER_STATEMENT) {
            outcome.quarantined += insert_quarantine(backend, conn, chunk).await?;
        }
        outcome.rejected = refused
            .into_iter()
            .map(|(a, reason)| Rejected {
                dedup_key: a.record.dedup_key.clone(),
                reason,
            })
            .collect();
        let batch = plan.batch;
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
            let quarantined = (batch.quarantined.len() + refused_count) as i64;
            bump_stats(conn, source, &outcome, quarantined, last_received).await?;
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// `(record key, fact, semantic key)` for every fact of `accepted`.
fn facts_of<'a>(accepted: &[&'a Accepted]) -> Vec<(&'a str, &'a Fact, String)> {
    accepted
        .iter()
        .flat_map(|a| {
            a.facts
                .iter()
                .map(move |f| (a.record.dedup_key.as_str(), f, f.semantic_key()))
        })
        .collect()
}

/// Sorts `facts` by semantic key (the lock order) and keeps, of several copies of one key,
/// the one of lowest [`crate::facts::CopyRank`]; the database keeps the lowest across
/// commits ([`insert_facts`]).
fn preferred_copies(facts: &mut Vec<(&str, &Fact, String)>) {
    facts.sort_unstable_by(|x, y| x.2.cmp(&y.2));
    if facts.windows(2).all(|w| w[0].2 != w[1].2) {
        return; // the common case: no two copies of one transition in this batch
    }
    // Ranks are computed for the copies only (a rank serialises the attributes).
    let mut kept: Vec<(&str, &Fact, String)> = Vec::with_capacity(facts.len());
    for entry in facts.drain(..) {
        match kept.last_mut() {
            Some(last) if last.2 == entry.2 => {
                if entry.1.copy_rank() < last.1.copy_rank() {
                    *last = entry;
                }
            }
            _ => kept.push(entry),
        }
    }
    *facts = kept;
}

/// The quarantine entry for an input the store could not keep: its bytes as received.
fn quarantine_entry(a: &Accepted, reason: &str) -> Quarantined {
    let r = &a.record;
    Quarantined {
        source: r.source,
        reason: reason.to_owned(),
        exchange: r.exchange.clone(),
        routing_key: r.routing_key.clone(),
        received_at: r.received_at,
        body: r.body.as_bytes().to_vec(),
    }
}

/// The database's own words for a refusal, with its code.
fn db_reason(error: &StoreError) -> String {
    match error {
        StoreError::Query(sqlx::Error::Database(db)) => match db.code() {
            Some(code) => format!("{} (code {code})", db.message()),
            None => db.message().to_owned(),
        },
        StoreError::Query(sqlx::Error::Encode(e)) => format!("cannot encode a value: {e}"),
        other => crate::ingest::writer::anyhow_like(other).to_string(),
    }
}

/// Why no backend could keep `a` as it is, or `None` when it is storable.
pub fn unstorable(a: &Accepted) -> Option<String> {
    let r = &a.record;
    let record_fields = [
        ("dedup_key", Some(&r.dedup_key)),
        ("message_id", r.message_id.as_ref()),
        ("exchange", r.exchange.as_ref()),
        ("routing_key", r.routing_key.as_ref()),
        ("envelope_version", r.envelope_version.as_ref()),
        ("publisher_id", r.publisher_id.as_ref()),
        ("event_type", r.event_type.as_ref()),
        ("priority", r.priority.as_ref()),
    ];
    for (name, value) in record_fields {
        if let Some(problem) = value.and_then(|v| identifier_problem(v)) {
            return Some(format!("{name} {problem}"));
        }
    }
    if r.body.contains('\0') {
        return Some(format!("body {NUL}"));
    }
    for (i, f) in a.facts.iter().enumerate() {
        let fields = [
            ("resource_id", Some(&f.resource_id)),
            ("project_id", f.project_id.as_ref()),
            ("user_id", f.user_id.as_ref()),
            ("event_type", Some(&f.event_type)),
        ];
        for (name, value) in fields {
            if let Some(problem) = value.and_then(|v| identifier_problem(v)) {
                return Some(format!("{} of fact {i} {problem}", field_label(name, f)));
            }
        }
        for (key, value) in &f.attributes {
            if key.contains('\0') || json_has_nul(value) {
                return Some(format!("attribute {key:?} of fact {i} {NUL}"));
            }
        }
    }
    None
}

const NUL: &str = "contains a NUL character (U+0000), which the store cannot keep as text";

fn field_label(name: &str, f: &Fact) -> String {
    format!("{} field {name}", f.resource_type.as_str())
}

fn identifier_problem(value: &str) -> Option<String> {
    if value.contains('\0') {
        Some(NUL.to_owned())
    } else if value.len() > MAX_IDENTIFIER_BYTES {
        Some(format!(
            "is {} bytes long; identifiers of more than {MAX_IDENTIFIER_BYTES} bytes are not kept",
            value.len()
        ))
    } else {
        None
    }
}

fn json_has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

/// Text for quarantine's own columns: a NUL becomes the visible escape `\0` (the body keeps the
/// bytes exactly, in a binary column).
fn storable_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\\0").into()
    } else {
        text.into()
    }
}

/// `($1,$2,…),($k,…)` for `rows` rows of `cols` columns; on SQLite anonymous `?`s.
///
/// Why two forms: sqlx-sqlite maps every *named* parameter (`$n`) through
/// `sqlite3_bind_parameter_name`, which is a linear search, so binding a multi-row INSERT with
/// `$n` is quadratic in its parameter count (60 % of ingest CPU in the benchmark). Anonymous
/// `?`s bind by position. PostgreSQL needs `$n`.
pub(super) fn values_clause(backend: Backend, rows: usize, cols: usize) -> String {
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
    conn: &mut AnyConnection,
    chunk: &[&Accepted],
    committed_at: Instant,
) -> Result<u64, StoreError> {
    if chunk.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "INSERT INTO raw_records (dedup_key, source, kind, message_id, exchange, routing_key, \
         envelope_version, publisher_id, event_type, priority, emitted_at, received_at, \
         committed_at, body, scrubbed) VALUES {} ON CONFLICT (dedup_key) DO NOTHING",
        values_clause(backend, chunk.len(), 15)
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
            .bind(r.body.as_str())
            .bind(r.scrubbed.as_deref());
    }
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

/// Inserts the facts of `chunk` (unique semantic keys) and returns how many were new. A fact
/// whose key is stored already replaces the stored copy when it ranks lower
/// ([`crate::facts::CopyRank`]), so the store keeps the same copy whatever the arrival order.
async fn insert_facts(
    backend: Backend,
    conn: &mut AnyConnection,
    chunk: &[(&str, &Fact, String)],
) -> Result<u64, StoreError> {
    let sql = format!(
        "INSERT INTO facts (semantic_key, record_key, resource_type, resource_id, project_id, \
         user_id, kind, effective_at, time_source, origin, event_type, attributes) VALUES {} \
         ON CONFLICT (semantic_key) DO NOTHING RETURNING semantic_key",
        values_clause(backend, chunk.len(), 12)
    );
    let mut query = sqlx::query_scalar::<Any, String>(sqlx::AssertSqlSafe(sql));
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
    let inserted: HashSet<String> = query.fetch_all(&mut *conn).await?.into_iter().collect();
    let copies: Vec<&(&str, &Fact, String)> = chunk
        .iter()
        .filter(|(_, _, key)| !inserted.contains(key))
        .collect();
    if !copies.is_empty() {
        replace_outranked(backend, conn, &copies).await?;
    }
    Ok(inserted.len() as u64)
}

/// For facts whose semantic key was stored already: replaces each stored copy that ranks
/// higher than the new one.
async fn replace_outranked(
    backend: Backend,
    conn: &mut AnyConnection,
    copies: &[&(&str, &Fact, String)],
) -> Result<(), StoreError> {
    let p = |i: usize| match backend {
        Backend::Sqlite => "?".to_owned(),
        Backend::Postgres => format!("${i}"),
    };
    let placeholders = (1..=copies.len()).map(p).collect::<Vec<_>>().join(",");
    let sql = format!(
        "SELECT semantic_key, time_source, project_id, origin, effective_at, event_type, \
         attributes, user_id FROM facts WHERE semantic_key IN ({placeholders})"
    );
    let mut query = sqlx::query_as::<
        Any,
        (
            String,
            String,
            Option<String>,
            String,
            i64,
            String,
            String,
            Option<String>,
        ),
    >(sqlx::AssertSqlSafe(sql));
    for (_, _, key) in copies {
        query = query.bind(key.as_str());
    }
    let stored: std::collections::HashMap<String, crate::facts::CopyRank> = query
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(
            |(key, source, project, origin, at, event_type, attributes, user)| {
                let rank = crate::facts::CopyRank::new(
                    &source,
                    project.as_deref(),
                    &origin,
                    at,
                    &event_type,
                    &attributes,
                    user.as_deref(),
                );
                (key, rank)
            },
        )
        .collect();
    for (record_key, f, key) in copies {
        if stored.get(key).is_some_and(|old| f.copy_rank() >= *old) {
            continue;
        }
        let sql = format!(
            "UPDATE facts SET record_key = {}, project_id = {}, user_id = {}, effective_at = {}, \
             time_source = {}, origin = {}, event_type = {}, attributes = {} \
             WHERE semantic_key = {}",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            p(7),
            p(8),
            p(9)
        );
        sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
            .bind(*record_key)
            .bind(f.project_id.as_deref())
            .bind(f.user_id.as_deref())
            .bind(f.effective_at.micros())
            .bind(f.time_source.as_str())
            .bind(f.origin.as_str())
            .bind(f.event_type.as_str())
            .bind(f.attributes_json())
            .bind(key.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn insert_quarantine(
    backend: Backend,
    conn: &mut AnyConnection,
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
            .bind(storable_text(&q.reason).into_owned())
            .bind(q.exchange.as_deref().map(|t| storable_text(t).into_owned()))
            .bind(
                q.routing_key
                    .as_deref()
                    .map(|t| storable_text(t).into_owned()),
            )
            .bind(q.received_at.micros())
            .bind(q.body.clone());
    }
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

async fn bump_stats(
    conn: &mut AnyConnection,
    source: Source,
    outcome: &CommitOutcome,
    quarantined: i64,
    last_received: Option<Instant>,
) -> Result<(), StoreError> {
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
    .execute(&mut *conn)
    .await?;
    Ok(())
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
