//! The TOML configuration: schema, parsing and validation.
//!
//! The documented keys (docs/CONFIGURATION.md) are a contract: they may be extended, never
//! renamed. Loading reports *every* problem it finds, each with the file,
//! the line and the key (`lb.toml:12: vip[0].real[1].port: ...`): unknown
//! keys, values of the wrong type or form, and rules that span keys
//! (duplicate VIPs, DR with port translation, a real no port can reach...).
//! A configuration that loads is internally consistent; nothing later has to
//! re-check it.
//!
//! Keys beyond the first contract, per `[[vip]]`:
//!
//! ```toml
//! on_down = "reschedule"      # reschedule | keep: flows of a real that goes down
//!   [vip.fallback]            # optional "sorry server": new flows when no real can
//!   address = "192.0.2.30"    # checked like a real: family, reachability
//!   port = 8080               # nat only; dr and tun keep the VIP's port
//!   mac = "02:00:00:00:00:30" # optional static neighbour
//! new_flow_rate_limit = 1000  # optional: new flows per second on this node
//!                             # (SYN flood guard; off by default)
//! ```
//!
//! and to `[ha]`:
//!
//! ```toml
//! sync_peer = "192.0.2.3"     # optional: connection sync with the peer's IPv4
//!                             # address on the [ha] port (none when absent)
//! sync_port = 8848            # UDP port of the sync, both ends
//! ```
//!
//! Parsing is in two steps: serde reads the file into raw structs whose
//! leaves are strings and integers (so one bad address does not hide the
//! next), then `validate` turns them into the typed [`Config`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

mod locate;
mod raw;
mod validate;

pub use forwarder::steer::{PortRole, SteeringMode};
use locate::{Errors, Locator};
use raw::RawConfig;
use validate::{ignored_path, validate};
pub use validate::{parse_duration, parse_mac};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given.
    pub file: String,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// The key, as a path (`vip[0].real[2].weight`); empty for the file.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------- typed form

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[dataplane]`.
    pub dataplane: Dataplane,
    /// `[[port]]`, in file order.
    pub ports: Vec<PortConf>,
    /// `[[vip]]`, in file order.
    pub vips: Vec<VipConf>,
    /// `[ha]`.
    pub ha: Option<HaConf>,
    /// `[admin]`.
    pub admin: AdminConf,
    /// `[announce]`.
    pub announce: Option<AnnounceConf>,
    /// `[[outbound]]`: source NAT for the reals' own connections.
    pub outbound: Vec<OutboundConf>,
}

/// `[[outbound]]`: connections that sources open to anything but a VIP
/// leave from `address`, an own address of port `port_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundConf {
    /// Its name (default `outboundN`, N its index).
    pub name: String,
    /// The inside prefixes it translates.
    pub sources: Vec<Cidr>,
    /// The port the address belongs to.
    pub port_name: String,
    /// The address connections leave from.
    pub address: IpAddr,
}

