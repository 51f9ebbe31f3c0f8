//! Rough per-packet cost of the hot-path operations, as an ignored test
//! (criterion would need a `[[bench]]` entry in Cargo.toml). Run with
//!
//! ```text
//! cargo test --release -p forwarder --no-default-features --test packet_perf -- --ignored --nocapture
//! ```
//!
//! It prints nanoseconds per packet; it asserts nothing about speed.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use forwarder::packet::builder::{self, FrameSpec};
use forwarder::packet::checksum::Incremental;
use forwarder::packet::{
    ip_proto, EtherType, EthernetFrame, Ipv4Packet, Ipv6Packet, Result, TcpPacket, UdpPacket,
};

/// The 5-tuple of a TCP/UDP frame, as the flow lookup needs it.
fn five_tuple(frame: &[u8]) -> Result<(u128, u128, u16, u16, u8)> {
    let eth = EthernetFrame::new_checked(frame)?;
    let (src, dst, proto, l4) = match eth.ethertype() {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(eth.into_payload())?;
            let (s, d, p) = (u32::from(ip.src()), u32::from(ip.dst()), ip.protocol());
            (u128::from(s), u128::from(d), p, ip.into_payload())
        }
        _ => {
            let ip = Ipv6Packet::new_checked(eth.into_payload())?;
            let up = ip.upper_layer()?;
            (
                u128::from(ip.src()),
                u128::from(ip.dst()),
                up.protocol,
                ip.into_upper_payload(&up),
            )
        }
    };
    let (sp, dp) = if proto == ip_proto::TCP {
        let t = TcpPacket::new_checked(l4)?;
        (t.src_port(), t.dst_port())
    } else {
        let u = UdpPacket::new_checked(l4)?;
        (u.src_port(), u.dst_port())
    };
    Ok((src, dst, sp, dp, proto))
}

/// DNAT of an IPv4/TCP frame: destination address and port, with both
/// checksums updated incrementally.
fn dnat4(frame: &mut [u8], dst: Ipv4Addr, dport: u16) -> Result<()> {
    let mut eth = EthernetFrame::new_checked(frame)?;
    let mut ip = Ipv4Packet::new_checked(eth.payload_mut())?;
    let (od, nd) = (u32::from(ip.dst()), u32::from(dst));
    let hc = Incremental::new(ip.checksum())
        .remove_u32(od)
        .add_u32(nd)
        .finish();
    ip.set_dst(dst);
    ip.set_checksum(hc);
    let mut t = TcpPacket::new_checked(ip.payload_mut())?;
    let c = Incremental::new(t.checksum())
        .remove_u32(od)
        .add_u32(nd)
        .remove_u16(t.dst_port())
        .add_u16(dport)
        .finish();
    t.set_dst_port(dport);
    t.set_checksum(c);
    Ok(())
}

fn measure(name: &str, iters: u32, mut f: impl FnMut(u32)) {
    for i in 0..iters / 10 {
        f(i);
    }
    let t = Instant::now();
    for i in 0..iters {
        f(i);
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(iters);
    println!("{name:<40} {ns:>8.1} ns/packet");
}

#[test]
#[ignore = "timing only; run in release with --ignored --nocapture"]
fn per_packet_costs() {
    const N: u32 = 5_000_000;
    let tcp4 = builder::tcp4(&FrameSpec {
        payload: vec![0; 64],
        ..FrameSpec::default()
    });
    let udp6 = builder::udp6(&FrameSpec::<Ipv6Addr> {
        vlan: Some(10),
        payload: vec![0; 64],
        ..FrameSpec::default()
    });
    measure("(loop overhead)", N, |i| {
        black_box(i);
    });
    measure("(reference: etherparse SlicedPacket v4)", N, |_| {
        black_box(etherparse::SlicedPacket::from_ethernet(black_box(&tcp4)).is_ok());
    });
    measure("5-tuple, Ethernet/IPv4/TCP", N, |_| {
        black_box(five_tuple(black_box(&tcp4)).ok());
    });
    measure("5-tuple, Ethernet/802.1Q/IPv6/UDP", N, |_| {
        black_box(five_tuple(black_box(&udp6)).ok());
    });
    let mut f = tcp4.clone();
    measure("DNAT IPv4/TCP, incremental checksums", N, |i| {
        let d = Ipv4Addr::from(0x0a00_0000 | (i & 0xffff));
        black_box(dnat4(black_box(&mut f), d, i as u16).ok());
    });
    let mut g = tcp4.clone();
    measure("IPv4 header checksum recompute", N, |_| {
        let mut eth = EthernetFrame::new_checked(black_box(&mut g[..])).unwrap();
        let mut ip = Ipv4Packet::new_checked(eth.payload_mut()).unwrap();
        ip.fill_checksum();
        black_box(ip.checksum());
    });
}
