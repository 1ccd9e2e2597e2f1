//! Groups over real TCP: membership, roles and their powers, dissolving,
//! what non-members may see, and how membership changes who gets messages.

mod common;

use chat_client::{Connection, IntoUserRef};
use chat_proto::{
    GroupCreateRequest, GroupDissolveRequest, GroupEventKind, GroupEventPush, GroupId,
    GroupInfoRequest, GroupJoinRequest, GroupKickRequest, GroupLeaveRequest, GroupListRequest,
    GroupMembersRequest, GroupSetRoleRequest, JoinPolicy, LoginResponse, Role, Status, Target,
    UserId,
};
use common::{
    drain_pushes, expect_group_event, expect_no_push, next_message, open_group, status_of, unique,
    whole_history, TestServer,
};

/// A logged-in test user.
struct User {
    connection: Connection,
    login: LoginResponse,
}

impl User {
    async fn new(server: &TestServer, prefix: &str) -> User {
        let (connection, login) = server.user(&unique(prefix)).await;
        User { connection, login }
    }

    fn id(&self) -> UserId {
        self.login.user.id
    }

    fn name(&self) -> &str {
        &self.login.user.name
    }
}

impl std::ops::Deref for User {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.connection
    }
}

/// An owner and `members` others who joined, with every join event drained.
async fn group_of(server: &TestServer, members: usize) -> (GroupId, User, Vec<User>) {
    let owner = User::new(server, "owner").await;
    let group = owner
        .call(GroupCreateRequest {
            name: "the group".to_owned(),
            description: "for tests".to_owned(),
            join_policy: JoinPolicy::Open,
        })
        .await
        .unwrap()
        .group;
    let mut joined = Vec::new();
    for _ in 0..members {
        let member = User::new(server, "member").await;
        member
            .call(GroupJoinRequest { group_id: group.id })
            .await
            .unwrap();
        joined.push(member);
    }
    drain_pushes(&owner).await;
    for member in &joined {
        drain_pushes(member).await;
    }
    (group.id, owner, joined)
}

fn assert_event(
    event: &GroupEventPush,
    group: GroupId,
    kind: GroupEventKind,
    user: UserId,
    actor: UserId,
) {
    assert_eq!(event.group_id, group);
    assert_eq!(event.kind, kind, "{event:?}");
    assert_eq!(event.user_id, user, "{event:?}");
    assert_eq!(event.actor_id, actor, "{event:?}");
}

#[tokio::test]
async fn create_join_and_leave_with_events() {
    let server = TestServer::start().await;
    let owner = User::new(&server, "owner").await;
    let created = owner
        .call(GroupCreateRequest {
            name: "hikers".to_owned(),
            description: "weekend walks".to_owned(),
            join_policy: JoinPolicy::Open,
        })
        .await
        .unwrap()
        .group;
    assert_eq!(created.owner_id, owner.id());
    assert_eq!(created.member_count, 1);
    assert_eq!(created.my_role, Some(Role::Owner));
    assert_eq!(created.name, "hikers");
    assert_eq!(created.description, "weekend walks");

    let bob = User::new(&server, "bob").await;
    let joined = bob
        .call(GroupJoinRequest {
            group_id: created.id,
        })
        .await
        .unwrap()
        .group;
    assert_eq!(joined.id, created.id);
    assert_eq!(joined.member_count, 2);
    assert_eq!(joined.my_role, Some(Role::Member));
    let event = expect_group_event(&owner).await;
    assert_event(
        &event,
        created.id,
        GroupEventKind::Joined,
        bob.id(),
        bob.id(),
    );
    assert_eq!(event.role, Some(Role::Member));
    drain_pushes(&bob).await;
    assert_eq!(
        status_of(
            bob.call(GroupJoinRequest {
                group_id: created.id
            })
            .await
        ),
        Status::Conflict
    );
    assert_eq!(
        status_of(
            owner
                .call(GroupJoinRequest {
                    group_id: created.id
                })
                .await
        ),
        Status::Conflict
    );

    let carol = User::new(&server, "carol").await;
    carol
        .call(GroupJoinRequest {
            group_id: created.id,
        })
        .await
        .unwrap();
    for who in [&owner, &bob] {
        let event = expect_group_event(who).await;
        assert_event(
            &event,
            created.id,
            GroupEventKind::Joined,
            carol.id(),
            carol.id(),
        );
    }
    drain_pushes(&carol).await;
    let members = owner
        .call(GroupMembersRequest {
            group_id: created.id,
        })
        .await
        .unwrap()
        .members;
    let ids: Vec<_> = members.iter().map(|m| (m.id, m.role, m.online)).collect();
    assert_eq!(ids[0], (owner.id(), Role::Owner, true));
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&(bob.id(), Role::Member, true)));
    assert!(ids.contains(&(carol.id(), Role::Member, true)));

    bob.call(GroupLeaveRequest {
        group_id: created.id,
    })
    .await
    .unwrap();
    for who in [&owner, &carol, &bob] {
        let event = expect_group_event(who).await;
        assert_event(&event, created.id, GroupEventKind::Left, bob.id(), bob.id());
    }
    assert_eq!(
        owner
            .call(GroupInfoRequest {
                group_id: created.id
            })
            .await
            .unwrap()
            .group
            .member_count,
        2
    );
    assert!(bob
        .call(GroupListRequest {})
        .await
        .unwrap()
        .groups
        .is_empty());
    assert_eq!(
        status_of(
            bob.call(GroupLeaveRequest {
                group_id: created.id
            })
            .await
        ),
        Status::Forbidden
    );
    // The owner cannot just walk away.
    assert_eq!(
        status_of(
            owner
                .call(GroupLeaveRequest {
                    group_id: created.id
                })
                .await
        ),
        Status::Conflict
    );
    assert_eq!(
        owner
            .call(GroupInfoRequest {
                group_id: created.id
            })
            .await
            .unwrap()
            .group
            .owner_id,
        owner.id()
    );
}

