//! The TOML configuration: schema, parsing and validation.
//!
//! The documented keys (README, "Configuration") are a contract: they may be extended, never
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
//! new_flow_rate_limit = 1000  # optional: new flows per second per worker
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
//! next), then [`validate`] turns them into the typed [`Config`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

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
}

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

/// `[vip.health]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Check kind.
    pub kind: HealthKind,
    /// HTTP path.
    pub path: String,
    /// HTTP status that means healthy.
    pub expect_status: u16,
    /// HTTP body substring that must be present.
    pub expect_body: Option<String>,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Consecutive successes to come up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
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
    /// The server for new flows when no real is eligible.
    pub fallback: Option<FallbackConf>,
    /// New flows admitted per second per worker (None: unlimited).
    pub new_flow_rate_limit: Option<u32>,
}

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
}

/// The default admin listen address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9080";

// ------------------------------------------------------------------ raw form

#[derive(Deserialize, Default)]
struct RawConfig {
    dataplane: Option<RawDataplane>,
    #[serde(default)]
    port: Vec<RawPort>,
    #[serde(default)]
    vip: Vec<RawVip>,
    ha: Option<RawHa>,
    admin: Option<RawAdmin>,
}

#[derive(Deserialize, Default)]
struct RawDataplane {
    #[serde(default)]
    eal_args: Vec<String>,
    workers: Option<i64>,
    conn_table_capacity: Option<i64>,
    idle_sleep: Option<String>,
    mbufs: Option<i64>,
    housekeeping_cpus: Option<Vec<i64>>,
}

#[derive(Deserialize)]
struct RawPort {
    name: Option<String>,
    device: Option<String>,
    #[serde(default)]
    addresses: Vec<String>,
    gateway: Option<String>,
    tap: Option<String>,
}

#[derive(Deserialize)]
struct RawVip {
    name: Option<String>,
    address: Option<String>,
    protocol: Option<String>,
    port: Option<i64>,
    mode: Option<String>,
    scheduler: Option<String>,
    port_name: Option<String>,
    persistence: Option<RawPersistence>,
    health: Option<RawHealth>,
    #[serde(default)]
    real: Vec<RawReal>,
    on_down: Option<String>,
    fallback: Option<RawFallback>,
    new_flow_rate_limit: Option<i64>,
}

#[derive(Deserialize)]
struct RawFallback {
    address: Option<String>,
    port: Option<i64>,
    mac: Option<String>,
}

#[derive(Deserialize)]
struct RawPersistence {
    timeout: Option<String>,
    netmask: Option<i64>,
}

#[derive(Deserialize)]
struct RawHealth {
    #[serde(rename = "type")]
    kind: Option<String>,
    path: Option<String>,
    expect_status: Option<i64>,
    expect_body: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    rise: Option<i64>,
    fall: Option<i64>,
}

#[derive(Deserialize)]
struct RawReal {
    address: Option<String>,
    port: Option<i64>,
    weight: Option<i64>,
    mac: Option<String>,
}

#[derive(Deserialize)]
struct RawHa {
    vrid: Option<i64>,
    priority: Option<i64>,
    advert_interval: Option<String>,
    preempt: Option<bool>,
    port_name: Option<String>,
    #[serde(default)]
    floating: Vec<String>,
    garp_interval: Option<String>,
    garp_elapse: Option<String>,
    family: Option<String>,
    #[serde(default)]
    unicast_peers: Vec<String>,
    #[serde(default)]
    track: Vec<String>,
    sync_peer: Option<String>,
    sync_port: Option<i64>,
}

#[derive(Deserialize)]
struct RawAdmin {
    listen: Option<String>,
    token: Option<String>,
}

// --------------------------------------------------------------- key paths

/// One step of a key path.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A key path such as `vip[0].real[1].port`.
#[derive(Debug, Clone, Default)]
struct KeyPath(Vec<Seg>);

