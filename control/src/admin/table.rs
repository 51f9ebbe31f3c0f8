//! `ferrolb status`: an `ipvsadm -L -n`-like table of a [`Status`].

use std::fmt::Write as _;

use super::status::{RealStatus, Status, VipStatus};

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
    o.push_str(&services(s));
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
        for p in s.ports.iter().filter(|p| !p.steering.is_empty()) {
            let _ = writeln!(o, "port {}: steering {}", p.name, p.steering);
        }
    }
    if let Some(ob) = &s.outbound {
        let rules: Vec<String> = ob
            .rules
            .iter()
            .map(|r| {
                format!(
                    "{} {} -> {} ({})",
                    r.name,
                    r.sources.join(","),
                    r.address,
                    r.port_name
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "outbound: {} flow(s), {} opened, {} packet(s) out, {} in, {} refused (no port); {}",
            ob.flows,
            ob.new_flows,
            ob.packets_out,
            ob.packets_in,
            ob.no_port,
            rules.join("; ")
        );
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

/// How a column lines up.
#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

/// Rows of cells under a header, each column as wide as its widest cell:
/// numbers of any width stay under their header, as in `ipvsadm -L -n`.
/// A row's last cell (a name, a reason) is free text after the columns.
struct Grid {
    heads: Vec<(&'static str, Align)>,
    rows: Vec<(Vec<String>, String)>,
}

impl Grid {
    fn new(heads: &[(&'static str, Align)]) -> Grid {
        Grid {
            heads: heads.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>, tail: String) {
        debug_assert_eq!(cells.len(), self.heads.len());
        self.rows.push((cells, tail));
    }

    fn widths(&self) -> Vec<usize> {
        self.heads
            .iter()
            .enumerate()
            .map(|(i, (h, _))| {
                self.rows
                    .iter()
                    .map(|(c, _)| c[i].chars().count())
                    .chain(std::iter::once(h.len()))
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    fn line(&self, widths: &[usize], cells: &[&str], tail: &str) -> String {
        let mut l = String::new();
        for (i, ((_, align), c)) in self.heads.iter().zip(cells).enumerate() {
            if i > 0 {
                l.push(' ');
            }
            let w = widths[i];
            let _ = match align {
                Align::Left => write!(l, "{c:<w$}"),
                Align::Right => write!(l, "{c:>w$}"),
            };
        }
        if !tail.is_empty() {
            l.push_str("  ");
            l.push_str(tail);
        }
        l.trim_end().to_string()
    }

    fn header(&self, widths: &[usize]) -> String {
        let heads: Vec<&str> = self.heads.iter().map(|(h, _)| *h).collect();
        self.line(widths, &heads, "")
    }

    fn body(&self, widths: &[usize], i: usize) -> String {
        let (cells, tail) = &self.rows[i];
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        self.line(widths, &cells, tail)
    }
}

/// One services block: a header for the VIP lines, one for the real
/// lines, then each VIP followed by its reals.
fn interleave(vips: &Grid, reals: &Grid, reals_of: &[usize]) -> String {
    let (vw, rw) = (vips.widths(), reals.widths());
    let mut o = String::new();
    let _ = writeln!(o, "{}", vips.header(&vw));
    let _ = writeln!(o, "{}", reals.header(&rw));
    let mut next = 0;
    for (v, n) in reals_of.iter().enumerate() {
        let _ = writeln!(o, "{}", vips.body(&vw, v));
        for r in next..next + n {
            let _ = writeln!(o, "{}", reals.body(&rw, r));
        }
        next += n;
    }
    o
}

const VIP_HEAD: (&str, Align) = ("Prot LocalAddress:Port", Align::Left);
const REAL_HEAD: (&str, Align) = ("  -> RemoteAddress:Port", Align::Left);

fn vip_key(v: &VipStatus) -> String {
    format!(
        "{:<4} {}",
        v.protocol.to_uppercase(),
        endpoint(&v.address, v.port)
    )
}

fn real_key(r: &RealStatus) -> String {
    format!("  -> {}", endpoint(&r.address, r.port))
}

/// The services and their reals with their counters.
fn services(s: &Status) -> String {
    use Align::{Left, Right};
    let mut vips = Grid::new(&[
        VIP_HEAD,
        ("Scheduler", Left),
        ("Mode", Left),
        ("Flows", Right),
        ("InPkts", Right),
        ("OutPkts", Right),
    ]);
    let mut reals = Grid::new(&[
        REAL_HEAD,
        ("Weight", Right),
        ("State", Left),
        ("ActiveConn", Right),
        ("NewConns", Right),
        ("Packets", Right),
        ("Bytes", Right),
    ]);
    for v in &s.vips {
        let tail = v.name.clone()
            + &v.persistence
                .map(|p| format!(" persistent {}s /{}", p.timeout_s, p.netmask))
                .unwrap_or_default();
        vips.row(
            vec![
                vip_key(v),
                v.scheduler.clone(),
                v.mode.clone(),
                v.active_flows.to_string(),
                v.traffic.packets_in.to_string(),
                v.traffic.packets_out.to_string(),
            ],
            tail,
        );
        for r in &v.reals {
            let health = r
                .health
                .as_ref()
                .filter(|h| h.kind != "none")
                .map(|h| {
                    if h.last_reason.is_empty() {
                        h.kind.clone()
                    } else {
                        format!("{}: {}", h.kind, h.last_reason)
                    }
                })
                .unwrap_or_default();
            reals.row(
                vec![
                    real_key(r),
                    r.weight.to_string(),
                    r.state.clone(),
                    r.traffic.active_flows.to_string(),
                    r.traffic.new_flows.to_string(),
                    r.traffic.packets.to_string(),
                    r.traffic.bytes.to_string(),
                ],
                health,
            );
        }
    }
    let reals_of: Vec<usize> = s.vips.iter().map(|v| v.reals.len()).collect();
    interleave(&vips, &reals, &reals_of)
}

/// Per second, from two counters `secs` apart (0 if the counter went back:
/// a restart between the samples).
fn per_s(before: u64, after: u64, secs: f64) -> String {
    format!("{:.0}", after.saturating_sub(before) as f64 / secs)
}

/// `ferrolb status --rate`: connections, packets and bytes per second of
/// each service and real between two statuses taken `secs` apart, as
/// `ipvsadm -L -n --rate`. Services and reals are matched by name and
/// address, so a reload between the samples does not mix them up; one that
/// is new in the second sample counts from zero.
pub fn render_rates(before: &Status, after: &Status, secs: f64) -> String {
    use Align::Right;
    let secs = secs.max(1e-3);
    let mut vips = Grid::new(&[
        VIP_HEAD,
        ("CPS", Right),
        ("InPPS", Right),
        ("OutPPS", Right),
        ("InBPS", Right),
        ("OutBPS", Right),
    ]);
    let mut reals = Grid::new(&[REAL_HEAD, ("CPS", Right), ("PPS", Right), ("BPS", Right)]);
    for v in &after.vips {
        let b = before
            .vips
            .iter()
            .find(|x| x.name == v.name)
            .map(|x| x.traffic)
            .unwrap_or_default();
        let t = v.traffic;
        vips.row(
            vec![
                vip_key(v),
                per_s(b.new_flows, t.new_flows, secs),
                per_s(b.packets_in, t.packets_in, secs),
                per_s(b.packets_out, t.packets_out, secs),
                per_s(b.bytes_in, t.bytes_in, secs),
                per_s(b.bytes_out, t.bytes_out, secs),
            ],
            v.name.clone(),
        );
        let old = before.vips.iter().find(|x| x.name == v.name);
        for r in &v.reals {
            let b = old
                .and_then(|o| {
                    o.reals
                        .iter()
                        .find(|x| x.address == r.address && x.port == r.port)
                })
                .map(|x| x.traffic)
                .unwrap_or_default();
            let t = r.traffic;
            reals.row(
                vec![
                    real_key(r),
                    per_s(b.new_flows, t.new_flows, secs),
                    per_s(b.packets, t.packets, secs),
                    per_s(b.bytes, t.bytes, secs),
                ],
                String::new(),
            );
        }
    }
    let reals_of: Vec<usize> = after.vips.iter().map(|v| v.reals.len()).collect();
    let mut o = format!(
        "ferrolb: rates over {secs:.1} s, generation {}\n",
        after.generation
    );
    o.push_str(&interleave(&vips, &reals, &reals_of));
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
            lines[1],
            "Prot LocalAddress:Port  Scheduler Mode Flows InPkts OutPkts"
        );
        assert_eq!(
            lines[2],
            "  -> RemoteAddress:Port Weight State ActiveConn NewConns Packets Bytes"
        );
        assert_eq!(
            lines[3],
            "TCP  [2001:db8::100]:80 maglev    dr       0      0       0  web persistent 300s /24"
        );
        assert_eq!(
            lines[4],
            "  -> [2001:db8::21]:80       2 down           0     1234       0     0  tcp: connect: refused"
        );
        assert_eq!(lines[5], "drops: martian=3");
        assert_eq!(lines[6], "last reload failed: vip[0].port: bad");
        assert!(!t.contains("worker 0"), "one worker: no per-worker lines");
    }

    fn vip(name: &str, reals: &[(&str, u64)]) -> VipStatus {
        VipStatus {
            name: name.into(),
            address: "192.0.2.100".into(),
            protocol: "tcp".into(),
            port: 80,
            mode: "nat".into(),
            scheduler: "wrr".into(),
            reals: reals
                .iter()
                .map(|(a, n)| RealStatus {
                    address: (*a).into(),
                    port: 8080,
                    weight: 1,
                    state: "up".into(),
                    traffic: RealTraffic {
                        new_flows: *n,
                        packets: *n * 10,
                        bytes: *n * 1000,
                        active_flows: *n,
                    },
                    ..RealStatus::default()
                })
                .collect(),
            ..VipStatus::default()
        }
    }

    /// The column (in characters) where each whitespace-separated field of
    /// `line` ends.
    fn field_ends(line: &str) -> Vec<usize> {
        let b: Vec<char> = line.chars().collect();
        (0..b.len())
            .filter(|&i| b[i] != ' ' && (i + 1 == b.len() || b[i + 1] == ' '))
            .map(|i| i + 1)
            .collect()
    }

    #[test]
    fn numbers_of_any_width_end_under_their_header() {
        let mut s = Status::default();
        s.vips.push(vip("a", &[("198.51.100.1", 7)]));
        s.vips.push(vip("b", &[("198.51.100.2", u64::MAX / 1000)]));
        s.vips[1].traffic.packets_in = u64::MAX;
        s.vips[1].active_flows = 123_456_789_012;
        let t = render(&s);
        let lines: Vec<&str> = t.lines().collect();
        let (vh, rh) = (field_ends(lines[1]), field_ends(lines[2]));
        // The numeric columns: the last three of a VIP line, the last four
        // of a real line; every row's numbers end where their header does.
        for l in [lines[3], lines[5]] {
            let e = field_ends(l);
            let e = &e[..e.len() - 1]; // the VIP's name after the columns
            assert_eq!(e[e.len() - 3..], vh[vh.len() - 3..], "{t}");
        }
        for l in [lines[4], lines[6]] {
            let e = field_ends(l);
            assert_eq!(e[e.len() - 4..], rh[rh.len() - 4..], "{t}");
        }
        assert!(lines[5].contains(&u64::MAX.to_string()), "{t}");
    }

    #[test]
    fn rates_are_the_difference_over_the_interval_matched_by_name() {
        let mut before = Status::default();
        before
            .vips
            .push(vip("a", &[("198.51.100.1", 100), ("198.51.100.2", 50)]));
        before.vips[0].traffic.new_flows = 150;
        before.vips[0].traffic.packets_in = 1000;
        let mut after = Status::default();
        // A reload between the samples reordered the reals and added a VIP.
        after.vips.push(vip("new", &[("198.51.100.9", 40)]));
        after
            .vips
            .push(vip("a", &[("198.51.100.2", 70), ("198.51.100.1", 300)]));
        after.vips[1].traffic.new_flows = 550;
        after.vips[1].traffic.packets_in = 900; // went back: 0, not a wrap
        let t = render_rates(&before, &after, 2.0);
        let rows: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows[1][..7],
            [
                "Prot",
                "LocalAddress:Port",
                "CPS",
                "InPPS",
                "OutPPS",
                "InBPS",
                "OutBPS"
            ]
        );
        assert_eq!(
            rows[3],
            ["TCP", "192.0.2.100:80", "0", "0", "0", "0", "0", "new"]
        );
        assert_eq!(rows[4], ["->", "198.51.100.9:8080", "20", "200", "20000"]);
        assert_eq!(
            rows[5],
            ["TCP", "192.0.2.100:80", "200", "0", "0", "0", "0", "a"]
        );
        assert_eq!(rows[6], ["->", "198.51.100.2:8080", "10", "100", "10000"]);
        assert_eq!(
            rows[7],
            ["->", "198.51.100.1:8080", "100", "1000", "100000"]
        );
    }
}
