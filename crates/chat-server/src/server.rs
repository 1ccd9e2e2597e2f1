//! The node's lifecycle: open the store and bus, accept connections on the
//! chat and HTTP listeners, and shut down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chat_proto::Status;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::accept::{self, ConnectionSlot, Refusal};
use crate::bus::{Bus, LocalBus};
use crate::config::Config;
use crate::context::Context;
use crate::http::{self, ConnectionInfo, HttpState, SessionTask};
use crate::hub::Hub;
use crate::limits::ConnectionLimiter;
use crate::redis_bus::{RedisBus, RedisBusOptions};
use crate::session::{refuse, Session};
use crate::telemetry::{self, OpenConnection};
use crate::tls::{Tls, TlsError};
use crate::transport::Transport;

/// A node started with [`start`]: its addresses and the means to stop it.
pub struct RunningServer {
    local_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    tls: Option<Arc<Tls>>,
    shutdown: Arc<watch::Sender<bool>>,
    failure: watch::Receiver<Option<String>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// The address of the chat (framed TCP or TLS) listener.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the HTTP listener (WebSocket, probes, metrics), if on.
    #[must_use]
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Reads the TLS certificate and key files again; new handshakes use
    /// them, established connections are untouched. Does nothing without
    /// TLS.
    ///
    /// # Errors
    /// When the files cannot be read or used; the old certificate stays.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// Resolves when the node has to stop because its store failed for good
    /// (see [`chat_store::Store::failure`]), with what failed. The node is
    /// draining by then; [`RunningServer::shutdown`] finishes the stop and
    /// returns the failure as its error, for a non-zero exit that makes the
    /// supervisor (systemd, Kubernetes) restart it. Never resolves otherwise.
    pub async fn failed(&self) -> String {
        let mut failure = self.failure.clone();
        let failed = match failure.wait_for(Option::is_some).await {
            Ok(failed) => failed.clone(),
            Err(_) => None,
        };
        match failed {
            Some(failed) => failed,
            None => std::future::pending().await,
        }
    }

    /// Stops gracefully: no new sessions, every session is told the server
    /// is draining and flushed, then the bus and store are closed. The HTTP
    /// listener answers `/readyz` with 503 meanwhile.
    ///
    /// # Errors
    /// Whatever the node failed with while running or closing.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("server task panicked")?
    }

    /// Stops at once, as a crash would: the listeners and every connection
    /// are dropped without a word. Whatever was committed stays in the store.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Opens the store and bus, binds the listeners and serves in a background