impl KeyPath {
    fn key(&self, k: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    fn idx(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            match s {
                Seg::Key(k) => {
                    if !first {
                        write!(f, ".")?;
                    }
                    write!(f, "{k}")?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// Finds the line of a key path in the source text.
struct Locator {
    doc: Option<toml_edit::ImDocument<String>>,
    text: String,
}

impl Locator {
    fn new(text: &str) -> Locator {
        Locator {
            doc: toml_edit::ImDocument::parse(text.to_string()).ok(),
            text: text.to_string(),
        }
    }

    fn line_of_offset(&self, off: usize) -> usize {
        self.text.as_bytes()[..off.min(self.text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The line of the deepest part of `path` present in the file.
    fn line(&self, path: &KeyPath) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut best: Option<std::ops::Range<usize>> = None;
        let mut item: Option<&toml_edit::Item> = None;
        let mut table: Option<&dyn toml_edit::TableLike> = Some(doc.as_table());
        for seg in &path.0 {
            match seg {
                Seg::Key(k) => {
                    let Some((key, it)) = table.and_then(|t| t.get_key_value(k)) else {
                        break;
                    };
                    if let Some(s) = key.span() {
                        best = Some(s);
                    }
                    item = Some(it);
                    table = it.as_table_like();
                }
                Seg::Index(i) => match item {
                    Some(toml_edit::Item::ArrayOfTables(a)) => {
                        let Some(t) = a.get(*i) else { break };
                        if let Some(s) = t.span() {
                            best = Some(s);
                        }
                        table = Some(t);
                        item = None;
                    }
                    Some(toml_edit::Item::Value(toml_edit::Value::Array(a))) => {
                        let Some(v) = a.get(*i) else { break };
                        if let Some(s) = v.span() {
                            best = Some(s);
                        }
                        table = v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike);
                        item = None;
                    }
                    _ => break,
                },
            }
        }
        best.map(|r| self.line_of_offset(r.start))
    }
}

/// Collects errors with their places.
struct Errors<'a> {
    file: &'a str,
    loc: &'a Locator,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.to_string(),
            line: self.loc.line(path),
            key: path.to_string(),
            message: message.into(),
        });
    }
}

// ------------------------------------------------------------ value parsers

/// Parses a duration with a unit: `50us`, `500ms`, `2s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (a number and a unit: \"500ms\", \"2s\")"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => return Err(format!("{s:?} has no unit (use ns, us, ms, s, m or h)")),
        u => {
            return Err(format!(
                "unknown unit {u:?} in {s:?} (use ns, us, ms, s, m or h)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 365.0 * 24.0 * 3600.0 {
        return Err(format!("{s:?} is too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    s.parse::<forwarder::packet::MacAddr>()
        .map(|m| m.0)
        .map_err(|_| format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))
}

// --------------------------------------------------------------- loading

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&file, &text),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file,
            line: None,
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        }])),
    }
}

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

/// serde_ignored writes `port.0.bogus`; turn it into a key path.
fn ignored_path(s: &str) -> KeyPath {
    let mut p = KeyPath::default();
    for part in s.split('.').filter(|p| *p != "?") {
        p = match part.parse::<usize>() {
            Ok(i) => p.idx(i),
            Err(_) => p.key(part),
        };
    }
    p
}

fn int_in<T: TryFrom<i64>>(
    errs: &mut Errors<'_>,
    path: &KeyPath,
    v: i64,
    lo: i64,
    hi: i64,
) -> Option<T> {
    if v < lo || v > hi {
        errs.at(path, format!("{v} is out of range ({lo} to {hi})"));
        return None;
    }
    T::try_from(v).ok()
}

fn duration(errs: &mut Errors<'_>, path: &KeyPath, v: &str, allow_zero: bool) -> Option<Duration> {
    match parse_duration(v) {
        Ok(d) if d.is_zero() && !allow_zero => {
            errs.at(path, "must be longer than zero");
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errs.at(path, e);
            None
        }
    }
}

