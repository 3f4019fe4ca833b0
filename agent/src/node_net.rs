//! The node namespace's own networking, through rtnetlink: the host side
//! of routed pods (gateway address and a /32 route), routes to the other
//! nodes' pod CIDRs, and reading the uplink's address.
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
    handle: Handle,
}

/// One route to another node's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeRoute {
    pub pod_cidr: Ipv4Net,
    pub via: Ipv4Addr,
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

    /// Sluice's routes to other nodes' pod CIDRs now in the main table.
    async fn node_routes(&self) -> anyhow::Result<Vec<(NodeRoute, RouteMessage)>> {
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut routes = self.handle.route().get(filter).execute();
        let mut found = Vec::new();
        while let Some(message) = routes.try_next().await? {
            if message.header.protocol != RouteProtocol::Other(RTPROT_SLUICE) {
                continue;
            }
            let mut destination = None;
            let mut via = None;
            for attribute in &message.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => destination = Some(*d),
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = Some(*g),
                    _ => {}
                }
            }
            // Pod /32 routes have no gateway: not node routes.
            if let (Some(d), Some(via)) = (destination, via)
                && let Ok(pod_cidr) = Ipv4Net::new(d, message.header.destination_prefix_length)
            {
                found.push((NodeRoute { pod_cidr, via }, message));
            }
        }
        Ok(found)
    }

    /// Makes Sluice's node routes exactly `desired`.
    pub async fn sync_node_routes(&self, desired: &[NodeRoute]) -> anyhow::Result<()> {
        for (route, message) in self.node_routes().await? {
            if !desired.contains(&route) {
                tracing::info!(cidr = %route.pod_cidr, via = %route.via, "removing node route");
                self.handle.route().del(message).execute().await?;
            }
        }
        for route in desired {
            let message = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(route.pod_cidr.network(), route.pod_cidr.prefix_len())
                .gateway(route.via)
                .protocol(RouteProtocol::Other(RTPROT_SLUICE))
                .build();
            self.handle
                .route()
                .add(message)
                .replace()
                .execute()
                .await
                .with_context(|| format!("adding route {} via {}", route.pod_cidr, route.via))?;
        }
        Ok(())
    }
}
