//! `CNI_ARGS`: `K=V` pairs separated by `;`. Only the pod identity is read;
//! every other key is tolerated (containerd always sends `IgnoreUnknown=1`
//! plus `K8S_POD_INFRA_CONTAINER_ID`, and other runtimes send other keys).

use crate::error::CniError;

/// The Kubernetes pod a container belongs to; empty fields when the runtime
/// is not Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

pub fn parse(raw: Option<&str>) -> Result<PodRef, CniError> {
    let mut pod = PodRef::default();
    for pair in raw.unwrap_or_default().split(';').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(CniError::InvalidEnvValue(format!(
                "CNI_ARGS: {pair:?} is not a KEY=VALUE pair (pairs are separated by ';')"
            )));
        };
        match key {
            "K8S_POD_NAMESPACE" => value.clone_into(&mut pod.namespace),
            "K8S_POD_NAME" => value.clone_into(&mut pod.name),
            "K8S_POD_UID" => value.clone_into(&mut pod.uid),
            _ => {}
        }
    }
    Ok(pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_containerd_args_in_any_order() {
        let raw = "K8S_POD_UID=1234-5678;IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;\
                   K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_NAME=web-0";
        assert_eq!(
            parse(Some(raw)).unwrap(),
            PodRef {
                namespace: "shop".into(),
                name: "web-0".into(),
                uid: "1234-5678".into(),
            }
        );
    }

    #[test]
    fn absent_or_empty_gives_an_empty_pod() {
        assert_eq!(parse(None).unwrap(), PodRef::default());
        assert_eq!(parse(Some("")).unwrap(), PodRef::default());
        assert_eq!(parse(Some("IgnoreUnknown=1;")).unwrap(), PodRef::default());
    }

    #[test]
    fn unknown_keys_are_tolerated_without_ignore_unknown() {
        let pod = parse(Some("FOO=bar;K8S_POD_NAME=x")).unwrap();
        assert_eq!(pod.name, "x");
    }

    #[test]
    fn values_may_contain_equals() {
        assert_eq!(parse(Some("K8S_POD_NAME=a=b")).unwrap().name, "a=b");
    }

    #[test]
    fn a_pair_without_equals_is_code_4() {
        let err = parse(Some("IgnoreUnknown=1;garbage")).unwrap_err();
        assert_eq!(u32::from(&err), 4);
        assert!(err.details().contains("garbage"), "{err}");
    }
}
