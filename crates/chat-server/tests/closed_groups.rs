//! Groups that can be closed: joining by approval or by invitation only,
//! groups that do not exist for those not invited, and kicks with a ban.

mod common;

use chat_proto::{GroupEventKind, GroupId, JoinPolicy, Push, Role, Status};
use common::{drain_pushes, expect_group_event, expect_push, status_of, unique, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_by_approval_waits_for_the_owner_or_an_admin() {
    let server = TestServer::start().await;
    let (owner, _) = server.user(&unique("owner")).await;
    let (asker, asker_login) = server.user(&unique("asker")).await;
    let (refused, refused_login) = server.user(&unique("refused")).await;
    let group = owner
        .group_create_with_policy("by approval", "", JoinPolicy::Approval)
        .await
        .unwrap()
        .group;
    assert_eq!(group.join_policy, JoinPolicy::Approval);

    let asked = asker.group_join(group.id).await.unwrap();
    assert!(asked.pending);
    assert_eq!(asked.group.my_role, None);
    match expect_push(&owner, |push| matches!(push, Push::PushGroupJoinRequest(_))).await {
        Push::PushGroupJoinRequest(request) => {
            assert_eq!(request.group_id, group.id);
            assert_eq!(request.user, asker_login.user);
        }
        _ => unreachable!("matched a join request push"),
    }
    refused.group_join(group.id).await.unwrap();
    drain_pushes(&owner).await;
    // The owner sees who waits; the asker sees the group but not the list.
    let info = owner.group_info(group.id).await.unwrap();
    assert_eq!(info.join_requests.len(), 2);
    let seen_by_asker = asker.group_info(group.id).await.unwrap();
    assert!(seen_by_asker.join_requests.is_empty());
    // Not a member yet: no messages, no member list.
    assert_eq!(
        status_of(asker.group_members(group.id).await),
        Status::Forbidden
    );

    owner
        .group_respond_join(group.id, asker_login.user.id, true)
        .await
        .unwrap();
    let joined = expect_group_event(&asker).await;
    assert_eq!(joined.kind, GroupEventKind::Joined);
    assert_eq!(joined.user_id, asker_login.user.id);
    asker.group_members(group.id).await.unwrap();
    owner
        .group_respond_join(group.id, refused_login.user.id, false)
        .await
        .unwrap();
    assert_eq!(
        status_of(refused.group_members(group.id).await),
        Status::Forbidden
    );
    // A plain member cannot answer requests.
    let (third, third_login) = server.user(&unique("third")).await;
    third.group_join(group.id).await.unwrap();
    assert_eq!(
        status_of(
            asker
                .group_respond_join(group.id, third_login.user.id, true)
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
    let group = owner
        .group_create_with_policy("secret", "", JoinPolicy::Open)
        .await
        .unwrap()
        .group;
    member.group_join(group.id).await.unwrap();
    owner
        .group_set_policy(group.id, JoinPolicy::Invite)
        .await
        .unwrap();
    drain_pushes(&owner).await;

    // Counting ids finds nothing: the answers are those of a group that
    // does not exist.
    let missing = GroupId(group.id.0 + 1_000_000);
    for id in [group.id, missing] {
        assert_eq!(status_of(stranger.group_info(id).await), Status::NotFound);
        assert_eq!(status_of(stranger.group_join(id).await), Status::NotFound);
    }
    // Nor can a non-member invite anyone to it.
    assert_eq!(
        status_of(stranger.group_invite(group.id, invitee_login.user.id).await),
        Status::NotFound
    );

    // Any member may invite; the invitee is told, sees the group, and joins.
    member
        .group_invite(group.id, invitee_login.user.id)
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
    let listed = invitee.group_list().await.unwrap();
    assert_eq!(listed.invitations.len(), 1);
    invitee.group_info(group.id).await.unwrap();
    let joined = invitee.group_join(group.id).await.unwrap();
    assert!(!joined.pending);
    assert_eq!(joined.group.my_role, Some(Role::Member));
    assert!(invitee.group_list().await.unwrap().invitations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_with_a_ban_keeps_the_user_out_until_unbanned() {
    let server = TestServer::start().await;
    let (owner, _) = server.user(&unique("owner")).await;
    let (admin, admin_login) = server.user(&unique("admin")).await;
    let (troll, troll_login) = server.user(&unique("troll")).await;
    let group = owner.group_create("open", "").await.unwrap().group;
    admin.group_join(group.id).await.unwrap();
    owner
        .group_set_role(group.id, admin_login.user.id, Role::Admin)
        .await
        .unwrap();
    troll.group_join(group.id).await.unwrap();

    // A kick without a ban: back at once.
    admin
        .group_kick(group.id, troll_login.user.id)
        .await
        .unwrap();
    troll.group_join(group.id).await.unwrap();
    // With a ban: out, even when invited, until an admin lifts it.
    admin
        .group_kick_and_ban(group.id, troll_login.user.id)
        .await
        .unwrap();
    assert_eq!(
        status_of(troll.group_join(group.id).await),
        Status::Forbidden
    );
    assert_eq!(
        status_of(owner.group_invite(group.id, troll_login.user.id).await),
        Status::Forbidden
    );
    // Only the owner and admins lift bans.
    let (member, _) = server.user(&unique("member")).await;
    member.group_join(group.id).await.unwrap();
    assert_eq!(
        status_of(member.group_unban(group.id, troll_login.user.id).await),
        Status::Forbidden
    );
    admin
        .group_unban(group.id, troll_login.user.id)
        .await
        .unwrap();
    troll.group_join(group.id).await.unwrap();
    // An admin demoted cannot kick any more: the role is checked with the
    // change.
    owner
        .group_set_role(group.id, admin_login.user.id, Role::Member)
        .await
        .unwrap();
    assert_eq!(
        status_of(admin.group_kick(group.id, troll_login.user.id).await),
        Status::Forbidden
    );
}
