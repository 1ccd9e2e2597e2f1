-- What operators need to know and change about accounts (`chatd admin`).
--
-- Every column is nullable and added in place, so an existing database is
-- upgraded without copying a table: old rows read as "never logged in since
-- the upgrade", "not disabled", "not deleted".
--
-- last_login_at_ms: the last successful login (password or token), kept to
-- the minute (a reconnecting client does not write on every reconnect).
-- disabled_at_ms, disabled_reason: set while an operator has disabled the
-- account; the reason is for operators and is never shown to the user.
-- deleted_at_ms: set when the account was deleted. The row stays, as a
-- tombstone, so that its messages keep their sender id; its name, password
-- and everything it owned are gone (see chat-store's admin.rs).
ALTER TABLE users ADD COLUMN last_login_at_ms INTEGER;
ALTER TABLE users ADD COLUMN disabled_at_ms INTEGER;
ALTER TABLE users ADD COLUMN disabled_reason TEXT;
ALTER TABLE users ADD COLUMN deleted_at_ms INTEGER;

-- Deleting an account finds the groups it owns, and the owner's successor
-- among the members, by these.
CREATE INDEX chat_groups_by_owner ON chat_groups (owner_id);
