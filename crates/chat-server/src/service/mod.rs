//! Request handlers, one module per feature. Each takes the shared
//! [`Context`](crate::context::Context), the session's
//! [`Identity`](crate::context::Identity) and a typed request, acts on the
//! store, sends pushes through the bus, and returns a typed response.

pub mod account;
pub mod chat;
pub mod conversations;
pub mod friends;
pub mod groups;
pub mod validate;

use chat_proto::{Friend, UserRef};
use chat_store::{FriendRecord, UserRecord};

use crate::context::Context;
use crate::error::{Result, ServiceError};

/// Looks up the user a request names.
///
/// # Errors
/// `not_found` if there is no such user; `bad_request` for an invalid name.
pub async fn resolve_user(ctx: &Context, user: &UserRef) -> Result<UserRecord> {
    let found = match user {
        UserRef::Id(id) => ctx.store.user_by_id(*id).await?,
        UserRef::Name(name) => {
            if name.is_empty() || name.chars().count() > 32 {
                return Err(ServiceError::bad_request(
                    "user names are 1 to 32 characters",
                ));
            }
            ctx.store.user_by_name(name).await?
        }
    };
    found.ok_or_else(|| ServiceError::not_found("no such user"))
}

/// Turns stored friend records into wire friends with presence.
pub async fn friends_with_presence(ctx: &Context, records: Vec<FriendRecord>) -> Vec<Friend> {
    let ids: Vec<_> = records.iter().map(|record| record.id).collect();
    let online = ctx.bus.online(&ids).await;
    records
        .into_iter()
        .zip(online)
        .map(|(record, online)| Friend {
            id: record.id,
            name: record.name,
            remark: record.remark,
            category: record.category,
            online,
            conversation_id: record.conversation_id,
        })
        .collect()
}
