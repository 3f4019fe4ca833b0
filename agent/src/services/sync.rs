//! Programming the load-balancer maps: stable ids for backends and
//! frontends, and writes only for what changed.
//!
//! Write order for a frontend: backends, the Maglev table, the slots,
//! then the master entry (its backend count), then removal of the slots
//! past the new count; unreferenced backends go last. A reader therefore
//! never finds a count pointing at an unwritten slot, and a flow pinned to
//! a terminating backend keeps it until the backend leaves the EndpointSlice.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use sluice_bpf_common::lb::{
    Backend, RevNat, SVC_F_AFFINITY, SVC_F_EXTERNAL, SVC_F_MAGLEV, SVC_F_NODEPORT,
    SVC_F_SOURCE_RANGES, ServiceKey, ServiceValue,
};

use super::{
    maglev,
    model::{BackendAddr, FrontendAddr, FrontendSpec},
};

/// The maps, as the service manager writes them.
pub trait LbMaps {
    fn set_backend(&mut self, id: u32, backend: Backend) -> anyhow::Result<()>;
    fn remove_backend(&mut self, id: u32) -> anyhow::Result<()>;
    fn set_service(&mut self, key: ServiceKey, value: ServiceValue) -> anyhow::Result<()>;
    fn remove_service(&mut self, key: ServiceKey) -> anyhow::Result<()>;
    fn set_rev_nat(&mut self, id: u16, rev_nat: RevNat) -> anyhow::Result<()>;
    fn remove_rev_nat(&mut self, id: u16) -> anyhow::Result<()>;
    /// Makes frontend `rev_nat`'s source ranges exactly `ranges` (address,
    /// prefix length): adds the missing ones, removes the others.
    fn set_source_ranges(&mut self, rev_nat: u16, ranges: &[(Ipv4Addr, u8)]) -> anyhow::Result<()>;
    /// Writes frontend `rev_nat`'s Maglev table.
    fn set_maglev(&mut self, rev_nat: u16, table: &[u32]) -> anyhow::Result<()>;
    /// What the maps hold now: backends and master entries (slot 0).
    fn dump(&self) -> anyhow::Result<LbDump>;
}

/// The maps' content as a previous agent left it.
#[derive(Debug, Default)]
pub struct LbDump {
    pub backends: Vec<(u32, Backend)>,
    pub masters: Vec<(ServiceKey, ServiceValue)>,
}

fn be32(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

/// How the manager was configured.
#[derive(Clone, Copy, Debug)]
pub struct LbSettings {
    /// Node address: what NodePort replies come from.
    pub node_ip: Ipv4Addr,
    /// Maglev table size; `None` = random selection.
    pub maglev_table_size: Option<u32>,
    /// Frontends that may have a Maglev table (its map's capacity).
    pub maglev_max_frontends: u32,
}

#[derive(Clone, Debug)]
struct Programmed {
    rev_nat: u16,
    slots: usize,
    spec: FrontendSpec,
    /// The source-range map may hold entries of this frontend.
    ranges_written: bool,
}

/// What one sync changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub frontends_written: usize,
    pub frontends_removed: usize,
    pub backends_added: usize,
    pub backends_removed: usize,
}

/// The programmed state of the maps (ids and specs).
pub struct LbState {
    settings: LbSettings,
    backends: BTreeMap<BackendAddr, u32>,
    /// Ids in use, kept alongside so a new id is found without rescanning.
    backend_ids: BTreeSet<u32>,
    next_backend: u32,
    frontends: BTreeMap<FrontendAddr, Programmed>,
    rev_nat_ids: BTreeSet<u16>,
    /// Ids below the highest in use that were freed and may be reused.
    freed_rev_nat: BTreeSet<u16>,
    /// Ids of removed frontends, oldest first, with when they were removed:
    /// conntrack entries may still carry them (a late reply would be
    /// reverse-translated to a new frontend's address), so they are only
    /// reused once conntrack GC has purged those entries.
    retired_rev_nat: VecDeque<(u16, Instant)>,
    /// The same ids, for "the highest id ever handed out" in O(log n).
    retired_ids: BTreeSet<u16>,
    rev_nat_quarantine: Duration,
}

