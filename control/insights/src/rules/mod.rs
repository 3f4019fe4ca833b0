//! The rules, one module per category family.

pub mod bp;
pub mod cfg;
pub mod hlt;
pub mod sec;
