//! The seeded hashes of keys the RSS hash does not cover.

use super::*;

#[inline]
pub(super) const fn fam(v6: bool, bit: u8) -> u8 {
    if v6 {
        bit
    } else {
        0
    }
}

/// Multiply-xorshift step.
#[inline]
pub(super) const fn mx(h: u64, w: u64) -> u64 {
    let x = (h ^ w).wrapping_mul(K_GOLDEN);
    x ^ (x >> 32)
}

#[inline]
pub(super) const fn fin32(h: u64) -> u32 {
    let x = h.wrapping_mul(K_MUR1);
    ((x >> 32) ^ x) as u32
}

/// The hash of a key with an IPv6 client.
#[inline]
pub(super) fn fwd_hash_wide(seed: u64, k: &PKey) -> u32 {
    let c = u128::from_be_bytes(k.client);
    let mut h = mx(seed, (c >> 64) as u64);
    h = mx(h, c as u64);
    h = mx(
        h,
        (u64::from(k.service) << 32) | (u64::from(k.client_port) << 16) | u64::from(k.vport),
    );
    h = mx(h, u64::from(k.proto) | (u64::from(k.v6) << 8));
    fin32(h)
}
