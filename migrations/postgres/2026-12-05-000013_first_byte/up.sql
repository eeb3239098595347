-- Time to the first byte of the response body (a stream's first event), in milliseconds.
ALTER TABLE usage_logs ADD COLUMN first_byte_ms BIGINT;
