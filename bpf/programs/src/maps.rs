//! Every map the datapath uses, with capacities from `sluice-bpf-common`.
//! BTF maps, so `bpftool map dump` prints field names.

use aya_ebpf::{
    btf_maps::{HashMap, PerCpuArray},
    macros::btf_map,
};
use sluice_bpf_common::{
    endpoint::{EndpointInfo, EndpointKey, MAX_ENDPOINTS},
    metrics::{METRICS_SLOTS, MetricValue},
};

/// Local pod addresses → how to deliver to them. Written by the agent.
#[btf_map]
pub static ENDPOINTS: HashMap<EndpointKey, EndpointInfo, { MAX_ENDPOINTS as usize }> =
    HashMap::new();

/// Per-CPU packet/byte counters per verdict and drop reason.
#[btf_map]
pub static METRICS: PerCpuArray<MetricValue, { METRICS_SLOTS as usize }> = PerCpuArray::new();
