//! Register, login and logout, and the limits that keep them from being
//! turned into a lever: per-address and node-wide registration limits,
//! per-address and per-account failed-login limits.

use std::net::IpAddr;
use std::time::Instant;

use chat_proto::{
    Group, LoginRequest, LoginResponse, RegisterRequest, RegisterResponse, SessionInfo,
    SessionListResponse, SessionRevokeRequest, SessionRevokeResponse, Status, UserId, UserRef,
    UserSummary,
};
use chat_store::{AccountRecord, UserRecord};

use crate::auth::{new_token, token_hash, Priority};
use crate::config::Registration;
use crate::context::{now_ms, Context, Identity};
use crate::error::{Result, ServiceError};
use crate::limits::address_key;
use crate::service::{friends_with_presence, validate};

/// Creates an account for a client at `peer`.
///
/// # Errors
/// `forbidden` when registration is closed, `bad_request` for an invalid
/// name or password, `conflict` if the name is taken, `rate_limited` past
/// the per-address or the node's registration limit.
pub async fn register(
    ctx: &Context,
    request: RegisterRequest,
    peer: IpAddr,
) -> Result<RegisterResponse> {
    if ctx.config.registration == Registration::Closed {
        return Err(ServiceError::forbidden(
            "registration is closed on this server; ask its operator for an account",
        ));
    }
    let name = validate::user_name(&request.name)?;
    validate::password(&request.password)?;
    // Fail fast on a taken name (in any case) before paying for a hash; the
    // store's unique keys still decide races, and look-alikes.
    if ctx.store.user_by_name(&name).await?.is_some() {
        return Err(ServiceError::conflict("name is taken"));
    }
    // Every attempt that gets this far costs a hash, so it counts, whether
    // or not the account is then created.
    let clock = Instant::now();
    let address = address_key(peer);
    if !ctx.registrations_by_ip.try_acquire(address, clock) {
        ctx.registration_refusals
            .refused("per-address limit", clock);
        return Err(ServiceError::new(
            Status::RateLimited,
            "too many accounts registered from this address; retry later",
        ));
    }
    if !ctx.registrations.try_acquire((), clock) {
        ctx.registrations_by_ip.release(&address);
        ctx.registration_refusals
            .refused("server-wide limit", clock);
        return Err(ServiceError::new(
            Status::RateLimited,
            "too many accounts registered on this server just now; retry in a minute",
        ));
    }
    let hash = ctx
        .passwords
        .hash(request.password, Priority::Registration)
        .await?;
    let user = ctx.store.create_user(&name, &hash, now_ms()).await?;
    tracing::info!(user = %user.id, "registered");
    Ok(RegisterResponse {
        user: UserSummary {
            id: user.id,
            name: user.name,
        },
    })
}

/// A successful authentication: who, and the token the session holds.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The account.
    pub user: UserRecord,
    /// The session token to hand to the client.
    pub token: String,
    /// When the token expires.
    pub token_expires_at_ms: i64,
}

/// Checks a password or token login.
///
/// # Errors
/// `bad_request` when neither or both forms are given, `unauthorized` for
/// wrong credentials (the same answer for an unknown user and a wrong
/// password), `rate_limited` after too many failures, `forbidden` for a
/// disabled account.
pub async fn authenticate(
    ctx: &Context,
    request: LoginRequest,
    peer: IpAddr,
) -> Result<Authenticated> {
    let now = now_ms();
    match request {
        LoginRequest {
            token: Some(token),
            user: None,
            password: None,
        } => {
            // One statement: the token's account, if it is neither
            // deleted nor disabled (disabling also revokes its tokens).
            let Some((user, expires_at)) =
                ctx.store.user_for_token(&token_hash(&token), now).await?
            else {
                return Err(ServiceError::unauthorized("token is invalid or expired"));
            };
            Ok(Authenticated {
                user,
                token,
                token_expires_at_ms: expires_at,
            })
        }
        LoginRequest {
            token: None,
            user: Some(user_ref),
            password: Some(password),
        } => password_login(ctx, &user_ref, password, peer, now).await,
        _ => Err(ServiceError::bad_request(
            "login takes either user and password, or token",
        )),
    }
}

