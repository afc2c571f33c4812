//! TLS with rustls and its `ring` provider (no OpenSSL, no C toolchain beyond `ring`'s own):
//! what a server presents ([`server`]: certificates by SNI, client certificates, reloading) and
//! how a client checks it ([`client`]). TLS 1.2 and 1.3 only.

pub mod client;
pub mod server;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

/// The protocol versions Rampart speaks: 1.3, and 1.2 for the clients that have no 1.3.
pub static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The ALPN names a Rampart HTTP listener offers, preferred first.
pub fn http_alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// The cryptography every Rampart TLS endpoint uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS material could not be used; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the material (a key that does not match its certificate, say).
    #[error("{context}: {source}")]
    Rustls {
        /// What was being built.
        context: String,
        /// rustls's reason.
        source: rustls::Error,
    },
}

impl TlsError {
    fn file(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self::File { path: path.to_owned(), reason: reason.to_string() }
    }
}

/// The certificates of a PEM file, in order (a chain: leaf first).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| TlsError::file(path, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::file(path, error))?;
    if certificates.is_empty() {
        return Err(TlsError::file(path, "no CERTIFICATE block in the file"));
    }
    Ok(certificates)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| TlsError::file(path, error))
}

/// A trust store of the certificates in a PEM bundle.
pub fn read_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in read_certificates(path)? {
        roots.add(certificate).map_err(|error| TlsError::file(path, error))?;
    }
    Ok(roots)
}
