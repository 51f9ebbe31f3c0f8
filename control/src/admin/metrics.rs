//! `GET /metrics`: the Prometheus text exposition (format 0.0.4) of the
//! same figures as the status, written from a [`Status`]. Metric names and
//! labels are the API's contract: extend, never rename.

use std::fmt::Write as _;

use super::status::{Conntrack, PortStatus, Status, VipStatus, VipTraffic, WorkerCounters};

/// A worker counter: metric name, help, reader.
type Counter = (&'static str, &'static str, fn(&WorkerCounters) -> u64);

/// The worker counters, in exposition order.
const WORKER_COUNTERS: [Counter; 24] = [
    ("ferrolb_worker_rx_packets_total", "Frames received from data ports.", |c| c.rx),
    ("ferrolb_worker_tx_packets_total", "Frames sent on data ports.", |c| c.tx),
    ("ferrolb_worker_forwarded_total", "Frames forwarded.", |c| c.forwarded),
    ("ferrolb_worker_answered_total", "Frames answered in place.", |c| c.answered),
    ("ferrolb_worker_to_kernel_total", "Frames passed to the kernel.", |c| c.to_kernel),
    ("ferrolb_worker_from_kernel_total", "Frames the kernel sent.", |c| c.from_kernel),
    ("ferrolb_worker_polls_total", "Poll loop passes.", |c| c.polls),
    ("ferrolb_worker_idle_polls_total", "Poll loop passes that found no frame.", |c| c.idle_polls),
    ("ferrolb_worker_busy_cycles_total", "TSC cycles spent in passes that found frames.", |c| c.busy_cycles),
    (
        "ferrolb_worker_handoffs_out_total",
        "Frames handed to the worker that owns their state (NAT replies, hairpin replies, ICMP errors, fragments).",
        |c| c.handoffs_out,
    ),
    ("ferrolb_worker_handoffs_in_total", "Frames other workers handed to this one.", |c| c.handoffs_in),
    (
        "ferrolb_worker_idle_resets_total",
        "tcp_reset_on_idle: RSTs sent to the client and the real of expired flows.",
        |c| c.idle_resets,
    ),
    (
        "ferrolb_worker_idle_resets_unsent_total",
        "tcp_reset_on_idle: RSTs not sent (next hop unknown, no buffer, queue full).",
        |c| c.idle_resets_unsent,
    ),
    ("ferrolb_sync_records_sent_total", "Connection sync: flow records sent to the HA peer.", |c| c.sync_records_sent),
    ("ferrolb_sync_batches_sent_total", "Connection sync: datagrams sent to the HA peer.", |c| c.sync_batches_sent),
    (
        "ferrolb_sync_records_lost_total",
        "Connection sync: records logged but never sent (outbox full, peer unresolved).",
        |c| c.sync_records_lost,
    ),
    (
        "ferrolb_sync_records_received_total",
        "Connection sync: flow records received from the HA peer.",
        |c| c.sync_records_received,
    ),
    (
        "ferrolb_sync_records_applied_total",
        "Connection sync: records installed, updated or removed.",
        |c| c.sync_records_applied,
    ),
    (
        "ferrolb_sync_records_rejected_total",
        "Connection sync: records refused (malformed, mode or real mismatch, no room).",
        |c| c.sync_records_rejected,
    ),
    (
        "ferrolb_sync_records_unknown_service_total",
        "Connection sync: records for services this node does not know (skipped).",
        |c| c.sync_records_unknown_service,
    ),
    (
        "ferrolb_sync_records_fanout_dropped_total",
        "Connection sync: records not passed on to another worker (inbox full).",
        |c| c.sync_records_fanout_dropped,
    ),
    (
        "ferrolb_sync_batches_missed_total",
        "Connection sync: datagrams from the HA peer that never arrived (sequence gaps).",
        |c| c.sync_batches_missed,
    ),
    (
        "ferrolb_sync_datagrams_received_total",
        "Connection sync: datagrams received from the HA peer, hellos included.",
        |c| c.sync_datagrams_received,
    ),
    (
        "ferrolb_sync_config_differs_total",
        "Connection sync: datagrams from the HA peer whose service-set fingerprint differs from ours.",
        |c| c.sync_config_differs,
    ),
];

/// A connection-table figure: metric name, help, reader.
type Table = (&'static str, &'static str, fn(&Conntrack) -> u64);

const CONN_GAUGES: [Table; 3] = [
    (
        "ferrolb_conntrack_capacity",
        "Slots in the connection tables.",
        |c| c.capacity,
    ),
    (
        "ferrolb_conntrack_flows",
        "Flows in the connection tables.",
        |c| c.flows,
    ),
    (
        "ferrolb_conntrack_half_open",
        "Half-open TCP flows (SYN seen, handshake not finished).",
        |c| c.half_open,
    ),
];

