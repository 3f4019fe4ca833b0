//! Setting up how pod traffic reaches other nodes, at agent start.
//!
//! Tunnel: the VXLAN device exists, carries the tunnel programs, and its
//! ifindex goes into the node config (the datapath's switch); pods get its
//! MTU. Native: a tunnel device and tunnel map entries an earlier run left
//! are removed, so switching modes needs only a restart.

use std::{collections::BTreeMap, path::Path};

use anyhow::Context;
use sluice_bpf_common::tunnel::TUNNEL_DEVICE;
use tracing::info;

use crate::{
    config::{AgentConfig, RoutingMode, TunnelIdentity},
    datapath::{Datapath, tunnel_map::TunnelMap},
    node_net::NodeNet,
    node_routes::Routing,
};

/// The device VXLAN runs over: tunnel routing needs an uplink.
pub fn tunnel_uplink(uplink: Option<&str>) -> anyhow::Result<&str> {
    uplink.context("--routing tunnel needs --uplink (the device VXLAN runs over)")
}

/// Whether the datapath decides tunnel ingress on the identity in the VNI.
pub fn decides_on_carried_identity(setting: TunnelIdentity, cluster_wide_numbers: bool) -> bool {
    match setting {
        TunnelIdentity::Auto => cluster_wide_numbers,
        TunnelIdentity::Carried => true,
        TunnelIdentity::Lookup => false,
    }
}

/// What the rest of the agent needs from the routing set-up.
pub struct RoutingSetup {
    /// For the node routes follower.
    pub routing: Routing,
    /// `NodeConfig::tunnel_ifindex` (0 = native).
    pub tunnel_ifindex: u32,
    /// The pods' MTU limit for the CNI plugin (0 = none).
    pub pod_mtu: u32,
}

pub async fn set_up(
    config: &AgentConfig,
    net: &NodeNet,
    datapath: &mut Datapath,
    pin_dir: &Path,
) -> anyhow::Result<RoutingSetup> {
    let mut map = TunnelMap::open(pin_dir)?;
    match config.routing {
        RoutingMode::Native => {
            if net.remove_tunnel_device().await? {
                info!("tunnel device {TUNNEL_DEVICE} removed (native routing)");
            }
            map.sync(&BTreeMap::new())?;
            Ok(RoutingSetup {
                routing: Routing::Native,
                tunnel_ifindex: 0,
                pod_mtu: 0,
            })
        }
        RoutingMode::Tunnel => {
            let uplink = tunnel_uplink(config.uplink.as_deref())?;
            let device = net.ensure_tunnel_device(uplink).await?;
            datapath.attach_tunnel(TUNNEL_DEVICE)?;
            info!(
                device = TUNNEL_DEVICE,
                ifindex = device.ifindex,
                mtu = device.mtu,
                "tunnel routing"
            );
            Ok(RoutingSetup {
                routing: Routing::Tunnel {
                    ifindex: device.ifindex,
                    map,
                },
                tunnel_ifindex: device.ifindex,
                pod_mtu: device.mtu,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_routing_without_an_uplink_is_refused() {
        let err = tunnel_uplink(None).unwrap_err().to_string();
        assert!(err.contains("--uplink"), "{err}");
        assert_eq!(tunnel_uplink(Some("eth0")).unwrap(), "eth0");
    }

    #[test]
    fn auto_trusts_the_vni_only_with_cluster_wide_numbers() {
        assert!(decides_on_carried_identity(TunnelIdentity::Auto, true));
        assert!(!decides_on_carried_identity(TunnelIdentity::Auto, false));
        assert!(decides_on_carried_identity(TunnelIdentity::Carried, false));
        assert!(!decides_on_carried_identity(TunnelIdentity::Lookup, true));
    }
}
