//! The VRRPv3 advertisement on the wire (RFC 5798 §5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  IPvX Address(es): 4 or 16 octets each        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Only the VRRP message is coded here; the IP header (protocol 112,
//! TTL / hop limit 255, multicast destination) belongs to the caller's
//! socket. The address family of the list is the family of the IP packet
//! that carries it, so `encode` and `decode` take the IP source and
//! destination: they are needed for the pseudo-header anyway.
//!
//! # Checksum
//!
//! RFC 5798 §5.2.8: the 16-bit one's complement of the one's complement
//! sum of the VRRP message (checksum field zero) and a pseudo-header with
//! next header 112, citing RFC 2460 §8.1's (source, destination, 32-bit
//! length, three zero octets, 112). For IPv6 we build exactly that. For
//! IPv4 we build the IPv4 pseudo-header of RFC 768 (source, destination,
//! zero octet, 112, 16-bit length). Whichever reading a peer takes, the
//! sum is the same: with 4-octet addresses, the RFC 2460 layout puts the
//! length and the protocol in the same 16-bit columns as the RFC 768
//! layout, with only zero words added (checked by hand in the tests).
//!
//! # Leniency on receive
//!
//! The reserved bits are ignored (§5.2.6). A count of zero addresses is
//! accepted (§5.2.5 says the minimum is 1, but the message is still well
//! formed and the state machine does not need the list). An interval of 0
//! decodes; the state machine rejects it (see `Invalid::ZeroInterval`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// VRRP version this codec speaks.
pub const VERSION: u8 = 3;
/// The only VRRPv3 message type: ADVERTISEMENT.
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Fixed part of the message, before the addresses.
pub const HEADER_LEN: usize = 8;
/// Largest Max Adver Int (12 bits, centiseconds): 40.95 s.
pub const MAX_INTERVAL_CS: u16 = 0x0fff;
/// IPv4 multicast destination of adverts (RFC 5798 §5.1.1.2).
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast destination of adverts (RFC 5798 §5.1.2.2).
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit an advert must be sent and received with (§5.1.1.3).
pub const TTL: u8 = 255;

/// One VRRPv3 advertisement, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Virtual router id.
    pub vrid: u8,
    /// Sender's priority; 0 = the master is leaving, 255 = address owner.
    pub priority: u8,
    /// Max Adver Int in centiseconds (12 bits on the wire).
    pub interval_cs: u16,
    /// The virtual addresses, all of the carrying packet's family.
    pub addresses: Vec<IpAddr>,
}

impl Advert {
    /// The advertisement interval as a duration.
    pub fn interval(&self) -> Duration {
        cs(self.interval_cs)
    }
}

/// Centiseconds to a duration.
pub fn cs(v: u16) -> Duration {
    Duration::from_millis(u64::from(v) * 10)
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than the 8-octet fixed part.
    #[error("truncated: {len} octets, a VRRP message has at least 8")]
    Truncated {
        /// Octets present.
        len: usize,
    },
    /// Version field is not 3.
    #[error("version {got}, expected 3")]
    Version {
        /// Version found.
        got: u8,
    },
    /// Type field is not 1 (ADVERTISEMENT).
    #[error("type {got}, expected 1 (advertisement)")]
    Type {
        /// Type found.
        got: u8,
    },
    /// The address part is not a whole number of addresses.
    #[error("length {len}: {} octets after the header are not whole {addr_len}-octet addresses", len - HEADER_LEN)]
    Length {
        /// Octets of the whole message.
        len: usize,
        /// Octets of one address of the family (4 or 16).
        addr_len: usize,
    },
    /// Count IPvX Addr disagrees with the addresses present.
    #[error("count mismatch: header says {count} addresses, message holds {present}")]
    CountMismatch {
        /// Count IPvX Addr.
        count: u8,
        /// Addresses in the message.
        present: usize,
    },
    /// Checksum wrong.
    #[error("bad checksum {got:#06x}, expected {want:#06x}")]
    Checksum {
        /// Checksum field found.
        got: u16,
        /// Checksum the message should carry.
        want: u16,
    },
    /// Source and destination (or a listed address) of different families.
    #[error("address family mismatch: source, destination and listed addresses must all be IPv4 or all IPv6")]
    Family,
    /// More than 255 addresses (encode).
    #[error("{count} addresses, at most 255 fit")]
    TooManyAddresses {
        /// Addresses given.
        count: usize,
    },
    /// Interval does not fit 12 bits (encode).
    #[error("interval {cs} cs does not fit 12 bits (at most 4095 cs)")]
    Interval {
        /// Interval given, centiseconds.
        cs: u16,
    },
}

