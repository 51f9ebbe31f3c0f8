//! `ferrolb status`: an `ipvsadm -L -n`-like table of a [`Status`].

use std::fmt::Write as _;

use super::status::Status;

/// An address with its port, IPv6 in brackets.
fn endpoint(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// The table, one line per service, real, worker (with several), then the
/// drops and the last reload error.
pub fn render(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "ferrolb: generation {}, {} flow(s), {} reload(s), service set {}",
        s.generation, s.flows, s.reloads, s.fingerprint
    );
    if let Some(h) = &s.ha {
        let _ = writeln!(
            o,
            "VRRP vrid {} priority {}: {}{}, master {}, {} transition(s) to master, adverts sent {} received {} invalid {}",
            h.vrid,
            h.priority,
            h.state.to_uppercase(),
            if h.owner { " (holding the VIPs)" } else { "" },
            h.master.as_deref().unwrap_or("unknown"),
            h.transitions_to_master,
            h.adverts_sent,
            h.adverts_received,
            h.adverts_invalid,
        );
        match h.manual.as_str() {
            "takeover" => {
                let _ = writeln!(
                    o,
                    "VRRP manual takeover: advertising priority {} until `ferrolb ha auto` or a restart",
                    h.advertised_priority
                );
            }
            "release" => {
                let _ = writeln!(
                    o,
                    "VRRP manual release: staying BACKUP until `ferrolb ha takeover`, `ferrolb ha auto` or a restart"
                );
            }
            _ => {}
        }
    }
    if let Some(y) = &s.sync {
        let _ = writeln!(
            o,
            "sync with {}:{} ({}): sent {} record(s) in {} batch(es), {} lost; received {}, applied {}, rejected {}, unknown service {}, batches missed {}",
            y.peer.as_deref().unwrap_or("?"),
            y.port,
            if y.sending { "sending" } else { "receiving" },
            y.records_sent,
            y.batches_sent,
            y.records_lost,
            y.records_received,
            y.records_applied,
            y.records_rejected,
            y.records_unknown_service,
            y.batches_missed,
        );
        let peer = y.peer.as_deref().unwrap_or("?");
        let _ = match (y.peer_config.as_str(), &y.peer_fingerprint) {
            ("differs", Some(fp)) => writeln!(
                o,
                "config: differs from peer {peer} (ours {}, the peer's {fp})",
                s.fingerprint
            ),
            ("same", _) => writeln!(o, "config: same as peer {peer}"),
            _ => writeln!(o, "config: peer {peer} not heard"),
        };
    }
    if let Some(a) = &s.announce {
        let _ = writeln!(
            o,
            "announce (table {}): {}{}",
            a.table,
            if a.announced.is_empty() {
                "nothing".to_string()
            } else {
                a.announced.join(", ")
            },
            if a.drained { " (node drained)" } else { "" },
        );
    }
    let _ = writeln!(
        o,
        "Prot LocalAddress:Port Scheduler Mode        Flows     InPkts    OutPkts"
    );
    let _ = writeln!(
        o,
        "  -> RemoteAddress:Port           Weight State     ActiveConn   NewConns    Packets      Bytes"
    );
    for v in &s.vips {
        let _ = writeln!(
            o,
            "{:<4} {:<27} {:<9} {:<4} {:>10} {:>10} {:>10}   {}{}",
            v.protocol.to_uppercase(),
            endpoint(&v.address, v.port),
            v.scheduler,
            v.mode,
            v.active_flows,
            v.traffic.packets_in,
            v.traffic.packets_out,
            v.name,
            v.persistence
                .map(|p| format!(" persistent {}s /{}", p.timeout_s, p.netmask))
                .unwrap_or_default(),
        );
        for r in &v.reals {
            let health = r
                .health
                .as_ref()
                .filter(|h| h.kind != "none")
                .map(|h| {
                    if h.last_reason.is_empty() {
                        format!("  {}", h.kind)
                    } else {
                        format!("  {}: {}", h.kind, h.last_reason)
                    }
                })
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  -> {:<27} {:>6} {:<9} {:>10} {:>10} {:>10} {:>10}{}",
                endpoint(&r.address, r.port),
                r.weight,
                r.state,
                r.traffic.active_flows,
                r.traffic.new_flows,
                r.traffic.packets,
                r.traffic.bytes,
                health,
            );
        }
    }
    if s.workers.len() > 1 {
        for w in &s.workers {
            let polls = w.counters.polls.max(1);
            let busy = polls.saturating_sub(w.counters.idle_polls);
            let _ = writeln!(
                o,
                "worker {}: {} flow(s), rx {} tx {} frames/s, handed over {} in {} (total), busy {:.0}% of polls",
                w.worker,
                w.flows,
                w.rx_pps,
                w.tx_pps,
                w.counters.handoffs_out,
                w.counters.handoffs_in,
                100.0 * busy as f64 / polls as f64,
            );
        }
    }
    let drops: Vec<String> = s
        .drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    if !drops.is_empty() {
        let _ = writeln!(o, "drops: {}", drops.join(" "));
    }
    if let Some(e) = &s.last_reload_error {
        let _ = writeln!(o, "last reload failed: {e}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::status::{CheckStatus, Persistence, RealStatus, RealTraffic, VipStatus};

    #[test]
    fn services_and_reals_line_up_in_columns() {
        let mut s = Status::default();
        s.vips.push(VipStatus {
            name: "web".into(),
            address: "2001:db8::100".into(),
            protocol: "tcp".into(),
            port: 80,
            mode: "dr".into(),
            scheduler: "maglev".into(),
            persistence: Some(Persistence {
                timeout_s: 300,
                netmask: 24,
            }),
            reals: vec![RealStatus {
                address: "2001:db8::21".into(),
                port: 80,
                weight: 2,
                state: "down".into(),
                health: Some(CheckStatus {
                    kind: "tcp".into(),
                    last_reason: "connect: refused".into(),
                    ..CheckStatus::default()
                }),
                traffic: RealTraffic {
                    new_flows: 1234,
                    ..RealTraffic::default()
                },
                ..RealStatus::default()
            }],
            ..VipStatus::default()
        });
        s.drops.insert("martian".into(), 3);
        s.drops.insert("malformed".into(), 0);
        s.last_reload_error = Some("vip[0].port: bad".into());
        let t = render(&s);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[3],
            "TCP  [2001:db8::100]:80          maglev    dr            0          0          0   web persistent 300s /24"
        );
        assert_eq!(
            lines[4],
            "  -> [2001:db8::21]:80                2 down               0       1234          0          0  tcp: connect: refused"
        );
        assert_eq!(lines[5], "drops: martian=3");
        assert_eq!(lines[6], "last reload failed: vip[0].port: bad");
        assert!(!t.contains("worker 0"), "one worker: no per-worker lines");
    }
}
