//! The OpenID provider side: discovery, the authorization request (state,
//! nonce, PKCE S256) and the code exchange with ID token validation
//! (signature against the provider's JWKS, issuer, audience, expiry,
//! nonce), all by the `openidconnect` crate.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IdToken, IssuerUrl, LogoutRequest, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse,
    core::{
        CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    },
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use url::Url;

use crate::{AuthConfig, AuthError};

/// How long discovery results (endpoints, signing keys) are reused; a
/// provider that rotated its keys is picked up after this at the latest.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);
/// Timeout of every request to the provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Every claim beyond the standard ones (the groups claim is among them).
#[derive(Clone, Debug, Deserialize, Serialize)]
struct OtherClaims {
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}
impl AdditionalClaims for OtherClaims {}

type FullIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// A started authorization request.
pub struct Authorization {
    pub url: Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// The user and groups a validated ID token names (prefixes applied).
pub struct LoggedIn {
    pub user: String,
    pub groups: Vec<String>,
}

struct Discovered {
    client: DiscoveredClient,
    end_session: Option<Url>,
    at: Instant,
}

pub struct Provider {
    config: AuthConfig,
    http: openidconnect::reqwest::Client,
    discovered: Mutex<Option<Arc<Discovered>>>,
}

impl Provider {
    pub fn new(config: AuthConfig) -> Result<Self, AuthError> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects from the provider would be an SSRF path.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|e| AuthError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            config,
            http,
            discovered: Mutex::new(None),
        })
    }

    /// Discovery, done lazily (the provider may start after the dashboard)
    /// and redone every [`DISCOVERY_TTL`].
    async fn discovered(&self) -> Result<Arc<Discovered>, AuthError> {
        let mut cached = self.discovered.lock().await;
        if let Some(d) = cached.as_ref().filter(|d| d.at.elapsed() < DISCOVERY_TTL) {
            return Ok(d.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| AuthError::Config(format!("issuer URL: {e}")))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| {
                AuthError::Provider(format!("discovery at {}: {e}", self.config.issuer))
            })?;
        let end_session = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|u| u.url().clone());
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|e| AuthError::Config(format!("redirect URL: {e}")))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.clone())),
        )
        .set_redirect_uri(redirect);
        let d = Arc::new(Discovered {
            client,
            end_session,
            at: Instant::now(),
        });
        *cached = Some(d.clone());
        Ok(d)
    }

    /// The provider URL to send the browser to, with fresh state, nonce
    /// and PKCE challenge (S256).
    pub async fn authorize(&self) -> Result<Authorization, AuthError> {
        let d = self.discovered().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = d.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            || CsrfToken::new(crate::session::random_token()),
            || Nonce::new(crate::session::random_token()),
        );
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Authorization {
            url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code (with the PKCE verifier) and validates the ID
    /// token; returns who logged in.
    pub async fn finish(
        &self,
        code: String,
        pkce_verifier: String,
        nonce: String,
    ) -> Result<LoggedIn, AuthError> {
        let d = self.discovered().await?;
        let response = d
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| AuthError::Provider(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| AuthError::Provider(format!("code exchange: {e}")))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| AuthError::Provider("the token response has no ID token".into()))?;
        // Re-read with every claim kept (the core type drops unknown ones);
        // the verification below is the full one either way.
        let id_token: FullIdToken = id_token
            .to_string()
            .parse()
            .map_err(|e| AuthError::Provider(format!("ID token: {e}")))?;
        let claims = id_token
            .claims(&d.client.id_token_verifier(), &Nonce::new(nonce))
            .map_err(|e| AuthError::Provider(format!("ID token rejected: {e}")))?;
        let other = &claims.additional_claims().rest;
        let user = match self.config.username_claim.as_str() {
            "sub" => Some(claims.subject().to_string()),
            "email" => claims.email().map(|e| e.to_string()),
            "preferred_username" => claims.preferred_username().map(|u| u.to_string()),
            name => other.get(name).and_then(|v| v.as_str()).map(str::to_string),
        }
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            AuthError::Provider(format!(
                "the ID token has no {} claim",
                self.config.username_claim
            ))
        })?;
        let groups = groups_of(other.get(&self.config.groups_claim))?;
        Ok(LoggedIn {
            user: format!("{}{user}", self.config.username_prefix),
            groups: groups
                .into_iter()
                .map(|g| format!("{}{g}", self.config.groups_prefix))
                .collect(),
        })
    }

    /// Where to send the browser after a logout: the provider's
    /// end_session endpoint when it advertises one (RP-initiated logout).
    pub async fn end_session_url(&self) -> Option<Url> {
        let d = self.discovered().await.ok()?;
        let endpoint = d.end_session.clone()?;
        Some(
            LogoutRequest::from(openidconnect::EndSessionUrl::from_url(endpoint))
                .set_client_id(ClientId::new(self.config.client_id.clone()))
                .http_get_url(),
        )
    }
}

/// The groups claim: absent means no groups; a list of strings (or one
/// string) otherwise.
fn groups_of(value: Option<&serde_json::Value>) -> Result<Vec<String>, AuthError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    AuthError::Provider("the groups claim holds a non-string".into())
                })
            })
            .collect(),
        Some(_) => Err(AuthError::Provider(
            "the groups claim is neither a list nor a string".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn groups_claim_shapes() {
        assert_eq!(groups_of(None).unwrap(), Vec::<String>::new());
        assert_eq!(groups_of(Some(&json!(["a", "b"]))).unwrap(), ["a", "b"]);
        assert_eq!(groups_of(Some(&json!("a"))).unwrap(), ["a"]);
        assert!(groups_of(Some(&json!([1]))).is_err());
        assert!(groups_of(Some(&json!({"a": 1}))).is_err());
    }
}
