//! The floor of per-packet cost: a truly empty tc classifier
//! (`r0 = 0; exit`) and a truly empty XDP program (`r0 = XDP_PASS; exit`),
//! loaded and run with raw bpf(2) calls. The project has no such programs
//! in bpf/ and aya 0.14 loads only ELF objects, so the two instructions are
//! written here.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_PROG_TYPE_XDP: u32 = 6;

/// `union bpf_attr` for BPF_PROG_LOAD, up to `prog_name`; the kernel
/// zero-fills the rest.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `union bpf_attr` for BPF_PROG_TEST_RUN (the `test` member).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// A loaded empty tc program.
pub struct EmptyTc {
    fd: OwnedFd,
}

/// A loaded empty XDP program (returns XDP_PASS).
pub struct EmptyXdp {
    fd: OwnedFd,
}

impl EmptyXdp {
    pub fn load() -> anyhow::Result<Self> {
        // mov64 r0, 2 (XDP_PASS: the immediate is the upper 32 bits); exit.
        Ok(Self {
            fd: load_empty(BPF_PROG_TYPE_XDP, [0x2_0000_00b7, 0x95])?,
        })
    }

    /// Runs it `repeat` times on `packet`; returns (verdict, mean ns per run).
    pub fn run(&self, packet: &[u8], repeat: u32) -> anyhow::Result<(i32, f64)> {
        test_run(&self.fd, packet, repeat)
    }
}

impl EmptyTc {
    pub fn load() -> anyhow::Result<Self> {
        // mov64 r0, 0 (TC_ACT_OK); exit.
        Ok(Self {
            fd: load_empty(BPF_PROG_TYPE_SCHED_CLS, [0xb7, 0x95])?,
        })
    }

    /// Runs it `repeat` times on `packet`; returns (verdict, mean ns per run).
    pub fn run(&self, packet: &[u8], repeat: u32) -> anyhow::Result<(i32, f64)> {
        test_run(&self.fd, packet, repeat)
    }
}

fn load_empty(prog_type: u32, insns: [u64; 2]) -> anyhow::Result<OwnedFd> {
    let license = c"GPL";
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..11].copy_from_slice(b"bench_empty");
    // SAFETY: a valid bpf_attr prefix whose pointers outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            size_of::<ProgLoadAttr>(),
        )
    };
    anyhow::ensure!(
        fd >= 0,
        "BPF_PROG_LOAD of the empty program: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn test_run(fd: &OwnedFd, packet: &[u8], repeat: u32) -> anyhow::Result<(i32, f64)> {
    let mut out = vec![0u8; packet.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: fd.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_size_out: out.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..Default::default()
    };
    // SAFETY: a valid bpf_attr whose buffers outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            size_of::<TestRunAttr>(),
        )
    };
    anyhow::ensure!(
        rc == 0,
        "BPF_PROG_TEST_RUN: {}",
        std::io::Error::last_os_error()
    );
    Ok((attr.retval as i32, f64::from(attr.duration)))
}
