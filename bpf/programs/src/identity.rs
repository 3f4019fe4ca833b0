//! The security identity of an address, for policy and for flow events.
//! A leaf (maps only), so events need not depend on policy.

use aya_ebpf::btf_maps::lpm_trie::Key;
use sluice_bpf_common::endpoint::EndpointKey;

use crate::maps::{CONFIG, ENDPOINTS, IPCACHE};

/// The reserved identity of anything no map knows.
const WORLD: u32 = 2;

/// Whether `addr` (network order) may be a local endpoint: outside the
/// node's pod CIDR, when the agent vouches that every endpoint is inside,
/// it is not (and the endpoint lookup is skipped).
#[inline(always)]
pub fn may_be_local(addr: u32) -> bool {
    CONFIG.get(0).is_none_or(|c| c.may_be_local(addr))
}

/// Security identity of `addr` (network order): a local endpoint's, else
/// the ipcache's longest match, else world.
#[inline(always)]
pub fn identity_of(addr: u32) -> u32 {
    if may_be_local(addr)
        && let Some(ep) = unsafe { ENDPOINTS.get(EndpointKey { ipv4: addr }) }
    {
        return ep.identity;
    }
    IPCACHE
        .get(&Key::new(32, addr))
        .map_or(WORLD, |e| e.identity)
}
