//! `tokio_util` codec adapters over [`frame::decode`](crate::frame::decode).

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::FrameError;
use crate::frame::{self, Frame, DEFAULT_MAX_PAYLOAD};

/// Frames a byte stream, for use with `tokio_util::codec::Framed`.
///
/// Decoding yields [`Frame`]s; encoding accepts whole [`Frame`]s or bytes that
/// already hold one or more encoded frames (a push encoded once and sent to
/// many sessions).
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_payload: usize,
}

impl FrameCodec {
    /// A codec that rejects payloads longer than `max_payload` bytes.
    #[must_use]
    pub fn new(max_payload: usize) -> Self {
        Self { max_payload }
    }

    /// The payload limit.
    #[must_use]
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        frame::decode(src, self.max_payload)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        item.write_to(dst);
        Ok(())
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}
