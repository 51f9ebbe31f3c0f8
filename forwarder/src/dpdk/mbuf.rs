//! Owned mbufs and fixed-size bursts of them.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use crate::buffer::PacketBuf;

/// Frames per burst (rx and tx).
pub const BURST_SIZE: usize = 64;

/// `RTE_MBUF_F_RX_RSS_HASH`: the NIC filled `hash.rss`.
const RX_RSS_HASH: u64 = 1 << 1;

/// One owned, single-segment packet buffer. Dropping it frees it.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<dpdk_sys::rte_mbuf>);

// SAFETY: an mbuf may be handed from one lcore to another (it is how rings
// work); exactly one owner exists at a time. Not Sync: no shared access.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf that nobody else owns or will free.
    pub unsafe fn from_raw(raw: NonNull<dpdk_sys::rte_mbuf>) -> Mbuf {
        Mbuf(raw)
    }

    /// Gives up ownership, returning the raw pointer.
    pub fn into_raw(self) -> NonNull<dpdk_sys::rte_mbuf> {
        ManuallyDrop::new(self).0
    }

    #[inline(always)]
    fn m(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: we own a valid mbuf for the lifetime of self.
        unsafe { self.0.as_ref() }
    }

    /// Where the frame's data starts.
    #[inline(always)]
    fn data_ptr(&self) -> *const u8 {
        let m = self.m();
        (m.buf_addr as *const u8).wrapping_add(usize::from(m.data_off))
    }

    /// Number of segments (frames longer than one mbuf are chained).
    pub fn segments(&self) -> u16 {
        self.m().nb_segs
    }

    /// The port the frame arrived on.
    pub fn in_port(&self) -> u16 {
        self.m().port
    }

    /// Sets (or clears) the RSS hash a NIC would have written: for a
    /// software stage that computes one, and for tests of readers.
    pub fn set_rss_hash(&mut self, hash: Option<u32>) {
        // SAFETY: we own a valid mbuf exclusively for the lifetime of
        // &mut self; writing the `rss` member of the hash union and the
        // flag that says it is valid is what a PMD does on receive.
        let m = unsafe { self.0.as_mut() };
        match hash {
            Some(h) => {
                m.__bindgen_anon_2.hash.rss = h;
                m.ol_flags |= RX_RSS_HASH;
            }
            None => m.ol_flags &= !RX_RSS_HASH,
        }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it is freed exactly once, here.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl PacketBuf for Mbuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's
        // data room (DPDK invariant) and we own the mbuf for &self.
        unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in data(); &mut self gives exclusive access.
        unsafe {
            let m = self.0.as_mut();
            std::slice::from_raw_parts_mut(
                (m.buf_addr as *mut u8).add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: we own the mbuf; rte_pktmbuf_prepend checks the headroom
        // and returns NULL without change when it is too small.
        !unsafe { dpdk_sys::rte_pktmbuf_prepend(self.0.as_ptr(), n) }.is_null()
    }

    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: as above; rte_pktmbuf_adj checks the length.
        !unsafe { dpdk_sys::rte_pktmbuf_adj(self.0.as_ptr(), n) }.is_null()
    }

    #[inline]
    fn append(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: as above; rte_pktmbuf_append checks the tailroom.
        !unsafe { dpdk_sys::rte_pktmbuf_append(self.0.as_ptr(), n) }.is_null()
    }

    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: as above; rte_pktmbuf_trim returns -1 when too short.
        unsafe { dpdk_sys::rte_pktmbuf_trim(self.0.as_ptr(), n) == 0 }
    }

    #[inline]
    fn rss_hash(&self) -> Option<u32> {
        let m = self.m();
        if m.ol_flags & RX_RSS_HASH != 0 {
            // SAFETY: the flag says the NIC wrote hash.rss (union member).
            Some(unsafe { m.__bindgen_anon_2.hash.rss })
        } else {
            None
        }
    }
}

/// Up to [`BURST_SIZE`] owned mbufs, as rx_burst fills them and tx_burst
/// takes them. Dropping a burst frees the mbufs still in it.
pub struct Burst {
    ptrs: [*mut dpdk_sys::rte_mbuf; BURST_SIZE],
    len: usize,
}

