//! The `idle` scenario: many logged-in connections that only ping, and what
//! they cost the server in resident memory.
//!
//! One process may hold at most 20,000 descriptors here, so the connections
//! are held by worker processes (this same binary, `idle-worker`), at most
//! `per_worker` each, and spread over loopback source addresses so neither
//! the server's per-address limit nor one address's ephemeral ports bind.
//! The parent and its workers talk in JSON lines: the worker registers its
//! accounts, logs each in once with its password to get a token, and says
//! `registered`; the parent reads the server's RSS and
//! writes `connect`; the worker logs every connection in with a token (no
//! password hashing while memory is measured) and says `ready`;
//! the parent reads the RSS again and writes `stop`; the worker says `done`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;

use chat_proto::{MessageType, PingRequest};

use crate::conn::{Conn, ReadOutcome, Server};
use crate::error::{Error, Result};
use crate::load::{join_addrs, note_transport};
use crate::report::Report;
use crate::setup::{self, Placement};

/// The `idle` scenario.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    /// chatd nodes; connections go round-robin.
    pub servers: Vec<Server>,
    /// Connections to hold.
    pub connections: usize,
    /// The server process whose VmRSS is read; without it no memory figure.
    pub server_pid: Option<u32>,
    /// Connections per worker process (each process may open 20,000 descriptors).
    pub per_worker: usize,
    /// Sessions logged in per account, each with the account's token;
    /// more than one saves registrations (and their argon2 work) in setup.
    pub sessions_per_user: usize,
    /// Local addresses to spread connections over.
    pub sources: Vec<IpAddr>,
    /// How often each connection pings (below the server's idle timeout).
    pub ping_interval: Duration,
    /// How long to wait after the last login before reading the RSS.
    pub settle: Duration,
    /// Bound on each setup phase (registering, logging in).
    pub setup_timeout: Duration,
    /// Tokens of accounts made earlier by [`prepare_idle_accounts`], one
    /// per `sessions_per_user` connections. With them nothing is registered
    /// and no password is hashed in this run, so a freshly started server
    /// can be measured without argon2's memory in its heap. Without them the
    /// workers register their own accounts first.
    pub tokens: Option<Vec<String>>,
    /// The program to run as a worker (this binary).
    pub worker_program: PathBuf,
    /// Whether to tell progress on stderr.
    pub progress: bool,
}

/// One worker's share, as passed on its command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleWorkerOptions {
    /// chatd nodes, as addresses [`Server::resolve`] takes (TLS already
    /// applied).
    pub servers: Vec<String>,
    /// The CA file TLS trusts (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// The run's account name prefix.
    pub prefix: String,
    /// The global index of the worker's first connection.
    pub first: usize,
    /// How many connections the worker holds.
    pub count: usize,
    /// Sessions per account.
    pub sessions_per_user: usize,
    /// Local addresses to spread connections over.
    pub sources: Vec<IpAddr>,
    /// Ping interval in milliseconds.
    pub ping_interval_ms: u64,
    /// The worker exits by itself after this many seconds whatever happens.
    pub max_seconds: u64,
    /// Tokens for the worker's accounts (in order), when made in advance.
    pub tokens: Option<Vec<String>>,
}

/// A line a worker writes to its parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum WorkerEvent {
    Registered {
        users: usize,
    },
    Ready {
        connected: u64,
        failed: u64,
        errors: BTreeMap<String, u64>,
    },
    Done {
        dropped: u64,
    },
    Failed {
        error: String,
    },
}

/// Reads a process's resident set size in KiB from `/proc/<pid>/status`.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::Options`] when it has
/// no `VmRSS` line (e.g. the process is gone).
pub fn read_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|error| Error::io(path.clone(), error))?;
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix("VmRSS:")?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .ok_or_else(|| Error::Options(format!("{path} has no VmRSS line")))
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    async fn next_event(&mut self, limit: Duration) -> Result<WorkerEvent> {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .map_err(|_| Error::Timeout {
                what: "an idle worker".into(),
                seconds: limit.as_secs(),
            })?
            .map_err(|error| Error::io("read from worker", error))?
            .ok_or_else(|| Error::Worker("a worker exited early".into()))?;
        let event: WorkerEvent = serde_json::from_str(&line)
            .map_err(|error| Error::Worker(format!("unreadable line {line:?}: {error}")))?;
        if let WorkerEvent::Failed { error } = event {
            return Err(Error::Worker(error));
        }
        Ok(event)
    }

    async fn tell(&mut self, command: &str) -> Result<()> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(|error| Error::io("write to worker", error))?;
        self.stdin
            .flush()
            .await
            .map_err(|error| Error::io("write to worker", error))
    }
}

