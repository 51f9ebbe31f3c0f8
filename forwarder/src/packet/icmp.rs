//! ICMP for IPv4 (RFC 792, RFC 1191).
//!
//! ```text
//!  0      1      2          4                        8
//!  | type | code | checksum | rest of header         | data ...
//! ```
//!
//! Rest of header: echo = identifier + sequence number; destination
//! unreachable / fragmentation needed = unused + next-hop MTU; parameter
//! problem = pointer; redirect = gateway. Error messages carry the invoking
//! packet (its IPv4 header and at least 8 bytes after it) as data; read it
//! with [`Ipv4Packet::new_quoted`](super::Ipv4Packet::new_quoted).

use std::net::Ipv4Addr;

use super::checksum::{self, Incremental};
use super::{be16, be32, need, put16, put32, Layer, Result};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const MTU: usize = 6;
    pub const POINTER: usize = 4;
}

/// Length of the header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;

/// Echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Destination unreachable.
pub const DEST_UNREACHABLE: u8 = 3;
/// Source quench (deprecated, still an error message).
pub const SOURCE_QUENCH: u8 = 4;
/// Redirect.
pub const REDIRECT: u8 = 5;
/// Echo request.
pub const ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// Parameter problem.
pub const PARAMETER_PROBLEM: u8 = 12;

/// Destination unreachable: network unreachable.
pub const CODE_NET_UNREACHABLE: u8 = 0;
/// Destination unreachable: host unreachable.
pub const CODE_HOST_UNREACHABLE: u8 = 1;
/// Destination unreachable: protocol unreachable.
pub const CODE_PROTOCOL_UNREACHABLE: u8 = 2;
/// Destination unreachable: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Destination unreachable: fragmentation needed and DF set (carries the
/// next-hop MTU, RFC 1191).
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Time exceeded: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;
/// Time exceeded: fragment reassembly time exceeded.
pub const CODE_REASSEMBLY_EXCEEDED: u8 = 1;

/// Whether messages of this type are errors that quote the invoking packet.
#[inline]
pub const fn is_error_type(t: u8) -> bool {
    matches!(
        t,
        DEST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAMETER_PROBLEM
    )
}

/// Source and destination ports from the first 4 bytes of a quoted TCP or
/// UDP header (an ICMP error quotes only 8 bytes of it, too few for
/// `TcpPacket::new_checked`). `None` if fewer than 4 bytes are present.
#[inline]
pub fn quoted_ports(l4: &[u8]) -> Option<(u16, u16)> {
    match l4.get(..4) {
        Some(&[a, b, c, d]) => Some((u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]))),
        _ => None,
    }
}