async fn password_login(
    ctx: &Context,
    user_ref: &UserRef,
    password: String,
    peer: IpAddr,
    now: i64,
) -> Result<Authenticated> {
    let clock = Instant::now();
    if password.chars().count() > validate::MAX_PASSWORD_CHARS {
        return Err(ServiceError::bad_request(
            "password must be 8 to 128 characters",
        ));
    }
    let address = address_key(peer);
    // Every attempt counts as a failure until it has succeeded, so parallel
    // guesses cannot all pass the check before the first is recorded.
    if !ctx.login_failures_by_ip.try_acquire(address, clock) {
        ctx.login_refusals
            .refused("per-address failure limit", clock);
        return Err(ServiceError::new(
            Status::RateLimited,
            "too many failed logins from this address, retry in a minute",
        ));
    }
    let user = match user_ref {
        UserRef::Id(id) => ctx.store.user_by_id(*id).await?,
        UserRef::Name(name) if name.chars().count() <= validate::MAX_NAME_CHARS => {
            ctx.store.user_by_name(name).await?
        }
        UserRef::Name(_) => None,
    };
    let Some(user) = user else {
        // Pay for a hash anyway, so the answer's timing does not tell
        // whether the account exists.
        ctx.passwords.verify_nothing(password).await?;
        return Err(ServiceError::unauthorized("wrong user or password"));
    };
    // An account with too many failures is closed only to the addresses
    // that failed on it: whoever guesses cannot lock its owner out, who
    // logs in from an address that has not failed.
    let pair = (user.id, address);
    let counted_on_account = ctx.login_failures_by_account.try_acquire(user.id, clock);
    if !counted_on_account && ctx.login_failures_by_account_and_ip.count(&pair, clock) > 0 {
        ctx.login_failures_by_ip.release(&address);
        ctx.login_refusals
            .refused("per-account failure limit", clock);
        return Err(ServiceError::new(
            Status::RateLimited,
            "too many failed logins for this account, retry in a minute",
        ));
    }
    ctx.login_failures_by_account_and_ip
        .try_acquire(pair, clock);
    let stored_hash = user.password_hash.clone();
    if !ctx
        .passwords
        .verify(password.clone(), stored_hash.clone())
        .await?
    {
        ctx.login_refusals.refused("wrong password", clock);
        return Err(ServiceError::unauthorized("wrong user or password"));
    }
    if counted_on_account {
        ctx.login_failures_by_account.release(&user.id);
    }
    ctx.login_failures_by_account_and_ip.clear(&pair);
    ctx.login_failures_by_ip.release(&address);
    // Only after the password is right: the answer tells whoever knows the
    // password, not whoever guesses names, that the account is disabled.
    refuse_if_disabled(ctx, user.id).await?;
    if !ctx.passwords.cost().is_current(&stored_hash) {
        rehash_later(ctx, user.id, password, stored_hash);
    }
    let token = new_token();
    let expires_at = now + (ctx.config.token_ttl_secs as i64) * 1000;
    ctx.store
        .create_token(&token_hash(&token), user.id, expires_at)
        .await?;
    Ok(Authenticated {
        user,
        token,
        token_expires_at_ms: expires_at,
    })
}

/// Replaces a password hash made at another cost than the configured one,
/// off the login's path (the client need not wait for a second hash). The
/// store replaces it only if it is still the one verified, so a password
/// changed meanwhile is not undone.
fn rehash_later(ctx: &Context, user: UserId, password: String, old_hash: String) {
    let passwords = ctx.passwords.clone();
    let store = ctx.store.clone();
    tokio::spawn(async move {
        let new_hash = match passwords.hash(password, Priority::Login).await {
            Ok(hash) => hash,
            Err(error) => {
                tracing::debug!(%user, %error, "could not rehash a password at login");
                return;
            }
        };
        match store
            .replace_password_hash(user, &old_hash, &new_hash)
            .await
        {
            Ok(true) => tracing::info!(%user, "password hash updated to the configured cost"),
            Ok(false) => {}
            Err(error) => tracing::debug!(%user, %error, "could not store a rehashed password"),
        }
    });
}

/// The answer to a login of a disabled account.
pub const DISABLED: &str = "this account is disabled; contact the server's operator";

/// Refuses a disabled (or meanwhile deleted) account.
///
/// # Errors
/// `forbidden` for a disabled account, `unauthorized` for one deleted since
/// it was looked up.
pub async fn refuse_if_disabled(ctx: &Context, user: UserId) -> Result<()> {
    match ctx.store.account(user).await? {
        Some(account) if account.is_disabled() => Err(ServiceError::forbidden(DISABLED)),
        Some(_) => Ok(()),
        None => Err(ServiceError::unauthorized("wrong user or password")),
    }
}

