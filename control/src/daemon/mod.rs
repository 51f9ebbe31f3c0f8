//! The daemon around a running data plane: the control loop that owns
//! the forwarding snapshot and rebuilds it when a real's state, the
//! configuration (reload) or the VRRP role changes, the health checker,
//! the admin API and the VRRP instance.
//!
//! The data plane is reached only through [`Dataplane`], so the loop runs
//! as well on DPDK (the `ferrolb` binary) as on a fake in unit tests.
//!
//! ```text
//! SIGHUP / POST reload ──┐
//! POST .../drain ────────┤   control loop (every 50 ms)      publish
//! health events ─────────┼─> RealStates + Config ─> snapshot ───────> workers
//! VRRP MASTER / BACKUP ──┘                          (generation + 1)
//! ```

mod listing;
mod peer;
pub mod policy;
mod report;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use forwarder::neigh::NeighTable;
use forwarder::packet::MacAddr;
use forwarder::pipeline::Snapshot;
use forwarder::stats::{Placement, PortStats, WorkerShared};

use crate::admin::conns::{ConnsPage, ConnsRequest};
use crate::admin::{self, Action, Command, CommandError, NodeAction, Status};
use crate::announce::{Announcer, Netlink};
use crate::config::{self, Config};
use crate::health::{self, HealthChecker};
use crate::vrrp::driver::{Ha, PortAddresses};
use crate::vrrp::Manual;
use policy::RealStates;
use report::RateSampler;

/// How often the control loop wakes up.
const TICK: Duration = Duration::from_millis(50);

