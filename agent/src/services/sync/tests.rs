use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use sluice_bpf_common::conntrack::PROTO_TCP;

use super::*;

/// The maps in memory, counting writes.
#[derive(Default)]
struct FakeMaps {
    backends: BTreeMap<u32, Backend>,
    services: BTreeMap<(u32, u16, u8, u16), ServiceValue>,
    rev_nat: BTreeMap<u16, RevNat>,
    maglev: BTreeMap<u16, Vec<u32>>,
    source_ranges: BTreeMap<u16, Vec<(std::net::Ipv4Addr, u8)>>,
    writes: usize,
    /// Backend map capacity (`None`: unbounded), as the kernel map refuses
    /// a new key when full.
    backend_capacity: Option<usize>,
}

impl LbMaps for FakeMaps {
    fn set_backend(&mut self, id: u32, backend: Backend) -> anyhow::Result<()> {
        self.writes += 1;
        if self
            .backend_capacity
            .is_some_and(|cap| self.backends.len() >= cap && !self.backends.contains_key(&id))
        {
            anyhow::bail!("writing a backend (is the backend map full?)");
        }
        self.backends.insert(id, backend);
        Ok(())
    }
    fn remove_backend(&mut self, id: u32) -> anyhow::Result<()> {
        self.writes += 1;
        self.backends.remove(&id);
        Ok(())
    }
    fn set_service(&mut self, k: ServiceKey, v: ServiceValue) -> anyhow::Result<()> {
        self.writes += 1;
        self.services.insert((k.addr, k.port, k.proto, k.slot), v);
        Ok(())
    }
    fn remove_service(&mut self, k: ServiceKey) -> anyhow::Result<()> {
        self.writes += 1;
        self.services.remove(&(k.addr, k.port, k.proto, k.slot));
        Ok(())
    }
    fn set_rev_nat(&mut self, id: u16, r: RevNat) -> anyhow::Result<()> {
        self.writes += 1;
        self.rev_nat.insert(id, r);
        Ok(())
    }
    fn remove_rev_nat(&mut self, id: u16) -> anyhow::Result<()> {
        self.writes += 1;
        self.rev_nat.remove(&id);
        Ok(())
    }
    fn set_source_ranges(
        &mut self,
        rev_nat: u16,
        ranges: &[(std::net::Ipv4Addr, u8)],
    ) -> anyhow::Result<()> {
        self.writes += 1;
        if ranges.is_empty() {
            self.source_ranges.remove(&rev_nat);
        } else {
            self.source_ranges.insert(rev_nat, ranges.to_vec());
        }
        Ok(())
    }
    fn set_maglev(&mut self, rev_nat: u16, table: &[u32]) -> anyhow::Result<()> {
        self.writes += 1;
        self.maglev.insert(rev_nat, table.to_vec());
        Ok(())
    }
    fn dump(&self) -> anyhow::Result<LbDump> {
        Ok(LbDump {
            backends: self.backends.iter().map(|(k, v)| (*k, *v)).collect(),
            masters: self
                .services
                .iter()
                .filter(|((_, _, _, slot), _)| *slot == 0)
                .map(|((addr, port, proto, slot), v)| {
                    let key = ServiceKey {
                        addr: *addr,
                        port: *port,
                        proto: *proto,
                        _pad: 0,
                        slot: *slot,
                        _pad2: 0,
                    };
                    (key, *v)
                })
                .collect(),
        })
    }
}

impl FakeMaps {
    fn master(&self, front: &FrontendAddr) -> Option<ServiceValue> {
        let k = LbState::key(front, 0);
        self.services.get(&(k.addr, k.port, k.proto, 0)).copied()
    }
    fn slot_backends(&self, front: &FrontendAddr) -> Vec<BackendAddr> {
        let count = self.master(front).map_or(0, |m| m.count);
        (1..=count)
            .map(|slot| {
                let k = LbState::key(front, slot);
                let id = self.services[&(k.addr, k.port, k.proto, slot)].backend_id;
                let b = self.backends[&id];
                BackendAddr {
                    addr: std::net::Ipv4Addr::from(b.addr.to_ne_bytes()),
                    port: u16::from_be(b.port),
                    proto: b.proto,
                }
            })
            .collect()
    }
}

fn settings(maglev: Option<u32>) -> LbSettings {
    LbSettings {
        node_ip: "172.31.0.1".parse().unwrap(),
        maglev_table_size: maglev,
        maglev_max_frontends: 16,
    }
}

