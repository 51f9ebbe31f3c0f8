//! The one narrow hook through which the pipeline reads and writes frames.
//!
//! A [`PacketBuf`] is a contiguous frame with headroom in front of it (DPDK
//! mbufs have 128 bytes), so encapsulation can prepend headers in place.
//! [`TestBuffer`] implements it over a `Vec` for tests without EAL.

/// A contiguous frame that can grow or shrink at either end.
pub trait PacketBuf {
    /// The frame, starting at the Ethernet header.
    fn data(&self) -> &[u8];
    /// The frame, mutable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the frame by `n` bytes at the front (the new bytes are
    /// unspecified). Returns `false`, leaving the frame unchanged, when the
    /// headroom is too small.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front. Returns `false`, unchanged, when the
    /// frame is shorter than `n`.
    fn adj(&mut self, n: usize) -> bool;
    /// Grows the frame by `n` bytes at the end (unspecified contents).
    /// Returns `false`, unchanged, when the tailroom is too small.
    fn append(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the end. Returns `false`, unchanged, when the
    /// frame is shorter than `n`.
    fn trim(&mut self, n: usize) -> bool;
    /// The NIC's RSS hash of this frame, when the NIC computed one.
    fn rss_hash(&self) -> Option<u32> {
        None
    }
    /// Length of the frame in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// Whether the frame is empty.
    fn is_empty(&self) -> bool {
        self.data().is_empty()
    }
}

/// Headroom of a [`TestBuffer`], the same as DPDK's `RTE_PKTMBUF_HEADROOM`.
pub const TEST_HEADROOM: usize = 128;
/// Room of a [`TestBuffer`] (headroom + frame + tailroom), like a 2 KiB mbuf.
pub const TEST_ROOM: usize = 2048 + TEST_HEADROOM;

/// A [`PacketBuf`] backed by a `Vec`, with an mbuf's headroom and room.
#[derive(Clone, PartialEq, Eq)]
pub struct TestBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    rss: Option<u32>,
}

impl TestBuffer {
    /// A buffer holding a copy of `frame`, with [`TEST_HEADROOM`] in front.
    ///
    /// # Panics
    /// If `frame` does not fit in [`TEST_ROOM`] - [`TEST_HEADROOM`] bytes.
    pub fn new(frame: &[u8]) -> Self {
        assert!(
            frame.len() <= TEST_ROOM - TEST_HEADROOM,
            "test frame too long"
        );
        let mut buf = vec![0u8; TEST_ROOM];
        buf[TEST_HEADROOM..TEST_HEADROOM + frame.len()].copy_from_slice(frame);
        TestBuffer {
            buf,
            start: TEST_HEADROOM,
            end: TEST_HEADROOM + frame.len(),
            rss: None,
        }
    }

    /// Sets the RSS hash the buffer reports.
    pub fn with_rss(mut self, hash: u32) -> Self {
        self.rss = Some(hash);
        self
    }

    /// The frame as an owned vector.
    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

impl std::fmt::Debug for TestBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestBuffer[{}](", self.end - self.start)?;
        for b in self.data() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl PacketBuf for TestBuffer {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn append(&mut self, n: usize) -> bool {
        if n > self.buf.len() - self.end {
            return false;
        }
        self.end += n;
        true
    }
    fn trim(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.end -= n;
        true
    }
    fn rss_hash(&self) -> Option<u32> {
        self.rss
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_and_shrink_respect_bounds() {
        let mut b = TestBuffer::new(&[1, 2, 3]);
        assert!(b.prepend(2));
        assert_eq!(b.len(), 5);
        assert!(b.adj(2));
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(!b.adj(4));
        assert!(b.trim(1));
        assert_eq!(b.data(), &[1, 2]);
        assert!(!b.prepend(TEST_HEADROOM + 1));
        assert!(b.append(TEST_ROOM - TEST_HEADROOM - 2));
        assert!(!b.append(1));
    }
}
