//! How bytes reach a chatd server: plain TCP, TLS, or WebSocket (over TCP
//! or TLS).
//!
//! Everything above this module sees frames, never the transport. This
//! module names a server ([`ServerAddress`], parsed from `host:port`,
//! `tls://host:port`, `ws://host:port[/path]` or `wss://host:port[/path]`),
//! holds the trust settings for TLS ([`ClientTls`]), and opens a connection:
//! a TCP socket, then the TLS handshake if the address asks for it, then the
//! WebSocket upgrade if the address asks for it ([`connect`], or
//! [`handshake`] over a socket the caller opened). The result is a
//! [`TransportStream`]: a byte stream carrying frames back to back, or a
//! WebSocket carrying one frame per binary message.

use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use chat_proto::HEADER_LEN;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use crate::error::{ClientError, Result};

/// The WebSocket subprotocol a client offers (`Sec-WebSocket-Protocol`);
/// the server must accept it for the upgrade to count.
pub const WEBSOCKET_SUBPROTOCOL: &str = "chatd.v1";

/// The path of a `ws://` or `wss://` address that names none.
pub const DEFAULT_WEBSOCKET_PATH: &str = "/ws";

/// Which transport an address asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Frames straight on a TCP connection (`host:port`).
    Tcp,
    /// Frames on a TLS connection (`tls://host:port`).
    Tls,
    /// One frame per binary WebSocket message over TCP (`ws://`).
    Ws,
    /// One frame per binary WebSocket message over TLS (`wss://`).
    Wss,
}

impl Scheme {
    /// Whether the connection is encrypted with TLS.
    #[must_use]
    pub fn uses_tls(self) -> bool {
        matches!(self, Scheme::Tls | Scheme::Wss)
    }

    /// Whether frames travel as WebSocket messages.
    #[must_use]
    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }

    /// The same transport with TLS: `Tcp` becomes `Tls`, `Ws` becomes `Wss`.
    #[must_use]
    pub fn with_tls(self) -> Scheme {
        match self {
            Scheme::Tcp | Scheme::Tls => Scheme::Tls,
            Scheme::Ws | Scheme::Wss => Scheme::Wss,
        }
    }

    /// The URL prefix, `None` for plain TCP (written as bare `host:port`).
    #[must_use]
    pub fn prefix(self) -> Option<&'static str> {
        match self {
            Scheme::Tcp => None,
            Scheme::Tls => Some("tls://"),
            Scheme::Ws => Some("ws://"),
            Scheme::Wss => Some("wss://"),
        }
    }
}

/// A server to connect to and how: `host:port`, `tls://host:port`,
/// `ws://host[:port][/path]` or `wss://host[:port][/path]`.
///
/// A WebSocket address without a path gets `/ws`, and without a port the
/// WebSocket default (80 for `ws`, 443 for `wss`). IPv6 literals go in
/// brackets (`[::1]:7000`). Displaying an address gives back its canonical
/// text, which [`ServerAddress::parse`] accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddress {
    scheme: Scheme,
    /// The host name or IP literal, without brackets.
    host: String,
    port: u16,
    /// The request path of a WebSocket address (with any query); empty
    /// for the other schemes.
    path: String,
}

