-- The chatd schema on MySQL / MariaDB (InnoDB).
--
-- Every text column is utf8mb4, so any Unicode text (emoji included) is
-- stored as sent. The collation is utf8mb4_nopad_bin: comparisons are by
-- code point, so 'Alice' and 'alice' are two accounts, and unlike
-- utf8mb4_bin it does not ignore trailing spaces, so 'bob' and 'bob ' are
-- two accounts too, exactly as on SQLite. Identifiers are BIGINT like on
-- SQLite; the same row structs decode both.

CREATE TABLE users (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    password_hash VARCHAR(1024) NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE KEY users_by_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- Session tokens, by the hash of the token (the token itself is never stored).
CREATE TABLE tokens (
    token_hash VARCHAR(255) NOT NULL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    KEY tokens_by_expiry (expires_at_ms),
    CONSTRAINT tokens_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- Pending friend requests; a row is consumed when answered.
CREATE TABLE friend_requests (
    from_id BIGINT NOT NULL,
    to_id BIGINT NOT NULL,
    message TEXT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (from_id, to_id),
    KEY friend_requests_by_to (to_id),
    CONSTRAINT friend_requests_from FOREIGN KEY (from_id) REFERENCES users (id),
    CONSTRAINT friend_requests_to FOREIGN KEY (to_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- A message log: of a pair of users ('direct', with the pair ordered so that
-- one pair has at most one conversation) or of a group. last_seq is the
-- sequence number of its newest message; a sender takes the next one while
-- holding this row's lock, which is what keeps numbers gap-free and unique
-- when several nodes write to one conversation.
CREATE TABLE conversations (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind VARCHAR(8) NOT NULL,
    user_lo BIGINT NULL,
    user_hi BIGINT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    UNIQUE KEY conversations_by_pair (user_lo, user_hi),
    CONSTRAINT conversations_kind CHECK (kind IN ('direct', 'group')),
    CONSTRAINT conversations_lo FOREIGN KEY (user_lo) REFERENCES users (id),
    CONSTRAINT conversations_hi FOREIGN KEY (user_hi) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- Who receives a conversation, and how far each of them acknowledged it.
CREATE TABLE conversation_members (
    conversation_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    acked_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id),
    KEY conversation_members_by_user (user_id),
    CONSTRAINT conversation_members_conversation
        FOREIGN KEY (conversation_id) REFERENCES conversations (id),
    CONSTRAINT conversation_members_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- A friendship, one row per direction: each side has its own remark and
-- category for the other.
CREATE TABLE friends (
    user_id BIGINT NOT NULL,
    friend_id BIGINT NOT NULL,
    remark TEXT NULL,
    category TEXT NULL,
    conversation_id BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, friend_id),
    CONSTRAINT friends_user FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT friends_friend FOREIGN KEY (friend_id) REFERENCES users (id),
    CONSTRAINT friends_conversation FOREIGN KEY (conversation_id) REFERENCES conversations (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- GROUPS is a reserved word in MySQL 8, hence chat_groups.
CREATE TABLE chat_groups (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    owner_id BIGINT NOT NULL,
    conversation_id BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE KEY chat_groups_by_conversation (conversation_id),
    CONSTRAINT chat_groups_owner FOREIGN KEY (owner_id) REFERENCES users (id),
    CONSTRAINT chat_groups_conversation FOREIGN KEY (conversation_id) REFERENCES conversations (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

CREATE TABLE group_members (
    group_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    role VARCHAR(8) NOT NULL,
    joined_at_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id),
    KEY group_members_by_user (user_id),
    CONSTRAINT group_members_role CHECK (role IN ('owner', 'admin', 'member')),
    CONSTRAINT group_members_group FOREIGN KEY (group_id) REFERENCES chat_groups (id)
        ON DELETE CASCADE,
    CONSTRAINT group_members_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- The messages, clustered by conversation and sequence number (InnoDB keeps
-- rows in primary-key order, so a page of history is one range read); a
-- sender's client_msg_id is unique so that a resend, from any node, finds
-- the original.
CREATE TABLE messages (
    conversation_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    sender_id BIGINT NOT NULL,
    target_kind VARCHAR(8) NOT NULL,
    target_id BIGINT NOT NULL,
    client_msg_id VARCHAR(255) NOT NULL,
    body MEDIUMTEXT NOT NULL,
    server_ts_ms BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE KEY messages_by_client_id (sender_id, client_msg_id),
    CONSTRAINT messages_target_kind CHECK (target_kind IN ('user', 'group')),
    CONSTRAINT messages_conversation FOREIGN KEY (conversation_id) REFERENCES conversations (id),
    CONSTRAINT messages_sender FOREIGN KEY (sender_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;
