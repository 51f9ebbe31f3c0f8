//! Bringing the data plane up and down: EAL, the packet pool, data ports
//! with their exception TAPs, and the worker lcores.
//!
//! Tear-down order is the reverse of set-up and is the same whether the
//! data plane stops normally or start-up fails half-way ([`Dataplane`]'s
//! `Drop`): stop the workers, stop and close the ports (closing a TAP
//! removes its kernel interface), free the pool, clean up EAL.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::conntrack::toeplitz::KEY_LEN as RSS_KEY_LEN;
use crate::dpdk::{
    self, Eal, HandoffRx, HandoffTx, LcoreId, Mempool, Port, PortConfig, QueueId, RssState,
    SteerSide, Steering,
};
use crate::neigh::NeighTable;
use crate::packet::MacAddr;
use crate::pipeline::limit::NodeLimits;
use crate::pipeline::Snapshot;
use crate::steer::{Steer, RING_CAPACITY};
use crate::sync::{self, Inbox};
use crate::worker::{SharedSnapshot, Worker, WorkerPort, WorkerShared};

/// Descriptors per RX and TX queue.
const RING_DESC: u16 = 1024;
/// Neighbour cache slots.
const NEIGH_SLOTS: usize = 4096;

/// One data port to bring up.
#[derive(Debug, Clone)]
pub struct PortSpec {
    /// Config name (for messages).
    pub name: String,
    /// DPDK device name or PCI address.
    pub device: String,
    /// Kernel name of its exception TAP.
    pub tap_iface: String,
    /// Which flows' owners its frames name, for hardware steering.
    pub role: PortRole,
}

pub use crate::steer::{PortRole, SteeringMode};

/// Everything the data plane needs to start.
#[derive(Debug, Clone)]
pub struct DataplaneSpec {
    /// Arguments for `rte_eal_init`.
    pub eal_args: Vec<String>,
    /// Worker lcores to run.
    pub workers: u16,
    /// Back-off when a poll finds nothing.
    pub idle_sleep: Option<Duration>,
    /// Mbufs in the pool (default: enough for every queue).
    pub mbufs: Option<u32>,
    /// Flows per worker.
    pub conn_capacity: u32,
    /// Data ports, in the order of the snapshot's ports.
    pub ports: Vec<PortSpec>,
    /// Configured neighbours (a real's `mac`).
    pub static_neigh: Vec<(IpAddr, MacAddr)>,
    /// Connection sync is configured: with several workers, give each a
    /// [`Inbox`] per other worker (synced flows go to the worker that
    /// owns them, or to every worker).
    pub sync: bool,
    /// CPUs for the control plane's threads (health checks, admin API,
    /// VRRP, the control loop); empty: the main lcore's.
    pub housekeeping_cpus: Vec<usize>,
    /// Hardware steering.
    pub steering: SteeringMode,
}
pub use crate::stats::Placement;

