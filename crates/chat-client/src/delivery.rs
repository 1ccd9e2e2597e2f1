//! Per-conversation delivery bookkeeping: which sequence numbers the
//! application has been given, so that every message reaches it once and in
//! order however often the server repeats it (pushes at login, sync after a
//! reconnect, history to fill a gap).
//!
//! This is pure state with no I/O, so the rules are tested without sockets;
//! [`Client`](crate::Client) feeds it and does the fetching it asks for.

use std::collections::{BTreeSet, HashMap};

use chat_proto::{ConversationId, Cursor, Seq, SYNC_MAX_CURSORS};

/// What to do with an incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Already delivered (or sent by this client): drop it.
    Duplicate,
    /// The next one in its conversation (or the first one seen there):
    /// deliver it.
    Next,
    /// Messages are missing before it: fetch the sequence numbers strictly
    /// between `after` and `before` first.
    Gap {
        /// The last sequence number delivered.
        after: Seq,
        /// The incoming message's sequence number.
        before: Seq,
    },
}

/// The delivery position of every conversation the client has seen.
#[derive(Debug, Default, Clone)]
pub struct DeliveryState {
    /// The highest sequence number accounted for per conversation: every
    /// number up to it was delivered or was sent by this client.
    cursors: HashMap<ConversationId, Seq>,
    /// Sequence numbers of this client's own sends that lie beyond the
    /// cursor: they fill part of a gap without being delivered.
    own_ahead: HashMap<ConversationId, BTreeSet<Seq>>,
}

impl DeliveryState {
    /// An empty state: no conversation seen yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How an incoming message with this position fits.
    ///
    /// In a conversation not seen before, any sequence number is accepted as
    /// the first: the server pushes what the user has not acknowledged in
    /// order, starting right after the acknowledged position, which this
    /// client cannot know in advance.
    #[must_use]
    pub fn classify(&self, conversation_id: ConversationId, seq: Seq) -> Verdict {
        let Some(&cursor) = self.cursors.get(&conversation_id) else {
            return Verdict::Next;
        };
        if seq <= cursor || self.is_own(conversation_id, seq) {
            Verdict::Duplicate
        } else if seq == cursor.next() {
            Verdict::Next
        } else {
            Verdict::Gap {
                after: cursor,
                before: seq,
            }
        }
    }

    /// Records that the message at `seq` was delivered (or deliberately
    /// skipped) and moves the cursor past it and past any of this client's
    /// own sends that directly follow.
    pub fn advance(&mut self, conversation_id: ConversationId, seq: Seq) {
        let cursor = self.cursors.entry(conversation_id).or_insert(Seq::ZERO);
        if seq > *cursor {
            *cursor = seq;
        }
        self.absorb_own(conversation_id);
    }

    /// Records a message this client sent itself, which the server does not
    /// push back to the sending session. It counts as delivered so that it
    /// never looks like a gap.
    ///
    /// In a conversation with no cursor yet it is not recorded (setting a
    /// cursor there could hide older unacknowledged messages still on their
    /// way) and it returns false: the caller must then recognise the message
    /// by its `client_msg_id` when it comes back through a sync or a gap fill.
    pub fn own_sent(&mut self, conversation_id: ConversationId, seq: Seq) -> bool {
        let Some(&cursor) = self.cursors.get(&conversation_id) else {
            return false;
        };
        if seq <= cursor {
            return true;
        }
        self.own_ahead
            .entry(conversation_id)
            .or_default()
            .insert(seq);
        self.absorb_own(conversation_id);
        true
    }

    /// Whether `seq` is one of this client's own sends beyond the cursor.
    #[must_use]
    pub fn is_own(&self, conversation_id: ConversationId, seq: Seq) -> bool {
        self.own_ahead
            .get(&conversation_id)
            .is_some_and(|own| own.contains(&seq))
    }

    /// The cursor of one conversation.
    #[must_use]
    pub fn cursor(&self, conversation_id: ConversationId) -> Option<Seq> {
        self.cursors.get(&conversation_id).copied()
    }

    /// The cursors for a `sync` request: every one, or, past the server's
    /// limit of [`SYNC_MAX_CURSORS`], those of the newest conversations
    /// (the highest ids). The server reads the others from the
    /// acknowledged position, and the client de-duplicates what it already
    /// holds by sequence number.
    #[must_use]
    pub fn cursors(&self) -> Vec<Cursor> {
        let mut cursors: Vec<Cursor> = self
            .cursors
            .iter()
            .map(|(&conversation_id, &seq)| Cursor {
                conversation_id,
                seq,
            })
            .collect();
        cursors.sort_by_key(|cursor| cursor.conversation_id);
        let excess = cursors.len().saturating_sub(SYNC_MAX_CURSORS);
        cursors.drain(..excess);
        cursors
    }

