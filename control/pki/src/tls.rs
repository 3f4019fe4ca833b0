//! rustls configurations of the relay: ring, TLS 1.3 only, ALPN h2.
//!
//! The server accepts connections without a client certificate (only the
//! registration call is served on those); a client certificate, when
//! presented, must chain to the root or the handshake fails.

use std::sync::{Arc, RwLock};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier, danger::ClientCertVerifier},
    sign::CertifiedKey,
};

use crate::PkiError;

/// ALPN protocol of the relay (gRPC over HTTP/2).
pub const ALPN_H2: &[u8] = b"h2";

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadCert(format!("unparsable PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(PkiError::BadCert("no certificate in the PEM".into()));
    }
    Ok(certs)
}

pub fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::BadCert(format!("unparsable PEM private key: {e}")))
}

fn roots(root_pem: &str) -> Result<RootCertStore, PkiError> {
    let mut store = RootCertStore::empty();
    for cert in parse_certs(root_pem)? {
        store
            .add(cert)
            .map_err(|e| PkiError::BadCert(format!("root certificate: {e}")))?;
    }
    Ok(store)
}

/// Verifies client certificates against `root_pem`; with `optional`,
/// connections without one are let through (registration).
pub fn client_cert_verifier(
    root_pem: &str,
    optional: bool,
) -> Result<Arc<dyn ClientCertVerifier>, PkiError> {
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(root_pem)?), provider());
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| PkiError::BadCert(format!("client verifier: {e}")))
}

/// The management server's TLS configuration.
pub fn server_config(
    chain_pem: &str,
    key_pem: &str,
    root_pem: &str,
) -> Result<ServerConfig, PkiError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(client_cert_verifier(root_pem, true)?)
        .with_single_cert(parse_certs(chain_pem)?, parse_key(key_pem)?)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// The server certificate every new handshake presents, replaceable at
/// any time ([`SwappableCert::set`]): rotation without a restart. Open
/// connections keep the certificate they were made with.
#[derive(Debug)]
pub struct SwappableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl SwappableCert {
    pub fn new(chain_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        Ok(Self {
            current: RwLock::new(certified_key(chain_pem, key_pem)?),
        })
    }

    /// New handshakes present `chain_pem` from now on.
    pub fn set(&self, chain_pem: &str, key_pem: &str) -> Result<(), PkiError> {
        let key = certified_key(chain_pem, key_pem)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(())
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, PkiError> {
    let key = CertifiedKey::from_der(parse_certs(chain_pem)?, parse_key(key_pem)?, &provider())?;
    Ok(Arc::new(key))
}

/// [`server_config`] whose certificate comes from `cert` (rotatable).
pub fn server_config_swappable(
    cert: Arc<SwappableCert>,
    root_pem: &str,
) -> Result<ServerConfig, PkiError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(client_cert_verifier(root_pem, true)?)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// A relay agent's TLS configuration: trusts `root_pem` for the server;
/// presents `client` (chain, key) when given (mTLS), else nothing
/// (registration).
pub fn client_config(
    root_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<ClientConfig, PkiError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(root_pem)?);
    let mut config = match client {
        Some((chain, key)) => {
            builder.with_client_auth_cert(parse_certs(chain)?, parse_key(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// The name the agent checks in the server's certificate.
pub fn server_name(name: &str) -> Result<ServerName<'static>, PkiError> {
    ServerName::try_from(name.to_string())
        .map_err(|e| PkiError::BadCert(format!("server name {name:?}: {e}")))
}
