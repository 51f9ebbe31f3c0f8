//! ferrolb's control plane: everything but the packets.
//!
//! * [`config`]: the TOML schema, its validation, errors with file and line.
//! * [`snapshot`]: a configuration and the reals' states made into the
//!   forwarding snapshot the workers read.
//! * [`daemon`]: the control loop around a running data plane (reloads,
//!   operator actions, health, VRRP role), behind a trait the binary
//!   implements on DPDK.
//! * [`health`]: the health checker (tcp, http, udp; rise / fall).
//! * [`vrrp`]: VRRPv3, the pure state machine and its socket driver.
//! * [`admin`]: the admin API's routes, typed status, metrics text and
//!   the `ferrolb status` table; [`api`] is its HTTP server and client;
//!   [`page`] the status page.
//! * [`realsetup`]: the commands that prepare a Linux real for a VIP.
//! * [`kernel`]: the kernel side of the exception path (TAP addresses,
//!   keeping the kernel off af_packet interfaces).

pub mod admin;
pub mod announce;
pub mod api;
pub mod config;
pub mod daemon;
pub mod health;
pub mod kernel;
pub mod page;
pub mod realsetup;
pub mod snapshot;
pub mod tls;
pub mod vrrp;
