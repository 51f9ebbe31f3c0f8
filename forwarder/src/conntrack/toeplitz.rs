//! The Toeplitz hash that NICs compute for receive-side scaling (RSS),
//! in software, with the key ferrolb programs into its ports.
//!
//! The connection table hashes an IPv4 flow with it (see
//! [`ConnTable::hash_v4`](super::ConnTable::hash_v4)), so that the hash
//! an Intel NIC writes into a received frame's mbuf gives the table's
//! hash with one xor: the worker then neither parses the key into a hash
//! nor runs the hash for that frame. Flows that arrive without a frame
//! (connection sync, ICMP errors, the general path) are hashed here in
//! software, to the same value.
//!
//! The definition (Microsoft's RSS specification, implemented by the
//! 82599, X710 and E810 families): for each bit of the input, most
//! significant bit of the first byte first, if the bit is set, xor into
//! the result the 32 bits of the key that start at that bit's position.
//! The input of an IPv4 TCP or UDP frame is source address, destination
//! address, source port, destination port, in network byte order (12
//! bytes). The hash is linear over GF(2): the hash of `a ^ b` is the
//! hash of `a` xor the hash of `b`, which is what lets a part of the
//! input (the VIP) be taken out of the NIC's figure.
//!
//! The key is random per process ([`random_key`]): a sender who knows
//! the key can pick flows that share a hash, and so a table bucket.

/// Key bytes ferrolb programs and hashes with: 40, the size every Intel
/// NIC family since the 82599 takes (the X710 and E810 take 52; the
/// bytes past 40 only matter for inputs longer than IPv6 with ports).
pub const KEY_LEN: usize = 40;

/// Bytes of the IPv4 TCP/UDP input: addresses and ports.
const V4_INPUT: usize = 12;

/// A Toeplitz hash with its key, and tables for the 12-byte IPv4 input:
/// `t[i][b]` is the hash of byte value `b` at input position `i` alone.
#[derive(Clone)]
pub struct Toeplitz {
    key: [u8; KEY_LEN],
    t: Box<[[u32; 256]; V4_INPUT]>,
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz").finish_non_exhaustive()
    }
}

impl Toeplitz {
    /// The hash of `key`, its tables built (12 KiB).
    pub fn new(key: [u8; KEY_LEN]) -> Toeplitz {
        let mut t = Box::new([[0u32; 256]; V4_INPUT]);
        for (i, row) in t.iter_mut().enumerate() {
            for (b, v) in row.iter_mut().enumerate() {
                let mut input = [0u8; V4_INPUT];
                input[i] = b as u8;
                *v = hash_bits(&key, &input);
            }
        }
        Toeplitz { key, t }
    }

    /// The key.
    pub fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    /// The hash of any input of up to `KEY_LEN - 4` bytes, bit by bit
    /// (the definition; slow).
    pub fn hash(&self, input: &[u8]) -> u32 {
        hash_bits(&self.key, input)
    }

    /// The hash of an IPv4 TCP or UDP 4-tuple (addresses as host-order
    /// `u32`), as the NIC computes it for a frame from `src:sport` to
    /// `dst:dport`.
    #[inline]
    pub fn v4(&self, src: u32, dst: u32, sport: u16, dport: u16) -> u32 {
        self.v4_src_ports(src, sport, dport) ^ self.v4_dst(dst)
    }

    /// [`Self::v4`] with a destination of 0.0.0.0 (eight lookups).
    #[inline(always)]
    pub fn v4_src_ports(&self, src: u32, sport: u16, dport: u16) -> u32 {
        let t = &self.t;
        let s = src.to_be_bytes();
        let p = sport.to_be_bytes();
        let q = dport.to_be_bytes();
        (t[0][usize::from(s[0])] ^ t[1][usize::from(s[1])])
            ^ (t[2][usize::from(s[2])] ^ t[3][usize::from(s[3])])
            ^ (t[8][usize::from(p[0])] ^ t[9][usize::from(p[1])])
            ^ (t[10][usize::from(q[0])] ^ t[11][usize::from(q[1])])
    }

    /// The source address's and source port's part of
    /// [`Self::v4_src_ports`] (six lookups): the hash is linear, so
    /// `v4_src_ports(s, sp, dp) == v4_src_sport(s, sp) ^ v4_dport(dp)`.
    #[inline(always)]
    pub fn v4_src_sport(&self, src: u32, sport: u16) -> u32 {
        let t = &self.t;
        let s = src.to_be_bytes();
        let p = sport.to_be_bytes();
        (t[0][usize::from(s[0])] ^ t[1][usize::from(s[1])])
            ^ (t[2][usize::from(s[2])] ^ t[3][usize::from(s[3])])
            ^ (t[8][usize::from(p[0])] ^ t[9][usize::from(p[1])])
    }

    /// The destination port's part of [`Self::v4_src_ports`].
    #[inline(always)]
    pub fn v4_dport(&self, dport: u16) -> u32 {
        let t = &self.t;
        let q = dport.to_be_bytes();
        t[10][usize::from(q[0])] ^ t[11][usize::from(q[1])]
    }

