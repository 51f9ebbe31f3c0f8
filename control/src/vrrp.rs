//! VRRPv3 (RFC 5798): the packet codec and the state machine of one
//! virtual router, as pure logic.
//!
//! # What it owns and promises
//!
//! [`Vrrp`] is the §6 state machine of one virtual router of one address
//! family. It opens no socket and reads no clock: the caller passes the
//! time into every event ([`Vrrp::on_start`], [`Vrrp::on_advert`] /
//! [`Vrrp::on_packet`], [`Vrrp::on_timer`], [`Vrrp::on_shutdown`],
//! [`Vrrp::on_link`]), sleeps until [`Vrrp::next_deadline`], and carries
//! out the [`Action`]s each event returns, in order:
//!
//! * [`Action::SendAdvert`]: send an advert with that priority
//!   ([`Vrrp::encode_advert`] builds the VRRP message; the socket adds the
//!   IP header: protocol 112, TTL / hop limit 255, to 224.0.0.18 or ff02::12).
//! * [`Action::BecomeMaster`]: take the virtual addresses (put them in the
//!   snapshot's owned set) and send one gratuitous ARP / unsolicited NA for
//!   each at once.
//! * [`Action::GarpSchedule`]: repeat those announcements at the times of
//!   the given [`Garp`] until the next `BecomeBackup`.
//! * [`Action::BecomeBackup`]: release the virtual addresses (and drop any
//!   [`Garp`] schedule). Also returned at startup, so the caller starts
//!   from a known state.
//!
//! # Timing (all computed in this file)
//!
//! Intervals are kept in centiseconds, the unit on the wire; the config's
//! `advert_interval` is truncated to whole centiseconds (it is validated as
//! 10 ms..40 s). From the Master_Adver_Interval `M` (ours at startup, then
//! the one in the master's adverts) and our priority `p`:
//!
//! * Skew_Time = (256 - p) * M / 256, kept to the nanosecond (the RFC's
//!   formula in centiseconds would truncate 60.9375 cs to 60 cs; the exact
//!   value is what the tests assert).
//! * Master_Down_Interval = 3 * M + Skew_Time.
//!
//! A Backup becomes Master when no advert of a master it accepts came for
//! Master_Down_Interval; after a priority-0 advert, for Skew_Time. So with
//! the default 1 s and priority 100, takeover is 3.609375 s after the last
//! advert of a dead master and 0.609375 s after a clean shutdown. The
//! Master sends every Advertisement_Interval, drift-free (the next one is
//! due a whole interval after the previous deadline, or after `now` if the
//! caller woke more than an interval late).
//!
//! # Decisions (RFC 5798 §6.4)
//!
//! * Backup, advert priority 0: Master_Down_Timer = Skew_Time.
//! * Backup, otherwise: if preempt is off or the advert's priority is >=
//!   ours, learn its interval and restart Master_Down_Timer; else (preempt
//!   on, lower priority) ignore it, so we take over when the timer fires.
//! * Master, advert priority 0: send an advert at once.
//! * Master, advert priority higher than ours, or equal and the sender's
//!   primary address higher than ours: become Backup. Else ignore it (the
//!   other side yields on our next advert).
//!
//! Equal priorities are decided by address only between two Masters: a
//! Backup accepts an equal-priority master whatever its address, so a
//! node that starts later does not take over from a live equal peer.
//!
//! # Validation and counters
//!
//! [`Vrrp::on_packet`] decodes and counts a failed decode (version, type,
//! length, count, checksum: [`packet::Error`]) as invalid. [`Vrrp::on_advert`]
//! further rejects a wrong VRID, an interval of 0, a source of the other
//! family and our own adverts (multicast looped back). Invalid adverts are
//! counted, remembered as [`Counters::last_invalid`], and change nothing.
//! An advert whose address list differs from ours is counted in
//! [`Counters::address_mismatch`] but still obeyed: RFC 5798 §7.1 says to
//! drop it, but then a rolling reload that adds a VIP on one node first
//! would make both nodes Master; a count is the safer signal. The TTL 255
//! check (§7.1) needs the IP header and is the socket's job.
//!
//! # Split brain
//!
//! When adverts stop arriving but the peer still runs (a cut or
//! filtered link between the two, multicast dropped by a switch), each
//! side's Master_Down_Timer fires and both become Master and hold the
//! addresses. keepalived behaves the same: VRRP cannot tell a dead peer
//! from an unreachable one, and keepalived's VRRP has no quorum of its
//! own (operators add fencing with track/notify scripts). ferrolb does the
//! same: both sides answer ARP for the VIPs, the switch follows whichever
//! gratuitous ARP came last, and once adverts flow again the lower
//! priority (or, at equal priority, the lower address) yields on the
//! first advert it hears (tested in `split_brain_and_heal`).
//!
//! # Link tracking
//!
//! [`Vrrp::on_link`] with `up = false` (the tracked port lost its link)
//! gives MASTER up at once: a priority-0 advert (so the peer takes over in
//! Skew_Time, if the advert can still leave on some path; if the tracked
//! port is the VRRP port it cannot, and the peer takes over after
//! Master_Down_Interval) and `BecomeBackup`; the state is [`State::Fault`],
//! in which adverts are ignored and no timer runs. `up = true` goes back
//! to Backup as at startup, and (with preempt) a higher priority takes
//! MASTER back after Master_Down_Interval.
//!
//! # Address families
//!
//! As in RFC 5798, an IPv4 and an IPv6 virtual router are separate
//! instances: [`VrrpConfig::from_ha`] keeps the addresses of the primary
//! address's family. The IPv6 primary address should be link-local (§5.1.2.1).

