//! IPv6 headers (RFC 8200) and a bounded walk over extension headers.
//!
//! ```text
//!  0                  4              6      7       8       24      40
//!  | ver/TC/flow label | payload len | next | hops  | src   | dst   |
//! ```

use std::net::Ipv6Addr;

use super::checksum;
use super::ip_proto;
use super::{array16, be16, be32, malformed, need, put16, put32, Layer, Result};

mod field {
    use std::ops::Range;
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// Length of a Fragment extension header.
pub const FRAGMENT_HEADER_LEN: usize = 8;
/// At most this many extension headers are walked; more is malformed.
pub const MAX_EXT_HEADERS: usize = 8;

/// What a Fragment extension header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Fragment {
    /// Fragment offset in **bytes** (the field times 8).
    pub offset: u16,
    /// More-fragments flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

impl Ipv6Fragment {
    /// Whether this fragment starts the datagram (offset 0), so the
    /// upper-layer header is present.
    #[inline]
    pub fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// The result of walking the extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6UpperLayer {
    /// Next-header value of the upper layer (e.g. TCP 6), or
    /// [`ip_proto::ESP`] / [`ip_proto::NO_NEXT`] where the walk stops.
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub offset: usize,
    /// Present when a Fragment header was crossed. If its offset is not 0,
    /// the walk stops there and the bytes at `offset` are fragment data,
    /// not an upper-layer header.
    pub fragment: Option<Ipv6Fragment>,
}

/// A view of an IPv6 packet.
///
/// The buffer may extend past the payload length (Ethernet padding);
/// `payload()` ends at `40 + payload_len`. Jumbograms (payload length 0
/// with a Jumbo option) are not supported: their payload reads as empty.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it.
    ///
    /// Accessors panic if the buffer is shorter than 40 bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    #[inline]
    fn check_header(b: &[u8]) -> Result<()> {
        need(Layer::Ipv6, HEADER_LEN, b.len())?;
        if b[field::VER_TC_FLOW] >> 4 != 6 {
            return malformed(Layer::Ipv6, "version is not 6");
        }
        Ok(())
    }

    /// Wraps a buffer after checking the version and that the buffer holds
    /// the fixed header and `payload_len` bytes after it.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        Self::check_header(b)?;
        let required = HEADER_LEN + usize::from(be16(b, field::PAYLOAD_LEN));
        need(Layer::Ipv6, required, b.len())?;
        Ok(Ipv6Packet { buffer })
    }

    /// Like [`new_checked`](Self::new_checked), but accepts a buffer shorter
    /// than the payload length, as in the invoking packet quoted by an
    /// ICMPv6 error. `payload()` then returns only the bytes present.
    #[inline]
    pub fn new_quoted(buffer: T) -> Result<Self> {
        Self::check_header(buffer.as_ref())?;
        Ok(Ipv6Packet { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// End of the payload, clamped to the buffer.
    #[inline(always)]
    fn end(&self) -> usize {
        let b = self.buffer.as_ref();
        (HEADER_LEN + usize::from(be16(b, field::PAYLOAD_LEN))).min(b.len())
    }

    /// IP version (6 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// Traffic class (DSCP << 2 | ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        ((be32(self.buffer.as_ref(), field::VER_TC_FLOW) >> 20) & 0xff) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Payload length (everything after the fixed header).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// Next header of the fixed header (see [`ip_proto`]).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(array16(self.buffer.as_ref(), field::SRC.start))
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(array16(self.buffer.as_ref(), field::DST.start))
    }

    /// Everything after the fixed header up to `40 + payload_len`
    /// (extension headers included).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = self.end();
        &self.buffer.as_ref()[HEADER_LEN.min(end)..end]
    }

    /// The packet from the start of the fixed header to the end of the
    /// payload; offsets in [`Ipv6UpperLayer`] index into this.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.end()]
    }

    /// Walks the extension headers (Hop-by-Hop, which must come first,
    /// Routing, Destination Options, Fragment, AH) to the upper layer.
    ///
    /// Each header is length-checked against the payload; at most
    /// [`MAX_EXT_HEADERS`] are crossed. ESP and No Next Header end the walk
    /// and are returned as the protocol, as is any other value. A Fragment
    /// header with a nonzero offset ends the walk too.
    ///
    /// Errors are [`Layer::Ipv6Ext`], with lengths counted from the start
    /// of the IPv6 header. Costs one comparison when there are no
    /// extension headers.
    #[inline]
    pub fn upper_layer(&self) -> Result<Ipv6UpperLayer> {
        let b = self.buffer.as_ref();
        let nh = b[field::NEXT_HEADER];
        if !is_extension(nh) {
            return Ok(Ipv6UpperLayer {
                protocol: nh,
                offset: HEADER_LEN,
                fragment: None,
            });
        }
        walk(b, self.end(), nh)
    }

    /// The upper layer's payload, from [`upper_layer`](Self::upper_layer)'s
    /// offset to the end of the packet.
    #[inline]
    pub fn upper_payload(&self, upper: &Ipv6UpperLayer) -> &[u8] {
        let end = self.end();
        &self.buffer.as_ref()[upper.offset.min(end)..end]
    }

    /// The pseudo-header sum for the upper layer's checksum: source,
    /// destination, upper-layer length and protocol. Uses this header's
    /// destination (with a Routing header, RFC 8200 wants the final one).
    #[inline]
    pub fn pseudo_header(&self, upper: &Ipv6UpperLayer) -> u64 {
        let end = self.end();
        let len = end.saturating_sub(upper.offset) as u32;
        checksum::pseudo_header_v6(&self.src(), &self.dst(), upper.protocol, len)
    }
}

