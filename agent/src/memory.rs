//! Giving memory back to the system after a burst of transient work.
//!
//! A change at scale (a rescan of the manifests, a service or policy
//! recompute) allocates and frees tens of megabytes on whichever tokio
//! thread ran it; glibc keeps freed memory in that thread's malloc arena,
//! so the resident size grows in steps with each arena a change lands on
//! (BENCHMARKS.md, "Agent at scale"). `malloc_trim` returns the free pages,
//! and two arenas are plenty for an agent whose hot path is in the kernel.

/// Caps glibc's malloc arenas (default: 8 per CPU). Call before any
/// thread starts.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; no thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns freed heap pages of every malloc arena to the system. Costs a
/// walk over the free lists (milliseconds at most): call it after a
/// change's work is done, never on a hot path.
pub fn release_freed() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only reorganises the allocator's free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
