//! `ferrolb run`: bring the data plane up from a configuration, serve the
//! admin API, reload on SIGHUP, and bring everything down cleanly on
//! SIGTERM / SIGINT.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use control::config::{self, Config};
use forwarder::packet::MacAddr;
use forwarder::pipeline::{DropReason, Snapshot};
use forwarder::runtime::{Dataplane, DataplaneSpec, PortSpec};
use forwarder::service::RealState;
use forwarder::worker::WorkerShared;
use serde_json::{json, Value};

/// How often the control loop wakes up.
const TICK: Duration = Duration::from_millis(50);

/// The data-plane description of a configuration.
pub fn spec(cfg: &Config) -> DataplaneSpec {
    DataplaneSpec {
        eal_args: cfg.dataplane.eal_args.clone(),
        workers: cfg.dataplane.workers,
        idle_sleep: cfg.dataplane.idle_sleep,
        mbufs: cfg.dataplane.mbufs,
        conn_capacity: cfg.dataplane.conn_table_capacity,
        ports: cfg
            .ports
            .iter()
            .map(|p| PortSpec {
                name: p.name.clone(),
                device: p.device.clone(),
                tap_iface: p.tap.clone(),
            })
            .collect(),
        static_neigh: static_neigh(cfg),
        sync: cfg.ha.as_ref().is_some_and(|h| h.sync_peer.is_some()),
        housekeeping_cpus: cfg.dataplane.housekeeping_cpus.clone(),
    }
}

fn static_neigh(cfg: &Config) -> Vec<(IpAddr, MacAddr)> {
    cfg.static_macs()
        .into_iter()
        .map(|(ip, m)| (ip, MacAddr(m)))
        .collect()
}

/// A real: (VIP name, real address, real port).
type RealKey = (String, IpAddr, u16);

/// Health of each real.
type Health = Arc<Mutex<HashMap<RealKey, RealState>>>;

/// Operator actions on a real.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// No new flows; established flows continue.
    Drain,
    /// Back to normal.
    Enable,
    /// No traffic; its flows are rescheduled on their next packet.
    Disable,
}

/// Work the API hands to the control loop (which owns the data plane).
enum Cmd {
    Reload(mpsc::Sender<Result<String, String>>),
    Real {
        vip: String,
        real: String,
        action: Action,
        reply: mpsc::Sender<Result<String, String>>,
    },
}

/// A real's state: Disabled or Drain by operator action; otherwise from
/// its health checks (Down until its first successful check when the VIP
/// has checks), Up when nothing says otherwise. Disabled wins over Down,
/// Down over Drain.
fn state_of(
    cfg: &Config,
    health: &Health,
    admin: &HashMap<RealKey, Action>,
) -> impl Fn(&str, IpAddr, u16) -> RealState {
    let checked: HashSet<String> = cfg
        .vips
        .iter()
        .filter(|v| {
            v.health
                .as_ref()
                .is_some_and(|h| h.kind != config::HealthKind::None)
        })
        .map(|v| v.name.clone())
        .collect();
    let map = health.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let admin = admin.clone();
    move |vip: &str, addr: IpAddr, port: u16| {
        let key = (vip.to_string(), addr, port);
        let health = match map.get(&key) {
            Some(s) => *s,
            None if checked.contains(vip) => RealState::Down,
            None => RealState::Up,
        };
        match (admin.get(&key), health) {
            (Some(Action::Disable), _) => RealState::Disabled,
            (_, RealState::Down) => RealState::Down,
            (Some(Action::Drain), _) => RealState::Drain,
            _ => health,
        }
    }
}

/// What the control loop and the API share.
struct State {
    cfg: Config,
    snap: Arc<Snapshot>,
    workers: Vec<Arc<WorkerShared>>,
    reloads: u64,
    last_reload_error: Option<String>,
    admin: HashMap<RealKey, Action>,
    health: Vec<control::health::TargetStatus>,
    /// `[ha]`: the VRRP instance's figures (None without `[ha]`).
    ha: Option<HaStatus>,
    /// The packet pool: mbufs in use (received, queued, in flight; not in
    /// the pool or its per-lcore caches) and available, sampled every tick.
    mbufs: (u32, u32),
    /// Each data port's device counters (name, figures), sampled every tick.
    ports: Vec<(String, forwarder::dpdk::PortStats)>,
    /// Per worker (= per queue of every port): frames received and sent
    /// per second, over the last second.
    rates: Vec<WorkerRate>,
    /// Where the control plane and the workers run.
    placement: forwarder::runtime::Placement,
}

/// One worker's receive and send rates, from two samples of its counters.
#[derive(Debug, Clone, Copy, Default)]
struct WorkerRate {
    rx_pps: f64,
    tx_pps: f64,
    handoffs_out_pps: f64,
}

/// Samples the workers' counters about once a second and turns them into
/// rates.
struct RateSampler {
    at: std::time::Instant,
    last: Vec<[u64; 3]>,
}

impl RateSampler {
    fn new(workers: &[Arc<WorkerShared>]) -> RateSampler {
        RateSampler {
            at: std::time::Instant::now(),
            last: workers.iter().map(|w| Self::read(w)).collect(),
        }
    }

    fn read(w: &WorkerShared) -> [u64; 3] {
        let s = &w.stats;
        [
            s.rx.load(Ordering::Relaxed),
            s.tx.load(Ordering::Relaxed),
            s.handoffs_out.load(Ordering::Relaxed),
        ]
    }

    /// New rates once a second has passed since the last sample.
    fn sample(&mut self, workers: &[Arc<WorkerShared>]) -> Option<Vec<WorkerRate>> {
        let dt = self.at.elapsed().as_secs_f64();
        if dt < 1.0 {
            return None;
        }
        self.at = std::time::Instant::now();
        let now: Vec<[u64; 3]> = workers.iter().map(|w| Self::read(w)).collect();
        let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        let rates = now
            .iter()
            .zip(&self.last)
            .map(|(n, l)| WorkerRate {
                rx_pps: per(n[0], l[0]),
                tx_pps: per(n[1], l[1]),
                handoffs_out_pps: per(n[2], l[2]),
            })
            .collect();
        self.last = now;
        Some(rates)
    }
}

/// What status and metrics show of the VRRP instance.
#[derive(Debug, Clone)]
struct HaStatus {
    state: control::vrrp::State,
    master: Option<IpAddr>,
    priority: u8,
    vrid: u8,
    advert_interval: Duration,
    master_down_interval: Duration,
    owner: bool,
    counters: control::vrrp::Counters,
    garps_sent: u64,
    dropped_ttl: u64,
    last_transition: Option<std::time::SystemTime>,
}

