-- Metered routes: any HTTP API behind the gateway's keys and billing (money in micro-units).
CREATE TABLE metered_routes (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT    NOT NULL UNIQUE,
    path                TEXT    NOT NULL UNIQUE,
    prefix              BOOLEAN NOT NULL,
    methods             TEXT    NOT NULL,
    upstream_url        TEXT    NOT NULL,
    upstream_key        TEXT,
    upstream_key_header TEXT    NOT NULL,
    price_per_call      BIGINT  NOT NULL CHECK (price_per_call >= 0),
    price_per_unit      BIGINT  CHECK (price_per_unit >= 0),
    units_pointer       TEXT,
    max_units           BIGINT  NOT NULL CHECK (max_units >= 1),
    key_field           TEXT,
    model_pointer       TEXT,
    success_statuses    TEXT    NOT NULL DEFAULT '[]',
    timeout_secs        INTEGER NOT NULL CHECK (timeout_secs >= 1),
    allow_stream        BOOLEAN NOT NULL,
    enabled             BOOLEAN NOT NULL,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL
);

-- The route a usage row came through (NULL for the LLM endpoints); kept when the route is removed.
ALTER TABLE usage_logs ADD COLUMN route_id BIGINT;
CREATE INDEX usage_logs_route_time ON usage_logs (route_id, created_at);

-- Keys imported from another system with their own string (hashed like every other key).
ALTER TABLE api_keys ADD COLUMN imported BOOLEAN NOT NULL DEFAULT 0;