#[tokio::test]
async fn who_may_kick_whom() {
    let server = TestServer::start().await;
    let (group, owner, members) = group_of(&server, 4).await;
    let [admin, other_admin, plain, victim] = <[User; 4]>::try_from(members).ok().unwrap();
    owner
        .call(GroupSetRoleRequest {
            group_id: group,
            user: admin.name().into_user_ref(),
            role: Role::Admin,
        })
        .await
        .unwrap();
    owner
        .call(GroupSetRoleRequest {
            group_id: group,
            user: other_admin.id().into_user_ref(),
            role: Role::Admin,
        })
        .await
        .unwrap();
    for who in [&owner, &admin, &other_admin, &plain, &victim] {
        drain_pushes(who).await;
    }

    // A plain member may kick nobody.
    assert_eq!(
        status_of(
            plain
                .call(GroupKickRequest {
                    group_id: group,
                    user: victim.name().into_user_ref(),
                    ban: false
                })
                .await
        ),
        Status::Forbidden
    );
    // An admin may not kick another admin, nor the owner.
    assert_eq!(
        status_of(
            admin
                .call(GroupKickRequest {
                    group_id: group,
                    user: other_admin.name().into_user_ref(),
                    ban: false
                })
                .await
        ),
        Status::Forbidden
    );
    assert_eq!(
        status_of(
            admin
                .call(GroupKickRequest {
                    group_id: group,
                    user: owner.name().into_user_ref(),
                    ban: false
                })
                .await
        ),
        Status::Forbidden
    );
    // An admin kicks a plain member; everyone, the kicked one included, hears.
    admin
        .call(GroupKickRequest {
            group_id: group,
            user: victim.name().into_user_ref(),
            ban: false,
        })
        .await
        .unwrap();
    for who in [&owner, &admin, &other_admin, &plain, &victim] {
        let event = expect_group_event(who).await;
        assert_event(
            &event,
            group,
            GroupEventKind::Kicked,
            victim.id(),
            admin.id(),
        );
    }
    assert_eq!(
        status_of(
            admin
                .call(GroupKickRequest {
                    group_id: group,
                    user: victim.name().into_user_ref(),
                    ban: false
                })
                .await
        ),
        Status::NotFound
    );
    // The owner may kick an admin.
    owner
        .call(GroupKickRequest {
            group_id: group,
            user: other_admin.id().into_user_ref(),
            ban: false,
        })
        .await
        .unwrap();
    for who in [&owner, &admin, &plain, &other_admin] {
        let event = expect_group_event(who).await;
        assert_event(
            &event,
            group,
            GroupEventKind::Kicked,
            other_admin.id(),
            owner.id(),
        );
    }
    expect_no_push(&victim).await;
    let members: Vec<_> = owner
        .call(GroupMembersRequest { group_id: group })
        .await
        .unwrap()
        .members
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(members.len(), 3);
    assert!(!members.contains(&victim.id()) && !members.contains(&other_admin.id()));
    // Nobody outside the group can kick in it.
    assert_eq!(
        status_of(
            victim
                .call(GroupKickRequest {
                    group_id: group,
                    user: plain.name().into_user_ref(),
                    ban: false
                })
                .await
        ),
        Status::Forbidden
    );
}

