//! Node IPAM against a request-level mock: create, conflict retry,
//! deletion through the finalizer, restart.

mod common;

use std::sync::Arc;

use common::{Exchange, MockHandle, mock_client, scenario, status};
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Node;
use kube::{Client, runtime::controller::Action};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use sluice_crds::SluiceNode;
use sluice_operator::ipam::{
    controller::{IpamCtx, reconcile_node, reconcile_sluice_node, restore_pool},
    metrics::IpamMetrics,
    pool::CidrPool,
};

const APPLY: &str = "application/apply-patch+yaml";
const SSA_QUERY: &str = "?&force=true&fieldManager=sluice-operator";

fn pool() -> CidrPool {
    CidrPool::new("10.244.0.0/16".parse().expect("cidr"), 24).expect("pool")
}

fn ctx(client: Client, pool: CidrPool) -> Arc<IpamCtx> {
    Arc::new(IpamCtx::new(
        client,
        pool,
        IpamMetrics::register(&mut Registry::default()),
    ))
}

fn node(name: &str) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "uid": format!("uid-{name}")},
        }))
        .expect("node"),
    )
}

fn sluice_node(name: &str, cidr: &str) -> Value {
    json!({
        "apiVersion": "sluice.io/v1alpha1",
        "kind": "SluiceNode",
        "metadata": {"name": name, "uid": format!("snode-{name}"), "resourceVersion": "7",
                     "finalizers": ["sluice.io/ipam"]},
        "spec": {"nodeUID": format!("uid-{name}")},
        "status": {"podCIDR": cidr},
    })
}

/// The two server-side applies that record `cidr` for `name`.
fn record(name: &str, cidr: &str) -> Vec<Exchange> {
    vec![
        Exchange::new(
            Method::PATCH,
            &format!("/apis/sluice.io/v1alpha1/sluicenodes/{name}{SSA_QUERY}"),
        )
        .content_type(APPLY)
        .body(json!({
            "apiVersion": "sluice.io/v1alpha1",
            "kind": "SluiceNode",
            "metadata": {
                "name": name,
                "ownerReferences": [{
                    "apiVersion": "v1", "kind": "Node", "name": name,
                    "uid": format!("uid-{name}"), "controller": true,
                }],
                "finalizers": ["sluice.io/ipam"],
            },
            "spec": {"nodeUID": format!("uid-{name}")},
        }))
        .reply(StatusCode::OK, sluice_node(name, "")),
        Exchange::new(
            Method::PATCH,
            &format!("/apis/sluice.io/v1alpha1/sluicenodes/{name}/status{SSA_QUERY}"),
        )
        .content_type(APPLY)
        .body(json!({
            "apiVersion": "sluice.io/v1alpha1",
            "kind": "SluiceNode",
            "status": {"podCIDR": cidr},
        }))
        .reply(StatusCode::OK, sluice_node(name, cidr)),
    ]
}

async fn reconcile(
    handle: MockHandle,
    ctx: &Arc<IpamCtx>,
    name: &str,
    exchanges: Vec<Exchange>,
) -> Action {
    scenario(handle, exchanges, reconcile_node(node(name), ctx.clone()))
        .await
        .expect("reconcile succeeds")
}

#[tokio::test]
async fn new_nodes_get_distinct_cidrs_recorded_by_server_side_apply() {
    let (client, handle) = mock_client();
    let ctx = ctx(client, pool());
    reconcile(handle, &ctx, "node-1", record("node-1", "10.244.0.0/24")).await;
    let (client, handle) = mock_client();
    let ctx = Arc::new(IpamCtx::new(
        client,
        ctx.pool().clone(),
        ctx.metrics.clone(),
    ));
    reconcile(handle, &ctx, "node-2", record("node-2", "10.244.1.0/24")).await;
    // Reconciling again is idempotent: the same CIDR, applied again.
    let (client, handle) = mock_client();
    let ctx = Arc::new(IpamCtx::new(
        client,
        ctx.pool().clone(),
        ctx.metrics.clone(),
    ));
    reconcile(handle, &ctx, "node-1", record("node-1", "10.244.0.0/24")).await;
    assert_eq!(ctx.pool().in_use(), 2);
}

