//! EAL initialisation and clean-up.

use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicBool, Ordering};

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Why EAL could not be initialised.
#[derive(Debug, thiserror::Error)]
pub enum EalError {
    /// `rte_eal_init` ran before in this process (DPDK allows it once).
    #[error("the DPDK EAL is already initialised in this process")]
    AlreadyInitialised,
    /// An argument held a NUL byte.
    #[error("EAL argument {0:?} contains a NUL byte")]
    Nul(String),
    /// DPDK refused the arguments.
    #[error(
        "DPDK EAL initialisation failed with arguments {args:?}: {reason} (see DPDK's log above)"
    )]
    Init {
        /// The arguments as given.
        args: Vec<String>,
        /// rte_strerror of rte_errno.
        reason: String,
    },
}

/// The initialised Environment Abstraction Layer. Dropping it calls
/// `rte_eal_cleanup`; everything built on EAL (ports, pools, lcores) must be
/// stopped first.
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Initialises EAL with `args` (program name first is added for you).
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, EalError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(EalError::AlreadyInitialised);
        }
        let mut owned = Vec::with_capacity(args.len() + 1);
        for a in std::iter::once("ferrolb").chain(args.iter().map(AsRef::as_ref)) {
            match CString::new(a) {
                Ok(c) => owned.push(c),
                Err(_) => {
                    INITIALISED.store(false, Ordering::SeqCst);
                    return Err(EalError::Nul(a.to_string()));
                }
            }
        }
        // rte_eal_init permutes argv (getopt), so it gets an array of raw
        // pointers we own; `originals` remembers each pointer so every string
        // is reclaimed exactly once whatever order EAL leaves them in.
        let originals: Vec<*mut c_char> = owned.into_iter().map(CString::into_raw).collect();
        let mut argv = originals.clone();
        argv.push(std::ptr::null_mut());
        let argc = i32::try_from(originals.len()).unwrap_or(i32::MAX);
        // SAFETY: argv holds argc valid NUL-terminated strings followed by a
        // NULL, all alive until after the call; EAL may reorder the array but
        // does not free or keep the strings (it copies what it keeps).
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        let errno = super::rte_errno();
        for p in originals {
            // SAFETY: each pointer came from CString::into_raw above and is
            // reclaimed once.
            drop(unsafe { CString::from_raw(p) });
        }
        if rc < 0 {
            // DPDK cannot be initialised again in this process after a
            // failure, so INITIALISED stays set.
            return Err(EalError::Init {
                args: args.iter().map(|a| a.as_ref().to_string()).collect(),
                reason: super::DpdkError::new("rte_eal_init", errno).reason,
            });
        }
        Ok(Eal { _private: () })
    }

    /// Number of lcores EAL enabled (main included).
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: EAL is initialised (self exists).
        unsafe { dpdk_sys::rte_lcore_count() }
    }

    /// The main lcore.
    pub fn main_lcore(&self) -> super::LcoreId {
        // SAFETY: EAL is initialised.
        super::LcoreId(unsafe { dpdk_sys::rte_get_main_lcore() })
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: EAL was initialised by this value; callers stop workers
        // and ports before dropping it (documented on the type).
        unsafe {
            dpdk_sys::rte_eal_cleanup();
        }
    }
}
