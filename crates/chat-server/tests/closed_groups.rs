//! Groups that can be closed: joining by approval or by invitation only,
//! groups that do not exist for those not invited, and kicks with a ban.

mod common;

use chat_client::IntoUserRef;
use chat_proto::{
    GroupCreateRequest, GroupEventKind, GroupId, GroupInfoRequest, GroupInviteRequest,
    GroupJoinRequest, GroupKickRequest, GroupListRequest, GroupMembersRequest,
    GroupRespondJoinRequest, GroupSetPolicyRequest, GroupSetRoleRequest, GroupUnbanRequest,
    JoinPolicy, Push, Role, Status,
};
use common::{
    drain_pushes, expect_group_event, expect_push, open_group, status_of, unique, TestServer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_by_approval_waits_for_the_owner_or_an_admin() {
    let server = TestServer::start().await;
    let (owner, _) = server.user(&unique("owner")).await;
    let (asker, asker_login) = server.user(&unique("asker")).await;
    let (refused, refused_login) = server.user(&unique("refused")).await;
    let group = owner
        .call(GroupCreateRequest {
            name: "by approval".to_owned(),
            description: "".to_owned(),
            join_policy: JoinPolicy::Approval,
        })
        .await
        .unwrap()
        .group;
    assert_eq!(group.join_policy, JoinPolicy::Approval);

    let asked = asker
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    assert!(asked.pending);
    assert_eq!(asked.group.my_role, None);
    match expect_push(&owner, |push| matches!(push, Push::PushGroupJoinRequest(_))).await {
        Push::PushGroupJoinRequest(request) => {
            assert_eq!(request.group_id, group.id);
            assert_eq!(request.user, asker_login.user);
        }
        _ => unreachable!("matched a join request push"),
    }
    refused
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    drain_pushes(&owner).await;
    // The owner sees who waits; the asker sees the group but not the list.
    let info = owner
        .call(GroupInfoRequest { group_id: group.id })
        .await
        .unwrap();
    assert_eq!(info.join_requests.len(), 2);
    let seen_by_asker = asker
        .call(GroupInfoRequest { group_id: group.id })
        .await
        .unwrap();
    assert!(seen_by_asker.join_requests.is_empty());
    // Not a member yet: no messages, no member list.
    assert_eq!(
        status_of(asker.call(GroupMembersRequest { group_id: group.id }).await),
        Status::Forbidden
    );

    owner
        .call(GroupRespondJoinRequest {
            group_id: group.id,
            user: asker_login.user.id.into_user_ref(),
            accept: true,
        })
        .await
        .unwrap();
    let joined = expect_group_event(&asker).await;
    assert_eq!(joined.kind, GroupEventKind::Joined);
    assert_eq!(joined.user_id, asker_login.user.id);
    asker
        .call(GroupMembersRequest { group_id: group.id })
        .await
        .unwrap();
    owner
        .call(GroupRespondJoinRequest {
            group_id: group.id,
            user: refused_login.user.id.into_user_ref(),
            accept: false,
        })
        .await
        .unwrap();
    assert_eq!(
        status_of(
            refused
                .call(GroupMembersRequest { group_id: group.id })
                .await
        ),
        Status::Forbidden
    );
    // A plain member cannot answer requests.
    let (third, third_login) = server.user(&unique("third")).await;
    third
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    assert_eq!(
        status_of(
            asker
                .call(GroupRespondJoinRequest {
                    group_id: group.id,
                    user: third_login.user.id.into_user_ref(),
                    accept: true
                })
                .await
        ),
        Status::Forbidden
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_only_group_does_not_exist_for_strangers() {
    let server = TestServer::start().await;
    let (owner, _) = server.user(&unique("owner")).await;
    let (member, _) = server.user(&unique("member")).await;
    let (invitee, invitee_login) = server.user(&unique("invitee")).await;
    let (stranger, _) = server.user(&unique("stranger")).await;
    let group = open_group(&owner, "secret").await;
    member
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    owner
        .call(GroupSetPolicyRequest {
            group_id: group.id,
            join_policy: JoinPolicy::Invite,
        })
        .await
        .unwrap();
    drain_pushes(&owner).await;

    // Counting ids finds nothing: the answers are those of a group that
    // does not exist.
    let missing = GroupId(group.id.0 + 1_000_000);
    for id in [group.id, missing] {
        assert_eq!(
            status_of(stranger.call(GroupInfoRequest { group_id: id }).await),
            Status::NotFound
        );
        assert_eq!(
            status_of(stranger.call(GroupJoinRequest { group_id: id }).await),
            Status::NotFound
        );
    }
    // Nor can a non-member invite anyone to it.
    assert_eq!(
        status_of(
            stranger
                .call(GroupInviteRequest {
                    group_id: group.id,
                    user: invitee_login.user.id.into_user_ref()
                })
                .await
        ),
        Status::NotFound
    );

    // Any member may invite; the invitee is told, sees the group, and joins.
    member
        .call(GroupInviteRequest {
            group_id: group.id,
            user: invitee_login.user.id.into_user_ref(),
        })
        .await
        .unwrap();
    match expect_push(&invitee, |push| {
        matches!(push, Push::PushGroupInvitation(_))
    })
    .await
    {
        Push::PushGroupInvitation(push) => {
            assert_eq!(push.invitation.group.id, group.id);
            assert_eq!(push.invitation.group.join_policy, JoinPolicy::Invite);
        }
        _ => unreachable!("matched an invitation push"),
    }
    let listed = invitee.call(GroupListRequest {}).await.unwrap();
    assert_eq!(listed.invitations.len(), 1);
    invitee
        .call(GroupInfoRequest { group_id: group.id })
        .await
        .unwrap();
    let joined = invitee
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    assert!(!joined.pending);
    assert_eq!(joined.group.my_role, Some(Role::Member));
    assert!(invitee
        .call(GroupListRequest {})
        .await
        .unwrap()
        .invitations
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_with_a_ban_keeps_the_user_out_until_unbanned() {
    let server = TestServer::start().await;
    let (owner, _) = server.user(&unique("owner")).await;
    let (admin, admin_login) = server.user(&unique("admin")).await;
    let (troll, troll_login) = server.user(&unique("troll")).await;
    let group = open_group(&owner, "open").await;
    admin
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    owner
        .call(GroupSetRoleRequest {
            group_id: group.id,
            user: admin_login.user.id.into_user_ref(),
            role: Role::Admin,
        })
        .await
        .unwrap();
    troll
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();

    // A kick without a ban: back at once.
    admin
        .call(GroupKickRequest {
            group_id: group.id,
            user: troll_login.user.id.into_user_ref(),
            ban: false,
        })
        .await
        .unwrap();
    troll
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    // With a ban: out, even when invited, until an admin lifts it.
    admin
        .call(GroupKickRequest {
            group_id: group.id,
            user: troll_login.user.id.into_user_ref(),
            ban: true,
        })
        .await
        .unwrap();
    assert_eq!(
        status_of(troll.call(GroupJoinRequest { group_id: group.id }).await),
        Status::Forbidden
    );
    assert_eq!(
        status_of(
            owner
                .call(GroupInviteRequest {
                    group_id: group.id,
                    user: troll_login.user.id.into_user_ref()
                })
                .await
        ),
        Status::Forbidden
    );
    // Only the owner and admins lift bans.
    let (member, _) = server.user(&unique("member")).await;
    member
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    assert_eq!(
        status_of(
            member
                .call(GroupUnbanRequest {
                    group_id: group.id,
                    user: troll_login.user.id.into_user_ref()
                })
                .await
        ),
        Status::Forbidden
    );
    admin
        .call(GroupUnbanRequest {
            group_id: group.id,
            user: troll_login.user.id.into_user_ref(),
        })
        .await
        .unwrap();
    troll
        .call(GroupJoinRequest { group_id: group.id })
        .await
        .unwrap();
    // An admin demoted cannot kick any more: the role is checked with the
    // change.
    owner
        .call(GroupSetRoleRequest {
            group_id: group.id,
            user: admin_login.user.id.into_user_ref(),
            role: Role::Member,
        })
        .await
        .unwrap();
    assert_eq!(
        status_of(
            admin
                .call(GroupKickRequest {
                    group_id: group.id,
                    user: troll_login.user.id.into_user_ref(),
                    ban: false
                })
                .await
        ),
        Status::Forbidden
    );
}
