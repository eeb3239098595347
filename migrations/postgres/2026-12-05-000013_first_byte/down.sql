ALTER TABLE usage_logs DROP COLUMN first_byte_ms;
