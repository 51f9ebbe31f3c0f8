//! The checker against small servers of its own on 127.0.0.1. Every server
//! and every wait is bounded in count and time; nothing leaves the host.

use super::*;
use crate::config::HttpCheck;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant as StdInstant;

/// Longest any test waits for something that should happen.
const WAIT: Duration = Duration::from_secs(10);
/// Longest any server thread lives.
const SERVER_LIFE: Duration = Duration::from_secs(30);

fn check(kind: HealthKind, interval_ms: u64, timeout_ms: u64, rise: u32, fall: u32) -> Health {
    let check = match kind {
        HealthKind::None => Check::None,
        HealthKind::Tcp => Check::Tcp,
        HealthKind::Udp => Check::Udp,
        HealthKind::Http => Check::Http(HttpCheck {
            path: "/ready".into(),
            expect_status: 200,
            expect_body: None,
        }),
    };
    Health {
        check,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        rise,
        fall,
        port: None,
        address: None,
    }
}

fn target(vip: &str, addr: SocketAddr, check: Health) -> Target {
    Target {
        vip: vip.into(),
        addr,
        probe: addr,
        bind: None,
        check,
    }
}

/// Starts a checker whose events arrive on the returned channel.
fn start(targets: Vec<Target>) -> (HealthChecker, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let hc = HealthChecker::start(targets, move |e| {
        let _ = tx.send(e);
    })
    .expect("checker starts");
    (hc, rx)
}

/// The next event, or a panic after [`WAIT`].
fn next_event(rx: &mpsc::Receiver<Event>) -> Event {
    rx.recv_timeout(WAIT).expect("an event within the wait")
}

/// Polls `cond` every 5 ms for at most [`WAIT`].
fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let end = StdInstant::now() + WAIT;
    while StdInstant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A TCP server on 127.0.0.1 that hands each connection (numbered from 1)
