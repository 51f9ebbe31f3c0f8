//! Builds the immutable forwarding snapshot the workers read, from a
//! validated configuration, the ports' MACs and the real servers' current
//! states (health checks and admin actions).
//!
//! A VIP's `[vip.fallback]` becomes its service's fallback, the target
//! after its reals (see `forwarder::service`): the snapshot precomputes its
//! route like a real's, so [`Snapshot::next_hops`] keeps it resolved. It is
//! not health-checked and always `Up`; `state_of` is asked about reals
//! only.
//!
//! Service ids are derived from (VIP address, protocol, port), so a reload
//! that keeps a VIP keeps its id, and the workers' connection tables, which
//! key flows by service id, keep every established flow.

use std::collections::HashSet;
use std::net::IpAddr;

use forwarder::packet::MacAddr;
use forwarder::pipeline::outbound::OutboundRule;
use forwarder::pipeline::{PortInfo, Snapshot};
use forwarder::service::{self, Persistence, Real, RealState, ServiceSpec, VipTable};
use forwarder::sync::SyncSpec;

use crate::config::{self, Config};

/// Port MTU assumed for tunnel checks (standard Ethernet).
pub const DEFAULT_MTU: u16 = 1500;

/// A stable service id for (address, protocol, port).
pub fn service_id(addr: IpAddr, proto: config::Protocol, port: u16) -> u32 {
    // FNV-1a over the key bytes: fixed, documented, no seed.
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |b: u8| {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    };
    match addr {
        IpAddr::V4(a) => a.octets().iter().for_each(|b| eat(*b)),
        IpAddr::V6(a) => a.octets().iter().for_each(|b| eat(*b)),
    }
    eat(if proto == config::Protocol::Tcp {
        6
    } else {
        17
    });
    port.to_be_bytes().iter().for_each(|b| eat(*b));
    h
}

