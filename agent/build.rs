//! Builds the eBPF programs (`bpf/programs`) for `bpfel-unknown-none` and
//! leaves the object in `OUT_DIR` for `include_bytes_aligned!`.
//!
//! The eBPF side is compiled by Debian's `rustc-web` (sysroot `/usr`): it is
//! the compiler that ships `core`'s sources (`rust-web-src`), which
//! `-Z build-std=core` needs, and its LLVM matches bpf-linker's. It is a
//! stable compiler, so `RUSTC_BOOTSTRAP=1` is set for that nested build only
//! (this process's environment is inherited by the nested cargo alone).
//! `SLUICE_BPF_TOOLCHAIN` overrides the toolchain (anything `rustup run`
//! accepts).

use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=SLUICE_BPF_TOOLCHAIN");
    let toolchain = std::env::var("SLUICE_BPF_TOOLCHAIN").unwrap_or_else(|_| "/usr".into());
    // SAFETY: the build script is single-threaded at this point.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    let programs = Package {
        name: "sluice-bpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf/programs"),
        ..Default::default()
    };
    aya_build::build_ebpf([programs], Toolchain::Custom(&toolchain))
}