/// How long a removed frontend's id stays unused by default: two
/// conntrack GC passes at the default interval, plus slack.
pub const DEFAULT_REV_NAT_QUARANTINE: Duration = Duration::from_secs(65);

impl LbState {
    pub fn new(settings: LbSettings) -> Self {
        Self {
            settings,
            backends: BTreeMap::new(),
            backend_ids: BTreeSet::new(),
            next_backend: 1,
            frontends: BTreeMap::new(),
            rev_nat_ids: BTreeSet::new(),
            freed_rev_nat: BTreeSet::new(),
            retired_rev_nat: VecDeque::new(),
            retired_ids: BTreeSet::new(),
            rev_nat_quarantine: DEFAULT_REV_NAT_QUARANTINE,
        }
    }

    /// How long a removed frontend's id is kept out of use (at least two
    /// conntrack GC intervals: one pass may have started before the
    /// removal).
    pub fn set_rev_nat_quarantine(&mut self, quarantine: Duration) {
        self.rev_nat_quarantine = quarantine;
    }

    /// Takes over the ids a previous agent gave backends and frontends, so
    /// flows pinned to a backend id keep reaching the same backend across
    /// a restart. Every restored frontend is rewritten by the next sync.
    pub fn restore(settings: LbSettings, dump: LbDump) -> Self {
        let mut state = Self::new(settings);
        for (id, b) in dump.backends {
            let addr = BackendAddr {
                addr: Ipv4Addr::from(b.addr.to_ne_bytes()),
                port: u16::from_be(b.port),
                proto: b.proto,
            };
            state.backends.insert(addr, id);
            state.backend_ids.insert(id);
            state.next_backend = state.next_backend.max(id.wrapping_add(1));
        }
        for (key, value) in dump.masters.into_iter().filter(|(k, _)| k.slot == 0) {
            let front = FrontendAddr {
                addr: Ipv4Addr::from(key.addr.to_ne_bytes()),
                port: u16::from_be(key.port),
                proto: key.proto,
            };
            state.rev_nat_ids.insert(value.rev_nat);
            state.freed_rev_nat.remove(&value.rev_nat);
            state.frontends.insert(
                front,
                Programmed {
                    rev_nat: value.rev_nat,
                    slots: usize::from(value.count),
                    // Matches no desired spec: forces a rewrite.
                    spec: FrontendSpec {
                        service: "<restored>".into(),
                        ..FrontendSpec::default()
                    },
                    ranges_written: value.flags & SVC_F_SOURCE_RANGES != 0,
                },
            );
        }
        // Gaps may be frontends removed just before the restart: they
        // start their quarantine now.
        if let Some(&highest) = state.rev_nat_ids.last() {
            let now = Instant::now();
            let gaps: Vec<u16> = (1..highest)
                .filter(|id| !state.rev_nat_ids.contains(id))
                .collect();
            for id in gaps {
                state.retire(id, now);
            }
        }
        state
    }

    fn retire(&mut self, id: u16, now: Instant) {
        self.retired_rev_nat.push_back((id, now));
        self.retired_ids.insert(id);
    }

    /// Ids whose quarantine is over become reusable.
    fn release_retired(&mut self, now: Instant) {
        while let Some(&(id, at)) = self.retired_rev_nat.front()
            && now.saturating_duration_since(at) >= self.rev_nat_quarantine
        {
            self.retired_rev_nat.pop_front();
            self.retired_ids.remove(&id);
            self.freed_rev_nat.insert(id);
        }
    }

    /// The lowest frontend id not in use: a freed one, else the next above
    /// all in use (no rescan of every id per new frontend); when every id
    /// is taken, the longest-retired one rather than failing.
    fn free_rev_nat(&mut self) -> anyhow::Result<u16> {
        let limit = if self.settings.maglev_table_size.is_some() {
            self.settings.maglev_max_frontends.min(u32::from(u16::MAX)) as u16
        } else {
            u16::MAX
        };
        if let Some(id) = self.freed_rev_nat.pop_first() {
            return Ok(id);
        }
        let highest = self.rev_nat_ids.last().max(self.retired_ids.last());
        let next = match highest {
            None => Some(1),
            Some(last) => last.checked_add(1),
        };
        if let Some(id) = next.filter(|id| *id <= limit) {
            return Ok(id);
        }
        if let Some((id, _)) = self.retired_rev_nat.pop_front() {
            self.retired_ids.remove(&id);
            tracing::warn!(
                id,
                "frontend ids exhausted: reusing a recently removed one early"
            );
            return Ok(id);
        }
        anyhow::bail!("no free frontend id: too many service frontends for the maps")
    }

