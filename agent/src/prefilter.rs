//! The XDP prefilter's deny list: which source CIDRs the uplink drops.
//!
//! Two sources, one map: the `--prefilter-deny` flags (the node's static
//! configuration, re-read at every start) and runtime additions through
//! the API (`sluice bpf prefilter add|delete`), persisted atomically in
//! `<state-dir>/prefilter.json`. The `PREFILTER` map holds exactly their
//! union: a starting agent adds what is missing and removes what is stale
//! (the pinned map keeps filtering while the agent is away). A CIDR set by
//! a flag cannot be deleted through the API (remove the flag instead).
//!
//! Every change is all or nothing: an invalid CIDR, a full map or a
//! failed write leaves the map and the state file as they were.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Mutex,
};

use anyhow::Context;
use aya::maps::{
    Map, MapData, MapError,
    lpm_trie::{Key, LpmTrie},
};
pub use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sluice_bpf_common::{pin::PREFILTER_MAP, prefilter::PrefilterEntry};

use crate::cidr::{InvalidCidr, parse_cidr};
use crate::{
    config::AgentConfig,
    datapath::{
        Datapath,
        maps::open_pinned,
        xdp::{self, PrefilterAttached},
    },
    state_file::{OnCorruptState, StateFile, StateFileError},
};

/// The agent's start-up: sync the deny list into the map, then attach the
/// prefilter to the uplink (or detach a leftover one when it is off).
pub async fn start(config: &AgentConfig, datapath: &mut Datapath) -> anyhow::Result<Prefilter> {
    let enabled = config.prefilter || !config.prefilter_deny.is_empty();
    let uplink = config.uplink.as_deref().filter(|_| enabled);
    anyhow::ensure!(
        config.prefilter_deny.is_empty() || uplink.is_some(),
        "--prefilter-deny needs --uplink (the prefilter runs on it)"
    );
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
    let map = KernelPrefilterMap::open(datapath.pin_dir())?;
    let (prefilter, report) = Prefilter::open(
        config.state_dir.join("prefilter.json"),
        config.on_corrupt_state.into(),
        &config.prefilter_deny,
        Box::new(map),
    )?;
    tracing::info!(
        entries = prefilter.list().len(),
        added = report.added,
        removed = report.removed,
        "prefilter deny list synced"
    );
    let root = datapath
        .pin_dir()
        .parent()
        .context("the pin directory has no parent")?
        .to_owned();
    for iface in xdp::detach_other_prefilters(&root, uplink)? {
        tracing::info!(
            iface,
            "XDP prefilter detached (not the prefilter's uplink now)"
        );
    }
    if let Some(uplink) = uplink {
        let outcome = datapath.attach_prefilter(uplink)?;
        let mode = match outcome {
            PrefilterAttached::Created(mode) => Some(mode),
            PrefilterAttached::Replaced => xdp::attached_mode(uplink).await?,
        };
        let mode = mode.map_or("unknown", |m| m.name());
        tracing::info!(uplink, ?outcome, mode, "XDP prefilter attached");
        prefilter.set_attached(uplink, mode);
    }
    Ok(prefilter)
}

/// The kernel map (or a fake) behind the deny list.
pub trait PrefilterMap: Send {
    fn insert(&mut self, cidr: Ipv4Net) -> Result<(), PrefilterError>;
    fn remove(&mut self, cidr: Ipv4Net) -> anyhow::Result<()>;
    fn list(&self) -> anyhow::Result<Vec<Ipv4Net>>;
    fn capacity(&self) -> usize;
}

#[derive(Debug, thiserror::Error)]
pub enum PrefilterError {
    #[error(transparent)]
    Invalid(#[from] InvalidCidr),
    #[error(
        "the prefilter deny list is full: {entries} of {capacity} entries in use, {wanted} more \
         asked for (raise --prefilter-map-size, which needs `sluice-agent unpin`)"
    )]
    Full {
        entries: usize,
        capacity: usize,
        wanted: usize,
    },
    #[error(
        "{cidr} is set by --prefilter-deny; remove the flag (and restart the agent) to delete it"
    )]
    FromFlag { cidr: Ipv4Net },
    #[error(transparent)]
    State(#[from] StateFileError),
    #[error("{0:#}")]
    Map(anyhow::Error),
}

