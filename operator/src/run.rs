//! Wiring: metrics, HTTP, leader election, reflectors and controllers.

use std::{fmt::Debug, future::Future, hash::Hash, sync::Arc};

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::{
    Api, Client, Resource,
    runtime::{
        Controller, WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use sluice_crds::{SluiceEndpoint, SluiceIdentity, SluiceNode};

use crate::{
    config::Config,
    endpoint_gc::{self, EndpointGcCtx, EndpointGcMetrics},
    identity::{IdentityCtx, allocate, gc, metrics::IdentityMetrics},
    ipam::{
        controller::{self as ipam, IpamCtx},
        metrics::IpamMetrics,
        pool::CidrPool,
    },
    leader::{self, LeaseConfig},
    metrics::{PREFIX, register_leader},
};

/// Every controller's metrics, registered once at startup.
pub struct Metrics {
    pub ipam: IpamMetrics,
    pub identity: IdentityMetrics,
    pub endpoint_gc: EndpointGcMetrics,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            ipam: IpamMetrics::register(registry),
            identity: IdentityMetrics::register(registry),
            endpoint_gc: EndpointGcMetrics::register(registry),
        }
    }
}

/// Runs the operator until SIGTERM/ctrl-c, a lost Lease or a fatal error.
pub async fn run(config: Config) -> anyhow::Result<()> {
    if config.source == crate::config::Source::Files {
        return crate::files_mode::run(config).await;
    }
    let client = Client::try_default().await?;
    let mut registry = Registry::with_prefix(PREFIX);
    let leader_gauge = register_leader(&mut registry);
    let metrics = Metrics::register(&mut registry);
    let http = crate::http::serve(config.metrics_addr, registry);
    let controllers = run_controllers(client.clone(), config.clone(), metrics);
    let work = async {
        if config.leader_election {
            let lease = LeaseConfig {
                name: config.lease_name.clone(),
                holder: config.lease_holder.clone(),
                duration: std::time::Duration::from_secs(config.lease_duration_secs),
                renew_every: std::time::Duration::from_secs(config.lease_renew_secs),
            };
            let api = Api::namespaced(client.clone(), &config.lease_namespace);
            leader::run_as_leader(api, lease, leader_gauge, controllers).await
        } else {
            leader_gauge.set(1);
            controllers.await
        }
    };
    tokio::select! {
        result = work => result,
        result = http => result,
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

pub(crate) async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// A reflector store of every `K` and the task that keeps it filled.
fn reflect<K>(api: Api<K>) -> (Store<K>, impl Future<Output = ()>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let task = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .for_each(|_| future::ready(()));
    (reader, task)
}

async fn log_results<S, T, E>(name: &'static str, results: S)
where
    S: futures::Stream<Item = Result<T, E>>,
    T: Debug,
    E: std::fmt::Display,
{
    results
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(controller = name, %error, "controller event");
            }
            future::ready(())
        })
        .await;
}

async fn run_controllers(client: Client, config: Config, metrics: Metrics) -> anyhow::Result<()> {
    // IPAM: the pool is rebuilt before the first allocation.
    let pool = CidrPool::new(config.cluster_cidr, config.node_cidr_mask_size)?;
    let pool = ipam::restore_pool(&client, pool, &metrics.ipam).await?;
    let ipam_ctx = Arc::new(IpamCtx::new(client.clone(), pool, metrics.ipam));

    let (namespaces, namespaces_task) = reflect(Api::<Namespace>::all(client.clone()));
    let (identities, identities_task) = reflect(Api::<SluiceIdentity>::all(client.clone()));
    let (endpoints, endpoints_task) = reflect(Api::<SluiceEndpoint>::all(client.clone()));
    let (pods, pods_task) = reflect(Api::<Pod>::all(client.clone()));
    let reflectors = future::join4(namespaces_task, identities_task, endpoints_task, pods_task);
    let stores = (
        namespaces.clone(),
        identities.clone(),
        endpoints.clone(),
        pods.clone(),
    );
    let ready = async move {
        // GC on a half-filled store would see live objects as unused.
        stores.0.wait_until_ready().await?;
        stores.1.wait_until_ready().await?;
        stores.2.wait_until_ready().await?;
        stores.3.wait_until_ready().await?;
        anyhow::Ok(())
    };
    let identity_ctx = IdentityCtx::new(
        client.clone(),
        namespaces,
        identities,
        endpoints,
        config.identity_gc_grace(),
        metrics.identity,
    );
    let endpoint_ctx = Arc::new(EndpointGcCtx {
        client: client.clone(),
        pods,
        interval: config.endpoint_gc_interval(),
        metrics: metrics.endpoint_gc,
    });

    let all = watcher::Config::default;
    let controllers =
        async {
            ready.await?;
            tracing::info!("reflectors synced; starting controllers");
            let nodes = Controller::new(Api::<Node>::all(client.clone()), all())
                .owns(Api::<SluiceNode>::all(client.clone()), all())
                .run(ipam::reconcile_node, ipam::error_policy, ipam_ctx.clone());
            let sluice_nodes = Controller::new(Api::<SluiceNode>::all(client.clone()), all()).run(
                ipam::reconcile_sluice_node,
                ipam::error_policy,
                ipam_ctx,
            );
            let pods = Controller::new(Api::<Pod>::all(client.clone()), all()).run(
                allocate::reconcile_pod,
                allocate::error_policy,
                identity_ctx.clone(),
            );
            let identities = Controller::new(Api::<SluiceIdentity>::all(client.clone()), all())
                .run(gc::reconcile_identity, gc::error_policy, identity_ctx);
            let endpoints = Controller::new(Api::<SluiceEndpoint>::all(client.clone()), all()).run(
                endpoint_gc::reconcile_endpoint,
                endpoint_gc::error_policy,
                endpoint_ctx,
            );
            future::join5(
                log_results("ipam-node", nodes),
                log_results("ipam-sluicenode", sluice_nodes),
                log_results("identity-allocate", pods),
                log_results("identity-gc", identities),
                log_results("endpoint-gc", endpoints),
            )
            .await;
            anyhow::Ok(())
        };
    tokio::select! {
        result = controllers => result,
        _ = reflectors => anyhow::bail!("a reflector stopped"),
    }
}