#[tokio::test]
async fn a_conflict_fails_the_reconcile_and_the_retry_sends_the_same_cidr() {
    let (client, handle) = mock_client();
    let ctx = ctx(client, pool());
    let mut exchanges = record("node-1", "10.244.0.0/24");
    let conflict = status(
        409,
        "Conflict",
        "Operation cannot be fulfilled: the object has been modified",
    );
    let last = exchanges.pop().expect("status apply");
    exchanges.push(last.reply(StatusCode::CONFLICT, conflict));
    let error = scenario(
        handle,
        exchanges,
        reconcile_node(node("node-1"), ctx.clone()),
    )
    .await
    .expect_err("409 fails the reconcile");
    assert!(
        error.to_string().contains("409") || error.to_string().contains("modified"),
        "{error}"
    );

    // The retry (error_policy requeues) keeps the allocation.
    let (client, handle) = mock_client();
    let retry = Arc::new(IpamCtx::new(
        client,
        ctx.pool().clone(),
        ctx.metrics.clone(),
    ));
    reconcile(handle, &retry, "node-1", record("node-1", "10.244.0.0/24")).await;
    assert_eq!(retry.pool().in_use(), 1);
}

#[tokio::test]
async fn deleting_a_sluice_node_releases_its_cidr_then_removes_the_finalizer() {
    let mut pool = pool();
    pool.restore("node-1", "10.244.0.0/24".parse().expect("cidr"))
        .expect("restore");
    pool.restore("node-2", "10.244.1.0/24".parse().expect("cidr"))
        .expect("restore");
    let (client, handle) = mock_client();
    let ctx = ctx(client, pool);
    let mut deleting = sluice_node("node-1", "10.244.0.0/24");
    deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    let deleting: SluiceNode = serde_json::from_value(deleting).expect("sluice node");
    let action = scenario(
        handle,
        vec![
            Exchange::new(
                Method::PATCH,
                "/apis/sluice.io/v1alpha1/sluicenodes/node-1?",
            )
            .content_type("application/json-patch+json")
            .body(json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": "sluice.io/ipam"},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ]))
            .reply(StatusCode::OK, sluice_node("node-1", "10.244.0.0/24")),
        ],
        reconcile_sluice_node(Arc::new(deleting), ctx.clone()),
    )
    .await
    .expect("cleanup succeeds");
    assert_eq!(action, Action::await_change());
    assert_eq!(ctx.pool().get("node-1"), None);
    assert_eq!(ctx.pool().in_use(), 1);

    // The released block is the lowest free one again.
    let (client, handle) = mock_client();
    let next = Arc::new(IpamCtx::new(
        client,
        ctx.pool().clone(),
        ctx.metrics.clone(),
    ));
    reconcile(handle, &next, "node-3", record("node-3", "10.244.0.0/24")).await;
}

#[tokio::test]
async fn a_restarted_operator_derives_allocations_from_existing_sluice_nodes() {
    let (client, handle) = mock_client();
    let metrics = IpamMetrics::register(&mut Registry::default());
    let list = json!({
        "apiVersion": "sluice.io/v1alpha1",
        "kind": "SluiceNodeList",
        "metadata": {"resourceVersion": "42"},
        "items": [
            sluice_node("node-a", "10.244.0.0/24"),
            sluice_node("node-b", "10.244.2.0/24"),
            // Recorded twice or outside the pool: skipped, never re-used.
            sluice_node("node-dup", "10.244.2.0/24"),
            sluice_node("node-far", "192.168.0.0/24"),
        ],
    });
    let restored = scenario(
        handle,
        vec![
            Exchange::new(Method::GET, "/apis/sluice.io/v1alpha1/sluicenodes?")
                .reply(StatusCode::OK, list),
        ],
        restore_pool(&client, pool(), &metrics),
    )
    .await
    .expect("restore");
    assert_eq!(restored.in_use(), 2);
    assert_eq!(metrics.restore_conflicts.get(), 2);

    let (client, handle) = mock_client();
    let ctx = Arc::new(IpamCtx::new(client, restored, metrics));
    // A known node keeps its CIDR; a new one gets the lowest free block.
    reconcile(handle, &ctx, "node-b", record("node-b", "10.244.2.0/24")).await;
    let (client, handle) = mock_client();
    let ctx = Arc::new(IpamCtx::new(
        client,
        ctx.pool().clone(),
        ctx.metrics.clone(),
    ));
    reconcile(handle, &ctx, "node-c", record("node-c", "10.244.1.0/24")).await;
    let (client, handle) = mock_client();
    let ctx = Arc::new(IpamCtx::new(
        client,
        ctx.pool().clone(),
        ctx.metrics.clone(),
    ));
    reconcile(handle, &ctx, "node-d", record("node-d", "10.244.3.0/24")).await;
}
