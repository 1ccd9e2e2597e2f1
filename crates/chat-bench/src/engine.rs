//! The message engine shared by the `pairs`, `group` and baseline scenarios.
//!
//! A run is a set of *streams* (one sender, a target, and a window) and of
//! *endpoints* (one connection each, sending at most one stream and
//! receiving some). Endpoints are grouped into *units*: one task per unit,
//! driving all its sockets by readiness, so the two ends of a pair live in
//! one task and a delivery frees the sender's window without crossing
//! threads. Across units a stream's window is a ring of atomic counters.
//!
//! A message is in flight from its send until the sender has the server's
//! answer *and* every receiver has it; each stream has at most `window`
//! messages without an answer, and sends message `n` only once message
//! `n - window` has reached every receiver. `window = 1` is a closed loop.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use chat_proto::{AckRequest, ConversationId, Frame, MessageType, Seq, Status, Target};

use crate::conn::{Conn, ReadOutcome};
use crate::payload::{micros_since, now_ns, parse_body, write_body, PushView, SendView, Stamp};
use crate::progress::Progress;
use crate::stats::{record, Live, Stats};
use crate::sustained::{read_cpu_ticks, TICKS_PER_SEC};
use crate::tracker::{Arrival, StreamTracker};

/// The shared state of one stream: what its sender did and how far each of
/// its messages has got.
#[derive(Debug)]
pub(crate) struct StreamWindow {
    window: u64,
    receivers: u32,
    /// Slot `seq % window`: receivers that have message `seq`.
    slots: Box<[AtomicU32]>,
    sent: AtomicU64,
    acknowledged: AtomicU64,
    rejected: AtomicU64,
    /// Messages that reached every receiver.
    completed: AtomicU64,
    max_messages: u64,
    /// Wakes the sender's unit when a slot completes.
    sender_wake: Arc<Notify>,
}

impl StreamWindow {
    pub(crate) fn new(
        window: u64,
        receivers: u32,
        max_messages: u64,
        sender_wake: Arc<Notify>,
    ) -> Self {
        Self {
            window,
            receivers,
            slots: (0..window).map(|_| AtomicU32::new(0)).collect(),
            sent: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            max_messages,
            sender_wake,
        }
    }

    fn slot(&self, seq: u64) -> &AtomicU32 {
        &self.slots[(seq % self.window) as usize]
    }

    /// Whether message `seq` may be sent: message `seq - window` has reached
    /// every receiver (or was refused, so it never will).
    fn may_send(&self, seq: u64) -> bool {
        seq <= self.window || self.slot(seq).load(Ordering::Acquire) >= self.receivers
    }