impl ServerAddress {
    /// Parses an address in one of the forms above.
    ///
    /// # Errors
    /// [`ClientError::InvalidAddress`] saying what is wrong: an unknown
    /// scheme, a missing host or port, a path on a TCP or TLS address, user
    /// credentials in the address.
    pub fn parse(text: &str) -> Result<ServerAddress> {
        let invalid = |reason: &str| ClientError::InvalidAddress {
            address: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        let (scheme, rest) = match trimmed.split_once("://") {
            None => (Scheme::Tcp, trimmed),
            Some((name, rest)) => {
                let scheme = match name.to_ascii_lowercase().as_str() {
                    "tcp" => Scheme::Tcp,
                    "tls" => Scheme::Tls,
                    "ws" => Scheme::Ws,
                    "wss" => Scheme::Wss,
                    _ => {
                        return Err(invalid(
                            "unknown scheme; use host:port, tls://, ws:// or wss://",
                        ))
                    }
                };
                (scheme, rest)
            }
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(invalid("credentials do not belong in a server address"));
        }
        let (host, port) = split_host_port(authority).map_err(invalid)?;
        let port = match (port, scheme) {
            (Some(port), _) => port,
            (None, Scheme::Ws) => 80,
            (None, Scheme::Wss) => 443,
            (None, Scheme::Tcp | Scheme::Tls) => return Err(invalid("a port is needed")),
        };
        let path = if scheme.is_websocket() {
            if path.is_empty() || path == "/" {
                DEFAULT_WEBSOCKET_PATH.to_owned()
            } else if path.starts_with('/') {
                path.to_owned()
            } else {
                // "ws://host:7080?x" has a query but no path.
                format!("{DEFAULT_WEBSOCKET_PATH}{path}")
            }
        } else if path.is_empty() || path == "/" {
            String::new()
        } else {
            return Err(invalid(
                "only ws:// and wss:// addresses take a path; the TCP and TLS ones are host:port",
            ));
        };
        Ok(ServerAddress {
            scheme,
            host,
            port,
            path,
        })
    }

    /// A plain TCP address.
    #[must_use]
    pub fn tcp(host: impl Into<String>, port: u16) -> ServerAddress {
        ServerAddress {
            scheme: Scheme::Tcp,
            host: host.into(),
            port,
            path: String::new(),
        }
    }

    /// The transport.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host name or IP address, without brackets. TLS checks the
    /// server's certificate against it.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The WebSocket request path (with any query), `None` for TCP and TLS.
    #[must_use]
    pub fn websocket_path(&self) -> Option<&str> {
        self.scheme.is_websocket().then_some(self.path.as_str())
    }

    /// The same address with TLS (`host:port` becomes `tls://host:port`,
    /// `ws://` becomes `wss://`; the port stays as it is).
    #[must_use]
    pub fn with_tls(mut self) -> ServerAddress {
        self.scheme = self.scheme.with_tls();
        self
    }

    /// The `ws://` or `wss://` URL of a WebSocket address, `None` otherwise.
    #[must_use]
    pub fn websocket_url(&self) -> Option<String> {
        self.scheme.is_websocket().then(|| self.to_string())
    }

    /// The host and port in `host:port` form (IPv6 in brackets).
    #[must_use]
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Splits `host:port` or `[v6]:port` (port optional).
fn split_host_port(authority: &str) -> std::result::Result<(String, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing bracket")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the bracketed host is not an IPv6 address");
        }
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("expected :port after the IPv6 address")?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err("put an IPv6 address in brackets: [::1]:7000")
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing");
    }
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err("the port must be a number from 1 to 65535"),
            Ok(port) => Some(port),
        },
    };
    Ok((host.to_owned(), port))
}

impl FromStr for ServerAddress {
    type Err = ClientError;

    fn from_str(text: &str) -> Result<ServerAddress> {
        ServerAddress::parse(text)
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(prefix) = self.scheme.prefix() {
            f.write_str(prefix)?;
        }
        f.write_str(&self.authority())?;
        f.write_str(&self.path)
    }
}

/// Whom a client trusts when it speaks TLS: the certificates of one CA file
/// (a private CA, or a server's self-signed certificate), or the system's
/// root certificates. Cheap to clone; the same settings serve any number of
/// connections.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    trusts: Arc<str>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("trusts", &self.trusts)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts only the certificates in this PEM file.
    ///
    /// # Errors
    /// [`ClientError::TlsConfig`] when the file cannot be read or holds no
    /// usable certificate.
    pub fn from_ca_file(path: impl AsRef<Path>) -> Result<ClientTls> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|error| {
            ClientError::TlsConfig(format!("cannot read {}: {error}", path.display()))
        })?;
        Self::from_pem(&pem, &format!("the CA file {}", path.display()))
    }

    /// Trusts only the certificates in this PEM text.
    ///
    /// # Errors
    /// [`ClientError::TlsConfig`] when it holds no usable certificate.
    pub fn from_ca_pem(pem: &[u8]) -> Result<ClientTls> {
        Self::from_pem(pem, "the given CA certificates")
    }

    fn from_pem(pem: &[u8], what: &str) -> Result<ClientTls> {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate =
                certificate.map_err(|error| ClientError::TlsConfig(format!("{what}: {error}")))?;
            roots.add(certificate).map_err(|error| {
                ClientError::TlsConfig(format!("{what}: unusable certificate: {error}"))
            })?;
        }
        if roots.is_empty() {
            return Err(ClientError::TlsConfig(format!(
                "{what} holds no PEM certificate"
            )));
        }
        Self::from_roots(roots, what)
    }

    /// Trusts the operating system's root certificates. They are read once
    /// per process and shared.
    ///
    /// # Errors
    /// [`ClientError::TlsConfig`] when none can be loaded.
    pub fn system_roots() -> Result<ClientTls> {
        static SYSTEM: OnceLock<std::result::Result<ClientTls, String>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = RootCertStore::empty();
                // Some system stores hold a few certificates webpki cannot
                // parse; the rest are still good.
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    let why = found
                        .errors
                        .first()
                        .map_or_else(|| "none found".to_owned(), ToString::to_string);
                    return Err(format!(
                        "cannot load the system's root certificates ({why}); give a CA file"
                    ));
                }
                Self::from_roots(roots, "the system's root certificates")
                    .map_err(|error| error.to_string())
            })
            .clone()
            .map_err(ClientError::TlsConfig)
    }

    /// Uses a rustls configuration built elsewhere (client certificates,
    /// other verifiers).
    #[must_use]
    pub fn from_config(config: Arc<ClientConfig>) -> ClientTls {
        ClientTls {
            config,
            trusts: Arc::from("a custom configuration"),
        }
    }

    fn from_roots(roots: RootCertStore, what: &str) -> Result<ClientTls> {
        // The provider is named rather than taken from the process default,
        // so nothing depends on which rustls features other crates enable.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| ClientError::TlsConfig(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
            trusts: Arc::from(what),
        })
    }

    /// The rustls configuration.
    #[must_use]
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// What these settings trust, for messages ("the CA file ca.pem").
    #[must_use]
    pub fn trusts(&self) -> &str {
        &self.trusts
    }
}

