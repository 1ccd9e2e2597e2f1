//! The node's lifecycle: open the store and bus, accept connections, and
//! shut down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::BytesMut;
use chat_proto::Status;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::bus::{Bus, LocalBus};
use crate::config::Config;
use crate::context::Context;
use crate::hub::Hub;
use crate::limits::ConnectionLimiter;
use crate::proxy;
use crate::redis_bus::{RedisBus, RedisBusOptions};
use crate::session::{refuse, Session};

/// A node started with [`start`]: its address and the means to stop it.
pub struct RunningServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// The address the node listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops gracefully: no new connections, every session is told the
    /// server is draining and flushed, then the bus and store are closed.
    ///
    /// # Errors
    /// Whatever the node failed with while running or closing.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("server task panicked")?
    }

    /// Stops at once, as a crash would: the listener and every connection
    /// are dropped without a word. Whatever was committed stays in the store.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Opens the store and bus, binds the listener and serves in a background
/// task. Tests use this with `listen = "127.0.0.1:0"`.
///
/// # Errors
/// An invalid configuration, a store that cannot be opened or migrated, a
/// bus that cannot start, or an address that cannot be bound.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    config.validate()?;
    let store = open_store(&config.store)
        .await
        .with_context(|| format!("cannot open store {}", redact(&config.store)))?;
    let hub = Arc::new(Hub::new());
    let bus: Arc<dyn Bus> = match RedisBusOptions::from_config(&config) {
        Some(options) => {
            let url = redact(&options.url);
            let bus = RedisBus::start(options, hub.clone())
                .await
                .with_context(|| format!("cannot start the cluster bus on {url}"))?;
            Arc::new(bus)
        }
        None => Arc::new(LocalBus::new(hub.clone())),
    };
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    tracing::info!(
        %local_addr,
        store = store.backend(),
        cluster = config.redis.is_some(),
        "chatd listening"
    );
    let ctx = Arc::new(Context::new(config, store, bus, hub));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(serve(listener, ctx, shutdown_rx));
    Ok(RunningServer {
        local_addr,
        shutdown,
        task,
    })
}

/// Runs a node until `shutdown` resolves, then stops gracefully.
///
/// # Errors
/// As [`start`] and [`RunningServer::shutdown`].
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let server = start(config).await?;
    shutdown.await;
    tracing::info!("shutting down");
    server.shutdown().await
}

async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let limiter = Arc::new(ConnectionLimiter::new(
        ctx.config.max_connections_per_ip,
        ctx.config.max_connections,
    ));
    // Sessions live in a JoinSet owned by this task, so aborting the task
    // (a simulated crash) drops every connection with it.
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(joined) = sessions.join_next(), if !sessions.is_empty() => log_panic(joined),
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors and the like: back off briefly
                        // instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if ctx.config.proxy_protocol {
                    // The client's address comes first, from the proxy:
                    // read it on the session's task, not the accept loop.
                    let (ctx, limiter, shutdown) = (ctx.clone(), limiter.clone(), shutdown.clone());
                    sessions.spawn(async move {
                        let mut stream = stream;
                        let mut buf = BytesMut::new();
                        let client = match proxy::read_header(&mut stream, &mut buf, peer).await {
                            Ok(client) => client,
                            Err(error) => {
                                tracing::info!(%peer, %error, "refused a connection");
                                refuse(stream, Status::ProtocolError, &error.to_string()).await;
                                return;
                            }
                        };
                        serve_connection(ctx, limiter, stream, client, buf, shutdown).await;
                    });
                    continue;
                }
                if !limiter.try_acquire(peer.ip()) {
                    tokio::spawn(refuse(stream, Status::RateLimited, "too many connections"));
                    continue;
                }
                let session = Session::new(ctx.clone(), stream, peer, shutdown.clone());
                let slot = ConnectionSlot { limiter: limiter.clone(), ip: peer.ip() };
                sessions.spawn(async move {
                    let _slot = slot;
                    session.run().await;
                });
            }
        }
    }
    drop(listener);
    let grace = Duration::from_secs(ctx.config.shutdown_grace_secs);
    let drained = tokio::time::timeout(grace, async {
        while let Some(joined) = sessions.join_next().await {
            log_panic(joined);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = sessions.len(),
            "sessions did not drain in time; closing them"
        );
        sessions.shutdown().await;
    }
    ctx.bus.close().await;
    ctx.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Counts a proxied connection under its client's address and serves it.
async fn serve_connection(
    ctx: Arc<Context>,
    limiter: Arc<ConnectionLimiter>,
    stream: tokio::net::TcpStream,
    client: SocketAddr,
    read_buf: BytesMut,
    shutdown: watch::Receiver<bool>,
) {
    if !limiter.try_acquire(client.ip()) {
        refuse(stream, Status::RateLimited, "too many connections").await;
        return;
    }
    let _slot = ConnectionSlot {
        limiter,
        ip: client.ip(),
    };
    Session::new(ctx, stream, client, shutdown)
        .with_buffered(read_buf)
        .run()
        .await;
}

/// Opens the store, trying again for a few seconds: a database that is still
/// starting, or several nodes of a new cluster migrating one database at the
/// same moment, should delay a node's start, not fail it.
async fn open_store(url: &str) -> Result<Arc<dyn chat_store::Store>, chat_store::StoreError> {
    const ATTEMPTS: u32 = 6;
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match chat_store::open(url).await {
            Ok(store) => return Ok(store),
            // A bad URL will not get better.
            Err(error @ chat_store::StoreError::Config(_)) => return Err(error),
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(error = ?error, attempt, "cannot open the store yet; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Gives a connection's place back to the limiter however its task ends,
/// a panic included.
struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    ip: std::net::IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limiter.release(self.ip);
    }
}

/// A session task that panicked is a bug: say so loudly.
fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        if error.is_panic() {
            tracing::error!(%error, "a session task panicked");
        }
    }
}

/// A URL with its password replaced, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("mysql://root:secret@127.0.0.1/chat"),
            "mysql://root:***@127.0.0.1/chat"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1/chat"),
            "mysql://root@127.0.0.1/chat"
        );
        assert_eq!(redact("sqlite://chat.db"), "sqlite://chat.db");
    }
}