fn ip(errs: &mut Errors<'_>, path: &KeyPath, v: &str) -> Option<IpAddr> {
    match v.parse::<IpAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.at(path, format!("{v:?} is not an IPv4 or IPv6 address"));
            None
        }
    }
}

fn required<'v, T>(errs: &mut Errors<'_>, path: &KeyPath, v: &'v Option<T>) -> Option<&'v T> {
    if v.is_none() {
        errs.at(path, "is required");
    }
    v.as_ref()
}

fn validate(raw: RawConfig, errs: &mut Errors<'_>) -> Config {
    let root = KeyPath::default();

    // [dataplane]
    let dp_path = root.key("dataplane");
    let has_dp = raw.dataplane.is_some();
    let rdp = match raw.dataplane {
        Some(d) => d,
        None => {
            errs.at(&dp_path, "section [dataplane] is required");
            RawDataplane::default()
        }
    };
    if has_dp && rdp.eal_args.is_empty() {
        errs.at(
            &dp_path.key("eal_args"),
            "is required (the arguments for rte_eal_init)",
        );
    }
    let workers = match rdp.workers {
        Some(w) => int_in(errs, &dp_path.key("workers"), w, 1, 64).unwrap_or(1),
        None => 1,
    };
    let conn_table_capacity = match rdp.conn_table_capacity {
        Some(c) => {
            int_in(errs, &dp_path.key("conn_table_capacity"), c, 1024, 1 << 28).unwrap_or(65536)
        }
        None => 65536,
    };
    let idle_sleep = rdp.idle_sleep.as_deref().and_then(|s| {
        let p = dp_path.key("idle_sleep");
        let d = duration(errs, &p, s, true)?;
        if d > Duration::from_millis(10) {
            errs.at(
                &p,
                "is longer than 10ms: the worker would add that much latency",
            );
        }
        Some(d)
    });
    let mbufs = rdp
        .mbufs
        .and_then(|m| int_in(errs, &dp_path.key("mbufs"), m, 1023, 1 << 24));
    let mut housekeeping_cpus = Vec::new();
    if let Some(cpus) = &rdp.housekeeping_cpus {
        let p = dp_path.key("housekeeping_cpus");
        if cpus.is_empty() {
            errs.at(
                &p,
                "is empty: name the CPUs, or leave the key out (the main lcore's CPUs)",
            );
        }
        for &c in cpus {
            match int_in::<usize>(errs, &p, c, 0, 1023) {
                Some(c) if housekeeping_cpus.contains(&c) => {
                    errs.at(&p, format!("CPU {c} is named twice"));
                }
                Some(c) => housekeeping_cpus.push(c),
                None => {}
            }
        }
    }
    let dataplane = Dataplane {
        eal_args: rdp.eal_args,
        workers,
        conn_table_capacity,
        idle_sleep,
        mbufs,
        housekeeping_cpus,
    };

    // [[port]]
    let mut ports = Vec::new();
    let mut port_names = HashSet::new();
    let mut taps = HashSet::new();
    let mut own_addrs: HashMap<IpAddr, String> = HashMap::new();
    if raw.port.is_empty() {
        errs.at(&root.key("port"), "at least one [[port]] is required");
    }
    for (i, rp) in raw.port.iter().enumerate() {
        let p = root.key("port").idx(i);
        let name = required(errs, &p.key("name"), &rp.name)
            .cloned()
            .unwrap_or_default();
        if !name.is_empty() && !port_names.insert(name.clone()) {
            errs.at(&p.key("name"), format!("port name {name:?} is used twice"));
        }
        let device = required(errs, &p.key("device"), &rp.device)
            .cloned()
            .unwrap_or_default();
        let mut addresses = Vec::new();
        if rp.addresses.is_empty() {
            errs.at(
                &p.key("addresses"),
                "at least one address (\"192.0.2.2/24\") is required",
            );
        }
        for (j, a) in rp.addresses.iter().enumerate() {
            let ap = p.key("addresses").idx(j);
            match a.parse::<Cidr>() {
                Ok(c) => {
                    if let Some(other) = own_addrs.insert(c.addr, name.clone()) {
                        errs.at(
                            &ap,
                            format!("{} is already an address of port {other:?}", c.addr),
                        );
                    }
                    addresses.push(c);
                }
                Err(e) => errs.at(&ap, e),
            }
        }
        let gateway = rp.gateway.as_deref().and_then(|g| {
            let gp = p.key("gateway");
            let g = ip(errs, &gp, g)?;
            if !addresses.iter().any(|c| c.contains(g)) {
                errs.at(
                    &gp,
                    format!("{g} is not inside any address prefix of this port"),
                );
            }
            Some(g)
        });
        let tap = match &rp.tap {
            Some(t) => t.clone(),
            None => {
                let mut t = format!("fl-{name}");
                // At most 15 bytes, cut on a character boundary.
                let mut end = t.len().min(15);
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                t.truncate(end);
                t
            }
        };
        if tap.is_empty()
            || tap.len() > 15
            || !tap
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            errs.at(
                &p.key("tap"),
                format!("{tap:?} is not a valid interface name (1-15 of a-z, 0-9, - _ .)"),
            );
        } else if !taps.insert(tap.clone()) {
            errs.at(
                &p.key("tap"),
                format!("interface name {tap:?} is used twice"),
            );
        }
        ports.push(PortConf {
            name,
            device,
            addresses,
            gateway,
            tap,
        });
    }

    // [[vip]]
    let mut vips = Vec::new();
    let mut vip_names = HashSet::new();
    let mut vip_keys = HashSet::new();
    for (i, rv) in raw.vip.iter().enumerate() {
        if let Some(v) = validate_vip(errs, &root.key("vip").idx(i), rv, &ports) {
            if !vip_names.insert(v.name.clone()) {
                errs.at(
                    &root.key("vip").idx(i).key("name"),
                    format!("VIP name {:?} is used twice", v.name),
                );
            }
            if !vip_keys.insert((v.address, v.protocol, v.port)) {
                errs.at(
                    &root.key("vip").idx(i).key("address"),
                    format!(
                        "another VIP already has address {} protocol {:?} port {}",
                        v.address, v.protocol, v.port
                    ),
                );
            }
            if own_addrs.contains_key(&v.address) {
                errs.at(
                    &root.key("vip").idx(i).key("address"),
                    format!(
                        "{} is an address of a [[port]]; a VIP needs its own address",
                        v.address
                    ),
                );
            }
            vips.push(v);
        }
    }

    // [ha]
    let ha = raw
        .ha
        .as_ref()
        .and_then(|h| validate_ha(errs, &root.key("ha"), h, &ports, &vips));

    // [admin]
    let admin_path = root.key("admin");
    let (listen, token) = match &raw.admin {
        Some(a) => (
            a.listen.clone().unwrap_or_else(|| DEFAULT_ADMIN.into()),
            a.token.clone(),
        ),
        None => (DEFAULT_ADMIN.into(), None),
    };
    let listen = match listen.parse::<SocketAddr>() {
        Ok(l) => l,
        Err(_) => {
            errs.at(
                &admin_path.key("listen"),
                format!("{listen:?} is not address:port"),
            );
            DEFAULT_ADMIN.parse().expect("constant parses")
        }
    };
    if !listen.ip().is_loopback() && token.as_deref().is_none_or(str::is_empty) {
        errs.at(
            &admin_path.key("listen"),
            format!("{listen} is not a loopback address: set [admin].token so the API is not open to the network"),
        );
    }
    Config {
        dataplane,
        ports,
        vips,
        ha,
        admin: AdminConf { listen, token },
    }
}

