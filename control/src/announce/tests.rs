//! What is announced, from a configuration and the reals' states, and
//! how the announcer keeps a table in step.

use std::net::IpAddr;

use forwarder::packet::MacAddr;

use super::*;

const CFG: &str = r#"
[dataplane]
eal_args = ["--no-huge"]

[[port]]
name = "wan"
device = "net_null0"
addresses = ["198.51.100.2/24"]

[[port]]
name = "lan"
device = "net_null1"
addresses = ["192.0.2.2/24"]

[[vip]]
name = "web"
address = "198.51.100.100"
port = 80
mode = "nat"
port_name = "wan"
  [[vip.real]]
  address = "192.0.2.21"
  port = 8080
  [[vip.real]]
  address = "192.0.2.22"
  port = 8080

[[vip]]
name = "dns"
address = "198.51.100.100"
protocol = "udp"
port = 53
mode = "nat"
port_name = "wan"
  [[vip.real]]
  address = "192.0.2.23"
  port = 5353

[[vip]]
name = "mail"
address = "198.51.100.101"
port = 25
mode = "nat"
port_name = "wan"
  [vip.fallback]
  address = "192.0.2.30"
  port = 2525
  [[vip.real]]
  address = "192.0.2.24"
  port = 25

[announce]
table = 250
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The snapshot of `CFG` with the reals in `down` down (by address).
fn snap(cfg: &Config, down: &[&str]) -> Snapshot {
    let macs = [MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2])];
    let state = |_: &str, a: IpAddr, _: u16| {
        if down.iter().any(|d| ip(d) == a) {
            RealState::Down
        } else {
            RealState::Up
        }
    };
    crate::snapshot::build(cfg, 1, &macs, &state, true).unwrap()
}

fn addrs(w: &BTreeMap<IpAddr, String>) -> Vec<String> {
    w.keys().map(ToString::to_string).collect()
}

#[test]
fn an_address_is_wanted_while_a_service_on_it_takes_new_flows() {
    let cfg = crate::config::parse("a.toml", CFG).unwrap();
    let all = wanted(&cfg, &snap(&cfg, &[]), true, false);
    assert_eq!(addrs(&all), ["198.51.100.100", "198.51.100.101"]);
    assert_eq!(
        all[&ip("198.51.100.100")],
        "fl-wan",
        "through the VIP's port's TAP"
    );
    // web's reals down, dns up: the address stays.
    let w = wanted(
        &cfg,
        &snap(&cfg, &["192.0.2.21", "192.0.2.22"]),
        true,
        false,
    );
    assert_eq!(addrs(&w), ["198.51.100.100", "198.51.100.101"]);
    // Every real of the address down: withdrawn.
    let w = wanted(
        &cfg,
        &snap(&cfg, &["192.0.2.21", "192.0.2.22", "192.0.2.23"]),
        true,
        false,
    );
    assert_eq!(addrs(&w), ["198.51.100.101"]);
    // mail's real down: its fallback (always up) takes new flows.
    let w = wanted(&cfg, &snap(&cfg, &["192.0.2.24"]), true, false);
    assert!(w.contains_key(&ip("198.51.100.101")));
}

#[test]
fn nothing_is_wanted_drained_or_without_the_vips() {
    let cfg = crate::config::parse("a.toml", CFG).unwrap();
    let s = snap(&cfg, &[]);
    assert!(wanted(&cfg, &s, true, true).is_empty(), "drained");
    assert!(wanted(&cfg, &s, false, false).is_empty(), "BACKUP");
}

/// Records what it is asked; fails adds of `fail` once.
#[derive(Default)]
struct Recorder {
    table: BTreeMap<IpAddr, String>,
    log: Vec<String>,
    fail: Option<IpAddr>,
}

impl Routes for &mut Recorder {
    fn add(&mut self, addr: IpAddr, dev: &str) -> Result<(), String> {
        if self.fail == Some(addr) {
            self.fail = None;
            return Err("refused".into());
        }
        self.log.push(format!("add {addr} {dev}"));
        self.table.insert(addr, dev.into());
        Ok(())
    }
    fn remove(&mut self, addr: IpAddr) -> Result<(), String> {
        self.log.push(format!("del {addr}"));
        self.table.remove(&addr);
        Ok(())
    }
    fn clear(&mut self) -> Result<usize, String> {
        let n = self.table.len();
        self.table.clear();
        self.log.push(format!("clear {n}"));
        Ok(n)
    }
}

#[test]
fn the_announcer_clears_leftovers_and_changes_only_what_changed() {
    let mut rec = Recorder::default();
    rec.table.insert(ip("203.0.113.9"), "fl-old".into());
    rec.fail = Some(ip("198.51.100.101"));
    let w = |list: &[&str]| -> BTreeMap<IpAddr, String> {
        list.iter().map(|a| (ip(a), "fl-wan".to_string())).collect()
    };
    {
        let mut a = Announcer::new(&mut rec, 250).unwrap();
        a.apply(&w(&["198.51.100.100", "198.51.100.101"]));
        assert!(a.is_announced(ip("198.51.100.100")));
        assert!(
            !a.is_announced(ip("198.51.100.101")),
            "refused: not announced"
        );
        // Tried again; the other unchanged.
        a.apply(&w(&["198.51.100.100", "198.51.100.101"]));
        assert!(a.is_announced(ip("198.51.100.101")));
        a.apply(&w(&["198.51.100.101"]));
        a.withdraw_all();
        assert_eq!(a.table(), 250);
    }
    assert_eq!(
        rec.log,
        [
            "clear 1",
            "add 198.51.100.100 fl-wan",
            "add 198.51.100.101 fl-wan",
            "del 198.51.100.100",
            "del 198.51.100.101",
        ]
    );
    assert!(rec.table.is_empty());
}
