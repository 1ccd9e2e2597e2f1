//! Picking a session up again on a new connection.

use chat_proto::{LoginResponse, Status};
use tokio::sync::mpsc;

use super::session::Shared;
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
    let mut refusal = None;
    if let Some(token) = &token {
        match connection.login_with_token(token).await {
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
    if let (Some(user), Some(password)) = (&credentials.user, &credentials.password) {
        match connection.login(user, password).await {
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