fn addr_len(a: &IpAddr) -> usize {
    match a {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

fn same_family(a: &IpAddr, b: &IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// One's complement sum of `data` as big-endian 16-bit words, added to
/// `acc` (not folded; an odd last octet is padded with zero).
fn sum_words(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field for `msg` (whose own checksum field is included
/// as it stands: zero it to compute, leave it to verify, where a correct
/// message gives 0). `src` and `dst` must be of one family.
pub fn checksum(msg: &[u8], src: IpAddr, dst: IpAddr) -> u16 {
    let mut acc = 0u64;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum_words(acc, &s.octets());
            acc = sum_words(acc, &d.octets());
            acc = sum_words(acc, &[0, IPPROTO_VRRP]);
            // The length of a valid message is at most 8 + 255 * 4.
            acc = sum_words(acc, &(msg.len() as u16).to_be_bytes());
        }
        (s, d) => {
            let s6 = match s {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            let d6 = match d {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            acc = sum_words(acc, &s6);
            acc = sum_words(acc, &d6);
            acc = sum_words(acc, &(msg.len() as u32).to_be_bytes());
            acc = sum_words(acc, &[0, 0, 0, IPPROTO_VRRP]);
        }
    }
    !fold(sum_words(acc, msg))
}

/// The VRRP message (no IP header) for `adv`, sent from `src` to `dst`.
pub fn encode(adv: &Advert, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, Error> {
    if !same_family(&src, &dst) || adv.addresses.iter().any(|a| !same_family(a, &src)) {
        return Err(Error::Family);
    }
    let count = u8::try_from(adv.addresses.len()).map_err(|_| Error::TooManyAddresses {
        count: adv.addresses.len(),
    })?;
    if adv.interval_cs > MAX_INTERVAL_CS {
        return Err(Error::Interval {
            cs: adv.interval_cs,
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + adv.addresses.len() * addr_len(&src));
    out.push((VERSION << 4) | TYPE_ADVERTISEMENT);
    out.push(adv.vrid);
    out.push(adv.priority);
    out.push(count);
    out.extend_from_slice(&adv.interval_cs.to_be_bytes()); // rsvd = 0
    out.extend_from_slice(&[0, 0]);
    for a in &adv.addresses {
        match a {
            IpAddr::V4(v) => out.extend_from_slice(&v.octets()),
            IpAddr::V6(v) => out.extend_from_slice(&v.octets()),
        }
    }
    let ck = checksum(&out, src, dst);
    out[6..8].copy_from_slice(&ck.to_be_bytes());
    Ok(out)
}

/// Decodes the VRRP message `msg` that arrived from `src` to `dst`.
/// Checks are made in the order that names the most useful error: a
/// VRRPv2 peer is reported as `Version`, not as a checksum failure.
pub fn decode(msg: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, Error> {
    if !same_family(&src, &dst) {
        return Err(Error::Family);
    }
    if msg.len() < HEADER_LEN {
        return Err(Error::Truncated { len: msg.len() });
    }
    let version = msg[0] >> 4;
    if version != VERSION {
        return Err(Error::Version { got: version });
    }
    let ty = msg[0] & 0x0f;
    if ty != TYPE_ADVERTISEMENT {
        return Err(Error::Type { got: ty });
    }
    let alen = addr_len(&src);
    let body = &msg[HEADER_LEN..];
    if !body.chunks_exact(alen).remainder().is_empty() {
        return Err(Error::Length {
            len: msg.len(),
            addr_len: alen,
        });
    }
    let count = msg[3];
    let present = body.len() / alen;
    if usize::from(count) != present {
        return Err(Error::CountMismatch { count, present });
    }
    if checksum(msg, src, dst) != 0 {
        let mut zeroed = msg.to_vec();
        zeroed[6] = 0;
        zeroed[7] = 0;
        return Err(Error::Checksum {
            got: u16::from_be_bytes([msg[6], msg[7]]),
            want: checksum(&zeroed, src, dst),
        });
    }
    let addresses = body
        .chunks_exact(alen)
        .map(|c| {
            if src.is_ipv4() {
                IpAddr::from([c[0], c[1], c[2], c[3]])
            } else {
                let mut v6 = [0u8; 16];
                v6.copy_from_slice(c);
                IpAddr::from(v6)
            }
        })
        .collect();
    Ok(Advert {
        vrid: msg[1],
        priority: msg[2],
        interval_cs: u16::from_be_bytes([msg[4], msg[5]]) & MAX_INTERVAL_CS,
        addresses,
    })
}

#[cfg(test)]
mod tests;
