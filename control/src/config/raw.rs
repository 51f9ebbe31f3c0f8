//! The file as serde reads it: every leaf a string, an integer or a
//! bool, so that one bad value does not hide the next.

use serde::Deserialize;

#[derive(Deserialize, Default)]
pub(super) struct RawConfig {
    pub(super) dataplane: Option<RawDataplane>,
    #[serde(default)]
    pub(super) port: Vec<RawPort>,
    #[serde(default)]
    pub(super) vip: Vec<RawVip>,
    pub(super) ha: Option<RawHa>,
    pub(super) admin: Option<RawAdmin>,
    pub(super) announce: Option<RawAnnounce>,
    #[serde(default)]
    pub(super) outbound: Vec<RawOutbound>,
}

#[derive(Deserialize)]
pub(super) struct RawOutbound {
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) sources: Vec<String>,
    pub(super) port_name: Option<String>,
    pub(super) address: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawDataplane {
    #[serde(default)]
    pub(super) eal_args: Vec<String>,
    pub(super) workers: Option<i64>,
    pub(super) conn_table_capacity: Option<i64>,
    pub(super) idle_sleep: Option<String>,
    pub(super) mbufs: Option<i64>,
    pub(super) housekeeping_cpus: Option<Vec<i64>>,
    pub(super) steering: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawPort {
    pub(super) name: Option<String>,
    pub(super) device: Option<String>,
    #[serde(default)]
    pub(super) addresses: Vec<String>,
    pub(super) gateway: Option<String>,
    pub(super) tap: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawVip {
    pub(super) name: Option<String>,
    pub(super) address: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) port: Option<i64>,
    pub(super) mode: Option<String>,
    pub(super) scheduler: Option<String>,
    pub(super) port_name: Option<String>,
    pub(super) persistence: Option<RawPersistence>,
    pub(super) health: Option<RawHealth>,
    #[serde(default)]
    pub(super) real: Vec<RawReal>,
    pub(super) on_down: Option<String>,
    pub(super) on_remove: Option<String>,
    pub(super) fallback: Option<RawFallback>,
    pub(super) new_flow_rate_limit: Option<i64>,
    pub(super) timeouts: Option<RawTimeouts>,
}

#[derive(Deserialize)]
pub(super) struct RawTimeouts {
    pub(super) tcp: Option<String>,
    pub(super) tcp_fin: Option<String>,
    pub(super) udp: Option<String>,
    pub(super) tcp_reset_on_idle: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct RawFallback {
    pub(super) address: Option<String>,
    pub(super) port: Option<i64>,
    pub(super) mac: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawPersistence {
    pub(super) timeout: Option<String>,
    pub(super) netmask: Option<i64>,
}

#[derive(Deserialize)]
pub(super) struct RawHealth {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) path: Option<String>,
    pub(super) expect_status: Option<i64>,
    pub(super) expect_body: Option<String>,
    pub(super) interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) rise: Option<i64>,
    pub(super) fall: Option<i64>,
    pub(super) port: Option<i64>,
    pub(super) address: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawReal {
    pub(super) address: Option<String>,
    pub(super) port: Option<i64>,
    pub(super) weight: Option<i64>,
    pub(super) mac: Option<String>,
    pub(super) max_conns: Option<i64>,
    pub(super) min_conns: Option<i64>,
}

#[derive(Deserialize)]
pub(super) struct RawHa {
    pub(super) vrid: Option<i64>,
    pub(super) priority: Option<i64>,
    pub(super) advert_interval: Option<String>,
    pub(super) preempt: Option<bool>,
    pub(super) port_name: Option<String>,
    #[serde(default)]
    pub(super) floating: Vec<String>,
    pub(super) garp_interval: Option<String>,
    pub(super) garp_elapse: Option<String>,
    pub(super) family: Option<String>,
    #[serde(default)]
    pub(super) unicast_peers: Vec<String>,
    #[serde(default)]
    pub(super) track: Vec<String>,
    pub(super) sync_peer: Option<String>,
    pub(super) sync_port: Option<i64>,
}

#[derive(Deserialize)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<String>,
    pub(super) token: Option<String>,
    pub(super) tls_cert: Option<String>,
    pub(super) tls_key: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawAnnounce {
    pub(super) table: Option<i64>,
    pub(super) drain_time: Option<String>,
}
