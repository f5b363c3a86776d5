//! TLS for every listener and every upstream a front end reaches: the server side with a
//! listener's certificate and key (the key file must be warden's alone), the client side
//! verified against a CA file. rustls with the ring provider only, as everywhere in warden.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Why a listener's or an upstream's TLS cannot be set up; says which file and why.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("upstream CA {path}: {message}")]
    UpstreamCa { path: String, message: String },
}

fn certificate_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::Certificate {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// A TLS acceptor with `files`' chain and key, offering `alpn` (none when empty).
pub fn acceptor(files: &TlsFiles, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let (cert_file, key_file) = (&files.cert_file, &files.key_file);
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| certificate_error(cert_file, e))?;
    crate::base::secret::check_private(key_file).map_err(|e| certificate_error(key_file, e))?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| certificate_error(key_file, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| certificate_error(cert_file, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| certificate_error(cert_file, e))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A TLS connector that trusts the certificates of the PEM file `ca_file` only.
pub fn connector(ca_file: &Path) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let fail = |message: String| TlsError::UpstreamCa {
        path: ca_file.display().to_string(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| fail(e.to_string()))? {
        roots
            .add(cert.map_err(|e| fail(e.to_string()))?)
            .map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(client)))
}
