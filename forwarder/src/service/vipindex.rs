//! The VIP index: (address, protocol, port) → service index, built once
//! per snapshot and read on every packet.
//!
//! An open-addressed table of packed keys (the address as 128 bits, IPv4
//! mapped into IPv6, and protocol and port in one word) with one multiply
//! of hashing and linear probing over 24-byte slots. It replaces a general
//! hash map whose derived `Hash` for `(IpAddr, Proto, u16)` fed the hasher
//! field by field; lookups cost one hash and usually one cache line.

use std::net::IpAddr;

use super::{hash, Proto};

#[derive(Clone, Copy, Default)]
struct Slot {
    hi: u64,
    lo: u64,
    /// bit 31: used; bits 16..24: protocol; bits 0..16: port.
    pp: u32,
    idx: u32,
}

const USED: u32 = 1 << 31;

/// The packed form of a key.
#[inline]
fn pack(addr: IpAddr, proto: Proto, port: u16) -> (u64, u64, u32) {
    let a = match addr {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    };
    (
        (a >> 64) as u64,
        a as u64,
        USED | (u32::from(proto.number()) << 16) | u32::from(port),
    )
}

#[inline]
fn slot_of(hi: u64, lo: u64, pp: u32) -> usize {
    hash::fmix64(lo ^ hi.rotate_left(29) ^ (u64::from(pp) << 17)) as usize
}

/// See the module documentation.
#[derive(Clone)]
pub struct VipIndex {
    slots: Box<[Slot]>,
    mask: usize,
}

impl std::fmt::Debug for VipIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VipIndex({} slots)", self.slots.len())
    }
}

impl VipIndex {
    /// An empty index with room for `n` keys at a load of at most one half.
    pub fn with_capacity(n: usize) -> VipIndex {
        let size = (n * 2).max(16).next_power_of_two();
        VipIndex {
            slots: vec![Slot::default(); size].into_boxed_slice(),
            mask: size - 1,
        }
    }

    /// Adds a key; `false` (unchanged) if it is already present.
    pub fn insert(&mut self, addr: IpAddr, proto: Proto, port: u16, idx: u32) -> bool {
        let (hi, lo, pp) = pack(addr, proto, port);
        let mut i = slot_of(hi, lo, pp) & self.mask;
        loop {
            let s = &mut self.slots[i];
            if s.pp & USED == 0 {
                *s = Slot { hi, lo, pp, idx };
                return true;
            }
            if s.pp == pp && s.lo == lo && s.hi == hi {
                return false;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The index of a key.
    #[inline]
    pub fn get(&self, addr: IpAddr, proto: Proto, port: u16) -> Option<u32> {
        let (hi, lo, pp) = pack(addr, proto, port);
        let mut i = slot_of(hi, lo, pp) & self.mask;
        // At most half full: an empty slot ends every probe.
        loop {
            let s = &self.slots[i];
            if s.pp == pp && s.lo == lo && s.hi == hi {
                return Some(s.idx);
            }
            if s.pp & USED == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_and_nothing_else() {
        let mut ix = VipIndex::with_capacity(1000);
        for i in 0..1000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0xC000_0200 + i));
            assert!(ix.insert(a, Proto::Tcp, 80, i));
            assert!(!ix.insert(a, Proto::Tcp, 80, 7), "duplicates are refused");
        }
        let v6: IpAddr = "2001:db8::100".parse().unwrap();
        assert!(ix.insert(v6, Proto::Udp, 0, 5000));
        for i in 0..1000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0xC000_0200 + i));
            assert_eq!(ix.get(a, Proto::Tcp, 80), Some(i));
            assert_eq!(ix.get(a, Proto::Udp, 80), None);
            assert_eq!(ix.get(a, Proto::Tcp, 81), None);
        }
        assert_eq!(ix.get(v6, Proto::Udp, 0), Some(5000));
        // An IPv4 address and its IPv4-mapped IPv6 form are the same key;
        // the data plane never sees the mapped form on the wire.
        assert_eq!(
            ix.get("::ffff:192.0.2.0".parse().unwrap(), Proto::Tcp, 80),
            Some(0)
        );
        assert_eq!(VipIndex::with_capacity(0).get(v6, Proto::Tcp, 80), None);
    }
}
