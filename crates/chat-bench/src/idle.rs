//! The `idle` scenario: many logged-in connections that only ping, and what
//! they cost the server in resident memory.
//!
//! One process may hold at most 20,000 descriptors here, so the connections
//! are held by worker processes (this same binary, `idle-worker`), at most
//! `per_worker` each, and spread over loopback source addresses so neither
//! the server's per-address limit nor one address's ephemeral ports bind.
//! The parent and its workers talk in JSON lines: the worker registers its
//! accounts and says `registered`; the parent reads the server's RSS and
//! writes `connect`; the worker logs every connection in and says `ready`;
//! the parent reads the RSS again and writes `stop`; the worker says `done`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
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

use crate::conn::{Conn, ReadOutcome};
use crate::error::{Error, Result};
use crate::load::join_addrs;
use crate::report::Report;
use crate::setup::{self, Account, Placement};

/// The `idle` scenario.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    /// chatd nodes; connections go round-robin.
    pub servers: Vec<SocketAddr>,
    /// Connections to hold.
    pub connections: usize,
    /// The server process whose VmRSS is read; without it no memory figure.
    pub server_pid: Option<u32>,
    /// Connections per worker process (each process may open 20,000 descriptors).
    pub per_worker: usize,
    /// Sessions logged in per account (the first by password, the rest by
    /// token); more than one saves argon2 work in setup.
    pub sessions_per_user: usize,
    /// Local addresses to spread connections over.
    pub sources: Vec<IpAddr>,
    /// How often each connection pings (below the server's idle timeout).
    pub ping_interval: Duration,
    /// How long to wait after the last login before reading the RSS.
    pub settle: Duration,
    /// Bound on each setup phase (registering, logging in).
    pub setup_timeout: Duration,
    /// The program to run as a worker (this binary).
    pub worker_program: PathBuf,
    /// Whether to tell progress on stderr.
    pub progress: bool,
}

/// One worker's share, as passed on its command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleWorkerOptions {
    /// chatd nodes.
    pub servers: Vec<SocketAddr>,
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
    let prefix = setup::run_prefix();
    // Workers exit on their own at the latest this long after they start.
    let max_seconds = 3 * options.setup_timeout.as_secs() + options.settle.as_secs() + 600;
    let mut workers = Vec::new();
    let mut first = 0;
    while first < options.connections {
        let count = options.per_worker.min(options.connections - first);
        let share = IdleWorkerOptions {
            servers: options.servers.clone(),
            prefix: prefix.clone(),
            first,
            count,
            sessions_per_user: per_user,
            sources: options.sources.clone(),
            ping_interval_ms: u64::try_from(options.ping_interval.as_millis()).unwrap_or(u64::MAX),
            max_seconds,
        };
        let spec = serde_json::to_string(&share)
            .map_err(|error| Error::Worker(format!("cannot encode a worker's share: {error}")))?;
        let mut child = Command::new(&options.worker_program)
            .arg("idle-worker")
            .arg(spec)
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
        workers.push(Worker {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        });
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

/// The worker side: runs the protocol above over stdin and stdout.
///
/// # Errors
/// Only when stdout cannot be written; everything else is reported to the
/// parent as a `failed` event.
pub async fn run_idle_worker(share: IdleWorkerOptions) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(share.max_seconds);
    let result = tokio::time::timeout_at(deadline.into(), worker_body(&share)).await;
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

async fn worker_body(share: &IdleWorkerOptions) -> Result<()> {
    let placement = Arc::new(Placement {
        servers: share.servers.clone(),
        sources: share.sources.clone(),
    });
    let per_user = share.sessions_per_user.max(1);
    let first_user = share.first / per_user;
    let users = share.count.div_ceil(per_user);
    let accounts: Vec<Account> = stream::iter(first_user..first_user + users)
        .map(|user| {
            let name = format!("{}i{user}", share.prefix);
            let placement = placement.clone();
            async move {
                let mut conn =
                    Conn::connect(placement.server(user), placement.source(user)).await?;
                setup::register(&mut conn, &name).await
            }
        })
        .buffered(setup::SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    emit(&WorkerEvent::Registered { users }).await?;

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    wait_for(&mut stdin, "connect").await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let dropped = Arc::new(AtomicU64::new(0));
    let mut holders = JoinSet::new();
    let mut connected = 0u64;
    let mut failed = 0u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let ping_interval = Duration::from_millis(share.ping_interval_ms.max(100));
    let logins = stream::iter(accounts.into_iter().enumerate())
        .map(|(offset, account)| {
            let placement = placement.clone();
            let first_conn = share.first + offset * per_user;
            let sessions = per_user.min(share.first + share.count - first_conn);
            async move { login_sessions(&placement, &account, first_conn, sessions).await }
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

/// Logs `sessions` connections in as `account`: the first with the
/// password, the rest with its token.
async fn login_sessions(
    placement: &Placement,
    account: &Account,
    first_conn: usize,
    sessions: usize,
) -> Vec<Result<Conn>> {
    let mut results = Vec::with_capacity(sessions);
    let mut token: Option<String> = None;
    for index in first_conn..first_conn + sessions {
        let attempt = async {
            let mut conn = Conn::connect(placement.server(index), placement.source(index)).await?;
            let response = match &token {
                None => setup::login_password(&mut conn, account).await?,
                Some(token) => setup::login_token(&mut conn, token).await?,
            };
            Ok::<_, Error>((conn, response.token))
        };
        match attempt.await {
            Ok((conn, new_token)) => {
                token = Some(new_token);
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
            readable = readable(&conn) => {
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

async fn readable(conn: &Conn) -> std::io::Result<()> {
    std::future::poll_fn(|cx| conn.poll_read_ready(cx)).await
}
