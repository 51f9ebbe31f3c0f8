//! The typed body of `GET /api/v1/status`: the daemon serializes it, the
//! `ferrolb status` command deserializes it, `/metrics` is written from it.
//! Field names are the API's contract: extend, never rename.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything `GET /api/v1/status` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Generation of the forwarding snapshot in force.
    pub generation: u64,
    /// Successful reloads.
    pub reloads: u64,
    /// The service set's fingerprint (`Config::fingerprint`, 16 hex
    /// digits): nodes of a fleet must show the same.
    #[serde(default)]
    pub fingerprint: String,
    /// Why the last reload was refused (cleared by a successful one).
    pub last_reload_error: Option<String>,
    /// Flows in all connection tables.
    pub flows: u64,
    /// The services, in snapshot order.
    pub vips: Vec<VipStatus>,
    /// Per worker.
    pub workers: Vec<WorkerStatus>,
    /// Where the control plane and the workers run.
    pub placement: PlacementStatus,
    /// Frames dropped, by reason, summed over the workers.
    pub drops: BTreeMap<String, u64>,
    /// The packet pool.
    pub mbufs: Mbufs,
    /// The connection tables summed over the workers.
    pub conntrack: Conntrack,
    /// Each data port's device counters.
    pub ports: Vec<PortStatus>,
    /// The VRRP instance (`[ha]`), if any.
    pub ha: Option<HaStatus>,
    /// Connection sync (`[ha].sync_peer`), if any.
    pub sync: Option<SyncStatus>,
    /// The neighbour cache.
    #[serde(default)]
    pub neighbours: Vec<Neighbour>,
    /// `[announce]`, if set.
    #[serde(default)]
    pub announce: Option<AnnounceStatus>,
    /// `[[outbound]]`, if any.
    #[serde(default)]
    pub outbound: Option<OutboundStatus>,
}

/// Outbound source NAT for the reals (`[[outbound]]`), summed over the
/// workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundStatus {
    /// The rules, in file order.
    pub rules: Vec<OutboundRuleStatus>,
    /// Flows held.
    pub flows: u64,
    /// Flows opened.
    pub new_flows: u64,
    /// Frames translated from the reals to the outside.
    pub packets_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Frames translated back to the reals.
    pub packets_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// New flows refused for want of a free local port.
    pub no_port: u64,
}

/// One `[[outbound]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundRuleStatus {
    /// `name`.
    pub name: String,
    /// `sources`.
    pub sources: Vec<String>,
    /// `port_name`.
    pub port_name: String,
    /// `address`.
    pub address: String,
}

/// What the node announces (`[announce]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceStatus {
    /// The kernel routing table.
    pub table: u32,
    /// Drained by the operator (or stopping): nothing announced.
    pub drained: bool,
    /// The VIP addresses announced now.
    pub announced: Vec<String>,
}

/// Traffic of one service, summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipTraffic {
    /// Packets forwarded from clients to reals.
    pub packets_in: u64,
    /// Bytes forwarded from clients to reals.
    pub bytes_in: u64,
    /// Packets translated back from reals to clients (NAT).
    pub packets_out: u64,
    /// Bytes translated back (NAT).
    pub bytes_out: u64,
    /// Flows created.
    pub new_flows: u64,
    /// New flows refused with a RST or an ICMP unreachable.
    pub rejected: u64,
}

/// Traffic of one real (or the fallback), summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealTraffic {
    /// Packets forwarded to it.
    pub packets: u64,
    /// Bytes forwarded to it.
    pub bytes: u64,
    /// Flows scheduled to it.
    pub new_flows: u64,
    /// Its flows in the connection tables.
    pub active_flows: u64,
}

/// One service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VipStatus {
    /// `[[vip]].name`.
    pub name: String,
    /// The VIP.
    pub address: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The port (0: every port).
    pub port: u16,
    /// `dr`, `nat` or `tun`.
    pub mode: String,
    /// The scheduler's name.
    pub scheduler: String,
    /// Source-IP persistence, if set.
    pub persistence: Option<Persistence>,
    /// Traffic.
    #[serde(flatten)]
    pub traffic: VipTraffic,
    /// `reschedule` or `keep`.
    pub on_down: Option<String>,
    /// New flows per second allowed on this node, if limited.
    pub new_flow_rate_limit: Option<u32>,
    /// The sorry server, if any.
    pub fallback: Option<FallbackStatus>,
    /// Flows of every real and the fallback.
    pub active_flows: u64,
    /// Whether its address is announced (with `[announce]`).
    #[serde(default)]
    pub announced: Option<bool>,
    /// The reals.
    pub reals: Vec<RealStatus>,
}

/// `[vip.persistence]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persistence {
    /// How long a client keeps its real, in seconds.
    pub timeout_s: u64,
    /// Clients sharing this prefix length share a real.
    pub netmask: u8,
}