    fn absorb_own(&mut self, conversation_id: ConversationId) {
        let Some(own) = self.own_ahead.get_mut(&conversation_id) else {
            return;
        };
        let cursor = self.cursors.entry(conversation_id).or_insert(Seq::ZERO);
        while own.remove(&cursor.next()) {
            *cursor = cursor.next();
        }
        // Anything at or below the cursor can never matter again.
        let keep = own.split_off(&cursor.next());
        *own = keep;
        if own.is_empty() {
            self.own_ahead.remove(&conversation_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ConversationId = ConversationId(7);

    #[test]
    fn the_first_message_of_a_conversation_sets_the_position() {
        let mut state = DeliveryState::new();
        assert_eq!(state.classify(C, Seq(5)), Verdict::Next);
        state.advance(C, Seq(5));
        assert_eq!(state.cursor(C), Some(Seq(5)));
        assert_eq!(state.classify(C, Seq(5)), Verdict::Duplicate);
        assert_eq!(state.classify(C, Seq(4)), Verdict::Duplicate);
        assert_eq!(state.classify(C, Seq(6)), Verdict::Next);
    }

    #[test]
    fn a_jump_is_a_gap_to_fill() {
        let mut state = DeliveryState::new();
        state.advance(C, Seq(2));
        assert_eq!(
            state.classify(C, Seq(5)),
            Verdict::Gap {
                after: Seq(2),
                before: Seq(5)
            }
        );
        // Other conversations are independent.
        assert_eq!(state.classify(ConversationId(8), Seq(9)), Verdict::Next);
    }

    #[test]
    fn own_sends_close_gaps_without_being_delivered() {
        let mut state = DeliveryState::new();
        state.advance(C, Seq(2));
        // This client sent 3 and 4; the friend's reply is 5.
        state.own_sent(C, Seq(4));
        assert_eq!(state.cursor(C), Some(Seq(2)));
        assert!(state.is_own(C, Seq(4)));
        state.own_sent(C, Seq(3));
        assert_eq!(state.cursor(C), Some(Seq(4)));
        assert_eq!(state.classify(C, Seq(5)), Verdict::Next);
        assert!(!state.is_own(C, Seq(4)));
    }

    #[test]
    fn an_own_send_beyond_a_gap_is_skipped_when_the_gap_is_filled() {
        let mut state = DeliveryState::new();
        state.advance(C, Seq(1));
        state.own_sent(C, Seq(3));
        // A history page returns 2 (from the friend) and 3 (ours).
        assert_eq!(state.classify(C, Seq(2)), Verdict::Next);
        state.advance(C, Seq(2));
        assert_eq!(state.cursor(C), Some(Seq(3)), "own 3 absorbed");
        assert_eq!(state.classify(C, Seq(3)), Verdict::Duplicate);
    }

    #[test]
    fn own_sends_in_an_unknown_conversation_set_nothing() {
        let mut state = DeliveryState::new();
        state.own_sent(C, Seq(3));
        assert_eq!(state.cursor(C), None);
        // An older unacknowledged message from the friend still gets through.
        assert_eq!(state.classify(C, Seq(2)), Verdict::Next);
    }

    #[test]
    fn cursors_are_listed_for_sync() {
        let mut state = DeliveryState::new();
        state.advance(ConversationId(2), Seq(9));
        state.advance(ConversationId(1), Seq(3));
        state.advance(ConversationId(1), Seq(2));
        assert_eq!(
            state.cursors(),
            vec![
                Cursor {
                    conversation_id: ConversationId(1),
                    seq: Seq(3)
                },
                Cursor {
                    conversation_id: ConversationId(2),
                    seq: Seq(9)
                },
            ]
        );
    }

    #[test]
    fn cursors_stop_at_the_servers_limit_keeping_the_newest() {
        let mut state = DeliveryState::new();
        for id in 1..=(SYNC_MAX_CURSORS as u64 + 5) {
            state.advance(ConversationId(id), Seq(1));
        }
        let cursors = state.cursors();
        assert_eq!(cursors.len(), SYNC_MAX_CURSORS);
        assert_eq!(cursors[0].conversation_id, ConversationId(6));
    }
}
