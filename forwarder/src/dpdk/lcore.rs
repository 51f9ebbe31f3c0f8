//! Running work on EAL worker lcores.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{DpdkError, LcoreId};

/// Why work could not be launched on an lcore.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// DPDK refused (the lcore is busy or not a worker).
    #[error(transparent)]
    Dpdk(#[from] DpdkError),
}

/// The worker lcores EAL enabled (every lcore but the main one), in order.
pub fn worker_lcores() -> Vec<LcoreId> {
    let mut out = Vec::new();
    // SAFETY: rte_get_next_lcore only reads EAL's lcore configuration.
    let mut i = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
    while i < dpdk_sys::RTE_MAX_LCORE {
        out.push(LcoreId(i));
        // SAFETY: as above.
        i = unsafe { dpdk_sys::rte_get_next_lcore(i, 1, 0) };
    }
    out
}

/// The main lcore (where the control plane runs).
pub fn main_lcore() -> LcoreId {
    // SAFETY: reads EAL's configuration; valid once EAL is initialised.
    LcoreId(unsafe { dpdk_sys::rte_get_main_lcore() })
}

/// The CPU lcore `lcore` runs on (the first of its set), if EAL knows.
pub fn lcore_cpu(lcore: LcoreId) -> Option<usize> {
    let id = i32::try_from(lcore.0).ok()?;
    // SAFETY: reads EAL's configuration; out-of-range ids return -1.
    let cpu = unsafe { dpdk_sys::rte_lcore_to_cpu_id(id) };
    usize::try_from(cpu).ok()
}

/// The CPUs the calling thread may run on.
pub fn thread_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the kernel fills
    // at most size_of::<cpu_set_t>() bytes of it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE, the set's capacity.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// Restricts the calling thread (and the threads it starts afterwards)
/// to `cpus`.
pub fn pin_thread(cpus: &[usize]) -> Result<(), DpdkError> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(DpdkError::new(format!("pin to CPU {c}"), libc::EINVAL));
        }
        // SAFETY: `c` is below CPU_SETSIZE, the set's capacity.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(DpdkError::new(
            format!("pin the control plane to CPUs {cpus:?}"),
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL),
        ));
    }
    Ok(())
}

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

unsafe extern "C" fn trampoline(arg: *mut c_void) -> i32 {
    // SAFETY: arg is the Box<Job> leaked by launch(), handed to exactly one
    // call of this function.
    let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
    // A panic must never unwind into C: catch it and report failure.
    catch_unwind(AssertUnwindSafe(job)).unwrap_or(-1)
}

/// Runs `f` on worker lcore `lcore`; its return value (or -1 if it
/// panicked) is collected by [`wait_lcore`].
pub fn launch<F>(lcore: LcoreId, f: F) -> Result<(), LaunchError>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    let job: Box<Job> = Box::new(Box::new(f));
    let arg = Box::into_raw(job).cast::<c_void>();
    // SAFETY: trampoline matches lcore_function_t; arg stays valid until the
    // trampoline reclaims it.
    let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore.0) };
    if rc != 0 {
        // SAFETY: the launch failed, so the trampoline will never run and
        // the box is still ours to free.
        drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
        return Err(DpdkError::new(format!("launch work on {lcore}"), rc).into());
    }
    Ok(())
}

/// Waits for the work on `lcore` to finish and returns its value.
pub fn wait_lcore(lcore: LcoreId) -> i32 {
    // SAFETY: blocks until the lcore is idle; no memory is shared.
    unsafe { dpdk_sys::rte_eal_wait_lcore(lcore.0) }
}
