//! `chatd admin`'s side of the admin endpoint: a small HTTP/1.1 client for
//! one request at a time to a running node.
//!
//! Hand-written rather than a general HTTP client because it needs very
//! little (one request per connection, JSON both ways, `Connection:
//! close`) and nothing else of the server should depend on a client stack.
//! When the node serves HTTPS (it has `tls_cert`), the connection is TLS
//! and trusts exactly the certificate in the node's `tls_cert` file: the
//! command reads the same configuration as the node, and a name check
//! would fail anyway when the certificate is for the public host name and
//! the command connects to `127.0.0.1`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::admin::endpoint::{EndRequest, EndResponse, SessionList};
use crate::config::Config;

/// How long one request to a node may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read from a node.
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// Why a node could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration has no `admin_token`, so there is no endpoint to
    /// ask (a node with the same configuration has it off).
    #[error("the admin endpoint is off: no admin_token in the configuration")]
    Off,
    /// Nothing answered at the address: no node runs there.
    #[error("no node answered at {address}: {reason}")]
    Unreachable {
        /// Where.
        address: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The node answered with an error.
    #[error("the node at {address} answered {status}: {message}")]
    Refused {
        /// Where.
        address: String,
        /// The HTTP status.
        status: u16,
        /// The node's explanation.
        message: String,
    },
    /// The exchange failed half-way, or the answer made no sense.
    #[error("talking to the node at {address} failed: {reason}")]
    Broken {
        /// Where.
        address: String,
        /// What went wrong.
        reason: String,
    },
}

/// A running node's admin endpoint.
#[derive(Clone)]
pub struct Node {
    address: String,
    token: String,
    tls: Option<tokio_rustls::TlsConnector>,
    /// The nodes expect a PROXY protocol header first (`proxy_protocol`).
    proxy_protocol: bool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("address", &self.address)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// The node at `address` (`host:port`, or an `http://`/`https://` URL)
    /// as `config` describes the nodes: its admin token, and TLS with its
    /// certificate when it has one.
    ///
    /// # Errors
    /// [`NodeError::Off`] without an admin token; [`NodeError::Broken`]
    /// when the certificate cannot be read.
    pub fn new(address: &str, config: &Config) -> Result<Node, NodeError> {
        let token = config.admin_token.clone().ok_or(NodeError::Off)?;
        let (scheme, rest) = match address.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, address),
        };
        let address = connectable(rest.trim_end_matches('/'));
        let wants_tls = match scheme {
            Some("https") => true,
            Some("http") => false,
            _ => config.tls_cert.is_some(),
        };
        let tls = match (&config.tls_cert, wants_tls) {
            (Some(cert), true) => {
                Some(pinned_connector(cert).map_err(|reason| NodeError::Broken {
                    address: address.clone(),
                    reason,
                })?)
            }
            (None, true) => {
                return Err(NodeError::Broken {
                    address,
                    reason: "https needs the node's certificate (tls_cert) to trust".to_owned(),
                })
            }
            (_, false) => None,
        };
        Ok(Node {
            address,
            token,
            tls,
            proxy_protocol: config.proxy_protocol,
        })
    }

    /// Where it is asked.
    #[must_use]
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The node's logged-in sessions.
    ///
    /// # Errors
    /// A [`NodeError`].
    pub async fn sessions(&self) -> Result<SessionList, NodeError> {
        self.request::<(), _>("GET", "/admin/sessions", None).await
    }

    /// Ends every session of a user, on this node and through it on every
    /// other node of its cluster.
    ///
    /// # Errors
    /// A [`NodeError`].
    pub async fn end_sessions(&self, request: &EndRequest) -> Result<EndResponse, NodeError> {
        self.request("POST", "/admin/sessions/end", Some(request))
            .await
    }

    async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, NodeError> {
        let exchange = async {
            let stream = TcpStream::connect(&self.address).await.map_err(|error| {
                NodeError::Unreachable {
                    address: self.address.clone(),
                    reason: error.to_string(),
                }
            })?;
            let _ = stream.set_nodelay(true);
            let mut stream = stream;
            if self.proxy_protocol {
                // A node behind a proxy refuses connections without the
                // header. This one states the connection's true addresses,
                // so the node's loopback-only check still holds.
                let header =
                    proxy_header(&stream).map_err(|error| self.broken(error.to_string()))?;
                stream
                    .write_all(header.as_bytes())
                    .await
                    .map_err(|error| self.broken(error.to_string()))?;
            }
            match &self.tls {
                Some(connector) => {
                    // The name is not checked (the certificate is pinned),
                    // but TLS wants one to send.
                    let name = ServerName::try_from("localhost").expect("a valid name");
                    let stream = connector
                        .connect(name, stream)
                        .await
                        .map_err(|error| self.broken(format!("TLS: {error}")))?;
                    self.exchange(stream, method, path, body).await
                }
                None => self.exchange(stream, method, path, body).await,
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(self.broken(format!("no answer within {REQUEST_TIMEOUT:?}"))),
        }
    }

    async fn exchange<S, B, T>(
        &self,
        mut stream: S,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, NodeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        B: Serialize,
        T: DeserializeOwned,
    {
        let body = match body {
            Some(body) => {
                serde_json::to_vec(body).map_err(|error| self.broken(error.to_string()))?
            }
            None => Vec::new(),
        };
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Accept: application/json\r\nConnection: close\r\n",
            self.address, self.token
        );
        if method != "GET" {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(&body);
        stream
            .write_all(&bytes)
            .await
            .map_err(|error| self.broken(error.to_string()))?;
        let mut answer = Vec::new();
        stream
            .take(MAX_RESPONSE)
            .read_to_end(&mut answer)
            .await
            .map_err(|error| self.broken(error.to_string()))?;
        let (status, body) = parse_response(&answer).map_err(|reason| self.broken(reason))?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|value| value.get("message")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(NodeError::Refused {
                address: self.address.clone(),
                status,
                message,
            });
        }
        serde_json::from_slice(&body)
            .map_err(|error| self.broken(format!("unexpected answer: {error}")))
    }

    fn broken(&self, reason: String) -> NodeError {
        NodeError::Broken {
            address: self.address.clone(),
            reason,
        }
    }
}

