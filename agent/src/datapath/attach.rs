//! tc attachments that outlive the agent.
//!
//! We use netlink clsact filters at a fixed priority and handle: the kernel
//! keeps them (and the program) after the loader exits, `tc filter show`
//! lists them, and a restarted agent swaps its new program into the same
//! filter atomically (NLM_F_REPLACE), so no packet misses the datapath.

use std::io;

use anyhow::Context;
use aya::programs::{
    SchedClassifier, TcAttachType,
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle},
};
use sluice_bpf_common::pin::{
    PROG_FROM_POD, PROG_FROM_TUNNEL, PROG_FROM_UPLINK, PROG_TO_TUNNEL, PROG_TO_UPLINK,
};

/// Sluice's filter slot on a pod device (Cilium uses the same: pref 1 handle 1).
pub const TC_PRIORITY: u16 = 1;
pub const TC_HANDLE: TcHandle = TcHandle::new(0, 1);

/// What attaching did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// No Sluice filter was there; one was created.
    Created,
    /// An existing Sluice filter now runs the new program.
    Replaced,
}

/// Attaches `program` to tc `direction` of `iface` so that it stays
/// attached after this process exits.
pub fn attach_persistent(
    program: &mut SchedClassifier,
    iface: &str,
    direction: TcAttachType,
) -> anyhow::Result<Attached> {
    add_clsact(iface)?;
    let existing = SchedClassifierLink::attached(iface, direction, TC_PRIORITY, TC_HANDLE, None)
        .with_context(|| format!("no interface {iface}"))?;
    let (link_id, outcome) = match program.attach_to_link(existing) {
        Ok(id) => (id, Attached::Replaced),
        Err(_) => {
            let options = NlOptions {
                priority: TC_PRIORITY,
                handle: TC_HANDLE,
                classid: None,
            };
            let id = program
                .attach_with_options(iface, direction, TcAttachOptions::Netlink(options))
                .with_context(|| format!("cannot attach a Sluice program to {iface}"))?;
            (id, Attached::Created)
        }
    };
    // aya detaches a link when it is dropped; this one must outlive us.
    let link = program.take_link(link_id)?;
    std::mem::forget(link);
    Ok(outcome)
}

/// Every (direction, program) Sluice may attach to a device.
const ATTACHMENTS: [(TcAttachType, &str); 5] = [
    (TcAttachType::Ingress, PROG_FROM_POD),
    (TcAttachType::Ingress, PROG_FROM_UPLINK),
    (TcAttachType::Egress, PROG_TO_UPLINK),
    (TcAttachType::Ingress, PROG_FROM_TUNNEL),
    (TcAttachType::Egress, PROG_TO_TUNNEL),
];

/// Removes Sluice's filters from `iface`. Returns false if none was attached.
pub fn detach(iface: &str) -> anyhow::Result<bool> {
    let mut any = false;
    for (direction, name) in ATTACHMENTS {
        match tc::qdisc_detach_program(iface, direction, name) {
            Ok(()) => any = true,
            Err(TcError::IoError(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot detach {name} from {iface}"));
            }
        }
    }
    Ok(any)
}

fn add_clsact(iface: &str) -> anyhow::Result<()> {
    match tc::qdisc_add_clsact(iface) {
        Ok(()) | Err(TcError::AlreadyAttached) => Ok(()),
        Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot add the clsact qdisc to {iface}")),
    }
}