/// Why an entry is in the deny list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Api,
}

impl Source {
    pub const fn name(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Api => "api",
        }
    }
}

/// The persisted runtime additions.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    /// CIDRs added through the API, in `a.b.c.d/len` form.
    cidrs: Vec<String>,
}

/// What a start-up sync changed in the map.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub added: usize,
    pub removed: usize,
}

struct Inner {
    /// (interface, XDP mode) the prefilter runs on.
    attached: Vec<(String, String)>,
    flags: BTreeSet<Ipv4Net>,
    api: BTreeSet<Ipv4Net>,
    map: Box<dyn PrefilterMap>,
    state: StateFile,
}

impl Inner {
    fn effective(&self) -> BTreeSet<Ipv4Net> {
        self.flags.union(&self.api).copied().collect()
    }

    fn persist(&self) -> Result<(), StateFileError> {
        self.state.store(&Persisted {
            cidrs: self.api.iter().map(ToString::to_string).collect(),
        })
    }
}

/// The deny list of one node.
pub struct Prefilter {
    inner: Mutex<Inner>,
}

impl Prefilter {
    /// Loads the runtime additions from `state_path`, adds the flags, and
    /// makes the map hold exactly their union.
    pub fn open(
        state_path: PathBuf,
        on_corrupt: OnCorruptState,
        flags: &[Ipv4Net],
        mut map: Box<dyn PrefilterMap>,
    ) -> Result<(Self, SyncReport), PrefilterError> {
        let state = StateFile::new(state_path);
        let api = state
            .load_or_recover(on_corrupt, |p: Persisted| {
                p.cidrs
                    .iter()
                    .map(|c| parse_cidr(c).map_err(|e| e.to_string()))
                    .collect::<Result<BTreeSet<_>, _>>()
            })?
            .unwrap_or_default();
        let flags: BTreeSet<Ipv4Net> = flags.iter().copied().collect();
        let effective: BTreeSet<Ipv4Net> = flags.union(&api).copied().collect();
        if effective.len() > map.capacity() {
            return Err(PrefilterError::Full {
                entries: 0,
                capacity: map.capacity(),
                wanted: effective.len(),
            });
        }
        let present: BTreeSet<Ipv4Net> = map
            .list()
            .map_err(PrefilterError::Map)?
            .into_iter()
            .collect();
        let mut report = SyncReport::default();
        // Stale entries first: room for the new ones.
        for stale in present.difference(&effective) {
            map.remove(*stale).map_err(PrefilterError::Map)?;
            report.removed += 1;
        }
        for missing in effective.difference(&present) {
            map.insert(*missing)?;
            report.added += 1;
        }
        let prefilter = Self {
            inner: Mutex::new(Inner {
                attached: Vec::new(),
                flags,
                api,
                map,
                state,
            }),
        };
        Ok((prefilter, report))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every entry with its sources, in address order.
    pub fn list(&self) -> Vec<(Ipv4Net, Vec<Source>)> {
        let inner = self.lock();
        inner
            .effective()
            .into_iter()
            .map(|cidr| {
                let mut sources = Vec::new();
                if inner.flags.contains(&cidr) {
                    sources.push(Source::Flag);
                }
                if inner.api.contains(&cidr) {
                    sources.push(Source::Api);
                }
                (cidr, sources)
            })
            .collect()
    }

    pub fn capacity(&self) -> usize {
        self.lock().map.capacity()
    }

    /// Records that the prefilter runs on `iface` in `mode` (for `list`).
    pub fn set_attached(&self, iface: &str, mode: &str) {
        let mut inner = self.lock();
        inner.attached.retain(|(i, _)| i != iface);
        inner.attached.push((iface.to_owned(), mode.to_owned()));
    }

    /// The (interface, mode) pairs the prefilter runs on.
    pub fn attached(&self) -> Vec<(String, String)> {
        self.lock().attached.clone()
    }

    /// Adds `inputs` as runtime entries; returns each parsed CIDR and
    /// whether it was new to the deny list.
    pub fn add(&self, inputs: &[String]) -> Result<Vec<(Ipv4Net, bool)>, PrefilterError> {
        let cidrs = parse_all(inputs)?;
        let mut inner = self.lock();
        let effective = inner.effective();
        let new: BTreeSet<Ipv4Net> = cidrs
            .iter()
            .filter(|c| !effective.contains(c))
            .copied()
            .collect();
        let capacity = inner.map.capacity();
        if effective.len() + new.len() > capacity {
            return Err(PrefilterError::Full {
                entries: effective.len(),
                capacity,
                wanted: new.len(),
            });
        }
        let mut written = Vec::new();
        for cidr in &new {
            if let Err(e) = inner.map.insert(*cidr) {
                rollback_inserts(&mut *inner.map, &written);
                return Err(match e {
                    PrefilterError::Full { .. } => PrefilterError::Full {
                        entries: effective.len(),
                        capacity,
                        wanted: new.len(),
                    },
                    other => other,
                });
            }
            written.push(*cidr);
        }
        let before = inner.api.clone();
        inner.api.extend(cidrs.iter().copied());
        if let Err(e) = inner.persist() {
            inner.api = before;
            rollback_inserts(&mut *inner.map, &written);
            return Err(e.into());
        }
        Ok(cidrs.into_iter().map(|c| (c, new.contains(&c))).collect())
    }

    /// Deletes runtime entries; returns each parsed CIDR and whether it
    /// was in the list. Refuses (changing nothing) if any is set by a flag.
    pub fn delete(&self, inputs: &[String]) -> Result<Vec<(Ipv4Net, bool)>, PrefilterError> {
        let cidrs = parse_all(inputs)?;
        let mut inner = self.lock();
        if let Some(cidr) = cidrs.iter().find(|c| inner.flags.contains(c)) {
            return Err(PrefilterError::FromFlag { cidr: *cidr });
        }
        let gone: Vec<Ipv4Net> = cidrs
            .iter()
            .filter(|c| inner.api.contains(c))
            .copied()
            .collect();
        let before = inner.api.clone();
        for cidr in &gone {
            inner.api.remove(cidr);
        }
        // Persist first: a failed map delete is then retried by the next
        // start's sync, and the state never claims an entry the map lacks.
        if let Err(e) = inner.persist() {
            inner.api = before;
            return Err(e.into());
        }
        for cidr in &gone {
            inner.map.remove(*cidr).map_err(PrefilterError::Map)?;
        }
        Ok(cidrs.into_iter().map(|c| (c, gone.contains(&c))).collect())
    }
}

fn parse_all(inputs: &[String]) -> Result<Vec<Ipv4Net>, PrefilterError> {
    if inputs.is_empty() {
        return Err(PrefilterError::Invalid(InvalidCidr {
            input: String::new(),
            reason: "give at least one CIDR".into(),
        }));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for input in inputs {
        let cidr = parse_cidr(input)?;
        if seen.insert(cidr) {
            out.push(cidr);
        }
    }
    Ok(out)
}

fn rollback_inserts(map: &mut dyn PrefilterMap, written: &[Ipv4Net]) {
    for cidr in written {
        if let Err(e) = map.remove(*cidr) {
            tracing::error!(%cidr, "cannot roll back a prefilter entry: {e:#}");
        }
    }
}

/// The pinned `PREFILTER` LPM trie.
pub struct KernelPrefilterMap {
    trie: LpmTrie<MapData, u32, PrefilterEntry>,
    capacity: usize,
}

impl KernelPrefilterMap {
    pub fn open(pin_dir: &Path) -> anyhow::Result<Self> {
        let capacity = aya::maps::MapInfo::from_pin(pin_dir.join(PREFILTER_MAP))
            .context("reading the prefilter map's capacity")?
            .max_entries() as usize;
        Ok(Self {
            trie: LpmTrie::try_from(Map::LpmTrie(open_pinned(pin_dir, PREFILTER_MAP)?))?,
            capacity,
        })
    }
}

fn key(cidr: Ipv4Net) -> Key<u32> {
    Key::new(
        u32::from(cidr.prefix_len()),
        u32::from_ne_bytes(cidr.network().octets()),
    )
}

impl PrefilterMap for KernelPrefilterMap {
    fn insert(&mut self, cidr: Ipv4Net) -> Result<(), PrefilterError> {
        match self.trie.insert(&key(cidr), PrefilterEntry::default(), 0) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOSPC) => {
                Err(PrefilterError::Full {
                    entries: self.capacity,
                    capacity: self.capacity,
                    wanted: 1,
                })
            }
            Err(e) => Err(PrefilterError::Map(
                anyhow::Error::new(e).context(format!("writing prefilter entry {cidr}")),
            )),
        }
    }

