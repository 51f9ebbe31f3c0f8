//! From the raw form to the typed [`Config`](super::Config): every value
//! parsed and range-checked, and the rules that span keys, each error at
//! its key.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::locate::*;
use super::raw::*;
use super::*;

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

/// serde_ignored writes `port.0.bogus`; turn it into a key path.
pub(super) fn ignored_path(s: &str) -> KeyPath {
    let mut p = KeyPath::default();
    for part in s.split('.').filter(|p| *p != "?") {
        p = match part.parse::<usize>() {
            Ok(i) => p.idx(i),
            Err(_) => p.key(part),
        };
    }
    p
}

pub(super) fn int_in<T: TryFrom<i64>>(
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

pub(super) fn duration(
    errs: &mut Errors<'_>,
    path: &KeyPath,
    v: &str,
    allow_zero: bool,
) -> Option<Duration> {
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

pub(super) fn ip(errs: &mut Errors<'_>, path: &KeyPath, v: &str) -> Option<IpAddr> {
    match v.parse::<IpAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.at(path, format!("{v:?} is not an IPv4 or IPv6 address"));
            None
        }
    }
}

pub(super) fn required<'v, T>(
    errs: &mut Errors<'_>,
    path: &KeyPath,
    v: &'v Option<T>,
) -> Option<&'v T> {
    if v.is_none() {
        errs.at(path, "is required");
    }
    v.as_ref()
}