impl HaStatus {
    fn of(h: &crate::ha::Ha, owner: bool, last: Option<std::time::SystemTime>) -> HaStatus {
        let v = h.vrrp();
        HaStatus {
            state: v.state(),
            master: v.master(),
            priority: v.config().priority,
            vrid: v.config().vrid,
            advert_interval: v.config().advert_interval,
            master_down_interval: v.master_down_interval(),
            owner,
            counters: v.counters(),
            garps_sent: h.garps_sent,
            dropped_ttl: h.dropped_ttl,
            last_transition: last,
        }
    }
}

/// The control loop's own state.
struct Control<'a> {
    path: &'a Path,
    dp: &'a Dataplane,
    state: &'a Mutex<State>,
    health: Health,
    checker: &'a control::health::HealthChecker,
    generation: u64,
    /// Whether this node holds the VIPs (always true without `[ha]`).
    owner: bool,
}

impl Control<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rebuilds the snapshot from the configuration in force and the
    /// reals' states, and publishes it.
    fn republish(&mut self, s: &mut State) -> Result<(), String> {
        self.generation += 1;
        let sn = control::snapshot::build(
            &s.cfg,
            self.generation,
            self.dp.macs(),
            &state_of(&s.cfg, &self.health, &s.admin),
            self.owner,
        )?;
        let sn = Arc::new(sn);
        self.dp.publish(Arc::clone(&sn));
        s.snap = sn;
        Ok(())
    }

    /// Re-reads the file; a valid one replaces the services (flows to reals
    /// that remain keep their real), an invalid one changes nothing.
    fn reload(&mut self) -> Result<String, String> {
        let new = match config::load(self.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(file = %self.path.display(), "reload rejected, keeping the running configuration:\n{e}");
                self.lock().last_reload_error = Some(e.to_string());
                return Err(format!(
                    "reload rejected, the running configuration is unchanged:\n{e}"
                ));
            }
        };
        let st = self.state;
        let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
        if new.ports != s.cfg.ports || new.dataplane != s.cfg.dataplane || new.ha != s.cfg.ha {
            tracing::warn!(
                "reload: [dataplane], [[port]] and [ha] changes take effect at the next restart"
            );
        }
        let old = std::mem::replace(&mut s.cfg.vips, new.vips.clone());
        // Operator actions follow their real while it stays configured.
        let present: HashSet<RealKey> = new
            .vips
            .iter()
            .flat_map(|v| {
                v.reals
                    .iter()
                    .map(move |r| (v.name.clone(), r.address, r.port))
            })
            .collect();
        s.admin.retain(|k, _| present.contains(k));
        if let Err(e) = self.republish(&mut s) {
            s.cfg.vips = old;
            tracing::error!("reload rejected: {e}");
            s.last_reload_error = Some(e.clone());
            return Err(e);
        }
        for (ip, mac) in static_neigh(&new) {
            self.dp.neigh().set_static(ip, mac);
        }
        self.checker
            .update(control::health::targets_from_config(&new));
        s.reloads += 1;
        s.last_reload_error = None;
        let msg = format!(
            "reloaded: generation {}, {} VIP(s)",
            self.generation,
            s.cfg.vips.len()
        );
        tracing::info!(
            generation = self.generation,
            vips = s.cfg.vips.len(),
            "reloaded"
        );
        Ok(msg)
    }

    /// Drains, enables or disables the reals of `vip` matching `real`
    /// (`ADDR` or `ADDR:PORT`, IPv6 as `[ADDR]:PORT`).
    fn real_action(&mut self, vip: &str, real: &str, action: Action) -> Result<String, String> {
        let (addr, port): (IpAddr, Option<u16>) = if let Ok(a) = real.parse::<IpAddr>() {
            (a, None)
        } else if let Ok(sa) = real.parse::<std::net::SocketAddr>() {
            (sa.ip(), Some(sa.port()))
        } else {
            return Err(format!("{real:?} is not an address (ADDR or ADDR:PORT)"));
        };
        let st = self.state;
        let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
        let Some(v) = s.cfg.vips.iter().find(|v| v.name == vip) else {
            let names: Vec<&str> = s.cfg.vips.iter().map(|v| v.name.as_str()).collect();
            return Err(format!("no VIP named {vip:?} (VIPs: {})", names.join(", ")));
        };
        let keys: Vec<RealKey> = v
            .reals
            .iter()
            .filter(|r| r.address == addr && port.is_none_or(|p| p == r.port))
            .map(|r| (v.name.clone(), r.address, r.port))
            .collect();
        if keys.is_empty() {
            return Err(format!("VIP {vip:?} has no real {real}"));
        }
        for k in &keys {
            match action {
                Action::Enable => s.admin.remove(k),
                a => s.admin.insert(k.clone(), a),
            };
        }
        self.republish(&mut s)?;
        let what = match action {
            Action::Drain => "drained",
            Action::Enable => "enabled",
            Action::Disable => "disabled",
        };
        for (_, a, p) in &keys {
            tracing::info!(vip, real = %std::net::SocketAddr::new(*a, *p), action = what, "operator action");
        }
        Ok(format!("{vip}: {real} {what}"))
    }

    /// VRRP took (`true`) or released the virtual addresses: republish.
    fn set_owner(&mut self, owner: bool, h: &crate::ha::Ha) {
        if owner == self.owner {
            return;
        }
        self.owner = owner;
        let st = self.state;
        let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = self.republish(&mut s) {
            tracing::error!("rebuilding the forwarding tables after a VRRP transition: {e}");
        }
        let v = h.vrrp();
        if owner {
            tracing::info!(
                vrid = v.config().vrid,
                priority = v.config().priority,
                generation = self.generation,
                "VRRP transition to MASTER: holding the VIPs"
            );
        } else {
            tracing::info!(
                vrid = v.config().vrid,
                master = ?v.master().map(|m| m.to_string()),
                generation = self.generation,
                "VRRP transition to BACKUP: VIPs released"
            );
        }
    }

    /// Applies health events; republishes when a state changed.
    fn health_events(&mut self, events: &mpsc::Receiver<control::health::Event>) {
        let mut changed = false;
        while let Ok(e) = events.try_recv() {
            let st = match e.state {
                control::health::State::Up => RealState::Up,
                control::health::State::Down => RealState::Down,
            };
            let key = (e.vip.clone(), e.addr.ip(), e.addr.port());
            let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
            if h.insert(key, st) != Some(st) {
                changed = true;
            }
        }
        if changed {
            let st = self.state;
            let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = self.republish(&mut s) {
                tracing::error!("rebuilding the forwarding tables after a health change: {e}");
            }
        }
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
    let health: Health = Arc::default();
    let snap = Arc::new(
        control::snapshot::build(
            &cfg,
            1,
            dp.macs(),
            &state_of(&cfg, &health, &HashMap::new()),
            false,
        )
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
    let state = Arc::new(Mutex::new(State {
        cfg: cfg.clone(),
        snap,
        workers: dp.workers().to_vec(),
        reloads: 0,
        last_reload_error: None,
        admin: HashMap::new(),
        health: Vec::new(),
        ha: None,
        mbufs: (dp.mbufs_in_use(), dp.mbufs_available()),
        ports: Vec::new(),
        rates: Vec::new(),
        placement: dp.placement().clone(),
    }));
    let mut sampler = RateSampler::new(dp.workers());

    // Health checks leave from the balancer's own addresses, through the
    // exception path; every change of state rebuilds the snapshot.
    let (events_tx, events) = mpsc::channel::<control::health::Event>();
    let checker = control::health::HealthChecker::start(
        control::health::targets_from_config(&cfg),
        move |e| {
            let _ = events_tx.send(e);
        },
    )
    .context("starting the health checker")?;

    let (cmd_tx, cmds) = mpsc::channel::<Cmd>();
    let api = {
        let st = Arc::clone(&state);
        let neigh = Arc::clone(dp.neigh());
        let cmd_tx = Mutex::new(cmd_tx);
        let handler: Arc<control::api::Handler> =
            Arc::new(move |method: &str, path: &str, _body: &[u8]| {
                api_route(method, path, &st, &neigh, &cmd_tx)
            });
        control::api::Server::start(cfg.admin.listen, cfg.admin.token.clone(), handler)
            .with_context(|| format!("admin API on {}", cfg.admin.listen))?
    };
    tracing::info!(
        workers = cfg.dataplane.workers,
        version = forwarder::dpdk::version(),
        vips = cfg.vips.len(),
        admin = %api.addr(),
        "ferrolb running"
    );

    let mut ctl = Control {
        path,
        dp: &dp,
        state: &state,
        health,
        checker: &checker,
        generation: 1,
        owner: cfg.ha.is_none(),
    };
    let mut ha = match &cfg.ha {
        Some(h) => Some(open_ha(&cfg, h, dp.macs()).context("starting VRRP ([ha])")?),
        None => None,
    };
    let mut last_transition = None;
    if let Some(h) = ha.as_mut() {
        let now = std::time::Instant::now();
        let _ = h.start(now);
        tracing::info!(
            vrid = h.vrrp().config().vrid,
            priority = h.vrrp().config().priority,
            interval = ?h.vrrp().config().advert_interval,
            master_down = ?h.vrrp().master_down_interval(),
            "VRRP started: BACKUP"
        );
        ctl.lock().ha = Some(HaStatus::of(h, ctl.owner, last_transition));
    }
    let mut known: HashSet<(IpAddr, MacAddr)> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        match ha.as_mut() {
            Some(h) => {
                h.wait(std::time::Instant::now(), TICK);
                let now = std::time::Instant::now();
                let mut change = h.step(now);
                if let Some(hc) = &cfg.ha {
                    if !hc.track.is_empty() {
                        let up = tracked_links_up(&cfg, hc, &dp);
                        if up != h.link_up {
                            tracing::warn!(up, ports = ?hc.track, "tracked link changed");
                        }
                        change = h.set_link(now, up).or(change);
                    }
                }
                if let Some(owner) = change {
                    ctl.set_owner(owner, h);
                    last_transition = Some(std::time::SystemTime::now());
                }
                ctl.lock().ha = Some(HaStatus::of(h, ctl.owner, last_transition));
            }
            None => std::thread::sleep(TICK),
        }
        let mut reloaded = false;
        if reload.swap(false, Ordering::Relaxed) {
            reloaded |= ctl.reload().is_ok();
        }
        while let Ok(cmd) = cmds.try_recv() {
            match cmd {
                Cmd::Reload(reply) => {
                    let r = ctl.reload();
                    reloaded |= r.is_ok();
                    let _ = reply.send(r);
                }
                Cmd::Real {
                    vip,
                    real,
                    action,
                    reply,
                } => {
                    let _ = reply.send(ctl.real_action(&vip, &real, action));
                }
            }
        }
        if let (true, Some(h), Some(hc)) = (reloaded, ha.as_mut(), &cfg.ha) {
            // The VIPs float: adverts and announcements follow the new set.
            let ports = floating_by_port(&ctl.lock().cfg, hc, dp.macs());
            h.set_addresses(&ports);
        }
        ctl.health_events(&events);
        let hs = checker.status();
        let mbufs = (dp.mbufs_in_use(), dp.mbufs_available());
        let ports = cfg
            .ports
            .iter()
            .zip(dp.ports())
            .filter_map(|(p, (nic, _))| nic.stats().ok().map(|st| (p.name.clone(), st)))
            .collect();
        let rates = sampler.sample(dp.workers());
        {
            let mut s = ctl.lock();
            s.health = hs;
            s.mbufs = mbufs;
            s.ports = ports;
            if let Some(r) = rates {
                s.rates = r;
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
    if let Some(h) = ha.as_mut() {
        // A MASTER tells the backup to take over now (priority 0).
        let was = h.state();
        if h.shutdown(std::time::Instant::now()).is_some() {
            ctl.set_owner(false, h);
            // The advert leaves through the TAP: let a worker pick it up
            // before the data plane stops.
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::info!(was = %was, "VRRP stopped");
    }
    drop(api);
    checker.stop();
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

/// Opens the VRRP instance on the `[ha].port_name` port's TAP, advertising
/// from the port's first address of the `[ha].family`, floating every VIP
/// and `[ha].floating` address.
fn open_ha(cfg: &Config, h: &config::HaConf, macs: &[MacAddr]) -> Result<crate::ha::Ha> {
    let (pi, port) = cfg
        .ports
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == h.port_name)
        .ok_or_else(|| anyhow!("no [[port]] named {:?}", h.port_name))?;
    let v4 = h.family == config::Family::V4;
    let primary = port
        .addresses
        .iter()
        .find(|c| c.addr.is_ipv4() == v4)
        .map(|c| c.addr)
        .ok_or_else(|| {
            anyhow!(
                "port {:?} has no {} address for VRRP",
                port.name,
                if v4 { "IPv4" } else { "IPv6" }
            )
        })?;
    let mac = macs.get(pi).copied().unwrap_or_default();
    crate::ha::Ha::open(h, &port.tap, primary, mac, floating_by_port(cfg, h, macs))
        .with_context(|| format!("VRRP sockets on {}", port.tap))
}

/// Every address that floats with VRRP, by the port it is announced on:
/// each VIP on its `port_name` port, `[ha].floating` on the VRRP port.
fn floating_by_port(
    cfg: &Config,
    h: &config::HaConf,
    macs: &[MacAddr],
) -> Vec<crate::ha::PortAddresses> {
    cfg.ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut addrs: Vec<IpAddr> = Vec::new();
            let vips = cfg
                .vips
                .iter()
                .filter(|v| v.port_name == p.name)
                .map(|v| v.address);
            let extra = h.floating.iter().copied().filter(|_| p.name == h.port_name);
            for a in vips.chain(extra) {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
            (
                p.tap.clone(),
                macs.get(i).copied().unwrap_or_default(),
                addrs,
            )
        })
        .filter(|(_, _, addrs)| !addrs.is_empty())
        .collect()
}

/// Whether every `[ha].track` port's link is up: the DPDK link state, and
/// for `net_af_packet` ports the kernel interface's operational state too
/// (that PMD reports its link up whatever the interface does).
fn tracked_links_up(cfg: &Config, h: &config::HaConf, dp: &Dataplane) -> bool {
    let afp = control::kernel::af_packet_ifaces(&cfg.dataplane.eal_args);
    h.track.iter().all(|name| {
        let Some(pi) = cfg.ports.iter().position(|p| &p.name == name) else {
            return true;
        };
        let dpdk_up = dp
            .ports()
            .get(pi)
            .is_none_or(|(port, _)| port.link().map(|l| l.up).unwrap_or(true));
        let kernel_up = afp
            .iter()
            .find(|(dev, _)| *dev == cfg.ports[pi].device)
            .is_none_or(|(_, iface)| {
                std::fs::read_to_string(format!("/sys/class/net/{iface}/operstate"))
                    .map(|s| matches!(s.trim(), "up" | "unknown"))
                    .unwrap_or(false)
            });
        dpdk_up && kernel_up
    })
}

/// Percent-decodes a path segment (names and IPv6 addresses in URLs).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a path segment.
pub fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.:[]".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn send_cmd(
    cmd_tx: &Mutex<mpsc::Sender<Cmd>>,
    make: impl FnOnce(mpsc::Sender<Result<String, String>>) -> Cmd,
) -> control::api::Response {
    let (tx, rx) = mpsc::channel();
    if cmd_tx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(make(tx))
        .is_err()
    {
        return (503, "text/plain", b"ferrolb is stopping\n".to_vec());
    }
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(msg)) => (200, "text/plain", format!("{msg}\n").into_bytes()),
        Ok(Err(e)) if e.starts_with("no VIP") || e.contains("has no real") => {
            (404, "text/plain", format!("{e}\n").into_bytes())
        }
        Ok(Err(e)) => (400, "text/plain", format!("{e}\n").into_bytes()),
        Err(_) => (
            503,
            "text/plain",
            b"the control loop did not answer in 10 s\n".to_vec(),
        ),
    }
}