    fn remove(&mut self, cidr: Ipv4Net) -> anyhow::Result<()> {
        crate::datapath::maps::removed(self.trie.remove(&key(cidr)), "a prefilter entry")
    }

    fn list(&self) -> anyhow::Result<Vec<Ipv4Net>> {
        read_prefilter_trie(&self.trie)
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

fn read_prefilter_trie(
    trie: &LpmTrie<MapData, u32, PrefilterEntry>,
) -> anyhow::Result<Vec<Ipv4Net>> {
    trie.keys()
        .map(|k| {
            let k = k.context("iterating PREFILTER")?;
            let addr = std::net::Ipv4Addr::from(k.data().to_ne_bytes());
            Ipv4Net::new(addr, k.prefix_len() as u8).context("a prefilter key out of range")
        })
        .collect()
}

/// Every entry of the pinned prefilter map (for inspection and metrics).
pub fn read_prefilter(pin_dir: &Path) -> anyhow::Result<Vec<Ipv4Net>> {
    let trie = LpmTrie::try_from(Map::LpmTrie(open_pinned(pin_dir, PREFILTER_MAP)?))?;
    read_prefilter_trie(&trie)
}

/// An in-memory map for tests without privileges.
#[derive(Default)]
pub struct FakePrefilterMap {
    pub entries: std::sync::Arc<Mutex<BTreeSet<Ipv4Net>>>,
    pub capacity: usize,
    /// Fail inserts after this many succeeded (a kernel error mid-batch).
    pub fail_inserts_after: Option<usize>,
    inserts: usize,
}

impl FakePrefilterMap {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }
}

impl PrefilterMap for FakePrefilterMap {
    fn insert(&mut self, cidr: Ipv4Net) -> Result<(), PrefilterError> {
        if self.fail_inserts_after.is_some_and(|n| self.inserts >= n) {
            return Err(PrefilterError::Map(anyhow::anyhow!("injected failure")));
        }
        let mut entries = self.entries.lock().unwrap();
        if !entries.contains(&cidr) && entries.len() >= self.capacity {
            return Err(PrefilterError::Full {
                entries: entries.len(),
                capacity: self.capacity,
                wanted: 1,
            });
        }
        entries.insert(cidr);
        self.inserts += 1;
        Ok(())
    }

