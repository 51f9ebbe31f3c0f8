//! Codec tests: hand-checked vectors, round trips, every error, every
//! truncation, and seeded random inputs.

use super::*;

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// IPv4 vector. 192.0.2.1 -> 224.0.0.18, VRID 51, priority 150,
/// 100 cs, one address 198.51.100.1. Message (checksum zero):
///
/// ```text
/// 31 33 96 01 | 00 64 00 00 | c6 33 64 01        (12 octets)
/// ```
///
/// One's complement sum, 16-bit words:
///
/// ```text
/// pseudo-header  c000 + 0201 + e000 + 0012 + 0070 (0, proto 112) + 000c (len 12)
///              = 1a28f
/// message        3133 + 9601 + 0064 + 0000 + c633 + 6401 = 1f1cc
/// total          1a28f + 1f1cc = 3945b -> fold 945b + 3 = 945e
/// checksum       ~945e = 6ba1
/// ```
#[test]
fn ipv4_vector() {
    let adv = Advert {
        vrid: 51,
        priority: 150,
        interval_cs: 100,
        addresses: vec![v4("198.51.100.1")],
    };
    let (src, dst) = (v4("192.0.2.1"), IpAddr::V4(MCAST_V4));
    let bytes = encode(&adv, src, dst).unwrap();
    assert_eq!(
        bytes,
        [0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0x6b, 0xa1, 0xc6, 0x33, 0x64, 0x01]
    );
    assert_eq!(decode(&bytes, src, dst), Ok(adv));
    assert_eq!(checksum(&bytes, src, dst), 0, "a correct message sums to 0");
}

/// IPv6 vector. fe80::1 -> ff02::12, VRID 51, priority 100, 100 cs, one
/// address 2001:db8::1. Message (checksum zero):
///
/// ```text
/// 31 33 64 01 | 00 64 00 00 | 20 01 0d b8 00 .. 00 01     (24 octets)
/// ```
///
/// ```text
/// pseudo-header  fe80 + 0001 (src) + ff02 + 0012 (dst)
///                + 0000 + 0018 (32-bit len 24) + 0000 + 0070 (next header)
///              = 1fe1d
/// message        3133 + 6401 + 0064 + 0000 + 2001 + 0db8 + 0001 = c352
/// total          1fe1d + c352 = 2c16f -> fold c16f + 2 = c171
/// checksum       ~c171 = 3e8e
/// ```
#[test]
fn ipv6_vector() {
    let adv = Advert {
        vrid: 51,
        priority: 100,
        interval_cs: 100,
        addresses: vec![v4("2001:db8::1")],
    };
    let (src, dst) = (v4("fe80::1"), IpAddr::V6(MCAST_V6));
    let bytes = encode(&adv, src, dst).unwrap();
    let mut want = vec![0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0x3e, 0x8e];
    want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(bytes, want);
    assert_eq!(decode(&bytes, src, dst), Ok(adv));
}

/// The pseudo-header matters: the same message from another source fails.
#[test]
fn checksum_covers_pseudo_header() {
    let adv = sample_v4(3);
    let bytes = encode(&adv, v4("192.0.2.1"), IpAddr::V4(MCAST_V4)).unwrap();
    let err = decode(&bytes, v4("192.0.2.2"), IpAddr::V4(MCAST_V4)).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    let err = decode(&bytes, v4("192.0.2.1"), v4("224.0.0.19")).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
}

fn sample_v4(n: u8) -> Advert {
    Advert {
        vrid: 7,
        priority: 200,
        interval_cs: 4095,
        addresses: (0..n).map(|i| IpAddr::from([198, 51, 100, i])).collect(),
    }
}

fn sample_v6(n: u8) -> Advert {
    Advert {
        vrid: 255,
        priority: 1,
        interval_cs: 1,
        addresses: (0..n)
            .map(|i| IpAddr::from([0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i]))
            .collect(),
    }
}

#[test]
fn round_trips() {
    let s4 = (v4("192.0.2.10"), IpAddr::V4(MCAST_V4));
    let s6 = (v4("fe80::10"), IpAddr::V6(MCAST_V6));
    for n in [0u8, 1, 2, 17, 255] {
        let a = sample_v4(n);
        let b = encode(&a, s4.0, s4.1).unwrap();
        assert_eq!(b.len(), 8 + 4 * usize::from(n));
        assert_eq!(decode(&b, s4.0, s4.1), Ok(a));
        let a = sample_v6(n);
        let b = encode(&a, s6.0, s6.1).unwrap();
        assert_eq!(b.len(), 8 + 16 * usize::from(n));
        assert_eq!(decode(&b, s6.0, s6.1), Ok(a));
    }
}