const CONN_COUNTERS: [Table; 5] = [
    ("ferrolb_conntrack_inserts_total", "Flows inserted.", |c| {
        c.inserts
    }),
    (
        "ferrolb_conntrack_evictions_half_open_total",
        "Half-open flows evicted to make room for a new flow.",
        |c| c.evictions_half_open,
    ),
    (
        "ferrolb_conntrack_evictions_established_total",
        "Established flows evicted to make room (never while half-open flows exist).",
        |c| c.evictions_established,
    ),
    (
        "ferrolb_conntrack_evictions_other_total",
        "Closing TCP, UDP and ICMP flows evicted to make room.",
        |c| c.evictions_other,
    ),
    (
        "ferrolb_conntrack_insert_failures_total",
        "New flows refused: the table was full and nothing could be evicted.",
        |c| c.insert_failures,
    ),
];

type VipCounter = (&'static str, &'static str, fn(&VipTraffic) -> u64);

const VIP_COUNTERS: [VipCounter; 6] = [
    (
        "ferrolb_vip_packets_in_total",
        "Packets forwarded from clients to reals.",
        |t| t.packets_in,
    ),
    (
        "ferrolb_vip_bytes_in_total",
        "Bytes forwarded from clients to reals.",
        |t| t.bytes_in,
    ),
    (
        "ferrolb_vip_packets_out_total",
        "Packets translated back from reals to clients (NAT).",
        |t| t.packets_out,
    ),
    (
        "ferrolb_vip_bytes_out_total",
        "Bytes translated back from reals to clients (NAT).",
        |t| t.bytes_out,
    ),
    ("ferrolb_vip_new_flows_total", "Flows created.", |t| {
        t.new_flows
    }),
    (
        "ferrolb_vip_rejected_total",
        "New flows refused with a TCP RST or ICMP unreachable (no real up, no fallback).",
        |t| t.rejected,
    ),
];

type RealFigure = (
    &'static str,
    &'static str,
    &'static str,
    fn(&super::status::RealStatus) -> u64,
);

const REAL_FIGURES: [RealFigure; 5] = [
    (
        "ferrolb_real_packets_total",
        "counter",
        "Packets forwarded to the real.",
        |r| r.traffic.packets,
    ),
    (
        "ferrolb_real_bytes_total",
        "counter",
        "Bytes forwarded to the real.",
        |r| r.traffic.bytes,
    ),
    (
        "ferrolb_real_new_flows_total",
        "counter",
        "Flows scheduled to the real.",
        |r| r.traffic.new_flows,
    ),
    (
        "ferrolb_real_active_flows",
        "gauge",
        "Flows to the real in the connection tables.",
        |r| r.traffic.active_flows,
    ),
    (
        "ferrolb_real_weight",
        "gauge",
        "Configured weight of the real.",
        |r| u64::from(r.weight),
    ),
];

type PortCounter = (&'static str, &'static str, fn(&PortStatus) -> u64);

const PORT_COUNTERS: [PortCounter; 3] = [
    (
        "ferrolb_port_rx_missed_total",
        "Frames the device dropped for want of a free descriptor.",
        |p| p.rx_missed,
    ),
    (
        "ferrolb_port_rx_nombuf_total",
        "Frames the device dropped for want of a packet buffer.",
        |p| p.rx_nombuf,
    ),
    (
        "ferrolb_port_rx_errors_total",
        "Receive errors reported by the device.",
        |p| p.rx_errors,
    ),
];

/// A label value, escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn vip_labels(v: &VipStatus) -> String {
    format!(
        "vip=\"{}\",address=\"{}\",protocol=\"{}\",port=\"{}\"",
        esc(&v.name),
        v.address,
        v.protocol,
        v.port
    )
}

