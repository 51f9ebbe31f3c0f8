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

impl Bucket {
    /// The ways whose tag is `tag`, as bits `0..WAYS` (empty ways too).
    ///
    /// Written as a loop, LLVM makes it an SSE2 compare of ways 1..9 plus
    /// two scalar ones, about 28 instructions. A SWAR scan over `u64`
    /// lanes (xor with the broadcast tag, `(x - 0x0001..) & !x & 0x8000..`,
    /// combine the three words, decode the way from `trailing_zeros`) was
    /// measured at 4 to 11 more instructions per hit (scripts/instr.sh):
    /// three words of zero tests, then the way decode and a bounds check
    /// that the 10-bit mask does not need.
    #[inline(always)]
    fn matches(&self, tag: u16) -> u32 {
        let mut m = 0u32;
        for (w, &t) in self.tags.iter().enumerate() {
            m |= u32::from(t == tag) << w;
        }
        m
    }
}

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
    ///
    /// Always inlined: out of line, the call (six callee-saved registers,
    /// the closure's captures through memory) cost about as much as the
    /// scan.
    #[inline(always)]
    pub(super) fn find(&self, h: u32, mut is_match: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = h as u16;
        let mut b = self.home(h);
        // `probe >= 1`: the home bucket is always scanned, no entry test.
        let mut left = self.probe;
        loop {
            let bk = &self.buckets[b];
            let mut m = bk.matches(tag);
            while m != 0 {
                let w = m.trailing_zeros() as usize;
                m &= m - 1;
                let s = bk.slots[w];
                if s != NIL && is_match(s) {
                    return Some(s);
                }
            }
            left -= 1;
            if bk.overflow == 0 || left == 0 {
                return None;
            }
            b = self.next(b);
        }
    }

    /// The address of `h`'s home bucket (to prefetch).
    #[inline]
    pub(super) fn bucket_addr(&self, h: u32) -> *const u8 {
        std::ptr::from_ref(&self.buckets[self.home(h)]).cast()
    }

    /// [`Self::first_candidate`] for the burst path's second pass, in
    /// fewer instructions: ways 0..8 scanned as two 64-bit words (the
    /// lowest 16-bit lane equal to the tag found with the "has a zero
    /// lane" test, exact for the lowest one), ways 8 and 9 after. `NIL`
    /// when the first match is an empty way (a stale tag) or none
    /// matches: a candidate is only a hint.
    #[inline(always)]
    pub(super) fn first_candidate_swar(&self, h: u32) -> u32 {
        const ONES: u64 = 0x0001_0001_0001_0001;
        const HIGH: u64 = ONES << 15;
        let Some(bk) = self.buckets.get(self.home(h)) else {
            return NIL;
        };
        let tag = h as u16;
        let word = |t: &[u16]| {
            let mut w = 0u64;
            for (i, &x) in t.iter().enumerate() {
                w |= u64::from(x) << (16 * i);
            }
            w
        };
        let b = u64::from(tag) * ONES;
        // Ways 0..4, then 4..8: a word without a zero lane borrows nothing
        // out of its top lane, so the halves can be tested one by one.
        let zero = |w: u64| {
            let x = w ^ b;
            x.wrapping_sub(ONES) & !x & HIGH
        };
        let lo = zero(word(&bk.tags[0..4]));
        let hi = zero(word(&bk.tags[4..8]));
        let way = if lo != 0 {
            (lo.trailing_zeros() / 16) as usize
        } else if hi != 0 {
            4 + (hi.trailing_zeros() / 16) as usize
        } else if bk.tags[8] == tag {
            8
        } else if bk.tags[9] == tag {
            9
        } else {
            return NIL;
        };
        bk.slots.get(way).copied().unwrap_or(NIL)
    }

    /// The first slot in `h`'s home bucket whose tag matches, if any
    /// (a candidate to prefetch; not a verified match): the plain
    /// reference that [`Self::first_candidate_swar`] is tested against.
    #[cfg(test)]
    pub(super) fn first_candidate(&self, h: u32) -> Option<u32> {
        let bk = &self.buckets[self.home(h)];
        let mut m = bk.matches(h as u16);
        while m != 0 {
            let s = bk.slots[m.trailing_zeros() as usize];
            m &= m - 1;
            if s != NIL {
                return Some(s);
            }
        }
        None
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
    fn the_word_wide_scan_finds_the_first_matching_way() {
        let mut ix = Index::for_flows(8);
        assert_eq!(ix.buckets.len(), 1);
        // Ten ways, tags chosen to collide in every lane position, and a
        // hash per tag whose home is bucket 0.
        let tags = [7u16, 3, 7, 0xffff, 0x8000, 1, 0, 0x7fff, 3, 0x0101];
        for (w, &t) in tags.iter().enumerate() {
            assert!(ix.insert(u32::from(t), 100 + w as u32));
        }
        for t in [7u16, 3, 0xffff, 0x8000, 1, 0, 0x7fff, 0x0101, 2, 0xfffe] {
            let h = u32::from(t);
            let want = ix.first_candidate(h).unwrap_or(NIL);
            assert_eq!(ix.first_candidate_swar(h), want, "tag {t:#x}");
        }
        // An emptied way keeps its tag: the scan reports no candidate
        // rather than another way's.
        assert!(ix.remove(7, 100));
        assert_eq!(ix.first_candidate_swar(7), NIL);
        assert_eq!(ix.first_candidate(7), Some(102));
    }

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

    /// Tags around bit-trick edges: 0, 1, the top bit, all ones, and
    /// neighbours.
    const EDGE_TAGS: [u16; 16] = [
        0x0000, 0x0001, 0x0002, 0x00ff, 0x0100, 0x7ffe, 0x7fff, 0x8000, 0x8001, 0x8002, 0xfffd,
        0xfffe, 0xffff, 0x1234, 0x1235, 0x1233,
    ];

    /// A one-bucket index holding `tags` with slot `w` in way `w`, except
    /// the ways in `nil` (empty, tag kept as a removal leaves it).
    fn one_bucket(tags: [u16; WAYS], nil: u16) -> Index {
        let mut ix = Index::for_flows(1);
        assert_eq!((ix.buckets.len(), ix.probe), (1, 1));
        let bk = &mut ix.buckets[0];
        bk.tags = tags;
        for w in 0..WAYS {
            bk.slots[w] = if nil >> w & 1 == 1 { NIL } else { w as u32 };
        }
        ix
    }

    /// Checks `find` and `first_candidate` against a naive scan of the
    /// bucket for tag `q`: every way whose tag is `q` is found, the
    /// matcher sees every such slot, and nothing else is found.
    fn check_against_naive(ix: &Index, q: u16) {
        let bk = &ix.buckets[0];
        let h = u32::from(q); // high bits 0: home bucket 0
        let naive: Vec<u32> = (0..WAYS)
            .filter(|&w| bk.tags[w] == q && bk.slots[w] != NIL)
            .map(|w| bk.slots[w])
            .collect();
        // Every candidate the matcher is shown: the naive matches, each
        // at most once, never NIL.
        let mut seen = Vec::new();
        assert_eq!(
            ix.find(h, |s| {
                seen.push(s);
                false
            }),
            None
        );
        for s in &naive {
            assert!(
                seen.contains(s),
                "q {q:#06x} tags {:04x?}: missed {s}",
                bk.tags
            );
        }
        for (i, &s) in seen.iter().enumerate() {
            assert_ne!(s, NIL);
            assert!(!seen[..i].contains(&s), "{s} twice");
            let t = bk.tags[s as usize];
            assert_eq!(t, q, "q {q:#06x}: way {s} tag {t:#06x}");
        }
        // Each true match is what `find` returns when it is the one.
        for &s in &naive {
            assert_eq!(
                ix.find(h, |x| x == s),
                Some(s),
                "q {q:#06x} tags {:04x?}",
                bk.tags
            );
        }
        // `first_candidate` is one of the candidates, and there is one
        // whenever there is a true match.
        match ix.first_candidate(h) {
            Some(s) => assert!(seen.contains(&s)),
            None => assert!(seen.is_empty()),
        }
    }

    #[test]
    fn tag_scan_never_misses_a_match() {
        for &q in &EDGE_TAGS {
            for &other in &EDGE_TAGS {
                for w in 0..WAYS {
                    // One match among `other`s, at every way.
                    let mut tags = [other; WAYS];
                    tags[w] = q;
                    check_against_naive(&one_bucket(tags, 0), q);
                    // One `other` among matches.
                    let mut tags = [q; WAYS];
                    tags[w] = other;
                    check_against_naive(&one_bucket(tags, 0), q);
                    // The match emptied, and every way but it emptied.
                    let mut tags = [other; WAYS];
                    tags[w] = q;
                    check_against_naive(&one_bucket(tags, 1 << w), q);
                    check_against_naive(&one_bucket(tags, !(1 << w)), q);
                }
                // Alternating match / near-equal tag, both phases.
                let alt = |p: usize| std::array::from_fn(|w| if w % 2 == p { q } else { other });
                check_against_naive(&one_bucket(alt(0), 0), q);
                check_against_naive(&one_bucket(alt(1), 0), q);
            }
            // Buckets full of near-equal tags, with and without a match.
            for w in 0..=WAYS {
                let near = [q ^ 1, q.wrapping_add(1), q.wrapping_sub(1), q ^ 0x8000];
                for &n in &near {
                    let mut tags = [n; WAYS];
                    if w < WAYS {
                        tags[w] = q;
                    }
                    check_against_naive(&one_bucket(tags, 0), q);
                }
            }
        }
    }

    #[test]
    fn tag_scan_random_buckets() {
        // xorshift; tags drawn near the query tag so that matches and near
        // misses are common.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let q = rnd() as u16;
            let tags = std::array::from_fn(|_| {
                let r = rnd();
                match r % 8 {
                    0..=2 => q,
                    3 => q ^ 1,
                    4 => q.wrapping_add((r >> 8) as u16 % 5).wrapping_sub(2),
                    5 => q ^ 0x8000,
                    6 => [0, 1, 0x8000, 0xffff][(r >> 8) as usize % 4],
                    _ => (r >> 16) as u16,
                }
            });
            let nil = if rnd() % 4 == 0 { rnd() as u16 } else { 0 };
            check_against_naive(&one_bucket(tags, nil), q);
        }
    }
}
