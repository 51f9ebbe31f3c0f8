//! The per-worker pool of local ports for source-NAT (hairpin) flows.
//!
//! A FIFO ring of free ports plus an in-use bitmap, both allocated by
//! [`SnatPorts::new`]; [`alloc`](SnatPorts::alloc) and
//! [`free`](SnatPorts::free) are O(1) and never allocate. FIFO order
//! reuses a port as late as possible, so a real still holding the old
//! connection in TIME_WAIT rarely sees the same tuple again.
//!
//! Every live SNAT flow of a worker holds a distinct port, which is more
//! than the connection table asks for (unique per real, real port and
//! protocol). Workers that share an address get disjoint ranges
//! ([`Tables::with_snat_ports`](super::Tables::with_snat_ports)).

use std::ops::RangeInclusive;

/// Default SNAT port range: below Linux's default ephemeral range
/// (`net.ipv4.ip_local_port_range` = 32768..60999), so the replies to the
/// kernel's own connections to a real (health checks) never match a SNAT
/// flow, and above the well-known ports.
pub const DEFAULT_SNAT_PORTS: RangeInclusive<u16> = 1024..=32767;

/// A fixed pool of local ports.
#[derive(Debug, Clone)]
pub struct SnatPorts {
    lo: u16,
    hi: u16,
    /// Free ports, FIFO: `ring[head..head + free]` (wrapping).
    ring: Box<[u16]>,
    head: usize,
    free: usize,
    /// One bit per port of the range: handed out and not yet freed.
    used: Box<[u64]>,
}

impl SnatPorts {
    /// A pool of every port in `range` (allocates; an empty range gives an
    /// empty pool).
    pub fn new(range: RangeInclusive<u16>) -> SnatPorts {
        let (lo, hi) = (*range.start(), *range.end());
        let ring: Box<[u16]> = range.collect();
        let n = ring.len();
        SnatPorts {
            lo,
            hi,
            head: 0,
            free: n,
            used: vec![0u64; n.div_ceil(64)].into_boxed_slice(),
            ring,
        }
    }

    /// Whether `port` belongs to this pool's range.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        !self.ring.is_empty() && (self.lo..=self.hi).contains(&port)
    }

    /// Ports available.
    #[inline]
    pub fn available(&self) -> usize {
        self.free
    }

    /// Ports handed out.
    #[inline]
    pub fn in_use(&self) -> usize {
        self.ring.len() - self.free
    }

    /// Takes the port freed longest ago, if any is left.
    #[inline]
    pub fn alloc(&mut self) -> Option<u16> {
        if self.free == 0 {
            return None;
        }
        let p = self.ring[self.head];
        self.head = (self.head + 1) % self.ring.len();
        self.free -= 1;
        let i = usize::from(p - self.lo);
        self.used[i / 64] |= 1 << (i % 64);
        Some(p)
    }

    /// Takes `port` itself out of the pool (a flow synced from the other
    /// node holds it). Returns `false` if it is outside the range or
    /// already handed out. O(pool size): sync only, not per packet.
    pub fn reserve(&mut self, port: u16) -> bool {
        if !self.contains(port) {
            return false;
        }
        let i = usize::from(port - self.lo);
        let bit = 1u64 << (i % 64);
        if self.used[i / 64] & bit != 0 {
            return false;
        }
        let n = self.ring.len();
        let Some(k) = (0..self.free).find(|k| self.ring[(self.head + k) % n] == port) else {
            return false;
        };
        // Swap it to the head and take the head, as `alloc` does.
        self.ring.swap(self.head, (self.head + k) % n);
        self.head = (self.head + 1) % n;
        self.free -= 1;
        self.used[i / 64] |= bit;
        true
    }

    /// Returns a port to the pool. A port outside the range or not handed
    /// out is ignored (returns `false`), so a stray double free cannot put
    /// one port in the ring twice.
    #[inline]
    pub fn free(&mut self, port: u16) -> bool {
        if !self.contains(port) {
            return false;
        }
        let i = usize::from(port - self.lo);
        let bit = 1u64 << (i % 64);
        if self.used[i / 64] & bit == 0 {
            return false;
        }
        self.used[i / 64] &= !bit;
        let tail = (self.head + self.free) % self.ring.len();
        self.ring[tail] = port;
        self.free += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_each_port_once_and_reuses_fifo() {
        let mut p = SnatPorts::new(2000..=2003);
        let got: Vec<u16> = std::iter::from_fn(|| p.alloc()).collect();
        assert_eq!(got, [2000, 2001, 2002, 2003]);
        assert_eq!(p.alloc(), None);
        assert!(p.free(2002));
        assert!(!p.free(2002), "double free ignored");
        assert!(!p.free(1999) && !p.free(2004), "outside the range");
        assert!(p.free(2000));
        assert_eq!(p.in_use(), 2);
        assert_eq!(p.alloc(), Some(2002), "freed longest ago first");
        assert_eq!(p.alloc(), Some(2000));
        assert_eq!(p.alloc(), None);
    }

    #[test]
    fn reserve_takes_one_port_out_of_the_pool() {
        let mut p = SnatPorts::new(2000..=2003);
        assert!(p.reserve(2002));
        assert!(!p.reserve(2002), "already taken");
        assert!(!p.reserve(1999));
        let got: Vec<u16> = std::iter::from_fn(|| p.alloc()).collect();
        assert_eq!(got.len(), 3);
        assert!(!got.contains(&2002));
        assert!(p.free(2002));
        assert_eq!(p.alloc(), Some(2002));
    }

    #[test]
    fn full_default_range_and_empty_range() {
        let mut p = SnatPorts::new(DEFAULT_SNAT_PORTS);
        assert_eq!(p.available(), 32767 - 1024 + 1);
        assert!(p.contains(1024) && p.contains(32767) && !p.contains(40000));
        let mut seen = vec![false; 65536];
        while let Some(x) = p.alloc() {
            assert!(!seen[usize::from(x)]);
            seen[usize::from(x)] = true;
        }
        assert_eq!(p.in_use(), 32767 - 1024 + 1);
        #[allow(clippy::reversed_empty_ranges)]
        let mut e = SnatPorts::new(10..=9);
        assert_eq!(e.alloc(), None);
        assert!(!e.contains(10) && !e.free(10));
    }
}