#[test]
fn decode_errors() {
    let (s, d) = (v4("192.0.2.1"), IpAddr::V4(MCAST_V4));
    let good = encode(&sample_v4(2), s, d).unwrap();
    // Re-checksums a modified message so only the intended field is wrong.
    let fix = |mut m: Vec<u8>| {
        m[6] = 0;
        m[7] = 0;
        let c = checksum(&m, s, d);
        m[6..8].copy_from_slice(&c.to_be_bytes());
        m
    };
    let mut v2 = good.clone();
    v2[0] = 0x21;
    let mut ty = good.clone();
    ty[0] = 0x32;
    let mut count = good.clone();
    count[3] = 3;
    let mut extra = good.clone();
    extra.push(0);
    let mut ck = good.clone();
    ck[7] ^= 1;
    let cases: Vec<(&str, Vec<u8>, IpAddr, Error)> = vec![
        ("empty", vec![], s, Error::Truncated { len: 0 }),
        (
            "7 octets",
            good[..7].to_vec(),
            s,
            Error::Truncated { len: 7 },
        ),
        ("version 2", fix(v2), s, Error::Version { got: 2 }),
        ("type 2", fix(ty), s, Error::Type { got: 2 }),
        (
            "odd tail",
            fix(extra),
            s,
            Error::Length {
                len: 17,
                addr_len: 4,
            },
        ),
        (
            "count",
            fix(count),
            s,
            Error::CountMismatch {
                count: 3,
                present: 2,
            },
        ),
        (
            "checksum",
            ck,
            s,
            Error::Checksum {
                got: u16::from_be_bytes([good[6], good[7] ^ 1]),
                want: u16::from_be_bytes([good[6], good[7]]),
            },
        ),
        ("family", good.clone(), v4("fe80::1"), Error::Family),
    ];
    for (name, msg, src, want) in cases {
        assert_eq!(decode(&msg, src, d), Err(want), "{name}");
        // Every error has a message an operator can read.
        assert!(!want.to_string().is_empty());
    }
    // The same IPv4 message read as IPv6: 8 octets of addresses are not
    // whole 16-octet addresses.
    assert_eq!(
        decode(&good, v4("fe80::1"), IpAddr::V6(MCAST_V6)),
        Err(Error::Length {
            len: 16,
            addr_len: 16
        })
    );
}

#[test]
fn reserved_bits_ignored_on_receive() {
    let (s, d) = (v4("192.0.2.1"), IpAddr::V4(MCAST_V4));
    let mut m = encode(&sample_v4(1), s, d).unwrap();
    m[4] |= 0xf0;
    m[6] = 0;
    m[7] = 0;
    let c = checksum(&m, s, d);
    m[6..8].copy_from_slice(&c.to_be_bytes());
    assert_eq!(decode(&m, s, d).unwrap().interval_cs, 4095);
}

#[test]
fn encode_errors() {
    let (s, d) = (v4("192.0.2.1"), IpAddr::V4(MCAST_V4));
    let mut a = sample_v4(1);
    a.addresses.push(v4("2001:db8::1"));
    assert_eq!(encode(&a, s, d), Err(Error::Family));
    assert_eq!(
        encode(&sample_v4(1), s, IpAddr::V6(MCAST_V6)),
        Err(Error::Family)
    );
    let mut a = sample_v4(1);
    a.addresses = vec![s; 256];
    assert_eq!(
        encode(&a, s, d),
        Err(Error::TooManyAddresses { count: 256 })
    );
    let mut a = sample_v4(1);
    a.interval_cs = 4096;
    assert_eq!(encode(&a, s, d), Err(Error::Interval { cs: 4096 }));
}

/// Every prefix of valid messages decodes to an error, never a panic, and
/// only the full message decodes.
#[test]
fn every_truncation() {
    let s4 = (v4("192.0.2.10"), IpAddr::V4(MCAST_V4));
    let s6 = (v4("fe80::10"), IpAddr::V6(MCAST_V6));
    for (adv, (s, d)) in [(sample_v4(5), s4), (sample_v6(5), s6)] {
        let m = encode(&adv, s, d).unwrap();
        for n in 0..m.len() {
            assert!(decode(&m[..n], s, d).is_err(), "prefix {n}");
        }
        assert!(decode(&m, s, d).is_ok());
    }
}

