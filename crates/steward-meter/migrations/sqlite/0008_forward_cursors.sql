-- How far each event forwarder (Ceilometer format, `meter.sinks[].type: ceilometer`) has
-- delivered: its position in the stored records. On SQLite, records are written by one writer,
-- each batch in emission order, so their ids are in commit order and the position is the id
-- alone (`txid` and `emitted_at` stay 0).
CREATE TABLE forward_cursors (
    sink       TEXT   PRIMARY KEY,
    txid       BIGINT NOT NULL,
    emitted_at BIGINT NOT NULL,
    record_id  BIGINT NOT NULL,
    -- Events delivered so far (a count for `status`; a retried batch counts again).
    forwarded  BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
