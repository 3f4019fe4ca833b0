//! Deterministic names, so DEL can find what ADD created even when the
//! runtime gives it nothing but the container id and interface name.

use sha2::{Digest, Sha256};

/// Host side of a pod's veth: `lxc` + 11 hex chars of a hash of the
/// attachment (14 chars, under the kernel's 15-char limit).
pub fn host_veth(container_id: &str, ifname: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(container_id.as_bytes());
    // A separator, so ("ab", "c") and ("a", "bc") hash differently.
    hasher.update([0]);
    hasher.update(ifname.as_bytes());
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("lxc{}", &hex[..11])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_short_and_distinct() {
        let a = host_veth("c0ffee", "eth0");
        assert_eq!(a, host_veth("c0ffee", "eth0"));
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("lxc"));
        assert!(a[3..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, host_veth("c0ffee", "eth1"));
        assert_ne!(a, host_veth("c0ffef", "eth0"));
        assert_ne!(host_veth("ab", "c"), host_veth("a", "bc"));
    }
}
