//! `chatd`: parses flags, sets up logging, and runs the server library.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context as _;
use chat_server::admin;
use chat_server::config::{LogFormat, Registration};
use chat_server::Config;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// The version and the commit it was built from (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("CHATD_GIT_COMMIT"),
    ")"
);

/// The chat server. With no flags it serves the chat protocol on
/// 127.0.0.1:7000, WebSocket, health checks and metrics on
/// http://127.0.0.1:7080/, and keeps its data in ./chat.db (SQLite). Every flag can also be given as an
/// environment variable (shown in brackets) or in a TOML file (--config).
#[derive(Debug, Parser)]
#[command(name = "chatd", version = VERSION, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML file with any of the settings below (flags and environment win).
    #[arg(long, env = "CHATD_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Print an example configuration file (every setting, its default and what it does) and exit.
    #[arg(long)]
    print_example_config: bool,
    /// Address to listen on [default: 127.0.0.1:7000].
    #[arg(long, env = "CHATD_LISTEN")]
    listen: Option<String>,
    /// Store URL: sqlite://PATH (options: ?synchronous=full to sync every commit to disk, &wal_limit=SIZE to bound the PATH-wal file, default 64MiB) or mysql://USER:PASS@HOST:PORT/DB (?timeout=SECONDS bounds every database call, default 5) [default: sqlite://chat.db].
    #[arg(long, env = "CHATD_STORE", global = true, hide_env_values = true)]
    store: Option<String>,
    /// Redis URL for cluster mode (presence and routing across nodes); without it, routing is in-process.
    #[arg(long, env = "CHATD_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// This node's unique name in a cluster [default: random].
    #[arg(long, env = "CHATD_NODE_ID")]
    node_id: Option<String>,
    /// Prefix of every Redis key and channel, so clusters can share a Redis [default: chat:].
    #[arg(long, env = "CHATD_REDIS_PREFIX")]
    redis_prefix: Option<String>,
    /// Largest frame payload in bytes [default: 65536].
    #[arg(long, env = "CHATD_MAX_FRAME_LEN")]
    max_frame_len: Option<usize>,
    /// Largest message body in bytes [default: 4096].
    #[arg(long, env = "CHATD_MAX_MESSAGE_LEN")]
    max_message_len: Option<usize>,
    /// Frames queued for one client before it is dropped as a slow consumer [default: 1024].
    #[arg(long, env = "CHATD_OUTBOX_LEN")]
    outbox_len: Option<usize>,
    /// Seconds of silence before a connection is closed [default: 60].
    #[arg(long, env = "CHATD_IDLE_TIMEOUT_SECS")]
    idle_timeout_secs: Option<u64>,
    /// Seconds one write to a client may take [default: 10].
    #[arg(long, env = "CHATD_WRITE_TIMEOUT_SECS")]
    write_timeout_secs: Option<u64>,
    /// Requests per second per connection, 0 for unlimited [default: 50].
    #[arg(long, env = "CHATD_RATE_LIMIT_PER_SEC")]
    rate_limit_per_sec: Option<u32>,
    /// Request burst per connection [default: 100].
    #[arg(long, env = "CHATD_RATE_LIMIT_BURST")]
    rate_limit_burst: Option<u32>,
    /// Connections per client IP address, 0 for unlimited [default: 256].
    #[arg(long, env = "CHATD_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<u32>,
    /// Connections in all, 0 for unlimited [default: 100000].
    #[arg(long, env = "CHATD_MAX_CONNECTIONS")]
    max_connections: Option<u32>,
    /// Failed logins per account per minute [default: 5].
    #[arg(long, env = "CHATD_LOGIN_FAILURES_PER_ACCOUNT")]
    login_failures_per_account: Option<u32>,
    /// Failed logins per IP address per minute [default: 20].
    #[arg(long, env = "CHATD_LOGIN_FAILURES_PER_IP")]
    login_failures_per_ip: Option<u32>,
    /// Accounts one IP address (IPv6: one /64) may register per hour, 0 for unlimited [default: 10].
    #[arg(long, env = "CHATD_REGISTRATIONS_PER_IP_PER_HOUR")]
    registrations_per_ip_per_hour: Option<u32>,
    /// Accounts this node registers per minute in all, 0 for unlimited [default: 60].
    #[arg(long, env = "CHATD_REGISTRATIONS_PER_MINUTE")]
    registrations_per_minute: Option<u32>,
    /// Friend requests a user may send per hour, 0 for unlimited [default: 100].
    #[arg(long, env = "CHATD_FRIEND_REQUESTS_PER_HOUR")]
    friend_requests_per_hour: Option<u32>,
    /// Groups a user may create per hour, 0 for unlimited [default: 20].
    #[arg(long, env = "CHATD_GROUP_CREATIONS_PER_HOUR")]
    group_creations_per_hour: Option<u32>,
    /// Groups a user may join per hour, 0 for unlimited [default: 100].
    #[arg(long, env = "CHATD_GROUP_JOINS_PER_HOUR")]
    group_joins_per_hour: Option<u32>,
    /// Memory cost of new argon2id password hashes in KiB; older hashes are replaced at login [default: 19456].
    #[arg(long, env = "CHATD_PASSWORD_HASH_MEMORY_KIB")]
    password_hash_memory_kib: Option<u32>,
    /// Passes of new argon2id password hashes [default: 2].
    #[arg(long, env = "CHATD_PASSWORD_HASH_ITERATIONS")]
    password_hash_iterations: Option<u32>,
    /// Lanes of new argon2id password hashes [default: 1].
    #[arg(long, env = "CHATD_PASSWORD_HASH_PARALLELISM")]
    password_hash_parallelism: Option<u32>,
    /// Seconds between purges of expired session tokens [default: 3600].
    #[arg(long, env = "CHATD_TOKEN_PURGE_INTERVAL_SECS")]
    token_purge_interval_secs: Option<u64>,
    /// Session token lifetime in seconds [default: 2592000, 30 days].
    #[arg(long, env = "CHATD_TOKEN_TTL_SECS")]
    token_ttl_secs: Option<u64>,
    /// Seconds after sending during which a sender may recall a message
    /// (0: never) [default: 120].
    #[arg(long, env = "CHATD_RECALL_WINDOW_SECS")]
    recall_window_secs: Option<u64>,
    /// Seconds to let sessions drain at shutdown [default: 10].
    #[arg(long, env = "CHATD_SHUTDOWN_GRACE_SECS")]
    shutdown_grace_secs: Option<u64>,
    /// Seconds between cluster heartbeats [default: 2].
    #[arg(long, env = "CHATD_HEARTBEAT_SECS")]
    heartbeat_secs: Option<u64>,
    /// Expect a PROXY protocol v1 header (nginx `proxy_protocol on;`) on every connection and use the client address it names for per-address limits. Only behind a trusted proxy.
    #[arg(long, env = "CHATD_PROXY_PROTOCOL", global = true)]
    proxy_protocol: bool,
    /// Users per second a busy cluster node asks to reconnect to a less busy one (behind a load balancer, with --proxy-protocol); 0 turns it off [default: 10].
    #[arg(long, env = "CHATD_REBALANCE_PER_SEC")]
    rebalance_per_sec: Option<u32>,
    /// Log filter, e.g. info or chat_server=debug (RUST_LOG wins) [default: info].
    #[arg(long, env = "CHATD_LOG")]
    log: Option<String>,
    /// Log format: text or json (one JSON object per line) [default: text].
    #[arg(long, env = "CHATD_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// HTTP listener for WebSocket (/ws), /healthz, /readyz, /metrics and the web page; empty turns it off [default: 127.0.0.1:7080].
    #[arg(long, env = "CHATD_HTTP_LISTEN", global = true)]
    http_listen: Option<String>,
    /// PEM certificate chain: with --tls-key, TLS on both listeners (reloaded on SIGHUP).
    #[arg(long, env = "CHATD_TLS_CERT", global = true)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "CHATD_TLS_KEY", global = true)]
    tls_key: Option<PathBuf>,
    /// Seconds a client may take to complete the TLS handshake [default: 10].
    #[arg(long, env = "CHATD_TLS_HANDSHAKE_TIMEOUT_SECS")]
    tls_handshake_timeout_secs: Option<u64>,
    /// Origins whose web pages may open a WebSocket, comma-separated (the server's own is always allowed; * allows any).
    #[arg(long, env = "CHATD_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Option<Vec<String>>,
    /// Serve the web client from this directory (laid out like web/ in the source) instead of the files built in, to try changes without rebuilding.
    #[arg(long, env = "CHATD_WEB_ROOT")]
    web_root: Option<PathBuf>,
    /// Who may create accounts: open (anyone, with register) or closed (only `chatd admin users create`) [default: open].
    #[arg(long, env = "CHATD_REGISTRATION")]
    registration: Option<Registration>,
    /// Bearer token of the admin endpoint (/admin/... on the HTTP listener), at least 16 characters; unset, the endpoint is off. Prefer the config file or environment: flags show in `ps`.
    #[arg(long, env = "CHATD_ADMIN_TOKEN", global = true, hide_env_values = true)]
    admin_token: Option<String>,
    /// Accept admin requests from any address, not only this machine's loopback.
    #[arg(long, env = "CHATD_ADMIN_ALLOW_REMOTE")]
    admin_allow_remote: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Administer accounts, groups and sessions, print statistics, back up the database or move it to MySQL.
    ///
    /// Works on the store of the configuration (--config, --store) and asks
    /// running nodes (--http, default the configuration's http_listen) about
    /// their sessions through their admin endpoint (admin_token).
    Admin(AdminArgs),
}

