//! The poll loop of one worker lcore: rx_burst → pipeline → tx_burst.
//!
//! A worker owns queue `q` of every data port and of every port's exception
//! TAP. Per pass it receives a burst of up to [`BURST_SIZE`] frames from
//! each data port, which the pipeline decides as a whole
//! ([`Tables::handle_burst`]: outcomes for every frame, in order), and a
//! burst from each TAP (frames the kernel sends go out the data port
//! unchanged), then flushes its TX bursts. A received burst whose frames
//! all go out one port becomes that port's TX burst as it is (the common
//! case: no frame is moved one by one). It never blocks and never
//! allocates per packet; the only syscall is the optional idle back-off
//! (`idle_sleep`) when a whole pass found nothing.
//!
//! Between bursts it adopts a new [`Snapshot`] when the control plane has
//! published one (one relaxed load per pass notices it), keeps the next
//! hops resolved, sweeps expired flows (the whole table once a second, a
//! share of it each millisecond), and handles
//! connection sync ([`crate::sync`]): it sends its sync log to the HA peer
//! when a batch is due, and applies the records other workers received
//! from the peer (its inboxes).
//!
//! Counters are plain integers in the worker's own memory, published with
//! relaxed stores (and, for per-service figures, through a `try_lock` that
//! never waits) every few hundred passes and when idle.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::buffer::PacketBuf;
use crate::dpdk::{self, Burst, HandoffRx, HandoffTx, Mempool, Port, QueueId, Staged, BURST_SIZE};
use crate::neigh::{self, NeighTable, Resolve};
use crate::pipeline::burst::RxFrames;
use crate::pipeline::limit::NodeLimits;
use crate::pipeline::{
    Ctx, DropReason, NeighRequests, Outcome, Route, ServiceCounters, Snapshot, Tables,
};
pub use crate::stats::{ConnStats, ServiceReport, WorkerShared, WorkerStats};
use crate::steer::{Steer, Tag};
use crate::sync::{self, Inbox, SyncCounters, SyncLog};

// The pipeline decides bursts of the size the worker receives.
const _: () = assert!(crate::pipeline::burst::BURST == BURST_SIZE);

/// How often a worker republishes its counters (passes).
const PUBLISH_EVERY: u32 = 256;
/// How often housekeeping (next-hop resolution) runs.
const HOUSEKEEPING_MS: u64 = 100;
/// The expiry sweep examines every connection-table slot once in this
/// period (a share of them every millisecond): flows are freed at most
/// this long after they expire (a lookup of an expired flow frees it at
/// once).
const SWEEP_PERIOD_MS: u64 = 1000;
/// Synced records taken per pass from each other worker's inbox.
const INBOX_BUDGET: usize = 256;

/// The snapshot the control plane publishes to every worker.
pub struct SharedSnapshot {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
}

impl SharedSnapshot {
    /// Starts with `snap`.
    pub fn new(snap: Arc<Snapshot>) -> SharedSnapshot {
        let generation = AtomicU64::new(snap.generation);
        SharedSnapshot {
            current: ArcSwap::new(snap),
            generation,
        }
    }

    /// Publishes `snap`; workers adopt it between bursts.
    pub fn publish(&self, snap: Arc<Snapshot>) {
        let g = snap.generation;
        self.current.store(snap);
        self.generation.store(g, Ordering::Release);
    }

    /// The snapshot in force.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }
}

/// A received burst of one data port, as the pipeline reads it.
struct RxPort<'a> {
    burst: &'a mut Burst,
    /// The port's RSS hash stands for the table's (`WorkerPort::rss_hash`).
    rss: bool,
    /// Frames handed over by other workers: their tags.
    tags: Option<&'a [Tag; BURST_SIZE]>,
    /// The low 16 bits of the generation of the snapshot in force (a
    /// tag's reply hash holds only for it).
    generation: u16,
}