    /// [`Self::v4_src_ports`] of bytes as the frame carries them: the
    /// source address, then source and destination port.
    #[inline(always)]
    pub fn v4_src_ports_bytes(&self, s: &[u8; 4], ports: &[u8; 4]) -> u32 {
        let t = &self.t;
        (t[0][usize::from(s[0])] ^ t[1][usize::from(s[1])])
            ^ (t[2][usize::from(s[2])] ^ t[3][usize::from(s[3])])
            ^ (t[8][usize::from(ports[0])] ^ t[9][usize::from(ports[1])])
            ^ (t[10][usize::from(ports[2])] ^ t[11][usize::from(ports[3])])
    }

    /// [`Self::v4`] of the destination alone (source and ports 0).
    #[inline]
    pub fn v4_dst(&self, dst: u32) -> u32 {
        let t = &self.t;
        let d = dst.to_be_bytes();
        (t[4][usize::from(d[0])] ^ t[5][usize::from(d[1])])
            ^ (t[6][usize::from(d[2])] ^ t[7][usize::from(d[3])])
    }
}

/// The definition: for each set input bit, the key's 32 bits from there.
fn hash_bits(key: &[u8; KEY_LEN], input: &[u8]) -> u32 {
    assert!(
        input.len() + 4 <= KEY_LEN,
        "input longer than the key allows"
    );
    let mut h = 0u32;
    // The key's 32-bit window at the current bit, and the bits after it.
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    for (i, &byte) in input.iter().enumerate() {
        let next = key[i + 4];
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                h ^= window;
            }
            window = (window << 1) | u32::from((next >> (7 - bit)) & 1);
        }
    }
    h
}

/// A key from the kernel's random source. If that cannot be read (no
/// `/dev/urandom`), a key mixed from the clock and the process id, which
/// still differs per process and per start.
pub fn random_key() -> [u8; KEY_LEN] {
    use std::io::Read;
    let mut key = [0u8; KEY_LEN];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key));
    if read.is_ok() {
        return key;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = t ^ (u64::from(std::process::id()) << 32);
    for chunk in key.chunks_mut(8) {
        x = crate::service::hash::fmix64(x.wrapping_add(crate::service::hash::K_GOLDEN));
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// The key of Microsoft's RSS verification suite.
    const MS_KEY: [u8; KEY_LEN] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    /// (source, destination, source port, destination port, hash of the
    /// addresses alone, hash with the ports).
    type Row = ([u8; 4], [u8; 4], u16, u16, u32, u32);

    /// The suite's IPv4 rows.
    const SUITE: [Row; 5] = [
        (
            [66, 9, 149, 187],
            [161, 142, 100, 80],
            2794,
            1766,
            0x323e_8fc2,
            0x51cc_c178,
        ),
        (
            [199, 92, 111, 2],
            [65, 69, 140, 83],
            14230,
            4739,
            0xd718_262a,
            0xc626_b0ea,
        ),
        (
            [24, 19, 198, 95],
            [12, 22, 207, 184],
            12898,
            38024,
            0xd2d0_a5de,
            0x5c2b_394a,
        ),
        (
            [38, 27, 205, 30],
            [209, 142, 163, 6],
            48228,
            2217,
            0x8298_9176,
            0xafc7_327f,
        ),
        (
            [153, 39, 163, 191],
            [202, 188, 127, 2],
            44251,
            1303,
            0x5d18_09c5,
            0x10e8_28a2,
        ),
    ];

    #[test]
    fn microsoft_verification_suite() {
        let tz = Toeplitz::new(MS_KEY);
        for (s, d, sp, dp, l3, l4) in SUITE {
            let mut input = [0u8; 12];
            input[..4].copy_from_slice(&s);
            input[4..8].copy_from_slice(&d);
            assert_eq!(tz.hash(&input[..8]), l3, "{s:?} -> {d:?}");
            input[8..10].copy_from_slice(&sp.to_be_bytes());
            input[10..].copy_from_slice(&dp.to_be_bytes());
            assert_eq!(tz.hash(&input), l4, "{s:?}:{sp} -> {d:?}:{dp}");
            let (s, d) = (u32::from(Ipv4Addr::from(s)), u32::from(Ipv4Addr::from(d)));
            assert_eq!(tz.v4(s, d, sp, dp), l4, "tables");
            assert_eq!(tz.v4(s, d, 0, 0), l3, "tables, no ports");
        }
    }

    #[test]
    fn tables_equal_the_definition_and_split_linearly() {
        let mut x = 0x0123_4567_89ab_cdefu64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let mut key = [0u8; KEY_LEN];
            key.iter_mut().for_each(|b| *b = next() as u8);
            let tz = Toeplitz::new(key);
            for _ in 0..50 {
                let (s, d, p) = (next() as u32, next() as u32, next() as u32);
                let (sp, dp) = (p as u16, (p >> 16) as u16);
                let mut input = [0u8; 12];
                input[..4].copy_from_slice(&s.to_be_bytes());
                input[4..8].copy_from_slice(&d.to_be_bytes());
                input[8..10].copy_from_slice(&sp.to_be_bytes());
                input[10..].copy_from_slice(&dp.to_be_bytes());
                let h = tz.hash(&input);
                assert_eq!(tz.v4(s, d, sp, dp), h, "round {round}");
                assert_eq!(tz.v4_src_ports(s, sp, dp) ^ tz.v4_dst(d), h);
                let b = |r: std::ops::Range<usize>| -> [u8; 4] { input[r].try_into().unwrap() };
                assert_eq!(tz.v4_src_ports_bytes(&b(0..4), &b(8..12)) ^ tz.v4_dst(d), h);
            }
        }
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(random_key(), random_key());
    }
}
