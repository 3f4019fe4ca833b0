//! Ports as LPM prefixes of the policy key: protocol numbers, port ranges
//! split into aligned power-of-two blocks.

use sluice_bpf_common::policy::{POLICY_PREFIX_FIXED_BITS, POLICY_PREFIX_WITH_PROTO_BITS};

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_SCTP: u8 = 132;

/// The IP protocol number of a policy protocol name (validated earlier;
/// absent means TCP, as in Kubernetes).
pub fn protocol_number(name: Option<&str>) -> Option<u8> {
    match name.unwrap_or("TCP") {
        "TCP" => Some(PROTO_TCP),
        "UDP" => Some(PROTO_UDP),
        "SCTP" => Some(PROTO_SCTP),
        _ => None,
    }
}

/// What part of the (protocol, port) space an entry covers, as an LPM
/// prefix: every protocol, one protocol, or an aligned port block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortMatch {
    /// 0 when every protocol matches.
    pub proto: u8,
    /// First port of the block (0 when the block is the whole protocol).
    pub port: u16,
    /// LPM bits: [`POLICY_PREFIX_FIXED_BITS`] (any protocol) up to
    /// `POLICY_PREFIX_FULL_BITS` (one port).
    pub prefix_len: u32,
}

impl PortMatch {
    pub const ANY: PortMatch = PortMatch {
        proto: 0,
        port: 0,
        prefix_len: POLICY_PREFIX_FIXED_BITS,
    };

    pub fn protocol(proto: u8) -> PortMatch {
        PortMatch {
            proto,
            port: 0,
            prefix_len: POLICY_PREFIX_WITH_PROTO_BITS,
        }
    }

    /// Whether every (protocol, port) `other` covers is covered by `self`.
    pub fn covers(&self, other: &PortMatch) -> bool {
        if self.prefix_len > other.prefix_len {
            return false;
        }
        if self.prefix_len <= POLICY_PREFIX_FIXED_BITS {
            return true;
        }
        if self.proto != other.proto {
            return false;
        }
        let port_bits = self.prefix_len - POLICY_PREFIX_WITH_PROTO_BITS;
        port_bits == 0 || (self.port ^ other.port) >> (16 - port_bits) == 0
    }

    /// Whether a packet of `proto` to `port` falls in this match.
    pub fn contains(&self, proto: u8, port: u16) -> bool {
        self.covers(&PortMatch {
            proto,
            port,
            prefix_len: POLICY_PREFIX_WITH_PROTO_BITS + 16,
        })
    }
}

/// Splits `first..=last` into the fewest aligned power-of-two blocks.
pub fn port_range(proto: u8, first: u16, last: u16) -> Vec<PortMatch> {
    let mut blocks = Vec::new();
    let mut start = u32::from(first);
    let end = u32::from(last);
    while start <= end {
        // The largest block aligned at `start` that stays within the range.
        let mut size_log2 = start.trailing_zeros().min(16);
        while size_log2 > 0 && start + (1 << size_log2) - 1 > end {
            size_log2 -= 1;
        }
        blocks.push(PortMatch {
            proto,
            port: start as u16,
            prefix_len: POLICY_PREFIX_WITH_PROTO_BITS + 16 - size_log2,
        });
        start += 1 << size_log2;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(blocks: &[PortMatch]) -> Vec<(u16, u32)> {
        blocks
            .iter()
            .map(|b| (b.port, 1 << (96 - b.prefix_len)))
            .collect()
    }

    #[test]
    fn ranges_split_into_aligned_blocks() {
        assert_eq!(
            spans(&port_range(PROTO_TCP, 53, 80)),
            [(53, 1), (54, 2), (56, 8), (64, 16), (80, 1)]
        );
        assert_eq!(spans(&port_range(PROTO_TCP, 80, 80)), [(80, 1)]);
        assert_eq!(spans(&port_range(PROTO_TCP, 0, 65535)), [(0, 65536)]);
        assert_eq!(spans(&port_range(PROTO_TCP, 1, 65535)).len(), 16);
        assert_eq!(spans(&port_range(PROTO_TCP, 65534, 65535)), [(65534, 2)]);
    }

    #[test]
    fn blocks_cover_exactly_the_range() {
        for (first, last) in [(53, 84), (1, 1000), (1024, 2047), (7, 9)] {
            let blocks = port_range(PROTO_UDP, first, last);
            for port in 0..=2048u16 {
                let inside = blocks
                    .iter()
                    .filter(|b| b.contains(PROTO_UDP, port))
                    .count();
                let expected = usize::from((first..=last).contains(&port));
                assert_eq!(inside, expected, "{first}-{last} port {port}");
                assert!(!blocks.iter().any(|b| b.contains(PROTO_TCP, port)));
            }
        }
    }

    #[test]
    fn coverage_follows_prefixes() {
        let tcp = PortMatch::protocol(PROTO_TCP);
        let p80 = port_range(PROTO_TCP, 80, 80)[0];
        assert!(PortMatch::ANY.covers(&tcp) && PortMatch::ANY.covers(&p80));
        assert!(tcp.covers(&p80) && !p80.covers(&tcp));
        assert!(!PortMatch::protocol(PROTO_UDP).covers(&p80));
        assert!(port_range(PROTO_TCP, 64, 127)[0].covers(&p80));
        assert_eq!(protocol_number(None), Some(PROTO_TCP));
        assert_eq!(protocol_number(Some("SCTP")), Some(PROTO_SCTP));
    }
}
