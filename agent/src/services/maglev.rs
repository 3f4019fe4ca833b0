//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table
//! of prime size M in which every backend owns about M/N entries, and
//! which changes little when a backend comes or goes.

/// FNV-1a, 64 bit: a stable hash of a backend's name, the same in every
/// agent build (std's hasher makes no such promise).
fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The table for `backends` (each named by a stable string, e.g.
/// "10.244.1.5:8080/6"), as indexes into `backends`. `size` must be a
/// prime larger than the number of backends; empty input gives an empty
/// table.
pub fn table(backends: &[String], size: usize) -> Vec<usize> {
    if backends.is_empty() || size == 0 {
        return Vec::new();
    }
    let m = size as u64;
    let permutation: Vec<(u64, u64)> = backends
        .iter()
        .map(|name| {
            let offset = fnv1a(name.as_bytes(), 0) % m;
            let skip = fnv1a(name.as_bytes(), 0x5bd1_e995) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; backends.len()];
    let mut entries: Vec<Option<usize>> = vec![None; size];
    let mut filled = 0;
    loop {
        for (i, (offset, skip)) in permutation.iter().enumerate() {
            let mut slot = ((offset + next[i] * skip) % m) as usize;
            while entries[slot].is_some() {
                next[i] += 1;
                slot = ((offset + next[i] * skip) % m) as usize;
            }
            entries[slot] = Some(i);
            next[i] += 1;
            filled += 1;
            if filled == size {
                return entries.into_iter().map(|e| e.unwrap_or(0)).collect();
            }
        }
    }
}

/// Whether `n` is prime (table sizes must be).
pub fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.244.1.{i}:8080/6")).collect()
    }

    #[test]
    fn every_backend_gets_a_near_equal_share() {
        let table = table(&names(10), 16_381);
        assert_eq!(table.len(), 16_381);
        for b in 0..10 {
            let share = table.iter().filter(|&&e| e == b).count();
            assert!((1_600..=1_677).contains(&share), "backend {b}: {share}");
        }
    }

    #[test]
    fn removing_one_backend_moves_few_entries_of_the_others() {
        let before_names = names(10);
        let before = table(&before_names, 16_381);
        let after_names: Vec<String> = before_names[..9].to_vec();
        let after = table(&after_names, 16_381);
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != 9 && before_names[**b] != after_names[**a])
            .count();
        // Entries of the removed backend must move; of the others only a
        // small fraction does (Maglev's bound is not zero).
        assert!(
            moved < 16_381 / 50,
            "{moved} entries of surviving backends moved"
        );
        assert!(after.iter().all(|&e| e < 9));
    }

    #[test]
    fn the_table_is_stable_across_runs_and_order_of_computation() {
        assert_eq!(table(&names(3), 251), table(&names(3), 251));
        assert!(table(&[], 251).is_empty());
    }

    #[test]
    fn primes() {
        assert!(is_prime(16_381));
        assert!(is_prime(251));
        assert!(!is_prime(16_383));
        assert!(!is_prime(1));
    }
}
