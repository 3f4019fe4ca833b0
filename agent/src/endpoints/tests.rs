use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicBool, Ordering},
};

use super::*;

/// An in-memory datapath: interfaces that exist, the endpoint map, attaches.
#[derive(Default)]
struct FakeDatapath {
    interfaces: Mutex<BTreeMap<String, (u32, [u8; 6])>>,
    map: Mutex<BTreeMap<Ipv4Addr, EndpointInfo>>,
    attached: Mutex<Vec<String>>,
    fail_attach: AtomicBool,
}

impl FakeDatapath {
    fn with_interfaces(names: &[&str]) -> Arc<Self> {
        let fake = Self::default();
        for (i, name) in names.iter().enumerate() {
            let mac = [0x02, 0, 0, 0, 0, i as u8 + 1];
            fake.interfaces
                .lock()
                .unwrap()
                .insert(name.to_string(), (100 + i as u32, mac));
        }
        Arc::new(fake)
    }

    fn entry(&self, ip: Ipv4Addr) -> Option<EndpointInfo> {
        self.map.lock().unwrap().get(&ip).copied()
    }
}

impl DatapathOps for FakeDatapath {
    fn attach(&self, host_interface: &str) -> anyhow::Result<(u32, [u8; 6])> {
        if self.fail_attach.load(Ordering::Relaxed) {
            anyhow::bail!("attach refused");
        }
        let found = self.interfaces.lock().unwrap().get(host_interface).copied();
        let found = found.ok_or_else(|| anyhow::anyhow!("no interface {host_interface}"))?;
        self.attached
            .lock()
            .unwrap()
            .push(host_interface.to_owned());
        Ok(found)
    }
    fn interface_exists(&self, host_interface: &str) -> bool {
        self.interfaces.lock().unwrap().contains_key(host_interface)
    }
    fn write_endpoint(&self, ip: Ipv4Addr, info: EndpointInfo) -> anyhow::Result<()> {
        self.map.lock().unwrap().insert(ip, info);
        Ok(())
    }
    fn remove_endpoint(&self, ip: Ipv4Addr) -> anyhow::Result<()> {
        self.map.lock().unwrap().remove(&ip);
        Ok(())
    }
    fn endpoint_addresses(&self) -> anyhow::Result<Vec<Ipv4Addr>> {
        Ok(self.map.lock().unwrap().keys().copied().collect())
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    datapath: Arc<FakeDatapath>,
    identities: Arc<IdentityAllocator>,
    registry: EndpointRegistry,
}

fn open(dir: tempfile::TempDir, datapath: Arc<FakeDatapath>) -> Fixture {
    let identities = Arc::new(
        IdentityAllocator::open(dir.path().join("identities.json"), OnCorruptState::Fail)
            .expect("identities"),
    );
    let registry = EndpointRegistry::open(
        dir.path().join("endpoints.json"),
        OnCorruptState::Fail,
        datapath.clone(),
        identities.clone(),
    )
    .expect("registry");
    Fixture {
        dir,
        datapath,
        identities,
        registry,
    }
}

fn fixture(interfaces: &[&str]) -> Fixture {
    open(
        tempfile::tempdir().unwrap(),
        FakeDatapath::with_interfaces(interfaces),
    )
}

fn new_endpoint(container: &str, iface: &str, ip: [u8; 4], pod: &str) -> NewEndpoint {
    NewEndpoint {
        owner: Owner::new(container, "eth0"),
        netns: format!("/run/netns/{container}"),
        host_interface: iface.to_owned(),
        ipv4: Ipv4Addr::from(ip),
        pod_mac: [0x0a, 0, 0, 0, 0, ip[3]],
        pod_namespace: "default".into(),
        pod_name: pod.into(),
        pod_uid: format!("uid-{pod}"),
        host_ports: Vec::new(),
    }
}

fn labels(app: &str) -> SecurityLabels {
    SecurityLabels::from_raw([
        format!("k8s:app={app}"),
        "k8s:io.kubernetes.pod.namespace=default".to_string(),
    ])
}

#[test]
fn create_writes_the_map_entry_with_identity_and_host_device() {
    let f = fixture(&["lxc1"]);
    let ep = f
        .registry
        .create(
            new_endpoint("c1", "lxc1", [10, 0, 0, 5], "web-1"),
            labels("web"),
        )
        .unwrap();
    assert!(ep.identity.get() >= 256);
    let entry = f.datapath.entry(ep.ipv4).expect("map entry");
    assert_eq!(entry.ifindex, 100);
    assert_eq!(entry.identity, ep.identity.get());
    assert_eq!(entry.node_mac, [0x02, 0, 0, 0, 0, 1]);
    assert_eq!(entry.pod_mac, [0x0a, 0, 0, 0, 0, 5]);
    assert_eq!(
        *f.datapath.attached.lock().unwrap(),
        vec!["lxc1".to_string()]
    );
}

#[test]
fn a_retried_create_is_idempotent_and_holds_one_identity_reference() {
    let f = fixture(&["lxc1"]);
    let request = new_endpoint("c1", "lxc1", [10, 0, 0, 5], "web-1");
    let first = f.registry.create(request.clone(), labels("web")).unwrap();
    let second = f.registry.create(request, labels("web")).unwrap();
    assert_eq!(first, second);
    assert_eq!(f.registry.len(), 1);
    assert_eq!(f.identities.refs(first.identity), Some(1));
}

#[test]
fn same_labels_share_an_identity_and_different_labels_do_not() {
    let f = fixture(&["lxc1", "lxc2", "lxc3"]);
    let a = f.registry.create(
        new_endpoint("c1", "lxc1", [10, 0, 0, 1], "web-1"),
        labels("web"),
    );
    let b = f.registry.create(
        new_endpoint("c2", "lxc2", [10, 0, 0, 2], "web-2"),
        labels("web"),
    );
    let c = f.registry.create(
        new_endpoint("c3", "lxc3", [10, 0, 0, 3], "db-1"),
        labels("db"),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a.identity, b.identity);
    assert_ne!(a.identity, c.identity);
    assert_eq!(f.identities.refs(a.identity), Some(2));
}

#[test]
fn an_address_owned_by_another_endpoint_is_refused_and_nothing_changes() {
    let f = fixture(&["lxc1", "lxc2"]);
    let a = f
        .registry
        .create(
            new_endpoint("c1", "lxc1", [10, 0, 0, 1], "web-1"),
            labels("web"),
        )
        .unwrap();
    let err = f
        .registry
        .create(
            new_endpoint("c2", "lxc2", [10, 0, 0, 1], "db-1"),
            labels("db"),
        )
        .unwrap_err();
    assert!(matches!(err, EndpointError::AddressInUse { .. }), "{err}");
    assert_eq!(f.registry.len(), 1);
    assert_eq!(f.datapath.entry(a.ipv4).unwrap().ifindex, 100);
    assert!(f.identities.identity_of(&labels("db")).is_none());
}

#[test]
fn a_failed_attach_leaves_no_endpoint_entry_or_identity() {
    let f = fixture(&["lxc1"]);
    f.datapath.fail_attach.store(true, Ordering::Relaxed);
    let err = f
        .registry
        .create(
            new_endpoint("c1", "lxc1", [10, 0, 0, 1], "web-1"),
            labels("web"),
        )
        .unwrap_err();
    assert!(matches!(err, EndpointError::Datapath(_)), "{err}");
    assert!(f.registry.is_empty());
    assert!(f.datapath.entry(Ipv4Addr::new(10, 0, 0, 1)).is_none());
    assert!(f.identities.identity_of(&labels("web")).is_none());
}

#[test]
fn delete_removes_entry_and_releases_identity_and_is_idempotent() {
    let f = fixture(&["lxc1"]);
    let ep = f
        .registry
        .create(
            new_endpoint("c1", "lxc1", [10, 0, 0, 1], "web-1"),
            labels("web"),
        )
        .unwrap();
    let deleted = f.registry.delete(&ep.owner).unwrap();
    assert_eq!(deleted.as_ref(), Some(&ep));
    assert!(f.datapath.entry(ep.ipv4).is_none());
    assert!(f.identities.identity_of(&labels("web")).is_none());
    assert_eq!(f.registry.delete(&ep.owner).unwrap(), None);
}

#[test]
fn relabel_moves_the_endpoint_to_the_new_identity_in_place() {
    let f = fixture(&["lxc1"]);
    let ep = f
        .registry
        .create(
            new_endpoint("c1", "lxc1", [10, 0, 0, 1], "web-1"),
            labels("web"),
        )
        .unwrap();
    assert_eq!(
        f.registry
            .relabel("default", "web-1", &labels("api"))
            .unwrap(),
        1
    );
    let moved = f.registry.get(&ep.owner).unwrap();
    assert_ne!(moved.identity, ep.identity);
    assert_eq!(
        f.datapath.entry(ep.ipv4).unwrap().identity,
        moved.identity.get()
    );
    assert!(
        f.identities.identity_of(&labels("web")).is_none(),
        "old identity freed"
    );
    // Same labels again: nothing to do.
    assert_eq!(
        f.registry
            .relabel("default", "web-1", &labels("api"))
            .unwrap(),
        0
    );
}

#[test]
fn restore_after_restart_rewrites_entries_drops_vanished_pods_and_stale_entries() {
    let f = fixture(&["lxc1", "lxc2"]);
    let kept = f
        .registry
        .create(
            new_endpoint("c1", "lxc1", [10, 0, 0, 1], "web-1"),
            labels("web"),
        )
        .unwrap();
    let vanished = f
        .registry
        .create(
            new_endpoint("c2", "lxc2", [10, 0, 0, 2], "db-1"),
            labels("db"),
        )
        .unwrap();
    let Fixture { dir, datapath, .. } = f;

    // While the agent was down: lxc2's pod went away, a stray entry appeared.
    datapath.interfaces.lock().unwrap().remove("lxc2");
    datapath
        .write_endpoint(Ipv4Addr::new(10, 0, 0, 99), kept.datapath_entry())
        .unwrap();
    datapath.attached.lock().unwrap().clear();

    let f = open(dir, datapath);
    let report = f.registry.restore().unwrap();
    assert_eq!(report.restored, 1);
    assert_eq!(report.gone.len(), 1);
    assert_eq!(report.gone[0].owner, vanished.owner);
    assert_eq!(
        report.stale_map_entries, 2,
        "the stray entry and the vanished pod's"
    );
    let restored = f.registry.get(&kept.owner).unwrap();
    assert_eq!(
        restored.identity, kept.identity,
        "identity numbers survive restarts"
    );
    assert_eq!(f.datapath.entry(kept.ipv4), Some(kept.datapath_entry()));
    assert!(f.datapath.entry(vanished.ipv4).is_none());
    assert_eq!(
        *f.datapath.attached.lock().unwrap(),
        vec!["lxc1".to_string()]
    );
    assert!(
        f.identities.identity_of(&labels("db")).is_none(),
        "unclaimed identity freed"
    );
}

#[test]
fn a_corrupt_state_file_is_a_clear_error_unless_starting_fresh() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("endpoints.json"), "{not json").unwrap();
    let identities = Arc::new(
        IdentityAllocator::open(dir.path().join("identities.json"), OnCorruptState::Fail).unwrap(),
    );
    let datapath = FakeDatapath::with_interfaces(&[]);
    let err = EndpointRegistry::open(
        dir.path().join("endpoints.json"),
        OnCorruptState::Fail,
        datapath.clone(),
        identities.clone(),
    )
    .err()
    .expect("corrupt state must not load");
    assert!(err.to_string().contains("endpoints.json"), "{err}");
    let fresh = EndpointRegistry::open(
        dir.path().join("endpoints.json"),
        OnCorruptState::StartFresh,
        datapath,
        identities,
    )
    .expect("start fresh");
    assert!(fresh.is_empty());
}