/// to `handle` on a thread of its own, until dropped.
struct Server {
    addr: SocketAddr,
    /// Connections accepted so far.
    count: Arc<AtomicUsize>,
    /// Source addresses of the connections, in order.
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn tcp(handle: impl Fn(usize, TcpStream, &AtomicBool) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let (c, p, s) = (count.clone(), peers.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let end = StdInstant::now() + SERVER_LIFE;
            let mut workers = Vec::new();
            while !s.load(Ordering::Relaxed) && StdInstant::now() < end {
                match listener.accept() {
                    Ok((conn, peer)) => {
                        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                        lock(&p).push(peer);
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
                        let (h, s) = (handle.clone(), s.clone());
                        workers.push(std::thread::spawn(move || h(n, conn, &s)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            for w in workers {
                let _ = w.join();
            }
        });
        Server {
            addr,
            count,
            peers,
            stop,
            thread: Some(thread),
        }
    }

    /// An HTTP server answering the n-th request with `respond(n)`.
    fn http(respond: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static) -> Server {
        Server::tcp(move |n, mut conn, _| {
            read_request(&mut conn);
            let _ = conn.write_all(&respond(n));
        })
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads up to the end of the request head (bounded).
fn read_request(conn: &mut TcpStream) -> Vec<u8> {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    req
}

/// Sleeps until the server stops, at most 5 s.
fn stall(stop: &AtomicBool) {
    let end = StdInstant::now() + Duration::from_secs(5);
    while !stop.load(Ordering::Relaxed) && StdInstant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ok_response(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A local port where nothing listens (bound, then released).
fn closed_tcp_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
}

fn http_check(body: Option<&str>) -> Health {
    Health {
        check: Check::Http(HttpCheck {
            path: "/ready".into(),
            expect_status: 200,
            expect_body: body.map(str::to_string),
        }),
        ..check(HealthKind::Http, 100, 1000, 2, 2)
    }
}

/// Checks one target until its first event.
fn first_event(t: Target) -> (Event, TargetStatus) {
    let (hc, rx) = start(vec![t]);
    let ev = next_event(&rx);
    let st = hc.status().remove(0);
    (ev, st)
}

// ------------------------------------------------------------------ tcp

#[test]
fn tcp_listening_comes_up_on_first_success() {
    let server = Server::tcp(|_, _, _| {});
    let (ev, st) = first_event(target(
        "web",
        server.addr,
        check(HealthKind::Tcp, 100, 1000, 3, 2),
    ));
    assert_eq!(
        ev,
        Event {
            vip: "web".into(),
            addr: server.addr,
            state: State::Up,
            reason: "tcp: connected".into(),
        }
    );
    assert!(!st.pending);
    assert_eq!(st.state, State::Up);
    assert_eq!(st.kind, HealthKind::Tcp);
    assert!(st.total_checks >= 1);
    assert_eq!(st.last_ok, Some(true));
    assert!(st.last_check.is_some() && st.last_latency.is_some() && st.last_change.is_some());
    // The kernel completed the handshake; the server accepts a little later.
    assert!(wait_until(|| server.count() >= 1));
}

#[test]
fn tcp_closed_port_goes_down_after_fall_as_refused() {
    let addr = closed_tcp_port();
    let (ev, st) = first_event(target("web", addr, check(HealthKind::Tcp, 50, 1000, 2, 3)));
    assert_eq!(ev.state, State::Down);
    assert_eq!(ev.reason, "connect: connection refused");
    assert!(!st.pending);
    assert!(st.consecutive_failures >= 3, "{st:?}");
    assert_eq!(st.consecutive_successes, 0);
    assert!(st.total_failures >= 3 && st.total_failures == st.total_checks);
}

/// The kernel completes the handshake for a listening socket whether or not
/// the application ever calls accept(): a TCP check cannot see a hung
/// server (an HTTP check can, see `http_headers_then_stall_times_out`).
#[test]
fn tcp_listener_that_never_accepts_is_up() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (ev, _) = first_event(target("web", addr, check(HealthKind::Tcp, 100, 1000, 1, 1)));
    assert_eq!(
        (ev.state, ev.reason.as_str()),
        (State::Up, "tcp: connected")
    );
    drop(listener);
}

/// A server whose accept queue is full drops the SYN, as a blackhole does:
/// the connect times out (all on loopback).
#[test]
fn tcp_full_accept_queue_is_a_connect_timeout() {
    // A backlog of 0, which std's TcpListener does not offer.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let bind: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&bind.into()).expect("bind");
    listener.listen(0).expect("listen");
    let listener: TcpListener = listener.into();
    let addr = listener.local_addr().expect("addr");
    // Fill the queue until a connect no longer completes (bounded).
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    assert!(fillers.len() < 16, "the accept queue never filled");
    let (ev, _) = first_event(target("web", addr, check(HealthKind::Tcp, 300, 200, 1, 1)));
    assert_eq!(ev.state, State::Down);
    assert_eq!(ev.reason, "connect: timeout after 200ms");
}

#[test]
fn pending_state_before_the_first_check() {
    let addr = closed_tcp_port();
    // One check per hour: the first is at once, then nothing.
    let (hc, rx) = start(vec![target(
        "web",
        addr,
        check(HealthKind::Tcp, 3_600_000, 1000, 1, 2),
    )]);
    assert!(wait_until(|| hc.status()[0].total_checks == 1));
    let st = hc.status().remove(0);
    // One failure of two: still pending, still down, no event.
    assert_eq!((st.state, st.pending), (State::Down, true));
    assert_eq!(st.consecutive_failures, 1);
    assert_eq!(st.last_reason, "connect: connection refused");
    assert!(rx.try_recv().is_err());
}

// ----------------------------------------------------------------- http

#[test]
fn http_200_with_body_is_up() {
    let server = Server::http(|_| ok_response("all OK\n"));
    let (ev, _) = first_event(target("web", server.addr, http_check(Some("OK"))));
    assert_eq!(ev.state, State::Up);
    assert_eq!(ev.reason, "http: status 200, body has \"OK\"");
}

#[test]
fn http_request_names_path_host_and_close() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let server = Server::tcp(move |_, mut conn, _| {
        let req = read_request(&mut conn);
        lock(&s).push(req);
        let _ = conn.write_all(&ok_response("OK"));
    });
    let (ev, _) = first_event(target("web", server.addr, http_check(None)));
    assert_eq!(ev.state, State::Up);
    let req = String::from_utf8(lock(&seen)[0].clone()).expect("ascii");
    assert!(req.starts_with("GET /ready HTTP/1.1\r\n"), "{req}");
    assert!(
        req.contains(&format!("\r\nHost: {}\r\n", server.addr)),
        "{req}"
    );
    assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
}

#[test]
fn http_404_is_down_naming_the_status() {
    let server = Server::http(|_| b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec());
    let (ev, _) = first_event(target("web", server.addr, http_check(None)));
    assert_eq!(ev.state, State::Down);
    assert_eq!(ev.reason, "http: status 404, expected 200");
}

#[test]
fn http_wrong_body_is_down_naming_the_expected_text() {
    let server = Server::http(|_| ok_response("maintenance\n"));
    let (ev, _) = first_event(target("web", server.addr, http_check(Some("OK"))));
    assert_eq!(ev.state, State::Down);
    assert_eq!(ev.reason, "http: body lacks \"OK\"");
}

#[test]
fn http_headers_then_stall_times_out() {
    let server = Server::tcp(|_, mut conn, stop| {
        read_request(&mut conn);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nnot yet");
        stall(stop);
    });
    let mut c = http_check(Some("OK"));
    c.timeout = Duration::from_millis(200);
    c.fall = 1;
    let (ev, st) = first_event(target("web", server.addr, c));
    assert_eq!(ev.state, State::Down);
    assert_eq!(ev.reason, "http: timeout after 200ms reading the body");
    assert!(st
        .last_latency
        .is_some_and(|l| l >= Duration::from_millis(200)));
}

#[test]
fn http_silent_server_times_out() {
    let server = Server::tcp(|_, mut conn, stop| {
        read_request(&mut conn);
        stall(stop);
    });
    let mut c = http_check(None);
    c.timeout = Duration::from_millis(200);
    c.fall = 1;
    let (ev, _) = first_event(target("web", server.addr, c));
    assert_eq!(
        ev.reason,
        "http: timeout after 200ms waiting for a response"
    );
}

#[test]
fn http_endless_body_is_read_only_up_to_the_limit() {
    // The server writes until the checker hangs up (or 64 MiB: it never
    // gets there, loopback buffers hold a few MiB at most).
    const CAP: usize = 64 << 20;
    let written = Arc::new(AtomicUsize::new(0));
    let w = written.clone();
    let server = Server::tcp(move |_, mut conn, _| {
        read_request(&mut conn);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        let chunk = [b'x'; 16 * 1024];
        let mut n = 0;
        while n < CAP {
            match conn.write(&chunk) {
                Ok(k) => n += k,
                Err(_) => break,
            }
        }
        w.store(n, Ordering::SeqCst);
    });
    let mut c = http_check(Some("OK"));
    c.fall = 1;
    let (ev, _) = first_event(target("web", server.addr, c));
    assert_eq!(ev.state, State::Down);
    assert_eq!(
        ev.reason,
        "http: body lacks \"OK\" in the first 64 KiB of the response"
    );
    drop(server);
    let n = written.load(Ordering::SeqCst);
    assert!(n < CAP, "the checker kept reading: {n} bytes");
}

#[test]
fn http_chunked_body_is_decoded() {
    // "OK" split across two chunks, with an extension and a trailer.
    let server = Server::http(|_| {
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nall\r\n2\r\n O\r\n1\r\nK\r\n0\r\nX-Check: 1\r\n\r\n"
            .to_vec()
    });
    let (ev, _) = first_event(target("web", server.addr, http_check(Some("all OK"))));
    assert_eq!(ev.state, State::Up);
    assert_eq!(ev.reason, "http: status 200, body has \"all OK\"");
}

#[test]
fn http_body_to_close_without_length() {
    let server = Server::http(|_| b"HTTP/1.0 200 OK\r\n\r\nready: OK\n".to_vec());
    let (ev, _) = first_event(target("web", server.addr, http_check(Some("OK"))));
    assert_eq!(ev.state, State::Up);
}

#[test]
fn http_malformed_status_line_is_down() {
    let server = Server::http(|_| b"HTTP/1.1 two hundred\r\n\r\n".to_vec());
    let (ev, _) = first_event(target("web", server.addr, http_check(None)));
    assert_eq!(ev.state, State::Down);
    assert_eq!(
        ev.reason,
        "http: malformed status line \"HTTP/1.1 two hundred\""
    );
}

#[test]
fn http_closed_port_is_refused() {
    let (ev, _) = first_event(target("web", closed_tcp_port(), http_check(None)));
    assert_eq!(ev.reason, "connect: connection refused");
}

// ------------------------------------------------------------------ udp

/// A UDP echo server on 127.0.0.1, until dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let end = StdInstant::now() + SERVER_LIFE;
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::Relaxed) && StdInstant::now() < end {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], peer);
                }
            }
        });
        Echo {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn udp_echo_is_up() {
    let echo = Echo::start();
    let (ev, _) = first_event(target(
        "dns",
        echo.addr,
        check(HealthKind::Udp, 100, 1000, 2, 2),
    ));
    assert_eq!(ev.state, State::Up);
    assert_eq!(
        ev.reason,
        format!("udp: reply of {} bytes", UDP_PAYLOAD.len())
    );
}

#[test]
fn udp_no_server_is_refused() {
    let addr = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind");
    let (ev, _) = first_event(target("dns", addr, check(HealthKind::Udp, 50, 1000, 2, 2)));
    assert_eq!(ev.state, State::Down);
    assert_eq!(ev.reason, "udp: connection refused (ICMP port unreachable)");
}

#[test]
fn udp_silent_server_times_out() {
    // Bound but never read: no reply, and no ICMP error either.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let (ev, _) = first_event(target("dns", addr, check(HealthKind::Udp, 150, 100, 1, 1)));
    assert_eq!(ev.reason, "udp: timeout after 100ms waiting for a reply");
}

// ------------------------------------------------------ none, bind, config

#[test]
fn none_is_up_at_once_without_traffic() {
    let server = Server::tcp(|_, _, _| {});
    let (hc, rx) = start(vec![target(
        "web",
        server.addr,
        check(HealthKind::None, 20, 20, 1, 1),
    )]);
    let ev = next_event(&rx);
    assert_eq!(
        (ev.state, ev.reason.as_str()),
        (State::Up, "no health check")
    );
    std::thread::sleep(Duration::from_millis(200));
    let st = hc.status().remove(0);
    assert_eq!(
        (st.state, st.pending, st.total_checks),
        (State::Up, false, 0)
    );
    assert_eq!(server.count(), 0);
    assert!(rx.try_recv().is_err());
}

#[test]
fn checks_leave_from_the_bind_address() {
    let server = Server::tcp(|_, _, _| {});
    let mut t = target("web", server.addr, check(HealthKind::Tcp, 100, 1000, 1, 1));
    t.bind = Some("127.0.0.2".parse().unwrap());
    let (ev, st) = first_event(t);
    assert_eq!(ev.state, State::Up);
    assert_eq!(st.bind, Some("127.0.0.2".parse().unwrap()));
    assert!(wait_until(|| server.count() >= 1));
    let peer = lock(&server.peers)[0];
    assert_eq!(peer.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());
}

#[test]
fn udp_leaves_from_the_bind_address() {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let addr = sock.local_addr().expect("addr");
    let mut t = target("dns", addr, check(HealthKind::Udp, 100, 1000, 1, 1));
    t.bind = Some("127.0.0.3".parse().unwrap());
    let (hc, rx) = start(vec![t]);
    let mut buf = [0u8; 64];
    let (n, peer) = sock.recv_from(&mut buf).expect("a datagram");
    assert_eq!(&buf[..n], UDP_PAYLOAD);
    assert_eq!(peer.ip(), "127.0.0.3".parse::<IpAddr>().unwrap());
    sock.send_to(b"pong", peer).expect("reply");
    assert_eq!(next_event(&rx).reason, "udp: reply of 4 bytes");
    drop(hc);
}

#[test]
fn bind_of_the_wrong_family_is_a_reason() {
    let server = Server::tcp(|_, _, _| {});
    let mut t = target("web", server.addr, check(HealthKind::Tcp, 50, 1000, 1, 1));
    t.bind = Some("::1".parse().unwrap());
    let (ev, _) = first_event(t);
    assert_eq!(ev.state, State::Down);
    assert_eq!(
        ev.reason,
        "bind ::1: not of the same address family as 127.0.0.1"
    );
    assert_eq!(server.count(), 0);
}

#[test]
fn port_zero_cannot_be_checked() {
    let (ev, _) = first_event(target(
        "all",
        "127.0.0.1:0".parse().unwrap(),
        check(HealthKind::Tcp, 50, 1000, 1, 1),
    ));
    assert_eq!(
        ev.reason,
        "no port to check (the VIP covers every port: set [vip.health] port)"
    );
}

#[test]
fn targets_follow_the_config() {
    let text = r#"
[dataplane]
eal_args = ["--no-pci"]

[[port]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.2/24"]
gateway = "192.0.2.1"

[[vip]]
name = "web"
address = "192.0.2.100"
port = 8080
mode = "nat"
  [vip.health]
  type = "http"
  path = "/ready.txt"
  expect_body = "OK"
  interval = "2s"
  timeout = "500ms"
  [[vip.real]]
  address = "192.0.2.21"
  port = 80
  [[vip.real]]
  address = "203.0.113.5"
  port = 80

[[vip]]
name = "dns"
address = "192.0.2.101"
protocol = "udp"
port = 53
  [[vip.real]]
  address = "192.0.2.31"
"#;
    let cfg = crate::config::parse("lb.toml", text).expect("valid config");
    let t = targets_from_config(&cfg);
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].vip, "web");
    assert_eq!(t[0].addr, "192.0.2.21:80".parse().unwrap());
    assert_eq!(t[0].bind, Some("192.0.2.2".parse().unwrap()));
    assert_eq!(t[0].check.kind(), HealthKind::Http);
    assert!(matches!(&t[0].check.check, Check::Http(h) if h.path == "/ready.txt"));
    assert_eq!(t[0].check.interval, Duration::from_secs(2));
    // Routed through the gateway: the kernel picks the source.
    assert_eq!(t[1].addr, "203.0.113.5:80".parse().unwrap());
    assert_eq!(t[1].bind, None);
    assert_eq!(t[2].vip, "dns");
    assert_eq!(t[2].addr, "192.0.2.31:53".parse().unwrap());
    assert_eq!(t[2].check, no_check());
}

