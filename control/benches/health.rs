//! Health checker at scale: 1,000 targets (a third each TCP, HTTP, UDP) at
//! a 1 s interval against local servers for 10 s, then prints
//!
//! - checks done (seen by the servers) vs expected,
//! - lateness of each check against its intended slot (p50/p99/max), where
//!   the slot of the i-th of n targets is `start + i*interval/n +
//!   k*interval` (the staggering the module documents); the figure includes
//!   the loopback connect and the server's accept or receive,
//! - the most checks that arrived in one millisecond (the staggering),
//! - CPU time from /proc (utime + stime) as % of one core: the whole
//!   process (checker + the bench's own servers) and the checker's thread
//!   (`ferrolb-health`) alone.
//!
//! `cargo bench -p control --bench health`; FERROLB_HEALTH_TARGETS and
//! FERROLB_HEALTH_SECS change the size. Under `cargo test` (no `--bench`
//! argument) it runs a small smoke version and checks only that every
//! target came up. Nothing here asserts timing.
//!
//! Every target leaves from its own source address (127.1.x.y, all local on
//! Linux's loopback), which is how the servers tell the targets apart.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use control::config::{Check, Health, HttpCheck};
use control::health::{HealthChecker, State, Target};

/// Arrivals: (target index, when).
type Log = Arc<Mutex<Vec<(usize, Instant)>>>;

fn source_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8)
}

fn index_of(ip: IpAddr) -> Option<usize> {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            (o[0] == 127 && o[1] == 1 && o[3] >= 1).then(|| o[2] as usize * 250 + o[3] as usize - 1)
        }
        IpAddr::V6(_) => None,
    }
}

fn record(log: &Log, peer: SocketAddr) {
    if let Some(i) = index_of(peer.ip()) {
        log.lock().unwrap().push((i, Instant::now()));
    }
}

/// A blocking accept loop; `serve` handles each connection inline.
fn tcp_server(
    stop: Arc<AtomicBool>,
    log: Log,
    serve: fn(TcpStream),
) -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Ok((conn, peer)) = l.accept() {
                record(&log, peer);
                serve(conn);
            }
        }
    });
    (addr, t)
}

fn http_serve(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let _ =
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nOK\n");
}

fn udp_server(stop: Arc<AtomicBool>, log: Log) -> (SocketAddr, JoinHandle<()>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let addr = s.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = s.recv_from(&mut buf) {
                record(&log, peer);
                let _ = s.send_to(&buf[..n], peer);
            }
        }
    });
    (addr, t)
}

/// utime + stime of a /proc stat file, in seconds.
fn cpu_seconds(path: &str) -> f64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let after = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let hz = clock_ticks_per_second();
    ticks as f64 / hz as f64
}

/// CLK_TCK, as `getconf` tells it (100 on Linux when it cannot be read).
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&v: &u64| v > 0)
        .unwrap_or(100)
}

