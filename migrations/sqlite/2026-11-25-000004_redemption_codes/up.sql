-- Redemption codes: each redeems once, by one user, into a recharge of `amount` micro-credits.
CREATE TABLE redemption_codes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    code        TEXT   NOT NULL UNIQUE,
    amount      BIGINT NOT NULL CHECK (amount > 0),
    name        TEXT   NOT NULL,
    expires_at  BIGINT,
    status      TEXT   NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    batch_id    TEXT   NOT NULL,
    created_by  BIGINT NOT NULL REFERENCES users (id),
    redeemed_by BIGINT REFERENCES users (id),
    redeemed_at BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX redemption_codes_batch ON redemption_codes (batch_id, id);