/// The sorry server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackStatus {
    /// Its address.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Packets forwarded to it.
    pub packets: u64,
    /// Flows scheduled to it.
    pub new_flows: u64,
    /// Its flows in the connection tables.
    pub active_flows: u64,
}

/// One real.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RealStatus {
    /// Its address.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Configured weight.
    pub weight: u32,
    /// `up`, `down`, `drain`, `disabled`, `overloaded` (at its
    /// `max_conns`: no new flows) or `removed` (taken out of the file by a
    /// reload, kept until its flows end): what the data plane does.
    pub state: String,
    /// `max_conns`, if set.
    #[serde(default)]
    pub max_conns: Option<u32>,
    /// `min_conns` in force (default `max_conns`), if `max_conns` is set.
    #[serde(default)]
    pub min_conns: Option<u32>,
    /// The operator's action in force (`drain`, `disable`), if any.
    pub admin: Option<String>,
    /// Its health check, if the VIP has checks.
    pub health: Option<CheckStatus>,
    /// Traffic.
    #[serde(flatten)]
    pub traffic: RealTraffic,
}

/// The health check of one real.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckStatus {
    /// `tcp`, `http`, `udp`.
    pub kind: String,
    /// Where the checks go (`address:port`): the real, or `[vip.health]`'s
    /// `address` / `port`.
    #[serde(default)]
    pub target: String,
    /// `up` or `down`.
    pub state: String,
    /// No verdict yet.
    pub pending: bool,
    /// Whether the last check passed.
    pub last_ok: Option<bool>,
    /// What the last check found.
    pub last_reason: String,
    /// How long the last check took, in milliseconds.
    pub last_latency_ms: Option<f64>,
    /// Consecutive passed checks.
    pub consecutive_successes: u32,
    /// Consecutive failed checks.
    pub consecutive_failures: u32,
    /// Checks run.
    pub total_checks: u64,
    /// Of which failed.
    pub total_failures: u64,
}

/// A worker's counters (frames, passes, hand-offs, connection sync).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCounters {
    /// Frames received from data ports.
    pub rx: u64,
    /// Frames sent on data ports.
    pub tx: u64,
    /// Frames forwarded.
    pub forwarded: u64,
    /// Frames answered in place.
    pub answered: u64,
    /// Frames passed to the kernel.
    pub to_kernel: u64,
    /// Frames the kernel sent.
    pub from_kernel: u64,
    /// Poll loop passes.
    pub polls: u64,
    /// Passes that found no frame.
    pub idle_polls: u64,
    /// TSC cycles spent in passes that found frames.
    pub busy_cycles: u64,
    /// Frames handed to the worker that owns their state.
    pub handoffs_out: u64,
    /// Frames other workers handed to this one.
    pub handoffs_in: u64,
    /// Connection sync: records sent.
    pub sync_records_sent: u64,
    /// Connection sync: datagrams sent.
    pub sync_batches_sent: u64,
    /// Connection sync: records never sent.
    pub sync_records_lost: u64,
    /// Connection sync: records received.
    pub sync_records_received: u64,
    /// Connection sync: records applied.
    pub sync_records_applied: u64,
    /// Connection sync: records refused.
    pub sync_records_rejected: u64,
    /// Connection sync: records for unknown services.
    pub sync_records_unknown_service: u64,
    /// Connection sync: records not passed on to another worker.
    pub sync_records_fanout_dropped: u64,
    /// Connection sync: datagrams missed.
    pub sync_batches_missed: u64,
    /// Connection sync: datagrams received from the peer, hellos included.
    #[serde(default)]
    pub sync_datagrams_received: u64,
    /// Connection sync: datagrams whose service-set fingerprint differs
    /// from ours.
    #[serde(default)]
    pub sync_config_differs: u64,
    /// `tcp_reset_on_idle`: RSTs sent to the ends of expired flows.
    #[serde(default)]
    pub idle_resets: u64,
    /// `tcp_reset_on_idle`: RSTs not sent (next hop unknown, no buffer,
    /// queue full).
    #[serde(default)]
    pub idle_resets_unsent: u64,
}

/// One worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Its index (= its queue on every port).
    pub worker: usize,
    /// Its lcore.
    pub lcore: u32,
    /// The CPU it runs on, if known.
    pub cpu: Option<usize>,
    /// Flows in its connection table.
    pub flows: u64,
    /// Generation of the snapshot it runs.
    pub generation: u64,
    /// Frames received per second, over the last second.
    pub rx_pps: u64,
    /// Frames sent per second.
    pub tx_pps: u64,
    /// Frames handed to other workers per second.
    pub handoffs_out_pps: u64,
    /// Counters.
    #[serde(flatten)]
    pub counters: WorkerCounters,
    /// Its connection table.
    #[serde(default)]
    pub conntrack: Conntrack,
}