fn validate_vip(
    errs: &mut Errors<'_>,
    p: &KeyPath,
    rv: &RawVip,
    ports: &[PortConf],
) -> Option<VipConf> {
    let before = errs.list.len();
    let name = required(errs, &p.key("name"), &rv.name)
        .cloned()
        .unwrap_or_default();
    let address =
        required(errs, &p.key("address"), &rv.address).and_then(|a| ip(errs, &p.key("address"), a));
    let protocol = match rv.protocol.as_deref() {
        None | Some("tcp") => Protocol::Tcp,
        Some("udp") => Protocol::Udp,
        Some(o) => {
            errs.at(
                &p.key("protocol"),
                format!("{o:?} is not a protocol (tcp or udp)"),
            );
            Protocol::Tcp
        }
    };
    let port: u16 = match rv.port {
        Some(v) => int_in(errs, &p.key("port"), v, 0, 65535).unwrap_or(0),
        None => {
            errs.at(&p.key("port"), "is required (0 = every port)");
            0
        }
    };
    let mode = match rv.mode.as_deref() {
        None | Some("dr") => Mode::Dr,
        Some("nat") => Mode::Nat,
        Some("tun") => Mode::Tun,
        Some(o) => {
            errs.at(
                &p.key("mode"),
                format!("{o:?} is not a mode (dr, nat or tun)"),
            );
            Mode::Dr
        }
    };
    let scheduler = match rv.scheduler.as_deref() {
        None | Some("maglev") => Scheduler::Maglev,
        Some("wrr") => Scheduler::Wrr,
        Some("wlc") => Scheduler::Wlc,
        Some("rr") => Scheduler::Rr,
        Some("lc") => Scheduler::Lc,
        Some("sh") => Scheduler::Sh,
        Some(o) => {
            errs.at(
                &p.key("scheduler"),
                format!("{o:?} is not a scheduler (maglev, wrr, wlc, rr, lc or sh)"),
            );
            Scheduler::Maglev
        }
    };
    let port_name = match &rv.port_name {
        Some(n) => {
            if !ports.iter().any(|pc| &pc.name == n) {
                errs.at(&p.key("port_name"), format!("no [[port]] is named {n:?}"));
            }
            n.clone()
        }
        None => ports.first().map(|pc| pc.name.clone()).unwrap_or_default(),
    };
    let persistence = rv.persistence.as_ref().and_then(|rp| {
        let pp = p.key("persistence");
        let timeout = match &rp.timeout {
            Some(t) => duration(errs, &pp.key("timeout"), t, false)?,
            None => Duration::from_secs(300),
        };
        let max = if address.is_some_and(|a| a.is_ipv6()) {
            128
        } else {
            32
        };
        let netmask = match rp.netmask {
            Some(n) => int_in(errs, &pp.key("netmask"), n, 0, max)?,
            None => max as u8,
        };
        Some(Persistence { timeout, netmask })
    });
    let health = rv
        .health
        .as_ref()
        .and_then(|h| validate_health(errs, &p.key("health"), h));

    let mut reals = Vec::new();
    let mut seen = HashSet::new();
    if rv.real.is_empty() {
        errs.at(&p.key("real"), "a VIP needs at least one [[vip.real]]");
    }
    let vip_side = VipSide {
        address,
        port,
        mode,
        ports,
    };
    for (j, rr) in rv.real.iter().enumerate() {
        let rp = p.key("real").idx(j);
        let Some((addr, rport, mac)) =
            validate_server(errs, &rp, &vip_side, "real", &rr.address, rr.port, &rr.mac)
        else {
            continue;
        };
        let weight: u32 = match rr.weight {
            Some(w) => int_in(errs, &rp.key("weight"), w, 0, 65535).unwrap_or(1),
            None => 1,
        };
        if !seen.insert((addr, rport)) {
            errs.at(
                &rp.key("address"),
                format!("real {addr} port {rport} is listed twice"),
            );
        }
        reals.push(RealConf {
            address: addr,
            port: rport,
            weight,
            mac,
        });
    }
    let on_down = match rv.on_down.as_deref() {
        None | Some("reschedule") => OnDown::Reschedule,
        Some("keep") => OnDown::Keep,
        Some(o) => {
            errs.at(
                &p.key("on_down"),
                format!("{o:?} is not an on_down action (reschedule or keep)"),
            );
            OnDown::Reschedule
        }
    };
    let fallback = rv.fallback.as_ref().and_then(|rf| {
        let fp = p.key("fallback");
        let (addr, fport, mac) = validate_server(
            errs,
            &fp,
            &vip_side,
            "fallback",
            &rf.address,
            rf.port,
            &rf.mac,
        )?;
        if seen.contains(&(addr, fport)) {
            errs.at(
                &fp.key("address"),
                format!("{addr} port {fport} is also a real: a fallback serves when no real can"),
            );
        }
        Some(FallbackConf {
            address: addr,
            port: fport,
            mac,
        })
    });
    let new_flow_rate_limit = rv
        .new_flow_rate_limit
        .and_then(|r| int_in(errs, &p.key("new_flow_rate_limit"), r, 1, 100_000_000));
    if errs.list.len() != before {
        return None;
    }
    Some(VipConf {
        name,
        address: address?,
        protocol,
        port,
        mode,
        scheduler,
        port_name,
        persistence,
        health,
        reals,
        on_down,
        fallback,
        new_flow_rate_limit,
    })
}

