-- Volume type names, as the reconciler last listed them from cinder: notifications carry only
-- the type's id, and reports name products by the type's name (volume:ssd, not a UUID).
CREATE TABLE volume_types (
    id      TEXT   PRIMARY KEY,
    name    TEXT   NOT NULL,
    seen_at BIGINT NOT NULL
);
