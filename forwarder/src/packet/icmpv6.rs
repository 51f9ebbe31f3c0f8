//! ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861).
//!
//! ```text
//!  0      1      2          4                 8
//!  | type | code | checksum | message body    | ...
//! ```
//!
//! Echo: identifier + sequence number at 4..8, data after. Errors
//! (destination unreachable, packet too big with its MTU at 4..8, time
//! exceeded, parameter problem with its pointer at 4..8) quote the invoking
//! packet from byte 8; read it with
//! [`Ipv6Packet::new_quoted`](super::Ipv6Packet::new_quoted).
//!
//! Neighbour solicitation / advertisement: flags (NA) at byte 4, target
//! address at 8..24, options from 24. Options are `type, length in 8-byte
//! units, data`; source (1) and target (2) link-layer address options hold
//! a MAC address.
//!
//! The checksum covers the IPv6 pseudo-header: pass
//! `Ipv6Packet::pseudo_header(..)` or [`checksum::pseudo_header_v6`].

use std::net::Ipv6Addr;

use super::checksum::{self, Incremental};
use super::ip_proto;
use super::{be16, be32, malformed, need, put16, put32, Layer, MacAddr, Result};

mod field {
    use std::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    /// Packet-too-big MTU, parameter-problem pointer.
    pub const PARAM: usize = 4;
    pub const NA_FLAGS: usize = 4;
    pub const TARGET: Range<usize> = 8..24;
    pub const NDP_OPTIONS: usize = 24;
}

/// Length of the header common to all messages we parse.
pub const HEADER_LEN: usize = 8;
/// Length of an NS or NA message without options.
pub const ND_LEN: usize = 24;
/// Length of a (source or target) link-layer address option for Ethernet.
pub const LLADDR_OPTION_LEN: usize = 8;

/// Destination unreachable.
pub const DEST_UNREACHABLE: u8 = 1;
/// Packet too big.
pub const PACKET_TOO_BIG: u8 = 2;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 3;
/// Parameter problem.
pub const PARAMETER_PROBLEM: u8 = 4;
/// Echo request.
pub const ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const ECHO_REPLY: u8 = 129;
/// Router solicitation.
pub const ROUTER_SOLICIT: u8 = 133;
/// Router advertisement.
pub const ROUTER_ADVERT: u8 = 134;
/// Neighbour solicitation.
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbour advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;
/// Redirect.
pub const REDIRECT: u8 = 137;

/// NDP option: source link-layer address.
pub const OPT_SOURCE_LLADDR: u8 = 1;
/// NDP option: target link-layer address.
pub const OPT_TARGET_LLADDR: u8 = 2;

/// Destination unreachable: no route.
pub const CODE_NO_ROUTE: u8 = 0;
/// Destination unreachable: address unreachable.
pub const CODE_ADDR_UNREACHABLE: u8 = 3;
/// Destination unreachable: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 4;
/// Time exceeded: hop limit exceeded in transit.
pub const CODE_HOP_LIMIT_EXCEEDED: u8 = 0;
/// Time exceeded: fragment reassembly time exceeded.
pub const CODE_REASSEMBLY_EXCEEDED: u8 = 1;

/// Hop limit every NDP message must carry (RFC 4861 §7.1).
pub const ND_HOP_LIMIT: u8 = 255;

/// Neighbour-advertisement flags (byte 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NaFlags(pub u8);

impl NaFlags {
    /// Router (R).
    pub const ROUTER: NaFlags = NaFlags(0x80);
    /// Solicited (S).
    pub const SOLICITED: NaFlags = NaFlags(0x40);
    /// Override (O).
    pub const OVERRIDE: NaFlags = NaFlags(0x20);

    /// R set.
    #[inline]
    pub const fn is_router(self) -> bool {
        self.0 & Self::ROUTER.0 != 0
    }
    /// S set.
    #[inline]
    pub const fn is_solicited(self) -> bool {
        self.0 & Self::SOLICITED.0 != 0
    }
    /// O set.
    #[inline]
    pub const fn is_override(self) -> bool {
        self.0 & Self::OVERRIDE.0 != 0
    }
}

