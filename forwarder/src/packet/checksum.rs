//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums are carried unfolded in a `u64` ([`sum_bytes`], [`pseudo_header_v4`],
//! [`pseudo_header_v6`]) so partial sums can simply be added together, as
//! long as each partial sum covers an even number of bytes (or is the last
//! one). [`fold`] reduces a sum to 16 bits and [`finish`] complements it
//! into the value stored in a header.
//!
//! A checksum computed from scratch over data that is not all zero is never
//! `0xFFFF` (the folded sum is never `0`), so every checksum produced here
//! has one canonical representation, and [`Incremental`] produces exactly
//! the same value as recomputing. (The one case it cannot tell apart: if
//! the data, pseudo-header included, becomes all zero, which only an ICMPv4
//! echo reply with zero id, sequence and data can, the update yields
//! `0x0000` where recomputing yields `0xFFFF`.)
//!
//! UDP is the exception to "0 is an ordinary value": a UDP checksum field of
//! 0 means "no checksum" (allowed over IPv4), so a computed 0 is sent as
//! `0xFFFF` ([`udp_wire`]) and an absent checksum must stay absent after an
//! incremental update ([`Incremental::new_udp`]).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Folds an unfolded one's-complement sum to 16 bits (end-around carry).
#[inline]
pub fn fold(mut sum: u64) -> u16 {
    // Each round shrinks the value by ~16 bits; at most four rounds.
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum field value for an unfolded sum: `!fold(sum)`.
#[inline]
pub fn finish(sum: u64) -> u16 {
    !fold(sum)
}

/// Unfolded one's-complement sum of `data` read as big-endian 16-bit words;
/// an odd trailing byte is padded with a zero byte (RFC 1071).
///
/// The result can be added to other sums as long as `data` starts at an
/// even offset of the checksummed region.
#[inline]
pub fn sum_bytes(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    // 32-bit words: 2^32 ≡ 1 (mod 2^16 - 1), so summing u32 words is the
    // same one's-complement sum as summing u16 words, with half the adds.
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut i = 0;
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        i = 2;
    }
    if let Some(&b) = rest.get(i) {
        acc += u64::from(b) << 8;
    }
    acc
}

/// Unfolded sum of `data` with the 16-bit word at `skip` (an even offset)
/// treated as zero: how a checksum is computed over a header that contains
/// its own checksum field. If `skip + 2 > data.len()` nothing is skipped
/// beyond the end of `data`.
#[inline]
pub fn sum_bytes_skipping(data: &[u8], skip: usize) -> u64 {
    debug_assert!(skip & 1 == 0, "checksum field must be 16-bit aligned");
    let cut = skip.min(data.len());
    let resume = skip.saturating_add(2).min(data.len());
    sum_bytes(&data[..cut]) + sum_bytes(&data[resume..])
}

/// Unfolded sum of the IPv4 pseudo-header (RFC 793 / RFC 768):
/// source, destination, zero + protocol, and the transport length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u64 {
    u64::from(u32::from(src)) + u64::from(u32::from(dst)) + u64::from(protocol) + u64::from(len)
}

/// Unfolded sum of the IPv6 pseudo-header (RFC 8200 §8.1): source,
/// destination, 32-bit upper-layer length, three zero bytes and the
/// next-header value of the upper-layer protocol.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, len: u32) -> u64 {
    sum_bytes(&src.octets()) + sum_bytes(&dst.octets()) + u64::from(len) + u64::from(next_header)
}

/// The IPv4 header checksum over `header` (the whole header, options
/// included), ignoring the current contents of the checksum field
/// (bytes 10..12).
#[inline]
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    finish(sum_bytes_skipping(header, 10))
}

/// The checksum of a transport segment: `pseudo` is the pseudo-header sum
/// (0 for ICMPv4), `segment` the whole header and payload, and
/// `field` the offset of the checksum field inside it (TCP 16, UDP 6,
/// ICMP/ICMPv6 2), whose current contents are ignored.
///
/// This is the raw value; for UDP, pass it through [`udp_wire`].
#[inline]
pub fn transport_checksum(pseudo: u64, segment: &[u8], field: usize) -> u16 {
    finish(pseudo + sum_bytes_skipping(segment, field))
}

/// Whether `data` (checksum field included) plus the pseudo-header sums to
/// `0xFFFF`, i.e. the stored checksum is correct.
#[inline]
pub fn verify(pseudo: u64, data: &[u8]) -> bool {
    fold(pseudo + sum_bytes(data)) == 0xffff
}

/// The value to store in a UDP checksum field: a computed 0 is sent as
/// `0xFFFF`, since 0 means "no checksum" (RFC 768, RFC 8200 §8.1).
#[inline]
pub const fn udp_wire(computed: u16) -> u16 {
    if computed == 0 {
        0xffff
    } else {
        computed
    }
}

/// TCP checksum field offset.
pub const TCP_FIELD: usize = 16;
/// UDP checksum field offset.
pub const UDP_FIELD: usize = 6;
/// ICMPv4 and ICMPv6 checksum field offset.
pub const ICMP_FIELD: usize = 2;

