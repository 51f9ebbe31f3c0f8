//! Neighbour resolution: the IP → MAC cache for next hops, and the ARP
//! requests that fill it.
//!
//! One [`NeighTable`] is shared by every worker and read by the control
//! plane. It is a fixed array of slots allocated once; each slot is guarded
//! by its own sequence counter (a seqlock made of atomics), so:
//! * lookups never block and never allocate; a lookup that races a writer
//!   sees "pending" and tries again on a later packet;
//! * learning is best-effort: a writer that finds the slot busy skips the
//!   update (the next ARP frame will carry the same news);
//! * resolution is rate-limited per address: an unknown next hop yields one
//!   ARP request at most every [`REQUEST_INTERVAL_MS`].
//!
//! Entries learnt from the wire become stale after [`REACHABLE_MS`]: they are
//! still used, and a refresh request is sent (rate-limited), as Linux does.
//! Static entries (a real's configured `mac`) never age.

use std::net::IpAddr;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::packet::MacAddr;

/// Minimum time between two ARP/ND requests for one address.
pub const REQUEST_INTERVAL_MS: u64 = 1000;
/// Age after which a learnt entry is refreshed.
pub const REACHABLE_MS: u64 = 300_000;
/// Slots probed from an address's home slot.
const PROBE: usize = 8;

const STATE_EMPTY: u64 = 0;
const STATE_INCOMPLETE: u64 = 1;
const STATE_REACHABLE: u64 = 2;
const STATE_STATIC: u64 = 3;

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// The MAC is known; `refresh` asks the caller to send a (rate-limited)
    /// request because the entry is stale.
    Known {
        /// The neighbour's MAC.
        mac: MacAddr,
        /// Send a refresh request now.
        refresh: bool,
    },
    /// Unknown: the caller should send a request now (this call claimed the
    /// rate-limit window).
    Request,
    /// Unknown and a request went out recently (or the slot is being
    /// written): wait.
    Pending,
}

#[derive(Default)]
#[repr(align(64))]
struct Slot {
    /// Even: stable. Odd: a writer is inside.
    seq: AtomicU32,
    /// The address as a 128-bit value (IPv4 mapped into IPv6).
    ip_hi: AtomicU64,
    ip_lo: AtomicU64,
    /// MAC in the low 48 bits, state in the top 16.
    mac_state: AtomicU64,
    /// When the MAC was last confirmed (ms).
    confirmed: AtomicU64,
    /// When a request was last sent (ms).
    requested: AtomicU64,
}

/// One entry, as the control plane lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The neighbour's address.
    pub ip: IpAddr,
    /// Its MAC, once known.
    pub mac: Option<MacAddr>,
    /// Configured, never ages.
    pub permanent: bool,
    /// When the MAC was last confirmed (ms, the table's clock).
    pub confirmed_ms: u64,
}

/// The shared neighbour cache. See the module documentation.
pub struct NeighTable {
    slots: Box<[Slot]>,
    mask: usize,
}

fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn unkey(k: u128) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(k);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn home(k: u128) -> usize {
    // A fixed multiplicative mix: spread, cheap, deterministic.
    let x = (k as u64) ^ ((k >> 64) as u64).rotate_left(29);
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize
}

fn pack(mac: MacAddr, state: u64) -> u64 {
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&mac.0);
    u64::from_be_bytes(b) | (state << 48)
}

fn unpack(v: u64) -> (MacAddr, u64) {
    let b = v.to_be_bytes();
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[2..]);
    (MacAddr(m), v >> 48)
}

impl NeighTable {
    /// A table of at least `capacity` slots (rounded up to a power of two).
    pub fn new(capacity: usize) -> NeighTable {
        let n = capacity.max(PROBE).next_power_of_two();
        let slots = (0..n)
            .map(|_| Slot::default())
            .collect::<Vec<_>>()
            .into_boxed_slice();
        NeighTable { slots, mask: n - 1 }
    }

    /// Reads a slot consistently: (key, mac_state, confirmed, requested, seq).
    #[inline]
    fn read(&self, i: usize) -> Option<(u128, u64, u64, u64, u32)> {
        let s = &self.slots[i];
        let s1 = s.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let k = (u128::from(s.ip_hi.load(Ordering::Relaxed)) << 64)
            | u128::from(s.ip_lo.load(Ordering::Relaxed));
        let ms = s.mac_state.load(Ordering::Relaxed);
        let c = s.confirmed.load(Ordering::Relaxed);
        let r = s.requested.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if s.seq.load(Ordering::Relaxed) != s1 {
            return None;
        }
        Some((k, ms, c, r, s1))
    }

