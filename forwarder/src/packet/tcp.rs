//! TCP headers (RFC 9293).
//!
//! ```text
//!  0          2          4          8          12        13      14
//!  | src port | dst port | seq      | ack      | doff/NS | flags | window
//!  16         18         20
//!  | checksum | urgent   | options ... (data offset * 4)
//! ```
//!
//! Give the view the IP payload (bounded by the IP length fields), so that
//! `payload()` and the checksum cover exactly the segment.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};

use super::checksum;
use super::{be16, be32, malformed, need, put16, put32, Layer, Result};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// The eight TCP flag bits (byte 13 of the header).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No flags.
    pub const NONE: TcpFlags = TcpFlags(0);
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// URG.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECE.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// CWR.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// FIN set.
    #[inline]
    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    /// SYN set.
    #[inline]
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    /// RST set.
    #[inline]
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    /// PSH set.
    #[inline]
    pub const fn psh(self) -> bool {
        self.contains(Self::PSH)
    }
    /// ACK set.
    #[inline]
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
    /// URG set.
    #[inline]
    pub const fn urg(self) -> bool {
        self.contains(Self::URG)
    }
    /// ECE set.
    #[inline]
    pub const fn ece(self) -> bool {
        self.contains(Self::ECE)
    }
    /// CWR set.
    #[inline]
    pub const fn cwr(self) -> bool {
        self.contains(Self::CWR)
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    #[inline]
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (i, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// A view of a TCP segment.
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it.
    ///
    /// Accessors panic if the buffer is shorter than 20 bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after checking that it holds the header with its
    /// options (data offset >= 5).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need(Layer::Tcp, HEADER_LEN, b.len())?;
        let hl = usize::from(b[field::DATA_OFF] >> 4) * 4;
        if hl < HEADER_LEN {
            return malformed(Layer::Tcp, "data offset < 5");
        }
        need(Layer::Tcp, hl, b.len())?;
        Ok(TcpPacket { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Header end, clamped to 20..=buffer length.
    #[inline(always)]
    fn header_end(&self) -> usize {
        let b = self.buffer.as_ref();
        (usize::from(b[field::DATA_OFF] >> 4) * 4)
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ)
    }

    /// Acknowledgement number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes, from the data offset field.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags byte.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Receive window.
    #[inline]
    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_ptr(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    /// Options (between the fixed header and the data offset).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let hl = self.header_end();
        &self.buffer.as_ref()[HEADER_LEN.min(hl)..hl]
    }

    /// Segment data after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let hl = self.header_end();
        &self.buffer.as_ref()[hl..]
    }

    /// Segment length (header + data): the pseudo-header's length.
    #[inline]
    pub fn len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// Never true after `new_checked`; here for symmetry with `len`.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buffer.as_ref().is_empty()
    }

    /// Whether the checksum is correct, given the pseudo-header sum
    /// (`Ipv4Packet::pseudo_header()` or `Ipv6Packet::pseudo_header(..)`).
    #[inline]
    pub fn verify_checksum(&self, pseudo: u64) -> bool {
        checksum::verify(pseudo, self.buffer.as_ref())
    }
}

