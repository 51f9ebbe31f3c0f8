//! Writes the checked-in seed corpus, `fuzz/corpus/<target>/<name>`.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus`
//!
//! Frames come from `forwarder::packet::builder`, VRRP adverts from the
//! codec, configurations from the TOML examples in the repository (README,
//! tests). Pipeline seeds are runs of frames against the fuzz target's own
//! balancer; where a later frame depends on what the balancer chose (the
//! real of a NAT flow, a source-NAT port), the generator runs the pipeline
//! to find out.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use control::vrrp::packet::{encode, Advert};
use control::vrrp::{MCAST_V4, MCAST_V6};
use ferrolb_fuzz::*;
use forwarder::buffer::{PacketBuf, TestBuffer};
use forwarder::packet::builder::{self, FrameSpec};
use forwarder::packet::icmpv6::NaFlags;
use forwarder::packet::{icmp, ip_proto, MacAddr, TcpFlags};
use forwarder::pipeline::{Ctx, NeighRequests, Outcome, Tables};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("corpus");
    let repo = root.parent().expect("fuzz/ has a parent").to_path_buf();
    for t in ["frame", "pipeline", "vrrp", "config"] {
        let d = corpus.join(t);
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("create corpus dir");
    }
    let frames = frames();
    for (name, f) in &frames {
        write(&corpus.join("frame"), name, f);
    }
    for (name, p) in pipeline_runs() {
        write(&corpus.join("pipeline"), &name, &p);
    }
    for (name, m) in vrrp() {
        write(&corpus.join("vrrp"), &name, &m);
    }
    for (name, c) in configs(&repo) {
        write(&corpus.join("config"), &name, c.as_bytes());
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn spec4(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: TcpFlags,
) -> FrameSpec<Ipv4Addr> {
    FrameSpec {
        src_mac: GW_MAC,
        dst_mac: WAN_MAC,
        src,
        dst,
        src_port: sport,
        dst_port: dport,
        tcp_flags: flags,
        ..FrameSpec::default()
    }
}

fn spec6(
    src: Ipv6Addr,
    sport: u16,
    dst: Ipv6Addr,
    dport: u16,
    flags: TcpFlags,
) -> FrameSpec<Ipv6Addr> {
    FrameSpec {
        src_mac: GW_MAC,
        dst_mac: WAN_MAC,
        src,
        dst,
        src_port: sport,
        dst_port: dport,
        tcp_flags: flags,
        ..FrameSpec::default()
    }
}

/// Inserts IPv6 extension headers (Hop-by-Hop, Destination Options, each
/// 8 bytes of padding) between the fixed header and the upper layer.
fn with_ext_headers(frame: &[u8]) -> Vec<u8> {
    let upper = frame[14 + 6];
    let plen = u16::from_be_bytes([frame[18], frame[19]]) + 16;
    let mut f = frame[..54].to_vec();
    f[20] = ip_proto::HOPOPTS;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[ip_proto::DSTOPTS, 0, 1, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&[upper, 0, 1, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&frame[54..]);
    f
}

/// Adds 802.1ad + 802.1Q tags.
fn qinq(frame: &[u8]) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x64]);
    f.extend_from_slice(&frame[12..]);
    f
}

