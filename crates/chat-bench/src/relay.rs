//! The bare relay: the ceiling chatd is measured against.
//!
//! It speaks the same 16-byte framing and nothing more: no storage, no
//! routing table, no JSON. A connection's first frame is a hello whose
//! request id is a pair key; two connections with the same key become a
//! pair, and from then on every frame one end sends is answered to it (a
//! response with the same type and request id, as chatd acknowledges a
//! send) and forwarded unchanged to the other end as a `push_message`, as
//! chatd delivers it. One task drives both sockets of a pair, so the relay
//! costs what the loopback and the syscalls cost, and little else.

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use chat_proto::{Flags, Header, MessageType, HEADER_LEN};

use crate::conn::{Conn, ReadOutcome};
use crate::error::{Error, Result};

/// The message type of the hello frame that names a connection's pair.
pub const HELLO_TYPE: u16 = 0x7f01;

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes a pair may have waiting to be written to one end before the relay
/// gives up on it: a client that stops reading costs a bounded amount.
const MAX_PENDING_WRITE: usize = 16 * 1024 * 1024;

/// The payload of every answer: the relay acknowledges, it does not parse.
const ANSWER_PAYLOAD: &[u8] = b"{}";

/// The hello frame a client sends first to join pair `key`.
#[must_use]
pub fn hello_frame(key: u32) -> BytesMut {
    let mut buf = BytesMut::with_capacity(HEADER_LEN);
    Header {
        flags: Flags::REQUEST,
        message_type: HELLO_TYPE,
        status: 0,
        request_id: key,
        length: 0,
    }
    .write_to(&mut buf);
    buf
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

type Waiting = Arc<Mutex<HashMap<u32, Conn>>>;

impl Relay {
    /// Starts a relay listening on `listen` (port 0 picks a free one).
    ///
    /// # Errors
    /// [`Error::Io`] when the address cannot be bound.
    pub async fn start(listen: SocketAddr) -> Result<Relay> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|error| Error::io(format!("listen on {listen}"), error))?;
        let local_addr = listener
            .local_addr()
            .map_err(|error| Error::io("local address", error))?;
        let (shutdown, stop) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, stop));
        Ok(Relay {
            local_addr,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// The address it listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes every connection.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, mut stop: oneshot::Receiver<()>) {
    let waiting: Waiting = Arc::default();
    // Dropping the set when the loop ends aborts every pair.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(greet(Conn::from_stream(stream), waiting.clone()));
                }
                // Out of descriptors or a connection reset before accept:
                // pause briefly instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Reads the hello, then either parks the connection until its partner
/// arrives or relays the completed pair.
async fn greet(mut conn: Conn, waiting: Waiting) {
    let Ok(frame) = conn.read_frame_within("hello", HELLO_TIMEOUT).await else {
        return;
    };
    if frame.header.message_type != HELLO_TYPE {
        return;
    }
    let key = frame.header.request_id;
    let partner = {
        // A std mutex: the critical section is one map operation and never awaits.
        let mut waiting = waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match waiting.remove(&key) {
            Some(partner) => partner,
            None => {
                waiting.insert(key, conn);
                return;
            }
        }
    };
    relay_pair([partner, conn]).await;
}

/// Answers and forwards frames between the two ends until either closes or
/// breaks the framing rules.
async fn relay_pair(mut ends: [Conn; 2]) {
    // Bytes read before the pair was complete are already in the buffers.
    let mut readable = [true, true];
    loop {
        for side in 0..2 {
            if !readable[side] {
                continue;
            }
            readable[side] = false;
            match ends[side].try_read() {
                Ok(ReadOutcome::Closed) | Err(_) => return,
                Ok(ReadOutcome::Data(_) | ReadOutcome::WouldBlock) => {}
            }
            let (left, right) = ends.split_at_mut(1);
            let (from, to) = if side == 0 {
                (&mut left[0], &mut right[0])
            } else {
                (&mut right[0], &mut left[0])
            };
            loop {
                match from.next_frame() {
                    Ok(Some(frame)) => {
                        let header = frame.header;
                        from.queue_frame(
                            Flags::RESPONSE,
                            header.message_type,
                            0,
                            header.request_id,
                            ANSWER_PAYLOAD,
                        );
                        to.queue_frame(
                            Flags::PUSH,
                            MessageType::PushMessage.code(),
                            0,
                            0,
                            &frame.payload,
                        );
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
        for end in &mut ends {
            if end.try_flush().is_err() || end.pending_write_len() > MAX_PENDING_WRITE {
                return;
            }
        }
        poll_fn(|cx| {
            let mut any = false;
            for (side, end) in ends.iter_mut().enumerate() {
                if end.poll_read_ready(cx).is_ready() {
                    readable[side] = true;
                    any = true;
                }
                if end.has_pending_writes() && end.poll_write_ready(cx).is_ready() {
                    any = true;
                }
            }
            if any {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}