fn host_port(port: u16, container_port: u16) -> crate::services::host_ports::HostPort {
    crate::services::host_ports::HostPort {
        host_ip: None,
        host_port: port,
        container_port,
        proto: sluice_bpf_common::conntrack::PROTO_TCP,
    }
}

#[test]
fn a_host_port_taken_by_another_endpoint_is_refused_and_survives_a_restart() {
    let f = fixture(&["lxc1", "lxc2"]);
    let mut changes = f.registry.subscribe();
    let mut web = new_endpoint("c1", "lxc1", [10, 0, 0, 1], "web-1");
    web.host_ports = vec![host_port(8080, 80)];
    f.registry.create(web.clone(), labels("web")).unwrap();
    assert!(changes.has_changed().unwrap(), "followers are told");
    changes.mark_unchanged();

    let mut other = new_endpoint("c2", "lxc2", [10, 0, 0, 2], "web-2");
    other.host_ports = vec![host_port(9090, 90), host_port(8080, 81)];
    let err = f.registry.create(other, labels("web")).unwrap_err();
    assert!(matches!(err, EndpointError::HostPortInUse { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("8080") && message.contains("default/web-1"),
        "{message}"
    );
    assert_eq!(f.registry.len(), 1);
    assert!(f.datapath.entry(Ipv4Addr::new(10, 0, 0, 2)).is_none());
    assert!(!changes.has_changed().unwrap());

    // A retried ADD of the same pod keeps its own port.
    f.registry.create(web, labels("web")).unwrap();

    // Persisted with the endpoint: a restarted agent serves it again.
    let Fixture { dir, datapath, .. } = f;
    let f = open(dir, datapath);
    f.registry.restore().unwrap();
    let restored = f.registry.get(&Owner::new("c1", "eth0")).unwrap();
    assert_eq!(restored.host_ports, vec![host_port(8080, 80)]);

    // Once the pod is deleted its port is free.
    f.registry.delete(&Owner::new("c1", "eth0")).unwrap();
    let mut next = new_endpoint("c2", "lxc2", [10, 0, 0, 2], "web-2");
    next.host_ports = vec![host_port(8080, 81)];
    f.registry.create(next, labels("web")).unwrap();
}