// SAFETY: a Burst owns its mbufs exactly like a [Mbuf; N] would.
unsafe impl Send for Burst {}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    /// An empty burst.
    pub const fn new() -> Burst {
        Burst {
            ptrs: [std::ptr::null_mut(); BURST_SIZE],
            len: 0,
        }
    }

    /// Frames in the burst.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the burst is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the burst is full.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == BURST_SIZE
    }

    /// The `i`-th frame's bytes, in place (for a first look over a burst
    /// before it is drained).
    #[inline]
    pub fn frame(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len {
            return None;
        }
        // SAFETY: the first `len` slots hold valid, non-null mbufs this
        // burst owns, and `Mbuf` is a transparent wrapper of that pointer;
        // the reference lives no longer than `&self`, during which nothing
        // can take the mbuf out.
        let m: &Mbuf = unsafe { &*self.ptrs.as_ptr().add(i).cast::<Mbuf>() };
        Some(m.data())
    }

    /// The `i`-th frame's mbuf, in place.
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Mbuf> {
        if i >= self.len {
            return None;
        }
        // SAFETY: as in `frame`; `&mut self` makes the reference unique.
        Some(unsafe { &mut *self.ptrs.as_mut_ptr().add(i).cast::<Mbuf>() })
    }

    /// The `i`-th frame's bytes and, where the NIC computed one and
    /// `rss` says to take it, its RSS hash; `None` for a frame in several
    /// segments (or past the end). One look at the mbuf, for the first
    /// pass over a burst.
    #[inline(always)]
    pub fn first_look(&self, i: usize, rss: bool) -> Option<(&[u8], Option<u32>)> {
        if i >= self.len {
            return None;
        }
        // SAFETY: as in `frame`.
        let m: &Mbuf = unsafe { &*self.ptrs.as_ptr().add(i).cast::<Mbuf>() };
        if m.segments() != 1 {
            return None;
        }
        let hash = if rss { m.rss_hash() } else { None };
        Some((m.data(), hash))
    }

    /// Whether the `i`-th frame is in one segment (false past the end).
    #[inline]
    pub fn single_segment(&self, i: usize) -> bool {
        if i >= self.len {
            return false;
        }
        // SAFETY: as in `frame`.
        let m: &Mbuf = unsafe { &*self.ptrs.as_ptr().add(i).cast::<Mbuf>() };
        m.segments() == 1
    }

    /// The `i`-th frame's RSS hash, if the NIC computed one.
    #[inline]
    pub fn rss_hash(&self, i: usize) -> Option<u32> {
        if i >= self.len {
            return None;
        }
        // SAFETY: as in `frame`.
        let m: &Mbuf = unsafe { &*self.ptrs.as_ptr().add(i).cast::<Mbuf>() };
        m.rss_hash()
    }

    /// Starts loading the mbufs from index `from` on, and then their first
    /// data line, into this core's caches: for frames another core
    /// touched last (handed over by another worker), whose cache misses
    /// then overlap instead of following one another.
    pub fn prefetch_from(&self, from: usize) {
        for &p in &self.ptrs[from.min(self.len)..self.len] {
            super::prefetch(p.cast());
            super::prefetch(p.cast::<u8>().wrapping_add(64));
        }
        for i in from..self.len {
            // SAFETY: as in `frame`; reading the header only computes an
            // address to prefetch (a hint that never faults).
            let m: &Mbuf = unsafe { &*self.ptrs.as_ptr().add(i).cast::<Mbuf>() };
            super::prefetch(m.data_ptr());
        }
    }

    /// Adds a frame; gives it back when the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST_SIZE {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw().as_ptr();
        self.len += 1;
        Ok(())
    }

    /// Takes every frame out, in order, leaving the burst empty.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_> {
        let len = self.len;
        self.len = 0;
        Drain {
            burst: self,
            next: 0,
            len,
        }
    }

    /// Raw slots for an rx call to fill; the caller must then `set_len`.
    pub(crate) fn raw_slots(&mut self) -> *mut *mut dpdk_sys::rte_mbuf {
        debug_assert_eq!(self.len, 0);
        self.ptrs.as_mut_ptr()
    }

    /// # Safety
    /// The first `n` slots must hold valid mbufs owned by this burst.
    pub(crate) unsafe fn set_len(&mut self, n: usize) {
        debug_assert!(n <= BURST_SIZE);
        self.len = n;
    }

    /// Raw pointers of the frames, for a tx call.
    pub(crate) fn raw_frames(&mut self) -> (*mut *mut dpdk_sys::rte_mbuf, usize) {
        (self.ptrs.as_mut_ptr(), self.len)
    }

    /// The driver took the first `n` frames: drop them from the burst
    /// without freeing (DPDK owns them now) and move the rest to the front.
    pub(crate) fn consumed(&mut self, n: usize) {
        let n = n.min(self.len);
        self.ptrs.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Frees every frame still in the burst; returns how many.
    pub fn free_all(&mut self) -> usize {
        let n = self.len;
        for m in self.drain() {
            drop(m);
        }
        n
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.free_all();
    }
}

/// Iterator of [`Burst::drain`]: yields owned mbufs. Frames not taken are
/// freed when it is dropped.
pub struct Drain<'a> {
    burst: &'a mut Burst,
    next: usize,
    len: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;
    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.len {
            return None;
        }
        let p = self.burst.ptrs[self.next];
        self.next += 1;
        // SAFETY: slots below len hold valid owned mbufs; each is yielded
        // once, and the burst's len was reset so it will not free them.
        NonNull::new(p).map(|p| unsafe { Mbuf::from_raw(p) })
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        for m in self.by_ref() {
            drop(m);
        }
    }
}