#[tokio::test]
async fn roles_change_only_by_the_owner_and_ownership_can_be_handed_over() {
    let server = TestServer::start().await;
    let (group, owner, members) = group_of(&server, 2).await;
    let [heir, plain] = <[User; 2]>::try_from(members).ok().unwrap();

    assert_eq!(
        status_of(
            heir.call(GroupSetRoleRequest {
                group_id: group,
                user: plain.name().into_user_ref(),
                role: Role::Admin
            })
            .await
        ),
        Status::Forbidden
    );
    assert_eq!(
        status_of(
            heir.call(GroupSetRoleRequest {
                group_id: group,
                user: heir.name().into_user_ref(),
                role: Role::Owner
            })
            .await
        ),
        Status::Forbidden
    );
    // The owner's own role changes only by handing over.
    assert_eq!(
        status_of(
            owner
                .call(GroupSetRoleRequest {
                    group_id: group,
                    user: owner.name().into_user_ref(),
                    role: Role::Member
                })
                .await
        ),
        Status::BadRequest
    );
    owner
        .call(GroupSetRoleRequest {
            group_id: group,
            user: heir.name().into_user_ref(),
            role: Role::Admin,
        })
        .await
        .unwrap();
    for who in [&owner, &heir, &plain] {
        let event = expect_group_event(who).await;
        assert_event(
            &event,
            group,
            GroupEventKind::RoleChanged,
            heir.id(),
            owner.id(),
        );
        assert_eq!(event.role, Some(Role::Admin));
    }
    // Still only the owner changes roles, admins included.
    assert_eq!(
        status_of(
            heir.call(GroupSetRoleRequest {
                group_id: group,
                user: plain.name().into_user_ref(),
                role: Role::Admin
            })
            .await
        ),
        Status::Forbidden
    );

    // Handing over: the heir is owner, the old owner an admin.
    owner
        .call(GroupSetRoleRequest {
            group_id: group,
            user: heir.id().into_user_ref(),
            role: Role::Owner,
        })
        .await
        .unwrap();
    for who in [&owner, &heir, &plain] {
        let promoted = expect_group_event(who).await;
        assert_event(
            &promoted,
            group,
            GroupEventKind::RoleChanged,
            heir.id(),
            owner.id(),
        );
        assert_eq!(promoted.role, Some(Role::Owner));
        let demoted = expect_group_event(who).await;
        assert_event(
            &demoted,
            group,
            GroupEventKind::RoleChanged,
            owner.id(),
            owner.id(),
        );
        assert_eq!(demoted.role, Some(Role::Admin));
    }
    let info = plain
        .call(GroupInfoRequest { group_id: group })
        .await
        .unwrap()
        .group;
    assert_eq!(info.owner_id, heir.id());
    assert_eq!(
        owner
            .call(GroupInfoRequest { group_id: group })
            .await
            .unwrap()
            .group
            .my_role,
        Some(Role::Admin)
    );
    assert_eq!(
        heir.call(GroupInfoRequest { group_id: group })
            .await
            .unwrap()
            .group
            .my_role,
        Some(Role::Owner)
    );
    let roles: Vec<_> = plain
        .call(GroupMembersRequest { group_id: group })
        .await
        .unwrap()
        .members
        .into_iter()
        .map(|m| (m.id, m.role))
        .collect();
    assert_eq!(roles[0], (heir.id(), Role::Owner));
    assert!(roles.contains(&(owner.id(), Role::Admin)));
    assert_eq!(
        roles
            .iter()
            .filter(|(_, role)| *role == Role::Owner)
            .count(),
        1
    );

    // The old owner lost the owner's powers, may now leave, and the new one
    // has them.
    assert_eq!(
        status_of(
            owner
                .call(GroupSetRoleRequest {
                    group_id: group,
                    user: plain.name().into_user_ref(),
                    role: Role::Admin
                })
                .await
        ),
        Status::Forbidden
    );
    assert_eq!(
        status_of(owner.call(GroupDissolveRequest { group_id: group }).await),
        Status::Forbidden
    );
    heir.call(GroupSetRoleRequest {
        group_id: group,
        user: plain.name().into_user_ref(),
        role: Role::Admin,
    })
    .await
    .unwrap();
    // Demotion works the same way; a non-member has no role to change.
    heir.call(GroupSetRoleRequest {
        group_id: group,
        user: plain.name().into_user_ref(),
        role: Role::Member,
    })
    .await
    .unwrap();
    assert_eq!(
        plain
            .call(GroupInfoRequest { group_id: group })
            .await
            .unwrap()
            .group
            .my_role,
        Some(Role::Member)
    );
    let outsider = User::new(&server, "outsider").await;
    assert_eq!(
        status_of(
            heir.call(GroupSetRoleRequest {
                group_id: group,
                user: outsider.name().into_user_ref(),
                role: Role::Admin
            })
            .await
        ),
        Status::NotFound
    );
    owner
        .call(GroupLeaveRequest { group_id: group })
        .await
        .unwrap();
    assert_eq!(
        status_of(heir.call(GroupLeaveRequest { group_id: group }).await),
        Status::Conflict
    );
}

