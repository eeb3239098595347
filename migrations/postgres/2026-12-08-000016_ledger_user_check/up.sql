-- The ledger's rows no longer carry a foreign key to their user on PostgreSQL. Every statement
-- that writes a ledger row first updates that user's row in the same transaction (the balance
-- moves with the row, under the row's lock) and writes no row when the update finds no user; so
-- the key checked again, once per row, with a trigger and a lock on `users`, what the transaction
-- had just proved. On PostgreSQL that check was about a fifth of the database's CPU time per
-- proxied request (one consume row each). SQLite keeps the key: there it is one index lookup.
ALTER TABLE transactions DROP CONSTRAINT IF EXISTS transactions_user_id_fkey;

-- What the key also did, and no code path replaces: refuse to delete a user who has ledger rows
-- (the gateway never deletes users; a hand-made DELETE must not orphan a ledger). Checked once
-- per deleted user, never per ledger row.
CREATE FUNCTION refuse_deleting_a_user_with_ledger_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM transactions WHERE user_id = OLD.id) THEN
        RAISE EXCEPTION 'user % has ledger rows and cannot be deleted', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER users_keep_their_ledger BEFORE DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION refuse_deleting_a_user_with_ledger_rows();
