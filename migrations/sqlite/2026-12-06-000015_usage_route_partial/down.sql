DROP INDEX usage_logs_route_time;
CREATE INDEX usage_logs_route_time ON usage_logs (route_id, created_at);
