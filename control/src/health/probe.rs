//! One check of one target: connect, ask, judge. No state between checks.
//!
//! Every probe opens a fresh socket (bound to the target's source address
//! when it has one), is bounded as a whole by the check's `timeout`, and
//! ends in an [`Outcome`] whose text says what happened in words an
//! operator can act on: `connect: connection refused`,
//! `http: status 404, expected 200`, `udp: timeout after 500ms waiting for
//! a reply`.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::Instant;

use super::http::{Response, MAX_RESPONSE};
use super::Target;
use crate::config::{Check, HealthKind, HttpCheck};

/// What the `udp` check sends. Any reply counts, so the content only has
/// to make the service answer: an echo or a tolerant service will.
pub const UDP_PAYLOAD: &[u8] = b"ferrolb health check\n";

/// The result of one check: `Ok(what passed)` or `Err(why it failed)`.
pub type Outcome = Result<String, String>;

/// The end of one check's time; every wait of the check is bounded by it.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
        }
    }

    /// Runs `fut` until the deadline; a timeout reads
    /// `{what}: timeout after 500ms{waiting}`.
    async fn bound<T>(
        self,
        what: &str,
        waiting: &str,
        fut: impl Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        match tokio::time::timeout_at(self.at, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{what}: timeout after {}{waiting}",
                show_duration(self.timeout)
            )),
        }
    }
}

/// Runs one check of `target`, bounded by its timeout.
pub async fn probe(target: &Target) -> Outcome {
    let check = &target.check;
    if check.kind() == HealthKind::None {
        return Ok("no health check".into());
    }
    if target.probe.port() == 0 {
        return Err("no port to check (the VIP covers every port: set [vip.health] port)".into());
    }
    let deadline = Deadline::after(check.timeout);
    match &check.check {
        Check::Tcp => tcp(target, deadline).await,
        Check::Http(h) => http(target, h, deadline).await,
        Check::Udp => udp(target, deadline).await,
        Check::None => unreachable!("handled above"),
    }
}

/// `500ms`, `2s`, `1500ms`: as a person writes it in the configuration.
pub fn show_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_nanos().is_multiple_of(1_000_000) && d < Duration::from_secs(10) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{d:?}")
    }
}

/// An I/O error as a short lower-case phrase: `connection refused`.
pub fn describe(e: &io::Error) -> String {
    let s = e.to_string();
    // The OS message without its "(os error 111)" suffix.
    let s = match s.rfind(" (os error ") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s.to_string(),
    }
}

/// Checks a source address against the target's family.
fn source(bind: Option<IpAddr>, addr: SocketAddr) -> Result<Option<SocketAddr>, String> {
    match bind {
        Some(b) if b.is_ipv4() != addr.is_ipv4() => Err(format!(
            "bind {b}: not of the same address family as {}",
            addr.ip()
        )),
        Some(b) => Ok(Some(SocketAddr::new(b, 0))),
        None => Ok(None),
    }
}

async fn connect(target: &Target, deadline: Deadline) -> Result<TcpStream, String> {
    let addr = target.probe;
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {}", describe(&e)))?;
    if let Some(src) = source(target.bind, addr)? {
        sock.bind(src)
            .map_err(|e| format!("bind {}: {}", src.ip(), describe(&e)))?;
    }
    deadline
        .bound("connect", "", async {
            sock.connect(addr)
                .await
                .map_err(|e| format!("connect: {}", describe(&e)))
        })
        .await
}

/// `tcp`: the three-way handshake completes. The kernel completes it for a
/// listening socket before the application accepts, so a server that
/// listens but never accepts still passes (until its backlog is full).
async fn tcp(target: &Target, deadline: Deadline) -> Outcome {
    connect(target, deadline).await?;
    Ok("tcp: connected".into())
}

/// The request of the `http` check `h` of `target`.
pub fn request(target: &Target, h: &HttpCheck) -> String {
    let host = match target.probe {
        SocketAddr::V4(a) if a.port() == 80 => a.ip().to_string(),
        SocketAddr::V6(a) if a.port() == 80 => format!("[{}]", a.ip()),
        a => a.to_string(),
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ferrolb-health\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        h.path
    )
}