impl RxFrames for RxPort<'_> {
    type Buf = dpdk::Mbuf;
    #[inline(always)]
    fn count(&self) -> usize {
        self.burst.len()
    }
    #[inline(always)]
    fn frame(&self, i: usize) -> &[u8] {
        self.burst.frame(i).unwrap_or(&[])
    }
    #[inline(always)]
    fn buf_mut(&mut self, i: usize) -> Option<&mut dpdk::Mbuf> {
        self.burst.get_mut(i)
    }
    #[inline(always)]
    fn rss_hash(&self, i: usize) -> Option<u32> {
        if self.rss {
            self.burst.rss_hash(i)
        } else {
            None
        }
    }
    #[inline(always)]
    fn single_segment(&self, i: usize) -> bool {
        self.burst.single_segment(i)
    }
    #[inline(always)]
    fn first_look(&self, i: usize) -> Option<(&[u8], Option<u32>)> {
        self.burst.first_look(i, self.rss)
    }
    #[inline(always)]
    fn prefetch(&self, p: *const u8) {
        dpdk::prefetch(p);
    }
    #[inline(always)]
    fn hops(&self, i: usize) -> u8 {
        match self.tags {
            None => 0,
            Some(t) => t.get(i).map_or(0, |t| t.hops),
        }
    }
    #[inline(always)]
    fn reply_hint(&self, i: usize) -> Option<u32> {
        let t = self.tags?.get(i)?;
        if t.generation == self.generation {
            t.reply_hash
        } else {
            None
        }
    }
}

/// One data port as a worker sees it.
pub struct WorkerPort {
    /// The data port.
    pub nic: Port,
    /// Its exception-path TAP.
    pub tap: Port,
    /// The NIC hashes IPv4 frames with `Worker::rss_key`: its RSS hash
    /// stands for the connection table's (see [`Tables::flow_hash_v4`]).
    pub rss_hash: bool,
}

#[derive(Default, Clone, Copy)]
struct Local {
    rx: u64,
    tx: u64,
    answered: u64,
    to_kernel: u64,
    from_kernel: u64,
    forwarded: u64,
    neigh_requests: u64,
    drops: [u64; DropReason::COUNT],
    polls: u64,
    idle_polls: u64,
    busy_cycles: u64,
    handoffs_out: u64,
    handoffs_in: u64,
    idle_resets: u64,
    idle_resets_unsent: u64,
}

impl Local {
    fn publish(&self, s: &WorkerStats) {
        s.rx.store(self.rx, Ordering::Relaxed);
        s.tx.store(self.tx, Ordering::Relaxed);
        s.answered.store(self.answered, Ordering::Relaxed);
        s.to_kernel.store(self.to_kernel, Ordering::Relaxed);
        s.from_kernel.store(self.from_kernel, Ordering::Relaxed);
        s.forwarded.store(self.forwarded, Ordering::Relaxed);
        s.neigh_requests
            .store(self.neigh_requests, Ordering::Relaxed);
        for (a, v) in s.drops.iter().zip(self.drops) {
            a.store(v, Ordering::Relaxed);
        }
        s.polls.store(self.polls, Ordering::Relaxed);
        s.idle_polls.store(self.idle_polls, Ordering::Relaxed);
        s.busy_cycles.store(self.busy_cycles, Ordering::Relaxed);
        s.handoffs_out.store(self.handoffs_out, Ordering::Relaxed);
        s.handoffs_in.store(self.handoffs_in, Ordering::Relaxed);
        s.idle_resets.store(self.idle_resets, Ordering::Relaxed);
        s.idle_resets_unsent
            .store(self.idle_resets_unsent, Ordering::Relaxed);
    }
}

/// Everything one worker lcore needs.
pub struct Worker {
    /// The queue this worker owns on every port.
    pub queue: QueueId,
    /// Data ports, each with its TAP, in snapshot port order.
    pub ports: Vec<WorkerPort>,
    /// The shared neighbour cache.
    pub neigh: Arc<NeighTable>,
    /// Pool for frames the worker creates (ARP / ND requests).
    pub pool: Arc<Mempool>,
    /// Set by the control plane to stop the loop.
    pub stop: Arc<AtomicBool>,
    /// What the control plane publishes.
    pub snapshot: Arc<SharedSnapshot>,
    /// Where counters are published.
    pub shared: Arc<WorkerShared>,
    /// Back-off when a pass finds nothing.
    pub idle_sleep: Option<Duration>,
    /// Flows per worker.
    pub conn_capacity: u32,
    /// Whether this worker keeps next hops resolved (one worker does).
    pub resolver: bool,
    /// The ports' RSS key: the connection table hashes IPv4 flows with it.
    pub rss_key: [u8; crate::conntrack::toeplitz::KEY_LEN],
    /// Connection sync with several workers: every worker's inbox by
    /// worker index, `None` for this one (records from the peer this
    /// worker receives go to the flow's owner, or to every worker) ...
    pub sync_out: Vec<Option<Arc<Inbox>>>,
    /// ... and this worker's, one per other worker, drained every pass.
    pub sync_in: Vec<Arc<Inbox>>,
    /// Which worker owns what ([`crate::steer`]).
    pub steer: Steer,
    /// Rings to the other workers, by worker index (`None` for this
    /// one) ...
    pub handoff_out: Vec<Option<HandoffTx>>,
    /// ... and from them.
    pub handoff_in: Vec<HandoffRx>,
    /// The `new_flow_rate_limit` budgets the node's workers share.
    pub limits: Arc<NodeLimits>,
    /// The TSC at the node's start: every worker's clock counts from it
    /// (shared budgets need one clock).
    pub epoch_tsc: u64,
}

