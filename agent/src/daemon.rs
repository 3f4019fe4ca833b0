//! `sluice-agent run`: start-up order, the servers, graceful shutdown.
//!
//! Start-up: load the datapath (reusing pins) → open state (identities,
//! IPAM, endpoints) → restore the datapath from it → start the object
//! source → serve the API and metrics → ready. Shutdown: stop accepting,
//! let in-flight requests finish within the deadline; maps and attachments
//! stay so the datapath keeps forwarding.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use sluice_api::agent::v1::agent_server::AgentServer;
use sluice_bpf_common::config::NodeConfig;
use tokio::{net::UnixListener, sync::watch};
use tracing::info;

use crate::{
    api::AgentService,
    api_metrics::ApiLatency,
    api_server,
    config::{AgentConfig, LbMode, SourceKind},
    conntrack_gc,
    datapath::{
        Datapath, lb_maps::KernelLbMaps, ops::KernelDatapath, policy_maps::KernelPolicyMaps,
    },
    endpoints::EndpointRegistry,
    flows::{
        self,
        buffer::{DEFAULT_FLOW_BUFFER, FlowBuffer},
        reader::AgentNames,
    },
    identity::IdentityAllocator,
    ipam::Ipam,
    labels, metrics,
    node_net::NodeNet,
    node_routes,
    policy::Engine,
    policy_controller::{self, PolicyController},
    services::{
        self, maglev,
        sync::{LbMaps, LbSettings, LbState},
    },
    sources::{cluster::Cluster, files::FilesSource, kubernetes::KubernetesSource},
    store::Store,
    telemetry,
};

/// Keeps a running source alive.
enum RunningSource {
    Files(FilesSource),
    Kubernetes(KubernetesSource),
    None,
}

impl RunningSource {
    async fn stop(self) {
        match self {
            RunningSource::Files(files) => drop(files),
            RunningSource::Kubernetes(kubernetes) => kubernetes.shutdown().await,
            RunningSource::None => {}
        }
    }
}

async fn start_source(config: &AgentConfig, store: Arc<Store>) -> anyhow::Result<RunningSource> {
    Ok(match config.source {
        SourceKind::Files => {
            let dir = config
                .manifests
                .clone()
                .context("--source files needs --manifests DIR")?;
            info!(dir = %dir.display(), "watching manifests");
            RunningSource::Files(FilesSource::start(dir, store)?)
        }
        SourceKind::Kubernetes => {
            let client = kube::Client::try_default()
                .await
                .context("no Kubernetes client config (in-cluster or $KUBECONFIG)")?;
            RunningSource::Kubernetes(KubernetesSource::start(client, &config.node_name, store))
        }
        SourceKind::None => RunningSource::None,
    })
}

/// The pod CIDR: the flag, or (kubernetes source) the operator's.
async fn pod_cidr(config: &AgentConfig) -> anyhow::Result<ipnet::Ipv4Net> {
    if let Some(cidr) = config.pod_cidr {
        return Ok(cidr);
    }
    anyhow::ensure!(
        config.source == SourceKind::Kubernetes,
        "--pod-cidr is required unless --source kubernetes (then the operator allocates it)"
    );
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client config (in-cluster or $KUBECONFIG)")?;
    crate::sources::kubernetes::pod_cidr_from_sluice_node(
        client,
        &config.node_name,
        Duration::from_secs(2),
    )
    .await
}

/// What the datapath needs to know about its node.
async fn node_config(config: &AgentConfig, net: &NodeNet) -> anyhow::Result<NodeConfig> {
    let node_ip = match (config.node_ip, &config.uplink) {
        (Some(ip), _) => Some(ip),
        (None, Some(uplink)) => Some(net.ipv4_of(uplink).await?),
        (None, None) => None,
    };
    let masquerade_ip = node_ip.filter(|_| config.masquerade);
    if config.masquerade && masquerade_ip.is_none() {
        tracing::warn!("masquerade needs --uplink or --node-ip; it stays off");
    }
    let be = |ip: std::net::Ipv4Addr| u32::from_ne_bytes(ip.octets());
    Ok(NodeConfig {
        node_ip: masquerade_ip.map_or(0, be),
        cluster_net: be(config.cluster_cidr.network()),
        cluster_mask: be(config.cluster_cidr.netmask()),
        maglev_table_size: config.maglev_table_size,
        tunnel_ifindex: 0,
        flags: 0,
        refusals_per_cpu_second: per_cpu_rate(config.refusal_rate, online_cpus()),
        // Narrowed to the pod CIDR once the endpoints are restored.
        local_net: 0,
        local_mask: 0,
    })
}