pub mod driver;
pub mod packet;

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::HaConf;

pub use packet::{decode, encode, Advert, Error as PacketError, MCAST_V4, MCAST_V6};

/// What one virtual router is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpConfig {
    /// Virtual router id (1-255).
    pub vrid: u8,
    /// Our priority (1-254; 255, the address owner, is not used by ferrolb).
    pub priority: u8,
    /// Advertisement_Interval (10 ms..40.95 s, truncated to centiseconds).
    pub advert_interval: Duration,
    /// Take MASTER from a lower priority.
    pub preempt: bool,
    /// Our own address on the VRRP port: source of our adverts and the
    /// tie-breaker between equal priorities.
    pub primary: IpAddr,
    /// The virtual addresses listed in adverts (the primary's family).
    pub addresses: Vec<IpAddr>,
    /// Repeat gratuitous ARP this often after becoming MASTER (0: never).
    pub garp_interval: Duration,
    /// ... for this long.
    pub garp_elapse: Duration,
}

impl VrrpConfig {
    /// The config of `[ha]` for the virtual router whose primary address is
    /// `primary`, listing those of `addresses` (every VIP and floating
    /// address) that are of the primary's family.
    pub fn from_ha(ha: &HaConf, primary: IpAddr, addresses: &[IpAddr]) -> Self {
        VrrpConfig {
            vrid: ha.vrid,
            priority: ha.priority,
            advert_interval: ha.advert_interval,
            preempt: ha.preempt,
            primary,
            addresses: addresses
                .iter()
                .copied()
                .filter(|a| a.is_ipv4() == primary.is_ipv4())
                .collect(),
            garp_interval: ha.garp_interval,
            garp_elapse: ha.garp_elapse,
        }
    }
}

/// Why a [`VrrpConfig`] is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// VRID 0.
    #[error("vrid must be 1-255")]
    Vrid,
    /// Priority 0 or 255.
    #[error("priority {0} is not 1-254")]
    Priority(u8),
    /// Interval outside 10 ms..40.95 s.
    #[error("advert_interval {0:?} is not 10ms..40.95s")]
    Interval(Duration),
    /// A virtual address of the other family.
    #[error("virtual address {0} is not of the primary address's family")]
    Family(IpAddr),
    /// More than 255 virtual addresses.
    #[error("{0} virtual addresses, at most 255 fit in an advert")]
    TooManyAddresses(usize),
}

/// What the operator asked of this node (`ferrolb ha takeover`,
/// `ferrolb ha release`, `ferrolb ha auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Manual {
    /// The election as configured.
    #[default]
    Auto,
    /// Be MASTER now and stay it: adverts carry [`TAKEOVER_PRIORITY`]
    /// (or the configured priority, if higher), so a peer of any
    /// configured priority but an address owner's yields.
    Takeover,
    /// Give the addresses up now (a priority-0 advert when MASTER) and
    /// stay BACKUP, whatever the peer does, until `takeover` or `auto`.
    Release,
}