fn checker_thread_stat() -> Option<String> {
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let p = e.path();
        if std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim() == "ferrolb-health") {
            return Some(p.join("stat").to_string_lossy().into_owned());
        }
    }
    None
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = env_or("FERROLB_HEALTH_TARGETS", if full { 1000 } else { 30 }) as usize;
    let secs = env_or("FERROLB_HEALTH_SECS", if full { 10 } else { 2 });
    assert!(
        n <= 1000,
        "at most 1000 targets (source addresses 127.1.0.1-127.1.3.250)"
    );
    let interval = Duration::from_secs(1);
    let run = Duration::from_secs(secs);

    let stop = Arc::new(AtomicBool::new(false));
    let log: Log = Arc::default();
    let (tcp_addr, tcp_t) = tcp_server(stop.clone(), log.clone(), drop);
    let (http_addr, http_t) = tcp_server(stop.clone(), log.clone(), http_serve);
    let (udp_addr, udp_t) = udp_server(stop.clone(), log.clone());

    let targets: Vec<Target> = (0..n)
        .map(|i| {
            let (check, addr) = match i % 3 {
                0 => (Check::Tcp, tcp_addr),
                1 => (
                    Check::Http(HttpCheck {
                        path: "/".into(),
                        expect_status: 200,
                        expect_body: Some("OK".into()),
                    }),
                    http_addr,
                ),
                _ => (Check::Udp, udp_addr),
            };
            Target {
                // Zero-padded: key order is index order, as the slots assume.
                vip: format!("v{i:04}"),
                addr,
                probe: addr,
                bind: Some(IpAddr::V4(source_of(i))),
                check: Health {
                    check,
                    interval,
                    timeout: Duration::from_millis(500),
                    rise: 2,
                    fall: 2,
                    port: None,
                    address: None,
                },
            }
        })
        .collect();

    let ups = Arc::new(AtomicUsize::new(0));
    let downs = Arc::new(AtomicUsize::new(0));
    let (u, d) = (ups.clone(), downs.clone());
    let cpu0 = cpu_seconds("/proc/self/stat");
    let start = Instant::now();
    let hc = HealthChecker::start(targets, move |e| {
        match e.state {
            State::Up => u.fetch_add(1, Ordering::Relaxed),
            State::Down => d.fetch_add(1, Ordering::Relaxed),
        };
    })
    .expect("checker starts");
    std::thread::sleep(run);
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds("/proc/self/stat") - cpu0;
    // The thread names itself once running: look it up now.
    let checker_cpu = checker_thread_stat().as_deref().map(cpu_seconds);
    let status = hc.status();
    hc.stop();
    // Let the servers log the checks that were in flight at the end.
    std::thread::sleep(Duration::from_millis(100));
    let arrivals: Vec<(usize, Instant)> = log.lock().unwrap().clone();

    // Stop the servers: the flag, then one wake-up each.
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(tcp_addr);
    let _ = TcpStream::connect(http_addr);
    for t in [tcp_t, http_t, udp_t] {
        let _ = t.join();
    }

    // Lateness against the intended slot of each arrival.
    let iv = interval.as_secs_f64();
    let mut late = Vec::new();
    let mut per_ms: HashMap<u64, u32> = HashMap::new();
    // (target, slot number) of every check whose slot is inside the run.
    let mut slots = std::collections::HashSet::new();
    let mut in_window = 0usize;
    for (i, at) in &arrivals {
        let since = at.duration_since(start).as_secs_f64();
        let offset = iv * *i as f64 / n as f64;
        let k = ((since - offset) / iv).round().max(0.0);
        if offset + k * iv >= run.as_secs_f64() {
            continue;
        }
        in_window += 1;
        slots.insert((*i, k as u64));
        late.push((since - offset - k * iv) * 1e3);
        *per_ms.entry((since * 1e3) as u64).or_default() += 1;
    }
    late.sort_by(f64::total_cmp);
    // Slots that fall inside the run: i*iv/n + k*iv < run.
    let expected: usize = (0..n)
        .map(|i| {
            let offset = iv * i as f64 / n as f64;
            ((run.as_secs_f64() - offset) / iv).ceil().max(0.0) as usize
        })
        .sum();
    let checked: u64 = status.iter().map(|s| s.total_checks).sum();
    let up_now = status.iter().filter(|s| s.state == State::Up).count();

    println!("health bench: {n} targets (tcp/http/udp by thirds), interval 1s, {secs}s run");
    println!(
        "  checks seen by servers: {} slots of {expected} expected ({:.1}%), {} repeats; checker counted {checked}",
        slots.len(),
        100.0 * slots.len() as f64 / expected.max(1) as f64,
        in_window - slots.len()
    );
    println!(
        "  lateness vs slot (ms): p50 {:.3}  p99 {:.3}  max {:.3}  (min {:.3})",
        pct(&late, 0.5),
        pct(&late, 0.99),
        late.last().copied().unwrap_or(f64::NAN),
        late.first().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  most checks in one millisecond: {}",
        per_ms.values().max().copied().unwrap_or(0)
    );
    println!(
        "  events: {} up, {} down; up at the end: {up_now} of {n}",
        ups.load(Ordering::Relaxed),
        downs.load(Ordering::Relaxed)
    );
    println!(
        "  CPU, whole process (checker + bench servers): {:.2}s in {wall:.2}s = {:.1}% of one core",
        cpu,
        100.0 * cpu / wall
    );
    match checker_cpu {
        Some(c) => println!(
            "  CPU, checker thread alone: {c:.2}s = {:.1}% of one core",
            100.0 * c / wall
        ),
        None => println!("  CPU, checker thread: not found in /proc/self/task"),
    }
    assert_eq!(up_now, n, "every target came up");
}