fn front(i: u16) -> FrontendAddr {
    FrontendAddr {
        addr: std::net::Ipv4Addr::new(10, 96, (i >> 8) as u8, i as u8),
        port: 80,
        proto: PROTO_TCP,
    }
}

fn backend(i: u8) -> BackendAddr {
    BackendAddr {
        addr: std::net::Ipv4Addr::new(10, 244, 1, i),
        port: 8080,
        proto: PROTO_TCP,
    }
}

fn spec(active: &[u8], terminating: &[u8]) -> FrontendSpec {
    FrontendSpec {
        service: "ns/svc:80".into(),
        active: active.iter().map(|i| backend(*i)).collect(),
        terminating: terminating.iter().map(|i| backend(*i)).collect(),
        affinity_timeout_s: None,
        ..FrontendSpec::default()
    }
}

#[test]
fn a_frontend_gets_a_master_entry_slots_backends_and_reverse_nat() {
    let mut maps = FakeMaps::default();
    let mut state = LbState::new(settings(None));
    let desired = BTreeMap::from([(front(1), spec(&[1, 2, 3], &[]))]);
    state.sync(&desired, &mut maps).unwrap();
    let master = maps.master(&front(1)).unwrap();
    assert_eq!(master.count, 3);
    assert_eq!(maps.slot_backends(&front(1)), spec(&[1, 2, 3], &[]).active);
    let rev = maps.rev_nat[&master.rev_nat];
    assert_eq!(rev.addr, u32::from_ne_bytes([10, 96, 0, 1]));
    assert_eq!(u16::from_be(rev.port), 80);
}

#[test]
fn adding_a_backend_to_one_of_many_services_touches_only_that_service() {
    let mut maps = FakeMaps::default();
    let mut state = LbState::new(settings(None));
    let mut desired: BTreeMap<_, _> = (1..=1000).map(|i| (front(i), spec(&[1, 2], &[]))).collect();
    state.sync(&desired, &mut maps).unwrap();
    maps.writes = 0;
    desired.insert(front(500), spec(&[1, 2, 3], &[]));
    let report = state.sync(&desired, &mut maps).unwrap();
    assert_eq!(report.frontends_written, 1);
    assert_eq!(report.backends_added, 1);
    // One new backend, three slots, reverse NAT and the master.
    assert_eq!(maps.writes, 6, "writes for a one-backend change");
}

#[test]
fn terminating_backends_stay_in_the_backend_map_but_not_in_slots() {
    let mut maps = FakeMaps::default();
    let mut state = LbState::new(settings(None));
    state
        .sync(&BTreeMap::from([(front(1), spec(&[1, 2], &[]))]), &mut maps)
        .unwrap();
    state
        .sync(&BTreeMap::from([(front(1), spec(&[1], &[2]))]), &mut maps)
        .unwrap();
    assert_eq!(maps.slot_backends(&front(1)), vec![backend(1)]);
    assert_eq!(
        maps.backends.len(),
        2,
        "the terminating backend keeps its id"
    );
    assert_eq!(
        maps.services.len(),
        2,
        "master + one slot; the old slot removed"
    );
    // Once gone from the slice, it leaves the backend map too.
    let report = state
        .sync(&BTreeMap::from([(front(1), spec(&[1], &[]))]), &mut maps)
        .unwrap();
    assert_eq!(report.backends_removed, 1);
    assert_eq!(maps.backends.len(), 1);
}

#[test]
fn removed_services_leave_nothing_behind_and_ids_are_reused_after_quarantine() {
    let mut maps = FakeMaps::default();
    let mut state = LbState::new(settings(None));
    state.set_rev_nat_quarantine(Duration::from_secs(60));
    let t0 = Instant::now();
    let one = BTreeMap::from([(front(1), spec(&[1, 2], &[]))]);
    state.sync_at(&one, &mut maps, t0).unwrap();
    let first_id = maps.master(&front(1)).unwrap().rev_nat;
    state.sync_at(&BTreeMap::new(), &mut maps, t0).unwrap();
    assert!(maps.services.is_empty() && maps.backends.is_empty() && maps.rev_nat.is_empty());

    // Within the quarantine a new frontend gets another id: conntrack may
    // still hold flows of the removed one.
    let two = BTreeMap::from([(front(2), spec(&[3], &[]))]);
    state
        .sync_at(&two, &mut maps, t0 + Duration::from_secs(59))
        .unwrap();
    let second_id = maps.master(&front(2)).unwrap().rev_nat;
    assert_ne!(second_id, first_id);

    // After it, the lowest id is reused.
    let mut three = two.clone();
    three.insert(front(3), spec(&[4], &[]));
    state
        .sync_at(&three, &mut maps, t0 + Duration::from_secs(60))
        .unwrap();
    assert_eq!(maps.master(&front(3)).unwrap().rev_nat, first_id);
}