fn say(options: &IdleOptions, text: &str) {
    if options.progress {
        eprintln!("idle: {text}");
    }
}

/// Runs the `idle` scenario.
///
/// # Errors
/// Invalid options, a worker that fails, or a phase that times out.
pub async fn run_idle(options: &IdleOptions) -> Result<Report> {
    if options.servers.is_empty() {
        return Err(Error::Options("no server given".into()));
    }
    if options.connections == 0 || options.connections > 1_000_000 {
        return Err(Error::Options("connections must be 1 to 1000000".into()));
    }
    let per_user = options.sessions_per_user.max(1);
    if options.per_worker == 0
        || options.per_worker > 18_000
        || !options.per_worker.is_multiple_of(per_user)
    {
        return Err(Error::Options(
            "per-worker must be 1 to 18000 and a multiple of sessions-per-user".into(),
        ));
    }
    if let Some(tokens) = &options.tokens {
        if tokens.len() < options.connections.div_ceil(per_user) {
            return Err(Error::Options(format!(
                "{} tokens are too few for {} connections at {per_user} per account",
                tokens.len(),
                options.connections
            )));
        }
    }
    let prefix = setup::run_prefix();
    // Workers exit on their own at the latest this long after they start.
    let max_seconds = 3 * options.setup_timeout.as_secs() + options.settle.as_secs() + 600;
    let mut workers = Vec::new();
    let mut first = 0;
    while first < options.connections {
        let count = options.per_worker.min(options.connections - first);
        let share = IdleWorkerOptions {
            servers: options
                .servers
                .iter()
                .map(|server| server.address.to_string())
                .collect(),
            ca_file: options
                .servers
                .iter()
                .find_map(|server| server.ca_file.clone()),
            prefix: prefix.clone(),
            first,
            count,
            sessions_per_user: per_user,
            sources: options.sources.clone(),
            ping_interval_ms: u64::try_from(options.ping_interval.as_millis()).unwrap_or(u64::MAX),
            max_seconds,
            tokens: options.tokens.as_ref().map(|tokens| {
                tokens[first / per_user..(first + count).div_ceil(per_user)].to_vec()
            }),
        };
        // The share goes on stdin: thousands of tokens do not fit in one
        // command-line argument.
        let mut spec = serde_json::to_string(&share)
            .map_err(|error| Error::Worker(format!("cannot encode a worker's share: {error}")))?;
        spec.push('\n');
        let mut child = Command::new(&options.worker_program)
            .arg("idle-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                Error::io(
                    format!("start worker {}", options.worker_program.display()),
                    error,
                )
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Worker("a worker has no pipes".into()));
        };
        let mut worker = Worker {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        worker.tell(spec.trim_end()).await?;
        workers.push(worker);
        first += count;
    }
    say(
        options,
        &format!("{} workers registering accounts", workers.len()),
    );
    for worker in &mut workers {
        match worker.next_event(options.setup_timeout).await? {
            WorkerEvent::Registered { .. } => {}
            other => return Err(Error::Worker(format!("expected registered, got {other:?}"))),
        }
    }
    // Let the server settle after the registrations before the first reading.
    tokio::time::sleep(options.settle).await;
    let rss_before = options.server_pid.map(read_rss_kib).transpose()?;
    say(options, "logging connections in");
    let started = Instant::now();
    for worker in &mut workers {
        worker.tell("connect").await?;
    }
    let mut connected = 0;
    let mut failed = 0;
    let mut errors = BTreeMap::new();
    for worker in &mut workers {
        match worker.next_event(options.setup_timeout).await? {
            WorkerEvent::Ready {
                connected: ok,
                failed: bad,
                errors: kinds,
            } => {
                connected += ok;
                failed += bad;
                for (kind, count) in kinds {
                    *errors.entry(kind).or_insert(0) += count;
                }
            }
            other => return Err(Error::Worker(format!("expected ready, got {other:?}"))),
        }
    }
    let login_time = started.elapsed();
    say(options, &format!("{connected} connections held; settling"));
    tokio::time::sleep(options.settle).await;
    let rss_after = options.server_pid.map(read_rss_kib).transpose()?;
    let mut dropped = 0;
    for worker in &mut workers {
        worker.tell("stop").await?;
    }
    for worker in &mut workers {
        match worker.next_event(options.setup_timeout).await? {
            WorkerEvent::Done { dropped: count } => dropped += count,
            other => return Err(Error::Worker(format!("expected done, got {other:?}"))),
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), worker.child.wait()).await;
    }

    let mut report = Report::new("idle", &join_addrs(&options.servers));
    note_transport(&mut report, &options.servers);
    report.duration_secs = login_time.as_secs_f64();
    report.sent = connected + failed;
    report.acknowledged = connected;
    report.rejected = failed;
    report.connection_errors = dropped;
    report.errors = errors;
    report.connections = Some(connected);
    report.rss_before_kib = rss_before;
    report.rss_after_kib = rss_after;
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        if connected > 0 {
            report.rss_per_connection_bytes =
                Some((after as f64 - before as f64) * 1024.0 / connected as f64);
        }
    }
    report.param("connections", options.connections);
    report.param("workers", workers.len());
    report.param("sessions_per_user", per_user);
    report.param("sources", options.sources.len());
    Ok(report)
}

