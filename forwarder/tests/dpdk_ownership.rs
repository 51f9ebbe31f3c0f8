//! Ownership rules of the DPDK wrapper, on a real EAL with virtual devices:
//! every mbuf that enters a burst, a port or a ring comes back to the pool.
//!
//! One EAL per test binary (DPDK allows one init per process), shared by
//! the tests through a `OnceLock`; tests that touch a port take a lock.

#![cfg(feature = "dpdk")]

use std::sync::{Mutex, MutexGuard, OnceLock};

use forwarder::buffer::PacketBuf;
use forwarder::dpdk::{
    self, Burst, Eal, Mempool, Port, PortConfig, QueueId, SteerSide, Steering, BURST_SIZE,
};

struct Env {
    _eal: Eal,
    pool: Mempool,
    null: Port,
    ring: Port,
}

static ENV: OnceLock<Mutex<Env>> = OnceLock::new();

fn env() -> MutexGuard<'static, Env> {
    let m = ENV.get_or_init(|| {
        let prefix = format!("--file-prefix=ferrolb-test-{}", std::process::id());
        let eal = Eal::init(&[
            "-l",
            "0-1",
            "--no-huge",
            "--no-pci",
            "--no-telemetry",
            prefix.as_str(),
            "--log-level=lib.eal:error",
            "--vdev=net_null0",
            "--vdev=net_ring0",
            "--vdev=net_null1",
        ])
        .expect("EAL init for tests (run as root with DPDK installed)");
        let pool = Mempool::new("test_pool", 4095, 0, 0).expect("mempool");
        let null = Port::by_name("net_null0").expect("net_null0");
        let ring = Port::by_name("net_ring0").expect("net_ring0");
        for p in [&null, &ring] {
            p.configure(&PortConfig::default(), &pool)
                .expect("configure");
            p.start().expect("start");
        }
        Mutex::new(Env {
            _eal: eal,
            pool,
            null,
            ring,
        })
    });
    m.lock().unwrap_or_else(|e| e.into_inner())
}

const Q: QueueId = QueueId(0);

#[test]
fn alloc_and_drop_return_every_mbuf() {
    let e = env();
    let base = e.pool.in_use();
    let frames: Vec<_> = (0..100)
        .map(|i| e.pool.alloc_with(&[i as u8; 60]).expect("alloc"))
        .collect();
    assert_eq!(e.pool.in_use(), base + 100);
    assert_eq!(frames[7].data(), &[7u8; 60][..]);
    drop(frames);
    assert_eq!(e.pool.in_use(), base);
}

#[test]
fn mbuf_grows_and_shrinks_within_its_room() {
    let e = env();
    let base = e.pool.in_use();
    let mut m = e.pool.alloc_with(&[1, 2, 3, 4]).expect("alloc");
    assert!(m.prepend(20));
    assert_eq!(m.len(), 24);
    assert!(m.adj(20));
    assert_eq!(m.data(), &[1, 2, 3, 4]);
    assert!(!m.prepend(4096), "headroom is 128 bytes");
    assert!(!m.adj(5));
    assert!(m.trim(2));
    assert_eq!(m.data(), &[1, 2]);
    assert_eq!(m.rss_hash(), None);
    drop(m);
    assert_eq!(e.pool.in_use(), base);
}

#[test]
fn null_port_rx_and_tx_leak_nothing() {
    let e = env();
    let base = e.pool.in_use();
    let mut rx = Burst::new();
    let n = e.null.rx_burst(Q, &mut rx);
    assert_eq!(n, BURST_SIZE, "net_null fills whole bursts");
    assert_eq!(e.pool.in_use(), base + BURST_SIZE as u32);
    // Half of them go out (the driver frees them), half are dropped here.
    let mut tx = Burst::new();
    for (i, m) in rx.drain().enumerate() {
        if i % 2 == 0 {
            tx.push(m).expect("room");
        }
    }
    assert_eq!(e.null.tx_burst(Q, &mut tx), (BURST_SIZE / 2, 0));
    assert!(tx.is_empty());
    assert_eq!(e.pool.in_use(), base);
}