/// The IPv4 packet of a frame, quoted whole (ICMP errors).
fn ip_of(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

fn frames() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = Vec::new();
    let syn4 = builder::tcp4(&spec4(CLIENT4, 40000, VIP4, 80, TcpFlags::SYN));
    v.push(("tcp4_syn_vip".into(), syn4.clone()));
    v.push((
        "tcp4_ack_data".into(),
        builder::tcp4(&FrameSpec {
            payload: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            ..spec4(CLIENT4, 40000, VIP4, 80, TcpFlags::ACK | TcpFlags::PSH)
        }),
    ));
    v.push((
        "udp4_dns".into(),
        builder::udp4(&FrameSpec {
            payload: vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            ..spec4(CLIENT4, 5353, VIP4, 53, TcpFlags::NONE)
        }),
    ));
    v.push((
        "icmp4_echo".into(),
        builder::icmp4_echo(
            &FrameSpec {
                payload: b"ping".to_vec(),
                ..spec4(CLIENT4, 0, VIP4, 0, TcpFlags::NONE)
            },
            0x1234,
            1,
        ),
    ));
    // A router's "fragmentation needed" about a reply the VIP sent.
    let reply = builder::tcp4(&spec4(VIP4, 443, CLIENT4, 40000, TcpFlags::ACK));
    v.push((
        "icmp4_frag_needed_quote".into(),
        builder::icmp4_error(
            &spec4(Ipv4Addr::new(198, 51, 100, 254), 0, VIP4, 0, TcpFlags::NONE),
            icmp::DEST_UNREACHABLE,
            icmp::CODE_FRAG_NEEDED,
            1400,
            &ip_of(&reply)[..28],
        ),
    ));
    v.push((
        "tcp4_vlan".into(),
        builder::tcp4(&FrameSpec {
            vlan: Some(100),
            ..spec4(CLIENT4, 40001, VIP4, 80, TcpFlags::SYN)
        }),
    ));
    v.push(("tcp4_qinq".into(), qinq(&syn4)));
    let big = builder::udp4(&FrameSpec {
        payload: (0..1200u32).map(|i| i as u8).collect(),
        ident: 0x4242,
        ..spec4(CLIENT4, 5353, VIP4, 53, TcpFlags::NONE)
    });
    for (i, f) in builder::ipv4_fragments(&big, 576)
        .expect("fragments")
        .into_iter()
        .enumerate()
        .take(2)
    {
        v.push((format!("udp4_fragment{i}"), f));
    }
    v.push((
        "arp_request_vip".into(),
        builder::arp_request(&FrameSpec {
            dst_mac: MacAddr::BROADCAST,
            ..spec4(GW4, 0, VIP4, 0, TcpFlags::NONE)
        }),
    ));
    v.push((
        "arp_reply".into(),
        builder::arp_reply(&spec4(GW4, 0, WAN4, 0, TcpFlags::NONE)),
    ));

    let syn6 = builder::tcp6(&spec6(CLIENT6, 40000, VIP6, 80, TcpFlags::SYN));
    v.push(("tcp6_syn_vip".into(), syn6.clone()));
    v.push(("tcp6_ext_headers".into(), with_ext_headers(&syn6)));
    v.push((
        "udp6".into(),
        builder::udp6(&FrameSpec {
            payload: b"hello".to_vec(),
            ..spec6(CLIENT6, 5353, VIP6, 4789, TcpFlags::NONE)
        }),
    ));
    v.push((
        "icmp6_echo".into(),
        builder::icmp6_echo(&spec6(CLIENT6, 0, VIP6, 0, TcpFlags::NONE), 7, 1),
    ));
    let reply6 = builder::tcp6(&spec6(VIP6, 443, CLIENT6, 40000, TcpFlags::ACK));
    v.push((
        "icmp6_too_big_quote".into(),
        builder::icmp6_error(
            &spec6(
                "2001:db8:ff::1".parse().unwrap(),
                0,
                VIP6,
                0,
                TcpFlags::NONE,
            ),
            2,
            0,
            1280,
            &reply6[14..],
        ),
    ));
    let big6 = builder::udp6(&FrameSpec {
        payload: (0..1400u32).map(|i| i as u8).collect(),
        ..spec6(CLIENT6, 5353, VIP6, 4789, TcpFlags::NONE)
    });
    for (i, f) in builder::ipv6_fragments(&big6, 1280, 0x77)
        .expect("fragments")
        .into_iter()
        .enumerate()
    {
        v.push((format!("udp6_fragment{i}"), f));
    }
    v.push((
        "ns_vip6".into(),
        builder::neighbour_solicitation(&spec6(GW6, 0, VIP6, 0, TcpFlags::NONE)),
    ));
    v.push((
        "na".into(),
        builder::neighbour_advertisement(
            &spec6(GW6, 0, WAN6, 0, TcpFlags::NONE),
            NaFlags::SOLICITED,
        ),
    ));
    v
}

/// A pipeline run being recorded, with the balancer to ask.
struct Run {
    bytes: Vec<u8>,
    tables: Tables,
    neigh: forwarder::neigh::NeighTable,
    reqs: NeighRequests,
    now: u64,
}

