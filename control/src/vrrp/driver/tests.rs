//! The socket side of VRRP: frames in and out, without sockets.

use super::*;
use crate::vrrp::{decode, Advert};

const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);
const PEER: MacAddr = MacAddr([2, 0, 0, 0, 0, 7]);

fn advert(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let adv = Advert {
        vrid: 51,
        priority: 100,
        interval_cs: 100,
        addresses: vec![if src.is_ipv4() {
            "192.0.2.100".parse().unwrap()
        } else {
            "2001:db8::100".parse().unwrap()
        }],
    };
    encode(&adv, src, dst).unwrap()
}

fn from_peer(mut f: Vec<u8>) -> Vec<u8> {
    f[6..12].copy_from_slice(&PEER.0);
    f
}

#[test]
fn our_multicast_adverts_parse_back_on_the_peer() {
    for (src, me) in [
        (
            IpAddr::V4("192.0.2.3".parse().unwrap()),
            IpAddr::V4("192.0.2.2".parse().unwrap()),
        ),
        (IpAddr::V6(link_local(PEER)), IpAddr::V6(link_local(MAC))),
    ] {
        let group = if src.is_ipv4() {
            IpAddr::V4(MCAST_V4)
        } else {
            IpAddr::V6(MCAST_V6)
        };
        let msg = advert(src, group);
        let f = advert_frame(PEER, src, msg.clone());
        let Frame::Vrrp(s, d, m) = vrrp_in_frame(&f, MAC, me) else {
            panic!("not a VRRP frame: {f:02x?}");
        };
        assert_eq!((s, d, m), (src, group, &msg[..]));
        assert_eq!(decode(m, s, d).unwrap().vrid, 51);
        // Our own frames are skipped; the other family is not ours.
        assert_eq!(vrrp_in_frame(&f, PEER, me), Frame::Other);
    }
    let f = advert_frame(PEER, "192.0.2.3".parse().unwrap(), vec![0; 12]);
    assert_eq!(
        vrrp_in_frame(&f, MAC, IpAddr::V6(link_local(MAC))),
        Frame::Other
    );
}

#[test]
fn ttl_other_than_255_and_truncation_are_refused() {
    let src: IpAddr = "192.0.2.3".parse().unwrap();
    let me: IpAddr = "192.0.2.2".parse().unwrap();
    let mut f = advert_frame(PEER, src, advert(src, IpAddr::V4(MCAST_V4)));
    f[14 + 8] = 254;
    assert_eq!(vrrp_in_frame(&f, MAC, me), Frame::BadTtl);
    let good = advert_frame(PEER, src, advert(src, IpAddr::V4(MCAST_V4)));
    // Every truncation is refused or ignored, never a panic.
    for n in 0..good.len() {
        if let Frame::Vrrp(_, _, m) = vrrp_in_frame(&good[..n], MAC, me) {
            assert!(m.len() < 20);
        }
    }
    let src6 = IpAddr::V6(link_local(PEER));
    let mut f = advert_frame(PEER, src6, advert(src6, IpAddr::V6(MCAST_V6)));
    f[14 + 7] = 1;
    assert_eq!(
        vrrp_in_frame(&f, MAC, IpAddr::V6(link_local(MAC))),
        Frame::BadTtl
    );
}

#[test]
fn unicast_adverts_to_us_are_taken_and_others_ignored() {
    let src: IpAddr = "192.0.2.3".parse().unwrap();
    let me: IpAddr = "192.0.2.2".parse().unwrap();
    let f = from_peer(builder::ip4_raw(
        &FrameSpec {
            src: "192.0.2.3".parse().unwrap(),
            dst: "192.0.2.2".parse().unwrap(),
            ttl: 255,
            payload: advert(src, me),
            ..FrameSpec::default()
        },
        IPPROTO_VRRP,
    ));
    assert!(matches!(vrrp_in_frame(&f, MAC, me), Frame::Vrrp(s, d, _) if s == src && d == me));
    let other: IpAddr = "192.0.2.9".parse().unwrap();
    assert_eq!(vrrp_in_frame(&f, MAC, other), Frame::Other);
}

#[test]
fn announcements_are_garp_and_unsolicited_na() {
    let f = announcement(MAC, "192.0.2.100".parse().unwrap());
    assert_eq!(&f[..6], &[0xff; 6]);
    assert_eq!(&f[12..14], &[8, 6]);
    assert_eq!(&f[20..22], &[0, 1]);
    assert_eq!(&f[28..32], &[192, 0, 2, 100]);
    assert_eq!(&f[28..32], &f[38..42]);
    assert_eq!(&f[22..28], &MAC.0);
    let f = announcement(MAC, "2001:db8::100".parse().unwrap());
    assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(&f[12..14], &[0x86, 0xdd]);
    assert_eq!(f[14 + 6], 58); // ICMPv6
    assert_eq!(f[14 + 7], 255);
    assert_eq!(f[54], 136); // neighbour advertisement
    assert_eq!(f[58] & 0x20, 0x20); // override
    assert_eq!(
        &f[62..78],
        &"2001:db8::100".parse::<Ipv6Addr>().unwrap().octets()
    );
}

#[test]
fn link_local_is_eui64() {
    assert_eq!(
        link_local(MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55])),
        "fe80::11:22ff:fe33:4455".parse::<Ipv6Addr>().unwrap()
    );
}
