//! `crdgen`: prints every Sluice CRD as YAML, from the Rust types.
//!
//!   crdgen                 all CRDs, one multi-document stream on stdout
//!   crdgen --out-dir DIR   one `<name>.yaml` per CRD in DIR (the chart's
//!                          `crds/`; see scripts/gen-crds.sh)
use std::{fs, path::PathBuf};

use anyhow::Context;
use sluice_operator::crd_yaml;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            print!("{}", crd_yaml::render_all()?);
            Ok(())
        }
        [flag, dir] if flag == "--out-dir" => {
            let dir = PathBuf::from(dir);
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, yaml) in crd_yaml::render()? {
                let path = dir.join(name);
                fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        _ => anyhow::bail!("usage: crdgen [--out-dir DIR]"),
    }
}