/// A view of an ICMPv4 message. Give it the IPv4 payload.
#[derive(Debug, Clone, Copy)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without checking it.
    ///
    /// Accessors panic if the buffer is shorter than 8 bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps a buffer after checking that it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        need(Layer::Icmpv4, HEADER_LEN, buffer.as_ref().len())?;
        Ok(Icmpv4Packet { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The four "rest of header" bytes as one value.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        be32(self.buffer.as_ref(), field::REST)
    }

    /// Echo identifier (meaningful for echo request/reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo request/reply).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// Next-hop MTU of a "fragmentation needed" message; `None` for other
    /// messages. May be 0 from pre-RFC 1191 routers.
    #[inline]
    pub fn next_hop_mtu(&self) -> Option<u16> {
        if self.msg_type() == DEST_UNREACHABLE && self.code() == CODE_FRAG_NEEDED {
            Some(be16(self.buffer.as_ref(), field::MTU))
        } else {
            None
        }
    }

    /// Pointer of a parameter-problem message.
    #[inline]
    pub fn pointer(&self) -> Option<u8> {
        if self.msg_type() == PARAMETER_PROBLEM {
            Some(self.buffer.as_ref()[field::POINTER])
        } else {
            None
        }
    }

    /// Gateway of a redirect message.
    #[inline]
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        if self.msg_type() == REDIRECT {
            Some(Ipv4Addr::from(self.rest_of_header()))
        } else {
            None
        }
    }

    /// Whether this is an error message (dest unreachable, source quench,
    /// redirect, time exceeded, parameter problem).
    #[inline]
    pub fn is_error(&self) -> bool {
        is_error_type(self.msg_type())
    }

    /// The invoking packet quoted by an error message (starting at its IPv4
    /// header); `None` for non-error messages.
    #[inline]
    pub fn invoking_packet(&self) -> Option<&[u8]> {
        if self.is_error() {
            Some(self.data())
        } else {
            None
        }
    }

    /// Everything after the 8-byte header (echo data, quoted packet).
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum over the whole message is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(0, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the type.
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    /// Sets the code.
    #[inline]
    pub fn set_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// Sets the four "rest of header" bytes.
    #[inline]
    pub fn set_rest_of_header(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::REST, v);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_IDENT, v);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_SEQ, v);
    }

    /// Sets the next-hop MTU field (bytes 6..8), whatever the type.
    #[inline]
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        put16(self.buffer.as_mut(), field::MTU, mtu);
    }

    /// Recomputes the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let c = checksum::transport_checksum(0, self.buffer.as_ref(), checksum::ICMP_FIELD);
        self.set_checksum(c);
    }

    /// Turns an echo request into an echo reply in place (type 8 -> 0),
    /// updating the checksum incrementally. Returns `false` (nothing
    /// written) for any other message. Addresses are the IP layer's job.
    #[inline]
    pub fn echo_request_to_reply(&mut self) -> bool {
        if self.msg_type() != ECHO_REQUEST {
            return false;
        }
        let b = self.buffer.as_ref();
        let old = be16(b, field::TYPE);
        let new = (u16::from(ECHO_REPLY) << 8) | u16::from(b[field::CODE]);
        let c = Incremental::new(self.checksum())
            .remove_u16(old)
            .add_u16(new)
            .finish();
        // ICMPv4 has no pseudo-header, so a reply can be all zeros
        // (identifier 0, sequence 0, no data): its only valid checksum is
        // 0xFFFF, where RFC 1624's update gives 0x0000. 0xFFFF is valid
        // wherever 0x0000 is, so it is always used.
        self.set_msg_type(ECHO_REPLY);
        self.set_checksum(if c == 0 { 0xffff } else { c });
        true
    }

    /// Data after the header, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Error, Ipv4Packet};

    fn echo() -> Vec<u8> {
        let mut m = vec![ECHO_REQUEST, 0, 0, 0, 0x12, 0x34, 0x00, 0x07];
        m.extend_from_slice(b"ping data");
        let c = checksum::transport_checksum(0, &m, 2);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    #[test]
    fn parses_echo() {
        let m = echo();
        let p = Icmpv4Packet::new_checked(&m[..]).unwrap();
        assert_eq!(p.msg_type(), ECHO_REQUEST);
        assert_eq!(p.code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 7);
        assert_eq!(p.data(), b"ping data");
        assert!(!p.is_error());
        assert_eq!(p.invoking_packet(), None);
        assert_eq!(p.next_hop_mtu(), None);
        assert_eq!(p.pointer(), None);
        assert_eq!(p.gateway(), None);
        assert!(p.verify_checksum());
    }

    #[test]
    fn truncation_at_every_length() {
        let m = echo();
        for n in 0..8 {
            assert_eq!(
                Icmpv4Packet::new_checked(&m[..n]).unwrap_err(),
                Error::Truncated {
                    layer: Layer::Icmpv4,
                    required: 8,
                    len: n
                }
            );
        }
        assert!(Icmpv4Packet::new_checked(&m[..8]).is_ok());
    }

    #[test]
    fn frag_needed_quotes_the_invoking_packet() {
        // Quoted: IPv4 header (total length 1500) + 8 bytes of UDP.
        let mut quoted = vec![
            0x45, 0, 0x05, 0xdc, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        quoted.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x05, 0xc8, 0, 0]);
        let mut m = vec![DEST_UNREACHABLE, CODE_FRAG_NEEDED, 0, 0, 0, 0, 0x05, 0x78];
        m.extend_from_slice(&quoted);
        let mut p = Icmpv4Packet::new_checked(&mut m[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert!(p.is_error());
        assert_eq!(p.next_hop_mtu(), Some(1400));
        let inner = p.invoking_packet().unwrap();
        let ip = Ipv4Packet::new_quoted(inner).unwrap();
        assert_eq!(ip.total_len(), 1500);
        assert_eq!(ip.dst(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(quoted_ports(ip.payload()), Some((12345, 53)));
        assert_eq!(quoted_ports(&ip.payload()[..3]), None);
        // Full parse refuses the cut-short packet, as it should.
        assert!(Ipv4Packet::new_checked(inner).is_err());
    }

    #[test]
    fn other_errors() {
        let mut m = vec![TIME_EXCEEDED, CODE_TTL_EXCEEDED, 0, 0, 0, 0, 0, 0, 0x45];
        let mut p = Icmpv4Packet::new_checked(&mut m[..]).unwrap();
        assert!(p.is_error());
        assert_eq!(p.invoking_packet(), Some(&[0x45][..]));
        p.set_msg_type(PARAMETER_PROBLEM);
        p.set_rest_of_header(0x0c00_0000);
        assert_eq!(p.pointer(), Some(12));
        p.set_msg_type(REDIRECT);
        p.set_rest_of_header(0x0a00_00fe);
        assert_eq!(p.gateway(), Some(Ipv4Addr::new(10, 0, 0, 254)));
        assert_eq!(p.rest_of_header(), 0x0a00_00fe);
        p.set_msg_type(DEST_UNREACHABLE);
        p.set_code(CODE_PORT_UNREACHABLE);
        assert_eq!(p.next_hop_mtu(), None);
        p.set_code(CODE_FRAG_NEEDED);
        p.set_next_hop_mtu(1280);
        assert_eq!(p.next_hop_mtu(), Some(1280));
    }

    #[test]
    fn echo_reply_in_place() {
        let mut m = echo();
        let mut p = Icmpv4Packet::new_checked(&mut m[..]).unwrap();
        assert!(p.echo_request_to_reply());
        assert_eq!(p.msg_type(), ECHO_REPLY);
        assert!(p.verify_checksum());
        let c = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), c, "incremental == recomputed");
        assert!(!p.echo_request_to_reply());
        p.set_echo_ident(1);
        p.set_echo_seq_no(2);
        p.data_mut()[0] = b'P';
        assert_eq!((p.echo_ident(), p.echo_seq_no(), p.data()[0]), (1, 2, b'P'));
    }

    /// Found by the `pipeline` fuzzer: an echo request with identifier 0,
    /// sequence 0 and no data (checksum 0xF7FF) was answered with checksum
    /// 0x0000, which no receiver accepts: the reply is all zeros, and only
    /// 0xFFFF verifies.
    #[test]
    fn echo_reply_of_an_all_zero_request_verifies() {
        let mut m = vec![ECHO_REQUEST, 0, 0xf7, 0xff, 0, 0, 0, 0];
        assert!(Icmpv4Packet::new_checked(&m[..]).unwrap().verify_checksum());
        let mut p = Icmpv4Packet::new_checked(&mut m[..]).unwrap();
        assert!(p.echo_request_to_reply());
        assert!(p.verify_checksum(), "checksum {:#06x}", p.checksum());
        assert_eq!(m, [ECHO_REPLY, 0, 0xff, 0xff, 0, 0, 0, 0]);
        // Where the reply sums to 0xFFFF, 0x0000 and 0xFFFF both verify.
        let mut m = vec![ECHO_REQUEST, 0, 0, 0, 0xff, 0xff, 0, 0];
        let c = checksum::transport_checksum(0, &m, 2);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        let mut p = Icmpv4Packet::new_checked(&mut m[..]).unwrap();
        assert!(p.echo_request_to_reply());
        assert!(p.verify_checksum(), "checksum {:#06x}", p.checksum());
    }
}