impl Config {
    /// A fingerprint of what decides which real a flow gets: every
    /// service's address, protocol, port, mode, scheduler, persistence,
    /// reals (address, port, weight) and fallback, in a canonical order
    /// (64-bit FNV-1a). Nodes of a fleet with the same fingerprint pick the
    /// same real for a flow; names, health-check settings and MACs do not
    /// count.
    pub fn fingerprint(&self) -> u64 {
        let mut vips: Vec<String> = self
            .vips
            .iter()
            .map(|v| {
                let mut reals: Vec<String> = v
                    .reals
                    .iter()
                    .map(|r| format!("{}:{}*{}", r.address, r.port, r.weight))
                    .collect();
                reals.sort();
                format!(
                    "{}|{:?}|{}|{:?}|{:?}|{:?}|{}|{:?}",
                    v.address,
                    v.protocol,
                    v.port,
                    v.mode,
                    v.scheduler,
                    v.persistence.map(|p| (p.timeout, p.netmask)),
                    reals.join(","),
                    v.fallback.as_ref().map(|f| (f.address, f.port)),
                )
            })
            .collect();
        vips.sort();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in vips.join("\n").bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

/// `[announce]`: the VIPs this node can serve, as host routes in a kernel
/// routing table that a BGP daemon (BIRD, FRR) exports to the routers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceConf {
    /// The kernel routing table (not 0, 253 default, 254 main, 255 local).
    pub table: u32,
    /// On SIGTERM and `ferrolb node drain`: withdraw every VIP, keep
    /// forwarding this long, then stop / stay drained.
    pub drain_time: Duration,
}

/// `[announce].drain_time` when it is not set.
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(5);

/// `[dataplane]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataplane {
    /// Passed to `rte_eal_init` as-is.
    pub eal_args: Vec<String>,
    /// Worker lcores.
    pub workers: u16,
    /// Flows per worker: IPv4 flows; a flow with an IPv6 address counts
    /// twice (connection-table cells).
    pub conn_table_capacity: u32,
    /// Back-off when a poll finds nothing.
    pub idle_sleep: Option<Duration>,
    /// Mbufs in the packet pool (default: enough for every queue).
    pub mbufs: Option<u32>,
    /// CPUs for the control plane's threads; empty: the main lcore's.
    pub housekeeping_cpus: Vec<usize>,
    /// Whether ports steer frames to their owner workers in the NIC.
    pub steering: SteeringMode,
}

/// An address with a prefix length, e.g. `192.0.2.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        forwarder::pipeline::same_prefix(self.addr, ip, self.prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not address/prefix (e.g. \"192.0.2.2/24\")"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("prefix {p:?} is not a number from 0 to {max}"))?;
        Ok(Cidr { addr, prefix })
    }
}

/// `[[port]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PortConf {
    /// The name VIPs and `[ha]` refer to.
    pub name: String,
    /// DPDK device name or PCI address.
    pub device: String,
    /// The balancer's own addresses on this port.
    pub addresses: Vec<Cidr>,
    /// Next hop for destinations outside every connected prefix.
    pub gateway: Option<IpAddr>,
    /// Kernel interface name of the exception-path TAP (default `fl-NAME`).
    pub tap: String,
}

/// Transport protocol of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Forwarding method of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Direct routing: rewrite the destination MAC.
    Dr,
    /// Address and port translation, both ways.
    Nat,
    /// IP-in-IP tunnelling.
    Tun,
}

/// Scheduler of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// Maglev consistent hashing.
    Maglev,
    /// Weighted round robin.
    Wrr,
    /// Weighted least connections.
    Wlc,
    /// Round robin.
    Rr,
    /// Least connections.
    Lc,
    /// Source hashing.
    Sh,
}

/// `[vip.persistence]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    /// How long a client group sticks to its real after its last flow.
    pub timeout: Duration,
    /// Clients are grouped by this prefix length.
    pub netmask: u8,
}

/// Kind of health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthKind {
    /// TCP connect.
    Tcp,
    /// HTTP GET.
    Http,
    /// UDP request/response.
    Udp,
    /// No check: every real is up.
    None,
}

/// What a health check does, with what only its kind has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// No check: every real is up.
    None,
    /// TCP connect.
    Tcp,
    /// UDP request / response (or no ICMP port unreachable).
    Udp,
    /// HTTP GET.
    Http(HttpCheck),
}

/// `type = "http"`: the request and what a healthy answer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// The path to GET.
    pub path: String,
    /// The status that means healthy.
    pub expect_status: u16,
    /// A substring the body must hold.
    pub expect_body: Option<String>,
}

/// `[vip.health]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// What the check does.
    pub check: Check,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Consecutive successes to come up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
    /// `port`: check this port instead of each real's (needed when the
    /// VIP covers every port).
    pub port: Option<u16>,
    /// `address`: check this address instead of each real's.
    pub address: Option<IpAddr>,
}

