ALTER TABLE api_keys DROP COLUMN imported;
DROP INDEX usage_logs_route_time;
ALTER TABLE usage_logs DROP COLUMN route_id;
DROP TABLE metered_routes;
