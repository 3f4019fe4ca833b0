//! The loaded eBPF datapath of one node: programs, pinned maps, attachments.
//!
//! Maps live under `<bpffs-root>/v<LAYOUT_VERSION>/` and outlive the agent,
//! as do the tc attachments, so the datapath keeps forwarding while the
//! agent restarts. A new agent reuses the pinned maps and atomically swaps
//! its freshly loaded programs into the existing attachments.

pub mod attach;
pub mod bpffs;
pub mod lb_maps;
pub mod maps;
pub mod ops;
pub mod policy_maps;
pub mod sock_lb;
pub mod tunnel_map;
pub mod xdp;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::MapInfo,
    programs::{SchedClassifier, TcAttachType},
};
use sluice_bpf_common::{
    config::NodeConfig,
    pin::{
        ALL_MAPS, CONFIG_MAP, LAYOUT_VERSION, PROG_FROM_POD, PROG_FROM_TUNNEL, PROG_FROM_UPLINK,
        PROG_TO_TUNNEL, PROG_TO_UPLINK,
    },
};

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

        let pins: Vec<(&str, PathBuf)> = ALL_MAPS.iter().map(|m| (*m, pin_dir.join(m))).collect();
        let sizes = config.map_sizes();
        let mut loader = EbpfLoader::new();
        for (name, size) in &sizes {
            loader.map_max_entries(name, *size);
        }
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = loader.load(BPF_OBJECT).context("loading the eBPF object")?;

        let datapath = Self { ebpf, pin_dir };
        for (name, size) in sizes {
            datapath.check_capacity(name, size)?;
        }
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

    /// One of the datapath's tc programs, loaded into the kernel.
    pub fn program(&mut self, name: &str) -> anyhow::Result<&mut SchedClassifier> {
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("the eBPF object has no program {name}"))?
            .try_into()?;
        if program.fd().is_err() {
            program
                .load()
                .with_context(|| format!("the verifier rejected {name}"))?;
        }
        Ok(program)
    }

    /// The program for the host side of a pod's veth.
    pub fn from_pod_program(&mut self) -> anyhow::Result<&mut SchedClassifier> {
        self.program(PROG_FROM_POD)
    }

    /// Attaches the pod-device program to `iface` (tc ingress), replacing
    /// a previous Sluice attachment atomically. The attachment outlives us.
    pub fn attach_pod_device(&mut self, iface: &str) -> anyhow::Result<attach::Attached> {
        attach::attach_persistent(self.program(PROG_FROM_POD)?, iface, TcAttachType::Ingress)
    }

    /// Attaches the uplink programs to the node's uplink `iface`: reverse
    /// masquerade and delivery on ingress, masquerade on egress.
    pub fn attach_uplink(&mut self, iface: &str) -> anyhow::Result<()> {
        attach::attach_persistent(
            self.program(PROG_FROM_UPLINK)?,
            iface,
            TcAttachType::Ingress,
        )?;
        attach::attach_persistent(self.program(PROG_TO_UPLINK)?, iface, TcAttachType::Egress)?;
        Ok(())
    }

    /// Attaches the tunnel programs to the node's VXLAN device `iface`:
    /// delivery of decapsulated packets on ingress, the tunnel key for
    /// what the node's stack routes into it on egress.
    pub fn attach_tunnel(&mut self, iface: &str) -> anyhow::Result<()> {
        attach::attach_persistent(
            self.program(PROG_FROM_TUNNEL)?,
            iface,
            TcAttachType::Ingress,
        )?;
        attach::attach_persistent(self.program(PROG_TO_TUNNEL)?, iface, TcAttachType::Egress)?;
        Ok(())
    }

    /// Writes the node settings into the `CONFIG` map.
    /// What `set_node_config` last wrote (zeros before).
    pub fn node_config(&self) -> anyhow::Result<NodeConfig> {
        let map = self
            .ebpf
            .map(CONFIG_MAP)
            .with_context(|| format!("the eBPF object has no map {CONFIG_MAP}"))?;
        let array: aya::maps::Array<_, NodeConfig> = aya::maps::Array::try_from(map)?;
        Ok(array.get(&0, 0)?)
    }

    pub fn set_node_config(&mut self, config: NodeConfig) -> anyhow::Result<()> {
        let map = self
            .ebpf
            .map_mut(CONFIG_MAP)
            .with_context(|| format!("the eBPF object has no map {CONFIG_MAP}"))?;
        let mut array: aya::maps::Array<_, NodeConfig> = aya::maps::Array::try_from(map)?;
        array.set(0, config, 0)?;
        Ok(())
    }
}