impl Health {
    /// Where the check of real `real` goes: `address` and `port` when
    /// set, the real's own otherwise.
    pub fn endpoint(&self, real: SocketAddr) -> SocketAddr {
        SocketAddr::new(
            self.address.unwrap_or(real.ip()),
            self.port.unwrap_or(real.port()),
        )
    }
}

impl Health {
    /// The check's kind.
    pub fn kind(&self) -> HealthKind {
        match self.check {
            Check::None => HealthKind::None,
            Check::Tcp => HealthKind::Tcp,
            Check::Udp => HealthKind::Udp,
            Check::Http(_) => HealthKind::Http,
        }
    }
}

/// `[[vip.real]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealConf {
    /// The real server's address.
    pub address: IpAddr,
    /// Its port (NAT); equal to the VIP's port in DR and TUN.
    pub port: u16,
    /// Relative weight; 0 = no new flows.
    pub weight: u32,
    /// Static neighbour entry.
    pub mac: Option<[u8; 6]>,
    /// `max_conns`: at this many active flows on the node the real takes
    /// no new flows (it is `overloaded`).
    pub max_conns: Option<u32>,
    /// `min_conns`: an overloaded real takes new flows again below this
    /// many (default: `max_conns`).
    pub min_conns: Option<u32>,
}

/// `[[vip]] on_down`: what a real that fails its health checks does with
/// its established flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDown {
    /// `"reschedule"` (default): each flow moves to another real on its
    /// next packet.
    #[default]
    Reschedule,
    /// `"keep"`: the flows stay until they end; only new flows avoid it.
    Keep,
}

/// `[[vip]] on_remove`: what a reload that takes a real out of the file
/// does with its established flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRemove {
    /// `"keep"` (default, as IPVS keeps connections to a deleted
    /// destination): the real takes no new flows, its flows stay until
    /// they end, and it stays in the status (`removed`) until then.
    #[default]
    Keep,
    /// `"reschedule"`: each flow moves to another real on its next packet.
    Reschedule,
}

/// `[vip.fallback]`: a "sorry server" that takes new flows only when no
/// real can. Not scheduled, not health-checked (always up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackConf {
    /// Its address.
    pub address: IpAddr,
    /// Its port (NAT); equal to the VIP's port in DR and TUN.
    pub port: u16,
    /// Static neighbour entry.
    pub mac: Option<[u8; 6]>,
}

/// `[[vip]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VipConf {
    /// Unique name.
    pub name: String,
    /// The virtual address.
    pub address: IpAddr,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Port, 0 = every port.
    pub port: u16,
    /// Forwarding method.
    pub mode: Mode,
    /// Scheduler.
    pub scheduler: Scheduler,
    /// The `[[port]]` facing clients.
    pub port_name: String,
    /// Source-IP persistence.
    pub persistence: Option<Persistence>,
    /// Health checking.
    pub health: Option<Health>,
    /// Real servers.
    pub reals: Vec<RealConf>,
    /// What a real that goes down does with its established flows.
    pub on_down: OnDown,
    /// What a reload that removes a real does with its flows.
    pub on_remove: OnRemove,
    /// The server for new flows when no real is eligible.
    pub fallback: Option<FallbackConf>,
    /// New flows admitted per second per worker (None: unlimited).
    pub new_flow_rate_limit: Option<u32>,
    /// `[vip.timeouts]`: idle timeouts of its flows (None: the node's).
    pub timeouts: Option<VipTimeouts>,
}

/// `[vip.timeouts]`: a VIP's own idle timeouts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VipTimeouts {
    /// `tcp`: established TCP flows (node default 900 s).
    pub tcp: Option<Duration>,
    /// `tcp_fin`: closing TCP flows (FIN_WAIT, CLOSE_WAIT, TIME_WAIT;
    /// node defaults 120 s, 60 s, 120 s).
    pub tcp_fin: Option<Duration>,
    /// `udp`: UDP flows (node default 300 s).
    pub udp: Option<Duration>,
    /// `tcp_reset_on_idle`: an established TCP flow that expires gets a
    /// RST sent to both ends (default false).
    pub tcp_reset_on_idle: bool,
}

