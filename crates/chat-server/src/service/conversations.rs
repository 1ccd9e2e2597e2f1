//! The conversation list, read positions and receipts, typing, and recall.

use chat_proto::{
    Conversation, ConversationKind, ConversationListRequest, ConversationListResponse,
    GroupSummary, Peer, Push, ReadPositionsRequest, ReadPositionsResponse, ReadPush, ReadRequest,
    ReadResponse, RecallPush, RecallRequest, RecallResponse, TypingPush, TypingRequest,
    TypingResponse, UserId,
};
use chat_store::{Participants, RecallArgs};

use crate::context::{now_ms, Context, Identity};
use crate::error::{Result, ServiceError};

const LIST_DEFAULT: u32 = 50;
const LIST_MAX: u32 = 200;

/// A page of the user's conversations, most recent activity first, with
/// the peer's presence.
///
/// # Errors
/// `bad_request` for a bad limit.
pub async fn list(
    ctx: &Context,
    me: &Identity,
    request: ConversationListRequest,
) -> Result<ConversationListResponse> {
    let limit = request.limit.unwrap_or(LIST_DEFAULT);
    if limit == 0 || limit > LIST_MAX {
        return Err(ServiceError::bad_request("limit must be 1 to 200"));
    }
    // One more than the page tells whether there is more.
    let mut records = ctx
        .store
        .conversations(me.user, request.before, limit + 1)
        .await?;
    let has_more = records.len() > limit as usize;
    records.truncate(limit as usize);
    // Presence only of friends: a former friend's conversation stays
    // listed, but whether they are online is no longer the user's business.
    let peers: Vec<UserId> = records
        .iter()
        .filter(|record| record.peer_is_friend)
        .filter_map(|record| record.peer.as_ref().map(|(id, _, _)| *id))
        .collect();
    let mut online = ctx.bus.online(&peers).await.into_iter();
    let conversations = records
        .into_iter()
        .map(|record| Conversation {
            conversation_id: record.conversation_id,
            kind: record.kind,
            peer: record.peer.map(|(id, name, remark)| Peer {
                id,
                name,
                remark,
                online: record.peer_is_friend && online.next().unwrap_or(false),
            }),
            group: record.group.map(|(id, name)| GroupSummary { id, name }),
            last_message: record.last_message,
            last_seq: record.last_seq,
            read_seq: record.read_seq,
            unread: record.last_seq.0.saturating_sub(record.read_seq.0),
            last_activity_ms: record.last_activity_ms,
        })
        .collect();
    Ok(ConversationListResponse {
        conversations,
        has_more,
    })
}

/// Moves the user's read position and tells who should know: the user's
/// other sessions, the peer of a direct conversation, and in a group the
/// senders of the messages the read covers.
///
/// # Errors
/// `forbidden` if the user is not in the conversation.
pub async fn read(ctx: &Context, me: &Identity, request: ReadRequest) -> Result<ReadResponse> {
    let mark = ctx
        .store
        .mark_read(me.user, request.conversation_id, request.seq)
        .await?;
    if mark.read_seq > mark.previous {
        let push = Push::PushRead(ReadPush {
            conversation_id: request.conversation_id,
            user_id: me.user,
            read_seq: mark.read_seq,
        });
        let mut told = vec![me.user];
        if let Some(Participants { kind, members }) =
            ctx.store.participants(request.conversation_id).await?
        {
            match kind {
                ConversationKind::Direct => {
                    // A receipt only to a friend: after an unfriending the
                    // two keep their history, not each other's activity.
                    for peer in members.into_iter().filter(|member| *member != me.user) {
                        if ctx.store.friend(me.user, peer).await?.is_some() {
                            told.push(peer);
                        }
                    }
                }
                ConversationKind::Group => {
                    let senders = ctx
                        .store
                        .senders_between(
                            request.conversation_id,
                            mark.previous,
                            mark.read_seq,
                            me.user,
                        )
                        .await?;
                    // Only those still in the group.
                    told.extend(
                        senders
                            .into_iter()
                            .filter(|sender| members.contains(sender)),
                    );
                }
            }
        }
        ctx.push(&told, &push, Some(me.session));
    }
    Ok(ReadResponse {
        read_seq: mark.read_seq,
    })
}

/// Every member's read position in a conversation the user takes part in.
///
/// # Errors
/// `forbidden` if the user is not in the conversation.
pub async fn read_positions(
    ctx: &Context,
    me: &Identity,
    request: ReadPositionsRequest,
) -> Result<ReadPositionsResponse> {
    let mut positions = ctx.store.read_positions(request.conversation_id).await?;
    if !positions.iter().any(|position| position.user_id == me.user) {
        return Err(ServiceError::forbidden("not a member of this conversation"));
    }
    // In a pair that are no longer friends, each sees only their own.
    if let Some(Participants {
        kind: ConversationKind::Direct,
        members,
    }) = ctx.store.participants(request.conversation_id).await?
    {
        if let Some(&peer) = members.iter().find(|member| **member != me.user) {
            if ctx.store.friend(me.user, peer).await?.is_none() {
                positions.retain(|position| position.user_id == me.user);
            }
        }
    }
    Ok(ReadPositionsResponse { positions })
}

