//! Frames handed from one worker to another ([`crate::steer`]): the two
//! typed ends of a [`Ring`] that carries owned mbufs.
//!
//! The ring itself is safe Rust over atomic words; what makes carrying
//! mbuf pointers through it sound is that each ring has exactly one
//! [`HandoffTx`] and one [`HandoffRx`] ([`handoff_ring`] makes them as a
//! pair, neither is `Clone`, both take `&mut self`), so every pointer
//! the receiver takes out was put in once by the sender, who gave up its
//! ownership. Frames still in a ring when both ends are gone are freed.

use std::sync::Arc;

use super::mbuf::{Burst, Mbuf, BURST_SIZE};
use crate::steer::{Ring, Tag};

/// The ring both ends share; frees what is left in it when the last end
/// goes.
struct Shared(Ring);

impl Drop for Shared {
    fn drop(&mut self) {
        let mut left = Vec::new();
        while self.0.pop_with(BURST_SIZE, |p, _| left.push(p)) != 0 {}
        for p in left {
            if let Some(nn) = std::ptr::NonNull::new(p as usize as *mut dpdk_sys::rte_mbuf) {
                // SAFETY: every handle in the ring is an mbuf a HandoffTx
                // gave up ownership of, and no HandoffRx is left to take
                // it: this is its only owner.
                drop(unsafe { Mbuf::from_raw(nn) });
            }
        }
    }
}

/// The sending end of a hand-off ring.
pub struct HandoffTx {
    ring: Arc<Shared>,
}

/// The receiving end of a hand-off ring.
pub struct HandoffRx {
    ring: Arc<Shared>,
}

/// A ring of `capacity` frames (rounded up to a power of two) from one
/// worker to another, as its two ends.
pub fn handoff_ring(capacity: usize) -> (HandoffTx, HandoffRx) {
    let ring = Arc::new(Shared(Ring::new(capacity)));
    (
        HandoffTx {
            ring: Arc::clone(&ring),
        },
        HandoffRx { ring },
    )
}

/// Frames waiting to be handed to one worker, with their tags.
pub struct Staged {
    frames: Burst,
    tags: [Tag; BURST_SIZE],
}

impl Default for Staged {
    fn default() -> Self {
        Staged {
            frames: Burst::new(),
            tags: [Tag::default(); BURST_SIZE],
        }
    }
}

impl Staged {
    /// Adds a frame; gives it back when full (send first).
    #[inline]
    pub fn push(&mut self, m: Mbuf, tag: Tag) -> Result<(), Mbuf> {
        let i = self.frames.len();
        self.frames.push(m)?;
        self.tags[i] = tag;
        Ok(())
    }

    /// Frames waiting.
    #[inline]
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether none waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Whether no more fits.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.frames.is_full()
    }
}

impl HandoffTx {
    /// Hands the staged frames over, oldest first; those the ring has no
    /// room for are freed. Returns (handed over, freed); `staged` is
    /// empty afterwards.
    pub fn send(&mut self, staged: &mut Staged) -> (usize, usize) {
        let (ptrs, len) = staged.frames.raw_frames();
        let tags = &staged.tags;
        let mut i = 0usize;
        let n = self.ring.0.push_with(len, || {
            // SAFETY: `ptrs` points at the burst's `len` owned, non-null
            // mbuf pointers, and `i < len` (push_with asks at most `len`
            // times).
            let p = unsafe { *ptrs.add(i) };
            let t = tags[i];
            i += 1;
            Some((p as usize as u64, t.word()))
        });
        // The first `n` now belong to the ring (and to the receiver).
        staged.frames.consumed(n);
        let dropped = staged.frames.free_all();
        (n, dropped)
    }
}

impl HandoffRx {
    /// Takes up to the room left in `burst` of the frames handed over,
    /// oldest first, appending them to `burst` and their tags to `tags`
    /// at the same indexes; returns how many.
    pub fn recv(&mut self, burst: &mut Burst, tags: &mut [Tag; BURST_SIZE]) -> usize {
        let start = burst.len();
        let mut k = start;
        let n = self.ring.0.pop_with(BURST_SIZE - start, |p, t| {
            if let Some(nn) = std::ptr::NonNull::new(p as usize as *mut dpdk_sys::rte_mbuf) {
                // SAFETY: the sender put this handle in once, giving up
                // ownership of a valid mbuf (HandoffTx::send); this is
                // the ring's only receiver, so it is taken out once.
                let m = unsafe { Mbuf::from_raw(nn) };
                tags[k] = Tag::of(t);
                k += 1;
                // Room was reserved above: pop_with takes at most
                // BURST_SIZE - start items.
                if let Err(m) = burst.push(m) {
                    drop(m);
                }
            }
        });
        debug_assert_eq!(start + n, k);
        // Another core touched these last: fetch them all at once.
        burst.prefetch_from(start);
        k - start
    }

    /// Frames waiting (a snapshot).
    pub fn waiting(&self) -> usize {
        self.ring.0.len()
    }
}
