//! ferrolb's control plane: configuration, health checks of real servers,
//! and (as they land) VRRP, the admin API and the snapshot the workers read.

pub mod api;
pub mod config;
pub mod health;
pub mod kernel;
pub mod page;
pub mod snapshot;
pub mod vrrp;
