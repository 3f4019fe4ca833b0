//! `scripts/install-cni.sh` (what `make install-cni` runs) against temp
//! dirs: standalone and chained configs, each installed twice to show the
//! second run changes nothing, and the installed binary answers VERSION.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::{Value, json};
use sluice_vmtests::{agent::workspace_binary, require_root};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-cni.sh")
}

struct Dirs {
    _root: tempfile::TempDir,
    bin: PathBuf,
    conf: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::Builder::new()
        .prefix("slt-install-")
        .tempdir()
        .expect("temp dir");
    // Neither exists yet: the installer creates them.
    let bin = root.path().join("opt/cni/bin");
    let conf = root.path().join("etc/cni/net.d");
    Dirs {
        _root: root,
        bin,
        conf,
    }
}

fn install(dirs: &Dirs, extra: &[&str]) -> Output {
    Command::new("bash")
        .arg(script())
        .arg("--binary")
        .arg(workspace_binary("sluice-cni", "SLUICE_CNI_BIN"))
        .arg("--bin-dir")
        .arg(&dirs.bin)
        .arg("--conf-dir")
        .arg(&dirs.conf)
        .args(extra)
        .output()
        .expect("run install-cni.sh")
}

/// Installs and returns the installer's stdout, failing on error.
fn install_ok(dirs: &Dirs, extra: &[&str]) -> String {
    let out = install(dirs, extra);
    assert!(
        out.status.success(),
        "install-cni.sh {extra:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn conf_files(dirs: &Dirs) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&dirs.conf)
        .expect("conf dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The installed plugin runs and speaks the versions containerd 1.6 needs.
fn assert_installed_binary_works(dirs: &Dirs) {
    let installed = dirs.bin.join("sluice-cni");
    let original = workspace_binary("sluice-cni", "SLUICE_CNI_BIN");
    assert_eq!(
        std::fs::read(&installed).expect("installed binary"),
        std::fs::read(&original).expect("built binary"),
        "the installed binary is a copy of the build"
    );
    let mut child = Command::new(&installed)
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the installed sluice-cni");
    // The plugin may answer VERSION before reading all of stdin: a broken
    // pipe here is fine, its answer is what counts.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"cniVersion":"1.0.0"}"#);
    let out = child.wait_with_output().expect("VERSION");
    assert!(
        out.status.success(),
        "VERSION failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let version: Value = serde_json::from_slice(&out.stdout).expect("VERSION JSON");
    let supported = version["supportedVersions"].as_array().expect("versions");
    assert!(supported.contains(&json!("1.0.0")), "{version}");
}

#[test]
fn standalone_install_writes_a_containerd_compatible_conflist_idempotently() {
    require_root();
    let dirs = dirs();
    let socket = "/run/sluice-test/agent.sock";
    let first = install_ok(&dirs, &["--mode", "standalone", "--agent-socket", socket]);
    assert!(first.contains("changed"), "{first}");
    assert_eq!(conf_files(&dirs), ["10-sluice.conflist"]);
    let path = dirs.conf.join("10-sluice.conflist");
    let written = read_json(&path);
    assert_eq!(
        written,
        json!({
            "cniVersion": "1.0.0",
            "name": "sluice",
            "plugins": [{"type": "sluice-cni", "agentSocket": socket}],
        })
    );
    assert_installed_binary_works(&dirs);

    // Again: nothing changes, not even the bytes.
    let bytes = std::fs::read(&path).expect("conflist");
    let second = install_ok(&dirs, &["--mode", "standalone", "--agent-socket", socket]);
    assert!(
        second.lines().all(|l| l.ends_with("unchanged")),
        "second run:\n{second}"
    );
    assert_eq!(std::fs::read(&path).expect("conflist"), bytes);
    assert_eq!(
        conf_files(&dirs),
        ["10-sluice.conflist"],
        "no temp files left"
    );

    // The default mode is standalone and a new socket updates the file.
    install_ok(&dirs, &[]);
    assert_eq!(
        read_json(&path)["plugins"][0]["agentSocket"],
        "/run/sluice/agent.sock"
    );
}

#[test]
fn chained_install_appends_to_the_existing_conflist_keeping_the_other_plugins() {
    require_root();
    let dirs = dirs();
    std::fs::create_dir_all(&dirs.conf).expect("conf dir");
    // A 1.1.0 conflist: containerd 1.6 would reject it; the installer
    // lowers it to 1.0.0.
    let bridge = json!({"type": "bridge", "bridge": "cni0", "isGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.244.1.0/24"}});
    let portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}});
    let existing = json!({
        "cniVersion": "1.1.0",
        "name": "pods",
        "plugins": [bridge, portmap],
    });
    let path = dirs.conf.join("05-pods.conflist");
    std::fs::write(&path, serde_json::to_string_pretty(&existing).unwrap()).unwrap();

    let socket = "/run/sluice-test/agent.sock";
    let args = [
        "--mode",
        "chained",
        "--agent-socket",
        socket,
        "--log-file",
        "/var/log/sluice-test.log",
    ];
    let out = install_ok(&dirs, &args);
    assert!(out.contains("lowering cniVersion"), "{out}");
    let expected = json!({
        "cniVersion": "1.0.0",
        "name": "pods",
        "plugins": [bridge, portmap, {
            "type": "sluice-cni",
            "agentSocket": socket,
            "logFile": "/var/log/sluice-test.log",
        }],
    });
    assert_eq!(read_json(&path), expected);
    assert_eq!(conf_files(&dirs), ["05-pods.conflist"], "edited in place");
    assert_installed_binary_works(&dirs);

    // Twice: the plugin is not appended again.
    let bytes = std::fs::read(&path).unwrap();
    let second = install_ok(&dirs, &args);
    assert!(
        second.lines().all(|l| l.ends_with("unchanged")),
        "second run:\n{second}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    // A changed socket updates the one sluice-cni entry.
    install_ok(&dirs, &["--mode", "chained"]);
    let updated = read_json(&path);
    let plugins = updated["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 3);
    assert_eq!(
        plugins[2],
        json!({"type": "sluice-cni", "agentSocket": "/run/sluice/agent.sock"})
    );
}

#[test]
fn chained_install_converts_a_single_plugin_conf_and_keeps_an_older_version() {
    require_root();
    let dirs = dirs();
    std::fs::create_dir_all(&dirs.conf).expect("conf dir");
    let ptp = json!({"cniVersion": "0.4.0", "name": "p2p", "type": "ptp",
        "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}});
    std::fs::write(dirs.conf.join("10-ptp.conf"), ptp.to_string()).unwrap();
    for _ in 0..2 {
        install_ok(&dirs, &["--mode", "chained"]);
        assert_eq!(
            conf_files(&dirs),
            ["10-ptp.conf.sluice-orig", "10-ptp.conflist"]
        );
        assert_eq!(
            read_json(&dirs.conf.join("10-ptp.conflist")),
            json!({
                "cniVersion": "0.4.0",
                "name": "p2p",
                "plugins": [
                    {"type": "ptp", "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}},
                    {"type": "sluice-cni", "agentSocket": "/run/sluice/agent.sock"},
                ],
            })
        );
    }
}

#[test]
fn install_refuses_what_it_cannot_do() {
    require_root();
    let cases: [(&[&str], &str); 4] = [
        (&["--mode", "chained"], "needs an existing network config"),
        (
            &["--mode", "overlay"],
            "--mode must be standalone or chained",
        ),
        (&["--cni-version", "0.2.0"], "not one sluice-cni supports"),
        (&["--agent-socket", "relative.sock"], "absolute path"),
    ];
    for (args, message) in cases {
        let dirs = dirs();
        let out = install(&dirs, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(
            !dirs.conf.join("10-sluice.conflist").exists(),
            "{args:?} wrote a config"
        );
    }
}

#[test]
fn standalone_install_warns_when_another_config_would_win() {
    require_root();
    let dirs = dirs();
    std::fs::create_dir_all(&dirs.conf).expect("conf dir");
    let other = r#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"ptp"}]}"#;
    std::fs::write(dirs.conf.join("05-other.conflist"), other).unwrap();
    let out = install_ok(&dirs, &["--mode", "standalone"]);
    assert!(
        out.contains("warning: ") && out.contains("05-other.conflist sorts before"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(dirs.conf.join("05-other.conflist")).unwrap(),
        other,
        "standalone mode never edits another network's config"
    );
    assert_eq!(
        conf_files(&dirs),
        ["05-other.conflist", "10-sluice.conflist"]
    );
}
