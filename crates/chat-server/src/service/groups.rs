//! Groups: create, join, leave, kick, roles, dissolve, info and members;
//! join policies, requests to join, invitations and bans.
//!
//! Changes that depend on the actor's role (kick, set a role, dissolve,
//! change the policy, answer a request, unban) are checked by the store in
//! the transaction that makes them: a role read here first could be stale
//! by the time the change commits on another node.

use chat_proto::{
    Group, GroupCreateRequest, GroupCreateResponse, GroupDissolveRequest, GroupDissolveResponse,
    GroupEventKind, GroupEventPush, GroupId, GroupInfoRequest, GroupInfoResponse, GroupJoinRequest,
    GroupJoinResponse, GroupKickRequest, GroupKickResponse, GroupLeaveRequest, GroupLeaveResponse,
    GroupListRequest, GroupListResponse, GroupMembersRequest, GroupMembersResponse,
    GroupSetRoleRequest, GroupSetRoleResponse, Member, Push, Role, UserId,
};
use chat_proto::{
    GroupInvitation, GroupInvitationPush, GroupInviteRequest, GroupInviteResponse,
    GroupJoinRequestPush, GroupRespondJoinRequest, GroupRespondJoinResponse, GroupSetPolicyRequest,
    GroupSetPolicyResponse, GroupUnbanRequest, GroupUnbanResponse, JoinPolicy, UserSummary,
};
use chat_store::group_access::JoinOutcome;
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
        join_policy: group.join_policy,
    }
}

/// The ids of the group's members whose role `wanted` accepts.
async fn members_where(
    ctx: &Context,
    group: GroupId,
    wanted: impl Fn(Role) -> bool,
) -> Result<Vec<UserId>> {
    Ok(ctx
        .store
        .members(group)
        .await?
        .into_iter()
        .filter(|member| wanted(member.role))
        .map(|member| member.id)
        .collect())
}

/// The group's owner and admins, who answer requests to join.
async fn managers(ctx: &Context, group: GroupId) -> Result<Vec<UserId>> {
    members_where(ctx, group, |role| matches!(role, Role::Owner | Role::Admin)).await
}

/// Every member of the group.
async fn member_ids(ctx: &Context, group: GroupId) -> Result<Vec<UserId>> {
    members_where(ctx, group, |_| true).await
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

/// The session's user as others see them.
fn summary(me: &Identity) -> UserSummary {
    UserSummary {
        id: me.user,
        name: me.name.to_string(),
    }
}

/// A change to a group's membership that its members are told of
/// (`push_group_event`), made by the session's user.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// This user joined (or was let in) as a plain member.
    Joined(UserId),
    /// The session's user left.
    Left,
    /// This user was removed.
    Kicked(UserId),
    /// This user has this role now.
    RoleChanged(UserId, Role),
    /// The session's user, the owner, dissolved the group.
    Dissolved,
}

impl Change {
    fn event(self, group_id: GroupId, me: &Identity) -> GroupEventPush {
        let (kind, user_id, role) = match self {
            Change::Joined(user) => (GroupEventKind::Joined, user, Some(Role::Member)),
            Change::Left => (GroupEventKind::Left, me.user, None),
            Change::Kicked(user) => (GroupEventKind::Kicked, user, None),
            Change::RoleChanged(user, role) => (GroupEventKind::RoleChanged, user, Some(role)),
            Change::Dissolved => (GroupEventKind::Dissolved, me.user, None),
        };
        GroupEventPush {
            group_id,
            kind,
            user_id,
            actor_id: me.user,
            role,
        }
    }
}

