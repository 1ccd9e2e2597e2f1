//! The PROXY protocol (version 1) header a trusted load balancer puts in
//! front of every connection it forwards (nginx: `proxy_protocol on;`).
//!
//! Behind a proxy every connection comes from the proxy's address, which
//! would make the per-address limits (connections, failed logins) count all
//! users together. With `proxy_protocol = true` the node reads the header
//! first and uses the client address it names. Only enable it when every
//! connection comes through such a proxy: the header is trusted as sent.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest a version 1 header may be, `\r\n` included.
const MAX_HEADER: usize = 107;

/// How long a connection may take to send its header.
const HEADER_WAIT: Duration = Duration::from_secs(5);

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The header is not a well-formed version 1 header.
    #[error("malformed PROXY protocol header")]
    Malformed,
    /// No complete header arrived in time.
    #[error("no PROXY protocol header within {0:?}")]
    Timeout(Duration),
    /// The connection failed or closed first.
    #[error("i/o error reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the header from `stream` into `buf` and returns the client address
/// it names (`fallback` for `PROXY UNKNOWN`). Bytes after the header stay in
/// `buf` for the session.
///
/// # Errors
/// A [`ProxyError`] when the header is missing, late or malformed.
pub async fn read_header(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    fallback: SocketAddr,
) -> Result<SocketAddr, ProxyError> {
    let read = async {
        loop {
            if let Some(end) = buf.windows(2).position(|pair| pair == b"\r\n") {
                let line = buf.split_to(end + 2);
                return parse(&line[..end], fallback);
            }
            // Refuse at once what cannot become a header.
            let prefix = buf.len().min(6);
            if buf[..prefix] != b"PROXY "[..prefix] || buf.len() >= MAX_HEADER {
                return Err(ProxyError::Malformed);
            }
            buf.reserve(MAX_HEADER);
            if stream.read_buf(buf).await? == 0 {
                return Err(ProxyError::Malformed);
            }
        }
    };
    tokio::time::timeout(HEADER_WAIT, read)
        .await
        .map_err(|_| ProxyError::Timeout(HEADER_WAIT))?
}

/// Parses a header line without its `\r\n`.
///
/// # Errors
/// [`ProxyError::Malformed`].
pub fn parse(line: &[u8], fallback: SocketAddr) -> Result<SocketAddr, ProxyError> {
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::Malformed)?;
    let mut fields = line.split(' ');
    if fields.next() != Some("PROXY") {
        return Err(ProxyError::Malformed);
    }
    match fields.next() {
        Some("UNKNOWN") => Ok(fallback),
        Some(family @ ("TCP4" | "TCP6")) => {
            let (Some(source), Some(_destination), Some(port), Some(_), None) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                return Err(ProxyError::Malformed);
            };
            let ip: IpAddr = source.parse().map_err(|_| ProxyError::Malformed)?;
            if ip.is_ipv4() != (family == "TCP4") {
                return Err(ProxyError::Malformed);
            }
            let port: u16 = port.parse().map_err(|_| ProxyError::Malformed)?;
            Ok(SocketAddr::new(ip, port))
        }
        _ => Err(ProxyError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fallback() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn parses_the_client_address() {
        assert_eq!(
            parse(b"PROXY TCP4 10.1.2.3 10.0.0.1 51000 7000", fallback()).unwrap(),
            "10.1.2.3:51000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 7000", fallback()).unwrap(),
            "[2001:db8::1]:4000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(parse(b"PROXY UNKNOWN", fallback()).unwrap(), fallback());
    }

    #[test]
    fn refuses_anything_else() {
        for line in [
            &b""[..],
            b"GET / HTTP/1.1",
            b"PROXY TCP4 10.1.2.3 10.0.0.1 51000",
            b"PROXY TCP4 10.1.2.3 10.0.0.1 51000 7000 extra",
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2",
            b"PROXY TCP4 10.1.2.3 10.0.0.1 99999 7000",
            b"PROXY UDP4 10.1.2.3 10.0.0.1 1 2",
            b"PROXY TCP4 \xff 10.0.0.1 1 2",
        ] {
            assert!(parse(line, fallback()).is_err(), "{line:?}");
        }
    }
}