/// Frames a worker hands to the others.
struct Outbound {
    /// Rings to the other workers, by worker index (`None` for this one).
    tx: Vec<Option<HandoffTx>>,
    /// Per destination worker: frames waiting to be handed over.
    staged: Vec<Staged>,
}

impl Outbound {
    /// Stages `m` for worker `to`, handing over a full stage first.
    #[inline]
    fn stage(&mut self, to: u16, m: dpdk::Mbuf, tag: Tag, local: &mut Local) {
        let to = usize::from(to);
        let (Some(st), Some(Some(tx))) = (self.staged.get_mut(to), self.tx.get_mut(to)) else {
            drop(m);
            local.drops[DropReason::NoRoute as usize] += 1;
            return;
        };
        if st.is_full() {
            let (sent, dropped) = tx.send(st);
            local.handoffs_out += sent as u64;
            local.drops[DropReason::HandoffFull as usize] += dropped as u64;
        }
        if let Err(m) = st.push(m, tag) {
            drop(m);
            local.drops[DropReason::HandoffFull as usize] += 1;
        }
    }

    /// Hands every staged frame over; a full ring drops the rest, counted.
    fn send(&mut self, local: &mut Local) {
        for (tx, st) in self.tx.iter_mut().zip(self.staged.iter_mut()) {
            if let (Some(tx), false) = (tx, st.is_empty()) {
                let (sent, dropped) = tx.send(st);
                local.handoffs_out += sent as u64;
                local.drops[DropReason::HandoffFull as usize] += dropped as u64;
            }
        }
    }
}

/// Frames other workers hand to this one.
struct Inbound {
    /// Rings from the other workers ...
    rings: Vec<HandoffRx>,
    /// ... the frames taken from each this pass, with their tags ...
    rx: Vec<(Burst, [Tag; BURST_SIZE])>,
    /// ... and, when one ring's frames arrived on several ports, split by
    /// port.
    by_port: Vec<(Burst, [Tag; BURST_SIZE])>,
}

