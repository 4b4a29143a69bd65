-- One row per reconciliation (a dry run writes nothing): what it listed, what it found and
-- wrote. A later run bounds a vanished resource by the last listing that still showed it.
CREATE TABLE reconcile_runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at     BIGINT NOT NULL,
    finished_at    BIGINT NOT NULL,
    -- Comma-separated resource types whose listings were complete (e.g. instance,volume).
    listed         TEXT   NOT NULL,
    resources_seen BIGINT NOT NULL,
    facts_written  BIGINT NOT NULL,
    estimated      BIGINT NOT NULL,
    -- Why a listing failed (the run still wrote what the others showed); NULL when none did.
    problems       TEXT
);
CREATE INDEX reconcile_runs_started ON reconcile_runs (started_at);
