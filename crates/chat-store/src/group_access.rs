//! Who may join a group and who may change it: join policies, requests to
//! join, invitations and bans, and the role-checked changes (kick, set a
//! role, dissolve).
//!
//! Every change here checks the actor's role in the same transaction that
//! makes the change, with the group's row locked (on MySQL `FOR UPDATE`; on
//! SQLite the single writer serialises them), so two nodes cannot both act
//! on a role one of them has just taken away. The membership rows
//! themselves change through the backend's `add_member`, `remove_member`,
//! `set_role` and `dissolve_group`, inside that transaction.

use async_trait::async_trait;
use chat_proto::{GroupId, JoinPolicy, Role, UserId, UserSummary};

use crate::error::Result;
use crate::repo::GroupRecord;

/// What a request to join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// The user is a member now (an open group, or an invitation).
    Joined,
    /// The request waits for the owner or an admin (an `approval` group).
    Pending,
}

/// How a user stands with a group they are not (necessarily) a member of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    /// A member invited them and they have not joined yet.
    pub invited: bool,
    /// They asked to join and nobody has answered yet.
    pub requested: bool,
    /// They are banned.
    pub banned: bool,
}

/// Join policies, requests, invitations, bans and role-checked changes.
#[async_trait]
pub trait GroupAccessStore: Send + Sync {
    /// Creates a group with `policy`, owned by `owner`, in one transaction.
    async fn create_group_with_policy(
        &self,
        owner: UserId,
        name: &str,
        description: &str,
        policy: JoinPolicy,
        now_ms: i64,
    ) -> Result<GroupRecord>;

    /// Sets who may join.
    ///
    /// # Errors
    /// `NotFound` for no such group, `Forbidden` unless `actor` is its owner
    /// or an admin.
    async fn set_join_policy(
        &self,
        group: GroupId,
        actor: UserId,
        policy: JoinPolicy,
    ) -> Result<()>;

    /// `user` asks to join: joins an open group, or any group they were
    /// invited to (the invitation is used up); asks an `approval` group.
    ///
    /// # Errors
    /// `NotFound` for no such group and for an `invite` group without an
    /// invitation (to them it does not exist), `Forbidden` for a banned
    /// user, `Conflict` for a member.
    async fn request_join(&self, group: GroupId, user: UserId, now_ms: i64) -> Result<JoinOutcome>;

    /// Answers `user`'s request to join: lets them in, or refuses.
    ///
    /// # Errors
    /// `NotFound` for no such group or no such request, `Forbidden` unless
    /// `actor` is the owner or an admin.
    async fn respond_join(
        &self,
        group: GroupId,
        actor: UserId,
        user: UserId,
        accept: bool,
        now_ms: i64,
    ) -> Result<()>;

    /// `actor`, a member, invites `user`.
    ///
    /// # Errors
    /// `NotFound` for no such group (or, for a non-member, one that is not
    /// open), `Forbidden` for a non-member of an open group or a banned
    /// invitee, `Conflict` if `user` is a member or invited already.
    async fn invite(&self, group: GroupId, actor: UserId, user: UserId, now_ms: i64) -> Result<()>;

    /// `actor` removes the member `target`, and bans them with `ban`: the
    /// owner may remove anyone but themself, an admin only plain members.
    ///
    /// # Errors
    /// `NotFound` for no such group or member, `Forbidden` when the roles
    /// do not allow it, `Conflict` for the owner.
    async fn kick(
        &self,
        group: GroupId,
        actor: UserId,
        target: UserId,
        ban: bool,
        now_ms: i64,
    ) -> Result<()>;

    /// Lifts `target`'s ban.
    ///
    /// # Errors
    /// `NotFound` for no such group or ban, `Forbidden` unless `actor` is
    /// the owner or an admin.
    async fn unban(&self, group: GroupId, actor: UserId, target: UserId) -> Result<()>;

    /// `actor`, the owner, sets `target`'s role (as
    /// [`GroupStore::set_role`](crate::GroupStore::set_role)).
    ///
    /// # Errors
    /// As `set_role`, and `Forbidden` unless `actor` is the owner.
    async fn set_role_as(
        &self,
        group: GroupId,
        actor: UserId,
        target: UserId,
        role: Role,
    ) -> Result<()>;

