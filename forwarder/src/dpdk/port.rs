//! Ethernet ports: lookup by name, configuration, start/stop, bursts.

use std::ffi::CString;

use super::{Burst, DpdkError, Mempool, PortId, QueueId, BURST_SIZE};

/// How many times a TX burst is offered to the driver before the frames it
/// still refuses are freed (and counted by the caller).
const TX_RETRIES: usize = 3;

// RTE_ETH_RSS_* bits (function-like macros in C, so not in the bindings).
const RSS_IPV4: u64 = 1 << 2;
const RSS_FRAG_IPV4: u64 = 1 << 3;
const RSS_NONFRAG_IPV4_TCP: u64 = 1 << 4;
const RSS_NONFRAG_IPV4_UDP: u64 = 1 << 5;
const RSS_IPV6: u64 = 1 << 8;
const RSS_FRAG_IPV6: u64 = 1 << 9;
const RSS_NONFRAG_IPV6_TCP: u64 = 1 << 10;
const RSS_NONFRAG_IPV6_UDP: u64 = 1 << 11;
const RSS_L3_SRC_ONLY: u64 = 1 << 63;
const RSS_L3_DST_ONLY: u64 = 1 << 62;
const RSS_L4_SRC_ONLY: u64 = 1 << 61;
const RSS_L4_DST_ONLY: u64 = 1 << 60;
/// What ports hash on (as far as the device can): addresses, and ports
/// of TCP and UDP frames that are not fragments.
const RSS_TYPES: u64 = RSS_IPV4
    | RSS_FRAG_IPV4
    | RSS_NONFRAG_IPV4_TCP
    | RSS_NONFRAG_IPV4_UDP
    | RSS_IPV6
    | RSS_FRAG_IPV6
    | RSS_NONFRAG_IPV6_TCP
    | RSS_NONFRAG_IPV6_UDP;

/// Queue layout of a port.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// RX queues (one per worker).
    pub rx_queues: u16,
    /// TX queues (one per worker).
    pub tx_queues: u16,
    /// RX descriptors per queue.
    pub rx_desc: u16,
    /// TX descriptors per queue.
    pub tx_desc: u16,
    /// Receive frames for every MAC (needed on ports that see VIP traffic
    /// addressed to a floating MAC, and on af_packet labs).
    pub promiscuous: bool,
    /// The RSS key to program, so that the NIC's hash of a frame is the
    /// Toeplitz hash the connection table computes
    /// ([`crate::conntrack::toeplitz`]). With a key, RSS is on even with
    /// one RX queue (for the hash, not the spreading).
    pub rss_key: Option<[u8; RSS_KEY_LEN]>,
    /// With several RX queues: hash one side of each frame only, with
    /// [`crate::steer::STEER_KEY`], so that the queue a frame lands on is
    /// its owner ([`crate::steer`], hardware steering). Takes the place
    /// of `rss_key` where the device can; see [`Port::configure`].
    pub steer: Option<SteerSide>,
}

/// Which fields of a frame a steering port's NIC hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteerSide {
    /// Source address and port: a port that faces the clients of NAT
    /// services (and the remote hosts of outbound NAT).
    Source,
    /// Destination address and port: a port that faces NAT reals (and
    /// the sources of outbound NAT).
    Destination,
}

impl SteerSide {
    /// The RSS modifiers that restrict the hash to this side.
    fn bits(self) -> u64 {
        match self {
            SteerSide::Source => RSS_L3_SRC_ONLY | RSS_L4_SRC_ONLY,
            SteerSide::Destination => RSS_L3_DST_ONLY | RSS_L4_DST_ONLY,
        }
    }

    /// `source` or `destination`.
    pub fn fields(self) -> &'static str {
        match self {
            SteerSide::Source => "source",
            SteerSide::Destination => "destination",
        }
    }

    fn names(self) -> &'static str {
        match self {
            SteerSide::Source => "L3_SRC_ONLY, L4_SRC_ONLY",
            SteerSide::Destination => "L3_DST_ONLY, L4_DST_ONLY",
        }
    }
}