/// Tells the other participants' online sessions that the user is typing.
/// Nothing is stored. The session drops repeats before they get here (see
/// [`TypingGate`]).
///
/// # Errors
/// `forbidden` if the user is not in the conversation.
pub async fn typing(
    ctx: &Context,
    me: &Identity,
    request: TypingRequest,
) -> Result<TypingResponse> {
    let participants = ctx.store.participants(request.conversation_id).await?;
    let Some(Participants { kind, members }) = participants else {
        return Err(ServiceError::forbidden("not a member of this conversation"));
    };
    if !members.contains(&me.user) {
        return Err(ServiceError::forbidden("not a member of this conversation"));
    }
    let others: Vec<UserId> = members
        .into_iter()
        .filter(|member| *member != me.user)
        .collect();
    // As for sending: a pair types to each other only while friends.
    if kind == ConversationKind::Direct {
        for &peer in &others {
            if ctx.store.friend(me.user, peer).await?.is_none() {
                return Err(ServiceError::forbidden("not friends"));
            }
        }
    }
    ctx.push(
        &others,
        &Push::PushTyping(TypingPush {
            conversation_id: request.conversation_id,
            user_id: me.user,
        }),
        None,
    );
    Ok(TypingResponse {})
}

/// Recalls a message (its sender, within the window) or removes it (a
/// group's owner or admin), and tells every participant.
///
/// # Errors
/// `forbidden` if not allowed, `not_found` for no such message.
pub async fn recall(
    ctx: &Context,
    me: &Identity,
    request: RecallRequest,
) -> Result<RecallResponse> {
    // A window of 0 means senders may never recall: -1 ms is passed, which
    // even a message committed this very millisecond has outlived.
    let window_ms = match ctx.config.recall_window_secs {
        0 => -1,
        secs => i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    };
    let recall = ctx
        .store
        .recall(RecallArgs {
            actor: me.user,
            conversation: request.conversation_id,
            seq: request.seq,
            now_ms: now_ms(),
            window_ms,
        })
        .await?;
    if recall.changed {
        if let Some(recalled) = recall.message.recalled {
            ctx.push(
                &recall.members,
                &Push::PushRecall(RecallPush {
                    conversation_id: recall.message.conversation_id,
                    seq: recall.message.seq,
                    recalled,
                }),
                Some(me.session),
            );
        }
    }
    Ok(RecallResponse {
        message: recall.message,
    })
}

/// Lets through at most one `typing` per conversation per second from one
/// session, and typing in at most 8 conversations per second; the rest are
/// answered `ok` and dropped, so a fast typist's client costs nothing and
/// never sees an error.
#[derive(Debug, Default)]
pub struct TypingGate {
    /// When each recent conversation last let one through (a few entries:
    /// people type in one or two conversations at a time).
    recent: Vec<(chat_proto::ConversationId, std::time::Instant)>,
}

/// Conversations a [`TypingGate`] remembers; older entries are dropped.
const TYPING_GATE_LEN: usize = 8;

impl TypingGate {
    /// Whether a `typing` in `conversation` at `now` should go out.
    pub fn admit(
        &mut self,
        conversation: chat_proto::ConversationId,
        now: std::time::Instant,
    ) -> bool {
        let second = std::time::Duration::from_secs(1);
        self.recent
            .retain(|(_, at)| now.saturating_duration_since(*at) < second);
        // Full of conversations typed in this second: drop this one too,
        // rather than forget one and let its repeats through.
        if self.recent.len() >= TYPING_GATE_LEN
            || self.recent.iter().any(|(id, _)| *id == conversation)
        {
            return false;
        }
        self.recent.push((conversation, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::ConversationId;
    use std::time::{Duration, Instant};

    #[test]
    fn one_typing_per_conversation_per_second() {
        let mut gate = TypingGate::default();
        let start = Instant::now();
        assert!(gate.admit(ConversationId(1), start));
        assert!(!gate.admit(ConversationId(1), start + Duration::from_millis(300)));
        assert!(gate.admit(ConversationId(2), start + Duration::from_millis(300)));
        assert!(!gate.admit(ConversationId(1), start + Duration::from_millis(999)));
        assert!(gate.admit(ConversationId(1), start + Duration::from_millis(1000)));
    }

    #[test]
    fn the_gate_stays_small_and_cannot_be_cycled() {
        let mut gate = TypingGate::default();
        let now = Instant::now();
        let admitted = (0..100)
            .filter(|id| gate.admit(ConversationId(*id), now))
            .count();
        assert_eq!(admitted, TYPING_GATE_LEN);
        assert!(gate.recent.len() <= TYPING_GATE_LEN);
        // Cycling through more conversations than it holds lets none of
        // them repeat within the second.
        assert!(!gate.admit(ConversationId(0), now + Duration::from_millis(500)));
        assert!(gate.admit(ConversationId(0), now + Duration::from_secs(1)));
    }
}
