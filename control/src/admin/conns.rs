//! `ferrolb conns` and `GET /api/v1/conns`: the flows in the workers'
//! connection tables, like `ipvsadm -L -c -n`, filtered and paged.
//!
//! Query parameters (all optional): `vip=NAME`, `real=ADDR`,
//! `client=ADDR[/LEN]`, `limit=N` (1 to [`MAX_LIMIT`], default
//! [`DEFAULT_LIMIT`]), `cursor=W:CELL` (the `next` of the page before).
//! A page holds at most `limit` flows; `next` says where the following
//! one starts, or is `null` once every worker's table was read. Each
//! worker reads its table in bounded slices (`forwarder::listing`), and a
//! request that has read for [`REQUEST_BUDGET`] returns what it found
//! with a `next`, so a table of millions of flows stalls nothing.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Flows per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 10_000;
/// How long one request reads before it returns a partial page.
pub const REQUEST_BUDGET: Duration = Duration::from_millis(1000);

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnsRequest {
    /// Only this VIP (by name).
    pub vip: Option<String>,
    /// Only flows to this real.
    pub real: Option<IpAddr>,
    /// Only clients in this prefix.
    pub client: Option<(IpAddr, u8)>,
    /// Flows per page.
    pub limit: usize,
    /// Where to start: worker, cell.
    pub cursor: (usize, u32),
}

impl Default for ConnsRequest {
    fn default() -> Self {
        ConnsRequest {
            vip: None,
            real: None,
            client: None,
            limit: DEFAULT_LIMIT,
            cursor: (0, 0),
        }
    }
}

/// One flow, as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnStatus {
    /// `tcp`, `udp`, `icmp`.
    pub protocol: String,
    /// Client `address:port`.
    pub client: String,
    /// The VIP's name (empty if the service is gone).
    pub vip: String,
    /// The VIP `address:port` the client used.
    pub virtual_address: String,
    /// Real `address:port`.
    pub real: String,
    /// `syn_recv`, `established`, `fin_wait`, ..., `udp`, `icmp`.
    pub state: String,
    /// Milliseconds until it expires unless a packet comes.
    pub expires_in_ms: u32,
    /// The worker whose table holds it.
    pub worker: usize,
    /// Reply handling: `dr` (DR or TUN: none), `nat`, `snat`.
    pub reply: String,
}

/// A page of flows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnsPage {
    /// The flows.
    pub conns: Vec<ConnStatus>,
    /// The cursor of the next page, `null` at the end.
    pub next: Option<String>,
}

/// Parses the query string (`a=b&c=d`, percent-encoded).
pub fn parse_query(q: &str) -> Result<ConnsRequest, String> {
    let mut r = ConnsRequest::default();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = super::unescape(&v.replace('+', " "));
        match k {
            "vip" => r.vip = Some(v),
            "real" => {
                r.real = Some(
                    v.parse()
                        .map_err(|_| format!("real={v:?} is not an IP address"))?,
                )
            }
            "client" => r.client = Some(parse_prefix(&v)?),
            "limit" => {
                r.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| format!("limit={v:?} is not 1 to {MAX_LIMIT}"))?
            }
            "cursor" => {
                r.cursor = v
                    .split_once(':')
                    .and_then(|(w, c)| Some((w.parse().ok()?, c.parse().ok()?)))
                    .ok_or_else(|| format!("cursor={v:?} is not WORKER:CELL (a page's next)"))?
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (vip, real, client, limit, cursor)"
                ))
            }
        }
    }
    Ok(r)
}

/// `ADDR` or `ADDR/LEN`.
pub fn parse_prefix(v: &str) -> Result<(IpAddr, u8), String> {
    let bad = || format!("client={v:?} is not an address or a prefix (ADDR[/LEN])");
    let (a, len) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (v, None),
    };
    let a: IpAddr = a.parse().map_err(|_| bad())?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(bad)?,
        None => max,
    };
    Ok((a, len))
}

/// The query string of `r` (for the CLI).
pub fn query_string(r: &ConnsRequest) -> String {
    let mut q = format!("limit={}&cursor={}:{}", r.limit, r.cursor.0, r.cursor.1);
    if let Some(v) = &r.vip {
        q += &format!("&vip={}", super::escape(v));
    }
    if let Some(a) = r.real {
        q += &format!("&real={a}");
    }
    if let Some((a, l)) = r.client {
        q += &format!("&client={a}/{l}");
    }
    q
}

/// Pages through `GET /api/v1/conns` on `admin` until `req.limit` flows
/// or the end of the tables (the CLI's side).
pub fn fetch(api: &crate::api::Remote, mut req: ConnsRequest) -> Result<Vec<ConnStatus>, String> {
    let admin = &api.addr;
    let want = req.limit;
    let mut all = Vec::new();
    // Bounded: every page but the last moves the cursor on.
    for _ in 0..100_000 {
        req.limit = (want - all.len()).clamp(1, MAX_LIMIT);
        let path = format!("/api/v1/conns?{}", query_string(&req));
        let (code, body) = api.request("GET", &path)?;
        if code != 200 {
            return Err(body.trim().to_string());
        }
        let page: ConnsPage = serde_json::from_str(&body).map_err(|e| {
            format!("the admin API on {admin} answered something that is not a page of flows: {e}")
        })?;
        all.extend(page.conns);
        let next = page.next.as_deref().and_then(|n| {
            let (w, c) = n.split_once(':')?;
            Some((w.parse().ok()?, c.parse().ok()?))
        });
        match next {
            Some(c) if all.len() < want => req.cursor = c,
            _ => break,
        }
    }
    all.truncate(want);
    Ok(all)
}

/// `ipvsadm -L -c -n`-like lines.
pub fn render(conns: &[ConnStatus]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Pro  Expire  State        Source                                Virtual                               Destination                           VIP  Worker"
    );
    for c in conns {
        let secs = c.expires_in_ms / 1000;
        let _ = writeln!(
            o,
            "{:<4} {:02}:{:02}   {:<12} {:<37} {:<37} {:<37} {} {}",
            c.protocol.to_uppercase(),
            secs / 60,
            secs % 60,
            c.state.to_uppercase(),
            c.client,
            c.virtual_address,
            c.real,
            c.vip,
            c.worker
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_bad_ones_are_named() {
        let r =
            parse_query("vip=web&real=192.0.2.21&client=198.51.100.0%2F24&limit=5&cursor=1:4096")
                .unwrap();
        assert_eq!(r.vip.as_deref(), Some("web"));
        assert_eq!(r.real, Some("192.0.2.21".parse().unwrap()));
        assert_eq!(r.client, Some(("198.51.100.0".parse().unwrap(), 24)));
        assert_eq!((r.limit, r.cursor), (5, (1, 4096)));
        assert_eq!(parse_query("").unwrap(), ConnsRequest::default());
        assert_eq!(
            parse_query("client=2001:db8::1").unwrap().client,
            Some(("2001:db8::1".parse().unwrap(), 128))
        );
        for (q, want) in [
            ("real=x", "not an IP address"),
            ("client=1.2.3.4/33", "not an address or a prefix"),
            ("limit=0", "not 1 to 10000"),
            ("limit=10001", "not 1 to 10000"),
            ("cursor=7", "not WORKER:CELL"),
            ("colour=red", "unknown parameter"),
        ] {
            let e = parse_query(q).unwrap_err();
            assert!(e.contains(want), "{q}: {e}");
        }
        let back = parse_query(&query_string(&r)).unwrap();
        assert_eq!(back, r);
    }
}