// ------------------------------------------------------------ rise/fall

#[test]
fn tracker_table() {
    use State::{Down, Up};
    // (rise, fall, results, the event after each result)
    type Row = (u32, u32, &'static str, &'static [Option<State>]);
    let rows: &[Row] = &[
        (2, 2, "+", &[Some(Up)]),
        (2, 2, "-", &[None]),
        (2, 2, "--", &[None, Some(Down)]),
        (2, 2, "---", &[None, Some(Down), None]),
        (1, 1, "-", &[Some(Down)]),
        (3, 2, "+-+", &[Some(Up), None, None]),
        (
            3,
            2,
            "+--+++",
            &[Some(Up), None, Some(Down), None, None, Some(Up)],
        ),
        (
            3,
            2,
            "+--++-+++",
            &[
                Some(Up),
                None,
                Some(Down),
                None,
                None,
                None,
                None,
                None,
                Some(Up),
            ],
        ),
        (2, 3, "---+-+", &[None, None, Some(Down), None, None, None]),
        (
            1,
            3,
            "+--+---",
            &[Some(Up), None, None, None, None, None, Some(Down)],
        ),
    ];
    for (rise, fall, results, want) in rows {
        let mut t = Tracker::NEW;
        let got: Vec<Option<State>> = results
            .chars()
            .map(|c| t.record(c == '+', *rise, *fall))
            .collect();
        assert_eq!(&got, want, "rise {rise} fall {fall} {results}");
    }
    let mut t = Tracker::NEW;
    assert_eq!(t.force_up(), Some(Up));
    assert_eq!(t.force_up(), None);
}