/// How a configured port spreads frames over its queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Steering {
    /// Not asked for (one queue, or a port without NAT traffic): RSS
    /// over whole flows, or nothing.
    Off,
    /// The NIC hashes this side with the steering key; the redirection
    /// table is still to be written ([`Port::program_reta`]).
    Nic(SteerSide),
    /// The NIC hashes whole flows with the steering key; the redirection
    /// table and the flow rules that narrow the hash to this side are
    /// still to be written ([`Port::program_reta`],
    /// [`Port::steer_by_flow_rules`]).
    NicFlowRules(SteerSide),
    /// Asked for, not possible on this device: why. Frames that land on
    /// another worker than their owner are handed over in software.
    Software(String),
}

/// How a device is asked to hash one side of the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteerBy {
    /// As the port's RSS setting: these types, with the one-side
    /// modifiers (the device lists them among its RSS offloads).
    Port(u64),
    /// The port's RSS over whole flows (these types), narrowed to one
    /// side by flow rules ([`Port::steer_by_flow_rules`]): devices that
    /// offer one-side hashing only through `rte_flow` (Intel's X710 and
    /// E810 families).
    FlowRules(u64),
}

/// How a device with `offloads` (its `flow_type_rss_offloads`), a
/// redirection table of `reta_size` entries and an RSS key of `key_size`
/// bytes is asked to steer by `side`, or why it cannot.
pub fn steer_types(
    offloads: u64,
    reta_size: u16,
    key_size: u8,
    side: SteerSide,
) -> Result<SteerBy, String> {
    let base = RSS_NONFRAG_IPV4_TCP | RSS_NONFRAG_IPV4_UDP;
    if offloads & base != base {
        return Err("does not hash IPv4 TCP and UDP frames (RSS)".into());
    }
    if !(40..=64).contains(&key_size) {
        return Err(format!(
            "takes an RSS key of {key_size} bytes (steering needs 40 to 64)"
        ));
    }
    if reta_size == 0 || usize::from(reta_size) % crate::steer::RETA_PERIOD != 0 {
        return Err(format!(
            "has a redirection table of {reta_size} entries (steering needs a multiple of {})",
            crate::steer::RETA_PERIOD
        ));
    }
    let types = RSS_TYPES & offloads;
    if offloads & side.bits() == side.bits() {
        Ok(SteerBy::Port(types | side.bits()))
    } else {
        Ok(SteerBy::FlowRules(types))
    }
}

/// Bytes of [`PortConfig::rss_key`].
pub const RSS_KEY_LEN: usize = crate::conntrack::toeplitz::KEY_LEN;

/// Whether a device can hash IPv4 TCP and UDP over addresses and ports
/// with a key of ours (one of 16 to 64 bytes).
fn rss_keyable(info: &dpdk_sys::rte_eth_dev_info) -> bool {
    let types = RSS_NONFRAG_IPV4_TCP | RSS_NONFRAG_IPV4_UDP;
    info.flow_type_rss_offloads & types == types && (16..=64).contains(&key_size(info))
}

/// The device's RSS key size; a PMD that reports none (net_null) is
/// given 40 bytes, which the read-back then confirms or not.
fn key_size(info: &dpdk_sys::rte_eth_dev_info) -> u8 {
    match info.hash_key_size {
        0 => RSS_KEY_LEN as u8,
        n => n,
    }
}

/// The key as long as any device takes: ours, repeated (52 bytes on
/// X710 / E810; the bytes past 40 only reach inputs longer than IPv4's).
fn padded_key(k: &[u8; RSS_KEY_LEN]) -> [u8; 64] {
    std::array::from_fn(|i| k[i % RSS_KEY_LEN])
}

/// What [`Port::rss_key_state`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RssState {
    /// The NIC hashes IPv4 TCP and UDP frames over addresses and ports
    /// with [`PortConfig::rss_key`] (read back after configuring): its
    /// hash may stand for the connection table's.
    pub v4_with_key: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            promiscuous: true,
            rss_key: None,
            steer: None,
        }
    }
}

/// Link state of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
}

