//! The VRRPv3 instance of `[ha]` on a live port, around the pure state
//! machine of [`super::Vrrp`]. Everything goes through the port's
//! exception TAP, so adverts and announcements leave and arrive through
//! the data port (the data plane passes the VRRP groups 224.0.0.18 and
//! ff02::12, and unicast to the port's own addresses, to the TAP, and
//! sends what is written on the TAP out of the port).
//!
//! * A packet socket on the TAP (`pnet_datalink`) reads every frame the
//!   data plane hands up and keeps the VRRP ones whose TTL / hop limit is
//!   255 (RFC 5798 §7.1); others are counted in `dropped_ttl`. Frames with
//!   our own source MAC (what we or the kernel sent) are skipped.
//! * Multicast adverts are whole Ethernet frames written on the same
//!   socket: IPv4 to 224.0.0.18 from the port's first IPv4 address, or
//!   IPv6 to ff02::12 from the port's EUI-64 link-local address.
//! * With `unicast_peers`, adverts go to each peer through a raw
//!   protocol-112 socket bound to the TAP (the kernel resolves the peer).
//!   That socket exists in every mode: it keeps the kernel from answering
//!   a unicast advert with "protocol unreachable"; what it receives is
//!   discarded (the packet socket already saw it).
//! * Announcements: a gratuitous ARP request (sender = target = the
//!   address) for each floating IPv4 address and an unsolicited neighbour
//!   advertisement (override flag, to all-nodes) for each floating IPv6
//!   address, at MASTER and then at the `Garp` times, each on the TAP of
//!   the port the address lives on (a VIP on its `port_name` port, a
//!   `[ha].floating` address on the VRRP port), with that port's MAC.
//!
//! No `unsafe` here: the socket crates own the system calls.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::packet::IPPROTO_VRRP;
use super::{encode, Action, Garp, Manual, State, Vrrp, VrrpConfig, MCAST_V4, MCAST_V6};
use crate::config::{Family, HaConf};
use forwarder::packet::builder::{self, FrameSpec};
use forwarder::packet::{MacAddr, NaFlags};
use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// How long one read of the packet socket blocks at most.
const RX_SLICE: Duration = Duration::from_millis(10);
/// Adverts queued between `wait` and `step` at most (a flood is dropped).
const INBOX: usize = 64;

/// A running VRRP instance.
pub struct Ha {
    vrrp: Vrrp,
    tx: Box<dyn DataLinkSender>,
    rx: Box<dyn DataLinkReceiver>,
    raw: Socket,
    raw_bound: bool,
    mac: MacAddr,
    peers: Vec<IpAddr>,
    /// Where each floating address is announced at MASTER.
    announcers: Vec<Announcer>,
    garp: Option<Garp>,
    next_garp: Option<Instant>,
    inbox: VecDeque<(IpAddr, IpAddr, Vec<u8>)>,
    /// Announcement rounds sent (each: one frame per address).
    pub garps_sent: u64,
    /// VRRP packets dropped before the state machine (TTL != 255, short).
    pub dropped_ttl: u64,
    /// Tracked links (`[ha].track`) all up.
    pub link_up: bool,
}

/// The EUI-64 link-local address of `mac` (RFC 4291 appendix A), the
/// source of IPv6 multicast adverts (RFC 5798 §5.1.2.1).
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// The floating addresses of one port, announced on its TAP.
struct Announcer {
    tap: String,
    mac: MacAddr,
    tx: Box<dyn DataLinkSender>,
    addrs: Vec<IpAddr>,
}

/// The floating addresses of one port: (TAP, port MAC, addresses).
pub type PortAddresses = (String, MacAddr, Vec<IpAddr>);

