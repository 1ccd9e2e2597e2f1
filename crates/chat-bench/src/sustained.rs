//! The `sustained` scenario: `pairs` for a long, bounded time, with the
//! delivered rate and the server's costs recorded per interval, to show
//! whether a node holds its rate, its memory and its disk under load that
//! does not stop.
//!
//! Every interval (5 s by default) records the messages delivered in it,
//! and, when given the server's process id and database file, the server's
//! CPU time (`utime + stime` from `/proc/PID/stat`) per delivered message,
//! its resident memory (`VmRSS` from `/proc/PID/status`), and the sizes of
//! the database and its `-wal` file (the log's largest size is sampled at
//! every poll of the run, about every 20 ms, not only at the interval's
//! end). The run is still checked like every other: nothing lost,
//! duplicated or out of order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::engine::Watcher;
use crate::error::{Error, Result};
use crate::idle::read_rss_kib;
use crate::load::{run_pairs_watched, PairsOptions, PairsTarget};
use crate::plot::{plot_over_time, Panel, TimeSeries};
use crate::progress::Progress;
use crate::report::Report;
use crate::stats::Live;
use crate::summary::load_average;

/// Clock ticks per second of `/proc/PID/stat`'s CPU times: Linux reports
/// them in `USER_HZ`, which is 100 on every architecture it exports to user
/// space (except Alpha).
pub(crate) const TICKS_PER_SEC: f64 = 100.0;

/// The longest stretch at the start and at the end of a run whose rates are
/// compared.
const COMPARED_WINDOW: Duration = Duration::from_secs(60);

/// What the `sustained` scenario runs.
#[derive(Debug, Clone)]
pub struct SustainedOptions {
    /// The `pairs` load; the target must be chatd.
    pub pairs: PairsOptions,
    /// How long each reported interval is.
    pub interval: Duration,
    /// The server's process id, for its CPU time and RSS.
    pub server_pid: Option<u32>,
    /// The server's SQLite database file, for its size and its log's.
    pub database: Option<PathBuf>,
}

/// The figures of one interval.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// Seconds from the start of sending to the end of this interval.
    pub end_secs: f64,
    /// Seconds this interval lasted.
    pub secs: f64,
    /// Messages sent in it.
    pub sent: u64,
    /// Messages delivered in it.
    pub delivered: u64,
    /// `delivered / secs`.
    pub delivered_per_sec: f64,
    /// The server's CPU time (user and system) in it, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_secs: Option<f64>,
    /// The server's CPU time per delivered message, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_message: Option<f64>,
    /// The server's resident memory at the end of the interval, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_kib: Option<u64>,
    /// The database file's size at the end of the interval, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_bytes: Option<u64>,
    /// The `-wal` file's size at the end of the interval, bytes (0 when
    /// there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_bytes: Option<u64>,
    /// The largest `-wal` size seen during the interval, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_max_bytes: Option<u64>,
    /// The machine's 1-minute load average at the end of the interval: on
    /// a shared machine, what else competed for the cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loadavg_1m: Option<f64>,
}

/// The per-interval record of a sustained run and what it comes to.
#[derive(Debug, Clone, Serialize)]
pub struct Sustained {
    /// Seconds per interval, as asked.
    pub interval_secs: f64,
    /// Every interval in order; the last may be shorter.
    pub intervals: Vec<Interval>,
    /// Seconds at the start and at the end whose rates are compared: a
    /// minute, or half the run when it is shorter than two.
    pub compared_secs: f64,
    /// Delivered messages/s over the first `compared_secs`.
    pub first_delivered_per_sec: f64,
    /// Delivered messages/s over the last `compared_secs`.
    pub last_delivered_per_sec: f64,
    /// `last_delivered_per_sec / first_delivered_per_sec`: 1 for a server
    /// that holds its rate.
    pub last_over_first: f64,
    /// The median of the intervals' delivered messages/s.
    pub median_delivered_per_sec: f64,
    /// The server's CPU time per delivered message over the whole run,
    /// microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_message: Option<f64>,
    /// The server's RSS at the end of the first interval, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_first_kib: Option<u64>,
    /// The server's RSS at the end of the last interval, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_last_kib: Option<u64>,
    /// The largest `-wal` size seen, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_max_bytes: Option<u64>,
    /// The database file's size at the end, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_last_bytes: Option<u64>,
}

