DROP TRIGGER users_keep_their_ledger ON users;
DROP FUNCTION refuse_deleting_a_user_with_ledger_rows();
ALTER TABLE transactions ADD CONSTRAINT transactions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);