#[test]
fn burst_refuses_a_33rd_frame_and_frees_on_drop() {
    let e = env();
    let base = e.pool.in_use();
    {
        let mut b = Burst::new();
        for _ in 0..BURST_SIZE {
            b.push(e.pool.alloc().expect("alloc")).expect("room");
        }
        let extra = e.pool.alloc().expect("alloc");
        let back = b.push(extra).expect_err("full");
        drop(back);
        assert_eq!(e.pool.in_use(), base + BURST_SIZE as u32);
        // A partly consumed drain frees the rest.
        let mut d = b.drain();
        let first = d.next().expect("first");
        drop(d);
        assert!(b.is_empty());
        drop(first);
    }
    assert_eq!(e.pool.in_use(), base);
}

#[test]
fn ring_port_loops_frames_back_intact() {
    let e = env();
    let base = e.pool.in_use();
    let mut tx = Burst::new();
    for i in 0..10u8 {
        tx.push(e.pool.alloc_with(&[i; 64]).expect("alloc"))
            .expect("room");
    }
    assert_eq!(e.ring.tx_burst(Q, &mut tx), (10, 0));
    let mut rx = Burst::new();
    assert_eq!(e.ring.rx_burst(Q, &mut rx), 10);
    for (i, m) in rx.drain().enumerate() {
        assert_eq!(m.data(), &[i as u8; 64][..]);
    }
    assert_eq!(e.pool.in_use(), base);
}

#[test]
fn rss_hash_travels_with_the_mbuf_and_is_read_in_the_burst() {
    let e = env();
    let base = e.pool.in_use();
    let mut tx = Burst::new();
    for i in 0..4u32 {
        let mut m = e.pool.alloc_with(&[i as u8; 64]).expect("alloc");
        m.set_rss_hash((i % 2 == 1).then_some(0x51cc_c178 ^ i));
        tx.push(m).expect("room");
    }
    assert_eq!(e.ring.tx_burst(Q, &mut tx), (4, 0));
    let mut rx = Burst::new();
    assert_eq!(e.ring.rx_burst(Q, &mut rx), 4);
    let got: Vec<_> = (0..5).map(|i| rx.rss_hash(i)).collect();
    assert_eq!(
        got,
        [None, Some(0x51cc_c179), None, Some(0x51cc_c17b), None],
        "burst slots 0..4, and past its end"
    );
    for (i, mut m) in rx.drain().enumerate() {
        assert_eq!(m.rss_hash(), (i % 2 == 1).then_some(0x51cc_c178 ^ i as u32));
        m.set_rss_hash(None);
        assert_eq!(m.rss_hash(), None);
    }
    assert_eq!(e.pool.in_use(), base);
}

#[test]
fn rss_key_is_programmed_where_the_device_takes_it() {
    let e = env();
    // net_null hashes nothing but keeps an RSS configuration (40-byte
    // key, every hash type): the key must read back.
    let p = Port::by_name("net_null1").expect("net_null1");
    let key: [u8; 40] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5a);
    let with = PortConfig {
        rss_key: Some(key),
        ..PortConfig::default()
    };
    p.configure(&with, &e.pool).expect("configure with a key");
    p.start().expect("start");
    let st = p.rss_key_state(&key);
    assert!(st.v4_with_key, "net_null1 took the key: {st:?}");
    p.stop().expect("stop");
    // A device without RSS (net_ring): nothing to reuse, no error.
    assert!(!e.ring.rss_key_state(&key).v4_with_key);
    drop(e);
}

