//! Just enough X.509 to tell whether a PEM certificate is currently valid:
//! base64, a DER walk to `tbsCertificate.validity`, and UTC time comparison.

use std::time::{SystemTime, UNIX_EPOCH};

/// Standard base64 (padding and whitespace ignored); `None` on a bad character.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
    {
        let value = ALPHABET.iter().position(|&a| a == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

/// The DER of the first `CERTIFICATE` block of a PEM text.
fn first_certificate_der(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    decode_base64(&pem[start..end])
}

/// One DER element: (tag, contents, rest).
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// `YYYYMMDDHHMMSS` from a UTCTime (0x17) or GeneralizedTime (0x18).
fn der_time(tag: u8, contents: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(contents).ok()?.trim_end_matches('Z');
    match tag {
        0x17 if text.len() >= 12 => {
            let yy: u32 = text[..2].parse().ok()?;
            let century = if yy < 50 { "20" } else { "19" };
            Some(format!("{century}{}", &text[..12]))
        }
        0x18 if text.len() >= 14 => Some(text[..14].to_string()),
        _ => None,
    }
}

/// (notBefore, notAfter) as `YYYYMMDDHHMMSS`.
fn validity(der: &[u8]) -> Option<(String, String)> {
    let (_, cert, _) = element(der)?;
    let (_, tbs, _) = element(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    for _ in 0..3 {
        // serialNumber, signature, issuer
        rest = element(rest)?.2;
    }
    let (_, validity, _) = element(rest)?;
    let (t1, c1, more) = element(validity)?;
    let (t2, c2, _) = element(more)?;
    Some((der_time(t1, c1)?, der_time(t2, c2)?))
}

/// Current UTC time as `YYYYMMDDHHMMSS`.
fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `true` when the PEM text holds a certificate whose validity period includes now.
pub fn certificate_is_current(pem: &str) -> bool {
    let Some((not_before, not_after)) = first_certificate_der(pem).as_deref().and_then(validity)
    else {
        return false;
    };
    let now = now_utc();
    not_before <= now && now <= not_after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert!(decode_base64("a$b").is_none());
    }

    #[test]
    fn reads_der_times() {
        assert_eq!(der_time(0x17, b"250101120000Z").unwrap(), "20250101120000");
        assert_eq!(der_time(0x17, b"991231235959Z").unwrap(), "19991231235959");
        assert_eq!(
            der_time(0x18, b"20500101000000Z").unwrap(),
            "20500101000000"
        );
    }

    #[test]
    fn now_is_a_plausible_timestamp() {
        let now = now_utc();
        assert_eq!(now.len(), 14);
        assert!(now.as_str() > "20240101000000");
    }

    #[test]
    fn garbage_is_not_a_current_certificate() {
        assert!(!certificate_is_current("not a certificate"));
        assert!(!certificate_is_current(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ));
    }
}
