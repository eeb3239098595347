-- Upstream channels: the upstreams LLM requests go to, with priorities, weights and model aliases.
CREATE TABLE channels (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL UNIQUE,
    base_url     TEXT    NOT NULL,
    api_key      TEXT,
    dialects     TEXT    NOT NULL DEFAULT '[]',
    models       TEXT    NOT NULL DEFAULT '[]',
    aliases      TEXT    NOT NULL DEFAULT '{}',
    priority     INTEGER NOT NULL DEFAULT 0,
    weight       INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1),
    enabled      BOOLEAN NOT NULL DEFAULT 1,
    timeout_secs INTEGER CHECK (timeout_secs >= 1),
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

-- The channel that answered a request (its name: kept when the channel is removed), and how many
-- channels were tried.
ALTER TABLE usage_logs ADD COLUMN channel TEXT;
ALTER TABLE usage_logs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
