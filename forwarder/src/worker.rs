//! The poll loop of one worker lcore: rx_burst → pipeline → tx_burst.
//!
//! A worker owns queue `q` of every data port and of every port's exception
//! TAP. Per pass it receives a burst from each data port (verdicts from
//! [`crate::pipeline`]) and a burst from each TAP (frames the kernel sends
//! go out the data port unchanged), then flushes its TX bursts. It never
//! blocks, allocates or locks; the only syscall is the optional idle
//! back-off (`idle_sleep`) when a whole pass found nothing.
//!
//! Counters are plain integers in the worker's own memory, published to
//! [`WorkerStats`] with relaxed stores every few hundred passes and when
//! idle, so the control plane can read them without slowing the loop.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::buffer::PacketBuf;
use crate::dpdk::{self, Burst, Mempool, Port, QueueId};
use crate::neigh::{self, NeighTable, Resolve};
use crate::pipeline::{self, DropReason, Outcome, PortView};

/// How often a worker republishes its counters (passes).
const PUBLISH_EVERY: u32 = 256;
/// How often housekeeping (next-hop resolution) runs.
const HOUSEKEEPING_MS: u64 = 100;

/// One data port as a worker sees it.
pub struct WorkerPort {
    /// The data port.
    pub nic: Port,
    /// Its exception-path TAP.
    pub tap: Port,
    /// Addresses and MAC the port answers for.
    pub view: PortView,
    /// Next hops to keep resolved (gateway, reals), with the source
    /// address to ask from.
    pub next_hops: Vec<(IpAddr, IpAddr)>,
}

/// Counters of one worker, readable by the control plane.
#[derive(Default)]
#[repr(align(64))]
pub struct WorkerStats {
    /// Frames received from data ports.
    pub rx: AtomicU64,
    /// Frames sent on data ports.
    pub tx: AtomicU64,
    /// Frames answered in place (ARP).
    pub answered: AtomicU64,
    /// Frames handed to the kernel.
    pub to_kernel: AtomicU64,
    /// Frames the kernel sent out through the TAP.
    pub from_kernel: AtomicU64,
    /// Frames forwarded.
    pub forwarded: AtomicU64,
    /// ARP requests this worker sent to resolve next hops.
    pub arp_requests: AtomicU64,
    /// Drops by reason, indexed by `DropReason as usize`.
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Loop passes.
    pub polls: AtomicU64,
    /// Passes that found no frame.
    pub idle_polls: AtomicU64,
    /// TSC cycles spent in passes that found frames.
    pub busy_cycles: AtomicU64,
}

#[derive(Default, Clone, Copy)]
struct Local {
    rx: u64,
    tx: u64,
    answered: u64,
    to_kernel: u64,
    from_kernel: u64,
    forwarded: u64,
    arp_requests: u64,
    drops: [u64; DropReason::COUNT],
    polls: u64,
    idle_polls: u64,
    busy_cycles: u64,
}

impl Local {
    fn publish(&self, s: &WorkerStats) {
        s.rx.store(self.rx, Ordering::Relaxed);
        s.tx.store(self.tx, Ordering::Relaxed);
        s.answered.store(self.answered, Ordering::Relaxed);
        s.to_kernel.store(self.to_kernel, Ordering::Relaxed);
        s.from_kernel.store(self.from_kernel, Ordering::Relaxed);
        s.forwarded.store(self.forwarded, Ordering::Relaxed);
        s.arp_requests.store(self.arp_requests, Ordering::Relaxed);
        for (a, v) in s.drops.iter().zip(self.drops) {
            a.store(v, Ordering::Relaxed);
        }
        s.polls.store(self.polls, Ordering::Relaxed);
        s.idle_polls.store(self.idle_polls, Ordering::Relaxed);
        s.busy_cycles.store(self.busy_cycles, Ordering::Relaxed);
    }
}

/// Everything one worker lcore needs.
pub struct Worker {
    /// The queue this worker owns on every port.
    pub queue: QueueId,
    /// Data ports, each with its TAP.
    pub ports: Vec<WorkerPort>,
    /// The shared neighbour cache.
    pub neigh: Arc<NeighTable>,
    /// Pool for frames the worker creates (ARP requests).
    pub pool: Arc<Mempool>,
    /// Set by the control plane to stop the loop.
    pub stop: Arc<AtomicBool>,
    /// Where counters are published.
    pub stats: Arc<WorkerStats>,
    /// Back-off when a pass finds nothing.
    pub idle_sleep: Option<Duration>,
}

