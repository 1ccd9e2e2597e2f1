//! Metrics, through the `metrics` facade, rendered in the Prometheus text
//! format by `metrics-exporter-prometheus` at `GET /metrics`.
//!
//! Names follow Prometheus conventions (`chatd_..._total` for counters,
//! base units, `_seconds`), and labels take small fixed sets of values (a
//! transport, a request type, a status), never a user id. The recorder is
//! process-wide, so several nodes in one test process share it.
//!
//! Per-request counters are looked up once per request type and kept, so
//! the per-message path does not hash a key per call.

use std::sync::OnceLock;
use std::time::Duration;

use chat_proto::{MessageType, Status};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Batch-size buckets (items per commit).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The process-wide recorder's handle, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS)
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program's
        // own): then ours renders nothing rather than failing the server.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder is already installed; /metrics will be empty");
        }
        describe();
        handle
    })
}

/// Renders every metric in the Prometheus text format, after refreshing
/// the process gauges.
#[must_use]
pub fn render() -> String {
    let handle = handle();
    record_process();
    handle.run_upkeep();
    handle.render()
}

/// Drains histogram samples into their buckets; called periodically so
/// memory stays bounded between scrapes.
pub fn upkeep() {
    handle().run_upkeep();
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "chatd_connections_open",
        "Open client connections by transport."
    );
    describe_counter!(
        "chatd_connections_accepted_total",
        "Client connections accepted, by transport."
    );
    describe_counter!(
        "chatd_connections_refused_total",
        "Connections refused at accept (connection limits, bad PROXY header, failed TLS handshake), by reason."
    );
    describe_gauge!(
        "chatd_sessions_logged_in",
        "Logged-in sessions on this node."
    );
    describe_counter!(
        "chatd_requests_total",
        "Requests answered, by type and status."
    );
    describe_histogram!(
        "chatd_request_duration_seconds",
        Unit::Seconds,
        "Time from reading a request to queueing its answer, by type."
    );
    describe_counter!(
        "chatd_messages_committed_total",
        "Chat messages committed to the store on this node."
    );
    describe_counter!(
        "chatd_pushes_delivered_total",
        "Push frames queued to a local session's outbox."
    );
    describe_counter!(
        "chatd_pushes_dropped_total",
        "Push frames not queued because the session's outbox was full."
    );
    describe_counter!(
        "chatd_slow_consumer_disconnects_total",
        "Sessions ended because they read too slowly."
    );
    describe_counter!("chatd_sessions_ended_total", "Sessions ended, by reason.");
    describe_histogram!(
        "chatd_store_commit_batch_size",
        "Appends and acks committed in one store transaction."
    );
    describe_histogram!(
        "chatd_store_commit_duration_seconds",
        Unit::Seconds,
        "Time one store commit of a batch takes."
    );
    describe_counter!(
        "chatd_store_errors_total",
        "Requests that failed because the store failed or was unavailable."
    );
    describe_gauge!(
        "chatd_bus_connected",
        "1 while the cluster bus is connected (always 1 on a single node)."
    );
    describe_gauge!(
        "chatd_bus_forward_queue_depth",
        "Envelopes waiting to be forwarded to other nodes."
    );
    describe_counter!(
        "chatd_bus_envelopes_sent_total",
        "Envelopes forwarded to other nodes."
    );
    describe_counter!(
        "chatd_bus_envelopes_received_total",
        "Envelopes received from other nodes."
    );
    describe_histogram!(
        "chatd_password_hash_wait_seconds",
        Unit::Seconds,
        "Time a password hash or check waited for a hashing thread."
    );
    describe_gauge!(
        "chatd_process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory of the chatd process."
    );
    describe_gauge!(
        "chatd_process_open_fds",
        "Open file descriptors of the chatd process."
    );
    describe_gauge!(
        "chatd_sqlite_database_bytes",
        Unit::Bytes,
        "Size of the SQLite database file (SQLite stores only)."
    );
    describe_gauge!(
        "chatd_sqlite_wal_bytes",
        Unit::Bytes,
        "Size of the SQLite write-ahead log (SQLite stores only); it should stay small, checkpoints move it into the database."
    );
}

/// Sets the SQLite file size gauges for a `sqlite://PATH` store (nothing
/// for other stores). A log that keeps growing means checkpoints cannot
/// finish: a reader holds a snapshot open, or the disk is too slow.
pub fn record_store_files(store_url: &str) {
    let Some(path) = sqlite_path(store_url) else {
        return;
    };
    if let Ok(metadata) = std::fs::metadata(&path) {
        metrics::gauge!("chatd_sqlite_database_bytes").set(metadata.len() as f64);
    }
    let mut wal = path.into_os_string();
    wal.push("-wal");
    // No log file at all (after a clean shutdown) is an empty log.
    let wal_bytes = std::fs::metadata(&wal).map_or(0, |metadata| metadata.len());
    metrics::gauge!("chatd_sqlite_wal_bytes").set(wal_bytes as f64);
}