/// How long the API waits for the control loop to take a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// What the daemon needs of the data plane.
pub trait Dataplane {
    /// Each port's MAC, in `[[port]]` order.
    fn macs(&self) -> &[MacAddr];
    /// Hands every worker a new snapshot.
    fn publish(&self, snap: Arc<Snapshot>);
    /// The neighbour cache the workers share.
    fn neigh(&self) -> &Arc<NeighTable>;
    /// What each worker publishes.
    fn workers(&self) -> &[Arc<WorkerShared>];
    /// Packet buffers (in use, available).
    fn mbufs(&self) -> (u32, u32);
    /// The device counters of port `i`, if it can tell.
    fn port_stats(&self, i: usize) -> Option<PortStats>;
    /// Whether port `i`'s link is up, if it can tell.
    fn link_up(&self, i: usize) -> Option<bool>;
    /// Where the control plane and the workers run.
    fn placement(&self) -> Placement;
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The health checker's runtime did not start.
    #[error("starting the health checker: {0}")]
    Health(std::io::Error),
    /// The admin API could not listen.
    #[error("admin API on {listen}: {source}")]
    Admin {
        /// `[admin].listen`.
        listen: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The VRRP instance could not start.
    #[error("starting VRRP ([ha]): {0}")]
    Vrrp(String),
    /// The routing table of `[announce]` could not be taken over.
    #[error("[announce]: {0}")]
    Announce(String),
}

/// What the status shows of `[announce]`.
#[derive(Debug, Clone)]
struct AnnounceState {
    table: u32,
    drained: bool,
    announced: std::collections::BTreeSet<IpAddr>,
}

/// The snapshot the workers start with: generation 1, no real checked
/// yet, the VIPs not held when `[ha]` is set.
pub fn first_snapshot(cfg: &Config, macs: &[MacAddr]) -> Result<Snapshot, String> {
    crate::snapshot::build(cfg, 1, macs, &RealStates::default().resolver(cfg), false)
}

/// What the control loop and the admin API share.
struct State {
    cfg: Config,
    snap: Arc<Snapshot>,
    generation: u64,
    reloads: u64,
    last_reload_error: Option<String>,
    reals: RealStates,
    /// `[ha]`: the VRRP instance's figures.
    ha: Option<admin::status::HaStatus>,
    /// The packet pool (in use, available), sampled every tick.
    mbufs: (u32, u32),
    /// Each data port's device counters, sampled every tick.
    ports: Vec<(String, PortStats)>,
    /// Per worker: rates over the last second.
    rates: Vec<report::WorkerRate>,
    workers: Vec<Arc<WorkerShared>>,
    placement: Placement,
    neigh: Arc<NeighTable>,
    announce: Option<AnnounceState>,
    /// Whether the HA peer balances the same service set.
    peer: peer::PeerConfig,
}

type Reply = mpsc::Sender<Result<String, CommandError>>;

/// The admin API's side: reads the shared state, queues commands for the
/// control loop and waits for their answer.
struct ApiBackend {
    state: Arc<Mutex<State>>,
    commands: Mutex<mpsc::Sender<(Command, Reply)>>,
    /// Held while a listing of the flows runs.
    listing: Mutex<()>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl admin::Backend for ApiBackend {
    fn status(&self) -> Status {
        report::status(&lock(&self.state))
    }

    fn conns(&self, req: &ConnsRequest) -> Result<ConnsPage, CommandError> {
        // One listing at a time: each worker has one query slot.
        let _one = self.listing.lock().unwrap_or_else(|e| e.into_inner());
        let (workers, snap, names) = {
            let s = lock(&self.state);
            let names: Vec<String> = s.cfg.vips.iter().map(|v| v.name.clone()).collect();
            (s.workers.clone(), Arc::clone(&s.snap), names)
        };
        let services = match &req.vip {
            Some(name) => {
                let ids = snap.service_ids_named(name);
                if ids.is_empty() {
                    return Err(CommandError::NoVip {
                        vip: name.clone(),
                        known: names.join(", "),
                    });
                }
                ids
            }
            None => Vec::new(),
        };
        let filter = forwarder::listing::ConnFilter {
            services,
            real: req.real,
            client: req.client,
        };
        listing::list(&workers, &snap, filter, req)
    }

    fn command(&self, cmd: Command) -> Result<String, CommandError> {
        let (tx, rx) = mpsc::channel();
        let sent = self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((cmd, tx));
        if sent.is_err() {
            return Err(CommandError::Stopping);
        }
        match rx.recv_timeout(COMMAND_TIMEOUT) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(CommandError::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(CommandError::Stopping),
        }
    }
}

/// A running daemon (see the module documentation).
pub struct Daemon<'a, D: Dataplane> {
    path: &'a Path,
    dp: &'a D,
    state: Arc<Mutex<State>>,
    checker: HealthChecker,
    events: mpsc::Receiver<health::Event>,
    commands: mpsc::Receiver<(Command, Reply)>,
    api: crate::api::Server,
    ha: Option<Ha>,
    /// Whether this node holds the VIPs (always true without `[ha]`).
    owner: bool,
    last_transition: Option<SystemTime>,
    sampler: RateSampler,
    known_neighbours: HashSet<(IpAddr, MacAddr)>,
    /// `[announce]`: the routes this node keeps.
    announcer: Option<Announcer<Netlink>>,
    /// `ferrolb node drain` (or stopping): nothing announced.
    drained: bool,
}

impl<'a, D: Dataplane> Daemon<'a, D> {
    /// Starts the health checks, the admin API and VRRP around `dp`, whose
    /// workers run `snap` (see [`first_snapshot`]); `path` is the file a
    /// reload reads.
    pub fn start(
        path: &'a Path,
        cfg: Config,
        dp: &'a D,
        snap: Arc<Snapshot>,
    ) -> Result<Daemon<'a, D>, DaemonError> {
        let (events_tx, events) = mpsc::channel::<health::Event>();
        // Health checks leave from the balancer's own addresses, through
        // the exception path; every change of state rebuilds the snapshot.
        let checker = HealthChecker::start(health::targets_from_config(&cfg), move |e| {
            let _ = events_tx.send(e);
        })
        .map_err(DaemonError::Health)?;
        let state = Arc::new(Mutex::new(State {
            generation: snap.generation,
            snap,
            reloads: 0,
            last_reload_error: None,
            reals: RealStates::default(),
            ha: None,
            mbufs: dp.mbufs(),
            ports: Vec::new(),
            rates: Vec::new(),
            workers: dp.workers().to_vec(),
            placement: dp.placement(),
            neigh: Arc::clone(dp.neigh()),
            announce: None,
            peer: peer::PeerConfig::default(),
            cfg: cfg.clone(),
        }));
        let (cmd_tx, commands) = mpsc::channel();
        let backend = Arc::new(ApiBackend {
            state: Arc::clone(&state),
            commands: Mutex::new(cmd_tx),
            listing: Mutex::new(()),
        });
        let handler: Arc<crate::api::Handler> =
            Arc::new(move |method: &str, path: &str, _body: &[u8]| {
                admin::route(method, path, &*backend)
            });
        let tls = match &cfg.admin.tls {
            Some(t) => Some(crate::tls::server_config(&t.cert, &t.key).map_err(|e| {
                DaemonError::Admin {
                    listen: cfg.admin.listen,
                    source: std::io::Error::other(e),
                }
            })?),
            None => None,
        };
        let https = tls.is_some();
        let api =
            crate::api::Server::start_tls(cfg.admin.listen, cfg.admin.token.clone(), tls, handler)
                .map_err(|source| DaemonError::Admin {
                    listen: cfg.admin.listen,
                    source,
                })?;
        tracing::info!(
            listen = %cfg.admin.listen,
            https,
            token = cfg.admin.token.is_some(),
            "admin API listening"
        );
        let ha = match &cfg.ha {
            Some(h) => Some(open_ha(&cfg, h, dp.macs()).map_err(DaemonError::Vrrp)?),
            None => None,
        };
        let announcer = match &cfg.announce {
            Some(a) => Some(
                Netlink::open(a.table)
                    .and_then(|n| Announcer::new(n, a.table))
                    .map_err(DaemonError::Announce)?,
            ),
            None => None,
        };
        let mut d = Daemon {
            path,
            dp,
            state,
            checker,
            events,
            commands,
            api,
            ha,
            owner: cfg.ha.is_none(),
            last_transition: None,
            sampler: RateSampler::new(dp.workers()),
            known_neighbours: HashSet::new(),
            announcer,
            drained: false,
        };
        tracing::info!(
            fingerprint = %format!("{:016x}", cfg.fingerprint()),
            "service set (nodes that share VIPs must show the same)"
        );
        if let Some(h) = d.ha.as_mut() {
            let _ = h.start(Instant::now());
            let v = h.vrrp();
            tracing::info!(
                vrid = v.config().vrid,
                priority = v.config().priority,
                interval = ?v.config().advert_interval,
                master_down = ?v.master_down_interval(),
                "VRRP started: BACKUP"
            );
        }
        d.sample_ha();
        Ok(d)
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.api.addr()
    }