/// Every single-bit flip of a valid message is caught.
#[test]
fn every_bit_flip_rejected() {
    let (s, d) = (v4("fe80::10"), IpAddr::V6(MCAST_V6));
    let m = encode(&sample_v6(2), s, d).unwrap();
    for bit in 0..m.len() * 8 {
        let mut x = m.clone();
        x[bit / 8] ^= 1 << (bit % 8);
        assert!(decode(&x, s, d).is_err(), "bit {bit}");
    }
}

/// A small seeded generator (xorshift64*), so the random tests below are
/// reproducible without a dev-dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random bytes of random length never panic; whatever decodes re-encodes
/// to the same bytes up to the reserved bits.
#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(0x5798);
    let pairs = [
        (v4("192.0.2.1"), IpAddr::V4(MCAST_V4)),
        (v4("fe80::1"), IpAddr::V6(MCAST_V6)),
        (v4("192.0.2.1"), IpAddr::V6(MCAST_V6)),
    ];
    let mut decoded = 0;
    for i in 0..100_000 {
        let len = rng.below(80) as usize;
        let mut m: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        let (s, d) = pairs[i % pairs.len()];
        // Bias half the inputs toward the interesting path: a plausible
        // header with a correct count and checksum.
        if i % 2 == 0 && len >= 8 && s.is_ipv4() == d.is_ipv4() {
            let alen = if s.is_ipv4() { 4 } else { 16 };
            let n = (len - 8) / alen;
            m.truncate(8 + n * alen);
            m[0] = 0x31;
            m[3] = n as u8;
            m[6] = 0;
            m[7] = 0;
            let c = checksum(&m, s, d);
            m[6..8].copy_from_slice(&c.to_be_bytes());
        }
        if let Ok(adv) = decode(&m, s, d) {
            decoded += 1;
            let again = encode(&adv, s, d).unwrap();
            let mut m2 = m.clone();
            m2[4] &= 0x0f; // reserved bits are not kept
            assert_eq!(decode(&again, s, d), Ok(adv));
            assert_eq!(again[..6], m2[..6]);
            assert_eq!(again[8..], m2[8..]);
        }
    }
    assert!(decoded > 10_000, "the biased half should decode: {decoded}");
}

/// Random valid adverts round-trip through both families.
#[test]
fn random_adverts_round_trip() {
    let mut rng = Rng::new(42);
    for _ in 0..5_000 {
        let v6 = rng.below(2) == 1;
        let n = rng.below(20) as usize;
        let addresses = (0..n)
            .map(|_| {
                if v6 {
                    IpAddr::from(std::array::from_fn::<u8, 16, _>(|_| rng.byte()))
                } else {
                    IpAddr::from(std::array::from_fn::<u8, 4, _>(|_| rng.byte()))
                }
            })
            .collect();
        let adv = Advert {
            vrid: rng.byte(),
            priority: rng.byte(),
            interval_cs: rng.below(4096) as u16,
            addresses,
        };
        let (s, d) = if v6 {
            (
                IpAddr::from(std::array::from_fn::<u8, 16, _>(|_| rng.byte())),
                IpAddr::V6(MCAST_V6),
            )
        } else {
            (
                IpAddr::from(std::array::from_fn::<u8, 4, _>(|_| rng.byte())),
                IpAddr::V4(MCAST_V4),
            )
        };
        let m = encode(&adv, s, d).unwrap();
        assert_eq!(decode(&m, s, d), Ok(adv));
    }
}

/// The RFC 2460 pseudo-header layout filled with 4-octet IPv4 addresses
/// (source, destination, 32-bit length, 0, 0, 0, 112) sums to the same as
/// the RFC 768 layout we use, so either reading of §5.2.8 interoperates.
#[test]
fn ipv4_pseudo_header_layouts_agree() {
    let mut rng = Rng::new(7);
    for n in 0..50u8 {
        let s = IpAddr::from(std::array::from_fn::<u8, 4, _>(|_| rng.byte()));
        let d = IpAddr::V4(MCAST_V4);
        let m = encode(&sample_v4(n), s, d).unwrap();
        let (IpAddr::V4(s4), IpAddr::V4(d4)) = (s, d) else {
            unreachable!()
        };
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&s4.octets());
        pseudo.extend_from_slice(&d4.octets());
        pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
        assert_eq!(!fold(sum_words(sum_words(0, &pseudo), &m)), 0, "n={n}");
    }
}