impl Run {
    fn new() -> Run {
        Run {
            bytes: Vec::new(),
            tables: Tables::new(CONN_CAPACITY, &snapshots()[0]),
            neigh: neigh(),
            reqs: NeighRequests::default(),
            now: 1000,
        }
    }

    /// Records a frame (after `ctl`'s clock advance) and returns what the
    /// balancer made of it.
    fn frame(&mut self, ctl: u8, port: u16, frame: &[u8]) -> (Outcome, Vec<u8>) {
        encode_frame(&mut self.bytes, ctl, port, frame);
        let rec = records(&self.bytes[self.bytes.len() - 3 - frame.len()..])
            .next()
            .expect("one record");
        let Record::Frame { advance_ms, .. } = rec else {
            unreachable!("a frame record")
        };
        self.now += advance_ms;
        let mut b = TestBuffer::new(frame);
        let mut ctx = Ctx {
            snap: &snapshots()[0],
            neigh: &self.neigh,
            now_ms: self.now,
            requests: &mut self.reqs,
            hops: 0,
        };
        let o = self.tables.handle(&mut b, port, &mut ctx);
        if std::env::var_os("GEN_VERBOSE").is_some() {
            eprintln!(
                "port {port} len {} -> {o:?} (flows {})",
                frame.len(),
                self.tables.conn.len()
            );
        }
        (o, b.data().to_vec())
    }
}

/// Destination address and port of a forwarded IPv4 TCP/UDP frame.
fn dst4(out: &[u8]) -> (Ipv4Addr, u16) {
    let ip = &out[14..];
    let hl = usize::from(ip[0] & 0x0f) * 4;
    (
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        u16::from_be_bytes([ip[hl + 2], ip[hl + 3]]),
    )
}

fn src4(out: &[u8]) -> (Ipv4Addr, u16) {
    let ip = &out[14..];
    let hl = usize::from(ip[0] & 0x0f) * 4;
    (
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        u16::from_be_bytes([ip[hl], ip[hl + 1]]),
    )
}

fn dst6(out: &[u8]) -> (Ipv6Addr, u16) {
    let ip = &out[14..];
    let a: [u8; 16] = ip[24..40].try_into().unwrap();
    (Ipv6Addr::from(a), u16::from_be_bytes([ip[42], ip[43]]))
}

/// Seconds (ctl) of clock advance.
const SEC: u8 = 0x80;
/// Hours.
const HOUR: u8 = 0xc0;

