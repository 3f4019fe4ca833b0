//! The dashboard's router from the settings: OIDC login when an issuer is
//! configured, else the no-auth mode (loopback only unless explicitly
//! insecure; `check_listen`).

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use sluice_auth::{Auth, AuthConfig};
use sluice_dashboard::Dashboard;
use sluice_relay::server::Hub;

use crate::config::Config;

/// Whether the settings turn login on.
pub fn authenticated(config: &Config) -> bool {
    config.oidc_issuer.is_some()
}

/// The OIDC settings, checked (the client secret read from its file).
pub fn auth_config(config: &Config) -> anyhow::Result<Option<AuthConfig>> {
    let Some(issuer) = &config.oidc_issuer else {
        return Ok(None);
    };
    // clap's requires_all guarantees these once the issuer is set.
    let client_id = config.oidc_client_id.as_deref().unwrap_or_default();
    let redirect_url = config.oidc_redirect_url.as_deref().unwrap_or_default();
    let secret_file = config
        .oidc_client_secret_file
        .as_deref()
        .context("--oidc-client-secret-file")?;
    let secret = AuthConfig::read_client_secret(secret_file)?;
    let mut auth = AuthConfig::new(issuer, client_id, &secret, redirect_url);
    auth.username_claim = config.oidc_username_claim.clone();
    auth.groups_claim = config.oidc_groups_claim.clone();
    auth.username_prefix = config.oidc_username_prefix.clone();
    auth.groups_prefix = config.oidc_groups_prefix.clone();
    auth.cookie_secure = !config.dashboard_insecure_cookies;
    auth.session_ttl = Duration::from_secs(config.dashboard_session_ttl_secs);
    Ok(Some(auth))
}

/// The dashboard's router over `hub` and the insights history.
pub fn router(
    auth: Option<AuthConfig>,
    hub: Arc<Hub>,
    insights: sluice_insights::api::InsightsService,
) -> anyhow::Result<axum::Router> {
    let dashboard = Dashboard::new(hub.clone(), insights);
    Ok(match auth {
        Some(config) => {
            let auth = Auth::new(config, hub.store.clone()).context("dashboard login")?;
            sluice_dashboard::router_with_auth(dashboard, auth)
        }
        None => sluice_dashboard::router_without_auth(dashboard),
    })
}
