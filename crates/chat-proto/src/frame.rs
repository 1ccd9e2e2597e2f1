//! Frames: the 16-byte header and the payload after it.
//!
//! Decoding is a pure function over a byte buffer. [`check`] looks at the
//! buffered bytes and says whether a whole, valid frame is there; it rejects a
//! bad header or an over-long length from the header alone, before any of the
//! body is buffered. [`decode`] then cuts the frame out of the buffer without
//! copying the payload.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::error::{FrameError, MessageError};
use crate::status::Status;

/// The two magic bytes at the start of every frame: `"CH"`.
pub const MAGIC: u16 = 0x4348;
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// The size of the fixed header in bytes.
pub const HEADER_LEN: usize = 16;
/// The default limit on a frame's payload: 64 KiB. This is what a server
/// accepts from clients.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;
/// Message bodies one `sync` or `history` page carries at most, in bytes
/// (1 MiB): the server ends a page early (with `has_more`) rather than go
/// past it, but always carries at least one message, so paging progresses.
pub const PAGE_BODY_BUDGET: usize = 1024 * 1024;

/// The payload limit a client should decode server frames with: 8 MiB.
///
/// Replies are not bound by [`DEFAULT_MAX_PAYLOAD`]. The largest is a page
/// of `sync` or `history`: at most [`PAGE_BODY_BUDGET`] of message bodies,
/// which JSON escaping can grow sixfold (a control character becomes
/// `\u0001`), plus under a kilobyte of other fields for each of at most
/// 1000 messages: under 7 MiB in the worst case.
pub const CLIENT_MAX_PAYLOAD: usize = 8 * 1024 * 1024;

/// The most cursors a `sync` request may carry. A request with this many
/// cursors fits in [`DEFAULT_MAX_PAYLOAD`] whatever their ids (below 2^53,
/// as ids handed out by a server are), so a client never meets `too_large`
/// before this limit.
pub const SYNC_MAX_CURSORS: usize = 1000;

/// The `flags` byte of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(u8);

impl Flags {
    /// A request from client to server: no bits set.
    pub const REQUEST: Flags = Flags(0);
    /// Bit 0: this frame answers a request.
    pub const RESPONSE: Flags = Flags(0b01);
    /// Bit 1: this frame is a server-initiated push.
    pub const PUSH: Flags = Flags(0b10);
    const KNOWN: u8 = 0b11;

    /// The flags from a raw byte.
    ///
    /// # Errors
    /// [`FrameError::ReservedFlags`] when a reserved bit is set or when both
    /// RESPONSE and PUSH are set.
    pub fn from_bits(bits: u8) -> Result<Flags, FrameError> {
        if bits & !Self::KNOWN != 0 || bits == Self::KNOWN {
            return Err(FrameError::ReservedFlags(bits));
        }
        Ok(Flags(bits))
    }

    /// The raw byte.
    #[must_use]
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether the RESPONSE bit is set.
    #[must_use]
    pub fn is_response(self) -> bool {
        self.0 & Self::RESPONSE.0 != 0
    }

    /// Whether the PUSH bit is set.
    #[must_use]
    pub fn is_push(self) -> bool {
        self.0 & Self::PUSH.0 != 0
    }

    /// Whether neither bit is set, i.e. a request.
    #[must_use]
    pub fn is_request(self) -> bool {
        self.0 == 0
    }
}

/// The fixed 16-byte frame header. All integers are big-endian on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Request, response or push.
    pub flags: Flags,
    /// The message type code (see [`MessageType`](crate::message::MessageType)).
    pub message_type: u16,
    /// The status code: 0 in requests and pushes, the result in responses.
    pub status: u16,
    /// Chosen by the client, non-zero, echoed in the response; 0 in pushes.
    pub request_id: u32,
    /// The payload length in bytes.
    pub length: u32,
}

impl Header {
    /// Writes the header in wire order.
    pub fn write_to(&self, buf: &mut impl BufMut) {
        buf.put_u16(MAGIC);
        buf.put_u8(VERSION);
        buf.put_u8(self.flags.bits());
        buf.put_u16(self.message_type);
        buf.put_u16(self.status);
        buf.put_u32(self.request_id);
        buf.put_u32(self.length);
    }
}

/// One whole frame: a header and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header, with `length` equal to `payload.len()`.
    pub header: Header,
    /// The payload bytes (JSON).
    pub payload: Bytes,
}

