//! `sluice mesh supervise` (hidden): what kubelet does for a DaemonSet
//! pod, for a node's agent. It runs the agent, and when the agent dies
//! (crash, SIGKILL) starts it again after a back-off (1 s doubling to
//! 30 s; back to 1 s once an agent ran for 60 s), counting restarts in a
//! state file that `sluice mesh status` reads. SIGTERM (what `mesh down`
//! sends) is passed to the agent, and the supervisor exits with it.
//!
//! The datapath does not need the agent to forward packets (programs and
//! maps are pinned), and a restarted agent takes over its pins and
//! endpoints: established connections survive the gap.

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Whether a dead agent is started again.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestartPolicy {
    #[default]
    Always,
    /// Left dead (tests that need an agent to stay down).
    Never,
}

impl RestartPolicy {
    pub fn flag(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::Never => "never",
        }
    }
}

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    /// Where the restart count and the running agent's PID are kept.
    #[arg(long)]
    pub state: PathBuf,
    /// The agent's log (appended to across restarts).
    #[arg(long)]
    pub log: PathBuf,
    #[arg(long, value_enum, default_value_t = RestartPolicy::Always)]
    pub restart: RestartPolicy,
    /// The agent's command line.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// What `mesh status` shows about a supervised agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorState {
    /// The running agent (0 while none runs).
    pub pid: i32,
    pub restarts: u32,
    /// How the last agent ended (`signal 9`, `exit status 1`), if one did.
    pub last_exit: Option<String>,
    /// Unix seconds of the last restart.
    pub last_restart: Option<u64>,
    pub policy: RestartPolicy,
}

impl SupervisorState {
    /// The state at `path`; `None` when there is none (or it is unreadable).
    pub fn read(path: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An agent that ran this long resets the back-off.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The wait before the next start, given the last one and how long the
/// agent ran.
pub fn next_backoff(last: Duration, ran: Duration) -> Duration {
    if ran >= HEALTHY_RUN {
        FIRST_BACKOFF
    } else {
        (last * 2).min(MAX_BACKOFF)
    }
}

pub fn run(args: &SuperviseArgs) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(supervise(args))
}

fn spawn(args: &SuperviseArgs) -> Result<Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .with_context(|| format!("cannot open {}", args.log.display()))?;
    let (program, rest) = args.command.split_first().context("no agent command")?;
    Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {program}"))
}

async fn supervise(args: &SuperviseArgs) -> Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut state = SupervisorState {
        policy: args.restart,
        ..SupervisorState::default()
    };
    let mut backoff = FIRST_BACKOFF / 2;
    loop {
        let mut child = spawn(args)?;
        let started = Instant::now();
        state.pid = child.id() as i32;
        state.write(&args.state)?;
        let Some(status) = wait_or_term(&mut child, &mut term).await? else {
            return stop(child).await;
        };
        state.pid = 0;
        state.last_exit = Some(describe(status));
        state.write(&args.state)?;
        eprintln!(
            "supervisor: the agent ended ({})",
            state.last_exit.as_deref().unwrap_or_default()
        );
        if args.restart == RestartPolicy::Never {
            // Stay, so `down` finds the supervisor and the state says why.
            term.recv().await;
            return Ok(());
        }
        backoff = next_backoff(backoff, started.elapsed());
        eprintln!("supervisor: restarting the agent in {backoff:?}");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = term.recv() => return Ok(()),
        }
        state.restarts += 1;
        state.last_restart = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
    }
}

/// How often a running agent is checked (a std child: no SIGCHLD plumbing).
const POLL: Duration = Duration::from_millis(50);

/// The agent's exit status, or `None` when SIGTERM came first.
async fn wait_or_term(child: &mut Child, term: &mut Signal) -> Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = term.recv() => return Ok(None),
        }
    }
}

/// Passes SIGTERM to the agent and waits for it (SIGKILL after 10 s).
async fn stop(mut child: Child) -> Result<()> {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => format!("signal {signal}"),
        None => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_30_s_and_resets_after_a_healthy_run() {
        let short = Duration::from_secs(1);
        let mut wait = FIRST_BACKOFF / 2;
        let waits: Vec<u64> = (0..8)
            .map(|_| {
                wait = next_backoff(wait, short);
                wait.as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(next_backoff(MAX_BACKOFF, HEALTHY_RUN), FIRST_BACKOFF);
    }

    #[test]
    fn a_killed_child_is_restarted_and_counted_and_sigterm_stops_both() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let args = SuperviseArgs {
            state: state.clone(),
            log: dir.path().join("log"),
            restart: RestartPolicy::Always,
            command: vec!["sleep".into(), "600".into()],
        };
        let supervisor = std::thread::spawn(move || run(&args));
        let first = wait_for(&state, |s| s.pid != 0);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(first.pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let second = wait_for(&state, |s| s.restarts == 1 && s.pid != 0);
        assert_ne!(second.pid, first.pid);
        assert_eq!(second.last_exit.as_deref(), Some("signal 9"));
        // SIGTERM to this process reaches the supervisor's handler (the
        // test runs it on a thread): it stops the child and returns.
        nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        supervisor.join().unwrap().unwrap();
        assert!(
            std::fs::metadata(format!("/proc/{}", second.pid)).is_err()
                || std::fs::read_to_string(format!("/proc/{}/stat", second.pid))
                    .is_ok_and(|s| s.contains(") Z")),
            "the agent was stopped with the supervisor"
        );
    }

    fn wait_for(path: &Path, ready: impl Fn(&SupervisorState) -> bool) -> SupervisorState {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(state) = SupervisorState::read(path).filter(&ready) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "supervisor state never got there"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
