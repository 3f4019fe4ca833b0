//! The CNI plugin's outside input: the network configuration on stdin (with
//! `prevResult`), `CNI_ARGS` and `CNI_IFNAME`, for every command.
//!
//! Input layout: line 1 is `CNI_ARGS`, line 2 `CNI_IFNAME`, the rest stdin.
//! Invariants beyond "no panic": every error has a code from the spec's
//! table (1-7, 11) or Sluice's own (100-102), and renders as the spec's
//! error JSON; a parsed `CNI_ARGS` value is a substring of the input; a
//! chained plugin's pod side names an interface of the prevResult; an
//! accepted prevResult renders back in the config's version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rscni_types::types::Cmd;
use sluice_cni::{chained, cni_args, config, env, error, result};

const COMMANDS: [Cmd; 5] = [Cmd::Add, Cmd::Del, Cmd::Check, Cmd::Gc, Cmd::Status];

fn assert_spec_error(err: &error::CniError) {
    let code = u32::from(err);
    assert!(
        (1..=7).contains(&code) || code == 11 || (100..=102).contains(&code),
        "error code {code} is neither a well-known CNI code nor one of Sluice's: {err:?}"
    );
    let version = rscni_types::version::SpecVersion::default();
    let rendered: serde_json::Value =
        serde_json::from_str(&error::error_json(version, err)).expect("error JSON parses");
    assert_eq!(
        rendered["code"].as_u64(),
        Some(u64::from(code)),
        "{rendered}"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.splitn(3, |b| *b == b'\n');
    let raw_args = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let ifname = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let stdin = lines.next().unwrap_or_default();

    match cni_args::parse(Some(&raw_args)) {
        Ok(pod) => {
            for value in [&pod.namespace, &pod.name, &pod.uid] {
                assert!(
                    raw_args.contains(value.as_str()),
                    "{value:?} not in {raw_args:?}"
                );
            }
        }
        Err(e) => assert_spec_error(&e),
    }

    let vars = |name: &str| match name {
        "CNI_COMMAND" => Some("ADD".to_owned()),
        "CNI_CONTAINERID" => Some("fuzz-container".to_owned()),
        "CNI_NETNS" => Some("/run/netns/fuzz".to_owned()),
        "CNI_IFNAME" => Some(ifname.clone()),
        "CNI_ARGS" => Some(raw_args.clone()),
        _ => None,
    };
    if let Err(e) = env::ContainerEnv::read(Cmd::Add, &vars) {
        assert_spec_error(&e);
    }

    let _ = config::declared_version(stdin);
    for cmd in COMMANDS {
        let parsed = match config::parse(stdin, cmd) {
            Ok(parsed) => parsed,
            Err(e) => {
                assert_spec_error(&e);
                continue;
            }
        };
        let Some(prev) = parsed.net.prev_result.clone() else {
            continue;
        };
        match chained::pod_side(&prev, &ifname) {
            Ok(side) => assert!(
                prev.interfaces
                    .iter()
                    .any(|i| i.name == side.pod_interface.name && i.sandbox.is_some()),
                "pod side {side:?} is not a sandboxed interface of the prevResult"
            ),
            Err(e) => assert_spec_error(&e),
        }
        if let Err(e) = result::render(parsed.version, prev) {
            assert_spec_error(&e);
        }
    }
});
