//! Friend requests, friendships, remarks and categories.

use chat_proto::{
    Friend, FriendAddOutcome, FriendAddRequest, FriendAddResponse, FriendListRequest,
    FriendListResponse, FriendRemoveRequest, FriendRemoveResponse, FriendRequestPush,
    FriendRespondRequest, FriendRespondResponse, FriendUpdateKind, FriendUpdatePush,
    FriendUpdateRequest, FriendUpdateResponse, Push, UserId, UserSummary,
};
use chat_store::FriendAddResult;

use crate::context::{now_ms, Context, Identity};
use crate::error::{Result, ServiceError};
use crate::service::{friends_with_presence, resolve_user, validate};

/// The friend `friend` as `user` sees them now.
async fn friend_view(ctx: &Context, user: UserId, friend: UserId) -> Result<Friend> {
    let record = ctx
        .store
        .friend(user, friend)
        .await?
        .ok_or_else(|| ServiceError::not_found("friend not found"))?;
    Ok(friends_with_presence(ctx, vec![record])
        .await
        .pop()
        .expect("one record in, one friend out"))
}

/// Tells both sides of a new friendship.
async fn announce_friendship(ctx: &Context, me: &Identity, other: &UserSummary) -> Result<Friend> {
    let theirs = friend_view(ctx, other.id, me.user).await?;
    ctx.push(
        &[other.id],
        &Push::PushFriendUpdate(FriendUpdatePush {
            user: UserSummary {
                id: me.user,
                name: me.name.to_string(),
            },
            kind: FriendUpdateKind::Accepted,
            friend: Some(theirs),
        }),
        None,
    );
    let mine = friend_view(ctx, me.user, other.id).await?;
    // The user's other sessions learn of the new friend too.
    ctx.push(
        &[me.user],
        &Push::PushFriendUpdate(FriendUpdatePush {
            user: other.clone(),
            kind: FriendUpdateKind::Accepted,
            friend: Some(mine.clone()),
        }),
        Some(me.session),
    );
    Ok(mine)
}

/// Sends a friend request, or accepts the other side's pending one.
///
/// # Errors
/// `not_found`, `conflict` (already friends, already asked, oneself),
/// `bad_request`, `rate_limited` past the per-user hourly quota.
pub async fn add(
    ctx: &Context,
    me: &Identity,
    request: FriendAddRequest,
) -> Result<FriendAddResponse> {
    if let Some(message) = &request.message {
        validate::text("message", message, validate::MAX_GREETING_CHARS, false)?;
    }
    let other = resolve_user(ctx, &request.user).await?;
    if other.id == me.user {
        return Err(ServiceError::conflict("cannot befriend oneself"));
    }
    let other = UserSummary {
        id: other.id,
        name: other.name,
    };
    // A request stores a row and notifies someone: counted per user, and
    // given back if nothing was stored.
    let added =
        ctx.store
            .add_friend_request(me.user, other.id, request.message.as_deref(), now_ms());
    let quota = &ctx.friend_requests;
    match ctx
        .within_quota(quota, me.user, "friend requests", added)
        .await?
    {
        FriendAddResult::Pending(info) => {
            ctx.push(
                &[other.id],
                &Push::PushFriendRequest(FriendRequestPush { request: info }),
                None,
            );
            Ok(FriendAddResponse {
                user: other,
                outcome: FriendAddOutcome::Pending,
                friend: None,
            })
        }
        FriendAddResult::Accepted(_) => {
            let friend = announce_friendship(ctx, me, &other).await?;
            Ok(FriendAddResponse {
                user: other,
                outcome: FriendAddOutcome::Accepted,
                friend: Some(friend),
            })
        }
    }
}

/// Accepts or declines a pending request.
///
/// # Errors
/// `not_found` if no request from that user is pending.
pub async fn respond(
    ctx: &Context,
    me: &Identity,
    request: FriendRespondRequest,
) -> Result<FriendRespondResponse> {
    let other = resolve_user(ctx, &request.user).await?;
    let other = UserSummary {
        id: other.id,
        name: other.name,
    };
    ctx.store
        .respond_friend_request(other.id, me.user, request.accept, now_ms())
        .await?;
    if request.accept {
        let friend = announce_friendship(ctx, me, &other).await?;
        Ok(FriendRespondResponse {
            user: other,
            accepted: true,
            friend: Some(friend),
        })
    } else {
        ctx.push(
            &[other.id],
            &Push::PushFriendUpdate(FriendUpdatePush {
                user: UserSummary {
                    id: me.user,
                    name: me.name.to_string(),
                },
                kind: FriendUpdateKind::Declined,
                friend: None,
            }),
            None,
        );
        Ok(FriendRespondResponse {
            user: other,
            accepted: false,
            friend: None,
        })
    }
}

/// Ends a friendship.
///
/// # Errors
/// `not_found` if they are not friends.
pub async fn remove(
    ctx: &Context,
    me: &Identity,
    request: FriendRemoveRequest,
) -> Result<FriendRemoveResponse> {
    let other = resolve_user(ctx, &request.user).await?;
    ctx.store.remove_friend(me.user, other.id).await?;
    let other = UserSummary {
        id: other.id,
        name: other.name,
    };
    ctx.push(
        &[other.id],
        &Push::PushFriendUpdate(FriendUpdatePush {
            user: UserSummary {
                id: me.user,
                name: me.name.to_string(),
            },
            kind: FriendUpdateKind::Removed,
            friend: None,
        }),
        None,
    );
    Ok(FriendRemoveResponse { user: other })
}

/// Lists friends with presence and pending requests.
///
/// # Errors
/// A store failure.
pub async fn list(
    ctx: &Context,
    me: &Identity,
    _request: FriendListRequest,
) -> Result<FriendListResponse> {
    let friends = friends_with_presence(ctx, ctx.store.friends_of(me.user).await?).await;
    let (incoming_requests, outgoing_requests) = ctx.store.pending_requests(me.user).await?;
    Ok(FriendListResponse {
        friends,
        incoming_requests,
        outgoing_requests,
    })
}

/// Sets a friend's remark and/or category.
///
/// # Errors
/// `not_found` if not friends, `bad_request` for over-long text.
pub async fn update(
    ctx: &Context,
    me: &Identity,
    request: FriendUpdateRequest,
) -> Result<FriendUpdateResponse> {
    if let Some(remark) = &request.remark {
        validate::text("remark", remark, validate::MAX_LABEL_CHARS, false)?;
    }
    if let Some(category) = &request.category {
        validate::text("category", category, validate::MAX_LABEL_CHARS, false)?;
    }
    let other = resolve_user(ctx, &request.user).await?;
    let record = ctx
        .store
        .update_friend(
            me.user,
            other.id,
            request.remark.as_deref(),
            request.category.as_deref(),
        )
        .await?;
    let friend = friends_with_presence(ctx, vec![record])
        .await
        .pop()
        .expect("one record in, one friend out");
    Ok(FriendUpdateResponse { friend })
}
