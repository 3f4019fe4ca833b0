//! Dashboard sessions and pending logins in Redis, beside the management
//! plane's state (same `PREFIX:v1:` key space, see `sluice-store`):
//!
//! | key | content | TTL |
//! | --- | --- | --- |
//! | `PREFIX:v1:dashboard:session:SHA256(id)` | session JSON (user, groups, CSRF token, times) | session lifetime |
//! | `PREFIX:v1:dashboard:login:SHA256(state)` | pending login JSON (nonce, PKCE verifier, return path) | 10 min, read once |
//!
//! Keys hold the SHA-256 of the cookie value, not the value: whoever can
//! read Redis still cannot present a session cookie.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use redis::AsyncCommands;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_store::Store;

use crate::AuthError;

/// How long a started login may take to come back through the callback.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Length of a token: 32 random bytes (256 bits), base64url without padding.
const TOKEN_LEN: usize = 43;

/// A logged-in user. (`Debug` leaves the CSRF token out.)
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub groups: Vec<String>,
    /// This session's CSRF token (random, 256 bits).
    pub csrf: String,
    pub created_unix: u64,
    pub expires_unix: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("groups", &self.groups)
            .field("expires_unix", &self.expires_unix)
            .finish_non_exhaustive()
    }
}

/// A login between `/auth/login` and `/auth/callback`.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
}

#[derive(Clone)]
pub struct SessionStore {
    store: Store,
    ttl: Duration,
}

/// 256 random bits from the OS, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Could `value` be a token we issued? (Refuses forged junk before Redis.)
fn well_formed(value: &str) -> bool {
    value.len() == TOKEN_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SessionStore {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    fn key(&self, what: &str, token: &str) -> String {
        let digest = Sha256::digest(token.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.store.versioned_key(&format!("dashboard:{what}:{hex}"))
    }

    /// Creates a session; returns its id (the cookie value).
    pub async fn create(
        &self,
        user: &str,
        groups: &[String],
    ) -> Result<(String, Session), AuthError> {
        let id = random_token();
        let now = now_unix();
        let session = Session {
            user: user.to_string(),
            groups: groups.to_vec(),
            csrf: random_token(),
            created_unix: now,
            expires_unix: now + self.ttl.as_secs().max(1),
        };
        let json = serde_json::to_string(&session).expect("a session serializes");
        let mut conn = self.store.connection();
        let () = conn
            .pset_ex(self.key("session", &id), json, self.ttl.as_millis() as u64)
            .await?;
        Ok((id, session))
    }

    /// The live session with this id; `None` for a malformed, unknown or
    /// expired one.
    pub async fn get(&self, id: &str) -> Result<Option<Session>, AuthError> {
        if !well_formed(id) {
            return Ok(None);
        }
        let mut conn = self.store.connection();
        let json: Option<String> = conn.get(self.key("session", id)).await?;
        let Some(json) = json else { return Ok(None) };
        let session: Session = match serde_json::from_str(&json) {
            Ok(s) => s,
            Err(_) => return Ok(None),
        };
        // Redis' TTL removes it; the recorded expiry is a second guard.
        Ok((session.expires_unix > now_unix()).then_some(session))
    }

    pub async fn delete(&self, id: &str) -> Result<(), AuthError> {
        if !well_formed(id) {
            return Ok(());
        }
        let mut conn = self.store.connection();
        let _: u64 = conn.del(self.key("session", id)).await?;
        Ok(())
    }

    /// Records a started login under `state`.
    pub async fn put_login(&self, state: &str, login: &PendingLogin) -> Result<(), AuthError> {
        let json = serde_json::to_string(login).expect("a pending login serializes");
        let mut conn = self.store.connection();
        let () = conn
            .set_ex(self.key("login", state), json, LOGIN_TTL.as_secs())
            .await?;
        Ok(())
    }

    /// Takes the login started under `state` (once: a replayed callback
    /// finds nothing).
    pub async fn take_login(&self, state: &str) -> Result<Option<PendingLogin>, AuthError> {
        if !well_formed(state) {
            return Ok(None);
        }
        let key = self.key("login", state);
        let mut conn = self.store.connection();
        let (json,): (Option<String>,) = redis::pipe()
            .atomic()
            .get(&key)
            .del(&key)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaves_the_csrf_token_out() {
        let session = Session {
            user: "alice".into(),
            groups: vec![],
            csrf: "the-token".into(),
            created_unix: 0,
            expires_unix: 1,
        };
        let text = format!("{session:?}");
        assert!(
            text.contains("alice") && !text.contains("the-token"),
            "{text}"
        );
    }

    #[test]
    fn tokens_are_256_bit_and_well_formed() {
        let a = random_token();
        assert_eq!(a.len(), TOKEN_LEN);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert!(well_formed(&a));
        assert_ne!(a, random_token());
        for forged in [
            "",
            "x",
            &"a".repeat(42),
            &"a".repeat(44),
            &format!("{}=", &a[..42]),
            &format!("{}.", &a[..42]),
        ] {
            assert!(!well_formed(forged), "{forged}");
        }
    }
}
