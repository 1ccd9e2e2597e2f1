//! The `login` scenario: a storm of password logins, or of token resumes.
//! Every attempt is a new connection that logs in and hangs up, as a
//! reconnecting client does.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::task::JoinSet;

use crate::conn::{Conn, Server};
use crate::error::{Error, Result};
use crate::load::{join_addrs, note_transport};
use crate::progress::Progress;
use crate::report::Report;
use crate::setup::{self, Account, Placement};
use crate::stats::{record, Live, Stats};

/// How long one login attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which credential the storm presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginKind {
    /// Name and password: one argon2id verification per login.
    Password,
    /// A session token from an earlier login: the cheap reconnect path.
    Token,
}

/// The `login` scenario.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// chatd nodes; attempts go round-robin.
    pub servers: Vec<Server>,
    /// Accounts registered for the storm (at least `concurrency`).
    pub users: usize,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// How long the storm lasts.
    pub duration: Duration,
    /// At most this many attempts in all.
    pub count: u64,
    /// Password or token.
    pub kind: LoginKind,
    /// Local addresses to spread connections over (empty: the kernel's choice).
    pub sources: Vec<IpAddr>,
    /// Whether to draw a progress bar on stderr.
    pub progress: bool,
}

/// Runs the storm.
///
/// # Errors
/// Invalid options or a failed setup.
pub async fn run_login(options: &LoginOptions) -> Result<Report> {
    if options.servers.is_empty() {
        return Err(Error::Options("no server given".into()));
    }
    if options.concurrency == 0 || options.users < options.concurrency {
        return Err(Error::Options(
            "concurrency must be at least 1 and at most the number of users".into(),
        ));
    }
    if options.duration.is_zero() || options.duration > Duration::from_secs(24 * 3600) {
        return Err(Error::Options(
            "the duration must be positive and at most a day".into(),
        ));
    }
    let placement = Arc::new(Placement {
        servers: options.servers.clone(),
        sources: options.sources.clone(),
    });
    let prefix = setup::run_prefix();
    let accounts: Vec<Account> = stream::iter(0..options.users)
        .map(|index| {
            let name = format!("{prefix}l{index}");
            let placement = placement.clone();
            async move {
                let mut conn =
                    Conn::connect(placement.server(index), placement.source(index)).await?;
                setup::register(&mut conn, &name).await
            }
        })
        .buffered(setup::SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    // A token per account, from one password login each.
    let tokens: Vec<String> = match options.kind {
        LoginKind::Password => Vec::new(),
        LoginKind::Token => {
            stream::iter(accounts.iter().enumerate())
                .map(|(index, account)| {
                    let placement = placement.clone();
                    async move {
                        let mut conn =
                            Conn::connect(placement.server(index), placement.source(index)).await?;
                        Ok::<_, Error>(setup::login_password(&mut conn, account).await?.token)
                    }
                })
                .buffered(setup::SETUP_CONCURRENCY)
                .try_collect()
                .await?
        }
    };

    let scenario = match options.kind {
        LoginKind::Password => "login-password",
        LoginKind::Token => "login-token",
    };
    let live = Arc::new(Live::default());
    let progress = Progress::start(scenario, options.duration, live.clone(), options.progress);
    let attempts = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + options.duration;
    let mut tasks = JoinSet::new();
    for worker in 0..options.concurrency {
        // Each worker owns the accounts worker, worker + C, ...: an account
        // is never in two logins at once, so a server that rotates tokens
        // on resume is measured correctly.
        let mine: Vec<(usize, Account, Option<String>)> = (worker..options.users)
            .step_by(options.concurrency)
            .map(|index| (index, accounts[index].clone(), tokens.get(index).cloned()))
            .collect();
        tasks.spawn(storm_worker(
            mine,
            placement.clone(),
            options.kind,
            attempts.clone(),
            options.count,
            deadline,
            live.clone(),
        ));
    }
    let mut stats = Stats::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(worker_stats) => stats.merge(&worker_stats),
            Err(error) => stats.error(format!("task failed: {error}")),
        }
    }
    let elapsed = start.elapsed();
    progress.finish();

    let mut report = Report::new(scenario, &join_addrs(&options.servers));
    note_transport(&mut report, &options.servers);
    report.fill(stats, elapsed.as_secs_f64());
    report.param("users", options.users);
    report.param("concurrency", options.concurrency);
    report.param("duration_secs", options.duration.as_secs_f64());
    Ok(report)
}

async fn storm_worker(
    mut accounts: Vec<(usize, Account, Option<String>)>,
    placement: Arc<Placement>,
    kind: LoginKind,
    attempts: Arc<AtomicU64>,
    count: u64,
    deadline: Instant,
    live: Arc<Live>,
) -> Stats {
    let mut stats = Stats::new();
    let mut turn = 0usize;
    while Instant::now() < deadline && attempts.fetch_add(1, Ordering::Relaxed) < count {
        let mine = accounts.len();
        let (index, account, token) = &mut accounts[turn % mine];
        turn += 1;
        stats.sent += 1;
        Live::add(&live.sent, 1);
        let started = Instant::now();
        let attempt = async {
            let mut conn =
                Conn::connect(placement.server(*index), placement.source(*index)).await?;
            match (kind, token.as_deref()) {
                (LoginKind::Token, Some(current)) => setup::login_token(&mut conn, current).await,
                _ => setup::login_password(&mut conn, account).await,
            }
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
            Ok(Ok(response)) => {
                record(&mut stats.latency, started.elapsed().as_micros() as u64);
                stats.acknowledged += 1;
                stats.delivered += 1;
                Live::add(&live.delivered, 1);
                if kind == LoginKind::Token {
                    *token = Some(response.token);
                }
            }
            Ok(Err(error @ Error::Refused { .. })) => {
                stats.rejected += 1;
                stats.error(error.kind());
                Live::add(&live.failures, 1);
            }
            Ok(Err(error)) => {
                stats.connection_errors += 1;
                stats.error(error.kind());
                Live::add(&live.failures, 1);
            }
            Err(_) => {
                stats.connection_errors += 1;
                stats.error("login: timed out");
                Live::add(&live.failures, 1);
            }
        }
    }
    stats
}
