//! HTTPS without a proxy: the PEM certificate chain and key, loaded once at start into a rustls acceptor
//! (the `ring` provider, TLS 1.2 and 1.3, HTTP/1.1 only, no client certificates).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// Why the TLS files could not be turned into an acceptor.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable or not PEM.
    #[error("--tls-cert {}: {source}", path.display())]
    Cert {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("--tls-cert {}: no PEM certificate in the file", path.display())]
    NoCert {
        /// The file.
        path: PathBuf,
    },
    /// The key file is unreadable or holds no PEM private key.
    #[error("--tls-key {}: {source} (expected a PEM PKCS#8, PKCS#1 or SEC1 private key)", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the pair, e.g. the key does not belong to the certificate.
    #[error("--tls-cert and --tls-key are not a usable pair: {0}")]
    Pair(rustls::Error),
}

/// Loads `files` into an acceptor; every connection it accepts speaks HTTP/1.1 over TLS.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certs = certificates(&files.cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Key { path: files.key.clone(), source })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(TlsError::Pair)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Every certificate in the PEM file at `path`, leaf first.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let cert_error = |source| TlsError::Cert { path: path.to_path_buf(), source };
    let certs =
        CertificateDer::pem_file_iter(path).map_err(cert_error)?.collect::<Result<Vec<_>, _>>().map_err(cert_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCert { path: path.to_path_buf() });
    }
    Ok(certs)
}