/// Rise and fall counted exactly, against servers that answer 200 or 503
/// as a script says. The n-th event must come right after the server
/// answered the check named in the table (numbered from 1).
#[test]
fn rise_and_fall_are_exact_against_scripted_servers() {
    use State::{Down, Up};
    type Row = (
        &'static str,
        u32,
        u32,
        &'static str,
        &'static [(usize, State)],
    );
    let rows: &[Row] = &[
        ("a", 2, 2, "+-+--++", &[(1, Up), (5, Down), (7, Up)]),
        ("b", 3, 1, "--++-+++", &[(1, Down), (8, Up)]),
        ("c", 1, 3, "----+--+---", &[(3, Down), (5, Up), (11, Down)]),
        ("d", 2, 2, "++++", &[(1, Up)]),
        ("e", 2, 2, "+-+-+-", &[(1, Up)]),
    ];
    let mut servers = HashMap::new();
    let mut targets = Vec::new();
    for (name, rise, fall, script, _) in rows {
        let script: Vec<bool> = script.chars().map(|c| c == '+').collect();
        let server = Server::http(move |n| {
            // After the script, keep its last answer.
            if script[(n - 1).min(script.len() - 1)] {
                ok_response("OK")
            } else {
                b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec()
            }
        });
        targets.push(target(
            name,
            server.addr,
            check(HealthKind::Http, 60, 1000, *rise, *fall),
        ));
        servers.insert(name.to_string(), server);
    }
    let counts: HashMap<String, Arc<AtomicUsize>> = servers
        .iter()
        .map(|(k, s)| (k.clone(), s.count.clone()))
        .collect();
    let seen: Arc<Mutex<Vec<(String, usize, State)>>> = Arc::default();
    let log = seen.clone();
    let hc = HealthChecker::start(targets, move |e| {
        let n = counts[&e.vip].load(Ordering::SeqCst);
        lock(&log).push((e.vip, n, e.state));
    })
    .expect("checker starts");
    let done = wait_until(|| {
        rows.iter()
            .all(|(name, _, _, script, _)| servers[*name].count() > script.len())
    });
    hc.stop();
    assert!(done, "every script played out");
    let seen = lock(&seen).clone();
    for (name, _, _, script, want) in rows {
        let got: Vec<(usize, State)> = seen
            .iter()
            .filter(|(v, n, _)| v == name && *n <= script.len())
            .map(|(_, n, s)| (*n, *s))
            .collect();
        assert_eq!(&got, want, "row {name}");
    }
}