impl<'a> TcpPacket<&'a [u8]> {
    /// [`payload`](Self::payload) with the buffer's lifetime rather than
    /// the view's.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let hl = self.header_end();
        &self.buffer[hl..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::SEQ, v);
    }

    /// Sets the acknowledgement number.
    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::ACK, v);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60), clearing
    /// the reserved bits and NS. Does not re-validate the view.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8 & 0x0f) << 4;
    }

    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, f: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = f.0;
    }

    /// Sets the window.
    #[inline]
    pub fn set_window(&mut self, w: u16) {
        put16(self.buffer.as_mut(), field::WINDOW, w);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_ptr(&mut self, p: u16) {
        put16(self.buffer.as_mut(), field::URGENT, p);
    }

    /// Recomputes the checksum from scratch over the whole segment.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: u64) {
        let c = checksum::transport_checksum(pseudo, self.buffer.as_ref(), checksum::TCP_FIELD);
        self.set_checksum(c);
    }

    /// Segment data, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_end();
        &mut self.buffer.as_mut()[hl..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{checksum::pseudo_header_v4, Error};
    use std::net::Ipv4Addr;

    fn segment() -> Vec<u8> {
        let mut s = vec![
            0x30, 0x39, 0x00, 0x50, // 12345 -> 80
            0x01, 0x02, 0x03, 0x04, // seq
            0xa0, 0xb0, 0xc0, 0xd0, // ack
            0x60, 0x12, 0xff, 0xff, // doff 6, SYN|ACK, window
            0x00, 0x00, 0x00, 0x07, // checksum, urgent
            0x02, 0x04, 0x05, 0xb4, // MSS 1460
        ];
        s.extend_from_slice(b"hi");
        s
    }

    #[test]
    fn parses_fields() {
        let s = segment();
        let t = TcpPacket::new_checked(&s[..]).unwrap();
        assert_eq!(t.src_port(), 12345);
        assert_eq!(t.dst_port(), 80);
        assert_eq!(t.seq_number(), 0x0102_0304);
        assert_eq!(t.ack_number(), 0xa0b0_c0d0);
        assert_eq!(t.header_len(), 24);
        assert_eq!(t.flags(), TcpFlags::SYN | TcpFlags::ACK);
        assert!(t.flags().syn() && t.flags().ack());
        assert!(!t.flags().fin() && !t.flags().rst() && !t.flags().psh());
        assert!(!t.flags().urg() && !t.flags().ece() && !t.flags().cwr());
        assert_eq!(t.window(), 0xffff);
        assert_eq!(t.urgent_ptr(), 7);
        assert_eq!(t.options(), &[2, 4, 5, 0xb4]);
        assert_eq!(t.payload(), b"hi");
        assert_eq!(t.len(), 26);
        assert!(!t.is_empty());
    }

    #[test]
    fn every_flag_bit() {
        let all = [
            (TcpFlags::FIN, "FIN"),
            (TcpFlags::SYN, "SYN"),
            (TcpFlags::RST, "RST"),
            (TcpFlags::PSH, "PSH"),
            (TcpFlags::ACK, "ACK"),
            (TcpFlags::URG, "URG"),
            (TcpFlags::ECE, "ECE"),
            (TcpFlags::CWR, "CWR"),
        ];
        let mut s = segment();
        for (flag, name) in all {
            s[13] = flag.bits();
            let t = TcpPacket::new_checked(&s[..]).unwrap();
            let f = t.flags();
            let got = [
                f.fin(),
                f.syn(),
                f.rst(),
                f.psh(),
                f.ack(),
                f.urg(),
                f.ece(),
                f.cwr(),
            ];
            assert_eq!(got.iter().filter(|&&b| b).count(), 1, "{name}");
            assert_eq!(format!("{f:?}"), name);
        }
        assert_eq!(format!("{:?}", TcpFlags::NONE), "-");
        assert_eq!(format!("{:?}", TcpFlags::FIN | TcpFlags::ACK), "FIN|ACK");
        let mut f = TcpFlags::SYN;
        f |= TcpFlags::ECE;
        assert_eq!(f & TcpFlags::ECE, TcpFlags::ECE);
    }

    #[test]
    fn truncation_and_data_offset() {
        let s = segment();
        for n in 0..24 {
            let required = if n < 20 { 20 } else { 24 };
            assert_eq!(
                TcpPacket::new_checked(&s[..n]).unwrap_err(),
                Error::Truncated {
                    layer: Layer::Tcp,
                    required,
                    len: n
                }
            );
        }
        assert!(TcpPacket::new_checked(&s[..24]).is_ok());
        for doff in 0..5u8 {
            let mut bad = s.clone();
            bad[12] = doff << 4;
            assert_eq!(
                TcpPacket::new_checked(&bad[..]).unwrap_err(),
                Error::Malformed {
                    layer: Layer::Tcp,
                    what: "data offset < 5"
                }
            );
        }
        let mut big = s.clone();
        big[12] = 0xf0;
        assert_eq!(
            TcpPacket::new_checked(&big[..]).unwrap_err(),
            Error::Truncated {
                layer: Layer::Tcp,
                required: 60,
                len: 26
            }
        );
    }

    #[test]
    fn setters_and_checksum() {
        let mut s = segment();
        let ph = pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            26,
        );
        let mut t = TcpPacket::new_checked(&mut s[..]).unwrap();
        t.fill_checksum(ph);
        assert!(t.verify_checksum(ph));
        assert!(!t.verify_checksum(ph + 1));
        t.set_src_port(1);
        t.set_dst_port(2);
        t.set_seq_number(3);
        t.set_ack_number(4);
        t.set_flags(TcpFlags::RST);
        t.set_window(5);
        t.set_urgent_ptr(6);
        t.payload_mut()[0] = b'H';
        assert!(!t.verify_checksum(ph));
        t.fill_checksum(ph);
        assert!(t.verify_checksum(ph));
        assert_eq!(
            (
                t.src_port(),
                t.dst_port(),
                t.seq_number(),
                t.ack_number(),
                t.window()
            ),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(
            (t.flags(), t.urgent_ptr(), t.payload()),
            (TcpFlags::RST, 6, &b"Hi"[..])
        );
        // A data offset past the buffer keeps slices in bounds.
        t.set_header_len(60);
        assert_eq!(t.payload(), &[] as &[u8]);
        assert_eq!(t.options().len(), 6);
        t.set_header_len(0);
        assert_eq!(t.options(), &[] as &[u8]);
        assert_eq!(t.payload().len(), 6);
    }
}
