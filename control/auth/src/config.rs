//! What the dashboard's flags set (see docs/dashboard-auth.md).

use std::{net::IpAddr, num::NonZeroU32, path::Path, time::Duration};

use url::Url;

use crate::AuthError;

/// Authentication settings. Build with [`AuthConfig::new`], then adjust
/// the public fields; [`crate::Auth::new`] validates them.
#[derive(Clone)]
pub struct AuthConfig {
    /// The OpenID provider's issuer URL (discovery:
    /// `ISSUER/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// Never logged or shown (the `Debug` output hides it).
    pub client_secret: String,
    /// Where the provider sends the browser back: the dashboard's
    /// `…/auth/callback`, registered with the provider.
    pub redirect_url: String,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The ID token claim holding the user name (`sub`, `email`, …).
    pub username_claim: String,
    /// The ID token claim holding the groups (a list of strings).
    pub groups_claim: String,
    /// Prepended to the user and group names before matching RBAC
    /// subjects: set them like the API server's `--oidc-username-prefix`
    /// and `--oidc-groups-prefix`.
    pub username_prefix: String,
    pub groups_prefix: String,
    /// `Secure` cookie flag; may be off only when the redirect URL is
    /// plain http on a loopback address.
    pub cookie_secure: bool,
    /// Session lifetime (absolute, from login).
    pub session_ttl: Duration,
    /// Login attempts per client IP: burst, then one per `login_period`.
    pub login_burst: NonZeroU32,
    pub login_period: Duration,
    /// How long RBAC read from the snapshots is reused before re-reading.
    pub rbac_refresh: Duration,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<hidden>")
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .field("username_claim", &self.username_claim)
            .field("groups_claim", &self.groups_claim)
            .field("cookie_secure", &self.cookie_secure)
            .field("session_ttl", &self.session_ttl)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// Defaults: scope `groups`, user from `sub`, groups from `groups`, no
    /// prefixes, Secure cookies, 8 h sessions, 10 logins then one every
    /// 6 s per IP, RBAC re-read every 10 s.
    pub fn new(issuer: &str, client_id: &str, client_secret: &str, redirect_url: &str) -> Self {
        Self {
            issuer: issuer.to_string(),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            redirect_url: redirect_url.to_string(),
            scopes: vec!["groups".to_string()],
            username_claim: "sub".to_string(),
            groups_claim: "groups".to_string(),
            username_prefix: String::new(),
            groups_prefix: String::new(),
            cookie_secure: true,
            session_ttl: Duration::from_secs(8 * 3600),
            login_burst: NonZeroU32::new(10).expect("non-zero"),
            login_period: Duration::from_secs(6),
            rbac_refresh: Duration::from_secs(10),
        }
    }

    /// Reads the client secret from a file (trailing newline dropped), so
    /// it never appears on a command line.
    pub fn read_client_secret(path: &Path) -> Result<String, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AuthError::Config(format!("client secret file {}: {e}", path.display()))
        })?;
        let secret = text.trim_end_matches(['\n', '\r']).to_string();
        if secret.is_empty() {
            return Err(AuthError::Config(format!(
                "client secret file {} is empty",
                path.display()
            )));
        }
        Ok(secret)
    }

    /// Checks what can be checked without the provider.
    pub fn validate(&self) -> Result<(), AuthError> {
        let bad = |m: String| Err(AuthError::Config(m));
        if self.client_id.is_empty() {
            return bad("the client id is empty".into());
        }
        if self.groups_claim.is_empty() || self.username_claim.is_empty() {
            return bad("the username and groups claim names must not be empty".into());
        }
        let redirect = Url::parse(&self.redirect_url)
            .map_err(|e| AuthError::Config(format!("redirect URL {}: {e}", self.redirect_url)))?;
        if !redirect.path().ends_with("/auth/callback") {
            return bad(format!(
                "redirect URL {} must end in /auth/callback (where the router serves it)",
                self.redirect_url
            ));
        }
        if !self.cookie_secure && !is_loopback_http(&redirect) {
            return bad(format!(
                "cookies without the Secure flag are allowed only for http://127.0.0.1, \
                 [::1] or localhost, not {}",
                self.redirect_url
            ));
        }
        if self.session_ttl.is_zero() {
            return bad("the session lifetime must be positive".into());
        }
        if self.login_period.is_zero() {
            return bad("the login rate period must be positive".into());
        }
        Ok(())
    }
}

fn is_loopback_http(url: &Url) -> bool {
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(redirect: &str, secure: bool) -> AuthConfig {
        let mut c = AuthConfig::new("https://idp.example", "dash", "s", redirect);
        c.cookie_secure = secure;
        c
    }

    #[test]
    fn insecure_cookies_only_on_loopback_http() {
        let cases = [
            ("https://dash.example/auth/callback", true, true),
            ("https://dash.example/auth/callback", false, false),
            ("http://dash.example/auth/callback", false, false),
            ("http://127.0.0.1:8090/auth/callback", false, true),
            ("http://[::1]:8090/auth/callback", false, true),
            ("http://localhost:8090/auth/callback", false, true),
            ("https://127.0.0.1:8090/auth/callback", false, false),
            ("https://dash.example/elsewhere", true, false),
            ("not a url", true, false),
        ];
        for (redirect, secure, ok) in cases {
            assert_eq!(
                config(redirect, secure).validate().is_ok(),
                ok,
                "{redirect} {secure}"
            );
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = AuthConfig::new(
            "https://idp",
            "dash",
            "very-secret",
            "https://d/auth/callback",
        );
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    fn client_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "abc\n").unwrap();
        assert_eq!(AuthConfig::read_client_secret(&path).unwrap(), "abc");
        std::fs::write(&path, "\n").unwrap();
        assert!(AuthConfig::read_client_secret(&path).is_err());
        assert!(AuthConfig::read_client_secret(&dir.path().join("missing")).is_err());
    }
}