/// The worker side: reads its share (the first line of stdin), then runs
/// the protocol above over stdin and stdout.
///
/// # Errors
/// Only when stdin or stdout fail or the share does not parse; everything
/// else is reported to the parent as a `failed` event.
pub async fn run_idle_worker() -> Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let line = stdin
        .next_line()
        .await
        .map_err(|error| Error::io("read from parent", error))?
        .ok_or_else(|| Error::Worker("no share on stdin".into()))?;
    let share: IdleWorkerOptions = serde_json::from_str(&line)
        .map_err(|error| Error::Worker(format!("unreadable share: {error}")))?;
    let deadline = Instant::now() + Duration::from_secs(share.max_seconds);
    let result = tokio::time::timeout_at(deadline.into(), worker_body(&share, stdin)).await;
    let outcome = match result {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            what: "the parent".into(),
            seconds: share.max_seconds,
        }),
    };
    if let Err(error) = outcome {
        emit(&WorkerEvent::Failed {
            error: error.to_string(),
        })
        .await?;
    }
    Ok(())
}

async fn emit(event: &WorkerEvent) -> Result<()> {
    let mut line = serde_json::to_string(event)
        .map_err(|error| Error::Worker(format!("cannot encode an event: {error}")))?;
    line.push('\n');
    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(line.as_bytes())
        .await
        .map_err(|error| Error::io("write to parent", error))?;
    stdout
        .flush()
        .await
        .map_err(|error| Error::io("write to parent", error))
}

async fn worker_body(
    share: &IdleWorkerOptions,
    mut stdin: Lines<BufReader<tokio::io::Stdin>>,
) -> Result<()> {
    let mut servers = Vec::with_capacity(share.servers.len());
    for text in &share.servers {
        servers.push(Server::resolve(text, false, share.ca_file.as_deref()).await?);
    }
    let placement = Arc::new(Placement {
        servers,
        sources: share.sources.clone(),
    });
    let per_user = share.sessions_per_user.max(1);
    let first_user = share.first / per_user;
    let users = share.count.div_ceil(per_user);
    // Every password is checked here, before the parent's first memory
    // reading: argon2 allocates tens of MiB per hash, and the allocator may
    // keep them, which must not be counted as the connections' cost. The
    // held connections then log in with tokens.
    let tokens = match &share.tokens {
        Some(tokens) if tokens.len() >= users => tokens[..users].to_vec(),
        Some(_) => return Err(Error::Worker("too few tokens in the share".into())),
        None => make_accounts(&placement, &share.prefix, first_user..first_user + users).await?,
    };
    emit(&WorkerEvent::Registered { users }).await?;

    wait_for(&mut stdin, "connect").await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let dropped = Arc::new(AtomicU64::new(0));
    let mut holders = JoinSet::new();
    let mut connected = 0u64;
    let mut failed = 0u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let ping_interval = Duration::from_millis(share.ping_interval_ms.max(100));
    let logins = stream::iter(tokens.into_iter().enumerate())
        .map(|(offset, token)| {
            let placement = placement.clone();
            let first_conn = share.first + offset * per_user;
            let sessions = per_user.min(share.first + share.count - first_conn);
            async move { login_sessions(&placement, token, first_conn, sessions).await }
        })
        .buffer_unordered(setup::SETUP_CONCURRENCY);
    futures::pin_mut!(logins);
    while let Some(results) = logins.next().await {
        for result in results {
            match result {
                Ok(conn) => {
                    connected += 1;
                    holders.spawn(hold(conn, ping_interval, stop_rx.clone(), dropped.clone()));
                }
                Err(error) => {
                    failed += 1;
                    *errors.entry(error.kind()).or_insert(0) += 1;
                }
            }
        }
    }
    emit(&WorkerEvent::Ready {
        connected,
        failed,
        errors,
    })
    .await?;

    // "stop", or the parent going away, ends the hold.
    let _ = wait_for(&mut stdin, "stop").await;
    let _ = stop_tx.send(true);
    while holders.join_next().await.is_some() {}
    emit(&WorkerEvent::Done {
        dropped: dropped.load(Ordering::Relaxed),
    })
    .await
}

