//! The node namespace's own networking, through rtnetlink: the host side
//! of routed pods (gateway address and a /32 route), routes to the other
//! nodes' pod CIDRs (via the node, or into the tunnel device), and reading
//! the uplink's address.
//!
//! Routes the agent owns carry protocol [`RTPROT_SLUICE`], so a resync can
//! find and remove the stale ones without touching anyone else's.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context;
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::{
    address::AddressAttribute,
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope},
};
use rtnetlink::{Handle, RouteMessageBuilder};

/// Route protocol number marking Sluice's routes (`ip route show proto 213`).
pub const RTPROT_SLUICE: u8 = 213;

/// A netlink connection in the calling thread's namespace; must be created
/// inside a tokio runtime, which drives it.
pub struct NodeNet {
    pub(crate) handle: Handle,
}

/// One route to another node's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeRoute {
    pub pod_cidr: Ipv4Net,
    pub via: Ipv4Addr,
}

/// How the routes to other nodes' pod CIDRs leave this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    /// Native routing: via the other node's address on the underlay.
    Gateway,
    /// Tunnel routing: into the VXLAN device (this ifindex), whose egress
    /// program finds the node.
    Tunnel(u32),
}

/// A Sluice node route as the kernel has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InstalledRoute {
    pod_cidr: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    oif: Option<u32>,
}

impl InstalledRoute {
    fn matches(&self, route: &NodeRoute, target: RouteTarget) -> bool {
        self.pod_cidr == route.pod_cidr
            && match target {
                RouteTarget::Gateway => self.gateway == Some(route.via),
                RouteTarget::Tunnel(ifindex) => self.gateway.is_none() && self.oif == Some(ifindex),
            }
    }
}

impl NodeNet {
    pub fn connect() -> anyhow::Result<Self> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("cannot open a netlink socket")?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    async fn link_index(&self, name: &str) -> anyhow::Result<u32> {
        let link = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute()
            .try_next()
            .await
            .with_context(|| format!("no interface {name}"))?
            .with_context(|| format!("no interface {name}"))?;
        Ok(link.header.index)
    }

    /// The first IPv4 address of `iface`.
    pub async fn ipv4_of(&self, iface: &str) -> anyhow::Result<Ipv4Addr> {
        let index = self.link_index(iface).await?;
        let mut addresses = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(message) = addresses.try_next().await? {
            for attribute in &message.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attribute {
                    return Ok(*ip);
                }
            }
        }
        anyhow::bail!("{iface} has no IPv4 address: give the node address with --node-ip")
    }

    /// Makes the host side of a routed pod answer for the pod's gateway
    /// and routes the pod's address to it.
    pub async fn configure_routed_pod(
        &self,
        host_iface: &str,
        gateway: Ipv4Addr,
        pod_ip: Ipv4Addr,
    ) -> anyhow::Result<()> {
        let index = self.link_index(host_iface).await?;
        let mut add = self
            .handle
            .address()
            .add(index, IpAddr::V4(gateway), 32)
            .replace();
        add.message_mut().header.scope = netlink_packet_route::address::AddressScope::Link;
        add.execute()
            .await
            .with_context(|| format!("adding {gateway}/32 to {host_iface}"))?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(pod_ip, 32)
            .output_interface(index)
            .scope(RouteScope::Link)
            .protocol(RouteProtocol::Other(RTPROT_SLUICE))
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding route {pod_ip}/32 dev {host_iface}"))
    }

    /// Sluice's routes to other nodes' pod CIDRs now in the main table:
    /// those with a gateway (native), and those into the tunnel device
    /// `tunnel` (pod /32 routes go to a veth: not node routes).
    async fn node_routes(
        &self,
        tunnel: Option<u32>,
    ) -> anyhow::Result<Vec<(InstalledRoute, RouteMessage)>> {
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut routes = self.handle.route().get(filter).execute();
        let mut found = Vec::new();
        while let Some(message) = routes.try_next().await? {
            if message.header.protocol != RouteProtocol::Other(RTPROT_SLUICE) {
                continue;
            }
            let mut destination = None;
            let mut gateway = None;
            let mut oif = None;
            for attribute in &message.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => destination = Some(*d),
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(*g),
                    RouteAttribute::Oif(index) => oif = Some(*index),
                    _ => {}
                }
            }
            let node_route = gateway.is_some() || (tunnel.is_some() && oif == tunnel);
            if node_route
                && let Some(d) = destination
                && let Ok(pod_cidr) = Ipv4Net::new(d, message.header.destination_prefix_length)
            {
                let installed = InstalledRoute {
                    pod_cidr,
                    gateway,
                    oif,
                };
                found.push((installed, message));
            }
        }
        Ok(found)
    }

    /// Makes Sluice's node routes exactly `desired`, leaving by `target`.
    pub async fn sync_node_routes(
        &self,
        desired: &[NodeRoute],
        target: RouteTarget,
    ) -> anyhow::Result<()> {
        let tunnel = match target {
            RouteTarget::Tunnel(ifindex) => Some(ifindex),
            RouteTarget::Gateway => None,
        };
        for (route, message) in self.node_routes(tunnel).await? {
            if !desired.iter().any(|d| route.matches(d, target)) {
                tracing::info!(cidr = %route.pod_cidr, via = ?route.gateway, "removing node route");
                self.handle.route().del(message).execute().await?;
            }
        }
        for route in desired {
            let builder = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(route.pod_cidr.network(), route.pod_cidr.prefix_len())
                .protocol(RouteProtocol::Other(RTPROT_SLUICE));
            let message = match target {
                RouteTarget::Gateway => builder.gateway(route.via).build(),
                RouteTarget::Tunnel(ifindex) => builder
                    .output_interface(ifindex)
                    .scope(RouteScope::Link)
                    .build(),
            };
            self.handle
                .route()
                .add(message)
                .replace()
                .execute()
                .await
                .with_context(|| {
                    format!(
                        "adding route {} ({target:?}, node {})",
                        route.pod_cidr, route.via
                    )
                })?;
        }
        Ok(())
    }
}
