-- Reservations: a request holds the most it can cost before it is forwarded, and settles or
-- releases the hold when it ends. Holds are not ledger rows: `token_balance` stays the sum of the
-- user's transactions, and `token_balance - reserved` is what a new hold or a debit may take.
ALTER TABLE users ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0);
ALTER TABLE api_keys ADD COLUMN tokens_reserved BIGINT NOT NULL DEFAULT 0 CHECK (tokens_reserved >= 0);
ALTER TABLE api_keys ADD COLUMN quota_reserved BIGINT NOT NULL DEFAULT 0 CHECK (quota_reserved >= 0);
ALTER TABLE api_keys ADD COLUMN calls_reserved BIGINT NOT NULL DEFAULT 0 CHECK (calls_reserved >= 0);

CREATE TABLE reservations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    BIGINT NOT NULL,
    key_id     BIGINT NOT NULL,
    request_id TEXT   NOT NULL UNIQUE,
    amount     BIGINT NOT NULL CHECK (amount >= 0),
    tokens     BIGINT NOT NULL CHECK (tokens >= 0),
    created_at BIGINT NOT NULL
);
CREATE INDEX reservations_created ON reservations (created_at);
