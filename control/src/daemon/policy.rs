//! What state each real is in: the one place that holds what the health
//! checks found and what the operator asked, and the rule that combines
//! them.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use forwarder::service::RealState;

use crate::admin::{Action, CommandError};
use crate::config::{Config, HealthKind, OnRemove, RealConf};
use crate::health;

/// A real: (VIP name, real address, real port).
pub type RealKey = (String, IpAddr, u16);

/// The health and operator state of every real.
#[derive(Debug, Default, Clone)]
pub struct RealStates {
    /// Verdicts of the health checks, by real (absent: no verdict yet).
    health: HashMap<RealKey, RealState>,
    /// Operator actions in force (`Drain`, `Disable`; `Enable` removes).
    admin: HashMap<RealKey, Action>,
    /// The checker's details of every check, for the status.
    checks: Vec<health::TargetStatus>,
    /// Reals at their `max_conns` (until below `min_conns`).
    overloaded: HashSet<RealKey>,
    /// Reals a reload took out of a VIP with `on_remove = "keep"`, kept
    /// (no new flows) until their last flow ends.
    removed: HashMap<RealKey, RealConf>,
}

/// A real that became overloaded (`true`) or took new flows again, with
/// its active flows and limits, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadChange {
    /// The real.
    pub key: RealKey,
    /// Overloaded now.
    pub overloaded: bool,
    /// Its active flows on the node.
    pub active: u64,
    /// `max_conns`.
    pub max: u32,
    /// `min_conns` (or `max_conns`).
    pub min: u32,
}