    /// The control loop, until `stop`; `reload` set means re-read the
    /// file. Then VRRP hands over (a MASTER sends priority 0), and the
    /// API and the health checks stop. The data plane keeps running.
    pub fn run(mut self, stop: &AtomicBool, reload: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.tick(reload);
        }
        let drain_time = lock(&self.state)
            .cfg
            .announce
            .as_ref()
            .map(|a| a.drain_time);
        if let Some(dt) = drain_time {
            // Withdraw first, keep forwarding while the routers follow.
            self.drained = true;
            self.announce();
            tracing::info!(drain_time = ?dt, "stopping: every VIP withdrawn, forwarding until the drain time ends");
            let end = Instant::now() + dt;
            while Instant::now() < end {
                self.tick(reload);
            }
        }
        tracing::info!("stopping");
        if let Some(mut h) = self.ha.take() {
            let was = h.state();
            if h.shutdown(Instant::now()).is_some() {
                self.set_owner(false, &h);
                // The advert leaves through the TAP: let a worker pick it
                // up before the data plane stops.
                std::thread::sleep(Duration::from_millis(50));
            }
            tracing::info!(was = %was, "VRRP stopped");
        }
        drop(self.api);
        self.checker.stop();
        if let Some(a) = self.announcer.as_mut() {
            a.withdraw_all();
        }
    }

    /// One pass of the loop: VRRP (or a sleep), reloads, commands, health
    /// events, figures.
    fn tick(&mut self, reload: &AtomicBool) {
        match self.ha.take() {
            Some(mut h) => {
                self.vrrp_step(&mut h);
                self.ha = Some(h);
            }
            None => std::thread::sleep(TICK),
        }
        let mut reloaded = false;
        if reload.swap(false, Ordering::Relaxed) {
            reloaded |= self.reload().is_ok();
        }
        while let Ok((cmd, reply)) = self.commands.try_recv() {
            let r = match cmd {
                Command::Reload => {
                    let r = self.reload();
                    reloaded |= r.is_ok();
                    r
                }
                Command::Real { vip, real, action } => self.real_action(&vip, &real, action),
                Command::Node(action) => self.node_action(action),
                Command::Ha(m) => self.ha_action(m),
            };
            let _ = reply.send(r);
        }
        if reloaded {
            // The VIPs float: adverts and announcements follow the new set.
            let s = lock(&self.state);
            if let (Some(h), Some(hc)) = (self.ha.as_mut(), s.cfg.ha.as_ref()) {
                h.set_addresses(&floating_by_port(&s.cfg, hc, self.dp.macs()));
            }
        }
        self.health_events();
        self.check_load();
        self.announce();
        self.sample();
    }

    fn vrrp_step(&mut self, h: &mut Ha) {
        h.wait(Instant::now(), TICK);
        let now = Instant::now();
        let mut change = h.step(now);
        let track = lock(&self.state).cfg.ha.as_ref().map(|hc| hc.track.clone());
        if let Some(track) = track.filter(|t| !t.is_empty()) {
            let up = self.tracked_links_up(&track);
            if up != h.link_up {
                tracing::warn!(up, ports = ?track, "tracked link changed");
            }
            change = h.set_link(now, up).or(change);
        }
        if let Some(owner) = change {
            self.set_owner(owner, h);
            self.last_transition = Some(SystemTime::now());
        }
        let figures = report::ha_status(h, self.owner, self.last_transition);
        lock(&self.state).ha = Some(figures);
    }

    fn sample_ha(&mut self) {
        if let Some(h) = &self.ha {
            let figures = report::ha_status(h, self.owner, self.last_transition);
            lock(&self.state).ha = Some(figures);
        }
    }

    /// Samples the figures the status shows, and logs new neighbours.
    fn sample(&mut self) {
        let checks = self.checker.status();
        let mbufs = self.dp.mbufs();
        let rates = self.sampler.sample(self.dp.workers());
        {
            let mut s = lock(&self.state);
            let ports = s
                .cfg
                .ports
                .iter()
                .enumerate()
                .filter_map(|(i, p)| self.dp.port_stats(i).map(|st| (p.name.clone(), st)))
                .collect();
            s.reals.set_checks(checks);
            s.mbufs = mbufs;
            s.ports = ports;
            if let Some(r) = rates {
                s.rates = r;
            }
            Self::compare_with_peer(&mut s);
        }
        for e in self.dp.neigh().entries() {
            if let Some(mac) = e.mac {
                if self.known_neighbours.insert((e.ip, mac)) {
                    tracing::info!(ip = %e.ip, mac = %mac, permanent = e.permanent, "neighbour resolved");
                }
            }
        }
    }

    /// With connection sync: compares the peer's service set, as the
    /// workers last heard it, with ours, and logs each change.
    fn compare_with_peer(s: &mut State) {
        let Some((spec, _)) = s.snap.sync() else {
            return;
        };
        let heard: Vec<(u64, u64)> = s
            .workers
            .iter()
            .map(|w| {
                let st = &w.stats;
                (
                    st.sync_datagrams_received.load(Ordering::Relaxed),
                    st.sync_peer_fingerprint.load(Ordering::Relaxed),
                )
            })
            .collect();
        let ours = spec.fingerprint;
        match s.peer.observe(&heard, ours, Instant::now()) {
            Some(peer::Verdict::Differs) => tracing::warn!(
                peer = %spec.peer,
                ours = %format!("{ours:016x}"),
                peers = %format!("{:016x}", s.peer.peer().unwrap_or(0)),
                "the HA peer's service set differs from ours: after a failover flows may get other reals, and synced flows of services or reals we lack are skipped"
            ),
            Some(peer::Verdict::Same) => tracing::info!(
                peer = %spec.peer,
                fingerprint = %format!("{ours:016x}"),
                "the HA peer's service set is the same as ours"
            ),
            Some(peer::Verdict::Unknown) => tracing::info!(
                peer = %spec.peer,
                silent_for = ?peer::SILENT_AFTER,
                "no word from the HA peer: its service set is unknown"
            ),
            None => {}
        }
    }

    /// Rebuilds the snapshot from the configuration in force and the
    /// reals' states, and publishes it.
    fn republish(&self, s: &mut State) -> Result<(), String> {
        let generation = s.generation + 1;
        // Reals a reload removed stay, without new flows, for their flows.
        let with_removed = s.reals.with_removed(&s.cfg);
        let cfg = with_removed.as_ref().unwrap_or(&s.cfg);
        let sn = crate::snapshot::build(
            cfg,
            generation,
            self.dp.macs(),
            &s.reals.resolver(cfg),
            self.owner,
        )?;
        let sn = Arc::new(sn);
        self.dp.publish(Arc::clone(&sn));
        s.snap = sn;
        s.generation = generation;
        Ok(())
    }

    /// Re-reads the file; a valid one replaces the services (flows to
    /// reals that remain keep their real), an invalid one changes nothing.
    fn reload(&mut self) -> Result<String, CommandError> {
        let new = match config::load(self.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(file = %self.path.display(), "reload rejected, keeping the running configuration:\n{e}");
                lock(&self.state).last_reload_error = Some(e.to_string());
                return Err(CommandError::InvalidConfig(e.to_string()));
            }
        };
        let st = Arc::clone(&self.state);
        let mut s = lock(&st);
        if let Some(why) = ha_needs_restart(s.cfg.ha.as_ref(), new.ha.as_ref()) {
            let e = format!(
                "{why}: restart ferrolb to apply it (the running configuration is unchanged)"
            );
            tracing::error!(file = %self.path.display(), "reload rejected: {e}");
            s.last_reload_error = Some(e.clone());
            return Err(CommandError::NeedsRestart(e));
        }
        if new.ports != s.cfg.ports
            || new.dataplane != s.cfg.dataplane
            || new.announce != s.cfg.announce
        {
            tracing::warn!(
                "reload: [dataplane], [[port]] and [announce] changes take effect at the next restart"
            );
        }
        if s.cfg.dataplane.workers > 1 && new.port_roles() != s.cfg.port_roles() {
            tracing::warn!(
                "reload: the ports that carry NAT clients and NAT reals changed; the NICs' steering is set at start, so until a restart such frames may be handed between workers in software"
            );
        }
        // [ha]: what a running router can change, it changes now.
        let ha_changed = new.ha != s.cfg.ha;
        if let (Some(h), Some(nh)) = (self.ha.as_mut(), new.ha.as_ref()) {
            if let Err(e) = h.reconfigure(nh) {
                let e = format!("[ha]: {e}");
                tracing::error!("reload rejected: {e}");
                s.last_reload_error = Some(e.clone());
                return Err(CommandError::Tables(e));
            }
        }
        let old_reals = s.reals.clone();
        let kept = {
            let State { cfg, reals, .. } = &mut *s;
            reals.on_reload(cfg, &new)
        };
        let old = std::mem::replace(&mut s.cfg.vips, new.vips.clone());
        let old_ha = std::mem::replace(&mut s.cfg.ha, new.ha.clone());
        s.reals.retain_configured(&new);
        if let Err(e) = self.republish(&mut s) {
            s.cfg.vips = old;
            s.cfg.ha = old_ha;
            s.reals = old_reals;
            if let (Some(h), Some(oh)) = (self.ha.as_mut(), s.cfg.ha.as_ref()) {
                let _ = h.reconfigure(oh);
            }
            tracing::error!("reload rejected: {e}");
            s.last_reload_error = Some(e.clone());
            return Err(CommandError::Tables(e));
        }
        if ha_changed {
            if let Some(h) = &s.cfg.ha {
                tracing::info!(
                    priority = h.priority,
                    preempt = h.preempt,
                    advert_interval = ?h.advert_interval,
                    track = ?h.track,
                    sync_peer = ?h.sync_peer,
                    "reload: [ha] applied to the running VRRP instance"
                );
            }
        }
        for (ip, mac) in new.static_macs() {
            self.dp.neigh().set_static(ip, MacAddr(mac));
        }
        self.checker.update(health::targets_from_config(&new));
        for (vip, addr, port) in &kept {
            tracing::info!(vip = %vip, real = %addr, port, "reload removed a real: it takes no new flows and stays until its flows end (on_remove = \"keep\")");
        }
        s.reloads += 1;
        s.last_reload_error = None;
        tracing::info!(
            generation = s.generation,
            vips = s.cfg.vips.len(),
            fingerprint = %format!("{:016x}", s.cfg.fingerprint()),
            "reloaded"
        );
        Ok(format!(
            "reloaded: generation {}, {} VIP(s)",
            s.generation,
            s.cfg.vips.len()
        ))
    }

    /// Drains, enables or disables the reals of `vip` matching `real`.
    fn real_action(
        &mut self,
        vip: &str,
        real: &str,
        action: Action,
    ) -> Result<String, CommandError> {
        let st = Arc::clone(&self.state);
        let mut s = lock(&st);
        let before = s.reals.clone();
        let cfg = s.cfg.clone();
        let keys = s.reals.act(&cfg, vip, real, action)?;
        if let Err(e) = self.republish(&mut s) {
            s.reals = before;
            return Err(CommandError::Tables(e));
        }
        let what = match action {
            Action::Drain => "drained",
            Action::Enable => "enabled",
            Action::Disable => "disabled",
        };
        for (_, a, p) in &keys {
            tracing::info!(vip, real = %SocketAddr::new(*a, *p), action = what, "operator action");
        }
        Ok(format!("{vip}: {real} {what}"))
    }

    /// Keeps the announced routes in step with what the node can serve.
    fn announce(&mut self) {
        let (owner, drained) = (self.owner, self.drained);
        let Some(a) = self.announcer.as_mut() else {
            return;
        };
        let mut s = lock(&self.state);
        let want = crate::announce::wanted(&s.cfg, &s.snap, owner, drained);
        a.apply(&want);
        s.announce = Some(AnnounceState {
            table: a.table(),
            drained,
            announced: want
                .keys()
                .filter(|k| a.is_announced(**k))
                .copied()
                .collect(),
        });
    }

    /// `ferrolb node drain` / `enable`.
    fn node_action(&mut self, action: NodeAction) -> Result<String, CommandError> {
        if self.announcer.is_none() {
            return Err(CommandError::NoAnnounce);
        }
        self.drained = action == NodeAction::Drain;
        tracing::info!(action = action.name(), "operator action on the node");
        self.announce();
        Ok(match action {
            NodeAction::Drain => {
                "node drained: every VIP withdrawn; established flows continue".into()
            }
            NodeAction::Enable => "node enabled: VIPs announced again".into(),
        })
    }

    /// `ferrolb ha takeover` / `release` / `auto`.
    fn ha_action(&mut self, m: Manual) -> Result<String, CommandError> {
        let Some(mut h) = self.ha.take() else {
            return Err(CommandError::NoHa);
        };
        let before = h.state();
        if let Some(owner) = h.set_manual(Instant::now(), m) {
            self.set_owner(owner, &h);
            self.last_transition = Some(SystemTime::now());
        }
        let after = h.state();
        let priority = h.vrrp().priority();
        let (before, after) = (
            before.to_string().to_uppercase(),
            after.to_string().to_uppercase(),
        );
        tracing::warn!(
            action = m.name(),
            from = %before,
            to = %after,
            advertised_priority = priority,
            "VRRP: manual {} by the operator",
            m.name()
        );
        self.ha = Some(h);
        self.sample_ha();
        Ok(match m {
            Manual::Takeover => format!(
                "takeover: {before} -> {after}, advertising priority {priority} until `ferrolb ha auto` or a restart"
            ),
            Manual::Release => format!(
                "release: {before} -> {after}, staying BACKUP until `ferrolb ha takeover`, `ferrolb ha auto` or a restart"
            ),
            Manual::Auto => format!(
                "auto: {after}, back to the election with priority {priority}"
            ),
        })
    }

    /// VRRP took (`true`) or released the virtual addresses: republish.
    fn set_owner(&mut self, owner: bool, h: &Ha) {
        if owner == self.owner {
            return;
        }
        self.owner = owner;
        let st = Arc::clone(&self.state);
        let mut s = lock(&st);
        if let Err(e) = self.republish(&mut s) {
            tracing::error!("rebuilding the forwarding tables after a VRRP transition: {e}");
        }
        let v = h.vrrp();
        if owner {
            tracing::info!(
                vrid = v.config().vrid,
                priority = v.config().priority,
                generation = s.generation,
                "VRRP transition to MASTER: holding the VIPs"
            );
        } else {
            tracing::info!(
                vrid = v.config().vrid,
                master = ?v.master().map(|m| m.to_string()),
                generation = s.generation,
                "VRRP transition to BACKUP: VIPs released"
            );
        }
    }

    /// Applies health events; republishes when a state changed.
    fn health_events(&mut self) {
        let st = Arc::clone(&self.state);
        let mut s = lock(&st);
        let mut changed = false;
        while let Ok(e) = self.events.try_recv() {
            changed |= s.reals.on_health(&e);
        }
        if changed {
            if let Err(e) = self.republish(&mut s) {
                tracing::error!("rebuilding the forwarding tables after a health change: {e}");
            }
        }
    }

    /// `max_conns` / `min_conns`: follows the reals' active flows and
    /// republishes when one becomes overloaded or takes new flows again.
    fn check_load(&mut self) {
        let st = Arc::clone(&self.state);
        let mut s = lock(&st);
        let limited = s
            .cfg
            .vips
            .iter()
            .any(|v| v.reals.iter().any(|r| r.max_conns.is_some()));
        if !limited && !s.reals.has_removed() {
            return;
        }
        let Some(active) = report::real_active(&s) else {
            return;
        };
        let State { cfg, reals, .. } = &mut *s;
        let changes = reals.update_load(cfg, &active);
        let gone = reals.forget_drained_removed(&active);
        for (vip, addr, port) in &gone {
            tracing::info!(vip = %vip, real = %addr, port, "removed real has no flow left: gone");
        }
        if changes.is_empty() && gone.is_empty() {
            return;
        }
        for c in &changes {
            let (vip, addr, port) = &c.key;
            if c.overloaded {
                tracing::warn!(vip = %vip, real = %addr, port, active = c.active, max_conns = c.max, min_conns = c.min, "real overloaded: no new flows until it holds fewer than min_conns");
            } else {
                tracing::info!(vip = %vip, real = %addr, port, active = c.active, min_conns = c.min, "real takes new flows again");
            }
        }
        if let Err(e) = self.republish(&mut s) {
            tracing::error!("rebuilding the forwarding tables after a load change: {e}");
        }
    }

    /// Whether every `[ha].track` port's link is up: the data plane's link
    /// state, and for `net_af_packet` ports the kernel interface's
    /// operational state too (that PMD reports its link up whatever the
    /// interface does).
    fn tracked_links_up(&self, track: &[String]) -> bool {
        let s = lock(&self.state);
        let afp = crate::kernel::af_packet_ifaces(&s.cfg.dataplane.eal_args);
        track.iter().all(|name| {
            let Some(pi) = s.cfg.ports.iter().position(|p| &p.name == name) else {
                return true;
            };
            let dpdk_up = self.dp.link_up(pi).unwrap_or(true);
            let kernel_up = afp
                .iter()
                .find(|(dev, _)| *dev == s.cfg.ports[pi].device)
                .is_none_or(|(_, iface)| {
                    std::fs::read_to_string(format!("/sys/class/net/{iface}/operstate"))
                        .map(|s| matches!(s.trim(), "up" | "unknown"))
                        .unwrap_or(false)
                });
            dpdk_up && kernel_up
        })
    }
}