/// What the checks of a server (real or fallback) need of its VIP.
struct VipSide<'a> {
    address: Option<IpAddr>,
    port: u16,
    mode: Mode,
    ports: &'a [PortConf],
}

/// The address, port and MAC of a real or fallback (`what`) at `p`, checked
/// against its VIP: address family, port translation (NAT only), and a
/// port that reaches it (DR: a connected prefix; NAT, TUN: or a gateway).
/// `None` when the address is missing or malformed (reported).
fn validate_server(
    errs: &mut Errors<'_>,
    p: &KeyPath,
    vip: &VipSide<'_>,
    what: &str,
    address: &Option<String>,
    port: Option<i64>,
    mac: &Option<String>,
) -> Option<(IpAddr, u16, Option<[u8; 6]>)> {
    let (mode, vport) = (vip.mode, vip.port);
    let addr =
        required(errs, &p.key("address"), address).and_then(|a| ip(errs, &p.key("address"), a))?;
    if let Some(v) = vip.address {
        if v.is_ipv4() != addr.is_ipv4() && mode != Mode::Nat {
            errs.at(
                &p.key("address"),
                format!("{addr} and the VIP {v} are of different address families"),
            );
        }
    }
    let rport: u16 = match port {
        Some(v) => int_in(errs, &p.key("port"), v, 0, 65535).unwrap_or(vport),
        None => vport,
    };
    if mode != Mode::Nat && rport != vport {
        errs.at(
            &p.key("port"),
            format!("{rport} differs from the VIP's port {vport}: {mode:?} mode cannot translate ports (use mode = \"nat\")"),
        );
    }
    if mode == Mode::Nat && vport == 0 && rport != 0 {
        errs.at(
            &p.key("port"),
            format!("a VIP on every port (port = 0) keeps the client's port: leave the {what}'s port out"),
        );
    }
    let mac = mac.as_deref().and_then(|m| match parse_mac(m) {
        Ok(m) => Some(m),
        Err(e) => {
            errs.at(&p.key("mac"), e);
            None
        }
    });
    // DR needs the server on a connected segment; NAT and TUN may route.
    let connected = vip
        .ports
        .iter()
        .any(|pc| pc.addresses.iter().any(|c| c.contains(addr)));
    let has_gw = vip
        .ports
        .iter()
        .any(|pc| pc.gateway.is_some_and(|g| g.is_ipv4() == addr.is_ipv4()));
    if mode == Mode::Dr && !connected {
        errs.at(&p.key("address"), format!("{addr} is not inside any port's prefix: direct routing needs the {what} on a connected segment"));
    } else if !connected && !has_gw {
        errs.at(
            &p.key("address"),
            format!("{addr} is not inside any port's prefix and no port has a gateway for it"),
        );
    }
    Some((addr, rport, mac))
}