pub use crate::stats::PortStats;

/// An ethdev port, found by name. Stopping and closing are explicit
/// ([`Port::stop`], [`Port::close`]) because the order matters: workers
/// first, then ports, then pools, then EAL.
#[derive(Debug, Clone)]
pub struct Port {
    id: PortId,
    name: String,
}

impl Port {
    /// Finds a port by its DPDK device name (`net_af_packet0`, a PCI
    /// address such as `0000:01:00.0`, ...).
    pub fn by_name(name: &str) -> Result<Port, DpdkError> {
        let cname = CString::new(name)
            .map_err(|_| DpdkError::new(format!("find port {name:?}"), libc::EINVAL))?;
        let mut id: u16 = 0;
        // SAFETY: cname is a valid C string; id is a valid out-pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if rc != 0 {
            return Err(DpdkError::new(
                format!("find DPDK port {name:?} (is it in eal_args, e.g. --vdev or -a?)"),
                rc,
            ));
        }
        Ok(Port {
            id: PortId(id),
            name: name.to_string(),
        })
    }

    /// The port's id.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// The device name it was found by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Configures the queues (RSS across RX queues when more than one, or
    /// with [`PortConfig::rss_key`]) and sets them up with `pool`; the
    /// port is left stopped. With [`PortConfig::steer`] and several
    /// queues, the device is asked to hash that side only with the
    /// steering key; one that cannot is configured as without it, and the
    /// result says why. A device that refuses the key is configured
    /// without it (logged); [`Port::rss_key_state`], once the port has
    /// started, says what it hashes with.
    pub fn configure(&self, cfg: &PortConfig, pool: &Mempool) -> Result<Steering, DpdkError> {
        let p = self.id.0;
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid out-pointer; the port id was validated.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(p, &mut info) };
        if rc != 0 {
            return Err(DpdkError::new(format!("get info of {}", self.name), rc));
        }
        let mut steering = Steering::Off;
        let mut steer = None;
        if let (Some(side), true) = (cfg.steer, cfg.rx_queues > 1) {
            match steer_types(
                info.flow_type_rss_offloads,
                info.reta_size,
                key_size(&info),
                side,
            ) {
                Ok(by) => steer = Some((side, by)),
                Err(why) => steering = Steering::Software(format!("{} {why}", self.name)),
            }
        }
        let keyed = cfg.rss_key.is_some() && rss_keyable(&info);
        let port_conf = |steer: Option<u64>, keyed: bool| {
            let mut conf = dpdk_sys::rte_eth_conf::default();
            if cfg.rx_queues > 1 || keyed {
                conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = RSS_TYPES & info.flow_type_rss_offloads;
            }
            let key = match (steer, cfg.rss_key) {
                (Some(types), _) => {
                    conf.rx_adv_conf.rss_conf.rss_hf = types;
                    Some(std::array::from_fn(|i| {
                        crate::steer::STEER_KEY[i % crate::steer::STEER_KEY.len()]
                    }))
                }
                (None, Some(k)) if keyed => Some(padded_key(&k)),
                _ => None,
            };
            if let Some(key) = key {
                // DPDK keeps the pointer, and some PMDs read the key only
                // when the port starts: the bytes must outlive this call.
                // 64 bytes per configuration, for the life of the process.
                let key: &'static mut [u8; 64] = Box::leak(Box::new(key));
                conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                conf.rx_adv_conf.rss_conf.rss_key_len = key_size(&info);
            }
            conf
        };
        let configure = |conf: &dpdk_sys::rte_eth_conf| {
            // SAFETY: conf is a valid, initialised rte_eth_conf; its key
            // pointer (if any) points to 64 bytes that live forever, and
            // its key length is at most 64 (rss_keyable, steer_types).
            unsafe { dpdk_sys::rte_eth_dev_configure(p, cfg.rx_queues, cfg.tx_queues, conf) }
        };
        let mut rc = -1;
        if let Some((side, by)) = steer {
            let types = match by {
                SteerBy::Port(t) | SteerBy::FlowRules(t) => t,
            };
            rc = configure(&port_conf(Some(types), false));
            steering = if rc != 0 {
                Steering::Software(format!(
                    "{} refused to hash {} fields only ({})",
                    self.name,
                    side.fields(),
                    DpdkError::new("configure", rc)
                ))
            } else if let SteerBy::FlowRules(_) = by {
                Steering::NicFlowRules(side)
            } else {
                Steering::Nic(side)
            };
        }
        if rc != 0 {
            rc = configure(&port_conf(None, keyed));
        }
        if rc != 0 && keyed {
            tracing::warn!(
                "{}: refused RSS key ({}); configured without it",
                self.name,
                DpdkError::new("configure", rc)
            );
            rc = configure(&port_conf(None, false));
        }
        if rc != 0 {
            return Err(DpdkError::new(
                format!(
                    "configure {} with {} rx / {} tx queues",
                    self.name, cfg.rx_queues, cfg.tx_queues
                ),
                rc,
            ));
        }
        let mut rxd = cfg.rx_desc;
        let mut txd = cfg.tx_desc;
        // SAFETY: valid in/out pointers to u16.
        let rc = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(p, &mut rxd, &mut txd) };
        if rc != 0 {
            return Err(DpdkError::new(
                format!("adjust descriptors of {}", self.name),
                rc,
            ));
        }
        // SAFETY: no preconditions beyond a valid port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(p) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..cfg.rx_queues {
            // SAFETY: the pool outlives the port's use of it (caller stops
            // the port before dropping the pool); NULL conf = defaults.
            let rc = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(p, q, rxd, socket, std::ptr::null(), pool.as_ptr())
            };
            if rc != 0 {
                return Err(DpdkError::new(
                    format!("set up rx queue {q} of {}", self.name),
                    rc,
                ));
            }
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: NULL conf = driver defaults.
            let rc =
                unsafe { dpdk_sys::rte_eth_tx_queue_setup(p, q, txd, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(DpdkError::new(
                    format!("set up tx queue {q} of {}", self.name),
                    rc,
                ));
            }
        }
        if cfg.promiscuous {
            // SAFETY: valid port id. Some PMDs (e.g. net_null) do not
            // support it; that is not an error for us.
            let _ = unsafe { dpdk_sys::rte_eth_promiscuous_enable(p) };
        }
        Ok(steering)
    }

    /// Writes the redirection table that makes the NIC's queue for a hash
    /// the worker [`crate::steer::Steer::client_owner`] names for it
    /// ([`crate::steer::Steer::reta`], `queues` queues), and reads it back;
    /// the error says why the table is not as written.
    pub fn program_reta(&self, queues: u16) -> Result<(), String> {
        let p = self.id.0;
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid out-pointer; the port id was validated.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(p, &mut info) };
        if rc != 0 {
            return Err(format!("{}: {}", self.name, DpdkError::new("get info", rc)));
        }
        const GROUP: usize = dpdk_sys::RTE_ETH_RETA_GROUP_SIZE as usize;
        // Some PMDs shrink the table to the queue count once configured
        // (a power of two below 64) and grow it again on a larger update:
        // such a table is written with 64 entries.
        let size = match usize::from(info.reta_size) {
            n if n > 0 && n % crate::steer::RETA_PERIOD == 0 => n,
            _ => crate::steer::RETA_PERIOD,
        };
        let len = size as u16;
        let want = crate::steer::Steer::reta(size, queues);
        let mut groups: Vec<dpdk_sys::rte_eth_rss_reta_entry64> = want
            .chunks(GROUP)
            .map(|c| {
                let mut g = dpdk_sys::rte_eth_rss_reta_entry64 {
                    mask: u64::MAX,
                    reta: [0; GROUP],
                };
                g.reta[..c.len()].copy_from_slice(c);
                g
            })
            .collect();
        // SAFETY: `groups` holds size / 64 groups of 64 entries, every
        // mask bit set, which is what a table of `size` (= `len`) entries
        // takes.
        let rc = unsafe { dpdk_sys::rte_eth_dev_rss_reta_update(p, groups.as_mut_ptr(), len) };
        if rc != 0 {
            return Err(format!(
                "{} refused the redirection table ({})",
                self.name,
                DpdkError::new("reta update", rc)
            ));
        }
        for g in &mut groups {
            g.reta = [u16::MAX; GROUP];
        }
        // SAFETY: as above; the PMD fills the entries the masks name.
        let rc =
            unsafe { dpdk_sys::rte_eth_dev_rss_reta_query(p, groups.as_mut_ptr(), info.reta_size) };
        if rc != 0 {
            return Err(format!(
                "{}: {}",
                self.name,
                DpdkError::new("read the redirection table back", rc)
            ));
        }
        let got: Vec<u16> = groups.iter().flat_map(|g| g.reta).collect();
        match got.iter().zip(&want).position(|(g, w)| g != w) {
            None => Ok(()),
            Some(i) => Err(format!(
                "{}'s redirection table reads back {} at entry {i}, not {}",
                self.name, got[i], want[i]
            )),
        }
    }

    /// The most RX queues the device offers.
    pub fn max_rx_queues(&self) -> Result<u16, DpdkError> {
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid out-pointer; the port id was validated.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(self.id.0, &mut info) };
        if rc != 0 {
            return Err(DpdkError::new(format!("get info of {}", self.name), rc));
        }
        Ok(info.max_rx_queues)
    }

    /// Whether the started port hashes IPv4 TCP and UDP frames over
    /// addresses and ports with `key` (configured with it, see
    /// [`PortConfig::rss_key`]). Read back from the device; if it holds
    /// another key (a PMD that applies the configured key late, or not
    /// at all), the key is set once more and read back again.
    pub fn rss_key_state(&self, key: &[u8; RSS_KEY_LEN]) -> RssState {
        let p = self.id.0;
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid out-pointer; the port id was validated.
        if unsafe { dpdk_sys::rte_eth_dev_info_get(p, &mut info) } != 0 || !rss_keyable(&info) {
            return RssState::default();
        }
        let want = padded_key(key);
        let len = usize::from(key_size(&info));
        let types = RSS_NONFRAG_IPV4_TCP | RSS_NONFRAG_IPV4_UDP;
        let read = || {
            let mut got = [0u8; 64];
            let mut conf = dpdk_sys::rte_eth_rss_conf {
                rss_key: got.as_mut_ptr(),
                rss_key_len: len as u8,
                rss_hf: 0,
            };
            // SAFETY: valid port id; the key buffer holds 64 bytes, at
            // least rss_key_len, which the PMD fills.
            let rc = unsafe { dpdk_sys::rte_eth_dev_rss_hash_conf_get(p, &mut conf) };
            // Both sides hashed (not what a steering configuration left).
            let one_side = RSS_L3_SRC_ONLY | RSS_L3_DST_ONLY | RSS_L4_SRC_ONLY | RSS_L4_DST_ONLY;
            rc == 0
                && conf.rss_hf & types == types
                && conf.rss_hf & one_side == 0
                && got[..len] == want[..len]
        };
        if read() {
            return RssState { v4_with_key: true };
        }
        let mut bytes = want;
        let mut conf = dpdk_sys::rte_eth_rss_conf {
            rss_key: bytes.as_mut_ptr(),
            rss_key_len: len as u8,
            rss_hf: RSS_TYPES & info.flow_type_rss_offloads,
        };
        // SAFETY: valid port id; the key buffer holds 64 bytes, at least
        // rss_key_len, and the PMD copies it during the call.
        let rc = unsafe { dpdk_sys::rte_eth_dev_rss_hash_update(p, &mut conf) };
        let ok = rc == 0 && read();
        if !ok {
            tracing::info!(
                "{}: the NIC's RSS hash is not reused for the connection table (key update: {rc})",
                self.name
            );
        }
        RssState { v4_with_key: ok }
    }

    /// Installs the flow rules that narrow the port's RSS (over whole
    /// flows, with the steering key) to `side`'s address and port, for
    /// IPv4 TCP and UDP and, where the port hashes them, IPv6: an
    /// `rte_flow` RSS action per pattern that sets only the types, so the
    /// port's key and redirection table stay in use. Each rule is
    /// validated, then created; on any refusal the rules already made are
    /// flushed and the error names the rule and the device's reason.
    pub fn steer_by_flow_rules(&self, side: SteerSide) -> Result<usize, String> {
        use dpdk_sys::*;
        let p = self.id.0;
        let mut info = rte_eth_dev_info::default();
        // SAFETY: info is a valid out-pointer; the port id was validated.
        let rc = unsafe { rte_eth_dev_info_get(p, &mut info) };
        if rc != 0 {
            return Err(format!("{}: {}", self.name, DpdkError::new("get info", rc)));
        }
        let rules = [
            (
                "IPv4 TCP",
                rte_flow_item_type_RTE_FLOW_ITEM_TYPE_IPV4,
                rte_flow_item_type_RTE_FLOW_ITEM_TYPE_TCP,
                RSS_NONFRAG_IPV4_TCP,
            ),
            (
                "IPv4 UDP",
                rte_flow_item_type_RTE_FLOW_ITEM_TYPE_IPV4,
                rte_flow_item_type_RTE_FLOW_ITEM_TYPE_UDP,
                RSS_NONFRAG_IPV4_UDP,
            ),
            (
                "IPv6 TCP",
                rte_flow_item_type_RTE_FLOW_ITEM_TYPE_IPV6,
                rte_flow_item_type_RTE_FLOW_ITEM_TYPE_TCP,
                RSS_NONFRAG_IPV6_TCP,
            ),
            (
                "IPv6 UDP",
                rte_flow_item_type_RTE_FLOW_ITEM_TYPE_IPV6,
                rte_flow_item_type_RTE_FLOW_ITEM_TYPE_UDP,
                RSS_NONFRAG_IPV6_UDP,
            ),
        ];
        let item = |t: rte_flow_item_type| rte_flow_item {
            type_: t,
            spec: std::ptr::null(),
            last: std::ptr::null(),
            mask: std::ptr::null(),
        };
        let mut attr = rte_flow_attr::default();
        attr.set_ingress(1);
        let mut made = 0;
        for (what, l3, l4, ty) in rules {
            if info.flow_type_rss_offloads & ty == 0 {
                continue;
            }
            let pattern = [
                item(rte_flow_item_type_RTE_FLOW_ITEM_TYPE_ETH),
                item(l3),
                item(l4),
                item(rte_flow_item_type_RTE_FLOW_ITEM_TYPE_END),
            ];
            let rss = rte_flow_action_rss {
                func: rte_eth_hash_function_RTE_ETH_HASH_FUNCTION_DEFAULT,
                level: 0,
                types: ty | side.bits(),
                key_len: 0,
                queue_num: 0,
                key: std::ptr::null(),
                queue: std::ptr::null(),
            };
            let actions = [
                rte_flow_action {
                    type_: rte_flow_action_type_RTE_FLOW_ACTION_TYPE_RSS,
                    conf: (&rss as *const rte_flow_action_rss).cast(),
                },
                rte_flow_action {
                    type_: rte_flow_action_type_RTE_FLOW_ACTION_TYPE_END,
                    conf: std::ptr::null(),
                },
            ];
            // SAFETY: an all-zero rte_flow_error is its documented empty
            // state (no cause, no message).
            let mut err: rte_flow_error = unsafe { std::mem::zeroed() };
            // SAFETY: attr, pattern (END-terminated) and actions
            // (END-terminated, the RSS conf alive for the call) are valid
            // for the call; err is a valid out-pointer.
            let mut rc = unsafe {
                rte_flow_validate(p, &attr, pattern.as_ptr(), actions.as_ptr(), &mut err)
            };
            let mut flow = std::ptr::null_mut();
            if rc == 0 {
                // SAFETY: as above; DPDK copies what it keeps.
                flow = unsafe {
                    rte_flow_create(p, &attr, pattern.as_ptr(), actions.as_ptr(), &mut err)
                };
                if flow.is_null() {
                    rc = -super::rte_errno();
                }
            }
            if flow.is_null() {
                let message = if err.message.is_null() {
                    String::new()
                } else {
                    // SAFETY: a non-null message is a NUL-terminated
                    // static string of the PMD's.
                    let m = unsafe { std::ffi::CStr::from_ptr(err.message) };
                    format!(": {}", m.to_string_lossy())
                };
                // SAFETY: err is a valid out-pointer; flushing a port
                // with no rules (or without flow support) is harmless.
                unsafe { rte_flow_flush(p, &mut err) };
                return Err(format!(
                    "{} refused the flow rule that hashes {what} frames on {} fields only, {} ({}{message})",
                    self.name,
                    side.fields(),
                    side.names(),
                    DpdkError::new("rte_flow", rc)
                ));
            }
            made += 1;
        }
        Ok(made)
    }

    /// Starts the port.
    pub fn start(&self) -> Result<(), DpdkError> {
        // SAFETY: configured port (otherwise DPDK returns an error).
        let rc = unsafe { dpdk_sys::rte_eth_dev_start(self.id.0) };
        if rc != 0 {
            return Err(DpdkError::new(format!("start {}", self.name), rc));
        }
        Ok(())
    }

    /// Stops the port (no more rx/tx on it afterwards).
    pub fn stop(&self) -> Result<(), DpdkError> {
        // SAFETY: an all-zero rte_flow_error is its empty state; flushing
        // a port without rules or flow support only returns an error,
        // which does not matter here.
        unsafe {
            let mut err: dpdk_sys::rte_flow_error = std::mem::zeroed();
            dpdk_sys::rte_flow_flush(self.id.0, &mut err);
        }
        // SAFETY: valid port id; callers stopped the workers polling it.
        let rc = unsafe { dpdk_sys::rte_eth_dev_stop(self.id.0) };
        if rc != 0 {
            return Err(DpdkError::new(format!("stop {}", self.name), rc));
        }
        Ok(())
    }

    /// Closes the port, releasing its queues (and, for vdevs like net_tap,
    /// the kernel interface).
    pub fn close(&self) -> Result<(), DpdkError> {
        // SAFETY: valid port id; stopped by the caller.
        let rc = unsafe { dpdk_sys::rte_eth_dev_close(self.id.0) };
        if rc != 0 {
            return Err(DpdkError::new(format!("close {}", self.name), rc));
        }
        Ok(())
    }

    /// The port's MAC address.
    pub fn mac(&self) -> Result<[u8; 6], DpdkError> {
        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: addr is a valid out-pointer.
        let rc = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id.0, &mut addr) };
        if rc != 0 {
            return Err(DpdkError::new(format!("read MAC of {}", self.name), rc));
        }
        Ok(addr.addr_bytes)
    }

    /// The link state, without waiting.
    pub fn link(&self) -> Result<LinkStatus, DpdkError> {
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: link is a valid out-pointer.
        let rc = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id.0, &mut link) };
        if rc != 0 {
            return Err(DpdkError::new(format!("read link of {}", self.name), rc));
        }
        Ok(LinkStatus {
            up: link.link_status() != 0,
            speed_mbps: link.link_speed,
        })
    }

    /// The device counters.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: s is a valid out-pointer.
        let rc = unsafe { dpdk_sys::rte_eth_stats_get(self.id.0, &mut s) };
        if rc != 0 {
            return Err(DpdkError::new(format!("read stats of {}", self.name), rc));
        }
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Receives up to [`BURST_SIZE`] frames into an empty `burst`; returns
    /// how many arrived.
    #[inline]
    pub fn rx_burst(&self, queue: QueueId, burst: &mut Burst) -> usize {
        if !burst.is_empty() {
            return 0;
        }
        let slots = burst.raw_slots();
        // SAFETY: slots has room for BURST_SIZE pointers; the queue was set
        // up by configure() and only this lcore polls it.
        let n = unsafe { dpdk_sys::rte_eth_rx_burst(self.id.0, queue.0, slots, BURST_SIZE as u16) };
        let n = usize::from(n);
        // SAFETY: the driver wrote n valid mbufs that we now own.
        unsafe { burst.set_len(n) };
        n
    }

    /// Sends the frames of `burst`. The driver takes a prefix of them; the
    /// rest are offered again up to a bounded number of times and then
    /// freed. Returns (sent, freed unsent). The burst is empty afterwards.
    #[inline]
    pub fn tx_burst(&self, queue: QueueId, burst: &mut Burst) -> (usize, usize) {
        let mut sent = 0;
        for _ in 0..TX_RETRIES {
            if burst.is_empty() {
                break;
            }
            let (ptrs, len) = burst.raw_frames();
            // SAFETY: ptrs holds len owned mbufs; the driver takes ownership
            // of the first n it returns, which consumed() forgets exactly.
            let n = unsafe { dpdk_sys::rte_eth_tx_burst(self.id.0, queue.0, ptrs, len as u16) };
            let n = usize::from(n);
            burst.consumed(n);
            sent += n;
            if n == 0 {
                break;
            }
        }
        let dropped = burst.free_all();
        (sent, dropped)
    }
}

