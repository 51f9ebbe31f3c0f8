//! IPv4 headers (RFC 791), options tolerated.
//!
//! ```text
//!  0        1       2               4             6              8
//!  | ver/IHL | TOS  | total length  | ident       | flags/frag   |
//!  8        9       10              12                          16
//!  | TTL    | proto | checksum      | source address            |
//!  16                               20
//!  | destination address            | options ... (IHL * 4)
//! ```

use std::net::Ipv4Addr;

use super::checksum::{self, Incremental};
use super::{be16, malformed, need, put16, Layer, Result};

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
///
/// The buffer may extend past `total_len` (Ethernet padding); `payload()`
/// ends at `total_len`.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline(always)]
fn addr_at(b: &[u8], off: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[off], b[off + 1], b[off + 2], b[off + 3])
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it.
    ///
    /// Accessors panic if the buffer is shorter than 20 bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Checks version, IHL and the header length, not the total length.
    #[inline]
    fn check_header(b: &[u8]) -> Result<usize> {
        let len = b.len();
        need(Layer::Ipv4, HEADER_LEN, len)?;
        if b[field::VER_IHL] >> 4 != 4 {
            return malformed(Layer::Ipv4, "version is not 4");
        }
        let hl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if hl < HEADER_LEN {
            return malformed(Layer::Ipv4, "IHL < 5");
        }
        need(Layer::Ipv4, hl, len)?;
        let total = usize::from(be16(b, field::LENGTH));
        if total < hl {
            return malformed(Layer::Ipv4, "total length < header length");
        }
        Ok(total)
    }

    /// Wraps a buffer after checking the version, the IHL (options
    /// included), and that the buffer holds `total_len` bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        let total = Self::check_header(b)?;
        need(Layer::Ipv4, total, b.len())?;
        Ok(Ipv4Packet { buffer })
    }

    /// Like [`new_checked`](Self::new_checked), but accepts a buffer shorter
    /// than `total_len`, as in the invoking packet quoted by an ICMP error.
    /// `payload()` then returns only the bytes present.
    #[inline]
    pub fn new_quoted(buffer: T) -> Result<Self> {
        Self::check_header(buffer.as_ref())?;
        Ok(Ipv4Packet { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// (header end, payload end), clamped to the buffer so that no slice
    /// panics even after a setter changed IHL or total length.
    #[inline(always)]
    fn bounds(&self) -> (usize, usize) {
        let b = self.buffer.as_ref();
        let len = b.len();
        let hl = (usize::from(b[field::VER_IHL] & 0x0f) * 4)
            .max(HEADER_LEN)
            .min(len);
        let end = usize::from(be16(b, field::LENGTH)).max(hl).min(len);
        (hl, end)
    }

    /// IP version (4 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, from the IHL field.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The type-of-service byte (DSCP << 2 | ECN).
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Differentiated services code point.
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// Explicit congestion notification bits.
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    /// Total length (header + payload) from the header.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_DF != 0
    }

    /// More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// Fragment offset in **bytes** (the field times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLAGS_FRAG) & FRAG_MASK) << 3
    }

    /// Part of a fragmented datagram: MF set or a nonzero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & (FLAG_MF | FRAG_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload (see [`ip_proto`](super::ip_proto)).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        addr_at(self.buffer.as_ref(), field::SRC.start)
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        addr_at(self.buffer.as_ref(), field::DST.start)
    }

    /// Options (between the fixed header and the IHL).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let (hl, _) = self.bounds();
        &self.buffer.as_ref()[HEADER_LEN.min(hl)..hl]
    }

    /// The whole header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        let (hl, _) = self.bounds();
        &self.buffer.as_ref()[..hl]
    }

    /// The payload: from the end of the header to `total_len` (excluding
    /// any Ethernet padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let (hl, end) = self.bounds();
        &self.buffer.as_ref()[hl..end]
    }

    /// Whether the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(0, self.header())
    }

    /// The pseudo-header sum for the transport checksum of this packet's
    /// payload (source, destination, protocol, payload length). Pass it to
    /// `TcpPacket::fill_checksum` and friends.
    #[inline]
    pub fn pseudo_header(&self) -> u64 {
        let (hl, end) = self.bounds();
        // end - hl <= 65535 - 20.
        checksum::pseudo_header_v4(self.src(), self.dst(), self.protocol(), (end - hl) as u16)
    }
}