/// Runs the `sustained` scenario.
///
/// # Errors
/// Invalid options, a failed setup, or a server process or database file
/// that cannot be read at the start.
pub async fn run_sustained(options: &SustainedOptions) -> Result<Report> {
    if !matches!(options.pairs.target, PairsTarget::Chatd(_)) {
        return Err(Error::Options(
            "the sustained scenario runs against chatd".into(),
        ));
    }
    if options.interval < Duration::from_millis(100)
        || options.interval > options.pairs.load.duration
    {
        return Err(Error::Options(
            "the interval must be at least 0.1 s and at most the duration".into(),
        ));
    }
    // Fail before the setup, not after it, when the process or file is wrong.
    if let Some(pid) = options.server_pid {
        read_cpu_ticks(pid)?;
        read_rss_kib(pid)?;
    }
    if let Some(database) = &options.database {
        std::fs::metadata(database)
            .map_err(|error| Error::io(database.display().to_string(), error))?;
    }
    let mut monitor = Monitor::new(options);
    let mut report = run_pairs_watched(&options.pairs, Some(&mut monitor)).await?;
    report.scenario = "sustained".to_owned();
    report.param("interval_secs", options.interval.as_secs_f64());
    report.sustained = Some(summarize(options.interval, monitor.intervals));
    Ok(report)
}

/// The server's CPU time so far (user and system, all threads), in clock
/// ticks.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::Options`] when it
/// does not have the expected fields.
pub fn read_cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|error| Error::io(path.clone(), error))?;
    parse_cpu_ticks(&text).ok_or_else(|| Error::Options(format!("{path} has no CPU times")))
}

/// `utime + stime` of a `/proc/PID/stat` line. The command name (field 2)
/// is in parentheses and may hold spaces or parentheses itself, so fields
/// are counted from the last `)`: field 3 (the state) comes first, utime is
/// field 14 and stime field 15.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// The size of a file, 0 when it does not exist.
fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

/// Where an interval started.
#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    at: Duration,
    sent: u64,
    delivered: u64,
    cpu_ticks: Option<u64>,
}

/// The engine's watcher: closes an interval at every boundary.
#[derive(Debug)]
struct Monitor {
    interval: Duration,
    server_pid: Option<u32>,
    database: Option<PathBuf>,
    wal: Option<PathBuf>,
    last: Mark,
    next_boundary: Duration,
    wal_max: u64,
    intervals: Vec<Interval>,
}

impl Monitor {
    fn new(options: &SustainedOptions) -> Monitor {
        let wal = options.database.as_ref().map(|database| {
            let mut wal = database.as_os_str().to_owned();
            wal.push("-wal");
            PathBuf::from(wal)
        });
        Monitor {
            interval: options.interval,
            server_pid: options.server_pid,
            database: options.database.clone(),
            wal,
            last: Mark::default(),
            next_boundary: options.interval,
            wal_max: 0,
            intervals: Vec::new(),
        }
    }

    fn cpu_ticks(&self) -> Option<u64> {
        self.server_pid.and_then(|pid| read_cpu_ticks(pid).ok())
    }

    fn sample_wal(&mut self) {
        if let Some(wal) = &self.wal {
            self.wal_max = self.wal_max.max(file_size(wal));
        }
    }