fn validate_health(errs: &mut Errors<'_>, p: &KeyPath, h: &RawHealth) -> Option<Health> {
    let kind = match h.kind.as_deref() {
        None | Some("none") => HealthKind::None,
        Some("tcp") => HealthKind::Tcp,
        Some("http") => HealthKind::Http,
        Some("udp") => HealthKind::Udp,
        Some(o) => {
            errs.at(
                &p.key("type"),
                format!("{o:?} is not a check type (tcp, http, udp or none)"),
            );
            return None;
        }
    };
    let before = errs.list.len();
    let interval = match &h.interval {
        Some(s) => duration(errs, &p.key("interval"), s, false).unwrap_or(Duration::from_secs(1)),
        None => Duration::from_secs(1),
    };
    let timeout = match &h.timeout {
        Some(s) => duration(errs, &p.key("timeout"), s, false).unwrap_or(interval),
        None => interval.min(Duration::from_secs(1)),
    };
    if timeout > interval {
        errs.at(
            &p.key("timeout"),
            format!("{timeout:?} is longer than the interval {interval:?}"),
        );
    }
    let rise = h
        .rise
        .map_or(Some(2), |v| int_in(errs, &p.key("rise"), v, 1, 100));
    let fall = h
        .fall
        .map_or(Some(2), |v| int_in(errs, &p.key("fall"), v, 1, 100));
    let expect_status = h.expect_status.map_or(Some(200), |v| {
        int_in(errs, &p.key("expect_status"), v, 100, 599)
    });
    let (Some(rise), Some(fall), Some(expect_status)) = (rise, fall, expect_status) else {
        return None;
    };
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        errs.at(&p.key("path"), format!("{path:?} must start with '/'"));
    }
    if kind != HealthKind::Http
        && (h.path.is_some() || h.expect_body.is_some() || h.expect_status.is_some())
    {
        errs.at(
            &p.key("type"),
            "path, expect_status and expect_body apply only to type = \"http\"",
        );
    }
    if errs.list.len() != before {
        return None;
    }
    Some(Health {
        kind,
        path,
        expect_status,
        expect_body: h.expect_body.clone(),
        interval,
        timeout,
        rise,
        fall,
    })
}

