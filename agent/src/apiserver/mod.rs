//! What a Kubernetes API server does to an object before storing it, for the
//! sources that stand in for one (the `files` source, hence the local mesh,
//! and `sluice mesh apply`).
//!
//! With `--source kubernetes` the real API server has already done all of
//! this; objects read from manifests must come out the same, or policies that
//! rely on a platform guarantee (e.g. selecting a namespace by
//! `kubernetes.io/metadata.name`) silently match nothing, and an object the
//! API server would refuse gets half-way into the datapath. docs/apiserver.md
//! lists the rules.

pub mod defaults;
pub mod field;
pub mod validate;

pub use defaults::apply_defaults;
pub use field::{FieldError, Invalid};
pub use validate::{check_schema, namespace_not_found, validate};
