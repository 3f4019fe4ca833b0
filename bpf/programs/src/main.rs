//! Sluice's eBPF datapath.
//!
//! One module per attach point (`from_pod`, `from_uplink`, `to_uplink`,
//! `from_tunnel`, `to_tunnel`),
//! the shared logic in small
//! single-concern modules, every map in `maps`. Built for
//! `bpfel-unknown-none` by the agent's build.rs; `make` never builds it for
//! the host (it is outside `default-members`); `make lint` checks it on its own,
//! because with the agent in the same build `std` is linked in (through the
//! common crate's `user` feature) and clashes with our panic handler.
#![no_std]
#![no_main]

mod clock;
mod conntrack;
mod counters;
mod events;
mod fib;
mod forward;
mod from_pod;
mod from_tunnel;
mod from_uplink;
mod identity;
mod maps;
mod metrics;
mod nat;
mod packet;
mod policy;
mod prefilter;
mod reject;
mod service;
mod sock_lb;
mod to_tunnel;
mod to_uplink;
mod tunnel;

#[cfg(not(test))]
#[panic_handler]
#[allow(clippy::empty_loop)]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves panics unreachable; this is never called.
    loop {}
}

// GPL-compatible so GPL-only helpers stay available to the datapath.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