pub(super) fn validate(raw: RawConfig, errs: &mut Errors<'_>) -> Config {
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
    let steering = match rdp.steering.as_deref() {
        None | Some("auto") => SteeringMode::Auto,
        Some("software") => SteeringMode::Software,
        Some("nic") => SteeringMode::Nic,
        Some(o) => {
            errs.at(
                &dp_path.key("steering"),
                format!("{o:?} is not a steering mode (auto, software or nic)"),
            );
            SteeringMode::Auto
        }
    };
    let dataplane = Dataplane {
        steering,
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
    let tls = raw.admin.as_ref().and_then(|a| {
        let dir = std::path::Path::new(errs.file)
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let path = |v: &str| dir.join(v);
        match (&a.tls_cert, &a.tls_key) {
            (None, None) => None,
            (Some(_), None) => {
                errs.at(
                    &admin_path.key("tls_key"),
                    "is required with tls_cert (the certificate's private key, PEM)",
                );
                None
            }
            (None, Some(_)) => {
                errs.at(
                    &admin_path.key("tls_cert"),
                    "is required with tls_key (the server's certificate, PEM)",
                );
                None
            }
            (Some(c), Some(k)) => {
                let t = AdminTls {
                    cert: path(c),
                    key: path(k),
                };
                match crate::tls::server_config(&t.cert, &t.key) {
                    Ok(_) => Some(t),
                    Err(e) => {
                        let key = if e.contains(&t.key.display().to_string()) {
                            "tls_key"
                        } else {
                            "tls_cert"
                        };
                        errs.at(&admin_path.key(key), e);
                        None
                    }
                }
            }
        }
    });
    let tls_asked = raw
        .admin
        .as_ref()
        .is_some_and(|a| a.tls_cert.is_some() || a.tls_key.is_some());
    if !listen.ip().is_loopback() {
        let no_token = token.as_deref().is_none_or(str::is_empty);
        let missing = match (no_token, tls_asked) {
            (true, false) => Some("[admin].token and [admin].tls_cert / tls_key"),
            (true, true) => Some("[admin].token"),
            (false, false) => Some("[admin].tls_cert / tls_key"),
            (false, true) => None,
        };
        if let Some(m) = missing {
            errs.at(
                &admin_path.key("listen"),
                format!(
                    "{listen} is not a loopback address: set {m}, so that the API is neither open to the network nor its token sent in clear"
                ),
            );
        }
    }
    // [announce]
    let announce = raw.announce.as_ref().and_then(|a| {
        let p = root.key("announce");
        if vips.is_empty() && raw.vip.is_empty() {
            errs.at(&p, "there is no [[vip]] to announce");
        }
        let table = match a.table {
            None => {
                errs.at(&p.key("table"), "is required");
                None
            }
            Some(t @ (0 | 253 | 254 | 255)) => {
                errs.at(
                    &p.key("table"),
                    format!("{t} is a table the kernel keeps for itself (0 unspecified, 253 default, 254 main, 255 local): choose another, e.g. 250"),
                );
                None
            }
            Some(t) => int_in(errs, &p.key("table"), t, 1, i64::from(u32::MAX)),
        };
        let drain_time = match &a.drain_time {
            Some(d) => duration(errs, &p.key("drain_time"), d, true),
            None => Some(DEFAULT_DRAIN_TIME),
        };
        Some(AnnounceConf {
            table: table?,
            drain_time: drain_time?,
        })
    });
    let outbound = validate_outbound(errs, &root, &raw.outbound, &ports);
    Config {
        dataplane,
        ports,
        vips,
        ha,
        admin: AdminConf { listen, token, tls },
        announce,
        outbound,
    }
}

/// `[[outbound]]`: named once each, sources of one family, leaving from an
/// own address of the named port.
fn validate_outbound(
    errs: &mut Errors<'_>,
    root: &KeyPath,
    raw: &[RawOutbound],
    ports: &[PortConf],
) -> Vec<OutboundConf> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, ro) in raw.iter().enumerate() {
        let p = root.key("outbound").idx(i);
        let before = errs.list.len();
        let name = ro.name.clone().unwrap_or_else(|| format!("outbound{i}"));
        if name.is_empty() {
            errs.at(&p.key("name"), "is empty");
        } else if !names.insert(name.clone()) {
            errs.at(
                &p.key("name"),
                format!("outbound name {name:?} is used twice"),
            );
        }
        let mut sources = Vec::new();
        if ro.sources.is_empty() {
            errs.at(
                &p.key("sources"),
                "at least one prefix (\"192.0.2.0/24\") is required",
            );
        }
        for (j, s) in ro.sources.iter().enumerate() {
            match s.parse::<Cidr>() {
                Ok(c) => sources.push(c),
                Err(e) => errs.at(&p.key("sources").idx(j), e),
            }
        }
        let v4 = sources.first().map(|c| c.addr.is_ipv4());
        if let Some(v4) = v4 {
            if let Some(j) = sources.iter().position(|c| c.addr.is_ipv4() != v4) {
                errs.at(
                    &p.key("sources").idx(j),
                    "mixes IPv4 and IPv6: use one [[outbound]] per family",
                );
            }
        }
        let port_name = required(errs, &p.key("port_name"), &ro.port_name)
            .cloned()
            .unwrap_or_default();
        let port = ports.iter().find(|x| x.name == port_name);
        if port.is_none() && !port_name.is_empty() {
            errs.at(
                &p.key("port_name"),
                format!("there is no [[port]] named {port_name:?}"),
            );
        }
        let address = match (&ro.address, port, v4) {
            (Some(a), _, _) => ip(errs, &p.key("address"), a),
            (None, Some(port), Some(v4)) => {
                let a = port
                    .addresses
                    .iter()
                    .find(|c| c.addr.is_ipv4() == v4)
                    .map(|c| c.addr);
                if a.is_none() {
                    errs.at(
                        &p.key("address"),
                        format!(
                            "port {port_name:?} has no {} address for these sources: add one, or set address",
                            if v4 { "IPv4" } else { "IPv6" }
                        ),
                    );
                }
                a
            }
            _ => None,
        };
        if let (Some(a), Some(port)) = (address, port) {
            if !port.addresses.iter().any(|c| c.addr == a) {
                errs.at(
                    &p.key("address"),
                    format!(
                        "{a} is not an address of port {port_name:?}: replies must come back to one of the balancer's own addresses ({})",
                        port.addresses
                            .iter()
                            .map(|c| c.addr.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            } else if v4.is_some_and(|v4| v4 != a.is_ipv4()) {
                errs.at(
                    &p.key("address"),
                    format!("{a} is not of the sources' family"),
                );
            }
        }
        if errs.list.len() == before {
            if let Some(address) = address {
                out.push(OutboundConf {
                    name,
                    sources,
                    port_name,
                    address,
                });
            }
        }
    }
    out
}

pub(super) fn validate_vip(
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
    if let Some(h) = &health {
        if port == 0 && h.port.is_none() && h.check != Check::None {
            errs.at(
                &p.key("health").key("port"),
                "required: the VIP takes every port (port = 0), so its reals have no port to check",
            );
        }
    }

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
        let max_conns = rr
            .max_conns
            .and_then(|v| int_in(errs, &rp.key("max_conns"), v, 1, 100_000_000));
        let min_conns = match (rr.min_conns, max_conns) {
            (Some(v), Some(max)) => int_in(errs, &rp.key("min_conns"), v, 0, i64::from(max)),
            (Some(_), None) if rr.max_conns.is_none() => {
                errs.at(&rp.key("min_conns"), "needs max_conns");
                None
            }
            _ => None,
        };
        reals.push(RealConf {
            address: addr,
            port: rport,
            weight,
            mac,
            max_conns,
            min_conns,
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
    let on_remove = match rv.on_remove.as_deref() {
        None | Some("keep") => OnRemove::Keep,
        Some("reschedule") => OnRemove::Reschedule,
        Some(o) => {
            errs.at(
                &p.key("on_remove"),
                format!("{o:?} is not an on_remove action (keep or reschedule)"),
            );
            OnRemove::Keep
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
    let timeouts = rv.timeouts.as_ref().map(|t| {
        let tp = p.key("timeouts");
        let mut one = |key: &str, v: &Option<String>| {
            let d = duration(errs, &tp.key(key), v.as_deref()?, false)?;
            if d > MAX_VIP_TIMEOUT {
                errs.at(&tp.key(key), format!("{d:?} is longer than 7 days"));
                return None;
            }
            if d < Duration::from_millis(1) {
                errs.at(&tp.key(key), "must be at least 1ms");
                return None;
            }
            Some(d)
        };
        let (tcp, tcp_fin, udp) = (
            one("tcp", &t.tcp),
            one("tcp_fin", &t.tcp_fin),
            one("udp", &t.udp),
        );
        let tcp_reset_on_idle = t.tcp_reset_on_idle.unwrap_or(false);
        if tcp_reset_on_idle && protocol != Protocol::Tcp {
            errs.at(
                &tp.key("tcp_reset_on_idle"),
                "applies to TCP VIPs only (this VIP is UDP)",
            );
        }
        VipTimeouts {
            tcp,
            tcp_fin,
            udp,
            tcp_reset_on_idle,
        }
    });
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
        on_remove,
        fallback,
        new_flow_rate_limit,
        timeouts,
    })
}

/// What the checks of a server (real or fallback) need of its VIP.
pub(super) struct VipSide<'a> {
    pub(super) address: Option<IpAddr>,
    pub(super) port: u16,
    pub(super) mode: Mode,
    pub(super) ports: &'a [PortConf],
}

/// The address, port and MAC of a real or fallback (`what`) at `p`, checked
/// against its VIP: address family, port translation (NAT only), and a
/// port that reaches it (DR: a connected prefix; NAT, TUN: or a gateway).
/// `None` when the address is missing or malformed (reported).
pub(super) fn validate_server(
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

pub(super) fn validate_health(errs: &mut Errors<'_>, p: &KeyPath, h: &RawHealth) -> Option<Health> {
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
    let port = match h.port {
        Some(v) => Some(int_in(errs, &p.key("port"), v, 1, 65535)?),
        None => None,
    };
    let address = match &h.address {
        Some(a) => match a.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                errs.at(&p.key("address"), format!("{a:?} is not an IP address"));
                return None;
            }
        },
        None => None,
    };
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
    let check = match kind {
        HealthKind::None => Check::None,
        HealthKind::Tcp => Check::Tcp,
        HealthKind::Udp => Check::Udp,
        HealthKind::Http => Check::Http(HttpCheck {
            path,
            expect_status,
            expect_body: h.expect_body.clone(),
        }),
    };
    Some(Health {
        check,
        interval,
        timeout,
        rise,
        fall,
        port,
        address,
    })
}

pub(super) fn validate_ha(
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