/// A byte stream to the server: TCP, or TLS over TCP.
#[derive(Debug)]
pub enum ByteStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

impl ByteStream {
    /// The TCP socket underneath.
    #[must_use]
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ByteStream::Tcp(stream) => stream,
            ByteStream::Tls(stream) => stream.get_ref().0,
        }
    }
}

impl AsyncRead for ByteStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            ByteStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ByteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ByteStream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            ByteStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ByteStream::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            ByteStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ByteStream::Tcp(stream) => stream.is_write_vectored(),
            ByteStream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            ByteStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ByteStream::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            ByteStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open connection to the server, ready for frames.
#[derive(Debug)]
pub enum TransportStream {
    /// Frames back to back on a byte stream (TCP or TLS).
    Bytes(ByteStream),
    /// One frame per binary WebSocket message (boxed: the WebSocket state
    /// is large).
    WebSocket(Box<WebSocketStream<ByteStream>>),
}

impl TransportStream {
    /// The TCP socket underneath.
    #[must_use]
    pub fn tcp(&self) -> &TcpStream {
        match self {
            TransportStream::Bytes(stream) => stream.tcp(),
            TransportStream::WebSocket(stream) => stream.get_ref().tcp(),
        }
    }
}

/// Opens a TCP connection to `address` and makes it what the address asks
/// for (see [`handshake`]). Does not bound the time taken; callers wrap it
/// in a timeout.
///
/// # Errors
/// The socket's error, or the handshake's (see [`handshake`]).
pub async fn connect(
    address: &ServerAddress,
    tls: Option<&ClientTls>,
    max_payload: usize,
) -> io::Result<TransportStream> {
    let stream = TcpStream::connect((address.host(), address.port())).await?;
    // Chat traffic is small request/response frames: waiting to coalesce
    // them (Nagle) only adds latency. Failure to set it is harmless.
    let _ = stream.set_nodelay(true);
    handshake(stream, address, tls, max_payload).await
}

/// Makes a connected TCP socket what `address` asks for: TLS with the
/// certificate checked against the address's host (with `tls`, or the
/// system's roots when `None`), then the WebSocket upgrade offering
/// [`WEBSOCKET_SUBPROTOCOL`]. Frames of up to `max_payload` bytes of payload
/// are accepted from the server.
///
/// # Errors
/// An error whose text says which step failed and why: an untrusted or
/// mismatched certificate, a server that does not speak TLS, a refused
/// upgrade or subprotocol.
pub async fn handshake(
    stream: TcpStream,
    address: &ServerAddress,
    tls: Option<&ClientTls>,
    max_payload: usize,
) -> io::Result<TransportStream> {
    let bytes = if address.scheme().uses_tls() {
        let system;
        let tls = match tls {
            Some(tls) => tls,
            None => {
                system = ClientTls::system_roots().map_err(io::Error::other)?;
                &system
            }
        };
        ByteStream::Tls(Box::new(tls_handshake(stream, tls, address.host()).await?))
    } else {
        ByteStream::Tcp(stream)
    };
    if address.scheme().is_websocket() {
        let websocket = websocket_handshake(bytes, address, max_payload).await?;
        Ok(TransportStream::WebSocket(Box::new(websocket)))
    } else {
        Ok(TransportStream::Bytes(bytes))
    }
}