/// Pushes `changes`, in order, to `users`.
fn announce(ctx: &Context, me: &Identity, group_id: GroupId, users: &[UserId], changes: &[Change]) {
    for change in changes {
        let event = change.event(group_id, me);
        ctx.push(users, &Push::PushGroupEvent(event), None);
    }
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
    let created = ctx.store.create_group_with_policy(
        me.user,
        &request.name,
        &request.description,
        request.join_policy,
        now_ms(),
    );
    let quota = &ctx.group_creations;
    let group = ctx
        .within_quota(quota, me.user, "group creations", created)
        .await?;
    tracing::debug!(group = %group.id, owner = %me.user, "group created");
    Ok(GroupCreateResponse {
        group: to_wire(group, Some(Role::Owner)),
    })
}

/// Joins a group as a plain member: an open group, or one the user was
/// invited to, at once; an `approval` group once the owner or an admin
/// accepts (they are told by a push). An `invite` group the user was not
/// invited to is answered as if it did not exist.
///
/// # Errors
/// `not_found`, `forbidden` for a banned user, `conflict` if already a
/// member, `rate_limited` past the per-user hourly quota.
pub async fn join(
    ctx: &Context,
    me: &Identity,
    request: GroupJoinRequest,
) -> Result<GroupJoinResponse> {
    load(ctx, request.group_id).await?;
    let joined = ctx.store.request_join(request.group_id, me.user, now_ms());
    let quota = &ctx.group_joins;
    match ctx
        .within_quota(quota, me.user, "group joins", joined)
        .await?
    {
        JoinOutcome::Joined => {
            let members = member_ids(ctx, request.group_id).await?;
            announce(
                ctx,
                me,
                request.group_id,
                &members,
                &[Change::Joined(me.user)],
            );
            let group = load(ctx, request.group_id).await?;
            Ok(GroupJoinResponse {
                group: to_wire(group, Some(Role::Member)),
                pending: false,
            })
        }
        JoinOutcome::Pending => {
            ctx.push(
                &managers(ctx, request.group_id).await?,
                &Push::PushGroupJoinRequest(GroupJoinRequestPush {
                    group_id: request.group_id,
                    user: summary(me),
                }),
                None,
            );
            let group = load(ctx, request.group_id).await?;
            Ok(GroupJoinResponse {
                group: to_wire(group, None),
                pending: true,
            })
        }
    }
}

/// Lets a user who asked into an `approval` group, or refuses them (owner
/// or admin).
///
/// # Errors
/// `not_found` (no such group or request), `forbidden`.
pub async fn respond_join(
    ctx: &Context,
    me: &Identity,
    request: GroupRespondJoinRequest,
) -> Result<GroupRespondJoinResponse> {
    let user = resolve_user(ctx, &request.user).await?;
    ctx.store
        .respond_join(request.group_id, me.user, user.id, request.accept, now_ms())
        .await?;
    if request.accept {
        let members = member_ids(ctx, request.group_id).await?;
        announce(
            ctx,
            me,
            request.group_id,
            &members,
            &[Change::Joined(user.id)],
        );
    }
    Ok(GroupRespondJoinResponse {})
}

/// Invites a user (any member may).
///
/// # Errors
/// `not_found` (no such user or group), `forbidden` (not a member, or the
/// invitee is banned), `conflict` (a member already, or invited already).
pub async fn invite(
    ctx: &Context,
    me: &Identity,
    request: GroupInviteRequest,
) -> Result<GroupInviteResponse> {
    let user = resolve_user(ctx, &request.user).await?;
    ctx.store
        .invite(request.group_id, me.user, user.id, now_ms())
        .await?;
    let group = load(ctx, request.group_id).await?;
    ctx.push(
        &[user.id],
        &Push::PushGroupInvitation(GroupInvitationPush {
            invitation: GroupInvitation {
                group: to_wire(group, None),
                inviter: summary(me),
            },
        }),
        None,
    );
    Ok(GroupInviteResponse {})
}

