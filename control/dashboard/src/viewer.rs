//! Who is looking, and what they may see. Pages never read the store
//! without a [`Viewer`]; its [`Scope`] filters every row.

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{StatusCode, request::Parts},
    middleware::Next,
    response::Response,
};
pub use sluice_auth::{Auth, ClusterScope, Scope};

/// The person (or nobody, without authentication) a page is rendered for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    /// Shown in the header.
    pub name: String,
    pub scope: Scope,
    /// False in no-auth mode: every page carries a banner saying so.
    pub authenticated: bool,
    /// The session's CSRF token, for forms (logout); empty without auth.
    pub csrf_token: String,
}

impl Viewer {
    /// No authentication: sees everything, flagged on every page.
    pub fn unauthenticated() -> Self {
        Self {
            name: "anonymous".into(),
            scope: Scope::All,
            authenticated: false,
            csrf_token: String::new(),
        }
    }
}

/// Middleware of the authenticated mode: the session's user and the scope
/// their clusters' RBAC gives them. No session: the login redirect (pages)
/// or 401; logged in but allowed nothing: 403 with the reason.
pub async fn with_auth(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let viewer = match sluice_auth::Viewer::from_request_parts(&mut parts, &auth).await {
        Ok(v) => v,
        Err(refusal) => return refusal,
    };
    if let Some(why) = &viewer.denial {
        return crate::layout::denied(&viewer.user, why, &viewer.csrf_token);
    }
    let mut request = Request::from_parts(parts, body);
    request.extensions_mut().insert(Viewer {
        name: viewer.user,
        scope: viewer.scope,
        authenticated: !viewer.anonymous,
        csrf_token: viewer.csrf_token,
    });
    next.run(request).await
}

/// Middleware of the no-auth mode: every request is the unauthenticated
/// viewer.
pub async fn no_auth(mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Viewer::unauthenticated());
    next.run(request).await
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = (StatusCode, &'static str);

    /// Fails closed: a router served without an access layer shows nothing.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Viewer>().cloned().ok_or((
            StatusCode::UNAUTHORIZED,
            "no viewer: the dashboard is served without an access layer",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn alice() -> Scope {
        Scope::Clusters(BTreeMap::from([
            (
                "c1".to_string(),
                ClusterScope::Namespaces(BTreeSet::from(["a".to_string()])),
            ),
            ("c2".to_string(), ClusterScope::AllNamespaces),
        ]))
    }

    async fn viewer_name(router: axum::Router) -> (StatusCode, String) {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let response = router
            .oneshot(
                Request::builder()
                    .uri("/")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_router_without_an_access_layer_shows_nothing() {
        let page = || {
            axum::Router::new().route("/", axum::routing::get(|v: Viewer| async move { v.name }))
        };
        let (status, _) = viewer_name(page()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, name) = viewer_name(page().layer(axum::middleware::from_fn(no_auth))).await;
        assert_eq!((status, name.as_str()), (StatusCode::OK, "anonymous"));
    }

    #[test]
    fn all_sees_everything_including_cluster_scoped_objects() {
        assert!(Scope::All.allows_cluster("any"));
        assert!(Scope::All.allows("any", "ns"));
        assert!(Scope::All.allows("any", ""));
    }

    #[test]
    fn a_namespace_scope_sees_only_its_namespaces_and_nothing_cluster_scoped() {
        let s = alice();
        assert!(s.allows_cluster("c1"));
        assert!(s.allows("c1", "a"));
        assert!(!s.allows("c1", "b"));
        assert!(!s.allows("c1", ""), "nodes are cluster-scoped");
        assert!(!s.allows_whole_cluster("c1"));
    }

    #[test]
    fn a_cluster_wide_binding_sees_that_cluster_only() {
        let s = alice();
        assert!(s.allows("c2", "anything"));
        assert!(s.allows("c2", ""));
        assert!(s.allows_whole_cluster("c2"));
        assert!(!s.allows_cluster("c3"));
        assert!(!s.allows("c3", "a"));
    }
}