fn err(what: impl std::fmt::Display, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A packet socket on `tap`: (sender, receiver).
fn packet_channel(tap: &str) -> io::Result<(Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>)> {
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == tap)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no interface {tap}")))?;
    let dl = pnet_datalink::Config {
        read_timeout: Some(RX_SLICE),
        write_timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    match pnet_datalink::channel(&iface, dl)
        .map_err(|e| err(format_args!("packet socket on {tap}"), e))?
    {
        Channel::Ethernet(tx, rx) => Ok((tx, rx)),
        _ => Err(io::Error::other(format!(
            "packet socket on {tap}: not an Ethernet channel"
        ))),
    }
}

impl Ha {
    /// Opens the sockets on `tap` and builds the state machine (not
    /// started). `primary` is the port's first address of the VRRP family
    /// (`[ha].family`); for multicast IPv6 the link-local address is used
    /// instead. `ports` are the floating addresses of each port (the VRRP
    /// port's among them), announced on that port.
    pub fn open(
        ha: &HaConf,
        tap: &str,
        primary: IpAddr,
        mac: MacAddr,
        ports: Vec<PortAddresses>,
    ) -> io::Result<Ha> {
        let addresses: &[IpAddr] = &ports
            .iter()
            .flat_map(|p| p.2.iter().copied())
            .collect::<Vec<_>>();
        let primary = match (ha.family, ha.unicast_peers.is_empty()) {
            (Family::V6, true) => IpAddr::V6(link_local(mac)),
            _ => primary,
        };
        let cfg = VrrpConfig::from_ha(ha, primary, addresses);
        let vrrp = Vrrp::new(cfg)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let (tx, rx) = packet_channel(tap)?;
        let mut announcers = Vec::new();
        for (ptap, pmac, addrs) in ports {
            // Only the receiving half of the VRRP port's socket is read;
            // a socket of each port sends its announcements.
            let (ptx, _) = packet_channel(&ptap)?;
            announcers.push(Announcer {
                tap: ptap,
                mac: pmac,
                tx: ptx,
                addrs,
            });
        }
        let domain = match ha.family {
            Family::V4 => Domain::IPV4,
            Family::V6 => Domain::IPV6,
        };
        let raw = Socket::new(
            domain,
            Type::RAW,
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )
        .map_err(|e| err("raw socket, protocol 112", e))?;
        raw.bind_device(Some(tap.as_bytes()))
            .map_err(|e| err(format_args!("SO_BINDTODEVICE {tap}"), e))?;
        raw.set_nonblocking(true)
            .map_err(|e| err("non-blocking raw socket", e))?;
        match ha.family {
            Family::V4 => raw.set_ttl_v4(255),
            Family::V6 => raw.set_unicast_hops_v6(255),
        }
        .map_err(|e| err("TTL 255 on the raw socket", e))?;
        Ok(Ha {
            vrrp,
            tx,
            rx,
            raw,
            raw_bound: false,
            mac,
            peers: ha.unicast_peers.clone(),
            announcers,
            garp: None,
            next_garp: None,
            inbox: VecDeque::new(),
            garps_sent: 0,
            dropped_ttl: 0,
            link_up: true,
        })
    }

    /// The state machine (state, master, counters, config).
    pub fn vrrp(&self) -> &Vrrp {
        &self.vrrp
    }

    /// The state, for logs and status.
    pub fn state(&self) -> State {
        self.vrrp.state()
    }

    /// Startup: Initialize -> Backup. Returns the new ownership, if changed.
    pub fn start(&mut self, now: Instant) -> Option<bool> {
        let a = self.vrrp.on_start(now);
        self.execute(now, a)
    }

    /// Shutdown: priority 0 advert if MASTER. Returns the new ownership.
    pub fn shutdown(&mut self, now: Instant) -> Option<bool> {
        let a = self.vrrp.on_shutdown(now);
        self.execute(now, a)
    }

    /// The tracked links are all up (`true`) or one is down: FAULT gives
    /// the addresses up (with a priority 0 advert if MASTER), and the way
    /// back is through BACKUP. Returns the new ownership, if changed.
    pub fn set_link(&mut self, now: Instant, up: bool) -> Option<bool> {
        if up == self.link_up {
            return None;
        }
        self.link_up = up;
        let a = self.vrrp.on_link(now, up);
        self.execute(now, a)
    }

    /// The operator's word (`ferrolb ha ...`, see [`Vrrp::set_manual`]).
    /// Returns the new ownership, if changed.
    pub fn set_manual(&mut self, now: Instant, m: Manual) -> Option<bool> {
        let a = self.vrrp.set_manual(now, m);
        self.execute(now, a)
    }

    /// `[ha]` settings a reload changed, applied to the running router
    /// (see [`Vrrp::reconfigure`]).
    pub fn reconfigure(&mut self, ha: &HaConf) -> Result<(), crate::vrrp::ConfigError> {
        self.vrrp.reconfigure(
            ha.priority,
            ha.preempt,
            ha.advert_interval,
            ha.garp_interval,
            ha.garp_elapse,
        )
    }

    /// The floating addresses changed (a reload added or removed a VIP):
    /// later adverts list the new set and announcements cover it. Ports
    /// are the same as at [`Ha::open`] (a reload does not change them).
    pub fn set_addresses(&mut self, ports: &[PortAddresses]) {
        let v4 = self.vrrp.config().primary.is_ipv4();
        let mut listed = Vec::new();
        for a in &mut self.announcers {
            a.addrs = ports
                .iter()
                .find(|p| p.0 == a.tap)
                .map(|p| p.2.clone())
                .unwrap_or_default();
            listed.extend(a.addrs.iter().copied().filter(|x| x.is_ipv4() == v4));
        }
        self.vrrp.set_addresses(listed);
        if self.vrrp.state() == State::Master {
            self.announce();
        }
    }

    /// Waits at most `limit` (or until the next deadline) for an advert,
    /// which is queued for [`Ha::step`].
    pub fn wait(&mut self, now: Instant, limit: Duration) {
        let mut end = now + limit;
        for d in [self.vrrp.next_deadline(), self.next_garp]
            .into_iter()
            .flatten()
        {
            end = end.min(d);
        }
        let primary = self.vrrp.config().primary;
        while Instant::now() < end {
            match self.rx.next() {
                Ok(frame) => match vrrp_in_frame(frame, self.mac, primary) {
                    Frame::Vrrp(src, dst, msg) => {
                        if self.inbox.len() < INBOX {
                            self.inbox.push_back((src, dst, msg.to_vec()));
                        }
                        return;
                    }
                    Frame::BadTtl => self.dropped_ttl += 1,
                    Frame::Other => {}
                },
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => {
                    tracing::warn!("reading VRRP adverts: {e}");
                    std::thread::sleep(end.saturating_duration_since(Instant::now()));
                    return;
                }
            }
        }
    }

    /// Handles the queued adverts, runs due timers and announcements.
    /// Returns the new ownership if it changed (the last change, if
    /// several).
    pub fn step(&mut self, now: Instant) -> Option<bool> {
        let mut owner = None;
        while let Some((src, dst, msg)) = self.inbox.pop_front() {
            let a = self.vrrp.on_packet(now, &msg, src, dst);
            owner = self.execute(now, a).or(owner);
        }
        // What the raw socket receives was seen on the packet socket.
        let mut sink = [0u8; 2048];
        while matches!((&self.raw).read(&mut sink), Ok(n) if n > 0) {}
        if self.vrrp.next_deadline().is_some_and(|d| d <= now) {
            let a = self.vrrp.on_timer(now);
            owner = self.execute(now, a).or(owner);
        }
        if let (Some(g), Some(t)) = (self.garp, self.next_garp) {
            if t <= now {
                self.announce();
                self.next_garp = g.next_after(now);
            }
        }
        owner
    }

    fn execute(&mut self, now: Instant, actions: Vec<Action>) -> Option<bool> {
        let mut owner = None;
        for a in actions {
            match a {
                Action::SendAdvert { priority } => self.send_advert(priority),
                Action::BecomeMaster => {
                    owner = Some(true);
                    self.announce();
                }
                Action::BecomeBackup => {
                    owner = Some(false);
                    self.garp = None;
                    self.next_garp = None;
                }
                Action::GarpSchedule(g) => {
                    self.garp = Some(g);
                    self.next_garp = g.next_after(now);
                }
            }
        }
        owner
    }

    fn send_advert(&mut self, priority: u8) {
        let primary = self.vrrp.config().primary;
        if self.peers.is_empty() {
            let frame = advert_frame(self.mac, primary, self.vrrp.encode_advert(priority));
            self.send_frame(&frame, "a VRRP advert");
            return;
        }
        if !self.raw_bound {
            match self.raw.bind(&SockAddr::from(SocketAddr::new(primary, 0))) {
                Ok(()) => self.raw_bound = true,
                Err(e) => {
                    tracing::warn!(%primary, "binding the unicast VRRP socket: {e}");
                    return;
                }
            }
        }
        let adv = self.vrrp.advert(priority);
        for peer in &self.peers {
            let Ok(msg) = encode(&adv, primary, *peer) else {
                continue;
            };
            if let Err(e) = self
                .raw
                .send_to(&msg, &SockAddr::from(SocketAddr::new(*peer, 0)))
            {
                tracing::warn!(%peer, "sending a unicast VRRP advert: {e}");
            }
        }
    }

    fn send_frame(&mut self, frame: &[u8], what: &str) {
        send_on(&mut *self.tx, frame, what);
    }

    /// One gratuitous ARP / unsolicited NA per floating address, each on
    /// its own port.
    fn announce(&mut self) {
        for a in &mut self.announcers {
            for addr in &a.addrs {
                let frame = announcement(a.mac, *addr);
                send_on(&mut *a.tx, &frame, "a gratuitous ARP / unsolicited NA");
            }
        }
        self.garps_sent += 1;
    }
}

fn send_on(tx: &mut dyn DataLinkSender, frame: &[u8], what: &str) {
    match tx.send_to(frame, None) {
        Some(Ok(())) => {}
        Some(Err(e)) => tracing::warn!("sending {what}: {e}"),
        None => tracing::warn!("sending {what}: no room in the socket"),
    }
}

/// What a frame read from the TAP is.
#[derive(Debug, PartialEq, Eq)]
enum Frame<'a> {
    /// A VRRP message: (source, destination, message).
    Vrrp(IpAddr, IpAddr, &'a [u8]),
    /// VRRP with a TTL / hop limit other than 255, or truncated.
    BadTtl,
    /// Anything else (including our own frames).
    Other,
}

/// Picks VRRP messages (to the group of `primary`'s family or to
/// `primary` itself) out of the frames seen on the TAP.
fn vrrp_in_frame(f: &[u8], own: MacAddr, primary: IpAddr) -> Frame<'_> {
    if f.len() < 14 || f[6..12] == own.0 {
        return Frame::Other;
    }
    let p = &f[14..];
    match (u16::from_be_bytes([f[12], f[13]]), primary) {
        (0x0800, IpAddr::V4(me)) => {
            if p.len() < 20 || p[0] >> 4 != 4 || p[9] != IPPROTO_VRRP {
                return Frame::Other;
            }
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            if dst != MCAST_V4 && dst != me {
                return Frame::Other;
            }
            // Fragments (MF or an offset) are not adverts.
            if ihl < 20
                || total < ihl
                || total > p.len()
                || p[8] != 255
                || p[6] & 0x3f != 0
                || p[7] != 0
            {
                return Frame::BadTtl;
            }
            let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            Frame::Vrrp(IpAddr::V4(src), IpAddr::V4(dst), &p[ihl..total])
        }
        (0x86dd, IpAddr::V6(me)) => {
            if p.len() < 40 || p[0] >> 4 != 6 || p[6] != IPPROTO_VRRP {
                return Frame::Other;
            }
            let mut d = [0u8; 16];
            d.copy_from_slice(&p[24..40]);
            let dst = Ipv6Addr::from(d);
            if dst != MCAST_V6 && dst != me {
                return Frame::Other;
            }
            let len = usize::from(u16::from_be_bytes([p[4], p[5]]));
            if 40 + len > p.len() || p[7] != 255 {
                return Frame::BadTtl;
            }
            let mut s = [0u8; 16];
            s.copy_from_slice(&p[8..24]);
            Frame::Vrrp(
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(dst),
                &p[40..40 + len],
            )
        }
        _ => Frame::Other,
    }
}

