//! The admin endpoint's TLS (rustls, ring provider): a server certificate and key from PEM
//! files and, with `client_ca`, mandatory client certificates from that CA. A client without
//! one fails the handshake and never gets an HTTP answer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {source}")]
    Certs {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("no certificate in {0}")]
    NoCert(PathBuf),
    #[error("cannot read the private key in {path}: {source}")]
    Key {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("client_ca {path}: {source}")]
    ClientCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("client_ca {path}: {source}")]
    Verifier {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("tls_cert and tls_key do not make a usable server identity: {0}")]
    Identity(rustls::Error),
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certs {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.to_path_buf()));
    }
    Ok(certs)
}

/// The acceptor for `cert` + `key`, requiring client certificates from `client_ca` when set.
pub fn acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Identity)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|source| TlsError::ClientCa {
                    path: ca.to_path_buf(),
                    source,
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|source| TlsError::Verifier {
                        path: ca.to_path_buf(),
                        source,
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(TlsError::Identity)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");

    fn at(name: &str) -> PathBuf {
        Path::new(CERTS).join(name)
    }

    #[test]
    fn the_development_admin_certificate_loads_with_and_without_client_ca() {
        acceptor(&at("admin.pem"), &at("admin-key.pem"), None).unwrap();
        acceptor(&at("admin.pem"), &at("admin-key.pem"), Some(&at("ca.pem"))).unwrap();
    }

    #[test]
    fn a_key_file_without_a_key_and_a_ca_without_certificates_are_named() {
        let err = acceptor(&at("admin.pem"), &at("admin.pem"), None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("admin.pem"), "{err}");
        let err = acceptor(
            &at("admin.pem"),
            &at("admin-key.pem"),
            Some(&at("admin-key.pem")),
        )
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            format!("no certificate in {}", at("admin-key.pem").display())
        );
    }
}
