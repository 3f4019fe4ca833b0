//! `up`: underlay, internet, nodes with their agents, then the manifests.

use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    apply, cgroup,
    context::{Mesh, name_flag},
    control::{self, ControlState},
    journal::{Journal, Resource},
    layout::Layout,
    manifests::{self, ObjectKey},
    netns,
    objects::ObjectStore,
    plan,
    state::{MeshInfo, MeshLock, MeshState, ProcessRef},
    topology,
};

/// The default example: a 3-tier app spread over the nodes.
pub const DEFAULT_EXAMPLE: &str = include_str!("../../../examples/three-tier.yaml");

/// What `up` builds.
#[derive(Debug, Clone, Copy)]
pub struct UpOptions {
    pub clusters: u32,
    pub nodes: u32,
    pub routing: topology::Routing,
    /// The management namespace (Redis, sluice-control) and a relay agent
    /// per cluster.
    pub control_plane: bool,
    /// Whether a dead agent is started again (as kubelet does).
    pub agent_restart: super::supervise::RestartPolicy,
}

/// What `up` built: each cluster's state, and how long it took.
pub struct UpReport {
    pub clusters: Vec<MeshState>,
    pub control: Option<ControlState>,
    pub elapsed: Duration,
}

pub fn up(layout: &Layout, options: UpOptions, files: &[PathBuf]) -> Result<UpReport> {
    let started = Instant::now();
    plan::check_size(options.clusters, options.nodes)?;
    refuse_existing(layout)?;
    // Parse everything before building anything: bad input costs nothing.
    let objects = if files.is_empty() {
        manifests::parse_text(
            DEFAULT_EXAMPLE,
            std::path::Path::new("examples/three-tier.yaml"),
        )?
    } else {
        manifests::load_paths(files)?
    };
    // As `apply` will: refused objects cost nothing either.
    manifests::refuse(super::admission::problems(
        &objects,
        &std::collections::BTreeSet::new(),
    ))?;
    check_bpffs()?;
    let control_binaries = if options.control_plane {
        Some(control::binaries()?)
    } else {
        None
    };

    fs::create_dir_all(layout.state_dir())
        .with_context(|| format!("cannot create {}", layout.state_dir().display()))?;
    fs::create_dir_all(layout.logs_dir())?;
    let mut lock = MeshLock::acquire(layout)?;
    let journal = Journal::new(layout.journal_file());
    journal.record(&Resource::Dir {
        path: layout.bpffs_dir(),
    })?;
    MeshInfo {
        clusters: options.clusters,
        nodes: options.nodes,
        control_plane: options.control_plane,
    }
    .save(layout)?;
    let cgroup2 = node_cgroups_root(layout, &journal)?;

    progress(&format!(
        "underlay and internet ({})",
        layout.internet_netns()
    ));
    topology::build_underlay(layout, &journal)?;
    let internet = topology::build_internet(layout, &journal)?;

    // The management plane's own processes first: agents export their
    // telemetry to its gateway from their start.
    let core = match &control_binaries {
        Some(bins) => {
            progress(&format!(
                "management plane ({}): redis, sluice-control (telemetry gateway), prometheus",
                layout.mgmt_netns(),
            ));
            Some(control::start_core(layout, &journal, bins)?)
        }
        None => None,
    };
    let telemetry = core.as_ref().map(|_| control::agent_telemetry(layout));

    let mut clusters = Vec::new();
    for index in 1..=options.clusters {
        let cluster = layout.for_cluster(index);
        let (state, back) = build_cluster(
            &cluster,
            &journal,
            &options,
            cgroup2.as_deref(),
            internet.clone(),
            objects.clone(),
            telemetry.as_ref(),
            lock,
        )?;
        lock = back;
        clusters.push(state);
    }

    let control = match core {
        Some(core) => {
            progress(&format!(
                "management plane: {} relay agent(s)",
                options.clusters
            ));
            let layouts: Vec<Layout> = (1..=options.clusters)
                .map(|i| layout.for_cluster(i))
                .collect();
            Some(control::connect_clusters(layout, &journal, core, &layouts)?)
        }
        None => None,
    };
    // Ready only once everything is: a crash before leaves a half-built
    // mesh that `down` clears.
    for (index, state) in (1..).zip(clusters.iter_mut()) {
        state.ready = true;
        state.save(&layout.for_cluster(index).state_file())?;
    }
    drop(lock);
    Ok(UpReport {
        clusters,
        control,
        elapsed: started.elapsed(),
    })
}

