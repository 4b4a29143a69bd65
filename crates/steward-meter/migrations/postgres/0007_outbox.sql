-- The outbox: one row per (sink, period, project, document) to deliver — a closed report's
-- project slice or a correction of it — with its delivery state. The unique key makes planning
-- idempotent: planning twice, or on two replicas, adds nothing.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sink            TEXT   NOT NULL,
    period_start    BIGINT NOT NULL,
    period_end      BIGINT NOT NULL,
    -- The owner project; '' for usage no fact names an owner of.
    project_id      TEXT   NOT NULL,
    -- 'report' (a closed report's project slice) or 'correction'.
    kind            TEXT   NOT NULL,
    -- The closed report's or the correction's content digest.
    digest          TEXT   NOT NULL,
    -- planned, sent, confirmed, failed-permanent
    state           TEXT   NOT NULL,
    attempts        BIGINT NOT NULL,
    last_error      TEXT,
    -- What the sink calls it (a file path, a webhook id, an Odoo record id).
    remote_id       TEXT,
    next_attempt_at BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (sink, period_start, period_end, project_id, digest)
);
CREATE INDEX outbox_due ON outbox (sink, state, next_attempt_at);
