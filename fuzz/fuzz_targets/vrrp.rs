//! The VRRPv3 codec (`control::vrrp::packet`) and the state machine on
//! arbitrary messages, over IPv4 and IPv6.
//!
//! Input: one flags byte, then the VRRP message. Flags bit 0: IPv6; bit 1:
//! a source of the other family (must be refused); bits 2..=3: which
//! virtual router (priority, preemption) receives the message.
//!
//! Checks: no panic; an accepted message re-encodes to the same bytes
//! (reserved bits cleared, checksum recomputed) and decodes to the same
//! advert; every error has a message.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use control::vrrp::packet::{checksum, decode, encode, Error, HEADER_LEN};
use control::vrrp::{Vrrp, VrrpConfig, MCAST_V4, MCAST_V6};
use libfuzzer_sys::fuzz_target;

const PEER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const OWN4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const PEER6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 3);
const OWN6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);

fuzz_target!(|data: &[u8]| {
    let Some((&flags, msg)) = data.split_first() else {
        return;
    };
    let v6 = flags & 1 != 0;
    let (src, dst, primary) = if v6 {
        (IpAddr::V6(PEER6), IpAddr::V6(MCAST_V6), IpAddr::V6(OWN6))
    } else {
        (IpAddr::V4(PEER4), IpAddr::V4(MCAST_V4), IpAddr::V4(OWN4))
    };
    let src = if flags & 2 != 0 {
        // The other family: always refused.
        let other = if v6 {
            IpAddr::V4(PEER4)
        } else {
            IpAddr::V6(PEER6)
        };
        assert_eq!(decode(msg, other, dst), Err(Error::Family));
        other
    } else {
        src
    };

    match decode(msg, src, dst) {
        Ok(adv) => {
            assert!(msg.len() >= HEADER_LEN);
            assert!(adv.interval_cs <= 0x0fff);
            assert!(adv.addresses.iter().all(|a| a.is_ipv4() == src.is_ipv4()));
            let again = encode(&adv, src, dst).expect("a decoded advert encodes");
            assert_eq!(again.len(), msg.len(), "re-encoded length");
            let mut expect = msg.to_vec();
            expect[4] &= 0x0f; // reserved bits
                               // The checksum may be either zero of one's complement.
            assert_eq!(again[..6], expect[..6], "re-encoded header");
            assert_eq!(again[8..], expect[8..], "re-encoded addresses");
            assert_eq!(checksum(&again, src, dst), 0, "re-encoded checksum");
            assert_eq!(decode(&again, src, dst), Ok(adv.clone()), "round trip");
            assert!(adv.interval() <= Duration::from_millis(40_950));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    // The state machine: a backup (or, after its timer, a master) of
    // VRID 51 receiving the message.
    let cfg = VrrpConfig {
        vrid: 51,
        priority: [1, 100, 150, 254][usize::from(flags >> 2 & 3)],
        advert_interval: Duration::from_millis(100),
        preempt: flags & 0x10 != 0,
        primary,
        addresses: vec![if v6 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100))
        } else {
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))
        }],
        garp_interval: Duration::from_secs(1),
        garp_elapse: Duration::from_secs(5),
    };
    let mut vrrp = Vrrp::new(cfg).expect("valid config");
    let t0 = Instant::now();
    vrrp.on_start(t0);
    let mut now = t0;
    if flags & 0x20 != 0 {
        // Let the master-down timer fire: become master first.
        now += Duration::from_secs(2);
        vrrp.on_timer(now);
    }
    vrrp.on_packet(now, msg, src, dst);
    if let Some(d) = vrrp.next_deadline() {
        vrrp.on_timer(d.max(now));
    }
    vrrp.on_shutdown(now);
});