#[test]
fn exhausted_ids_fall_back_to_the_longest_retired_one() {
    let mut maps = FakeMaps::default();
    // Maglev mode caps ids at 16 frontends.
    let mut state = LbState::new(settings(Some(251)));
    let t0 = Instant::now();
    let full: BTreeMap<_, _> = (1..=16).map(|i| (front(i), spec(&[1], &[]))).collect();
    state.sync_at(&full, &mut maps, t0).unwrap();
    let retired_id = maps.master(&front(1)).unwrap().rev_nat;
    let mut swapped = full.clone();
    swapped.remove(&front(1));
    swapped.insert(front(17), spec(&[1], &[]));
    state.sync_at(&swapped, &mut maps, t0).unwrap();
    assert_eq!(maps.master(&front(17)).unwrap().rev_nat, retired_id);
}

#[test]
fn no_ready_backend_means_a_master_with_zero_count() {
    let mut maps = FakeMaps::default();
    let mut state = LbState::new(settings(None));
    state
        .sync(&BTreeMap::from([(front(1), spec(&[], &[]))]), &mut maps)
        .unwrap();
    assert_eq!(maps.master(&front(1)).unwrap().count, 0);
}

#[test]
fn maglev_mode_writes_a_table_of_backend_ids_and_flags_the_frontend() {
    let mut maps = FakeMaps::default();
    let mut state = LbState::new(settings(Some(251)));
    state
        .sync(
            &BTreeMap::from([(front(1), spec(&[1, 2, 3], &[]))]),
            &mut maps,
        )
        .unwrap();
    let master = maps.master(&front(1)).unwrap();
    assert_ne!(master.flags & SVC_F_MAGLEV, 0);
    let table = &maps.maglev[&master.rev_nat];
    assert_eq!(table.len(), 251);
    let ids: BTreeSet<u32> = table.iter().copied().collect();
    assert_eq!(ids, maps.backends.keys().copied().collect());
}

#[test]
fn maglev_mode_limits_frontends_to_the_table_capacity() {
    let mut maps = FakeMaps::default();
    let mut state = LbState::new(settings(Some(251)));
    let desired: BTreeMap<_, _> = (1..=17).map(|i| (front(i), spec(&[1], &[]))).collect();
    let err = state.sync(&desired, &mut maps).unwrap_err();
    assert!(err.to_string().contains("too many"), "{err}");
}

#[test]
fn node_port_replies_come_from_the_node_address() {
    let mut maps = FakeMaps::default();
    let mut state = LbState::new(settings(None));
    let node_port = FrontendAddr {
        addr: std::net::Ipv4Addr::UNSPECIFIED,
        port: 30080,
        proto: PROTO_TCP,
    };
    let mut affine = spec(&[1], &[]);
    affine.affinity_timeout_s = Some(30);
    state
        .sync(&BTreeMap::from([(node_port, affine)]), &mut maps)
        .unwrap();
    let master = maps.master(&node_port).unwrap();
    assert_ne!(master.flags & SVC_F_NODEPORT, 0);
    assert_ne!(master.flags & SVC_F_AFFINITY, 0);
    assert_eq!(master.affinity_timeout_s, 30);
    assert_eq!(
        maps.rev_nat[&master.rev_nat].addr,
        u32::from_ne_bytes([172, 31, 0, 1])
    );
}

#[test]
fn a_restarted_agent_keeps_backend_and_frontend_ids() {
    let mut maps = FakeMaps::default();
    let mut state = LbState::new(settings(None));
    let desired = BTreeMap::from([
        (front(1), spec(&[1, 2, 3], &[])),
        (front(2), spec(&[3, 4], &[])),
    ]);
    state.sync(&desired, &mut maps).unwrap();
    let backends_before = maps.backends.clone();
    let rev_nat_before = maps.master(&front(2)).unwrap().rev_nat;

    // A new agent: backend 2 went away and a service was deleted meanwhile.
    let mut restored = LbState::restore(settings(None), maps.dump().unwrap());
    let desired = BTreeMap::from([(front(2), spec(&[3, 4], &[]))]);
    restored.sync(&desired, &mut maps).unwrap();
    assert_eq!(maps.master(&front(2)).unwrap().rev_nat, rev_nat_before);
    for (id, backend) in &maps.backends {
        assert_eq!(
            backends_before.get(id),
            Some(backend),
            "backend id {id} kept"
        );
    }
    assert!(
        maps.master(&front(1)).is_none(),
        "the deleted service is gone"
    );
    assert_eq!(maps.backends.len(), 2);
}