    /// Ends the current interval at `elapsed` and prints its line.
    fn close_interval(&mut self, elapsed: Duration, live: &Live, progress: &Progress) {
        let mark = Mark {
            at: elapsed,
            sent: Live::get(&live.sent),
            delivered: Live::get(&live.delivered),
            cpu_ticks: self.cpu_ticks(),
        };
        let secs = (mark.at - self.last.at).as_secs_f64().max(1e-9);
        let delivered = mark.delivered - self.last.delivered;
        let server_cpu_secs = match (self.last.cpu_ticks, mark.cpu_ticks) {
            (Some(before), Some(after)) => {
                Some(after.saturating_sub(before) as f64 / TICKS_PER_SEC)
            }
            _ => None,
        };
        let wal_bytes = self.wal.as_deref().map(file_size);
        let interval = Interval {
            end_secs: mark.at.as_secs_f64(),
            secs,
            sent: mark.sent - self.last.sent,
            delivered,
            delivered_per_sec: delivered as f64 / secs,
            server_cpu_secs,
            server_cpu_us_per_message: server_cpu_secs
                .filter(|_| delivered > 0)
                .map(|cpu| cpu * 1e6 / delivered as f64),
            server_rss_kib: self.server_pid.and_then(|pid| read_rss_kib(pid).ok()),
            db_bytes: self.database.as_deref().map(file_size),
            wal_bytes,
            // The end reading counts too: the log may have grown since the
            // last sample.
            wal_max_bytes: wal_bytes.map(|end| self.wal_max.max(end)),
            loadavg_1m: load_average(),
        };
        progress.println(&interval_line(&interval));
        self.intervals.push(interval);
        self.last = mark;
        self.wal_max = 0;
        self.sample_wal();
    }
}

impl Watcher for Monitor {
    fn start(&mut self, progress: &Progress) {
        self.last = Mark {
            cpu_ticks: self.cpu_ticks(),
            ..Mark::default()
        };
        self.sample_wal();
        progress.println(&format!(
            "{:>8}  {:>10}  {:>8}  {:>7}  {:>8}  {:>8}  {:>8}  {:>14}  {:>5}",
            "time s",
            "delivered",
            "per s",
            "µs/msg",
            "CPU %",
            "RSS MiB",
            "DB MiB",
            "WAL MiB (max)",
            "load"
        ));
    }

    fn poll(&mut self, elapsed: Duration, live: &Live, progress: &Progress) {
        self.sample_wal();
        if elapsed >= self.next_boundary {
            self.close_interval(elapsed, live, progress);
            while self.next_boundary <= elapsed {
                self.next_boundary += self.interval;
            }
        }
    }