    fn backend_id(&mut self, backend: BackendAddr) -> (u32, bool) {
        if let Some(id) = self.backends.get(&backend) {
            return (*id, false);
        }
        let mut id = self.next_backend;
        while self.backend_ids.contains(&id) || id == 0 {
            id = id.wrapping_add(1);
        }
        self.next_backend = id.wrapping_add(1);
        self.backends.insert(backend, id);
        self.backend_ids.insert(id);
        (id, true)
    }

    fn key(front: &FrontendAddr, slot: u16) -> ServiceKey {
        ServiceKey {
            addr: be32(front.addr),
            port: front.port.to_be(),
            proto: front.proto,
            _pad: 0,
            slot,
            _pad2: 0,
        }
    }

    /// Makes the maps say `desired`, writing only frontends that changed.
    pub fn sync(
        &mut self,
        desired: &BTreeMap<FrontendAddr, FrontendSpec>,
        maps: &mut dyn LbMaps,
    ) -> anyhow::Result<SyncReport> {
        self.sync_at(desired, maps, Instant::now())
    }

    /// [`sync`](Self::sync) at time `now` (id quarantine).
    pub fn sync_at(
        &mut self,
        desired: &BTreeMap<FrontendAddr, FrontendSpec>,
        maps: &mut dyn LbMaps,
        now: Instant,
    ) -> anyhow::Result<SyncReport> {
        self.release_retired(now);
        let mut report = SyncReport::default();
        // Removals first: their map entries and ids make room for additions.
        let gone: Vec<FrontendAddr> = self
            .frontends
            .keys()
            .filter(|f| !desired.contains_key(f))
            .copied()
            .collect();
        for front in gone {
            if let Some(programmed) = self.frontends.remove(&front) {
                maps.remove_service(Self::key(&front, 0))?;
                for slot in 1..=programmed.slots {
                    maps.remove_service(Self::key(&front, slot as u16))?;
                }
                maps.remove_rev_nat(programmed.rev_nat)?;
                if programmed.ranges_written {
                    maps.set_source_ranges(programmed.rev_nat, &[])?;
                }
                self.rev_nat_ids.remove(&programmed.rev_nat);
                self.retire(programmed.rev_nat, now);
                report.frontends_removed += 1;
            }
        }
        // Backends neither a kept frontend nor the desired state refers to:
        // freed before the additions, so a full backend map makes room for
        // them in the same sync.
        let wanted: BTreeSet<BackendAddr> = desired
            .values()
            .flat_map(|spec| spec.active.iter().chain(&spec.terminating).copied())
            .collect();
        self.remove_unused_backends(&wanted, maps, &mut report)?;
        for (front, spec) in desired {
            if self.frontends.get(front).is_some_and(|p| &p.spec == spec) {
                continue;
            }
            self.program(front, spec, maps, &mut report)?;
            report.frontends_written += 1;
        }
        // Backends no frontend refers to any more.
        self.remove_unused_backends(&BTreeSet::new(), maps, &mut report)?;
        Ok(report)
    }

    /// Removes every backend outside `keep` that no frontend refers to.
    fn remove_unused_backends(
        &mut self,
        keep: &BTreeSet<BackendAddr>,
        maps: &mut dyn LbMaps,
        report: &mut SyncReport,
    ) -> anyhow::Result<()> {
        let referenced: BTreeSet<BackendAddr> = self
            .frontends
            .values()
            .flat_map(|p| p.spec.active.iter().chain(&p.spec.terminating).copied())
            .chain(keep.iter().copied())
            .collect();
        let unused: Vec<(BackendAddr, u32)> = self
            .backends
            .iter()
            .filter(|(b, _)| !referenced.contains(b))
            .map(|(b, id)| (*b, *id))
            .collect();
        for (backend, id) in unused {
            maps.remove_backend(id)?;
            self.backends.remove(&backend);
            self.backend_ids.remove(&id);
            report.backends_removed += 1;
        }
        Ok(())
    }

