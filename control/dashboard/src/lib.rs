//! The Sluice dashboard: server-rendered HTML over the management plane's
//! state (cluster registry and snapshots in Redis, the insights history),
//! served by `sluice-control` (default 127.0.0.1:8090). Every asset is
//! embedded in the binary; pages carry no script.
//!
//! Access: every page handler takes a [`Viewer`] (who, and which clusters
//! and namespaces they may see) from the request's extensions and filters
//! every query by its [`Scope`]. A layer in front of the router inserts it:
//! [`with_auth`] (OpenID Connect login, the scope from the clusters' RBAC:
//! `sluice-auth`) or [`no_auth`] (everything visible, a banner says
//! authentication is disabled).
#![forbid(unsafe_code)]

mod assets;
mod data;
mod error;
mod headers;
mod layout;
mod pages;
mod paging;
#[cfg(feature = "testing")]
pub mod testing;
mod time_fmt;
pub mod viewer;

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, routing::get};
use sluice_insights::api::InsightsService;
use sluice_relay::server::Hub;

pub use crate::viewer::{Auth, ClusterScope, Scope, Viewer, no_auth, with_auth};

/// The dashboard's default listener (DESIGN: port 8090).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

/// What the pages read: the relay hub (registry, live state, the store)
/// and the insights history.
#[derive(Clone)]
pub struct Dashboard {
    hub: Arc<Hub>,
    insights: Arc<InsightsService>,
}

impl Dashboard {
    pub fn new(hub: Arc<Hub>, insights: InsightsService) -> Self {
        Self {
            hub,
            insights: Arc::new(insights),
        }
    }
}

/// Every page and asset. The pages need a [`Viewer`] in the request's
/// extensions: use [`router_with_auth`] or [`router_without_auth`] (a
/// request without one is refused, never shown everything).
pub fn router(dashboard: Dashboard) -> Router {
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/clusters", get(pages::clusters::page))
        .route("/pods", get(pages::pods::page))
        .route("/services", get(pages::services::page))
        .route("/policies", get(pages::policies::page))
        .route("/insights", get(pages::insights::list))
        .route("/insights/detail", get(pages::insights::detail))
        .route("/static/style.css", get(assets::style))
        .route("/static/favicon.svg", get(assets::favicon))
        .route("/favicon.ico", get(assets::favicon))
        .fallback(pages::not_found)
        .with_state(dashboard)
        .layer(axum::middleware::from_fn(headers::security_headers))
}

/// The dashboard without authentication, for the local mesh and
/// loopback-only use: everyone who reaches it sees everything.
pub fn router_without_auth(dashboard: Dashboard) -> Router {
    router(dashboard).layer(axum::middleware::from_fn(no_auth))
}

/// The dashboard behind OpenID Connect login (docs/dashboard-auth.md):
/// `/auth/*` routes, every page with the session user's RBAC scope, CSRF
/// checked on every state-changing request. Serve it with client addresses
/// ([`serve`] does) so the login rate limit sees them.
pub fn router_with_auth(dashboard: Dashboard, auth: Auth) -> Router {
    let pages = router(dashboard).layer(axum::middleware::from_fn_with_state(
        auth.clone(),
        with_auth,
    ));
    let app = auth.router::<()>().merge(auth.protect(pages));
    app.layer(axum::middleware::from_fn(headers::security_headers))
}

/// Without authentication the dashboard may only listen on loopback, unless
/// the operator explicitly accepts an unauthenticated dashboard on the
/// network (`--dashboard-insecure-no-auth`).
pub fn check_listen(addr: SocketAddr, insecure_no_auth: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || insecure_no_auth {
        Ok(())
    } else {
        Err(format!(
            "--dashboard-listen {addr} is not a loopback address and login is not configured \
             (--oidc-issuer): anyone reaching it would see every cluster. Configure login, \
             listen on 127.0.0.1 (and forward), or pass --dashboard-insecure-no-auth to accept that"
        ))
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_auth_only_loopback_is_accepted_unless_insecure_is_explicit() {
        assert!(check_listen("127.0.0.1:8090".parse().unwrap(), false).is_ok());
        assert!(check_listen("[::1]:8090".parse().unwrap(), false).is_ok());
        let err = check_listen("0.0.0.0:8090".parse().unwrap(), false).unwrap_err();
        assert!(err.contains("--dashboard-insecure-no-auth"), "{err}");
        assert!(check_listen("0.0.0.0:8090".parse().unwrap(), true).is_ok());
    }
}
