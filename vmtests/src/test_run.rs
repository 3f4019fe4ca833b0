//! BPF_PROG_TEST_RUN: run a loaded program on a crafted packet and get its
//! verdict and the packet it wrote back.

use aya::{
    TestRun, TestRunResult,
    programs::{ProgramError, SchedClassifier, TestRunOptions, Xdp},
};

/// Runs `program` `repeat` times on `packet`: the kernel's result and the
/// packet the last run wrote back, or the kernel's refusal to run it.
fn try_run<P>(
    program: &P,
    packet: &[u8],
    repeat: u32,
) -> Result<(TestRunResult, Vec<u8>), ProgramError>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    // Room for programs that grow the packet (answers, encapsulation).
    let mut out = vec![0u8; packet.len() + 256];
    let result = program.test_run(TestRunOptions {
        data_in: Some(packet),
        data_out: Some(&mut out),
        repeat,
        ..TestRunOptions::new()
    })?;
    out.truncate(result.data_size_out as usize);
    Ok((result, out))
}

/// [`try_run`] for packets the kernel must accept.
fn run<P>(program: &P, packet: &[u8], repeat: u32) -> (TestRunResult, Vec<u8>)
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    try_run(program, packet, repeat).expect("BPF_PROG_TEST_RUN")
}

/// Runs `program` once on `packet`: its return value and the packet it
/// wrote back.
fn run_once<P>(program: &P, packet: &[u8]) -> (u32, Vec<u8>)
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let (result, out) = run(program, packet, 1);
    (result.return_value, out)
}

/// Runs `program` `repeat` times on `packet` (the benchmarks): its return
/// value and the kernel's mean time per run.
pub fn run_timed<P>(program: &P, packet: &[u8], repeat: u32) -> (u32, std::time::Duration)
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let (result, _) = run(program, packet, repeat);
    (result.return_value, result.duration)
}

/// tc verdicts as the kernel defines them (include/uapi/linux/pkt_cls.h).
pub const TC_ACT_OK: i32 = 0;
pub const TC_ACT_SHOT: i32 = 2;
pub const TC_ACT_REDIRECT: i32 = 7;

/// What one run of a tc program did.
#[derive(Debug)]
pub struct TcRun {
    pub action: i32,
    pub packet: Vec<u8>,
}

/// Runs `program` once on `packet`.
pub fn run_tc(program: &SchedClassifier, packet: &[u8]) -> TcRun {
    let (action, packet) = run_once(program, packet);
    TcRun {
        action: action as i32,
        packet,
    }
}

/// Runs `program` once on `packet`, which may be any bytes: the kernel
/// refuses some frames itself (EINVAL for an IPv4 frame shorter than an IP
/// header), and that refusal is an `Err` here, not a panic.
pub fn try_run_tc(program: &SchedClassifier, packet: &[u8]) -> Result<TcRun, ProgramError> {
    let (result, packet) = try_run(program, packet, 1)?;
    Ok(TcRun {
        action: result.return_value as i32,
        packet,
    })
}

/// XDP verdicts (include/uapi/linux/bpf.h, `enum xdp_action`).
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// What one run of an XDP program did.
#[derive(Debug)]
pub struct XdpRun {
    pub action: u32,
    pub packet: Vec<u8>,
}

/// [`run_xdp`] for any bytes (see [`try_run_tc`]).
pub fn try_run_xdp(program: &Xdp, packet: &[u8]) -> Result<XdpRun, ProgramError> {
    let (result, packet) = try_run(program, packet, 1)?;
    Ok(XdpRun {
        action: result.return_value,
        packet,
    })
}

/// Runs XDP `program` once on `packet` (the kernel takes any frame of at
/// least an Ethernet header's 14 bytes).
pub fn run_xdp(program: &Xdp, packet: &[u8]) -> XdpRun {
    let (action, packet) = run_once(program, packet);
    XdpRun { action, packet }
}
