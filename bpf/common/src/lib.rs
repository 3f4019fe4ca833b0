//! Map keys, values and constants shared by Sluice's eBPF programs and
//! userspace. Everything here is `#[repr(C)]` and plain data: the kernel
//! side and the agent must agree on every byte.
//!
//! With the `user` feature the types implement `aya::Pod`, so the agent can
//! read and write them through aya's typed maps.
#![no_std]

pub mod config;
pub mod conntrack;
pub mod endpoint;
pub mod events;
pub mod lb;
pub mod metrics;
pub mod nat;
pub mod pin;
pub mod policy;
pub mod prefilter;
pub mod reject;
pub mod tunnel;