/// Sets who may join (owner or admin).
///
/// # Errors
/// `not_found`, `forbidden`.
pub async fn set_policy(
    ctx: &Context,
    me: &Identity,
    request: GroupSetPolicyRequest,
) -> Result<GroupSetPolicyResponse> {
    ctx.store
        .set_join_policy(request.group_id, me.user, request.join_policy)
        .await?;
    let group = load(ctx, request.group_id).await?;
    let role = ctx.store.role(request.group_id, me.user).await?;
    Ok(GroupSetPolicyResponse {
        group: to_wire(group, role),
    })
}

/// Lets a banned user join again (owner or admin).
///
/// # Errors
/// `not_found` (no such group, user or ban), `forbidden`.
pub async fn unban(
    ctx: &Context,
    me: &Identity,
    request: GroupUnbanRequest,
) -> Result<GroupUnbanResponse> {
    let user = resolve_user(ctx, &request.user).await?;
    ctx.store.unban(request.group_id, me.user, user.id).await?;
    Ok(GroupUnbanResponse {})
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
    announce(ctx, me, request.group_id, &told, &[Change::Left]);
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
    my_role(ctx, request.group_id, me).await?;
    let former = ctx.store.dissolve_as(request.group_id, me.user).await?;
    announce(ctx, me, request.group_id, &former, &[Change::Dissolved]);
    Ok(GroupDissolveResponse {})
}

/// Removes a member, and with `ban` keeps them out until unbanned: the
/// owner may remove anyone else, an admin only plain members.
///
/// # Errors
/// `not_found`, `forbidden`.
pub async fn kick(
    ctx: &Context,
    me: &Identity,
    request: GroupKickRequest,
) -> Result<GroupKickResponse> {
    my_role(ctx, request.group_id, me).await?;
    let target = resolve_user(ctx, &request.user).await?;
    if target.id == me.user {
        return Err(ServiceError::bad_request(
            "use group_leave to leave a group",
        ));
    }
    ctx.store
        .kick(request.group_id, me.user, target.id, request.ban, now_ms())
        .await
        .map_err(|error| match error {
            chat_store::StoreError::NotFound("member") => {
                ServiceError::not_found("that user is not a member")
            }
            other => other.into(),
        })?;
    let mut told = member_ids(ctx, request.group_id).await?;
    told.push(target.id);
    announce(
        ctx,
        me,
        request.group_id,
        &told,
        &[Change::Kicked(target.id)],
    );
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
        .set_role_as(request.group_id, me.user, target.id, request.role)
        .await?;
    let members = member_ids(ctx, request.group_id).await?;
    let mut changes = vec![Change::RoleChanged(target.id, request.role)];
    if request.role == Role::Owner {
        // Handing the group over made the previous owner an admin.
        changes.push(Change::RoleChanged(me.user, Role::Admin));
    }
    announce(ctx, me, request.group_id, &members, &changes);
    Ok(GroupSetRoleResponse {})
}

/// Describes a group: an open one to anyone logged in (to decide whether to
/// join), any other only to its members and to users invited to it or
/// waiting for approval; to everyone else it does not exist, so its id
/// cannot be found by counting. The owner and admins also see who waits
/// for approval.
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
    if role.is_none() && group.join_policy != JoinPolicy::Open {
        let standing = ctx.store.standing(request.group_id, me.user).await?;
        if !standing.invited && !standing.requested {
            return Err(ServiceError::not_found("group not found"));
        }
    }
    let join_requests = match role {
        Some(Role::Owner | Role::Admin) => ctx.store.join_requests(request.group_id).await?,
        _ => Vec::new(),
    };
    Ok(GroupInfoResponse {
        group: to_wire(group, role),
        join_requests,
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
    let mut invitations = Vec::new();
    for (group_id, inviter) in ctx.store.invitations_of(me.user).await? {
        // A group dissolved meanwhile takes its invitations with it.
        if let Some(group) = ctx.store.group(group_id).await? {
            invitations.push(GroupInvitation {
                group: to_wire(group, None),
                inviter,
            });
        }
    }
    Ok(GroupListResponse {
        groups,
        invitations,
    })
}