    fn stop(&mut self, elapsed: Duration, live: &Live, progress: &Progress) {
        self.sample_wal();
        // A sliver left after the last boundary says nothing about a rate.
        if elapsed.saturating_sub(self.last.at) >= self.interval / 10 {
            self.close_interval(elapsed, live, progress);
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One interval as a line of the live table.
fn interval_line(interval: &Interval) -> String {
    let optional = |value: Option<f64>, decimals: usize| {
        value.map_or_else(|| "–".to_owned(), |value| format!("{value:.decimals$}"))
    };
    let wal = match (interval.wal_bytes, interval.wal_max_bytes) {
        (Some(now), Some(max)) => format!("{:.1} ({:.1})", mib(now), mib(max)),
        _ => "–".to_owned(),
    };
    format!(
        "{:>8.1}  {:>10}  {:>8.0}  {:>7}  {:>8}  {:>8}  {:>8}  {:>14}  {:>5}",
        interval.end_secs,
        interval.delivered,
        interval.delivered_per_sec,
        optional(interval.server_cpu_us_per_message, 1),
        // The share of one core the server used: with CPU per message, what
        // explains a rate that changes on a shared machine.
        optional(
            interval
                .server_cpu_secs
                .map(|cpu| cpu * 100.0 / interval.secs),
            0
        ),
        optional(interval.server_rss_kib.map(|kib| kib as f64 / 1024.0), 1),
        optional(interval.db_bytes.map(mib), 1),
        wal,
        optional(interval.loadavg_1m, 1)
    )
}

/// Delivered messages/s over a set of intervals.
fn rate<'a>(intervals: impl Iterator<Item = &'a Interval>) -> f64 {
    let (delivered, secs) = intervals.fold((0u64, 0.0f64), |(delivered, secs), interval| {
        (delivered + interval.delivered, secs + interval.secs)
    });
    if secs > 0.0 {
        delivered as f64 / secs
    } else {
        0.0
    }
}

/// What the intervals come to: the first and last stretch compared, the
/// median, CPU per message, memory and the log's largest size.
fn summarize(interval: Duration, intervals: Vec<Interval>) -> Sustained {
    let total = intervals.last().map_or(0.0, |last| last.end_secs);
    let compared = COMPARED_WINDOW.as_secs_f64().min(total / 2.0);
    // Whole intervals inside each stretch; at least one interval each.
    let slack = 1e-3;
    let first_count = intervals
        .iter()
        .take_while(|i| i.end_secs <= compared + slack)
        .count()
        .max(1)
        .min(intervals.len());
    let last_count = intervals
        .iter()
        .rev()
        .take_while(|i| i.end_secs - i.secs >= total - compared - slack)
        .count()
        .max(1)
        .min(intervals.len());
    let first_delivered_per_sec = rate(intervals.iter().take(first_count));
    let last_delivered_per_sec = rate(intervals.iter().rev().take(last_count));
    let mut rates: Vec<f64> = intervals.iter().map(|i| i.delivered_per_sec).collect();
    rates.sort_by(f64::total_cmp);
    let median_delivered_per_sec = match rates.len() {
        0 => 0.0,
        n if n % 2 == 1 => rates[n / 2],
        n => (rates[n / 2 - 1] + rates[n / 2]) / 2.0,
    };
    let cpu: Option<f64> = intervals
        .iter()
        .map(|i| i.server_cpu_secs)
        .sum::<Option<f64>>();
    let delivered: u64 = intervals.iter().map(|i| i.delivered).sum();
    Sustained {
        interval_secs: interval.as_secs_f64(),
        compared_secs: compared,
        first_delivered_per_sec,
        last_delivered_per_sec,
        last_over_first: if first_delivered_per_sec > 0.0 {
            last_delivered_per_sec / first_delivered_per_sec
        } else {
            0.0
        },
        median_delivered_per_sec,
        server_cpu_us_per_message: cpu
            .filter(|_| delivered > 0)
            .map(|cpu| cpu * 1e6 / delivered as f64),
        server_rss_first_kib: intervals.first().and_then(|i| i.server_rss_kib),
        server_rss_last_kib: intervals.last().and_then(|i| i.server_rss_kib),
        wal_max_bytes: intervals.iter().filter_map(|i| i.wal_max_bytes).max(),
        db_last_bytes: intervals.last().and_then(|i| i.db_bytes),
        intervals,
    }
}

impl Sustained {
    /// The rows the report's table shows for a sustained run.
    #[must_use]
    pub fn table_rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![(
            "rate over time".to_owned(),
            format!(
                "first {:.0} s {:.0}/s, last {:.0} s {:.0}/s: last/first {:.3}; median of {} intervals {:.0}/s",
                self.compared_secs,
                self.first_delivered_per_sec,
                self.compared_secs,
                self.last_delivered_per_sec,
                self.last_over_first,
                self.intervals.len(),
                self.median_delivered_per_sec
            ),
        )];
        if let Some(cpu) = self.server_cpu_us_per_message {
            let busy: f64 = self
                .intervals
                .iter()
                .filter_map(|i| i.server_cpu_secs)
                .sum();
            let secs: f64 = self.intervals.iter().map(|i| i.secs).sum();
            rows.push((
                "server CPU".to_owned(),
                format!(
                    "{cpu:.1} µs per message, {:.0} % of a core on average",
                    busy * 100.0 / secs.max(1e-9)
                ),
            ));
        }
        if let (Some(first), Some(last)) = (self.server_rss_first_kib, self.server_rss_last_kib) {
            let max = self
                .intervals
                .iter()
                .filter_map(|i| i.server_rss_kib)
                .max()
                .unwrap_or(last);
            rows.push((
                "server RSS".to_owned(),
                format!(
                    "{:.1} MiB first, {:.1} MiB last, {:.1} MiB max",
                    first as f64 / 1024.0,
                    last as f64 / 1024.0,
                    max as f64 / 1024.0
                ),
            ));
        }
        if let (Some(wal), Some(db)) = (self.wal_max_bytes, self.db_last_bytes) {
            rows.push((
                "database".to_owned(),
                format!(
                    "{:.1} MiB at the end; WAL at most {:.1} MiB",
                    mib(db),
                    mib(wal)
                ),
            ));
        }
        rows
    }

    /// Draws the run over time into an SVG at `path`: the delivered rate;
    /// the log's largest size and the server's RSS; the server's CPU time
    /// per message (the last two panels when they were measured).
    ///
    /// # Errors
    /// [`Error::Plot`] when there are no intervals or the file cannot be
    /// written.
    pub fn plot(&self, path: &Path, title: &str) -> Result<()> {
        let points = |value: fn(&Interval) -> Option<f64>| -> Vec<(f64, f64)> {
            self.intervals
                .iter()
                .filter_map(|interval| Some((interval.end_secs, value(interval)?)))
                .collect()
        };
        let rate = Panel {
            y_desc: "delivered messages/s",
            series: vec![TimeSeries {
                name: "delivered/s",
                points: points(|i| Some(i.delivered_per_sec)),
            }],
        };
        let memory_and_log = Panel {
            y_desc: "MiB",
            series: vec![
                TimeSeries {
                    name: "WAL, largest in interval",
                    points: points(|i| i.wal_max_bytes.map(mib)),
                },
                TimeSeries {
                    name: "server RSS",
                    points: points(|i| i.server_rss_kib.map(|kib| kib as f64 / 1024.0)),
                },
            ],
        };
        let cpu = Panel {
            y_desc: "server CPU µs/message",
            series: vec![TimeSeries {
                name: "CPU per message",
                points: points(|i| i.server_cpu_us_per_message),
            }],
        };
        plot_over_time(path, title, &[rate, memory_and_log, cpu])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(end_secs: f64, delivered: u64) -> Interval {
        Interval {
            end_secs,
            secs: 5.0,
            sent: delivered,
            delivered,
            delivered_per_sec: delivered as f64 / 5.0,
            server_cpu_secs: Some(1.0),
            server_cpu_us_per_message: None,
            server_rss_kib: Some(1000 + end_secs as u64),
            db_bytes: Some(10),
            wal_bytes: Some(1),
            wal_max_bytes: Some(end_secs as u64),
            loadavg_1m: Some(1.0),
        }
    }

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        let stat = "1234 (chat (d) x) S 1 1234 1234 0 -1 4194560 5000 0 0 0 \
                    250 75 0 0 20 0 12 0 100 1000000 500";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("1234 (chatd) S 1"), None);
        let own = read_cpu_ticks(std::process::id()).unwrap();
        assert!(own < u64::MAX);
    }