#[tokio::test]
async fn dissolving_tells_everyone_and_the_group_is_gone() {
    let server = TestServer::start().await;
    let (group, owner, members) = group_of(&server, 2).await;
    let [admin, plain] = <[User; 2]>::try_from(members).ok().unwrap();
    owner
        .call(GroupSetRoleRequest {
            group_id: group,
            user: admin.name().into_user_ref(),
            role: Role::Admin,
        })
        .await
        .unwrap();
    for who in [&owner, &admin, &plain] {
        drain_pushes(who).await;
    }
    assert_eq!(
        status_of(admin.call(GroupDissolveRequest { group_id: group }).await),
        Status::Forbidden
    );
    assert_eq!(
        status_of(plain.call(GroupDissolveRequest { group_id: group }).await),
        Status::Forbidden
    );
    let outsider = User::new(&server, "outsider").await;
    assert_eq!(
        status_of(
            outsider
                .call(GroupDissolveRequest { group_id: group })
                .await
        ),
        Status::Forbidden
    );
    owner
        .send(Target::Group(group), "last words")
        .await
        .unwrap();
    for who in [&admin, &plain] {
        next_message(who).await;
    }

    owner
        .call(GroupDissolveRequest { group_id: group })
        .await
        .unwrap();
    for who in [&owner, &admin, &plain] {
        let event = expect_group_event(who).await;
        assert_event(
            &event,
            group,
            GroupEventKind::Dissolved,
            owner.id(),
            owner.id(),
        );
        assert_eq!(
            status_of(who.call(GroupInfoRequest { group_id: group }).await),
            Status::NotFound
        );
        assert_eq!(
            status_of(who.send(Target::Group(group), "anyone?").await),
            Status::NotFound
        );
        assert_eq!(
            status_of(who.call(GroupJoinRequest { group_id: group }).await),
            Status::NotFound
        );
        assert_eq!(
            status_of(who.call(GroupMembersRequest { group_id: group }).await),
            Status::NotFound
        );
        assert!(who
            .call(GroupListRequest {})
            .await
            .unwrap()
            .groups
            .is_empty());
    }
    assert_eq!(
        status_of(owner.call(GroupDissolveRequest { group_id: group }).await),
        Status::NotFound
    );
    expect_no_push(&outsider).await;
}

#[tokio::test]
async fn outsiders_may_look_at_a_group_but_not_its_members() {
    let server = TestServer::start().await;
    let (group, owner, _members) = group_of(&server, 1).await;
    let outsider = User::new(&server, "outsider").await;
    let info = outsider
        .call(GroupInfoRequest { group_id: group })
        .await
        .unwrap()
        .group;
    assert_eq!(info.id, group);
    assert_eq!(info.my_role, None);
    assert_eq!(info.member_count, 2);
    assert_eq!(info.owner_id, owner.id());
    assert_eq!(
        status_of(outsider.call(GroupMembersRequest { group_id: group }).await),
        Status::Forbidden
    );
    assert_eq!(
        status_of(outsider.send(Target::Group(group), "let me in").await),
        Status::Forbidden
    );
    assert_eq!(
        status_of(
            outsider
                .call(GroupInfoRequest {
                    group_id: GroupId(9_999_999)
                })
                .await
        ),
        Status::NotFound
    );
    assert_eq!(
        status_of(
            outsider
                .call(GroupMembersRequest {
                    group_id: GroupId(9_999_999)
                })
                .await
        ),
        Status::NotFound
    );
}

