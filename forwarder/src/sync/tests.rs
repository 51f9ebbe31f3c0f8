use super::*;

fn rec(op: Op, nat: Nat, v6: bool) -> Record {
    let (client, real): (IpAddr, IpAddr) = if v6 {
        (
            "2001:db8::1".parse().unwrap(),
            "2001:db8:1::21".parse().unwrap(),
        )
    } else {
        (
            "198.51.100.10".parse().unwrap(),
            "192.0.2.21".parse().unwrap(),
        )
    };
    Record {
        op,
        key: FlowKey {
            service: 0xdead_beef,
            client,
            client_port: 40000,
            vport: 80,
            proto: L4::Tcp,
        },
        real,
        real_port: 8080,
        nat,
        state: State::Established,
        remaining_ms: 900_000,
        persist: true,
    }
}

fn datagram(records: &[Record]) -> Vec<u8> {
    let mut log = SyncLog::new(64);
    log.set_enabled(true);
    log.set_peer(Some(0xfeed), false);
    for r in records {
        log.push(0, r);
    }
    let mut out = vec![0u8; MAX_PAYLOAD];
    let n = log.take_batch(&mut out, 3, 0);
    out.truncate(n);
    out
}

#[test]
fn records_round_trip() {
    let all = [
        rec(Op::Add, Nat::Nat, false),
        rec(Op::Update, Nat::None, true),
        rec(Op::Delete, Nat::Snat(2000), false),
        Record {
            key: FlowKey {
                proto: L4::Udp,
                ..rec(Op::Add, Nat::Nat, false).key
            },
            state: State::Udp,
            persist: false,
            ..rec(Op::Add, Nat::Nat, false)
        },
    ];
    for r in all {
        let mut b = [0u8; RECORD_LEN];
        r.encode(&mut b);
        assert_eq!(Record::decode(&b), Ok(r));
    }
    let d = datagram(&all);
    assert_eq!(d.len(), HEADER_LEN + 4 * RECORD_LEN);
    let (h, recs) = parse(&d).unwrap();
    assert_eq!((h.count, h.seq, h.worker), (4, 0, 3));
    assert_eq!(h.fingerprint, Some(0xfeed), "the sender's fingerprint");
    let got: Vec<Record> = recs.map(|b| Record::decode(b).unwrap()).collect();
    assert_eq!(got, all);
}

#[test]
fn a_full_batch_fits_a_1500_byte_mtu() {
    const { assert!(20 + 8 + MAX_PAYLOAD <= 1500) };
    const {
        assert!(
            20 + 8 + MAX_PAYLOAD + RECORD_LEN > 1500,
            "one more would not"
        )
    };
    let d = datagram(&[rec(Op::Add, Nat::Nat, false); MAX_RECORDS]);
    assert_eq!(d.len(), MAX_PAYLOAD);
    assert_eq!(parse(&d).unwrap().0.count, MAX_RECORDS);
}

#[test]
fn truncation_at_every_length_is_refused() {
    let d = datagram(&[
        rec(Op::Add, Nat::Nat, false),
        rec(Op::Delete, Nat::Nat, true),
    ]);
    for n in 0..d.len() {
        let e = parse(&d[..n]).unwrap_err();
        let want = if n < HEADER_LEN {
            DatagramError::Short
        } else {
            DatagramError::BadCount
        };
        assert_eq!(e, want, "length {n}");
    }
    // A hello (no record) is a whole datagram in version 2 only.
    let mut hello = d[..HEADER_LEN].to_vec();
    hello[6..8].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(parse(&hello).unwrap().0.count, 0);
    let mut v1 = hello[..HEADER_LEN_V1].to_vec();
    v1[4] = 1;
    assert_eq!(parse(&v1).unwrap_err(), DatagramError::BadCount);
    // One byte too many.
    let mut long = d.clone();
    long.push(0);
    assert_eq!(parse(&long).unwrap_err(), DatagramError::BadCount);
    // Every prefix of a record is refused by the record decoder too.
    let (_, mut recs) = parse(&d).unwrap();
    let r = recs.next().unwrap();
    for n in 0..RECORD_LEN {
        assert!(Record::decode(&r[..n]).is_err(), "record length {n}");
    }
}