impl Worker {
    /// Runs until `stop` is set; returns 0.
    pub fn run(mut self) -> i32 {
        let hz = dpdk::tsc_hz().max(1);
        let per_ms = (hz / 1000).max(1);
        let start = self.epoch_tsc;
        let q = self.queue;
        let mut snap = self.snapshot.load();
        let mut tables = Tables::for_worker(self.conn_capacity, &snap, self.steer);
        tables.share_limits(Arc::clone(&self.limits), &snap);
        // Empty tables take any key.
        tables.set_rss_key(self.rss_key, &snap);
        // Random lookups over a large table miss the TLB on 4 KiB pages.
        let mut huge = 0usize;
        let thp = std::env::var_os("FERROLB_THP").is_none_or(|v| v != "off");
        for (p, len) in tables.conn.memory_regions().into_iter().filter(|_| thp) {
            match dpdk::advise_huge(p, len) {
                Ok(n) => huge += n,
                Err(e) => {
                    tracing::info!("connection table on 4 KiB pages (transparent huge pages: {e})");
                    break;
                }
            }
        }
        tracing::info!(
            "connection table: {} MiB, {} MiB on huge pages",
            tables.conn.memory_bytes() >> 20,
            huge >> 20
        );
        tables.set_fanout(self.sync_out.clone());
        let mut hops = if self.resolver {
            snap.next_hops()
        } else {
            Vec::new()
        };
        let mut report = ServiceReport::default();
        let mut local = Local::default();
        let mut requests = NeighRequests::default();
        let mut rx = Burst::new();
        let mut outcomes = [Outcome::Consumed; BURST_SIZE];
        let mut out = Outbound {
            staged: self.handoff_out.iter().map(|_| Staged::default()).collect(),
            tx: std::mem::take(&mut self.handoff_out),
        };
        let rings = std::mem::take(&mut self.handoff_in);
        let mut inb = Inbound {
            rx: rings
                .iter()
                .map(|_| (Burst::new(), [Tag::default(); BURST_SIZE]))
                .collect(),
            rings,
            by_port: self
                .ports
                .iter()
                .map(|_| (Burst::new(), [Tag::default(); BURST_SIZE]))
                .collect(),
        };
        let mut tx_nic: Vec<Burst> = self.ports.iter().map(|_| Burst::new()).collect();
        let mut tx_tap: Vec<Burst> = self.ports.iter().map(|_| Burst::new()).collect();
        let mut since_publish = 0u32;
        let mut swept_ms = 0u64;
        let sweep_per_ms = (tables.conn.capacity() as u64).div_ceil(SWEEP_PERIOD_MS);
        let mut next_housekeeping = 0u64;
        self.shared
            .stats
            .generation
            .store(snap.generation, Ordering::Relaxed);

        while !self.stop.load(Ordering::Relaxed) {
            // A new snapshot? Adopt it between bursts; flows are kept.
            if self.snapshot.generation.load(Ordering::Acquire) != snap.generation {
                let new = self.snapshot.load();
                let now_ms = dpdk::rdtsc().wrapping_sub(start) / per_ms;
                tables.adopt_at(&snap, &new, now_ms);
                if self.resolver {
                    hops = new.next_hops();
                }
                snap = new;
                self.shared
                    .stats
                    .generation
                    .store(snap.generation, Ordering::Relaxed);
            }
            let t0 = dpdk::rdtsc();
            let now_ms = t0.wrapping_sub(start) / per_ms;
            let mut got = 0usize;

            // Frames other workers handed over: taken now, their lines
            // on their way into this core's caches (another core wrote
            // them last) while the ports' bursts are decided, and decided
            // after those.
            for (ring, (b, tags)) in inb.rings.iter_mut().zip(inb.rx.iter_mut()) {
                let n = ring.recv(b, tags);
                got += n;
                local.handoffs_in += n as u64;
            }

            // One context for every burst of the pass.
            let mut ctx = Ctx {
                snap: &snap,
                neigh: &self.neigh,
                now_ms,
                requests: &mut requests,
                hops: 0,
            };
            for (i, wp) in self.ports.iter().enumerate() {
                let n = wp.nic.rx_burst(q, &mut rx);
                got += n;
                local.rx += n as u64;
                // The pipeline decides the whole burst (in passes that
                // prefetch what the frames need), then the frames go
                // where their outcomes say.
                let mut frames = RxPort {
                    burst: &mut rx,
                    rss: wp.rss_hash,
                    tags: None,
                    generation: snap.generation as u16,
                };
                tables.handle_burst(&mut frames, i as u16, &mut ctx, &mut outcomes);
                // Nearly always every frame goes out one port: the whole
                // burst moves there at once.
                match uniform_port(&outcomes[..n]).and_then(|p| tx_nic.get_mut(p)) {
                    Some(b) if b.is_empty() => {
                        local.forwarded += n as u64;
                        std::mem::swap(&mut rx, b);
                    }
                    _ => self.dispatch(
                        i,
                        &mut rx,
                        &outcomes,
                        None,
                        snap.generation as u16,
                        &mut tx_nic,
                        &mut tx_tap,
                        &mut out,
                        &mut local,
                    ),
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

            for r in 0..inb.rx.len() {
                if !inb.rx[r].0.is_empty() {
                    self.decide_handed(
                        r,
                        &mut tables,
                        &mut ctx,
                        &mut inb,
                        &mut outcomes,
                        &mut tx_nic,
                        &mut tx_tap,
                        &mut out,
                        &mut local,
                    );
                }
            }

            // Next hops the pipeline found unresolved, and the periodic round.
            for r in requests.drain() {
                self.solicit(&snap, r, &mut tx_nic, &mut local);
            }
            if now_ms >= next_housekeeping {
                next_housekeeping = now_ms + HOUSEKEEPING_MS;
                for r in &hops {
                    let ask = match self.neigh.resolve(r.next_hop, now_ms) {
                        Resolve::Request => true,
                        Resolve::Known { refresh, .. } => refresh,
                        Resolve::Pending => false,
                    };
                    if ask {
                        self.solicit(&snap, *r, &mut tx_nic, &mut local);
                    }
                }
            }
            // The expiry sweep goes over the whole table once every
            // SWEEP_PERIOD_MS, a few slots at a time: the cells it reads
            // would otherwise crowd the caches of every pass.
            if now_ms != swept_ms {
                let elapsed = now_ms.saturating_sub(swept_ms).min(SWEEP_PERIOD_MS);
                swept_ms = now_ms;
                let budget = (sweep_per_ms * elapsed).clamp(1, u64::from(u32::MAX)) as u32;
                if tables.resets_wanted() {
                    // In chunks, sending the RSTs each leaves: the queue
                    // holds two per cell of a chunk.
                    let mut left = budget;
                    while left > 0 {
                        let n = left.min(crate::pipeline::reset::SWEEP_CHUNK);
                        tables.sweep(&snap, now_ms, n);
                        left -= n;
                        while let Some(r) = tables.resets.pop() {
                            self.send_rst(&snap, r, &mut tx_nic, &mut local, now_ms);
                        }
                    }
                } else {
                    tables.sweep(&snap, now_ms, budget);
                }
            }
            // RSTs of flows the pass's lookups freed.
            while let Some(r) = tables.resets.pop() {
                self.send_rst(&snap, r, &mut tx_nic, &mut local, now_ms);
            }
            local.idle_resets_unsent += std::mem::take(&mut tables.resets.dropped);
            for ib in &self.sync_in {
                tables.drain_inbox(&snap, now_ms, ib, INBOX_BUDGET);
            }
            if self.shared.conns_asked.load(Ordering::Acquire) {
                if let Ok(mut q) = self.shared.conns.try_lock() {
                    q.answer(&tables.conn, now_ms as u32);
                    drop(q);
                    self.shared.conns_asked.store(false, Ordering::Release);
                }
            }
            if tables.sync.due(now_ms) {
                self.send_sync(&snap, &mut tables.sync, &mut tx_nic, &mut local, now_ms);
            }

            out.send(&mut local);
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
            } else {
                local.busy_cycles += dpdk::rdtsc().wrapping_sub(t0);
            }
            if since_publish >= PUBLISH_EVERY {
                since_publish = 0;
                local.publish(&self.shared.stats);
                publish_sync(&self.shared.stats, &tables.sync.counters);
                publish_conn(&self.shared.stats, &tables);
                publish_services(&self.shared, &mut tables, &mut report);
            }
            if got == 0 {
                if let Some(d) = self.idle_sleep {
                    std::thread::sleep(d);
                }
            }
        }
        local.publish(&self.shared.stats);
        publish_sync(&self.shared.stats, &tables.sync.counters);
        publish_conn(&self.shared.stats, &tables);
        publish_services(&self.shared, &mut tables, &mut report);
        0
    }

    /// Decides the frames taken from ring `r`, which another worker
    /// handed over (each tagged with the port it arrived on), and sends
    /// them where their outcomes say.
    #[allow(clippy::too_many_arguments)]
    fn decide_handed(
        &self,
        r: usize,
        tables: &mut Tables,
        ctx: &mut Ctx<'_>,
        inb: &mut Inbound,
        outcomes: &mut [Outcome; BURST_SIZE],
        tx_nic: &mut [Burst],
        tx_tap: &mut [Burst],
        out: &mut Outbound,
        local: &mut Local,
    ) {
        let (rx, rx_tags) = &mut inb.rx[r];
        let n = rx.len();
        let first = rx_tags[0].port;
        if rx_tags[..n].iter().all(|t| t.port == first) {
            let i = usize::from(first);
            self.decide_handed_port(
                i, tables, ctx, rx, rx_tags, outcomes, tx_nic, tx_tap, out, local,
            );
            return;
        }
        // Frames of several ports: each port's frames as a burst of
        // their own (the pipeline decides a burst of one port).
        for (m, t) in rx.drain().zip(*rx_tags) {
            match inb.by_port.get_mut(usize::from(t.port)) {
                Some((b, tags)) => {
                    tags[b.len()] = t;
                    if let Err(m) = b.push(m) {
                        drop(m);
                        local.drops[DropReason::HandoffFull as usize] += 1;
                    }
                }
                None => {
                    drop(m);
                    local.drops[DropReason::NoRoute as usize] += 1;
                }
            }
        }
        for (i, (b, tags)) in inb.by_port.iter_mut().enumerate() {
            if !b.is_empty() {
                self.decide_handed_port(
                    i, tables, ctx, b, tags, outcomes, tx_nic, tx_tap, out, local,
                );
            }
        }
    }

    /// [`Self::decide_handed`] for frames that all arrived on port `i`.
    #[allow(clippy::too_many_arguments)]
    fn decide_handed_port(
        &self,
        i: usize,
        tables: &mut Tables,
        ctx: &mut Ctx<'_>,
        burst: &mut Burst,
        tags: &[Tag; BURST_SIZE],
        outcomes: &mut [Outcome; BURST_SIZE],
        tx_nic: &mut [Burst],
        tx_tap: &mut [Burst],
        out: &mut Outbound,
        local: &mut Local,
    ) {
        let Some(wp) = self.ports.get(i) else {
            local.drops[DropReason::NoRoute as usize] += burst.free_all() as u64;
            return;
        };
        let mut frames = RxPort {
            burst,
            rss: wp.rss_hash,
            tags: Some(tags),
            generation: ctx.snap.generation as u16,
        };
        tables.handle_burst(&mut frames, i as u16, ctx, outcomes);
        // As for a port's burst: frames that all go out one port move
        // there at once.
        let n = burst.len();
        match uniform_port(&outcomes[..n]).and_then(|p| tx_nic.get_mut(p)) {
            Some(b) if b.is_empty() => {
                local.forwarded += n as u64;
                std::mem::swap(burst, b);
            }
            _ => {
                let generation = ctx.snap.generation as u16;
                self.dispatch(
                    i,
                    burst,
                    outcomes,
                    Some(tags),
                    generation,
                    tx_nic,
                    tx_tap,
                    out,
                    local,
                );
            }
        }
    }

    /// Sends each frame of `rx` (received on data port `i`; `tags`: how
    /// frames handed over by other workers travelled) where its outcome
    /// says, counting it.
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        i: usize,
        rx: &mut Burst,
        outcomes: &[Outcome; BURST_SIZE],
        tags: Option<&[Tag; BURST_SIZE]>,
        generation: u16,
        tx_nic: &mut [Burst],
        tx_tap: &mut [Burst],
        out: &mut Outbound,
        local: &mut Local,
    ) {
        let q = self.queue;
        for (k, (m, o)) in rx.drain().zip(outcomes).enumerate() {
            match *o {
                Outcome::Handoff { to, reply_hash } => {
                    let hops = tags.and_then(|t| t.get(k)).map_or(0, |t| t.hops);
                    let tag = Tag {
                        port: i as u8,
                        hops: hops.saturating_add(1),
                        reply_hash,
                        generation,
                    };
                    out.stage(to, m, tag, local);
                }
                Outcome::Forward { port } => {
                    local.forwarded += 1;
                    match tx_nic.get_mut(usize::from(port)) {
                        Some(b) => {
                            if b.is_full() {
                                flush(&self.ports[usize::from(port)].nic, q, b, local, true);
                            }
                            push(b, m, local);
                        }
                        None => local.drops[DropReason::NoRoute as usize] += 1,
                    }
                }
                Outcome::Answered => {
                    local.answered += 1;
                    if tx_nic[i].is_full() {
                        flush(&self.ports[i].nic, q, &mut tx_nic[i], local, true);
                    }
                    push(&mut tx_nic[i], m, local);
                }
                Outcome::ToKernel => {
                    local.to_kernel += 1;
                    if tx_tap[i].is_full() {
                        flush(&self.ports[i].tap, q, &mut tx_tap[i], local, false);
                    }
                    push(&mut tx_tap[i], m, local);
                }
                Outcome::Dropped(r) => local.drops[r as usize] += 1,
                Outcome::Consumed => {}
            }
        }
    }

