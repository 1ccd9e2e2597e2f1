//! What a run reports: one struct, printed as a table for people or as one
//! JSON line for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::engine::EngineResult;
use crate::load::LoadOptions;
use crate::stats::{new_histogram, Stats};
use crate::sustained::Sustained;

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `baseline`, `pairs`, `sustained`, `group`, `idle`, `login-password`
    /// or `login-token`.
    pub scenario: String,
    /// The address or addresses driven.
    pub target: String,
    /// The scenario's parameters.
    pub params: BTreeMap<String, serde_json::Value>,
    /// Seconds measured (from the start until everything in flight arrived).
    pub duration_secs: f64,
    /// Requests sent (messages, or login attempts).
    pub sent: u64,
    /// Requests the server answered with success.
    pub acknowledged: u64,
    /// Requests the server answered with an error.
    pub rejected: u64,
    /// Distinct deliveries (a group message counts once per receiver; a
    /// login counts once when it succeeds).
    pub delivered: u64,
    /// `sent / duration_secs`.
    pub sent_per_sec: f64,
    /// `acknowledged / duration_secs`.
    pub acknowledged_per_sec: f64,
    /// `delivered / duration_secs`.
    pub delivered_per_sec: f64,
    /// End-to-end latency (send to delivery; for logins, connect to answer).
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// The mean.
    pub mean_ms: f64,
    /// Send to acknowledgement, median.
    pub ack_p50_ms: f64,
    /// Send to acknowledgement, 99th percentile.
    pub ack_p99_ms: f64,
    /// Accepted messages some receiver never got.
    pub lost: u64,
    /// Deliveries of a message already delivered.
    pub duplicated: u64,
    /// Deliveries after a later message of the same stream.
    pub out_of_order: u64,
    /// Message pushes the bench did not expect.
    pub unexpected: u64,
    /// Server sequence numbers that did not rise within one sender's stream.
    pub server_seq_regressions: u64,
    /// Pushes overtaken by a later message of the same conversation from
    /// another sender (the protocol allows it; not a failure).
    pub overtaken: u64,
    /// Connections that broke mid-run.
    pub connection_errors: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Whether everything in flight arrived before the drain timeout.
    pub drained: bool,
    /// The bare relay's delivered/s with the same parameters, when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_delivered_per_sec: Option<f64>,
    /// `delivered_per_sec / baseline_delivered_per_sec`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_fraction: Option<f64>,
    /// The bare relay's median latency with the same parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_p50_ms: Option<f64>,
    /// The bare relay's 99th percentile latency with the same parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_p99_ms: Option<f64>,
    /// The server's CPU time over the run (with `--server-pid`), seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_secs: Option<f64>,
    /// `server_cpu_secs` per delivered message, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Idle scenario: connections logged in and held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    /// Idle scenario: the server's VmRSS before the connections, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_kib: Option<u64>,
    /// Idle scenario: the server's VmRSS with the connections held, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_after_kib: Option<u64>,
    /// Idle scenario: (after − before) / connections, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_per_connection_bytes: Option<f64>,
    /// Sustained scenario: the figures of every interval and what they come to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sustained: Option<Sustained>,
    /// The end-to-end latency histogram, for plotting.
    #[serde(skip)]
    pub latency: Histogram<u64>,
    /// The acknowledgement latency histogram, for plotting.
    #[serde(skip)]
    pub ack_latency: Histogram<u64>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Report {
    /// An empty report for `scenario` against `target`.
    #[must_use]
    pub fn new(scenario: &str, target: &str) -> Report {
        Report {
            scenario: scenario.to_owned(),
            target: target.to_owned(),
            params: BTreeMap::new(),
            duration_secs: 0.0,
            sent: 0,
            acknowledged: 0,
            rejected: 0,
            delivered: 0,
            sent_per_sec: 0.0,
            acknowledged_per_sec: 0.0,
            delivered_per_sec: 0.0,
            p50_ms: 0.0,
            p90_ms: 0.0,
            p99_ms: 0.0,
            p999_ms: 0.0,
            max_ms: 0.0,
            mean_ms: 0.0,
            ack_p50_ms: 0.0,
            ack_p99_ms: 0.0,
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
            unexpected: 0,
            server_seq_regressions: 0,
            overtaken: 0,
            connection_errors: 0,
            errors: BTreeMap::new(),
            drained: true,
            baseline_delivered_per_sec: None,
            baseline_fraction: None,
            baseline_p50_ms: None,
            baseline_p99_ms: None,
            server_cpu_secs: None,
            server_cpu_us_per_delivery: None,
            connections: None,
            rss_before_kib: None,
            rss_after_kib: None,
            rss_per_connection_bytes: None,
            sustained: None,
            latency: new_histogram(),
            ack_latency: new_histogram(),
        }
    }

    /// Fills the counts, rates and percentiles from `stats` over `seconds`.
    pub fn fill(&mut self, stats: Stats, seconds: f64) {
        let seconds = seconds.max(1e-9);
        self.duration_secs = seconds;
        self.sent = stats.sent;
        self.acknowledged = stats.acknowledged;
        self.rejected = stats.rejected;
        self.delivered = stats.delivered;
        self.sent_per_sec = stats.sent as f64 / seconds;
        self.acknowledged_per_sec = stats.acknowledged as f64 / seconds;
        self.delivered_per_sec = stats.delivered as f64 / seconds;
        let latency = &stats.latency;
        if !latency.is_empty() {
            self.p50_ms = ms(latency.value_at_quantile(0.50));
            self.p90_ms = ms(latency.value_at_quantile(0.90));
            self.p99_ms = ms(latency.value_at_quantile(0.99));
            self.p999_ms = ms(latency.value_at_quantile(0.999));
            self.max_ms = ms(latency.max());
            self.mean_ms = latency.mean() / 1000.0;
        }
        if !stats.ack_latency.is_empty() {
            self.ack_p50_ms = ms(stats.ack_latency.value_at_quantile(0.50));
            self.ack_p99_ms = ms(stats.ack_latency.value_at_quantile(0.99));
        }
        self.lost = stats.lost;
        self.duplicated = stats.duplicated;
        self.out_of_order = stats.out_of_order;
        self.unexpected = stats.unexpected;
        self.server_seq_regressions = stats.server_seq_regressions;
        self.overtaken = stats.overtaken;
        self.connection_errors = stats.connection_errors;
        self.errors = stats.errors;
        self.latency = stats.latency;
        self.ack_latency = stats.ack_latency;
    }

    pub(crate) fn from_engine(scenario: &str, target: &str, result: EngineResult) -> Report {
        let mut report = Report::new(scenario, target);
        report.drained = result.drained;
        report.fill(result.stats, result.elapsed.as_secs_f64());
        report.server_cpu_secs = result.server_cpu_secs;
        report.server_cpu_us_per_delivery = result
            .server_cpu_secs
            .filter(|_| report.delivered > 0)
            .map(|secs| secs * 1e6 / report.delivered as f64);
        report
    }

    /// Records a parameter of the run.
    pub fn param(&mut self, name: &str, value: impl Serialize) {
        self.params.insert(
            name.to_owned(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
    }

    pub(crate) fn load_params(&mut self, load: &LoadOptions) {
        self.param("window", load.window);
        self.param("duration_secs", load.duration.as_secs_f64());
        if let Some(rate) = load.rate {
            self.param("rate", rate);
        }
        self.param("body_len", load.body_len);
        if load.ack_every > 0 {
            self.param("ack_every", load.ack_every);
        }
    }

    /// Records the bare relay's run with the same parameters and the
    /// fraction of its throughput this run reached.
    pub fn set_baseline(&mut self, baseline: &Report) {
        self.baseline_delivered_per_sec = Some(baseline.delivered_per_sec);
        self.baseline_p50_ms = Some(baseline.p50_ms);
        self.baseline_p99_ms = Some(baseline.p99_ms);
        if baseline.delivered_per_sec > 0.0 {
            self.baseline_fraction = Some(self.delivered_per_sec / baseline.delivered_per_sec);
        }
    }

    /// Whether the run is clean: nothing lost, duplicated, out of order or
    /// unexpected, no error answers and no broken connections. A run that
    /// is not clean must make the tool's exit status non-zero.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.unexpected == 0
            && self.server_seq_regressions == 0
            && self.connection_errors == 0
            && self.rejected == 0
            && self.errors.is_empty()
            && self.drained
    }

    /// The report as one JSON line.
    #[must_use]
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
    }

    /// The report as a table for people.
    #[must_use]
    pub fn to_table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |name: &str, value: String| rows.push((name.to_owned(), value));
        row("scenario", self.scenario.clone());
        row("target", self.target.clone());
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        row("parameters", params.join(" "));
        row("measured", format!("{:.2} s", self.duration_secs));
        if let Some(connections) = self.connections {
            row(
                "connections",
                format!(
                    "{connections} logged in by token in {:.2} s",
                    self.duration_secs
                ),
            );
        }
        if let (Some(before), Some(after)) = (self.rss_before_kib, self.rss_after_kib) {
            row(
                "server RSS",
                format!("{before} KiB before, {after} KiB after"),
            );
        }
        if let Some(per) = self.rss_per_connection_bytes {
            row(
                "RSS per connection",
                format!("{per:.0} bytes ({:.2} KiB)", per / 1024.0),
            );
        }
        if self.connections.is_none() && (self.sent > 0 || self.delivered > 0) {
            row(
                "sent",
                format!("{} ({:.0}/s)", self.sent, self.sent_per_sec),
            );
            row(
                "acknowledged",
                format!("{} ({:.0}/s)", self.acknowledged, self.acknowledged_per_sec),
            );
            row(
                "delivered",
                format!("{} ({:.0}/s)", self.delivered, self.delivered_per_sec),
            );
            row(
                "latency ms",
                format!(
                    "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
                    self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms
                ),
            );
            if self.ack_p50_ms > 0.0 {
                row(
                    "ack latency ms",
                    format!("p50 {:.3}  p99 {:.3}", self.ack_p50_ms, self.ack_p99_ms),
                );
            }
            if let (Some(secs), Some(per)) = (self.server_cpu_secs, self.server_cpu_us_per_delivery)
            {
                row(
                    "server CPU",
                    format!("{secs:.2} s, {per:.1} µs per delivered message"),
                );
            }
        }
        if let Some(sustained) = &self.sustained {
            for (name, value) in sustained.table_rows() {
                row(&name, value);
            }
        }
        if let (Some(baseline), Some(fraction)) =
            (self.baseline_delivered_per_sec, self.baseline_fraction)
        {
            row(
                "baseline",
                format!(
                    "{baseline:.0} delivered/s, p50 {:.3} ms, p99 {:.3} ms; this run {:.1} %",
                    self.baseline_p50_ms.unwrap_or(0.0),
                    self.baseline_p99_ms.unwrap_or(0.0),
                    fraction * 100.0
                ),
            );
        }
        row(
            "lost / dup / ooo",
            format!(
                "{} / {} / {}",
                self.lost, self.duplicated, self.out_of_order
            ),
        );
        if self.rejected > 0 {
            row("rejected", self.rejected.to_string());
        }
        if self.unexpected > 0 {
            row("unexpected pushes", self.unexpected.to_string());
        }
        if self.server_seq_regressions > 0 {
            row(
                "server seq regressions",
                self.server_seq_regressions.to_string(),
            );
        }
        if self.overtaken > 0 {
            row(
                "overtaken pushes",
                format!("{} (across senders; allowed)", self.overtaken),
            );
        }
        if self.connection_errors > 0 {
            row("broken connections", self.connection_errors.to_string());
        }
        if !self.drained {
            row(
                "drained",
                "no: messages still in flight at the drain timeout".into(),
            );
        }
        for (kind, count) in &self.errors {
            row("error", format!("{kind}: {count}"));
        }
        row(
            "result",
            if self.is_clean() { "clean" } else { "FAILED" }.to_owned(),
        );
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (name, value) in rows {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{name:>width$}  {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::record;

    #[test]
    fn json_line_has_the_required_fields_and_one_line() {
        let mut stats = Stats::new();
        stats.sent = 10;
        stats.acknowledged = 10;
        stats.delivered = 10;
        for micros in [100, 200, 300, 4000] {
            record(&mut stats.latency, micros);
        }
        let mut report = Report::new("pairs", "127.0.0.1:7000");
        report.fill(stats, 2.0);
        let line = report.to_json_line();
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        for field in [
            "scenario",
            "sent",
            "delivered",
            "delivered_per_sec",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "lost",
            "duplicated",
            "out_of_order",
        ] {
            assert!(value.get(field).is_some(), "{field} missing");
        }
        assert_eq!(value["delivered_per_sec"], 5.0);
        assert!((value["max_ms"].as_f64().unwrap() - 4.0).abs() < 0.01);
        assert!(report.is_clean());
        assert!(report.to_table().contains("clean"));
    }

    #[test]
    fn any_loss_duplicate_or_reordering_fails_the_run() {
        for field in 0..3 {
            let mut stats = Stats::new();
            match field {
                0 => stats.lost = 1,
                1 => stats.duplicated = 1,
                _ => stats.out_of_order = 1,
            }
            let mut report = Report::new("pairs", "x");
            report.fill(stats, 1.0);
            assert!(!report.is_clean());
            assert!(report.to_table().contains("FAILED"));
        }
    }
}
