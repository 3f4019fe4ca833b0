//! The OTLP/gRPC exporters Sluice's senders share (the node agent's
//! metrics and logs, the relay agent's analyses): one place for the
//! endpoint, TLS against the management plane's root CA (with an optional
//! name to check), the export timeout and the SDK's retry policy.
#![forbid(unsafe_code)]

use std::{path::PathBuf, time::Duration};

use opentelemetry_otlp::{
    LogExporter, MetricExporter, RetryPolicy, WithExportConfig, WithTonicConfig,
    tonic_types::transport::{Certificate, ClientTlsConfig},
};

/// Where a sender exports to.
#[derive(Clone, Debug)]
pub struct Target {
    /// `https://HOST:4317` (TLS) or `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// CA certificate (PEM file) the gateway's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Name the gateway's certificate must carry (default: the endpoint's host).
    pub server_name: Option<String>,
    /// Longest one export may take before it is retried.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("--otlp-ca {path}: {source}")]
    Ca {
        path: String,
        source: std::io::Error,
    },
    #[error("OTLP {signal} exporter: {reason}")]
    Build {
        signal: &'static str,
        reason: String,
    },
}

impl Target {
    /// The TLS settings, or None without a CA (plaintext or system roots).
    pub fn tls(&self) -> Result<Option<ClientTlsConfig>, OtlpError> {
        let Some(ca) = &self.ca else {
            return Ok(None);
        };
        let pem = std::fs::read(ca).map_err(|source| OtlpError::Ca {
            path: ca.display().to_string(),
            source,
        })?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        if let Some(name) = &self.server_name {
            tls = tls.domain_name(name.clone());
        }
        Ok(Some(tls))
    }

    /// A log exporter (build inside the tokio runtime: the channel lives on it).
    pub fn log_exporter(&self) -> Result<LogExporter, OtlpError> {
        let mut builder = LogExporter::builder()
            .with_tonic()
            .with_endpoint(self.endpoint.clone())
            .with_timeout(self.timeout)
            .with_retry_policy(RetryPolicy::recommended());
        if let Some(tls) = self.tls()? {
            builder = builder.with_tls_config(tls);
        }
        builder.build().map_err(|e| OtlpError::Build {
            signal: "log",
            reason: e.to_string(),
        })
    }

    /// A metric exporter (same settings).
    pub fn metric_exporter(&self) -> Result<MetricExporter, OtlpError> {
        let mut builder = MetricExporter::builder()
            .with_tonic()
            .with_endpoint(self.endpoint.clone())
            .with_timeout(self.timeout)
            .with_retry_policy(RetryPolicy::recommended());
        if let Some(tls) = self.tls()? {
            builder = builder.with_tls_config(tls);
        }
        builder.build().map_err(|e| OtlpError::Build {
            signal: "metric",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(ca: Option<PathBuf>) -> Target {
        Target {
            endpoint: "https://127.0.0.1:4317".into(),
            ca,
            server_name: Some("sluice-control".into()),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn no_ca_means_no_tls_settings() {
        assert!(target(None).tls().unwrap().is_none());
    }

    #[test]
    fn an_unreadable_ca_names_the_flag_and_the_path() {
        let err = target(Some("/nonexistent/root.crt".into()))
            .tls()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--otlp-ca /nonexistent/root.crt"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn exporters_build_with_a_readable_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("root.crt");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let t = target(Some(ca));
        assert!(t.tls().unwrap().is_some());
        t.log_exporter().unwrap();
        t.metric_exporter().unwrap();
    }
}