fn pipeline_runs() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let lan = |src_mac: MacAddr| FrameSpec::<Ipv4Addr> {
        src_mac,
        dst_mac: LAN_MAC,
        ..FrameSpec::default()
    };

    // Every IPv4 service: a SYN, an ACK with data, a FIN.
    for (name, dport) in [("dr80", 80u16), ("nat443", 443), ("tun8080", 8080)] {
        let mut r = Run::new();
        for (ctl, flags) in [
            (0, TcpFlags::SYN),
            (1 | 0x40, TcpFlags::ACK),
            (SEC | 2, TcpFlags::FIN | TcpFlags::ACK),
        ] {
            let f = builder::tcp4(&FrameSpec {
                payload: b"data".to_vec(),
                ..spec4(CLIENT4, 40000, VIP4, dport, flags)
            });
            r.frame(ctl, 0, &f);
        }
        out.push((format!("tcp4_{name}"), r.bytes));
    }

    // NAT: the SYN, the real's SYN-ACK (to whichever real was picked),
    // the client's ACK, an ICMP error about the flow, then an hour later.
    {
        let mut r = Run::new();
        let (_, o) = r.frame(
            0,
            0,
            &builder::tcp4(&spec4(CLIENT4, 40000, VIP4, 443, TcpFlags::SYN)),
        );
        let (real, rport) = dst4(&o);
        let synack = builder::tcp4(&FrameSpec {
            src: real,
            src_port: rport,
            dst: CLIENT4,
            dst_port: 40000,
            tcp_flags: TcpFlags::SYN | TcpFlags::ACK,
            ..lan(real_mac(real.octets()[3] - 20))
        });
        r.frame(0x41, 1, &synack);
        r.frame(
            0x41,
            0,
            &builder::tcp4(&spec4(CLIENT4, 40000, VIP4, 443, TcpFlags::ACK)),
        );
        let reply = builder::tcp4(&spec4(VIP4, 443, CLIENT4, 40000, TcpFlags::ACK));
        r.frame(
            0x41,
            0,
            &builder::icmp4_error(
                &spec4(Ipv4Addr::new(198, 51, 100, 254), 0, VIP4, 0, TcpFlags::NONE),
                icmp::DEST_UNREACHABLE,
                icmp::CODE_FRAG_NEEDED,
                1400,
                &ip_of(&reply)[..28],
            ),
        );
        // An ICMP error from the real's side about the translated flow.
        let to_real = builder::tcp4(&spec4(CLIENT4, 40000, real, rport, TcpFlags::ACK));
        r.frame(
            0x41,
            1,
            &builder::icmp4_error(
                &FrameSpec {
                    src: real,
                    dst: CLIENT4,
                    ..lan(real_mac(real.octets()[3] - 20))
                },
                icmp::DEST_UNREACHABLE,
                icmp::CODE_PORT_UNREACHABLE,
                0,
                &ip_of(&to_real)[..28],
            ),
        );
        r.frame(
            HOUR | 1,
            0,
            &builder::tcp4(&spec4(CLIENT4, 40000, VIP4, 443, TcpFlags::ACK)),
        );
        out.push(("tcp4_nat_flow_reply_icmp".into(), r.bytes));
    }

    // UDP NAT with persistence, a reply, fragments, a swap to the
    // degraded snapshot and more traffic.
    {
        let mut r = Run::new();
        let q = builder::udp4(&FrameSpec {
            payload: b"query".to_vec(),
            ..spec4(CLIENT4, 5353, VIP4, 53, TcpFlags::NONE)
        });
        let (_, o) = r.frame(0, 0, &q);
        let (real, rport) = dst4(&o);
        r.frame(
            0x41,
            1,
            &builder::udp4(&FrameSpec {
                src: real,
                src_port: rport,
                dst: CLIENT4,
                dst_port: 5353,
                payload: b"answer".to_vec(),
                ..lan(real_mac(real.octets()[3] - 20))
            }),
        );
        let big = builder::udp4(&FrameSpec {
            payload: (0..1200u32).map(|i| i as u8).collect(),
            ident: 0x4242,
            ..spec4(CLIENT4, 5354, VIP4, 53, TcpFlags::NONE)
        });
        for f in builder::ipv4_fragments(&big, 576).expect("fragments") {
            r.frame(0x41, 0, &f);
        }
        encode_swap(&mut r.bytes);
        r.frame(SEC | 10, 0, &q);
        r.frame(
            0x41,
            0,
            &builder::tcp4(&spec4(CLIENT4, 40000, VIP4, 443, TcpFlags::SYN)),
        );
        out.push(("udp4_nat_persist_frag_swap".into(), r.bytes));
    }

    // Hairpin: a real connects to the NAT VIP; its reply comes back to the
    // lan address and source-NAT port.
    {
        let mut r = Run::new();
        let (_, o) = r.frame(
            0,
            1,
            &builder::tcp4(&FrameSpec {
                src: real4(1),
                src_port: 33000,
                dst: VIP4,
                dst_port: 443,
                tcp_flags: TcpFlags::SYN,
                ..lan(real_mac(1))
            }),
        );
        let (real, rport) = dst4(&o);
        let (snat_src, snat_port) = src4(&o);
        r.frame(
            0x41,
            1,
            &builder::tcp4(&FrameSpec {
                src: real,
                src_port: rport,
                dst: snat_src,
                dst_port: snat_port,
                tcp_flags: TcpFlags::SYN | TcpFlags::ACK,
                ..lan(real_mac(real.octets()[3] - 20))
            }),
        );
        out.push(("tcp4_hairpin_snat".into(), r.bytes));
    }

    // TUN with DF, too big to tunnel: answered with frag-needed.
    {
        let mut r = Run::new();
        r.frame(
            0,
            0,
            &builder::tcp4(&FrameSpec {
                dont_frag: true,
                payload: vec![0x55; 1460],
                ..spec4(CLIENT4, 40000, VIP4, 9000, TcpFlags::ACK)
            }),
        );
        out.push(("tcp4_tun_too_big".into(), r.bytes));
    }

    // Local: ARP for the VIP and the lan address, ping to the VIP, SSH to
    // our own address, a VRRP advert, an unknown protocol to the VIP.
    {
        let mut r = Run::new();
        r.frame(
            0,
            0,
            &builder::arp_request(&FrameSpec {
                dst_mac: MacAddr::BROADCAST,
                ..spec4(GW4, 0, VIP4, 0, TcpFlags::NONE)
            }),
        );
        r.frame(
            0,
            1,
            &builder::arp_request(&FrameSpec {
                src: real4(2),
                dst: LAN4,
                dst_mac: MacAddr::BROADCAST,
                ..lan(real_mac(2))
            }),
        );
        r.frame(
            0,
            0,
            &builder::icmp4_echo(&spec4(CLIENT4, 0, VIP4, 0, TcpFlags::NONE), 1, 1),
        );
        r.frame(
            0,
            0,
            &builder::tcp4(&spec4(CLIENT4, 40000, WAN4, 22, TcpFlags::SYN)),
        );
        let mut vrrp = builder::udp4(&spec4(
            Ipv4Addr::new(192, 0, 2, 3),
            0,
            MCAST_V4,
            0,
            TcpFlags::NONE,
        ));
        vrrp[14 + 9] = 112;
        r.frame(0, 0, &vrrp);
        let mut gre = builder::udp4(&spec4(CLIENT4, 0, VIP4, 0, TcpFlags::NONE));
        gre[14 + 9] = ip_proto::GRE;
        r.frame(0, 0, &gre);
        out.push(("local4".into(), r.bytes));
    }

    // IPv6: DR, NAT (and the real's reply), UDP NAT, TUN; extension
    // headers; fragments; neighbour solicitation for the VIP; ping.
    {
        let mut r = Run::new();
        r.frame(
            0,
            0,
            &builder::tcp6(&spec6(CLIENT6, 40000, VIP6, 80, TcpFlags::SYN)),
        );
        r.frame(
            0,
            0,
            &with_ext_headers(&builder::tcp6(&spec6(
                CLIENT6,
                40001,
                VIP6,
                80,
                TcpFlags::SYN,
            ))),
        );
        let (_, o) = r.frame(
            0,
            0,
            &builder::tcp6(&spec6(CLIENT6, 40000, VIP6, 443, TcpFlags::SYN)),
        );
        let (real, rport) = dst6(&o);
        r.frame(
            0x41,
            1,
            &builder::tcp6(&FrameSpec {
                src_mac: real_mac(1),
                dst_mac: LAN_MAC,
                src: real,
                src_port: rport,
                dst: CLIENT6,
                dst_port: 40000,
                tcp_flags: TcpFlags::SYN | TcpFlags::ACK,
                ..FrameSpec::default()
            }),
        );
        let u = builder::udp6(&FrameSpec {
            payload: b"q6".to_vec(),
            ..spec6(CLIENT6, 5353, VIP6, 53, TcpFlags::NONE)
        });
        r.frame(0x41, 0, &u);
        let big6 = builder::udp6(&FrameSpec {
            payload: (0..1400u32).map(|i| i as u8).collect(),
            ..spec6(CLIENT6, 5353, VIP6, 4789, TcpFlags::NONE)
        });
        for f in builder::ipv6_fragments(&big6, 1280, 0x77).expect("fragments") {
            r.frame(0x41, 0, &f);
        }
        r.frame(
            0,
            0,
            &builder::neighbour_solicitation(&spec6(GW6, 0, VIP6, 0, TcpFlags::NONE)),
        );
        r.frame(
            0,
            0,
            &builder::icmp6_echo(&spec6(CLIENT6, 0, VIP6, 0, TcpFlags::NONE), 7, 1),
        );
        let reply6 = builder::tcp6(&spec6(VIP6, 443, CLIENT6, 40000, TcpFlags::ACK));
        r.frame(
            0,
            0,
            &builder::icmp6_error(
                &spec6(
                    "2001:db8:ff::1".parse().unwrap(),
                    0,
                    VIP6,
                    0,
                    TcpFlags::NONE,
                ),
                2,
                0,
                1280,
                &reply6[14..],
            ),
        );
        out.push(("ipv6_mixed".into(), r.bytes));
    }

    // A full connection table: many clients, then time passes.
    {
        let mut r = Run::new();
        for i in 0..40u16 {
            let c = Ipv4Addr::new(203, 0, 113, (i % 250) as u8 + 1);
            let ctl = if i % 8 == 7 { SEC | 30 } else { 0 };
            r.frame(
                ctl,
                0,
                &builder::tcp4(&spec4(c, 1024 + i, VIP4, 443, TcpFlags::SYN)),
            );
        }
        encode_swap(&mut r.bytes);
        r.frame(
            HOUR | 2,
            0,
            &builder::tcp4(&spec4(CLIENT4, 1024, VIP4, 443, TcpFlags::ACK)),
        );
        out.push(("many_flows".into(), r.bytes));
    }
    out
}

