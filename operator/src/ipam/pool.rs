//! The pod CIDR pool: pure allocation logic, no I/O.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("node CIDR size /{size} does not fit pool {pool} (need {min}..=30)")]
    BadSize { pool: Ipv4Net, size: u8, min: u8 },
    #[error("pod CIDR pool {pool} has no free /{size} left")]
    Exhausted { pool: Ipv4Net, size: u8 },
    #[error("{cidr} of node {node} is not a /{size} inside pool {pool}")]
    OutsidePool {
        node: String,
        cidr: Ipv4Net,
        pool: Ipv4Net,
        size: u8,
    },
    #[error("{cidr} is recorded for both {first} and {second}")]
    Duplicate {
        cidr: Ipv4Net,
        first: String,
        second: String,
    },
}

/// Which node holds which CIDR. Invariant: `by_node` and `by_cidr` are
/// inverse maps, so no CIDR has two owners.
#[derive(Clone, Debug)]
pub struct CidrPool {
    pool: Ipv4Net,
    size: u8,
    by_node: BTreeMap<String, Ipv4Net>,
    by_cidr: BTreeMap<Ipv4Net, String>,
}

impl CidrPool {
    /// A pool handing out `/size` blocks of `pool`. Sizes above /30 leave no
    /// room for a gateway and pods.
    pub fn new(pool: Ipv4Net, size: u8) -> Result<Self, PoolError> {
        let pool = pool.trunc();
        if size < pool.prefix_len() || size > 30 {
            return Err(PoolError::BadSize {
                pool,
                size,
                min: pool.prefix_len(),
            });
        }
        Ok(Self {
            pool,
            size,
            by_node: BTreeMap::new(),
            by_cidr: BTreeMap::new(),
        })
    }

    pub fn pool(&self) -> Ipv4Net {
        self.pool
    }

    /// How many node CIDRs the pool holds.
    pub fn capacity(&self) -> u64 {
        1u64 << (self.size - self.pool.prefix_len())
    }

    pub fn in_use(&self) -> usize {
        self.by_node.len()
    }

    pub fn get(&self, node: &str) -> Option<Ipv4Net> {
        self.by_node.get(node).copied()
    }

    /// Records an allocation found on an existing object (startup).
    pub fn restore(&mut self, node: &str, cidr: Ipv4Net) -> Result<(), PoolError> {
        if cidr.prefix_len() != self.size || !self.pool.contains(&cidr) || cidr.trunc() != cidr {
            return Err(PoolError::OutsidePool {
                node: node.to_owned(),
                cidr,
                pool: self.pool,
                size: self.size,
            });
        }
        if let Some(owner) = self.by_cidr.get(&cidr)
            && owner != node
        {
            return Err(PoolError::Duplicate {
                cidr,
                first: owner.clone(),
                second: node.to_owned(),
            });
        }
        self.release(node);
        self.by_node.insert(node.to_owned(), cidr);
        self.by_cidr.insert(cidr, node.to_owned());
        Ok(())
    }

    /// The node's CIDR: the one it holds, else the lowest free one.
    pub fn allocate(&mut self, node: &str) -> Result<Ipv4Net, PoolError> {
        if let Some(cidr) = self.get(node) {
            return Ok(cidr);
        }
        let free = self
            .pool
            .subnets(self.size)
            .map_err(|_| PoolError::BadSize {
                pool: self.pool,
                size: self.size,
                min: self.pool.prefix_len(),
            })?
            .find(|cidr| !self.by_cidr.contains_key(cidr))
            .ok_or(PoolError::Exhausted {
                pool: self.pool,
                size: self.size,
            })?;
        self.by_node.insert(node.to_owned(), free);
        self.by_cidr.insert(free, node.to_owned());
        Ok(free)
    }

    /// Frees the node's CIDR; returns it if the node held one.
    pub fn release(&mut self, node: &str) -> Option<Ipv4Net> {
        let cidr = self.by_node.remove(node)?;
        self.by_cidr.remove(&cidr);
        Some(cidr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    fn pool(cidr: &str, size: u8) -> CidrPool {
        CidrPool::new(net(cidr), size).expect("pool")
    }

    #[test]
    fn allocates_lowest_free_block_idempotently() {
        let mut p = pool("10.244.0.0/16", 24);
        assert_eq!(p.capacity(), 256);
        assert_eq!(p.allocate("a"), Ok(net("10.244.0.0/24")));
        assert_eq!(p.allocate("b"), Ok(net("10.244.1.0/24")));
        assert_eq!(p.allocate("a"), Ok(net("10.244.0.0/24")));
        assert_eq!(p.in_use(), 2);
    }

    #[test]
    fn released_blocks_are_reused_lowest_first() {
        let mut p = pool("10.244.0.0/16", 24);
        for node in ["a", "b", "c"] {
            p.allocate(node).expect("free block");
        }
        assert_eq!(p.release("b"), Some(net("10.244.1.0/24")));
        assert_eq!(p.release("b"), None);
        assert_eq!(p.allocate("d"), Ok(net("10.244.1.0/24")));
        assert_eq!(p.allocate("e"), Ok(net("10.244.3.0/24")));
    }

    #[test]
    fn exhaustion_is_an_error_not_a_duplicate() {
        let mut p = pool("10.0.0.0/30", 30);
        assert_eq!(p.capacity(), 1);
        p.allocate("a").expect("one block");
        assert!(matches!(p.allocate("b"), Err(PoolError::Exhausted { .. })));
    }

    #[test]
    fn restore_keeps_recorded_blocks_and_skips_them() {
        let mut p = pool("10.244.0.0/16", 24);
        p.restore("old", net("10.244.0.0/24")).expect("restore");
        p.restore("other", net("10.244.2.0/24")).expect("restore");
        assert_eq!(p.allocate("new"), Ok(net("10.244.1.0/24")));
        assert_eq!(p.allocate("newer"), Ok(net("10.244.3.0/24")));
        assert_eq!(p.allocate("old"), Ok(net("10.244.0.0/24")));
    }

    #[test]
    fn restore_rejects_duplicates_and_foreign_blocks() {
        let mut p = pool("10.244.0.0/16", 24);
        p.restore("a", net("10.244.5.0/24")).expect("restore");
        assert!(matches!(
            p.restore("b", net("10.244.5.0/24")),
            Err(PoolError::Duplicate { .. })
        ));
        for bad in ["10.245.0.0/24", "10.244.0.0/25", "10.244.0.1/24"] {
            assert!(
                matches!(p.restore("c", net(bad)), Err(PoolError::OutsidePool { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn sizes_outside_the_pool_are_rejected() {
        assert!(CidrPool::new(net("10.244.0.0/16"), 15).is_err());
        assert!(CidrPool::new(net("10.244.0.0/16"), 31).is_err());
        assert!(CidrPool::new(net("10.244.0.0/16"), 16).is_ok());
    }
}