/// Whether `nh` is an extension header the walk crosses.
#[inline(always)]
fn is_extension(nh: u8) -> bool {
    matches!(
        nh,
        ip_proto::HOPOPTS
            | ip_proto::ROUTING
            | ip_proto::DSTOPTS
            | ip_proto::FRAGMENT
            | ip_proto::AH
    )
}

#[inline(never)]
fn walk(b: &[u8], end: usize, mut nh: u8) -> Result<Ipv6UpperLayer> {
    let mut off = HEADER_LEN;
    let mut fragment = None;
    for i in 0..MAX_EXT_HEADERS {
        let hdr_len = match nh {
            ip_proto::HOPOPTS | ip_proto::ROUTING | ip_proto::DSTOPTS => {
                if nh == ip_proto::HOPOPTS && i != 0 {
                    return malformed(Layer::Ipv6Ext, "hop-by-hop header not first");
                }
                need(Layer::Ipv6Ext, off + 2, end)?;
                (usize::from(b[off + 1]) + 1) * 8
            }
            ip_proto::AH => {
                need(Layer::Ipv6Ext, off + 2, end)?;
                (usize::from(b[off + 1]) + 2) * 4
            }
            ip_proto::FRAGMENT => FRAGMENT_HEADER_LEN,
            _ => {
                return Ok(Ipv6UpperLayer {
                    protocol: nh,
                    offset: off,
                    fragment,
                })
            }
        };
        need(Layer::Ipv6Ext, off + hdr_len, end)?;
        let next = b[off];
        if nh == ip_proto::FRAGMENT {
            let fo = be16(b, off + 2);
            let frag = Ipv6Fragment {
                offset: fo & 0xfff8,
                more: fo & 1 != 0,
                ident: be32(b, off + 4),
            };
            fragment = Some(frag);
            if !frag.is_first() {
                return Ok(Ipv6UpperLayer {
                    protocol: next,
                    offset: off + hdr_len,
                    fragment,
                });
            }
        }
        nh = next;
        off += hdr_len;
    }
    if is_extension(nh) {
        return malformed(Layer::Ipv6Ext, "too many extension headers");
    }
    Ok(Ipv6UpperLayer {
        protocol: nh,
        offset: off,
        fragment,
    })
}

impl<'a> Ipv6Packet<&'a [u8]> {
    /// [`upper_payload`](Self::upper_payload) with the buffer's lifetime
    /// rather than the view's, so it can outlive this view.
    #[inline]
    pub fn into_upper_payload(self, upper: &Ipv6UpperLayer) -> &'a [u8] {
        let end = self.end();
        &self.buffer[upper.offset.min(end)..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, the traffic class and the flow label.
    #[inline]
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        put32(self.buffer.as_mut(), field::VER_TC_FLOW, v);
    }

