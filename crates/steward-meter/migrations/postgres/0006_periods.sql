-- Closed billing periods: the report as closed (immutable, with its completeness statement and
-- digest) and the catalogue it was computed with, so later corrections use the same products.
CREATE TABLE closed_periods (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    period_start BIGINT NOT NULL,
    period_end   BIGINT NOT NULL,
    closed_at    BIGINT NOT NULL,
    -- The closed report's content digest (sha256:…), which corrections name.
    digest       TEXT   NOT NULL,
    -- Canonical JSON of the product catalogue the report was computed with.
    catalogue    TEXT   NOT NULL,
    -- Canonical JSON of the closed report, completeness statement included. Never updated.
    report       TEXT   NOT NULL,
    -- Facts stored when the period was last compared with the store (close or correction
    -- check): more facts than this is what makes a correction check recompute.
    facts_seen   BIGINT NOT NULL,
    UNIQUE (period_start, period_end)
);

-- Corrections of a closed period, in order: each carries only the delta from the state before
-- it (the closed report, or the previous correction) and the full recomputed report it leads
-- to, which the next correction is computed against.
CREATE TABLE period_corrections (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    period_id   BIGINT NOT NULL REFERENCES closed_periods (id),
    sequence    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    digest      TEXT   NOT NULL,
    correction  TEXT   NOT NULL,
    basis       TEXT   NOT NULL,
    UNIQUE (period_id, sequence)
);
