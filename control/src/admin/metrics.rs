//! `GET /metrics`: the OpenMetrics text exposition of the same figures as
//! the status, built from a [`Status`] into a `prometheus-client` registry
//! per scrape and written by its encoder (which Prometheus reads as it
//! reads its own text format). Metric names and labels are the API's
//! contract: extend, never rename.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::status::{Conntrack, PortStatus, Status, VipStatus, VipTraffic, WorkerCounters};

/// A worker counter: metric name, help, reader.
type WorkerCounter = (&'static str, &'static str, fn(&WorkerCounters) -> u64);

/// The worker counters, in exposition order.
const WORKER_COUNTERS: [WorkerCounter; 24] = [
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

/// Label pairs of one sample.
type Labels = Vec<(String, String)>;

/// Label pairs, their values escaped for the text format (backslash,
/// double quote, newline): the encoder writes values as it gets them.
fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), esc(v)))
        .collect()
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The encoder ends every HELP with a full stop of its own.
fn help(h: &str) -> &str {
    h.strip_suffix('.').unwrap_or(h)
}

fn vip_labels(v: &VipStatus) -> Labels {
    labels(&[
        ("vip", &v.name),
        ("address", &v.address),
        ("protocol", &v.protocol),
        ("port", &v.port.to_string()),
    ])
}

fn with(mut l: Labels, more: &[(&str, &str)]) -> Labels {
    l.extend(labels(more));
    l
}

/// The registry of one scrape: every family filled from a [`Status`].
struct Scrape(Registry);

impl Scrape {
    /// A counter family `name` (which ends in `_total`: the encoder adds
    /// the suffix to the family's name) with its samples.
    fn counter(
        &mut self,
        name: &str,
        text: &str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        let base = name.strip_suffix("_total").unwrap_or(name);
        let samples: Vec<(Labels, u64)> = samples.into_iter().collect();
        if let [(l, v)] = samples.as_slice() {
            if l.is_empty() {
                let c = Counter::<u64>::default();
                c.inc_by(*v);
                return self.0.register(base, help(text), c);
            }
        }
        let fam = Family::<Labels, Counter>::default();
        for (l, v) in samples {
            fam.get_or_create(&l).inc_by(v);
        }
        self.0.register(base, help(text), fam);
    }

    /// A gauge family with its samples (one without labels: a plain gauge).
    fn gauge(&mut self, name: &str, text: &str, samples: impl IntoIterator<Item = (Labels, u64)>) {
        let value = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let samples: Vec<(Labels, u64)> = samples.into_iter().collect();
        if let [(l, v)] = samples.as_slice() {
            if l.is_empty() {
                let g = Gauge::<i64>::default();
                g.set(value(*v));
                return self.0.register(name, help(text), g);
            }
        }
        let fam = Family::<Labels, Gauge>::default();
        for (l, v) in samples {
            fam.get_or_create(&l).set(value(v));
        }
        self.0.register(name, help(text), fam);
    }

