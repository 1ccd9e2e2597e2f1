//! The text the bench puts in every message body, and the clock it stamps.
//!
//! A body reads `STREAM:SEQ:SENT_NS:` followed by padding, where `STREAM` is
//! the sending stream's id (unique in the run), `SEQ` the stream's own
//! sequence number (from 1, gap-free) and `SENT_NS` the send time in
//! nanoseconds on [`now_ns`]'s clock. The receiver needs nothing else to
//! check order, loss and duplication and to measure end-to-end latency, so
//! the same check works against chatd (whose push wraps the body in a stored
//! message) and against the bare relay (which forwards the send request).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use chat_proto::Target;

/// Nanoseconds since this process first asked. Monotonic; every sender and
/// receiver of a run lives in one process, so the values compare.
#[must_use]
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The [`now_ns`] value of an instant (0 for instants before the epoch).
#[must_use]
pub fn instant_ns(instant: Instant) -> u64 {
    let now = Instant::now();
    let current = now_ns();
    if instant >= now {
        current.saturating_add(u64::try_from((instant - now).as_nanos()).unwrap_or(u64::MAX))
    } else {
        current.saturating_sub(u64::try_from((now - instant).as_nanos()).unwrap_or(u64::MAX))
    }
}

/// Microseconds between a stamp and now, never negative.
#[must_use]
pub fn micros_since(sent_ns: u64) -> u64 {
    now_ns().saturating_sub(sent_ns) / 1_000
}

/// What a body says about its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sending stream.
    pub stream: u64,
    /// The stream's sequence number, from 1.
    pub seq: u64,
    /// When it was sent (or, at a fixed rate, when it was due), on [`now_ns`]'s clock.
    pub sent_ns: u64,
}

/// Writes the body for `stamp` into `out` (cleared first), padded with `x`
/// to at least `min_len` bytes.
pub fn write_body(out: &mut String, stamp: Stamp, min_len: usize) {
    out.clear();
    // Writing to a String cannot fail.
    let _ = write!(out, "{}:{}:{}:", stamp.stream, stamp.seq, stamp.sent_ns);
    while out.len() < min_len {
        out.push('x');
    }
}

/// Reads a body written by [`write_body`]; `None` for anything else.
#[must_use]
pub fn parse_body(body: &str) -> Option<Stamp> {
    let mut parts = body.splitn(4, ':');
    let stream = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let sent_ns = parts.next()?.parse().ok()?;
    // The fourth part (the padding) must exist: it proves the third field
    // was not cut short.
    parts.next()?;
    Some(Stamp {
        stream,
        seq,
        sent_ns,
    })
}

/// The `send` request as the hot loop writes it: borrowed strings, so
/// encoding allocates nothing. Same JSON as [`chat_proto::SendRequest`].
#[derive(Debug, Serialize)]
pub(crate) struct SendView<'a> {
    pub to: Target,
    pub client_msg_id: &'a str,
    pub body: &'a str,
}

/// The fields of a `push_message` the receiver needs. Unknown fields are
/// skipped, so this also reads the relay's forwarded send request, which has
/// a `body` but no conversation or server sequence number.
#[derive(Debug, Deserialize)]
pub(crate) struct PushView<'a> {
    #[serde(borrow)]
    pub body: Cow<'a, str>,
    #[serde(default)]
    pub conversation_id: Option<u64>,
    #[serde(default)]
    pub seq: Option<u64>,
}

/// The interval between sends for one stream at `rate` messages per second
/// shared by `streams` streams.
#[must_use]
pub fn stream_interval(rate: f64, streams: usize) -> Duration {
    Duration::from_secs_f64(streams.max(1) as f64 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips_and_is_padded() {
        let stamp = Stamp {
            stream: 7,
            seq: 42,
            sent_ns: 123_456_789,
        };
        let mut body = String::new();
        write_body(&mut body, stamp, 64);
        assert_eq!(body.len(), 64);
        assert!(body.starts_with("7:42:123456789:"));
        assert_eq!(parse_body(&body), Some(stamp));
        write_body(&mut body, stamp, 0);
        assert_eq!(body, "7:42:123456789:");
        assert_eq!(parse_body(&body), Some(stamp));
    }

    #[test]
    fn foreign_bodies_are_not_stamps() {
        for text in ["", "hello", "1:2", "1:2:3", "a:2:3:", "1:-2:3:", "1:2:3x:"] {
            assert_eq!(parse_body(text), None, "{text:?}");
        }
    }

    #[test]
    fn push_view_reads_a_stored_message_and_a_forwarded_send() {
        let stored = br#"{"conversation_id":3,"seq":9,"sender_id":1,"sender_name":"a",
            "target":{"user":2},"client_msg_id":"m","body":"1:2:3:","server_ts_ms":5}"#;
        let view: PushView<'_> = serde_json::from_slice(stored).unwrap();
        assert_eq!((view.conversation_id, view.seq), (Some(3), Some(9)));
        assert!(matches!(view.body, Cow::Borrowed("1:2:3:")));
        let forwarded = br#"{"to":{"user":0},"client_msg_id":"m","body":"1:2:3:xx"}"#;
        let view: PushView<'_> = serde_json::from_slice(forwarded).unwrap();
        assert_eq!(view.conversation_id, None);
        assert_eq!(parse_body(&view.body).unwrap().seq, 2);
    }

    #[test]
    fn clock_is_monotonic_and_instants_map_onto_it() {
        let before = now_ns();
        let later = Instant::now() + Duration::from_millis(5);
        let mapped = instant_ns(later);
        assert!(mapped >= before + 4_000_000);
        assert!(now_ns() >= before);
    }
}