    fn claim(&self, seq: u64) {
        self.slot(seq).store(0, Ordering::Release);
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn delivered(&self, seq: u64) {
        if self.slot(seq).fetch_add(1, Ordering::AcqRel) + 1 == self.receivers {
            self.completed.fetch_add(1, Ordering::Relaxed);
            self.sender_wake.notify_one();
        }
    }

    fn acknowledged(&self) {
        self.acknowledged.fetch_add(1, Ordering::Relaxed);
    }

    fn rejected(&self, seq: u64) {
        // Nobody will receive it; free its slot.
        self.slot(seq).store(self.receivers, Ordering::Release);
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages the server did not refuse: each should reach every receiver.
    pub(crate) fn accepted(&self) -> u64 {
        self.sent
            .load(Ordering::Relaxed)
            .saturating_sub(self.rejected.load(Ordering::Relaxed))
    }

    /// Whether everything sent is answered and has reached every receiver.
    fn drained(&self) -> bool {
        let sent = self.sent.load(Ordering::Relaxed);
        let rejected = self.rejected.load(Ordering::Relaxed);
        self.acknowledged.load(Ordering::Relaxed) + rejected >= sent
            && self.completed.load(Ordering::Relaxed) + rejected >= sent
    }

    fn finished_sending(&self) -> bool {
        self.sent.load(Ordering::Relaxed) >= self.max_messages
    }
}

/// A send awaiting the server's answer.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    request_id: u32,
    seq: u64,
    sent_ns: u64,
}

/// The sending side of a stream, owned by its endpoint.
#[derive(Debug)]
pub(crate) struct OutStream {
    id: u64,
    to: Target,
    window: Arc<StreamWindow>,
    next_seq: u64,
    /// Fixed rate: the interval and the next due time on the payload clock.
    interval_ns: Option<u64>,
    next_due_ns: u64,
    outstanding: VecDeque<Outstanding>,
    client_msg_id: String,
    body: String,
}

impl OutStream {
    /// Stream `id` to `to`, first due at `first_due_ns` when `interval` is set.
    pub(crate) fn new(
        id: u64,
        to: Target,
        window: Arc<StreamWindow>,
        interval: Option<Duration>,
        first_due_ns: u64,
    ) -> Self {
        Self {
            id,
            to,
            window,
            next_seq: 1,
            interval_ns: interval.map(|interval| interval.as_nanos().max(1) as u64),
            next_due_ns: first_due_ns,
            outstanding: VecDeque::new(),
            client_msg_id: String::new(),
            body: String::new(),
        }
    }
}

/// What a stream can do now.
enum SendState {
    /// Send now, stamped with this time.
    Ready(u64),
    /// Wait for answers or deliveries.
    WindowFull,
    /// Wait until this time on the payload clock.
    NotDue(u64),
    /// The stream sent its last message.
    Finished,
}

/// One connection of a run.
#[derive(Debug)]
pub(crate) struct Endpoint {
    conn: Conn,
    out: Option<OutStream>,
    /// The streams this endpoint receives, each with its check.
    expects: HashMap<u64, StreamTracker>,
    /// The highest server sequence number seen per conversation.
    conversation_seq: HashMap<u64, u64>,
    /// The highest server sequence number seen per incoming stream.
    stream_server_seq: HashMap<u64, u64>,
    deliveries_since_ack: u32,
    closed: bool,
    readable: bool,
}

impl Endpoint {
    /// An endpoint on `conn` sending `out` and receiving `expects`.
    pub(crate) fn new(conn: Conn, out: Option<OutStream>, expects: &[u64]) -> Self {
        Self {
            conn,
            out,
            expects: expects
                .iter()
                .map(|&stream| (stream, StreamTracker::new()))
                .collect(),
            conversation_seq: HashMap::new(),
            stream_server_seq: HashMap::new(),
            deliveries_since_ack: 0,
            closed: false,
            readable: false,
        }
    }
}

/// The endpoints one task drives, and the wake-up its streams' receivers use.
#[derive(Debug)]
pub(crate) struct Unit {
    pub endpoints: Vec<Endpoint>,
    pub wake: Arc<Notify>,
}

/// How a run is driven.
#[derive(Debug, Clone)]
pub(crate) struct EngineOptions {
    pub duration: Duration,
    pub drain_timeout: Duration,
    pub body_len: usize,
    /// Receivers acknowledge every this many deliveries (0: never).
    pub ack_every: u32,
    pub label: String,
    pub show_progress: bool,
    /// The server's process, whose CPU time over the run is measured.
    pub server_pid: Option<u32>,
}

/// The phases of a run, broadcast to every unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Draining,
    Finished,
}

/// What a run measured.
#[derive(Debug)]
pub(crate) struct EngineResult {
    pub stats: Stats,
    /// From the start to the moment every message was answered and
    /// delivered (or to the stop, when draining timed out).
    pub elapsed: Duration,
    /// Whether everything in flight at the stop arrived before the drain timeout.
    pub drained: bool,
    /// The server's CPU time (every thread, user and system) over the
    /// same span as `elapsed`, when its process was given and readable.
    pub server_cpu_secs: Option<f64>,
}

/// Something that watches a run while it sends (the `sustained` scenario's
/// per-interval figures). The engine calls it from its coordinating loop,
/// so it must be quick: reading a few small files is fine.
pub(crate) trait Watcher: Send {
    /// The units are about to start sending.
    fn start(&mut self, progress: &Progress);
    /// Called about every 20 ms while sending, with the time since the start
    /// and the live counters.
    fn poll(&mut self, elapsed: Duration, live: &Live, progress: &Progress);
    /// Sending stopped (draining is not watched).
    fn stop(&mut self, elapsed: Duration, live: &Live, progress: &Progress);
}

struct Shared {
    windows: Vec<Arc<StreamWindow>>,
    live: Arc<Live>,
    body_len: usize,
    ack_every: u32,
}