impl std::ops::BitOr for NaFlags {
    type Output = NaFlags;
    #[inline]
    fn bitor(self, rhs: NaFlags) -> NaFlags {
        NaFlags(self.0 | rhs.0)
    }
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1):
/// `ff02::1:ffXX:XXXX` with its low 24 bits.
#[inline]
pub fn solicited_node(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// Checks that NDP options in `opts` (starting at `base` in the message)
/// are well formed: no zero length, none past the end.
fn check_ndp_options(opts: &[u8], base: usize) -> Result<()> {
    let mut off = 0;
    while off < opts.len() {
        need(Layer::Icmpv6, base + off + 2, base + opts.len())?;
        let len = usize::from(opts[off + 1]) * 8;
        if len == 0 {
            return malformed(Layer::Icmpv6, "NDP option length 0");
        }
        need(Layer::Icmpv6, base + off + len, base + opts.len())?;
        off += len;
    }
    Ok(())
}

/// A view of an ICMPv6 message. Give it the upper-layer payload of the IPv6
/// packet.
#[derive(Debug, Clone, Copy)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking it.
    ///
    /// Accessors panic if the buffer is shorter than 8 bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps a buffer after checking that it holds the 8-byte header; for
    /// NS and NA, also the target address and well-formed options.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need(Layer::Icmpv6, HEADER_LEN, b.len())?;
        if matches!(b[field::TYPE], NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT) {
            need(Layer::Icmpv6, ND_LEN, b.len())?;
            check_ndp_options(&b[field::NDP_OPTIONS..], field::NDP_OPTIONS)?;
        }
        Ok(Icmpv6Packet { buffer })
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

    /// Echo identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// MTU of a packet-too-big message.
    #[inline]
    pub fn mtu(&self) -> Option<u32> {
        if self.msg_type() == PACKET_TOO_BIG {
            Some(be32(self.buffer.as_ref(), field::PARAM))
        } else {
            None
        }
    }

    /// Pointer of a parameter-problem message.
    #[inline]
    pub fn pointer(&self) -> Option<u32> {
        if self.msg_type() == PARAMETER_PROBLEM {
            Some(be32(self.buffer.as_ref(), field::PARAM))
        } else {
            None
        }
    }

    /// Error messages are types 0..=127.
    #[inline]
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    /// The invoking packet quoted by an error message (starting at its IPv6
    /// header); `None` for informational messages.
    #[inline]
    pub fn invoking_packet(&self) -> Option<&[u8]> {
        if self.is_error() {
            Some(self.data())
        } else {
            None
        }
    }

    /// Everything after the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    #[inline(always)]
    fn is_nd(&self) -> bool {
        matches!(self.msg_type(), NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT)
    }

    /// Target address of an NS or NA.
    #[inline]
    pub fn target_addr(&self) -> Option<Ipv6Addr> {
        if !self.is_nd() {
            return None;
        }
        let t: [u8; 16] = self.buffer.as_ref().get(field::TARGET)?.try_into().ok()?;
        Some(Ipv6Addr::from(t))
    }

    /// Flags of an NA.
    #[inline]
    pub fn na_flags(&self) -> Option<NaFlags> {
        if self.msg_type() == NEIGHBOR_ADVERT {
            Some(NaFlags(self.buffer.as_ref()[field::NA_FLAGS] & 0xe0))
        } else {
            None
        }
    }

    /// The options of an NS or NA (empty for other messages).
    #[inline]
    pub fn ndp_options(&self) -> &[u8] {
        if !self.is_nd() {
            return &[];
        }
        self.buffer
            .as_ref()
            .get(field::NDP_OPTIONS..)
            .unwrap_or(&[])
    }

    /// The first NS/NA option of type `kind`, whole (type and length
    /// included). Stops at a malformed option.
    pub fn ndp_option(&self, kind: u8) -> Option<&[u8]> {
        let mut opts = self.ndp_options();
        while let [t, l, ..] = *opts {
            let len = usize::from(l) * 8;
            if len == 0 || len > opts.len() {
                return None;
            }
            let (opt, rest) = opts.split_at(len);
            if t == kind {
                return Some(opt);
            }
            opts = rest;
        }
        None
    }

    fn lladdr_option(&self, kind: u8) -> Option<MacAddr> {
        let o = self.ndp_option(kind)?;
        let mac: [u8; 6] = o.get(2..8)?.try_into().ok()?;
        Some(MacAddr(mac))
    }

    /// Source link-layer address option (NS; also allowed elsewhere).
    #[inline]
    pub fn source_lladdr(&self) -> Option<MacAddr> {
        self.lladdr_option(OPT_SOURCE_LLADDR)
    }

    /// Target link-layer address option (NA).
    #[inline]
    pub fn target_lladdr(&self) -> Option<MacAddr> {
        self.lladdr_option(OPT_TARGET_LLADDR)
    }

    /// Whether the checksum is correct, given the pseudo-header sum.
    #[inline]
    pub fn verify_checksum(&self, pseudo: u64) -> bool {
        checksum::verify(pseudo, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    /// Sets bytes 4..8 (MTU, pointer, or zero for other errors).
    #[inline]
    pub fn set_param(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::PARAM, v);
    }

    /// Recomputes the checksum, given the pseudo-header sum.
    #[inline]
    pub fn fill_checksum(&mut self, pseudo: u64) {
        let c = checksum::transport_checksum(pseudo, self.buffer.as_ref(), checksum::ICMP_FIELD);
        self.set_checksum(c);
    }

    /// Turns an echo request into an echo reply in place (128 -> 129),
    /// updating the checksum incrementally. Swapping the IPv6 source and
    /// destination does not change the pseudo-header sum; any other address
    /// change must be folded in by the caller. Returns `false` (nothing
    /// written) for any other message.
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
        self.set_msg_type(ECHO_REPLY);
        self.set_checksum(c);
        true
    }

    /// Data after the header, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// Writes an NS or NA body with an optional link-layer address option and
/// its checksum into `buf`; returns the length written (24 or 32).
fn emit_nd(
    buf: &mut [u8],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    msg_type: u8,
    flags: u8,
    target: &Ipv6Addr,
    lladdr: Option<(u8, MacAddr)>,
) -> Result<usize> {
    let len = ND_LEN
        + if lladdr.is_some() {
            LLADDR_OPTION_LEN
        } else {
            0
        };
    need(Layer::Icmpv6, len, buf.len())?;
    let m = &mut buf[..len];
    m[..8].copy_from_slice(&[msg_type, 0, 0, 0, flags, 0, 0, 0]);
    m[field::TARGET].copy_from_slice(&target.octets());
    if let Some((kind, mac)) = lladdr {
        m[24] = kind;
        m[25] = 1;
        m[26..32].copy_from_slice(&mac.0);
    }
    let pseudo = checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, len as u32);
    let c = checksum::transport_checksum(pseudo, m, checksum::ICMP_FIELD);
    put16(m, field::CHECKSUM, c);
    Ok(len)
}

