//! The admin HTTP API: a small HTTP/1.1 server on `[admin].listen`.
//!
//! Requests are bounded: headers and body at most [`MAX_REQUEST`] bytes,
//! each read within [`IO_TIMEOUT`] and the whole request within
//! [`REQUEST_DEADLINE`]. At most [`MAX_CONNECTIONS`] are served at once,
//! each on a short-lived thread; beyond that a client gets 503 at once. A
//! slow or hostile client therefore holds one slot for a few seconds at
//! most, never the API, and costs the data plane nothing.
//! Routes are served by a [`Handler`]: a function from (method, path,
//! body) to (status, content type, body).
//!
//! With a TLS configuration (`[admin] tls_cert` / `tls_key`) every
//! connection is TLS (rustls); a client that speaks plain HTTP to it gets a
//! plain-text 400 that says so, as nginx's 497 does, and a failed
//! handshake (an unknown CA, a client that gives up) ends that connection
//! only. The commands' client ([`Remote`]) speaks TLS when given a CA
//! (`--cacert`), and checks the server's certificate against it and the
//! address it connects to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request accepted.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Time a client has to send its request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a client has to send its whole request, however it trickles.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more get 503 without being read.
pub const MAX_CONNECTIONS: usize = 16;

/// A response: status code, content type, body.
pub type Response = (u16, &'static str, Vec<u8>);

/// Serves one request: (method, path, body).
pub type Handler = dyn Fn(&str, &str, &[u8]) -> Response + Send + Sync;

/// Whether two byte strings are equal, in time independent of where they
/// differ (token comparison).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A running API server; stops when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves `handler` on a thread of its own. With a
    /// `token`, every request must carry `Authorization: Bearer TOKEN`;
    /// others get 401.
    pub fn start(
        addr: SocketAddr,
        token: Option<String>,
        handler: Arc<Handler>,
    ) -> std::io::Result<Server> {
        Server::start_tls(addr, token, None, handler)
    }

    /// [`Server::start`], over TLS when `tls` is set.
    pub fn start_tls(
        addr: SocketAddr,
        token: Option<String>,
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: Arc<Handler>,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let active = Arc::new(AtomicUsize::new(0));
        let token: Option<Arc<str>> = token.map(Into::into);
        let thread = std::thread::Builder::new()
            .name("ferrolb-api".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => spawn_serve(
                            conn,
                            token.clone(),
                            tls.clone(),
                            Arc::clone(&handler),
                            &active,
                        ),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "admin API accept");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(Server {
            stop,
            addr,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn respond(conn: &mut impl Write, (code, ctype, body): Response) {
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(code),
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body);
    let _ = conn.flush();
}

/// Serves `conn` on a thread of its own, or answers 503 when
/// [`MAX_CONNECTIONS`] are already being served (or no thread can start).
fn spawn_serve(
    mut conn: TcpStream,
    token: Option<Arc<str>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Arc<Handler>,
    active: &Arc<AtomicUsize>,
) {
    let busy = |conn: &mut TcpStream| {
        // Take what already arrived (closing with unread data would reset
        // the connection before the client reads the answer), never wait.
        let _ = conn.set_nonblocking(true);
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            if !matches!(conn.read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_write_timeout(Some(Duration::from_millis(200)));
        respond(conn, (503, "text/plain", b"busy, try again\n".to_vec()));
        let _ = conn.shutdown(std::net::Shutdown::Write);
    };
    if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        active.fetch_sub(1, Ordering::AcqRel);
        return busy(&mut conn);
    }
    let slot = Arc::clone(active);
    let Ok(c2) = conn.try_clone() else {
        active.fetch_sub(1, Ordering::AcqRel);
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("ferrolb-api-conn".into())
        .spawn(move || {
            match tls {
                Some(cfg) => serve_tls(c2, cfg, token.as_deref(), &*handler),
                None => {
                    let mut c2 = c2;
                    serve(&mut c2, token.as_deref(), &*handler);
                }
            }
            slot.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        active.fetch_sub(1, Ordering::AcqRel);
        busy(&mut conn);
    }
}

/// A connection the server reads a request from: plain TCP or TLS over
/// it, with the socket underneath for its timeouts.
trait Conn: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// Reads once, within [`IO_TIMEOUT`] and what is left of `deadline`.
/// `None` at end of stream, on error, or when the deadline has passed.
fn read_by(conn: &mut impl Conn, chunk: &mut [u8], deadline: Instant) -> Option<usize> {
    let left = deadline.checked_duration_since(Instant::now())?;
    if left.is_zero() {
        return None;
    }
    let _ = conn.tcp().set_read_timeout(Some(left.min(IO_TIMEOUT)));
    match conn.read(chunk) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// Serves one request over TLS. A client that speaks plain HTTP (its
/// first byte is no TLS handshake record) is told so in plain text; a
/// handshake that fails ends the connection, logged at debug level.
fn serve_tls(conn: TcpStream, cfg: Arc<rustls::ServerConfig>, token: Option<&str>, h: &Handler) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
    let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
    let mut first = [0u8; 1];
    match conn.peek(&mut first) {
        Ok(1) if first[0] == 0x16 => {}
        Ok(1) => {
            let mut conn = conn;
            // Take what already arrived, so that closing does not reset
            // the connection before the client reads the answer.
            let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
            let mut sink = [0u8; 4096];
            let _ = conn.read(&mut sink);
            respond(
                &mut conn,
                (
                    400,
                    "text/plain",
                    b"this admin API speaks HTTPS: use https:// (ferrolb commands: --cacert)\n"
                        .to_vec(),
                ),
            );
            let _ = conn.shutdown(std::net::Shutdown::Write);
            return;
        }
        _ => return,
    }
    let peer = conn.peer_addr().ok();
    let Ok(sc) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    let mut stream = rustls::StreamOwned::new(sc, conn);
    // The handshake, bounded like a request.
    let deadline = Instant::now() + REQUEST_DEADLINE;
    while stream.conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let _ = stream.sock.set_read_timeout(Some(left.min(IO_TIMEOUT)));
        if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
            tracing::debug!(peer = ?peer, error = %e, "admin API: TLS handshake failed");
            return;
        }
    }
    serve(&mut stream, token, h);
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

fn serve(conn: &mut impl Conn, token: Option<&str>, handler: &Handler) {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let _ = conn.tcp().set_nonblocking(false);
    let _ = conn.tcp().set_write_timeout(Some(IO_TIMEOUT));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > MAX_REQUEST {
            return respond(conn, (413, "text/plain", b"request too large\n".to_vec()));
        }
        match read_by(conn, &mut chunk, deadline) {
            None => return,
            Some(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = match parse_head(&buf[..head_end], token) {
        Ok(h) => h,
        Err(refusal) => return respond(conn, refusal),
    };
    let mut body = buf[head_end..].to_vec();
    while body.len() < head.length {
        match read_by(conn, &mut chunk, deadline) {
            None => return,
            Some(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(head.length);
    let resp = handler(&head.method, &head.path, &body);
    respond(conn, resp);
}

/// A request's head, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// The body's length (`Content-Length`, 0 without).
    pub length: usize,
}

/// Parses the head of a request (up to and including the blank line)
/// and checks its bearer token when `token` is set; the refusal to send
/// otherwise (400 bad request line or length, 401 token, 413 too large).
/// Never panics.
pub fn parse_head(head: &[u8], token: Option<&str>) -> Result<Head, Response> {
    let refuse = |code: u16, why: &str| (code, "text/plain", format!("{why}\n").into_bytes());
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(path)) = (first.next(), first.next()) else {
        return Err(refuse(400, "bad request line"));
    };
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    if let Some(t) = token {
        let given = header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), t.as_bytes()) {
            return Err(refuse(401, "missing or wrong bearer token"));
        }
    }
    let length = match header("content-length").map(|v| v.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Err(refuse(400, "bad Content-Length")),
    };
    if length > MAX_REQUEST {
        return Err(refuse(413, "request too large"));
    }
    Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
        length,
    })
}

/// A blocking GET (or POST) for the CLI: returns (status, body).
pub fn request(addr: &str, method: &str, path: &str) -> Result<(u16, String), String> {
    request_with(addr, None, method, path)
}

/// [`request`] with an optional bearer token.
pub fn request_with(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
) -> Result<(u16, String), String> {
    Remote {
        addr: addr.to_string(),
        token: token.map(str::to_string),
        cacert: None,
    }
    .request(method, path)
}

/// Where the commands find the daemon's admin API, and how they prove
/// who they are and check who it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remote {
    /// `address:port` (`[admin].listen`).
    pub addr: String,
    /// Bearer token (`[admin].token`).
    pub token: Option<String>,
    /// The CA that signed the daemon's certificate: speak TLS and check
    /// the certificate against it and against `addr`'s IP address.
    pub cacert: Option<std::path::PathBuf>,
}

impl Remote {
    /// A blocking request: (status, body).
    pub fn request(&self, method: &str, path: &str) -> Result<(u16, String), String> {
        let addr = &self.addr;
        let sock: SocketAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not address:port"))?;
        let tls = match &self.cacert {
            Some(ca) => Some(crate::tls::client_config(ca)?),
            None => None,
        };
        let conn = TcpStream::connect_timeout(&sock, IO_TIMEOUT)
            .map_err(|e| format!("no ferrolb daemon answering on {addr} ({e}); is `ferrolb run` up, and is --admin right?"))?;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
        let mut out = Vec::new();
        match tls {
            None => {
                let mut conn = conn;
                conn.write_all(req.as_bytes())
                    .map_err(|e| format!("sending to {addr}: {e}"))?;
                conn.take(16 * 1024 * 1024)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("reading from {addr}: {e}"))?;
            }
            Some(cfg) => {
                let name = rustls_pki_types::ServerName::IpAddress(sock.ip().into());
                let cc = rustls::ClientConnection::new(cfg, name)
                    .map_err(|e| format!("TLS with {addr}: {e}"))?;
                let mut s = rustls::StreamOwned::new(cc, conn);
                let why = |e: std::io::Error| {
                    format!(
                        "TLS with {addr} failed: {e} (is the daemon's [admin] tls_cert signed by --cacert, for this address, and does it speak HTTPS?)"
                    )
                };
                s.write_all(req.as_bytes()).map_err(why)?;
                let _ = s.flush();
                let mut limited = (&mut s).take(16 * 1024 * 1024);
                if let Err(e) = limited.read_to_end(&mut out) {
                    // A server that closes without close_notify after a
                    // whole answer is not worth failing over.
                    if out.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof {
                        return Err(why(e));
                    }
                }
            }
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed response")?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("malformed status line")?;
        Ok((code, body.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_or_are_refused_with_the_reason() {
        let ok = parse_head(
            b"POST /api/v1/reload HTTP/1.1\r\nauthorization: Bearer s3cret\r\nContent-Length: 12\r\n\r\n",
            Some("s3cret"),
        )
        .unwrap();
        assert_eq!(
            ok,
            Head {
                method: "POST".into(),
                path: "/api/v1/reload".into(),
                length: 12,
            }
        );
        let code =
            |head: &[u8], token| parse_head(head, token).map(|_| 200).unwrap_or_else(|e| e.0);
        assert_eq!(code(b"GET / HTTP/1.1\r\n\r\n", None), 200);
        assert_eq!(code(b"GET / HTTP/1.1\r\n\r\n", Some("s3cret")), 401);
        assert_eq!(
            code(
                b"GET / HTTP/1.1\r\nAuthorization: Bearer s3cre\r\n\r\n",
                Some("s3cret")
            ),
            401
        );
        assert_eq!(code(b"GARBAGE\r\n\r\n", None), 400);
        assert_eq!(code(b"", None), 400);
        assert_eq!(
            code(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", None),
            400
        );
        assert_eq!(
            code(b"GET / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", None),
            413
        );
        assert_eq!(
            code(&[0xff, 0xfe, b' ', b'/', b'\r', b'\n'], None),
            200,
            "lossy, never a panic"
        );
    }

    #[test]
    fn serves_routes_and_bounds_requests() {
        let h: Arc<Handler> = Arc::new(|m: &str, p: &str, _b: &[u8]| match (m, p) {
            ("GET", "/hello") => (200, "text/plain", b"hi".to_vec()),
            _ => (404, "text/plain", b"no".to_vec()),
        });
        let s = Server::start("127.0.0.1:0".parse().unwrap(), None, Arc::clone(&h)).unwrap();
        let a = s.addr().to_string();
        assert_eq!(request(&a, "GET", "/hello").unwrap(), (200, "hi".into()));
        assert_eq!(request(&a, "GET", "/nope").unwrap().0, 404);
        // An oversized request is refused, and the server keeps serving.
        let mut c = TcpStream::connect(s.addr()).unwrap();
        let big = format!(
            "POST /hello HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_REQUEST + 1
        );
        c.write_all(big.as_bytes()).unwrap();
        let mut r = String::new();
        let _ = c.read_to_string(&mut r);
        assert!(r.starts_with("HTTP/1.1 413"), "{r}");
        // Garbage is a 400, not a crash.
        let mut c = TcpStream::connect(s.addr()).unwrap();
        c.write_all(b"\x00\x01\r\n\r\n").unwrap();
        let mut r = String::new();
        let _ = c.read_to_string(&mut r);
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
        assert_eq!(request(&a, "GET", "/hello").unwrap().0, 200);
        assert!(request("127.0.0.1:1", "GET", "/")
            .unwrap_err()
            .contains("no ferrolb daemon"));
        // A Content-Length that is not a number is a 400.
        let mut c = TcpStream::connect(s.addr()).unwrap();
        c.write_all(b"POST /hello HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
            .unwrap();
        let mut r = String::new();
        let _ = c.read_to_string(&mut r);
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    }

    /// Clients that trickle their request hold a slot until the deadline at
    /// most, and never keep others from being served; beyond
    /// MAX_CONNECTIONS a client gets 503 at once.
    #[test]
    fn slow_clients_neither_block_others_nor_outlive_the_deadline() {
        let h: Arc<Handler> =
            Arc::new(|_: &str, _: &str, _b: &[u8]| (200, "text/plain", b"ok".to_vec()));
        let s = Server::start("127.0.0.1:0".parse().unwrap(), None, h).unwrap();
        let a = s.addr().to_string();
        let t0 = Instant::now();
        let mut slow: Vec<TcpStream> = (0..MAX_CONNECTIONS - 1)
            .map(|_| {
                let mut c = TcpStream::connect(s.addr()).unwrap();
                c.write_all(b"GET / HTTP/1.1\r\n").unwrap();
                c
            })
            .collect();
        // One slot is left: a normal request is served at once.
        std::thread::sleep(Duration::from_millis(200));
        let t1 = Instant::now();
        assert_eq!(request(&a, "GET", "/").unwrap().0, 200);
        assert!(t1.elapsed() < Duration::from_secs(1), "{:?}", t1.elapsed());
        // Fill the last slot; the next client is told 503 at once.
        let mut last = TcpStream::connect(s.addr()).unwrap();
        last.write_all(b"GET / HT").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(request(&a, "GET", "/").unwrap().0, 503);
        slow.push(last);
        // Trickling one byte every 500 ms does not extend the deadline.
        for _ in 0..14 {
            for c in slow.iter_mut() {
                let _ = c.write_all(b"X");
            }
            std::thread::sleep(Duration::from_millis(500));
            if request(&a, "GET", "/").map(|r| r.0) == Ok(200) {
                break;
            }
        }
        let freed = t0.elapsed();
        eprintln!("slots freed {freed:?} after the slow clients connected");
        assert!(
            freed < REQUEST_DEADLINE + Duration::from_secs(2),
            "{freed:?}"
        );
        assert_eq!(request(&a, "GET", "/").unwrap().0, 200);
    }
}
