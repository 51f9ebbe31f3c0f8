//! Bucketed hash index: 32-bit hash -> slab slot.
//!
//! A bucket is one 64-byte cache line holding 10 ways (`u16` tag + `u32`
//! slot each) and an overflow counter. A key's home bucket is chosen by the
//! high bits of its hash (`(h * n) >> 32`), its tag is the low 16 bits. A
//! key lives in its home bucket or, if that is full, in one of the next
//! `MAX_PROBE - 1` buckets (linear probing over buckets, bounded).
//! `overflow[b]` counts entries stored past `b` whose probe path crosses
//! `b`, so a lookup stops at the first bucket whose counter is 0: a hit
//! usually costs one bucket line plus the entry line, a miss one line.
//! Deletion clears the way and decrements the counters along the path; no
//! tombstones.

pub(super) const WAYS: usize = 10;
pub(super) const MAX_PROBE: usize = 8;
/// Ways per flow the index is sized for (load factor 0.8).
pub(super) const TARGET_PER_BUCKET: usize = 8;
pub(super) const NIL: u32 = u32::MAX;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Bucket {
    tags: [u16; WAYS],
    slots: [u32; WAYS],
    overflow: u16,
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

const EMPTY_BUCKET: Bucket = Bucket {
    tags: [0; WAYS],
    slots: [NIL; WAYS],
    overflow: 0,
};

pub(super) struct Index {
    buckets: Box<[Bucket]>,
    probe: usize,
}

impl Index {
    /// An index for `flows` entries at load ≤ 0.8.
    pub(super) fn for_flows(flows: usize) -> Self {
        let n = flows.div_ceil(TARGET_PER_BUCKET).max(1);
        Self {
            buckets: vec![EMPTY_BUCKET; n].into_boxed_slice(),
            probe: MAX_PROBE.min(n),
        }
    }

    pub(super) fn region(&self) -> (*const u8, usize) {
        (self.buckets.as_ptr().cast(), self.bytes())
    }

    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buckets)
    }

    #[inline]
    fn home(&self, h: u32) -> usize {
        ((u64::from(h) * self.buckets.len() as u64) >> 32) as usize
    }

    #[inline]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// The first slot with hash `h` for which `is_match` holds.
    #[inline]
    pub(super) fn find(&self, h: u32, mut is_match: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = h as u16;
        let mut b = self.home(h);
        for _ in 0..self.probe {
            let bk = &self.buckets[b];
            // Branch-free tag scan into a bit mask, then check candidates.
            let mut m = 0u32;
            for (w, &t) in bk.tags.iter().enumerate() {
                m |= u32::from(t == tag) << w;
            }
            while m != 0 {
                let w = m.trailing_zeros() as usize;
                m &= m - 1;
                let s = bk.slots[w];
                if s != NIL && is_match(s) {
                    return Some(s);
                }
            }
            if bk.overflow == 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    /// Loads the home bucket of `h` (a safe stand-in for a prefetch: the
    /// load is issued, nothing waits for it).
    #[inline]
    pub(super) fn touch(&self, h: u32) {
        std::hint::black_box(self.buckets[self.home(h)].overflow);
    }

    /// The address of `h`'s home bucket (to prefetch).
    #[inline]
    pub(super) fn bucket_addr(&self, h: u32) -> *const u8 {
        std::ptr::from_ref(&self.buckets[self.home(h)]).cast()
    }

    /// The first slot in `h`'s home bucket whose tag matches, if any
    /// (a candidate to prefetch; not a verified match).
    #[inline]
    pub(super) fn first_candidate(&self, h: u32) -> Option<u32> {
        let bk = &self.buckets[self.home(h)];
        let tag = h as u16;
        (0..WAYS)
            .find(|&w| bk.tags[w] == tag && bk.slots[w] != NIL)
            .map(|w| bk.slots[w])
    }

    /// Whether an insert of hash `h` would find a free way.
    #[inline]
    pub(super) fn has_room(&self, h: u32) -> bool {
        let mut b = self.home(h);
        for _ in 0..self.probe {
            if self.buckets[b].slots.contains(&NIL) {
                return true;
            }
            b = self.next(b);
        }
        false
    }

    /// Adds `slot` under hash `h`; `false` if the probe window is full.
    pub(super) fn insert(&mut self, h: u32, slot: u32) -> bool {
        let home = self.home(h);
        let mut b = home;
        for dist in 0..self.probe {
            if let Some(w) = self.buckets[b].slots.iter().position(|&s| s == NIL) {
                self.buckets[b].slots[w] = slot;
                self.buckets[b].tags[w] = h as u16;
                let mut p = home;
                for _ in 0..dist {
                    self.buckets[p].overflow += 1;
                    p = self.next(p);
                }
                return true;
            }
            b = self.next(b);
        }
        false
    }

    /// Removes `slot` stored under hash `h`; `false` if absent.
    pub(super) fn remove(&mut self, h: u32, slot: u32) -> bool {
        let home = self.home(h);
        let mut b = home;
        for dist in 0..self.probe {
            if let Some(w) = self.buckets[b].slots.iter().position(|&s| s == slot) {
                self.buckets[b].slots[w] = NIL;
                let mut p = home;
                for _ in 0..dist {
                    self.buckets[p].overflow -= 1;
                    p = self.next(p);
                }
                return true;
            }
            b = self.next(b);
        }
        false
    }

    /// Every slot stored in the probe window of `h` (eviction candidates).
    pub(super) fn window(&self, h: u32, mut f: impl FnMut(u32)) {
        let mut b = self.home(h);
        for _ in 0..self.probe {
            for &s in self.buckets[b].slots.iter() {
                if s != NIL {
                    f(s);
                }
            }
            b = self.next(b);
        }
    }

    /// Sum of overflow counters and used ways (consistency checks in tests).
    #[cfg(test)]
    pub(super) fn used(&self) -> usize {
        self.buckets
            .iter()
            .map(|b| b.slots.iter().filter(|&&s| s != NIL).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_chains_and_removal() {
        // 2 buckets: force everything to hash into bucket 0.
        let mut ix = Index::for_flows(16);
        assert_eq!(ix.buckets.len(), 2);
        let h = |i: u32| i & 0xffff; // high bits 0 -> home 0
        for i in 0..20 {
            assert!(ix.insert(h(i), i), "{i}");
        }
        assert!(!ix.insert(h(99), 99), "window full");
        assert!(!ix.has_room(h(99)));
        assert_eq!(ix.buckets[0].overflow, 10);
        for i in 0..20 {
            assert_eq!(ix.find(h(i), |s| s == i), Some(i));
        }
        // Remove from the home bucket: the overflowed ones stay reachable.
        for i in 0..10 {
            assert!(ix.remove(h(i), i));
        }
        for i in 10..20 {
            assert_eq!(ix.find(h(i), |s| s == i), Some(i));
        }
        for i in 10..20 {
            assert!(ix.remove(h(i), i));
        }
        assert_eq!(ix.buckets[0].overflow, 0);
        assert_eq!(ix.used(), 0);
        assert!(!ix.remove(h(3), 3));
    }

    #[test]
    fn wraps_around() {
        let mut ix = Index::for_flows(24); // 3 buckets
        let last = u32::MAX; // home = last bucket
        for i in 0..15 {
            assert!(ix.insert(last, i));
        }
        for i in 0..15 {
            assert_eq!(ix.find(last, |s| s == i), Some(i));
        }
        let mut n = 0;
        ix.window(last, |_| n += 1);
        assert_eq!(n, 15);
    }
}