/// The longest `[vip.timeouts]` value.
pub const MAX_VIP_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

impl Config {
    /// Every static neighbour entry: `mac` of each real and fallback.
    pub fn static_macs(&self) -> Vec<(IpAddr, [u8; 6])> {
        let mut out = Vec::new();
        for v in &self.vips {
            let reals = v.reals.iter().map(|r| (r.address, r.mac));
            let fallback = v.fallback.iter().map(|f| (f.address, f.mac));
            for (a, m) in reals.chain(fallback) {
                if let Some(m) = m {
                    out.push((a, m));
                }
            }
        }
        out
    }

    /// Per `[[port]]`, in order: which side of NAT flows (services and
    /// outbound) arrives on it. Clients arrive on a NAT VIP's `port_name`
    /// and remote hosts' answers on an `[[outbound]]`'s; NAT reals and
    /// fallbacks, and outbound sources, on the port that routes to them
    /// (its prefix holds them, else the first with a gateway of their
    /// family). A reals' port that is also any VIP's `port_name` carries
    /// both: requests to a VIP hashed on destination fields would all
    /// land on one queue.
    pub fn port_roles(&self) -> Vec<PortRole> {
        let n = self.ports.len();
        let (mut clients, mut reals, mut vips) = (vec![false; n], vec![false; n], vec![false; n]);
        let by_name = |name: &str| self.ports.iter().position(|p| p.name == name);
        let reaching = |a: IpAddr| {
            self.ports
                .iter()
                .position(|p| p.addresses.iter().any(|c| c.contains(a)))
                .or_else(|| {
                    self.ports
                        .iter()
                        .position(|p| p.gateway.is_some_and(|g| g.is_ipv4() == a.is_ipv4()))
                })
        };
        for v in &self.vips {
            if let Some(i) = by_name(&v.port_name) {
                vips[i] = true;
                clients[i] |= v.mode == Mode::Nat;
            }
            if v.mode != Mode::Nat {
                continue;
            }
            let servers = v.reals.iter().map(|r| r.address);
            for a in servers.chain(v.fallback.iter().map(|f| f.address)) {
                if let Some(i) = reaching(a) {
                    reals[i] = true;
                }
            }
        }
        for o in &self.outbound {
            if let Some(i) = by_name(&o.port_name) {
                clients[i] = true;
            }
            for src in &o.sources {
                if let Some(i) = reaching(src.addr) {
                    reals[i] = true;
                }
            }
        }
        (0..n)
            .map(|i| match (clients[i], reals[i], vips[i]) {
                (_, true, true) | (true, true, _) => PortRole::Both,
                (true, false, _) => PortRole::Clients,
                (false, true, false) => PortRole::Reals,
                (false, false, _) => PortRole::Other,
            })
            .collect()
    }
}

/// `[ha]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HaConf {
    /// Virtual router id (1-255).
    pub vrid: u8,
    /// Priority (1-254).
    pub priority: u8,
    /// Advertisement interval.
    pub advert_interval: Duration,
    /// Take MASTER back from a lower priority.
    pub preempt: bool,
    /// The port VRRP runs on.
    pub port_name: String,
    /// Extra floating addresses.
    pub floating: Vec<IpAddr>,
    /// Gratuitous ARP repeat interval.
    pub garp_interval: Duration,
    /// How long to repeat gratuitous ARP after becoming MASTER.
    pub garp_elapse: Duration,
    /// The address family VRRP adverts use (`family`; default IPv4 when
    /// the port has an IPv4 address, else IPv6). Addresses of the other
    /// family float with the same decision.
    pub family: Family,
    /// Send adverts to these peers instead of the multicast group.
    pub unicast_peers: Vec<IpAddr>,
    /// Ports whose link must be up to be MASTER (`track`): a node whose
    /// tracked link goes down enters FAULT and gives the addresses up.
    pub track: Vec<String>,
    /// Connection sync: the peer's address on the `[ha]` port (no sync
    /// when absent). The MASTER streams its flows there; every node
    /// accepts sync datagrams from it only.
    pub sync_peer: Option<IpAddr>,
    /// Connection sync: UDP port, both ends (default 8848).
    pub sync_port: u16,
}

