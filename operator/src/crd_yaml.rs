//! CRD YAML from the Rust types (what `crdgen` prints and the chart ships).

use kube::ResourceExt;

/// `(file name, YAML)` per CRD, in [`sluice_crds::every_crd`] order; the
/// file name is the CRD's name (`<plural>.<group>.yaml`).
pub fn render() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    sluice_crds::every_crd()
        .into_iter()
        .map(|crd| {
            let yaml = serde_yaml::to_string(&crd)?;
            Ok((format!("{}.yaml", crd.name_any()), yaml))
        })
        .collect()
}

/// Every CRD as one multi-document YAML stream.
pub fn render_all() -> Result<String, serde_yaml::Error> {
    Ok(render()?
        .into_iter()
        .map(|(_, yaml)| format!("---\n{yaml}"))
        .collect())
}