    /// Sends what the sync log holds as UDP datagrams to the HA peer
    /// (full batches, and a partial one that has waited its time). Waits
    /// for the peer's MAC with the records kept (the log is bounded:
    /// beyond it records are counted as lost); without a route to the
    /// peer, or for an IPv6 peer (not supported yet), drops them counted.
    fn send_sync(
        &self,
        snap: &Snapshot,
        log: &mut SyncLog,
        tx_nic: &mut [Burst],
        local: &mut Local,
        now_ms: u64,
    ) {
        let Some((spec, Some(route))) = snap.sync() else {
            log.discard(now_ms);
            return;
        };
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (route.src, spec.peer) else {
            log.discard(now_ms);
            return;
        };
        let mac = match self.neigh.resolve(route.next_hop, now_ms) {
            Resolve::Known { mac, refresh } => {
                if refresh {
                    self.solicit(snap, route, tx_nic, local);
                }
                mac
            }
            Resolve::Request => {
                self.solicit(snap, route, tx_nic, local);
                log.defer_hello(now_ms);
                return;
            }
            Resolve::Pending => {
                log.defer_hello(now_ms);
                return;
            }
        };
        let Some(port) = snap.ports.get(usize::from(route.port)) else {
            log.discard(now_ms);
            return;
        };
        let q = self.queue;
        // Bounded: every pass takes up to a batch off a bounded log.
        for _ in 0..=sync::LOG_CAPACITY / sync::MAX_RECORDS {
            if !log.due(now_ms) {
                break;
            }
            let Some(b) = tx_nic.get_mut(usize::from(route.port)) else {
                return;
            };
            if b.is_full() {
                flush(&self.ports[usize::from(route.port)].nic, q, b, local, true);
            }
            let Some(mut m) = self.pool.alloc() else {
                return;
            };
            if !m.append(42 + sync::MAX_PAYLOAD) {
                return;
            }
            let n = log.take_batch(&mut m.data_mut()[42..], q.0, now_ms);
            if n == 0 || !m.trim(sync::MAX_PAYLOAD - n) {
                return;
            }
            sync::write_udp4_frame(
                m.data_mut(),
                mac.0,
                port.mac.0,
                (src, spec.port),
                (dst, spec.port),
                n,
                log.counters.batches_sent as u16,
            );
            push(b, m, local);
        }
    }

