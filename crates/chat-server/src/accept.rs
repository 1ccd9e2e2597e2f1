//! Admission of a new TCP connection, the same on the chat and the HTTP
//! listener: connection limits, the PROXY header, the TLS handshake.
//!
//! The total connection limit is checked in the accept loop itself, and so
//! is the per-address one when the peer is the client; behind a proxy the
//! client's address comes in the PROXY header, so its limit is checked as
//! soon as the header is read. No task or descriptor outlives a refusal,
//! and a client that never finishes its PROXY header or TLS handshake is
//! closed after a timeout while counted against its address.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::limits::ConnectionLimiter;
use crate::proxy;
use crate::telemetry;

/// A connection's place under the limits, given back however its task
/// ends, a panic included.
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    ip: Option<IpAddr>,
}

impl ConnectionSlot {
    /// Takes a place in the total, or `None` when the node is full.
    #[must_use]
    pub fn total(limiter: &Arc<ConnectionLimiter>) -> Option<ConnectionSlot> {
        limiter.try_acquire_total().then(|| ConnectionSlot {
            limiter: limiter.clone(),
            ip: None,
        })
    }

    /// Also counts the connection against `ip`; `false` when that address
    /// has too many.
    pub fn count_ip(&mut self, ip: IpAddr) -> bool {
        debug_assert!(self.ip.is_none(), "counted once");
        if self.limiter.try_acquire_ip(ip) {
            self.ip = Some(ip);
            true
        } else {
            false
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            self.limiter.release_ip(ip);
        }
        self.limiter.release_total();
    }
}

/// A connection admitted past its PROXY header (if any), not yet past TLS.
pub struct Admitted {
    /// The socket.
    pub stream: TcpStream,
    /// The client's address.
    pub client: SocketAddr,
    /// Bytes read after the PROXY header.
    pub buffered: BytesMut,
}

/// Why a connection was not admitted, with the socket to answer on.
#[derive(Debug)]
pub enum Refusal {
    /// Too many connections from the client's address.
    TooMany(TcpStream),
    /// A bad or late PROXY header.
    Proxy(proxy::ProxyError, TcpStream),
}

/// Reads the PROXY header when `proxy_protocol` is on, then counts the
/// connection against its client's address (when not already counted at
/// accept).
///
/// # Errors
/// A [`Refusal`]; the slot is given back when the caller drops it.
pub async fn admit(
    mut stream: TcpStream,
    peer: SocketAddr,
    proxy_protocol: bool,
    slot: &mut ConnectionSlot,
) -> Result<Admitted, Refusal> {
    let mut buffered = BytesMut::new();
    let client = if proxy_protocol {
        match proxy::read_header(&mut stream, &mut buffered, peer).await {
            Ok(client) => client,
            Err(error) => {
                telemetry::connection_refused("proxy_header");
                return Err(Refusal::Proxy(error, stream));
            }
        }
    } else {
        peer
    };
    if slot.ip.is_none() && !slot.count_ip(client.ip()) {
        telemetry::connection_refused("per_address_limit");
        return Err(Refusal::TooMany(stream));
    }
    Ok(Admitted {
        stream,
        client,
        buffered,
    })
}

/// Runs the TLS handshake, bounded by `timeout`. Failures are counted, and
/// logged at debug only: a port scanner or a plain-TCP client must not be
/// able to fill the log.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    admitted: Admitted,
    timeout: std::time::Duration,
) -> Option<TlsStream<Rewind>> {
    let stream = Rewind::new(admitted.buffered.freeze(), admitted.stream);
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            telemetry::connection_refused("tls_handshake");
            tracing::debug!(client = %admitted.client, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            telemetry::connection_refused("tls_handshake_timeout");
            tracing::debug!(client = %admitted.client, "TLS handshake timed out");
            None
        }
    }
}

/// A TCP stream that first yields bytes already read from it (what came
/// after a PROXY header, which belongs to the TLS handshake).
#[derive(Debug)]
pub struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl Rewind {
    /// `inner`, with `prefix` read again first.
    #[must_use]
    pub fn new(prefix: Bytes, inner: TcpStream) -> Self {
        Self { prefix, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let count = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..count]);
            self.prefix.advance(count);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