/// Everything the login response carries about the user's world.
///
/// # Errors
/// A store failure.
pub async fn login_response(ctx: &Context, who: &Authenticated) -> Result<LoginResponse> {
    let user_id = who.user.id;
    // One read on one connection. The account is checked again now that
    // the session is in the hub: an operator who disabled it between the
    // first check and the session joining the hub ended every session it
    // could see, and would have missed this one.
    let view = ctx.store.login_view(user_id).await?;
    match &view.account {
        Some(account) if account.is_disabled() => return Err(ServiceError::forbidden(DISABLED)),
        Some(account) => note_login(ctx, account),
        None => return Err(ServiceError::unauthorized("wrong user or password")),
    }
    let friends = friends_with_presence(ctx, view.friends).await;
    let groups = view
        .groups
        .into_iter()
        .map(|(group, role)| Group {
            id: group.id,
            name: group.name,
            description: group.description,
            owner_id: group.owner_id,
            conversation_id: group.conversation_id,
            member_count: group.member_count,
            my_role: Some(role),
            created_at_ms: group.created_at_ms,
            join_policy: group.join_policy,
        })
        .collect();
    Ok(LoginResponse {
        user: UserSummary {
            id: user_id,
            name: who.user.name.clone(),
        },
        token: who.token.clone(),
        token_expires_at_ms: who.token_expires_at_ms,
        friends,
        groups,
        incoming_requests: view.incoming_requests,
        outgoing_requests: view.outgoing_requests,
        unacked: view.unacked,
        unread: view.unread,
    })
}

/// Logins are noted for operators (`chatd admin users show`) to the
/// minute, off the login's path: the client need not wait for a write to
/// learn it is in, and a login within the minute of the last one (a
/// reconnect, a resume storm) writes nothing at all.
fn note_login(ctx: &Context, account: &AccountRecord) {
    let now = now_ms();
    if !account.login_worth_noting(now) {
        return;
    }
    let store = ctx.store.clone();
    let user = account.id;
    tokio::spawn(async move {
        if let Err(error) = store.record_login(user, now).await {
            tracing::debug!(%user, %error, "could not note the login time");
        }
    });
}

/// What a login is called in `session_list`: the start of its token's hash
/// (64 bits, so two logins of one user never share it in practice). The
/// token cannot be recovered from it.
fn session_id(token_hash: &str) -> String {
    token_hash.chars().take(16).collect()
}

/// Lists the user's logins (unexpired tokens).
///
/// # Errors
/// A store failure.
pub async fn sessions(ctx: &Context, me: &Identity) -> Result<SessionListResponse> {
    let tokens = ctx.store.tokens_of(me.user, now_ms()).await?;
    Ok(SessionListResponse {
        sessions: tokens
            .into_iter()
            .map(|(hash, expires_at_ms)| SessionInfo {
                id: session_id(&hash),
                expires_at_ms,
                current: *hash == *me.token_hash,
            })
            .collect(),
    })
}

/// Ends another of the user's logins: revokes its token and ends the
/// sessions holding it, anywhere.
///
/// # Errors
/// `not_found` for an id that names no login of the user, `bad_request`
/// for the session's own.
pub async fn revoke_session(
    ctx: &Context,
    me: &Identity,
    request: SessionRevokeRequest,
) -> Result<SessionRevokeResponse> {
    if request.id == session_id(&me.token_hash) {
        return Err(ServiceError::bad_request(
            "that is this session's own login: use logout",
        ));
    }
    let tokens = ctx.store.tokens_of(me.user, now_ms()).await?;
    let Some((token_hash, _)) = tokens
        .into_iter()
        .find(|(hash, _)| request.id.len() == 16 && session_id(hash) == request.id)
    else {
        return Err(ServiceError::not_found("no such login"));
    };
    ctx.store.revoke_token(&token_hash, now_ms()).await?;
    ctx.bus
        .end_token_sessions(
            me.user,
            &token_hash,
            me.session,
            "this login was ended from another device",
        )
        .await;
    Ok(SessionRevokeResponse {})
}

/// Revokes the session's token, and ends the user's other live sessions
/// that logged in with it (anywhere in the cluster): logging out is the
/// end of that login on every connection that holds it.
///
/// # Errors
/// A store failure.
pub async fn revoke(ctx: &Context, me: &Identity) -> Result<()> {
    ctx.store.revoke_token(&me.token_hash, now_ms()).await?;
    ctx.bus
        .end_token_sessions(
            me.user,
            &me.token_hash,
            me.session,
            "logged out on another connection",
        )
        .await;
    Ok(())
}