    /// Enters slot `i` for writing if its sequence is still `seen`.
    #[inline]
    fn lock(&self, i: usize, seen: u32) -> bool {
        self.slots[i]
            .seq
            .compare_exchange(
                seen,
                seen.wrapping_add(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    #[inline]
    fn unlock(&self, i: usize) {
        self.slots[i].seq.fetch_add(1, Ordering::Release);
    }

    #[inline]
    fn write(&self, i: usize, k: u128, mac_state: u64, confirmed: u64, requested: u64) {
        let s = &self.slots[i];
        s.ip_hi.store((k >> 64) as u64, Ordering::Relaxed);
        s.ip_lo.store(k as u64, Ordering::Relaxed);
        s.mac_state.store(mac_state, Ordering::Relaxed);
        s.confirmed.store(confirmed, Ordering::Relaxed);
        s.requested.store(requested, Ordering::Relaxed);
    }

    /// Finds `ip`'s slot, or the slot to claim for it (empty, else the
    /// least recently confirmed non-static one), in the probe window.
    fn find(&self, k: u128) -> (Option<usize>, Option<(usize, u32)>) {
        let h = home(k);
        let mut victim: Option<(usize, u32, u64)> = None;
        for d in 0..PROBE {
            let i = (h + d) & self.mask;
            let Some((sk, ms, c, _, seq)) = self.read(i) else {
                continue;
            };
            let state = ms >> 48;
            if state != STATE_EMPTY && sk == k {
                return (Some(i), None);
            }
            let age_key = if state == STATE_EMPTY {
                0
            } else {
                c.saturating_add(1)
            };
            if state != STATE_STATIC && victim.is_none_or(|(_, _, best)| age_key < best) {
                victim = Some((i, seq, age_key));
            }
        }
        (None, victim.map(|(i, s, _)| (i, s)))
    }

    /// Looks `ip` up at time `now_ms`; see [`Resolve`].
    pub fn resolve(&self, ip: IpAddr, now_ms: u64) -> Resolve {
        let k = key(ip);
        match self.find(k) {
            (Some(i), _) => {
                let Some((sk, ms, c, r, seq)) = self.read(i) else {
                    return Resolve::Pending;
                };
                if sk != k {
                    return Resolve::Pending;
                }
                let (mac, state) = unpack(ms);
                let due = now_ms.saturating_sub(r) >= REQUEST_INTERVAL_MS;
                match state {
                    STATE_STATIC => Resolve::Known {
                        mac,
                        refresh: false,
                    },
                    STATE_REACHABLE => {
                        let stale = now_ms.saturating_sub(c) >= REACHABLE_MS;
                        let refresh = stale && due && self.claim_request(i, seq, now_ms);
                        Resolve::Known { mac, refresh }
                    }
                    _ => {
                        if due && self.claim_request(i, seq, now_ms) {
                            Resolve::Request
                        } else {
                            Resolve::Pending
                        }
                    }
                }
            }
            (None, Some((i, seq))) => {
                if self.lock(i, seq) {
                    self.write(i, k, STATE_INCOMPLETE << 48, 0, now_ms);
                    self.unlock(i);
                    Resolve::Request
                } else {
                    Resolve::Pending
                }
            }
            (None, None) => Resolve::Pending,
        }
    }

    fn claim_request(&self, i: usize, seq: u32, now_ms: u64) -> bool {
        if !self.lock(i, seq) {
            return false;
        }
        self.slots[i].requested.store(now_ms, Ordering::Relaxed);
        self.unlock(i);
        true
    }

    /// Records that `ip` is at `mac` (from an ARP/ND frame). With
    /// `create = false` only an existing entry is updated (what a
    /// gratuitous ARP for a stranger may do).
    pub fn learn(&self, ip: IpAddr, mac: MacAddr, now_ms: u64, create: bool) {
        if mac.0 == [0; 6] || mac.0[0] & 1 == 1 {
            return; // never learn a zero or multicast MAC
        }
        let k = key(ip);
        match self.find(k) {
            (Some(i), _) => {
                let Some((sk, ms, _, r, seq)) = self.read(i) else {
                    return;
                };
                if sk != k || ms >> 48 == STATE_STATIC {
                    return;
                }
                if self.lock(i, seq) {
                    self.write(i, k, pack(mac, STATE_REACHABLE), now_ms, r);
                    self.unlock(i);
                }
            }
            (None, Some((i, seq))) if create && self.lock(i, seq) => {
                self.write(i, k, pack(mac, STATE_REACHABLE), now_ms, 0);
                self.unlock(i);
            }
            _ => {}
        }
    }

    /// Installs a permanent entry (configured MAC). Returns false when the
    /// probe window is full of other permanent entries.
    pub fn set_static(&self, ip: IpAddr, mac: MacAddr) -> bool {
        let k = key(ip);
        for _ in 0..16 {
            let (hit, free) = self.find(k);
            let Some(i) = hit.or(free.map(|(i, _)| i)) else {
                return false;
            };
            let Some((_, _, _, _, seq)) = self.read(i) else {
                continue;
            };
            if self.lock(i, seq) {
                self.write(i, k, pack(mac, STATE_STATIC), 0, 0);
                self.unlock(i);
                return true;
            }
        }
        false
    }

    /// Every entry, for status output (control plane; allocates).
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            if let Some((k, ms, c, _, _)) = self.read(i) {
                let (mac, state) = unpack(ms);
                if state == STATE_EMPTY {
                    continue;
                }
                out.push(Entry {
                    ip: unkey(k),
                    mac: (state == STATE_REACHABLE || state == STATE_STATIC).then_some(mac),
                    permanent: state == STATE_STATIC,
                    confirmed_ms: c,
                });
            }
        }
        out
    }
}

/// Writes a broadcast ARP request "who has `target`? tell `our_ip`" into
/// `frame`, which must be at least 42 bytes; returns the frame length (60:
/// padded to Ethernet's minimum).
pub fn write_arp_request(
    frame: &mut [u8],
    our_mac: MacAddr,
    our_ip: std::net::Ipv4Addr,
    target: std::net::Ipv4Addr,
) -> Option<usize> {
    const LEN: usize = 60;
    let f = frame.get_mut(..LEN)?;
    f.fill(0);
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&our_mac.0);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&our_mac.0);
    f[28..32].copy_from_slice(&our_ip.octets());
    // target hardware address stays zero
    f[38..42].copy_from_slice(&target.octets());
    Some(LEN)
}

