-- The chatd schema on SQLite.
--
-- Ids are AUTOINCREMENT so that an id is never handed out twice, even after
-- the row that had it is deleted (a dissolved group). Text columns use the
-- default BINARY collation: names compare byte for byte, so 'Alice' and
-- 'alice' are two accounts. Tables are STRICT so a value of the wrong type
-- is refused instead of stored.

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- Session tokens, by the hash of the token (the token itself is never stored).
CREATE TABLE tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    expires_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX tokens_by_expiry ON tokens (expires_at_ms);

-- Pending friend requests; a row is consumed when answered.
CREATE TABLE friend_requests (
    from_id INTEGER NOT NULL REFERENCES users (id),
    to_id INTEGER NOT NULL REFERENCES users (id),
    message TEXT,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (from_id, to_id)
) STRICT;
CREATE INDEX friend_requests_by_to ON friend_requests (to_id);

-- A message log: of a pair of users ('direct', with the pair ordered so that
-- one pair has at most one conversation) or of a group. last_seq is the
-- sequence number of its newest message; the next one takes last_seq + 1.
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    user_lo INTEGER REFERENCES users (id),
    user_hi INTEGER REFERENCES users (id),
    last_seq INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_lo, user_hi)
) STRICT;

-- Who receives a conversation, and how far each of them acknowledged it.
CREATE TABLE conversation_members (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    acked_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) STRICT;
CREATE INDEX conversation_members_by_user ON conversation_members (user_id);

-- A friendship, one row per direction: each side has its own remark and
-- category for the other.
CREATE TABLE friends (
    user_id INTEGER NOT NULL REFERENCES users (id),
    friend_id INTEGER NOT NULL REFERENCES users (id),
    remark TEXT,
    category TEXT,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
) STRICT;

-- "groups" is a reserved word in some SQL dialects, hence chat_groups.
CREATE TABLE chat_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    owner_id INTEGER NOT NULL REFERENCES users (id),
    conversation_id INTEGER NOT NULL UNIQUE REFERENCES conversations (id),
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id),
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) STRICT;
CREATE INDEX group_members_by_user ON group_members (user_id);

-- The messages, keyed by conversation and sequence number; a sender's
-- client_msg_id is unique so that a resend finds the original.
CREATE TABLE messages (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    seq INTEGER NOT NULL,
    sender_id INTEGER NOT NULL REFERENCES users (id),
    target_kind TEXT NOT NULL CHECK (target_kind IN ('user', 'group')),
    target_id INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    body TEXT NOT NULL,
    server_ts_ms INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (sender_id, client_msg_id)
) STRICT;
