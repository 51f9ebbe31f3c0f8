//! ARP for Ethernet and IPv4 (RFC 826), the only combination accepted.
//!
//! ```text
//!  0       2       4    5    6       8      14     18      24     28
//!  | htype | ptype | hl | pl | oper  | sha  | spa  | tha   | tpa  |
//! ```

use std::net::Ipv4Addr;

use super::ethernet::{EtherType, EthernetFrame};
use super::{array6, be16, malformed, need, put16, Layer, MacAddr, Result};

mod field {
    use std::ops::Range;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// An ARP operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpOperation(pub u16);

impl ArpOperation {
    /// Request (1).
    pub const REQUEST: ArpOperation = ArpOperation(1);
    /// Reply (2).
    pub const REPLY: ArpOperation = ArpOperation(2);
}

/// A view of an Ethernet/IPv4 ARP packet. The buffer may be longer
/// (Ethernet padding); only the first 28 bytes are used.
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline(always)]
fn ipv4_at(b: &[u8], off: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[off], b[off + 1], b[off + 2], b[off + 3])
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking it.
    ///
    /// Accessors panic if the buffer is shorter than 28 bytes.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after checking its length and that it is ARP for
    /// Ethernet (htype 1, hlen 6) and IPv4 (ptype 0x0800, plen 4).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need(Layer::Arp, PACKET_LEN, b.len())?;
        if be16(b, field::HTYPE) != 1 {
            return malformed(Layer::Arp, "hardware type is not Ethernet");
        }
        if be16(b, field::PTYPE) != EtherType::IPV4.0 {
            return malformed(Layer::Arp, "protocol type is not IPv4");
        }
        if b[field::HLEN] != 6 {
            return malformed(Layer::Arp, "hardware address length is not 6");
        }
        if b[field::PLEN] != 4 {
            return malformed(Layer::Arp, "protocol address length is not 4");
        }
        Ok(ArpPacket { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Operation code.
    #[inline]
    pub fn operation(&self) -> ArpOperation {
        ArpOperation(be16(self.buffer.as_ref(), field::OPER))
    }

    /// Sender hardware address.
    #[inline]
    pub fn sender_hw_addr(&self) -> MacAddr {
        MacAddr(array6(self.buffer.as_ref(), field::SHA.start))
    }

    /// Sender protocol address.
    #[inline]
    pub fn sender_proto_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SPA.start)
    }

    /// Target hardware address.
    #[inline]
    pub fn target_hw_addr(&self) -> MacAddr {
        MacAddr(array6(self.buffer.as_ref(), field::THA.start))
    }

    /// Target protocol address.
    #[inline]
    pub fn target_proto_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::TPA.start)
    }

    /// Gratuitous ARP: sender and target protocol addresses are equal.
    #[inline]
    pub fn is_gratuitous(&self) -> bool {
        let b = self.buffer.as_ref();
        b[field::SPA] == b[field::TPA]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes htype, ptype, hlen and plen for Ethernet/IPv4.
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        put16(b, field::HTYPE, 1);
        put16(b, field::PTYPE, EtherType::IPV4.0);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    /// Sets the operation code.
    #[inline]
    pub fn set_operation(&mut self, op: ArpOperation) {
        put16(self.buffer.as_mut(), field::OPER, op.0);
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sender_hw_addr(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&mac.0);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_sender_proto_addr(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&ip.octets());
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_hw_addr(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&mac.0);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_proto_addr(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&ip.octets());
    }

    /// Turns a request into the reply to it, in place: the requester
    /// becomes the target, and the sender becomes `our_mac` with the
    /// address that was asked for. Returns `false` (nothing written) if the
    /// packet is not a request.
    ///
    /// Whether the asked-for address ([`target_proto_addr`]) is ours is the
    /// caller's decision, made before calling this.
    ///
    /// [`target_proto_addr`]: ArpPacket::target_proto_addr
    #[inline]
    pub fn make_reply(&mut self, our_mac: MacAddr) -> bool {
        if self.operation() != ArpOperation::REQUEST {
            return false;
        }
        let b = self.buffer.as_mut();
        let mut sender = [0u8; 10];
        sender.copy_from_slice(&b[field::SHA.start..field::SPA.end]);
        let mut asked = [0u8; 4];
        asked.copy_from_slice(&b[field::TPA]);
        b[field::THA.start..field::TPA.end].copy_from_slice(&sender);
        b[field::SHA].copy_from_slice(&our_mac.0);
        b[field::SPA].copy_from_slice(&asked);
        put16(b, field::OPER, ArpOperation::REPLY.0);
        true
    }
}

