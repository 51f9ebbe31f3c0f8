//! ferrolb's data plane.
//!
//! Everything above [`dpdk`] is pure Rust and sees packets only through the
//! [`buffer::PacketBuf`] trait, so the same code runs on DPDK mbufs in the
//! workers and on [`buffer::TestBuffer`] in unit tests, fuzzers and benches.
//!
//! * [`packet`]: zero-copy views and in-place rewrites of wire formats,
//!   incremental checksums.
//! * [`service`]: the VIP table, schedulers and source-IP persistence.
//! * [`conntrack`]: the per-worker flow table.
//! * [`neigh`]: ARP / ND answers for owned addresses and the neighbour cache.
//! * [`dpdk`] (feature `dpdk`): the only safe wrapper over `dpdk-sys`.
//! * [`worker`] (feature `dpdk`): the poll loop.

pub mod buffer;
pub mod conntrack;
pub mod packet;
pub mod service;

#[cfg(feature = "dpdk")]
pub mod dpdk;