fn vrrp() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let src4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
    let src6 = IpAddr::V6("fe80::3".parse().unwrap());
    let adv = |vrid, priority, interval_cs, addresses| Advert {
        vrid,
        priority,
        interval_cs,
        addresses,
    };
    let vip4 = IpAddr::V4(VIP4);
    let vip6 = IpAddr::V6(VIP6);
    let with_flags = |flags: u8, m: Vec<u8>| {
        let mut x = vec![flags];
        x.extend(m);
        x
    };
    let m = encode(&adv(51, 100, 100, vec![vip4]), src4, IpAddr::V4(MCAST_V4)).unwrap();
    v.push(("v3_ipv4".into(), with_flags(0, m.clone())));
    v.push(("v3_ipv4_master".into(), with_flags(0x24, m)));
    let m = encode(
        &adv(
            51,
            200,
            100,
            vec![vip4, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))],
        ),
        src4,
        IpAddr::V4(MCAST_V4),
    )
    .unwrap();
    v.push(("v3_ipv4_two_addrs_high_prio".into(), with_flags(0x18, m)));
    let m = encode(&adv(51, 0, 100, vec![vip4]), src4, IpAddr::V4(MCAST_V4)).unwrap();
    v.push(("v3_ipv4_prio0".into(), with_flags(0x20, m)));
    let m = encode(&adv(51, 100, 100, vec![vip6]), src6, IpAddr::V6(MCAST_V6)).unwrap();
    v.push(("v3_ipv6".into(), with_flags(1, m)));
    let m = encode(&adv(51, 254, 4095, vec![]), src6, IpAddr::V6(MCAST_V6)).unwrap();
    v.push(("v3_ipv6_no_addrs".into(), with_flags(0x25, m)));
    // VRRPv2 (RFC 3768): version 2, auth type 0, interval 1 s, an
    // address and 8 octets of authentication data.
    let mut v2 = vec![
        0x21, 51, 100, 1, 0, 1, 0, 0, 192, 0, 2, 100, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let c = forwarder::packet::checksum::transport_checksum(0, &v2, 6);
    v2[6..8].copy_from_slice(&c.to_be_bytes());
    v.push(("v2_ipv4".into(), with_flags(0, v2)));
    v
}

