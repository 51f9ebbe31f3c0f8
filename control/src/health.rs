//! Health checks of real servers: TCP connect, HTTP GET, UDP request/reply.
//!
//! # What it owns and promises
//!
//! A [`HealthChecker`] checks a set of [`Target`]s (VIP name + real
//! address:port, an optional source address, and the `[vip.health]` of the
//! VIP) every `interval`, each check bounded by `timeout`, and turns the
//! results into an up/down [`State`] per target with `rise`/`fall`
//! hysteresis. Every change of state is delivered as an [`Event`] with its
//! reason (`connect: connection refused`, `http: status 404, expected 200`,
//! `http: body lacks "OK"`, `connect: timeout after 500ms`) to the callback
//! given to [`HealthChecker::start`], and logged as one `tracing` line at
//! info level. [`HealthChecker::status`] is the snapshot for the admin API.
//!
//! # Initial state: down until the first success
//!
//! A new target is [`State::Down`] and *pending*: it gets no traffic until
//! a check has passed. Its **first** success brings it up at once (`rise` is
//! waived for that first verdict), so a restart of the balancer costs one
//! check, not `rise` intervals, before traffic flows. If it fails from the
//! start, a `Down` event is delivered after `fall` consecutive failures, so
//! the operator sees why it never came up; the pending flag then clears.
//! After the first verdict, going up takes `rise` consecutive successes and
//! going down `fall` consecutive failures. This sends no traffic to a real
//! nobody has seen alive (keepalived's default is to start reals *up*,
//! which sends traffic to dead servers until `fall` checks failed), and a
//! live real waits only for its first check, which comes within one
//! interval of being added. Kind `none` is up at once and sends nothing.
//!
//! # Scheduling
//!
//! One thread (`ferrolb-health`) runs a single-threaded tokio runtime; each
//! target is one task that sleeps to its next slot, runs its check and
//! records the result. Targets added together are staggered evenly over
//! their interval (the i-th of n starts at `i * interval / n`), so 1,000
//! targets at 1 s make about one connect per millisecond (tokio's timer
//! has millisecond slots), not a burst of 1,000; a target
//! keeps its phase afterwards (slots missed while a check overran are
//! skipped, not run back to back).
//!
//! Why tokio: 1,000 concurrent connects with per-socket timeouts need an
//! event loop; tokio's (epoll + a hierarchical timer wheel) is the standard
//! one, maintained, and only its `rt`, `net`, `time`, `io-util` and `sync`
//! parts are built. A thread per target would cost 1,000 stacks; a
//! hand-written epoll loop would re-implement exactly this.
//!
//! # Live reconfiguration
//!
//! [`HealthChecker::update`] replaces the target set. A target is
//! identified by (VIP name, real address:port): one that stays keeps its
//! state and counters; if its source address or check changed, its task
//! restarts with the new settings (state and counters still kept) and
//! checks within one interval. Removed targets are cancelled, even
//! mid-check, and never reported again; new ones start pending. Dropping
//! the checker (or [`HealthChecker::stop`]) cancels every check and joins
//! the thread at once.
//!
//! # Use
//!
//! ```no_run
//! use control::health::{targets_from_config, HealthChecker};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = control::config::load("lb.toml".as_ref())?;
//! let (tx, rx) = std::sync::mpsc::channel();
//! let hc = HealthChecker::start(targets_from_config(&cfg), move |ev| {
//!     let _ = tx.send(ev); // e.g. to the thread that rebuilds the snapshot
//! })?;
//! // On reload: hc.update(targets_from_config(&new_cfg));
//! // For the admin API: hc.status();
//! for ev in rx.iter().take(1) {
//!     println!("{} {} is {}: {}", ev.vip, ev.addr, ev.state, ev.reason);
//! }
//! hc.stop();
//! # Ok(())
//! # }
//! ```
//!
//! The callback runs on the checker's thread: keep it short (e.g. send on
//! a channel); a slow callback delays checks, a panicking one is logged and
//! the checker goes on.

mod http;
mod probe;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Check, Config, Health, HealthKind};