fn online_cpus() -> u32 {
    aya::util::online_cpus().map_or(1, |cpus| cpus.len().max(1) as u32)
}

/// A node-wide rate split over `cpus` (each CPU has its own bucket), at
/// least 1 per CPU unless the rate is 0 (unlimited).
fn per_cpu_rate(node_rate: u32, cpus: u32) -> u32 {
    if node_rate == 0 {
        0
    } else {
        (node_rate / cpus.max(1)).max(1)
    }
}

/// The service manager's starting point: the ids already in the maps.
fn lb_state(config: &AgentConfig, node_ip: &u32, maps: &KernelLbMaps) -> anyhow::Result<LbState> {
    let maglev_table_size = match config.lb_mode {
        LbMode::Random => None,
        LbMode::Maglev => {
            anyhow::ensure!(
                maglev::is_prime(config.maglev_table_size),
                "--maglev-table-size {} is not a prime",
                config.maglev_table_size
            );
            Some(config.maglev_table_size)
        }
    };
    let settings = LbSettings {
        node_ip: std::net::Ipv4Addr::from(node_ip.to_ne_bytes()),
        maglev_table_size,
        maglev_max_frontends: config.datapath.lb_maglev_map_size / config.maglev_table_size.max(1),
    };
    let mut state = LbState::restore(settings, maps.dump()?);
    // A removed frontend's id waits for two conntrack GC passes, which
    // purge the flows still carrying it.
    state.set_rev_nat_quarantine(Duration::from_secs(2 * config.ct_gc_interval.max(1) + 5));
    Ok(state)
}

/// Binds the API socket with mode 0600, replacing a stale socket file.
fn bind_api_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another agent already serves {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub fn run(config: AgentConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(config))
}

