//! Who is looking, and what they may see. Pages never read the store
//! without a [`Viewer`]; its [`Scope`] filters every row.

use std::collections::{BTreeMap, BTreeSet};

use axum::{
    extract::{FromRequestParts, Request},
    http::{StatusCode, request::Parts},
    middleware::Next,
    response::Response,
};

/// The namespaces a viewer may see in one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterScope {
    /// Every namespace and the cluster-scoped objects (nodes, cluster-wide
    /// policies): a cluster-wide binding.
    Everything,
    /// Only these namespaces; nothing cluster-scoped.
    Namespaces(BTreeSet<String>),
}

/// What a viewer may see across clusters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every cluster, every namespace (no-auth mode, administrators).
    All,
    /// Only the listed clusters, each with its namespaces; a cluster not
    /// listed is invisible.
    Clusters(BTreeMap<String, ClusterScope>),
}

impl Scope {
    /// Whether `cluster` shows up at all.
    pub fn sees_cluster(&self, cluster: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Clusters(map) => map.contains_key(cluster),
        }
    }

    /// Whether everything of `cluster` is visible (its totals, nodes,
    /// cluster-scoped objects).
    pub fn sees_whole_cluster(&self, cluster: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Clusters(map) => matches!(map.get(cluster), Some(ClusterScope::Everything)),
        }
    }

    /// Whether an object of `cluster` in `namespace` is visible; an empty
    /// namespace is a cluster-scoped object.
    pub fn allows(&self, cluster: &str, namespace: &str) -> bool {
        if namespace.is_empty() {
            return self.sees_whole_cluster(cluster);
        }
        match self {
            Scope::All => true,
            Scope::Clusters(map) => match map.get(cluster) {
                Some(ClusterScope::Everything) => true,
                Some(ClusterScope::Namespaces(set)) => set.contains(namespace),
                None => false,
            },
        }
    }
}

/// The person (or nobody, without authentication) a page is rendered for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    /// Shown in the header.
    pub name: String,
    pub scope: Scope,
    /// False in no-auth mode: every page carries a banner saying so.
    pub authenticated: bool,
}

impl Viewer {
    /// No authentication: sees everything, flagged on every page.
    pub fn unauthenticated() -> Self {
        Self {
            name: "anonymous".into(),
            scope: Scope::All,
            authenticated: false,
        }
    }
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
    use super::*;

    fn alice() -> Scope {
        Scope::Clusters(BTreeMap::from([
            (
                "c1".to_string(),
                ClusterScope::Namespaces(BTreeSet::from(["a".to_string()])),
            ),
            ("c2".to_string(), ClusterScope::Everything),
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
        assert!(Scope::All.sees_cluster("any"));
        assert!(Scope::All.allows("any", "ns"));
        assert!(Scope::All.allows("any", ""));
    }

    #[test]
    fn a_namespace_scope_sees_only_its_namespaces_and_nothing_cluster_scoped() {
        let s = alice();
        assert!(s.sees_cluster("c1"));
        assert!(s.allows("c1", "a"));
        assert!(!s.allows("c1", "b"));
        assert!(!s.allows("c1", ""), "nodes are cluster-scoped");
        assert!(!s.sees_whole_cluster("c1"));
    }

    #[test]
    fn a_cluster_wide_binding_sees_that_cluster_only() {
        let s = alice();
        assert!(s.allows("c2", "anything"));
        assert!(s.allows("c2", ""));
        assert!(s.sees_whole_cluster("c2"));
        assert!(!s.sees_cluster("c3"));
        assert!(!s.allows("c3", "a"));
    }
}
