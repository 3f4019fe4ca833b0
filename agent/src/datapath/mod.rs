//! The loaded eBPF datapath of one node: programs, pinned maps, attachments.
//!
//! Maps live under `<bpffs-root>/v<LAYOUT_VERSION>/` and outlive the agent,
//! as do the tc attachments, so the datapath keeps forwarding while the
//! agent restarts. A new agent reuses the pinned maps and atomically swaps
//! its freshly loaded programs into the existing attachments.

pub mod attach;
pub mod bpffs;
pub mod maps;
pub mod ops;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use aya::{Ebpf, EbpfLoader, maps::MapInfo, programs::SchedClassifier};
use sluice_bpf_common::pin::{ENDPOINTS_MAP, LAYOUT_VERSION, METRICS_MAP, PROG_FROM_POD};

use crate::config::DatapathConfig;

/// The eBPF object built by build.rs from `bpf/programs`.
pub static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sluice-bpf"));

/// Directory holding this layout version's pinned maps under `root`.
pub fn pin_dir(root: &Path) -> PathBuf {
    root.join(format!("v{LAYOUT_VERSION}"))
}

/// Programs and maps of one node, loaded into the kernel.
pub struct Datapath {
    ebpf: Ebpf,
    pin_dir: PathBuf,
}

impl Datapath {
    /// Loads the programs, opening the pinned maps or creating and pinning
    /// them on first start. Fails if a pinned map was created with another
    /// capacity than configured: reusing it would silently ignore the flag.
    pub fn load(config: &DatapathConfig) -> anyhow::Result<Self> {
        bpffs::ensure_mounted(&config.bpffs_root)?;
        let pin_dir = pin_dir(&config.bpffs_root);
        std::fs::create_dir_all(&pin_dir)
            .with_context(|| format!("cannot create pin directory {}", pin_dir.display()))?;

        let endpoints_pin = pin_dir.join(ENDPOINTS_MAP);
        let metrics_pin = pin_dir.join(METRICS_MAP);
        let ebpf = EbpfLoader::new()
            .map_max_entries(ENDPOINTS_MAP, config.endpoint_map_size)
            .map_pin_path(ENDPOINTS_MAP, endpoints_pin.as_path())
            .map_pin_path(METRICS_MAP, metrics_pin.as_path())
            .load(BPF_OBJECT)
            .context("loading the eBPF object")?;

        let datapath = Self { ebpf, pin_dir };
        datapath.check_capacity(ENDPOINTS_MAP, config.endpoint_map_size)?;
        Ok(datapath)
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Kernel info (id, capacity) of one of the datapath's pinned maps.
    pub fn map_info(&self, name: &str) -> anyhow::Result<MapInfo> {
        let pin = self.pin_dir.join(name);
        MapInfo::from_pin(&pin).with_context(|| format!("cannot read pinned map {}", pin.display()))
    }

    fn check_capacity(&self, name: &str, wanted: u32) -> anyhow::Result<()> {
        let actual = self.map_info(name)?.max_entries();
        if actual != wanted {
            bail!(
                "pinned map {name} in {} holds {actual} entries but {wanted} are configured; \
                 remove the pins (`sluice-agent unpin`) to recreate it, or keep the old size",
                self.pin_dir.display()
            );
        }
        Ok(())
    }

    /// The program for the host side of a pod's veth, loaded into the kernel.
    pub fn from_pod_program(&mut self) -> anyhow::Result<&mut SchedClassifier> {
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(PROG_FROM_POD)
            .with_context(|| format!("the eBPF object has no program {PROG_FROM_POD}"))?
            .try_into()?;
        if program.fd().is_err() {
            program
                .load()
                .with_context(|| format!("the verifier rejected {PROG_FROM_POD}"))?;
        }
        Ok(program)
    }

    /// Attaches the pod-device program to `iface` (tc ingress), replacing
    /// a previous Sluice attachment atomically. The attachment outlives us.
    pub fn attach_pod_device(&mut self, iface: &str) -> anyhow::Result<attach::Attached> {
        let program = self.from_pod_program()?;
        attach::attach_persistent(program, iface)
    }
}
