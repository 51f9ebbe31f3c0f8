//! `[announce]`: the VIPs this node would take new flows for, as host
//! routes in a kernel routing table that a BGP daemon on the node (BIRD's
//! `kernel` protocol, FRR's `ip import-table`) exports to the routers.
//!
//! ferrolb speaks no BGP. It keeps one route per VIP address in
//! `[announce].table`, through the VIP's port's TAP (`VIP/32 dev fl-lan`,
//! `/128` for IPv6), marked with its own route protocol number
//! ([`RTPROT_FERROLB`]) so that it finds the routes a crashed run left
//! behind and removes them at start. A VIP address is announced while
//! [`wanted`] says so: the node runs, is not drained, holds the VIPs (is
//! MASTER when `[ha]` is set too), and some service on the address has a
//! real (or its fallback) that takes new flows.
//!
//! The routes go through [`Routes`]: [`Netlink`] on a live node (the
//! `rtnetlink` crate), a recorder in tests.

use std::collections::BTreeMap;
use std::net::IpAddr;

use forwarder::pipeline::Snapshot;
use forwarder::service::RealState;
use futures::TryStreamExt;
use netlink_packet_route::route::Nla;
use netlink_packet_route::RouteMessage;

use crate::config::Config;

/// The route protocol number ferrolb's routes carry (`ip route show table
/// N proto 251`): not one of the numbers iproute2, BIRD or FRR use.
pub const RTPROT_FERROLB: u8 = 251;

/// A kernel routing table ferrolb writes host routes into.
pub trait Routes {
    /// Adds (or replaces) the host route of `addr` through `dev`.
    fn add(&mut self, addr: IpAddr, dev: &str) -> Result<(), String>;
    /// Removes the host route of `addr`.
    fn remove(&mut self, addr: IpAddr) -> Result<(), String>;
    /// Removes every route of the table with ferrolb's protocol; how many.
    fn clear(&mut self) -> Result<usize, String>;
}

/// The VIP addresses to announce, each with the TAP of its port: none
/// while the node is drained or does not hold the VIPs; else every
/// address with a service whose reals (or fallback) take new flows.
pub fn wanted(
    cfg: &Config,
    snap: &Snapshot,
    owner: bool,
    drained: bool,
) -> BTreeMap<IpAddr, String> {
    let mut out = BTreeMap::new();
    if drained || !owner {
        return out;
    }
    for sv in snap.vips.services() {
        let takes_new = sv
            .reals()
            .iter()
            .any(|r| r.state == RealState::Up && r.weight > 0)
            || sv.usable_fallback().is_some();
        if !takes_new {
            continue;
        }
        let addr = sv.spec().vip;
        let tap = cfg
            .vips
            .iter()
            .find(|v| v.name == sv.spec().name)
            .and_then(|v| cfg.ports.iter().find(|p| p.name == v.port_name))
            .map(|p| p.tap.clone());
        if let Some(tap) = tap {
            out.entry(addr).or_insert(tap);
        }
    }
    out
}

/// What is announced, kept in step with what is wanted.
pub struct Announcer<R: Routes> {
    routes: R,
    table: u32,
    /// Announced now: address → TAP.
    current: BTreeMap<IpAddr, String>,
}

impl<R: Routes> Announcer<R> {
    /// Takes over `table`: the routes a previous run left there go.
    pub fn new(mut routes: R, table: u32) -> Result<Announcer<R>, String> {
        let n = routes.clear()?;
        if n > 0 {
            tracing::warn!(
                table,
                routes = n,
                "announce: removed routes a previous run left behind"
            );
        }
        Ok(Announcer {
            routes,
            table,
            current: BTreeMap::new(),
        })
    }

    /// Whether `addr` is announced.
    pub fn is_announced(&self, addr: IpAddr) -> bool {
        self.current.contains_key(&addr)
    }

    /// The table.
    pub fn table(&self) -> u32 {
        self.table
    }