/// task. Tests use this with `listen = "127.0.0.1:0"`.
///
/// # Errors
/// An invalid configuration, a certificate that cannot be loaded, a store
/// that cannot be opened or migrated, a bus that cannot start, or an
/// address that cannot be bound.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    config.validate()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key)?)),
        _ => None,
    };
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let http_listener = if config.http_listen.is_empty() {
        None
    } else {
        Some(
            TcpListener::bind(&config.http_listen)
                .await
                .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?,
        )
    };
    let store = open_store(&config.store).await.with_context(|| {
        format!(
            "cannot open store {}",
            crate::config::redact_url(&config.store)
        )
    })?;
    let hub = Arc::new(Hub::new());
    let bus: Arc<dyn Bus> = match RedisBusOptions::from_config(&config) {
        Some(options) => {
            let url = crate::config::redact_url(&options.url);
            let bus = RedisBus::start(options, hub.clone())
                .await
                .with_context(|| format!("cannot start the cluster bus on {url}"))?;
            Arc::new(bus)
        }
        None => Arc::new(LocalBus::new(hub.clone())),
    };
    let local_addr = listener.local_addr()?;
    let http_addr = match &http_listener {
        Some(listener) => Some(listener.local_addr()?),
        None => None,
    };
    tracing::info!(
        %local_addr,
        http = %http_addr.map_or_else(|| "off".to_owned(), |addr| addr.to_string()),
        tls = tls.is_some(),
        store = store.backend(),
        cluster = config.redis.is_some(),
        "chatd listening"
    );
    // Install the metrics recorder before the first connection counts.
    let _ = telemetry::handle();
    let ctx = Arc::new(Context::new(config, store, bus, hub));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let shutdown = Arc::new(shutdown);
    let (failure_tx, failure) = watch::channel(None);
    let node = Node {
        stop: shutdown.clone(),
        failure: failure_tx,
        limiter: Arc::new(ConnectionLimiter::new(
            ctx.config.max_connections_per_ip,
            ctx.config.max_connections,
        )),
        tls: tls.clone(),
        ctx,
        shutdown: shutdown_rx,
    };
    let task = tokio::spawn(node.serve(listener, http_listener));
    Ok(RunningServer {
        local_addr,
        http_addr,
        tls,
        shutdown,
        failure,
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

/// What the accept loop needs to admit connections.
struct Node {
    ctx: Arc<Context>,
    limiter: Arc<ConnectionLimiter>,
    tls: Option<Arc<Tls>>,
    shutdown: watch::Receiver<bool>,
    /// Starts the drain when the store fails for good.
    stop: Arc<watch::Sender<bool>>,
    /// Where that failure is reported to the node's owner.
    failure: watch::Sender<Option<String>>,
}

/// How often the node asks its store whether it failed for good.
const STORE_WATCH: Duration = Duration::from_secs(1);

/// Accepts from `listener`, or waits forever when there is none.
async fn accept_from(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

impl Node {
    async fn serve(
        self,
        listener: TcpListener,
        http_listener: Option<TcpListener>,
    ) -> anyhow::Result<()> {
        let node = Arc::new(self);
        let (session_tx, mut session_rx) = mpsc::unbounded_channel::<SessionTask>();
        let router = http::router(Arc::new(HttpState {
            ctx: node.ctx.clone(),
            shutdown: node.shutdown.clone(),
            sessions: session_tx,
        }));
        let upkeep = tokio::spawn(async {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                telemetry::upkeep();
            }
        });
        // Ends with this task, also when it is aborted (a simulated crash):
        // a purge left running would keep the store, and its connections,
        // alive.
        let purge = AbortOnDrop(tokio::spawn(purge_expired_tokens(node.ctx.clone())));
        let mut shutdown = node.shutdown.clone();
        // Sessions and HTTP connections live in JoinSets owned by this task,
        // so aborting the task (a simulated crash) drops every connection.
        let mut sessions = JoinSet::new();
        let mut http_connections = JoinSet::new();
        let mut store_watch = tokio::time::interval(STORE_WATCH);
        let mut failed = None;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = store_watch.tick() => {
                    // A store whose hot path died refuses every message:
                    // stop (draining, so clients move to another node) and
                    // exit non-zero, rather than accept clients in vain.
                    if let Some(failure) = node.ctx.store.failure() {
                        tracing::error!(%failure, "the store failed; stopping the node");
                        let _ = node.stop.send(true);
                        let _ = node.failure.send(Some(failure.clone()));
                        failed = Some(failure);
                        break;
                    }
                }
                Some(joined) = sessions.join_next(), if !sessions.is_empty() => log_panic(joined),
                Some(_) = http_connections.join_next(), if !http_connections.is_empty() => {}
                Some(task) = session_rx.recv() => {
                    sessions.spawn(task);
                }
                accepted = listener.accept() => {
                    if let Some((stream, peer)) = accepted_or_back_off(accepted).await {
                        node.clone().accept_chat(stream, peer, &mut sessions);
                    }
                }
                accepted = accept_from(http_listener.as_ref()) => {
                    if let Some((stream, peer)) = accepted_or_back_off(accepted).await {
                        node.clone().accept_http(stream, peer, &router, &mut http_connections);
                    }
                }
            }
        }
        drop(listener);
        // Logged-in sessions wait on their hub handles, not on the shutdown
        // signal (one waiter each): wake every one, and it sees the signal.
        for handle in node.ctx.hub.sessions() {
            handle.wake();
        }
        // While sessions drain, the HTTP listener keeps answering, so load
        // balancers see /readyz turn 503; new WebSocket sessions are refused.
        let grace = Duration::from_secs(node.ctx.config.shutdown_grace_secs);
        let drained = tokio::time::timeout(grace, async {
            loop {
                tokio::select! {
                    joined = sessions.join_next() => match joined {
                        Some(joined) => log_panic(joined),
                        None => break,
                    },
                    Some(_) = http_connections.join_next(), if !http_connections.is_empty() => {}
                    // An upgrade that raced the shutdown: close it.
                    Some(task) = session_rx.recv() => drop(task),
                    accepted = accept_from(http_listener.as_ref()) => {
                        if let Some((stream, peer)) = accepted_or_back_off(accepted).await {
                            node.clone().accept_http(stream, peer, &router, &mut http_connections);
                        }
                    }
                }
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
        drop(http_listener);
        http_connections.shutdown().await;
        upkeep.abort();
        drop(purge);
        node.ctx.bus.close().await;
        node.ctx.store.close().await;
        tracing::info!("stopped");
        match failed {
            Some(failure) => Err(anyhow::anyhow!("the store failed: {failure}")),
            None => Ok(()),
        }
    }

    /// Admits a chat connection: limits at once, then (on its own task)
    /// the PROXY header, the TLS handshake and the session.
    fn accept_chat(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        sessions: &mut JoinSet<()>,
    ) {
        let _ = stream.set_nodelay(true);
        let Some(slot) = self.admission_slot(peer) else {
            if self.tls.is_none() {
                tokio::spawn(refuse(stream, Status::RateLimited, "too many connections"));
            }
            return;
        };
        // Everything before the session runs in a box of its own, freed
        // once the session starts: the admission and handshake futures are
        // large (rustls keeps its whole connection state inline), and
        // whatever an `async` block holds, it holds for the task's whole
        // life. The task keeps only the session, its slot and its gauge.
        sessions.spawn(serve_connection(Box::pin(
            self.open_session(stream, peer, slot),
        )));
    }

    /// Admits a connection (the PROXY header, the TLS handshake) and makes
    /// its session, or refuses it. The session is returned with the
    /// admission slot and the open-connection gauge it must hold for its
    /// life.
    async fn open_session(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        mut slot: ConnectionSlot,
    ) -> Option<Opened> {
        let admitted =
            match accept::admit(stream, peer, self.ctx.config.proxy_protocol, &mut slot).await {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    self.refused(refusal, peer).await;
                    return None;
                }
            };
        let client = admitted.client;
        let (transport, buffered) = match &self.tls {
            Some(tls) => {
                let timeout = self.ctx.config.tls_handshake_timeout();
                let stream = accept::handshake(tls.chat_acceptor(), admitted, timeout).await?;
                (Transport::Tls(Box::new(stream)), None)
            }
            None => (Transport::Tcp(admitted.stream), Some(admitted.buffered)),
        };
        let open = OpenConnection::new(transport.kind().as_str());
        let mut session = Session::new(self.ctx.clone(), transport, client, self.shutdown.clone());
        if let Some(buffered) = buffered {
            session = session.with_buffered(buffered);
        }
        Some((Box::new(session), slot, open))
    }

    /// Admits an HTTP connection under the same limits and serves it.
    fn accept_http(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        router: &axum::Router,
        connections: &mut JoinSet<()>,
    ) {
        let _ = stream.set_nodelay(true);
        let Some(mut slot) = self.admission_slot(peer) else {
            // Closing is the cheapest answer an HTTP client understands
            // without us spending a task on it.
            return;
        };
        let router = router.clone();
        connections.spawn(async move {
            let admitted = match accept::admit(
                stream,
                peer,
                self.ctx.config.proxy_protocol,
                &mut slot,
            )
            .await
            {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    if let Refusal::Proxy(error, _) = refusal {
                        tracing::debug!(%peer, %error, "refused an HTTP connection");
                    }
                    return;
                }
            };
            let client = admitted.client;
            let slot = Arc::new(slot);
            match &self.tls {
                Some(tls) => {
                    let timeout = self.ctx.config.tls_handshake_timeout();
                    if let Some(stream) =
                        accept::handshake(tls.http_acceptor(), admitted, timeout).await
                    {
                        let info = ConnectionInfo {
                            client,
                            secure: true,
                            slot,
                        };
                        http::serve_connection(router, stream, info).await;
                    }
                }
                None => {
                    let stream = accept::Rewind::new(admitted.buffered.freeze(), admitted.stream);
                    let info = ConnectionInfo {
                        client,
                        secure: false,
                        slot,
                    };
                    http::serve_connection(router, stream, info).await;
                }
            }
        });
    }

    /// A place under the limits for a connection just accepted: the total
    /// always, the peer's address too unless a PROXY header will name the
    /// client. `None` (counted and refused) when the node or address is full.
    fn admission_slot(&self, peer: SocketAddr) -> Option<ConnectionSlot> {
        let Some(mut slot) = ConnectionSlot::total(&self.limiter) else {
            telemetry::connection_refused("total_limit");
            return None;
        };
        if !self.ctx.config.proxy_protocol && !slot.count_ip(peer.ip()) {
            telemetry::connection_refused("per_address_limit");
            return None;
        }
        Some(slot)
    }

    /// Answers a refused chat connection (plain TCP only: a TLS client
    /// could not read a plain frame).
    async fn refused(&self, refusal: Refusal, peer: SocketAddr) {
        match refusal {
            Refusal::TooMany(stream) => {
                if self.tls.is_none() {
                    refuse(stream, Status::RateLimited, "too many connections").await;
                }
            }
            Refusal::Proxy(error, stream) => {
                tracing::info!(%peer, %error, "refused a connection");
                if self.tls.is_none() {
                    refuse(stream, Status::ProtocolError, &error.to_string()).await;
                }
            }
        }
    }
}

/// The accepted connection, or `None` after a short pause when accept
/// failed (out of descriptors and the like: back off instead of spinning).
async fn accepted_or_back_off(
    accepted: std::io::Result<(TcpStream, SocketAddr)>,
) -> Option<(TcpStream, SocketAddr)> {
    match accepted {
        Ok(accepted) => Some(accepted),
        Err(error) => {
            tracing::warn!(%error, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
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

/// A session task that panicked is a bug: say so loudly.
fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        if error.is_panic() {
            tracing::error!(%error, "a session task panicked");
        }
    }
}

/// A task that is aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Deletes expired tokens from the store every `token_purge_interval_secs`
/// (and once at start), so the table holds only tokens that can still log
/// in. Every node of a cluster does it; the deletes are idempotent.
async fn purge_expired_tokens(ctx: Arc<Context>) {
    let period = Duration::from_secs(ctx.config.token_purge_interval_secs);
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match ctx
            .store
            .purge_expired_tokens(crate::context::now_ms())
            .await
        {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired session tokens purged"),
            Err(error) => {
                crate::error::log_store_failure("could not purge expired tokens", &error);
            }
        }
    }
}

/// A session ready to run, with the admission slot and the open-connection
/// gauge it holds for its life.
type Opened = (Box<Session>, ConnectionSlot, OpenConnection);

/// A connection's task: waits for its boxed setup, then runs the session.
/// Taking the setup already boxed, it holds nothing else for the
/// connection's life (an `async` block keeps room for everything it
/// captured, moved out or not).
async fn serve_connection(setup: Pin<Box<impl Future<Output = Option<Opened>>>>) {
    let Some((session, _slot, _open)) = setup.await else {
        return;
    };
    session.run_boxed().await;
}
