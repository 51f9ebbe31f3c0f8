//! The admin HTTP API: an HTTP/1.1 server on `[admin].listen` (hyper on a
//! tokio runtime of its own, on the `ferrolb-api` thread), and the
//! commands' blocking client ([`Remote`]).
//!
//! Requests are bounded: the head within [`IO_TIMEOUT`] and at most
//! [`MAX_REQUEST`] bytes (413 beyond; hyper's own buffer limit answers
//! 431 to heads past what it will buffer), the body at most
//! [`MAX_REQUEST`] bytes (413 when `Content-Length` says more) and all of
//! it within [`REQUEST_DEADLINE`]. One request per connection. At most
//! [`MAX_CONNECTIONS`] are served at once; beyond that a client gets 503
//! at once. A slow or hostile client therefore holds one slot for a few
//! seconds at most, never the API, and costs the data plane nothing.
//! Routes are served by a [`Handler`]: a function from (method, path,
//! body) to (status, content type, body), run on tokio's blocking pool (a
//! flow listing may take a second).
//!
//! With a TLS configuration (`[admin] tls_cert` / `tls_key`) every
//! connection is TLS (rustls through tokio-rustls); a client that speaks
//! plain HTTP to it gets a plain-text 400 that says so, as nginx's 497
//! does, and a failed handshake ends that connection only. The commands'
//! client ([`Remote`]) speaks TLS when given a CA (`--cacert`), and checks
//! the server's certificate against it and the address it connects to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;

/// Largest request head, and largest request body, accepted.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Time a client has to send its request head (and each TLS handshake).
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

/// What every connection of a server shares.
struct Shared {
    token: Option<String>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Arc<Handler>,
    slots: Arc<tokio::sync::Semaphore>,
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
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(MAX_CONNECTIONS)
            .build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let shared = Arc::new(Shared {
            token,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            handler,
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
        });
        let thread = std::thread::Builder::new()
            .name("ferrolb-api".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "admin API: cannot listen");
                            return;
                        }
                    };
                    while !s.load(Ordering::Relaxed) {
                        let accepted =
                            tokio::time::timeout(Duration::from_millis(100), listener.accept())
                                .await;
                        match accepted {
                            Err(_) => {}
                            Ok(Ok((conn, _))) => accept(conn, &shared),
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "admin API accept");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                });
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

/// A whole response, written by hand (for the cases hyper never sees:
/// busy, plain HTTP on the TLS port).
fn raw_response((code, ctype, body): Response) -> Vec<u8> {
    let reason = match code {
        400 => "Bad Request",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Answers `resp` on a connection hyper does not serve: what already
/// arrived is read first (closing with unread data would reset the
/// connection before the client reads the answer), never waited for.
async fn answer_raw(mut conn: tokio::net::TcpStream, resp: Response) {
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match conn.try_read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        conn.write_all(&raw_response(resp)),
    )
    .await;
    let _ = conn.shutdown().await;
}

/// Serves `conn` in a task of its own, or answers 503 when
/// [`MAX_CONNECTIONS`] are already being served.
fn accept(conn: tokio::net::TcpStream, shared: &Arc<Shared>) {
    let Ok(permit) = Arc::clone(&shared.slots).try_acquire_owned() else {
        tokio::spawn(answer_raw(
            conn,
            (503, "text/plain", b"busy, try again\n".to_vec()),
        ));
        return;
    };
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let _slot = permit;
        let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
        match shared.tls.clone() {
            None => serve(TokioIo::new(conn), &shared, deadline).await,
            Some(acceptor) => {
                let mut first = [0u8; 1];
                match tokio::time::timeout(IO_TIMEOUT, conn.peek(&mut first)).await {
                    Ok(Ok(1)) if first[0] == 0x16 => {}
                    Ok(Ok(1)) => {
                        let msg = b"this admin API speaks HTTPS: use https:// (ferrolb commands: --cacert)\n";
                        return answer_raw(conn, (400, "text/plain", msg.to_vec())).await;
                    }
                    _ => return,
                }
                let peer = conn.peer_addr().ok();
                match tokio::time::timeout(IO_TIMEOUT, acceptor.accept(conn)).await {
                    Ok(Ok(tls)) => serve(TokioIo::new(tls), &shared, deadline).await,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = ?peer, error = %e, "admin API: TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(peer = ?peer, "admin API: TLS handshake timed out"),
                }
            }
        }
    });
}

