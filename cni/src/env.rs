//! The `CNI_*` environment variables, validated per command the way the
//! spec's parameter table requires (missing or invalid → code 4).

use std::path::PathBuf;

use rscni_types::types::{
    CNI_ARGS, CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS, Cmd, ContainerId, InterfaceName,
};

use crate::error::CniError;

/// Reads the command. Unset and empty are the same, as in libcni.
pub fn command(get: &impl Fn(&str) -> Option<String>) -> Result<Cmd, CniError> {
    match non_empty(get, CNI_COMMAND) {
        None => Err(CniError::InvalidEnvValue(
            "CNI_COMMAND is not set: this binary is a CNI plugin, run by the container runtime \
             (or set CNI_COMMAND=VERSION to see the supported spec versions)"
                .to_owned(),
        )),
        Some(raw) => raw.parse(),
    }
}

/// The container-scoped variables of ADD, DEL and CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEnv {
    pub container_id: ContainerId,
    pub ifname: InterfaceName,
    /// Absent only for DEL: containerd's second DEL passes `CNI_NETNS=""`.
    pub netns: Option<PathBuf>,
    pub cni_args: Option<String>,
}

impl ContainerEnv {
    pub fn read(cmd: Cmd, get: &impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let container_id = non_empty(get, CNI_CONTAINERID);
        let ifname = non_empty(get, CNI_IFNAME);
        let netns = non_empty(get, CNI_NETNS).map(PathBuf::from);
        let mut missing = Vec::new();
        if container_id.is_none() {
            missing.push(CNI_CONTAINERID);
        }
        if netns.is_none() && cmd != Cmd::Del {
            missing.push(CNI_NETNS);
        }
        if ifname.is_none() {
            missing.push(CNI_IFNAME);
        }
        if !missing.is_empty() {
            return Err(CniError::InvalidEnvValue(format!(
                "{} requires {} to be set and non-empty",
                <&str>::from(cmd),
                missing.join(", ")
            )));
        }
        let container_id = ContainerId::try_from(container_id.unwrap_or_default())?;
        let ifname = InterfaceName::try_from(ifname.unwrap_or_default())
            .map_err(|e| CniError::InvalidEnvValue(format!("CNI_IFNAME: {}", e.details())))?;
        Ok(Self {
            container_id,
            ifname,
            netns,
            cni_args: non_empty(get, CNI_ARGS),
        })
    }
}

fn non_empty(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn getter(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const FULL: [(&str, &str); 4] = [
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/p1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAME=web"),
    ];

    fn code(err: &CniError) -> u32 {
        u32::from(err)
    }

    #[test]
    fn command_is_required_and_known() {
        assert_eq!(code(&command(&getter(&[])).unwrap_err()), 4);
        assert_eq!(
            code(&command(&getter(&[("CNI_COMMAND", "")])).unwrap_err()),
            4
        );
        let err = command(&getter(&[("CNI_COMMAND", "EXPLODE")])).unwrap_err();
        assert_eq!(code(&err), 4);
        assert!(err.details().contains("EXPLODE"), "{err}");
        for (raw, cmd) in [
            ("ADD", Cmd::Add),
            ("DEL", Cmd::Del),
            ("CHECK", Cmd::Check),
            ("STATUS", Cmd::Status),
            ("GC", Cmd::Gc),
            ("VERSION", Cmd::Version),
        ] {
            assert_eq!(command(&getter(&[("CNI_COMMAND", raw)])).unwrap(), cmd);
        }
    }

    #[test]
    fn add_reads_every_variable() {
        let env = ContainerEnv::read(Cmd::Add, &getter(&FULL)).unwrap();
        assert_eq!(&*env.container_id, "abc123");
        assert_eq!(&*env.ifname, "eth0");
        assert_eq!(env.netns, Some(PathBuf::from("/run/netns/p1")));
        assert_eq!(env.cni_args.as_deref(), Some("K8S_POD_NAME=web"));
    }

    #[test]
    fn each_missing_variable_is_named() {
        for (missing, cmd) in [
            ("CNI_CONTAINERID", Cmd::Add),
            ("CNI_NETNS", Cmd::Add),
            ("CNI_IFNAME", Cmd::Add),
            ("CNI_NETNS", Cmd::Check),
            ("CNI_CONTAINERID", Cmd::Del),
            ("CNI_IFNAME", Cmd::Del),
        ] {
            let vars: Vec<_> = FULL
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = ContainerEnv::read(cmd, &getter(&vars)).unwrap_err();
            assert_eq!(code(&err), 4, "{missing}");
            assert!(err.details().contains(missing), "{missing}: {err}");
        }
    }

    #[test]
    fn del_tolerates_an_empty_netns() {
        let vars: Vec<_> = FULL
            .iter()
            .map(|&(k, v)| if k == "CNI_NETNS" { (k, "") } else { (k, v) })
            .collect();
        let env = ContainerEnv::read(Cmd::Del, &getter(&vars)).unwrap();
        assert_eq!(env.netns, None);
        assert_eq!(
            code(&ContainerEnv::read(Cmd::Add, &getter(&vars)).unwrap_err()),
            4
        );
    }

    #[test]
    fn bad_ifname_and_container_id_are_code_4() {
        for (k, v) in [
            ("CNI_IFNAME", "a-name-far-too-long"),
            ("CNI_IFNAME", "eth/0"),
            ("CNI_CONTAINERID", "-leading-dash"),
        ] {
            let vars: Vec<_> = FULL
                .iter()
                .map(|&(fk, fv)| if fk == k { (fk, v) } else { (fk, fv) })
                .collect();
            let err = ContainerEnv::read(Cmd::Add, &getter(&vars)).unwrap_err();
            assert_eq!(code(&err), 4, "{k}={v}");
        }
    }
}
