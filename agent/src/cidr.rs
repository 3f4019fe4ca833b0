//! The deny list's CIDR syntax, for `--prefilter-deny` (config) and the
//! prefilter's API alike. A leaf module: the flag parser needs neither the
//! prefilter nor the datapath.

use ipnet::Ipv4Net;

/// A deny-list entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {input:?}: {reason}")]
pub struct InvalidCidr {
    pub input: String,
    pub reason: String,
}

/// Parses a deny-list entry: `a.b.c.d/len`, or a bare address for a /32.
/// Host bits must be zero, so a typo cannot widen or narrow the entry
/// silently.
pub fn parse_cidr(input: &str) -> Result<Ipv4Net, InvalidCidr> {
    let invalid = |reason: String| InvalidCidr {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    let net = if text.contains('/') {
        text.parse::<Ipv4Net>()
            .map_err(|_| invalid("expected an IPv4 CIDR like 192.0.2.0/24".into()))?
    } else {
        let addr: std::net::Ipv4Addr = text
            .parse()
            .map_err(|_| invalid("expected an IPv4 CIDR like 192.0.2.0/24".into()))?;
        Ipv4Net::from(addr)
    };
    if net.trunc() != net {
        return Err(invalid(format!(
            "host bits are set; did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

/// clap's value parser for `--prefilter-deny`.
pub fn parse_flag(input: &str) -> Result<Ipv4Net, String> {
    parse_cidr(input).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_strictly() {
        assert_eq!(parse_cidr("192.0.2.0/24").unwrap(), net("192.0.2.0/24"));
        assert_eq!(parse_cidr(" 192.0.2.7 ").unwrap(), net("192.0.2.7/32"));
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap(), net("0.0.0.0/0"));
        for (bad, says) in [
            ("192.0.2.7/24", "did you mean 192.0.2.0/24"),
            ("192.0.2.0/33", "IPv4 CIDR"),
            ("2001:db8::/32", "IPv4 CIDR"),
            ("example.com", "IPv4 CIDR"),
            ("", "IPv4 CIDR"),
        ] {
            let err = parse_cidr(bad).expect_err(bad).to_string();
            assert!(err.contains(says) && err.contains(bad), "{bad}: {err}");
        }
    }
}
