//! The cluster registry (`KubernetesCluster`-style: name, clusterDomain,
//! skipWarming) and its relay identity tokens. The truth is a JSON file in
//! the server's state directory, so it survives a Redis without persistence;
//! Redis holds a mirror for readers.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Cluster names are DNS labels: they end up in SANs and Redis keys.
const MAX_NAME_LEN: usize = 63;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub name: String,
    pub cluster_domain: String,
    pub skip_warming: bool,
    pub registered_unix: u64,
    /// SHA-256 of the relay identity token (hex); `None` once a one-time
    /// token was used.
    pub token_sha256: Option<String>,
    pub long_lived_token: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("cluster {0:?} is already registered (deregister it first)")]
    Exists(String),
    #[error("cluster {0:?} is not registered")]
    NotRegistered(String),
    #[error(
        "invalid cluster name {0:?}: use 1-63 lower-case letters, digits and '-', starting with a letter"
    )]
    BadName(String),
    #[error(
        "the relay identity token for cluster {0:?} is not valid (wrong, or a one-time token already used)"
    )]
    BadToken(String),
    #[error("registry file {path}: {reason}")]
    File { path: String, reason: String },
}

pub struct Registry {
    path: PathBuf,
    clusters: BTreeMap<String, Registration>,
}

impl Registry {
    /// Loads `path` (absent: empty).
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let clusters = match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| file_err(path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(file_err(path, e)),
        };
        Ok(Self {
            path: path.to_owned(),
            clusters,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Registration> {
        self.clusters.get(name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Registration> {
        self.clusters.values()
    }

    /// Registers `name` and returns its relay identity token (shown once;
    /// only its hash is kept).
    pub fn register(
        &mut self,
        name: &str,
        cluster_domain: &str,
        skip_warming: bool,
        long_lived_token: bool,
        now_unix: u64,
    ) -> Result<String, RegistryError> {
        validate_name(name)?;
        if self.clusters.contains_key(name) {
            return Err(RegistryError::Exists(name.into()));
        }
        let token = new_token()?;
        let registration = Registration {
            name: name.into(),
            cluster_domain: if cluster_domain.is_empty() {
                "cluster.local".into()
            } else {
                cluster_domain.into()
            },
            skip_warming,
            registered_unix: now_unix,
            token_sha256: Some(sha256_hex(&token)),
            long_lived_token,
        };
        self.clusters.insert(name.into(), registration);
        self.save()?;
        Ok(token)
    }

    pub fn deregister(&mut self, name: &str) -> Result<Registration, RegistryError> {
        let removed = self
            .clusters
            .remove(name)
            .ok_or_else(|| RegistryError::NotRegistered(name.into()))?;
        self.save()?;
        Ok(removed)
    }

    /// Checks a relay identity token; a one-time token is used up.
    pub fn redeem_token(&mut self, name: &str, token: &str) -> Result<(), RegistryError> {
        let registration = self
            .clusters
            .get_mut(name)
            .ok_or_else(|| RegistryError::NotRegistered(name.into()))?;
        let expected = registration
            .token_sha256
            .as_deref()
            .ok_or_else(|| RegistryError::BadToken(name.into()))?;
        // Compare digests, not tokens: equal length, no early exit on a
        // prefix of the secret.
        if !constant_time_eq(expected.as_bytes(), sha256_hex(token).as_bytes()) {
            return Err(RegistryError::BadToken(name.into()));
        }
        if !registration.long_lived_token {
            registration.token_sha256 = None;
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), RegistryError> {
        let json =
            serde_json::to_vec_pretty(&self.clusters).map_err(|e| file_err(&self.path, e))?;
        let tmp = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| file_err(&self.path, e))
    }
}

pub fn validate_name(name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::BadName(name.into()))
    }
}

fn new_token() -> Result<String, RegistryError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RegistryError::File {
            path: "(random)".into(),
            reason: "no randomness for a token".into(),
        })?;
    Ok(hex(&bytes))
}

fn sha256_hex(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_one_time_tokens_used_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clusters.json");
        let mut registry = Registry::load(&path).unwrap();
        let once = registry.register("c1", "", false, false, 10).unwrap();
        let long = registry.register("c2", "c2.local", true, true, 10).unwrap();
        assert_eq!(
            registry.register("c1", "", false, false, 10),
            Err(RegistryError::Exists("c1".into()))
        );
        assert_eq!(
            registry.redeem_token("c1", "wrong"),
            Err(RegistryError::BadToken("c1".into()))
        );
        assert_eq!(
            registry.redeem_token("c2", &once),
            Err(RegistryError::BadToken("c2".into()))
        );
        registry.redeem_token("c1", &once).unwrap();
        assert_eq!(
            registry.redeem_token("c1", &once),
            Err(RegistryError::BadToken("c1".into()))
        );
        registry.redeem_token("c2", &long).unwrap();
        registry.redeem_token("c2", &long).unwrap();

        // Kept on disk, token hashes only.
        let reloaded = Registry::load(&path).unwrap();
        assert_eq!(reloaded.get("c2").unwrap().cluster_domain, "c2.local");
        assert_eq!(reloaded.get("c1").unwrap().token_sha256, None);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&long), "the token itself is never stored");

        assert_eq!(
            registry.deregister("nope"),
            Err(RegistryError::NotRegistered("nope".into()))
        );
        registry.deregister("c1").unwrap();
        assert!(Registry::load(&path).unwrap().get("c1").is_none());
    }

    #[test]
    fn names_are_dns_labels() {
        for bad in ["", "C1", "1c", "c_1", "c-", &"c".repeat(64), "a/b", "a:b"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["c", "cluster-1", &"c".repeat(63)] {
            validate_name(good).unwrap();
        }
    }
}