/// The TLS client handshake over `stream`, checking the server's
/// certificate against `host` (a DNS name, or an IP address that the
/// certificate must list).
///
/// # Errors
/// An error saying why the handshake failed, in words: see [`handshake`].
pub async fn tls_handshake<S>(stream: S, tls: &ClientTls, host: &str) -> io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is neither a DNS name nor an IP address, so TLS cannot check it"),
        )
    })?;
    TlsConnector::from(Arc::clone(&tls.config))
        .connect(name, stream)
        .await
        .map_err(|error| describe_tls_error(&error, host, tls))
}

/// Rewrites a failed handshake's error so that it says what went wrong in
/// terms a person can act on; rustls's own text names enum variants.
fn describe_tls_error(error: &io::Error, host: &str, tls: &ClientTls) -> io::Error {
    let Some(rustls_error) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return io::Error::new(error.kind(), format!("TLS handshake failed: {error}"));
    };
    let why = match rustls_error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate has an unknown issuer: it is not signed by {}",
            tls.trusts()
        ),
        rustls::Error::InvalidCertificate(CertificateError::BadSignature) => format!(
            "the server's certificate names an issuer in {} but was not signed by it \
             (bad signature)",
            tls.trusts()
        ),
        rustls::Error::InvalidCertificate(
            certificate @ (CertificateError::NotValidForName
            | CertificateError::NotValidForNameContext { .. }),
        ) => format!("the server's certificate does not match the name {host:?} ({certificate})"),
        rustls::Error::InvalidCertificate(certificate) => {
            format!("the server's certificate is not acceptable: {certificate}")
        }
        rustls::Error::InvalidMessage(_) => format!(
            "the server did not answer in TLS ({rustls_error}); does it have a certificate, \
             and is this its TLS port?"
        ),
        other => other.to_string(),
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("TLS handshake failed: {why}"),
    )
}

/// The WebSocket settings of a client: messages as large as the largest
/// frame accepted from the server, and no larger.
#[must_use]
pub fn websocket_config(max_payload: usize) -> WebSocketConfig {
    let largest = max_payload.saturating_add(HEADER_LEN);
    WebSocketConfig::default()
        .max_message_size(Some(largest))
        .max_frame_size(Some(largest))
}

/// The WebSocket client handshake over `stream` for a `ws://` or `wss://`
/// address: offers [`WEBSOCKET_SUBPROTOCOL`], sends no `Origin` (this is
/// not a browser), and insists that the server accepts the subprotocol.
///
/// # Errors
/// An error saying why the upgrade failed (an HTTP status instead of the
/// upgrade, the subprotocol refused), or `InvalidInput` for an address that
/// is not a WebSocket address.
pub async fn websocket_handshake<S>(
    stream: S,
    address: &ServerAddress,
    max_payload: usize,
) -> io::Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let url = address.websocket_url().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{address} is not a WebSocket address"),
        )
    })?;
    let failed = |error: WsError| websocket_error(&error);
    let mut request = url.into_client_request().map_err(failed)?;
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(WEBSOCKET_SUBPROTOCOL),
    );
    let (websocket, _response) = tokio_tungstenite::client_async_with_config(
        request,
        stream,
        Some(websocket_config(max_payload)),
    )
    .await
    .map_err(failed)?;
    Ok(websocket)
}

