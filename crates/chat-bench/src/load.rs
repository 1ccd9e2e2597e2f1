//! The message scenarios: `pairs` (against chatd or the bare relay) and `group`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Notify;

use chat_proto::{Target, UserId};

use crate::conn::{Conn, Server};
use crate::engine::{self, Endpoint, EngineOptions, OutStream, StreamWindow, Unit, Watcher};
use crate::error::{Error, Result};
use crate::payload::{now_ns, stream_interval};
use crate::relay::hello_frame;
use crate::report::Report;
use crate::setup::{self, Placement};

/// How messages flow, common to every message scenario.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Messages each stream may have in flight (1 is a closed loop).
    pub window: u32,
    /// How long senders send.
    pub duration: Duration,
    /// A fixed total send rate in messages per second, spread evenly over
    /// the streams; `None` sends as fast as the windows allow.
    pub rate: Option<f64>,
    /// At most this many messages per stream.
    pub count: u64,
    /// Bytes of each message body (at least the stamp itself).
    pub body_len: usize,
    /// How long to wait, after sending stops, for what is in flight.
    pub drain_timeout: Duration,
    /// Receivers acknowledge every this many deliveries (0: never).
    pub ack_every: u32,
    /// Local addresses to spread connections over (empty: the kernel's choice).
    pub sources: Vec<IpAddr>,
    /// Whether to draw a progress bar on stderr.
    pub progress: bool,
    /// The server's process id, to report its CPU time per delivered
    /// message (a server on this machine only).
    pub server_pid: Option<u32>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            window: 1,
            duration: Duration::from_secs(10),
            rate: None,
            count: 100_000_000,
            body_len: 64,
            drain_timeout: Duration::from_secs(10),
            ack_every: 0,
            sources: Vec::new(),
            progress: false,
            server_pid: None,
        }
    }
}

impl LoadOptions {
    fn validate(&self) -> Result<()> {
        if self.window == 0 || self.window > 100_000 {
            return Err(Error::Options("the window must be 1 to 100000".into()));
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(24 * 3600) {
            return Err(Error::Options(
                "the duration must be positive and at most a day".into(),
            ));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(Error::Options("the rate must be a positive number".into()));
            }
        }
        if self.count == 0 {
            return Err(Error::Options("the count must be positive".into()));
        }
        // Fail before the setup, not after it, when the process is wrong.
        if let Some(pid) = self.server_pid {
            crate::sustained::read_cpu_ticks(pid)?;
        }
        if self.body_len > 4000 {
            return Err(Error::Options(
                "bodies above 4000 bytes exceed chatd's default limit".into(),
            ));
        }
        Ok(())
    }

    fn engine_options(&self, label: &str) -> EngineOptions {
        EngineOptions {
            duration: self.duration,
            drain_timeout: self.drain_timeout,
            body_len: self.body_len,
            ack_every: self.ack_every,
            label: label.to_owned(),
            show_progress: self.progress,
            server_pid: self.server_pid,
        }
    }

    /// The rate interval per stream and the first due time of stream `index`
    /// of `streams`, staggered so fixed-rate streams do not send in lockstep.
    fn schedule(&self, index: usize, streams: usize, start_ns: u64) -> (Option<Duration>, u64) {
        match self.rate {
            None => (None, 0),
            Some(rate) => {
                let interval = stream_interval(rate, streams);
                let offset = interval.as_nanos() as u64 * index as u64 / streams.max(1) as u64;
                (Some(interval), start_ns + offset)
            }
        }
    }
}

/// Where the `pairs` scenario sends.
#[derive(Debug, Clone)]
pub enum PairsTarget {
    /// chatd nodes: accounts are registered and befriended first. With more
    /// than one node the two ends of each pair are on different nodes.
    Chatd(Vec<Server>),
    /// The bare relay.
    Relay(SocketAddr),
}

/// The `pairs` scenario: N pairs, each end a stream to the other.
#[derive(Debug, Clone)]
pub struct PairsOptions {
    /// Where to send.
    pub target: PairsTarget,
    /// How many pairs.
    pub pairs: usize,
    /// How messages flow.
    pub load: LoadOptions,
}

/// Runs the `pairs` scenario.
///
/// # Errors
/// Invalid options or a failed setup; what happens to messages during the
/// run is in the report, not an error.
pub async fn run_pairs(options: &PairsOptions) -> Result<Report> {
    run_pairs_watched(options, None).await
}

