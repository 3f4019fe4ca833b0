//! The relay's own TLS certificate, rotated without a restart: re-issued
//! by the relay intermediate at half of its life and swapped into the
//! rustls certificate resolver. New handshakes get the new certificate;
//! open connections (and their streams) are not touched.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use sluice_pki::{Authority, PkiError, renewal_due, tls::SwappableCert};

/// Longest pause between two checks of whether rotation is due.
const MAX_CHECK_EVERY: Duration = Duration::from_secs(60);

/// What to issue: names in the certificate, and its lifetime.
#[derive(Clone, Debug)]
pub struct ServerCertConfig {
    pub names: Vec<String>,
    pub lifetime_secs: u64,
}

/// The certificate currently served, and when it was issued for.
pub struct ServerCert {
    pub resolver: Arc<SwappableCert>,
    not_before: SystemTime,
    not_after: SystemTime,
    config: ServerCertConfig,
}

impl ServerCert {
    /// Issues the first certificate.
    pub fn issue(authority: &Authority, config: ServerCertConfig) -> Result<Self, PkiError> {
        let (cert, key) =
            authority.issue_server_cert(&config.names, SystemTime::now(), config.lifetime_secs)?;
        Ok(Self {
            resolver: Arc::new(SwappableCert::new(&cert.chain_pem, &key)?),
            not_before: cert.not_before,
            not_after: cert.not_after,
            config,
        })
    }

    /// Re-issues now if half of the current certificate's life is gone;
    /// true if it did.
    pub fn rotate_if_due(&mut self, authority: &Authority) -> Result<bool, PkiError> {
        let now = SystemTime::now();
        if !renewal_due(self.not_before, self.not_after, now) {
            return Ok(false);
        }
        let (cert, key) =
            authority.issue_server_cert(&self.config.names, now, self.config.lifetime_secs)?;
        self.resolver.set(&cert.chain_pem, &key)?;
        self.not_before = cert.not_before;
        self.not_after = cert.not_after;
        Ok(true)
    }

    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Checks for rotation every 1/20 of the lifetime (at most a minute)
    /// until the process ends. A failed issue is retried at the next check
    /// (the old certificate stays in use until it expires).
    pub async fn rotate_forever(mut self, hub: Arc<super::Hub>) {
        let every = Duration::from_secs(self.config.lifetime_secs.max(1))
            .div_f64(20.0)
            .clamp(Duration::from_millis(100), MAX_CHECK_EVERY);
        loop {
            tokio::time::sleep(every).await;
            match self.rotate_if_due(&hub.authority) {
                Ok(true) => tracing::info!(
                    not_after = ?self.not_after,
                    "relay server certificate rotated; new connections use the new one"
                ),
                Ok(false) => {}
                Err(e) => tracing::error!("rotating the relay server certificate: {e}"),
            }
        }
    }
}
