//! The XDP prefilter's attachment to the uplink, made to outlive the agent.
//!
//! The program is attached through a bpf_link (native/driver mode when the
//! device supports it, generic/skb mode otherwise) and the link is pinned
//! at `<bpffs-root>/links/prefilter-<iface>`: outside the versioned pin
//! directory, so an agent of any map layout finds it again. A restarted
//! agent swaps its freshly loaded program into the pinned link with
//! `BPF_LINK_UPDATE` (atomic: no packet misses the filter, and the mode
//! stays what it was); `sluice-agent detach` detaches the link with
//! `BPF_LINK_DETACH` and removes the pin.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use anyhow::Context;
use aya::programs::{
    Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};
use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkXdp, XdpAttached};
use sluice_bpf_common::pin::{LINKS_DIR, PROG_PREFILTER};
use tracing::{info, warn};

use super::Datapath;

/// How the prefilter runs on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// In the driver, before any skb exists.
    Native,
    /// After the kernel built an skb (devices without native XDP).
    Generic,
}

impl XdpAttachMode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }
}

/// What attaching the prefilter did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefilterAttached {
    /// A new link, in this mode.
    Created(XdpAttachMode),
    /// The pinned link of a previous agent now runs the new program.
    Replaced,
}

/// Where the prefilter's link on `iface` is pinned, under the bpffs root.
pub fn prefilter_link_pin(bpffs_root: &Path, iface: &str) -> PathBuf {
    bpffs_root
        .join(LINKS_DIR)
        .join(format!("{PROG_PREFILTER}-{iface}"))
}

impl Datapath {
    /// The XDP prefilter program, loaded into the kernel.
    pub fn prefilter_program(&mut self) -> anyhow::Result<&mut Xdp> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(PROG_PREFILTER)
            .with_context(|| format!("the eBPF object has no program {PROG_PREFILTER}"))?
            .try_into()?;
        if program.fd().is_err() {
            program
                .load()
                .with_context(|| format!("the verifier rejected {PROG_PREFILTER}"))?;
        }
        Ok(program)
    }

    /// Attaches the prefilter to `iface` so that it stays attached after
    /// this process exits; replaces a previous agent's program atomically.
    pub fn attach_prefilter(&mut self, iface: &str) -> anyhow::Result<PrefilterAttached> {
        let root = self
            .pin_dir
            .parent()
            .context("the pin directory has no parent (the bpffs root)")?
            .to_owned();
        let pin = prefilter_link_pin(&root, iface);
        let dir = pin.parent().expect("a file under the links directory");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let program = self.prefilter_program()?;
        if pin.exists() {
            match replace_pinned(program, &pin) {
                Ok(()) => return Ok(PrefilterAttached::Replaced),
                Err(e) => {
                    // E.g. the device was recreated: the old link is defunct.
                    warn!(
                        iface,
                        pin = %pin.display(),
                        "cannot reuse the pinned prefilter link ({e:#}); attaching anew"
                    );
                    std::fs::remove_file(&pin)
                        .with_context(|| format!("cannot remove {}", pin.display()))?;
                }
            }
        }
        let (id, mode) = match program.attach(iface, XdpMode::Driver) {
            Ok(id) => (id, XdpAttachMode::Native),
            Err(e) => {
                info!(
                    iface,
                    "native XDP is not available ({e}); the prefilter falls back to generic \
                     (skb) mode"
                );
                let id = program
                    .attach(iface, XdpMode::Skb)
                    .with_context(|| format!("cannot attach the XDP prefilter to {iface}"))?;
                (id, XdpAttachMode::Generic)
            }
        };
        let link: FdLink = program
            .take_link(id)?
            .try_into()
            .context("the kernel attached the prefilter without a bpf_link; cannot pin it")?;
        link.pin(&pin)
            .with_context(|| format!("cannot pin the prefilter link at {}", pin.display()))?;
        Ok(PrefilterAttached::Created(mode))
    }
}

fn replace_pinned(program: &mut Xdp, pin: &Path) -> anyhow::Result<()> {
    let pinned = PinnedLink::from_pin(pin)?;
    let link = XdpLink::try_from(FdLink::from(pinned)).context("not an XDP link")?;
    let id = program.attach_to_link(link)?;
    // The pin keeps the link; our descriptor may go.
    drop(program.take_link(id)?);
    Ok(())
}

/// Detaches the prefilter from `iface` (the link pinned under
/// `bpffs_root`) and removes the pin. Returns false if none was pinned.
pub fn detach_prefilter(bpffs_root: &Path, iface: &str) -> anyhow::Result<bool> {
    let pin = prefilter_link_pin(bpffs_root, iface);
    if !pin.exists() {
        return Ok(false);
    }
    let link = bpf_obj_get(&pin).with_context(|| format!("cannot open {}", pin.display()))?;
    // Detach even if another process (a running agent) holds the link.
    bpf_link_detach(&link).with_context(|| format!("cannot detach {}", pin.display()))?;
    std::fs::remove_file(&pin).with_context(|| format!("cannot remove {}", pin.display()))?;
    Ok(true)
}

/// Detaches every pinned prefilter link under `bpffs_root` except the one
/// on `keep` (an uplink that changed, or a prefilter turned off); returns
/// the interfaces it was detached from.
pub fn detach_other_prefilters(
    bpffs_root: &Path,
    keep: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let dir = bpffs_root.join(LINKS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let prefix = format!("{PROG_PREFILTER}-");
    let mut detached = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(iface) = name.strip_prefix(&prefix) else {
            continue;
        };
        if Some(iface) != keep && detach_prefilter(bpffs_root, iface)? {
            detached.push(iface.to_owned());
        }
    }
    Ok(detached)
}

/// The XDP mode a program is attached in on `iface`, per netlink
/// (`None`: no XDP program).
pub async fn attached_mode(iface: &str) -> anyhow::Result<Option<XdpAttachMode>> {
    let (connection, handle, _) =
        rtnetlink::new_connection().context("cannot open a netlink socket")?;
    let task = tokio::spawn(connection);
    let link = handle
        .link()
        .get()
        .match_name(iface.to_owned())
        .execute()
        .try_next()
        .await
        .with_context(|| format!("no interface {iface}"))?
        .with_context(|| format!("no interface {iface}"))?;
    task.abort();
    let mode = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
            LinkXdp::Attached(XdpAttached::Driver) => Some(XdpAttachMode::Native),
            LinkXdp::Attached(XdpAttached::SocketBuffer) => Some(XdpAttachMode::Generic),
            _ => None,
        }),
        _ => None,
    });
    Ok(mode)
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_DETACH: libc::c_long = 34;

/// `union bpf_attr` for BPF_OBJ_GET.
#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// `union bpf_attr` for BPF_LINK_DETACH.
#[repr(C)]
#[derive(Default)]
struct LinkDetachAttr {
    link_fd: u32,
    _pad: [u32; 3],
}

fn bpf_obj_get(path: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let attr = ObjGetAttr {
        pathname: path.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: a valid bpf_attr whose path outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &attr as *const ObjGetAttr,
            size_of::<ObjGetAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn bpf_link_detach(link: &OwnedFd) -> io::Result<()> {
    let attr = LinkDetachAttr {
        link_fd: link.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: a valid bpf_attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            &attr as *const LinkDetachAttr,
            size_of::<LinkDetachAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
