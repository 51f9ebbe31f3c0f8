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
//! * [`neigh`]: the neighbour cache and ARP requests.
//! * [`pipeline`]: the verdict for each frame.
//! * [`stats`]: what the workers publish for the control plane.
//! * [`steer`]: which worker owns a frame's state; the rings that hand
//!   frames to it.
//! * [`sync`]: connection sync between the nodes of an HA pair (wire
//!   format, outbox).
//! * [`dpdk`] (feature `dpdk`): the only safe wrapper over `dpdk-sys`.
//! * [`worker`], [`runtime`] (feature `dpdk`): the poll loop and start-up.

pub mod buffer;
pub mod conntrack;
pub mod listing;
pub mod neigh;
pub mod packet;
pub mod pipeline;
pub mod service;
pub mod stats;
pub mod steer;
pub mod sync;

#[cfg(feature = "dpdk")]
#[allow(unsafe_code)]
pub mod dpdk;
#[cfg(feature = "dpdk")]
pub mod runtime;
#[cfg(feature = "dpdk")]
pub mod worker;
