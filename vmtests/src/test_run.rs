//! BPF_PROG_TEST_RUN: run a loaded program on a crafted packet and get its
//! verdict and the packet it wrote back.

use aya::{
    TestRun, TestRunResult,
    programs::{SchedClassifier, TestRunOptions, Xdp},
};

/// Runs `program` `repeat` times on `packet`: the kernel's result and the
/// packet the last run wrote back.
fn run<P>(program: &P, packet: &[u8], repeat: u32) -> (TestRunResult, Vec<u8>)
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    // Room for programs that grow the packet (answers, encapsulation).
    let mut out = vec![0u8; packet.len() + 256];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result, out)
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

/// XDP verdicts (include/uapi/linux/bpf.h, `enum xdp_action`).
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// What one run of an XDP program did.
#[derive(Debug)]
pub struct XdpRun {
    pub action: u32,
    pub packet: Vec<u8>,
}

/// Runs XDP `program` once on `packet` (the kernel takes any frame of at
/// least an Ethernet header's 14 bytes).
pub fn run_xdp(program: &Xdp, packet: &[u8]) -> XdpRun {
    let (action, packet) = run_once(program, packet);
    XdpRun { action, packet }
}
