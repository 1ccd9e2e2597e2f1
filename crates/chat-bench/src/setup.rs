//! Setting up a run through the protocol: accounts, logins, friendships and
//! groups. Each call writes one request and waits for its answer, skipping
//! pushes; the hot loops do not use this path.

use std::net::IpAddr;
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use rand::distributions::Alphanumeric;
use rand::Rng;

use chat_proto::{
    ErrorBody, FriendAddRequest, FriendRespondRequest, GroupCreateRequest, GroupId,
    GroupJoinRequest, LoginRequest, LoginResponse, RegisterRequest, Request, Response,
    ServerMessage, UserId, UserRef,
};

use crate::conn::{Conn, Server};
use crate::error::{Error, Result};

/// The password of every bench account (the protocol wants 8 to 128 characters).
pub const PASSWORD: &str = "bench-password";

/// How long one setup request may take. Generous: registration and password
/// logins hash with argon2, and a whole storm of them may queue on the
/// server's hashing pool.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// How many setup requests are in flight at once across a run.
pub const SETUP_CONCURRENCY: usize = 16;

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its id.
    pub id: UserId,
    /// Its unique name.
    pub name: String,
}

/// A short random prefix that makes this run's account names unique, so runs
/// never collide on one database. Letters only, so a name is never all digits.
#[must_use]
pub fn run_prefix() -> String {
    let mut rng = rand::thread_rng();
    let mut prefix: String = (0..7)
        .map(|_| char::from(rng.sample(Alphanumeric)).to_ascii_lowercase())
        .collect();
    // A leading letter keeps every name from looking like an id.
    prefix.insert(0, char::from(b'a' + rng.gen_range(0..26u8)));
    prefix
}

/// Sends `request` and waits for its answer, skipping pushes and answers to
/// other requests.
///
/// # Errors
/// [`Error::Refused`] when the server answers with an error status; socket,
/// framing and timeout errors as [`Conn::read_frame_within`].
pub async fn call(conn: &mut Conn, request: &Request, what: &'static str) -> Result<Response> {
    let request_id = conn.queue_request(request)?;
    conn.flush().await?;
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = conn.read_frame_within(what, left).await?;
        if !frame.header.flags.is_response() || frame.header.request_id != request_id {
            continue;
        }
        return match ServerMessage::from_frame(&frame)? {
            ServerMessage::Reply {
                result: Ok(response),
                ..
            } => {
                if response.message_type() == request.message_type() {
                    Ok(response)
                } else {
                    Err(Error::Protocol(format!(
                        "{what} was answered with a {} response",
                        response.message_type().name()
                    )))
                }
            }
            ServerMessage::Reply {
                result: Err(ErrorBody { error, message }),
                ..
            } => Err(Error::Refused {
                request: what,
                status: error,
                message,
            }),
            ServerMessage::Push(_) => continue,
        };
    }
}

/// Registers `name` with [`PASSWORD`].
///
/// # Errors
/// As [`call`].
pub async fn register(conn: &mut Conn, name: &str) -> Result<Account> {
    let request = Request::Register(RegisterRequest {
        name: name.to_owned(),
        password: PASSWORD.to_owned(),
    });
    match call(conn, &request, "register").await? {
        Response::Register(response) => Ok(Account {
            id: response.user.id,
            name: response.user.name,
        }),
        _ => Err(Error::Protocol("register answered out of type".into())),
    }
}

/// Logs the connection in as `account` with [`PASSWORD`].
///
/// # Errors
/// As [`call`].
pub async fn login_password(conn: &mut Conn, account: &Account) -> Result<LoginResponse> {
    let request = Request::Login(LoginRequest {
        user: Some(UserRef::Id(account.id)),
        password: Some(PASSWORD.to_owned()),
        token: None,
    });
    match call(conn, &request, "login").await? {
        Response::Login(response) => Ok(response),
        _ => Err(Error::Protocol("login answered out of type".into())),
    }
}

/// Logs the connection in with a session token.
///
/// # Errors
/// As [`call`].
pub async fn login_token(conn: &mut Conn, token: &str) -> Result<LoginResponse> {
    let request = Request::Login(LoginRequest {
        user: None,
        password: None,
        token: Some(token.to_owned()),
    });
    match call(conn, &request, "token login").await? {
        Response::Login(response) => Ok(response),
        _ => Err(Error::Protocol("token login answered out of type".into())),
    }
}

/// Makes the users of two logged-in connections friends: `a` asks, `b` accepts.
///
/// # Errors
/// As [`call`].
pub async fn befriend(a: &mut Conn, a_id: UserId, b: &mut Conn, b_id: UserId) -> Result<()> {
    let ask = Request::FriendAdd(FriendAddRequest {
        user: UserRef::Id(b_id),
        message: None,
    });
    call(a, &ask, "friend_add").await?;
    let accept = Request::FriendRespond(FriendRespondRequest {
        user: UserRef::Id(a_id),
        accept: true,
    });
    call(b, &accept, "friend_respond").await?;
    Ok(())
}

/// Creates a group owned by the connection's user.
///
/// # Errors
/// As [`call`].
pub async fn create_group(conn: &mut Conn, name: &str) -> Result<GroupId> {
    let request = Request::GroupCreate(GroupCreateRequest {
        name: name.to_owned(),
        description: String::new(),
        join_policy: chat_proto::JoinPolicy::Open,
    });
    match call(conn, &request, "group_create").await? {
        Response::GroupCreate(response) => Ok(response.group.id),
        _ => Err(Error::Protocol("group_create answered out of type".into())),
    }
}

/// Joins a group.
///
/// # Errors
/// As [`call`].
pub async fn join_group(conn: &mut Conn, group: GroupId) -> Result<()> {
    let request = Request::GroupJoin(GroupJoinRequest { group_id: group });
    call(conn, &request, "group_join").await?;
    Ok(())
}

/// Where the `index`th connection of a run goes and comes from.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The servers, used round-robin.
    pub servers: Vec<Server>,
    /// The local source addresses, used round-robin; empty lets the kernel choose.
    pub sources: Vec<IpAddr>,
}

impl Placement {
    /// The server for connection `index` (0 for an empty list is a caller bug
    /// prevented by option validation).
    #[must_use]
    pub fn server(&self, index: usize) -> &Server {
        &self.servers[index % self.servers.len()]
    }

    /// The source address for connection `index`.
    #[must_use]
    pub fn source(&self, index: usize) -> Option<IpAddr> {
        if self.sources.is_empty() {
            None
        } else {
            Some(self.sources[index % self.sources.len()])
        }
    }
}

/// Registers `count` accounts named `{prefix}{tag}{i}` and logs each into a
/// connection of its own; connection `i` goes to `server_of(i)`. Returns
/// them in order, each with its login response.
///
/// # Errors
/// The first setup error.
pub async fn register_and_login(
    count: usize,
    prefix: &str,
    tag: &str,
    placement: &Placement,
    server_of: impl Fn(usize) -> Server,
) -> Result<Vec<(Conn, Account, LoginResponse)>> {
    stream::iter(0..count)
        .map(|index| {
            let name = format!("{prefix}{tag}{index}");
            let server = server_of(index);
            let source = placement.source(index);
            async move {
                let mut conn = Conn::connect(&server, source).await?;
                let account = register(&mut conn, &name).await?;
                let login = login_password(&mut conn, &account).await?;
                Ok::<_, Error>((conn, account, login))
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}
