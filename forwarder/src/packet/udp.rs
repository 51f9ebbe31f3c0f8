//! UDP headers (RFC 768).
//!
//! ```text
//!  0          2          4          6          8
//!  | src port | dst port | length   | checksum | data ...
//! ```
//!
//! A checksum field of 0 means "no checksum"; that is allowed over IPv4
//! only. A computed checksum of 0 is sent as `0xFFFF`.

use super::checksum::{self, Incremental};
use super::{be16, malformed, need, put16, Layer, Result};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Length of the header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
///
/// The buffer may be longer than the UDP length; `payload()` and the
/// checksum stop at the UDP length.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it.
    ///
    /// Accessors panic if the buffer is shorter than 8 bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after checking that the UDP length is at least 8 and
    /// that the buffer holds that many bytes. (UDP jumbograms, length 0
    /// over IPv6, are refused.)
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need(Layer::Udp, HEADER_LEN, b.len())?;
        let len = usize::from(be16(b, field::LENGTH));
        if len < HEADER_LEN {
            return malformed(Layer::Udp, "length < 8");
        }
        need(Layer::Udp, len, b.len())?;
        Ok(UdpPacket { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Datagram end, clamped to 8..=buffer length.
    #[inline(always)]
    fn end(&self) -> usize {
        let b = self.buffer.as_ref();
        usize::from(be16(b, field::LENGTH))
            .max(HEADER_LEN)
            .min(b.len())
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header + data).
    #[inline]
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum field (0 = none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Whether a checksum is present (the field is not 0).
    #[inline]
    pub fn has_checksum(&self) -> bool {
        self.checksum() != 0
    }

    /// Data after the header, up to the UDP length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = self.end();
        &self.buffer.as_ref()[HEADER_LEN.min(end)..end]
    }

    /// Header and data, up to the UDP length.
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.end()]
    }

    /// Over IPv4: true if the checksum is absent (0) or correct.
    #[inline]
    pub fn verify_checksum_v4(&self, pseudo: u64) -> bool {
        !self.has_checksum() || checksum::verify(pseudo, self.datagram())
    }

    /// Over IPv6: true only if the checksum is present and correct.
    #[inline]
    pub fn verify_checksum_v6(&self, pseudo: u64) -> bool {
        self.has_checksum() && checksum::verify(pseudo, self.datagram())
    }
}

impl<'a> UdpPacket<&'a [u8]> {
    /// [`payload`](Self::payload) with the buffer's lifetime rather than
    /// the view's.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let end = self.end();
        &self.buffer[HEADER_LEN.min(end)..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port (checksum untouched).
    #[inline]
    pub fn set_src_port(&mut self, p: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, p);
    }

