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
