//! Tracking flows in the CT map: find the entry in either direction,
//! create it on a flow's first packet, advance TCP state, count.
//!
//! Counters are updated without atomics (BPF has no fetch-add in Rust):
//! under concurrent CPUs a flow's counts are approximate.

use aya_ebpf::{bindings::BPF_ANY, helpers::generated::bpf_ktime_get_ns};
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

/// Records one packet of `flow`; returns its direction.
#[inline(always)]
pub fn track(flow: &Flow, bytes: u32) -> Direction {
    let now = unsafe { bpf_ktime_get_ns() };
    let bytes = u64::from(bytes);
    if let Some(entry) = CT.get_ptr_mut(flow.tuple) {
        let entry = unsafe { &mut *entry };
        let reopened = flow.tuple.proto == PROTO_TCP
            && flow.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
            && entry.state >= CtState::TcpClosing as u8;
        if reopened {
            // A new connection reusing the tuple of a closed one.
            *entry = new_entry(flow, now, bytes);
        } else {
            entry.fwd_packets += 1;
            entry.fwd_bytes += bytes;
            entry.last_seen_ns = now;
            entry.state = next_state(entry.state, flow, Direction::Original);
        }
        return Direction::Original;
    }
    if let Some(entry) = CT.get_ptr_mut(flow.tuple.reversed()) {
        let entry = unsafe { &mut *entry };
        entry.rev_packets += 1;
        entry.rev_bytes += bytes;
        entry.last_seen_ns = now;
        entry.state = next_state(entry.state, flow, Direction::Reply);
        return Direction::Reply;
    }
    // A full LRU map evicts its oldest entry; an error here only means the
    // flow goes untracked for this packet.
    let _ = CT.insert(flow.tuple, new_entry(flow, now, bytes), BPF_ANY as u64);
    Direction::Original
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
        _pad: [0; 7],
    }
}