/// `http`: GET the path; the status and (if set) the body decide.
async fn http(target: &Target, h: &HttpCheck, deadline: Deadline) -> Outcome {
    let mut stream = connect(target, deadline).await?;
    let req = request(target, h);
    deadline
        .bound("http", " sending the request", async {
            stream
                .write_all(req.as_bytes())
                .await
                .map_err(|e| format!("http: write: {}", describe(&e)))
        })
        .await?;
    read_response(
        &mut stream,
        h.expect_status,
        h.expect_body.as_deref(),
        deadline,
    )
    .await
}

/// Reads a response until [`Response`] decides, reading at most
/// [`MAX_RESPONSE`] bytes. Memory stays within that bound whatever the
/// server sends.
pub async fn read_response<R: AsyncRead + Unpin>(
    r: &mut R,
    expect_status: u16,
    expect_body: Option<&str>,
    deadline: Deadline,
) -> Outcome {
    let mut resp = Response::new(expect_status, expect_body);
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        if total >= MAX_RESPONSE {
            return resp.limit();
        }
        let room = buf.len().min(MAX_RESPONSE - total);
        let waiting = resp.phase().waiting_for();
        let n = deadline
            .bound("http", waiting, async {
                r.read(&mut buf[..room])
                    .await
                    .map_err(|e| format!("http: read: {} ({})", describe(&e), waiting.trim_start()))
            })
            .await?;
        if n == 0 {
            return resp.eof();
        }
        total += n;
        if let Some(v) = resp.feed(&buf[..n]) {
            return v;
        }
    }
}

/// `udp`: send [`UDP_PAYLOAD`]; any reply passes. On a connected UDP socket
/// Linux reports an ICMP port unreachable as `ECONNREFUSED`, which fails
/// the check at once instead of waiting for the timeout.
async fn udp(target: &Target, deadline: Deadline) -> Outcome {
    let addr = target.probe;
    let local = source(target.bind, addr)?.unwrap_or_else(|| match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    });
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("bind {}: {}", local.ip(), describe(&e)))?;
    let refused = |e: io::Error| {
        if e.kind() == io::ErrorKind::ConnectionRefused {
            "udp: connection refused (ICMP port unreachable)".to_string()
        } else {
            format!("udp: {}", describe(&e))
        }
    };
    sock.connect(addr).await.map_err(refused)?;
    deadline
        .bound("udp", " waiting for a reply", async {
            sock.send(UDP_PAYLOAD).await.map_err(refused)?;
            let mut buf = [0u8; 1500];
            let n = sock.recv(&mut buf).await.map_err(refused)?;
            Ok(format!("udp: reply of {n} bytes"))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn durations_read_like_the_config() {
        assert_eq!(show_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(show_duration(Duration::from_secs(2)), "2s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show_duration(Duration::from_micros(250)), "250µs");
    }

    #[test]
    fn errors_read_as_phrases() {
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(describe(&e), "connection refused");
        let e = io::Error::other("Odd thing");
        assert_eq!(describe(&e), "odd thing");
    }

    #[test]
    fn an_endless_body_is_read_only_up_to_the_limit() {
        // Headers, then 'x' for ever: the read must stop by itself.
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
        let mut endless = head.chain(tokio::io::repeat(b'x'));
        let long = Deadline::after(Duration::from_secs(60));
        let v = rt().block_on(read_response(&mut endless, 200, Some("OK"), long));
        assert_eq!(
            v,
            Err("http: body lacks \"OK\" in the first 64 KiB of the response".into())
        );
        // Endless headers too.
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nX-Long: ";
        let mut endless = head.chain(tokio::io::repeat(b'y'));
        let v = rt().block_on(read_response(&mut endless, 200, Some("OK"), long));
        assert_eq!(
            v,
            Err("http: headers longer than the 64 KiB read limit".into())
        );
    }

    #[test]
    fn request_has_host_and_close() {
        let h = HttpCheck {
            path: "/ready.txt".into(),
            expect_status: 200,
            expect_body: None,
        };
        let t = Target {
            vip: "web".into(),
            addr: "[2001:db8::1]:8080".parse().unwrap(),
            probe: "[2001:db8::1]:8080".parse().unwrap(),
            bind: None,
            check: crate::config::Health {
                check: Check::Http(h.clone()),
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                rise: 2,
                fall: 2,
                port: None,
                address: None,
            },
        };
        assert_eq!(
            request(&t, &h),
            "GET /ready.txt HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\nUser-Agent: ferrolb-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let t = Target {
            probe: "192.0.2.21:80".parse().unwrap(),
            ..t
        };
        assert!(request(&t, &h).contains("\r\nHost: 192.0.2.21\r\n"));
    }
}