/// RFC 1624 incremental checksum update, eqn. 3:
/// `HC' = ~(~HC + ~m + m')`, for any number of changed fields.
///
/// ```
/// use forwarder::packet::checksum::Incremental;
/// // RFC 1624 §4: HC = 0xDD2F, a field changes from 0x5555 to 0x3285.
/// let hc = Incremental::new(0xdd2f).remove_u16(0x5555).add_u16(0x3285).finish();
/// assert_eq!(hc, 0x0000);
/// ```
///
/// Each `remove_*` must be paired with an `add_*` of the same width at the
/// same position. `*_bytes` slices must start at an even offset of the
/// checksummed data; odd-length slices are padded with a zero byte, which
/// is right when old and new have the same length. Pseudo-header fields
/// (IPv4/IPv6 addresses, ports) are changed the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "call finish() and store the result"]
pub struct Incremental {
    acc: u64,
    /// UDP with a zero (absent) checksum: `finish` returns 0.
    absent: bool,
    /// UDP: a result of 0 is sent as 0xFFFF.
    udp: bool,
}

impl Incremental {
    /// Starts from the checksum currently stored in the header.
    #[inline]
    pub const fn new(old_checksum: u16) -> Self {
        Incremental {
            acc: (!old_checksum) as u64,
            absent: false,
            udp: false,
        }
    }

    /// Starts from a UDP checksum field: if it is 0 (no checksum), the
    /// update is a no-op and [`finish`](Self::finish) returns 0; otherwise a
    /// result of 0 is returned as `0xFFFF`.
    #[inline]
    pub const fn new_udp(old_checksum: u16) -> Self {
        Incremental {
            acc: (!old_checksum) as u64,
            absent: old_checksum == 0,
            udp: true,
        }
    }

    /// Removes a 16-bit word's old value.
    #[inline]
    pub const fn remove_u16(mut self, old: u16) -> Self {
        self.acc += (!old) as u64;
        self
    }

    /// Adds a 16-bit word's new value.
    #[inline]
    pub const fn add_u16(mut self, new: u16) -> Self {
        self.acc += new as u64;
        self
    }

    /// Removes an aligned 32-bit value (e.g. an IPv4 address).
    #[inline]
    pub const fn remove_u32(mut self, old: u32) -> Self {
        self.acc += (!(old >> 16) & 0xffff) as u64 + (!old & 0xffff) as u64;
        self
    }

    /// Adds an aligned 32-bit value.
    #[inline]
    pub const fn add_u32(mut self, new: u32) -> Self {
        self.acc += (new >> 16) as u64 + (new & 0xffff) as u64;
        self
    }

    /// Removes the old contents of an aligned byte range (e.g. an IPv6
    /// address).
    #[inline]
    pub fn remove_bytes(mut self, old: &[u8]) -> Self {
        // -sum(old) in one's complement is the complement of its fold.
        self.acc += u64::from(!fold(sum_bytes(old)));
        self
    }

    /// Adds the new contents of an aligned byte range.
    #[inline]
    pub fn add_bytes(mut self, new: &[u8]) -> Self {
        self.acc += sum_bytes(new);
        self
    }

