//! The certificate authority: root, relay intermediate, issuing.

use std::{
    fs,
    path::Path,
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use crate::{CLOCK_SKEW_SECS, RELAY_INTERMEDIATE_SECS, ROOT_CA_SECS, cluster_spiffe_id};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the certificate signing request is not valid: {0}")]
    BadCsr(String),
    #[error("{0}")]
    BadCert(String),
    #[error("certificate chain refused: {0}")]
    Untrusted(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A certificate chain (leaf first, PEM) signed for a subject.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// Leaf then relay intermediate, PEM.
    pub chain_pem: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Root and relay intermediate, certificates and keys in PEM.
pub struct Authority {
    root_cert_pem: String,
    root_key_pem: String,
    relay_cert_pem: String,
    relay_key_pem: String,
}

const ROOT_CERT: &str = "root.crt";
const ROOT_KEY: &str = "root.key";
const RELAY_CERT: &str = "relay.crt";
const RELAY_KEY: &str = "relay.key";

impl Authority {
    /// A new root CA and relay intermediate.
    pub fn generate(now: SystemTime) -> Result<Self, PkiError> {
        let root_key = KeyPair::generate()?;
        // A name of its own: a chain from another Sluice installation then
        // fails as "unknown CA", not as a bad signature under a same-named CA.
        let mut params = ca_params(
            &format!("Sluice Root CA {}", random_hex(4)?),
            now,
            ROOT_CA_SECS,
            None,
        )?;
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root_cert = params.self_signed(&root_key)?;
        Self::with_root(root_cert.pem(), root_key.serialize_pem(), now)
    }

    /// The user's own root (e.g. from files or a Secret) and a new relay
    /// intermediate under it.
    pub fn with_root(
        root_cert_pem: String,
        root_key_pem: String,
        now: SystemTime,
    ) -> Result<Self, PkiError> {
        let root_key = KeyPair::from_pem(&root_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&root_cert_pem, &root_key)?;
        let relay_key = KeyPair::generate()?;
        let name = format!("Sluice Relay Intermediate CA {}", random_hex(4)?);
        let mut params = ca_params(&name, now, RELAY_INTERMEDIATE_SECS, Some(0))?;
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = true;
        let relay_cert = params.signed_by(&relay_key, &issuer)?;
        Ok(Self {
            root_cert_pem,
            root_key_pem,
            relay_cert_pem: relay_cert.pem(),
            relay_key_pem: relay_key.serialize_pem(),
        })
    }

    /// Loads the authority kept in `dir`, or creates it there: the root
    /// comes from `own_root` (cert, key) when given, else from `dir`, else
    /// it is generated. The intermediate is re-issued when less than half
    /// of its life is left.
    pub fn load_or_create(
        dir: &Path,
        own_root: Option<(&Path, &Path)>,
        now: SystemTime,
    ) -> Result<Self, PkiError> {
        fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
        let (root_cert_pem, root_key_pem) = match own_root {
            Some((cert, key)) => (read(cert)?, read(key)?),
            None if dir.join(ROOT_CERT).exists() => {
                (read(&dir.join(ROOT_CERT))?, read(&dir.join(ROOT_KEY))?)
            }
            None => {
                let generated = Self::generate(now)?;
                generated.save(dir)?;
                return Ok(generated);
            }
        };
        // The intermediate kept in `dir` is reused if it was issued under
        // this very root (the root kept beside it) and has life left.
        let kept_root = fs::read_to_string(dir.join(ROOT_CERT)).ok();
        if kept_root.as_deref() == Some(root_cert_pem.as_str()) && dir.join(RELAY_CERT).exists() {
            let relay_cert_pem = read(&dir.join(RELAY_CERT))?;
            let info = crate::cert_info(&relay_cert_pem)?;
            if !crate::renewal_due(info.not_before, info.not_after, now) {
                return Ok(Self {
                    root_cert_pem,
                    root_key_pem,
                    relay_cert_pem,
                    relay_key_pem: read(&dir.join(RELAY_KEY))?,
                });
            }
        }
        let authority = Self::with_root(root_cert_pem, root_key_pem, now)?;
        authority.save(dir)?;
        Ok(authority)
    }

    /// Writes the four PEM files into `dir` (keys mode 0600).
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        write(&dir.join(ROOT_CERT), &self.root_cert_pem, false)?;
        write(&dir.join(ROOT_KEY), &self.root_key_pem, true)?;
        write(&dir.join(RELAY_CERT), &self.relay_cert_pem, false)?;
        write(&dir.join(RELAY_KEY), &self.relay_key_pem, true)
    }

    pub fn root_pem(&self) -> &str {
        &self.root_cert_pem
    }

    pub fn relay_pem(&self) -> &str {
        &self.relay_cert_pem
    }

    /// The management server's certificate: DNS and IP SANs from `names`.
    pub fn issue_server_cert(
        &self,
        names: &[String],
        now: SystemTime,
        lifetime_secs: u64,
    ) -> Result<(IssuedCert, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = leaf_params("sluice-control", now, lifetime_secs)?;
        for name in names {
            params.subject_alt_names.push(match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.as_str().try_into()?),
            });
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = self.sign(&params, &key)?;
        Ok((cert, key.serialize_pem()))
    }

    /// Signs a relay agent's CSR for `cluster`: whatever the CSR asks for,
    /// the certificate names only the cluster's SPIFFE ID and allows only
    /// client authentication.
    pub fn sign_cluster_csr(
        &self,
        csr_pem: &str,
        cluster: &str,
        now: SystemTime,
        lifetime_secs: u64,
    ) -> Result<IssuedCert, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let mut params = leaf_params(cluster, now, lifetime_secs)?;
        params.subject_alt_names = vec![SanType::URI(cluster_spiffe_id(cluster).try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(&params, &csr.public_key)
    }

    fn sign(
        &self,
        params: &CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<IssuedCert, PkiError> {
        let relay_key = KeyPair::from_pem(&self.relay_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.relay_cert_pem, &relay_key)?;
        let cert = params.signed_by(public_key, &issuer)?;
        Ok(IssuedCert {
            chain_pem: format!("{}{}", cert.pem(), self.relay_cert_pem),
            not_before: params.not_before.into(),
            not_after: params.not_after.into(),
        })
    }
}

/// A relay agent's new private key (PEM, stays with the agent) and a CSR
/// for it naming `cluster`.
pub fn new_key_and_csr(cluster: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![])?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cluster);
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

fn ca_params(
    name: &str,
    now: SystemTime,
    lifetime_secs: u64,
    path_len: Option<u8>,
) -> Result<CertificateParams, PkiError> {
    let mut params = leaf_params(name, now, lifetime_secs)?;
    params.is_ca = match path_len {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    Ok(params)
}

fn leaf_params(
    common_name: &str,
    now: SystemTime,
    lifetime_secs: u64,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(vec![])?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Sluice");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.not_before = to_time(now - Duration::from_secs(CLOCK_SKEW_SECS));
    params.not_after = to_time(now + Duration::from_secs(lifetime_secs));
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

fn to_time(t: SystemTime) -> OffsetDateTime {
    // Whole seconds: X.509 times have no fractions.
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::BadCert("no randomness for a serial number".into()))?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and without a leading zero byte
    Ok(SerialNumber::from_slice(&bytes))
}

fn random_hex(n: usize) -> Result<String, PkiError> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::BadCert("no randomness for a CA name".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| io_err(path, source))
}

fn write(path: &Path, content: &str, secret: bool) -> Result<(), PkiError> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|source| io_err(&tmp, source))?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| io_err(&tmp, source))?;
    fs::rename(&tmp, path).map_err(|source| io_err(path, source))
}

fn io_err(path: &Path, source: std::io::Error) -> PkiError {
    PkiError::Io {
        path: path.display().to_string(),
        source,
    }
}