    /// Adds and removes routes until what is announced is `want`; each
    /// change is logged. A route the kernel refused is tried again at
    /// the next call.
    pub fn apply(&mut self, want: &BTreeMap<IpAddr, String>) {
        let gone: Vec<IpAddr> = self
            .current
            .keys()
            .filter(|a| !want.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            match self.routes.remove(addr) {
                Ok(()) => {
                    self.current.remove(&addr);
                    tracing::info!(vip = %addr, table = self.table, "announce: VIP withdrawn");
                }
                Err(e) => {
                    tracing::error!(vip = %addr, table = self.table, "announce: withdrawing the VIP: {e}")
                }
            }
        }
        for (addr, dev) in want {
            if self.current.get(addr) == Some(dev) {
                continue;
            }
            match self.routes.add(*addr, dev) {
                Ok(()) => {
                    self.current.insert(*addr, dev.clone());
                    tracing::info!(vip = %addr, dev = %dev, table = self.table, "announce: VIP announced");
                }
                Err(e) => {
                    tracing::error!(vip = %addr, dev = %dev, table = self.table, "announce: announcing the VIP: {e}")
                }
            }
        }
    }

    /// Withdraws everything (on stop).
    pub fn withdraw_all(&mut self) {
        self.apply(&BTreeMap::new());
    }
}

/// The kernel's routing table `table`, over rtnetlink.
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
    table: u32,
}

impl Netlink {
    /// A netlink socket for `table`.
    pub fn open(table: u32) -> Result<Netlink, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| format!("netlink runtime: {e}"))?;
        // The socket registers with the runtime it is made in.
        let guard = rt.enter();
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
        drop(guard);
        rt.spawn(conn);
        Ok(Netlink { rt, handle, table })
    }

    /// Our routes in the table (both families).
    fn ours(&self) -> Result<Vec<RouteMessage>, String> {
        let mut out = Vec::new();
        for v in [rtnetlink::IpVersion::V4, rtnetlink::IpVersion::V6] {
            let routes: Vec<RouteMessage> = self
                .rt
                .block_on(self.handle.route().get(v).execute().try_collect())
                .map_err(|e| format!("listing routes: {e}"))?;
            out.extend(
                routes
                    .into_iter()
                    .filter(|m| m.header.protocol == RTPROT_FERROLB && table_of(m) == self.table),
            );
        }
        Ok(out)
    }
}

/// The table a route is in (tables past 255 are in an attribute).
fn table_of(m: &RouteMessage) -> u32 {
    m.nlas
        .iter()
        .find_map(|n| match n {
            Nla::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

/// The destination of a route, as an address.
fn destination(m: &RouteMessage) -> Option<IpAddr> {
    m.nlas.iter().find_map(|n| match n {
        Nla::Destination(b) => match b.len() {
            4 => Some(IpAddr::from(<[u8; 4]>::try_from(&b[..]).ok()?)),
            16 => Some(IpAddr::from(<[u8; 16]>::try_from(&b[..]).ok()?)),
            _ => None,
        },
        _ => None,
    })
}

impl Routes for Netlink {
    fn add(&mut self, addr: IpAddr, dev: &str) -> Result<(), String> {
        let handle = self.handle.clone();
        let table = self.table;
        let dev = dev.to_string();
        self.rt.block_on(async move {
            let link = handle
                .link()
                .get()
                .match_name(dev.clone())
                .execute()
                .try_next()
                .await
                .map_err(|e| format!("no interface {dev}: {e}"))?
                .ok_or_else(|| format!("no interface {dev}"))?;
            let route = handle
                .route()
                .add()
                .table_id(table)
                .protocol(RTPROT_FERROLB);
            let r = match addr {
                IpAddr::V4(a) => {
                    route
                        .v4()
                        .destination_prefix(a, 32)
                        .output_interface(link.header.index)
                        .replace()
                        .execute()
                        .await
                }
                IpAddr::V6(a) => {
                    route
                        .v6()
                        .destination_prefix(a, 128)
                        .output_interface(link.header.index)
                        .replace()
                        .execute()
                        .await
                }
            };
            r.map_err(|e| format!("adding {addr} dev {dev} table {table}: {e}"))
        })
    }

    fn remove(&mut self, addr: IpAddr) -> Result<(), String> {
        for m in self.ours()? {
            if destination(&m) == Some(addr) {
                self.rt
                    .block_on(self.handle.route().del(m).execute())
                    .map_err(|e| format!("removing {addr} from table {}: {e}", self.table))?;
            }
        }
        Ok(())
    }

    fn clear(&mut self) -> Result<usize, String> {
        let ours = self.ours()?;
        let n = ours.len();
        for m in ours {
            self.rt
                .block_on(self.handle.route().del(m).execute())
                .map_err(|e| format!("clearing table {}: {e}", self.table))?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
