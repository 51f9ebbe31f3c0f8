//! What the data plane shows the control plane: counters each worker
//! publishes (plain atomics and a `try_lock`ed report, written by the
//! worker, read by anyone), the device counters of a port, and where the
//! threads run. Plain data, without DPDK, so the control plane can read
//! and test it anywhere.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use crate::pipeline::{DropReason, ServiceCounters};

/// Counters of one worker, readable by the control plane.
#[derive(Default)]
#[repr(align(64))]
pub struct WorkerStats {
    /// Frames received from data ports.
    pub rx: AtomicU64,
    /// Frames sent on data ports.
    pub tx: AtomicU64,
    /// Frames answered in place (ARP, ND, echo, ICMP errors).
    pub answered: AtomicU64,
    /// Frames handed to the kernel.
    pub to_kernel: AtomicU64,
    /// Frames the kernel sent out through the TAP.
    pub from_kernel: AtomicU64,
    /// Frames forwarded.
    pub forwarded: AtomicU64,
    /// ARP / ND requests this worker sent to resolve next hops.
    pub neigh_requests: AtomicU64,
    /// Drops by reason, indexed by `DropReason as usize`.
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Loop passes.
    pub polls: AtomicU64,
    /// Passes that found no frame.
    pub idle_polls: AtomicU64,
    /// TSC cycles spent in passes that found frames.
    pub busy_cycles: AtomicU64,
    /// Flows in the connection table.
    pub flows: AtomicU64,
    /// Connection-table figures (published with `flows`).
    pub conn: ConnStats,
    /// Generation of the snapshot the worker runs.
    pub generation: AtomicU64,
    /// Connection sync: records sent to the peer.
    pub sync_records_sent: AtomicU64,
    /// Connection sync: datagrams sent to the peer.
    pub sync_batches_sent: AtomicU64,
    /// Connection sync: records logged but never sent.
    pub sync_records_lost: AtomicU64,
    /// Connection sync: records received from the peer.
    pub sync_records_received: AtomicU64,
    /// Connection sync: records applied to the tables.
    pub sync_records_applied: AtomicU64,
    /// Connection sync: records refused.
    pub sync_records_rejected: AtomicU64,
    /// Connection sync: records for services this node does not know.
    pub sync_records_unknown_service: AtomicU64,
    /// Connection sync: records not passed on to another worker (its
    /// inbox was full).
    pub sync_records_fanout_dropped: AtomicU64,
    /// Connection sync: datagrams from the peer missed (sequence gaps).
    pub sync_batches_missed: AtomicU64,
    /// Connection sync: datagrams received from the peer, hellos included.
    pub sync_datagrams_received: AtomicU64,
    /// Connection sync: the peer's service-set fingerprint, as last heard
    /// by this worker (0: never).
    pub sync_peer_fingerprint: AtomicU64,
    /// Connection sync: datagrams whose fingerprint differs from ours.
    pub sync_config_differs: AtomicU64,
    /// Frames handed to the worker that owns their state.
    pub handoffs_out: AtomicU64,
    /// Frames other workers handed to this one.
    pub handoffs_in: AtomicU64,
    /// Outbound source NAT (`[[outbound]]`), published with `flows`.
    pub outbound: OutboundStats,
    /// `tcp_reset_on_idle`: RSTs sent to the ends of expired flows ...
    pub idle_resets: AtomicU64,
    /// ... and not sent (next hop unknown, no mbuf, queue full).
    pub idle_resets_unsent: AtomicU64,
}

/// A worker's outbound source-NAT figures.
#[derive(Default)]
pub struct OutboundStats {
    /// Flows held.
    pub flows: AtomicU64,
    /// Flows opened.
    pub new_flows: AtomicU64,
    /// Frames translated out ...
    pub packets_out: AtomicU64,
    /// ... their bytes ...
    pub bytes_out: AtomicU64,
    /// ... frames translated back to the reals ...
    pub packets_in: AtomicU64,
    /// ... and their bytes.
    pub bytes_in: AtomicU64,
}

/// Per-service figures of one worker, for status and metrics.
#[derive(Default, Clone)]
pub struct ServiceReport {
    /// Generation these figures are shaped for.
    pub generation: u64,
    /// Per service index: counters.
    pub counters: Vec<ServiceCounters>,
    /// Per service index and real index: active flows.
    pub active: Vec<Vec<u32>>,
}

/// What a worker shares with the control plane.
#[derive(Default)]
pub struct WorkerShared {
    /// Loop and frame counters.
    pub stats: WorkerStats,
    /// Per-service counters (updated with `try_lock`, never waited on).
    pub services: Mutex<ServiceReport>,
    /// A listing of the worker's flows asked by the control plane
    /// (`crate::listing`): the worker answers while `conns_asked` is set
    /// and clears it (taking the lock with `try_lock`, never waiting).
    pub conns: Mutex<crate::listing::ConnQuery>,
    /// Set by the asker, cleared by the worker once `conns` holds the
    /// answer.
    pub conns_asked: std::sync::atomic::AtomicBool,
}

/// Connection-table figures of one worker: occupancy, and what happened
/// when it was full.
#[derive(Default)]
pub struct ConnStats {
    /// Slots in the table.
    pub capacity: AtomicU64,
    /// Half-open (SYN seen, handshake not finished) flows.
    pub half_open: AtomicU64,
    /// Flows inserted.
    pub inserts: AtomicU64,
    /// Half-open flows evicted to make room.
    pub evictions_half_open: AtomicU64,
    /// Established flows evicted to make room.
    pub evictions_established: AtomicU64,
    /// Other live flows (closing TCP, UDP, ICMP) evicted to make room.
    pub evictions_other: AtomicU64,
    /// New flows refused: full, and nothing could be evicted.
    pub insert_failures: AtomicU64,
}

/// Where the control plane and the workers run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The main lcore.
    pub main_lcore: u32,
    /// CPUs of the control plane's threads.
    pub control_cpus: Vec<usize>,
    /// Per worker: its lcore and the CPU it runs on.
    pub workers: Vec<(u32, Option<usize>)>,
    /// Per data port, by `[[port]].name`: how frames reach their owners
    /// (`nic (source fields)`, `software: why`, ...).
    pub steering: Vec<(String, String)>,
}

impl Placement {
    /// Worker lcores that share a CPU with the control plane.
    pub fn shared(&self) -> Vec<u32> {
        self.workers
            .iter()
            .filter(|(_, cpu)| cpu.is_some_and(|c| self.control_cpus.contains(&c)))
            .map(|(l, _)| *l)
            .collect()
    }
}

/// The device's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the NIC dropped because no descriptor was free.
    pub rx_missed: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Receive failures for want of mbufs.
    pub rx_nombuf: u64,
}
