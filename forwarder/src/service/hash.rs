//! Small, fixed, explicitly seeded hash functions.
//!
//! Everything that must give the same answer on every worker, on both nodes
//! of an HA pair and across releases (Maglev permutations, source hashing,
//! persistence groups, the default flow hash) goes through these functions.
//! They never use a per-process random state (`DefaultHasher`, ahash's
//! `RandomState`); changing a constant or the byte encoding changes which
//! real every flow lands on, so the golden tests in [`super::maglev`] pin
//! them.
//!
//! The core is the 64-bit finalizer of MurmurHash3 ([`fmix64`]), a well
//! studied bijective avalanche mixer. [`hash_bytes`] folds 8-byte
//! little-endian words into a seeded state with a multiply/rotate step and
//! finishes with [`fmix64`]; the length is mixed in first so that inputs
//! that differ only by trailing zero bytes hash differently.

use std::net::IpAddr;

/// Odd multiplier (2^64 / golden ratio), used to spread words.
pub const K_GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// Second odd multiplier (from the MurmurHash3 finalizer).
pub const K_MUR1: u64 = 0xFF51_AFD7_ED55_8CCD;
/// Third odd multiplier (from the MurmurHash3 finalizer).
pub const K_MUR2: u64 = 0xC4CE_B9FE_1A85_EC53;

/// Seed for a Maglev real's `offset`.
pub const SEED_MAGLEV_OFFSET: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
/// Seed for a Maglev real's `skip`.
pub const SEED_MAGLEV_SKIP: u64 = 0x6d61_676c_6576_736b; // "maglevsk"
/// Seed of the source-hash (`sh`) scheduler.
pub const SEED_SOURCE: u64 = 0x7372_6368_6173_6830; // "srchash0"
/// Seed of persistence groups (service id + masked client address).
pub const SEED_PERSIST: u64 = 0x7065_7273_6973_7430; // "persist0"
/// Seed of [`flow_hash`].
pub const SEED_FLOW: u64 = 0x666c_6f77_6861_7368; // "flowhash"

/// MurmurHash3's 64-bit finalizer: a bijection with full avalanche.
#[inline]
pub const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(K_MUR1);
    k ^= k >> 33;
    k = k.wrapping_mul(K_MUR2);
    k ^ (k >> 33)
}

/// One fold step: xor a word into the state, multiply, rotate.
#[inline]
pub const fn fold(h: u64, w: u64) -> u64 {
    (h ^ w)
        .wrapping_mul(K_GOLDEN)
        .rotate_left(31)
        .wrapping_mul(K_MUR1)
}

/// Seeded hash of a byte string (deterministic on every platform: words
/// are read little-endian, the last partial word is zero padded).
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = fold(seed, (bytes.len() as u64).wrapping_mul(K_MUR2));
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = fold(h, u64::from_le_bytes(w));
    }
    fmix64(h)
}

/// Canonical 16-byte form of an address plus a family tag: IPv4 is stored
/// v4-mapped (`::ffff:a.b.c.d`), the tag tells the families apart.
#[inline]
pub fn addr16(addr: IpAddr) -> ([u8; 16], bool) {
    match addr {
        IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), false),
        IpAddr::V6(a) => (a.octets(), true),
    }
}

/// Seeded hash of an address (family tag included).
#[inline]
pub fn hash_addr(seed: u64, addr: IpAddr) -> u64 {
    let (b, v6) = addr16(addr);
    let w = u128::from_be_bytes(b);
    let mut h = fold(seed, if v6 { 6 } else { 4 });
    h = fold(h, (w >> 64) as u64);
    h = fold(h, w as u64);
    fmix64(h)
}

/// Seeded hash of an (address, port) pair: the identity of a real.
pub fn hash_addr_port(seed: u64, addr: IpAddr, port: u16) -> u64 {
    let (b, v6) = addr16(addr);
    let mut buf = [0u8; 19];
    buf[0] = if v6 { 6 } else { 4 };
    buf[1..17].copy_from_slice(&b);
    buf[17..19].copy_from_slice(&port.to_be_bytes());
    hash_bytes(seed, &buf)
}

