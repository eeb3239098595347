-- APIHub schema (SQLite). Keep in step with ../../postgres: same tables, columns and constraints.
-- Money columns are integer micro-units (1 credit = 1,000,000); discount rates are parts per million;
-- timestamps are Unix milliseconds (UTC).

CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT    NOT NULL,
    email           TEXT,
    password_hash   TEXT    NOT NULL,
    role            TEXT    NOT NULL CHECK (role IN ('user', 'admin')),
    status          TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    token_balance   BIGINT  NOT NULL DEFAULT 0 CHECK (token_balance >= 0),
    total_recharged BIGINT  NOT NULL DEFAULT 0,
    total_consumed  BIGINT  NOT NULL DEFAULT 0 CHECK (total_consumed >= 0),
    discount_ppm    INTEGER NOT NULL DEFAULT 1000000 CHECK (discount_ppm > 0 AND discount_ppm <= 1000000),
    token_version   BIGINT  NOT NULL DEFAULT 0,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
-- Usernames are unique without regard to case, so "Alice" cannot impersonate "alice".
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));

CREATE TABLE api_keys (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    public_id       TEXT    NOT NULL UNIQUE,
    secret_hash     TEXT    NOT NULL,
    last4           TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('active', 'disabled')),
    expires_at      BIGINT,
    rate_limit      INTEGER CHECK (rate_limit >= 0),
    rate_limit_day  INTEGER CHECK (rate_limit_day >= 0),
    token_limit     BIGINT  CHECK (token_limit >= 0),
    quota_limit     BIGINT  CHECK (quota_limit >= 0),
    remaining_calls BIGINT  CHECK (remaining_calls >= 0),
    allowed_models  TEXT    NOT NULL DEFAULT '[]',
    discount_ppm    INTEGER NOT NULL DEFAULT 1000000 CHECK (discount_ppm > 0 AND discount_ppm <= 1000000),
    batch_id        TEXT,
    tokens_used     BIGINT  NOT NULL DEFAULT 0,
    quota_used      BIGINT  NOT NULL DEFAULT 0,
    calls_total     BIGINT  NOT NULL DEFAULT 0,
    calls_succeeded BIGINT  NOT NULL DEFAULT 0,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX api_keys_user ON api_keys (user_id, id);
CREATE INDEX api_keys_batch ON api_keys (batch_id);

CREATE TABLE transactions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        BIGINT NOT NULL REFERENCES users (id),
    tx_type        TEXT   NOT NULL CHECK (tx_type IN ('recharge', 'consume', 'refund', 'adjust')),
    amount         BIGINT NOT NULL,
    balance_before BIGINT NOT NULL,
    balance_after  BIGINT NOT NULL,
    order_no       TEXT,
    description    TEXT,
    created_at     BIGINT NOT NULL,
    CHECK (balance_after = balance_before + amount),
    CHECK (balance_after >= 0)
);
-- One operation of a kind per order number (NULLs do not collide); a refund may carry the order
-- number of the consume it refunds.
CREATE UNIQUE INDEX transactions_order ON transactions (tx_type, order_no);
CREATE INDEX transactions_user ON transactions (user_id, id);

CREATE TABLE usage_logs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id          TEXT    NOT NULL,
    user_id             BIGINT  NOT NULL,
    key_id              BIGINT  NOT NULL,
    model               TEXT    NOT NULL,
    endpoint            TEXT    NOT NULL,
    stream              BOOLEAN NOT NULL,
    prompt_tokens       BIGINT  NOT NULL,
    completion_tokens   BIGINT  NOT NULL,
    cached_tokens       BIGINT  NOT NULL,
    raw_cost            BIGINT  NOT NULL,
    user_discount_ppm   INTEGER NOT NULL,
    key_discount_ppm    INTEGER NOT NULL,
    charged             BIGINT  NOT NULL,
    status              INTEGER NOT NULL,
    upstream_latency_ms BIGINT  NOT NULL,
    usage_source        TEXT    NOT NULL CHECK (usage_source IN ('reported', 'estimated')),
    created_at          BIGINT  NOT NULL
);
CREATE INDEX usage_logs_user_time ON usage_logs (user_id, created_at);
CREATE INDEX usage_logs_key_time ON usage_logs (key_id, created_at);
CREATE INDEX usage_logs_time ON usage_logs (created_at);