/// Registers the accounts `{prefix}i{user}` for `users` and logs each in
/// once with its password; returns their tokens in order.
async fn make_accounts(
    placement: &Arc<Placement>,
    prefix: &str,
    users: std::ops::Range<usize>,
) -> Result<Vec<String>> {
    stream::iter(users)
        .map(|user| {
            let name = format!("{prefix}i{user}");
            let placement = placement.clone();
            async move {
                let mut conn =
                    Conn::connect(placement.server(user), placement.source(user)).await?;
                let account = setup::register(&mut conn, &name).await?;
                Ok::<_, Error>(setup::login_password(&mut conn, &account).await?.token)
            }
        })
        .buffered(setup::SETUP_CONCURRENCY)
        .try_collect()
        .await
}

/// Registers `users` accounts and returns a token for each, for a later
/// [`run_idle`] with [`IdleOptions::tokens`] (typically against the same
/// database after restarting the server, so no password hashing has ever
/// happened in the process whose memory is measured).
///
/// # Errors
/// The first setup error.
pub async fn prepare_idle_accounts(
    servers: &[Server],
    sources: &[IpAddr],
    users: usize,
) -> Result<Vec<String>> {
    if servers.is_empty() {
        return Err(Error::Options("no server given".into()));
    }
    let placement = Arc::new(Placement {
        servers: servers.to_vec(),
        sources: sources.to_vec(),
    });
    make_accounts(&placement, &setup::run_prefix(), 0..users).await
}

async fn wait_for(stdin: &mut Lines<BufReader<tokio::io::Stdin>>, command: &str) -> Result<()> {
    loop {
        match stdin
            .next_line()
            .await
            .map_err(|error| Error::io("read from parent", error))?
        {
            Some(line) if line.trim() == command => return Ok(()),
            Some(_) => {}
            None => return Err(Error::Worker("the parent went away".into())),
        }
    }
}

/// Logs `sessions` connections in with an account's token (a server that
/// hands out a new token at each login gets the newest one each time).
async fn login_sessions(
    placement: &Placement,
    mut token: String,
    first_conn: usize,
    sessions: usize,
) -> Vec<Result<Conn>> {
    let mut results = Vec::with_capacity(sessions);
    for index in first_conn..first_conn + sessions {
        let attempt = async {
            let mut conn = Conn::connect(placement.server(index), placement.source(index)).await?;
            let response = setup::login_token(&mut conn, &token).await?;
            Ok::<_, Error>((conn, response.token))
        };
        match attempt.await {
            Ok((conn, new_token)) => {
                token = new_token;
                results.push(Ok(conn));
            }
            Err(error) => results.push(Err(error)),
        }
    }
    results
}

/// Holds one connection: reads and drops whatever arrives, pings now and
/// then, counts the connection as dropped if the server closes it.
async fn hold(
    mut conn: Conn,
    ping_interval: Duration,
    mut stop: watch::Receiver<bool>,
    dropped: Arc<AtomicU64>,
) {
    // Spread the pings so thousands of connections do not ping in lockstep.
    let offset = rand::thread_rng().gen_range(0..ping_interval.as_millis().max(1) as u64);
    let mut next_ping = tokio::time::Instant::now() + Duration::from_millis(offset);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep_until(next_ping) => {
                next_ping += ping_interval;
                if conn.queue_json(MessageType::Ping, &PingRequest {}).is_err()
                    || conn.flush().await.is_err()
                {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            readable = readable(&mut conn) => {
                let broken = readable.is_err()
                    || !matches!(conn.try_read(), Ok(ReadOutcome::Data(_) | ReadOutcome::WouldBlock));
                if broken {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                loop {
                    match conn.next_frame() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }
    }
}

async fn readable(conn: &mut Conn) -> std::io::Result<()> {
    std::future::poll_fn(|cx| conn.poll_read_ready(cx)).await
}