/// A deterministic 5-tuple hash for schedulers (Maglev) that must map a
/// flow to the same real on every worker and every node. Callers may use
/// any other hash that is identical across workers (e.g. a symmetric-key
/// Toeplitz RSS hash); this one is here for convenience and tests.
pub fn flow_hash(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> u64 {
    if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) {
        return flow_hash_v4(u32::from(s), sport, u32::from(d), dport, proto);
    }
    flow_hash_wide(src, sport, dst, dport, proto)
}

/// [`flow_hash`] over the 16-byte forms: the definition.
#[inline]
fn flow_hash_wide(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> u64 {
    let (s, sv6) = addr16(src);
    let (d, dv6) = addr16(dst);
    let s = u128::from_be_bytes(s);
    let d = u128::from_be_bytes(d);
    let mut h = fold(SEED_FLOW, (s >> 64) as u64);
    h = fold(h, s as u64);
    h = fold(h, (d >> 64) as u64);
    h = fold(h, d as u64);
    h = fold(
        h,
        (u64::from(sport) << 48)
            | (u64::from(dport) << 32)
            | (u64::from(proto) << 8)
            | (u64::from(sv6) << 1)
            | u64::from(dv6),
    );
    fmix64(h)
}

/// [`flow_hash`] of two IPv4 addresses, in 32-bit words: the same value
/// (the v4-mapped form `::ffff:a.b.c.d` has 0 in its high 64 bits).
#[inline]
pub fn flow_hash_v4(src: u32, sport: u16, dst: u32, dport: u16, proto: u8) -> u64 {
    const MAPPED: u64 = 0xffff_0000_0000;
    let mut h = fold(SEED_FLOW, 0);
    h = fold(h, MAPPED | u64::from(src));
    h = fold(h, 0);
    h = fold(h, MAPPED | u64::from(dst));
    h = fold(
        h,
        (u64::from(sport) << 48) | (u64::from(dport) << 32) | (u64::from(proto) << 8),
    );
    fmix64(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn fixed_values() {
        // Pinned: a change here moves every flow of every service.
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xB456_BCFC_34C2_CB2C);
        assert_eq!(hash_bytes(0, b""), hash_bytes(0, b""));
        assert_ne!(hash_bytes(0, b"a"), hash_bytes(0, b"a\0"));
        assert_ne!(hash_bytes(1, b"a"), hash_bytes(2, b"a"));
    }

    #[test]
    fn families_are_distinct() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_ne!(hash_addr(7, v4), hash_addr(7, mapped));
        assert_ne!(hash_addr_port(7, v4, 80), hash_addr_port(7, mapped, 80));
        assert_ne!(hash_addr_port(7, v4, 80), hash_addr_port(7, v4, 81));
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(hash_addr(9, v6), hash_addr(9, v6));
    }

    #[test]
    fn flow_hash_depends_on_every_field() {
        let a = IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4));
        let b = IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8));
        let base = flow_hash(a, 1000, b, 80, 6);
        // The IPv4 form is the same function as the definition.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (s, d) = ((x >> 32) as u32, x as u32);
            let (sp, dp, pr) = ((x >> 16) as u16, (x >> 40) as u16, (x >> 56) as u8);
            let (sa, da) = (IpAddr::V4(s.into()), IpAddr::V4(d.into()));
            assert_eq!(
                flow_hash_wide(sa, sp, da, dp, pr),
                flow_hash_v4(s, sp, d, dp, pr)
            );
            assert_eq!(
                flow_hash(sa, sp, da, dp, pr),
                flow_hash_v4(s, sp, d, dp, pr)
            );
        }
        assert_ne!(base, flow_hash(b, 1000, a, 80, 6));
        assert_ne!(base, flow_hash(a, 1001, b, 80, 6));
        assert_ne!(base, flow_hash(a, 1000, b, 81, 6));
        assert_ne!(base, flow_hash(a, 1000, b, 80, 17));
    }
}
