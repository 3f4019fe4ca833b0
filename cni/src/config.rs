//! The network configuration on stdin: the spec's standard fields (typed by
//! `rscni-types`) plus Sluice's own, each with its default here.

use std::path::PathBuf;

use rscni_types::{
    types::{Cmd, NetConf},
    version::{PluginInfo, SpecVersion},
};
use serde_json::{Map, Value};

use crate::error::CniError;

pub const DEFAULT_AGENT_SOCKET: &str = sluice_api::DEFAULT_AGENT_SOCKET;
pub const DEFAULT_LOG_FILE: &str = "/var/log/sluice-cni.log";
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Bounds the kernel accepts for an IPv4 link's MTU.
const MTU_RANGE: std::ops::RangeInclusive<u64> = 68..=65535;

/// Sluice's fields; any other non-standard key is a typo worth reporting.
const SLUICE_FIELDS: [&str; 4] = ["agentSocket", "logFile", "logLevel", "mtu"];
const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The standard fields, prevResult and GC's valid attachments included.
    pub net: NetConf,
    /// The version results are rendered in (the config's `cniVersion`).
    pub version: SpecVersion,
    pub agent_socket: PathBuf,
    pub log_file: PathBuf,
    pub log_level: String,
    pub mtu: Option<u32>,
}

/// The versions this plugin speaks, as VERSION reports them.
pub fn plugin_info() -> PluginInfo {
    PluginInfo::default()
}

/// The config's `cniVersion`, if it is one we support: error results echo
/// it when they can.
pub fn declared_version(stdin: &[u8]) -> Option<SpecVersion> {
    let value: Value = serde_json::from_slice(stdin).ok()?;
    let version: SpecVersion = value.get("cniVersion")?.as_str()?.parse().ok()?;
    plugin_info().validate(version).ok().map(|()| version)
}

pub fn parse(stdin: &[u8], cmd: Cmd) -> Result<PluginConfig, CniError> {
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::FailedToDecode(format!(
            "the network configuration on stdin is not valid JSON: {e}"
        ))
    })?;
    let Value::Object(fields) = &value else {
        return Err(CniError::FailedToDecode(
            "the network configuration on stdin must be a JSON object".to_owned(),
        ));
    };
    for required in ["cniVersion", "name", "type"] {
        required_string(fields, required)?;
    }
    let version = negotiate(required_string(fields, "cniVersion")?, cmd)?;
    let net: NetConf = serde_json::from_value(value.clone()).map_err(|e| {
        CniError::InvalidNetworkConfig(format!("invalid network configuration: {e}"))
    })?;
    net.validate_name()?;
    reject_unknown_fields(&net)?;
    Ok(PluginConfig {
        version,
        agent_socket: path_field(fields, "agentSocket", DEFAULT_AGENT_SOCKET)?,
        log_file: path_field(fields, "logFile", DEFAULT_LOG_FILE)?,
        log_level: log_level(fields)?,
        mtu: mtu(fields)?,
        net,
    })
}

fn required_string<'a>(fields: &'a Map<String, Value>, key: &str) -> Result<&'a str, CniError> {
    match fields.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None => Err(CniError::InvalidNetworkConfig(format!(
            "missing required field `{key}` in the network configuration"
        ))),
        Some(other) => Err(CniError::InvalidNetworkConfig(format!(
            "field `{key}` must be a string, got {other}"
        ))),
    }
}

fn negotiate(declared: &str, cmd: Cmd) -> Result<SpecVersion, CniError> {
    let info = plugin_info();
    let supported = || {
        info.supported_versions()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let version: SpecVersion = declared.parse().map_err(|_| {
        CniError::IncompatibleVersion(format!(
            "cniVersion {declared:?} is not a version; sluice-cni supports {}",
            supported()
        ))
    })?;
    if info.validate(version).is_err() {
        return Err(CniError::IncompatibleVersion(format!(
            "cniVersion {declared:?} is not supported; sluice-cni supports {}",
            supported()
        )));
    }
    version.allows(cmd).map_err(|_| {
        CniError::IncompatibleVersion(format!(
            "{} needs cniVersion {} or later, the config says {declared}",
            <&str>::from(cmd),
            if cmd == Cmd::Check { "0.4.0" } else { "1.1.0" }
        ))
    })?;
    Ok(version)
}

fn reject_unknown_fields(net: &NetConf) -> Result<(), CniError> {
    let mut unknown: Vec<&str> = net
        .custom
        .keys()
        .map(String::as_str)
        .filter(|k| !SLUICE_FIELDS.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    Err(CniError::InvalidNetworkConfig(format!(
        "unknown field(s) {} in the sluice-cni config; Sluice's own fields are {} \
         (standard CNI fields are accepted too)",
        unknown
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", "),
        SLUICE_FIELDS.join(", ")
    )))
}

fn path_field(fields: &Map<String, Value>, key: &str, default: &str) -> Result<PathBuf, CniError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(PathBuf::from(default)),
        Some(Value::String(s)) if s.starts_with('/') => Ok(PathBuf::from(s)),
        Some(other) => Err(CniError::InvalidNetworkConfig(format!(
            "`{key}` must be an absolute path, got {other}"
        ))),
    }
}