async fn run_async(config: AgentConfig) -> anyhow::Result<()> {
    let node_net = Arc::new(NodeNet::connect()?);
    let mut datapath = Datapath::load(&config.datapath)?;
    // Verify the pod program now rather than at the first pod's ADD: the
    // verifier takes tens of milliseconds, and a program it rejects must
    // stop the agent, not fail a pod.
    datapath.from_pod_program()?;
    for iface in &config.interfaces {
        let outcome = datapath.attach_pod_device(iface)?;
        info!(iface, ?outcome, "attached");
    }
    let pin_dir = datapath.pin_dir().to_owned();
    let routing = crate::routing::set_up(&config, &node_net, &mut datapath, &pin_dir).await?;
    let mut node_config = node_config(&config, &node_net).await?;
    node_config.tunnel_ifindex = routing.tunnel_ifindex;
    // Numbers are cluster-wide with the Kubernetes source and with a shared
    // cluster-state directory (the local mesh): SluiceIdentity objects.
    let cluster_wide_identities =
        config.source == SourceKind::Kubernetes || config.cluster_state.is_some();
    if routing.tunnel_ifindex != 0
        && crate::routing::decides_on_carried_identity(
            config.tunnel_identity,
            cluster_wide_identities,
        )
    {
        node_config.flags |= sluice_bpf_common::config::CONFIG_CARRIED_IDENTITY;
    }
    datapath.set_node_config(node_config)?;
    if let Some(uplink) = &config.uplink {
        datapath.attach_uplink(uplink)?;
        info!(uplink, "uplink attached");
    }
    match &config.socket_lb_cgroup {
        Some(cgroup) => {
            datapath.attach_socket_lb(&config.datapath.bpffs_root, cgroup)?;
            info!(cgroup = %cgroup.display(), "socket LB attached");
        }
        None => {
            if crate::datapath::sock_lb::detach_socket_lb(&config.datapath.bpffs_root)? {
                info!("socket LB detached (no --socket-lb-cgroup)");
            }
        }
    }
    let prefilter = Arc::new(crate::prefilter::start(&config, &mut datapath).await?);
    info!(pin_dir = %pin_dir.display(), "datapath loaded");
    let kernel_node_ip = node_config.node_ip;
    let lb_maps = KernelLbMaps::open(&pin_dir, config.maglev_table_size)?;
    let kernel = Arc::new(KernelDatapath::new(datapath)?);

    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
    // Leases, endpoints and identity numbers describe this boot's kernel
    // objects; they live in this boot's directory (see boot_state).
    let boot_dir = crate::boot_state::prepare(&config.state_dir).with_context(|| {
        format!(
            "cannot prepare this boot's state in {}",
            config.state_dir.display()
        )
    })?;
    let on_corrupt = config.on_corrupt_state.into();
    // In a cluster, pod identities are the cluster's SluiceIdentity numbers.
    let mut cluster = match (config.source, &config.cluster_state) {
        (SourceKind::Kubernetes, _) => Some(Cluster::connect().await?),
        (SourceKind::Files, Some(dir)) => Some(Cluster::files(dir).await?),
        _ => None,
    };
    let identities = Arc::new(match &cluster {
        Some(cluster) => cluster.allocator(&boot_dir, on_corrupt)?,
        None => IdentityAllocator::open(boot_dir.join("identities.json"), on_corrupt)?,
    });
    let pod_cidr = pod_cidr(&config).await?;
    let ipam = Arc::new(Ipam::open(
        pod_cidr,
        boot_dir.join("ipam.json"),
        on_corrupt,
    )?);
    let registry = Arc::new(EndpointRegistry::open(
        boot_dir.join("endpoints.json"),
        on_corrupt,
        kernel.clone(),
        identities.clone(),
    )?);
    let report = tokio::task::block_in_place(|| registry.restore())?;
    for gone in &report.gone {
        ipam.release(&gone.owner.container_id, &gone.owner.ifname)?;
    }
    info!(
        restored = report.restored,
        gone = report.gone.len(),
        stale_map_entries = report.stale_map_entries,
        "endpoints restored"
    );
    let narrowed = tokio::task::block_in_place(|| kernel.narrow_local_delivery(pod_cidr))?;
    info!(
        %pod_cidr,
        narrowed, "local delivery looks up only addresses in the pod CIDR when narrowed"
    );

    let store = Arc::new(Store::default());
    let mut source = start_source(&config, store.clone()).await?;
    if let RunningSource::Kubernetes(kubernetes) = &mut source {
        if let Some(cluster) = &mut cluster {
            let listed = kubernetes.also_wait_for("kubernetes/SluiceEndpoint");
            cluster.follow_remote(&config.node_name, store.clone(), listed);
        }
        // Policy, services, routes and endpoint records derived from a
        // half-listed store would drop what is merely not listed yet
        // (after a restart: open policy, lost services, removed routes).
        info!("waiting for the first list of every kind");
        kubernetes.wait_listed().await;
        info!("every kind listed");
    }
    if let Some(cluster) = &mut cluster {
        cluster.publish(&config.node_name, registry.clone(), store.clone());
    }
    let policy = Arc::new(PolicyController::new(
        store.clone(),
        registry.clone(),
        config.node_name.clone(),
        Engine::new(identities.clone()),
        KernelPolicyMaps::open(&pin_dir, kernel)?,
    ));
    tokio::spawn(policy_controller::follow(policy.clone(), store.clone()));
    let flows = Arc::new(FlowBuffer::new(DEFAULT_FLOW_BUFFER));
    {
        let names = AgentNames {
            registry: registry.clone(),
            store: store.clone(),
            identities: identities.clone(),
            policy: policy.clone(),
        };
        let (pin_dir, node, flows) = (pin_dir.clone(), config.node_name.clone(), flows.clone());
        tokio::spawn(async move {
            if let Err(e) = flows::reader::run(&pin_dir, node, names, flows).await {
                tracing::error!("flow events stopped: {e:#}");
            }
        });
    }
    tokio::spawn(labels::follow_label_changes(
        store.clone(),
        registry.clone(),
    ));
    let node_cidrs = match &source {
        RunningSource::Kubernetes(kubernetes) => Some(kubernetes.node_cidrs()),
        _ => None,
    };
    tokio::spawn(node_routes::follow_nodes(
        store.clone(),
        node_cidrs,
        config.node_name.clone(),
        NodeNet::connect()?,
        routing.routing,
    ));
    let services_revision = services::follow::SyncedRevision::default();
    tokio::spawn(services::follow::follow(
        store.clone(),
        config.node_name.clone(),
        lb_state(&config, &kernel_node_ip, &lb_maps)?,
        Box::new(lb_maps),
        services_revision.clone(),
        Some(services::follow::HostPortSource {
            registry: registry.clone(),
            node_ip: std::net::Ipv4Addr::from(kernel_node_ip.to_ne_bytes()),
        }),
    ));
    tokio::spawn(conntrack_gc::run(
        pin_dir.clone(),
        Duration::from_secs(config.ct_gc_interval.max(1)),
    ));

    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let exporter = telemetry::exporter::start(
        &config.telemetry,
        &config.node_name,
        telemetry::own_metrics(&pin_dir, &ready, &registry, &identities, &flows),
        flows.clone(),
    )?;
    let (metric_identities, metric_flows) = (identities.clone(), flows.clone());
    let (pin_dir_for_status, store_for_status) = (pin_dir.clone(), store.clone());
    let api_latency = ApiLatency::default();
    let service = AgentService {
        node_name: config.node_name.clone(),
        pin_dir: pin_dir.clone(),
        ipam,
        registry: registry.clone(),
        policy: policy.clone(),
        store,
        node_net,
        ready: ready.clone(),
        flows,
        identities,
        services_revision,
        prefilter,
        pod_mtu: routing.pod_mtu,
    };
    let listener = bind_api_socket(&config.api_socket)?;
    let api = tokio::spawn(
        api_server::builder()
            .layer(api_latency.layer())
            .add_service(
                AgentServer::new(service)
                    .max_decoding_message_size(api_server::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(api_server::MAX_MESSAGE_BYTES),
            )
            .serve_with_incoming_shutdown(
                api_server::limited_incoming(listener, api_server::MAX_CONNECTIONS),
                stopped(),
            ),
    );
    let mut metric_registry = metrics::registry(
        pin_dir,
        registry,
        ready.clone(),
        metric_identities,
        metric_flows,
        &api_latency,
    );
    policy.register_metrics(&mut metric_registry);
    let router = metrics::router(metric_registry, ready.clone());
    let http = tokio::spawn(metrics::serve(config.metrics_addr, router, stopped()));

    ready.store(true, Ordering::Release);
    if let (Some(cluster), true) = (&mut cluster, config.status_interval > 0) {
        let observe = status_observer(
            pin_dir_for_status,
            config.routing,
            ready.clone(),
            policy.clone(),
            store_for_status,
        );
        cluster.publish_agent_status(
            &config.node_name,
            Duration::from_secs(config.status_interval),
            observe,
        );
    }
    info!(
        socket = %config.api_socket.display(),
        metrics = %config.metrics_addr,
        "agent ready"
    );

    wait_for_signal().await?;
    info!("shutting down; maps and attachments stay in place");
    ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    if let Some(exporter) = exporter {
        exporter.shutdown(Duration::from_secs(2)).await;
    }
    source.stop().await;
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    let deadline = Duration::from_secs(config.shutdown_timeout);
    let drained = tokio::time::timeout(deadline, async {
        let api = api.await;
        let http = http.await;
        (api, http)
    })
    .await;
    let _ = std::fs::remove_file(&config.api_socket);
    match drained {
        Ok((api, http)) => {
            api??;
            http??;
            Ok(())
        }
        Err(_) => {
            tracing::warn!(
                ?deadline,
                "requests still in flight at the shutdown deadline"
            );
            Ok(())
        }
    }
}

/// What the status publisher reads: readiness and rejected objects at
/// every check, map fill when asked (once per heartbeat).
fn status_observer(
    pin_dir: std::path::PathBuf,
    routing: crate::config::RoutingMode,
    ready: Arc<AtomicBool>,
    policy: Arc<PolicyController>,
    store: Arc<Store>,
) -> impl Fn(bool) -> crate::agent_status::Observed + Send + Sync + 'static {
    use clap::ValueEnum;
    let routing_mode = routing
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    move |with_maps| crate::agent_status::Observed {
        ready: ready.load(Ordering::Acquire),
        routing_mode: routing_mode.clone(),
        maps: if with_maps {
            crate::map_fill::map_fills(&pin_dir).unwrap_or_else(|e| {
                tracing::warn!("agent status: cannot read map fill: {e:#}");
                Vec::new()
            })
        } else {
            Vec::new()
        },
        rejected: crate::rejected::rejected_objects(&policy, &store),
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::per_cpu_rate;

    #[test]
    fn the_refusal_rate_is_split_over_the_cpus() {
        assert_eq!(per_cpu_rate(1000, 2), 500);
        assert_eq!(per_cpu_rate(1000, 3), 333);
        assert_eq!(per_cpu_rate(1, 4), 1, "at least one per CPU");
        assert_eq!(per_cpu_rate(0, 4), 0, "unlimited stays unlimited");
    }
}
