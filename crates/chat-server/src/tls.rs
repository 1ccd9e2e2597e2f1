//! TLS for the chat and HTTP listeners: a certificate and key from PEM
//! files, TLS 1.2 and 1.3 only, no client certificates, and a reload that
//! swaps the certificate for new handshakes without touching established
//! connections (operators renew certificates every 60 to 90 days).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::lock::RwLock;

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The node's TLS setup: one acceptor per listener over one reloadable
/// certificate.
pub struct Tls {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    resolver: Arc<ReloadingResolver>,
    chat: TlsAcceptor,
    http: TlsAcceptor,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificate chain and private key (PEM).
    ///
    /// # Errors
    /// A [`TlsError`] naming the file that cannot be read or used.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load_certified_key(cert_path, key_path, &provider)?;
        let resolver = Arc::new(ReloadingResolver {
            current: RwLock::new(Arc::new(key)),
        });
        let config = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, TlsError> {
            let mut config = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|error| TlsError(format!("TLS setup: {error}")))?
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone());
            config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
            Ok(Arc::new(config))
        };
        Ok(Tls {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            chat: TlsAcceptor::from(config(&[])?),
            http: TlsAcceptor::from(config(&[b"http/1.1"])?),
            provider,
            resolver,
        })
    }

    /// The acceptor for the chat (framed TCP) listener.
    #[must_use]
    pub fn chat_acceptor(&self) -> &TlsAcceptor {
        &self.chat
    }

    /// The acceptor for the HTTP listener (ALPN `http/1.1`).
    #[must_use]
    pub fn http_acceptor(&self) -> &TlsAcceptor {
        &self.http
    }

    /// Reads the certificate and key files again and uses them for every
    /// new handshake. On failure the old certificate stays in use.
    ///
    /// # Errors
    /// As [`Tls::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_certified_key(&self.cert_path, &self.key_path, &self.provider)?;
        *self.resolver.current.write() = Arc::new(key);
        Ok(())
    }
}

/// Hands out whichever certificate was loaded last.
struct ReloadingResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ReloadingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadingResolver")
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| {
            TlsError(format!(
                "cannot read certificates from {}: {error}",
                cert_path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "no certificate in {}",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| {
        TlsError(format!(
            "cannot read a private key from {}: {error}",
            key_path.display()
        ))
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| {
            TlsError(format!(
                "unusable private key in {}: {error}",
                key_path.display()
            ))
        })?;
    let certified = CertifiedKey::new(certs, signing_key);
    // A key that does not match the certificate would fail every handshake.
    certified.keys_match().map_err(|error| {
        TlsError(format!(
            "the key in {} does not match the certificate in {}: {error}",
            key_path.display(),
            cert_path.display()
        ))
    })?;
    Ok(certified)
}
