//! The VRRPv3 instance of `[ha]` on a live port: sockets on the port's
//! exception TAP around the pure state machine of `control::vrrp`.
//!
//! * Adverts: a raw IPv4 socket, protocol 112, bound to the TAP
//!   (SO_BINDTODEVICE), member of 224.0.0.18, multicast TTL 255, multicast
//!   loop off, non-blocking. The kernel adds the IP header on send (source:
//!   the port's first IPv4 address); on receive the IP header comes with
//!   the message, and anything whose TTL is not 255 is dropped (RFC 5798
//!   §7.1). The data plane passes 224.0.0.0/24 to the TAP and sends what
//!   the kernel writes on the TAP out of the data port.
//! * Gratuitous ARP: an AF_PACKET socket on the TAP (whose MAC is the
//!   port's), one broadcast ARP request (sender = target = the address)
//!   per floating IPv4 address, at MASTER and at the `Garp` times.
//!
//! IPv4 only: IPv6 VIPs float with the IPv4 instance's decision (they are
//! in the snapshot's owned set) but no unsolicited NA is sent yet.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use control::config::HaConf;
use control::vrrp::{Action, Garp, State, Vrrp, VrrpConfig, MCAST_V4};

/// A running VRRP instance.
pub struct Ha {
    vrrp: Vrrp,
    sock: OwnedFd,
    arp: OwnedFd,
    ifindex: i32,
    mac: [u8; 6],
    /// Floating IPv4 addresses (VIPs + `[ha].floating`), announced by GARP.
    garp_addrs: Vec<Ipv4Addr>,
    garp: Option<Garp>,
    next_garp: Option<Instant>,
    /// Announcement rounds sent (each: one frame per address).
    pub garps_sent: u64,
    /// Received packets dropped before the state machine (TTL != 255, short).
    pub dropped_ttl: u64,
}

fn last_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn setopt<T>(fd: &OwnedFd, level: i32, name: i32, val: &T, what: &str) -> io::Result<()> {
    // SAFETY: `val` points to a live T of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(last_err(what));
    }
    Ok(())
}

fn sockaddr_v4(a: Ipv4Addr) -> libc::sockaddr_in {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
    sa
}

