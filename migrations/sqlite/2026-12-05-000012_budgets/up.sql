-- Periodic budgets: credit, tokens and calls per day, week or month, for a key or for a user
-- (across their keys). One budget per owner and period.
CREATE TABLE budgets (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      BIGINT REFERENCES users(id) ON DELETE CASCADE,
    key_id       BIGINT REFERENCES api_keys(id) ON DELETE CASCADE,
    period       TEXT   NOT NULL CHECK (period IN ('day', 'week', 'month')),
    credit_limit BIGINT CHECK (credit_limit >= 0),
    token_limit  BIGINT CHECK (token_limit >= 0),
    call_limit   BIGINT CHECK (call_limit >= 0),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    CHECK ((user_id IS NULL) <> (key_id IS NULL))
);
CREATE UNIQUE INDEX budgets_user_period ON budgets (user_id, period) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX budgets_key_period ON budgets (key_id, period) WHERE key_id IS NOT NULL;

-- What a budget's window (named by its first instant, Unix ms) has used. The *_reserved columns
-- are PostgreSQL's leases; they stay zero here (one gateway keeps its holds in memory).
CREATE TABLE budget_windows (
    budget_id       BIGINT NOT NULL REFERENCES budgets(id) ON DELETE CASCADE,
    window_start    BIGINT NOT NULL,
    window_end      BIGINT NOT NULL,
    credit_used     BIGINT NOT NULL DEFAULT 0,
    tokens_used     BIGINT NOT NULL DEFAULT 0,
    calls_used      BIGINT NOT NULL DEFAULT 0,
    credit_reserved BIGINT NOT NULL DEFAULT 0,
    tokens_reserved BIGINT NOT NULL DEFAULT 0,
    calls_reserved  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (budget_id, window_start)
);

-- Budget leases are PostgreSQL's; the table exists here so both schemas match.
CREATE TABLE budget_leases (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id      TEXT   NOT NULL,
    budget_id    BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    amount       BIGINT NOT NULL DEFAULT 0 CHECK (amount >= 0),
    tokens       BIGINT NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    calls        BIGINT NOT NULL DEFAULT 0 CHECK (calls >= 0),
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    FOREIGN KEY (budget_id, window_start) REFERENCES budget_windows (budget_id, window_start) ON DELETE CASCADE
);
CREATE UNIQUE INDEX budget_leases_node_window ON budget_leases (node_id, budget_id, window_start);
