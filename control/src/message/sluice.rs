//! Sluice's own message types (`SLC0xxx`), documented in `docs/analyzer.md`.