/// Runs the `pairs` scenario with `watcher` watching it while it sends.
pub(crate) async fn run_pairs_watched(
    options: &PairsOptions,
    watcher: Option<&mut dyn Watcher>,
) -> Result<Report> {
    options.load.validate()?;
    if options.pairs == 0 || options.pairs > 100_000 {
        return Err(Error::Options("pairs must be 1 to 100000".into()));
    }
    let load = &options.load;
    let placement = |servers: Vec<Server>| Placement {
        servers,
        sources: load.sources.clone(),
    };
    // Each pair: both connections and the user each end sends to.
    let ends: Vec<(Conn, UserId, Conn, UserId)> = match &options.target {
        PairsTarget::Relay(relay) => {
            let placement = placement(vec![Server::tcp(*relay)]);
            stream::iter(0..options.pairs)
                .map(|pair| {
                    let placement = &placement;
                    async move {
                        let key = u32::try_from(pair + 1).unwrap_or(u32::MAX);
                        let mut a =
                            Conn::connect(placement.server(0), placement.source(2 * pair)).await?;
                        let mut b =
                            Conn::connect(placement.server(0), placement.source(2 * pair + 1))
                                .await?;
                        a.queue_raw(&hello_frame(key));
                        b.queue_raw(&hello_frame(key));
                        a.flush().await?;
                        b.flush().await?;
                        Ok::<_, Error>((a, UserId(0), b, UserId(0)))
                    }
                })
                .buffered(setup::SETUP_CONCURRENCY)
                .try_collect()
                .await?
        }
        PairsTarget::Chatd(servers) => {
            if servers.is_empty() {
                return Err(Error::Options("no server given".into()));
            }
            let placement = placement(servers.clone());
            let prefix = setup::run_prefix();
            let node_count = servers.len();
            // End A of pair i on node i, end B on the next node, so with
            // several nodes every pair crosses nodes.
            let server_of = |index: usize| {
                let pair = index / 2;
                let node = if node_count > 1 { pair + index % 2 } else { 0 };
                servers[node % node_count].clone()
            };
            let sessions =
                setup::register_and_login(2 * options.pairs, &prefix, "p", &placement, server_of)
                    .await?;
            let mut sessions = sessions.into_iter();
            let mut couples = Vec::with_capacity(options.pairs);
            while let (Some(a), Some(b)) = (sessions.next(), sessions.next()) {
                couples.push((a, b));
            }
            stream::iter(couples)
                .map(
                    |((mut a, account_a, _), (mut b, account_b, _))| async move {
                        setup::befriend(&mut a, account_a.id, &mut b, account_b.id).await?;
                        Ok::<_, Error>((a, account_b.id, b, account_a.id))
                    },
                )
                .buffered(setup::SETUP_CONCURRENCY)
                .try_collect()
                .await?
        }
    };

    let streams = 2 * options.pairs;
    let start_ns = now_ns();
    let mut windows = Vec::with_capacity(streams);
    let mut units = Vec::with_capacity(options.pairs);
    for (pair, (a, to_b, b, to_a)) in ends.into_iter().enumerate() {
        let wake = Arc::new(Notify::new());
        let mut endpoints = Vec::with_capacity(2);
        for (side, conn, to) in [(0, a, to_b), (1, b, to_a)] {
            let stream = (2 * pair + side) as u64;
            let peer_stream = (2 * pair + 1 - side) as u64;
            let window = Arc::new(StreamWindow::new(
                u64::from(load.window),
                1,
                load.count,
                wake.clone(),
            ));
            let (interval, first_due) = load.schedule(stream as usize, streams, start_ns);
            let out = OutStream::new(
                stream,
                Target::User(to),
                window.clone(),
                interval,
                first_due,
            );
            windows.push(window);
            endpoints.push(Endpoint::new(conn, Some(out), &[peer_stream]));
        }
        units.push(Unit { endpoints, wake });
    }

    let (scenario, target) = match &options.target {
        PairsTarget::Relay(relay) => ("baseline", relay.to_string()),
        PairsTarget::Chatd(servers) => ("pairs", join_addrs(servers)),
    };
    let result = engine::run(units, windows, &load.engine_options(scenario), watcher).await;
    let mut report = Report::from_engine(scenario, &target, result);
    if let PairsTarget::Chatd(servers) = &options.target {
        note_transport(&mut report, servers);
    }
    report.param("pairs", options.pairs);
    report.load_params(load);
    Ok(report)
}

