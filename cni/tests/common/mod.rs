//! Shared by the integration tests: an in-process fake agent on a unix
//! socket, and a runner for the plugin binary.

#![allow(dead_code)] // each test file uses a different subset

pub mod fake_agent;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod plugin;
