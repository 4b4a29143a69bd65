-- Ingest schema: raw records (evidence), facts, quarantine, gaps, counters.
-- Times are microseconds since the Unix epoch (UTC) in BIGINT columns.

CREATE TABLE raw_records (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedup_key        TEXT    NOT NULL UNIQUE,
    source           TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    message_id       TEXT,
    exchange         TEXT,
    routing_key      TEXT,
    envelope_version TEXT,
    publisher_id     TEXT,
    event_type       TEXT,
    priority         TEXT,
    emitted_at       BIGINT,
    received_at      BIGINT  NOT NULL,
    committed_at     BIGINT  NOT NULL,
    body             TEXT    NOT NULL
);
CREATE INDEX raw_records_received ON raw_records (received_at);

CREATE TABLE facts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    semantic_key  TEXT    NOT NULL UNIQUE,
    record_key    TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    project_id    TEXT,
    user_id       TEXT,
    kind          TEXT    NOT NULL,
    effective_at  BIGINT  NOT NULL,
    time_source   TEXT    NOT NULL,
    origin        TEXT    NOT NULL,
    event_type    TEXT    NOT NULL,
    attributes    TEXT    NOT NULL
);
CREATE INDEX facts_resource ON facts (resource_type, resource_id, effective_at);
CREATE INDEX facts_effective ON facts (effective_at);

CREATE TABLE quarantine (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest      TEXT    NOT NULL UNIQUE,
    source      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    exchange    TEXT,
    routing_key TEXT,
    received_at BIGINT  NOT NULL,
    body        BYTEA   NOT NULL
);

CREATE TABLE gaps (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source     TEXT    NOT NULL,
    started_at BIGINT  NOT NULL,
    ended_at   BIGINT,
    cause      TEXT    NOT NULL
);

CREATE TABLE ingest_stats (
    source           TEXT   PRIMARY KEY,
    records          BIGINT NOT NULL DEFAULT 0,
    duplicates       BIGINT NOT NULL DEFAULT 0,
    facts            BIGINT NOT NULL DEFAULT 0,
    fact_duplicates  BIGINT NOT NULL DEFAULT 0,
    quarantined      BIGINT NOT NULL DEFAULT 0,
    last_received_at BIGINT
);

CREATE TABLE heartbeats (
    source   TEXT   PRIMARY KEY,
    alive_at BIGINT NOT NULL
);