impl<'a> Ipv4Packet<&'a [u8]> {
    /// [`payload`](Self::payload) with the buffer's lifetime rather than
    /// the view's, so it can outlive this view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let (hl, end) = self.bounds();
        &self.buffer[hl..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4,
    /// 20..=60). Does not re-validate the view.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the TOS byte.
    #[inline]
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    /// Sets the total length. Does not re-validate the view; `payload()`
    /// stays within the buffer.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, id: u16) {
        put16(self.buffer.as_mut(), field::IDENT, id);
    }

    #[inline(always)]
    fn update_flags_frag(&mut self, mask: u16, value: u16) {
        let b = self.buffer.as_mut();
        let v = (be16(b, field::FLAGS_FRAG) & !mask) | (value & mask);
        put16(b, field::FLAGS_FRAG, v);
    }

    /// Sets or clears Don't Fragment.
    #[inline]
    pub fn set_dont_frag(&mut self, on: bool) {
        self.update_flags_frag(FLAG_DF, if on { FLAG_DF } else { 0 });
    }

    /// Sets or clears More Fragments.
    #[inline]
    pub fn set_more_frags(&mut self, on: bool) {
        self.update_flags_frag(FLAG_MF, if on { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset, given in bytes (a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, bytes: u16) {
        self.update_flags_frag(FRAG_MASK, bytes >> 3);
    }

    /// Sets the TTL.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, p: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = p;
    }

    /// Sets the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// Sets the source address (checksums untouched).
    #[inline]
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Sets the destination address (checksums untouched).
    #[inline]
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Recomputes the header checksum from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let c = checksum::ipv4_header_checksum(self.header());
        self.set_checksum(c);
    }

    /// Decrements the TTL (saturating at 0) and updates the header checksum
    /// incrementally. Returns the new TTL.
    #[inline]
    pub fn decrement_ttl(&mut self) -> u8 {
        let b = self.buffer.as_ref();
        let old = be16(b, field::TTL);
        let ttl = b[field::TTL].saturating_sub(1);
        let new = (u16::from(ttl) << 8) | (old & 0xff);
        let c = Incremental::new(self.checksum())
            .remove_u16(old)
            .add_u16(new)
            .finish();
        self.set_ttl(ttl);
        self.set_checksum(c);
        ttl
    }

    /// The payload, mutable (bounded as [`payload`](Self::payload)).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, end) = self.bounds();
        &mut self.buffer.as_mut()[hl..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Error;

    /// 192.168.0.1 -> 192.168.0.199, UDP, DF, ttl 64, 4 payload bytes,
    /// followed by 2 bytes of padding.
    fn sample() -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 24, 0xab, 0xcd, 0x40, 0x00, 64, 17, 0, 0, 192, 168, 0, 1, 192, 168,
            0, 199, 1, 2, 3, 4, 0xee, 0xee,
        ];
        let c = checksum::ipv4_header_checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn parses_fields() {
        let p = sample();
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.total_len(), 24);
        assert_eq!(ip.ident(), 0xabcd);
        assert!(ip.dont_frag());
        assert!(!ip.more_frags());
        assert_eq!(ip.frag_offset(), 0);
        assert!(!ip.is_fragment());
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), 17);
        assert_eq!(ip.src(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(ip.dst(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(ip.options(), &[] as &[u8]);
        assert_eq!(ip.payload(), &[1, 2, 3, 4]);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn options_and_fragments() {
        // IHL 6 with a 4-byte option (NOP NOP NOP EOL), MF + offset 1480.
        let mut p = vec![
            0x46, 0xb8, 0x00, 26, 0, 1, 0x20, 185, 1, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 1, 1, 1,
            0, 0xaa, 0xbb,
        ];
        let c = checksum::ipv4_header_checksum(&p[..24]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.options(), &[1, 1, 1, 0]);
        assert_eq!(ip.payload(), &[0xaa, 0xbb]);
        assert_eq!(ip.dscp(), 46);
        assert_eq!(ip.ecn(), 0);
        assert!(ip.more_frags());
        assert_eq!(ip.frag_offset(), 1480);
        assert!(ip.is_fragment());
        assert!(ip.verify_checksum());
        // Last fragment: MF clear but offset nonzero.
        let mut q = p.clone();
        q[6] = 0;
        assert!(Ipv4Packet::new_checked(&q[..]).unwrap().is_fragment());
    }

    #[test]
    fn truncation_at_every_length() {
        // Header 24 (IHL 6), total length 30.
        let mut p = [0u8; 30];
        p[0] = 0x46;
        p[3] = 30;
        for n in 0..p.len() {
            let required = if n < 20 {
                20
            } else if n < 24 {
                24
            } else {
                30
            };
            assert_eq!(
                Ipv4Packet::new_checked(&p[..n]).unwrap_err(),
                Error::Truncated {
                    layer: Layer::Ipv4,
                    required,
                    len: n
                },
                "len {n}"
            );
        }
        assert!(Ipv4Packet::new_checked(&p[..]).is_ok());
    }

    #[test]
    fn malformed_headers() {
        let base = sample();
        let cases: [(usize, u8, &str); 5] = [
            (0, 0x65, "version is not 4"),
            (0, 0x05, "version is not 4"),
            (0, 0x44, "IHL < 5"),
            (0, 0x40, "IHL < 5"),
            (3, 19, "total length < header length"),
        ];
        for (off, val, what) in cases {
            let mut p = base.clone();
            p[off] = val;
            assert_eq!(
                Ipv4Packet::new_checked(&p[..]).unwrap_err(),
                Error::Malformed {
                    layer: Layer::Ipv4,
                    what
                },
                "{what}"
            );
        }
        // total_len larger than the buffer.
        let mut p = base.clone();
        p[3] = 27;
        assert_eq!(
            Ipv4Packet::new_checked(&p[..]).unwrap_err(),
            Error::Truncated {
                layer: Layer::Ipv4,
                required: 27,
                len: 26
            }
        );
        // ... but fine for a quoted packet.
        let q = Ipv4Packet::new_quoted(&p[..]).unwrap();
        assert_eq!(q.payload(), &[1, 2, 3, 4, 0xee, 0xee]);
    }

    #[test]
    fn setters_and_checksum() {
        let mut p = sample();
        let mut ip = Ipv4Packet::new_checked(&mut p[..]).unwrap();
        ip.set_src(Ipv4Addr::new(10, 1, 2, 3));
        ip.set_dst(Ipv4Addr::new(10, 4, 5, 6));
        ip.set_ident(7);
        ip.set_tos(0x10);
        ip.set_dont_frag(false);
        ip.set_more_frags(true);
        ip.set_frag_offset(16);
        ip.set_protocol(6);
        assert!(!ip.verify_checksum());
        ip.fill_checksum();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src(), Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(ip.dst(), Ipv4Addr::new(10, 4, 5, 6));
        assert_eq!(ip.ident(), 7);
        assert_eq!(ip.tos(), 0x10);
        assert!(!ip.dont_frag());
        assert!(ip.more_frags());
        assert_eq!(ip.frag_offset(), 16);
        assert_eq!(ip.protocol(), 6);
        assert_eq!(ip.decrement_ttl(), 63);
        assert!(ip.verify_checksum());
        assert_eq!(ip.ttl(), 63);
        ip.set_ttl(0);
        ip.fill_checksum();
        assert_eq!(ip.decrement_ttl(), 0);
        assert!(ip.verify_checksum());
        ip.payload_mut()[0] = 9;
        assert_eq!(ip.payload()[0], 9);
    }

    #[test]
    fn length_setters_never_make_accessors_panic() {
        let mut p = sample();
        let mut ip = Ipv4Packet::new_checked(&mut p[..]).unwrap();
        for (hl, tl) in [(60, 24), (0, 24), (20, 0), (20, 65535), (60, 65535), (4, 3)] {
            ip.set_header_len(hl);
            ip.set_total_len(tl);
            let _ = (
                ip.options(),
                ip.payload(),
                ip.header(),
                ip.verify_checksum(),
            );
            let _ = ip.pseudo_header();
            let _ = ip.payload_mut();
            ip.fill_checksum();
        }
    }
}
