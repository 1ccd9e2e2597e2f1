-- Names that look alike cannot be two accounts (see chat-store's names.rs).
--
-- name_key: the name case-folded; unique, so 'Alice' and 'alice' are one
-- account, and names are looked up by it.
-- name_skeleton: the Unicode UTS #39 skeleton of the key; unique, so a name
-- that only looks like another (a Cyrillic 'а' in 'аlice') is refused.
--
-- Both are computed by chatd, not by SQL: the store fills them for
-- existing accounts when it opens. Two existing accounts whose names clash
-- both keep working; the later one keeps NULL keys and the clash is logged
-- for the operator. Deleted accounts (tombstones) have none.
ALTER TABLE users ADD COLUMN name_key TEXT;
ALTER TABLE users ADD COLUMN name_skeleton TEXT;
CREATE UNIQUE INDEX users_by_name_key ON users (name_key);
CREATE UNIQUE INDEX users_by_name_skeleton ON users (name_skeleton);
