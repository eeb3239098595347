DROP TABLE reservations;
ALTER TABLE api_keys DROP COLUMN calls_reserved;
ALTER TABLE api_keys DROP COLUMN quota_reserved;
ALTER TABLE api_keys DROP COLUMN tokens_reserved;
ALTER TABLE users DROP COLUMN reserved;
