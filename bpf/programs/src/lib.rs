//! Library target so the agent can name this crate as a build dependency
//! (aya-build compiles the binary target for the BPF target).
#![no_std]