/// Runs the units until the duration passes or every stream has sent its
/// count, then drains, then stops them and totals what they counted.
/// `watcher`, if given, sees the live counters while the units send.
pub(crate) async fn run(
    units: Vec<Unit>,
    windows: Vec<Arc<StreamWindow>>,
    options: &EngineOptions,
    mut watcher: Option<&mut dyn Watcher>,
) -> EngineResult {
    let live = Arc::new(Live::default());
    let shared = Arc::new(Shared {
        windows,
        live: live.clone(),
        body_len: options.body_len,
        ack_every: options.ack_every,
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let progress = Progress::start(
        &options.label,
        options.duration,
        live.clone(),
        options.show_progress,
    );
    if let Some(watcher) = watcher.as_mut() {
        watcher.start(&progress);
    }
    // The server's CPU time is read before the units start and again when
    // the run ends, so the setup (argon2 for every account) is not counted.
    let cpu_before = options
        .server_pid
        .and_then(|pid| Some((pid, read_cpu_ticks(pid).ok()?)));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for unit in units {
        tasks.spawn(run_unit(unit, shared.clone(), phase_rx.clone()));
    }

    let poll = Duration::from_millis(20);
    while start.elapsed() < options.duration
        && !shared
            .windows
            .iter()
            .all(|window| window.finished_sending())
    {
        tokio::time::sleep(poll.min(options.duration.saturating_sub(start.elapsed()))).await;
        if let Some(watcher) = watcher.as_mut() {
            watcher.poll(start.elapsed(), &live, &progress);
        }
    }
    let stopped = Instant::now();
    if let Some(watcher) = watcher.as_mut() {
        watcher.stop(stopped - start, &live, &progress);
    }
    let _ = phase_tx.send(Phase::Draining);
    progress.set_message("draining");
    let drain_deadline = stopped + options.drain_timeout;
    let mut drained = shared.windows.iter().all(|window| window.drained());
    while !drained && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
        drained = shared.windows.iter().all(|window| window.drained());
    }
    let end = if drained { Instant::now() } else { stopped };
    let server_cpu_secs = cpu_before.and_then(|(pid, before)| {
        let after = read_cpu_ticks(pid).ok()?;
        Some(after.saturating_sub(before) as f64 / TICKS_PER_SEC)
    });
    let _ = phase_tx.send(Phase::Finished);

    let mut stats = Stats::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((unit_stats, trackers)) => {
                stats.merge(&unit_stats);
                for (stream, tracker) in trackers {
                    stats.lost += tracker.lost(shared.windows[stream as usize].accepted());
                }
            }
            Err(error) => stats.error(format!("task failed: {error}")),
        }
    }
    progress.finish();
    EngineResult {
        stats,
        elapsed: end - start,
        drained,
        server_cpu_secs,
    }
}

