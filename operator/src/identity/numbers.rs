//! Identity numbers: pure helpers, no I/O.

use std::collections::BTreeSet;

use sluice_crds::cluster::{FIRST_ALLOCATED_IDENTITY, LAST_CLUSTER_IDENTITY};

/// The lowest allocatable number not in `taken` (below the range agents
/// keep for their node-local CIDR identities).
pub fn lowest_free(taken: &BTreeSet<u32>) -> Option<u32> {
    (FIRST_ALLOCATED_IDENTITY..=LAST_CLUSTER_IDENTITY).find(|n| !taken.contains(n))
}

/// The number a `SluiceIdentity` name stands for, if it is one.
pub fn parse_name(name: &str) -> Option<u32> {
    let number: u32 = name.parse().ok()?;
    // `0256` would alias `256`: only the canonical spelling counts.
    (number.to_string() == name && number >= FIRST_ALLOCATED_IDENTITY).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_fills_holes_first() {
        assert_eq!(lowest_free(&BTreeSet::new()), Some(256));
        assert_eq!(lowest_free(&BTreeSet::from([256, 257, 259])), Some(258));
        let all: BTreeSet<u32> = (256..=61_439).collect();
        assert_eq!(lowest_free(&all), None, "61,440 and up are node-local");
    }

    #[test]
    fn names_are_canonical_allocated_numbers() {
        assert_eq!(parse_name("256"), Some(256));
        assert_eq!(parse_name("0256"), None);
        assert_eq!(parse_name("6"), None);
        assert_eq!(parse_name("web"), None);
    }
}