    fn figure(
        &mut self,
        kind: &str,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        if kind == "counter" {
            self.counter(name, help, samples)
        } else {
            self.gauge(name, help, samples)
        }
    }
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition text of `s` (OpenMetrics, written by `prometheus-client`).
pub fn render(s: &Status) -> String {
    let mut o = Scrape(Registry::default());
    for (name, help, get) in VIP_COUNTERS {
        o.counter(
            name,
            help,
            s.vips.iter().map(|v| (vip_labels(v), get(&v.traffic))),
        );
    }
    let real_labels = |v: &VipStatus, r: &super::status::RealStatus| {
        with(
            vip_labels(v),
            &[("real", &r.address), ("real_port", &r.port.to_string())],
        )
    };
    for (name, kind, help, get) in REAL_FIGURES {
        o.figure(
            kind,
            name,
            help,
            s.vips
                .iter()
                .flat_map(|v| v.reals.iter().map(move |r| (v, r)))
                .map(|(v, r)| (real_labels(v, r), get(r))),
        );
    }
    o.gauge(
        "ferrolb_real_state",
        "1 for the real's current state (up, down, drain, disabled, overloaded, removed).",
        s.vips
            .iter()
            .flat_map(|v| v.reals.iter().map(move |r| (v, r)))
            .flat_map(|(v, r)| {
                ["up", "down", "drain", "disabled", "overloaded", "removed"]
                    .into_iter()
                    .map(move |st| {
                        (
                            with(real_labels(v, r), &[("state", st)]),
                            u64::from(r.state == st),
                        )
                    })
            }),
    );
    if s.announce.is_some() {
        o.gauge(
            "ferrolb_vip_announced",
            "1 while the VIP's address is announced ([announce]).",
            s.vips
                .iter()
                .map(|v| (vip_labels(v), u64::from(v.announced == Some(true)))),
        );
    }
    if let Some(ob) = &s.outbound {
        o.gauge(
            "ferrolb_outbound_flows",
            "Outbound source-NAT flows held ([[outbound]]).",
            [(Labels::new(), ob.flows)],
        );
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
            o.counter(name, help, [(Labels::new(), v)]);
        }
    }
    o.counter(
        "ferrolb_drops_total",
        "Frames dropped, by reason.",
        s.drops
            .iter()
            .map(|(reason, n)| (labels(&[("reason", reason)]), *n)),
    );
    o.gauge(
        "ferrolb_flows",
        "Flows in all connection tables.",
        [(Labels::new(), s.flows)],
    );
    o.counter(
        "ferrolb_reloads_total",
        "Successful reloads.",
        [(Labels::new(), s.reloads)],
    );
    o.gauge(
        "ferrolb_config_generation",
        "Generation of the forwarding snapshot in force.",
        [(Labels::new(), s.generation)],
    );
    o.gauge(
        "ferrolb_config_fingerprint",
        "1, labelled with the service set's fingerprint (nodes of a fleet must agree).",
        [(labels(&[("fingerprint", &s.fingerprint)]), 1)],
    );
    if let Some(y) = &s.sync {
        o.gauge(
            "ferrolb_peer_config_differs",
            "1 while the HA peer's service set differs from ours, 0 while it is the same or unknown.",
            [(Labels::new(), u64::from(y.peer_config == "differs"))],
        );
    }
    if let Some(h) = &s.ha {
        let vrid = h.vrid.to_string();
        o.gauge(
            "ferrolb_vrrp_state",
            "1 for the VRRP instance's current state (initialize, backup, master, fault).",
            ["initialize", "backup", "master", "fault"]
                .into_iter()
                .map(|st| {
                    (
                        labels(&[("vrid", &vrid), ("state", st)]),
                        u64::from(h.state == st),
                    )
                }),
        );
        o.counter(
            "ferrolb_vrrp_transitions_total",
            "VRRP state transitions, by the state entered.",
            [
                ("master", h.transitions_to_master),
                ("backup", h.transitions_to_backup),
                ("fault", h.transitions_to_fault),
            ]
            .into_iter()
            .map(|(to, n)| (labels(&[("vrid", &vrid), ("to", to)]), n)),
        );
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
            o.counter(name, help, [(labels(&[("vrid", &vrid)]), n)]);
        }
    }
    let worker = |w: &super::status::WorkerStatus| labels(&[("worker", &w.worker.to_string())]);
    for (name, help, get) in WORKER_COUNTERS {
        o.counter(
            name,
            help,
            s.workers.iter().map(|w| (worker(w), get(&w.counters))),
        );
    }
    for (kind, table) in [("gauge", &CONN_GAUGES[..]), ("counter", &CONN_COUNTERS[..])] {
        for (name, help, get) in table {
            o.figure(
                kind,
                name,
                help,
                s.workers.iter().map(|w| (worker(w), get(&w.conntrack))),
            );
        }
    }
    o.gauge(
        "ferrolb_mbufs_in_use",
        "Packet buffers out of the pool (received, queued or in flight).",
        [(Labels::new(), u64::from(s.mbufs.in_use))],
    );
    o.gauge(
        "ferrolb_mbufs_capacity",
        "Packet buffers in the pool.",
        [(Labels::new(), u64::from(s.mbufs.capacity))],
    );
    for (name, help, get) in PORT_COUNTERS {
        o.counter(
            name,
            help,
            s.ports
                .iter()
                .map(|p| (labels(&[("port", &p.name)]), get(p))),
        );
    }
    o.gauge(
        "ferrolb_port_steering_nic",
        "1 where the port's NIC hashes one side of the frames so that they land on the worker that owns them; 0 where such frames are handed over in software.",
        s.ports.iter().map(|p| {
            let nic = p.steering.starts_with("nic");
            (labels(&[("port", &p.name)]), u64::from(nic))
        }),
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &o.0);
    text
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
        // Every sample's family is announced once, before it, with a type
        // (OpenMetrics: a counter family's samples add `_total`); the text
        // ends with `# EOF`.
        let mut declared = std::collections::HashMap::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let mut w = rest.split(' ');
                let (name, kind) = (w.next().unwrap(), w.next().unwrap());
                assert!(
                    declared
                        .insert(name.to_string(), kind.to_string())
                        .is_none(),
                    "{name} declared twice"
                );
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                let family = match name.strip_suffix("_total") {
                    Some(base) if declared.get(base).is_some_and(|k| k == "counter") => base,
                    _ => name,
                };
                assert!(
                    declared.contains_key(family),
                    "{name} sampled before its TYPE"
                );
            }
        }
        assert_eq!(text.lines().last(), Some("# EOF"));
        assert!(!text.contains(".."), "doubled full stops in HELP:\n{text}");
        assert!(
            !text.contains("ferrolb_vrrp_state"),
            "no [ha]: no VRRP families"
        );
    }
}
