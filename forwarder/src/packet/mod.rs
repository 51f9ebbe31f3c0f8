//! Zero-copy views over wire formats, in-place rewrites and checksums.
//!
//! Every protocol lives in its own file and is read through a view such as
//! [`Ipv4Packet<T>`]. A view wraps any `T: AsRef<[u8]>` (a `&[u8]`, a
//! `&mut [u8]` or a `Vec<u8>`) and reads fields at fixed byte offsets; the
//! setters exist only where `T: AsMut<[u8]>`. Nothing here allocates,
//! formats or uses `unsafe`.
//!
//! # The contract
//!
//! * `new_checked(buffer)` validates everything the accessors rely on: the
//!   buffer is long enough for the fixed header, for the header length the
//!   packet announces (IHL, TCP data offset, VLAN tags, ...) and for the
//!   length fields (IPv4 total length, IPv6 payload length, UDP length).
//!   It returns [`Error::Truncated`] or [`Error::Malformed`] otherwise.
//! * **Once `new_checked` has returned `Ok`, no accessor and no setter
//!   panics**, whatever the bytes contain. Setters that change a length
//!   field (`set_total_len`, `set_header_len`, ...) do not re-validate the
//!   view; the slices returned afterwards (`payload()`, `options()`) are
//!   clamped to the buffer, so they stay panic-free, but the caller should
//!   run `new_checked` again if it needs them to be consistent.
//! * `new_unchecked` exists for emitting headers into a buffer the caller
//!   sized itself. On such a view, accessors panic if the buffer is shorter
//!   than the protocol's fixed header.
//! * Lengths in errors are relative to the slice that was given to the view:
//!   `Truncated { layer: Ipv4, required: 60, len: 40 }` means the IPv4 view
//!   needed 60 bytes from the start of the IPv4 header and got 40.
//! * A buffer may be longer than the packet (Ethernet padding): views bound
//!   their `payload()` by the packet's own length field where it has one.
//!
//! Checksums are in [`checksum`]: full sums, pseudo-headers and the one
//! RFC 1624 incremental updater, [`checksum::Incremental`]. Test frames come
//! from [`builder`].

use std::fmt;
use std::str::FromStr;

pub mod arp;
pub mod builder;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use arp::{ArpOperation, ArpPacket};
pub use ethernet::{EtherType, EthernetFrame};
pub use icmp::Icmpv4Packet;
pub use icmpv6::{Icmpv6Packet, NaFlags};
pub use ipv4::Ipv4Packet;
pub use ipv6::{Ipv6Fragment, Ipv6Packet, Ipv6UpperLayer};
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::UdpPacket;

/// IP protocol numbers (IPv4 `protocol`, IPv6 `next header`).
pub mod ip_proto {
    /// IPv6 Hop-by-Hop Options.
    pub const HOPOPTS: u8 = 0;
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// IPv4-in-IP encapsulation.
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulation.
    pub const IPV6: u8 = 41;
    /// IPv6 Routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// GRE.
    pub const GRE: u8 = 47;
    /// Encapsulating Security Payload.
    pub const ESP: u8 = 50;
    /// Authentication Header.
    pub const AH: u8 = 51;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 No Next Header.
    pub const NO_NEXT: u8 = 59;
    /// IPv6 Destination Options.
    pub const DSTOPTS: u8 = 60;
}

/// The protocol layer an [`Error`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Ethernet II header, including VLAN tags.
    Ethernet,
    /// ARP.
    Arp,
    /// IPv4 header.
    Ipv4,
    /// IPv6 fixed header.
    Ipv6,
    /// IPv6 extension headers.
    Ipv6Ext,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP for IPv4.
    Icmpv4,
    /// ICMPv6, including NDP options.
    Icmpv6,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "Ethernet",
            Layer::Arp => "ARP",
            Layer::Ipv4 => "IPv4",
            Layer::Ipv6 => "IPv6",
            Layer::Ipv6Ext => "IPv6 extension header",
            Layer::Tcp => "TCP",
            Layer::Udp => "UDP",
            Layer::Icmpv4 => "ICMPv4",
            Layer::Icmpv6 => "ICMPv6",
        })
    }
}

/// Why a view refused a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the header or the length it announces.
    #[error("{layer} truncated: {required} bytes required, {len} present")]
    Truncated {
        /// The layer being parsed.
        layer: Layer,
        /// Bytes needed from the start of that layer.
        required: usize,
        /// Bytes available from the start of that layer.
        len: usize,
    },
    /// A field holds a value the layer cannot be parsed with.
    #[error("{layer} malformed: {what}")]
    Malformed {
        /// The layer being parsed.
        layer: Layer,
        /// What is wrong, e.g. `"IHL < 5"`.
        what: &'static str,
    },
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// `Err(Truncated)` unless `len >= required`.
#[inline]
pub(crate) fn need(layer: Layer, required: usize, len: usize) -> Result<()> {
    if len < required {
        Err(Error::Truncated {
            layer,
            required,
            len,
        })
    } else {
        Ok(())
    }
}