/// Writes a neighbour advertisement for `target` into `buf` (ICMPv6 body
/// only: the IPv6 header, with hop limit 255, is the caller's), with a
/// target link-layer address option when `tlla` is given, and fills the
/// checksum for the `src` -> `dst` pseudo-header. Returns the message
/// length (24, or 32 with the option); `Truncated` if `buf` is too short.
pub fn emit_neighbour_advertisement(
    buf: &mut [u8],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    target: &Ipv6Addr,
    flags: NaFlags,
    tlla: Option<MacAddr>,
) -> Result<usize> {
    emit_nd(
        buf,
        src,
        dst,
        NEIGHBOR_ADVERT,
        flags.0 & 0xe0,
        target,
        tlla.map(|m| (OPT_TARGET_LLADDR, m)),
    )
}

/// Writes a neighbour solicitation for `target` into `buf`, with a source
/// link-layer address option when `slla` is given (it must be absent when
/// `src` is the unspecified address), and fills the checksum. Returns the
/// message length.
pub fn emit_neighbour_solicitation(
    buf: &mut [u8],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    target: &Ipv6Addr,
    slla: Option<MacAddr>,
) -> Result<usize> {
    emit_nd(
        buf,
        src,
        dst,
        NEIGHBOR_SOLICIT,
        0,
        target,
        slla.map(|m| (OPT_SOURCE_LLADDR, m)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::checksum::pseudo_header_v6;
    use crate::packet::{Error, Ipv6Packet};

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn echo_and_reply() {
        let (s, d) = (a("2001:db8::1"), a("2001:db8::2"));
        let mut m = vec![ECHO_REQUEST, 0, 0, 0, 0xbe, 0xef, 0, 1, b'x', b'y', b'z'];
        let ph = pseudo_header_v6(&s, &d, 58, m.len() as u32);
        let mut p = Icmpv6Packet::new_checked(&mut m[..]).unwrap();
        p.fill_checksum(ph);
        assert!(p.verify_checksum(ph));
        assert_eq!(
            (p.echo_ident(), p.echo_seq_no(), p.data()),
            (0xbeef, 1, &b"xyz"[..])
        );
        assert!(!p.is_error());
        assert_eq!(p.invoking_packet(), None);
        assert_eq!(
            (p.mtu(), p.pointer(), p.target_addr(), p.na_flags()),
            (None, None, None, None)
        );
        assert_eq!(p.ndp_options(), &[] as &[u8]);
        assert!(p.echo_request_to_reply());
        assert_eq!(p.msg_type(), ECHO_REPLY);
        // The reply goes d -> s: same pseudo-header sum.
        let back = pseudo_header_v6(&d, &s, 58, 11);
        assert!(p.verify_checksum(back));
        assert!(!p.echo_request_to_reply());
        p.set_echo_ident(3);
        p.set_echo_seq_no(4);
        p.data_mut()[0] = 0;
        assert_eq!((p.echo_ident(), p.echo_seq_no(), p.data()[0]), (3, 4, 0));
    }

    #[test]
    fn packet_too_big_quotes_invoking_packet() {
        let mut inner = vec![0x60, 0, 0, 0, 0x05, 0xb4, 17, 64];
        inner.extend_from_slice(&a("2001:db8::1").octets());
        inner.extend_from_slice(&a("2001:db8::2").octets());
        inner.extend_from_slice(&[0x30, 0x39, 0, 53, 5, 0xb4, 0, 0]);
        let mut m = vec![PACKET_TOO_BIG, 0, 0, 0, 0, 0, 0x05, 0x00];
        m.extend_from_slice(&inner);
        let p = Icmpv6Packet::new_checked(&m[..]).unwrap();
        assert!(p.is_error());
        assert_eq!(p.mtu(), Some(1280));
        let q = Ipv6Packet::new_quoted(p.invoking_packet().unwrap()).unwrap();
        assert_eq!(q.dst(), a("2001:db8::2"));
        assert_eq!(q.payload_len(), 1460);
        let up = q.upper_layer();
        // The walk is bounded by the bytes present.
        assert_eq!(up.unwrap().protocol, 17);
        assert_eq!(
            crate::packet::icmp::quoted_ports(q.payload()),
            Some((12345, 53))
        );

        for (t, code) in [
            (DEST_UNREACHABLE, CODE_PORT_UNREACHABLE),
            (TIME_EXCEEDED, 0),
        ] {
            let mut m2 = m.clone();
            m2[0] = t;
            m2[1] = code;
            let p = Icmpv6Packet::new_checked(&m2[..]).unwrap();
            assert_eq!(p.invoking_packet(), Some(&inner[..]));
            assert_eq!(p.mtu(), None);
        }
        let mut m3 = m.clone();
        m3[0] = PARAMETER_PROBLEM;
        let mut p = Icmpv6Packet::new_checked(&mut m3[..]).unwrap();
        p.set_param(6);
        assert_eq!(p.pointer(), Some(6));
    }

    #[test]
    fn neighbour_solicitation_parse() {
        let (s, target) = (a("fe80::1"), a("2001:db8::99"));
        let d = solicited_node(&target);
        assert_eq!(d, a("ff02::1:ff00:99"));
        let mac = MacAddr([0x02, 0, 0, 0, 0, 1]);
        let mut buf = [0u8; 64];
        let n = emit_neighbour_solicitation(&mut buf, &s, &d, &target, Some(mac)).unwrap();
        assert_eq!(n, 32);
        let p = Icmpv6Packet::new_checked(&buf[..n]).unwrap();
        assert_eq!(p.msg_type(), NEIGHBOR_SOLICIT);
        assert_eq!(p.code(), 0);
        assert_eq!(p.target_addr(), Some(target));
        assert_eq!(p.source_lladdr(), Some(mac));
        assert_eq!(p.target_lladdr(), None);
        assert_eq!(p.na_flags(), None);
        assert!(p.verify_checksum(pseudo_header_v6(&s, &d, 58, 32)));
        // Without the option (DAD from ::).
        let n = emit_neighbour_solicitation(&mut buf, &Ipv6Addr::UNSPECIFIED, &d, &target, None)
            .unwrap();
        assert_eq!(n, 24);
        let p = Icmpv6Packet::new_checked(&buf[..n]).unwrap();
        assert_eq!(p.source_lladdr(), None);
    }

    #[test]
    fn neighbour_advertisement_build_and_parse() {
        let (s, d) = (a("2001:db8::99"), a("2001:db8::1"));
        let mac = MacAddr([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        let mut buf = [0u8; 32];
        let flags = NaFlags::SOLICITED | NaFlags::OVERRIDE;
        let n = emit_neighbour_advertisement(&mut buf, &s, &d, &s, flags, Some(mac)).unwrap();
        assert_eq!(n, 32);
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.msg_type(), NEIGHBOR_ADVERT);
        let f = p.na_flags().unwrap();
        assert!(!f.is_router() && f.is_solicited() && f.is_override());
        assert_eq!(p.target_addr(), Some(s));
        assert_eq!(p.target_lladdr(), Some(mac));
        assert_eq!(p.source_lladdr(), None);
        assert!(p.verify_checksum(pseudo_header_v6(&s, &d, 58, 32)));
        assert_eq!(p.ndp_option(OPT_TARGET_LLADDR).map(<[u8]>::len), Some(8));
        // Too small a buffer.
        assert_eq!(
            emit_neighbour_advertisement(&mut buf[..31], &s, &d, &s, NaFlags::ROUTER, Some(mac)),
            Err(Error::Truncated {
                layer: Layer::Icmpv6,
                required: 32,
                len: 31
            })
        );
    }

    #[test]
    fn nd_length_and_option_errors() {
        let mut buf = [0u8; 48];
        let t = a("2001:db8::5");
        let n = emit_neighbour_advertisement(&mut buf, &t, &t, &t, NaFlags::ROUTER, None).unwrap();
        assert_eq!(n, 24);
        for k in 0..24 {
            let required = if k < 8 { 8 } else { 24 };
            assert_eq!(
                Icmpv6Packet::new_checked(&buf[..k]).unwrap_err(),
                Error::Truncated {
                    layer: Layer::Icmpv6,
                    required,
                    len: k
                }
            );
        }
        // Options: a zero-length option is malformed ...
        buf[24] = OPT_TARGET_LLADDR;
        buf[25] = 0;
        assert_eq!(
            Icmpv6Packet::new_checked(&buf[..32]).unwrap_err(),
            Error::Malformed {
                layer: Layer::Icmpv6,
                what: "NDP option length 0"
            }
        );
        // ... one running past the end is truncated ...
        buf[25] = 2;
        assert_eq!(
            Icmpv6Packet::new_checked(&buf[..32]).unwrap_err(),
            Error::Truncated {
                layer: Layer::Icmpv6,
                required: 40,
                len: 32
            }
        );
        // ... and a lone type byte too.
        assert_eq!(
            Icmpv6Packet::new_checked(&buf[..25]).unwrap_err(),
            Error::Truncated {
                layer: Layer::Icmpv6,
                required: 26,
                len: 25
            }
        );
        // Unknown options are skipped when looking for one.
        buf[24..32].copy_from_slice(&[14, 1, 0, 0, 0, 0, 0, 0]);
        buf[32..40].copy_from_slice(&[OPT_TARGET_LLADDR, 1, 2, 3, 4, 5, 6, 7]);
        let p = Icmpv6Packet::new_checked(&buf[..40]).unwrap();
        assert_eq!(p.target_lladdr(), Some(MacAddr([2, 3, 4, 5, 6, 7])));
        assert!(p.na_flags().unwrap().is_router());
    }

    #[test]
    fn retyping_a_short_message_does_not_panic() {
        let mut m = [ECHO_REQUEST, 0, 0, 0, 0, 0, 0, 0];
        let mut p = Icmpv6Packet::new_checked(&mut m[..]).unwrap();
        p.set_msg_type(NEIGHBOR_ADVERT);
        assert_eq!(p.target_addr(), None);
        assert_eq!(p.target_lladdr(), None);
        assert_eq!(p.na_flags(), Some(NaFlags(0)));
        assert_eq!(p.ndp_options(), &[] as &[u8]);
    }
}
