//! Where `client_msg_id`s come from.

use std::sync::atomic::{AtomicU64, Ordering};

/// Makes `client_msg_id`s unique for one sender: a random prefix (16 hex
/// digits) drawn once, and a counter. A resend reuses an id on purpose; a
/// new message never does.
#[derive(Debug)]
pub(crate) struct ClientMsgIds {
    prefix: String,
    next: AtomicU64,
}

impl ClientMsgIds {
    /// A source with a fresh random prefix.
    pub(crate) fn new() -> Self {
        let mut prefix_bytes = [0u8; 8];
        rand::Rng::fill(&mut rand::thread_rng(), &mut prefix_bytes);
        ClientMsgIds {
            prefix: prefix_bytes.iter().map(|b| format!("{b:02x}")).collect(),
            next: AtomicU64::new(1),
        }
    }

    /// The next id.
    pub(crate) fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.prefix)
    }
}