/// A `Malformed` error.
#[inline]
pub(crate) fn malformed<X>(layer: Layer, what: &'static str) -> Result<X> {
    Err(Error::Malformed { layer, what })
}

/// Big-endian `u16` at `off`. Callers guarantee `off + 2 <= b.len()`.
#[inline(always)]
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Big-endian `u32` at `off`. Callers guarantee `off + 4 <= b.len()`.
#[inline(always)]
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Writes a big-endian `u16` at `off`.
#[inline(always)]
pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian `u32` at `off`.
#[inline(always)]
pub(crate) fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// Six bytes at `off`.
#[inline(always)]
pub(crate) fn array6(b: &[u8], off: usize) -> [u8; 6] {
    [
        b[off],
        b[off + 1],
        b[off + 2],
        b[off + 3],
        b[off + 4],
        b[off + 5],
    ]
}

/// Sixteen bytes at `off`.
#[inline(always)]
pub(crate) fn array16(b: &[u8], off: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    a
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The six octets.
    #[inline]
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// Group address: the I/G bit (lowest bit of the first octet) is set.
    /// True for broadcast too.
    #[inline]
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// `ff:ff:ff:ff:ff:ff`.
    #[inline]
    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }

    /// Individual (unicast) address.
    #[inline]
    pub const fn is_unicast(self) -> bool {
        !self.is_multicast()
    }

    /// The Ethernet group address an IPv6 multicast address maps to
    /// (RFC 2464 §7): `33:33` followed by its last four octets.
    #[inline]
    pub fn ipv6_multicast(addr: &std::net::Ipv6Addr) -> MacAddr {
        let o = addr.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    /// The Ethernet group address an IPv4 multicast address maps to
    /// (RFC 1112 §6.4): `01:00:5e` followed by its low 23 bits.
    #[inline]
    pub fn ipv4_multicast(addr: &std::net::Ipv4Addr) -> MacAddr {
        let o = addr.octets();
        MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    }
}

impl From<[u8; 6]> for MacAddr {
    #[inline]
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address (expected six hex octets like aa:bb:cc:dd:ee:ff)")]
pub struct ParseMacAddrError;

impl FromStr for MacAddr {
    type Err = ParseMacAddrError;

    /// Parses six two-digit hex octets separated by `:` or `-`
    /// (one separator style throughout).
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(sep) {
            if n == 6 || part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(ParseMacAddrError);
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| ParseMacAddrError)?;
            n += 1;
        }
        if n != 6 {
            return Err(ParseMacAddrError);
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_display_and_parse_round_trip() {
        let m = MacAddr([0x02, 0x00, 0x5e, 0x10, 0xab, 0xff]);
        assert_eq!(m.to_string(), "02:00:5e:10:ab:ff");
        assert_eq!("02:00:5e:10:ab:ff".parse::<MacAddr>(), Ok(m));
        assert_eq!("02-00-5E-10-AB-FF".parse::<MacAddr>(), Ok(m));
        assert_eq!(format!("{m:?}"), "02:00:5e:10:ab:ff");
    }

    #[test]
    fn mac_parse_rejects_garbage() {
        for s in [
            "",
            "02:00:5e:10:ab",
            "02:00:5e:10:ab:ff:00",
            "2:00:5e:10:ab:ff",
            "02:00:5e:10:ab:fg",
            "02:00-5e:10:ab:ff",
            "020:0:5e:10:ab:ff",
            "+2:00:5e:10:ab:ff",
            "02:00:5e:10:ab:ff:",
        ] {
            assert_eq!(s.parse::<MacAddr>(), Err(ParseMacAddrError), "{s:?}");
        }
    }

    #[test]
    fn mac_classes() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_broadcast());
        assert!(MacAddr([0x02, 0, 0, 0, 0, 1]).is_unicast());
        let a: std::net::Ipv6Addr = "ff02::1:ff12:3456".parse().unwrap();
        assert_eq!(
            MacAddr::ipv6_multicast(&a),
            MacAddr([0x33, 0x33, 0xff, 0x12, 0x34, 0x56])
        );
    }

    #[test]
    fn error_messages_name_layer_and_lengths() {
        let e = Error::Truncated {
            layer: Layer::Ipv4,
            required: 20,
            len: 7,
        };
        assert_eq!(
            e.to_string(),
            "IPv4 truncated: 20 bytes required, 7 present"
        );
        let e = Error::Malformed {
            layer: Layer::Tcp,
            what: "data offset < 5",
        };
        assert_eq!(e.to_string(), "TCP malformed: data offset < 5");
    }
}