#[test]
fn bad_magic_version_record_length_and_count() {
    let d = datagram(&[rec(Op::Add, Nat::Nat, false)]);
    let mut m = d.clone();
    m[0] = b'X';
    assert_eq!(parse(&m).unwrap_err(), DatagramError::BadMagic);
    let mut v = d.clone();
    v[4] = 3;
    assert_eq!(parse(&v).unwrap_err(), DatagramError::BadVersion);
    v[4] = 0;
    assert_eq!(parse(&v).unwrap_err(), DatagramError::BadVersion);
    let mut l = d.clone();
    l[15] = 57;
    assert_eq!(parse(&l).unwrap_err(), DatagramError::BadRecordLen);
    let mut c = d.clone();
    c[6..8].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(parse(&c).unwrap_err(), DatagramError::BadCount);
    let over = MAX_RECORDS as u16 + 1;
    let mut big = vec![0u8; HEADER_LEN + usize::from(over) * RECORD_LEN];
    big[..HEADER_LEN].copy_from_slice(&d[..HEADER_LEN]);
    big[6..8].copy_from_slice(&over.to_be_bytes());
    assert_eq!(parse(&big).unwrap_err(), DatagramError::BadCount);
}

#[test]
fn bad_records_are_refused_one_by_one() {
    let mut b = [0u8; RECORD_LEN];
    rec(Op::Add, Nat::Nat, false).encode(&mut b);
    let bad = |i: usize, v: u8| {
        let mut x = b;
        x[i] = v;
        Record::decode(&x)
    };
    assert_eq!(bad(0, 0), Err(RecordError::Op));
    assert_eq!(bad(0, 4), Err(RecordError::Op));
    assert_eq!(bad(1, 7), Err(RecordError::Proto));
    assert_eq!(bad(2, 8), Err(RecordError::State));
    assert_eq!(
        bad(2, State::Udp as u8),
        Err(RecordError::State),
        "UDP state on TCP"
    );
    assert_eq!(bad(3, 0x20), Err(RecordError::Flags));
    assert_eq!(bad(3, 3 << 2), Err(RecordError::Flags), "reply kind 3");
    assert_eq!(
        bad(47, 1),
        Err(RecordError::Flags),
        "SNAT port on a NAT flow"
    );
    assert_eq!(bad(55, 1), Err(RecordError::Flags), "reserved bytes");
    assert_eq!(
        bad(8, 1),
        Err(RecordError::Family),
        "v4 flag, not v4-mapped"
    );
    // Random bytes never panic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut r = [0u8; RECORD_LEN];
        for v in r.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *v = x as u8 & [0x03, 0x1f, 0xff][(x >> 8) as usize % 3];
        }
        let _ = Record::decode(&r);
        let _ = parse(&r);
    }
}

#[test]
fn the_log_batches_flushes_on_time_and_counts_overflow() {
    let mut log = SyncLog::new(30);
    let r = rec(Op::Add, Nat::Nat, false);
    log.push(0, &r);
    assert!(log.is_empty(), "disabled: nothing logged");
    log.set_enabled(true);
    log.push(100, &r);
    assert!(!log.due(100 + FLUSH_MS - 1));
    assert!(log.due(100 + FLUSH_MS));
    for _ in 0..29 {
        log.push(101, &r);
    }
    assert_eq!(log.counters.lost, 0);
    log.push(101, &r);
    assert_eq!((log.len(), log.counters.lost), (30, 1));
    assert!(log.due(101), "a full batch waits");
    let mut out = [0u8; MAX_PAYLOAD];
    assert_eq!(log.take_batch(&mut out, 0, 102), MAX_PAYLOAD);
    let rest = 30 - MAX_RECORDS;
    assert_eq!(log.len(), rest);
    let n = log.take_batch(&mut out, 0, 103);
    assert_eq!(n, HEADER_LEN + rest * RECORD_LEN);
    assert_eq!(parse(&out[..n]).unwrap().0.seq, 1);
    assert_eq!(
        (log.counters.records_sent, log.counters.batches_sent),
        (30, 2)
    );
    assert_eq!(log.take_batch(&mut out, 0, 104), 0);
}

#[test]
fn the_udp_frame_has_correct_checksums() {
    let d = datagram(&[rec(Op::Add, Nat::Nat, false)]);
    let mut f = vec![0u8; 42 + d.len()];
    f[42..].copy_from_slice(&d);
    let n = write_udp4_frame(
        &mut f,
        [2, 0, 0, 0, 0, 3],
        [2, 0, 0, 0, 0, 2],
        (Ipv4Addr::new(192, 0, 2, 2), DEFAULT_PORT),
        (Ipv4Addr::new(192, 0, 2, 3), DEFAULT_PORT),
        d.len(),
        7,
    );
    assert_eq!(n, f.len());
    let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        panic!("not IPv4")
    };
    assert_eq!(
        ip.header().to_header().calc_header_checksum(),
        ip.header().header_checksum()
    );
    let Some(etherparse::TransportSlice::Udp(u)) = p.transport else {
        panic!("not UDP")
    };
    let want = u
        .to_header()
        .calc_checksum_ipv4(&ip.header().to_header(), u.payload())
        .unwrap();
    assert_eq!(u.checksum(), want);
    assert_eq!(u.payload(), &d[..]);
}

