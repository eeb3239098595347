DROP TABLE usage_logs;
DROP TABLE transactions;
DROP TABLE api_keys;
DROP TABLE users;