/// A PROXY protocol v1 header naming this connection's own ends.
fn proxy_header(stream: &TcpStream) -> std::io::Result<String> {
    let (local, peer) = (stream.local_addr()?, stream.peer_addr()?);
    let family = if local.is_ipv4() { "TCP4" } else { "TCP6" };
    Ok(format!(
        "PROXY {family} {} {} {} {}\r\n",
        local.ip(),
        peer.ip(),
        local.port(),
        peer.port()
    ))
}

/// The address to connect to for a listen address: a node listening on
/// every interface (`0.0.0.0`, `[::]`) is asked on loopback.
fn connectable(address: &str) -> String {
    if let Some(port) = address.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = address.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        address.to_owned()
    }
}

/// Splits an HTTP/1.1 response into its status and body.
fn parse_response(answer: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or("the answer is not HTTP")?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| "the answer is not HTTP")?;
    let body = &answer[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or("the answer has no status")?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        match length {
            Some(length) if length <= body.len() => body[..length].to_vec(),
            Some(_) => return Err("the answer was cut short".to_owned()),
            None => body.to_vec(),
        }
    };
    Ok((status, body))
}

/// Joins the chunks of a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut joined = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|window| window == b"\r\n")
            .ok_or("a chunk was cut short")?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(joined);
        }
        if body.len() < size + 2 {
            return Err("a chunk was cut short".to_owned());
        }
        joined.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// A TLS connector that trusts exactly the first certificate of the PEM
/// file at `path` (the node's own).
fn pinned_connector(path: &Path) -> Result<tokio_rustls::TlsConnector, String> {
    let certificate = CertificateDer::pem_file_iter(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?
        .next()
        .ok_or_else(|| format!("no certificate in {}", path.display()))?
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        certificate,
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Trusts one certificate, byte for byte, whatever name it carries.
#[derive(Debug)]
struct Pinned {
    certificate: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the node presented another certificate than its tls_cert file holds \
                 (renewed without SIGHUP?)"
                    .to_owned(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let (status, body) =
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"{}"[..]));
        let (status, body) = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((status, body.as_slice()), (404, &b"abcd"[..]));
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
    }

    #[test]
    fn listen_addresses_become_connectable() {
        assert_eq!(connectable("0.0.0.0:7080"), "127.0.0.1:7080");
        assert_eq!(connectable("[::]:7080"), "[::1]:7080");
        assert_eq!(connectable("10.0.0.5:7080"), "10.0.0.5:7080");
    }
}
