//! The security identity of an address, for policy and for flow events.
//! A leaf (maps only), so events need not depend on policy.

use aya_ebpf::btf_maps::lpm_trie::Key;
use sluice_bpf_common::endpoint::EndpointKey;

use crate::maps::{ENDPOINTS, IPCACHE};

/// The reserved identity of anything no map knows.
const WORLD: u32 = 2;

/// Security identity of `addr` (network order): a local endpoint's, else
/// the ipcache's longest match, else world.
#[inline(always)]
pub fn identity_of(addr: u32) -> u32 {
    if let Some(ep) = unsafe { ENDPOINTS.get(EndpointKey { ipv4: addr }) } {
        return ep.identity;
    }
    IPCACHE
        .get(&Key::new(32, addr))
        .map_or(WORLD, |e| e.identity)
}