/// A multicast advert frame carrying `msg` from `src` (TTL 255).
fn advert_frame(mac: MacAddr, src: IpAddr, msg: Vec<u8>) -> Vec<u8> {
    match src {
        IpAddr::V4(src) => builder::ip4_raw(
            &FrameSpec {
                src_mac: mac,
                dst_mac: MacAddr::ipv4_multicast(&MCAST_V4),
                src,
                dst: MCAST_V4,
                ttl: 255,
                ident: 0,
                payload: msg,
                ..FrameSpec::default()
            },
            IPPROTO_VRRP,
        ),
        IpAddr::V6(src) => builder::ip6_raw(
            &FrameSpec {
                src_mac: mac,
                dst_mac: MacAddr::ipv6_multicast(&MCAST_V6),
                src,
                dst: MCAST_V6,
                ttl: 255,
                payload: msg,
                ..FrameSpec::default()
            },
            IPPROTO_VRRP,
        ),
    }
}

/// The takeover announcement for `addr` from `mac`: a broadcast ARP
/// request with sender = target = `addr` (RFC 5227 announcement), or an
/// unsolicited neighbour advertisement to all-nodes with the override flag
/// (RFC 4861 §7.2.6).
fn announcement(mac: MacAddr, addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => builder::arp_request(&FrameSpec {
            src_mac: mac,
            src: a,
            dst: a,
            ..FrameSpec::default()
        }),
        IpAddr::V6(a) => {
            let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
            builder::neighbour_advertisement(
                &FrameSpec {
                    src_mac: mac,
                    dst_mac: MacAddr::ipv6_multicast(&all_nodes),
                    src: a,
                    dst: all_nodes,
                    ..FrameSpec::default()
                },
                NaFlags::OVERRIDE,
            )
        }
    }
}

#[cfg(test)]
mod tests;
