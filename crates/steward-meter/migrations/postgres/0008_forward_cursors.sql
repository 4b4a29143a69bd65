-- How far each event forwarder (Ceilometer format, `meter.sinks[].type: ceilometer`) has
-- delivered: its position in the stored records.
--
-- Several replicas write raw records at once, so ids are not in commit order: a transaction can
-- take id 103, another id 105 and commit first. A forwarder that passed 105 would never see 103.
-- Each record therefore carries the id of the transaction that wrote it, and a forwarder reads
-- only records of transactions older than every transaction still running
-- (`pg_snapshot_xmin(pg_current_snapshot())`), in (txid, emitted_at, id) order: whatever becomes
-- readable later sorts after everything read before, and the records of one transaction go out
-- in the order their services emitted them.
ALTER TABLE raw_records ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX raw_records_forward ON raw_records (txid, (COALESCE(emitted_at, 0)), id);

CREATE TABLE forward_cursors (
    sink       TEXT   PRIMARY KEY,
    txid       BIGINT NOT NULL,
    emitted_at BIGINT NOT NULL,
    record_id  BIGINT NOT NULL,
    -- Events delivered so far (a count for `status`; a retried batch counts again).
    forwarded  BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
