//! The kernel side of a pod's networking, through rtnetlink: the veth pair,
//! the pod's address and routes. No `ip` commands.

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
};

use futures::TryStreamExt;
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage},
    route::RouteScope,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::{CniError, kernel_refused};

/// Opens a netlink connection in the calling thread's namespace. Must run
/// inside a tokio runtime, which drives the connection.
pub fn connect() -> Result<Handle, CniError> {
    let (connection, handle, _) = rtnetlink::new_connection()
        .map_err(|e| kernel_refused(format!("cannot open a netlink socket: {e}")))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// The pod's addressing, as the agent's IPAM handed it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodAddressing {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

fn is_no_such_device(err: &rtnetlink::Error) -> bool {
    matches!(err, rtnetlink::Error::NetlinkError(msg)
        if msg.code.map(|c| c.get()) == Some(-(nix::errno::Errno::ENODEV as i32)))
}

fn failed(what: &str, err: rtnetlink::Error) -> CniError {
    kernel_refused(format!("{what}: {err}"))
}

pub async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, CniError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if is_no_such_device(&e) => Ok(None),
        Err(e) => Err(failed(&format!("looking up link {name}"), e)),
    }
}

/// "aa:bb:cc:dd:ee:ff", or empty for links without a hardware address.
pub fn mac_of(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(bytes) => Some(
                bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

pub fn is_veth(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth))),
        _ => false,
    })
}

/// For a veth: the ifindex of its peer (in the peer's namespace).
pub fn peer_index_of(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(index) => Some(*index),
        _ => None,
    })
}

/// Creates the pair with the peer born inside the pod's namespace under its
/// final name, so a pod-side name never clashes with the host's links.
pub async fn create_veth(
    handle: &Handle,
    host: &str,
    pod_ifname: &str,
    netns: &File,
    mtu: Option<u32>,
) -> Result<(), CniError> {
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(pod_ifname.to_owned())
        .setns_by_fd(netns.as_raw_fd());
    let mut pair = LinkVeth::new(host, pod_ifname);
    if let Some(mtu) = mtu {
        peer = peer.mtu(mtu);
        pair = pair.mtu(mtu);
    }
    let pair = pair.set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
    handle
        .link()
        .add(pair.build())
        .execute()
        .await
        .map_err(|e| failed(&format!("creating veth {host} <-> {pod_ifname}"), e))
}

/// Deletes a link by name; `false` when there was none.
pub async fn delete_link(handle: &Handle, name: &str) -> Result<bool, CniError> {
    let Some(link) = link_by_name(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(link.header.index).execute().await {
        Ok(()) => Ok(true),
        // Gone in between (e.g. its namespace was deleted): what we wanted.
        Err(e) if is_no_such_device(&e) => Ok(false),
        Err(e) => Err(failed(&format!("deleting link {name}"), e)),
    }
}

pub async fn set_up(handle: &Handle, index: u32, name: &str) -> Result<(), CniError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| failed(&format!("setting {name} up"), e))
}

/// Inside the pod's namespace: lo up, the address on `ifname`, `ifname` up,
/// a link-scope route to the gateway, then the default route via it. Every
/// step replaces what is there, so a retried ADD converges. Returns the
/// pod interface's MAC.
pub async fn configure_pod_side(
    handle: &Handle,
    ifname: &str,
    addressing: PodAddressing,
) -> Result<String, CniError> {
    if let Some(lo) = link_by_name(handle, "lo").await? {
        set_up(handle, lo.header.index, "lo").await?;
    }
    let link = link_by_name(handle, ifname)
        .await?
        .ok_or_else(|| kernel_refused(format!("{ifname} is missing in the pod's namespace")))?;
    let index = link.header.index;
    handle
        .address()
        .add(index, IpAddr::V4(addressing.address), addressing.prefix_len)
        .replace()
        .execute()
        .await
        .map_err(|e| {
            failed(
                &format!(
                    "adding {}/{} to {ifname}",
                    addressing.address, addressing.prefix_len
                ),
                e,
            )
        })?;
    set_up(handle, index, ifname).await?;
    let to_gateway = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(addressing.gateway, 32)
        .output_interface(index)
        .scope(RouteScope::Link)
        .build();
    handle
        .route()
        .add(to_gateway)
        .replace()
        .execute()
        .await
        .map_err(|e| {
            failed(
                &format!("adding route {}/32 dev {ifname}", addressing.gateway),
                e,
            )
        })?;
    let default = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
        .gateway(addressing.gateway)
        .output_interface(index)
        .build();
    handle
        .route()
        .add(default)
        .replace()
        .execute()
        .await
        .map_err(|e| {
            failed(
                &format!("adding default route via {}", addressing.gateway),
                e,
            )
        })?;
    Ok(mac_of(&link))
}

/// IPv4 addresses on a link, as (address, prefix length).
pub async fn ipv4_addresses(handle: &Handle, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, CniError> {
    let messages: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| failed("listing addresses", e))?;
    Ok(messages
        .iter()
        .flat_map(|m| {
            m.attributes.iter().filter_map(move |a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some((*ip, m.header.prefix_len)),
                _ => None,
            })
        })
        .collect())
}
