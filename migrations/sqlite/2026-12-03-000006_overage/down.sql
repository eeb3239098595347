-- The CHECK on token_balance is not restored (a balance below zero may exist by now).
ALTER TABLE usage_logs DROP COLUMN overage;
