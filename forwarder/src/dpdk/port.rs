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
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            promiscuous: true,
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

    /// Configures the queues (RSS across RX queues when more than one) and
    /// sets them up with `pool`; the port is left stopped.
    pub fn configure(&self, cfg: &PortConfig, pool: &Mempool) -> Result<(), DpdkError> {
        let p = self.id.0;
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid out-pointer; the port id was validated.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(p, &mut info) };
        if rc != 0 {
            return Err(DpdkError::new(format!("get info of {}", self.name), rc));
        }
        let mut conf = dpdk_sys::rte_eth_conf::default();
        if cfg.rx_queues > 1 {
            let want = RSS_IPV4
                | RSS_FRAG_IPV4
                | RSS_NONFRAG_IPV4_TCP
                | RSS_NONFRAG_IPV4_UDP
                | RSS_IPV6
                | RSS_FRAG_IPV6
                | RSS_NONFRAG_IPV6_TCP
                | RSS_NONFRAG_IPV6_UDP;
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = want & info.flow_type_rss_offloads;
        }
        // SAFETY: conf is a valid, initialised rte_eth_conf.
        let rc = unsafe { dpdk_sys::rte_eth_dev_configure(p, cfg.rx_queues, cfg.tx_queues, &conf) };
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
        Ok(())
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
