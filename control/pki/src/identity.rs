//! What a certificate says (cluster SPIFFE ID, validity) and whether a
//! chain leads to our root.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use rustls::pki_types::{CertificateDer, UnixTime};
use x509_parser::{extensions::GeneralName, prelude::FromDer};

use crate::{PkiError, tls};

const SPIFFE_CLUSTER_PREFIX: &str = "spiffe://sluice/cluster/";

/// The SAN every cluster certificate carries.
pub fn cluster_spiffe_id(cluster: &str) -> String {
    format!("{SPIFFE_CLUSTER_PREFIX}{cluster}")
}

/// The fields of a certificate the relay decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The cluster named by a `spiffe://sluice/cluster/<name>` URI SAN.
    pub cluster: Option<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Serial number, lower-case hex.
    pub serial: String,
}

/// Reads the first certificate of a PEM chain.
pub fn cert_info(chain_pem: &str) -> Result<CertInfo, PkiError> {
    let chain = tls::parse_certs(chain_pem)?;
    let leaf = chain
        .first()
        .ok_or_else(|| PkiError::BadCert("no certificate in the PEM".into()))?;
    cert_info_der(leaf)
}

/// Reads a DER certificate (the peer's leaf, as rustls hands it over).
pub fn cert_info_der(der: &[u8]) -> Result<CertInfo, PkiError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| PkiError::BadCert(format!("unparsable certificate: {e}")))?;
    let mut cluster = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Some(rest) = uri.strip_prefix(SPIFFE_CLUSTER_PREFIX)
            {
                cluster = Some(rest.to_string());
            }
        }
    }
    let validity = cert.validity();
    Ok(CertInfo {
        cluster,
        not_before: to_system_time(validity.not_before.timestamp()),
        not_after: to_system_time(validity.not_after.timestamp()),
        serial: cert.raw_serial_as_string().replace(':', ""),
    })
}

/// `Ok` if `chain_pem` (leaf first, then intermediates) is a valid client
/// certificate chain under `root_pem` at `now`.
pub fn verify_chain(root_pem: &str, chain_pem: &str, now: SystemTime) -> Result<(), PkiError> {
    let verifier = tls::client_cert_verifier(root_pem, false)?;
    let chain = tls::parse_certs(chain_pem)?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| PkiError::BadCert("no certificate in the PEM".into()))?;
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    verify_with(
        &verifier,
        leaf,
        intermediates,
        UnixTime::since_unix_epoch(since_epoch),
    )
}

fn verify_with(
    verifier: &Arc<dyn rustls::server::danger::ClientCertVerifier>,
    leaf: &CertificateDer<'static>,
    intermediates: &[CertificateDer<'static>],
    now: UnixTime,
) -> Result<(), PkiError> {
    verifier
        .verify_client_cert(leaf, intermediates, now)
        .map(|_| ())
        .map_err(|e| PkiError::Untrusted(e.to_string()))
}

/// Renew once half of the lifetime has passed (and always once expired).
/// The lifetime counts from issuance: notBefore plus the clock skew it was
/// backdated by.
pub fn renewal_due(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    let not_before = (not_before + Duration::from_secs(crate::CLOCK_SKEW_SECS)).min(not_after);
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    now >= not_before + lifetime / 2
}

fn to_system_time(unix: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64)
}