// ------------------------------------------------------- reconfiguration

#[test]
fn update_keeps_unchanged_starts_new_and_stops_removed() {
    let a = Server::tcp(|_, _, _| {});
    let b = Server::tcp(|_, _, _| {});
    let c = Server::tcp(|_, _, _| {});
    let tcp = check(HealthKind::Tcp, 50, 1000, 2, 2);
    let ta = target("web", a.addr, tcp.clone());
    let tb = target("web", b.addr, tcp.clone());
    let tc = target("web", c.addr, tcp.clone());
    let (hc, rx) = start(vec![ta.clone(), tb.clone()]);
    let mut up: Vec<SocketAddr> = (0..2).map(|_| next_event(&rx).addr).collect();
    up.sort();
    let mut want = vec![a.addr, b.addr];
    want.sort();
    assert_eq!(up, want);
    let before = hc
        .status()
        .into_iter()
        .find(|s| s.addr == a.addr)
        .expect("a");

    hc.update(vec![ta.clone(), tc.clone()]);
    // The new target is checked and comes up; nothing else changes state.
    let ev = next_event(&rx);
    assert_eq!((ev.addr, ev.state), (c.addr, State::Up));
    // The removed one is no longer contacted: its count settles (a check
    // in flight during update may still land) and then stays put.
    let settled = b.count();
    std::thread::sleep(Duration::from_millis(300));
    assert!(b.count() <= settled + 1, "{} -> {}", settled, b.count());
    let settled = b.count();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(b.count(), settled, "removed target still checked");

    let st = hc.status();
    let addrs: Vec<SocketAddr> = st.iter().map(|s| s.addr).collect();
    assert!(addrs.contains(&a.addr) && addrs.contains(&c.addr) && !addrs.contains(&b.addr));
    let after = st.iter().find(|s| s.addr == a.addr).expect("a");
    // Unchanged: still up, counters carried on.
    assert_eq!((after.state, after.pending), (State::Up, false));
    assert!(after.total_checks > before.total_checks);
    assert!(after.consecutive_successes > before.consecutive_successes);
    assert_eq!(after.last_change, before.last_change);
    assert!(rx.try_recv().is_err(), "no event for the unchanged target");

    // A changed check restarts the task but keeps state and counters.
    let mut ta2 = ta.clone();
    ta2.check.interval = Duration::from_millis(40);
    ta2.check.fall = 5;
    hc.update(vec![ta2, tc]);
    let st = hc.status();
    assert_eq!(st.len(), 2);
    let a_now = st.iter().find(|s| s.addr == a.addr).expect("a");
    assert_eq!((a_now.state, a_now.pending), (State::Up, false));
    assert!(a_now.total_checks >= after.total_checks);
    let t0 = a_now.total_checks;
    assert!(wait_until(|| hc
        .status()
        .iter()
        .any(|s| s.addr == a.addr && s.total_checks > t0)));
    assert!(rx.try_recv().is_err());
}