impl Manual {
    /// `auto`, `takeover`, `release`.
    pub fn name(self) -> &'static str {
        match self {
            Manual::Auto => "auto",
            Manual::Takeover => "takeover",
            Manual::Release => "release",
        }
    }
}

/// The priority a node that took over advertises: the highest one a
/// router that does not own the addresses may use (RFC 5798, 5.2.4).
pub const TAKEOVER_PRIORITY: u8 = 254;

/// RFC 5798 states, plus Fault (a tracked link is down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or shut down.
    Initialize,
    /// Watching the master.
    Backup,
    /// Holding the addresses, sending adverts.
    Master,
    /// A tracked link is down: no addresses, no adverts, adverts ignored.
    Fault,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        })
    }
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (0: we are leaving MASTER).
    SendAdvert {
        /// Priority to advertise.
        priority: u8,
    },
    /// Take the virtual addresses; announce each once (gratuitous ARP /
    /// unsolicited NA).
    BecomeMaster,
    /// Release the virtual addresses; stop any gratuitous ARP schedule.
    BecomeBackup,
    /// Repeat the announcements at these times while MASTER.
    GarpSchedule(Garp),
}

/// When to repeat gratuitous ARP / unsolicited NA after becoming MASTER:
/// at `start + k * interval` for k = 1, 2, ... while `k * interval <=
/// elapse` (the announcement at `start` itself goes with `BecomeMaster`).
/// An interval or elapse of 0 repeats nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Garp {
    /// When MASTER was taken.
    pub start: Instant,
    /// Repeat period.
    pub interval: Duration,
    /// Repeat for this long after `start`.
    pub elapse: Duration,
}

impl Garp {
    /// Every repeat time, in order.
    pub fn times(&self) -> impl Iterator<Item = Instant> + '_ {
        let n = self.count();
        (1..=n).map(move |k| self.start + self.interval * k)
    }

    /// How many repeats.
    pub fn count(&self) -> u32 {
        if self.interval.is_zero() {
            return 0;
        }
        let n = self.elapse.as_nanos() / self.interval.as_nanos();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The first repeat strictly after `now`, if any is left.
    pub fn next_after(&self, now: Instant) -> Option<Instant> {
        if self.interval.is_zero() {
            return None;
        }
        let k = match now.checked_duration_since(self.start) {
            Some(d) => d.as_nanos() / self.interval.as_nanos() + 1,
            None => 1,
        };
        let k = u32::try_from(k).ok()?;
        (k <= self.count()).then(|| self.start + self.interval * k)
    }
}

/// Why an advert was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// It did not decode.
    #[error("{0}")]
    Packet(#[from] packet::Error),
    /// For another virtual router.
    #[error("vrid {got}, ours is {want}")]
    Vrid {
        /// VRID in the advert.
        got: u8,
        /// Ours.
        want: u8,
    },
    /// Max Adver Int 0.
    #[error("advertisement interval 0")]
    ZeroInterval,
    /// Sent from the other address family.
    #[error("advert from {0}, not our address family")]
    Family(IpAddr),
    /// Our own advert, looped back.
    #[error("our own advert")]
    Own,
}

/// Counters for the admin API and /metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Transitions to Master.
    pub to_master: u64,
    /// Transitions to Backup (startup, from Master, from Fault).
    pub to_backup: u64,
    /// Transitions to Fault.
    pub to_fault: u64,
    /// Adverts sent (any priority).
    pub adverts_sent: u64,
    /// Of which priority 0.
    pub priority_zero_sent: u64,
    /// Adverts received (valid or not).
    pub adverts_received: u64,
    /// Of which invalid and ignored.
    pub adverts_invalid: u64,
    /// Valid adverts with priority 0.
    pub priority_zero_received: u64,
    /// Valid adverts whose address list differs from ours.
    pub address_mismatch: u64,
    /// Why the last invalid advert was ignored.
    pub last_invalid: Option<Invalid>,
}

/// One virtual router's state machine.
#[derive(Debug, Clone)]
pub struct Vrrp {
    cfg: VrrpConfig,
    /// Advertisement_Interval, centiseconds.
    adver_cs: u16,
    /// Master_Adver_Interval, centiseconds.
    master_adver_cs: u16,
    state: State,
    /// Adver_Timer (Master) or Master_Down_Timer (Backup).
    timer: Option<Instant>,
    master: Option<IpAddr>,
    link_up: bool,
    /// What the operator asked.
    manual: Manual,
    counters: Counters,
}

