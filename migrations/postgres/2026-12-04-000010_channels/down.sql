ALTER TABLE usage_logs DROP COLUMN attempts;
ALTER TABLE usage_logs DROP COLUMN channel;
DROP TABLE channels;