impl Frame {
    /// Writes the frame (header and payload) to `buf`.
    pub fn write_to(&self, buf: &mut BytesMut) {
        buf.reserve(HEADER_LEN + self.payload.len());
        self.header.write_to(buf);
        buf.put_slice(&self.payload);
    }
}

/// Checks whether `buf` starts with a whole valid frame.
///
/// Returns `Ok(Some(header))` when the header and all `header.length` payload
/// bytes are buffered, `Ok(None)` when more bytes are needed (not an error), and
/// an error as soon as the header is known to be invalid, which needs only the
/// first 16 bytes. Magic, version and flags are checked in that order, and each
/// as soon as its bytes are there, so garbage is rejected early.
///
/// # Errors
/// A [`FrameError`] for bad magic, an unsupported version, reserved flags or a
/// length above `max_payload`.
pub fn check(buf: &[u8], max_payload: usize) -> Result<Option<Header>, FrameError> {
    if buf.len() >= 2 {
        let magic = u16::from_be_bytes([buf[0], buf[1]]);
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut cursor = &buf[2..HEADER_LEN];
    let version = cursor.get_u8();
    let flag_bits = cursor.get_u8();
    let message_type = cursor.get_u16();
    let status = cursor.get_u16();
    let request_id = cursor.get_u32();
    let length = cursor.get_u32();
    if version != VERSION {
        return Err(FrameError::UnsupportedVersion {
            version,
            request_id,
        });
    }
    let flags = Flags::from_bits(flag_bits)?;
    if length as usize > max_payload {
        return Err(FrameError::TooLarge {
            length,
            max: max_payload,
            request_id,
        });
    }
    if buf.len() < HEADER_LEN + length as usize {
        return Ok(None);
    }
    Ok(Some(Header {
        flags,
        message_type,
        status,
        request_id,
        length,
    }))
}

/// Cuts the first whole frame out of `buf`, without copying its payload.
///
/// Returns `Ok(None)` and leaves `buf` untouched while the frame is incomplete.
/// When a header has arrived whose body is not yet all there, it reserves room
/// for the rest so the next read fills it in one go.
///
/// # Errors
/// As [`check`].
pub fn decode(buf: &mut BytesMut, max_payload: usize) -> Result<Option<Frame>, FrameError> {
    match check(buf, max_payload)? {
        Some(header) => {
            buf.advance(HEADER_LEN);
            let payload = buf.split_to(header.length as usize).freeze();
            Ok(Some(Frame { header, payload }))
        }
        None => {
            if buf.len() >= HEADER_LEN {
                let length = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]) as usize;
                buf.reserve(HEADER_LEN + length - buf.len());
            }
            Ok(None)
        }
    }
}

/// Appends a whole frame with a JSON payload to `buf`: the header, then the
/// value serialized straight into the same buffer, then the length patched in.
///
/// # Errors
/// [`MessageError::Encode`] if the value cannot be serialized; `buf` is then
/// restored to its previous length.
pub fn encode_json<T: Serialize + ?Sized>(
    buf: &mut BytesMut,
    flags: Flags,
    message_type: u16,
    status: Status,
    request_id: u32,
    value: &T,
) -> Result<(), MessageError> {
    let start = buf.len();
    Header {
        flags,
        message_type,
        status: status.code(),
        request_id,
        length: 0,
    }
    .write_to(buf);
    let mut writer = buf.writer();
    if let Err(error) = serde_json::to_writer(&mut writer, value) {
        writer.into_inner().truncate(start);
        return Err(MessageError::Encode(error));
    }
    let buf = writer.into_inner();
    let length = (buf.len() - start - HEADER_LEN) as u32;
    buf[start + 12..start + 16].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_json(
            &mut buf,
            Flags::REQUEST,
            0x0001,
            Status::Ok,
            7,
            &serde_json::json!({}),
        )
        .unwrap();
        buf.to_vec()
    }

    #[test]
    fn header_layout_is_big_endian() {
        let bytes = sample();
        assert_eq!(
            &bytes[..HEADER_LEN],
            &[0x43, 0x48, 1, 0, 0, 1, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2]
        );
        assert_eq!(&bytes[HEADER_LEN..], b"{}");
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(check(&bytes[..cut], DEFAULT_MAX_PAYLOAD).unwrap().is_none());
        }
        assert!(check(&bytes, DEFAULT_MAX_PAYLOAD).unwrap().is_some());
    }

    #[test]
    fn both_direction_bits_is_reserved() {
        assert!(Flags::from_bits(0b11).is_err());
        assert!(Flags::from_bits(0b100).is_err());
        assert!(Flags::from_bits(0b10).unwrap().is_push());
    }
}
