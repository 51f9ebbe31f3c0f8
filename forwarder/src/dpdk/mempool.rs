//! Packet-buffer pools.

use std::ffi::CString;
use std::ptr::NonNull;

use super::{DpdkError, Mbuf};

/// An mbuf pool (`rte_pktmbuf_pool_create`). Freed on drop: every port that
/// receives into it must be stopped first and every mbuf returned.
#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
    name: String,
}

// SAFETY: a DPDK mempool is designed for concurrent use from many lcores
// (lock-free ring + per-lcore caches); the handle is just a pointer.
unsafe impl Send for Mempool {}
// SAFETY: see above; every operation through &Mempool is thread-safe in DPDK.
unsafe impl Sync for Mempool {}

/// Room for data in each mbuf: 2 KiB of frame plus DPDK's headroom.
pub const DATA_ROOM: u16 = 2048 + 128;

impl Mempool {
    /// Creates a pool of `count` mbufs with a per-lcore cache of `cache`.
    pub fn new(name: &str, count: u32, cache: u32, socket: i32) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name)
            .map_err(|_| DpdkError::new(format!("create mempool {name:?}"), libc::EINVAL))?;
        // SAFETY: cname is a valid C string for the duration of the call;
        // EAL is initialised (callers hold an Eal).
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), count, cache, 0, DATA_ROOM, socket)
        };
        NonNull::new(raw)
            .map(|raw| Mempool {
                raw,
                name: name.to_string(),
            })
            .ok_or_else(|| DpdkError::last(format!("create mempool {name:?} of {count} mbufs")))
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Raw pointer, for port queue set-up.
    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// Mbufs currently allocated (not in the pool or its caches).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is alive for &self.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// Mbufs available.
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive for &self.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Allocates one mbuf, `None` when the pool is empty.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is alive; a non-null result is a fresh mbuf we own.
        let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.raw.as_ptr()) };
        NonNull::new(m).map(|m| {
            // SAFETY: freshly allocated, owned by nobody else.
            unsafe { Mbuf::from_raw(m) }
        })
    }

    /// Allocates an mbuf holding a copy of `frame`.
    pub fn alloc_with(&self, frame: &[u8]) -> Option<Mbuf> {
        let mut m = self.alloc()?;
        use crate::buffer::PacketBuf;
        if !m.append(frame.len()) {
            return None;
        }
        m.data_mut().copy_from_slice(frame);
        Some(m)
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: this value owns the pool; users stop ports and return
        // mbufs before dropping it (documented above).
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
    }
}