/// One unit's task: writes what its streams may send, reads what arrives,
/// until told to finish. Returns its counts and each receiver's trackers.
async fn run_unit(
    mut unit: Unit,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> (Stats, Vec<(u64, StreamTracker)>) {
    let mut stats = Stats::new();
    let mut sending = true;
    loop {
        match *phase.borrow_and_update() {
            Phase::Running => {}
            Phase::Draining => sending = false,
            Phase::Finished => break,
        }
        let mut wait_window = false;
        let mut next_due_ns: Option<u64> = None;
        if sending {
            for endpoint in unit.endpoints.iter_mut().filter(|e| !e.closed) {
                let (wait, due) = queue_sends(endpoint, &shared, &mut stats);
                wait_window |= wait;
                if let Some(due) = due {
                    next_due_ns = Some(next_due_ns.map_or(due, |current| current.min(due)));
                }
            }
        }
        for endpoint in unit.endpoints.iter_mut().filter(|e| !e.closed) {
            if let Err(error) = endpoint.conn.try_flush() {
                close(endpoint, &mut stats, &format!("write: {}", error.kind()));
            }
        }
        if unit.endpoints.iter().all(|endpoint| endpoint.closed) {
            // Nothing left to drive; wait for the end of the run.
            if phase.changed().await.is_err() {
                break;
            }
            continue;
        }

        let sleep_for = next_due_ns.map(|due| Duration::from_nanos(due.saturating_sub(now_ns())));
        let endpoints = &mut unit.endpoints;
        tokio::select! {
            biased;
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            () = poll_fn(|cx| {
                let mut any = false;
                for endpoint in endpoints.iter_mut().filter(|e| !e.closed) {
                    if endpoint.conn.poll_read_ready(cx).is_ready() {
                        endpoint.readable = true;
                        any = true;
                    }
                    if endpoint.conn.has_pending_writes()
                        && endpoint.conn.poll_write_ready(cx).is_ready()
                    {
                        any = true;
                    }
                }
                if any { Poll::Ready(()) } else { Poll::Pending }
            }) => {}
            () = unit.wake.notified(), if wait_window => {}
            () = tokio::time::sleep(sleep_for.unwrap_or_default()), if sleep_for.is_some() => {}
        }

        for endpoint in unit.endpoints.iter_mut() {
            if endpoint.readable && !endpoint.closed {
                endpoint.readable = false;
                read_and_handle(endpoint, &shared, &mut stats);
            }
        }
    }
    let mut trackers = Vec::new();
    for endpoint in unit.endpoints {
        trackers.extend(endpoint.expects);
    }
    (stats, trackers)
}

fn close(endpoint: &mut Endpoint, stats: &mut Stats, why: &str) {
    endpoint.closed = true;
    stats.connection_errors += 1;
    stats.error(format!("connection: {why}"));
}

/// Queues every send the endpoint's stream may make now. Returns whether it
/// waits on its window and when it is next due.
fn queue_sends(endpoint: &mut Endpoint, shared: &Shared, stats: &mut Stats) -> (bool, Option<u64>) {
    let Some(out) = endpoint.out.as_mut() else {
        return (false, None);
    };
    loop {
        let state = if out.next_seq > out.window.max_messages {
            SendState::Finished
        } else if out.outstanding.len() as u64 >= out.window.window
            || !out.window.may_send(out.next_seq)
        {
            SendState::WindowFull
        } else if let Some(interval) = out.interval_ns {
            let now = now_ns();
            if now < out.next_due_ns {
                SendState::NotDue(out.next_due_ns)
            } else {
                // Stamp the due time, not the send time: a sender that falls
                // behind its schedule must show up as latency (no
                // coordinated omission).
                let due = out.next_due_ns;
                out.next_due_ns += interval;
                SendState::Ready(due)
            }
        } else {
            SendState::Ready(now_ns())
        };
        match state {
            SendState::Ready(sent_ns) => {
                let seq = out.next_seq;
                out.next_seq += 1;
                write_body(
                    &mut out.body,
                    Stamp {
                        stream: out.id,
                        seq,
                        sent_ns,
                    },
                    shared.body_len,
                );
                out.client_msg_id.clear();
                // Writing to a String cannot fail.
                let _ = write!(out.client_msg_id, "b{}-{}", out.id, seq);
                let view = SendView {
                    to: out.to,
                    client_msg_id: &out.client_msg_id,
                    body: &out.body,
                };
                match endpoint.conn.queue_json(MessageType::Send, &view) {
                    Ok(request_id) => {
                        out.window.claim(seq);
                        out.outstanding.push_back(Outstanding {
                            request_id,
                            seq,
                            sent_ns,
                        });
                        stats.sent += 1;
                        Live::add(&shared.live.sent, 1);
                    }
                    Err(error) => {
                        stats.error(format!("encode: {error}"));
                        return (false, None);
                    }
                }
            }
            SendState::WindowFull => return (true, None),
            SendState::NotDue(due) => return (false, Some(due)),
            SendState::Finished => return (false, None),
        }
    }
}

/// Reads what the socket has and handles every whole frame.
fn read_and_handle(endpoint: &mut Endpoint, shared: &Shared, stats: &mut Stats) {
    match endpoint.conn.try_read() {
        Ok(ReadOutcome::Data(_)) => {}
        Ok(ReadOutcome::WouldBlock) => return,
        Ok(ReadOutcome::Closed) => {
            close(endpoint, stats, "closed by the server");
            return;
        }
        Err(error) => {
            close(endpoint, stats, &format!("read: {}", error.kind()));
            return;
        }
    }
    loop {
        match endpoint.conn.next_frame() {
            Ok(Some(frame)) => handle_frame(endpoint, &frame, shared, stats),
            Ok(None) => break,
            Err(error) => {
                close(endpoint, stats, &format!("bad frame: {error}"));
                break;
            }
        }
    }
}

const SEND: u16 = MessageType::Send as u16;
const ACK: u16 = MessageType::Ack as u16;
const PUSH_MESSAGE: u16 = MessageType::PushMessage as u16;
const PUSH_SESSION_ENDED: u16 = MessageType::PushSessionEnded as u16;

fn status_name(code: u16) -> String {
    Status::from_code(code).map_or_else(|| format!("status {code}"), |s| s.name().to_owned())
}

fn handle_frame(endpoint: &mut Endpoint, frame: &Frame, shared: &Shared, stats: &mut Stats) {
    let header = &frame.header;
    if header.flags.is_response() {
        match header.message_type {
            SEND => handle_send_answer(endpoint, frame, shared, stats),
            ACK if header.status != 0 => {
                stats.error(format!("ack: {}", status_name(header.status)))
            }
            ACK => {}
            other => stats.error(format!("unexpected response of type {other:#06x}")),
        }
    } else if header.flags.is_push() {
        match header.message_type {
            PUSH_MESSAGE => handle_delivery(endpoint, frame, shared, stats),
            PUSH_SESSION_ENDED => stats.error("session ended by the server"),
            // Presence, friend and group events are not what this measures.
            _ => {}
        }
    } else {
        stats.error("request frame from the server");
    }
}

fn handle_send_answer(endpoint: &mut Endpoint, frame: &Frame, shared: &Shared, stats: &mut Stats) {
    let header = &frame.header;
    let Some(out) = endpoint.out.as_mut() else {
        stats.error("send answer on a receive-only connection");
        return;
    };
    let Some(position) = out
        .outstanding
        .iter()
        .position(|o| o.request_id == header.request_id)
    else {
        stats.error("send answer for an unknown request id");
        return;
    };
    let outstanding = out.outstanding.remove(position).unwrap_or(Outstanding {
        request_id: 0,
        seq: 0,
        sent_ns: 0,
    });
    if header.status == 0 {
        stats.acknowledged += 1;
        record(&mut stats.ack_latency, micros_since(outstanding.sent_ns));
        out.window.acknowledged();
        Live::add(&shared.live.acknowledged, 1);
    } else {
        stats.rejected += 1;
        stats.error(format!("send: {}", status_name(header.status)));
        out.window.rejected(outstanding.seq);
        Live::add(&shared.live.failures, 1);
    }
}

fn handle_delivery(endpoint: &mut Endpoint, frame: &Frame, shared: &Shared, stats: &mut Stats) {
    let Ok(view) = serde_json::from_slice::<PushView<'_>>(&frame.payload) else {
        stats.unexpected += 1;
        return;
    };
    let Some(stamp) = parse_body(&view.body) else {
        stats.unexpected += 1;
        return;
    };
    let Some(tracker) = endpoint.expects.get_mut(&stamp.stream) else {
        stats.unexpected += 1;
        return;
    };
    match tracker.observe(stamp.seq) {
        Arrival::Duplicate => {
            stats.duplicated += 1;
            Live::add(&shared.live.failures, 1);
            return;
        }
        Arrival::Late => {
            stats.out_of_order += 1;
            Live::add(&shared.live.failures, 1);
        }
        Arrival::InOrder => {}
    }
    stats.delivered += 1;
    Live::add(&shared.live.delivered, 1);
    record(&mut stats.latency, micros_since(stamp.sent_ns));
    if let Some(window) = shared.windows.get(stamp.stream as usize) {
        window.delivered(stamp.seq);
    }
    if let (Some(conversation), Some(seq)) = (view.conversation_id, view.seq) {
        // One sender's messages must get rising numbers, in the order sent.
        let last_of_stream = endpoint.stream_server_seq.entry(stamp.stream).or_insert(0);
        if seq <= *last_of_stream {
            stats.server_seq_regressions += 1;
        } else {
            *last_of_stream = seq;
        }
        // Across senders the protocol lets pushes overtake each other; count
        // it, as a fact about the server, without failing the run.
        let last = endpoint.conversation_seq.entry(conversation).or_insert(0);
        if seq < *last {
            stats.overtaken += 1;
        } else {
            *last = seq;
        }
        if shared.ack_every > 0 {
            endpoint.deliveries_since_ack += 1;
            if endpoint.deliveries_since_ack >= shared.ack_every {
                endpoint.deliveries_since_ack = 0;
                let ack = AckRequest {
                    conversation_id: ConversationId(conversation),
                    seq: Seq(*last),
                };
                if let Err(error) = endpoint.conn.queue_json(MessageType::Ack, &ack) {
                    stats.error(format!("encode: {error}"));
                }
            }
        }
    }
}