fn log_level(fields: &Map<String, Value>) -> Result<String, CniError> {
    match fields.get("logLevel") {
        None | Some(Value::Null) => Ok(DEFAULT_LOG_LEVEL.to_owned()),
        Some(Value::String(s)) if LOG_LEVELS.contains(&s.to_ascii_lowercase().as_str()) => {
            Ok(s.to_ascii_lowercase())
        }
        Some(other) => Err(CniError::InvalidNetworkConfig(format!(
            "`logLevel` must be one of {}, got {other}",
            LOG_LEVELS.join(", ")
        ))),
    }
}

fn mtu(fields: &Map<String, Value>) -> Result<Option<u32>, CniError> {
    match fields.get("mtu") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|m| MTU_RANGE.contains(&m)) => {
            Ok(n.as_u64().and_then(|m| u32::try_from(m).ok()))
        }
        Some(other) => Err(CniError::InvalidNetworkConfig(format!(
            "`mtu` must be an integer between {} and {}, got {other}",
            MTU_RANGE.start(),
            MTU_RANGE.end()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_json(v: &Value, cmd: Cmd) -> Result<PluginConfig, CniError> {
        parse(v.to_string().as_bytes(), cmd)
    }

    fn minimal() -> Value {
        json!({"cniVersion": "1.0.0", "name": "sluice", "type": "sluice-cni"})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = minimal();
        v[key] = value;
        v
    }

    fn without(key: &str) -> Value {
        let mut v = minimal();
        v.as_object_mut().unwrap().remove(key);
        v
    }

    fn code_of(v: &Value, cmd: Cmd) -> u32 {
        u32::from(&parse_json(v, cmd).expect_err("must be rejected"))
    }

    #[test]
    fn minimal_config_takes_the_defaults() {
        let c = parse_json(&minimal(), Cmd::Add).unwrap();
        assert_eq!(c.version, SpecVersion::new(1, 0, 0));
        assert_eq!(c.agent_socket, PathBuf::from("/run/sluice/agent.sock"));
        assert_eq!(c.log_file, PathBuf::from("/var/log/sluice-cni.log"));
        assert_eq!(c.log_level, "info");
        assert_eq!(c.mtu, None);
        assert!(c.net.prev_result.is_none());
    }

    #[test]
    fn sluice_fields_are_read() {
        let v = json!({
            "cniVersion": "1.1.0", "name": "sluice", "type": "sluice-cni",
            "agentSocket": "/tmp/a.sock", "logFile": "/tmp/cni.log",
            "logLevel": "DEBUG", "mtu": 1400,
        });
        let c = parse_json(&v, Cmd::Add).unwrap();
        assert_eq!(c.agent_socket, PathBuf::from("/tmp/a.sock"));
        assert_eq!(c.log_file, PathBuf::from("/tmp/cni.log"));
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.mtu, Some(1400));
    }

    #[test]
    fn standard_fields_are_accepted() {
        let v = json!({
            "cniVersion": "1.0.0", "name": "sluice", "type": "sluice-cni",
            "args": {"cni": {"x": 1}}, "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": []}, "dns": {"nameservers": ["10.250.0.10"]},
            "ipam": {"type": "host-local"}, "ipMasq": false,
            "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
                "ips": [{"address": "10.250.0.5/24", "interface": 0}]},
        });
        let c = parse_json(&v, Cmd::Add).unwrap();
        assert_eq!(c.net.dns.unwrap().nameservers, ["10.250.0.10"]);
        assert_eq!(c.net.prev_result.unwrap().ips.len(), 1);
    }

    #[test]
    fn malformed_json_is_code_6() {
        assert_eq!(
            u32::from(&parse(b"{\"cniVersion\": ", Cmd::Add).unwrap_err()),
            6
        );
        assert_eq!(u32::from(&parse(b"", Cmd::Add).unwrap_err()), 6);
        assert_eq!(u32::from(&parse(b"[1,2]", Cmd::Add).unwrap_err()), 6);
    }

    #[test]
    fn missing_required_fields_are_code_7() {
        for key in ["cniVersion", "name", "type"] {
            let err = parse_json(&without(key), Cmd::Add).unwrap_err();
            assert_eq!(u32::from(&err), 7, "{key}");
            assert!(err.details().contains(key), "{key}: {err}");
        }
        assert_eq!(code_of(&with("name", json!("")), Cmd::Add), 7);
        assert_eq!(code_of(&with("type", json!(5)), Cmd::Add), 7);
        assert_eq!(code_of(&with("name", json!("bad name!")), Cmd::Add), 7);
    }

    #[test]
    fn unknown_field_is_code_7_and_named() {
        let err = parse_json(&with("agentSockett", json!("/x")), Cmd::Add).unwrap_err();
        assert_eq!(u32::from(&err), 7);
        assert!(err.details().contains("`agentSockett`"), "{err}");
        assert!(err.details().contains("agentSocket"), "{err}");
    }

    #[test]
    fn bad_sluice_field_values_are_code_7() {
        assert_eq!(code_of(&with("mtu", json!(20)), Cmd::Add), 7);
        assert_eq!(code_of(&with("mtu", json!("1500")), Cmd::Add), 7);
        assert_eq!(code_of(&with("mtu", json!(-1)), Cmd::Add), 7);
        assert_eq!(code_of(&with("logLevel", json!("loud")), Cmd::Add), 7);
        assert_eq!(
            code_of(&with("agentSocket", json!("relative.sock")), Cmd::Add),
            7
        );
        assert_eq!(code_of(&with("logFile", json!(3)), Cmd::Add), 7);
        assert_eq!(code_of(&with("dns", json!("8.8.8.8")), Cmd::Add), 7);
    }

    #[test]
    fn unsupported_versions_are_code_1() {
        for v in ["0.1.0", "0.2.0", "2.0.0", "1.2.0", "banana"] {
            let err = parse_json(&with("cniVersion", json!(v)), Cmd::Add).unwrap_err();
            assert_eq!(u32::from(&err), 1, "{v}");
            assert!(
                err.details().contains("1.1.0"),
                "lists the supported: {err}"
            );
        }
    }

    #[test]
    fn every_supported_version_parses() {
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            let c = parse_json(&with("cniVersion", json!(v)), Cmd::Add).unwrap();
            assert_eq!(c.version.to_string(), v);
        }
    }

    #[test]
    fn commands_newer_than_the_config_are_code_1() {
        assert_eq!(code_of(&with("cniVersion", json!("0.3.1")), Cmd::Check), 1);
        assert_eq!(code_of(&with("cniVersion", json!("1.0.0")), Cmd::Status), 1);
        assert_eq!(code_of(&with("cniVersion", json!("1.0.0")), Cmd::Gc), 1);
        assert!(parse_json(&with("cniVersion", json!("0.4.0")), Cmd::Check).is_ok());
        assert!(parse_json(&with("cniVersion", json!("1.1.0")), Cmd::Gc).is_ok());
    }

    #[test]
    fn gc_reads_valid_attachments() {
        let mut v = with("cniVersion", json!("1.1.0"));
        v["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
        let c = parse_json(&v, Cmd::Gc).unwrap();
        let keep = c.net.valid_attachments.unwrap();
        assert_eq!(keep[0].container_id, "c1");
        assert_eq!(keep[0].ifname, "eth0");
    }

    #[test]
    fn declared_version_only_when_supported() {
        assert_eq!(
            declared_version(minimal().to_string().as_bytes()),
            Some(SpecVersion::new(1, 0, 0))
        );
        assert_eq!(declared_version(b"{\"cniVersion\":\"9.9.9\"}"), None);
        assert_eq!(declared_version(b"garbage"), None);
    }
}