    /// `actor`, the owner, dissolves the group; returns its former members.
    ///
    /// # Errors
    /// `NotFound` for no such group, `Forbidden` unless `actor` is the owner.
    async fn dissolve_as(&self, group: GroupId, actor: UserId) -> Result<Vec<UserId>>;

    /// The users waiting for approval to join, oldest request first.
    async fn join_requests(&self, group: GroupId) -> Result<Vec<UserSummary>>;

    /// The invitations waiting for `user`: each group and who invited them,
    /// oldest first.
    async fn invitations_of(&self, user: UserId) -> Result<Vec<(GroupId, UserSummary)>>;

    /// How `user` stands with `group`.
    async fn standing(&self, group: GroupId, user: UserId) -> Result<Standing>;
}

/// Expands to the queries for one backend: `$database` and `$connection`
/// are its sqlx types, `$lock` what a `SELECT` that must lock its rows ends
/// with, `$insert_ignore` its `INSERT` that skips a duplicate key. A
/// `writes` module with the backend's group writes must be the parent's.
macro_rules! queries {
    ($database:ty, $connection:ty, lock = $lock:literal, insert_ignore = $insert_ignore:literal) => {
        use chat_proto::{GroupId, JoinPolicy, Role, UserId, UserSummary};

        use $crate::error::{Result, StoreError};
        use $crate::group_access::{JoinOutcome, Standing};
        use $crate::repo::GroupRecord;
        use $crate::rows::{args, from_db, insert_error, role_from_db, to_db, DbText};

        use super::writes;

        /// Locks the group's row until commit; returns its policy, or
        /// `NotFound`.
        async fn lock_group(conn: &mut $connection, group: GroupId) -> Result<JoinPolicy> {
            let policy: Option<DbText> = sqlx::query_scalar(concat!(
                "SELECT join_policy FROM chat_groups WHERE id = ? ",
                $lock
            ))
            .bind(to_db(group.0))
            .fetch_optional(&mut *conn)
            .await?;
            let policy = policy.ok_or(StoreError::NotFound("group"))?;
            Ok(JoinPolicy::from_name(&policy.0).unwrap_or(JoinPolicy::Invite))
        }

        /// `user`'s role in `group`, read under lock.
        async fn role_of(
            conn: &mut $connection,
            group: GroupId,
            user: UserId,
        ) -> Result<Option<Role>> {
            let role: Option<DbText> = sqlx::query_scalar(concat!(
                "SELECT role FROM group_members WHERE group_id = ? AND user_id = ? ",
                $lock
            ))
            .bind(to_db(group.0))
            .bind(to_db(user.0))
            .fetch_optional(&mut *conn)
            .await?;
            role.map(|role| role_from_db(&role.0)).transpose()
        }

        /// Locks the group's row, then refuses with `refusal` unless
        /// `actor` is the owner or, when `least` is `Admin`, an admin. A
        /// non-member asking for an owner's change is told they are not a
        /// member.
        async fn lock_as(
            conn: &mut $connection,
            group: GroupId,
            actor: UserId,
            least: Role,
            refusal: &'static str,
        ) -> Result<()> {
            lock_group(conn, group).await?;
            match (role_of(conn, group, actor).await?, least) {
                (Some(Role::Owner), _) | (Some(Role::Admin), Role::Admin) => Ok(()),
                (None, Role::Owner) => Err(StoreError::Forbidden("not a member of this group")),
                _ => Err(StoreError::Forbidden(refusal)),
            }
        }

        async fn count(conn: &mut $connection, sql: &str, group: GroupId, user: UserId) -> Result<bool> {
            let found: i64 = sqlx::query_scalar(sql)
                .bind(to_db(group.0))
                .bind(to_db(user.0))
                .fetch_one(&mut *conn)
                .await?;
            Ok(found > 0)
        }

        async fn is_banned(conn: &mut $connection, group: GroupId, user: UserId) -> Result<bool> {
            count(
                conn,
                "SELECT COUNT(*) FROM group_bans WHERE group_id = ? AND user_id = ?",
                group,
                user,
            )
            .await
        }

        /// Forgets `user`'s invitation to and request to join `group`.
        async fn forget_pending(conn: &mut $connection, group: GroupId, user: UserId) -> Result<()> {
            for sql in [
                "DELETE FROM group_invitations WHERE group_id = ? AND user_id = ?",
                "DELETE FROM group_join_requests WHERE group_id = ? AND user_id = ?",
            ] {
                sqlx::query(sql)
                    .bind(to_db(group.0))
                    .bind(to_db(user.0))
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }

        /// Makes `user` a plain member, forgetting their invitation and
        /// request: an accepted request, or a join an open group or an
        /// invitation allows.
        async fn join(
            conn: &mut $connection,
            group: GroupId,
            user: UserId,
            now_ms: i64,
        ) -> Result<()> {
            forget_pending(conn, group, user).await?;
            let member = args::NewMember {
                group,
                user,
                role: Role::Member,
                now_ms,
            };
            writes::add_member(conn, &member).await
        }

        pub(crate) async fn create_group_with_policy(
            conn: &mut $connection,
            args::NewGroupWithPolicy { group, policy }: &args::NewGroupWithPolicy,
        ) -> Result<GroupRecord> {
            let mut record = writes::create_group(conn, group).await?;
            sqlx::query("UPDATE chat_groups SET join_policy = ? WHERE id = ?")
                .bind(policy.as_str())
                .bind(to_db(record.id.0))
                .execute(&mut *conn)
                .await?;
            record.join_policy = *policy;
            Ok(record)
        }

        pub(crate) async fn set_join_policy(
            conn: &mut $connection,
            args::JoinPolicyChange { group, actor, policy }: &args::JoinPolicyChange,
        ) -> Result<()> {
            let refusal = "only the owner or an admin can change who may join";
            lock_as(conn, *group, *actor, Role::Admin, refusal).await?;
            sqlx::query("UPDATE chat_groups SET join_policy = ? WHERE id = ?")
                .bind(policy.as_str())
                .bind(to_db(group.0))
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        pub(crate) async fn request_join(
            conn: &mut $connection,
            args::JoinRequest { group, user, now_ms }: &args::JoinRequest,
        ) -> Result<JoinOutcome> {
            let policy = lock_group(conn, *group).await?;
            if is_banned(conn, *group, *user).await? {
                return Err(StoreError::Forbidden("you are banned from this group"));
            }
            if role_of(conn, *group, *user).await?.is_some() {
                return Err(StoreError::Conflict("already a member"));
            }
            let invited = count(
                conn,
                "SELECT COUNT(*) FROM group_invitations WHERE group_id = ? AND user_id = ?",
                *group,
                *user,
            )
            .await?;
            match (invited, policy) {
                (true, _) | (false, JoinPolicy::Open) => {
                    join(conn, *group, *user, *now_ms).await?;
                    Ok(JoinOutcome::Joined)
                }
                (false, JoinPolicy::Approval) => {
                    sqlx::query(concat!(
                        $insert_ignore,
                        " INTO group_join_requests (group_id, user_id, requested_at_ms) \
                         VALUES (?, ?, ?)"
                    ))
                    .bind(to_db(group.0))
                    .bind(to_db(user.0))
                    .bind(now_ms)
                    .execute(&mut *conn)
                    .await?;
                    Ok(JoinOutcome::Pending)
                }
                (false, JoinPolicy::Invite) => Err(StoreError::NotFound("group")),
            }
        }

        pub(crate) async fn respond_join(
            conn: &mut $connection,
            args::JoinResponse { group, actor, user, accept, now_ms }: &args::JoinResponse,
        ) -> Result<()> {
            let refusal = "only the owner or an admin can answer requests to join";
            lock_as(conn, *group, *actor, Role::Admin, refusal).await?;
            let answered = sqlx::query(
                "DELETE FROM group_join_requests WHERE group_id = ? AND user_id = ?",
            )
            .bind(to_db(group.0))
            .bind(to_db(user.0))
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if answered == 0 {
                return Err(StoreError::NotFound("join request"));
            }
            if *accept {
                join(conn, *group, *user, *now_ms).await?;
            }
            Ok(())
        }

        pub(crate) async fn invite(
            conn: &mut $connection,
            args::Invitation { group, actor, user, now_ms }: &args::Invitation,
        ) -> Result<()> {
            let policy = lock_group(conn, *group).await?;
            if role_of(conn, *group, *actor).await?.is_none() {
                return Err(match policy {
                    JoinPolicy::Open => StoreError::Forbidden("not a member of this group"),
                    _ => StoreError::NotFound("group"),
                });
            }
            if is_banned(conn, *group, *user).await? {
                return Err(StoreError::Forbidden(
                    "that user is banned from this group; unban them first",
                ));
            }
            if role_of(conn, *group, *user).await?.is_some() {
                return Err(StoreError::Conflict("already a member"));
            }
            sqlx::query(
                "INSERT INTO group_invitations (group_id, user_id, invited_by, invited_at_ms) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(to_db(group.0))
            .bind(to_db(user.0))
            .bind(to_db(actor.0))
            .bind(now_ms)
            .execute(&mut *conn)
            .await
            .map_err(|error| insert_error(error, "already invited", "user"))?;
            Ok(())
        }

        pub(crate) async fn kick(
            conn: &mut $connection,
            args::Kick { group, actor, target, ban, now_ms }: &args::Kick,
        ) -> Result<()> {
            lock_group(conn, *group).await?;
            let Some(mine) = role_of(conn, *group, *actor).await? else {
                return Err(StoreError::Forbidden("not a member of this group"));
            };
            let theirs = role_of(conn, *group, *target)
                .await?
                .ok_or(StoreError::NotFound("member"))?;
            let allowed = match mine {
                Role::Owner => true,
                Role::Admin => theirs == Role::Member,
                Role::Member => false,
            };
            if !allowed {
                return Err(StoreError::Forbidden(
                    "only the owner, or an admin removing a plain member, can kick",
                ));
            }
            writes::remove_member(
                conn,
                &args::GroupUser {
                    group: *group,
                    user: *target,
                },
            )
            .await?;
            forget_pending(conn, *group, *target).await?;
            if *ban {
                sqlx::query(concat!(
                    $insert_ignore,
                    " INTO group_bans (group_id, user_id, banned_by, banned_at_ms) \
                     VALUES (?, ?, ?, ?)"
                ))
                .bind(to_db(group.0))
                .bind(to_db(target.0))
                .bind(to_db(actor.0))
                .bind(now_ms)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        pub(crate) async fn unban(
            conn: &mut $connection,
            args::Unban { group, actor, target }: &args::Unban,
        ) -> Result<()> {
            let refusal = "only the owner or an admin can unban";
            lock_as(conn, *group, *actor, Role::Admin, refusal).await?;
            let lifted = sqlx::query("DELETE FROM group_bans WHERE group_id = ? AND user_id = ?")
                .bind(to_db(group.0))
                .bind(to_db(target.0))
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if lifted == 0 {
                return Err(StoreError::NotFound("ban"));
            }
            Ok(())
        }

        pub(crate) async fn set_role_as(
            conn: &mut $connection,
            args::RoleChange { group, actor, target, role }: &args::RoleChange,
        ) -> Result<()> {
            let refusal = "only the owner can change roles";
            lock_as(conn, *group, *actor, Role::Owner, refusal).await?;
            writes::set_role(
                conn,
                &args::NewRole {
                    group: *group,
                    user: *target,
                    role: *role,
                },
            )
            .await
        }

        pub(crate) async fn dissolve_as(
            conn: &mut $connection,
            args::Dissolution { group, actor }: &args::Dissolution,
        ) -> Result<Vec<UserId>> {
            let refusal = "only the owner can dissolve the group";
            lock_as(conn, *group, *actor, Role::Owner, refusal).await?;
            writes::dissolve_group(conn, group).await
        }

        pub(crate) async fn join_requests(
            pool: &sqlx::Pool<$database>,
            group: GroupId,
        ) -> Result<Vec<UserSummary>> {
            let rows: Vec<(i64, DbText)> = sqlx::query_as(
                "SELECT u.id, u.name FROM group_join_requests r JOIN users u ON u.id = r.user_id \
                 WHERE r.group_id = ? ORDER BY r.requested_at_ms, u.id",
            )
            .bind(to_db(group.0))
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(id, name)| UserSummary {
                    id: UserId(from_db(id)),
                    name: name.0,
                })
                .collect())
        }

        pub(crate) async fn invitations_of(
            pool: &sqlx::Pool<$database>,
            user: UserId,
        ) -> Result<Vec<(GroupId, UserSummary)>> {
            let rows: Vec<(i64, i64, DbText)> = sqlx::query_as(
                "SELECT i.group_id, u.id, u.name FROM group_invitations i \
                 JOIN users u ON u.id = i.invited_by \
                 WHERE i.user_id = ? ORDER BY i.invited_at_ms, i.group_id",
            )
            .bind(to_db(user.0))
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(group, id, name)| {
                    (
                        GroupId(from_db(group)),
                        UserSummary {
                            id: UserId(from_db(id)),
                            name: name.0,
                        },
                    )
                })
                .collect())
        }

        pub(crate) async fn standing(
            pool: &sqlx::Pool<$database>,
            group: GroupId,
            user: UserId,
        ) -> Result<Standing> {
            let (invited, requested, banned): (i64, i64, i64) = sqlx::query_as(
                "SELECT \
                 (SELECT COUNT(*) FROM group_invitations WHERE group_id = ? AND user_id = ?), \
                 (SELECT COUNT(*) FROM group_join_requests WHERE group_id = ? AND user_id = ?), \
                 (SELECT COUNT(*) FROM group_bans WHERE group_id = ? AND user_id = ?)",
            )
            .bind(to_db(group.0))
            .bind(to_db(user.0))
            .bind(to_db(group.0))
            .bind(to_db(user.0))
            .bind(to_db(group.0))
            .bind(to_db(user.0))
            .fetch_one(pool)
            .await?;
            Ok(Standing {
                invited: invited > 0,
                requested: requested > 0,
                banned: banned > 0,
            })
        }
    };
}

pub(crate) use queries;

/// Implements [`GroupAccessStore`] for `$store`, which must have a `reads:
/// Reads` field with a `pool()`, a `write(args, body)` method, and a
/// `group_access` module in scope (an expansion of [`queries!`]). Each
/// change is one transaction: the body of the same name in `group_access`.
macro_rules! impl_group_access {
    ($store:ty) => {
        const _: () = {
            use chat_proto::{GroupId, JoinPolicy, Role, UserId, UserSummary};

            use $crate::error::Result;
            use $crate::group_access::{GroupAccessStore, JoinOutcome, Standing};
            use $crate::repo::GroupRecord;
            use $crate::rows::args;

            $crate::dispatch::delegate! {
                impl GroupAccessStore for $store, bodies in group_access {
                    writes {
                        fn create_group_with_policy(
                            owner: UserId,
                            name: &str,
                            description: &str,
                            policy: JoinPolicy,
                            now_ms: i64,
                        ) -> GroupRecord = args::NewGroupWithPolicy {
                            group: args::NewGroup {
                                owner,
                                name: name.to_owned(),
                                description: description.to_owned(),
                                now_ms,
                            },
                            policy,
                        };
                        fn set_join_policy(group: GroupId, actor: UserId, policy: JoinPolicy) -> ()
                            = args::JoinPolicyChange { group, actor, policy };
                        fn request_join(group: GroupId, user: UserId, now_ms: i64) -> JoinOutcome
                            = args::JoinRequest { group, user, now_ms };
                        fn respond_join(
                            group: GroupId,
                            actor: UserId,
                            user: UserId,
                            accept: bool,
                            now_ms: i64,
                        ) -> () = args::JoinResponse { group, actor, user, accept, now_ms };
                        fn invite(group: GroupId, actor: UserId, user: UserId, now_ms: i64) -> ()
                            = args::Invitation { group, actor, user, now_ms };
                        fn kick(
                            group: GroupId,
                            actor: UserId,
                            target: UserId,
                            ban: bool,
                            now_ms: i64,
                        ) -> () = args::Kick { group, actor, target, ban, now_ms };
                        fn unban(group: GroupId, actor: UserId, target: UserId) -> ()
                            = args::Unban { group, actor, target };
                        fn set_role_as(group: GroupId, actor: UserId, target: UserId, role: Role)
                            -> () = args::RoleChange { group, actor, target, role };
                        fn dissolve_as(group: GroupId, actor: UserId) -> Vec<UserId>
                            = args::Dissolution { group, actor };
                    }

                    async fn join_requests(&self, group: GroupId) -> Result<Vec<UserSummary>> {
                        group_access::join_requests(self.reads.pool(), group).await
                    }

                    async fn invitations_of(
                        &self,
                        user: UserId,
                    ) -> Result<Vec<(GroupId, UserSummary)>> {
                        group_access::invitations_of(self.reads.pool(), user).await
                    }

                    async fn standing(&self, group: GroupId, user: UserId) -> Result<Standing> {
                        group_access::standing(self.reads.pool(), group, user).await
                    }
                }
            }
        };
    };
}

pub(crate) use impl_group_access;