pub use http::MAX_RESPONSE;
pub use probe::UDP_PAYLOAD;

/// One real server of one VIP, to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The VIP's name.
    pub vip: String,
    /// The real server's address and port: which real the verdicts are
    /// about.
    pub addr: SocketAddr,
    /// Where checks go: `addr`, or `[vip.health]`'s `address` / `port`.
    pub probe: SocketAddr,
    /// The local address checks leave from (port chosen by the kernel);
    /// `None` lets the kernel choose.
    pub bind: Option<IpAddr>,
    /// How to check.
    pub check: Health,
}

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Gets traffic.
    Up,
    /// Gets no new traffic.
    Down,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Up => "up",
            State::Down => "down",
        })
    }
}

/// A target changed state (or got its first verdict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The VIP's name.
    pub vip: String,
    /// The real server.
    pub addr: SocketAddr,
    /// The new state.
    pub state: State,
    /// The result of the check that decided it.
    pub reason: String,
}

/// What the admin API shows of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// The VIP's name.
    pub vip: String,
    /// The real server.
    pub addr: SocketAddr,
    /// Where its checks go.
    pub probe: SocketAddr,
    /// The source address, if one is set.
    pub bind: Option<IpAddr>,
    /// The check kind.
    pub kind: HealthKind,
    /// The current state.
    pub state: State,
    /// No verdict yet (the state is `Down` because nothing passed yet).
    pub pending: bool,
    /// When the last check started.
    pub last_check: Option<SystemTime>,
    /// Whether the last check passed.
    pub last_ok: Option<bool>,
    /// What the last check found (`tcp: connected`, or why it failed).
    pub last_reason: String,
    /// How long the last check took.
    pub last_latency: Option<Duration>,
    /// When the state last changed.
    pub last_change: Option<SystemTime>,
    /// Consecutive passed checks.
    pub consecutive_successes: u32,
    /// Consecutive failed checks.
    pub consecutive_failures: u32,
    /// Checks run since the target was added.
    pub total_checks: u64,
    /// Of which failed.
    pub total_failures: u64,
}

/// The `[vip.health]` of a VIP without one: no check, every real up.
pub fn no_check() -> Health {
    Health {
        check: Check::None,
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        rise: 1,
        fall: 1,
        port: None,
        address: None,
    }
}

/// The targets a configuration asks for: every real of every VIP, checked
/// as its VIP's `[vip.health]` says (kind `none` without one). Checks leave
/// from the balancer's own address on the segment of the real when there is
/// one; routed reals let the kernel choose.
pub fn targets_from_config(cfg: &Config) -> Vec<Target> {
    let mut out = Vec::new();
    for vip in &cfg.vips {
        let check = vip.health.clone().unwrap_or_else(no_check);
        for real in &vip.reals {
            let addr = SocketAddr::new(real.address, real.port);
            let probe = check.endpoint(addr);
            let bind = cfg
                .ports
                .iter()
                .flat_map(|p| &p.addresses)
                .find(|c| c.contains(probe.ip()))
                .map(|c| c.addr);
            out.push(Target {
                vip: vip.name.clone(),
                addr,
                probe,
                bind,
                check: check.clone(),
            });
        }
    }
    out
}

// ------------------------------------------------------------- hysteresis

/// The rise/fall state machine of one target (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tracker {
    state: State,
    pending: bool,
    successes: u32,
    failures: u32,
}

impl Tracker {
    const NEW: Tracker = Tracker {
        state: State::Down,
        pending: true,
        successes: 0,
        failures: 0,
    };

    /// Counts one check; `Some(state)` when an event is due.
    fn record(&mut self, ok: bool, rise: u32, fall: u32) -> Option<State> {
        let verdict = if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            (self.pending || (self.state == State::Down && self.successes >= rise))
                .then_some(State::Up)
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            ((self.pending || self.state == State::Up) && self.failures >= fall)
                .then_some(State::Down)
        };
        if let Some(s) = verdict {
            self.state = s;
            self.pending = false;
        }
        verdict
    }

    /// Kind `none`: up without checking.
    fn force_up(&mut self) -> Option<State> {
        let due = self.pending || self.state == State::Down;
        *self = Tracker {
            state: State::Up,
            pending: false,
            successes: 0,
            failures: 0,
        };
        due.then_some(State::Up)
    }
}

