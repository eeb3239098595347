-- Leased credit is held in users.reserved and api_keys.*_reserved: give it back first.
UPDATE users SET reserved = reserved - l.amount
FROM (SELECT user_id, SUM(amount) AS amount FROM credit_leases WHERE key_id IS NULL GROUP BY user_id) l
WHERE users.id = l.user_id;
UPDATE api_keys SET quota_reserved = quota_reserved - l.amount, tokens_reserved = tokens_reserved - l.tokens,
    calls_reserved = calls_reserved - l.calls
FROM (SELECT key_id, SUM(amount) AS amount, SUM(tokens) AS tokens, SUM(calls) AS calls
      FROM credit_leases WHERE key_id IS NOT NULL GROUP BY key_id) l
WHERE api_keys.id = l.key_id;
DROP TABLE credit_leases;
