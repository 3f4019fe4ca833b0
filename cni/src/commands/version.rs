//! VERSION: needs no config; lists every spec version supported.

pub fn run() -> String {
    crate::result::version_info()
}