    /// Sets the traffic class, keeping version and flow label.
    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let b = self.buffer.as_mut();
        let v = (be32(b, field::VER_TC_FLOW) & 0xf00f_ffff) | (u32::from(tc) << 20);
        put32(b, field::VER_TC_FLOW, v);
    }

    /// Sets the flow label, keeping version and traffic class.
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        let b = self.buffer.as_mut();
        let v = (be32(b, field::VER_TC_FLOW) & 0xfff0_0000) | (label & 0x000f_ffff);
        put32(b, field::VER_TC_FLOW, v);
    }

    /// Sets the payload length. Does not re-validate the view; `payload()`
    /// stays within the buffer.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::PAYLOAD_LEN, len);
    }

    /// Sets the next header of the fixed header.
    #[inline]
    pub fn set_next_header(&mut self, nh: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = nh;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, h: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = h;
    }

    /// Sets the source address (checksums untouched).
    #[inline]
    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Sets the destination address (checksums untouched).
    #[inline]
    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// The payload, mutable (bounded as [`payload`](Self::payload)).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.end();
        &mut self.buffer.as_mut()[HEADER_LEN.min(end)..end]
    }

    /// The upper layer's payload, mutable.
    #[inline]
    pub fn upper_payload_mut(&mut self, upper: &Ipv6UpperLayer) -> &mut [u8] {
        let end = self.end();
        &mut self.buffer.as_mut()[upper.offset.min(end)..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Error;

    fn header(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x6b, 0x8a, 0xbc, 0xde];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.push(next);
        p.push(61);
        p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn parses_fixed_header() {
        let mut p = header(ip_proto::UDP, &[1, 2, 3, 4, 5, 6, 7, 8]);
        p.extend_from_slice(&[0; 6]); // padding
        let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.traffic_class(), 0xb8);
        assert_eq!(ip.flow_label(), 0xabcde);
        assert_eq!(ip.payload_len(), 8);
        assert_eq!(ip.next_header(), ip_proto::UDP);
        assert_eq!(ip.hop_limit(), 61);
        assert_eq!(ip.src(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.dst(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(ip.packet().len(), 48);
        let up = ip.upper_layer().unwrap();
        assert_eq!(
            up,
            Ipv6UpperLayer {
                protocol: ip_proto::UDP,
                offset: 40,
                fragment: None
            }
        );
        assert_eq!(ip.upper_payload(&up), &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn truncation_and_version() {
        let p = header(ip_proto::TCP, &[0; 20]);
        for n in 0..p.len() {
            let required = if n < 40 { 40 } else { 60 };
            assert_eq!(
                Ipv6Packet::new_checked(&p[..n]).unwrap_err(),
                Error::Truncated {
                    layer: Layer::Ipv6,
                    required,
                    len: n
                }
            );
        }
        let mut q = p.clone();
        q[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&q[..]).unwrap_err(),
            Error::Malformed {
                layer: Layer::Ipv6,
                what: "version is not 6"
            }
        );
        // A quoted packet may be cut short.
        let quoted = Ipv6Packet::new_quoted(&p[..48]).unwrap();
        assert_eq!(quoted.payload().len(), 8);
    }

    /// Hop-by-hop (8) -> routing (24) -> fragment (8) -> dest opts (16) ->
    /// AH (16) -> TCP.
    fn chain(frag_offset_field: u16) -> Vec<u8> {
        let mut ext = Vec::new();
        ext.extend_from_slice(&[ip_proto::ROUTING, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&[ip_proto::FRAGMENT, 2, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[0; 16]);
        ext.push(ip_proto::DSTOPTS);
        ext.push(0);
        ext.extend_from_slice(&frag_offset_field.to_be_bytes());
        ext.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        ext.extend_from_slice(&[ip_proto::AH, 1, 1, 6, 0, 0, 0, 0]);
        ext.extend_from_slice(&[0; 8]);
        ext.extend_from_slice(&[ip_proto::TCP, 2, 0, 0]);
        ext.extend_from_slice(&[0; 12]);
        ext.extend_from_slice(&[0xaa; 20]); // "TCP"
        header(ip_proto::HOPOPTS, &ext)
    }

    #[test]
    fn walks_all_extension_kinds() {
        let p = chain(0x0001); // first fragment, more follow
        let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
        let up = ip.upper_layer().unwrap();
        assert_eq!(up.protocol, ip_proto::TCP);
        assert_eq!(up.offset, 40 + 8 + 24 + 8 + 16 + 16);
        assert_eq!(
            up.fragment,
            Some(Ipv6Fragment {
                offset: 0,
                more: true,
                ident: 0xdead_beef
            })
        );
        assert_eq!(ip.upper_payload(&up), &[0xaa; 20]);
    }

    #[test]
    fn later_fragment_stops_at_fragment_header() {
        let p = chain(185 << 3);
        let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
        let up = ip.upper_layer().unwrap();
        assert_eq!(up.protocol, ip_proto::DSTOPTS);
        assert_eq!(up.offset, 40 + 8 + 24 + 8);
        let f = up.fragment.unwrap();
        assert_eq!((f.offset, f.more, f.ident), (1480, false, 0xdead_beef));
        assert!(!f.is_first());
    }

    #[test]
    fn extension_truncation_at_every_length() {
        let full = chain(1);
        let payload = &full[40..];
        // Offsets where each header's length becomes known / ends.
        for n in 0..payload.len() {
            let p = header(ip_proto::HOPOPTS, &payload[..n]);
            let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
            let res = ip.upper_layer();
            let abs = 40 + n;
            // (length becomes known, header ends); a Fragment header is fixed-size.
            let bounds = [(2, 8), (10, 32), (32, 40), (42, 56), (58, 72)];
            let mut expected = None;
            for (known, endh) in bounds {
                if n < known {
                    expected = Some(40 + known);
                    break;
                }
                if n < endh {
                    expected = Some(40 + endh);
                    break;
                }
            }
            match expected {
                Some(required) => assert_eq!(
                    res.unwrap_err(),
                    Error::Truncated {
                        layer: Layer::Ipv6Ext,
                        required,
                        len: abs
                    },
                    "payload len {n}"
                ),
                None => assert_eq!(res.unwrap().protocol, ip_proto::TCP),
            }
        }
    }

    #[test]
    fn end_of_walk_and_limits() {
        // ESP and No Next Header end the walk.
        for nh in [ip_proto::ESP, ip_proto::NO_NEXT] {
            let p = header(ip_proto::DSTOPTS, &[nh, 0, 0, 0, 0, 0, 0, 0, 9, 9]);
            let up = Ipv6Packet::new_checked(&p[..])
                .unwrap()
                .upper_layer()
                .unwrap();
            assert_eq!((up.protocol, up.offset), (nh, 48));
        }
        // Hop-by-hop after another header.
        let p = header(
            ip_proto::DSTOPTS,
            &[0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0],
        );
        assert_eq!(
            Ipv6Packet::new_checked(&p[..]).unwrap().upper_layer(),
            Err(Error::Malformed {
                layer: Layer::Ipv6Ext,
                what: "hop-by-hop header not first"
            })
        );
        // Exactly MAX_EXT_HEADERS is fine, one more is not.
        for (count, ok) in [(MAX_EXT_HEADERS, true), (MAX_EXT_HEADERS + 1, false)] {
            let mut ext = Vec::new();
            for i in 0..count {
                let next = if i + 1 == count {
                    ip_proto::UDP
                } else {
                    ip_proto::DSTOPTS
                };
                ext.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
            }
            let p = header(ip_proto::DSTOPTS, &ext);
            let r = Ipv6Packet::new_checked(&p[..]).unwrap().upper_layer();
            if ok {
                assert_eq!(r.unwrap().offset, 40 + 8 * count);
            } else {
                assert_eq!(
                    r,
                    Err(Error::Malformed {
                        layer: Layer::Ipv6Ext,
                        what: "too many extension headers"
                    })
                );
            }
        }
    }

    #[test]
    fn setters() {
        let mut p = header(ip_proto::UDP, &[0; 8]);
        let mut ip = Ipv6Packet::new_checked(&mut p[..]).unwrap();
        ip.set_version_tc_flow(0x12, 0x34567);
        assert_eq!(
            (ip.version(), ip.traffic_class(), ip.flow_label()),
            (6, 0x12, 0x34567)
        );
        ip.set_traffic_class(0xff);
        ip.set_flow_label(0xfffff);
        assert_eq!(
            (ip.version(), ip.traffic_class(), ip.flow_label()),
            (6, 0xff, 0xfffff)
        );
        ip.set_hop_limit(1);
        ip.set_next_header(ip_proto::TCP);
        let a: Ipv6Addr = "fd00::a".parse().unwrap();
        let b: Ipv6Addr = "fd00::b".parse().unwrap();
        ip.set_src(a);
        ip.set_dst(b);
        assert_eq!(
            (ip.hop_limit(), ip.next_header(), ip.src(), ip.dst()),
            (1, 6, a, b)
        );
        ip.set_payload_len(9999);
        assert_eq!(ip.payload().len(), 8);
        let up = ip.upper_layer().unwrap();
        assert_eq!(ip.upper_payload_mut(&up).len(), 8);
        ip.set_payload_len(0);
        assert_eq!(ip.payload_mut().len(), 0);
    }
}