    /// Sends a RST of an expired `tcp_reset_on_idle` flow, if its next
    /// hop's MAC is known (it was a moment ago: the flow's packets used
    /// it) and the pool and the TX burst have room.
    fn send_rst(
        &self,
        snap: &Snapshot,
        r: crate::pipeline::reset::Rst,
        tx_nic: &mut [Burst],
        local: &mut Local,
        now_ms: u64,
    ) {
        use crate::pipeline::reset::Rst;
        let Some(port) = snap.ports.get(usize::from(r.port)) else {
            return;
        };
        let mac = match self.neigh.resolve(r.next_hop, now_ms) {
            Resolve::Known { mac, .. } => mac,
            unknown => {
                // Forgotten since: ask, for the next one.
                local.idle_resets_unsent += 1;
                if unknown == Resolve::Request {
                    if let Some(src) = port.connected(r.next_hop) {
                        let route = crate::pipeline::Route {
                            port: r.port,
                            next_hop: r.next_hop,
                            src,
                        };
                        self.solicit(snap, route, tx_nic, local);
                    }
                }
                return;
            }
        };
        let Some(b) = tx_nic.get_mut(usize::from(r.port)) else {
            return;
        };
        if b.is_full() {
            flush(
                &self.ports[usize::from(r.port)].nic,
                self.queue,
                b,
                local,
                true,
            );
        }
        let Some(mut m) = self.pool.alloc() else {
            local.idle_resets_unsent += 1;
            return;
        };
        let written = m.append(Rst::MAX_LEN)
            && r.write(m.data_mut(), port.mac, mac)
                .is_some_and(|n| m.trim(Rst::MAX_LEN - n));
        if !written {
            local.idle_resets_unsent += 1;
            return;
        }
        local.idle_resets += 1;
        push(b, m, local);
    }