    /// Sets the destination port (checksum untouched).
    #[inline]
    pub fn set_dst_port(&mut self, p: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, p);
    }

    /// Sets the length field. Does not re-validate the view.
    #[inline]
    pub fn set_length(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the checksum field as is (0 = none).
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// Computes the checksum from scratch and stores it, a computed 0 as
    /// `0xFFFF`.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: u64) {
        let c = checksum::transport_checksum(pseudo, self.datagram(), checksum::UDP_FIELD);
        self.set_checksum(checksum::udp_wire(c));
    }

    /// Applies an incremental update started with
    /// [`Incremental::new_udp`] from the current field: a zero (absent)
    /// checksum stays zero, a result of 0 is stored as `0xFFFF`.
    ///
    /// ```
    /// # use forwarder::packet::UdpPacket;
    /// # let mut buf = [0u8, 53, 0, 53, 0, 8, 0x12, 0x34];
    /// let mut udp = UdpPacket::new_checked(&mut buf[..]).unwrap();
    /// udp.update_checksum(|c| c.remove_u16(53).add_u16(5353));
    /// udp.set_dst_port(5353);
    /// ```
    #[inline]
    pub fn update_checksum(&mut self, f: impl FnOnce(Incremental) -> Incremental) {
        let c = f(Incremental::new_udp(self.checksum())).finish();
        self.set_checksum(c);
    }

    /// Data, mutable (up to the UDP length).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.end();
        &mut self.buffer.as_mut()[HEADER_LEN.min(end)..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::checksum::{pseudo_header_v4, pseudo_header_v6};
    use crate::packet::Error;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn datagram() -> Vec<u8> {
        // 53 -> 33333, length 12, padding after.
        vec![0, 53, 0x82, 0x35, 0, 12, 0, 0, b'a', b'b', b'c', b'd', 0, 0]
    }

    #[test]
    fn parses_fields() {
        let d = datagram();
        let u = UdpPacket::new_checked(&d[..]).unwrap();
        assert_eq!(u.src_port(), 53);
        assert_eq!(u.dst_port(), 33333);
        assert_eq!(u.length(), 12);
        assert_eq!(u.checksum(), 0);
        assert!(!u.has_checksum());
        assert_eq!(u.payload(), b"abcd");
        assert_eq!(u.datagram().len(), 12);
    }

    #[test]
    fn length_errors() {
        let d = datagram();
        for n in 0..12 {
            let required = if n < 8 { 8 } else { 12 };
            assert_eq!(
                UdpPacket::new_checked(&d[..n]).unwrap_err(),
                Error::Truncated {
                    layer: Layer::Udp,
                    required,
                    len: n
                }
            );
        }
        for len in 0..8u8 {
            let mut bad = d.clone();
            bad[5] = len;
            assert_eq!(
                UdpPacket::new_checked(&bad[..]).unwrap_err(),
                Error::Malformed {
                    layer: Layer::Udp,
                    what: "length < 8"
                }
            );
        }
        let mut long = d.clone();
        long[5] = 15;
        assert_eq!(
            UdpPacket::new_checked(&long[..]).unwrap_err(),
            Error::Truncated {
                layer: Layer::Udp,
                required: 15,
                len: 14
            }
        );
    }

    #[test]
    fn checksum_v4_zero_rules() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let ph = pseudo_header_v4(src, dst, 17, 12);
        let mut d = datagram();
        let mut u = UdpPacket::new_checked(&mut d[..]).unwrap();
        assert!(u.verify_checksum_v4(ph), "absent is fine over IPv4");
        assert!(!u.verify_checksum_v6(ph), "absent is not fine over IPv6");
        u.fill_checksum(ph);
        assert!(u.has_checksum());
        assert!(u.verify_checksum_v4(ph));
        // Absent stays absent under an incremental update.
        u.set_checksum(0);
        u.update_checksum(|c| c.remove_u16(53).add_u16(54));
        assert_eq!(u.checksum(), 0);
        // A datagram whose checksum computes to 0 carries 0xFFFF: choose the
        // last data word so that the sum is 0xFFFF.
        u.fill_checksum(ph);
        let c = u.checksum();
        let last = u16::from_be_bytes([b'c', b'd']);
        let fixed = checksum::fold(u64::from(last) + u64::from(c));
        u.payload_mut()[2..4].copy_from_slice(&fixed.to_be_bytes());
        u.fill_checksum(ph);
        assert_eq!(u.checksum(), 0xffff);
        assert!(u.verify_checksum_v4(ph));
    }

    #[test]
    fn incremental_result_zero_becomes_ffff() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let ph = pseudo_header_v4(src, dst, 17, 12);
        let mut d = datagram();
        let mut u = UdpPacket::new_checked(&mut d[..]).unwrap();
        u.fill_checksum(ph);
        // Find a source port that makes the new checksum 0 (i.e. 0xFFFF on
        // the wire), then check the incremental path agrees.
        let old = u.src_port();
        let c = u.checksum();
        // Recompute: new sum must be 0xFFFF: ~c + ~old + new == 0xFFFF.
        let partial = checksum::fold(u64::from(!c) + u64::from(!old));
        let new_port = !partial; // partial + new == 0xFFFF
        u.update_checksum(|i| i.remove_u16(old).add_u16(new_port));
        u.set_src_port(new_port);
        assert_eq!(u.checksum(), 0xffff);
        assert!(u.verify_checksum_v4(ph));
        let mut again = d.clone();
        let mut v = UdpPacket::new_checked(&mut again[..]).unwrap();
        v.fill_checksum(ph);
        assert_eq!(v.checksum(), 0xffff);
    }

    #[test]
    fn checksum_v6() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let ph = pseudo_header_v6(&src, &dst, 17, 12);
        let mut d = datagram();
        let mut u = UdpPacket::new_checked(&mut d[..]).unwrap();
        u.set_src_port(1);
        u.set_dst_port(2);
        u.fill_checksum(ph);
        assert!(u.verify_checksum_v6(ph));
        u.set_length(200);
        assert_eq!(u.payload().len(), 6);
        u.set_length(0);
        assert_eq!(u.payload(), &[] as &[u8]);
    }
}