fn api_route(
    method: &str,
    path: &str,
    st: &Mutex<State>,
    neigh: &forwarder::neigh::NeighTable,
    cmd_tx: &Mutex<mpsc::Sender<Cmd>>,
) -> control::api::Response {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(unescape)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        ("GET", [""]) => (
            200,
            control::page::CONTENT_TYPE,
            control::page::status_page().to_vec(),
        ),
        ("GET", ["api", "v1", "status"]) => {
            let s = st.lock().unwrap_or_else(|e| e.into_inner());
            let mut v = status_json(&s);
            v["neighbours"] = neigh
                .entries()
                .iter()
                .map(|e| json!({"ip": e.ip.to_string(), "mac": e.mac.map(|m| m.to_string()), "permanent": e.permanent}))
                .collect();
            (
                200,
                "application/json",
                serde_json::to_vec_pretty(&v).unwrap_or_default(),
            )
        }
        ("GET", ["metrics"]) => {
            let s = st.lock().unwrap_or_else(|e| e.into_inner());
            (200, "text/plain; version=0.0.4", metrics(&s).into_bytes())
        }
        ("POST", ["api", "v1", "reload"]) => send_cmd(cmd_tx, Cmd::Reload),
        ("POST", ["api", "v1", "vips", vip, "reals", real, action]) => {
            let action = match *action {
                "drain" => Action::Drain,
                "enable" => Action::Enable,
                "disable" => Action::Disable,
                other => {
                    return (
                        404,
                        "text/plain",
                        format!("unknown action {other:?} (drain, enable, disable)\n").into_bytes(),
                    )
                }
            };
            let (vip, real) = (vip.to_string(), real.to_string());
            send_cmd(cmd_tx, move |reply| Cmd::Real {
                vip,
                real,
                action,
                reply,
            })
        }
        (_, ["api", "v1", "reload"]) | (_, ["api", "v1", "vips", ..]) => {
            (405, "text/plain", b"use POST\n".to_vec())
        }
        _ => (
            404,
            "text/plain",
            format!("no route {method} {path}\n").into_bytes(),
        ),
    }
}

