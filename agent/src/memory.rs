//! Giving memory back to the system after a burst of transient work.
//!
//! A change at scale (a rescan of the manifests, a service or policy
//! recompute) allocates and frees tens of megabytes on whichever tokio
//! thread ran it; glibc keeps freed memory in that thread's malloc arena,
//! so the resident size grows in steps with each arena a change lands on
//! (BENCHMARKS.md, "Agent at scale"). `malloc_trim` returns the free pages.

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
