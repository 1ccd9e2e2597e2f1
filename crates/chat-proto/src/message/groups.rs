//! Group payloads: roles, join policies, members, invitations, and the
//! requests that create, join, leave and administer a group.

use serde::{Deserialize, Serialize};

use super::{null_as_default, UserRef, UserSummary};
use crate::ids::{ConversationId, GroupId, UserId};

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created the group (or was handed it); may do everything.
    Owner,
    /// May kick plain members.
    Admin,
    /// May chat.
    Member,
}

impl Role {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A group as seen by the session's user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The group's id.
    pub id: GroupId,
    /// Its display name (not unique).
    pub name: String,
    /// Its description, possibly empty.
    pub description: String,
    /// Its current owner.
    pub owner_id: UserId,
    /// Its message log.
    pub conversation_id: ConversationId,
    /// How many members it has.
    pub member_count: u32,
    /// The session's user's role, or `null` when not a member.
    pub my_role: Option<Role>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Who may join (`open` from servers that predate join policies).
    #[serde(default)]
    pub join_policy: JoinPolicy,
}

/// Who may join a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinPolicy {
    /// Anyone who knows the group's id.
    #[default]
    Open,
    /// Anyone may ask; the owner or an admin accepts or refuses.
    Approval,
    /// Only users a member invited; to anyone else the group does not exist.
    Invite,
}

impl JoinPolicy {
    /// Whether this is [`JoinPolicy::Open`], the default.
    #[must_use]
    pub fn is_open(&self) -> bool {
        *self == JoinPolicy::Open
    }

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JoinPolicy::Open => "open",
            JoinPolicy::Approval => "approval",
            JoinPolicy::Invite => "invite",
        }
    }

    /// The policy with this wire name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<JoinPolicy> {
        match name {
            "open" => Some(JoinPolicy::Open),
            "approval" => Some(JoinPolicy::Approval),
            "invite" => Some(JoinPolicy::Invite),
            _ => None,
        }
    }
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's id.
    pub id: UserId,
    /// The member's account name.
    pub name: String,
    /// The member's role.
    pub role: Role,
    /// Whether they have at least one session online.
    pub online: bool,
}

/// `group_create` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreateRequest {
    /// 1 to 64 characters.
    pub name: String,
    /// At most 512 characters.
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    /// Who may join; `open` if left out (and left out when `open`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "JoinPolicy::is_open"
    )]
    pub join_policy: JoinPolicy,
}

/// `group_create` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreateResponse {
    /// The new group; the session's user is its owner.
    pub group: Group,
}

/// `group_join` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJoinRequest {
    /// The group.
    pub group_id: GroupId,
}

/// `group_join` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJoinResponse {
    /// The group joined, or asked to join.
    pub group: Group,
    /// Whether the join waits for the owner's or an admin's approval (the
    /// caller is not a member yet).
    #[serde(default)]
    pub pending: bool,
}

/// `group_leave` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLeaveRequest {
    /// The group.
    pub group_id: GroupId,
}

/// `group_leave` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLeaveResponse {}

/// `group_dissolve` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDissolveRequest {
    /// The group.
    pub group_id: GroupId,
}

/// `group_dissolve` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDissolveResponse {}

/// `group_kick` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupKickRequest {
    /// The group.
    pub group_id: GroupId,
    /// The member to remove.
    pub user: UserRef,
    /// Also ban them: they cannot join again until unbanned (left out when
    /// false).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub ban: bool,
}

/// `group_kick` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupKickResponse {}

/// `group_set_role` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSetRoleRequest {
    /// The group.
    pub group_id: GroupId,
    /// The member.
    pub user: UserRef,
    /// The new role. Making somebody `owner` hands the group over and makes
    /// the old owner an admin.
    pub role: Role,
}

/// `group_set_role` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSetRoleResponse {}

/// `group_info` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfoRequest {
    /// The group.
    pub group_id: GroupId,
}

/// `group_info` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfoResponse {
    /// The group.
    pub group: Group,
    /// Users waiting for approval to join; shown to the owner and admins
    /// only, empty for everyone else.
    #[serde(default)]
    pub join_requests: Vec<UserSummary>,
}

/// `group_members` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembersRequest {
    /// The group (the session's user must be a member).
    pub group_id: GroupId,
}

/// `group_members` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembersResponse {
    /// The group's members.
    pub members: Vec<Member>,
}

/// `group_list` request: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupListRequest {}

/// `group_list` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupListResponse {
    /// The groups the session's user belongs to.
    pub groups: Vec<Group>,
    /// Invitations waiting for the user: join the group to accept.
    #[serde(default)]
    pub invitations: Vec<GroupInvitation>,
}

/// An invitation to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInvitation {
    /// The group.
    pub group: Group,
    /// Who invited the user.
    pub inviter: UserSummary,
}

/// `group_set_policy` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSetPolicyRequest {
    /// The group.
    pub group_id: GroupId,
    /// Who may join from now on.
    pub join_policy: JoinPolicy,
}

/// `group_set_policy` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSetPolicyResponse {
    /// The group with its new policy.
    pub group: Group,
}

/// `group_invite` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInviteRequest {
    /// The group (the caller must be a member).
    pub group_id: GroupId,
    /// Whom to invite.
    pub user: UserRef,
}

/// `group_invite` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInviteResponse {}

/// `group_respond_join` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRespondJoinRequest {
    /// The group (the caller must be its owner or an admin).
    pub group_id: GroupId,
    /// Who asked to join.
    pub user: UserRef,
    /// Let them in (`true`) or refuse (`false`).
    pub accept: bool,
}

/// `group_respond_join` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRespondJoinResponse {}

/// `group_unban` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupUnbanRequest {
    /// The group (the caller must be its owner or an admin).
    pub group_id: GroupId,
    /// Whom to let join again.
    pub user: UserRef,
}

/// `group_unban` response: no fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupUnbanResponse {}