/// Turns an Ethernet frame holding an ARP request into the reply, in place:
/// Ethernet destination = the requester, source = `our_mac`, and the ARP
/// body as in [`ArpPacket::make_reply`]. VLAN tags are kept.
///
/// Returns `Ok(false)`, with the frame unchanged, if it is not ARP or not a
/// request; `Err` if the frame or the ARP body is malformed.
pub fn reply_in_place(frame: &mut [u8], our_mac: MacAddr) -> Result<bool> {
    let mut eth = EthernetFrame::new_checked(frame)?;
    if eth.ethertype() != EtherType::ARP {
        return Ok(false);
    }
    let mut arp = ArpPacket::new_checked(eth.payload_mut())?;
    let requester = arp.sender_hw_addr();
    if !arp.make_reply(our_mac) {
        return Ok(false);
    }
    eth.set_dst(requester);
    eth.set_src(our_mac);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Error;

    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // htype, ptype, hlen, plen, oper
        0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 0, 0, 1, // sha, spa
        0, 0, 0, 0, 0, 0, 10, 0, 0, 100, // tha, tpa
    ];

    #[test]
    fn parses_request() {
        let a = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(a.operation(), ArpOperation::REQUEST);
        assert_eq!(
            a.sender_hw_addr(),
            MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55])
        );
        assert_eq!(a.sender_proto_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(a.target_hw_addr(), MacAddr::ZERO);
        assert_eq!(a.target_proto_addr(), Ipv4Addr::new(10, 0, 0, 100));
        assert!(!a.is_gratuitous());
        // Ethernet padding after the body is tolerated.
        let mut padded = REQUEST.to_vec();
        padded.extend_from_slice(&[0; 18]);
        assert!(ArpPacket::new_checked(&padded[..]).is_ok());
    }

    #[test]
    fn truncation_at_every_length() {
        for n in 0..REQUEST.len() {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST[..n]).unwrap_err(),
                Error::Truncated {
                    layer: Layer::Arp,
                    required: 28,
                    len: n
                }
            );
        }
    }

    #[test]
    fn rejects_other_hardware_and_protocols() {
        let cases: [(usize, u8, &str); 4] = [
            (1, 6, "hardware type is not Ethernet"),
            (2, 0x86, "protocol type is not IPv4"),
            (4, 8, "hardware address length is not 6"),
            (5, 16, "protocol address length is not 4"),
        ];
        for (off, val, what) in cases {
            let mut p = REQUEST;
            p[off] = val;
            assert_eq!(
                ArpPacket::new_checked(&p[..]).unwrap_err(),
                Error::Malformed {
                    layer: Layer::Arp,
                    what
                }
            );
        }
    }

    #[test]
    fn request_becomes_reply() {
        let ours = MacAddr([0x02, 0xaa, 0, 0, 0, 1]);
        let mut p = REQUEST;
        let mut a = ArpPacket::new_checked(&mut p[..]).unwrap();
        assert!(a.make_reply(ours));
        assert_eq!(a.operation(), ArpOperation::REPLY);
        assert_eq!(a.sender_hw_addr(), ours);
        assert_eq!(a.sender_proto_addr(), Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(
            a.target_hw_addr(),
            MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55])
        );
        assert_eq!(a.target_proto_addr(), Ipv4Addr::new(10, 0, 0, 1));
        // A reply is not answered again.
        assert!(!a.make_reply(ours));
    }

    #[test]
    fn frame_reply_in_place() {
        let ours = MacAddr([0x02, 0xaa, 0, 0, 0, 1]);
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07, 0x08, 0x06]);
        f.extend_from_slice(&REQUEST);
        assert_eq!(reply_in_place(&mut f, ours), Ok(true));
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.dst(), MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]));
        assert_eq!(e.src(), ours);
        assert_eq!(e.vlan(), Some(7));
        let a = ArpPacket::new_checked(e.payload()).unwrap();
        assert_eq!(a.operation(), ArpOperation::REPLY);
        // Now a reply: left alone.
        let before = f.clone();
        assert_eq!(reply_in_place(&mut f, ours), Ok(false));
        assert_eq!(f, before);
        // Not ARP at all.
        f[16] = 0x08;
        f[17] = 0x00;
        assert_eq!(reply_in_place(&mut f, ours), Ok(false));
        // Truncated ARP body.
        let mut short = before[..30].to_vec();
        assert_eq!(
            reply_in_place(&mut short, ours),
            Err(Error::Truncated {
                layer: Layer::Arp,
                required: 28,
                len: 12
            })
        );
    }
}