#[test]
fn a_full_backend_map_fails_the_sync_and_the_next_sync_recovers_without_dangling_ids() {
    let mut maps = FakeMaps {
        backend_capacity: Some(2),
        ..FakeMaps::default()
    };
    let mut state = LbState::new(settings(None));
    let a_only = BTreeMap::from([(front(1), spec(&[1, 2], &[]))]);
    state.sync(&a_only, &mut maps).unwrap();
    let mut both = a_only.clone();
    both.insert(front(2), spec(&[3, 4], &[]));
    state
        .sync(&both, &mut maps)
        .expect_err("no room for B's backends");
    assert_eq!(maps.slot_backends(&front(1)), vec![backend(1), backend(2)]);
    assert!(maps.master(&front(2)).is_none(), "B half-programmed");

    // A leaves in the same sync that B comes: A's backends make room first.
    let b_only = BTreeMap::from([(front(2), spec(&[3, 4], &[]))]);
    state
        .sync(&b_only, &mut maps)
        .expect("B fits once A is gone");
    assert_eq!(maps.slot_backends(&front(2)), vec![backend(3), backend(4)]);
    assert!(maps.master(&front(1)).is_none());
    assert_eq!(maps.backends.len(), 2);
}

#[test]
fn external_frontends_carry_their_flags_and_source_ranges_follow_the_spec() {
    use std::net::Ipv4Addr;
    let mut maps = FakeMaps::default();
    let mut state = LbState::new(settings(None));
    let lb_ip = FrontendAddr {
        addr: Ipv4Addr::new(198, 51, 100, 10),
        port: 80,
        proto: PROTO_TCP,
    };
    let ranges = vec![(Ipv4Addr::new(172, 31, 0, 0), 24)];
    let mut lb = spec(&[1], &[]);
    lb.external = true;
    lb.source_ranges = ranges.clone();
    state
        .sync(&BTreeMap::from([(lb_ip, lb.clone())]), &mut maps)
        .unwrap();
    let master = maps.master(&lb_ip).unwrap();
    assert_eq!(
        master.flags & (SVC_F_EXTERNAL | SVC_F_SOURCE_RANGES | SVC_F_NODEPORT),
        SVC_F_EXTERNAL | SVC_F_SOURCE_RANGES
    );
    assert_eq!(maps.source_ranges[&master.rev_nat], ranges);
    // Replies come from the LoadBalancer IP.
    assert_eq!(
        maps.rev_nat[&master.rev_nat].addr,
        u32::from_ne_bytes([198, 51, 100, 10])
    );

    // Ranges dropped from the spec: the flag and the entries go.
    lb.source_ranges.clear();
    state
        .sync(&BTreeMap::from([(lb_ip, lb.clone())]), &mut maps)
        .unwrap();
    let master = maps.master(&lb_ip).unwrap();
    assert_eq!(master.flags & SVC_F_SOURCE_RANGES, 0);
    assert!(maps.source_ranges.is_empty());

    // Back again, then the frontend is removed: its ranges go with it.
    lb.source_ranges = ranges;
    state
        .sync(&BTreeMap::from([(lb_ip, lb)]), &mut maps)
        .unwrap();
    assert_eq!(maps.source_ranges.len(), 1);
    state.sync(&BTreeMap::new(), &mut maps).unwrap();
    assert!(maps.source_ranges.is_empty());
    assert!(maps.master(&lb_ip).is_none());
}

#[test]
fn a_restarted_agent_clears_source_ranges_a_frontend_no_longer_has() {
    use std::net::Ipv4Addr;
    let mut maps = FakeMaps::default();
    let mut state = LbState::new(settings(None));
    let mut lb = spec(&[1], &[]);
    lb.external = true;
    lb.source_ranges = vec![(Ipv4Addr::new(10, 0, 0, 0), 8)];
    state
        .sync(&BTreeMap::from([(front(1), lb.clone())]), &mut maps)
        .unwrap();
    let mut restored = LbState::restore(settings(None), maps.dump().unwrap());
    lb.source_ranges.clear();
    restored
        .sync(&BTreeMap::from([(front(1), lb)]), &mut maps)
        .unwrap();
    assert!(maps.source_ranges.is_empty());
}