    /// Sends an ARP request (IPv4) or neighbour solicitation (IPv6) for
    /// `r.next_hop` out `r.port`.
    fn solicit(&self, snap: &Snapshot, r: Route, tx_nic: &mut [Burst], local: &mut Local) {
        let Some(port) = snap.ports.get(usize::from(r.port)) else {
            return;
        };
        let Some(b) = tx_nic.get_mut(usize::from(r.port)) else {
            return;
        };
        if b.is_full() {
            return;
        }
        let Some(mut m) = self.pool.alloc() else {
            return;
        };
        let written = match (r.next_hop, r.src) {
            (IpAddr::V4(hop), IpAddr::V4(src)) => {
                m.append(60) && neigh::write_arp_request(m.data_mut(), port.mac, src, hop).is_some()
            }
            (IpAddr::V6(hop), IpAddr::V6(src)) => {
                m.append(86)
                    && neigh::write_neighbour_solicitation(m.data_mut(), port.mac, src, hop)
                        .is_some()
            }
            _ => false,
        };
        if written {
            local.neigh_requests += 1;
            push(b, m, local);
        }
    }
}

fn publish_sync(s: &WorkerStats, c: &SyncCounters) {
    s.sync_records_sent.store(c.records_sent, Ordering::Relaxed);
    s.sync_batches_sent.store(c.batches_sent, Ordering::Relaxed);
    s.sync_records_lost.store(c.lost, Ordering::Relaxed);
    s.sync_records_received
        .store(c.records_received, Ordering::Relaxed);
    s.sync_records_applied.store(c.applied, Ordering::Relaxed);
    s.sync_records_rejected.store(c.rejected, Ordering::Relaxed);
    s.sync_records_unknown_service
        .store(c.unknown_service, Ordering::Relaxed);
    s.sync_records_fanout_dropped
        .store(c.fanout_dropped, Ordering::Relaxed);
    s.sync_batches_missed
        .store(c.batches_missed, Ordering::Relaxed);
    s.sync_datagrams_received
        .store(c.datagrams_received, Ordering::Relaxed);
    s.sync_peer_fingerprint
        .store(c.peer_fingerprint, Ordering::Relaxed);
    s.sync_config_differs
        .store(c.config_differs, Ordering::Relaxed);
}