    /// The new checksum: `~(~HC + ~m + m')`, folded.
    #[inline]
    pub fn finish(self) -> u16 {
        if self.absent {
            return 0;
        }
        let hc = finish(self.acc);
        if self.udp {
            udp_wire(hc)
        } else {
            hc
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-bit word sum done the slow, obvious way.
    fn naive(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
            s += u32::from(w);
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1624_section4_example() {
        // RFC 1624 §4: the sum of the other header words is C = 0xCD7A and a
        // field m = 0x5555 changes to m' = 0x3285.
        let c: u64 = 0xcd7a;
        let hc = finish(c + 0x5555);
        assert_eq!(hc, 0xdd2f, "HC = ~(0xCD7A + 0x5555) = ~0x22D0");
        // Recomputed from scratch: ~(0xCD7A + 0x3285) = ~0xFFFF = 0x0000.
        assert_eq!(finish(c + 0x3285), 0x0000);
        // Eqn. 3 gives the same 0x0000 ...
        let eqn3 = Incremental::new(0xdd2f)
            .remove_u16(0x5555)
            .add_u16(0x3285)
            .finish();
        assert_eq!(eqn3, 0x0000);
        // ... while RFC 1141's eqn. 2, HC + m + ~m', gives 0xFFFF, the
        // answer the RFC shows to be wrong.
        let eqn2 = fold(0xdd2f + 0x5555 + u64::from(!0x3285u16));
        assert_eq!(eqn2, 0xffff);
    }

    #[test]
    fn unchanged_field_keeps_zero_checksum() {
        // Errata 4782's worry: HC = 0 and m' = m must leave HC = 0.
        let hc = Incremental::new(0)
            .remove_u16(0x5555)
            .add_u16(0x5555)
            .finish();
        assert_eq!(hc, 0);
    }

    #[test]
    fn ipv4_header_vector() {
        // A well-known header: 4500 0073 0000 4000 4011 [b861] c0a8 0001
        // c0a8 00c7 has checksum 0xB861.
        let h: [u8; 20] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header_checksum(&h), 0xb861);
        assert!(verify(0, &h));
        let mut bad = h;
        bad[8] = 0x3f;
        assert!(!verify(0, &bad));
        // TTL decrement, incrementally (TTL is the high byte of word 4).
        let new = Incremental::new(0xb861)
            .remove_u16(0x4011)
            .add_u16(0x3f11)
            .finish();
        assert_eq!(new, ipv4_header_checksum(&bad));
    }

    #[test]
    fn sum_matches_naive_for_all_lengths_and_alignments() {
        let data: Vec<u8> = (0..97u32).map(|i| (i * 37 + 11) as u8).collect();
        for start in 0..8 {
            for end in start..data.len() {
                let d = &data[start..end];
                let f = fold(sum_bytes(d));
                let n = naive(d);
                // 0 and 0xFFFF are the same one's-complement number; the
                // fast path never produces 0 for nonzero data, nor does naive.
                assert_eq!(f, n, "{start}..{end}");
            }
        }
        assert_eq!(fold(sum_bytes(&[])), 0);
        assert_eq!(fold(sum_bytes(&[0xff, 0xff, 0xff, 0xff])), 0xffff);
    }

    #[test]
    fn skipping_equals_zeroing() {
        let mut data: Vec<u8> = (0..40u32).map(|i| (i * 91 + 3) as u8).collect();
        let skipped = sum_bytes_skipping(&data, 16);
        data[16] = 0;
        data[17] = 0;
        assert_eq!(fold(skipped), fold(sum_bytes(&data)));
        // A field at or past the end skips nothing that is present.
        assert_eq!(fold(sum_bytes_skipping(&data, 40)), fold(sum_bytes(&data)));
        assert_eq!(
            fold(sum_bytes_skipping(&data[..17], 16)),
            fold(sum_bytes(&data[..16]))
        );
    }

    #[test]
    fn incremental_widths_agree() {
        let hc = 0x1234;
        let a = Incremental::new(hc)
            .remove_u32(0xc0a8_0001)
            .add_u32(0x0a00_0002)
            .finish();
        let b = Incremental::new(hc)
            .remove_u16(0xc0a8)
            .remove_u16(0x0001)
            .add_u16(0x0a00)
            .add_u16(0x0002)
            .finish();
        let c = Incremental::new(hc)
            .remove_bytes(&[0xc0, 0xa8, 0, 1])
            .add_bytes(&[10, 0, 0, 2])
            .finish();
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn incremental_matches_recompute_on_random_headers() {
        // Deterministic LCG so the test is reproducible without proptest.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u16
        };
        for _ in 0..10_000 {
            let mut h = [0u8; 20];
            for w in h.chunks_mut(2) {
                w.copy_from_slice(&next().to_be_bytes());
            }
            let hc = ipv4_header_checksum(&h);
            let word = (next() % 10) as usize;
            if word == 5 {
                continue;
            }
            let old = u16::from_be_bytes([h[word * 2], h[word * 2 + 1]]);
            let new = next();
            h[word * 2..word * 2 + 2].copy_from_slice(&new.to_be_bytes());
            let inc = Incremental::new(hc).remove_u16(old).add_u16(new).finish();
            assert_eq!(inc, ipv4_header_checksum(&h));
        }
    }

    #[test]
    fn udp_zero_rules() {
        assert_eq!(udp_wire(0), 0xffff);
        assert_eq!(udp_wire(0x1234), 0x1234);
        // Absent stays absent.
        let c = Incremental::new_udp(0)
            .remove_u32(0x0a00_0001)
            .add_u32(0x0a00_0002)
            .finish();
        assert_eq!(c, 0);
        // A result of 0 becomes 0xFFFF: RFC 1624's example as UDP.
        let c = Incremental::new_udp(0xdd2f)
            .remove_u16(0x5555)
            .add_u16(0x3285)
            .finish();
        assert_eq!(c, 0xffff);
        // 0xFFFF (a computed 0) is a present checksum and updates normally.
        let c = Incremental::new_udp(0xffff)
            .remove_u16(0x3285)
            .add_u16(0x5555)
            .finish();
        assert_eq!(c, 0xdd2f);
    }

    #[test]
    fn pseudo_headers() {
        let s4 = pseudo_header_v4(
            Ipv4Addr::new(192, 168, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            8,
        );
        assert_eq!(fold(s4), fold(0xc0a8 + 0x0001 + 0x0a00 + 0x0002 + 17 + 8));
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b: Ipv6Addr = "fe80::2".parse().unwrap();
        let s6 = pseudo_header_v6(&a, &b, 58, 0x1_0004);
        let expect = 0x2001 + 0x0db8 + 1 + 0xfe80 + 2 + 1 + 4 + 58;
        assert_eq!(fold(s6), fold(expect));
    }
}
