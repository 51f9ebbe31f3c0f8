//! The last step of every forwarded frame: the next hop's MAC from the
//! neighbour cache (or a resolution request, the frame dropped), the
//! source MAC of the port, and the outcome that sends it.

use super::*;

/// Sets the Ethernet addresses for `route` and picks the output port;
/// asks for the next hop's MAC if it is unknown.
#[inline]
pub(super) fn send<B: PacketBuf>(
    buf: &mut B,
    route: Route,
    snap: &Snapshot,
    ctx: &mut Ctx<'_>,
) -> Outcome {
    let r = ctx.neigh.resolve(route.next_hop, ctx.now_ms);
    finish_send(r, buf, route, snap, ctx)
}

/// [`send`] through the worker's next-hop memo (the per-flow paths).
#[inline]
pub(super) fn send_via<B: PacketBuf>(
    hops: &mut HopCache,
    buf: &mut B,
    route: Route,
    snap: &Snapshot,
    ctx: &mut Ctx<'_>,
) -> Outcome {
    let r = hops.resolve(ctx.neigh, route.next_hop, ctx.now_ms);
    finish_send(r, buf, route, snap, ctx)
}

#[inline]
pub(super) fn finish_send<B: PacketBuf>(
    r: Resolve,
    buf: &mut B,
    route: Route,
    snap: &Snapshot,
    ctx: &mut Ctx<'_>,
) -> Outcome {
    let mac = match r {
        Resolve::Known { mac, refresh } => {
            if refresh {
                ctx.requests.push(route);
            }
            mac
        }
        Resolve::Request => {
            ctx.requests.push(route);
            return Outcome::Dropped(DropReason::NeighMiss);
        }
        Resolve::Pending => return Outcome::Dropped(DropReason::NeighMiss),
    };
    let our = snap.ports[usize::from(route.port)].mac;
    let f = buf.data_mut();
    f[0..6].copy_from_slice(&mac.0);
    f[6..12].copy_from_slice(&our.0);
    Outcome::Forward { port: route.port }
}