fn publish_conn(s: &WorkerStats, tables: &Tables) {
    let conn = &tables.conn;
    let c = conn.counters();
    let r = Ordering::Relaxed;
    let o = &tables.outbound;
    let oc = o.counters;
    s.outbound.flows.store(o.len() as u64, r);
    s.outbound.new_flows.store(oc.new_flows, r);
    s.outbound.packets_out.store(oc.packets_out, r);
    s.outbound.bytes_out.store(oc.bytes_out, r);
    s.outbound.packets_in.store(oc.packets_in, r);
    s.outbound.bytes_in.store(oc.bytes_in, r);
    s.flows.store(conn.len() as u64, r);
    s.conn.capacity.store(conn.capacity() as u64, r);
    let half_open = conn.by_state()[crate::conntrack::State::SynRecv as usize];
    s.conn.half_open.store(u64::from(half_open), r);
    s.conn.inserts.store(c.inserts, r);
    s.conn.evictions_half_open.store(c.evictions_half_open, r);
    s.conn
        .evictions_established
        .store(c.evictions_established, r);
    let other = c.evictions - c.evictions_half_open - c.evictions_established;
    s.conn.evictions_other.store(other, r);
    s.conn.insert_failures.store(c.insert_failures, r);
}

/// Copies per-service counters out if the control plane is not reading
/// them right now (never waits).
fn publish_services(shared: &WorkerShared, tables: &mut Tables, scratch: &mut ServiceReport) {
    scratch.generation = tables.generation();
    let counters = tables.counters();
    scratch.counters.truncate(counters.len());
    scratch
        .counters
        .resize_with(counters.len(), ServiceCounters::default);
    for (d, c) in scratch.counters.iter_mut().zip(counters) {
        d.clone_from(c);
    }
    scratch.active.clone_from(&tables.active);
    if let Ok(mut g) = shared.services.try_lock() {
        std::mem::swap(&mut *g, scratch);
    }
}

/// The port every outcome forwards to, if they all forward to one (and
/// there is at least one).
#[inline]
fn uniform_port(outcomes: &[Outcome]) -> Option<usize> {
    let first = *outcomes.first()?;
    let Outcome::Forward { port } = first else {
        return None;
    };
    // One compare per frame, no early exit: the loop vectorizes.
    let same = outcomes.iter().fold(true, |all, o| all & (*o == first));
    same.then_some(usize::from(port))
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
