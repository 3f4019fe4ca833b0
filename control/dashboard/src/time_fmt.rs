//! Unix seconds as readable UTC.

use time::OffsetDateTime;

/// `2026-12-07 11:44:42 UTC`, or `never` for 0.
pub fn utc(unix: u64) -> String {
    if unix == 0 {
        return "never".into();
    }
    match OffsetDateTime::from_unix_timestamp(unix as i64) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => unix.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_and_never() {
        assert_eq!(super::utc(0), "never");
        assert_eq!(super::utc(1_796_557_482), "2026-12-06 11:44:42 UTC");
    }
}