    fn program(
        &mut self,
        front: &FrontendAddr,
        spec: &FrontendSpec,
        maps: &mut dyn LbMaps,
        report: &mut SyncReport,
    ) -> anyhow::Result<()> {
        let (rev_nat, old_slots, new_frontend, ranges_written) = match self.frontends.get(front) {
            Some(p) => (p.rev_nat, p.slots, false, p.ranges_written),
            None => {
                let id = self.free_rev_nat()?;
                self.rev_nat_ids.insert(id);
                (id, 0, true, false)
            }
        };
        let mut active_ids = Vec::with_capacity(spec.active.len());
        for backend in spec.active.iter().chain(&spec.terminating) {
            let (id, new) = self.backend_id(*backend);
            if new {
                let written = maps.set_backend(
                    id,
                    Backend {
                        addr: be32(backend.addr),
                        port: backend.port.to_be(),
                        proto: backend.proto,
                        _pad: 0,
                    },
                );
                if let Err(e) = written {
                    // Not in the map (e.g. it is full): forget the id, or a
                    // later sync would point a frontend at a missing backend.
                    self.backends.remove(backend);
                    self.backend_ids.remove(&id);
                    if new_frontend {
                        self.rev_nat_ids.remove(&rev_nat);
                    }
                    return Err(e);
                }
                report.backends_added += 1;
            }
            if spec.active.contains(backend) {
                active_ids.push(id);
            }
        }
        let mut flags = 0;
        if let Some(size) = self.settings.maglev_table_size
            && !active_ids.is_empty()
        {
            let names: Vec<String> = spec.active.iter().map(BackendAddr::name).collect();
            let table: Vec<u32> = maglev::table(&names, size as usize)
                .into_iter()
                .map(|i| active_ids[i])
                .collect();
            maps.set_maglev(rev_nat, &table)?;
            flags |= SVC_F_MAGLEV;
        }
        for (slot, id) in active_ids.iter().enumerate() {
            maps.set_service(
                Self::key(front, slot as u16 + 1),
                ServiceValue {
                    backend_id: *id,
                    rev_nat,
                    ..Default::default()
                },
            )?;
        }
        let rev = if front.is_nodeport() {
            RevNat {
                addr: be32(self.settings.node_ip),
                port: front.port.to_be(),
                _pad: 0,
            }
        } else {
            RevNat {
                addr: be32(front.addr),
                port: front.port.to_be(),
                _pad: 0,
            }
        };
        maps.set_rev_nat(rev_nat, rev)?;
        if front.is_nodeport() {
            flags |= SVC_F_NODEPORT;
        }
        if spec.affinity_timeout_s.is_some() {
            flags |= SVC_F_AFFINITY;
        }
        if spec.external {
            flags |= SVC_F_EXTERNAL;
        }
        // Ranges go in before the master entry that turns them on.
        if !spec.source_ranges.is_empty() {
            maps.set_source_ranges(rev_nat, &spec.source_ranges)?;
            flags |= SVC_F_SOURCE_RANGES;
        }
        maps.set_service(
            Self::key(front, 0),
            ServiceValue {
                backend_id: 0,
                count: active_ids.len() as u16,
                rev_nat,
                flags,
                _pad: 0,
                affinity_timeout_s: spec.affinity_timeout_s.unwrap_or(0),
            },
        )?;
        for slot in active_ids.len() + 1..=old_slots {
            maps.remove_service(Self::key(front, slot as u16))?;
        }
        // ... and out after the master entry that no longer uses them.
        if spec.source_ranges.is_empty() && ranges_written {
            maps.set_source_ranges(rev_nat, &[])?;
        }
        self.frontends.insert(
            *front,
            Programmed {
                rev_nat,
                slots: active_ids.len(),
                spec: spec.clone(),
                ranges_written: !spec.source_ranges.is_empty(),
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
