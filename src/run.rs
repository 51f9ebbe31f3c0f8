//! `ferrolb run`: the wiring. Bring the data plane up from a configuration,
//! hand it to the daemon (`control::daemon`) until SIGTERM / SIGINT, then
//! bring everything down in order. SIGHUP reloads.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use control::config::{self, Config};
use control::daemon::{self, Daemon};
use forwarder::neigh::NeighTable;
use forwarder::packet::MacAddr;
use forwarder::pipeline::Snapshot;
use forwarder::runtime::{Dataplane, DataplaneSpec, PortSpec};
use forwarder::stats::{Placement, PortStats, WorkerShared};

/// The data-plane description of a configuration.
fn spec(cfg: &Config) -> DataplaneSpec {
    let roles = cfg.port_roles();
    DataplaneSpec {
        eal_args: cfg.dataplane.eal_args.clone(),
        workers: cfg.dataplane.workers,
        idle_sleep: cfg.dataplane.idle_sleep,
        mbufs: cfg.dataplane.mbufs,
        conn_capacity: cfg.dataplane.conn_table_capacity,
        ports: cfg
            .ports
            .iter()
            .zip(roles)
            .map(|(p, role)| PortSpec {
                name: p.name.clone(),
                device: p.device.clone(),
                tap_iface: p.tap.clone(),
                role,
            })
            .collect(),
        static_neigh: cfg
            .static_macs()
            .into_iter()
            .map(|(ip, m): (IpAddr, [u8; 6])| (ip, MacAddr(m)))
            .collect(),
        sync: cfg.ha.as_ref().is_some_and(|h| h.sync_peer.is_some()),
        housekeeping_cpus: cfg.dataplane.housekeeping_cpus.clone(),
        steering: cfg.dataplane.steering,
    }
}

/// The DPDK data plane as the daemon sees it.
struct Dpdk(Dataplane);

impl daemon::Dataplane for Dpdk {
    fn macs(&self) -> &[MacAddr] {
        self.0.macs()
    }
    fn publish(&self, snap: Arc<Snapshot>) {
        self.0.publish(snap);
    }
    fn neigh(&self) -> &Arc<NeighTable> {
        self.0.neigh()
    }
    fn workers(&self) -> &[Arc<WorkerShared>] {
        self.0.workers()
    }
    fn mbufs(&self) -> (u32, u32) {
        (self.0.mbufs_in_use(), self.0.mbufs_available())
    }
    fn port_stats(&self, i: usize) -> Option<PortStats> {
        self.0.ports().get(i).and_then(|(nic, _)| nic.stats().ok())
    }
    fn link_up(&self, i: usize) -> Option<bool> {
        let (nic, _) = self.0.ports().get(i)?;
        nic.link().ok().map(|l| l.up)
    }
    fn placement(&self) -> Placement {
        self.0.placement().clone()
    }
}

/// Runs until SIGTERM or SIGINT.
pub fn run(path: &Path) -> Result<()> {
    let cfg = config::load(path).map_err(|e| anyhow!("invalid configuration:\n{e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("installing signal handlers")?;

    for (dev, iface) in control::kernel::af_packet_ifaces(&cfg.dataplane.eal_args) {
        if cfg.ports.iter().any(|p| p.device == dev) {
            control::kernel::quiet_kernel_on(&iface).with_context(|| {
                format!("keeping the kernel off {iface}, the interface of {dev}")
            })?;
        }
    }
    let dspec = spec(&cfg);
    let mut dp = Dataplane::start(&dspec).context("starting the data plane")?;
    let snap = Arc::new(
        daemon::first_snapshot(&cfg, dp.macs())
            .map_err(|e| anyhow!("building the forwarding tables: {e}"))?,
    );
    dp.run(&dspec, Arc::clone(&snap))
        .context("starting the workers")?;
    for (p, (nic, _)) in cfg.ports.iter().zip(dp.ports()) {
        control::kernel::configure_tap(&p.tap, &p.addresses)
            .with_context(|| format!("exception path of port {:?}", p.name))?;
        let link = nic.link().map(|l| {
            if l.up {
                format!("up {} Mb/s", l.speed_mbps)
            } else {
                "down".into()
            }
        });
        tracing::info!(
            port = %p.name,
            device = %p.device,
            tap = %p.tap,
            addresses = ?p.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
            link = %link.unwrap_or_else(|e| e.to_string()),
            "port up"
        );
    }

    let dp = Dpdk(dp);
    let (workers, vips) = (cfg.dataplane.workers, cfg.vips.len());
    let d = Daemon::start(path, cfg, &dp, snap)?;
    tracing::info!(
        workers,
        version = forwarder::dpdk::version(),
        vips,
        admin = %d.admin_addr(),
        "ferrolb running"
    );
    d.run(&stop, &reload);

    let Dpdk(dp) = dp;
    let workers = dp.workers().to_vec();
    let codes = dp.shutdown();
    let sum = |f: fn(&WorkerShared) -> u64| workers.iter().map(|w| f(w)).sum::<u64>();
    tracing::info!(
        rx = sum(|w| w.stats.rx.load(Ordering::Relaxed)),
        tx = sum(|w| w.stats.tx.load(Ordering::Relaxed)),
        forwarded = sum(|w| w.stats.forwarded.load(Ordering::Relaxed)),
        answered = sum(|w| w.stats.answered.load(Ordering::Relaxed)),
        to_kernel = sum(|w| w.stats.to_kernel.load(Ordering::Relaxed)),
        from_kernel = sum(|w| w.stats.from_kernel.load(Ordering::Relaxed)),
        "stopped"
    );
    if codes.iter().any(|c| *c != 0) {
        return Err(anyhow!("a worker failed (exit codes {codes:?})"));
    }
    Ok(())
}