/// Why the data plane did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// EAL refused its arguments.
    #[error(transparent)]
    Eal(#[from] dpdk::EalError),
    /// A DPDK call failed.
    #[error(transparent)]
    Dpdk(#[from] dpdk::DpdkError),
    /// `[dataplane].steering = "nic"` and a port cannot steer.
    #[error("[dataplane].steering = \"nic\" but port {port} cannot steer in the NIC: {why} (use \"auto\" to hand such frames over in software)")]
    Steering {
        /// `[[port]].name`.
        port: String,
        /// Why.
        why: String,
    },
    /// The lcores EAL enabled do not match the workers.
    #[error("[dataplane].workers = {workers} needs {need} lcores (the main lcore and one per worker) but [dataplane].eal_args enable {have} (-l / --lcores): make them match")]
    Lcores {
        /// Workers asked for.
        workers: u16,
        /// Lcores needed.
        need: u32,
        /// Lcores EAL enabled.
        have: u32,
    },
    /// The configuration uses a device twice.
    #[error("port {0:?}: {1}")]
    Port(String, String),
    /// A device cannot give every worker a queue of its own.
    #[error("port {port:?} (device {device}) gives at most {max} RX queue(s) but [dataplane].workers = {workers} needs one per worker: give the device more queues (af_packet: qpairs={workers} in its --vdev) or lower [dataplane].workers")]
    Queues {
        /// The `[[port]]` name.
        port: String,
        /// Its device.
        device: String,
        /// RX queues the device offers.
        max: u16,
        /// Workers configured.
        workers: u16,
    },
}

/// A running data plane. Dropping it stops everything (see module docs).
pub struct Dataplane {
    stop: Arc<AtomicBool>,
    lcores: Vec<LcoreId>,
    ports: Vec<(Port, Port)>,
    /// Per data port: its NIC hashes IPv4 flows with `rss_key`.
    rss: Vec<RssState>,
    /// The RSS key of every data port and every worker's connection
    /// table (random per start).
    rss_key: [u8; RSS_KEY_LEN],
    macs: Vec<MacAddr>,
    placement: Placement,
    shared: Vec<Arc<WorkerShared>>,
    neigh: Arc<NeighTable>,
    snapshot: Option<Arc<SharedSnapshot>>,
    pool: Option<Arc<Mempool>>,
    eal: Option<Eal>,
}

/// After the port started: writes what a steering configuration still
/// needs (the redirection table, the flow rules), or says why the port
/// steers in software (also where clients and reals share it).
fn finish_steering(
    nic: &Port,
    steering: Steering,
    ps: &PortSpec,
    spec: &DataplaneSpec,
    queues: u16,
) -> Steering {
    match steering {
        Steering::Nic(side) => match nic.program_reta(queues) {
            Ok(()) => Steering::Nic(side),
            Err(why) => Steering::Software(why),
        },
        Steering::NicFlowRules(side) => {
            let rules = || nic.steer_by_flow_rules(side).map(|_| ());
            match nic.program_reta(queues).and_then(|()| rules()) {
                Ok(()) => Steering::NicFlowRules(side),
                Err(why) => Steering::Software(why),
            }
        }
        Steering::Off
            if queues > 1
                && ps.role == PortRole::Both
                && spec.steering != SteeringMode::Software =>
        {
            Steering::Software(format!(
                "requests to VIPs and NAT reals' frames share port {}: a NIC hashes one side of the frames per port",
                ps.name
            ))
        }
        s => s,
    }
}

/// How a port's frames reach their owners, as the log and the status say.
fn describe_steering(steering: &Steering, spec: &DataplaneSpec) -> String {
    match steering {
        Steering::Nic(side) => format!("nic ({} fields)", side.fields()),
        Steering::NicFlowRules(side) => format!("nic ({} fields, by flow rules)", side.fields()),
        Steering::Software(why) => format!("software: {why}"),
        Steering::Off if spec.workers > 1 && spec.steering == SteeringMode::Software => {
            "software ([dataplane].steering)".to_string()
        }
        Steering::Off if spec.workers > 1 => "rss (no NAT traffic)".to_string(),
        Steering::Off => "one worker".to_string(),
    }
}

impl Dataplane {
    /// Initialises EAL and brings up the ports (not yet the workers: the
    /// first snapshot needs the ports' MACs, see [`Dataplane::run`]).
    pub fn start(spec: &DataplaneSpec) -> Result<Dataplane, StartError> {
        let eal = Eal::init(&spec.eal_args)?;
        let mut dp = Dataplane {
            stop: Arc::new(AtomicBool::new(false)),
            lcores: Vec::new(),
            ports: Vec::new(),
            rss: Vec::new(),
            rss_key: crate::conntrack::toeplitz::random_key(),
            macs: Vec::new(),
            placement: Placement::default(),
            shared: Vec::new(),
            neigh: Arc::new(NeighTable::new(NEIGH_SLOTS)),
            snapshot: None,
            pool: None,
            eal: Some(eal),
        };
        dp.place(spec)?;
        dp.bring_up_ports(spec)?;
        Ok(dp)
    }

    /// Keeps the control plane's threads (this one, and every thread it
    /// starts from now on) off the workers' CPUs: on the housekeeping
    /// CPUs when configured, else on the main lcore's; logs the layout
    /// and warns when a worker shares a CPU with the control plane.
    fn place(&mut self, spec: &DataplaneSpec) -> Result<(), StartError> {
        let control_cpus = if spec.housekeeping_cpus.is_empty() {
            dpdk::thread_cpus()
        } else {
            dpdk::pin_thread(&spec.housekeeping_cpus)?;
            spec.housekeeping_cpus.clone()
        };
        let workers: Vec<(u32, Option<usize>)> = dpdk::worker_lcores()
            .into_iter()
            .take(usize::from(spec.workers.max(1)))
            .map(|l| (l.0, dpdk::lcore_cpu(l)))
            .collect();
        self.placement = Placement {
            main_lcore: dpdk::main_lcore().0,
            control_cpus,
            workers,
            steering: Vec::new(),
        };
        let p = &self.placement;
        tracing::info!(
            main_lcore = p.main_lcore,
            control_cpus = ?p.control_cpus,
            workers = ?p.workers.iter().map(|(l, c)| format!("lcore {l} on CPU {}", c.map_or("?".into(), |c| c.to_string()))).collect::<Vec<_>>(),
            "placement: control-plane threads{}",
            if spec.housekeeping_cpus.is_empty() { " on the main lcore's CPUs" } else { " on [dataplane].housekeeping_cpus" }
        );
        let shared = p.shared();
        if !shared.is_empty() {
            tracing::warn!(
                lcores = ?shared,
                "worker lcore(s) share a CPU with the control plane: on a machine with CPUs to spare, give the workers CPUs of their own (-l / --lcores) and the control plane others ([dataplane].housekeeping_cpus)"
            );
        }
        Ok(())
    }

    /// Where the control plane and the workers run.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    fn bring_up_ports(&mut self, spec: &DataplaneSpec) -> Result<(), StartError> {
        let workers = spec.workers.max(1);
        let have = dpdk::worker_lcores().len() as u32 + 1;
        if have != u32::from(workers) + 1 {
            return Err(StartError::Lcores {
                workers,
                need: u32::from(workers) + 1,
                have,
            });
        }
        let queues = workers;
        // Every queue's descriptors full, twice over (data port + TAP), plus
        // per-lcore caches and room for frames in flight.
        let per_port = 2 * u32::from(queues) * u32::from(RING_DESC) * 2;
        // Frames waiting in hand-off rings between workers.
        let handoff = RING_CAPACITY as u32 * u32::from(queues) * u32::from(queues - 1);
        let count = spec.mbufs.unwrap_or_else(|| {
            (per_port * spec.ports.len() as u32 + handoff + 4096).next_power_of_two() - 1
        });
        let pool = Arc::new(Mempool::new(
            "ferrolb_pkt",
            count,
            256,
            dpdk::current_socket() as i32,
        )?);
        self.pool = Some(Arc::clone(&pool));

        let cfg = PortConfig {
            rx_queues: queues,
            tx_queues: queues,
            rx_desc: RING_DESC,
            tx_desc: RING_DESC,
            promiscuous: true,
            rss_key: Some(self.rss_key),
            steer: None,
        };
        for (i, ps) in spec.ports.iter().enumerate() {
            let nic = Port::by_name(&ps.device)?;
            if self.ports.iter().any(|(p, _)| p.id() == nic.id()) {
                return Err(StartError::Port(
                    ps.name.clone(),
                    format!("device {} is used by another [[port]]", ps.device),
                ));
            }
            let max = nic.max_rx_queues()?;
            if max < queues {
                return Err(StartError::Queues {
                    port: ps.name.clone(),
                    device: ps.device.clone(),
                    max,
                    workers,
                });
            }
            let want = match (workers > 1, spec.steering, ps.role) {
                (false, ..) | (_, SteeringMode::Software, _) => None,
                (_, _, PortRole::Clients) => Some(SteerSide::Source),
                (_, _, PortRole::Reals) => Some(SteerSide::Destination),
                _ => None,
            };
            let steering = nic.configure(
                &PortConfig {
                    steer: want,
                    ..cfg.clone()
                },
                &pool,
            )?;
            let mac = nic.mac()?;
            let tap = dpdk::create_vdev(
                &format!("net_tap{i}"),
                &format!("iface={},mac={}", ps.tap_iface, MacAddr(mac)),
            )?;
            // Registered before configuring so a failure below still stops
            // and closes both.
            self.ports.push((nic.clone(), tap.clone()));
            self.macs.push(MacAddr(mac));
            tap.configure(
                &PortConfig {
                    promiscuous: false,
                    rss_key: None,
                    steer: None,
                    ..cfg.clone()
                },
                &pool,
            )?;
            nic.start()?;
            tap.start()?;
            let steering = finish_steering(&nic, steering, ps, spec, queues);
            let nic_steers = matches!(steering, Steering::Nic(_) | Steering::NicFlowRules(_));
            let describe = describe_steering(&steering, spec);
            tracing::info!("port {}: steering {describe}", ps.name);
            if let (SteeringMode::Nic, Steering::Software(why)) = (spec.steering, &steering) {
                return Err(StartError::Steering {
                    port: ps.name.clone(),
                    why: why.clone(),
                });
            }
            self.placement.steering.push((ps.name.clone(), describe));
            // A steering NIC hashes one side with a public key: its hash
            // is not the connection table's.
            let rss = if nic_steers {
                RssState::default()
            } else {
                nic.rss_key_state(&self.rss_key)
            };
            self.rss.push(rss);
            tracing::info!(
                "port {}: the NIC's RSS hash {} as the connection-table hash",
                ps.name,
                if rss.v4_with_key {
                    "is reused"
                } else {
                    "is not available"
                }
            );
        }
        for &(ip, mac) in &spec.static_neigh {
            self.neigh.set_static(ip, mac);
        }
        Ok(())
    }

    /// Launches the workers on `snap`, the first snapshot.
    pub fn run(&mut self, spec: &DataplaneSpec, snap: Arc<Snapshot>) -> Result<(), StartError> {
        let pool = self.pool.clone().expect("ports are up");
        let shared_snap = Arc::new(SharedSnapshot::new(snap));
        self.snapshot = Some(Arc::clone(&shared_snap));
        let lcores = dpdk::worker_lcores();
        let n = usize::from(spec.workers.max(1)).min(lcores.len());
        let epoch_tsc = dpdk::rdtsc();
        let limits = Arc::new(NodeLimits::default());
        // ring_tx[from][to] hands frames from worker `from` to worker
        // `to`; ring_rx[to] holds the receiving ends.
        let mut ring_rx: Vec<Vec<HandoffRx>> = (0..n).map(|_| Vec::new()).collect();
        let mut ring_tx: Vec<Vec<Option<HandoffTx>>> = (0..n)
            .map(|from| {
                (0..n)
                    .map(|to| {
                        (from != to).then(|| {
                            let (tx, rx) = dpdk::handoff_ring(RING_CAPACITY);
                            ring_rx[to].push(rx);
                            tx
                        })
                    })
                    .collect()
            })
            .collect();
        // inboxes[from][to]: records worker `from` received, for `to`.
        let inboxes: Vec<Vec<Option<Arc<Inbox>>>> = (0..n)
            .map(|from| {
                (0..n)
                    .map(|to| {
                        (spec.sync && from != to)
                            .then(|| Arc::new(Inbox::new(sync::INBOX_CAPACITY)))
                    })
                    .collect()
            })
            .collect();
        for (w, &lcore) in lcores
            .iter()
            .take(usize::from(spec.workers.max(1)))
            .enumerate()
        {
            let shared = Arc::new(WorkerShared::default());
            self.shared.push(Arc::clone(&shared));
            let worker = Worker {
                queue: QueueId(w as u16),
                ports: self
                    .ports
                    .iter()
                    .zip(&self.rss)
                    .map(|((nic, tap), rss)| WorkerPort {
                        nic: nic.clone(),
                        tap: tap.clone(),
                        rss_hash: rss.v4_with_key,
                    })
                    .collect(),
                neigh: Arc::clone(&self.neigh),
                pool: Arc::clone(&pool),
                stop: Arc::clone(&self.stop),
                snapshot: Arc::clone(&shared_snap),
                shared,
                idle_sleep: spec.idle_sleep,
                conn_capacity: spec.conn_capacity,
                resolver: w == 0,
                rss_key: self.rss_key,
                sync_out: inboxes[w].clone(),
                sync_in: inboxes.iter().filter_map(|row| row[w].clone()).collect(),
                steer: Steer::new(w as u16, n as u16),
                handoff_out: std::mem::take(&mut ring_tx[w]),
                handoff_in: std::mem::take(&mut ring_rx[w]),
                limits: Arc::clone(&limits),
                epoch_tsc,
            };
            dpdk::launch(lcore, move || worker.run()).map_err(|e| match e {
                dpdk::LaunchError::Dpdk(d) => StartError::Dpdk(d),
            })?;
            self.lcores.push(lcore);
        }
        Ok(())
    }

    /// Publishes a new snapshot; workers adopt it between bursts.
    pub fn publish(&self, snap: Arc<Snapshot>) {
        if let Some(s) = &self.snapshot {
            s.publish(snap);
        }
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.as_ref().map(|s| s.load())
    }

    /// What each worker shares (counters, per-service figures).
    pub fn workers(&self) -> &[Arc<WorkerShared>] {
        &self.shared
    }

    /// The shared neighbour cache.
    pub fn neigh(&self) -> &Arc<NeighTable> {
        &self.neigh
    }

    /// Data ports and their TAPs, in config order.
    pub fn ports(&self) -> &[(Port, Port)] {
        &self.ports
    }

    /// MAC of each data port, in config order.
    pub fn macs(&self) -> &[MacAddr] {
        &self.macs
    }

    /// Mbufs in use: for leak checks.
    pub fn mbufs_in_use(&self) -> u32 {
        self.pool.as_ref().map_or(0, |p| p.in_use())
    }

    /// Mbufs available in the pool (its per-lcore caches included).
    pub fn mbufs_available(&self) -> u32 {
        self.pool.as_ref().map_or(0, |p| p.available())
    }

    /// Stops workers and ports and cleans up EAL; returns the workers'
    /// exit codes (0 = clean, -1 = panicked).
    pub fn shutdown(mut self) -> Vec<i32> {
        self.teardown()
    }

    fn teardown(&mut self) -> Vec<i32> {
        self.stop.store(true, Ordering::SeqCst);
        let codes = self.lcores.drain(..).map(dpdk::wait_lcore).collect();
        for (nic, tap) in self.ports.drain(..) {
            for p in [&nic, &tap] {
                if let Err(e) = p.stop() {
                    tracing::warn!(error = %e, "stopping a port");
                }
                if let Err(e) = p.close() {
                    tracing::warn!(error = %e, "closing a port");
                }
            }
        }
        self.pool.take();
        self.eal.take();
        codes
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if self.eal.is_some() {
            self.teardown();
        }
    }
}
