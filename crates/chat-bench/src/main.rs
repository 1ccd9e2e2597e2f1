//! `chat-bench`: parses flags, runs one scenario, prints the result.
//!
//! Exit status: 0 for a clean run, 1 for a run that lost, duplicated or
//! reordered messages or met errors, 2 when the run could not happen.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use chat_bench::{
    load_average, loopback_sources, plot_latency, prepare_idle_accounts, run_group, run_idle,
    run_idle_worker, run_login, run_pairs, run_sustained, summarize, GroupOptions, IdleOptions,
    LoadOptions, LoginKind, LoginOptions, PairsOptions, PairsTarget, Relay, Report, Server,
    SustainedOptions,
};

/// Load generator for chatd, with a bare relay as the ceiling to compare against.
#[derive(Debug, Parser)]
#[command(name = "chat-bench", version, about)]
struct Cli {
    /// Print one JSON line of results on stdout (the table goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Draw the latency distribution into this SVG file (`sustained`: the
    /// delivered rate, and the server's memory and files, over time).
    #[arg(long, global = true, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Do not draw the progress bar.
    #[arg(long, global = true)]
    no_progress: bool,
    /// Worker threads of the bench's own runtime (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// A note recorded with the results (e.g. the server's configuration),
    /// so `summarize` keeps runs with different notes apart.
    #[arg(long, global = true)]
    label: Option<String>,
    #[command(subcommand)]
    command: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// The `pairs` scenario against the bare relay: this machine's ceiling.
    Baseline {
        #[command(flatten)]
        pairs: PairsArgs,
        /// Where the relay runs: `spawn` (a separate process, like chatd),
        /// `in-process`, or the address of a running `chat-bench relay`.
        #[arg(long, default_value = "spawn")]
        relay: String,
    },
    /// Run the bare relay as a server.
    Relay {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7100")]
        listen: SocketAddr,
        /// Exit after this many seconds.
        #[arg(long, default_value_t = 3600)]
        max_seconds: u64,
    },
    /// N pairs of friends, each end sending to the other.
    Pairs {
        #[command(flatten)]
        servers: ServerArgs,
        #[command(flatten)]
        pairs: PairsArgs,
        /// Also run the same load against a bare relay (in a separate
        /// process) first, and report chatd as a fraction of it.
        #[arg(long)]
        baseline: bool,
    },
    /// `pairs` for a long, bounded time (10 minutes unless --duration says
    /// otherwise), printing and recording per interval the delivered rate,
    /// the server's CPU time per message and RSS (with --server-pid) and
    /// the sizes of its database and WAL files (with --db). The report
    /// compares the first and the last minute; --json carries every
    /// interval; --plot draws them over time.
    #[command(mut_arg("duration", |arg| arg.default_value("600")))]
    Sustained {
        #[command(flatten)]
        servers: ServerArgs,
        #[command(flatten)]
        pairs: PairsArgs,
        /// Seconds per reported interval.
        #[arg(long, default_value_t = 5.0)]
        interval: f64,
        /// The server's SQLite database file, to record its size and its
        /// PATH-wal file's.
        #[arg(long, value_name = "PATH")]
        db: Option<PathBuf>,
    },
    /// One group: M members, S of them sending.
    Group {
        #[command(flatten)]
        servers: ServerArgs,
        /// Members, the owner included.
        #[arg(long, default_value_t = 100)]
        members: usize,
        /// Members that send.
        #[arg(long, default_value_t = 1)]
        senders: usize,
        /// Connections driven by one bench task.
        #[arg(long, default_value_t = 8)]
        conns_per_task: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// N logged-in idle connections, and the server memory each costs.
    Idle {
        #[command(flatten)]
        servers: ServerArgs,
        /// Connections to hold.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// The server's process id, to read its VmRSS.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Connections per worker process.
        #[arg(long, default_value_t = 5000)]
        per_worker: usize,
        /// Sessions per account (all logged in with the account's token).
        #[arg(long, default_value_t = 1)]
        sessions_per_user: usize,
        /// Loopback source addresses 127.0.0.1..N to spread over (0: one per
        /// 200 connections).
        #[arg(long, default_value_t = 0)]
        source_ips: usize,
        /// Seconds between pings on each connection.
        #[arg(long, default_value_t = 20.0)]
        ping_interval: f64,
        /// Seconds to settle before each memory reading.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
        /// Bound in seconds on each setup phase.
        #[arg(long, default_value_t = 1800.0)]
        setup_timeout: f64,
        /// Only register the accounts the run needs, write one token per
        /// line to this file, and exit (then restart chatd and run with
        /// --tokens, so no password hashing precedes the measurement).
        #[arg(long, value_name = "FILE", conflicts_with = "tokens")]
        save_tokens: Option<PathBuf>,
        /// Log in with the tokens in this file instead of registering accounts.
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
    },
    /// A storm of password logins or token resumes.
    Login {
        #[command(flatten)]
        servers: ServerArgs,
        /// Which credential to present.
        #[arg(long, value_enum, default_value_t = KindArg::Token)]
        kind: KindArg,
        /// Accounts to log in as.
        #[arg(long, default_value_t = 200)]
        users: usize,
        /// Logins in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds the storm lasts.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// At most this many logins.
        #[arg(long, default_value_t = 10_000_000)]
        count: u64,
        /// Loopback source addresses 127.0.0.1..N to spread over (0: only the default).
        #[arg(long, default_value_t = 0)]
        source_ips: usize,
    },
    /// Print a Markdown table of medians from files of `--json` lines.
    Summarize {
        /// Files with one JSON report per line (other lines are skipped).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Internal: one worker process of the `idle` scenario (its share
    /// comes as the first line of stdin).
    #[command(hide = true)]
    IdleWorker,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    Password,
    Token,
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// chatd address: `host:port` (plain TCP), `tls://host:port`, or
    /// `ws://host:port[/path]` and `wss://host:port[/path]` (WebSocket on
    /// chatd's HTTP listener; the path defaults to `/ws`). Repeat or
    /// separate with commas to spread clients over several nodes (or give
    /// the nginx address of a cluster).
    #[arg(
        long = "server",
        value_delimiter = ',',
        default_value = "127.0.0.1:7000"
    )]
    servers: Vec<String>,
    /// Use TLS where an address does not say so: `host:port` becomes
    /// `tls://host:port` and `ws://` becomes `wss://`.
    #[arg(long)]
    tls: bool,
    /// Trust only the CA certificates in this PEM file for TLS (a private
    /// CA, or chatd's self-signed certificate) instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

impl ServerArgs {
    /// Parses and resolves the addresses, with `--tls` and `--ca` applied.
    async fn resolve(&self) -> anyhow::Result<Vec<Server>> {
        let mut servers = Vec::with_capacity(self.servers.len());
        for text in &self.servers {
            servers.push(Server::resolve(text, self.tls, self.ca.as_deref()).await?);
        }
        // A CA with no TLS to use it on means the run would measure plain
        // TCP while the user meant TLS.
        if self.ca.is_some()
            && !servers
                .iter()
                .any(|server| server.address.scheme().uses_tls())
        {
            bail!("--ca is for TLS: give a tls:// or wss:// address, or add --tls");
        }
        Ok(servers)
    }
}

#[derive(Debug, Args)]
struct PairsArgs {
    /// Pairs of users.
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Messages in flight per stream (1 is a closed loop).
    #[arg(long, default_value_t = 1)]
    window: u32,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Fixed total rate in messages per second (default: as fast as the windows allow).
    #[arg(long)]
    rate: Option<f64>,
    /// At most this many messages per stream.
    #[arg(long, default_value_t = 100_000_000)]
    count: u64,
    /// Bytes per message body.
    #[arg(long, default_value_t = 64)]
    body_len: usize,
    /// Seconds to wait for messages in flight after sending stops.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Receivers acknowledge every N deliveries (0: never).
    #[arg(long, default_value_t = 0)]
    ack_every: u32,
    /// Loopback source addresses 127.0.0.1..N to spread connections over
    /// (0: one per 200 connections).
    #[arg(long, default_value_t = 0)]
    source_ips: usize,
    /// The server's process id: its CPU time (utime + stime of
    /// /proc/PID/stat, every thread) over the measured run is reported per
    /// delivered message; `sustained` also reads its RSS per interval.
    #[arg(long)]
    server_pid: Option<u32>,
}

fn seconds(value: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| anyhow!("--{name} must be a number of seconds"))
}

