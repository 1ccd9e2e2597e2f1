-- Groups that can be closed: who may join, bans, invitations and requests
-- to join (see chat-store's group_access.rs).
--
-- join_policy: 'open' (anyone who knows the id), 'approval' (an owner or
-- admin accepts each request) or 'invite' (only invited users; to anyone
-- else the group does not exist). Existing groups stay open.
ALTER TABLE chat_groups ADD COLUMN join_policy TEXT NOT NULL DEFAULT 'open'
    CHECK (join_policy IN ('open', 'approval', 'invite'));

-- Users who may not join a group until an owner or admin unbans them.
CREATE TABLE group_bans (
    group_id INTEGER NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id),
    banned_by INTEGER NOT NULL REFERENCES users (id),
    banned_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) STRICT;

-- Invitations waiting for the invitee to join; consumed when they do.
CREATE TABLE group_invitations (
    group_id INTEGER NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id),
    invited_by INTEGER NOT NULL REFERENCES users (id),
    invited_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) STRICT;
CREATE INDEX group_invitations_by_user ON group_invitations (user_id);

-- Requests to join an 'approval' group, waiting for an owner or admin.
CREATE TABLE group_join_requests (
    group_id INTEGER NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id),
    requested_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) STRICT;