// -------------------------------------------------------------- the checker

type Key = (String, SocketAddr);

/// One target's configuration, state and counters.
struct Entry {
    /// Tells this entry's current task from a cancelled one.
    id: u64,
    target: Arc<Target>,
    tracker: Tracker,
    last_check: Option<SystemTime>,
    last_ok: Option<bool>,
    last_reason: String,
    last_latency: Option<Duration>,
    last_change: Option<SystemTime>,
    total_checks: u64,
    total_failures: u64,
    task: JoinHandle<()>,
}

impl Entry {
    fn status(&self) -> TargetStatus {
        let t = &self.target;
        TargetStatus {
            vip: t.vip.clone(),
            addr: t.addr,
            probe: t.probe,
            bind: t.bind,
            kind: t.check.kind(),
            state: self.tracker.state,
            pending: self.tracker.pending,
            last_check: self.last_check,
            last_ok: self.last_ok,
            last_reason: self.last_reason.clone(),
            last_latency: self.last_latency,
            last_change: self.last_change,
            consecutive_successes: self.tracker.successes,
            consecutive_failures: self.tracker.failures,
            total_checks: self.total_checks,
            total_failures: self.total_failures,
        }
    }
}

type Callback = Box<dyn FnMut(Event) + Send>;

/// What the caller's thread and the checker's tasks share.
struct Shared {
    entries: Mutex<Entries>,
    on_change: Mutex<Callback>,
}

struct Entries {
    map: HashMap<Key, Entry>,
    next_id: u64,
}

/// Locks, going on after a panic elsewhere (the data stay consistent: every
/// update under these locks is a few plain assignments).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The target of `key` if task `id` is still its task.
    fn target(&self, key: &Key, id: u64) -> Option<Arc<Target>> {
        let entries = lock(&self.entries);
        let e = entries.map.get(key)?;
        (e.id == id).then(|| e.target.clone())
    }

    /// Records one check's outcome and delivers the event it causes.
    fn record(&self, key: &Key, id: u64, outcome: probe::Outcome, at: SystemTime, took: Duration) {
        let event = {
            let mut entries = lock(&self.entries);
            let Some(e) = entries.map.get_mut(key).filter(|e| e.id == id) else {
                return;
            };
            let check = &e.target.check;
            let ok = outcome.is_ok();
            let change = if check.kind() == HealthKind::None {
                e.tracker.force_up()
            } else {
                e.total_checks += 1;
                e.total_failures += u64::from(!ok);
                e.last_check = Some(at);
                e.last_ok = Some(ok);
                e.last_latency = Some(took);
                e.tracker.record(ok, check.rise, check.fall)
            };
            let reason = match outcome {
                Ok(s) | Err(s) => s,
            };
            if !ok {
                tracing::debug!(vip = %key.0, real = %key.1, reason = %reason, "check failed");
            }
            e.last_reason.clone_from(&reason);
            change.map(|state| {
                e.last_change = Some(SystemTime::now());
                Event {
                    vip: key.0.clone(),
                    addr: key.1,
                    state,
                    reason,
                }
            })
        };
        if let Some(ev) = event {
            tracing::info!(
                vip = %ev.vip,
                real = %ev.addr,
                state = %ev.state,
                reason = %ev.reason,
                "real server {}",
                ev.state
            );
            let mut cb = lock(&self.on_change);
            if std::panic::catch_unwind(AssertUnwindSafe(|| (cb)(ev))).is_err() {
                tracing::error!("the health event callback panicked; checks go on");
            }
        }
    }
}

