//! `sluice mesh down` leaves nothing behind: after a normal `up`, and after
//! an `up` killed halfway. Privileged (root).

mod mesh_support;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use mesh_support::{Mesh, netns_names, require_root, root_links, sluice};

#[test]
fn down_removes_everything_up_created() {
    require_root();
    let links_before = root_links();
    let mesh = Mesh::new();
    assert!(mesh.leftovers().is_empty(), "{:?}", mesh.leftovers());
    mesh.ok(&["up", "--nodes", "2"]);
    assert!(!mesh.leftovers().is_empty(), "up created nothing?");
    // Nothing of the mesh lives in the machine's own namespace.
    assert_eq!(
        root_links(),
        links_before,
        "up changed the root namespace's links"
    );

    let out = mesh.ok(&["down"]);
    assert!(out.contains("removed"), "{out}");
    assert_eq!(mesh.leftovers(), Vec::<String>::new());
    assert_eq!(root_links(), links_before);
    // Idempotent.
    let again = mesh.ok(&["down"]);
    assert!(again.contains("nothing to remove"), "{again}");
}

#[test]
fn down_after_a_killed_up_cleans_up() {
    require_root();
    let mesh = Mesh::new();
    let mut up = Command::new(sluice())
        .args(["mesh", "--name", &mesh.name, "up", "--nodes", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn up");
    // Kill it once the first node's agent runs (mid-way through the nodes).
    let node_2 = format!("{}node-2", mesh.netns_prefix());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !netns_names().contains(&node_2) {
        assert!(Instant::now() < deadline, "up never reached node-2");
        assert!(
            up.try_wait().unwrap().is_none(),
            "up finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    up.kill().unwrap();
    up.wait().unwrap();
    assert!(!mesh.leftovers().is_empty());

    // A new `up` refuses and names the command that clears the leftovers.
    let refused = mesh.run(&["up"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("sluice mesh down --name"), "{stderr}");

    mesh.ok(&["down"]);
    assert_eq!(mesh.leftovers(), Vec::<String>::new());
}