#[tokio::test]
async fn group_list_shows_my_groups_with_my_role() {
    let server = TestServer::start().await;
    let alice = User::new(&server, "alice").await;
    let bob = User::new(&server, "bob").await;
    assert!(alice
        .call(GroupListRequest {})
        .await
        .unwrap()
        .groups
        .is_empty());
    let mine = open_group(&alice, "mine").await;
    let theirs = open_group(&bob, "theirs").await;
    let unrelated = open_group(&bob, "unrelated").await;
    alice
        .call(GroupJoinRequest {
            group_id: theirs.id,
        })
        .await
        .unwrap();
    let mut listed: Vec<_> = alice
        .call(GroupListRequest {})
        .await
        .unwrap()
        .groups
        .into_iter()
        .map(|g| (g.id, g.my_role, g.member_count))
        .collect();
    listed.sort_by_key(|(id, _, _)| id.0);
    assert_eq!(
        listed,
        [
            (mine.id, Some(Role::Owner), 1),
            (theirs.id, Some(Role::Member), 2)
        ]
    );
    assert!(!listed.iter().any(|(id, _, _)| *id == unrelated.id));
    // The login response carries the same list.
    let name = alice.name().to_owned();
    drop(alice);
    let (_again, login) = server.login(&name).await;
    assert_eq!(login.groups.len(), 2);
    assert!(login
        .groups
        .iter()
        .any(|g| g.id == theirs.id && g.my_role == Some(Role::Member)));
}

#[tokio::test]
async fn late_joiners_read_history_but_get_no_old_messages_pushed() {
    let server = TestServer::start().await;
    let (group, owner, _) = group_of(&server, 0).await;
    let conversation = owner
        .call(GroupInfoRequest { group_id: group })
        .await
        .unwrap()
        .group
        .conversation_id;
    for body in ["one", "two", "three"] {
        owner.send(Target::Group(group), body).await.unwrap();
    }
    let late = User::new(&server, "late").await;
    let late_name = late.name().to_owned();
    late.call(GroupJoinRequest { group_id: group })
        .await
        .unwrap();
    // Nothing old is pushed, now or at the next login.
    let pushes = drain_pushes(&late).await;
    assert!(
        pushes
            .iter()
            .all(|p| matches!(p, chat_proto::Push::PushGroupEvent(_))),
        "{pushes:?}"
    );
    drop(late);
    // One message while the late joiner is away: that one is owed.
    let missed = owner.send(Target::Group(group), "four").await.unwrap();
    let (late, login) = server.login(&late_name).await;
    assert_eq!(login.unacked, 1);
    let message = next_message(&late).await;
    assert_eq!(message.body, "four");
    assert_eq!(message.seq, missed.seq);
    expect_no_push(&late).await;
    // History holds everything, from before the join too.
    let history = whole_history(&late, conversation).await;
    let bodies: Vec<_> = history.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["one", "two", "three", "four"]);
}

#[tokio::test]
async fn a_kicked_member_neither_receives_nor_sends() {
    let server = TestServer::start().await;
    let (group, owner, members) = group_of(&server, 2).await;
    let [stays, kicked] = <[User; 2]>::try_from(members).ok().unwrap();
    owner.send(Target::Group(group), "welcome").await.unwrap();
    next_message(&stays).await;
    next_message(&kicked).await;

    owner
        .call(GroupKickRequest {
            group_id: group,
            user: kicked.name().into_user_ref(),
            ban: false,
        })
        .await
        .unwrap();
    for who in [&owner, &stays, &kicked] {
        expect_group_event(who).await;
    }
    owner
        .send(Target::Group(group), "now without you")
        .await
        .unwrap();
    assert_eq!(next_message(&stays).await.body, "now without you");
    expect_no_push(&kicked).await;
    assert_eq!(
        status_of(kicked.send(Target::Group(group), "wait!").await),
        Status::Forbidden
    );
    expect_no_push(&stays).await;
    assert_eq!(
        status_of(kicked.call(GroupMembersRequest { group_id: group }).await),
        Status::Forbidden
    );
    assert_eq!(
        kicked
            .call(GroupInfoRequest { group_id: group })
            .await
            .unwrap()
            .group
            .my_role,
        None
    );
    // Nor is anything owed at the next login.
    let kicked_name = kicked.name().to_owned();
    drop(kicked);
    owner
        .send(Target::Group(group), "after you left")
        .await
        .unwrap();
    let (_kicked, login) = server.login(&kicked_name).await;
    assert_eq!(login.unacked, 0);
    assert!(login.groups.is_empty());
}
