//! Which flow an insert into a full table frees: expired first, then
//! half-open, closing, UDP / ICMP, and established TCP last.

use super::*;

/// Eviction rank: lower is evicted first; `None` = never.
#[inline]
pub(super) fn victim_rank(e: &Cell, now: u32, evict_established: bool) -> Option<(u8, i32)> {
    let remaining = e.expiry.wrapping_sub(now) as i32;
    if is_expired(e.expiry, now) {
        return Some((0, remaining));
    }
    let class = match e.state() {
        State::SynRecv => 1,
        State::FinWait | State::CloseWait | State::TimeWait | State::Close => 2,
        State::Udp | State::Icmp => 3,
        State::Established if evict_established => 4,
        State::Established => return None,
    };
    Some((class, remaining))
}

/// Adds head `v` to the victims (once); returns the cells it frees.
#[inline]
pub(super) fn take(victims: &mut [Option<u32>; 4], cells: &[Cell], v: u32) -> u32 {
    if victims.contains(&Some(v)) {
        return 0;
    }
    if let Some(slot) = victims.iter_mut().find(|x| x.is_none()) {
        *slot = Some(v);
    }
    cells[v as usize].cells()
}

/// Keeps the best eviction victim among live heads, skipping `taken`.
#[inline]
pub(super) fn consider(
    best: &mut Option<(u32, (u8, i32))>,
    cells: &[Cell],
    s: u32,
    now: u32,
    ev: bool,
    taken: &[Option<u32>],
) {
    let e = &cells[s as usize];
    if !e.is_live() || taken.contains(&Some(s)) {
        return;
    }
    if let Some(rank) = victim_rank(e, now, ev) {
        let better = match best {
            None => true,
            Some((_, r)) => rank < *r,
        };
        if better {
            *best = Some((s, rank));
        }
    }
}