/// Connection-table figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conntrack {
    /// Slots.
    pub capacity: u64,
    /// Flows.
    pub flows: u64,
    /// Half-open TCP flows.
    pub half_open: u64,
    /// Flows inserted.
    pub inserts: u64,
    /// Half-open flows evicted to make room.
    pub evictions_half_open: u64,
    /// Established flows evicted to make room.
    pub evictions_established: u64,
    /// Other flows evicted to make room.
    pub evictions_other: u64,
    /// New flows refused: full, nothing to evict.
    pub insert_failures: u64,
}

/// Where the threads run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementStatus {
    /// The main lcore.
    pub main_lcore: u32,
    /// CPUs of the control plane's threads.
    pub control_cpus: Vec<usize>,
    /// Worker lcores sharing a CPU with the control plane.
    pub workers_sharing_control_cpus: Vec<u32>,
}

/// The packet pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mbufs {
    /// Out of the pool (received, queued, in flight).
    pub in_use: u32,
    /// In the pool.
    pub available: u32,
    /// Both.
    pub capacity: u32,
}

/// One data port's device counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    /// `[[port]].name`.
    pub name: String,
    /// How frames reach the worker that owns them: `nic (source
    /// fields)`, `nic (destination fields)` (either with `, by flow
    /// rules`), `software: why`, `rss (no NAT traffic)` or `one worker`.
    #[serde(default)]
    pub steering: String,
    /// Frames received.
    pub rx_packets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Dropped for want of a descriptor.
    pub rx_missed: u64,
    /// Dropped for want of a buffer.
    pub rx_nombuf: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
}

/// The VRRP instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaStatus {
    /// `initialize`, `backup`, `master` or `fault`.
    pub state: String,
    /// The master's address, if known.
    pub master: Option<String>,
    /// Whether this node holds the VIPs.
    pub owner: bool,
    /// Configured priority.
    pub priority: u8,
    /// The priority adverts carry (254 while taken over).
    #[serde(default)]
    pub advertised_priority: u8,
    /// The operator's word: `auto` (the election), `takeover` or
    /// `release` (`ferrolb ha ...`).
    #[serde(default)]
    pub manual: String,
    /// Virtual router id.
    pub vrid: u8,
    /// Advert interval.
    pub advert_interval_ms: u64,
    /// Master-down interval.
    pub master_down_interval_ms: u64,
    /// Transitions to MASTER.
    pub transitions_to_master: u64,
    /// Transitions to BACKUP.
    pub transitions_to_backup: u64,
    /// Transitions to FAULT.
    pub transitions_to_fault: u64,
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Priority-0 adverts sent.
    pub priority_zero_sent: u64,
    /// Adverts received.
    pub adverts_received: u64,
    /// Adverts ignored as invalid.
    pub adverts_invalid: u64,
    /// Adverts dropped for their TTL / hop limit.
    pub adverts_dropped_ttl: u64,
    /// Priority-0 adverts received.
    pub priority_zero_received: u64,
    /// Adverts whose addresses differ from ours.
    pub address_mismatch: u64,
    /// Why the last invalid advert was.
    pub last_invalid: Option<String>,
    /// Announcement rounds sent.
    pub garp_rounds_sent: u64,
    /// When the last transition happened (Unix seconds).
    pub last_transition_unix: Option<u64>,
}

/// Connection sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The peer.
    pub peer: Option<String>,
    /// The UDP port.
    pub port: u16,
    /// Whether this node sends (MASTER) or receives.
    pub sending: bool,
    /// Records sent.
    pub records_sent: u64,
    /// Datagrams sent.
    pub batches_sent: u64,
    /// Records never sent.
    pub records_lost: u64,
    /// Records received.
    pub records_received: u64,
    /// Records applied.
    pub records_applied: u64,
    /// Records refused.
    pub records_rejected: u64,
    /// Records for unknown services.
    pub records_unknown_service: u64,
    /// Records not passed on to another worker.
    pub records_fanout_dropped: u64,
    /// Datagrams missed.
    pub batches_missed: u64,
    /// Datagrams received from the peer, hellos included.
    #[serde(default)]
    pub datagrams_received: u64,
    /// Datagrams whose service-set fingerprint differs from ours.
    #[serde(default)]
    pub config_differs: u64,
    /// The peer's service set against ours: `same`, `differs`, or
    /// `unknown` (nothing heard for 5 s, or a peer that does not say).
    #[serde(default)]
    pub peer_config: String,
    /// The peer's fingerprint, while it is heard.
    #[serde(default)]
    pub peer_fingerprint: Option<String>,
}

/// A neighbour cache entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbour {
    /// Its address.
    pub ip: String,
    /// Its MAC, once known.
    pub mac: Option<String>,
    /// Configured, never ages.
    pub permanent: bool,
}