#[test]
fn a_removed_and_readded_target_starts_afresh() {
    let closed = closed_tcp_port();
    let t = target("web", closed, check(HealthKind::Tcp, 200, 1000, 1, 2));
    let (hc, rx) = start(vec![t.clone()]);
    assert_eq!(next_event(&rx).state, State::Down);
    hc.update(vec![]);
    assert!(hc.status().is_empty());
    hc.update(vec![t]);
    // Pending again: a verdict takes two failures, 200 ms apart.
    let st = hc.status().remove(0);
    assert!(st.pending && st.total_checks <= 1, "{st:?}");
    assert_eq!(next_event(&rx).state, State::Down);
}

#[test]
fn stop_is_prompt_even_mid_check() {
    // The server swallows the request; the check would wait 5 s.
    let server = Server::tcp(|_, mut conn, stop| {
        read_request(&mut conn);
        stall(stop);
    });
    let mut c = http_check(None);
    c.interval = Duration::from_secs(10);
    c.timeout = Duration::from_secs(5);
    let (hc, _rx) = start(vec![target("web", server.addr, c)]);
    assert!(wait_until(|| server.count() == 1));
    let t = StdInstant::now();
    hc.stop();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn nothing_is_contacted_after_drop() {
    let server = Server::tcp(|_, _, _| {});
    let (hc, rx) = start(vec![target(
        "web",
        server.addr,
        check(HealthKind::Tcp, 20, 1000, 1, 1),
    )]);
    next_event(&rx);
    drop(hc);
    // Let the server accept what the kernel had already completed.
    std::thread::sleep(Duration::from_millis(100));
    let n = server.count();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.count(), n);
}

