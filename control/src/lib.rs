//! ferrolb's control plane: configuration, and (as they land) health
//! checks, VRRP, the admin API and the snapshot the workers read.

pub mod api;
pub mod config;
pub mod kernel;
pub mod snapshot;
