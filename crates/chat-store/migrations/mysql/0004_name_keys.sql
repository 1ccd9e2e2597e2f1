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
-- for the operator. Deleted accounts (tombstones) have none. The columns
-- compare byte for byte, like the name: folding is chatd's, not the
-- collation's.
ALTER TABLE users
    ADD COLUMN name_key VARCHAR(768) NULL,
    ADD COLUMN name_skeleton VARCHAR(768) NULL,
    ADD UNIQUE KEY users_by_name_key (name_key),
    ADD UNIQUE KEY users_by_name_skeleton (name_skeleton);
