//! Sluice dashboard authentication (docs/dashboard-auth.md):
//!
//! - OpenID Connect authorization code flow with PKCE against any
//!   compliant provider ([`Auth::router`]: `GET /auth/login`,
//!   `GET /auth/callback`, `POST /auth/logout`), login rate-limited per
//!   client IP;
//! - sessions in Redis ([`session`]), cookie `HttpOnly; Secure; SameSite=Lax;
//!   Path=/`;
//! - CSRF tokens on every state-changing request ([`Auth::protect`]);
//! - access from the clusters' Kubernetes RBAC ([`rbac`]): the
//!   [`Viewer`] extractor gives each request the namespaces its user may
//!   `get pods` in, or the explanation of a refusal.
//!
//! [`Auth::disabled`] is the no-auth mode (the local mesh): every request
//! is an anonymous viewer of everything.
#![forbid(unsafe_code)]

pub mod config;
pub mod csrf;
mod handlers;
mod oidc;
mod rate_limit;
pub mod rbac;
pub mod rbac_source;
pub mod scope;
pub mod session;
mod viewer;

use std::sync::Arc;

use axum::{
    Router,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use axum_extra::extract::cookie::CookieJar;
use sluice_store::Store;

pub use config::AuthConfig;
pub use rbac::{Decision, Identity};
pub use scope::{ClusterScope, Scope};
pub use viewer::Viewer;

use crate::{
    oidc::Provider,
    rate_limit::LoginLimiter,
    rbac_source::RbacSource,
    session::{Session, SessionStore},
};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("dashboard auth config: {0}")]
    Config(String),
    #[error("identity provider: {0}")]
    Provider(String),
    #[error("session store: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("session store: {0}")]
    Store(#[from] sluice_store::StoreError),
}

impl IntoResponse for AuthError {
    /// Plain text without details: the details go to the log.
    fn into_response(self) -> Response {
        tracing::warn!("dashboard auth: {self}");
        match self {
            AuthError::Redis(_) | AuthError::Store(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the session store is unavailable",
            )
                .into_response(),
            AuthError::Provider(_) => (
                StatusCode::BAD_GATEWAY,
                "login failed at the identity provider (details in the dashboard's log)",
            )
                .into_response(),
            AuthError::Config(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "dashboard auth is misconfigured",
            )
                .into_response(),
        }
    }
}

/// Dashboard authentication: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Auth {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    config: AuthConfig,
    provider: Provider,
    sessions: SessionStore,
    rbac: RbacSource,
    limiter: LoginLimiter,
}

impl Auth {
    /// OIDC login with sessions (and RBAC from the snapshots) in `store`'s
    /// Redis. The provider is contacted at the first login, not here.
    pub fn new(config: AuthConfig, store: Store) -> Result<Self, AuthError> {
        config.validate()?;
        let inner = Inner {
            provider: Provider::new(config.clone())?,
            sessions: SessionStore::new(store.clone(), config.session_ttl),
            rbac: RbacSource::new(store, config.rbac_refresh),
            limiter: LoginLimiter::new(config.login_burst, config.login_period),
            config,
        };
        Ok(Self {
            inner: Some(Arc::new(inner)),
        })
    }

    /// The no-auth mode: no login, every viewer sees everything.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// `GET /auth/login`, `GET /auth/callback`, `POST /auth/logout` (empty
    /// in the no-auth mode). Serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so the login
    /// rate limit sees client addresses.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        if !self.enabled() {
            return Router::new();
        }
        Router::new()
            .route("/auth/login", get(handlers::login))
            .route("/auth/callback", get(handlers::callback))
            .route("/auth/logout", post(handlers::logout))
            .with_state(self.clone())
    }

    /// Adds the CSRF check ([`csrf::require_csrf`]) to every route of
    /// `router`: state-changing requests need the session's token.
    pub fn protect<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router.layer(axum::middleware::from_fn_with_state(
            self.clone(),
            csrf::require_csrf,
        ))
    }

    /// The scope of `identity` from the clusters' current RBAC.
    pub async fn decide(&self, identity: &Identity) -> Result<Decision, AuthError> {
        let Some(inner) = &self.inner else {
            return Ok(Decision {
                scope: Scope::All,
                denial: None,
            });
        };
        let clusters = inner.rbac.clusters().await?;
        Ok(rbac::scope_for(&clusters, identity))
    }

    // `__Host-` cookies must be Secure, Path=/ and without Domain:
    // browsers then refuse them from subdomains and over plain http.
    fn session_cookie(&self) -> &'static str {
        if self.secure() {
            "__Host-sluice_session"
        } else {
            "sluice_session"
        }
    }

    fn login_cookie(&self) -> &'static str {
        if self.secure() {
            "__Host-sluice_login"
        } else {
            "sluice_login"
        }
    }

    fn secure(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.config.cookie_secure)
    }

    /// The live session the request's cookie names, with its id.
    async fn session_of(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(String, Session)>, AuthError> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        let jar = CookieJar::from_headers(headers);
        let Some(id) = jar
            .get(self.session_cookie())
            .map(|c| c.value().to_string())
        else {
            return Ok(None);
        };
        Ok(inner.sessions.get(&id).await?.map(|s| (id, s)))
    }
}
