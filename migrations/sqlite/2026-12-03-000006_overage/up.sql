-- What a request was billed above its hold (usage the hold did not foresee), in micro-units.
ALTER TABLE usage_logs ADD COLUMN overage BIGINT NOT NULL DEFAULT 0;

-- Usage above a request's hold is billed all the same: the balance may go below zero by at most
-- that excess (nothing more is served until the user tops up). SQLite cannot drop a CHECK
-- constraint, so the table is rebuilt (the migration connection runs with foreign keys off, so
-- dropping the old table touches no other row).
CREATE TABLE users_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT    NOT NULL,
    email           TEXT,
    password_hash   TEXT    NOT NULL,
    role            TEXT    NOT NULL CHECK (role IN ('user', 'admin')),
    status          TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    token_balance   BIGINT  NOT NULL DEFAULT 0,
    total_recharged BIGINT  NOT NULL DEFAULT 0,
    total_consumed  BIGINT  NOT NULL DEFAULT 0 CHECK (total_consumed >= 0),
    discount_ppm    INTEGER NOT NULL DEFAULT 1000000 CHECK (discount_ppm > 0 AND discount_ppm <= 1000000),
    token_version   BIGINT  NOT NULL DEFAULT 0,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    reserved        BIGINT  NOT NULL DEFAULT 0 CHECK (reserved >= 0)
);
INSERT INTO users_new (id, username, email, password_hash, role, status, token_balance, total_recharged,
                       total_consumed, discount_ppm, token_version, created_at, updated_at, reserved)
    SELECT id, username, email, password_hash, role, status, token_balance, total_recharged,
           total_consumed, discount_ppm, token_version, created_at, updated_at, reserved
    FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));

CREATE TABLE transactions_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        BIGINT NOT NULL REFERENCES users (id),
    tx_type        TEXT   NOT NULL CHECK (tx_type IN ('recharge', 'consume', 'refund', 'adjust')),
    amount         BIGINT NOT NULL,
    balance_before BIGINT NOT NULL,
    balance_after  BIGINT NOT NULL,
    order_no       TEXT,
    description    TEXT,
    created_at     BIGINT NOT NULL,
    CHECK (balance_after = balance_before + amount)
);
INSERT INTO transactions_new (id, user_id, tx_type, amount, balance_before, balance_after, order_no, description, created_at)
    SELECT id, user_id, tx_type, amount, balance_before, balance_after, order_no, description, created_at
    FROM transactions;
DROP TABLE transactions;
ALTER TABLE transactions_new RENAME TO transactions;
-- One operation of a kind per order number (NULLs do not collide); a refund may carry the order
-- number of the consume it refunds.
CREATE UNIQUE INDEX transactions_order ON transactions (tx_type, order_no);
CREATE INDEX transactions_user ON transactions (user_id, id);
