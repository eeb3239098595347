-- Online recharge orders (EPay): `amount` micro-credits bought for `money` micro-units of the
-- operator's currency (whole cents). A notification flips `pending` to `paid` once.
CREATE TABLE recharge_orders (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    out_trade_no TEXT   NOT NULL UNIQUE,
    user_id      BIGINT NOT NULL REFERENCES users (id),
    amount       BIGINT NOT NULL CHECK (amount > 0),
    money        BIGINT NOT NULL CHECK (money > 0 AND money % 10000 = 0),
    payment_type TEXT   NOT NULL,
    status       TEXT   NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid')),
    trade_no     TEXT,
    completed_by BIGINT REFERENCES users (id),
    note         TEXT,
    created_at   BIGINT NOT NULL,
    paid_at      BIGINT
);
CREATE INDEX recharge_orders_user ON recharge_orders (user_id, id);
CREATE INDEX recharge_orders_status ON recharge_orders (status, id);
