//! The mesh's address plan: which addresses each cluster and node gets
//! (docs/mesh.md, "Address plan"). `cluster-1` keeps the addresses a
//! one-cluster mesh always had; every other cluster gets disjoint pod and
//! service CIDRs, and all nodes share the one underlay /24.

use std::net::Ipv4Addr;

use anyhow::{Result, bail};

/// Most clusters one mesh holds: their pod /16s (10.244–10.251) and
/// service /12s (10.96–10.223) stay disjoint from each other.
pub const MAX_CLUSTERS: u32 = 8;
/// Most nodes the underlay /24 holds next to the router and the
/// management namespace, over all clusters.
pub const MAX_NODES: u32 = 200;
/// The management namespace's address on the underlay (sluice-control's
/// relay listener), above every node's.
pub const MGMT_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 250);
/// sluice-control's relay port on [`MGMT_ADDRESS`].
pub const RELAY_PORT: u16 = 9900;

/// `cluster-K`.
pub fn cluster_name(index: u32) -> String {
    format!("cluster-{index}")
}

/// The index of `cluster-K`, refusing anything else.
pub fn parse_cluster(name: &str) -> Result<u32> {
    let index = name
        .strip_prefix("cluster-")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=MAX_CLUSTERS).contains(n) && cluster_name(*n) == name);
    match index {
        Some(index) => Ok(index),
        None => bail!(
            "invalid cluster {name:?}: the mesh's clusters are cluster-1 … cluster-{MAX_CLUSTERS}"
        ),
    }
}

/// Checks `--clusters` and `--nodes` against the plan.
pub fn check_size(clusters: u32, nodes: u32) -> Result<()> {
    if clusters == 0 || clusters > MAX_CLUSTERS {
        bail!("--clusters must be between 1 and {MAX_CLUSTERS}");
    }
    if nodes == 0 || clusters * nodes > MAX_NODES {
        bail!(
            "--nodes must be between 1 and {}: the underlay holds {MAX_NODES} nodes over all \
             clusters",
            MAX_NODES / clusters
        );
    }
    Ok(())
}

/// A node's uplink address: nodes are numbered across clusters
/// (`cluster-1`'s first, each cluster `nodes` wide), 172.31.0.G.
pub fn node_address(cluster: u32, nodes: u32, index: u32) -> Ipv4Addr {
    let global = (cluster - 1) * nodes + index;
    Ipv4Addr::new(172, 31, 0, u8::try_from(global).unwrap_or(u8::MAX))
}

/// The second octet of a cluster's pod /16: 244 for `cluster-1`.
fn pod_octet(cluster: u32) -> u8 {
    u8::try_from(243 + cluster).unwrap_or(u8::MAX)
}

/// Every pod CIDR of one cluster (never masqueraded inside it):
/// 10.244.0.0/16 for `cluster-1`, 10.245.0.0/16 for `cluster-2`, …
pub fn cluster_cidr(cluster: u32) -> String {
    format!("10.{}.0.0/16", pod_octet(cluster))
}

/// A node's pod CIDR: 10.(243+K).N.0/24.
pub fn node_pod_cidr(cluster: u32, index: u32) -> String {
    format!("10.{}.{index}.0/24", pod_octet(cluster))
}

/// The first octet pair of a cluster's service /12: 10.96 for `cluster-1`,
/// 10.112 for `cluster-2`, …
fn service_base(cluster: u32) -> u32 {
    u32::from(Ipv4Addr::new(10, 96, 0, 0)) + (cluster - 1) * (1 << 20)
}

/// A cluster's service CIDR: 10.96.0.0/12, 10.112.0.0/12, …
pub fn service_cidr(cluster: u32) -> String {
    format!("{}/12", Ipv4Addr::from(service_base(cluster)))
}

/// The ClusterIPs handed out: from .0.11 (.1 is the API server's in
/// Kubernetes, .10 its DNS) to the last address of the /12 but one.
pub fn cluster_ip_range(cluster: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = service_base(cluster);
    (
        Ipv4Addr::from(base + 11),
        Ipv4Addr::from(base + (1 << 20) - 2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_1_keeps_the_one_cluster_addresses() {
        assert_eq!(node_address(1, 2, 2), Ipv4Addr::new(172, 31, 0, 2));
        assert_eq!(node_pod_cidr(1, 3), "10.244.3.0/24");
        assert_eq!(cluster_cidr(1), "10.244.0.0/16");
        assert_eq!(service_cidr(1), "10.96.0.0/12");
        assert_eq!(
            cluster_ip_range(1),
            (
                Ipv4Addr::new(10, 96, 0, 11),
                Ipv4Addr::new(10, 111, 255, 254)
            )
        );
    }

    #[test]
    fn clusters_never_share_addresses() {
        assert_eq!(node_address(2, 2, 1), Ipv4Addr::new(172, 31, 0, 3));
        assert_eq!(node_pod_cidr(2, 1), "10.245.1.0/24");
        assert_eq!(service_cidr(2), "10.112.0.0/12");
        let cidrs: Vec<ipnet::Ipv4Net> = (1..=MAX_CLUSTERS)
            .flat_map(|c| [cluster_cidr(c), service_cidr(c)])
            .map(|c| c.parse().unwrap())
            .collect();
        for (i, a) in cidrs.iter().enumerate() {
            for b in &cidrs[i + 1..] {
                assert!(!a.contains(b) && !b.contains(a), "{a} overlaps {b}");
            }
        }
        let (first, last) = cluster_ip_range(MAX_CLUSTERS);
        let last_cidr: ipnet::Ipv4Net = service_cidr(MAX_CLUSTERS).parse().unwrap();
        assert!(last_cidr.contains(&first) && last_cidr.contains(&last));
        // The last node of the largest mesh stays below the management address.
        assert!(
            node_address(
                MAX_CLUSTERS,
                MAX_NODES / MAX_CLUSTERS,
                MAX_NODES / MAX_CLUSTERS
            ) < MGMT_ADDRESS
        );
    }

    #[test]
    fn cluster_names_and_sizes() {
        assert_eq!(parse_cluster("cluster-2").unwrap(), 2);
        for bad in ["cluster-0", "cluster-9", "c1", "cluster-01", "cluster-"] {
            assert!(parse_cluster(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_size(2, 100).is_ok());
        assert!(check_size(2, 101).is_err());
        assert!(check_size(0, 1).is_err());
        assert!(check_size(9, 1).is_err());
    }
}
