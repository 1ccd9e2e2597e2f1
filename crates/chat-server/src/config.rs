//! Server configuration: one struct, filled from defaults, an optional TOML
//! file, environment variables and command-line flags (in rising priority).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything `chatd` can be told. [`Config::default`] is the zero-setup
/// single node: `127.0.0.1:7000`, SQLite in `./chat.db`, in-process routing.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Store URL: `sqlite://PATH` or `mysql://USER:PASS@HOST:PORT/DB`.
    pub store: String,
    /// Redis URL for cluster presence and routing; unset, routing is
    /// in-process (a single node).
    pub redis: Option<String>,
    /// This node's name in a cluster (unique per node); a random one if unset.
    pub node_id: Option<String>,
    /// Prefix of every Redis key and channel of this cluster, so several
    /// clusters can share one Redis.
    pub redis_prefix: String,
    /// Largest accepted frame payload in bytes.
    pub max_frame_len: usize,
    /// Largest accepted message body in bytes.
    pub max_message_len: usize,
    /// Frames a session may have queued for writing before it counts as a
    /// slow consumer and is disconnected.
    pub outbox_len: usize,
    /// Seconds without any frame from the client before it is disconnected.
    pub idle_timeout_secs: u64,
    /// Seconds a single write to a client may take before it is disconnected.
    pub write_timeout_secs: u64,
    /// Sustained requests per second per connection (0 = unlimited).
    pub rate_limit_per_sec: u32,
    /// Burst of requests per connection above the sustained rate.
    pub rate_limit_burst: u32,
    /// Connections open at once from one IP address (0 = unlimited).
    pub max_connections_per_ip: u32,
    /// Connections open at once in all (0 = unlimited).
    pub max_connections: u32,
    /// Failed password logins per account per minute before `rate_limited`.
    pub login_failures_per_account: u32,
    /// Failed password logins per IP address per minute before `rate_limited`
    /// (IPv6 addresses count per /64 network).
    pub login_failures_per_ip: u32,
    /// Accounts one IP address may register per hour (IPv6 addresses count
    /// per /64 network); 0 = unlimited.
    pub registrations_per_ip_per_hour: u32,
    /// Accounts this node registers per minute from all addresses together;
    /// 0 = unlimited.
    pub registrations_per_minute: u32,
    /// Friend requests one user may send per hour; 0 = unlimited.
    pub friend_requests_per_hour: u32,
    /// Groups one user may create per hour; 0 = unlimited.
    pub group_creations_per_hour: u32,
    /// Groups one user may join per hour; 0 = unlimited.
    pub group_joins_per_hour: u32,
    /// Memory cost of new password hashes (argon2id), in KiB. Stored hashes
    /// made with other costs are replaced at their next login.
    pub password_hash_memory_kib: u32,
    /// Passes of new password hashes (argon2id).
    pub password_hash_iterations: u32,
    /// Lanes of new password hashes (argon2id).
    pub password_hash_parallelism: u32,
    /// Lifetime of a session token in seconds.
    pub token_ttl_secs: u64,
    /// Seconds after sending during which a sender may recall a message
    /// (0: never; a group's owner and admins may remove messages any time).
    pub recall_window_secs: u64,
    /// Seconds between purges of expired tokens from the store.
    pub token_purge_interval_secs: u64,
    /// Seconds to wait for sessions to drain on shutdown.
    pub shutdown_grace_secs: u64,
    /// Seconds between cluster heartbeats; presence of a dead node expires
    /// after three of them.
    pub heartbeat_secs: u64,
    /// Expect a PROXY protocol v1 header on every connection (from a trusted
    /// load balancer such as nginx with `proxy_protocol on;`) and use the
    /// client address it names for per-address limits and logs.
    pub proxy_protocol: bool,
    /// Users per second a cluster node asks to reconnect elsewhere while it
    /// holds clearly more than the average (only behind a load balancer,
    /// i.e. with `proxy_protocol`); 0 turns it off.
    pub rebalance_per_sec: u32,
    /// Log filter (`info`, `chat_server=debug`, ...); `RUST_LOG` overrides it.
    pub log: String,
    /// Log line format: `text` (human-readable) or `json` (one object a line,
    /// for log shippers).
    pub log_format: LogFormat,
    /// Address of the HTTP listener (WebSocket at `/ws`, `/healthz`,
    /// `/readyz`, `/metrics`, the web client at `/`); empty turns it off.
    pub http_listen: String,
    /// PEM certificate chain; with `tls_key`, turns TLS on for the chat and
    /// HTTP listeners (reloaded on SIGHUP).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Seconds a client may take to finish the TLS handshake.
    pub tls_handshake_timeout_secs: u64,
    /// Origins (`https://chat.example.org`) whose pages may open a WebSocket;
    /// the server's own origin is always allowed, `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Directory to serve the web client from instead of the files built
    /// into chatd (laid out like `web/` in the source tree), to try changes
    /// to the client without rebuilding.
    pub web_root: Option<PathBuf>,
    /// Who may create accounts: `open` (anyone, with `register`) or
    /// `closed` (only an operator, with `chatd admin users create`).
    pub registration: Registration,
    /// Bearer token of the admin endpoint (`/admin/...` on the HTTP
    /// listener), which `chatd admin` uses to list and end sessions; at
    /// least 16 characters. Unset, the endpoint is off.
    pub admin_token: Option<String>,
    /// Accept admin requests from any address, not only loopback (a client
    /// on this machine). Only with TLS or on a private network.
    pub admin_allow_remote: bool,
}