/// The workers' figures summed, for the snapshot in force.
struct Totals {
    /// Per service: packets in, bytes in, packets out, bytes out, new flows, rejected.
    services: Vec<[u64; 6]>,
    /// Per service and real: packets, bytes, new flows, active flows.
    reals: Vec<Vec<[u64; 4]>>,
    drops: [u64; DropReason::COUNT],
    flows: u64,
}

fn totals(s: &State) -> Totals {
    let services = s.snap.vips.services();
    let mut t = Totals {
        services: vec![[0u64; 6]; services.len()],
        reals: services
            .iter()
            .map(|sv| vec![[0; 4]; sv.reals().len()])
            .collect(),
        drops: [0u64; DropReason::COUNT],
        flows: 0,
    };
    for w in &s.workers {
        for (d, a) in t.drops.iter_mut().zip(&w.stats.drops) {
            *d += a.load(Ordering::Relaxed);
        }
        t.flows += w.stats.flows.load(Ordering::Relaxed);
        let r = w.services.lock().unwrap_or_else(|e| e.into_inner());
        if r.generation != s.snap.generation {
            continue;
        }
        for (i, c) in r.counters.iter().enumerate().take(services.len()) {
            let pk = &mut t.services[i];
            pk[0] += c.packets_in;
            pk[1] += c.bytes_in;
            pk[2] += c.packets_out;
            pk[3] += c.bytes_out;
            pk[4] += c.new_flows;
            pk[5] += c.rejected;
            for (j, rc) in c.reals.iter().enumerate().take(t.reals[i].len()) {
                t.reals[i][j][0] += rc[0];
                t.reals[i][j][1] += rc[1];
                t.reals[i][j][2] += rc[2];
            }
        }
        for (i, a) in r.active.iter().enumerate().take(services.len()) {
            for (j, n) in a.iter().enumerate().take(t.reals[i].len()) {
                t.reals[i][j][3] += u64::from(*n);
            }
        }
    }
    t
}

