//! The management plane's PKI: a root CA (generated, or the user's own), a
//! relay intermediate that signs the server's certificate and every
//! cluster's client certificate (from the relay agent's CSR; the agent's key
//! never leaves it), chain checks, and the rustls configurations both ends
//! of the relay use (ring, TLS 1.3 only, ALPN h2).
//!
//! Pure: time is a parameter, nothing here touches the network.
#![forbid(unsafe_code)]

pub mod authority;
pub mod identity;
pub mod tls;

pub use authority::{Authority, IssuedCert, PkiError, new_key_and_csr};
pub use identity::{CertInfo, cert_info, cluster_spiffe_id, renewal_due, verify_chain};

/// Default lifetime of a cluster's relay client certificate.
pub const DEFAULT_CLIENT_CERT_SECS: u64 = 24 * 3600;
/// Lifetime of the relay intermediate (re-issued when the server starts with
/// less than half of it left).
pub const RELAY_INTERMEDIATE_SECS: u64 = 365 * 24 * 3600;
/// Lifetime of a generated root CA.
pub const ROOT_CA_SECS: u64 = 10 * 365 * 24 * 3600;
/// Clock skew a certificate's notBefore allows for.
pub const CLOCK_SKEW_SECS: u64 = 60;