/// Builds a snapshot. `state_of(vip_name, real_addr, real_port)` gives each
/// real's state (`Up` when the caller knows nothing else).
///
/// `owner`: whether this node holds the virtual addresses (VRRP MASTER).
/// Without `[ha]` it is ignored (always the owner). With `[ha]`, the owner
/// answers ARP / ND for every VIP and `[ha].floating` address (the latter
/// on the `[ha].port_name` port) and balances the VIPs; a non-owner has no
/// VIP in any port's `vips` and no service (the pipeline balances whatever
/// is in the VIP table, so an empty table is what keeps a BACKUP from
/// forwarding traffic sent to it on a stale ARP entry). The services are
/// still validated either way, so a reload is judged the same on both
/// nodes, and a non-owner keeps them on standby
/// ([`Snapshot::with_standby`]) to check and install the flows the owner
/// syncs. With `[ha].sync_peer`, the snapshot carries the sync
/// ([`Snapshot::with_sync`]): the owner sends, every node receives.
pub fn build(
    cfg: &Config,
    generation: u64,
    macs: &[MacAddr],
    state_of: &dyn Fn(&str, IpAddr, u16) -> RealState,
    owner: bool,
) -> Result<Snapshot, String> {
    let owner = owner || cfg.ha.is_none();
    let mut ports: Vec<PortInfo> = cfg
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| PortInfo {
            mac: macs.get(i).copied().unwrap_or_default(),
            addrs: p.addresses.iter().map(|c| (c.addr, c.prefix)).collect(),
            gateway_v4: p.gateway.and_then(|g| match g {
                IpAddr::V4(g) => Some(g),
                IpAddr::V6(_) => None,
            }),
            gateway_v6: p.gateway.and_then(|g| match g {
                IpAddr::V6(g) => Some(g),
                IpAddr::V4(_) => None,
            }),
            vips: Vec::new(),
            mtu: DEFAULT_MTU,
        })
        .collect();
    let mut specs = Vec::with_capacity(cfg.vips.len());
    let mut ids = HashSet::new();
    for v in &cfg.vips {
        if let Some(pi) = cfg.ports.iter().position(|p| p.name == v.port_name) {
            if !ports[pi].vips.contains(&v.address) {
                ports[pi].vips.push(v.address);
            }
        }
        // Ids are unique within a snapshot: probe on the (unlikely) clash.
        let mut id = service_id(v.address, v.protocol, v.port);
        while !ids.insert(id) {
            id = id.wrapping_add(1);
        }
        specs.push(ServiceSpec {
            id,
            name: v.name.clone(),
            vip: v.address,
            proto: match v.protocol {
                config::Protocol::Tcp => service::Proto::Tcp,
                config::Protocol::Udp => service::Proto::Udp,
            },
            port: v.port,
            mode: match v.mode {
                config::Mode::Dr => service::Mode::Dr,
                config::Mode::Nat => service::Mode::Nat,
                config::Mode::Tun => service::Mode::Tun,
            },
            scheduler: match v.scheduler {
                config::Scheduler::Maglev => service::SchedulerKind::Maglev,
                config::Scheduler::Wrr => service::SchedulerKind::Wrr,
                config::Scheduler::Wlc => service::SchedulerKind::Wlc,
                config::Scheduler::Rr => service::SchedulerKind::Rr,
                config::Scheduler::Lc => service::SchedulerKind::Lc,
                config::Scheduler::Sh => service::SchedulerKind::Sh,
            },
            persistence: v.persistence.map(|p| Persistence {
                timeout_secs: p.timeout.as_secs().clamp(1, u64::from(u32::MAX)) as u32,
                v4_prefix: if v.address.is_ipv4() { p.netmask } else { 32 },
                v6_prefix: if v.address.is_ipv6() { p.netmask } else { 128 },
            }),
            reals: v
                .reals
                .iter()
                .map(|r| Real {
                    addr: r.address,
                    port: r.port,
                    weight: r.weight,
                    state: state_of(&v.name, r.address, r.port),
                    neigh: 0,
                })
                .collect(),
            on_down: match v.on_down {
                config::OnDown::Reschedule => service::OnDown::Reschedule,
                config::OnDown::Keep => service::OnDown::Keep,
            },
            // Not health-checked: always up (weight unused, never scheduled).
            fallback: v.fallback.as_ref().map(|f| Real {
                addr: f.address,
                port: f.port,
                weight: 1,
                state: RealState::Up,
                neigh: 0,
            }),
            new_flow_rate_limit: v.new_flow_rate_limit,
            timeouts: v.timeouts.map(|t| {
                let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as u32);
                service::ServiceTimeouts {
                    tcp_ms: ms(t.tcp),
                    tcp_fin_ms: ms(t.tcp_fin),
                    udp_ms: ms(t.udp),
                    reset_on_idle: t.tcp_reset_on_idle,
                }
            }),
        });
    }
    let mut vips = VipTable::build(specs, generation).map_err(|e| e.to_string())?;
    let mut standby = None;
    if let Some(ha) = &cfg.ha {
        if owner {
            if let Some(pi) = cfg.ports.iter().position(|p| p.name == ha.port_name) {
                for a in &ha.floating {
                    if !ports[pi].vips.contains(a) {
                        ports[pi].vips.push(*a);
                    }
                }
            }
        } else {
            ports.iter_mut().for_each(|p| p.vips.clear());
            let none = VipTable::build(Vec::new(), generation).map_err(|e| e.to_string())?;
            standby = Some(std::mem::replace(&mut vips, none));
        }
    }
    let mut snap = Snapshot::new(generation, ports, vips).with_outbound(
        cfg.outbound
            .iter()
            .map(|o| OutboundRule {
                sources: o.sources.iter().map(|c| (c.addr, c.prefix)).collect(),
                address: o.address,
            })
            .collect(),
    );
    if let Some(t) = standby {
        snap = snap.with_standby(t);
    }
    if let Some(peer) = cfg
        .ha
        .as_ref()
        .and_then(|h| h.sync_peer.map(|p| (p, h.sync_port)))
    {
        snap = snap.with_sync(SyncSpec {
            peer: peer.0,
            port: peer.1,
            send: owner,
            fingerprint: cfg.fingerprint(),
        });
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[dataplane]
eal_args = ["--no-huge"]
[[port]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.2/24", "2001:db8::2/64"]
gateway = "192.0.2.1"
[[vip]]
name = "web"
address = "192.0.2.100"
port = 80
mode = "nat"
  [vip.persistence]
  netmask = 24
  [[vip.real]]
  address = "192.0.2.21"
  port = 8080
  [[vip.real]]
  address = "192.0.2.22"
  port = 8080
  weight = 3
[[vip]]
name = "web6"
address = "2001:db8::100"
port = 80
  [[vip.real]]
  address = "2001:db8::21"
[[vip]]
name = "sorry"
address = "192.0.2.101"
port = 443
mode = "nat"
on_down = "keep"
  [vip.fallback]
  address = "198.51.100.80"
  port = 8443
  [[vip.real]]
  address = "192.0.2.21"
  port = 8443
"#;

    #[test]
    fn a_config_becomes_a_snapshot_with_stable_ids() {
        let cfg = config::parse("t.toml", CFG).unwrap();
        let mac = MacAddr([2, 0, 0, 0, 0, 2]);
        let s = build(
            &cfg,
            7,
            &[mac],
            &|_, a, _| {
                if a == "192.0.2.22".parse::<IpAddr>().unwrap() {
                    RealState::Drain
                } else {
                    RealState::Up
                }
            },
            false,
        )
        .unwrap();
        assert_eq!(s.generation, 7);
        assert_eq!(s.ports[0].mac, mac);
        assert_eq!(s.ports[0].vips.len(), 3);
        assert_eq!(s.ports[0].gateway_v4, Some("192.0.2.1".parse().unwrap()));
        let web = s
            .vips
            .lookup("192.0.2.100".parse().unwrap(), service::Proto::Tcp, 80)
            .unwrap();
        assert_eq!(web.mode(), service::Mode::Nat);
        assert_eq!(web.reals()[1].state, RealState::Drain);
        assert_eq!(web.reals()[1].weight, 3);
        assert_eq!(web.persistence().unwrap().v4_prefix, 24);
        // The same VIP gets the same id in every snapshot.
        let again = build(&cfg, 8, &[mac], &|_, _, _| RealState::Up, true).unwrap();
        let web2 = again
            .vips
            .lookup("192.0.2.100".parse().unwrap(), service::Proto::Tcp, 80)
            .unwrap();
        assert_eq!(web.id(), web2.id());
        assert_eq!(
            web.id(),
            service_id("192.0.2.100".parse().unwrap(), config::Protocol::Tcp, 80)
        );
        assert_eq!(web.on_down(), service::OnDown::Reschedule);
        assert_eq!(web.fallback_idx(), None);
        // on_down and the fallback, which is always up.
        let sorry = s
            .vips
            .lookup("192.0.2.101".parse().unwrap(), service::Proto::Tcp, 443)
            .unwrap();
        assert_eq!(sorry.on_down(), service::OnDown::Keep);
        let f = sorry.target(sorry.fallback_idx().unwrap()).unwrap();
        assert_eq!(
            (f.addr, f.port, f.state),
            ("198.51.100.80".parse().unwrap(), 8443, RealState::Up)
        );
        assert_eq!(sorry.reals().len(), 1, "not a real");
        // Routes to reals and fallbacks are precomputed (the fallback
        // through the gateway).
        let hops = s.next_hops();
        assert_eq!(hops.len(), 4, "gateway + three reals: {hops:?}");
        let si = s
            .vips
            .lookup_idx("192.0.2.101".parse().unwrap(), service::Proto::Tcp, 443)
            .unwrap();
        let r = s
            .real_route(si.0 as usize, sorry.fallback_idx().unwrap())
            .unwrap();
        assert_eq!(r.next_hop, "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn with_ha_only_the_owner_holds_vips_and_floating_addresses() {
        let ha =
            "[ha]\nvrid = 51\npriority = 150\nport_name = \"lan\"\nfloating = [\"192.0.2.1\"]\n";
        let cfg = config::parse("t.toml", &format!("{CFG}{ha}")).unwrap();
        let mac = MacAddr([2, 0, 0, 0, 0, 2]);
        let up = |_: &str, _: IpAddr, _: u16| RealState::Up;
        let m = build(&cfg, 1, &[mac], &up, true).unwrap();
        let gw: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(m.ports[0].vips.len(), 4, "3 VIPs + floating");
        assert!(m.ports[0].answers_for(gw));
        assert_eq!(m.vips.services().len(), 3);
        let b = build(&cfg, 2, &[mac], &up, false).unwrap();
        assert!(b.ports[0].vips.is_empty());
        assert!(b.vips.services().is_empty());
        assert!(
            b.ports[0].answers_for("192.0.2.2".parse().unwrap()),
            "own address"
        );
        assert!(m.sync().is_none() && b.sync().is_none(), "no sync_peer");
        assert!(
            b.known_service(m.vips.services()[0].id()).is_some(),
            "standby"
        );
        let with_sync =
            config::parse("t.toml", &format!("{CFG}{ha}sync_peer = \"192.0.2.3\"\n")).unwrap();
        let m = build(&with_sync, 3, &[mac], &up, true).unwrap();
        let (s, r) = m.sync().unwrap();
        assert_eq!(
            (s.peer, s.port, s.send),
            ("192.0.2.3".parse().unwrap(), 8848, true)
        );
        assert_eq!(r.unwrap().src, "192.0.2.2".parse::<IpAddr>().unwrap());
        assert!(m.next_hops().iter().any(|h| h.next_hop == s.peer));
        let b = build(&with_sync, 4, &[mac], &up, false).unwrap();
        assert!(!b.sync().unwrap().0.send, "a BACKUP only receives");
        // Without [ha], `owner` is ignored.
        let plain = config::parse("t.toml", CFG).unwrap();
        let p = build(&plain, 1, &[mac], &up, false).unwrap();
        assert_eq!(p.ports[0].vips.len(), 3);
    }
}