impl Ha {
    /// Opens the sockets on `tap` and builds the state machine (not started).
    pub fn open(
        ha: &HaConf,
        tap: &str,
        primary: Ipv4Addr,
        addresses: &[IpAddr],
        mac: [u8; 6],
    ) -> io::Result<Ha> {
        let cfg = VrrpConfig::from_ha(ha, IpAddr::V4(primary), addresses);
        let garp_addrs = cfg
            .addresses
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let vrrp = Vrrp::new(cfg)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let cname = std::ffi::CString::new(tap)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
        // SAFETY: a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(last_err(&format!("interface {tap}")));
        }
        // SAFETY: plain socket(2); the fd is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                112,
            )
        };
        if fd < 0 {
            return Err(last_err("raw socket, protocol 112"));
        }
        // SAFETY: fd is a fresh descriptor we own.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: name bytes and length are valid.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                tap.as_ptr().cast(),
                tap.len() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(last_err(&format!("SO_BINDTODEVICE {tap}")));
        }
        let mreq = libc::ip_mreqn {
            imr_multiaddr: libc::in_addr {
                s_addr: u32::from_ne_bytes(MCAST_V4.octets()),
            },
            imr_address: libc::in_addr {
                s_addr: u32::from_ne_bytes(primary.octets()),
            },
            imr_ifindex: ifindex,
        };
        setopt(
            &sock,
            libc::IPPROTO_IP,
            libc::IP_ADD_MEMBERSHIP,
            &mreq,
            "joining 224.0.0.18",
        )?;
        setopt(
            &sock,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &mreq,
            "IP_MULTICAST_IF",
        )?;
        let ttl: libc::c_int = 255;
        setopt(
            &sock,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_TTL,
            &ttl,
            "IP_MULTICAST_TTL",
        )?;
        setopt(&sock, libc::IPPROTO_IP, libc::IP_TTL, &ttl, "IP_TTL")?;
        let off: libc::c_int = 0;
        setopt(
            &sock,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_LOOP,
            &off,
            "IP_MULTICAST_LOOP",
        )?;
        // SAFETY: plain socket(2); the fd is owned at once.
        let afd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                0, // send only: receives nothing
            )
        };
        if afd < 0 {
            return Err(last_err("AF_PACKET socket"));
        }
        // SAFETY: fresh descriptor we own.
        let arp = unsafe { OwnedFd::from_raw_fd(afd) };
        Ok(Ha {
            vrrp,
            sock,
            arp,
            ifindex,
            mac,
            garp_addrs,
            garp: None,
            next_garp: None,
            garps_sent: 0,
            dropped_ttl: 0,
        })
    }

    /// The state machine (state, master, counters, config).
    pub fn vrrp(&self) -> &Vrrp {
        &self.vrrp
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

    /// Waits at most `limit` for an advert or the next deadline.
    pub fn wait(&self, now: Instant, limit: Duration) {
        let mut t = limit;
        for d in [self.vrrp.next_deadline(), self.next_garp]
            .into_iter()
            .flatten()
        {
            t = t.min(d.saturating_duration_since(now));
        }
        let mut pfd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }

    /// Reads every pending advert, runs due timers and GARPs. Returns the
    /// new ownership if it changed (the last change, if several).
    pub fn step(&mut self, now: Instant) -> Option<bool> {
        let mut owner = None;
        let mut buf = [0u8; 2048];
        loop {
            // SAFETY: buf is writable for its length.
            let n =
                unsafe { libc::recv(self.sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                break;
            }
            let p = &buf[..n as usize];
            let Some((src, dst, msg)) = parse_v4(p) else {
                self.dropped_ttl += 1;
                continue;
            };
            let a = self
                .vrrp
                .on_packet(now, msg, IpAddr::V4(src), IpAddr::V4(dst));
            owner = self.execute(now, a).or(owner);
        }
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
                Action::SendAdvert { priority } => {
                    let msg = self.vrrp.encode_advert(priority);
                    let sa = sockaddr_v4(MCAST_V4);
                    // SAFETY: msg and sa are valid for their lengths.
                    let r = unsafe {
                        libc::sendto(
                            self.sock.as_raw_fd(),
                            msg.as_ptr().cast(),
                            msg.len(),
                            0,
                            (&sa as *const libc::sockaddr_in).cast(),
                            size_of::<libc::sockaddr_in>() as libc::socklen_t,
                        )
                    };
                    if r < 0 {
                        tracing::warn!("sending a VRRP advert: {}", io::Error::last_os_error());
                    }
                }
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

    /// One gratuitous ARP request per floating IPv4 address.
    fn announce(&mut self) {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        for a in &self.garp_addrs {
            let f = garp_frame(self.mac, *a);
            // SAFETY: f and sll are valid for their lengths.
            let r = unsafe {
                libc::sendto(
                    self.arp.as_raw_fd(),
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if r < 0 {
                tracing::warn!(address = %a, "sending a gratuitous ARP: {}", io::Error::last_os_error());
            }
        }
        self.garps_sent += 1;
    }

    /// The state, for logs and status.
    pub fn state(&self) -> State {
        self.vrrp.state()
    }
}

/// (source, destination, VRRP message) of an IPv4 packet with TTL 255.
fn parse_v4(p: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, &[u8])> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[8] != 255 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
    if ihl < 20 || total < ihl {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    Some((src, dst, &p[ihl..total]))
}

/// A broadcast gratuitous ARP request for `ip` from `mac`.
fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // Target MAC zero, target IP = sender IP (RFC 5227 announcement).
    f[38..42].copy_from_slice(&ip.octets());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_ttl_and_strips_the_header() {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[8] = 255;
        p[12..16].copy_from_slice(&[192, 0, 2, 3]);
        p[16..20].copy_from_slice(&[224, 0, 0, 18]);
        let (s, d, m) = parse_v4(&p).unwrap();
        assert_eq!((s, d, m.len()), (Ipv4Addr::new(192, 0, 2, 3), MCAST_V4, 8));
        p[8] = 254;
        assert!(parse_v4(&p).is_none());
    }

    #[test]
    fn garp_is_a_broadcast_request_for_the_address() {
        let f = garp_frame([2, 0, 0, 0, 0, 9], Ipv4Addr::new(192, 0, 2, 100));
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[8, 6]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &f[38..42]);
        assert_eq!(&f[22..28], &[2, 0, 0, 0, 0, 9]);
    }
}
