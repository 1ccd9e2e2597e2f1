-- Groups that can be closed: who may join, bans, invitations and requests
-- to join (see chat-store's group_access.rs).
--
-- join_policy: 'open' (anyone who knows the id), 'approval' (an owner or
-- admin accepts each request) or 'invite' (only invited users; to anyone
-- else the group does not exist). Existing groups stay open.
ALTER TABLE chat_groups
    ADD COLUMN join_policy VARCHAR(16) NOT NULL DEFAULT 'open';

-- Users who may not join a group until an owner or admin unbans them.
CREATE TABLE group_bans (
    group_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    banned_by BIGINT NOT NULL,
    banned_at_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id),
    CONSTRAINT group_bans_group FOREIGN KEY (group_id) REFERENCES chat_groups (id) ON DELETE CASCADE,
    CONSTRAINT group_bans_user FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT group_bans_by FOREIGN KEY (banned_by) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- Invitations waiting for the invitee to join; consumed when they do.
CREATE TABLE group_invitations (
    group_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    invited_by BIGINT NOT NULL,
    invited_at_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id),
    KEY group_invitations_by_user (user_id),
    CONSTRAINT group_invitations_group FOREIGN KEY (group_id) REFERENCES chat_groups (id) ON DELETE CASCADE,
    CONSTRAINT group_invitations_user FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT group_invitations_by FOREIGN KEY (invited_by) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;

-- Requests to join an 'approval' group, waiting for an owner or admin.
CREATE TABLE group_join_requests (
    group_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id),
    CONSTRAINT group_join_requests_group FOREIGN KEY (group_id) REFERENCES chat_groups (id) ON DELETE CASCADE,
    CONSTRAINT group_join_requests_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_nopad_bin;