#[test]
fn steering_falls_back_with_a_reason_and_the_redirection_table_reads_back() {
    let e = env();
    let p = Port::by_name("net_null1").expect("net_null1");
    // net_null hashes every type over whole flows, with a key of ours and
    // a 128-entry redirection table, but lists no one-side modifier: it
    // is configured for flow rules that would narrow the hash ...
    let two = PortConfig {
        rx_queues: 2,
        tx_queues: 2,
        steer: Some(SteerSide::Source),
        ..PortConfig::default()
    };
    let got = p
        .configure(&two, &e.pool)
        .expect("configure with two queues");
    assert_eq!(got, Steering::NicFlowRules(SteerSide::Source));
    p.start().expect("start");
    // ... its redirection table takes the steering layout and reads it
    // back: the queue of a hash is the owner's ...
    p.program_reta(2)
        .expect("net_null1 takes the redirection table");
    // ... and it has no flow rules: the reason names the rule and the
    // device's answer.
    let why = p.steer_by_flow_rules(SteerSide::Source).unwrap_err();
    eprintln!("{why}");
    assert!(
        why.starts_with("net_null1 refused the flow rule that hashes IPv4 TCP frames on source fields only, L3_SRC_ONLY, L4_SRC_ONLY (rte_flow"),
        "{why}"
    );
    p.stop().expect("stop");
    // Without steering asked for, nothing is said.
    let plain = PortConfig { steer: None, ..two };
    assert_eq!(
        p.configure(&plain, &e.pool).expect("configure"),
        Steering::Off
    );
    // One queue: nothing to steer.
    let one = PortConfig {
        steer: Some(SteerSide::Destination),
        ..PortConfig::default()
    };
    assert_eq!(
        p.configure(&one, &e.pool).expect("configure"),
        Steering::Off
    );
    // A device without RSS or a redirection table (net_ring).
    let why = e.ring.program_reta(1).unwrap_err();
    assert!(why.contains("net_ring0"), "{why}");
    drop(e);
}

#[test]
fn frames_the_driver_refuses_are_freed_not_leaked() {
    let e = env();
    let base = e.pool.in_use();
    // Fill the ring until the driver refuses frames (bounded: the ring holds
    // at most a few thousand).
    let mut refused = 0;
    let mut accepted = 0;
    for _ in 0..200 {
        let mut tx = Burst::new();
        for _ in 0..BURST_SIZE {
            match e.pool.alloc() {
                Some(m) => tx.push(m).expect("room"),
                None => break,
            }
        }
        let (s, d) = e.ring.tx_burst(Q, &mut tx);
        accepted += s;
        refused += d;
        if d > 0 {
            break;
        }
    }
    assert!(refused > 0, "the ring never refused a frame");
    assert_eq!(
        e.pool.in_use(),
        base + accepted as u32,
        "refused frames were freed"
    );
    // Drain the ring: everything comes back.
    let mut rx = Burst::new();
    let mut got = 0;
    for _ in 0..1000 {
        let n = e.ring.rx_burst(Q, &mut rx);
        if n == 0 {
            break;
        }
        got += n;
        rx.free_all();
    }
    assert_eq!(got, accepted);
    assert_eq!(e.pool.in_use(), base);
}

#[test]
fn panics_on_a_worker_lcore_are_caught_and_reported() {
    let _e = env();
    let lcores = dpdk::worker_lcores();
    assert_eq!(lcores.len(), 1, "-l 0-1 gives one worker lcore");
    dpdk::launch(lcores[0], || 7).expect("launch");
    assert_eq!(dpdk::wait_lcore(lcores[0]), 7);
    dpdk::launch(lcores[0], || panic!("boom on purpose")).expect("launch");
    assert_eq!(dpdk::wait_lcore(lcores[0]), -1);
    // The lcore is usable again.
    dpdk::launch(lcores[0], || 0).expect("launch");
    assert_eq!(dpdk::wait_lcore(lcores[0]), 0);
}

#[test]
fn port_reports_mac_link_and_counters() {
    let e = env();
    let mac = e.null.mac().expect("mac");
    assert_ne!(mac, [0; 6]);
    assert!(e.null.link().is_ok());
    let before = e.ring.stats().expect("stats");
    let mut tx = Burst::new();
    tx.push(e.pool.alloc_with(&[0u8; 60]).expect("alloc"))
        .expect("room");
    e.ring.tx_burst(Q, &mut tx);
    let mut rx = Burst::new();
    e.ring.rx_burst(Q, &mut rx);
    rx.free_all();
    let after = e.ring.stats().expect("stats");
    assert_eq!(after.tx_packets, before.tx_packets + 1);
    assert!(Port::by_name("net_nonexistent9").is_err());
    assert!(dpdk::version().contains("22.11"), "{}", dpdk::version());
}