#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// Print JSON (one document) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// A node's HTTP listener (host:port) to ask about sessions; repeat it for every node of a cluster [default: the configuration's http_listen].
    #[arg(long = "http", value_name = "ADDRESS", global = true)]
    http: Vec<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Groups.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Sessions of running nodes.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Count users, groups, conversations and messages, and the database's size.
    Stats,
    /// Write a consistent copy of the live SQLite database to FILE (which must not exist).
    Backup {
        /// Where to write the copy.
        file: PathBuf,
    },
    /// Copy this SQLite store, with chatd stopped, into an empty MySQL or MariaDB database (migrated first), keeping every id, token and position.
    CopyStore {
        /// The target database, mysql://USER:PASSWORD@HOST:PORT/DATABASE. Prefer the environment: flags show in `ps`.
        #[arg(
            long,
            value_name = "URL",
            env = "CHATD_COPY_TO",
            hide_env_values = true
        )]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// List accounts.
    List {
        /// Only users with a session on the nodes asked (--http).
        #[arg(long)]
        online: bool,
        /// Only names matching PATTERN: * and ? as in a shell, else a part of the name; ASCII letters match either case.
        #[arg(long, value_name = "PATTERN")]
        name: Option<String>,
    },
    /// Describe an account: created, last login, status, sessions, friends, groups.
    Show {
        /// A name, or an id (all digits).
        user: String,
    },
    /// Create an account (also when registration is closed); the password is read like reset-password's.
    Create {
        /// The account's name.
        name: String,
    },
    /// Set a new password (typed twice, hidden, at a terminal; else one line from standard input), revoke the account's tokens and end its sessions.
    ResetPassword {
        /// A name or id.
        user: String,
    },
    /// Disable an account: it cannot log in, its tokens are revoked and its sessions end on every node.
    Disable {
        /// A name or id.
        user: String,
        /// A note for operators (shown by `users show`, never to the user).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Let a disabled account log in again.
    Enable {
        /// A name or id.
        user: String,
    },
    /// Delete an account for good: its name, password, tokens, friendships and memberships go; its messages stay with their bodies erased; its groups pass to another member.
    Delete {
        /// A name or id.
        user: String,
        /// Confirm: it cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GroupsCommand {
    /// List every group.
    List,
    /// Describe a group and its members.
    Show {
        /// The group's id.
        id: u64,
    },
    /// Dissolve a group.
    Dissolve {
        /// The group's id.
        id: u64,
        /// Confirm: it cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List the sessions of every node asked (--http, repeated for a cluster).
    List,
    /// End every session of a user, on every node of the cluster.
    Kick {
        /// A name or id.
        user: String,
    },
}

impl AdminCommand {
    fn into_command(self) -> admin::Command {
        use admin::Command as C;
        match self {
            AdminCommand::Users(users) => match users {
                UsersCommand::List { online, name } => C::UsersList { online, name },
                UsersCommand::Show { user } => C::UsersShow { user },
                UsersCommand::Create { name } => C::UsersCreate { name },
                UsersCommand::ResetPassword { user } => C::UsersResetPassword { user },
                UsersCommand::Disable { user, reason } => C::UsersDisable { user, reason },
                UsersCommand::Enable { user } => C::UsersEnable { user },
                UsersCommand::Delete { user, yes } => C::UsersDelete { user, yes },
            },
            AdminCommand::Groups(groups) => match groups {
                GroupsCommand::List => C::GroupsList,
                GroupsCommand::Show { id } => C::GroupsShow { id },
                GroupsCommand::Dissolve { id, yes } => C::GroupsDissolve { id, yes },
            },
            AdminCommand::Sessions(sessions) => match sessions {
                SessionsCommand::List => C::SessionsList,
                SessionsCommand::Kick { user } => C::SessionsKick { user },
            },
            AdminCommand::Stats => C::Stats,
            AdminCommand::Backup { file } => C::Backup { file },
            AdminCommand::CopyStore { to } => C::CopyStore { to },
        }
    }
}

impl Args {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_toml_file(path)?,
            None => Config::default(),
        };
        macro_rules! apply {
            ($($field:ident),*) => {
                $( if let Some(value) = self.$field { config.$field = value; } )*
            };
        }
        apply!(
            listen,
            store,
            redis_prefix,
            max_frame_len,
            max_message_len,
            outbox_len,
            idle_timeout_secs,
            write_timeout_secs,
            rate_limit_per_sec,
            rate_limit_burst,
            max_connections_per_ip,
            max_connections,
            login_failures_per_account,
            login_failures_per_ip,
            registrations_per_ip_per_hour,
            registrations_per_minute,
            friend_requests_per_hour,
            group_creations_per_hour,
            group_joins_per_hour,
            password_hash_memory_kib,
            password_hash_iterations,
            password_hash_parallelism,
            token_ttl_secs,
            recall_window_secs,
            token_purge_interval_secs,
            shutdown_grace_secs,
            heartbeat_secs,
            rebalance_per_sec,
            log,
            log_format,
            http_listen,
            tls_handshake_timeout_secs,
            allowed_origins,
            registration
        );
        if self.tls_cert.is_some() {
            config.tls_cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            config.tls_key = self.tls_key;
        }
        if self.web_root.is_some() {
            config.web_root = self.web_root;
        }
        if self.redis.is_some() {
            config.redis = self.redis;
        }
        if self.node_id.is_some() {
            config.node_id = self.node_id;
        }
        if self.proxy_protocol {
            config.proxy_protocol = true;
        }
        if self.admin_token.is_some() {
            config.admin_token = self.admin_token;
        }
        if self.admin_allow_remote {
            config.admin_allow_remote = true;
        }
        config.validate()?;
        Ok(config)
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.print_example_config {
        print!("{}", Config::example_toml());
        return Ok(());
    }
    let command = args.command.take();
    let print_config = args.print_config;
    let config = args.into_config()?;
    if print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    if let Some(Command::Admin(admin)) = command {
        return run_admin(&config, admin);
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .context("invalid log filter")?;
    // Colour codes only for a person at a terminal, never into a file.
    let ansi = std::io::stderr().is_terminal();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        // A log line that cannot be written (a full disk under stderr) is
        // lost; reporting it would `eprintln!` to the same stderr, which
        // panics, and take down the task that was logging.
        .log_internal_errors(false);
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(config))
}

/// Runs one `chatd admin` command: its report on standard output (text or
/// JSON), warnings on standard error, and on failure one line there and
/// exit status 1.
fn run_admin(config: &Config, args: AdminArgs) -> anyhow::Result<()> {
    // Only problems: an operator's command is no place for the store's
    // informational lines.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let options = admin::Options {
        json: args.json,
        nodes: args.http,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let outcome = runtime.block_on(admin::run(config, &options, args.command.into_command()));
    match outcome {
        Ok(report) => {
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
            }
            if options.json {
                println!("{}", report.json);
            } else {
                print!("{}", report.text);
            }
            Ok(())
        }
        Err(error) => {
            eprintln!("chatd admin: {error}");
            std::process::exit(1);
        }
    }
}

/// Runs the node until SIGINT or SIGTERM; SIGHUP reloads the TLS
/// certificate.
async fn serve(config: Config) -> anyhow::Result<()> {
    let server = chat_server::start(config).await?;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    #[cfg(unix)]
    {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot watch SIGHUP")?;
        loop {
            tokio::select! {
                () = &mut stop => break,
                failure = server.failed() => {
                    tracing::error!(%failure, "stopping: the store failed");
                    return server.shutdown().await;
                }
                _ = hangup.recv() => match server.reload_tls() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Err(error) => tracing::error!(%error, "SIGHUP: TLS certificate not reloaded; keeping the old one"),
                },
            }
        }
    }
    #[cfg(not(unix))]
    stop.await;
    tracing::info!("shutting down");
    server.shutdown().await
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot watch SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
