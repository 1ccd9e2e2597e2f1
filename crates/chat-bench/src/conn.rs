//! One client connection straight on the wire format: a socket, a read
//! buffer that frames are cut from without copying, and a write buffer that
//! collects everything ready so one syscall sends it all.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use chat_proto::frame::{self, encode_json};
use chat_proto::{
    Flags, Frame, Header, MessageType, Request, Status, CLIENT_MAX_PAYLOAD, HEADER_LEN,
};

use crate::error::{Error, Result};

/// Room made in the read buffer when it runs low: enough that a burst of
/// pushes arrives in one syscall.
const READ_CHUNK: usize = 16 * 1024;

/// The read buffer a connection starts with. Small, because the idle
/// scenario holds thousands of connections that never receive much.
const INITIAL_READ_BUF: usize = 1024;

/// What a non-blocking read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were appended to the read buffer.
    Data(usize),
    /// Nothing is there now.
    WouldBlock,
    /// The peer closed the connection.
    Closed,
}

/// A framed client connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    next_request_id: u32,
}

impl Conn {
    /// Connects to `server`, from `source` when given (binding the socket to
    /// that address first, so many connections can spread over the loopback
    /// range 127.0.0.x and the server's per-address limits and the ephemeral
    /// ports of one address are not the bound).
    ///
    /// # Errors
    /// [`Error::Io`] when the socket cannot be made, bound or connected.
    pub async fn connect(server: SocketAddr, source: Option<IpAddr>) -> Result<Conn> {
        let context = || format!("connect to {server}");
        let stream = match source {
            None => TcpStream::connect(server)
                .await
                .map_err(|error| Error::io(context(), error))?,
            Some(ip) => {
                let socket = if server.is_ipv4() {
                    TcpSocket::new_v4()
                } else {
                    TcpSocket::new_v6()
                }
                .map_err(|error| Error::io(context(), error))?;
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .map_err(|error| Error::io(format!("bind {ip}"), error))?;
                socket
                    .connect(server)
                    .await
                    .map_err(|error| Error::io(context(), error))?
            }
        };
        Ok(Conn::from_stream(stream))
    }

    /// Wraps a connected socket.
    #[must_use]
    pub fn from_stream(stream: TcpStream) -> Conn {
        // Latency matters more than packet count on loopback; the write
        // buffer already batches whatever is ready.
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            read_buf: BytesMut::with_capacity(INITIAL_READ_BUF),
            write_buf: BytesMut::new(),
            next_request_id: 1,
        }
    }

    /// The local address of the socket.
    ///
    /// # Errors
    /// [`Error::Io`] if the socket has none.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.stream
            .local_addr()
            .map_err(|error| Error::io("local address", error))
    }

    /// A fresh request id: never 0, as the protocol requires.
    pub fn next_request_id(&mut self) -> u32 {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Appends a request frame with a JSON payload to the write buffer and
    /// returns its request id. Nothing is sent until a flush.
    ///
    /// # Errors
    /// [`Error::Message`] if the value cannot be serialized.
    pub fn queue_json<T: Serialize + ?Sized>(
        &mut self,
        message_type: MessageType,
        value: &T,
    ) -> Result<u32> {
        let request_id = self.next_request_id();
        encode_json(
            &mut self.write_buf,
            Flags::REQUEST,
            message_type.code(),
            Status::Ok,
            request_id,
            value,
        )?;
        Ok(request_id)
    }

    /// Appends a typed request to the write buffer and returns its request id.
    ///
    /// # Errors
    /// As [`Conn::queue_json`].
    pub fn queue_request(&mut self, request: &Request) -> Result<u32> {
        let request_id = self.next_request_id();
        request.encode(request_id, &mut self.write_buf)?;
        Ok(request_id)
    }

    /// Appends raw, already framed bytes to the write buffer.
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.write_buf.extend_from_slice(bytes);
    }

    /// Appends a frame with this header and payload to the write buffer.
    pub fn queue_frame(
        &mut self,
        flags: Flags,
        message_type: u16,
        status: u16,
        request_id: u32,
        payload: &[u8],
    ) {
        self.write_buf.reserve(HEADER_LEN + payload.len());
        Header {
            flags,
            message_type,
            status,
            request_id,
            // Payloads come from frames that passed the length check.
            length: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        }
        .write_to(&mut self.write_buf);
        self.write_buf.extend_from_slice(payload);
    }

    /// Whether bytes wait to be written.
    #[must_use]
    pub fn has_pending_writes(&self) -> bool {
        !self.write_buf.is_empty()
    }

    /// How many bytes wait to be written.
    #[must_use]
    pub fn pending_write_len(&self) -> usize {
        self.write_buf.len()
    }

    /// Writes as much of the write buffer as the socket takes now.
    ///
    /// # Errors
    /// The socket's error (other than "would block").
    pub fn try_flush(&mut self) -> io::Result<()> {
        while !self.write_buf.is_empty() {
            match self.stream.try_write(&self.write_buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.write_buf.advance(written),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Writes the whole write buffer, waiting as needed.
    ///
    /// # Errors
    /// [`Error::Io`] on a socket error.
    pub async fn flush(&mut self) -> Result<()> {
        self.stream
            .write_all(&self.write_buf)
            .await
            .map_err(|error| Error::io("write", error))?;
        self.write_buf.clear();
        Ok(())
    }

    /// Reads what the socket has now into the read buffer.
    ///
    /// # Errors
    /// The socket's error (other than "would block").
    pub fn try_read(&mut self) -> io::Result<ReadOutcome> {
        if self.read_buf.capacity() - self.read_buf.len() < INITIAL_READ_BUF / 2 {
            self.read_buf.reserve(READ_CHUNK);
        }
        match self.stream.try_read_buf(&mut self.read_buf) {
            Ok(0) => Ok(ReadOutcome::Closed),
            Ok(read) => Ok(ReadOutcome::Data(read)),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
            Err(error) => Err(error),
        }
    }

    /// Cuts the next whole frame out of the read buffer, if one is there.
    ///
    /// # Errors
    /// [`Error::Frame`] when the bytes are not a valid frame.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        Ok(frame::decode(&mut self.read_buf, CLIENT_MAX_PAYLOAD)?)
    }

    /// Waits for the next whole frame.
    ///
    /// # Errors
    /// [`Error::Closed`] if the server closes first, [`Error::Io`] or
    /// [`Error::Frame`] on a broken stream.
    pub async fn read_frame(&mut self, during: &'static str) -> Result<Frame> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(frame);
            }
            self.stream
                .readable()
                .await
                .map_err(|error| Error::io(during, error))?;
            match self.try_read().map_err(|error| Error::io(during, error))? {
                ReadOutcome::Closed => return Err(Error::Closed(during)),
                ReadOutcome::Data(_) | ReadOutcome::WouldBlock => {}
            }
        }
    }

    /// Like [`Conn::read_frame`] but gives up after `limit`.
    ///
    /// # Errors
    /// As [`Conn::read_frame`], and [`Error::Timeout`].
    pub async fn read_frame_within(
        &mut self,
        during: &'static str,
        limit: Duration,
    ) -> Result<Frame> {
        match tokio::time::timeout(limit, self.read_frame(during)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                what: during.to_owned(),
                seconds: limit.as_secs(),
            }),
        }
    }

    /// Registers interest in readability; ready when a read may find data.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_read_ready(cx)
    }

    /// Registers interest in writability; ready when a write may go through.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_write_ready(cx)
    }
}
