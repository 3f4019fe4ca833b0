//! Writing a desired state into maps that may be full.
//!
//! The policy map has a fixed capacity (`--policy-map-size`). Two ways to
//! hit it, handled differently:
//! - the new state alone needs more entries than the map holds: nothing is
//!   written ([`WriteError::DoesNotFit`]); the maps keep the last state
//!   that fitted, which stays in force, and the sync is retried later;
//! - the new state fits, but the ordered diff writes new entries before it
//!   deletes stale ones (so no traffic both states allow is dropped) and
//!   old + new together do not fit: the state is rewritten from scratch,
//!   freeing the stale entries first. In that fallback, traffic both
//!   states allow through *different* entries may be dropped until the
//!   rewrite finishes (a few map writes).

use std::collections::BTreeSet;

use super::{
    diff::{PolicyMaps, apply, diff, diff_from_unknown, lookup_hints_of},
    state::{DesiredState, ipcache_key},
};

/// Why a state could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Refused before any write: the maps keep the previous state.
    #[error(
        "the policy needs {needed} policy map entries but the map holds {capacity} \
         (raise --policy-map-size); the previous policy stays in force"
    )]
    DoesNotFit { needed: usize, capacity: usize },
    /// A write failed part way: what the maps hold is unknown.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl WriteError {
    /// Whether the maps still hold the state the caller last wrote.
    pub fn left_maps_unchanged(&self) -> bool {
        matches!(self, WriteError::DoesNotFit { .. })
    }
}

/// How a successful write went.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Map operations issued (the last attempt).
    pub ops: usize,
    /// Whether the state was rewritten from scratch.
    pub from_scratch: bool,
    /// Entries removed that no state of ours wanted (an earlier agent's,
    /// or what a failed diff left).
    pub pruned: usize,
}

/// Keys of every entry `state` writes, for pruning everything else.
pub struct KeepSets {
    /// Policy keys as (prefix length, key bytes).
    pub policy: BTreeSet<(u32, [u8; 12])>,
    /// Ipcache keys as (prefix length, address in network order).
    pub ipcache: BTreeSet<(u32, u32)>,
}

impl KeepSets {
    pub fn of(state: &DesiredState) -> Self {
        let policy = state
            .endpoints
            .iter()
            .flat_map(|(ip, ep)| {
                ep.entries.keys().map(move |k| {
                    let key = k.to_bpf(*ip);
                    (key.prefix_len, key.data().bytes())
                })
            })
            .collect();
        let ipcache = state
            .ipcache
            .keys()
            .map(|net| {
                let key = ipcache_key(net);
                (key.prefix_len, key.addr)
            })
            .collect();
        Self { policy, ipcache }
    }
}

/// Policy map entries `state` needs.
pub fn policy_entries(state: &DesiredState) -> usize {
    state.endpoints.values().map(|ep| ep.entries.len()).sum()
}

/// Writes `new` into `maps`, which hold `written` (or, when `None`,
/// anything: an earlier agent's entries, or a write that failed half way).
pub fn write_state(
    maps: &mut impl PolicyMaps,
    written: Option<&DesiredState>,
    new: &DesiredState,
) -> Result<Written, WriteError> {
    if let Some(capacity) = maps.policy_capacity() {
        let needed = policy_entries(new);
        if needed > capacity {
            return Err(WriteError::DoesNotFit { needed, capacity });
        }
    }
    if let Some(old) = written {
        let ops = diff(old, new);
        match apply(&ops, maps) {
            Ok(()) => {
                return Ok(Written {
                    ops: ops.len(),
                    ..Written::default()
                });
            }
            Err(e) => {
                tracing::warn!("policy diff failed ({e:#}); rewriting the policy maps from scratch")
            }
        }
    }
    rewrite(maps, new)
}

