//! Groups: create, join, leave, kick, roles, dissolve, info and members.

use chat_proto::{
    Group, GroupCreateRequest, GroupCreateResponse, GroupDissolveRequest, GroupDissolveResponse,
    GroupEventKind, GroupEventPush, GroupId, GroupInfoRequest, GroupInfoResponse, GroupJoinRequest,
    GroupJoinResponse, GroupKickRequest, GroupKickResponse, GroupLeaveRequest, GroupLeaveResponse,
    GroupListRequest, GroupListResponse, GroupMembersRequest, GroupMembersResponse,
    GroupSetRoleRequest, GroupSetRoleResponse, Member, Push, Role, UserId,
};
use chat_store::GroupRecord;

use crate::context::{now_ms, Context, Identity};
use crate::error::{Result, ServiceError};
use crate::service::{resolve_user, validate};

fn to_wire(group: GroupRecord, my_role: Option<Role>) -> Group {
    Group {
        id: group.id,
        name: group.name,
        description: group.description,
        owner_id: group.owner_id,
        conversation_id: group.conversation_id,
        member_count: group.member_count,
        my_role,
        created_at_ms: group.created_at_ms,
    }
}

async fn load(ctx: &Context, group: GroupId) -> Result<GroupRecord> {
    ctx.store
        .group(group)
        .await?
        .ok_or_else(|| ServiceError::not_found("group not found"))
}

async fn my_role(ctx: &Context, group: GroupId, me: &Identity) -> Result<Role> {
    load(ctx, group).await?;
    ctx.store
        .role(group, me.user)
        .await?
        .ok_or_else(|| ServiceError::forbidden("not a member of this group"))
}

async fn member_ids(ctx: &Context, group: GroupId) -> Result<Vec<UserId>> {
    Ok(ctx
        .store
        .members(group)
        .await?
        .into_iter()
        .map(|member| member.id)
        .collect())
}

/// Pushes a group event to `users`.
async fn announce(
    ctx: &Context,
    users: &[UserId],
    group_id: GroupId,
    kind: GroupEventKind,
    user_id: UserId,
    actor_id: UserId,
    role: Option<Role>,
) {
    ctx.push(
        users,
        &Push::PushGroupEvent(GroupEventPush {
            group_id,
            kind,
            user_id,
            actor_id,
            role,
        }),
        None,
    );
}

/// Creates a group owned by the session's user.
///
/// # Errors
/// `bad_request` for an invalid name or description, `rate_limited` past
/// the per-user hourly quota.
pub async fn create(
    ctx: &Context,
    me: &Identity,
    request: GroupCreateRequest,
) -> Result<GroupCreateResponse> {
    validate::text("name", &request.name, validate::MAX_GROUP_NAME_CHARS, true)?;
    validate::text(
        "description",
        &request.description,
        validate::MAX_DESCRIPTION_CHARS,
        false,
    )?;
    ctx.take_quota(&ctx.group_creations, me.user, "group creations")?;
    let created = ctx
        .store
        .create_group(me.user, &request.name, &request.description, now_ms())
        .await;
    if created.is_err() {
        ctx.group_creations.release(&me.user);
    }
    let group = created?;
    tracing::debug!(group = %group.id, owner = %me.user, "group created");
    Ok(GroupCreateResponse {
        group: to_wire(group, Some(Role::Owner)),
    })
}

/// Joins a group as a plain member.
///
/// # Errors
/// `not_found`, `conflict` if already a member, `rate_limited` past the
/// per-user hourly quota.
pub async fn join(
    ctx: &Context,
    me: &Identity,
    request: GroupJoinRequest,
) -> Result<GroupJoinResponse> {
    load(ctx, request.group_id).await?;
    ctx.take_quota(&ctx.group_joins, me.user, "group joins")?;
    let joined = ctx
        .store
        .add_member(request.group_id, me.user, Role::Member, now_ms())
        .await;
    if joined.is_err() {
        ctx.group_joins.release(&me.user);
    }
    joined?;
    let members = member_ids(ctx, request.group_id).await?;
    announce(
        ctx,
        &members,
        request.group_id,
        GroupEventKind::Joined,
        me.user,
        me.user,
        Some(Role::Member),
    )
    .await;
    let group = load(ctx, request.group_id).await?;
    Ok(GroupJoinResponse {
        group: to_wire(group, Some(Role::Member)),
    })
}

/// Leaves a group. The owner must hand the group over or dissolve it first.
///
/// # Errors
/// `not_found`, `forbidden` if not a member, `conflict` for the owner.
pub async fn leave(
    ctx: &Context,
    me: &Identity,
    request: GroupLeaveRequest,
) -> Result<GroupLeaveResponse> {
    if my_role(ctx, request.group_id, me).await? == Role::Owner {
        return Err(ServiceError::conflict(
            "the owner cannot leave: hand the group over (set another member's role to owner) or dissolve it",
        ));
    }
    ctx.store.remove_member(request.group_id, me.user).await?;
    let mut told = member_ids(ctx, request.group_id).await?;
    told.push(me.user);
    announce(
        ctx,
        &told,
        request.group_id,
        GroupEventKind::Left,
        me.user,
        me.user,
        None,
    )
    .await;
    Ok(GroupLeaveResponse {})
}