/// An IP address family (`[ha].family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `ipv4`.
    V4,
    /// `ipv6`.
    V6,
}

/// Default `[ha].sync_port`.
pub const DEFAULT_SYNC_PORT: u16 = 8848;

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConf {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Bearer token (required for a non-loopback listen address).
    pub token: Option<String>,
    /// HTTPS (`tls_cert`, `tls_key`; required for a non-loopback listen
    /// address).
    pub tls: Option<AdminTls>,
}

/// `[admin] tls_cert` and `tls_key`: PEM files, relative paths taken from
/// the configuration file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    /// The server's certificate chain (its own first).
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
}

/// The default admin listen address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9080";

// --------------------------------------------------------------- loading

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let whole = |message: String| {
        Err(ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: None,
            key: String::new(),
            message,
        }]))
    };
    // Read at most one byte past the limit: a file caught growing, or a
    // stray huge one, is refused without being read whole.
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| {
        use std::io::Read;
        f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)
    });
    if let Err(e) = read {
        return whole(format!("cannot read the file: {e}"));
    }
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return whole(format!(
            "the file is larger than {} MiB, which no configuration needs: refused unread",
            MAX_CONFIG_BYTES >> 20
        ));
    }
    match String::from_utf8(bytes) {
        Ok(text) => parse(&file, &text),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            Err(ConfigErrors(vec![ConfigError {
                file,
                line: Some(line),
                key: String::new(),
                message: format!("the file is not UTF-8 text (an invalid byte at offset {at})"),
            }]))
        }
    }
}

/// The largest configuration file `load` reads (16 MiB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Parses and validates configuration text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    let loc = Locator::new(text);
    let mut errs = Errors {
        file,
        loc: &loc,
        list: Vec::new(),
    };
    let mut unknown = Vec::new();
    let raw: Result<RawConfig, _> =
        serde_ignored::deserialize(toml::Deserializer::new(text), |p| {
            unknown.push(p.to_string())
        });
    for u in unknown {
        let path = ignored_path(&u);
        errs.at(&path, "unknown key");
    }
    let raw = match raw {
        Ok(r) => r,
        Err(e) => {
            let line = e.span().map(|s| loc.line_of_offset(s.start));
            let mut message = e.message().trim().to_string();
            if message.is_empty() {
                // The TOML parser has no text for some errors (a control
                // character in a comment): name what it stopped at.
                let at = e.span().and_then(|s| text.get(s.start..)).unwrap_or("");
                let ctl = at
                    .chars()
                    .take(16)
                    .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'));
                message = match (ctl, at.chars().next()) {
                    (Some(c), _) => format!("control character {c:?} is not allowed in TOML"),
                    (None, Some(c)) => format!("invalid TOML at {c:?}"),
                    (None, None) => "invalid TOML".to_string(),
                };
            }
            errs.list.push(ConfigError {
                file: file.to_string(),
                line,
                key: String::new(),
                message,
            });
            return Err(ConfigErrors(errs.list));
        }
    };
    let cfg = validate(raw, &mut errs);
    if errs.list.is_empty() {
        Ok(cfg)
    } else {
        errs.list.sort_by_key(|e| e.line.unwrap_or(0));
        Err(ConfigErrors(errs.list))
    }
}

#[cfg(test)]
mod tests;