    fn remove(&mut self, cidr: Ipv4Net) -> anyhow::Result<()> {
        self.entries.lock().unwrap().remove(&cidr);
        Ok(())
    }

    fn list(&self) -> anyhow::Result<Vec<Ipv4Net>> {
        Ok(self.entries.lock().unwrap().iter().copied().collect())
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    struct Rig {
        dir: tempfile::TempDir,
        entries: Arc<Mutex<BTreeSet<Ipv4Net>>>,
    }

    impl Rig {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
                entries: Arc::default(),
            }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("prefilter.json")
        }

        fn map(&self, capacity: usize) -> FakePrefilterMap {
            FakePrefilterMap {
                entries: self.entries.clone(),
                ..FakePrefilterMap::new(capacity)
            }
        }

        fn open(&self, flags: &[&str], capacity: usize) -> (Prefilter, SyncReport) {
            let flags: Vec<Ipv4Net> = flags.iter().map(|f| net(f)).collect();
            Prefilter::open(
                self.path(),
                OnCorruptState::Fail,
                &flags,
                Box::new(self.map(capacity)),
            )
            .expect("open")
        }

        fn in_map(&self) -> Vec<String> {
            self.entries
                .lock()
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect()
        }
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: AgentConfig,
    }

    fn parse(args: &[&str]) -> Result<AgentConfig, clap::Error> {
        use clap::Parser;
        let base = ["sluice-agent", "--node-name", "n1"];
        Cli::try_parse_from(base.iter().chain(args)).map(|c| c.config)
    }