/// Dissolves a group (owner only).
///
/// # Errors
/// `not_found`, `forbidden` unless the owner.
pub async fn dissolve(
    ctx: &Context,
    me: &Identity,
    request: GroupDissolveRequest,
) -> Result<GroupDissolveResponse> {
    if my_role(ctx, request.group_id, me).await? != Role::Owner {
        return Err(ServiceError::forbidden(
            "only the owner can dissolve the group",
        ));
    }
    let former = ctx.store.dissolve_group(request.group_id).await?;
    announce(
        ctx,
        &former,
        request.group_id,
        GroupEventKind::Dissolved,
        me.user,
        me.user,
        None,
    )
    .await;
    Ok(GroupDissolveResponse {})
}

/// Removes a member: the owner may remove anyone else, an admin only plain members.
///
/// # Errors
/// `not_found`, `forbidden`.
pub async fn kick(
    ctx: &Context,
    me: &Identity,
    request: GroupKickRequest,
) -> Result<GroupKickResponse> {
    let mine = my_role(ctx, request.group_id, me).await?;
    let target = resolve_user(ctx, &request.user).await?;
    if target.id == me.user {
        return Err(ServiceError::bad_request(
            "use group_leave to leave a group",
        ));
    }
    let theirs = ctx
        .store
        .role(request.group_id, target.id)
        .await?
        .ok_or_else(|| ServiceError::not_found("that user is not a member"))?;
    let allowed = match mine {
        Role::Owner => true,
        Role::Admin => theirs == Role::Member,
        Role::Member => false,
    };
    if !allowed {
        return Err(ServiceError::forbidden(
            "only the owner, or an admin removing a plain member, can kick",
        ));
    }
    ctx.store.remove_member(request.group_id, target.id).await?;
    let mut told = member_ids(ctx, request.group_id).await?;
    told.push(target.id);
    announce(
        ctx,
        &told,
        request.group_id,
        GroupEventKind::Kicked,
        target.id,
        me.user,
        None,
    )
    .await;
    Ok(GroupKickResponse {})
}

/// Changes a member's role (owner only). Making somebody owner hands the
/// group over; the previous owner becomes an admin.
///
/// # Errors
/// `not_found`, `forbidden`, `bad_request` for one's own role.
pub async fn set_role(
    ctx: &Context,
    me: &Identity,
    request: GroupSetRoleRequest,
) -> Result<GroupSetRoleResponse> {
    if my_role(ctx, request.group_id, me).await? != Role::Owner {
        return Err(ServiceError::forbidden("only the owner can change roles"));
    }
    let target = resolve_user(ctx, &request.user).await?;
    if target.id == me.user {
        return Err(ServiceError::bad_request(
            "the owner's role changes only by handing the group to somebody else",
        ));
    }
    ctx.store
        .set_role(request.group_id, target.id, request.role)
        .await?;
    let members = member_ids(ctx, request.group_id).await?;
    announce(
        ctx,
        &members,
        request.group_id,
        GroupEventKind::RoleChanged,
        target.id,
        me.user,
        Some(request.role),
    )
    .await;
    if request.role == Role::Owner {
        announce(
            ctx,
            &members,
            request.group_id,
            GroupEventKind::RoleChanged,
            me.user,
            me.user,
            Some(Role::Admin),
        )
        .await;
    }
    Ok(GroupSetRoleResponse {})
}

/// Describes a group; anyone logged in may look, to decide whether to join.
///
/// # Errors
/// `not_found`.
pub async fn info(
    ctx: &Context,
    me: &Identity,
    request: GroupInfoRequest,
) -> Result<GroupInfoResponse> {
    let group = load(ctx, request.group_id).await?;
    let role = ctx.store.role(request.group_id, me.user).await?;
    Ok(GroupInfoResponse {
        group: to_wire(group, role),
    })
}

/// Lists a group's members with presence (members only).
///
/// # Errors
/// `not_found`, `forbidden`.
pub async fn members(
    ctx: &Context,
    me: &Identity,
    request: GroupMembersRequest,
) -> Result<GroupMembersResponse> {
    my_role(ctx, request.group_id, me).await?;
    let records = ctx.store.members(request.group_id).await?;
    let ids: Vec<_> = records.iter().map(|member| member.id).collect();
    let online = ctx.bus.online(&ids).await;
    Ok(GroupMembersResponse {
        members: records
            .into_iter()
            .zip(online)
            .map(|(member, online)| Member {
                id: member.id,
                name: member.name,
                role: member.role,
                online,
            })
            .collect(),
    })
}

/// Lists the session's user's groups.
///
/// # Errors
/// A store failure.
pub async fn list(
    ctx: &Context,
    me: &Identity,
    _request: GroupListRequest,
) -> Result<GroupListResponse> {
    let groups = ctx
        .store
        .groups_of(me.user)
        .await?
        .into_iter()
        .map(|(group, role)| to_wire(group, Some(role)))
        .collect();
    Ok(GroupListResponse { groups })
}
