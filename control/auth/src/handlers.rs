//! The login, callback and logout endpoints.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::{
    Form,
    extract::{ConnectInfo, Query, State},
    http::{Extensions, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;

use crate::{
    Auth, AuthError, Inner,
    csrf::tokens_match,
    session::{LOGIN_TTL, PendingLogin},
};

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf_token: Option<String>,
}

fn inner(auth: &Auth) -> &Inner {
    auth.inner
        .as_deref()
        .expect("routes exist only when auth is enabled")
}

/// A cookie with the flags every auth cookie has.
fn cookie(auth: &Auth, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build((name, value))
        .http_only(true)
        .secure(auth.secure())
        .same_site(SameSite::Lax)
        .path("/")
        .build()
}

fn removal(auth: &Auth, name: &'static str) -> Cookie<'static> {
    let mut c = cookie(auth, name, String::new());
    c.make_removal();
    c
}

/// A local path only: an absolute or scheme-relative URL would make the
/// login an open redirect.
pub(crate) fn safe_return_to(value: Option<&str>) -> String {
    match value {
        Some(v)
            if v.starts_with('/')
                && !v.starts_with("//")
                && !v.starts_with("/\\")
                && v.len() <= 2048
                && !v.chars().any(char::is_control) =>
        {
            v.to_string()
        }
        _ => "/".to_string(),
    }
}

/// `GET /auth/login`: sends the browser to the provider. State, nonce and
/// PKCE verifier stay server-side (Redis); the state is also set in a
/// short-lived cookie, so a callback is accepted only in the browser that
/// started the login.
pub async fn login(
    State(auth): State<Auth>,
    extensions: Extensions,
    Query(query): Query<LoginQuery>,
    jar: CookieJar,
) -> Response {
    let inner = inner(&auth);
    // Without ConnectInfo (served without it) everyone shares one bucket.
    let ip = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if let Err(wait) = inner.limiter.check(ip) {
        tracing::warn!(%ip, "dashboard login rate limit hit");
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            "too many login attempts: try again later",
        )
            .into_response();
        let secs = wait.as_secs().max(1).to_string();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&secs).expect("digits"),
        );
        return response;
    }
    let authorization = match inner.provider.authorize().await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let pending = PendingLogin {
        nonce: authorization.nonce,
        pkce_verifier: authorization.pkce_verifier,
        return_to: safe_return_to(query.return_to.as_deref()),
    };
    if let Err(e) = inner
        .sessions
        .put_login(&authorization.state, &pending)
        .await
    {
        return e.into_response();
    }
    let mut state_cookie = cookie(&auth, auth.login_cookie(), authorization.state);
    state_cookie.set_max_age(time_duration(LOGIN_TTL));
    (
        jar.add(state_cookie),
        Redirect::to(authorization.url.as_str()),
    )
        .into_response()
}

fn time_duration(d: std::time::Duration) -> time::Duration {
    time::Duration::seconds(d.as_secs() as i64)
}

/// `GET /auth/callback`: exchanges the code, validates the ID token and
/// opens a session.
pub async fn callback(
    State(auth): State<Auth>,
    Query(query): Query<CallbackQuery>,
    jar: CookieJar,
) -> Response {
    let inner = inner(&auth);
    if let Some(error) = query.error {
        tracing::warn!(error, "the identity provider refused a login");
        return (
            StatusCode::FORBIDDEN,
            "the identity provider refused the login",
        )
            .into_response();
    }
    let (Some(code), Some(state)) = (query.code, query.state) else {
        return (StatusCode::BAD_REQUEST, "the callback lacks code or state").into_response();
    };
    let browser_state = jar.get(auth.login_cookie()).map(|c| c.value().to_string());
    if !browser_state.is_some_and(|s| tokens_match(&s, &state)) {
        return (
            StatusCode::BAD_REQUEST,
            "this login was not started in this browser: start again",
        )
            .into_response();
    }
    let pending = match inner.sessions.take_login(&state).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return (
                StatusCode::BAD_REQUEST,
                "unknown or expired login: start again",
            )
                .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let logged_in = match inner
        .provider
        .finish(code, pending.pkce_verifier, pending.nonce)
        .await
    {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let (id, _) = match inner
        .sessions
        .create(&logged_in.user, &logged_in.groups)
        .await
    {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    tracing::info!(user = logged_in.user, groups = ?logged_in.groups, "dashboard login");
    let mut session_cookie = cookie(&auth, auth.session_cookie(), id);
    session_cookie.set_max_age(time_duration(inner.config.session_ttl));
    let jar = jar
        .remove(removal(&auth, auth.login_cookie()))
        .add(session_cookie);
    (jar, Redirect::to(&pending.return_to)).into_response()
}

/// `POST /auth/logout` (form field `csrf_token`): ends the session, then
/// sends the browser to the provider's end_session endpoint if it has one.
pub async fn logout(
    State(auth): State<Auth>,
    jar: CookieJar,
    Form(form): Form<LogoutForm>,
) -> Result<Response, AuthError> {
    let inner = inner(&auth);
    let Some(id) = jar
        .get(auth.session_cookie())
        .map(|c| c.value().to_string())
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let Some(session) = inner.sessions.get(&id).await? else {
        let jar = jar.remove(removal(&auth, auth.session_cookie()));
        return Ok((jar, Redirect::to("/")).into_response());
    };
    if !form
        .csrf_token
        .is_some_and(|t| tokens_match(&session.csrf, &t))
    {
        return Ok((StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response());
    }
    inner.sessions.delete(&id).await?;
    tracing::info!(user = session.user, "dashboard logout");
    let jar = jar.remove(removal(&auth, auth.session_cookie()));
    let target = inner
        .provider
        .end_session_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_else(|| "/".to_string());
    Ok((jar, Redirect::to(&target)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_stays_local() {
        let cases = [
            (None, "/"),
            (Some("/pods?ns=a"), "/pods?ns=a"),
            (Some("//evil.example/"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example/"), "/"),
            (Some("pods"), "/"),
            (Some("/a\nb"), "/"),
        ];
        for (given, want) in cases {
            assert_eq!(safe_return_to(given), want, "{given:?}");
        }
    }
}
