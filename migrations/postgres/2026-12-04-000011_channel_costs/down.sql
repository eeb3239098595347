ALTER TABLE usage_logs DROP COLUMN cost;
ALTER TABLE channels DROP COLUMN default_cost_price;
ALTER TABLE channels DROP COLUMN cost_prices;
