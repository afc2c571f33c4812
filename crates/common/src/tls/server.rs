//! What a TLS server presents: a default certificate and others chosen by SNI, optionally a
//! demand for client certificates signed by a CA bundle, and ALPN. [`ReloadingServer`] reads
//! the files again when they change (or when asked, on SIGHUP): connections open before keep
//! the configuration they started with, new handshakes get the new one, and files that do not
//! load keep the old configuration in place.

use super::{TlsError, VERSIONS, provider, read_certificates, read_private_key, read_roots};
use crate::{
    files::Stamp,
    shutdown::{Every, FirstTick},
};
use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::signal::unix::Signal;
use tokio_util::sync::CancellationToken;

/// How often the files are looked at for a change.
const POLL: Duration = Duration::from_millis(250);

/// A certificate chain and its key, by file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The chain, PEM, leaf first.
    pub cert: PathBuf,
    /// The private key, PEM.
    pub key: PathBuf,
}

/// Everything a TLS server presents, by file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// The certificate for clients that name no host, or a host no `sni` entry names.
    pub default: CertificateFiles,
    /// Certificates by the host name a client asks for (SNI), lower case.
    pub sni: Vec<(String, CertificateFiles)>,
    /// When set, clients must present a certificate signed by one in this bundle.
    pub client_ca: Option<PathBuf>,
    /// The ALPN protocols offered, preferred first.
    pub alpn: Vec<Vec<u8>>,
}

impl ServerFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        let certificates = std::iter::once(&self.default).chain(self.sni.iter().map(|(_, files)| files));
        certificates.flat_map(|files| [files.cert.as_path(), files.key.as_path()]).chain(self.client_ca.as_deref())
    }
}

/// A chain and its key, checked to belong together.
fn certified_key(files: &CertificateFiles, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certificates(&files.cert)?;
    let key = read_private_key(&files.key)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::Rustls { context: format!("the key in {}", files.key.display()), source })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|source| TlsError::Rustls {
        context: format!("{} and {}", files.cert.display(), files.key.display()),
        source,
    })?;
    Ok(Arc::new(certified))
}

/// Picks the certificate for a handshake by the name the client asked for.
#[derive(Debug)]
struct BySni {
    default: Arc<CertifiedKey>,
    named: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let named = hello.server_name().and_then(|name| self.named.get(&name.to_ascii_lowercase()));
        Some(Arc::clone(named.unwrap_or(&self.default)))
    }
}

/// The rustls configuration `files` describe.
pub fn server_config(files: &ServerFiles) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let default = certified_key(&files.default, &provider)?;
    let named = files
        .sni
        .iter()
        .map(|(name, files)| Ok((name.to_ascii_lowercase(), certified_key(files, &provider)?)))
        .collect::<Result<HashMap<_, _>, TlsError>>()?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(VERSIONS)
        .map_err(|source| TlsError::Rustls { context: "the protocol versions".into(), source })?;
    let builder = match &files.client_ca {
        Some(path) => {
            let roots = Arc::new(read_roots(path)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider).build().map_err(|error| {
                TlsError::File { path: path.clone(), reason: format!("cannot verify clients with it: {error}") }
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(BySni { default, named }));
    config.alpn_protocols.clone_from(&files.alpn);
    Ok(config)
}

/// SIGHUP, caught from now on: call it before announcing readiness, since until a process
/// catches SIGHUP the signal ends it. `None` (logged) if it cannot be caught.
pub fn hangup() -> Option<Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; TLS files are still watched");
            None
        }
    }
}

/// A server configuration read from its files, replaced whole when they change.
#[derive(Debug)]
pub struct ReloadingServer {
    files: ArcSwap<ServerFiles>,
    current: ArcSwap<ServerConfig>,
    name: &'static str,
}

impl ReloadingServer {
    /// Reads `files`; the error names the file at fault. `name` names the listener in logs and
    /// metrics.
    pub fn new(files: ServerFiles, name: &'static str) -> Result<Self, TlsError> {
        let config = server_config(&files)?;
        Ok(Self { files: ArcSwap::from_pointee(files), current: ArcSwap::from_pointee(config), name })
    }

    /// The configuration for the next handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Reads the files again; on failure the configuration in use stays and the reason is
    /// logged and counted (`rampart_tls_reload_errors_total`).
    pub fn reload(&self) -> Result<(), TlsError> {
        match server_config(&self.files.load()) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                metrics::counter!("rampart_tls_reloads_total", "listener" => self.name).increment(1);
                tracing::info!(listener = self.name, "TLS certificates read again");
                Ok(())
            }
            Err(error) => {
                metrics::counter!("rampart_tls_reload_errors_total", "listener" => self.name).increment(1);
                tracing::error!(listener = self.name, %error, "cannot use the new TLS files; the certificates in use stay");
                Err(error)
            }
        }
    }

    /// Serves from `files` from the next handshake on, once they are read and found usable;
    /// otherwise nothing changes and the error names the file at fault.
    pub fn replace(&self, files: ServerFiles) -> Result<(), TlsError> {
        if **self.files.load() == files {
            return self.reload();
        }
        let config = server_config(&files)?;
        self.files.store(Arc::new(files));
        self.current.store(Arc::new(config));
        metrics::counter!("rampart_tls_reloads_total", "listener" => self.name).increment(1);
        tracing::info!(listener = self.name, "TLS certificates taken from new files");
        Ok(())
    }

    /// Reloads whenever a file changes, or when `hangup` (see [`hangup`]) reports a SIGHUP,
    /// until `stop`.
    pub async fn watch(self: Arc<Self>, mut hangup: Option<Signal>, stop: CancellationToken) {
        let mut seen = Stamp::of_all(self.files.load().paths());
        let mut every = Every::new(POLL, FirstTick::AfterOnePeriod, stop);
        loop {
            let asked = tokio::select! {
                more = every.tick() => if more { false } else { break },
                Some(()) = async { hangup.as_mut()?.recv().await } => true,
            };
            let now = Stamp::of_all(self.files.load().paths());
            if now == seen && !asked {
                continue;
            }
            seen = now;
            let _ = self.reload();
        }
    }
}