/// Who may create accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone may register.
    #[default]
    Open,
    /// Only operators create accounts (`chatd admin users create`).
    Closed,
}

impl std::str::FromStr for Registration {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        match text {
            "open" => Ok(Registration::Open),
            "closed" => Ok(Registration::Closed),
            other => Err(ConfigError(format!(
                "registration {other:?} must be open or closed"
            ))),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colour only on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(ConfigError(format!(
                "log format {other:?} must be text or json"
            ))),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7000".to_owned(),
            store: "sqlite://chat.db".to_owned(),
            redis: None,
            node_id: None,
            redis_prefix: "chat:".to_owned(),
            max_frame_len: chat_proto::DEFAULT_MAX_PAYLOAD,
            max_message_len: 4096,
            outbox_len: 1024,
            idle_timeout_secs: 60,
            write_timeout_secs: 10,
            rate_limit_per_sec: 50,
            rate_limit_burst: 100,
            max_connections_per_ip: 256,
            max_connections: 100_000,
            login_failures_per_account: 5,
            login_failures_per_ip: 20,
            registrations_per_ip_per_hour: 10,
            registrations_per_minute: 60,
            friend_requests_per_hour: 100,
            group_creations_per_hour: 20,
            group_joins_per_hour: 100,
            password_hash_memory_kib: 19 * 1024,
            password_hash_iterations: 2,
            password_hash_parallelism: 1,
            token_ttl_secs: 30 * 24 * 3600,
            recall_window_secs: 120,
            token_purge_interval_secs: 3600,
            shutdown_grace_secs: 10,
            heartbeat_secs: 2,
            proxy_protocol: false,
            rebalance_per_sec: 10,
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            http_listen: "127.0.0.1:7080".to_owned(),
            tls_cert: None,
            tls_key: None,
            tls_handshake_timeout_secs: 10,
            allowed_origins: Vec::new(),
            web_root: None,
            registration: Registration::Open,
            admin_token: None,
            admin_allow_remote: false,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads a TOML file over the defaults.
    ///
    /// # Errors
    /// When the file cannot be read or does not parse.
    pub fn from_toml_file(path: &PathBuf) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError(format!("cannot read {}: {error}", path.display())))?;
        toml::from_str(&text)
            .map_err(|error| ConfigError(format!("cannot parse {}: {error}", path.display())))
    }

    /// The configuration as TOML, e.g. to start a config file from.
    /// Passwords in the store and Redis URLs and the admin token are
    /// replaced by `***`: this text ends up in terminals, tickets and logs.
    #[must_use]
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.redacted()).unwrap_or_default()
    }

    /// A copy with every secret replaced by `***`.
    #[must_use]
    pub fn redacted(&self) -> Config {
        Config {
            store: redact_url(&self.store),
            redis: self.redis.as_deref().map(redact_url),
            admin_token: self.admin_token.as_ref().map(|_| REDACTED.to_owned()),
            ..self.clone()
        }
    }

    /// The cost of new password hashes.
    #[must_use]
    pub fn password_hash_cost(&self) -> crate::auth::HashCost {
        crate::auth::HashCost {
            memory_kib: self.password_hash_memory_kib,
            iterations: self.password_hash_iterations,
            parallelism: self.password_hash_parallelism,
        }
    }

    /// An example configuration file: every setting with its default, its
    /// documentation (the doc comment of its field, read from this file's
    /// source) and its flag and environment variable. Settings without a
    /// default are shown commented out. `deploy/chatd.toml` is this text.
    #[must_use]
    pub fn example_toml() -> String {
        let defaults = toml::Value::try_from(Config::default())
            .unwrap_or_else(|_| toml::Value::Table(toml::map::Map::new()));
        let mut out = String::from(
            "# chatd configuration: every setting, with its default.\n\
             #\n\
             # Generated by `chatd --print-example-config` from the settings' own\n\
             # documentation. Use it with `chatd --config FILE`; a setting left out\n\
             # keeps its default. Environment variables override this file, and\n\
             # flags override both.\n",
        );
        for (field, doc) in documented_fields(include_str!("config.rs")) {
            out.push('\n');
            for line in doc.lines() {
                out.push_str(format!("# {line}").trim_end());
                out.push('\n');
            }
            out.push_str(&format!(
                "# Flag --{}, environment CHATD_{}.\n",
                field.replace('_', "-"),
                field.to_ascii_uppercase()
            ));
            match defaults.get(&field) {
                Some(value) => out.push_str(&format!("{field} = {value}\n")),
                None => out.push_str(&format!("# Not set by default.\n#{field} = \"\"\n")),
            }
        }
        out
    }

    /// Checks the values fit together.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first value that does not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_frame_len < 1024 {
            return Err(ConfigError("max_frame_len must be at least 1024".into()));
        }
        // A message must fit in a frame with its JSON envelope around it.
        if self.max_message_len == 0 || self.max_message_len + 512 > self.max_frame_len {
            return Err(ConfigError(
                "max_message_len must be positive and at least 512 bytes below max_frame_len"
                    .into(),
            ));
        }
        if self.outbox_len < 16 {
            return Err(ConfigError("outbox_len must be at least 16".into()));
        }
        if self.idle_timeout_secs == 0 || self.write_timeout_secs == 0 {
            return Err(ConfigError("timeouts must be positive".into()));
        }
        // Upper bounds keep time arithmetic far from overflow.
        const DAY: u64 = 24 * 3600;
        if self.idle_timeout_secs > DAY || self.write_timeout_secs > DAY {
            return Err(ConfigError("timeouts must be at most a day".into()));
        }
        if self.token_ttl_secs == 0 || self.token_ttl_secs > 3650 * DAY {
            return Err(ConfigError(
                "token_ttl_secs must be 1 second to 10 years".into(),
            ));
        }
        if self.shutdown_grace_secs > DAY || self.heartbeat_secs > 3600 {
            return Err(ConfigError(
                "shutdown_grace_secs or heartbeat_secs is too large".into(),
            ));
        }
        // A full sync page must fit in what clients accept.
        if self.recall_window_secs > 3650 * DAY {
            return Err(ConfigError(
                "recall_window_secs must be at most 10 years".into(),
            ));
        }
        if self.max_message_len > 16 * 1024 {
            return Err(ConfigError("max_message_len must be at most 16384".into()));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError(
                "tls_cert and tls_key must be given together".into(),
            ));
        }
        if self.tls_handshake_timeout_secs == 0 || self.tls_handshake_timeout_secs > 300 {
            return Err(ConfigError(
                "tls_handshake_timeout_secs must be 1 to 300".into(),
            ));
        }
        if self.token_purge_interval_secs == 0 || self.token_purge_interval_secs > DAY {
            return Err(ConfigError(
                "token_purge_interval_secs must be 1 second to a day".into(),
            ));
        }
        if !(1..=64).contains(&self.password_hash_iterations)
            || !(1..=64).contains(&self.password_hash_parallelism)
            || self.password_hash_memory_kib < 8 * self.password_hash_parallelism
            || self.password_hash_memory_kib > 1024 * 1024
        {
            return Err(ConfigError(
                "password_hash_iterations and password_hash_parallelism must be 1 to 64, \
                 password_hash_memory_kib 8 per lane to 1 GiB"
                    .into(),
            ));
        }
        if self.heartbeat_secs == 0 {
            return Err(ConfigError("heartbeat_secs must be positive".into()));
        }
        if let Some(token) = &self.admin_token {
            // A short token could be guessed by anyone who can reach the
            // HTTP listener.
            if token.chars().count() < 16 || token.chars().any(char::is_whitespace) {
                return Err(ConfigError(
                    "admin_token must be at least 16 characters, without spaces".into(),
                ));
            }
        }
        if !(self.store.starts_with("sqlite:")
            || self.store.starts_with("mysql:")
            || self.store.starts_with("mariadb:"))
        {
            return Err(ConfigError(format!(
                "store {:?} must start with sqlite:, mysql: or mariadb:",
                self.store
            )));
        }
        Ok(())
    }

    /// The idle timeout.
    #[must_use]
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The TLS handshake timeout.
    #[must_use]
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.tls_handshake_timeout_secs)
    }

    /// The write timeout.
    #[must_use]
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }
}

