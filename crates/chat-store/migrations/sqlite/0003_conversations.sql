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
ALTER TABLE conversations ADD COLUMN last_activity_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversation_members ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN recalled_by INTEGER REFERENCES users (id);
ALTER TABLE messages ADD COLUMN recalled_at_ms INTEGER;

-- A database from before: activity is the newest message's time, or when
-- the friendship or group began.
UPDATE conversations SET last_activity_ms = COALESCE(
    (SELECT m.server_ts_ms FROM messages m
     WHERE m.conversation_id = conversations.id AND m.seq = conversations.last_seq),
    (SELECT MIN(f.created_at_ms) FROM friends f WHERE f.conversation_id = conversations.id),
    (SELECT g.created_at_ms FROM chat_groups g WHERE g.conversation_id = conversations.id),
    0);

-- Read positions start where the member had received up to, or at their own
-- newest message if that is later (they had read what they answered). Each
-- member's newest message is found in one pass over the messages, not one
-- search per member.
CREATE TEMP TABLE own_newest AS
    SELECT conversation_id, sender_id, MAX(seq) AS seq FROM messages
    GROUP BY conversation_id, sender_id;
CREATE UNIQUE INDEX temp.own_newest_key ON own_newest (conversation_id, sender_id);
UPDATE conversation_members SET read_seq = MAX(acked_seq, COALESCE(
    (SELECT o.seq FROM own_newest o
     WHERE o.conversation_id = conversation_members.conversation_id
       AND o.sender_id = conversation_members.user_id), 0));
DROP TABLE own_newest;