/// The database file of a `sqlite://PATH[?...]` URL.
fn sqlite_path(store_url: &str) -> Option<std::path::PathBuf> {
    let rest = store_url
        .strip_prefix("sqlite://")
        .or_else(|| store_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:")).then(|| path.into())
}

/// Sets the process memory and descriptor gauges from `/proc` (Linux).
fn record_process() {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            });
        if let Some(rss_kib) = rss_kib {
            metrics::gauge!("chatd_process_resident_memory_bytes").set(rss_kib * 1024.0);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("chatd_process_open_fds").set(entries.count() as f64);
    }
}

/// The counters and histogram of one request type, looked up once.
struct RequestMetrics {
    ok: Counter,
    duration: Histogram,
}

/// Counts one answered request and its latency.
pub fn request(message_type: u16, status: Status, elapsed: Duration) {
    static TABLE: OnceLock<Vec<(u16, RequestMetrics)>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let _ = handle();
        MessageType::REQUESTS
            .iter()
            .map(|message_type| {
                let name = message_type.name();
                (
                    message_type.code(),
                    RequestMetrics {
                        ok: metrics::counter!("chatd_requests_total", "type" => name, "status" => Status::Ok.name()),
                        duration: metrics::histogram!("chatd_request_duration_seconds", "type" => name),
                    },
                )
            })
            .collect()
    });
    let known = table.iter().find(|(code, _)| *code == message_type);
    match known {
        Some((_, metrics)) => {
            metrics.duration.record(elapsed.as_secs_f64());
            if status == Status::Ok {
                metrics.ok.increment(1);
            } else {
                let name = MessageType::from_code(message_type).map_or("unknown", |t| t.name());
                metrics::counter!("chatd_requests_total", "type" => name, "status" => status.name())
                    .increment(1);
            }
        }
        // An unknown type code: one label value for all of them.
        None => {
            metrics::counter!("chatd_requests_total", "type" => "unknown", "status" => status.name())
                .increment(1);
        }
    }
    if status == Status::Unavailable || status == Status::Internal {
        metrics::counter!("chatd_store_errors_total").increment(1);
    }
}

/// A counter without labels, looked up once and kept.
macro_rules! cached_counter {
    ($name:literal) => {{
        static COUNTER: OnceLock<Counter> = OnceLock::new();
        COUNTER.get_or_init(|| {
            let _ = handle();
            metrics::counter!($name)
        })
    }};
}

/// Counts push frames queued to local sessions, and those dropped because
/// an outbox was full.
pub fn pushes(delivered: u64, dropped: u64) {
    if delivered > 0 {
        cached_counter!("chatd_pushes_delivered_total").increment(delivered);
    }
    if dropped > 0 {
        cached_counter!("chatd_pushes_dropped_total").increment(dropped);
    }
}

/// Counts committed chat messages.
pub fn messages_committed(count: u64) {
    cached_counter!("chatd_messages_committed_total").increment(count);
}

/// Counts a session that ended, by reason; slow consumers also on their own
/// counter.
pub fn session_ended(reason: &'static str) {
    metrics::counter!("chatd_sessions_ended_total", "reason" => reason).increment(1);
    if reason == "slow_consumer" {
        cached_counter!("chatd_slow_consumer_disconnects_total").increment(1);
    }
}

/// Counts a connection refused at accept, by reason.
pub fn connection_refused(reason: &'static str) {
    metrics::counter!("chatd_connections_refused_total", "reason" => reason).increment(1);
}

/// Keeps a connection counted as open (by transport) while it lives.
#[derive(Debug)]
pub struct OpenConnection {
    transport: &'static str,
}

impl OpenConnection {
    /// Counts a connection as accepted and open.
    #[must_use]
    pub fn new(transport: &'static str) -> Self {
        let _ = handle();
        metrics::counter!("chatd_connections_accepted_total", "transport" => transport)
            .increment(1);
        metrics::gauge!("chatd_connections_open", "transport" => transport).increment(1.0);
        Self { transport }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("chatd_connections_open", "transport" => self.transport).decrement(1.0);
    }
}

/// Keeps a session counted as logged in while it lives.
#[derive(Debug)]
pub struct LoggedInSession(());

impl LoggedInSession {
    /// Counts a session as logged in.
    #[must_use]
    pub fn start() -> Self {
        let _ = handle();
        metrics::gauge!("chatd_sessions_logged_in").increment(1.0);
        Self(())
    }
}

impl Drop for LoggedInSession {
    fn drop(&mut self) {
        metrics::gauge!("chatd_sessions_logged_in").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_files_come_from_store_urls() {
        assert_eq!(sqlite_path("sqlite://chat.db"), Some("chat.db".into()));
        assert_eq!(
            sqlite_path("sqlite:///var/lib/chatd/chat.db?synchronous=full"),
            Some("/var/lib/chatd/chat.db".into())
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("mysql://root@db/chat"), None);
    }
}