/// What stands in for a secret in printed configuration.
const REDACTED: &str = "***";

impl std::fmt::Debug for Config {
    /// Every setting, with secrets replaced as in [`Config::to_toml`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Config");
        if let Ok(toml::Value::Table(table)) = toml::Value::try_from(self.redacted()) {
            for (key, value) in &table {
                out.field(key, &format_args!("{value}"));
            }
        }
        out.finish_non_exhaustive()
    }
}

/// A URL with the password in it replaced by `***`, for logs and printed
/// configuration.
#[must_use]
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:{REDACTED}{}",
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

/// The fields of `Config` in the source text of this file, in order, each
/// with its doc comment (one line per source line).
fn documented_fields(source: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    let mut inside = false;
    for line in source.lines() {
        let line = line.trim();
        if !inside {
            inside = line == "pub struct Config {";
            continue;
        }
        if line == "}" {
            break;
        }
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.strip_prefix(' ').unwrap_or(text));
        } else if let Some((field, _type)) = line
            .strip_prefix("pub ")
            .and_then(|rest| rest.split_once(':'))
        {
            fields.push((field.trim().to_owned(), doc.join("\n")));
            doc.clear();
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_documents_every_setting_and_parses_to_the_defaults() {
        let example = Config::example_toml();
        let parsed: Config = toml::from_str(&example).unwrap();
        assert_eq!(parsed, Config::default());
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let documented = documented_fields(include_str!("config.rs"));
        // Every setting that has a default, and those that have none.
        assert!(defaults
            .as_table()
            .unwrap()
            .keys()
            .all(|key| documented.iter().any(|(field, _)| field == key)));
        assert!(documented.iter().all(|(_, doc)| !doc.is_empty()));
        assert!(example.contains("# Flag --http-listen, environment CHATD_HTTP_LISTEN.\n"));
        assert!(example.contains("#admin_token = \"\"\n"));
    }

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let config = Config::default();
        config.validate().unwrap();
        let parsed: Config = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(parsed, config);
    }

    #[test]
    fn printed_and_debugged_configuration_hides_secrets() {
        let config = Config {
            store: "mysql://chat:db-secret@db.internal:3306/chat".to_owned(),
            redis: Some("redis://:redis-secret@redis.internal:6379".to_owned()),
            admin_token: Some("admin-token-secret-0123456789".to_owned()),
            ..Config::default()
        };
        for shown in [
            config.to_toml(),
            format!("{config:?}"),
            format!("{config:#?}"),
        ] {
            for secret in ["db-secret", "redis-secret", "admin-token-secret"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
            assert!(
                shown.contains("mysql://chat:***@db.internal:3306/chat"),
                "{shown}"
            );
            assert!(shown.contains("listen"), "{shown}");
        }
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("mysql://root:secret@127.0.0.1/chat"),
            "mysql://root:***@127.0.0.1/chat"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1/chat"),
            "mysql://root@127.0.0.1/chat"
        );
        assert_eq!(redact_url("sqlite://chat.db"), "sqlite://chat.db");
    }

    #[test]
    fn message_limit_must_fit_in_a_frame() {
        let config = Config {
            max_message_len: 65_536,
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Config>("listen = \"x\"\nbogus = 1").is_err());
    }
}
