//! A Kubernetes API **test double** (never shipped): no kube-apiserver can
//! be installed on the machines these tests run on, so cluster mode
//! (`--source kubernetes`, the CNI plugin, the operator) is exercised end
//! to end against this small in-memory server instead.
//!
//! It serves the real kube-rs clients over HTTPS (a CA and server
//! certificate made with rcgen at start; bearer-token auth, checked), with
//! list, watch (`resourceVersion`, bookmarks, 410 Gone), get, create,
//! update, patch (merge, JSON, server-side apply) and delete (finalizers)
//! for the resources in [`resources`]. Server-side apply records its
//! field manager in `metadata.managedFields` (manager and operation only).
//! What it does *not* do, so tests
//! must not rely on it: owner-reference garbage collection, admission
//! beyond defaults kept in [`store`], field ownership (see [`patch`]),
//! pagination, discovery, RBAC. See `docs/testing.md`.
//!
//! The test talks to the same store in process ([`ApiServer::store`]),
//! e.g. to play the kubelet or to force a compaction.

pub mod http;
pub mod patch;
pub mod resources;
pub mod selector;
pub mod store;
mod tls;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use serde_json::Value;

pub use self::{
    http::Logged,
    store::{ApiError, Part, PatchKind, Preconditions, Store},
};
use crate::netns::NetNs;

/// Port the double listens on inside its namespace.
pub const PORT: u16 = 6443;
/// How often live watches that asked for them get a BOOKMARK.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(2);

/// A running double; stops (and removes its files) on drop.
pub struct ApiServer {
    ctx: Arc<http::Ctx>,
    dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
    url: String,
}

impl ApiServer {
    /// Serves `https://IP:6443` inside network namespace `ns` (whose
    /// address is `ip`), so node namespaces reach it over their underlay.
    pub fn start(ns: &NetNs, ip: Ipv4Addr) -> Self {
        let listener = bind_in(ns, SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)));
        Self::serve(listener, ip, PORT)
    }

    /// Serves `https://127.0.0.1:PORT` (a free port) in the test's own
    /// namespace, for clients that run there too.
    pub fn start_on_loopback() -> Self {
        let listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the API double");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("bound address").port();
        Self::serve(listener, Ipv4Addr::LOCALHOST, port)
    }

    fn serve(listener: std::net::TcpListener, ip: Ipv4Addr, port: u16) -> Self {
        let dir = tempfile::tempdir().expect("API double dir");
        let certs = tls::Certs::generate(ip).expect("make the double's certificates");
        std::fs::write(dir.path().join("ca.crt"), &certs.ca_pem).expect("write ca.crt");
        let token = format!("double-{}", crate::unique_suffix());
        let url = format!("https://{ip}:{port}");
        write_kubeconfig(
            &dir.path().join("kubeconfig"),
            &url,
            &dir.path().join("ca.crt"),
            &token,
        );
        let ctx = Arc::new(http::Ctx {
            store: Store::default(),
            token,
            log: Mutex::new(Vec::new()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("api-double")
            .enable_all()
            .build()
            .expect("API double runtime");
        let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config().expect("TLS config"));
        runtime.spawn(accept_loop(listener, acceptor, ctx.clone()));
        let store = ctx.store.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(BOOKMARK_EVERY);
            loop {
                tick.tick().await;
                store.send_bookmarks();
            }
        });
        Self {
            ctx,
            dir,
            runtime: Some(runtime),
            url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kubeconfig for clients (`KUBECONFIG=...`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn store(&self) -> &Store {
        &self.ctx.store
    }

    /// Every request served so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.ctx
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    // In-process calls by kind, for the test.

    pub fn create(&self, kind: &str, ns: Option<&str>, object: Value) -> Value {
        self.store()
            .create(resources::by_kind(kind), ns, object)
            .unwrap_or_else(|e| panic!("create {kind}: {}", e.message))
    }

    pub fn get(&self, kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        self.store().get(resources::by_kind(kind), ns, name).ok()
    }

    pub fn list(&self, kind: &str) -> Vec<Value> {
        let selector = selector::Selector::default();
        self.store()
            .list(resources::by_kind(kind), None, &selector)
            .0
    }

    pub fn merge_patch(
        &self,
        kind: &str,
        ns: Option<&str>,
        name: &str,
        part: Part,
        patch: Value,
    ) -> Value {
        self.store()
            .patch(
                resources::by_kind(kind),
                ns,
                name,
                &PatchKind::Merge(patch),
                part,
            )
            .unwrap_or_else(|e| panic!("patch {kind} {name}: {}", e.message))
    }

    pub fn delete(&self, kind: &str, ns: Option<&str>, name: &str) {
        self.store()
            .delete(
                resources::by_kind(kind),
                ns,
                name,
                &Preconditions::default(),
            )
            .unwrap_or_else(|e| panic!("delete {kind} {name}: {}", e.message));
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A listening socket in `ns`: a socket belongs to the namespace it was
/// made in, so only this short-lived thread enters it.
fn bind_in(ns: &NetNs, addr: SocketAddr) -> std::net::TcpListener {
    let path = ns.path();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open the double's namespace");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("enter the double's namespace");
        let listener = std::net::TcpListener::bind(addr).expect("bind the API double");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        listener
    })
    .join()
    .expect("bind thread")
}

async fn accept_loop(
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    ctx: Arc<http::Ctx>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |request| http::handle(request, ctx.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

fn write_kubeconfig(path: &Path, url: &str, ca: &Path, token: &str) {
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {url}\n    \
         certificate-authority: {}\nusers:\n- name: tester\n  user:\n    token: {token}\n\
         contexts:\n- name: double\n  context:\n    cluster: double\n    user: tester\n    \
         namespace: default\ncurrent-context: double\n",
        ca.display()
    );
    std::fs::write(path, config).expect("write kubeconfig");
}
