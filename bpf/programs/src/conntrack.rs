//! Tracking flows in the CT map: find the entry in either direction,
//! create it on a flow's first packet, advance TCP state, count.
//!
//! Counters are updated without atomics (BPF has no fetch-add in Rust):
//! under concurrent CPUs a flow's counts are approximate.

use aya_ebpf::bindings::BPF_ANY;
use sluice_bpf_common::conntrack::{CtEntry, CtState, PROTO_TCP};

use crate::{
    maps::CT,
    packet::{Flow, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

/// Which way a packet travels relative to its flow's first packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Original,
    Reply,
}

#[inline(always)]
fn initial_state(flow: &Flow) -> CtState {
    if flow.tuple.proto != PROTO_TCP {
        CtState::Unreplied
    } else if flow.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        CtState::TcpSynSent
    } else {
        // Picked up mid-flow (e.g. after a CT flush): trust it.
        CtState::TcpEstablished
    }
}

#[inline(always)]
fn next_state(current: u8, flow: &Flow, direction: Direction) -> u8 {
    if flow.tuple.proto == PROTO_TCP {
        if flow.tcp_flags & TCP_RST != 0 {
            return CtState::TcpClosed as u8;
        }
        if flow.tcp_flags & TCP_FIN != 0 {
            return CtState::TcpClosing as u8;
        }
        if direction == Direction::Reply && current == CtState::TcpSynSent as u8 {
            return CtState::TcpEstablished as u8;
        }
        current
    } else if direction == Direction::Reply {
        CtState::Replied as u8
    } else {
        current
    }
}

/// What tracking one packet found out.
#[derive(Clone, Copy)]
pub struct Tracked {
    pub direction: Direction,
    /// The flow's frontend for service reverse NAT (0: none).
    pub rev_nat: u16,
    /// `CT_F_*` of the flow.
    pub flags: u8,
}

/// Records one packet of a flow already tracked (either direction);
/// `None` for a new flow (never seen, or a SYN reopening a closed tuple),
/// which the caller checks against policy before [`create`].
#[inline(always)]
pub fn observe(flow: &Flow, bytes: u32) -> Option<Tracked> {
    let bytes = u64::from(bytes);
    let syn = flow.tuple.proto == PROTO_TCP && flow.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    if let Some(entry) = CT.get_ptr_mut(flow.tuple) {
        let entry = unsafe { &mut *entry };
        if syn && entry.state >= CtState::TcpClosing as u8 {
            // Reopened.
            return None;
        }
        entry.fwd_packets += 1;
        entry.fwd_bytes += bytes;
        entry.last_seen_ns = crate::clock::now_ns();
        entry.state = next_state(entry.state, flow, Direction::Original);
        return Some(Tracked {
            direction: Direction::Original,
            rev_nat: entry.rev_nat,
            flags: entry.flags,
        });
    }
    // A bare SYN opens a connection; it is never a reply (a simultaneous
    // open is tracked as a new flow): one lookup saved on every new TCP flow.
    if syn {
        return None;
    }
    if let Some(entry) = CT.get_ptr_mut(flow.tuple.reversed()) {
        let entry = unsafe { &mut *entry };
        entry.rev_packets += 1;
        entry.rev_bytes += bytes;
        entry.last_seen_ns = crate::clock::now_ns();
        entry.state = next_state(entry.state, flow, Direction::Reply);
        return Some(Tracked {
            direction: Direction::Reply,
            rev_nat: entry.rev_nat,
            flags: entry.flags,
        });
    }
    None
}

/// Starts tracking a new flow (after policy allowed it); `rev_nat` and
/// `flags` come from service translation. Returns the entry's creation
/// time, which the new-flow event reuses.
#[inline(always)]
pub fn create(flow: &Flow, bytes: u32, rev_nat: u16, flags: u8) -> u64 {
    let now = crate::clock::now_ns();
    let mut entry = new_entry(flow, now, u64::from(bytes));
    entry.rev_nat = rev_nat;
    entry.flags = flags;
    // A full LRU map evicts its oldest entry; an error here only means the
    // flow goes untracked for this packet.
    let _ = CT.insert(flow.tuple, entry, BPF_ANY as u64);
    now
}

#[inline(always)]
fn new_entry(flow: &Flow, now: u64, bytes: u64) -> CtEntry {
    CtEntry {
        created_ns: now,
        last_seen_ns: now,
        fwd_packets: 1,
        fwd_bytes: bytes,
        rev_packets: 0,
        rev_bytes: 0,
        state: initial_state(flow) as u8,
        flags: 0,
        rev_nat: 0,
        backend_id: 0,
    }
}
