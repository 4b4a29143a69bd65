-- One heartbeat row per serve process (replica): it listened from started_at to at least
-- alive_at. A downtime gap is recorded only for time no replica was listening.
CREATE TABLE replica_heartbeats (
    source     TEXT   NOT NULL,
    replica    TEXT   NOT NULL,
    started_at BIGINT NOT NULL,
    alive_at   BIGINT NOT NULL,
    PRIMARY KEY (source, replica)
);
INSERT INTO replica_heartbeats (source, replica, started_at, alive_at)
    SELECT source, 'before-replica-heartbeats', alive_at, alive_at FROM heartbeats;
DROP TABLE heartbeats;
-- A window is recorded once, whichever replica finds it first.
CREATE UNIQUE INDEX gaps_window ON gaps (source, started_at, ended_at);