/// Skew_Time for priority `priority` and Master_Adver_Interval `m_cs`.
pub fn skew_time(priority: u8, m_cs: u16) -> Duration {
    let ns = u64::from(m_cs) * 10_000_000 * (256 - u64::from(priority)) / 256;
    Duration::from_nanos(ns)
}

/// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
pub fn master_down_interval(priority: u8, m_cs: u16) -> Duration {
    packet::cs(m_cs) * 3 + skew_time(priority, m_cs)
}

impl Vrrp {
    /// A virtual router in Initialize; [`Vrrp::on_start`] starts it.
    pub fn new(cfg: VrrpConfig) -> Result<Vrrp, ConfigError> {
        if cfg.vrid == 0 {
            return Err(ConfigError::Vrid);
        }
        if cfg.priority == 0 || cfg.priority == 255 {
            return Err(ConfigError::Priority(cfg.priority));
        }
        let cs = cfg.advert_interval.as_millis() / 10;
        let adver_cs = match u16::try_from(cs) {
            Ok(v) if (1..=packet::MAX_INTERVAL_CS).contains(&v) => v,
            _ => return Err(ConfigError::Interval(cfg.advert_interval)),
        };
        if let Some(a) = cfg
            .addresses
            .iter()
            .find(|a| a.is_ipv4() != cfg.primary.is_ipv4())
        {
            return Err(ConfigError::Family(*a));
        }
        if cfg.addresses.len() > 255 {
            return Err(ConfigError::TooManyAddresses(cfg.addresses.len()));
        }
        Ok(Vrrp {
            cfg,
            adver_cs,
            master_adver_cs: adver_cs,
            state: State::Initialize,
            timer: None,
            master: None,
            link_up: true,
            manual: Manual::Auto,
            counters: Counters::default(),
        })
    }

    /// The priority our adverts carry and elections use: the configured
    /// one, raised to [`TAKEOVER_PRIORITY`] while taken over.
    pub fn priority(&self) -> u8 {
        match self.manual {
            Manual::Takeover => self.cfg.priority.max(TAKEOVER_PRIORITY),
            _ => self.cfg.priority,
        }
    }

    /// What the operator asked.
    pub fn manual(&self) -> Manual {
        self.manual
    }

