//! The `mesh test` check "agent killed with SIGKILL under traffic": a pod
//! on node-1 holds a TCP connection to node-2's echo server (through
//! node-1's datapath: conntrack and masquerade), node-1's agent is killed
//! with SIGKILL, its supervisor starts it again; the connection must keep
//! answering every line throughout, the agent must come back ready, and
//! it must report the same endpoints as before.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use super::{
    conntest::{Check, CheckResult, Expect},
    context::Mesh,
    layout::{INFRA_ECHO_PORT, netns_path},
    netns::run_in,
    pods::{PortSpec, Protocol},
    probe::Outcome,
    state::NodeState,
    supervise::{RestartPolicy, SupervisorState},
};

/// How long the restarted agent may take to be ready again.
const RESTART_DEADLINE: Duration = Duration::from_secs(30);
/// One line through the connection this often while the agent is down.
const TRAFFIC_EVERY: Duration = Duration::from_millis(100);

pub const NAME: &str = "agent killed with SIGKILL under traffic";

/// The check, when the mesh has two nodes, a pod on node-1 that reaches
/// node-2, and restarts on.
pub fn run(mesh: &Mesh, timeout: Duration) -> Result<Option<CheckResult>> {
    let (Some(node), Some(peer)) = (mesh.state.nodes.first(), mesh.state.nodes.get(1)) else {
        return Ok(None);
    };
    let state_file = mesh.layout.agent_supervisor_state(&node.name);
    let Some(before) = SupervisorState::read(&state_file) else {
        return Ok(None);
    };
    if before.policy == RestartPolicy::Never {
        return Ok(None);
    }
    let target = SocketAddr::from((peer.address, INFRA_ECHO_PORT));
    let Some((pod, stream)) = connect_from_a_pod(mesh, &node.name, target, timeout)? else {
        return Ok(None);
    };
    let check = Check {
        name: NAME.to_owned(),
        from: pod,
        to: format!("node/{}", peer.name),
        ip: peer.address,
        port: PortSpec {
            port: INFRA_ECHO_PORT,
            protocol: Protocol::Tcp,
        },
        expect: Expect::OneOf(vec![peer.name.clone()]),
    };
    let started = Instant::now();
    let outcome = kill_under_traffic(node, &state_file, &before, stream, timeout);
    let (passed, reply) = match outcome {
        Ok(summary) => (true, summary),
        Err(e) => (false, format!("{e:#}")),
    };
    Ok(Some(CheckResult {
        check,
        result: if passed {
            Outcome::Connected
        } else {
            Outcome::Timeout
        },
        reply,
        ms: started.elapsed().as_millis() as u64,
        passed,
    }))
}

/// A connection from the first pod on `node` that gets one through.
fn connect_from_a_pod(
    mesh: &Mesh,
    node: &str,
    target: SocketAddr,
    timeout: Duration,
) -> Result<Option<(String, TcpStream)>> {
    for pod in mesh.state.pods.values().filter(|p| p.node == node) {
        let netns = netns_path(&pod.netns);
        let stream = run_in(&netns, move || TcpStream::connect_timeout(&target, timeout))?;
        if let Ok(stream) = stream {
            return Ok(Some((pod.key(), stream)));
        }
    }
    Ok(None)
}

/// One line out and back within `timeout`.
struct Line {
    out: TcpStream,
    back: BufReader<TcpStream>,
    sent: u32,
}

impl Line {
    fn new(stream: TcpStream, timeout: Duration) -> Result<Self> {
        stream.set_read_timeout(Some(timeout))?;
        Ok(Self {
            out: stream.try_clone()?,
            back: BufReader::new(stream),
            sent: 0,
        })
    }

    fn exchange(&mut self) -> Result<()> {
        self.sent += 1;
        let line = format!("line {}", self.sent);
        writeln!(self.out, "{line}").context("the connection broke")?;
        let mut echoed = String::new();
        self.back
            .read_line(&mut echoed)
            .with_context(|| format!("no echo of {line:?}"))?;
        if echoed.trim_end() != line {
            bail!("echoed {echoed:?} instead of {line:?}");
        }
        Ok(())
    }
}

fn kill_under_traffic(
    node: &NodeState,
    state_file: &std::path::Path,
    before: &SupervisorState,
    stream: TcpStream,
    timeout: Duration,
) -> Result<String> {
    let mut line = Line::new(stream, timeout)?;
    line.exchange()?;
    let endpoints_before = endpoints(node).context("the agent's endpoints before")?;
    kill(Pid::from_raw(before.pid), Signal::SIGKILL).context("SIGKILL the agent")?;
    let killed = Instant::now();
    loop {
        line.exchange()?;
        let restarted = SupervisorState::read(state_file)
            .is_some_and(|s| s.restarts > before.restarts && s.pid != 0 && s.pid != before.pid);
        if restarted && ready(node) {
            break;
        }
        if killed.elapsed() > RESTART_DEADLINE {
            bail!(
                "the agent was not back within {} s",
                RESTART_DEADLINE.as_secs()
            );
        }
        std::thread::sleep(TRAFFIC_EVERY);
    }
    let back_after = killed.elapsed();
    let endpoints_after = endpoints(node).context("the agent's endpoints after")?;
    if endpoints_after != endpoints_before {
        bail!("endpoints before {endpoints_before:?}, after {endpoints_after:?}");
    }
    line.exchange()?;
    Ok(format!(
        "back in {:.1} s; {} lines echoed; {} endpoints kept",
        back_after.as_secs_f64(),
        line.sent,
        endpoints_after.len()
    ))
}

fn agent_call<T>(
    node: &NodeState,
    call: impl AsyncFnOnce(
        &mut sluice_api::agent::v1::agent_client::AgentClient<tonic::transport::Channel>,
    ) -> Result<T>,
) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut client = sluice_api::connect_unix(&node.api_socket).await?;
        tokio::time::timeout(Duration::from_secs(2), call(&mut client))
            .await
            .context("the agent did not answer")?
    })
}

fn ready(node: &NodeState) -> bool {
    agent_call(node, async |c| {
        Ok(c.status(sluice_api::agent::v1::StatusRequest {})
            .await?
            .into_inner()
            .ready)
    })
    .unwrap_or(false)
}

/// The agent's endpoints as (pod, address).
fn endpoints(node: &NodeState) -> Result<BTreeSet<(String, String)>> {
    agent_call(node, async |c| {
        let list = c
            .list_endpoints(sluice_api::agent::v1::ListEndpointsRequest {})
            .await?
            .into_inner();
        Ok(list
            .endpoints
            .into_iter()
            .map(|e| (format!("{}/{}", e.pod_namespace, e.pod_name), e.ipv4))
            .collect())
    })
}