/// One cluster: its operator, Node objects, nodes with agents, then the
/// objects. Returns its state (not yet ready) and the mesh lock.
#[allow(clippy::too_many_arguments)]
fn build_cluster(
    cluster: &Layout,
    journal: &Journal,
    options: &UpOptions,
    cgroup2: Option<&std::path::Path>,
    internet: ProcessRef,
    objects: Vec<manifests::Manifest>,
    telemetry: Option<&super::telemetry::AgentTelemetry>,
    lock: MeshLock,
) -> Result<(MeshState, MeshLock)> {
    let tag = if options.clusters > 1 {
        format!("{}: ", cluster.cluster_name())
    } else {
        String::new()
    };
    fs::create_dir_all(cluster.logs_dir())?;
    let store = ObjectStore::new(cluster);
    store.create_dirs()?;
    progress(&format!(
        "{tag}operator (files mode: identity and endpoint GC)"
    ));
    fs::create_dir_all(cluster.cluster_state_dir())?;
    let operator = topology::start_operator(cluster, journal)?;

    // Every Node object exists before the first agent reads the directory.
    for index in 1..=options.nodes {
        let name = Layout::node_name(index);
        let node = apply::node_object(
            &name,
            &plan::node_pod_cidr(cluster.cluster(), index),
            plan::node_address(cluster.cluster(), options.nodes, index),
        );
        let key = ObjectKey {
            kind: "Node".into(),
            namespace: None,
            name,
        };
        store.save_rendered(&key, &node)?;
    }
    let mut state = MeshState {
        name: cluster.name().to_owned(),
        internet: Some(internet),
        operator: Some(operator),
        ..MeshState::default()
    };
    for index in 1..=options.nodes {
        progress(&format!(
            "{tag}node-{index}: namespace, uplink, agent ({} routing)",
            options.routing.flag()
        ));
        let address = plan::node_address(cluster.cluster(), options.nodes, index);
        state.nodes.push(topology::build_node(
            cluster,
            journal,
            index,
            address,
            cgroup2,
            &topology::AgentOptions {
                routing: options.routing,
                restart: options.agent_restart,
                telemetry,
            },
        )?);
        state.save(&cluster.state_file())?;
        // As a kubelet would: the node is Ready once its agent is.
        let name = Layout::node_name(index);
        let node = apply::ready_node_object(
            &name,
            &plan::node_pod_cidr(cluster.cluster(), index),
            address,
        );
        let key = ObjectKey {
            kind: "Node".into(),
            namespace: None,
            name,
        };
        store.save_rendered(&key, &node)?;
    }

    let mut mesh = Mesh::with_state(cluster, state, lock);
    progress(&format!("{tag}applying {} objects", objects.len()));
    let report = apply::apply(&mut mesh, objects)?;
    for line in &report.lines {
        println!("  {line}");
    }
    mesh.save()?;
    Ok(mesh.into_parts())
}

/// The cgroup v2 mount, with the mesh's parent cgroup created in it (and
/// journaled first); None, with a warning, when the machine has no cgroup2:
/// then socket-level load balancing stays off and services go through the
/// packet path.
fn node_cgroups_root(layout: &Layout, journal: &Journal) -> Result<Option<PathBuf>> {
    let Some(root) = cgroup::cgroup2_root() else {
        eprintln!(
            "warning: no cgroup v2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified: socket-level \
             load balancing stays off (services still work on the packet path)"
        );
        return Ok(None);
    };
    let parent = layout.cgroup_dir(&root);
    journal.record(&Resource::Cgroup {
        path: parent.clone(),
    })?;
    cgroup::create(&parent)?;
    Ok(Some(root))
}

fn progress(step: &str) {
    eprintln!("==> {step}");
}

/// `up` twice, or over a crashed run, stops with the command that clears it.
fn refuse_existing(layout: &Layout) -> Result<()> {
    let leftover_ns = netns::list_with_prefix(&layout.netns_prefix());
    let leftover_cgroup = cgroup::cgroup2_root()
        .map(|root| layout.cgroup_dir(&root))
        .filter(|dir| dir.exists());
    let state = MeshState::load(&layout.state_file()).ok().flatten();
    match state {
        Some(state) if state.ready => bail!(
            "mesh {:?} is already up ({} nodes, {} pods; state in {}). Use `sluice mesh apply -f` \
             to change it, or `sluice mesh down{}` first",
            layout.name(),
            state.nodes.len(),
            state.pods.len(),
            layout.state_dir().display(),
            name_flag(layout)
        ),
        _ if layout.state_dir().exists()
            || !leftover_ns.is_empty()
            || leftover_cgroup.is_some() =>
        {
            bail!(
                "leftovers of an earlier mesh {:?} exist (a crashed or still running `up`?{}{}): \
                 clear them with `sluice mesh down{}`",
                layout.name(),
                if leftover_ns.is_empty() {
                    String::new()
                } else {
                    format!(" namespaces: {}", leftover_ns.join(", "))
                },
                leftover_cgroup
                    .map(|dir| format!(" cgroup: {}", dir.display()))
                    .unwrap_or_default(),
                name_flag(layout)
            )
        }
        _ => Ok(()),
    }
}

/// Agents pin under /sys/fs/bpf: it must be a mounted bpffs.
fn check_bpffs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mounted = mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf "));
    if !mounted {
        bail!("bpffs is not mounted at /sys/fs/bpf: mount it with `mount -t bpf bpf /sys/fs/bpf`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::manifests::Manifest;

    #[test]
    fn the_default_example_parses_and_spreads_over_two_nodes() {
        let objects =
            manifests::parse_text(DEFAULT_EXAMPLE, std::path::Path::new("three-tier.yaml"))
                .unwrap();
        let pods: Vec<&Manifest> = objects.iter().filter(|m| m.key.kind == "Pod").collect();
        assert!(pods.len() >= 4, "a 3-tier app needs pods on both nodes");
        assert!(objects.iter().any(|m| m.key.kind == "Service"));
        let mut load: std::collections::BTreeMap<String, usize> =
            [("node-1".to_owned(), 0), ("node-2".to_owned(), 0)].into();
        for pod in pods {
            let node = super::super::pods::place(&pod.value, &load).unwrap();
            *load.get_mut(&node).unwrap() += 1;
        }
        assert!(load.values().all(|n| *n >= 2), "{load:?}");
    }
}
