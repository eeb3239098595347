-- The per-request log reads usage_logs newest first, a page at a time, by the keyset
-- (created_at, id), optionally for one user or one key: one index per access path ends with
-- both, so a page is an index range scan at any depth. They replace the (…, created_at) indexes,
-- whose prefixes the statistics queries keep using.
CREATE INDEX usage_logs_time_id ON usage_logs (created_at, id);
CREATE INDEX usage_logs_user_time_id ON usage_logs (user_id, created_at, id);
CREATE INDEX usage_logs_key_time_id ON usage_logs (key_id, created_at, id);
DROP INDEX usage_logs_time;
DROP INDEX usage_logs_user_time;
DROP INDEX usage_logs_key_time;