fn websocket_error(error: &WsError) -> io::Error {
    let why = match error {
        WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(_)) => {
            format!("the server did not accept the {WEBSOCKET_SUBPROTOCOL} subprotocol ({error})")
        }
        WsError::Http(response) => format!(
            "the server answered HTTP {} instead of upgrading; is the path right?",
            response.status()
        ),
        other => other.to_string(),
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("WebSocket handshake failed: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ServerAddress {
        ServerAddress::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    fn reason(text: &str) -> String {
        match ServerAddress::parse(text) {
            Err(ClientError::InvalidAddress { reason, .. }) => reason,
            other => panic!("{text} gave {other:?}"),
        }
    }

    #[test]
    fn every_form_parses_into_its_parts() {
        let cases: &[(&str, Scheme, &str, u16, Option<&str>)] = &[
            ("127.0.0.1:7000", Scheme::Tcp, "127.0.0.1", 7000, None),
            ("localhost:7000", Scheme::Tcp, "localhost", 7000, None),
            (
                "tcp://chat.example:7000",
                Scheme::Tcp,
                "chat.example",
                7000,
                None,
            ),
            (
                "tls://chat.example:7443",
                Scheme::Tls,
                "chat.example",
                7443,
                None,
            ),
            (
                "TLS://chat.example:7443/",
                Scheme::Tls,
                "chat.example",
                7443,
                None,
            ),
            (
                "ws://127.0.0.1:7080",
                Scheme::Ws,
                "127.0.0.1",
                7080,
                Some("/ws"),
            ),
            (
                "ws://127.0.0.1:7080/",
                Scheme::Ws,
                "127.0.0.1",
                7080,
                Some("/ws"),
            ),
            ("ws://h:7080/chat", Scheme::Ws, "h", 7080, Some("/chat")),
            ("ws://h:7080?x=1", Scheme::Ws, "h", 7080, Some("/ws?x=1")),
            (
                "wss://h:8443/a/b?c=d",
                Scheme::Wss,
                "h",
                8443,
                Some("/a/b?c=d"),
            ),
            ("ws://h", Scheme::Ws, "h", 80, Some("/ws")),
            ("wss://h", Scheme::Wss, "h", 443, Some("/ws")),
            ("[::1]:7000", Scheme::Tcp, "::1", 7000, None),
            ("wss://[::1]:7443/ws", Scheme::Wss, "::1", 7443, Some("/ws")),
            ("  tls://h:1  ", Scheme::Tls, "h", 1, None),
        ];
        for &(text, scheme, host, port, path) in cases {
            let address = parse(text);
            assert_eq!(address.scheme(), scheme, "{text}");
            assert_eq!(address.host(), host, "{text}");
            assert_eq!(address.port(), port, "{text}");
            assert_eq!(address.websocket_path(), path, "{text}");
        }
    }

    #[test]
    fn display_is_canonical_and_parses_back() {
        let cases = [
            ("127.0.0.1:7000", "127.0.0.1:7000"),
            ("tcp://h:7000", "h:7000"),
            ("TLS://h:7443", "tls://h:7443"),
            ("ws://h:7080", "ws://h:7080/ws"),
            ("wss://h", "wss://h:443/ws"),
            ("[::1]:7000", "[::1]:7000"),
            ("wss://[::1]:1/x?y", "wss://[::1]:1/x?y"),
        ];
        for (text, canonical) in cases {
            let address = parse(text);
            assert_eq!(address.to_string(), canonical, "{text}");
            assert_eq!(parse(canonical), address, "{canonical}");
        }
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        assert!(reason("http://h:80").contains("unknown scheme"));
        assert!(reason("h").contains("port is needed"));
        assert!(reason("tls://h").contains("port is needed"));
        assert!(reason(":7000").contains("host is missing"));
        assert!(reason("ws://:7000").contains("host is missing"));
        assert!(reason("h:0").contains("1 to 65535"));
        assert!(reason("h:70000").contains("1 to 65535"));
        assert!(reason("h:port").contains("1 to 65535"));
        assert!(reason("h:7000/ws").contains("only ws:// and wss://"));
        assert!(reason("tls://h:7000/x").contains("only ws:// and wss://"));
        assert!(reason("::1:7000").contains("brackets"));
        assert!(reason("[::1:7000").contains("closing bracket"));
        assert!(reason("[nope]:7000").contains("not an IPv6"));
        assert!(reason("ws://user:pw@h:1/ws").contains("credentials"));
        assert!(reason("").contains("host is missing"));
    }

    #[test]
    fn with_tls_turns_plain_transports_into_tls_ones() {
        assert_eq!(parse("h:1").with_tls().to_string(), "tls://h:1");
        assert_eq!(parse("tls://h:1").with_tls().to_string(), "tls://h:1");
        assert_eq!(parse("ws://h:1/p").with_tls().to_string(), "wss://h:1/p");
        assert_eq!(parse("wss://h:1/p").with_tls().to_string(), "wss://h:1/p");
        assert_eq!(
            parse("ws://h:1").with_tls().websocket_url().as_deref(),
            Some("wss://h:1/ws")
        );
        assert_eq!(parse("tls://h:1").websocket_url(), None);
    }

    #[test]
    fn ca_pem_without_certificates_is_refused() {
        let error = ClientTls::from_ca_pem(b"not a certificate").unwrap_err();
        assert!(
            matches!(&error, ClientError::TlsConfig(text) if text.contains("no PEM certificate")),
            "{error}"
        );
        let error = ClientTls::from_ca_file("/nonexistent/ca.pem").unwrap_err();
        assert!(error.to_string().contains("cannot read"), "{error}");
    }

    #[test]
    fn websocket_messages_hold_the_largest_frame() {
        let config = websocket_config(1000);
        assert_eq!(config.max_message_size, Some(1000 + HEADER_LEN));
        assert_eq!(config.max_frame_size, Some(1000 + HEADER_LEN));
    }
}