/// The first write of an agent, or the fallback after a failed diff: every
/// endpoint's hints invalidated, every entry of `new` written (stale
/// entries freed first if they leave no room), the rest pruned, then the
/// exact hints.
fn rewrite(maps: &mut impl PolicyMaps, new: &DesiredState) -> Result<Written, WriteError> {
    let keep = KeepSets::of(new);
    let ops = diff_from_unknown(new);
    let mut pruned = 0;
    if let Err(e) = apply(&ops, maps) {
        tracing::warn!("writing the policy failed ({e:#}); freeing stale entries and retrying");
        pruned += maps.prune(&keep)?;
        apply(&ops, maps)?;
    }
    pruned += maps.prune(&keep)?;
    // Only now that no stale entry is left may hints hide lookups.
    apply(&lookup_hints_of(new), maps)?;
    Ok(Written {
        ops: ops.len(),
        from_scratch: true,
        pruned,
    })
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, sync::Arc};

    use sluice_bpf_common::policy::{
        DIRECTION_INGRESS, ENDPOINT_F_ENFORCE_INGRESS, POLICY_PREFIX_FULL_BITS, PolicyVerdict,
    };

    use super::*;
    use crate::{
        identity::NumericIdentity,
        policy::{Direction, EndpointPolicy, EntryKey, EntryValue, FakeMaps, PortMatch, evaluate},
    };

    const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);

    /// The address of the peer with identity `id` (in the ipcache).
    fn peer(id: u32) -> Ipv4Addr {
        Ipv4Addr::new(10, 1, (id / 256) as u8, (id % 256) as u8)
    }

    /// `POD` enforces ingress and allows TCP/80 from the peers with
    /// identities `ids`.
    fn allowing(ids: std::ops::Range<u32>) -> DesiredState {
        let entries = ids
            .clone()
            .map(|identity| {
                let key = EntryKey {
                    direction: DIRECTION_INGRESS,
                    identity,
                    ports: PortMatch {
                        proto: 6,
                        port: 80,
                        prefix_len: POLICY_PREFIX_FULL_BITS,
                    },
                };
                let value = EntryValue {
                    verdict: PolicyVerdict::Allow,
                    audit: false,
                    rule: identity,
                };
                (key, value)
            })
            .collect();
        DesiredState {
            endpoints: [(
                POD,
                Arc::new(EndpointPolicy {
                    flags: ENDPOINT_F_ENFORCE_INGRESS,
                    entries,
                }),
            )]
            .into(),
            ipcache: ids
                .map(|id| (peer(id).into(), NumericIdentity::new(id)))
                .collect(),
            ..DesiredState::default()
        }
    }

    fn passes_from(maps: &FakeMaps, id: u32) -> bool {
        evaluate(maps, POD, peer(id), Direction::Ingress, 6, 80)
            .verdict
            .passes()
    }

    #[test]
    fn a_state_larger_than_the_map_is_refused_and_the_old_one_stays_in_force() {
        let mut maps = FakeMaps::with_policy_capacity(4);
        let old = allowing(1000..1003);
        write_state(&mut maps, None, &old).expect("fits");
        let before = maps.clone();

        let err = write_state(&mut maps, Some(&old), &allowing(1000..1010)).unwrap_err();
        assert!(err.left_maps_unchanged());
        assert!(
            err.to_string().contains("needs 10") && err.to_string().contains("holds 4"),
            "{err}"
        );
        assert_eq!(maps, before, "nothing written");
        assert!(passes_from(&maps, 1001));
        assert!(!passes_from(&maps, 1005));
    }

    #[test]
    fn old_and_new_together_too_large_falls_back_to_a_rewrite_that_fits() {
        let mut maps = FakeMaps::with_policy_capacity(4);
        let old = allowing(1000..1004);
        write_state(&mut maps, None, &old).expect("fits");

        // Four new keys: the diff would need eight entries at once.
        let new = allowing(2000..2004);
        let written = write_state(&mut maps, Some(&old), &new).expect("rewritten");
        assert!(written.from_scratch);
        assert_eq!(maps.policy.len(), 4);
        assert!(passes_from(&maps, 2003));
        assert!(!passes_from(&maps, 1000));
    }

    #[test]
    fn a_first_write_over_a_full_map_of_stale_entries_frees_them_and_succeeds() {
        let mut maps = FakeMaps::with_policy_capacity(4);
        write_state(&mut maps, None, &allowing(1000..1004)).expect("fits");
        // A restarted agent: it does not know what the maps hold.
        let written = write_state(&mut maps, None, &allowing(3000..3002)).expect("rewritten");
        assert_eq!(written.pruned, 8, "4 policy + 4 ipcache entries");
        assert_eq!(maps.policy.len(), 2);
        assert!(passes_from(&maps, 3001));
        assert!(!passes_from(&maps, 1001));
    }

    #[test]
    fn without_a_known_capacity_a_failing_write_is_reported_as_unknown_state() {
        let mut maps = FakeMaps {
            fail_policy_writes: true,
            ..FakeMaps::default()
        };
        let err = write_state(&mut maps, None, &allowing(1..3)).unwrap_err();
        assert!(!err.left_maps_unchanged());
    }
}
