//! The `Viewer` extractor: who is asking and what they may see.

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};

use crate::{Auth, Identity, Scope};

/// The user behind a request. Extracting it from a request without a live
/// session refuses the request: a redirect to `/auth/login` for a page
/// (the request accepts `text/html`), 401 otherwise (APIs, scripts).
///
/// A viewer whose `scope` is empty is logged in but may see nothing:
/// show `denial` (why) instead of the page. (`Debug` leaves the CSRF
/// token out.)
#[derive(Clone)]
pub struct Viewer {
    pub user: String,
    pub groups: Vec<String>,
    pub scope: Scope,
    /// Why the scope is empty (`None` when it is not).
    pub denial: Option<String>,
    /// This session's CSRF token: put it in every form (`csrf_token`) or
    /// script request (`x-csrf-token`). Empty in the no-auth mode.
    pub csrf_token: String,
    /// The no-auth mode: show the banner.
    pub anonymous: bool,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("user", &self.user)
            .field("groups", &self.groups)
            .field("scope", &self.scope)
            .field("denial", &self.denial)
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

impl<S> FromRequestParts<S> for Viewer
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_ref(state);
        if !auth.enabled() {
            return Ok(Viewer {
                user: "anonymous".into(),
                groups: Vec::new(),
                scope: Scope::All,
                denial: None,
                csrf_token: String::new(),
                anonymous: true,
            });
        }
        let Some((_, session)) = auth
            .session_of(&parts.headers)
            .await
            .map_err(IntoResponse::into_response)?
        else {
            return Err(not_logged_in(parts));
        };
        let identity = Identity {
            user: session.user,
            groups: session.groups,
        };
        let decision = auth
            .decide(&identity)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Viewer {
            user: identity.user,
            groups: identity.groups,
            scope: decision.scope,
            denial: decision.denial,
            csrf_token: session.csrf,
            anonymous: false,
        })
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

fn not_logged_in(parts: &Parts) -> Response {
    if !wants_html(&parts.headers) {
        return (StatusCode::UNAUTHORIZED, "not logged in").into_response();
    }
    let here = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", here)
        .finish();
    Redirect::to(&format!("/auth/login?{query}")).into_response()
}
