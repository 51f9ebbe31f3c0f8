//! `ferrolb real-setup`: the shell commands that prepare a Linux real server
//! for one VIP, from the configuration the balancer runs.
//!
//! * DR and TUN: the real must accept packets addressed to the VIP without
//!   ever claiming the VIP on the wire, or the clients' ARP / neighbour
//!   requests may be answered by a real instead of the balancer. The VIP
//!   goes on the loopback; `arp_ignore=1` answers ARP only for addresses of
//!   the interface asked, `arp_announce=2` never sources ARP from the VIP.
//!   TUN also needs the decapsulating device up (`tunl0` from `ipip`,
//!   `ip6tnl0` from `ip6_tunnel`) and, for IPv4, reverse-path filtering off
//!   on it: the inner packet comes in on `tunl0` from a client the real
//!   reaches through its Ethernet port, which strict `rp_filter` drops.
//! * NAT: the real answers to the client's address, so its route to the
//!   clients (its default route) must go through the balancer; the VIP is
//!   not on the real at all.
//!
//! Every command can be run again (`replace`, `-w`), so the script is safe
//! to re-run after a change.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::{Config, Mode, Protocol, VipConf};

/// The script for a real of the VIP named `vip`; `real` picks one real
/// when the VIP's reals need different commands (NAT reals on different
/// subnets, hence different gateways). Errors name what is wrong.
pub fn script(cfg: &Config, vip: &str, real: Option<IpAddr>) -> Result<String, String> {
    let v = cfg.vips.iter().find(|v| v.name == vip).ok_or_else(|| {
        let names: Vec<&str> = cfg.vips.iter().map(|v| v.name.as_str()).collect();
        format!(
            "no VIP named {vip:?} in the configuration (VIPs: {})",
            names.join(", ")
        )
    })?;
    if let Some(r) = real {
        if !v.reals.iter().any(|x| x.address == r) {
            return Err(format!("VIP {vip:?} has no real {r}"));
        }
    }
    let mode = match v.mode {
        Mode::Dr => "dr",
        Mode::Nat => "nat",
        Mode::Tun => "tun",
    };
    let proto = match v.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let port = if v.port == 0 {
        "every port".to_string()
    } else {
        format!("port {}", v.port)
    };
    let mut o = String::new();
    let _ = writeln!(o, "#!/bin/sh");
    let _ = writeln!(
        o,
        "# A Linux real server of VIP {:?}: {} {proto}, {port}, {}.",
        v.name,
        v.address,
        mode.to_uppercase()
    );
    let _ = writeln!(
        o,
        "# Run as root on the real (sh -e); every command can be run again."
    );
    let _ = writeln!(o, "set -e");
    match v.mode {
        Mode::Dr => hold_vip(&mut o, v.address, "lo"),
        Mode::Tun => tunnel(&mut o, v.address),
        Mode::Nat => gateway(&mut o, cfg, v, real)?,
    }
    let listen = match v.mode {
        Mode::Nat => "its own address".to_string(),
        _ => format!("the VIP {} (or on every address)", v.address),
    };
    let ports = if v.port == 0 {
        "the ports its clients use".to_string()
    } else {
        let mut p: Vec<String> = v.reals.iter().map(|r| r.port.to_string()).collect();
        p.sort();
        p.dedup();
        format!("{} {}", proto.to_uppercase(), p.join(", "))
    };
    let _ = writeln!(o, "# The service listens on {listen}, {ports}.");
    if let Some(h) = &v.health {
        if h.port.is_some() || h.address.is_some() {
            let to = h
                .address
                .map(|a| a.to_string())
                .unwrap_or_else(|| "the real".to_string());
            let p = h
                .port
                .map(|p| format!("port {p}"))
                .unwrap_or_else(|| "the real's port".to_string());
            let _ = writeln!(o, "# Health checks go to {to}, {p}: serve them there.");
        }
    }
    let _ = writeln!(
        o,
        "# These settings end at reboot: keep them in the system's network configuration."
    );
    Ok(o)
}

/// DR and TUN: the VIP on `dev`, never announced by the real.
fn hold_vip(o: &mut String, vip: IpAddr, dev: &str) {
    match vip {
        IpAddr::V4(_) => {
            let _ = writeln!(
                o,
                "# Take the VIP's packets without ever claiming the VIP in ARP:"
            );
            let _ = writeln!(
                o,
                "# answer ARP only for the asked interface's own addresses,"
            );
            let _ = writeln!(
                o,
                "# and never use the VIP as the source of an ARP request."
            );
            let _ = writeln!(o, "sysctl -qw net.ipv4.conf.all.arp_ignore=1");
            let _ = writeln!(o, "sysctl -qw net.ipv4.conf.all.arp_announce=2");
            let _ = writeln!(o, "ip addr replace {vip}/32 dev {dev}");
        }
        IpAddr::V6(_) => {
            let _ = writeln!(
                o,
                "# Take the VIP's packets; an address on {dev} is not answered in neighbour discovery."
            );
            let _ = writeln!(o, "ip -6 addr replace {vip}/128 dev {dev} nodad");
        }
    }
}

