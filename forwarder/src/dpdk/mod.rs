//! The only safe wrapper over `dpdk-sys`; the only place in `forwarder` with
//! `unsafe` code, each block justified by a `// SAFETY:` comment.
//!
//! Ownership rules it enforces:
//! * [`Eal`] is initialised at most once per process and cleaned up when
//!   dropped; `rte_eal_init` may reorder argv, so it gets owned C strings
//!   that are reclaimed afterwards.
//! * An [`Mbuf`] is owned by exactly one Rust value; dropping it frees it.
//!   Ownership passes to DPDK only on a successful TX, for exactly the
//!   frames the driver took ([`Burst`]).
//! * Work launched on an lcore runs inside `catch_unwind`: a panic is
//!   reported as the lcore's failure, never unwinds into C.

mod eal;
mod handoff;
mod lcore;
mod mbuf;
mod mempool;
mod port;

pub use eal::{Eal, EalError};
pub use handoff::{handoff_ring, HandoffRx, HandoffTx, Staged};
pub use lcore::{
    launch, lcore_cpu, main_lcore, pin_thread, thread_cpus, wait_lcore, worker_lcores, LaunchError,
};
pub use mbuf::{Burst, Mbuf, BURST_SIZE};
pub use mempool::Mempool;
pub use port::{
    create_vdev, steer_types, LinkStatus, Port, PortConfig, PortStats, RssState, SteerSide,
    Steering,
};

use std::ffi::CStr;
use std::fmt;

/// A DPDK ethdev port number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

/// A queue index on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u16);

/// An EAL logical core id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LcoreId(pub u32);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

impl fmt::Display for LcoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lcore {}", self.0)
    }
}

/// A failed DPDK call: what was attempted and DPDK's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {reason} (errno {errno})")]
pub struct DpdkError {
    /// The operation, with its subject (e.g. "configure port 0").
    pub op: String,
    /// Positive errno value (DPDK returns -errno or sets rte_errno).
    pub errno: i32,
    /// `rte_strerror(errno)`.
    pub reason: String,
}

impl DpdkError {
    /// Builds an error from a (positive or negative) errno.
    pub fn new(op: impl Into<String>, errno: i32) -> Self {
        let errno = errno.abs();
        DpdkError {
            op: op.into(),
            errno,
            reason: strerror(errno),
        }
    }

    /// Builds an error from the calling thread's `rte_errno`.
    pub fn last(op: impl Into<String>) -> Self {
        Self::new(op, rte_errno())
    }
}

/// The calling thread's `rte_errno`.
pub fn rte_errno() -> i32 {
    // SAFETY: a plain read of a thread-local int through a C shim.
    unsafe { dpdk_sys::ferrolb_rte_errno() }
}

fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string valid until the next call on this thread; it is
    // copied at once.
    unsafe {
        let p = dpdk_sys::rte_strerror(errno);
        if p.is_null() {
            return format!("error {errno}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The DPDK library version string, e.g. "DPDK 22.11.11".
pub fn version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    unsafe {
        CStr::from_ptr(dpdk_sys::ferrolb_rte_version())
            .to_string_lossy()
            .into_owned()
    }
}

/// TSC cycles now (`rte_rdtsc`).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the time-stamp counter; no memory is touched.
    unsafe { dpdk_sys::rte_rdtsc() }
}

/// TSC frequency in Hz as measured by EAL (valid after [`Eal::init`]).
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value EAL computed at init; no preconditions.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}

/// Asks the CPU to bring the cache line at `p` into every cache level:
/// a hint that never faults, whatever `p` is, and costs no wait.
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults, even on an invalid
    // address, and reads nothing the program sees. SSE is part of the
    // x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks the kernel to back `len` bytes at `p` (one allocation of this
/// process, already in use) with transparent huge pages, and to collapse
/// the 4 KiB pages already there at once (Linux 6.1+). Returns the bytes
/// collapsed; an error (older kernel, THP disabled, no free huge page) is
/// given back for the caller to log, and changes nothing. Off the packet
/// path: called once per table, at start-up.
pub fn advise_huge(p: *const u8, len: usize) -> std::io::Result<usize> {
    const HUGE: usize = 2 << 20;
    // Whole huge pages inside the range: the only part they can back.
    let start = (p as usize).div_ceil(HUGE) * HUGE;
    let end = (p as usize + len) / HUGE * HUGE;
    if end <= start {
        return Ok(0);
    }
    for advice in [libc::MADV_HUGEPAGE, libc::MADV_COLLAPSE] {
        // SAFETY: the range lies inside one live allocation of this
        // process (huge-page aligned, so page aligned); these two pieces
        // of advice change how the kernel backs it, never its contents.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, advice) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(end - start)
}

/// The lcore id of the calling thread (`u32::MAX` for non-EAL threads).
pub fn current_lcore() -> LcoreId {
    // SAFETY: reads a thread-local set by EAL.
    LcoreId(unsafe { dpdk_sys::rte_lcore_id() })
}

/// The NUMA socket of the calling lcore.
pub fn current_socket() -> u32 {
    // SAFETY: reads thread-local EAL state; no preconditions.
    unsafe { dpdk_sys::rte_socket_id() }
}