/// One target's task: check at every slot until cancelled.
async fn run(shared: Arc<Shared>, key: Key, id: u64, first: Instant) {
    let mut next = first;
    loop {
        tokio::time::sleep_until(next).await;
        let Some(target) = shared.target(&key, id) else {
            return;
        };
        let at = SystemTime::now();
        let started = Instant::now();
        let outcome = probe::probe(&target).await;
        shared.record(&key, id, outcome, at, started.elapsed());
        if target.check.kind() == HealthKind::None {
            // Up for good; a new check in `update` starts a new task.
            return;
        }
        // Keep the phase; skip the slots a slow check overran.
        let interval = target.check.interval.max(Duration::from_millis(1));
        next += interval;
        let now = Instant::now();
        if next < now {
            let behind = (now - next).as_nanos() / interval.as_nanos();
            next += interval * u32::try_from(behind + 1).unwrap_or(u32::MAX);
        }
    }
}

/// Checks targets on a thread of its own. See the module doc.
pub struct HealthChecker {
    shared: Arc<Shared>,
    handle: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthChecker {
    /// Starts checking `targets`; `on_change` receives every [`Event`], on
    /// the checker's thread. Fails only if the thread or its event loop
    /// cannot be created.
    pub fn start(
        targets: Vec<Target>,
        on_change: impl FnMut(Event) + Send + 'static,
    ) -> io::Result<HealthChecker> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ferrolb-health".into())
            .spawn(move || {
                // Returns on stop() or when the sender is dropped.
                let _ = rt.block_on(stopped);
                // Dropping the runtime cancels every check in flight.
                drop(rt);
            })?;
        let checker = HealthChecker {
            shared: Arc::new(Shared {
                entries: Mutex::new(Entries {
                    map: HashMap::new(),
                    next_id: 0,
                }),
                on_change: Mutex::new(Box::new(on_change)),
            }),
            handle,
            stop: Some(stop),
            thread: Some(thread),
        };
        checker.update(targets);
        Ok(checker)
    }

    /// Replaces the set of targets (see the module doc). Of two targets
    /// with the same VIP name and address, the last one counts.
    pub fn update(&self, targets: Vec<Target>) {
        let wanted: BTreeMap<Key, Target> = targets
            .into_iter()
            .map(|t| ((t.vip.clone(), t.addr), t))
            .collect();
        let mut guard = lock(&self.shared.entries);
        let entries = &mut *guard;
        entries.map.retain(|k, e| {
            let keep = wanted.contains_key(k);
            if !keep {
                e.task.abort();
            }
            keep
        });
        // New or changed targets get a task, staggered over their interval.
        let starting: Vec<(Key, Target)> = wanted
            .into_iter()
            .filter(|(k, t)| entries.map.get(k).is_none_or(|e| *e.target != *t))
            .collect();
        let n = starting.len() as u128;
        let now = Instant::now();
        for (i, (key, target)) in starting.into_iter().enumerate() {
            let delay = if target.check.kind() == HealthKind::None {
                Duration::ZERO
            } else {
                let nanos = target.check.interval.as_nanos() * i as u128 / n;
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            };
            let id = entries.next_id;
            entries.next_id += 1;
            let task = self
                .handle
                .spawn(run(self.shared.clone(), key.clone(), id, now + delay));
            let target = Arc::new(target);
            match entries.map.get_mut(&key) {
                Some(e) => {
                    e.task.abort();
                    e.task = task;
                    e.id = id;
                    e.target = target;
                }
                None => {
                    entries.map.insert(
                        key,
                        Entry {
                            id,
                            target,
                            tracker: Tracker::NEW,
                            last_check: None,
                            last_ok: None,
                            last_reason: "not checked yet".into(),
                            last_latency: None,
                            last_change: None,
                            total_checks: 0,
                            total_failures: 0,
                            task,
                        },
                    );
                }
            }
        }
    }

    /// Every target's status, ordered by VIP name then address.
    pub fn status(&self) -> Vec<TargetStatus> {
        let mut v: Vec<TargetStatus> = lock(&self.shared.entries)
            .map
            .values()
            .map(Entry::status)
            .collect();
        v.sort_by(|a, b| (&a.vip, a.addr).cmp(&(&b.vip, b.addr)));
        v
    }

    /// Stops every check and joins the thread (also done on drop).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the health-check thread panicked");
            }
        }
    }
}

impl fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecker")
            .field("targets", &lock(&self.shared.entries).map.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