    #[test]
    fn first_and_last_minute_are_compared() {
        // 10 minutes of 5-s intervals: 1000 messages each in the first
        // minute, 900 afterwards.
        let intervals: Vec<Interval> = (1..=120)
            .map(|n| interval(f64::from(n) * 5.0, if n <= 12 { 1000 } else { 900 }))
            .collect();
        let summary = summarize(Duration::from_secs(5), intervals);
        assert!((summary.compared_secs - 60.0).abs() < 1e-9);
        assert!((summary.first_delivered_per_sec - 200.0).abs() < 1e-9);
        assert!((summary.last_delivered_per_sec - 180.0).abs() < 1e-9);
        assert!((summary.last_over_first - 0.9).abs() < 1e-9);
        assert!((summary.median_delivered_per_sec - 180.0).abs() < 1e-9);
        // 120 s of CPU for 109,200 messages.
        let cpu = summary.server_cpu_us_per_message.unwrap();
        assert!((cpu - 120.0 * 1e6 / 109_200.0).abs() < 1e-6);
        assert_eq!(summary.wal_max_bytes, Some(600));
        assert_eq!(summary.server_rss_first_kib, Some(1005));
        assert_eq!(summary.server_rss_last_kib, Some(1600));
    }

    #[test]
    fn a_short_run_compares_its_halves() {
        let intervals = vec![
            interval(5.0, 100),
            interval(10.0, 100),
            interval(15.0, 50),
            interval(20.0, 50),
        ];
        let summary = summarize(Duration::from_secs(5), intervals);
        assert!((summary.compared_secs - 10.0).abs() < 1e-9);
        assert!((summary.last_over_first - 0.5).abs() < 1e-9);
    }
}
