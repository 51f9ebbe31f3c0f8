//! `ferrolb run`: bring the data plane up from a configuration, wait for
//! signals, and bring it down cleanly.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use control::config::{self, Config};
use forwarder::packet::MacAddr;
use forwarder::runtime::{Dataplane, DataplaneSpec, PortSpec};

/// How often the control loop wakes up.
const TICK: Duration = Duration::from_millis(50);

/// The data-plane description of a configuration.
pub fn spec(cfg: &Config) -> DataplaneSpec {
    let ports = cfg
        .ports
        .iter()
        .map(|p| {
            // Next hops this port must reach: its gateway and every real on
            // one of its prefixes, asked from the port address in that prefix.
            let mut hops: Vec<IpAddr> = p.gateway.into_iter().collect();
            for v in &cfg.vips {
                for r in &v.reals {
                    if r.mac.is_none() {
                        hops.push(r.address);
                    }
                }
            }
            let mut seen = HashSet::new();
            let next_hops = hops
                .into_iter()
                .filter(|h| seen.insert(*h))
                .filter_map(|h| {
                    p.addresses
                        .iter()
                        .find(|c| c.contains(h))
                        .map(|c| (h, c.addr))
                })
                .collect();
            PortSpec {
                name: p.name.clone(),
                device: p.device.clone(),
                tap_iface: p.tap.clone(),
                addrs: p.addresses.iter().map(|c| c.addr).collect(),
                next_hops,
            }
        })
        .collect();
    let static_neigh = cfg
        .vips
        .iter()
        .flat_map(|v| v.reals.iter())
        .filter_map(|r| r.mac.map(|m| (r.address, MacAddr(m))))
        .collect();
    DataplaneSpec {
        eal_args: cfg.dataplane.eal_args.clone(),
        workers: cfg.dataplane.workers,
        idle_sleep: cfg.dataplane.idle_sleep,
        mbufs: cfg.dataplane.mbufs,
        ports,
        static_neigh,
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
    let dp = Dataplane::start(&spec(&cfg)).context("starting the data plane")?;
    for (p, (nic, _)) in cfg.ports.iter().zip(dp.ports()) {
        if let Err(e) = control::kernel::configure_tap(&p.tap, &p.addresses) {
            let codes = dp.shutdown();
            return Err(anyhow!(e)).context(format!(
                "exception path of port {:?} (workers ended {codes:?})",
                p.name
            ));
        }
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
    tracing::info!(
        workers = cfg.dataplane.workers,
        version = forwarder::dpdk::version(),
        vips = cfg.vips.len(),
        "ferrolb running"
    );

    let mut known: HashSet<(IpAddr, MacAddr)> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        if reload.swap(false, Ordering::Relaxed) {
            match config::load(path) {
                Ok(_) => {
                    tracing::info!(file = %path.display(), "SIGHUP: configuration is valid; ports and addresses apply at restart")
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), "SIGHUP: configuration rejected, keeping the running one:\n{e}")
                }
            }
        }
        for e in dp.neigh().entries() {
            if let Some(mac) = e.mac {
                if known.insert((e.ip, mac)) {
                    tracing::info!(ip = %e.ip, mac = %mac, permanent = e.permanent, "neighbour resolved");
                }
            }
        }
    }

    tracing::info!("stopping");
    let stats = dp.stats().to_vec();
    let codes = dp.shutdown();
    let sum =
        |f: fn(&forwarder::worker::WorkerStats) -> u64| stats.iter().map(|s| f(s)).sum::<u64>();
    tracing::info!(
        rx = sum(|s| s.rx.load(Ordering::Relaxed)),
        tx = sum(|s| s.tx.load(Ordering::Relaxed)),
        answered = sum(|s| s.answered.load(Ordering::Relaxed)),
        to_kernel = sum(|s| s.to_kernel.load(Ordering::Relaxed)),
        from_kernel = sum(|s| s.from_kernel.load(Ordering::Relaxed)),
        "stopped"
    );
    if codes.iter().any(|c| *c != 0) {
        return Err(anyhow!("a worker failed (exit codes {codes:?})"));
    }
    Ok(())
}