impl RealStates {
    /// The state of each real under `cfg`. Disabled or Drain by operator
    /// action; otherwise from its health checks (Down until its first
    /// passing check when the VIP has checks), Up when nothing says
    /// otherwise. Disabled wins over Down, Down over Drain; an overloaded
    /// real that is up is drained (no new flows, its flows continue).
    pub fn resolver<'a>(&'a self, cfg: &Config) -> impl Fn(&str, IpAddr, u16) -> RealState + 'a {
        let checked: HashSet<String> = cfg
            .vips
            .iter()
            .filter(|v| {
                v.health
                    .as_ref()
                    .is_some_and(|h| h.kind() != HealthKind::None)
            })
            .map(|v| v.name.clone())
            .collect();
        move |vip: &str, addr: IpAddr, port: u16| {
            let key = (vip.to_string(), addr, port);
            let health = match self.health.get(&key) {
                Some(s) => *s,
                None if checked.contains(vip) => RealState::Down,
                None => RealState::Up,
            };
            if self.removed.contains_key(&key) {
                // Not checked any more: no new flows, its flows go on.
                return RealState::Drain;
            }
            match (self.admin.get(&key), health) {
                (Some(Action::Disable), _) => RealState::Disabled,
                (_, RealState::Down) => RealState::Down,
                (Some(Action::Drain), _) => RealState::Drain,
                _ if self.overloaded.contains(&key) => RealState::Drain,
                _ => health,
            }
        }
    }

    /// Records a health verdict; whether it changed anything.
    pub fn on_health(&mut self, e: &health::Event) -> bool {
        let st = match e.state {
            health::State::Up => RealState::Up,
            health::State::Down => RealState::Down,
        };
        let key = (e.vip.clone(), e.addr.ip(), e.addr.port());
        self.health.insert(key, st) != Some(st)
    }

    /// Follows the reals' active flows on the node (`active`, by real):
    /// a real with `max_conns` becomes overloaded at that many, and takes
    /// new flows again below `min_conns` (default `max_conns`). Reals
    /// without a limit (or no longer configured) are never overloaded.
    /// Returns the changes.
    pub fn update_load(&mut self, cfg: &Config, active: &HashMap<RealKey, u64>) -> Vec<LoadChange> {
        let mut changes = Vec::new();
        let mut now = HashSet::new();
        for v in &cfg.vips {
            for r in &v.reals {
                let Some(max) = r.max_conns else {
                    continue;
                };
                let min = r.min_conns.unwrap_or(max);
                let key = (v.name.clone(), r.address, r.port);
                let n = active.get(&key).copied().unwrap_or(0);
                let was = self.overloaded.contains(&key);
                let is = if was {
                    n >= u64::from(min)
                } else {
                    n >= u64::from(max)
                };
                if is != was {
                    changes.push(LoadChange {
                        key: key.clone(),
                        overloaded: is,
                        active: n,
                        max,
                        min,
                    });
                }
                if is {
                    now.insert(key);
                }
            }
        }
        self.overloaded = now;
        changes
    }

    /// A reload replaces `old` by `new`: reals `new` no longer lists in a
    /// VIP it keeps, with `on_remove = "keep"`, are kept as removed until
    /// their flows end; a real listed again, or of a VIP gone or set to
    /// reschedule, is not. Returns the reals newly kept.
    pub fn on_reload(&mut self, old: &Config, new: &Config) -> Vec<RealKey> {
        let listed = |c: &Config| -> HashSet<RealKey> {
            c.vips
                .iter()
                .flat_map(|v| {
                    v.reals
                        .iter()
                        .map(move |r| (v.name.clone(), r.address, r.port))
                })
                .collect()
        };
        let now_listed = listed(new);
        let keeps = |name: &str| {
            new.vips
                .iter()
                .any(|v| v.name == name && v.on_remove == OnRemove::Keep)
        };
        self.removed
            .retain(|k, _| !now_listed.contains(k) && keeps(&k.0));
        let mut added = Vec::new();
        for v in &old.vips {
            if !keeps(&v.name) {
                continue;
            }
            for r in &v.reals {
                let k = (v.name.clone(), r.address, r.port);
                if !now_listed.contains(&k) && !self.removed.contains_key(&k) {
                    self.removed.insert(k.clone(), r.clone());
                    added.push(k);
                }
            }
        }
        added
    }

    /// `cfg` with the removed reals still kept appended to their VIPs
    /// (weight 0: never scheduled), for building the forwarding tables;
    /// `None` when no real is kept so.
    pub fn with_removed(&self, cfg: &Config) -> Option<Config> {
        if self.removed.is_empty() {
            return None;
        }
        let mut c = cfg.clone();
        for v in &mut c.vips {
            let mut kept: Vec<&RealConf> = self
                .removed
                .iter()
                .filter(|(k, _)| k.0 == v.name)
                .map(|(_, r)| r)
                .collect();
            kept.sort_by_key(|r| (r.address, r.port));
            v.reals.extend(kept.into_iter().map(|r| RealConf {
                weight: 0,
                max_conns: None,
                min_conns: None,
                ..r.clone()
            }));
        }
        Some(c)
    }

    /// Forgets removed reals that hold no flow any more (`active`, as in
    /// [`Self::update_load`]); returns them.
    pub fn forget_drained_removed(&mut self, active: &HashMap<RealKey, u64>) -> Vec<RealKey> {
        let gone: Vec<RealKey> = self
            .removed
            .keys()
            .filter(|k| active.get(*k).copied().unwrap_or(0) == 0)
            .cloned()
            .collect();
        for k in &gone {
            self.removed.remove(k);
        }
        gone
    }

    /// Whether a real was taken out of the file and is kept for its flows.
    pub fn is_removed(&self, key: &RealKey) -> bool {
        self.removed.contains_key(key)
    }

    /// Whether any removed real is kept.
    pub fn has_removed(&self) -> bool {
        !self.removed.is_empty()
    }

    /// Whether a real is at its `max_conns`.
    pub fn is_overloaded(&self, key: &RealKey) -> bool {
        self.overloaded.contains(key)
    }

    /// Replaces the checks' details (for the status).
    pub fn set_checks(&mut self, checks: Vec<health::TargetStatus>) {
        self.checks = checks;
    }

    /// The details of the check of `vip`'s real at `addr`.
    pub fn check(&self, vip: &str, addr: SocketAddr) -> Option<&health::TargetStatus> {
        self.checks.iter().find(|h| h.vip == vip && h.addr == addr)
    }

    /// The operator action in force on a real.
    pub fn admin(&self, key: &RealKey) -> Option<Action> {
        self.admin.get(key).copied()
    }

    /// Applies `action` to the reals of `vip` matching `real` (`ADDR`, or
    /// `ADDR:PORT`, IPv6 as `[ADDR]:PORT`); the reals it applied to.
    pub fn act(
        &mut self,
        cfg: &Config,
        vip: &str,
        real: &str,
        action: Action,
    ) -> Result<Vec<RealKey>, CommandError> {
        let (addr, port): (IpAddr, Option<u16>) = if let Ok(a) = real.parse::<IpAddr>() {
            (a, None)
        } else if let Ok(sa) = real.parse::<SocketAddr>() {
            (sa.ip(), Some(sa.port()))
        } else {
            return Err(CommandError::BadAddress(real.to_string()));
        };
        let Some(v) = cfg.vips.iter().find(|v| v.name == vip) else {
            let names: Vec<&str> = cfg.vips.iter().map(|v| v.name.as_str()).collect();
            return Err(CommandError::NoVip {
                vip: vip.to_string(),
                known: names.join(", "),
            });
        };
        let keys: Vec<RealKey> = v
            .reals
            .iter()
            .filter(|r| r.address == addr && port.is_none_or(|p| p == r.port))
            .map(|r| (v.name.clone(), r.address, r.port))
            .collect();
        if keys.is_empty() {
            return Err(CommandError::NoReal {
                vip: vip.to_string(),
                real: real.to_string(),
            });
        }
        for k in &keys {
            match action {
                Action::Enable => self.admin.remove(k),
                a => self.admin.insert(k.clone(), a),
            };
        }
        Ok(keys)
    }

    /// Forgets operator actions on reals `cfg` no longer has: an action
    /// follows its real while it stays configured.
    pub fn retain_configured(&mut self, cfg: &Config) {
        let present: HashSet<RealKey> = cfg
            .vips
            .iter()
            .flat_map(|v| {
                v.reals
                    .iter()
                    .map(move |r| (v.name.clone(), r.address, r.port))
            })
            .collect();
        self.admin.retain(|k, _| present.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[dataplane]
eal_args = ["--no-huge"]

[[port]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.2/24"]

[[vip]]
name = "web"
address = "192.0.2.100"
protocol = "tcp"
port = 80
mode = "nat"
  [vip.health]
  type = "tcp"
  [[vip.real]]
  address = "192.0.2.21"
  port = 8080
  [[vip.real]]
  address = "192.0.2.21"
  port = 8081
  [[vip.real]]
  address = "192.0.2.22"
  port = 8080

[[vip]]
name = "dns"
address = "192.0.2.101"
protocol = "udp"
port = 53
mode = "dr"
  [[vip.real]]
  address = "192.0.2.23"
"#;

    fn cfg(text: &str) -> Config {
        crate::config::parse("test.toml", text).expect("valid test configuration")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn event(vip: &str, addr: &str, state: health::State) -> health::Event {
        health::Event {
            vip: vip.into(),
            addr: addr.parse().unwrap(),
            state,
            reason: String::new(),
        }
    }

    #[test]
    fn checked_reals_start_down_unchecked_ones_up() {
        let c = cfg(CFG);
        let r = RealStates::default();
        let state = r.resolver(&c);
        assert_eq!(state("web", ip("192.0.2.21"), 8080), RealState::Down);
        assert_eq!(state("dns", ip("192.0.2.23"), 53), RealState::Up);
    }

    #[test]
    fn health_verdicts_count_once() {
        let mut r = RealStates::default();
        assert!(r.on_health(&event("web", "192.0.2.21:8080", health::State::Up)));
        assert!(!r.on_health(&event("web", "192.0.2.21:8080", health::State::Up)));
        assert!(r.on_health(&event("web", "192.0.2.21:8080", health::State::Down)));
    }

    #[test]
    fn disabled_beats_down_beats_drain() {
        let c = cfg(CFG);
        let mut r = RealStates::default();
        r.on_health(&event("web", "192.0.2.21:8080", health::State::Up));
        r.act(&c, "web", "192.0.2.21:8080", Action::Drain).unwrap();
        assert_eq!(
            r.resolver(&c)("web", ip("192.0.2.21"), 8080),
            RealState::Drain
        );
        r.on_health(&event("web", "192.0.2.21:8080", health::State::Down));
        assert_eq!(
            r.resolver(&c)("web", ip("192.0.2.21"), 8080),
            RealState::Down
        );
        r.act(&c, "web", "192.0.2.21:8080", Action::Disable)
            .unwrap();
        assert_eq!(
            r.resolver(&c)("web", ip("192.0.2.21"), 8080),
            RealState::Disabled
        );
        r.act(&c, "web", "192.0.2.21:8080", Action::Enable).unwrap();
        assert_eq!(
            r.resolver(&c)("web", ip("192.0.2.21"), 8080),
            RealState::Down
        );
    }

    #[test]
    fn an_address_without_port_means_every_port_of_it() {
        let c = cfg(CFG);
        let mut r = RealStates::default();
        let keys = r.act(&c, "web", "192.0.2.21", Action::Disable).unwrap();
        assert_eq!(keys.len(), 2);
        let state = r.resolver(&c);
        assert_eq!(state("web", ip("192.0.2.21"), 8081), RealState::Disabled);
        assert_eq!(state("web", ip("192.0.2.22"), 8080), RealState::Down);
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let c = cfg(CFG);
        let mut r = RealStates::default();
        assert_eq!(
            r.act(&c, "mail", "192.0.2.21", Action::Drain),
            Err(CommandError::NoVip {
                vip: "mail".into(),
                known: "web, dns".into()
            })
        );
        assert!(matches!(
            r.act(&c, "web", "192.0.2.99", Action::Drain),
            Err(CommandError::NoReal { .. })
        ));
        assert!(matches!(
            r.act(&c, "web", "192.0.2.21:9999", Action::Drain),
            Err(CommandError::NoReal { .. })
        ));
        assert_eq!(
            r.act(&c, "web", "host.example", Action::Drain),
            Err(CommandError::BadAddress("host.example".into()))
        );
    }

    #[test]
    fn actions_on_removed_reals_are_forgotten() {
        let c = cfg(CFG);
        let mut r = RealStates::default();
        r.act(&c, "web", "192.0.2.22", Action::Drain).unwrap();
        r.act(&c, "web", "192.0.2.21:8080", Action::Drain).unwrap();
        let smaller = cfg(&CFG.replace(
            "  [[vip.real]]\n  address = \"192.0.2.22\"\n  port = 8080\n",
            "",
        ));
        r.retain_configured(&smaller);
        assert_eq!(r.admin(&("web".into(), ip("192.0.2.22"), 8080)), None);
        assert_eq!(
            r.admin(&("web".into(), ip("192.0.2.21"), 8080)),
            Some(Action::Drain)
        );
    }

    #[test]
    fn max_conns_overloads_and_min_conns_brings_back() {
        let limited = |extra: &str| {
            cfg(&CFG.replace(
                "  [[vip.real]]\n  address = \"192.0.2.23\"\n",
                &format!("  [[vip.real]]\n  address = \"192.0.2.23\"\n{extra}"),
            ))
        };
        let key = ("dns".to_string(), ip("192.0.2.23"), 53u16);
        let state = |rs: &RealStates, c: &Config| rs.resolver(c)("dns", key.1, 53);
        let load = |n: u64| HashMap::from([(key.clone(), n)]);

        // min_conns = max_conns by default: overloaded at 5, back below.
        let c = limited("  max_conns = 5\n");
        let mut rs = RealStates::default();
        assert!(rs.update_load(&c, &load(4)).is_empty());
        let ch = rs.update_load(&c, &load(5));
        assert_eq!(ch.len(), 1);
        assert_eq!(
            (ch[0].key.clone(), ch[0].overloaded, ch[0].active),
            (key.clone(), true, 5)
        );
        assert_eq!(state(&rs, &c), RealState::Drain, "no new flows");
        assert!(rs.update_load(&c, &load(5)).is_empty());
        assert!(!rs.update_load(&c, &load(4))[0].overloaded);
        assert_eq!(state(&rs, &c), RealState::Up);

        // min_conns = 3: over at 5, still over at 3, back at 2.
        let c = limited("  max_conns = 5\n  min_conns = 3\n");
        assert!(rs.update_load(&c, &load(5))[0].overloaded);
        assert!(rs.update_load(&c, &load(3)).is_empty());
        assert!(rs.is_overloaded(&key));
        assert!(!rs.update_load(&c, &load(2))[0].overloaded);

        // An operator's disable still wins over an overload.
        rs.update_load(&c, &load(5));
        rs.act(&c, "dns", "192.0.2.23", Action::Disable).unwrap();
        assert_eq!(state(&rs, &c), RealState::Disabled);
        // A reload that drops the limit ends the overload.
        let ch = rs.update_load(&cfg(CFG), &load(500));
        assert_eq!((ch.len(), rs.is_overloaded(&key)), (0, false));
    }

    #[test]
    fn a_removed_real_is_kept_without_new_flows_until_its_flows_end() {
        let old = cfg(CFG);
        let new = cfg(&CFG.replace(
            "  [[vip.real]]\n  address = \"192.0.2.22\"\n  port = 8080\n",
            "",
        ));
        let key = ("web".to_string(), ip("192.0.2.22"), 8080u16);
        let mut rs = RealStates::default();
        assert_eq!(rs.on_reload(&old, &new), vec![key.clone()]);
        assert!(rs.is_removed(&key));
        // Kept in the tables with weight 0, drained (checks or not).
        let built = rs.with_removed(&new).unwrap();
        let web = built.vips.iter().find(|v| v.name == "web").unwrap();
        let ghost = web
            .reals
            .iter()
            .find(|r| r.address == ip("192.0.2.22"))
            .unwrap();
        assert_eq!((ghost.port, ghost.weight), (8080, 0));
        assert_eq!(rs.resolver(&built)("web", key.1, 8080), RealState::Drain);
        // While it holds flows it stays; at 0 it goes.
        let load = |n: u64| HashMap::from([(key.clone(), n)]);
        assert!(rs.forget_drained_removed(&load(3)).is_empty());
        assert_eq!(rs.forget_drained_removed(&load(0)), vec![key.clone()]);
        assert!(rs.with_removed(&new).is_none());
        // Listed again, or on_remove = "reschedule": not kept.
        rs.on_reload(&old, &new);
        rs.on_reload(&new, &old);
        assert!(!rs.is_removed(&key), "listed again");
        let resched = cfg(&new_with_reschedule(&CFG.replace(
            "  [[vip.real]]\n  address = \"192.0.2.22\"\n  port = 8080\n",
            "",
        )));
        assert!(rs.on_reload(&old, &resched).is_empty());
        assert!(!rs.has_removed());
    }

    fn new_with_reschedule(text: &str) -> String {
        text.replacen(
            "mode = \"nat\"\n",
            "mode = \"nat\"\non_remove = \"reschedule\"\n",
            1,
        )
    }
}