    #[test]
    fn the_flags_parse_repeated_and_comma_separated() {
        let config = parse(&[]).unwrap();
        assert!(config.prefilter_deny.is_empty());
        assert!(!config.prefilter, "off by default (opt-in, as in Cilium)");
        assert_eq!(
            config.datapath.prefilter_map_size,
            sluice_bpf_common::prefilter::PREFILTER_MAP_SIZE
        );
        let config = parse(&[
            "--prefilter-deny",
            "192.0.2.0/24",
            "--prefilter-deny",
            "198.51.100.7,203.0.113.0/25",
            "--prefilter=false",
            "--prefilter-map-size",
            "128",
        ])
        .unwrap();
        assert_eq!(
            config.prefilter_deny,
            [
                net("192.0.2.0/24"),
                net("198.51.100.7/32"),
                net("203.0.113.0/25")
            ]
        );
        assert!(!config.prefilter);
        assert_eq!(config.datapath.prefilter_map_size, 128);
        assert!(
            config
                .datapath
                .map_sizes()
                .contains(&(sluice_bpf_common::pin::PREFILTER_MAP, 128))
        );
        let Err(err) = parse(&["--prefilter-deny", "10.1.2.3/8"]) else {
            panic!("host bits must be refused");
        };
        let err = err.to_string();
        assert!(
            err.contains("--prefilter-deny") && err.contains("did you mean 10.0.0.0/8"),
            "{err}"
        );
    }

    #[test]
    fn flags_and_api_entries_are_one_list_and_api_entries_persist() {
        let rig = Rig::new();
        let (pf, report) = rig.open(&["198.51.100.0/24"], 16);
        assert_eq!(
            report,
            SyncReport {
                added: 1,
                removed: 0
            }
        );
        let added = pf
            .add(&strings(&[
                "203.0.113.0/24",
                "192.0.2.1",
                "198.51.100.0/24",
            ]))
            .unwrap();
        assert_eq!(
            added,
            vec![
                (net("203.0.113.0/24"), true),
                (net("192.0.2.1/32"), true),
                (net("198.51.100.0/24"), false)
            ]
        );
        assert_eq!(
            rig.in_map(),
            ["192.0.2.1/32", "198.51.100.0/24", "203.0.113.0/24"]
        );
        let listed = pf.list();
        assert_eq!(
            listed[1],
            (net("198.51.100.0/24"), vec![Source::Flag, Source::Api])
        );
        assert_eq!(listed[2], (net("203.0.113.0/24"), vec![Source::Api]));
        drop(pf);

        // A restart without the flag: 198.51.100.0/24 stays, as the API
        // added it too.
        let (pf, report) = rig.open(&[], 16);
        assert_eq!(report, SyncReport::default());
        assert_eq!(pf.list().len(), 3);
        assert_eq!(
            pf.delete(&strings(&["198.51.100.0/24", "10.0.0.0/8"]))
                .unwrap(),
            vec![(net("198.51.100.0/24"), true), (net("10.0.0.0/8"), false)]
        );
        assert_eq!(rig.in_map(), ["192.0.2.1/32", "203.0.113.0/24"]);
        drop(pf);
        let (pf, _) = rig.open(&[], 16);
        assert_eq!(
            pf.list()
                .iter()
                .map(|(c, _)| c.to_string())
                .collect::<Vec<_>>(),
            ["192.0.2.1/32", "203.0.113.0/24"]
        );
    }

    #[test]
    fn a_start_removes_stale_map_entries_and_adds_missing_ones() {
        let rig = Rig::new();
        rig.entries.lock().unwrap().insert(net("10.9.0.0/16"));
        let (pf, report) = rig.open(&["10.1.0.0/16"], 16);
        assert_eq!(
            report,
            SyncReport {
                added: 1,
                removed: 1
            }
        );
        assert_eq!(rig.in_map(), ["10.1.0.0/16"]);
        assert_eq!(pf.list(), vec![(net("10.1.0.0/16"), vec![Source::Flag])]);
    }