/// TUN: the decapsulating device up, reverse-path filtering off on it (IPv4)
/// and the VIP on the loopback.
fn tunnel(o: &mut String, vip: IpAddr) {
    match vip {
        IpAddr::V4(_) => {
            let _ = writeln!(o, "# Decapsulate IP-in-IP (protocol 4) from the balancer:");
            let _ = writeln!(o, "modprobe ipip");
            let _ = writeln!(o, "ip link set tunl0 up");
            let _ = writeln!(
                o,
                "# The inner packet comes in on tunl0 from a client routed elsewhere: no strict rp_filter."
            );
            let _ = writeln!(o, "sysctl -qw net.ipv4.conf.tunl0.rp_filter=0");
            let _ = writeln!(o, "sysctl -qw net.ipv4.conf.all.rp_filter=0");
        }
        IpAddr::V6(_) => {
            let _ = writeln!(
                o,
                "# Decapsulate IPv6-in-IPv6 (next header 41) from the balancer:"
            );
            let _ = writeln!(o, "modprobe ip6_tunnel");
            let _ = writeln!(o, "ip link set ip6tnl0 up");
        }
    }
    hold_vip(o, vip, "lo");
}

/// NAT: the default route through the balancer's address on the real's
/// subnet (a floating address there when `[ha]` has one).
fn gateway(o: &mut String, cfg: &Config, v: &VipConf, real: Option<IpAddr>) -> Result<(), String> {
    let reals: Vec<IpAddr> = match real {
        Some(r) => vec![r],
        None => v.reals.iter().map(|r| r.address).collect(),
    };
    if reals.is_empty() {
        return Err(format!(
            "VIP {:?} has no reals: nothing tells which subnet they are on",
            v.name
        ));
    }
    let mut gws: Vec<IpAddr> = Vec::new();
    for r in &reals {
        let gw = gateway_of(cfg, *r).ok_or_else(|| {
            format!(
                "real {r} of VIP {:?} is on none of the balancer's subnets ([[port]] addresses): \
                 a NAT real needs the balancer as its next hop",
                v.name
            )
        })?;
        if !gws.contains(&gw) {
            gws.push(gw);
        }
    }
    if gws.len() > 1 {
        return Err(format!(
            "the reals of VIP {:?} are on different subnets (gateways {}): name one with --real",
            v.name,
            gws.iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let gw = gws[0];
    let _ = writeln!(
        o,
        "# The real answers the client's own address: its way back must be the balancer."
    );
    let six = if gw.is_ipv6() { "-6 " } else { "" };
    let _ = writeln!(o, "ip {six}route replace default via {gw}");
    let _ = writeln!(
        o,
        "# The VIP {} is not held on the real in NAT mode.",
        v.address
    );
    Ok(())
}

/// The balancer's address a real at `r` reaches directly: a floating
/// address of `[ha]` on that subnet first (it moves with the MASTER), else
/// the port's own.
fn gateway_of(cfg: &Config, r: IpAddr) -> Option<IpAddr> {
    let subnet = cfg
        .ports
        .iter()
        .flat_map(|p| p.addresses.iter())
        .find(|c| c.addr.is_ipv4() == r.is_ipv4() && c.contains(r))?;
    let floating = cfg.ha.as_ref().and_then(|h| {
        h.floating
            .iter()
            .copied()
            .find(|f| *f != r && subnet.contains(*f))
    });
    Some(floating.unwrap_or(subnet.addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            r#"
[dataplane]
eal_args = ["--no-huge"]

[[port]]
name = "ext"
device = "net_null0"
addresses = ["203.0.113.2/24", "2001:db8:1::2/64"]

[[port]]
name = "int"
device = "net_null1"
addresses = ["192.0.2.2/24", "198.51.100.2/24", "2001:db8:2::2/64"]

[[vip]]
name = "web"
address = "203.0.113.100"
port = 80
mode = "dr"
port_name = "ext"
  [[vip.real]]
  address = "203.0.113.21"

[[vip]]
name = "web6"
address = "2001:db8:1::100"
port = 443
mode = "tun"
port_name = "ext"
  [[vip.real]]
  address = "2001:db8:1::21"

[[vip]]
name = "tun4"
address = "203.0.113.101"
protocol = "udp"
port = 0
mode = "tun"
port_name = "ext"
  [[vip.real]]
  address = "203.0.113.22"

[[vip]]
name = "app"
address = "203.0.113.102"
port = 80
mode = "nat"
port_name = "ext"
  [[vip.real]]
  address = "192.0.2.21"
  port = 8080
  [[vip.real]]
  address = "192.0.2.22"
  port = 8080
  [vip.health]
  type = "tcp"
  port = 9010

[[vip]]
name = "split"
address = "203.0.113.103"
port = 80
mode = "nat"
port_name = "ext"
  [[vip.real]]
  address = "192.0.2.21"
  [[vip.real]]
  address = "198.51.100.21"

[[vip]]
name = "app6"
address = "2001:db8:1::102"
port = 80
mode = "nat"
port_name = "ext"
  [[vip.real]]
  address = "2001:db8:2::21"
{extra}
"#
        );
        crate::config::parse("t.toml", &text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The commands of a script, comments left out.
    fn commands(s: &str) -> Vec<&str> {
        s.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect()
    }

    #[test]
    fn dr_holds_the_vip_on_loopback_and_keeps_quiet_in_arp() {
        let s = script(&cfg(""), "web", None).unwrap();
        assert_eq!(
            commands(&s),
            [
                "set -e",
                "sysctl -qw net.ipv4.conf.all.arp_ignore=1",
                "sysctl -qw net.ipv4.conf.all.arp_announce=2",
                "ip addr replace 203.0.113.100/32 dev lo",
            ]
        );
        assert!(s.contains("listens on the VIP 203.0.113.100"), "{s}");
        assert!(s.contains("TCP 80"), "{s}");
    }

    #[test]
    fn tun_brings_up_the_decapsulating_device_for_each_family() {
        let s = script(&cfg(""), "tun4", None).unwrap();
        assert_eq!(
            commands(&s),
            [
                "set -e",
                "modprobe ipip",
                "ip link set tunl0 up",
                "sysctl -qw net.ipv4.conf.tunl0.rp_filter=0",
                "sysctl -qw net.ipv4.conf.all.rp_filter=0",
                "sysctl -qw net.ipv4.conf.all.arp_ignore=1",
                "sysctl -qw net.ipv4.conf.all.arp_announce=2",
                "ip addr replace 203.0.113.101/32 dev lo",
            ]
        );
        assert!(
            s.contains("udp, every port") && s.contains("the ports its clients use"),
            "{s}"
        );
        let s = script(&cfg(""), "web6", None).unwrap();
        assert_eq!(
            commands(&s),
            [
                "set -e",
                "modprobe ip6_tunnel",
                "ip link set ip6tnl0 up",
                "ip -6 addr replace 2001:db8:1::100/128 dev lo nodad",
            ]
        );
        assert!(s.contains("TCP 443"), "{s}");
    }

    #[test]
    fn nat_routes_through_the_balancer_on_the_reals_subnet() {
        let s = script(&cfg(""), "app", None).unwrap();
        assert_eq!(
            commands(&s),
            ["set -e", "ip route replace default via 192.0.2.2"]
        );
        assert!(s.contains("Health checks go to the real, port 9010"), "{s}");
        let s = script(&cfg(""), "app6", None).unwrap();
        assert_eq!(
            commands(&s),
            ["set -e", "ip -6 route replace default via 2001:db8:2::2"]
        );
        // Reals on two subnets: one must be named.
        let e = script(&cfg(""), "split", None).unwrap_err();
        assert!(
            e.contains("different subnets") && e.contains("--real"),
            "{e}"
        );
        let s = script(&cfg(""), "split", Some("198.51.100.21".parse().unwrap())).unwrap();
        assert!(s.contains("default via 198.51.100.2\n"), "{s}");
    }

    #[test]
    fn a_pair_routes_nat_reals_through_the_floating_address() {
        let ha = "[ha]\nvrid = 7\npriority = 100\nport_name = \"int\"\nfloating = [\"203.0.113.102\", \"192.0.2.1\"]\n";
        let s = script(&cfg(ha), "app", None).unwrap();
        assert!(
            s.contains("ip route replace default via 192.0.2.1\n"),
            "{s}"
        );
    }

    #[test]
    fn unknown_names_are_errors_that_say_what_exists() {
        let e = script(&cfg(""), "nope", None).unwrap_err();
        assert!(
            e.contains("no VIP named \"nope\"") && e.contains("web, web6"),
            "{e}"
        );
        let e = script(&cfg(""), "web", Some("203.0.113.99".parse().unwrap())).unwrap_err();
        assert_eq!(e, "VIP \"web\" has no real 203.0.113.99");
    }
}