/// The `group` scenario: one group of `members`, the first `senders` of
/// them sending to it.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// chatd nodes; members are spread over them round-robin.
    pub servers: Vec<Server>,
    /// Members, the owner included (at least 2).
    pub members: usize,
    /// Members that send (at least 1, at most `members`).
    pub senders: usize,
    /// Connections driven by one task.
    pub conns_per_task: usize,
    /// How messages flow; the window counts a message in flight until every
    /// other member has it.
    pub load: LoadOptions,
}

/// Runs the `group` scenario.
///
/// # Errors
/// Invalid options or a failed setup.
pub async fn run_group(options: &GroupOptions) -> Result<Report> {
    options.load.validate()?;
    if options.members < 2 || options.members > 100_000 {
        return Err(Error::Options("members must be 2 to 100000".into()));
    }
    if options.senders == 0 || options.senders > options.members {
        return Err(Error::Options(
            "senders must be at least 1 and at most members".into(),
        ));
    }
    if options.servers.is_empty() {
        return Err(Error::Options("no server given".into()));
    }
    let load = &options.load;
    let placement = Placement {
        servers: options.servers.clone(),
        sources: load.sources.clone(),
    };
    let prefix = setup::run_prefix();
    let mut sessions = setup::register_and_login(options.members, &prefix, "g", &placement, |i| {
        placement.server(i).clone()
    })
    .await?;
    let group = setup::create_group(&mut sessions[0].0, &format!("{prefix}-bench")).await?;
    // Joins one at a time, draining the others between joins: every join is
    // pushed to every member already in, and members that nobody reads
    // during setup would otherwise fill their outboxes.
    for index in 1..sessions.len() {
        setup::join_group(&mut sessions[index].0, group).await?;
        for (conn, _, _) in &mut sessions {
            discard_pending(conn)?;
        }
    }

    let streams = options.senders;
    let receivers = u32::try_from(options.members - 1).unwrap_or(u32::MAX);
    let start_ns = now_ns();
    let per_task = options.conns_per_task.max(1);
    let mut windows = Vec::with_capacity(streams);
    let mut units = Vec::new();
    let mut sessions = sessions.into_iter().enumerate().peekable();
    while sessions.peek().is_some() {
        let wake = Arc::new(Notify::new());
        let mut endpoints = Vec::with_capacity(per_task);
        for (index, (conn, _, _)) in sessions.by_ref().take(per_task) {
            let out = (index < streams).then(|| {
                let window = Arc::new(StreamWindow::new(
                    u64::from(load.window),
                    receivers,
                    load.count,
                    wake.clone(),
                ));
                windows.push(window.clone());
                let (interval, first_due) = load.schedule(index, streams, start_ns);
                OutStream::new(
                    index as u64,
                    Target::Group(group),
                    window,
                    interval,
                    first_due,
                )
            });
            let expects: Vec<u64> = (0..streams as u64)
                .filter(|&stream| stream != index as u64)
                .collect();
            endpoints.push(Endpoint::new(conn, out, &expects));
        }
        units.push(Unit { endpoints, wake });
    }

    let result = engine::run(units, windows, &load.engine_options("group"), None).await;
    let mut report = Report::from_engine("group", &join_addrs(&options.servers), result);
    note_transport(&mut report, &options.servers);
    report.param("members", options.members);
    report.param("senders", options.senders);
    report.load_params(load);
    Ok(report)
}

/// Reads and drops whatever the server has pushed to an idle setup connection.
fn discard_pending(conn: &mut Conn) -> Result<()> {
    loop {
        match conn
            .try_read()
            .map_err(|error| Error::io("drain setup connection", error))?
        {
            crate::conn::ReadOutcome::Data(_) => while conn.next_frame()?.is_some() {},
            crate::conn::ReadOutcome::WouldBlock => return Ok(()),
            crate::conn::ReadOutcome::Closed => return Err(Error::Closed("group setup")),
        }
    }
}

/// `a,b,c` for a list of addresses.
#[must_use]
pub fn join_addrs(addrs: &[Server]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Records the transport of a run that did not use plain TCP, so that
/// `summarize` keeps TLS and WebSocket runs apart from TCP ones (and TCP
/// runs keep the parameters they always had).
pub(crate) fn note_transport(report: &mut Report, servers: &[Server]) {
    let mut names: Vec<&str> = servers.iter().map(Server::transport_name).collect();
    names.dedup();
    if names.iter().any(|name| *name != "tcp") {
        report.param("transport", names.join(","));
    }
}

/// The loopback source addresses 127.0.0.1 to 127.0.0.`count`.
#[must_use]
pub fn loopback_sources(count: usize) -> Vec<IpAddr> {
    (1..=count.clamp(1, 254))
        .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last as u8)))
        .collect()
}
