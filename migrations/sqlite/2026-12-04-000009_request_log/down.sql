CREATE INDEX usage_logs_time ON usage_logs (created_at);
CREATE INDEX usage_logs_user_time ON usage_logs (user_id, created_at);
CREATE INDEX usage_logs_key_time ON usage_logs (key_id, created_at);
DROP INDEX usage_logs_time_id;
DROP INDEX usage_logs_user_time_id;
DROP INDEX usage_logs_key_time_id;
