//! The management plane's part of `sluice mesh status`: Redis,
//! sluice-control and each cluster's relay agent (process, and connected /
//! warm as sluice-control sees it).

use anyhow::Result;

use super::{
    control::{self, ControlState},
    control_api,
    get::{print_table, row},
    layout::Layout,
    process,
    state::{MeshInfo, ProcessRef},
};

fn running(process: Option<&ProcessRef>) -> (bool, String) {
    match process {
        Some(p) if process::is_alive(p.pid, p.start_time) => (true, format!("pid {}", p.pid)),
        Some(_) => (false, "NOT RUNNING".to_owned()),
        None => (false, "not started".to_owned()),
    }
}

/// Prints the section; false when a part of it is unhealthy. A mesh
/// without a control plane prints one line and is healthy.
pub fn print(layout: &Layout) -> Result<bool> {
    let info = MeshInfo::load(layout)?;
    println!();
    if !info.control_plane {
        println!("management plane: none (up --no-control-plane)");
        return Ok(true);
    }
    let state = ControlState::load(layout)?.unwrap_or_default();
    let mut healthy = true;
    let (redis_ok, redis) = running(state.redis.as_ref());
    let answers = redis_ok && control::redis_pong(&layout.redis_socket());
    healthy &= answers;
    println!("management plane ({}):", layout.mgmt_netns());
    println!(
        "  redis:          {redis}{} ({})",
        if answers { ", answers PING" } else { "" },
        layout.redis_socket().display()
    );
    let (server_ok, server) = running(state.server.as_ref());
    let listed = if server_ok {
        control_api::list(&layout.control_socket()).ok()
    } else {
        None
    };
    healthy &= listed.is_some();
    println!(
        "  sluice-control: {server}{} (management API {})",
        match &listed {
            Some((true, _)) => ", SAFE MODE (waiting for clusters to be warm)",
            Some((false, _)) => ", serving",
            None => ", not answering",
        },
        layout.control_socket().display()
    );
    let (prometheus_ok, prometheus) = running(state.prometheus.as_ref());
    let (forwarder_ok, _) = running(state.prometheus_forwarder.as_ref());
    healthy &= prometheus_ok && forwarder_ok;
    println!(
        "  prometheus:     {prometheus}, {} (scrapes the telemetry gateway and sluice-control)",
        match (&state.prometheus_url, forwarder_ok) {
            (Some(url), true) => format!("at {url} from this machine"),
            _ => "its forwarder is NOT RUNNING".to_owned(),
        }
    );
    let (dashboard_ok, _) = running(state.dashboard_forwarder.as_ref());
    // A mesh brought up before the dashboard existed has none to miss.
    healthy &= dashboard_ok || state.dashboard_url.is_none();
    println!(
        "  dashboard:      {} (no authentication; `sluice dashboard{}`)",
        match (&state.dashboard_url, dashboard_ok) {
            (Some(url), true) => format!("at {url} from this machine"),
            (None, _) => "not started (a mesh from before the dashboard)".to_owned(),
            _ => "its forwarder is NOT RUNNING".to_owned(),
        },
        if layout.name() == super::layout::DEFAULT_NAME {
            String::new()
        } else {
            format!(" --mesh {}", layout.name())
        }
    );
    let infos = listed.map(|(_, infos)| infos).unwrap_or_default();
    let mut rows = vec![row(&["CLUSTER", "RELAY AGENT", "RELAY", "OBJECTS"])];
    for name in info.cluster_names() {
        let (relay_ok, relay) = running(state.relays.get(&name));
        let seen = infos.iter().find(|i| i.name == name);
        let relay_state = match seen {
            Some(i) if i.connected && i.warm => "connected/warm",
            Some(i) if i.connected => "connected/warming",
            Some(_) => "disconnected",
            None => "not registered",
        };
        healthy &= relay_ok && relay_state == "connected/warm";
        rows.push(vec![
            name,
            relay,
            relay_state.to_owned(),
            seen.map_or("-".to_owned(), |i| {
                i.resource_counts.values().sum::<u64>().to_string()
            }),
        ]);
    }
    print_table(&rows);
    Ok(healthy)
}