/// TOML examples in the repository: README blocks and raw strings in the
/// tests that hold a `[dataplane]` or `[[vip]]` section.
fn configs(repo: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let readme = fs::read_to_string(repo.join("README.md")).unwrap_or_default();
    for (i, block) in readme.split("```toml").skip(1).enumerate() {
        if let Some(b) = block.split("```").next() {
            out.push((format!("readme{i}"), b.trim_start().to_string()));
        }
    }
    let sources = [
        "control/src/config/tests.rs",
        "control/src/snapshot.rs",
        "control/src/health/tests.rs",
        "tests/cli.rs",
        "tests/e2e_dr.rs",
        "tests/e2e_nat.rs",
        "tests/e2e_ha.rs",
        "tests/e2e_foundation.rs",
    ];
    for s in sources {
        let text = fs::read_to_string(repo.join(s)).unwrap_or_default();
        let stem = Path::new(s)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let dir = Path::new(s)
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        for (i, part) in text.split("r#\"").skip(1).enumerate() {
            let Some(body) = part.split("\"#").next() else {
                continue;
            };
            if (body.contains("[dataplane]") || body.contains("[[vip]]")) && body.len() < 8192 {
                out.push((format!("{dir}_{stem}{i}"), body.trim_start().to_string()));
            }
        }
    }
    out
}
