-- What the conversation list, read receipts and recall need.
--
-- conversations.last_activity_ms: when the newest message was committed (or
-- the conversation began), written by the same statement that takes the
-- next sequence number, so the list is ordered without reading messages.
-- conversation_members.read_seq: how far the member has read (separate from
-- acked_seq, which says how far a device received). Sending moves the
-- sender's read position to the new message, so every message after it is
-- someone else's and the unread count is last_seq - read_seq, kept without
-- counting anything.
-- messages.recalled_by, recalled_at_ms: set when the message was recalled
-- (its body is then emptied); the row and its seq stay.
ALTER TABLE conversations ADD COLUMN last_activity_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversation_members ADD COLUMN read_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages
    ADD COLUMN recalled_by BIGINT NULL,
    ADD COLUMN recalled_at_ms BIGINT NULL;

-- A database from before: activity is the newest message's time, or when
-- the friendship or group began.
UPDATE conversations c SET c.last_activity_ms = COALESCE(
    (SELECT m.server_ts_ms FROM messages m
     WHERE m.conversation_id = c.id AND m.seq = c.last_seq),
    (SELECT MIN(f.created_at_ms) FROM friends f WHERE f.conversation_id = c.id),
    (SELECT g.created_at_ms FROM chat_groups g WHERE g.conversation_id = c.id),
    0);

-- Read positions start where the member had received up to, or at their own
-- newest message if that is later (they had read what they answered). Each
-- member's newest message is found in one pass over the messages, not one
-- search per member.
CREATE TEMPORARY TABLE own_newest (PRIMARY KEY (conversation_id, sender_id))
    SELECT conversation_id, sender_id, MAX(seq) AS seq FROM messages
    GROUP BY conversation_id, sender_id;
UPDATE conversation_members cm
    LEFT JOIN own_newest o ON o.conversation_id = cm.conversation_id AND o.sender_id = cm.user_id
    SET cm.read_seq = GREATEST(cm.acked_seq, COALESCE(o.seq, 0));
DROP TEMPORARY TABLE own_newest;
