//! The node's VXLAN device for tunnel routing (`--routing tunnel`): a
//! collect-metadata ("external") device on UDP 8472, so one device serves
//! every other node: the datapath sets the remote node and the VNI (the
//! source identity) per packet. No ARP and no learning: the datapath
//! decides everything. Its MTU, and the pods', is the uplink's minus the
//! 50 bytes VXLAN adds.

use anyhow::{Context, bail};
use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVxlan};
use sluice_bpf_common::tunnel::{TUNNEL_DEVICE, VXLAN_OVERHEAD, VXLAN_PORT};

use crate::node_net::NodeNet;

/// The smallest MTU an IPv4 link must carry (RFC 791).
const MIN_IPV4_MTU: u32 = 576;

/// The tunnel device as the datapath needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelDevice {
    pub ifindex: u32,
    /// The device's MTU, which is also the pods' MTU.
    pub mtu: u32,
}

/// The MTU left inside the tunnel for an uplink of `uplink_mtu`.
pub fn tunnel_mtu(uplink_mtu: u32) -> anyhow::Result<u32> {
    match uplink_mtu.checked_sub(VXLAN_OVERHEAD) {
        Some(mtu) if mtu >= MIN_IPV4_MTU => Ok(mtu),
        _ => bail!(
            "the uplink's MTU {uplink_mtu} leaves less than {MIN_IPV4_MTU} bytes once VXLAN adds \
             its {VXLAN_OVERHEAD}: tunnel routing needs a larger uplink MTU"
        ),
    }
}

/// Whether `link` is a device Sluice made: VXLAN, collect-metadata, our port.
pub fn is_sluice_vxlan(link: &LinkMessage) -> bool {
    let mut vxlan = false;
    let mut external = false;
    let mut port = None;
    for attribute in &link.attributes {
        let LinkAttribute::LinkInfo(infos) = attribute else {
            continue;
        };
        for info in infos {
            match info {
                LinkInfo::Kind(InfoKind::Vxlan) => vxlan = true,
                LinkInfo::Data(InfoData::Vxlan(data)) => {
                    for d in data {
                        match d {
                            InfoVxlan::CollectMetadata(on) => external = *on,
                            InfoVxlan::Port(p) => port = Some(*p),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    vxlan && external && port == Some(VXLAN_PORT)
}

fn mtu_of(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    })
}

impl NodeNet {
    async fn link(&self, name: &str) -> anyhow::Result<Option<LinkMessage>> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.code.map(|c| c.get()) == Some(-libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("looking up {name}")),
        }
    }

    /// Creates the tunnel device (or takes over the one an earlier agent
    /// made), sized for `uplink`'s MTU, and brings it up. A device of that
    /// name that is not ours is an error, not something to delete.
    pub async fn ensure_tunnel_device(&self, uplink: &str) -> anyhow::Result<TunnelDevice> {
        let uplink_link = self
            .link(uplink)
            .await?
            .with_context(|| format!("no uplink {uplink}"))?;
        let uplink_mtu = mtu_of(&uplink_link).with_context(|| format!("{uplink} has no MTU"))?;
        let mtu = tunnel_mtu(uplink_mtu)?;
        let link = match self.link(TUNNEL_DEVICE).await? {
            Some(link) if is_sluice_vxlan(&link) => link,
            Some(_) => bail!(
                "{TUNNEL_DEVICE} exists but is not a collect-metadata VXLAN device on UDP \
                 {VXLAN_PORT}: remove it (`ip link del {TUNNEL_DEVICE}`) or use --routing native"
            ),
            None => {
                let message = LinkMessageBuilder::<LinkVxlan>::new(TUNNEL_DEVICE)
                    .port(VXLAN_PORT)
                    .collect_metadata(true)
                    .learning(false)
                    .build();
                self.handle
                    .link()
                    .add(message)
                    .execute()
                    .await
                    .with_context(|| format!("creating the VXLAN device {TUNNEL_DEVICE}"))?;
                self.link(TUNNEL_DEVICE)
                    .await?
                    .with_context(|| format!("{TUNNEL_DEVICE} vanished after creation"))?
            }
        };
        let ifindex = link.header.index;
        let settings = LinkUnspec::new_with_index(ifindex)
            .mtu(mtu)
            .arp(false)
            .up()
            .build();
        self.handle
            .link()
            .set(settings)
            .execute()
            .await
            .with_context(|| format!("setting {TUNNEL_DEVICE} up with MTU {mtu}"))?;
        Ok(TunnelDevice { ifindex, mtu })
    }

    /// Removes the tunnel device if Sluice made one (native routing);
    /// true if there was one.
    pub async fn remove_tunnel_device(&self) -> anyhow::Result<bool> {
        match self.link(TUNNEL_DEVICE).await? {
            Some(link) if is_sluice_vxlan(&link) => {
                self.handle
                    .link()
                    .del(link.header.index)
                    .execute()
                    .await
                    .with_context(|| format!("removing {TUNNEL_DEVICE}"))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunnel_takes_fifty_bytes_of_the_uplink_mtu() {
        assert_eq!(tunnel_mtu(1500).unwrap(), 1450);
        assert_eq!(tunnel_mtu(9000).unwrap(), 8950);
        assert_eq!(tunnel_mtu(626).unwrap(), 576);
    }

    #[test]
    fn an_uplink_too_small_for_the_tunnel_is_refused() {
        let err = tunnel_mtu(600).unwrap_err().to_string();
        assert!(err.contains("MTU 600"), "{err}");
        assert!(tunnel_mtu(10).is_err());
    }

    #[test]
    fn only_a_collect_metadata_vxlan_on_our_port_is_ours() {
        let link = |data: Vec<InfoVxlan>| {
            let mut message = LinkMessage::default();
            message.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(data)),
            ]));
            message
        };
        let ours = link(vec![
            InfoVxlan::CollectMetadata(true),
            InfoVxlan::Port(VXLAN_PORT),
        ]);
        assert!(is_sluice_vxlan(&ours));
        assert!(!is_sluice_vxlan(&link(vec![
            InfoVxlan::CollectMetadata(false),
            InfoVxlan::Port(VXLAN_PORT)
        ])));
        assert!(!is_sluice_vxlan(&link(vec![
            InfoVxlan::CollectMetadata(true),
            InfoVxlan::Port(4789)
        ])));
        assert!(!is_sluice_vxlan(&LinkMessage::default()));
    }
}
