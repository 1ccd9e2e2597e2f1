//! Picking a session up again on a new connection.

use chat_proto::{LoginRequest, LoginResponse, Status};
use tokio::sync::mpsc;

use super::session::{Credentials, Shared};
use crate::connection::{Connection, ConnectionOptions};
use crate::error::Result;
use crate::event::Event;
use crate::transport::ServerAddress;

/// Opens a connection and logs in again if the session was logged in.
pub(super) async fn resume(
    shared: &Shared,
    options: &ConnectionOptions,
    events: &mpsc::UnboundedSender<Event>,
    address: &ServerAddress,
) -> Result<(Connection, Option<LoginResponse>)> {
    // Any error returned here is worth another attempt (connection
    // trouble, a busy or draining server); a refused login is not.
    let connection = Connection::connect_to(address, options.clone()).await?;
    let (credentials, token) = {
        let session = shared.session();
        (session.credentials.clone(), session.token.clone())
    };
    let Some(credentials) = credentials else {
        return Ok((connection, None));
    };
    // The token first; the password (when the session has one) if the
    // token is refused, say because it expired.
    let by_token = token.map(|token| LoginRequest {
        user: None,
        password: None,
        token: Some(token),
    });
    let by_password = match credentials {
        Credentials {
            user: Some(user),
            password: Some(password),
        } => Some(LoginRequest {
            user: Some(user),
            password: Some(password),
            token: None,
        }),
        _ => None,
    };
    let mut refusal = None;
    for request in by_token.into_iter().chain(by_password) {
        match connection.call(request).await {
            Ok(login) => {
                shared.remember(&login);
                return Ok((connection, Some(login)));
            }
            Err(error) if error.status() == Some(Status::Unauthorized) => {
                refusal = Some(error);
            }
            Err(error) => return Err(error),
        }
    }
    // Neither token nor password works any more: retrying cannot help.
    // Stay connected, logged out, and say so.
    {
        let mut session = shared.session();
        session.credentials = None;
        session.token = None;
        session.me = None;
    }
    let error = refusal.map_or_else(|| "no credentials".to_owned(), |e| e.to_string());
    // The receiver lives in the Client handle; see `Supervisor::emit`.
    let _ = events.send(Event::LoginFailed { error });
    Ok((connection, None))
}
