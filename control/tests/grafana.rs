//! The Grafana dashboard shipped in `docs/grafana/ferrolb.json` is valid
//! JSON of the shape Grafana imports, and every query in it names only
//! metrics that ferrolb exports: the names are checked against what
//! `/metrics` writes for a node with every optional part on ([ha], sync,
//! [announce], [[outbound]]).

use std::collections::BTreeSet;

use control::admin::metrics;
use control::admin::status::{
    AnnounceStatus, HaStatus, OutboundStatus, PortStatus, RealStatus, Status, SyncStatus,
    VipStatus, WorkerStatus,
};
use serde_json::Value;

const DASHBOARD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/grafana/ferrolb.json"
));

/// The metric names `/metrics` writes for a node with everything on.
fn exported() -> BTreeSet<String> {
    let mut s = Status::default();
    s.vips.push(VipStatus {
        name: "web".into(),
        address: "192.0.2.100".into(),
        protocol: "tcp".into(),
        port: 80,
        reals: vec![RealStatus {
            address: "192.0.2.21".into(),
            port: 80,
            state: "up".into(),
            ..RealStatus::default()
        }],
        ..VipStatus::default()
    });
    s.workers.push(WorkerStatus::default());
    s.ports.push(PortStatus {
        name: "lan".into(),
        ..PortStatus::default()
    });
    s.drops.insert("martian".into(), 1);
    s.ha = Some(HaStatus {
        vrid: 51,
        state: "master".into(),
        ..HaStatus::default()
    });
    s.sync = Some(SyncStatus {
        peer_config: "same".into(),
        ..SyncStatus::default()
    });
    s.announce = Some(AnnounceStatus::default());
    s.outbound = Some(OutboundStatus::default());
    // The names the samples carry (a counter's with `_total`), which is
    // what queries name.
    let text = metrics::render(&s);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// The `ferrolb_...` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = expr[i..].find("ferrolb_") {
        let start = i + at;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        out.push(expr[start..end].to_string());
        i = end;
    }
    out
}

#[test]
fn every_query_of_the_dashboard_names_a_metric_ferrolb_exports() {
    let d: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert_eq!(d["uid"], "ferrolb");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let have = exported();
    assert!(have.len() > 50, "{have:?}");
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut queries = 0;
    for p in panels(&d) {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let g = &p["gridPos"];
        for k in ["x", "y", "w", "h"] {
            assert!(g[k].as_u64().is_some(), "panel {id}: gridPos.{k}");
        }
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id} has no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "panel {id}: {expr} names no ferrolb metric"
            );
            for n in names {
                assert!(
                    have.contains(&n),
                    "panel {id} ({}): {n} is not exported",
                    p["title"]
                );
                used.insert(n);
            }
            queries += 1;
        }
    }
    let needed = [
        "ferrolb_vip_packets_in_total",
        "ferrolb_real_packets_total",
        "ferrolb_drops_total",
        "ferrolb_flows",
        "ferrolb_vrrp_state",
        "ferrolb_worker_idle_polls_total",
    ];
    for n in needed {
        assert!(used.contains(n), "the dashboard does not show {n}");
    }
    println!(
        "{} panels, {queries} queries, {} of {} exported metrics used",
        ids.len(),
        used.len(),
        have.len()
    );
}
