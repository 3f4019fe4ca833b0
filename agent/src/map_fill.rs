//! How full each datapath map that fills up is: entries now and capacity
//! (max entries). Read by the metrics (Prometheus and OTLP) and by the
//! node agent's own status ([`crate::agent_status`]).

use std::path::Path;

use sluice_bpf_common::pin::{
    CT_MAP, ENDPOINTS_MAP, IPCACHE_MAP, LB_BACKENDS_MAP, LB_SERVICES_MAP, POLICY_MAP,
    PREFILTER_MAP, SNAT_MAP, SNAT_REV_MAP,
};
use sluice_crds::MapFill;

use crate::datapath::maps::{EndpointMap, conntrack, nat, read_ipcache, read_lb, read_policy};

/// Entries now in each datapath map that fills up (a walk of each map).
pub fn map_entries(pin_dir: &Path) -> anyhow::Result<Vec<(&'static str, usize)>> {
    let lb = read_lb(pin_dir)?;
    let (snat, snat_rev) = nat(pin_dir)?;
    Ok(vec![
        (ENDPOINTS_MAP, EndpointMap::open(pin_dir)?.list()?.len()),
        (CT_MAP, conntrack(pin_dir)?.list()?.len()),
        (SNAT_MAP, snat.list()?.len()),
        (SNAT_REV_MAP, snat_rev.list()?.len()),
        (LB_SERVICES_MAP, lb.services.len()),
        (LB_BACKENDS_MAP, lb.backends.len()),
        (POLICY_MAP, read_policy(pin_dir)?.len()),
        (IPCACHE_MAP, read_ipcache(pin_dir)?.len()),
        (
            PREFILTER_MAP,
            crate::prefilter::read_prefilter(pin_dir)?.len(),
        ),
    ])
}

/// Max entries of a pinned map, if it can be read.
pub fn map_capacity(pin_dir: &Path, map: &str) -> Option<u64> {
    aya::maps::MapInfo::from_pin(pin_dir.join(map))
        .ok()
        .map(|info| u64::from(info.max_entries()))
}

/// Entries and capacity of each map (capacity 0 when unreadable).
pub fn map_fills(pin_dir: &Path) -> anyhow::Result<Vec<MapFill>> {
    Ok(map_entries(pin_dir)?
        .into_iter()
        .map(|(map, used)| MapFill {
            map: map.to_owned(),
            used: used as u64,
            capacity: map_capacity(pin_dir, map).unwrap_or(0),
        })
        .collect())
}
