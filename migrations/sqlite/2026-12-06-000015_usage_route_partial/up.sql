-- Only a metered route's requests have a route; the route index leaves the others out (most rows:
-- every proxied LLM call), so a usage row costs one index insert fewer. Route queries name a route,
-- or ask for `route_id IS NOT NULL`, so they can still use it.
DROP INDEX usage_logs_route_time;
CREATE INDEX usage_logs_route_time ON usage_logs (route_id, created_at) WHERE route_id IS NOT NULL;