/// Writes a neighbour solicitation for `target` (to its solicited-node
/// multicast group, with our link-layer address) into `frame`, which must
/// be at least 86 bytes; returns the frame length.
pub fn write_neighbour_solicitation(
    frame: &mut [u8],
    our_mac: MacAddr,
    our_ip: std::net::Ipv6Addr,
    target: std::net::Ipv6Addr,
) -> Option<usize> {
    const LEN: usize = 14 + 40 + 32;
    let f = frame.get_mut(..LEN)?;
    let group = crate::packet::icmpv6::solicited_node(&target);
    let g = group.octets();
    f.fill(0);
    f[0..6].copy_from_slice(&[0x33, 0x33, g[12], g[13], g[14], g[15]]);
    f[6..12].copy_from_slice(&our_mac.0);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    f[14] = 0x60;
    f[18..20].copy_from_slice(&32u16.to_be_bytes());
    f[20] = 58; // ICMPv6
    f[21] = 255;
    f[22..38].copy_from_slice(&our_ip.octets());
    f[38..54].copy_from_slice(&g);
    crate::packet::icmpv6::emit_neighbour_solicitation(
        &mut f[54..],
        &our_ip,
        &group,
        &target,
        Some(our_mac),
    )
    .ok()?;
    Some(LEN)
}

/// How long a worker trusts a MAC it read from the shared table (ms).
pub const HOP_CACHE_MS: u64 = 50;
const HOP_SLOTS: usize = 64;

/// A worker's own memo of next-hop MACs in front of the shared
/// [`NeighTable`]: a direct-mapped array of 64 slots, each trusted for
/// [`HOP_CACHE_MS`]. A hit costs a compare instead of the table's two
/// seqlock reads; a change in the table (a new MAC, an entry gone) reaches
/// the worker within that time. Only settled answers are kept: an entry
/// due for a refresh, or unknown, always goes to the table, so requests
/// are sent as without the memo.
pub struct HopCache {
    slots: [(IpAddr, MacAddr, u64); HOP_SLOTS],
}