fn validate_ha(
    errs: &mut Errors<'_>,
    p: &KeyPath,
    h: &RawHa,
    ports: &[PortConf],
    vips: &[VipConf],
) -> Option<HaConf> {
    let raw_vrid = *required(errs, &p.key("vrid"), &h.vrid)?;
    let vrid = int_in(errs, &p.key("vrid"), raw_vrid, 1, 255)?;
    let priority = match h.priority {
        Some(v) => int_in(errs, &p.key("priority"), v, 1, 254)?,
        None => 100,
    };
    let advert_interval = match &h.advert_interval {
        Some(s) => duration(errs, &p.key("advert_interval"), s, false)?,
        None => Duration::from_secs(1),
    };
    if advert_interval < Duration::from_millis(10) || advert_interval > Duration::from_secs(40) {
        errs.at(
            &p.key("advert_interval"),
            "must be between 10ms and 40s (VRRPv3 counts it in centiseconds)",
        );
    }
    let port_name = match &h.port_name {
        Some(n) => {
            if !ports.iter().any(|pc| &pc.name == n) {
                errs.at(&p.key("port_name"), format!("no [[port]] is named {n:?}"));
            }
            n.clone()
        }
        None => ports.first().map(|pc| pc.name.clone()).unwrap_or_default(),
    };
    let mut floating = Vec::new();
    for (i, f) in h.floating.iter().enumerate() {
        if let Some(a) = ip(errs, &p.key("floating").idx(i), f) {
            floating.push(a);
        }
    }
    if vips.is_empty() && floating.is_empty() {
        errs.at(
            p,
            "[ha] has nothing to float: no [[vip]] and no floating addresses",
        );
    }
    let garp_interval = match &h.garp_interval {
        Some(s) => duration(errs, &p.key("garp_interval"), s, false)?,
        None => Duration::from_secs(60),
    };
    let garp_elapse = match &h.garp_elapse {
        Some(s) => duration(errs, &p.key("garp_elapse"), s, true)?,
        None => Duration::from_secs(1200),
    };
    let port = ports.iter().find(|pc| pc.name == port_name);
    let has = |v4: bool| port.is_some_and(|pc| pc.addresses.iter().any(|c| c.addr.is_ipv4() == v4));
    let family = match h.family.as_deref() {
        None if has(true) || !has(false) => Family::V4,
        None => Family::V6,
        Some("ipv4") => Family::V4,
        Some("ipv6") => Family::V6,
        Some(other) => {
            errs.at(
                &p.key("family"),
                format!("unknown family {other:?} (expected \"ipv4\" or \"ipv6\")"),
            );
            Family::V4
        }
    };
    if port.is_some() && !has(family == Family::V4) {
        errs.at(
            &p.key(if h.family.is_some() {
                "family"
            } else {
                "port_name"
            }),
            format!(
                "VRRP over {} needs an {} address on port {port_name:?}",
                if family == Family::V4 { "IPv4" } else { "IPv6" },
                if family == Family::V4 { "IPv4" } else { "IPv6" },
            ),
        );
    }
    let mut unicast_peers = Vec::new();
    for (i, f) in h.unicast_peers.iter().enumerate() {
        let kp = p.key("unicast_peers").idx(i);
        let Some(a) = ip(errs, &kp, f) else { continue };
        if a.is_ipv4() != (family == Family::V4) {
            errs.at(&kp, format!("{a} is not of the VRRP family"));
        } else if port.is_some_and(|pc| pc.addresses.iter().any(|c| c.addr == a)) {
            errs.at(&kp, format!("{a} is this node's own address"));
        } else if unicast_peers.contains(&a) {
            errs.at(&kp, format!("{a} is listed twice"));
        } else {
            unicast_peers.push(a);
        }
    }
    let mut track = Vec::new();
    for (i, n) in h.track.iter().enumerate() {
        if !ports.iter().any(|pc| &pc.name == n) {
            errs.at(
                &p.key("track").idx(i),
                format!("no [[port]] is named {n:?}"),
            );
        } else if !track.contains(n) {
            track.push(n.clone());
        }
    }
    let sync_peer = h
        .sync_peer
        .as_ref()
        .and_then(|s| ip(errs, &p.key("sync_peer"), s));
    if let Some(a) = sync_peer {
        let port = ports.iter().find(|pc| pc.name == port_name);
        let on_port = port.is_some_and(|pc| {
            pc.addresses
                .iter()
                .any(|c| c.addr.is_ipv4() && c.contains(a) && c.addr != a)
        });
        if !a.is_ipv4() {
            errs.at(
                &p.key("sync_peer"),
                format!("{a} is IPv6: connection sync runs over IPv4 for now"),
            );
        } else if ports
            .iter()
            .any(|pc| pc.addresses.iter().any(|c| c.addr == a))
        {
            errs.at(
                &p.key("sync_peer"),
                format!("{a} is this node's own address: give the peer's"),
            );
        } else if !on_port {
            errs.at(
                &p.key("sync_peer"),
                format!("{a} is not inside a prefix of the [ha] port {port_name:?}: the peer must be on the HA link"),
            );
        }
    }
    let sync_port = match h.sync_port {
        Some(v) => int_in(errs, &p.key("sync_port"), v, 1, 65535).unwrap_or(DEFAULT_SYNC_PORT),
        None => DEFAULT_SYNC_PORT,
    };
    Some(HaConf {
        vrid,
        priority,
        advert_interval,
        preempt: h.preempt.unwrap_or(true),
        port_name,
        floating,
        garp_interval,
        garp_elapse,
        family,
        unicast_peers,
        track,
        sync_peer,
        sync_port,
    })
}

#[cfg(test)]
mod tests;