/// One request on `io`, by hyper, within `deadline` for the request.
async fn serve<I>(io: I, shared: &Arc<Shared>, deadline: tokio::time::Instant)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = {
        let shared = Arc::clone(shared);
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, std::convert::Infallible>(respond(req, &shared, deadline).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(IO_TIMEOUT)
        .max_buf_size(MAX_REQUEST)
        .keep_alive(false)
        .serve_connection(io, svc);
    // The request by the deadline, then the handler's own time (a flow
    // listing reads for at most a second) and the answer's.
    let _ = tokio::time::timeout_at(deadline + Duration::from_secs(5), conn).await;
}

/// The answer to `req`: refused by [`admit`], or its body read (bounded
/// in size and by `deadline`) and handed to the handler.
async fn respond(
    req: hyper::Request<Incoming>,
    shared: &Shared,
    deadline: tokio::time::Instant,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or("")))
        .collect();
    let token = shared.token.as_deref();
    let head_len = parts.method.as_str().len()
        + path.len()
        + headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>();
    let admitted = if head_len > MAX_REQUEST {
        Err((413, "text/plain", b"request head too large\n".to_vec()))
    } else {
        admit(parts.method.as_str(), &path, headers.iter().copied(), token)
    };
    let resp = match admitted {
        Err(refusal) => refusal,
        Ok(head) => {
            let limited = Limited::new(body, MAX_REQUEST);
            match tokio::time::timeout_at(deadline, limited.collect()).await {
                Ok(Ok(b)) => {
                    let body = b.to_bytes();
                    let h = Arc::clone(&shared.handler);
                    tokio::task::spawn_blocking(move || h(&head.method, &head.path, &body))
                        .await
                        .unwrap_or((500, "text/plain", b"internal error\n".to_vec()))
                }
                Ok(Err(_)) => (413, "text/plain", b"request too large\n".to_vec()),
                Err(_) => (408, "text/plain", b"request not sent in time\n".to_vec()),
            }
        }
    };
    let (code, ctype, body) = resp;
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() =
        hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
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

/// What the server checks of every request before it reads the body: the
/// bearer token when `token` is set (401, compared in constant time), a
/// `Content-Length` that is a number (400) and at most [`MAX_REQUEST`]
/// (413). Never panics.
pub fn admit<'a>(
    method: &str,
    path: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    token: Option<&str>,
) -> Result<Head, Response> {
    let refuse = |code: u16, why: &str| (code, "text/plain", format!("{why}\n").into_bytes());
    let header = |name: &str| {
        headers
            .clone()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
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

/// Parses the head of a request (up to and including the blank line) with
/// httparse, the parser hyper serves with, and checks it as the server
/// does ([`admit`]); the refusal otherwise (400 for a head that does not
/// parse, or is not whole). For the fuzzer and tests. Never panics.
pub fn parse_head(head: &[u8], token: Option<&str>) -> Result<Head, Response> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err((400, "text/plain", b"bad request\n".to_vec())),
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Err((400, "text/plain", b"bad request line\n".to_vec()));
    };
    let pairs: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|h| (h.name, std::str::from_utf8(h.value).unwrap_or("")))
        .collect();
    admit(method, path, pairs.iter().copied(), token)
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
        // A daemon off loopback speaks HTTPS (the configuration insists):
        // never put the token on the wire in clear to find that out.
        if tls.is_none() && self.token.is_some() && !sock.ip().is_loopback() {
            return Err(format!(
                "refusing to send the token in clear to {addr}: a daemon off loopback serves HTTPS; pass --cacert (or FERROLB_CACERT) with the CA of its [admin] tls_cert"
            ));
        }
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
    use std::time::Instant;

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
            400,
            "refused, never a panic"
        );
        assert_eq!(code(b"GET / HTTP/1.1\r\nHost: x", None), 400, "not whole");
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
        // A token is never sent in clear off loopback (refused before any
        // connection is made).
        let e = request_with("192.0.2.1:9", Some("s3cret"), "GET", "/").unwrap_err();
        assert!(e.contains("refusing to send the token in clear"), "{e}");
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