    #[test]
    fn flag_entries_cannot_be_deleted_and_nothing_changes() {
        let rig = Rig::new();
        let (pf, _) = rig.open(&["10.1.0.0/16"], 16);
        pf.add(&strings(&["10.2.0.0/16"])).unwrap();
        let err = pf
            .delete(&strings(&["10.2.0.0/16", "10.1.0.0/16"]))
            .expect_err("flag entry");
        assert!(matches!(err, PrefilterError::FromFlag { .. }), "{err}");
        assert!(err.to_string().contains("--prefilter-deny"), "{err}");
        assert_eq!(rig.in_map(), ["10.1.0.0/16", "10.2.0.0/16"]);
    }

    #[test]
    fn an_invalid_cidr_changes_nothing() {
        let rig = Rig::new();
        let (pf, _) = rig.open(&[], 16);
        let err = pf
            .add(&strings(&["10.2.0.0/16", "10.3.0.1/16"]))
            .expect_err("host bits");
        assert!(err.to_string().contains("10.3.0.1/16"), "{err}");
        assert!(rig.in_map().is_empty());
        assert!(!rig.path().exists(), "no state written");
        assert!(pf.add(&[]).is_err(), "an empty request is an error");
    }

    #[test]
    fn a_full_map_is_a_clear_error_and_changes_nothing() {
        let rig = Rig::new();
        let (pf, _) = rig.open(&["10.1.0.0/16"], 3);
        pf.add(&strings(&["10.2.0.0/16"])).unwrap();
        let err = pf
            .add(&strings(&["10.3.0.0/16", "10.4.0.0/16"]))
            .expect_err("full");
        assert!(
            matches!(
                err,
                PrefilterError::Full {
                    entries: 2,
                    capacity: 3,
                    wanted: 2
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("full"), "{err}");
        assert_eq!(rig.in_map(), ["10.1.0.0/16", "10.2.0.0/16"]);
        // Re-adding present entries needs no room.
        pf.add(&strings(&["10.1.0.0/16", "10.2.0.0/16"])).unwrap();
        pf.add(&strings(&["10.3.0.0/16"])).unwrap();
    }

    #[test]
    fn a_kernel_failure_mid_batch_rolls_back() {
        let rig = Rig::new();
        let flags: Vec<Ipv4Net> = Vec::new();
        let mut map = rig.map(16);
        map.fail_inserts_after = Some(1);
        let (pf, _) =
            Prefilter::open(rig.path(), OnCorruptState::Fail, &flags, Box::new(map)).unwrap();
        let err = pf
            .add(&strings(&["10.2.0.0/16", "10.3.0.0/16"]))
            .expect_err("injected");
        assert!(err.to_string().contains("injected"), "{err}");
        assert!(rig.in_map().is_empty(), "{:?}", rig.in_map());
        assert!(pf.list().is_empty());
    }

    #[test]
    fn too_many_entries_at_start_are_refused() {
        let rig = Rig::new();
        let flags = [net("10.1.0.0/16"), net("10.2.0.0/16")];
        let err = Prefilter::open(
            rig.path(),
            OnCorruptState::Fail,
            &flags,
            Box::new(rig.map(1)),
        )
        .err()
        .expect("over capacity");
        assert!(err.to_string().contains("full"), "{err}");
    }

    #[test]
    fn a_corrupt_state_file_fails_or_starts_fresh() {
        let rig = Rig::new();
        std::fs::write(rig.path(), br#"{"cidrs": ["10.1.2.3/8"]}"#).unwrap();
        let flags: Vec<Ipv4Net> = Vec::new();
        let err = Prefilter::open(
            rig.path(),
            OnCorruptState::Fail,
            &flags,
            Box::new(rig.map(4)),
        )
        .err()
        .expect("invalid entry");
        assert!(err.to_string().contains("10.1.2.3/8"), "{err}");
        let (pf, _) = Prefilter::open(
            rig.path(),
            OnCorruptState::StartFresh,
            &flags,
            Box::new(rig.map(4)),
        )
        .unwrap();
        assert!(pf.list().is_empty());
    }
}