fn status_json(s: &State) -> Value {
    let snap = &s.snap;
    let services = snap.vips.services();
    let Totals {
        services: pk,
        reals,
        drops,
        flows,
    } = totals(s);
    let vips: Vec<Value> = services
        .iter()
        .enumerate()
        .map(|(i, sv)| {
            let cfgv = s.cfg.vips.iter().find(|v| v.name == sv.spec().name);
            json!({
                "name": sv.spec().name,
                "address": sv.spec().vip.to_string(),
                "protocol": format!("{:?}", sv.spec().proto).to_lowercase(),
                "port": sv.spec().port,
                "mode": format!("{:?}", sv.mode()).to_lowercase(),
                "scheduler": format!("{:?}", sv.spec().scheduler).to_lowercase(),
                "persistence": cfgv.and_then(|v| v.persistence).map(|p| json!({"timeout_s": p.timeout.as_secs(), "netmask": p.netmask})),
                "packets_in": pk[i][0], "bytes_in": pk[i][1],
                "packets_out": pk[i][2], "bytes_out": pk[i][3],
                "new_flows": pk[i][4],
                "rejected": pk[i][5],
                "on_down": cfgv.map(|v| format!("{:?}", v.on_down).to_lowercase()),
                "new_flow_rate_limit": cfgv.and_then(|v| v.new_flow_rate_limit),
                "fallback": sv.spec().fallback.as_ref().map(|f| json!({
                    "address": f.addr.to_string(),
                    "port": f.port,
                    "packets": reals[i].get(sv.reals().len()).map_or(0, |r| r[0]),
                    "new_flows": reals[i].get(sv.reals().len()).map_or(0, |r| r[2]),
                    "active_flows": reals[i].get(sv.reals().len()).map_or(0, |r| r[3]),
                })),
                "active_flows": reals[i].iter().map(|r| r[3]).sum::<u64>(),
                "reals": sv.reals().iter().enumerate().map(|(j, r)| json!({
                    "address": r.addr.to_string(),
                    "port": r.port,
                    "weight": r.weight,
                    "state": format!("{:?}", r.state).to_lowercase(),
                    "admin": s.admin.get(&(sv.spec().name.clone(), r.addr, r.port)).map(|a| format!("{a:?}").to_lowercase()),
                    "health": s.health.iter().find(|h| h.vip == sv.spec().name && h.addr == std::net::SocketAddr::new(r.addr, r.port)).map(|h| json!({
                        "kind": format!("{:?}", h.kind).to_lowercase(),
                        "state": h.state.to_string(),
                        "pending": h.pending,
                        "last_ok": h.last_ok,
                        "last_reason": h.last_reason,
                        "last_latency_ms": h.last_latency.map(|d| d.as_secs_f64() * 1000.0),
                        "consecutive_successes": h.consecutive_successes,
                        "consecutive_failures": h.consecutive_failures,
                        "total_checks": h.total_checks,
                        "total_failures": h.total_failures,
                    })),
                    "packets": reals[i][j][0],
                    "bytes": reals[i][j][1],
                    "new_flows": reals[i][j][2],
                    "active_flows": reals[i][j][3],
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let w: Vec<Value> = s
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let st = &w.stats;
            let rate = s.rates.get(i).copied().unwrap_or_default();
            let (lcore, cpu) = s.placement.workers.get(i).copied().unwrap_or_default();
            let mut v = json!({
                "worker": i,
                "lcore": lcore,
                "cpu": cpu,
                "flows": st.flows.load(Ordering::Relaxed),
                "generation": st.generation.load(Ordering::Relaxed),
                "rx_pps": rate.rx_pps.round() as u64,
                "tx_pps": rate.tx_pps.round() as u64,
                "handoffs_out_pps": rate.handoffs_out_pps.round() as u64,
            });
            for (key, _, _, get) in WORKER_COUNTERS {
                v[key] = json!(get(st));
            }
            v
        })
        .collect();
    json!({
        "generation": snap.generation,
        "reloads": s.reloads,
        "last_reload_error": s.last_reload_error,
        "flows": flows,
        "vips": vips,
        "workers": w,
        "placement": json!({
            "main_lcore": s.placement.main_lcore,
            "control_cpus": s.placement.control_cpus,
            "workers_sharing_control_cpus": s.placement.shared(),
        }),
        "drops": DropReason::ALL.iter().map(|r| (r.name().to_string(), json!(drops[*r as usize]))).collect::<serde_json::Map<_, _>>(),
        "mbufs": json!({"in_use": s.mbufs.0, "available": s.mbufs.1, "capacity": s.mbufs.0 + s.mbufs.1}),
        "conntrack": conntrack_json(s),
        "ports": s.ports.iter().map(|(name, p)| json!({
            "name": name,
            "rx_packets": p.rx_packets, "tx_packets": p.tx_packets,
            "rx_missed": p.rx_missed, "rx_nombuf": p.rx_nombuf,
            "rx_errors": p.rx_errors, "tx_errors": p.tx_errors,
        })).collect::<Vec<_>>(),
        "ha": s.ha.as_ref().map(ha_json),
        "sync": sync_json(s),
    })
}

/// Connection sync: where to, and the workers' counters summed (null
/// without `[ha].sync_peer`).
fn sync_json(s: &State) -> Value {
    let Some(h) = s.cfg.ha.as_ref().filter(|h| h.sync_peer.is_some()) else {
        return Value::Null;
    };
    let mut v = json!({
        "peer": h.sync_peer.map(|p| p.to_string()),
        "port": h.sync_port,
        "sending": s.snap.sync().is_some_and(|(x, _)| x.send),
    });
    for (key, _, _, get) in WORKER_COUNTERS.iter().filter(|c| c.0.starts_with("sync_")) {
        v[&key["sync_".len()..]] = json!(s.workers.iter().map(|w| get(&w.stats)).sum::<u64>());
    }
    v
}

/// The connection tables summed over the workers.
fn conntrack_json(s: &State) -> Value {
    let mut v = json!({});
    for (key, _, _, get) in CONN_GAUGES.iter().chain(CONN_COUNTERS.iter()) {
        v[*key] = json!(s.workers.iter().map(|w| get(&w.stats)).sum::<u64>());
    }
    v
}

fn ha_json(h: &HaStatus) -> Value {
    let c = &h.counters;
    json!({
        "state": h.state.to_string(),
        "master": h.master.map(|m| m.to_string()),
        "owner": h.owner,
        "priority": h.priority,
        "vrid": h.vrid,
        "advert_interval_ms": h.advert_interval.as_millis() as u64,
        "master_down_interval_ms": h.master_down_interval.as_millis() as u64,
        "transitions_to_master": c.to_master,
        "transitions_to_backup": c.to_backup,
        "transitions_to_fault": c.to_fault,
        "adverts_sent": c.adverts_sent,
        "priority_zero_sent": c.priority_zero_sent,
        "adverts_received": c.adverts_received,
        "adverts_invalid": c.adverts_invalid,
        "adverts_dropped_ttl": h.dropped_ttl,
        "priority_zero_received": c.priority_zero_received,
        "address_mismatch": c.address_mismatch,
        "last_invalid": c.last_invalid.map(|e| e.to_string()),
        "garp_rounds_sent": h.garps_sent,
        "last_transition_unix": h.last_transition.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
    })
}

/// A worker counter: its JSON field, its metric name, its help text, and
/// how to read it.
type WorkerCounter = (
    &'static str,
    &'static str,
    &'static str,
    fn(&forwarder::worker::WorkerStats) -> u64,
);

/// The worker counters the status JSON and the metrics expose.
const WORKER_COUNTERS: [WorkerCounter; 20] = [
    (
        "rx",
        "ferrolb_worker_rx_packets_total",
        "Frames received from data ports.",
        |w| w.rx.load(Ordering::Relaxed),
    ),
    (
        "tx",
        "ferrolb_worker_tx_packets_total",
        "Frames sent on data ports.",
        |w| w.tx.load(Ordering::Relaxed),
    ),
    (
        "forwarded",
        "ferrolb_worker_forwarded_total",
        "Frames forwarded.",
        |w| w.forwarded.load(Ordering::Relaxed),
    ),
    (
        "answered",
        "ferrolb_worker_answered_total",
        "Frames answered in place.",
        |w| w.answered.load(Ordering::Relaxed),
    ),
    (
        "to_kernel",
        "ferrolb_worker_to_kernel_total",
        "Frames passed to the kernel.",
        |w| w.to_kernel.load(Ordering::Relaxed),
    ),
    (
        "from_kernel",
        "ferrolb_worker_from_kernel_total",
        "Frames the kernel sent.",
        |w| w.from_kernel.load(Ordering::Relaxed),
    ),
    (
        "polls",
        "ferrolb_worker_polls_total",
        "Poll loop passes.",
        |w| w.polls.load(Ordering::Relaxed),
    ),
    (
        "idle_polls",
        "ferrolb_worker_idle_polls_total",
        "Poll loop passes that found no frame.",
        |w| w.idle_polls.load(Ordering::Relaxed),
    ),
    (
        "busy_cycles",
        "ferrolb_worker_busy_cycles_total",
        "TSC cycles spent in passes that found frames.",
        |w| w.busy_cycles.load(Ordering::Relaxed),
    ),
    (
        "handoffs_out",
        "ferrolb_worker_handoffs_out_total",
        "Frames handed to the worker that owns their state (NAT replies, hairpin replies, ICMP errors, fragments).",
        |w| w.handoffs_out.load(Ordering::Relaxed),
    ),
    (
        "handoffs_in",
        "ferrolb_worker_handoffs_in_total",
        "Frames other workers handed to this one.",
        |w| w.handoffs_in.load(Ordering::Relaxed),
    ),
    (
        "sync_records_sent",
        "ferrolb_sync_records_sent_total",
        "Connection sync: flow records sent to the HA peer.",
        |w| w.sync_records_sent.load(Ordering::Relaxed),
    ),
    (
        "sync_batches_sent",
        "ferrolb_sync_batches_sent_total",
        "Connection sync: datagrams sent to the HA peer.",
        |w| w.sync_batches_sent.load(Ordering::Relaxed),
    ),
    (
        "sync_records_lost",
        "ferrolb_sync_records_lost_total",
        "Connection sync: records logged but never sent (outbox full, peer unresolved).",
        |w| w.sync_records_lost.load(Ordering::Relaxed),
    ),
    (
        "sync_records_received",
        "ferrolb_sync_records_received_total",
        "Connection sync: flow records received from the HA peer.",
        |w| w.sync_records_received.load(Ordering::Relaxed),
    ),
    (
        "sync_records_applied",
        "ferrolb_sync_records_applied_total",
        "Connection sync: records installed, updated or removed.",
        |w| w.sync_records_applied.load(Ordering::Relaxed),
    ),
    (
        "sync_records_rejected",
        "ferrolb_sync_records_rejected_total",
        "Connection sync: records refused (malformed, mode or real mismatch, no room).",
        |w| w.sync_records_rejected.load(Ordering::Relaxed),
    ),
    (
        "sync_records_unknown_service",
        "ferrolb_sync_records_unknown_service_total",
        "Connection sync: records for services this node does not know (skipped).",
        |w| w.sync_records_unknown_service.load(Ordering::Relaxed),
    ),
    (
        "sync_records_fanout_dropped",
        "ferrolb_sync_records_fanout_dropped_total",
        "Connection sync: records not passed on to another worker (inbox full).",
        |w| w.sync_records_fanout_dropped.load(Ordering::Relaxed),
    ),
    (
        "sync_batches_missed",
        "ferrolb_sync_batches_missed_total",
        "Connection sync: datagrams from the HA peer that never arrived (sequence gaps).",
        |w| w.sync_batches_missed.load(Ordering::Relaxed),
    ),
];

/// Connection-table gauges: JSON key, metric name, help, reader.
const CONN_GAUGES: [WorkerCounter; 3] = [
    (
        "capacity",
        "ferrolb_conntrack_capacity",
        "Slots in the connection tables.",
        |w| w.conn.capacity.load(Ordering::Relaxed),
    ),
    (
        "flows",
        "ferrolb_conntrack_flows",
        "Flows in the connection tables.",
        |w| w.flows.load(Ordering::Relaxed),
    ),
    (
        "half_open",
        "ferrolb_conntrack_half_open",
        "Half-open TCP flows (SYN seen, handshake not finished).",
        |w| w.conn.half_open.load(Ordering::Relaxed),
    ),
];

/// Connection-table counters: JSON key, metric name, help, reader.
const CONN_COUNTERS: [WorkerCounter; 5] = [
    (
        "inserts",
        "ferrolb_conntrack_inserts_total",
        "Flows inserted.",
        |w| w.conn.inserts.load(Ordering::Relaxed),
    ),
    (
        "evictions_half_open",
        "ferrolb_conntrack_evictions_half_open_total",
        "Half-open flows evicted to make room for a new flow.",
        |w| w.conn.evictions_half_open.load(Ordering::Relaxed),
    ),
    (
        "evictions_established",
        "ferrolb_conntrack_evictions_established_total",
        "Established flows evicted to make room (never while half-open flows exist).",
        |w| w.conn.evictions_established.load(Ordering::Relaxed),
    ),
    (
        "evictions_other",
        "ferrolb_conntrack_evictions_other_total",
        "Closing TCP, UDP and ICMP flows evicted to make room.",
        |w| w.conn.evictions_other.load(Ordering::Relaxed),
    ),
    (
        "insert_failures",
        "ferrolb_conntrack_insert_failures_total",
        "New flows refused: the table was full and nothing could be evicted.",
        |w| w.conn.insert_failures.load(Ordering::Relaxed),
    ),
];

/// Prometheus text exposition (format 0.0.4) of the same figures.
fn metrics(s: &State) -> String {
    use std::fmt::Write as _;
    fn esc(v: &str) -> String {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }
    let t = totals(s);
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let services = s.snap.vips.services();
    let vlabels = |sv: &forwarder::service::Service| {
        format!(
            "vip=\"{}\",address=\"{}\",protocol=\"{}\",port=\"{}\"",
            esc(&sv.spec().name),
            sv.spec().vip,
            format!("{:?}", sv.spec().proto).to_lowercase(),
            sv.spec().port
        )
    };
    for (idx, name, help) in [
        (
            0,
            "ferrolb_vip_packets_in_total",
            "Packets forwarded from clients to reals.",
        ),
        (
            1,
            "ferrolb_vip_bytes_in_total",
            "Bytes forwarded from clients to reals.",
        ),
        (
            2,
            "ferrolb_vip_packets_out_total",
            "Packets translated back from reals to clients (NAT).",
        ),
        (
            3,
            "ferrolb_vip_bytes_out_total",
            "Bytes translated back from reals to clients (NAT).",
        ),
        (4, "ferrolb_vip_new_flows_total", "Flows created."),
        (
            5,
            "ferrolb_vip_rejected_total",
            "New flows refused with a TCP RST or ICMP unreachable (no real up, no fallback).",
        ),
    ] {
        family(&mut o, name, "counter", help);
        for (i, sv) in services.iter().enumerate() {
            let _ = writeln!(o, "{name}{{{}}} {}", vlabels(sv), t.services[i][idx]);
        }
    }
    for (idx, name, kind, help) in [
        (
            0,
            "ferrolb_real_packets_total",
            "counter",
            "Packets forwarded to the real.",
        ),
        (
            1,
            "ferrolb_real_bytes_total",
            "counter",
            "Bytes forwarded to the real.",
        ),
        (
            2,
            "ferrolb_real_new_flows_total",
            "counter",
            "Flows scheduled to the real.",
        ),
        (
            3,
            "ferrolb_real_active_flows",
            "gauge",
            "Flows to the real in the connection tables.",
        ),
    ] {
        family(&mut o, name, kind, help);
        for (i, sv) in services.iter().enumerate() {
            for (j, r) in sv.reals().iter().enumerate() {
                let _ = writeln!(
                    o,
                    "{name}{{{},real=\"{}\",real_port=\"{}\"}} {}",
                    vlabels(sv),
                    r.addr,
                    r.port,
                    t.reals[i][j][idx]
                );
            }
        }
    }
    family(
        &mut o,
        "ferrolb_real_weight",
        "gauge",
        "Configured weight of the real.",
    );
    for sv in services {
        for r in sv.reals() {
            let _ = writeln!(
                o,
                "ferrolb_real_weight{{{},real=\"{}\",real_port=\"{}\"}} {}",
                vlabels(sv),
                r.addr,
                r.port,
                r.weight
            );
        }
    }
    family(
        &mut o,
        "ferrolb_real_state",
        "gauge",
        "1 for the real's current state (up, down, drain, disabled).",
    );
    for sv in services {
        for r in sv.reals() {
            let cur = format!("{:?}", r.state).to_lowercase();
            for st in ["up", "down", "drain", "disabled"] {
                let _ = writeln!(
                    o,
                    "ferrolb_real_state{{{},real=\"{}\",real_port=\"{}\",state=\"{st}\"}} {}",
                    vlabels(sv),
                    r.addr,
                    r.port,
                    u8::from(cur == st)
                );
            }
        }
    }
    family(
        &mut o,
        "ferrolb_drops_total",
        "counter",
        "Frames dropped, by reason.",
    );
    for r in DropReason::ALL {
        let _ = writeln!(
            o,
            "ferrolb_drops_total{{reason=\"{}\"}} {}",
            r.name(),
            t.drops[r as usize]
        );
    }
    family(
        &mut o,
        "ferrolb_flows",
        "gauge",
        "Flows in all connection tables.",
    );
    let _ = writeln!(o, "ferrolb_flows {}", t.flows);
    family(
        &mut o,
        "ferrolb_reloads_total",
        "counter",
        "Successful reloads.",
    );
    let _ = writeln!(o, "ferrolb_reloads_total {}", s.reloads);
    family(
        &mut o,
        "ferrolb_config_generation",
        "gauge",
        "Generation of the forwarding snapshot in force.",
    );
    let _ = writeln!(o, "ferrolb_config_generation {}", s.snap.generation);
    if let Some(h) = &s.ha {
        family(
            &mut o,
            "ferrolb_vrrp_state",
            "gauge",
            "1 for the VRRP instance's current state (initialize, backup, master, fault).",
        );
        let cur = h.state.to_string();
        for st in ["initialize", "backup", "master", "fault"] {
            let _ = writeln!(
                o,
                "ferrolb_vrrp_state{{vrid=\"{}\",state=\"{st}\"}} {}",
                h.vrid,
                u8::from(cur == st)
            );
        }
        family(
            &mut o,
            "ferrolb_vrrp_transitions_total",
            "counter",
            "VRRP state transitions, by the state entered.",
        );
        for (to, n) in [
            ("master", h.counters.to_master),
            ("backup", h.counters.to_backup),
            ("fault", h.counters.to_fault),
        ] {
            let _ = writeln!(
                o,
                "ferrolb_vrrp_transitions_total{{vrid=\"{}\",to=\"{to}\"}} {n}",
                h.vrid
            );
        }
        for (name, help, n) in [
            (
                "ferrolb_vrrp_adverts_sent_total",
                "VRRP adverts sent.",
                h.counters.adverts_sent,
            ),
            (
                "ferrolb_vrrp_adverts_received_total",
                "VRRP adverts received (valid or not).",
                h.counters.adverts_received,
            ),
            (
                "ferrolb_vrrp_adverts_invalid_total",
                "VRRP adverts ignored as invalid.",
                h.counters.adverts_invalid,
            ),
        ] {
            family(&mut o, name, "counter", help);
            let _ = writeln!(o, "{name}{{vrid=\"{}\"}} {n}", h.vrid);
        }
    }
    for (kind, table) in [
        ("counter", &WORKER_COUNTERS[..]),
        ("gauge", &CONN_GAUGES[..]),
        ("counter", &CONN_COUNTERS[..]),
    ] {
        for (_, name, help, get) in table {
            family(&mut o, name, kind, help);
            for (i, w) in s.workers.iter().enumerate() {
                let _ = writeln!(o, "{name}{{worker=\"{i}\"}} {}", get(&w.stats));
            }
        }
    }
    family(
        &mut o,
        "ferrolb_mbufs_in_use",
        "gauge",
        "Packet buffers out of the pool (received, queued or in flight).",
    );
    let _ = writeln!(o, "ferrolb_mbufs_in_use {}", s.mbufs.0);
    family(
        &mut o,
        "ferrolb_mbufs_capacity",
        "gauge",
        "Packet buffers in the pool.",
    );
    let _ = writeln!(o, "ferrolb_mbufs_capacity {}", s.mbufs.0 + s.mbufs.1);
    for (name, help, get) in [
        (
            "ferrolb_port_rx_missed_total",
            "Frames the device dropped for want of a free descriptor.",
            (|p| p.rx_missed) as fn(&forwarder::dpdk::PortStats) -> u64,
        ),
        (
            "ferrolb_port_rx_nombuf_total",
            "Frames the device dropped for want of a packet buffer.",
            |p| p.rx_nombuf,
        ),
        (
            "ferrolb_port_rx_errors_total",
            "Receive errors reported by the device.",
            |p| p.rx_errors,
        ),
    ] {
        family(&mut o, name, "counter", help);
        for (port, st) in &s.ports {
            let _ = writeln!(o, "{name}{{port=\"{}\"}} {}", esc(port), get(st));
        }
    }
    o
}

/// POSTs an action to the daemon and prints its answer.
pub fn post(admin: &str, token: Option<&str>, path: &str) -> Result<()> {
    let (code, body) =
        control::api::request_with(admin, token, "POST", path).map_err(|e| anyhow!(e))?;
    if code != 200 {
        return Err(anyhow!("{}", body.trim()));
    }
    println!("{}", body.trim());
    Ok(())
}

/// `ferrolb status`: an `ipvsadm -L -n`-like table from the admin API.
pub fn status(admin: &str, token: Option<&str>) -> Result<()> {
    let (code, body) = control::api::request_with(admin, token, "GET", "/api/v1/status")
        .map_err(|e| anyhow!(e))?;
    if code != 200 {
        return Err(anyhow!(
            "the admin API on {admin} answered {code}: {}",
            body.trim()
        ));
    }
    let v: Value =
        serde_json::from_str(&body).context("the admin API answered something that is not JSON")?;
    println!(
        "ferrolb: generation {}, {} flow(s), {} reload(s)",
        v["generation"], v["flows"], v["reloads"]
    );
    if let Some(h) = v["ha"].as_object() {
        println!(
            "VRRP vrid {} priority {}: {}{}, master {}, {} transition(s) to master, adverts sent {} received {} invalid {}",
            h["vrid"],
            h["priority"],
            h["state"].as_str().unwrap_or("").to_uppercase(),
            if h["owner"].as_bool() == Some(true) { " (holding the VIPs)" } else { "" },
            h["master"].as_str().unwrap_or("unknown"),
            h["transitions_to_master"],
            h["adverts_sent"],
            h["adverts_received"],
            h["adverts_invalid"],
        );
    }
    if let Some(y) = v["sync"].as_object() {
        println!(
            "sync with {}:{} ({}): sent {} record(s) in {} batch(es), {} lost; received {}, applied {}, rejected {}, unknown service {}, batches missed {}",
            y["peer"].as_str().unwrap_or("?"),
            y["port"],
            if y["sending"].as_bool() == Some(true) { "sending" } else { "receiving" },
            y["records_sent"],
            y["batches_sent"],
            y["records_lost"],
            y["records_received"],
            y["records_applied"],
            y["records_rejected"],
            y["records_unknown_service"],
            y["batches_missed"],
        );
    }
    println!("Prot LocalAddress:Port Scheduler Mode        Flows     InPkts    OutPkts");
    println!("  -> RemoteAddress:Port           Weight State     ActiveConn   NewConns    Packets      Bytes");
    for vip in v["vips"].as_array().into_iter().flatten() {
        let addr = vip["address"].as_str().unwrap_or("");
        let addr = if addr.contains(':') {
            format!("[{addr}]")
        } else {
            addr.to_string()
        };
        println!(
            "{:<4} {:<27} {:<9} {:<4} {:>10} {:>10} {:>10}   {}{}",
            vip["protocol"].as_str().unwrap_or("").to_uppercase(),
            format!("{addr}:{}", vip["port"]),
            vip["scheduler"].as_str().unwrap_or(""),
            vip["mode"].as_str().unwrap_or(""),
            vip["active_flows"],
            vip["packets_in"],
            vip["packets_out"],
            vip["name"].as_str().unwrap_or(""),
            vip["persistence"]
                .as_object()
                .map(|p| format!(" persistent {}s /{}", p["timeout_s"], p["netmask"]))
                .unwrap_or_default(),
        );
        for r in vip["reals"].as_array().into_iter().flatten() {
            let ra = r["address"].as_str().unwrap_or("");
            let ra = if ra.contains(':') {
                format!("[{ra}]")
            } else {
                ra.to_string()
            };
            let health = r["health"]
                .as_object()
                .filter(|h| h["kind"].as_str() != Some("none"))
                .map(|h| {
                    let reason = h["last_reason"].as_str().unwrap_or("");
                    format!(
                        "  {}{}",
                        h["kind"].as_str().unwrap_or(""),
                        if reason.is_empty() {
                            String::new()
                        } else {
                            format!(": {reason}")
                        }
                    )
                })
                .unwrap_or_default();
            println!(
                "  -> {:<27} {:>6} {:<9} {:>10} {:>10} {:>10} {:>10}{}",
                format!("{ra}:{}", r["port"]),
                r["weight"],
                r["state"].as_str().unwrap_or(""),
                r["active_flows"],
                r["new_flows"],
                r["packets"],
                r["bytes"],
                health,
            );
        }
    }
    let workers = v["workers"].as_array().map_or(&[][..], |w| &w[..]);
    if workers.len() > 1 {
        for w in workers {
            let polls = w["polls"].as_u64().unwrap_or(0).max(1);
            let idle = w["idle_polls"].as_u64().unwrap_or(0);
            println!(
                "worker {}: {} flow(s), rx {} tx {} frames/s, handed over {} in {} (total), busy {:.0}% of polls",
                w["worker"],
                w["flows"],
                w["rx_pps"],
                w["tx_pps"],
                w["handoffs_out"],
                w["handoffs_in"],
                100.0 * (polls.saturating_sub(idle)) as f64 / polls as f64,
            );
        }
    }
    let drops: Vec<String> = v["drops"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    if !drops.is_empty() {
        println!("drops: {}", drops.join(" "));
    }
    if let Some(e) = v["last_reload_error"].as_str() {
        println!("last reload failed: {e}");
    }
    Ok(())
}