/// Opens the VRRP instance on the `[ha].port_name` port's TAP, advertising
/// from the port's first address of the `[ha].family`, floating every VIP
/// and `[ha].floating` address.
/// Why a reload from `old` to `new` `[ha]` cannot be applied to a
/// running node (`None`: it can). The VRRP instance's identity (vrid,
/// port, family, unicast peers) and whether there is one at all are
/// fixed at start; priority, preempt, timers, tracked links, floating
/// addresses and the sync peer follow a reload.
fn ha_needs_restart(old: Option<&config::HaConf>, new: Option<&config::HaConf>) -> Option<String> {
    match (old, new) {
        (None, None) => None,
        (None, Some(_)) => Some("[ha] was added".into()),
        (Some(_), None) => Some("[ha] was removed".into()),
        (Some(o), Some(n)) => {
            let mut changed = Vec::new();
            if o.vrid != n.vrid {
                changed.push(format!("[ha].vrid {} -> {}", o.vrid, n.vrid));
            }
            if o.port_name != n.port_name {
                changed.push(format!(
                    "[ha].port_name {:?} -> {:?}",
                    o.port_name, n.port_name
                ));
            }
            if o.family != n.family {
                changed.push("[ha].family".into());
            }
            if o.unicast_peers != n.unicast_peers {
                changed.push("[ha].unicast_peers".into());
            }
            (!changed.is_empty()).then(|| format!("{} changed", changed.join(", ")))
        }
    }
}

fn open_ha(cfg: &Config, h: &config::HaConf, macs: &[MacAddr]) -> Result<Ha, String> {
    let (pi, port) = cfg
        .ports
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == h.port_name)
        .ok_or_else(|| format!("no [[port]] named {:?}", h.port_name))?;
    let v4 = h.family == config::Family::V4;
    let primary = port
        .addresses
        .iter()
        .find(|c| c.addr.is_ipv4() == v4)
        .map(|c| c.addr)
        .ok_or_else(|| {
            format!(
                "port {:?} has no {} address for VRRP",
                port.name,
                if v4 { "IPv4" } else { "IPv6" }
            )
        })?;
    let mac = macs.get(pi).copied().unwrap_or_default();
    Ha::open(h, &port.tap, primary, mac, floating_by_port(cfg, h, macs))
        .map_err(|e| format!("VRRP sockets on {}: {e}", port.tap))
}

/// Every address that floats with VRRP, by the port it is announced on:
/// each VIP on its `port_name` port, `[ha].floating` on the VRRP port.
fn floating_by_port(cfg: &Config, h: &config::HaConf, macs: &[MacAddr]) -> Vec<PortAddresses> {
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