#[test]
fn many_targets_share_one_thread() {
    let server = Server::tcp(|_, _, _| {});
    let targets: Vec<Target> = (0..100)
        .map(|i| {
            target(
                &format!("v{i}"),
                server.addr,
                check(HealthKind::Tcp, 200, 1000, 1, 1),
            )
        })
        .collect();
    let (hc, rx) = start(targets);
    for _ in 0..100 {
        assert_eq!(next_event(&rx).state, State::Up);
    }
    assert_eq!(hc.status().len(), 100);
    assert!(wait_until(|| server.count() >= 100));
}

#[test]
fn a_panicking_callback_does_not_stop_checks() {
    let server = Server::tcp(|_, _, _| {});
    let hc = HealthChecker::start(
        vec![target(
            "web",
            server.addr,
            check(HealthKind::Tcp, 20, 1000, 1, 1),
        )],
        |_| panic!("callback bug"),
    )
    .expect("starts");
    assert!(wait_until(|| hc.status()[0].total_checks >= 3));
    assert_eq!(hc.status()[0].state, State::Up);
}

#[test]
fn duplicate_targets_last_wins() {
    let closed = closed_tcp_port();
    let first = target("web", closed, check(HealthKind::Tcp, 50, 1000, 1, 1));
    let last = target("web", closed, check(HealthKind::None, 50, 1000, 1, 1));
    let (hc, rx) = start(vec![first, last]);
    assert_eq!(next_event(&rx).reason, "no health check");
    assert_eq!(hc.status().len(), 1);
}

#[test]
fn a_check_on_another_port_speaks_for_the_real() {
    // The real's own port is closed; its readiness port answers.
    let server = Server::tcp(|_, _, _| {});
    let real = closed_tcp_port();
    let mut t = target("web", real, check(HealthKind::Tcp, 50, 1000, 1, 1));
    t.probe = server.addr;
    let (ev, st) = first_event(t);
    assert_eq!(ev.state, State::Up, "{}", ev.reason);
    assert_eq!(ev.addr, real, "the verdict is about the real");
    assert_eq!(st.probe, server.addr);
    assert!(wait_until(|| server.count() >= 1));
}