/// Loopback source addresses: as asked, or one per 200 connections so the
/// server's default per-address limit (256) is never what fails.
fn sources(asked: usize, connections: usize) -> Vec<std::net::IpAddr> {
    let count = if asked == 0 {
        connections.div_ceil(200)
    } else {
        asked
    };
    if count <= 1 {
        Vec::new()
    } else {
        loopback_sources(count)
    }
}

impl LoadArgs {
    fn options(&self, connections: usize, progress: bool) -> anyhow::Result<LoadOptions> {
        Ok(LoadOptions {
            window: self.window,
            duration: seconds(self.duration, "duration")?,
            rate: self.rate,
            count: self.count,
            body_len: self.body_len,
            drain_timeout: seconds(self.drain_timeout, "drain-timeout")?,
            ack_every: self.ack_every,
            sources: sources(self.source_ips, connections),
            progress,
            server_pid: self.server_pid,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = cli.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the command; `Ok(false)` for a run that is not clean.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let progress = !cli.no_progress;
    let label = cli.label.as_deref();
    match cli.command {
        Action::Relay {
            listen,
            max_seconds,
        } => {
            let relay = Relay::start(listen).await?;
            // The first line tells a parent process where to connect.
            println!("listening on {}", relay.local_addr());
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = tokio::time::sleep(Duration::from_secs(max_seconds)) => {}
            }
            relay.shutdown().await;
            Ok(true)
        }
        Action::Summarize { files } => {
            let mut text = String::new();
            for file in files {
                text.push_str(
                    &std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?,
                );
                text.push('\n');
            }
            print!("{}", summarize(&text)?);
            Ok(true)
        }
        Action::IdleWorker => {
            run_idle_worker().await?;
            Ok(true)
        }
        Action::Baseline { pairs, relay } => {
            let load = pairs.load.options(2 * pairs.pairs, progress)?;
            let report = run_baseline(&relay, pairs.pairs, load).await?;
            output(cli.json, cli.plot.as_deref(), label, &report, None)
        }
        Action::Pairs {
            servers,
            pairs,
            baseline,
        } => {
            let load = pairs.load.options(2 * pairs.pairs, progress)?;
            let baseline_report = if baseline {
                // The relay runs in this process: the server's CPU is not its.
                let relay_load = LoadOptions {
                    server_pid: None,
                    ..load.clone()
                };
                let report = run_baseline("spawn", pairs.pairs, relay_load).await?;
                if !cli.json {
                    println!("{}", report.to_table());
                }
                Some(report)
            } else {
                None
            };
            let mut report = run_pairs(&PairsOptions {
                target: PairsTarget::Chatd(servers.resolve().await?),
                pairs: pairs.pairs,
                load,
            })
            .await?;
            if let Some(baseline) = &baseline_report {
                report.set_baseline(baseline);
            }
            output(
                cli.json,
                cli.plot.as_deref(),
                label,
                &report,
                baseline_report.as_ref(),
            )
        }
        Action::Sustained {
            servers,
            pairs,
            interval,
            db,
        } => {
            let load = pairs.load.options(2 * pairs.pairs, progress)?;
            let server_pid = load.server_pid;
            let report = run_sustained(&SustainedOptions {
                pairs: PairsOptions {
                    target: PairsTarget::Chatd(servers.resolve().await?),
                    pairs: pairs.pairs,
                    load,
                },
                interval: seconds(interval, "interval")?,
                server_pid,
                database: db,
            })
            .await?;
            output(cli.json, cli.plot.as_deref(), label, &report, None)
        }
        Action::Group {
            servers,
            members,
            senders,
            conns_per_task,
            load,
        } => {
            let load = load.options(members, progress)?;
            let report = run_group(&GroupOptions {
                servers: servers.resolve().await?,
                members,
                senders,
                conns_per_task,
                load,
            })
            .await?;
            output(cli.json, cli.plot.as_deref(), label, &report, None)
        }
        Action::Idle {
            servers,
            connections,
            server_pid,
            per_worker,
            sessions_per_user,
            source_ips,
            ping_interval,
            settle,
            setup_timeout,
            save_tokens,
            tokens,
        } => {
            let sources = sources(source_ips, connections);
            let servers = servers.resolve().await?;
            if let Some(path) = save_tokens {
                let users = connections.div_ceil(sessions_per_user.max(1));
                let made = prepare_idle_accounts(&servers, &sources, users).await?;
                std::fs::write(&path, made.join("\n") + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!(
                    "{} account tokens written to {}",
                    made.len(),
                    path.display()
                );
                return Ok(true);
            }
            let tokens = match tokens {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?
                        .lines()
                        .filter(|line| !line.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ),
                None => None,
            };
            let report = run_idle(&IdleOptions {
                servers,
                connections,
                server_pid,
                per_worker,
                sessions_per_user,
                sources,
                ping_interval: seconds(ping_interval, "ping-interval")?,
                settle: seconds(settle, "settle")?,
                setup_timeout: seconds(setup_timeout, "setup-timeout")?,
                tokens,
                worker_program: std::env::current_exe().context("finding this program")?,
                progress,
            })
            .await?;
            output(cli.json, None, label, &report, None)
        }
        Action::Login {
            servers,
            kind,
            users,
            concurrency,
            duration,
            count,
            source_ips,
        } => {
            let report = run_login(&LoginOptions {
                servers: servers.resolve().await?,
                users,
                concurrency,
                duration: seconds(duration, "duration")?,
                count,
                kind: match kind {
                    KindArg::Password => LoginKind::Password,
                    KindArg::Token => LoginKind::Token,
                },
                sources: if source_ips > 1 {
                    loopback_sources(source_ips)
                } else {
                    Vec::new()
                },
                progress,
            })
            .await?;
            output(cli.json, cli.plot.as_deref(), label, &report, None)
        }
    }
}

/// Runs `pairs` against a relay that is spawned, in process, or at an address.
async fn run_baseline(relay: &str, pairs: usize, load: LoadOptions) -> anyhow::Result<Report> {
    let mut in_process = None;
    let mut child = None;
    let addr = match relay {
        "in-process" => {
            let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
            let addr = relay.local_addr();
            in_process = Some(relay);
            addr
        }
        "spawn" => {
            let (process, addr) = spawn_relay().await?;
            child = Some(process);
            addr
        }
        addr => addr
            .parse()
            .with_context(|| format!("--relay {addr:?} is not spawn, in-process or an address"))?,
    };
    let report = run_pairs(&PairsOptions {
        target: PairsTarget::Relay(addr),
        pairs,
        load,
    })
    .await;
    if let Some(relay) = in_process {
        relay.shutdown().await;
    }
    if let Some(mut child) = child {
        let _ = child.kill().await;
    }
    Ok(report?)
}

/// Starts `chat-bench relay` on a free port as a separate process, so the
/// relay, like chatd, does not share the bench's runtime.
async fn spawn_relay() -> anyhow::Result<(Child, SocketAddr)> {
    let program = std::env::current_exe().context("finding this program")?;
    let mut child = Command::new(program)
        .args(["relay", "--listen", "127.0.0.1:0", "--max-seconds", "90000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the relay process")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("the relay has no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("waiting for the relay to listen")??
        .ok_or_else(|| anyhow!("the relay exited before listening"))?;
    let Some(addr) = line.strip_prefix("listening on ") else {
        bail!("the relay said {line:?}");
    };
    Ok((child, addr.parse().context("the relay's address")?))
}

/// Prints the report (table, or JSON line with the table on stderr), draws
/// the plot if asked, and says whether the run was clean.
fn output(
    json: bool,
    plot: Option<&std::path::Path>,
    label: Option<&str>,
    report: &Report,
    baseline: Option<&Report>,
) -> anyhow::Result<bool> {
    let mut report = report.clone();
    if let Some(label) = label {
        report.param("label", label);
    }
    if let Some(load) = load_average() {
        report.param("loadavg_1m", load);
    }
    let report = &report;
    if json {
        eprint!("{}", report.to_table());
        println!("{}", report.to_json_line());
    } else {
        print!("{}", report.to_table());
    }
    if let (Some(path), Some(sustained)) = (plot, &report.sustained) {
        let title = format!("sustained load ({})", report.target);
        sustained.plot(path, &title)?;
    } else if let Some(path) = plot {
        let title = format!("{} latency ({})", report.scenario, report.target);
        let mut series = vec![
            ("delivery", &report.latency),
            ("acknowledgement", &report.ack_latency),
        ];
        if let Some(baseline) = baseline {
            series.push(("relay delivery", &baseline.latency));
        }
        plot_latency(path, &title, &series)?;
    }
    let clean = report.is_clean() && baseline.is_none_or(Report::is_clean);
    Ok(clean)
}
