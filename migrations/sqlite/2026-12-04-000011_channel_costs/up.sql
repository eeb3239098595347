-- Cost prices: what the operator pays each channel, per public model name and for any other
-- model, as JSON text (integer micro-units per 1,000,000 tokens, per call or per image, as in
-- model_prices); and each usage row's cost at that price (NULL: no cost price applied).
ALTER TABLE channels ADD COLUMN cost_prices TEXT NOT NULL DEFAULT '{}';
ALTER TABLE channels ADD COLUMN default_cost_price TEXT;
ALTER TABLE usage_logs ADD COLUMN cost BIGINT;
