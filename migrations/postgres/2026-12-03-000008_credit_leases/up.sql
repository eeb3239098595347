-- Credit leases: a gateway's slice of a user's available credit (key_id NULL), or of a key's
-- remaining credit, tokens and calls (key_id set), held in users.reserved and
-- api_keys.*_reserved while the lease lives. `expires_at` is the database's clock (Unix ms);
-- any gateway frees an expired lease, so a crashed gateway's leases come back by themselves.
CREATE TABLE credit_leases (
    id BIGSERIAL PRIMARY KEY,
    node_id TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users(id),
    key_id BIGINT REFERENCES api_keys(id) ON DELETE CASCADE,
    amount BIGINT NOT NULL DEFAULT 0 CHECK (amount >= 0),
    tokens BIGINT NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    calls BIGINT NOT NULL DEFAULT 0 CHECK (calls >= 0),
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX credit_leases_node_user ON credit_leases (node_id, user_id) WHERE key_id IS NULL;
CREATE UNIQUE INDEX credit_leases_node_key ON credit_leases (node_id, key_id) WHERE key_id IS NOT NULL;
CREATE INDEX credit_leases_expires_at ON credit_leases (expires_at);