#[test]
fn an_inbox_hands_records_from_one_thread_to_another_in_order() {
    let ib = std::sync::Arc::new(Inbox::new(8));
    let mut out = [0u8; RECORD_LEN];
    assert!(!ib.pop(&mut out));
    for i in 0..8u8 {
        assert!(ib.push(&[i; RECORD_LEN]));
    }
    assert!(!ib.push(&[9; RECORD_LEN]), "full");
    assert!(!ib.push(&[9; 10]), "short");
    for i in 0..8u8 {
        assert!(ib.pop(&mut out));
        assert_eq!(out, [i; RECORD_LEN]);
    }
    const N: u32 = 100_000;
    let p = std::sync::Arc::clone(&ib);
    let producer = std::thread::spawn(move || {
        let mut i = 0u32;
        let mut spins = 0u64;
        while i < N {
            let mut r = [0u8; RECORD_LEN];
            for c in r.chunks_exact_mut(4) {
                c.copy_from_slice(&i.to_be_bytes());
            }
            if p.push(&r) {
                i += 1;
            } else {
                spins += 1;
                assert!(spins < 1_000_000_000, "consumer stalled");
                std::thread::yield_now();
            }
        }
    });
    let mut next = 0u32;
    let t0 = std::time::Instant::now();
    while next < N {
        assert!(t0.elapsed() < std::time::Duration::from_secs(60));
        if ib.pop(&mut out) {
            for c in out.chunks_exact(4) {
                assert_eq!(c, next.to_be_bytes(), "torn or reordered record");
            }
            next += 1;
        } else {
            std::thread::yield_now();
        }
    }
    producer.join().unwrap();
}

#[test]
fn sequence_gaps_count_missed_batches_per_sending_worker() {
    let mut log = SyncLog::new(4);
    let h = |worker, seq| Header {
        count: 1,
        seq,
        worker,
        fingerprint: None,
    };
    log.note_received(&h(0, 5));
    log.note_received(&h(1, 100));
    log.note_received(&h(0, 6));
    assert_eq!(log.counters.batches_missed, 0);
    log.note_received(&h(0, 9));
    assert_eq!(log.counters.batches_missed, 2, "7 and 8");
    log.note_received(&h(1, 101));
    log.note_received(&h(0, 0));
    log.note_received(&h(0, 0));
    assert_eq!(log.counters.batches_missed, 2, "restart and duplicate");
    log.note_received(&h(0, u32::MAX));
    log.note_received(&h(0, 1));
    assert_eq!(log.counters.batches_missed, 3, "across the wrap: 0 missed");
    assert_eq!(log.counters.datagrams_received, 9);
}

#[test]
fn hellos_leave_once_a_second_only_when_nothing_else_did() {
    let mut log = SyncLog::new(30);
    let mut out = [0u8; MAX_PAYLOAD];
    assert!(!log.due(5_000), "no peer: no hello");
    log.set_peer(Some(0xabc), false);
    assert!(!log.due(5_000), "a worker that does not say hello");
    log.set_peer(Some(0xabc), true);
    assert!(log.due(5_000));
    assert_eq!(log.take_batch(&mut out, 2, 5_000), HEADER_LEN);
    let (h, _) = parse(&out[..HEADER_LEN]).unwrap();
    assert_eq!((h.count, h.worker, h.fingerprint), (0, 2, Some(0xabc)));
    assert!(!log.due(5_000 + HELLO_MS - 1));
    assert_eq!(log.take_batch(&mut out, 2, 5_000 + HELLO_MS - 1), 0);
    // A batch of records counts as a hello.
    log.set_enabled(true);
    log.push(5_500, &rec(Op::Add, Nat::Nat, false));
    let n = log.take_batch(&mut out, 2, 5_600);
    assert_eq!(n, HEADER_LEN + RECORD_LEN);
    assert!(!log.due(5_600 + HELLO_MS - 1));
    assert!(log.due(5_600 + HELLO_MS));
    // No way to the peer: the hello waits another second.
    log.defer_hello(7_000);
    assert!(!log.due(7_500));
    log.discard(8_000);
    assert!(!log.due(8_500));
    assert!(log.due(9_000));
    // Sequence numbers run through hellos and batches alike.
    let n = log.take_batch(&mut out, 2, 9_000);
    assert_eq!(parse(&out[..n]).unwrap().0.seq, 2);

    // Receiving: a differing fingerprint is counted, an equal one is not.
    let h = |fp| Header {
        count: 0,
        seq: 0,
        worker: 0,
        fingerprint: fp,
    };
    log.note_received(&h(Some(0xabc)));
    log.note_received(&h(Some(0xdef)));
    log.note_received(&h(None));
    let c = log.counters;
    assert_eq!(
        (c.datagrams_received, c.peer_fingerprint, c.config_differs),
        (3, 0xdef, 1)
    );
}
