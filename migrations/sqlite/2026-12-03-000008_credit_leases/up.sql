-- Credit leases are how several gateways on one PostgreSQL share a user's credit; a SQLite file
-- has one gateway, which keeps all of it in memory. The table exists here so both schemas match.
CREATE TABLE credit_leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users(id),
    key_id BIGINT REFERENCES api_keys(id) ON DELETE CASCADE,
    amount BIGINT NOT NULL DEFAULT 0 CHECK (amount >= 0),
    tokens BIGINT NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    calls BIGINT NOT NULL DEFAULT 0 CHECK (calls >= 0),
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