    /// The operator's word: [`Manual::Takeover`] makes a BACKUP MASTER at
    /// once; [`Manual::Release`] makes a MASTER BACKUP at once (with a
    /// priority-0 advert, so the peer takes over within its skew time)
    /// and keeps it there; [`Manual::Auto`] returns to the election (a
    /// released BACKUP watches the master again; a node that took over
    /// advertises its own priority, and a peer that preempts takes the
    /// addresses back). Nothing happens in Initialize or Fault (a
    /// tracked link down still wins), but the word is kept for later.
    pub fn set_manual(&mut self, now: Instant, m: Manual) -> Vec<Action> {
        self.manual = m;
        match (m, self.state) {
            (Manual::Takeover, State::Backup) => self.become_master(now),
            (Manual::Takeover, State::Master) => {
                // Say the new priority at once.
                self.timer = Some(now + packet::cs(self.adver_cs));
                self.sent(self.priority());
                vec![Action::SendAdvert {
                    priority: self.priority(),
                }]
            }
            (Manual::Release, State::Master) => {
                self.sent(0);
                self.state = State::Backup;
                self.master = None;
                self.master_adver_cs = self.adver_cs;
                self.timer = Some(now + self.master_down_interval());
                self.counters.to_backup += 1;
                vec![Action::SendAdvert { priority: 0 }, Action::BecomeBackup]
            }
            (Manual::Auto, State::Master) => {
                self.timer = Some(now + packet::cs(self.adver_cs));
                self.sent(self.priority());
                vec![Action::SendAdvert {
                    priority: self.priority(),
                }]
            }
            (Manual::Auto, State::Backup) => {
                self.timer = Some(now + self.master_down_interval());
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Applies `[ha]` settings a reload changed (priority, preempt,
    /// advert interval, gratuitous ARP timing); the state is kept, and
    /// the next advert carries the new values.
    pub fn reconfigure(
        &mut self,
        priority: u8,
        preempt: bool,
        advert_interval: Duration,
        garp_interval: Duration,
        garp_elapse: Duration,
    ) -> Result<(), ConfigError> {
        let next = Vrrp::new(VrrpConfig {
            priority,
            preempt,
            advert_interval,
            garp_interval,
            garp_elapse,
            ..self.cfg.clone()
        })?;
        self.cfg = next.cfg;
        self.adver_cs = next.adver_cs;
        if self.state == State::Master {
            self.master_adver_cs = self.adver_cs;
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &VrrpConfig {
        &self.cfg
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The current master: us when Master, the source of the adverts we
    /// follow when Backup (None until one came, and after it left with
    /// priority 0), None in Initialize and Fault.
    pub fn master(&self) -> Option<IpAddr> {
        self.master
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// When [`Vrrp::on_timer`] must next be called; None when no timer runs
    /// (Initialize, Fault).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timer
    }

    /// Master_Adver_Interval now in use (ours, or learned from the master).
    pub fn master_adver_interval(&self) -> Duration {
        packet::cs(self.master_adver_cs)
    }

    /// Skew_Time now in use.
    pub fn skew_time(&self) -> Duration {
        skew_time(self.priority(), self.master_adver_cs)
    }

    /// Master_Down_Interval now in use.
    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(self.priority(), self.master_adver_cs)
    }

    /// Replaces the virtual addresses our adverts list (a reload added or
    /// removed a VIP); the state is kept.
    pub fn set_addresses(&mut self, addresses: Vec<IpAddr>) {
        self.cfg.addresses = addresses;
    }

    /// Our advert with `priority` (from [`Action::SendAdvert`]).
    pub fn advert(&self, priority: u8) -> Advert {
        Advert {
            vrid: self.cfg.vrid,
            priority,
            interval_cs: self.adver_cs,
            addresses: self.cfg.addresses.clone(),
        }
    }

    /// The VRRP message of our advert with `priority`, from our primary
    /// address to the family's multicast group.
    pub fn encode_advert(&self, priority: u8) -> Vec<u8> {
        let dst = match self.cfg.primary {
            IpAddr::V4(_) => IpAddr::V4(MCAST_V4),
            IpAddr::V6(_) => IpAddr::V6(MCAST_V6),
        };
        // Cannot fail: new() checked family, count, and interval.
        encode(&self.advert(priority), self.cfg.primary, dst).unwrap_or_default()
    }

    /// Startup event: Initialize -> Backup (or Fault if a tracked link is
    /// down). Ignored in any other state.
    pub fn on_start(&mut self, now: Instant) -> Vec<Action> {
        if self.state != State::Initialize {
            return Vec::new();
        }
        if !self.link_up {
            self.enter_fault();
            return Vec::new();
        }
        self.enter_backup(now);
        vec![Action::BecomeBackup]
    }

    /// Shutdown event: Master sends priority 0 and releases the addresses;
    /// every state goes to Initialize.
    pub fn on_shutdown(&mut self, _now: Instant) -> Vec<Action> {
        let actions = if self.state == State::Master {
            self.sent(0);
            vec![Action::SendAdvert { priority: 0 }, Action::BecomeBackup]
        } else {
            Vec::new()
        };
        self.state = State::Initialize;
        self.timer = None;
        self.master = None;
        actions
    }

    /// A VRRP message arrived (`src` and `dst` from its IP header, TTL
    /// already checked): decode it, count it, act on it.
    pub fn on_packet(&mut self, now: Instant, msg: &[u8], src: IpAddr, dst: IpAddr) -> Vec<Action> {
        match decode(msg, src, dst) {
            Ok(adv) => self.on_advert(now, &adv, src),
            Err(e) => {
                self.counters.adverts_received += 1;
                self.invalid(e.into());
                Vec::new()
            }
        }
    }

    /// A decoded advert from `src` arrived.
    pub fn on_advert(&mut self, now: Instant, adv: &Advert, src: IpAddr) -> Vec<Action> {
        self.counters.adverts_received += 1;
        if adv.vrid != self.cfg.vrid {
            self.invalid(Invalid::Vrid {
                got: adv.vrid,
                want: self.cfg.vrid,
            });
            return Vec::new();
        }
        if adv.interval_cs == 0 {
            self.invalid(Invalid::ZeroInterval);
            return Vec::new();
        }
        if src.is_ipv4() != self.cfg.primary.is_ipv4() {
            self.invalid(Invalid::Family(src));
            return Vec::new();
        }
        if src == self.cfg.primary {
            self.invalid(Invalid::Own);
            return Vec::new();
        }
        if adv.priority == 0 {
            self.counters.priority_zero_received += 1;
        }
        if !same_set(&adv.addresses, &self.cfg.addresses) {
            self.counters.address_mismatch += 1;
        }
        match self.state {
            State::Initialize | State::Fault => Vec::new(),
            State::Backup => {
                if adv.priority == 0 {
                    self.timer = Some(now + self.skew_time());
                    self.master = None;
                } else if !self.cfg.preempt || adv.priority >= self.priority() {
                    self.master_adver_cs = adv.interval_cs.min(packet::MAX_INTERVAL_CS);
                    self.timer = Some(now + self.master_down_interval());
                    self.master = Some(src);
                }
                Vec::new()
            }
            State::Master => {
                if adv.priority == 0 {
                    self.timer = Some(now + packet::cs(self.adver_cs));
                    self.sent(self.priority());
                    vec![Action::SendAdvert {
                        priority: self.priority(),
                    }]
                } else if adv.priority > self.priority()
                    || (adv.priority == self.priority() && src > self.cfg.primary)
                {
                    self.master_adver_cs = adv.interval_cs.min(packet::MAX_INTERVAL_CS);
                    self.state = State::Backup;
                    self.timer = Some(now + self.master_down_interval());
                    self.master = Some(src);
                    self.counters.to_backup += 1;
                    vec![Action::BecomeBackup]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// The timer may have expired (a call before [`Vrrp::next_deadline`]
    /// does nothing).
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let Some(deadline) = self.timer else {
            return Vec::new();
        };
        if now < deadline {
            return Vec::new();
        }
        let adver = packet::cs(self.adver_cs);
        match self.state {
            State::Backup if self.manual == Manual::Release => {
                // Released: the master may be gone, we stay.
                self.timer = Some(now + self.master_down_interval());
                Vec::new()
            }
            State::Backup => self.become_master(now),
            State::Master => {
                let next = deadline + adver;
                self.timer = Some(if next > now { next } else { now + adver });
                self.sent(self.priority());
                vec![Action::SendAdvert {
                    priority: self.priority(),
                }]
            }
            State::Initialize | State::Fault => {
                self.timer = None;
                Vec::new()
            }
        }
    }

    /// The tracked link went down (`up = false`) or came back.
    pub fn on_link(&mut self, now: Instant, up: bool) -> Vec<Action> {
        if up == self.link_up {
            return Vec::new();
        }
        self.link_up = up;
        match (up, self.state) {
            (false, State::Master) => {
                self.sent(0);
                self.enter_fault();
                vec![Action::SendAdvert { priority: 0 }, Action::BecomeBackup]
            }
            (false, State::Backup) => {
                self.enter_fault();
                Vec::new()
            }
            (true, State::Fault) => {
                self.enter_backup(now);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn become_master(&mut self, now: Instant) -> Vec<Action> {
        self.state = State::Master;
        self.master = Some(self.cfg.primary);
        self.timer = Some(now + packet::cs(self.adver_cs));
        self.counters.to_master += 1;
        self.sent(self.priority());
        vec![
            Action::SendAdvert {
                priority: self.priority(),
            },
            Action::BecomeMaster,
            Action::GarpSchedule(Garp {
                start: now,
                interval: self.cfg.garp_interval,
                elapse: self.cfg.garp_elapse,
            }),
        ]
    }

    fn enter_backup(&mut self, now: Instant) {
        self.state = State::Backup;
        self.master_adver_cs = self.adver_cs;
        self.timer = Some(now + self.master_down_interval());
        self.master = None;
        self.counters.to_backup += 1;
    }

    fn enter_fault(&mut self) {
        self.state = State::Fault;
        self.timer = None;
        self.master = None;
        self.counters.to_fault += 1;
    }

    fn sent(&mut self, priority: u8) {
        self.counters.adverts_sent += 1;
        if priority == 0 {
            self.counters.priority_zero_sent += 1;
        }
    }

    fn invalid(&mut self, why: Invalid) {
        self.counters.adverts_invalid += 1;
        self.counters.last_invalid = Some(why);
    }
}

/// Same addresses, whatever the order.
fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

#[cfg(test)]
mod tests;
