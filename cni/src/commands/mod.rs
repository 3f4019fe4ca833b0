//! One module per CNI command. Each takes the parsed config (and, for the
//! container-scoped ones, the environment) and returns what goes on stdout.

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;
pub mod version;
