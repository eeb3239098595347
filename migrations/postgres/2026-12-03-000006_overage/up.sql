-- What a request was billed above its hold (usage the hold did not foresee), in micro-units.
ALTER TABLE usage_logs ADD COLUMN overage BIGINT NOT NULL DEFAULT 0;

-- Usage above a request's hold is billed all the same: the balance may go below zero by at most
-- that excess (nothing more is served until the user tops up). Debits by the ledger API still
-- refuse to go below zero; the database no longer forbids it.
DO $$
DECLARE
    found record;
BEGIN
    FOR found IN
        SELECT rel.relname AS tab, con.conname AS name
        FROM pg_constraint con JOIN pg_class rel ON rel.oid = con.conrelid
        WHERE con.contype = 'c'
          AND rel.relname IN ('users', 'transactions')
          AND rel.relnamespace = current_schema()::regnamespace
          AND (pg_get_constraintdef(con.oid) LIKE '%token_balance >= 0%'
               OR pg_get_constraintdef(con.oid) LIKE '%balance_after >= 0%')
    LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', found.tab, found.name);
    END LOOP;
END $$;
