-- Credentials are scrubbed from raw bodies before they are stored; the record says which
-- JSON paths were scrubbed (NULL: the body is exactly as received).
ALTER TABLE raw_records ADD COLUMN scrubbed TEXT;