/// Creates a virtual device (e.g. `net_tap0` with `iface=fl0`) after EAL
/// init and returns its port.
pub fn create_vdev(name: &str, args: &str) -> Result<Port, DpdkError> {
    let cname = CString::new(name)
        .map_err(|_| DpdkError::new(format!("create vdev {name:?}"), libc::EINVAL))?;
    let cargs = CString::new(args)
        .map_err(|_| DpdkError::new(format!("create vdev {name:?} args {args:?}"), libc::EINVAL))?;
    // SAFETY: both are valid C strings for the call; EAL is initialised.
    let rc = unsafe { dpdk_sys::rte_vdev_init(cname.as_ptr(), cargs.as_ptr()) };
    if rc != 0 {
        return Err(DpdkError::new(format!("create vdev {name} ({args})"), rc));
    }
    Port::by_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: u64 = RSS_NONFRAG_IPV4_TCP | RSS_NONFRAG_IPV4_UDP;

    #[test]
    fn steering_asks_for_one_side_of_what_the_device_hashes() {
        let all = RSS_TYPES | RSS_L3_SRC_ONLY | RSS_L4_SRC_ONLY | RSS_L3_DST_ONLY | RSS_L4_DST_ONLY;
        assert_eq!(
            steer_types(all, 512, 52, SteerSide::Source),
            Ok(SteerBy::Port(RSS_TYPES | RSS_L3_SRC_ONLY | RSS_L4_SRC_ONLY))
        );
        assert_eq!(
            steer_types(
                V4 | RSS_L3_DST_ONLY | RSS_L4_DST_ONLY,
                128,
                40,
                SteerSide::Destination
            ),
            Ok(SteerBy::Port(V4 | RSS_L3_DST_ONLY | RSS_L4_DST_ONLY))
        );
        // Without the modifiers among the port's offloads: whole flows,
        // narrowed by flow rules.
        assert_eq!(
            steer_types(RSS_TYPES, 512, 52, SteerSide::Source),
            Ok(SteerBy::FlowRules(RSS_TYPES))
        );
    }

    #[test]
    fn steering_names_what_the_device_lacks() {
        let e = steer_types(0, 0, 40, SteerSide::Source).unwrap_err();
        assert!(e.contains("does not hash IPv4 TCP and UDP"), "{e}");
        let src_only = V4 | RSS_L3_SRC_ONLY | RSS_L4_SRC_ONLY;
        let e = steer_types(src_only, 0, 40, SteerSide::Source).unwrap_err();
        assert!(e.contains("redirection table of 0 entries"), "{e}");
        let e = steer_types(src_only, 96, 40, SteerSide::Source).unwrap_err();
        assert!(
            e.contains("96 entries (steering needs a multiple of 64)"),
            "{e}"
        );
        for k in [16u8, 39, 65] {
            let e = steer_types(src_only, 512, k, SteerSide::Source).unwrap_err();
            assert!(e.contains(&format!("RSS key of {k} bytes")), "{e}");
        }
    }
}