/// The exposition text of `s`.
pub fn render(s: &Status) -> String {
    let mut o = String::new();
    for (name, help, get) in VIP_COUNTERS {
        family(&mut o, name, "counter", help);
        for v in &s.vips {
            let _ = writeln!(o, "{name}{{{}}} {}", vip_labels(v), get(&v.traffic));
        }
    }
    for (name, kind, help, get) in REAL_FIGURES {
        family(&mut o, name, kind, help);
        for v in &s.vips {
            for r in &v.reals {
                let _ = writeln!(
                    o,
                    "{name}{{{},real=\"{}\",real_port=\"{}\"}} {}",
                    vip_labels(v),
                    r.address,
                    r.port,
                    get(r)
                );
            }
        }
    }
    family(
        &mut o,
        "ferrolb_real_state",
        "gauge",
        "1 for the real's current state (up, down, drain, disabled).",
    );
    for v in &s.vips {
        for r in &v.reals {
            for st in ["up", "down", "drain", "disabled", "overloaded", "removed"] {
                let _ = writeln!(
                    o,
                    "ferrolb_real_state{{{},real=\"{}\",real_port=\"{}\",state=\"{st}\"}} {}",
                    vip_labels(v),
                    r.address,
                    r.port,
                    u8::from(r.state == st)
                );
            }
        }
    }
    if s.announce.is_some() {
        family(
            &mut o,
            "ferrolb_vip_announced",
            "gauge",
            "1 while the VIP's address is announced ([announce]).",
        );
        for v in &s.vips {
            let on = u8::from(v.announced == Some(true));
            let _ = writeln!(o, "ferrolb_vip_announced{{{}}} {on}", vip_labels(v));
        }
    }
    if let Some(ob) = &s.outbound {
        family(
            &mut o,
            "ferrolb_outbound_flows",
            "gauge",
            "Outbound source-NAT flows held ([[outbound]]).",
        );
        let _ = writeln!(o, "ferrolb_outbound_flows {}", ob.flows);
        for (name, help, v) in [
            (
                "ferrolb_outbound_new_flows_total",
                "Outbound source-NAT flows opened.",
                ob.new_flows,
            ),
            (
                "ferrolb_outbound_packets_out_total",
                "Frames the reals sent out, translated to the outbound address.",
                ob.packets_out,
            ),
            (
                "ferrolb_outbound_bytes_out_total",
                "Bytes of those frames.",
                ob.bytes_out,
            ),
            (
                "ferrolb_outbound_packets_in_total",
                "Answers translated back to the reals.",
                ob.packets_in,
            ),
            (
                "ferrolb_outbound_bytes_in_total",
                "Bytes of those answers.",
                ob.bytes_in,
            ),
        ] {
            family(&mut o, name, "counter", help);
            let _ = writeln!(o, "{name} {v}");
        }
    }
    family(
        &mut o,
        "ferrolb_drops_total",
        "counter",
        "Frames dropped, by reason.",
    );
    for (reason, n) in &s.drops {
        let _ = writeln!(o, "ferrolb_drops_total{{reason=\"{reason}\"}} {n}");
    }
    family(
        &mut o,
        "ferrolb_flows",
        "gauge",
        "Flows in all connection tables.",
    );
    let _ = writeln!(o, "ferrolb_flows {}", s.flows);
    family(
        &mut o,
        "ferrolb_reloads_total",
        "counter",
        "Successful reloads.",
    );
    let _ = writeln!(o, "ferrolb_reloads_total {}", s.reloads);
    family(
        &mut o,
        "ferrolb_config_generation",
        "gauge",
        "Generation of the forwarding snapshot in force.",
    );
    let _ = writeln!(o, "ferrolb_config_generation {}", s.generation);
    family(
        &mut o,
        "ferrolb_config_fingerprint",
        "gauge",
        "1, labelled with the service set's fingerprint (nodes of a fleet must agree).",
    );
    let _ = writeln!(
        o,
        "ferrolb_config_fingerprint{{fingerprint=\"{}\"}} 1",
        esc(&s.fingerprint)
    );
    if let Some(y) = &s.sync {
        family(
            &mut o,
            "ferrolb_peer_config_differs",
            "gauge",
            "1 while the HA peer's service set differs from ours, 0 while it is the same or unknown.",
        );
        let _ = writeln!(
            o,
            "ferrolb_peer_config_differs {}",
            u8::from(y.peer_config == "differs")
        );
    }
    if let Some(h) = &s.ha {
        family(
            &mut o,
            "ferrolb_vrrp_state",
            "gauge",
            "1 for the VRRP instance's current state (initialize, backup, master, fault).",
        );
        for st in ["initialize", "backup", "master", "fault"] {
            let _ = writeln!(
                o,
                "ferrolb_vrrp_state{{vrid=\"{}\",state=\"{st}\"}} {}",
                h.vrid,
                u8::from(h.state == st)
            );
        }
        family(
            &mut o,
            "ferrolb_vrrp_transitions_total",
            "counter",
            "VRRP state transitions, by the state entered.",
        );
        for (to, n) in [
            ("master", h.transitions_to_master),
            ("backup", h.transitions_to_backup),
            ("fault", h.transitions_to_fault),
        ] {
            let _ = writeln!(
                o,
                "ferrolb_vrrp_transitions_total{{vrid=\"{}\",to=\"{to}\"}} {n}",
                h.vrid
            );
        }
        for (name, help, n) in [
            (
                "ferrolb_vrrp_adverts_sent_total",
                "VRRP adverts sent.",
                h.adverts_sent,
            ),
            (
                "ferrolb_vrrp_adverts_received_total",
                "VRRP adverts received (valid or not).",
                h.adverts_received,
            ),
            (
                "ferrolb_vrrp_adverts_invalid_total",
                "VRRP adverts ignored as invalid.",
                h.adverts_invalid,
            ),
        ] {
            family(&mut o, name, "counter", help);
            let _ = writeln!(o, "{name}{{vrid=\"{}\"}} {n}", h.vrid);
        }
    }
    for (name, help, get) in WORKER_COUNTERS {
        family(&mut o, name, "counter", help);
        for w in &s.workers {
            let _ = writeln!(o, "{name}{{worker=\"{}\"}} {}", w.worker, get(&w.counters));
        }
    }
    for (kind, table) in [("gauge", &CONN_GAUGES[..]), ("counter", &CONN_COUNTERS[..])] {
        for (name, help, get) in table {
            family(&mut o, name, kind, help);
            for w in &s.workers {
                let _ = writeln!(o, "{name}{{worker=\"{}\"}} {}", w.worker, get(&w.conntrack));
            }
        }
    }
    family(
        &mut o,
        "ferrolb_mbufs_in_use",
        "gauge",
        "Packet buffers out of the pool (received, queued or in flight).",
    );
    let _ = writeln!(o, "ferrolb_mbufs_in_use {}", s.mbufs.in_use);
    family(
        &mut o,
        "ferrolb_mbufs_capacity",
        "gauge",
        "Packet buffers in the pool.",
    );
    let _ = writeln!(o, "ferrolb_mbufs_capacity {}", s.mbufs.capacity);
    for (name, help, get) in PORT_COUNTERS {
        family(&mut o, name, "counter", help);
        for p in &s.ports {
            let _ = writeln!(o, "{name}{{port=\"{}\"}} {}", esc(&p.name), get(p));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::status::{RealStatus, WorkerStatus};

    fn sample() -> Status {
        let mut s = Status {
            generation: 7,
            reloads: 2,
            flows: 3,
            ..Status::default()
        };
        s.vips.push(VipStatus {
            name: "we\"b".into(),
            address: "192.0.2.100".into(),
            protocol: "tcp".into(),
            port: 80,
            traffic: VipTraffic {
                packets_in: 11,
                new_flows: 4,
                ..VipTraffic::default()
            },
            reals: vec![RealStatus {
                address: "192.0.2.21".into(),
                port: 80,
                weight: 3,
                state: "drain".into(),
                ..RealStatus::default()
            }],
            ..VipStatus::default()
        });
        s.workers.push(WorkerStatus {
            worker: 0,
            counters: WorkerCounters {
                rx: 5,
                handoffs_in: 9,
                ..WorkerCounters::default()
            },
            conntrack: Conntrack {
                capacity: 64,
                ..Conntrack::default()
            },
            ..WorkerStatus::default()
        });
        s.drops.insert("martian".into(), 12);
        s.outbound = Some(crate::admin::status::OutboundStatus {
            flows: 2,
            packets_in: 17,
            ..Default::default()
        });
        s
    }

    #[test]
    fn every_family_has_help_and_type_and_samples_carry_labels() {
        let text = render(&sample());
        for line in [
            "ferrolb_vip_packets_in_total{vip=\"we\\\"b\",address=\"192.0.2.100\",protocol=\"tcp\",port=\"80\"} 11",
            "ferrolb_vip_new_flows_total{vip=\"we\\\"b\",address=\"192.0.2.100\",protocol=\"tcp\",port=\"80\"} 4",
            "ferrolb_real_weight{vip=\"we\\\"b\",address=\"192.0.2.100\",protocol=\"tcp\",port=\"80\",real=\"192.0.2.21\",real_port=\"80\"} 3",
            "ferrolb_real_state{vip=\"we\\\"b\",address=\"192.0.2.100\",protocol=\"tcp\",port=\"80\",real=\"192.0.2.21\",real_port=\"80\",state=\"drain\"} 1",
            "ferrolb_real_state{vip=\"we\\\"b\",address=\"192.0.2.100\",protocol=\"tcp\",port=\"80\",real=\"192.0.2.21\",real_port=\"80\",state=\"up\"} 0",
            "ferrolb_drops_total{reason=\"martian\"} 12",
            "ferrolb_flows 3",
            "ferrolb_reloads_total 2",
            "ferrolb_config_generation 7",
            "ferrolb_worker_rx_packets_total{worker=\"0\"} 5",
            "ferrolb_worker_handoffs_in_total{worker=\"0\"} 9",
            "ferrolb_conntrack_capacity{worker=\"0\"} 64",
            "ferrolb_outbound_flows 2",
            "ferrolb_outbound_packets_in_total 17",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        // Every sample's family is announced once, before it, with a type.
        let mut declared = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_string()), "{name} declared twice");
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{name} sampled before its TYPE");
            }
        }
        assert!(
            !text.contains("ferrolb_vrrp_state"),
            "no [ha]: no VRRP families"
        );
    }
}
