//! `ferrolb run`: bring the data plane up from a configuration, serve the
//! admin API, reload on SIGHUP, and bring everything down cleanly on
//! SIGTERM / SIGINT.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    }
}

fn static_neigh(cfg: &Config) -> Vec<(IpAddr, MacAddr)> {
    cfg.vips
        .iter()
        .flat_map(|v| v.reals.iter())
        .filter_map(|r| r.mac.map(|m| (r.address, MacAddr(m))))
        .collect()
}

/// Health of each real: (VIP name, real address, real port) -> state.
type Health = Arc<Mutex<std::collections::HashMap<(String, IpAddr, u16), RealState>>>;

/// A real's state: Down until its first successful check when the VIP has
/// health checks, Up otherwise or once a check passed.
fn state_of(cfg: &Config, health: &Health) -> impl Fn(&str, IpAddr, u16) -> RealState {
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
    move |vip: &str, addr: IpAddr, port: u16| match map.get(&(vip.to_string(), addr, port)) {
        Some(s) => *s,
        None if checked.contains(vip) => RealState::Down,
        None => RealState::Up,
    }
}

/// What the control loop and the API share.
struct State {
    cfg: Config,
    snap: Arc<Snapshot>,
    workers: Vec<Arc<WorkerShared>>,
    reloads: u64,
    last_reload_error: Option<String>,
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
        control::snapshot::build(&cfg, 1, dp.macs(), &state_of(&cfg, &health))
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
    }));
    let api = {
        let st = Arc::clone(&state);
        let neigh = Arc::clone(dp.neigh());
        let handler: Arc<control::api::Handler> = Arc::new(
            move |method: &str, path: &str, _body: &[u8]| match (method, path) {
                ("GET", "/api/v1/status") => {
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
                _ => (404, "text/plain", b"not found\n".to_vec()),
            },
        );
        control::api::Server::start(cfg.admin.listen, handler)
            .with_context(|| format!("admin API on {}", cfg.admin.listen))?
    };
    // Health checks leave from the balancer's own addresses, through the
    // exception path; every change of state rebuilds the snapshot.
    let (events_tx, events) = std::sync::mpsc::channel::<control::health::Event>();
    let checker = control::health::HealthChecker::start(
        control::health::targets_from_config(&cfg),
        move |e| {
            let _ = events_tx.send(e);
        },
    )
    .context("starting the health checker")?;
    tracing::info!(
        workers = cfg.dataplane.workers,
        version = forwarder::dpdk::version(),
        vips = cfg.vips.len(),
        admin = %api.addr(),
        "ferrolb running"
    );

    let mut known: HashSet<(IpAddr, MacAddr)> = HashSet::new();
    let mut generation = 1u64;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        if reload.swap(false, Ordering::Relaxed) {
            generation += 1;
            if let Some(new_cfg) = do_reload(path, &dp, &state, &health, generation) {
                checker.update(control::health::targets_from_config(&new_cfg));
            }
        }
        let mut changed = false;
        while let Ok(e) = events.try_recv() {
            let st = match e.state {
                control::health::State::Up => RealState::Up,
                control::health::State::Down => RealState::Down,
            };
            let key = (e.vip.clone(), e.addr.ip(), e.addr.port());
            let mut h = health.lock().unwrap_or_else(|p| p.into_inner());
            if h.insert(key, st) != Some(st) {
                changed = true;
            }
        }
        if changed {
            generation += 1;
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            match control::snapshot::build(
                &s.cfg,
                generation,
                dp.macs(),
                &state_of(&s.cfg, &health),
            ) {
                Ok(sn) => {
                    let sn = Arc::new(sn);
                    dp.publish(Arc::clone(&sn));
                    s.snap = sn;
                }
                Err(e) => {
                    tracing::error!("rebuilding the forwarding tables after a health change: {e}")
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
    checker.stop();
    drop(api);
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

/// Re-reads the file; a valid one replaces the services (flows to reals
/// that remain keep their real), an invalid one changes nothing.
fn do_reload(
    path: &Path,
    dp: &Dataplane,
    state: &Mutex<State>,
    health: &Health,
    generation: u64,
) -> Option<Config> {
    let new = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(file = %path.display(), "reload rejected, keeping the running configuration:\n{e}");
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.last_reload_error = Some(e.to_string());
            return None;
        }
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if new.ports != s.cfg.ports || new.dataplane != s.cfg.dataplane {
        tracing::warn!("reload: [dataplane] and [[port]] changes take effect at the next restart");
    }
    let snap = match control::snapshot::build(&new, generation, dp.macs(), &state_of(&new, health))
    {
        Ok(sn) => Arc::new(sn),
        Err(e) => {
            tracing::error!("reload rejected: {e}");
            s.last_reload_error = Some(e);
            return None;
        }
    };
    for (ip, mac) in static_neigh(&new) {
        dp.neigh().set_static(ip, mac);
    }
    dp.publish(Arc::clone(&snap));
    s.snap = snap;
    s.cfg.vips = new.vips.clone();
    s.reloads += 1;
    s.last_reload_error = None;
    tracing::info!(generation, vips = s.cfg.vips.len(), "reloaded");
    Some(new)
}

fn status_json(s: &State) -> Value {
    let snap = &s.snap;
    let services = snap.vips.services();
    // Sum the workers' figures that are shaped for the current snapshot.
    let mut pk = vec![[0u64; 5]; services.len()];
    let mut reals: Vec<Vec<[u64; 4]>> = services
        .iter()
        .map(|sv| vec![[0; 4]; sv.reals().len()])
        .collect();
    let mut drops = [0u64; DropReason::COUNT];
    let mut flows = 0;
    for w in &s.workers {
        for (d, a) in drops.iter_mut().zip(&w.stats.drops) {
            *d += a.load(Ordering::Relaxed);
        }
        flows += w.stats.flows.load(Ordering::Relaxed);
        let r = w.services.lock().unwrap_or_else(|e| e.into_inner());
        if r.generation != snap.generation {
            continue;
        }
        for (i, c) in r.counters.iter().enumerate().take(services.len()) {
            pk[i][0] += c.packets_in;
            pk[i][1] += c.bytes_in;
            pk[i][2] += c.packets_out;
            pk[i][3] += c.bytes_out;
            pk[i][4] += c.new_flows;
            for (j, rc) in c.reals.iter().enumerate().take(reals[i].len()) {
                reals[i][j][0] += rc[0];
                reals[i][j][1] += rc[1];
                reals[i][j][2] += rc[2];
            }
        }
        for (i, a) in r.active.iter().enumerate().take(services.len()) {
            for (j, n) in a.iter().enumerate().take(reals[i].len()) {
                reals[i][j][3] += u64::from(*n);
            }
        }
    }
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
                "active_flows": reals[i].iter().map(|r| r[3]).sum::<u64>(),
                "reals": sv.reals().iter().enumerate().map(|(j, r)| json!({
                    "address": r.addr.to_string(),
                    "port": r.port,
                    "weight": r.weight,
                    "state": format!("{:?}", r.state).to_lowercase(),
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
            json!({
                "worker": i,
                "rx": st.rx.load(Ordering::Relaxed), "tx": st.tx.load(Ordering::Relaxed),
                "forwarded": st.forwarded.load(Ordering::Relaxed), "answered": st.answered.load(Ordering::Relaxed),
                "to_kernel": st.to_kernel.load(Ordering::Relaxed), "from_kernel": st.from_kernel.load(Ordering::Relaxed),
                "polls": st.polls.load(Ordering::Relaxed), "idle_polls": st.idle_polls.load(Ordering::Relaxed),
                "busy_cycles": st.busy_cycles.load(Ordering::Relaxed),
                "flows": st.flows.load(Ordering::Relaxed),
                "generation": st.generation.load(Ordering::Relaxed),
            })
        })
        .collect();
    json!({
        "generation": snap.generation,
        "reloads": s.reloads,
        "last_reload_error": s.last_reload_error,
        "flows": flows,
        "vips": vips,
        "workers": w,
        "drops": DropReason::ALL.iter().map(|r| (r.name().to_string(), json!(drops[*r as usize]))).collect::<serde_json::Map<_, _>>(),
    })
}

/// `ferrolb status`: an `ipvsadm -L -n`-like table from the admin API.
pub fn status(admin: &str) -> Result<()> {
    let (code, body) =
        control::api::request(admin, "GET", "/api/v1/status").map_err(|e| anyhow!(e))?;
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
            println!(
                "  -> {:<27} {:>6} {:<9} {:>10} {:>10} {:>10} {:>10}",
                format!("{ra}:{}", r["port"]),
                r["weight"],
                r["state"].as_str().unwrap_or(""),
                r["active_flows"],
                r["new_flows"],
                r["packets"],
                r["bytes"],
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
    Ok(())
}