impl Default for HopCache {
    fn default() -> Self {
        Self {
            // `until` 0: every slot starts expired.
            slots: [(
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                MacAddr::ZERO,
                0,
            ); HOP_SLOTS],
        }
    }
}

impl HopCache {
    /// [`NeighTable::resolve`], answered from the memo when it can be.
    #[inline]
    pub fn resolve(&mut self, table: &NeighTable, ip: IpAddr, now_ms: u64) -> Resolve {
        let i = home(key(ip)) & (HOP_SLOTS - 1);
        let (sip, mac, until) = self.slots[i];
        if sip == ip && now_ms < until {
            return Resolve::Known {
                mac,
                refresh: false,
            };
        }
        let r = table.resolve(ip, now_ms);
        if let Resolve::Known {
            mac,
            refresh: false,
        } = r
        {
            self.slots[i] = (ip, mac, now_ms + HOP_CACHE_MS);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hop_cache_answers_for_a_while_then_asks_the_table() {
        let t = NeighTable::new(64);
        let ip: IpAddr = "192.0.2.21".parse().unwrap();
        let (m1, m2) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let mut c = HopCache::default();
        // Unknown: the table's answer (a request), not remembered.
        assert_eq!(c.resolve(&t, ip, 1_000), Resolve::Request);
        t.learn(ip, m1, 1_000, true);
        let known = |mac| Resolve::Known {
            mac,
            refresh: false,
        };
        assert_eq!(c.resolve(&t, ip, 1_001), known(m1));
        // The table changes; the memo holds for HOP_CACHE_MS, then follows.
        t.learn(ip, m2, 1_002, true);
        assert_eq!(c.resolve(&t, ip, 1_001 + HOP_CACHE_MS - 1), known(m1));
        assert_eq!(c.resolve(&t, ip, 1_001 + HOP_CACHE_MS), known(m2));
        // Another address in the same slot is not confused with it.
        let other: IpAddr = "2001:db8::21".parse().unwrap();
        assert_eq!(c.resolve(&t, other, 1_100), Resolve::Request);
    }
    use crate::packet::arp::{ArpOperation, ArpPacket};
    use crate::packet::ethernet::{EtherType, EthernetFrame};
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    const M1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const M2: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unknown_address_asks_once_per_interval() {
        let t = NeighTable::new(64);
        let ip = v4("192.0.2.1");
        assert_eq!(t.resolve(ip, 10_000), Resolve::Request);
        assert_eq!(t.resolve(ip, 10_001), Resolve::Pending);
        assert_eq!(t.resolve(ip, 10_999), Resolve::Pending);
        assert_eq!(t.resolve(ip, 11_000), Resolve::Request);
        t.learn(ip, M1, 11_100, true);
        assert_eq!(
            t.resolve(ip, 11_200),
            Resolve::Known {
                mac: M1,
                refresh: false
            }
        );
    }

    #[test]
    fn stale_entries_are_used_and_refreshed_at_a_bounded_rate() {
        let t = NeighTable::new(64);
        let ip = v4("192.0.2.7");
        t.learn(ip, M1, 0, true);
        let later = REACHABLE_MS + 5;
        assert_eq!(
            t.resolve(ip, later),
            Resolve::Known {
                mac: M1,
                refresh: true
            }
        );
        assert_eq!(
            t.resolve(ip, later + 1),
            Resolve::Known {
                mac: M1,
                refresh: false
            }
        );
        t.learn(ip, M2, later + 2, true);
        assert_eq!(
            t.resolve(ip, later + 3),
            Resolve::Known {
                mac: M2,
                refresh: false
            }
        );
    }

    #[test]
    fn static_entries_never_age_and_are_not_overwritten() {
        let t = NeighTable::new(64);
        let ip = v4("192.0.2.21");
        assert!(t.set_static(ip, M1));
        t.learn(ip, M2, 5, true);
        assert_eq!(
            t.resolve(ip, u64::MAX / 2),
            Resolve::Known {
                mac: M1,
                refresh: false
            }
        );
        assert!(t.entries().iter().any(|e| e.ip == ip && e.permanent));
    }

    #[test]
    fn learning_without_create_only_updates_known_neighbours() {
        let t = NeighTable::new(64);
        t.learn(v4("192.0.2.9"), M1, 1, false);
        assert!(t.entries().is_empty());
        t.learn(v4("192.0.2.9"), M1, 1, true);
        t.learn(v4("192.0.2.9"), M2, 2, false);
        assert_eq!(t.entries()[0].mac, Some(M2));
        // Zero and multicast MACs are refused.
        t.learn(v4("192.0.2.10"), MacAddr([0; 6]), 3, true);
        t.learn(v4("192.0.2.11"), MacAddr([1, 0, 0x5e, 0, 0, 1]), 3, true);
        assert_eq!(t.entries().len(), 1);
    }

    #[test]
    fn ipv4_and_ipv6_share_the_table() {
        let t = NeighTable::new(64);
        let a6: IpAddr = "2001:db8::21".parse().unwrap();
        t.learn(a6, M2, 1, true);
        t.learn(v4("192.0.2.21"), M1, 1, true);
        assert_eq!(
            t.resolve(a6, 2),
            Resolve::Known {
                mac: M2,
                refresh: false
            }
        );
        let ips: Vec<_> = t.entries().iter().map(|e| e.ip).collect();
        assert!(ips.contains(&a6) && ips.contains(&v4("192.0.2.21")));
    }

    #[test]
    fn a_full_table_recycles_the_oldest_entry_and_never_grows() {
        let t = NeighTable::new(8);
        for i in 0..100u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0xC000_0200 + i));
            t.learn(ip, M1, u64::from(i), true);
        }
        let e = t.entries();
        assert!(e.len() <= 8);
        // The newest address is present.
        assert!(e
            .iter()
            .any(|e| e.ip == IpAddr::V4(Ipv4Addr::from(0xC000_0200 + 99))));
    }

    #[test]
    fn concurrent_writers_and_readers_never_see_a_torn_entry() {
        let t = Arc::new(NeighTable::new(16));
        let ip = v4("192.0.2.50");
        let macs = [M1, M2];
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    for n in 0..20_000u64 {
                        t.learn(ip, macs[w], n, true);
                    }
                })
            })
            .collect();
        for n in 0..20_000u64 {
            if let Resolve::Known { mac, .. } = t.resolve(ip, n) {
                assert!(mac == M1 || mac == M2, "torn MAC {mac}");
            }
        }
        for w in writers {
            w.join().unwrap();
        }
    }

    #[test]
    fn neighbour_solicitation_is_well_formed() {
        let mut buf = [0u8; 100];
        let ours: std::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
        let target: std::net::Ipv6Addr = "2001:db8::21".parse().unwrap();
        let n = write_neighbour_solicitation(&mut buf, M1, ours, target).unwrap();
        let ip = crate::packet::Ipv6Packet::new_checked(&buf[14..n]).unwrap();
        assert_eq!(
            ip.dst(),
            "ff02::1:ff00:21".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(ip.hop_limit(), 255);
        let up = ip.upper_layer().unwrap();
        let icmp = crate::packet::Icmpv6Packet::new_checked(ip.upper_payload(&up)).unwrap();
        assert_eq!(icmp.target_addr(), Some(target));
        assert_eq!(icmp.source_lladdr(), Some(M1));
        assert!(icmp.verify_checksum(ip.pseudo_header(&up)));
        assert_eq!(&buf[0..6], &[0x33, 0x33, 0xff, 0, 0, 0x21]);
    }

    #[test]
    fn arp_request_is_well_formed() {
        let mut buf = [0u8; 64];
        let n = write_arp_request(
            &mut buf,
            M1,
            "192.0.2.2".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(n, 60);
        let eth = EthernetFrame::new_checked(&buf[..n]).unwrap();
        assert_eq!(eth.dst(), MacAddr::BROADCAST);
        assert_eq!(eth.src(), M1);
        assert_eq!(eth.ethertype(), EtherType::ARP);
        let arp = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(arp.operation(), ArpOperation::REQUEST);
        assert_eq!(arp.sender_hw_addr(), M1);
        assert_eq!(arp.sender_proto_addr(), Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(arp.target_proto_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert!(
            write_arp_request(&mut [0u8; 20], M1, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST)
                .is_none()
        );
    }
}