impl Worker {
    /// Runs until `stop` is set; returns 0.
    pub fn run(self) -> i32 {
        let hz = dpdk::tsc_hz().max(1);
        let per_ms = (hz / 1000).max(1);
        let start = dpdk::rdtsc();
        let q = self.queue;
        let mut local = Local::default();
        let mut rx = Burst::new();
        // One TX burst per data port, one per TAP.
        let mut tx_nic: Vec<Burst> = self.ports.iter().map(|_| Burst::new()).collect();
        let mut tx_tap: Vec<Burst> = self.ports.iter().map(|_| Burst::new()).collect();
        let mut since_publish = 0u32;
        let mut next_housekeeping = 0u64;

        while !self.stop.load(Ordering::Relaxed) {
            let t0 = dpdk::rdtsc();
            let now_ms = (t0.wrapping_sub(start)) / per_ms;
            let mut got = 0usize;

            for (i, wp) in self.ports.iter().enumerate() {
                let n = wp.nic.rx_burst(q, &mut rx);
                got += n;
                local.rx += n as u64;
                for mut m in rx.drain() {
                    if m.segments() != 1 {
                        local.drops[DropReason::MultiSegment as usize] += 1;
                        continue;
                    }
                    match pipeline::handle_frame(&mut m, &wp.view, &self.neigh, now_ms) {
                        Outcome::Answered => {
                            local.answered += 1;
                            push(&mut tx_nic[i], m, &mut local);
                        }
                        Outcome::ToKernel => {
                            local.to_kernel += 1;
                            push(&mut tx_tap[i], m, &mut local);
                        }
                        Outcome::Forward { port } => {
                            local.forwarded += 1;
                            let p = usize::from(port).min(tx_nic.len() - 1);
                            push(&mut tx_nic[p], m, &mut local);
                        }
                        Outcome::Dropped(r) => local.drops[r as usize] += 1,
                    }
                    if tx_nic[i].is_full() {
                        flush(&wp.nic, q, &mut tx_nic[i], &mut local, true);
                    }
                    if tx_tap[i].is_full() {
                        flush(&wp.tap, q, &mut tx_tap[i], &mut local, false);
                    }
                }
                // Frames the kernel sends leave through the data port.
                let n = wp.tap.rx_burst(q, &mut rx);
                got += n;
                local.from_kernel += n as u64;
                for m in rx.drain() {
                    push(&mut tx_nic[i], m, &mut local);
                    if tx_nic[i].is_full() {
                        flush(&wp.nic, q, &mut tx_nic[i], &mut local, true);
                    }
                }
            }

            if now_ms >= next_housekeeping {
                next_housekeeping = now_ms + HOUSEKEEPING_MS;
                self.resolve_next_hops(now_ms, &mut tx_nic, &mut local);
            }

            for (i, wp) in self.ports.iter().enumerate() {
                if !tx_nic[i].is_empty() {
                    flush(&wp.nic, q, &mut tx_nic[i], &mut local, true);
                }
                if !tx_tap[i].is_empty() {
                    flush(&wp.tap, q, &mut tx_tap[i], &mut local, false);
                }
            }

            local.polls += 1;
            since_publish += 1;
            if got == 0 {
                local.idle_polls += 1;
                if since_publish >= PUBLISH_EVERY {
                    local.publish(&self.stats);
                    since_publish = 0;
                }
                if let Some(d) = self.idle_sleep {
                    std::thread::sleep(d);
                }
            } else {
                local.busy_cycles += dpdk::rdtsc().wrapping_sub(t0);
                if since_publish >= PUBLISH_EVERY {
                    local.publish(&self.stats);
                    since_publish = 0;
                }
            }
        }
        local.publish(&self.stats);
        0
    }

    /// Sends a (rate-limited) ARP request for every next hop that needs one.
    fn resolve_next_hops(&self, now_ms: u64, tx_nic: &mut [Burst], local: &mut Local) {
        for (i, wp) in self.ports.iter().enumerate() {
            for &(hop, src) in &wp.next_hops {
                let ask = match self.neigh.resolve(hop, now_ms) {
                    Resolve::Request => true,
                    Resolve::Known { refresh, .. } => refresh,
                    Resolve::Pending => false,
                };
                let (IpAddr::V4(hop4), IpAddr::V4(src4)) = (hop, src) else {
                    continue; // IPv6 neighbour discovery arrives with the IPv6 data path
                };
                if !ask || tx_nic[i].is_full() {
                    continue;
                }
                let Some(mut m) = self.pool.alloc() else {
                    continue;
                };
                if !m.append(60) {
                    continue;
                }
                if neigh::write_arp_request(m.data_mut(), wp.view.mac, src4, hop4).is_some() {
                    local.arp_requests += 1;
                    push(&mut tx_nic[i], m, local);
                }
            }
        }
    }
}

#[inline]
fn push(b: &mut Burst, m: dpdk::Mbuf, local: &mut Local) {
    if let Err(m) = b.push(m) {
        drop(m);
        local.drops[DropReason::TxFull as usize] += 1;
    }
}

#[inline]
fn flush(port: &Port, q: QueueId, b: &mut Burst, local: &mut Local, count_tx: bool) {
    let (sent, dropped) = port.tx_burst(q, b);
    if count_tx {
        local.tx += sent as u64;
    }
    local.drops[DropReason::TxFull as usize] += dropped as u64;
}
