//! Where the datapath's maps and links are pinned.
//!
//! Pinned maps are reused by the loader without any compatibility check, so
//! the layout version is part of the path: a change to any map's key, value
//! or size must bump [`LAYOUT_VERSION`], which gives the new agent fresh maps
//! instead of silently reusing incompatible ones.

/// Default bpffs root for one node's datapath.
pub const DEFAULT_BPFFS_ROOT: &str = "/sys/fs/bpf/sluice";

/// Version of the map layout; the pin directory is `<root>/v<LAYOUT_VERSION>`.
pub const LAYOUT_VERSION: u32 = 1;

/// Map names as the programs declare them (bpffs file names under the pin dir).
pub const ENDPOINTS_MAP: &str = "ENDPOINTS";
pub const METRICS_MAP: &str = "METRICS";

/// Names of the programs in the object file.
pub const PROG_FROM_POD: &str = "from_pod";
