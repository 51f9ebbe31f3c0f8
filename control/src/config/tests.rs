use super::*;

/// The configuration contract's example (README, "Configuration").
const CONTRACT: &str = r#"
[dataplane]
eal_args = ["-l", "0-1", "--no-huge", "-m", "512", "--no-pci",
            "--vdev=net_af_packet0,iface=lb0"]
workers = 1
conn_table_capacity = 65536
idle_sleep = "50us"

[[port]]
name = "lan"
device = "net_af_packet0"
addresses = ["192.0.2.2/24"]
gateway = "192.0.2.1"

[[vip]]
name = "web"
address = "192.0.2.100"
protocol = "tcp"
port = 80
mode = "dr"
scheduler = "maglev"
port_name = "lan"

  [vip.persistence]
  timeout = "300s"
  netmask = 24

  [vip.health]
  type = "http"
  path = "/ready.txt"
  expect_status = 200
  expect_body = "OK"
  interval = "1s"
  timeout = "500ms"
  rise = 2
  fall = 2

  [[vip.real]]
  address = "192.0.2.21"
  port = 80
  weight = 1
  mac = "02:00:00:00:00:21"

[ha]
vrid = 51
priority = 150
advert_interval = "1s"
preempt = true
port_name = "lan"
floating = ["198.51.100.1"]
garp_interval = "60s"
garp_elapse = "1200s"

[admin]
listen = "127.0.0.1:9080"
"#;

const MINIMAL: &str = r#"
[dataplane]
eal_args = ["--no-huge"]

[[port]]
name = "lan"
device = "net_af_packet0"
addresses = ["192.0.2.2/24"]
"#;

#[test]
fn the_contract_example_loads() {
    let c = parse("lb.toml", CONTRACT).expect("the contract example is valid");
    assert_eq!(c.dataplane.workers, 1);
    assert_eq!(c.dataplane.idle_sleep, Some(Duration::from_micros(50)));
    assert_eq!(c.ports[0].tap, "fl-lan");
    assert_eq!(c.ports[0].gateway, Some("192.0.2.1".parse().unwrap()));
    let v = &c.vips[0];
    assert_eq!(
        (v.protocol, v.port, v.mode, v.scheduler),
        (Protocol::Tcp, 80, Mode::Dr, Scheduler::Maglev)
    );
    assert_eq!(
        v.persistence,
        Some(Persistence {
            timeout: Duration::from_secs(300),
            netmask: 24
        })
    );
    let h = v.health.as_ref().unwrap();
    assert_eq!(h.kind(), HealthKind::Http);
    assert_eq!(
        (&h.check, h.timeout),
        (
            &Check::Http(HttpCheck {
                path: "/ready.txt".into(),
                expect_status: 200,
                expect_body: Some("OK".into())
            }),
            Duration::from_millis(500)
        )
    );
    assert_eq!(v.reals[0].mac, Some([2, 0, 0, 0, 0, 0x21]));
    let ha = c.ha.unwrap();
    assert_eq!(
        (ha.vrid, ha.priority, ha.garp_elapse),
        (51, 150, Duration::from_secs(1200))
    );
    assert_eq!((ha.sync_peer, ha.sync_port), (None, 8848));
    assert_eq!(c.admin.listen, "127.0.0.1:9080".parse().unwrap());
}

#[test]
fn defaults_fill_optional_keys() {
    let c = parse("m.toml", MINIMAL).unwrap();
    assert_eq!(c.dataplane.workers, 1);
    assert_eq!(c.dataplane.conn_table_capacity, 65536);
    assert_eq!(c.dataplane.idle_sleep, None);
    assert!(c.vips.is_empty() && c.ha.is_none());
    assert_eq!(c.admin.listen.to_string(), DEFAULT_ADMIN);
}

/// (description, text, expected (line, key, message fragment) for each error)
type Case = (
    &'static str,
    String,
    Vec<(usize, &'static str, &'static str)>,
);

fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

fn vip(body: &str) -> String {
    with(&format!(
        "\n[[vip]]\nname = \"web\"\naddress = \"192.0.2.100\"\nport = 80\n{body}"
    ))
}

#[test]
fn broken_configs_name_every_problem_with_line_and_key() {
    let cases: Vec<Case> = vec![
        ("syntax error", "[dataplane\n".into(), vec![(1, "", "")]),
        (
            "unknown keys everywhere are all reported",
            with("bogus = 1\n[admin]\nlisten = \"127.0.0.1:1\"\nlisen = 2\n")
                .replace("device =", "colour = \"red\"\ndevice ="),
            vec![(7, "port[0].colour", "unknown key"), (10, "port[0].bogus", "unknown key"), (13, "admin.lisen", "unknown key")],
        ),
        ("wrong type", MINIMAL.replace("eal_args = [\"--no-huge\"]", "eal_args = 5"), vec![(3, "", "invalid type")]),
        ("no dataplane", "[[port]]\nname=\"a\"\ndevice=\"d\"\naddresses=[\"192.0.2.2/24\"]\n".into(), vec![(0, "dataplane", "required")]),
        ("no port", "[dataplane]\neal_args=[\"x\"]\n".into(), vec![(0, "port", "at least one")]),
        (
            "bad addresses and prefixes",
            MINIMAL.replace("[\"192.0.2.2/24\"]", "[\"192.0.2.2/33\", \"192.0.2.300/24\", \"192.0.2.3\"]"),
            vec![(8, "port[0].addresses[0]", "prefix"), (8, "port[0].addresses[1]", "not an IP"), (8, "port[0].addresses[2]", "address/prefix")],
        ),
        ("gateway outside the port", with("gateway = \"203.0.113.1\"\n"), vec![(9, "port[0].gateway", "not inside")]),
        ("workers out of range", MINIMAL.replace("eal_args", "workers = 0\neal_args"), vec![(3, "dataplane.workers", "out of range")]),
        ("zero-unit duration", MINIMAL.replace("eal_args", "idle_sleep = \"50\"\neal_args"), vec![(3, "dataplane.idle_sleep", "no unit")]),
        ("no housekeeping CPU", MINIMAL.replace("eal_args", "housekeeping_cpus = []\neal_args"), vec![(3, "dataplane.housekeeping_cpus", "is empty")]),
        (
            "housekeeping CPUs out of range and twice",
            MINIMAL.replace("eal_args", "housekeeping_cpus = [0, 0, 4096]\neal_args"),
            vec![(3, "dataplane.housekeeping_cpus", "named twice"), (3, "dataplane.housekeeping_cpus", "out of range")],
        ),
        ("huge idle sleep", MINIMAL.replace("eal_args", "idle_sleep = \"1s\"\neal_args"), vec![(3, "dataplane.idle_sleep", "10ms")]),
        ("unknown steering", MINIMAL.replace("eal_args", "steering = \"rss\"\neal_args"), vec![(3, "dataplane.steering", "\"rss\" is not a steering mode (auto, software or nic)")]),
        (
            "duplicate port names",
            with("[[port]]\nname = \"lan\"\ndevice = \"x\"\naddresses = [\"198.51.100.2/24\"]\n"),
            vec![(9, "port[1].tap", "used twice"), (10, "port[1].name", "used twice")],
        ),
        (
            "DR with port translation",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\nport = 8080\n"),
            vec![(16, "vip[0].real[0].port", "cannot translate")],
        ),
        (
            "real outside every prefix without gateway",
            vip("mode = \"nat\"\n[[vip.real]]\naddress = \"203.0.113.5\"\nport = 8080\n"),
            vec![(16, "vip[0].real[0].address", "no port has a gateway")],
        ),
        (
            "negative and huge weights",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\nweight = -1\n[[vip.real]]\naddress = \"192.0.2.22\"\nweight = 100000\n"),
            vec![(16, "vip[0].real[0].weight", "out of range"), (19, "vip[0].real[1].weight", "out of range")],
        ),
        (
            "unknown mode, scheduler, protocol and port name",
            vip("mode = \"fast\"\nscheduler = \"best\"\nprotocol = \"sctp\"\nport_name = \"wan\"\n[[vip.real]]\naddress = \"192.0.2.21\"\n"),
            vec![(14, "vip[0].mode", "not a mode"), (15, "vip[0].scheduler", "not a scheduler"), (16, "vip[0].protocol", "not a protocol"), (17, "vip[0].port_name", "no [[port]]")],
        ),
        (
            "duplicate VIPs",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\n[[vip]]\nname = \"web2\"\naddress = \"192.0.2.100\"\nport = 80\n[[vip.real]]\naddress = \"192.0.2.22\"\n").to_string(),
            vec![(18, "vip[1].address", "another VIP")],
        ),
        (
            "zero health interval and bad rise",
            vip("[vip.health]\ntype = \"tcp\"\ninterval = \"0s\"\nrise = 0\n[[vip.real]]\naddress = \"192.0.2.21\"\n"),
            vec![(16, "vip[0].health.interval", "longer than zero"), (17, "vip[0].health.rise", "out of range")],
        ),
        ("HA without VIPs", with("[ha]\nvrid = 7\n"), vec![(9, "ha", "nothing to float")]),
        ("HA vrid out of range", vip("[[vip.real]]\naddress = \"192.0.2.21\"\n[ha]\nvrid = 300\n"), vec![(17, "ha.vrid", "out of range")]),
        (
            "HA family, peers and tracked ports that cannot work",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\n[ha]\nvrid = 3\nfamily = \"ipv6\"\nunicast_peers = [\"192.0.2.3\", \"bad\"]\ntrack = [\"wan\"]\n"),
            vec![(18, "ha.family", "needs an IPv6 address"), (19, "ha.unicast_peers[0]", "not of the VRRP family"), (19, "ha.unicast_peers[1]", "not an IPv4 or IPv6 address"), (20, "ha.track[0]", "no [[port]]")],
        ),
        (
            "HA unknown family, own address as peer",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\n[ha]\nvrid = 3\nfamily = \"ipx\"\nunicast_peers = [\"192.0.2.2\"]\n"),
            vec![(18, "ha.family", "unknown family"), (19, "ha.unicast_peers[0]", "own address")],
        ),
        (
            "sync peer: own address, off the HA link, IPv6; bad sync port",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\n[ha]\nvrid = 5\nsync_peer = \"192.0.2.2\"\nsync_port = 0\n"),
            vec![(18, "ha.sync_peer", "own address"), (19, "ha.sync_port", "out of range")],
        ),
        (
            "sync peer off the HA link",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\n[ha]\nvrid = 5\nsync_peer = \"203.0.113.3\"\n"),
            vec![(18, "ha.sync_peer", "not inside a prefix of the [ha] port")],
        ),
        (
            "sync peer IPv6",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\n[ha]\nvrid = 5\nsync_peer = \"2001:db8::3\"\n"),
            vec![(18, "ha.sync_peer", "IPv6")],
        ),
        (
            "admin on the network without a token",
            with("[admin]\nlisten = \"0.0.0.0:9080\"\n"),
            vec![(10, "admin.listen", "token")],
        ),
        ("VIP without reals", vip(""), vec![(0, "vip[0].real", "at least one")]),
        ("bad MAC", vip("[[vip.real]]\naddress = \"192.0.2.21\"\nmac = \"02:00\"\n"), vec![(16, "vip[0].real[0].mac", "MAC")]),
        ("unknown on_down", vip("on_down = \"drop\"\n[[vip.real]]\naddress = \"192.0.2.21\"\n"), vec![(14, "vip[0].on_down", "not an on_down action (reschedule or keep)")]),
        (
            "DR fallback of the other family, on no port",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\n[vip.fallback]\naddress = \"2001:db8::25\"\n"),
            vec![(17, "vip[0].fallback.address", "different address families"), (17, "vip[0].fallback.address", "direct routing needs the fallback on a connected segment")],
        ),
        (
            "DR fallback with port translation",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\n[vip.fallback]\naddress = \"192.0.2.25\"\nport = 8080\n"),
            vec![(18, "vip[0].fallback.port", "cannot translate")],
        ),
        (
            "NAT fallback no port reaches",
            vip("mode = \"nat\"\n[[vip.real]]\naddress = \"192.0.2.21\"\nport = 8080\n[vip.fallback]\naddress = \"203.0.113.5\"\nport = 8080\n"),
            vec![(19, "vip[0].fallback.address", "no port has a gateway")],
        ),
        (
            "NAT fallback with a port on a VIP of every port",
            vip("mode = \"nat\"\n[[vip.real]]\naddress = \"192.0.2.21\"\n[vip.fallback]\naddress = \"192.0.2.25\"\nport = 8080\n").replace("port = 80\n", "port = 0\n"),
            vec![(19, "vip[0].fallback.port", "leave the fallback's port out")],
        ),
        (
            "a fallback that is also a real",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\n[vip.fallback]\naddress = \"192.0.2.21\"\n"),
            vec![(17, "vip[0].fallback.address", "is also a real")],
        ),
        (
            "fallback without address, with a bad MAC and a weight",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\n[vip.fallback]\nmac = \"zz\"\nweight = 2\n"),
            vec![(16, "vip[0].fallback.address", "is required"), (18, "vip[0].fallback.weight", "unknown key")],
        ),
        (
            "fallback with a bad MAC",
            vip("[[vip.real]]\naddress = \"192.0.2.21\"\n[vip.fallback]\naddress = \"192.0.2.25\"\nmac = \"zz\"\n"),
            vec![(18, "vip[0].fallback.mac", "MAC")],
        ),
    ];
    for (desc, text, want) in cases {
        let errs = match parse("bad.toml", &text) {
            Ok(_) => panic!("{desc}: accepted:\n{text}"),
            Err(e) => e.0,
        };
        assert_eq!(errs.len(), want.len(), "{desc}: got {errs:#?}");
        for (e, (line, key, msg)) in errs.iter().zip(&want) {
            assert_eq!(e.file, "bad.toml", "{desc}");
            if *line > 0 {
                assert_eq!(e.line, Some(*line), "{desc}: {e}");
            }
            assert_eq!(e.key, *key, "{desc}: {e}");
            assert!(e.message.contains(msg), "{desc}: {e} lacks {msg:?}");
            let shown = e.to_string();
            assert!(shown.starts_with("bad.toml"), "{shown}");
        }
    }
}

#[test]
fn on_down_and_fallback_load_with_defaults() {
    let c = parse(
        "f.toml",
        &vip(concat!(
            "mode = \"nat\"\non_down = \"keep\"\n",
            "[vip.fallback]\naddress = \"192.0.2.25\"\nport = 8081\nmac = \"02:00:00:00:00:25\"\n",
            "[[vip.real]]\naddress = \"192.0.2.21\"\nport = 8080\nmac = \"02:00:00:00:00:21\"\n",
            "[[vip]]\nname = \"dns\"\naddress = \"192.0.2.101\"\nprotocol = \"udp\"\nport = 53\n",
            "[vip.fallback]\naddress = \"192.0.2.26\"\n",
            "[[vip.real]]\naddress = \"192.0.2.21\"\n",
        )),
    )
    .unwrap();
    let (web, dns) = (&c.vips[0], &c.vips[1]);
    assert_eq!(web.on_down, OnDown::Keep);
    assert_eq!(
        web.fallback,
        Some(FallbackConf {
            address: "192.0.2.25".parse().unwrap(),
            port: 8081,
            mac: Some([2, 0, 0, 0, 0, 0x25]),
        })
    );
    assert_eq!(dns.on_down, OnDown::Reschedule, "the default");
    let f = dns.fallback.as_ref().unwrap();
    assert_eq!((f.port, f.mac), (53, None), "DR keeps the VIP's port");
    assert_eq!(
        c.static_macs(),
        vec![
            ("192.0.2.21".parse().unwrap(), [2, 0, 0, 0, 0, 0x21]),
            ("192.0.2.25".parse().unwrap(), [2, 0, 0, 0, 0, 0x25]),
        ]
    );
    let plain = parse("p.toml", &vip("[[vip.real]]\naddress = \"192.0.2.21\"\n")).unwrap();
    assert_eq!(
        (plain.vips[0].on_down, &plain.vips[0].fallback),
        (OnDown::Reschedule, &None)
    );
}

#[test]
fn durations_take_units() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("50us"), Ok(Duration::from_micros(50)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("fast").is_err());
    assert!(parse_duration("5 parsecs").is_err());
    assert!(parse_duration("99999999h").is_err());
}

#[test]
fn cidr_contains() {
    let c: Cidr = "192.0.2.0/24".parse().unwrap();
    assert!(c.contains("192.0.2.200".parse().unwrap()));
    assert!(!c.contains("192.0.3.1".parse().unwrap()));
    assert!(!c.contains("2001:db8::1".parse().unwrap()));
    let c6: Cidr = "2001:db8::2/64".parse().unwrap();
    assert!(c6.contains("2001:db8::ffff".parse().unwrap()));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("203.0.113.9".parse().unwrap()));
}

/// Found by the `config` fuzzer: for some syntax errors (a control
/// character in a comment) the TOML parser's message is empty, and the
/// error read `fuzz.toml:2: ` with nothing to say what was wrong.
#[test]
fn every_syntax_error_says_what_is_wrong() {
    for text in [
        "[dataplane]\n# a comment with a \t\0 control character\n",
        "[dataplane]\neal_args = [\"-l\", # \u{1} \n",
        "a = \"\u{7f}\0\"",
        "= 1",
        "[x\n",
    ] {
        let errs = parse("lb.toml", text).unwrap_err();
        assert!(!errs.0.is_empty(), "{text:?}");
        for e in &errs.0 {
            assert!(!e.message.trim().is_empty(), "{text:?}: {e:?}");
        }
    }
    let errs = parse("lb.toml", "[dataplane]\n# \0\n").unwrap_err();
    assert_eq!(
        errs.to_string(),
        "lb.toml:2: control character '\\0' is not allowed in TOML"
    );
}

/// Found by the `config` fuzzer: the default TAP name (`fl-` and the port
/// name, cut to 15 bytes) was cut inside a multi-byte character, and
/// loading panicked.
#[test]
fn a_port_name_with_multibyte_characters_does_not_panic() {
    let text = MINIMAL.replace("name = \"lan\"", "name = \"pa' #--dgr,\u{35a}\u{7fb}\"");
    let errs = parse("lb.toml", &text).unwrap_err();
    assert!(
        errs.0
            .iter()
            .any(|e| e.key == "port[0].tap" && e.message.contains("is not a valid interface name")),
        "{errs}"
    );
    // A name whose 15-byte cut falls inside a character, and an ASCII one.
    let text = MINIMAL.replace("name = \"lan\"", "name = \"lan-ééééé\"");
    assert!(parse("lb.toml", &text).is_err());
    let text = MINIMAL.replace("name = \"lan\"", "name = \"lan-abcdefghijklm\"");
    assert_eq!(
        parse("lb.toml", &text).unwrap().ports[0].tap,
        "fl-lan-abcdefgh"
    );
}

#[test]
fn announce_loads_with_defaults_and_refuses_the_kernels_tables() {
    let web = vip("[[vip.real]]\naddress = \"192.0.2.21\"\n");
    let c = parse("a.toml", &format!("{web}\n[announce]\ntable = 250\n")).unwrap();
    assert_eq!(
        c.announce,
        Some(AnnounceConf {
            table: 250,
            drain_time: DEFAULT_DRAIN_TIME
        })
    );
    let c = parse(
        "a.toml",
        &format!("{web}\n[announce]\ntable = 4294967295\ndrain_time = \"0s\"\n"),
    )
    .unwrap();
    assert_eq!(
        c.announce.map(|a| (a.table, a.drain_time)),
        Some((u32::MAX, Duration::ZERO))
    );
    for (text, key, msg) in [
        (
            format!("{web}\n[announce]\ntable = 0\n"),
            "announce.table",
            "keeps for itself",
        ),
        (
            format!("{web}\n[announce]\ntable = 254\n"),
            "announce.table",
            "main",
        ),
        (
            format!("{web}\n[announce]\ntable = 255\n"),
            "announce.table",
            "local",
        ),
        (
            format!("{web}\n[announce]\ntable = 4294967296\n"),
            "announce.table",
            "out of range",
        ),
        (format!("{web}\n[announce]\n"), "announce.table", "required"),
        (
            format!("{web}\n[announce]\ntable = 250\ndrain_time = \"soon\"\n"),
            "announce.drain_time",
            "",
        ),
        (
            with("\n[announce]\ntable = 250\n"),
            "announce",
            "no [[vip]]",
        ),
    ] {
        let errs = parse("bad.toml", &text).expect_err(&text).0;
        assert_eq!(errs.len(), 1, "{text}: {errs:#?}");
        assert_eq!(errs[0].key, key, "{text}");
        assert!(errs[0].message.contains(msg), "{}", errs[0]);
        assert!(errs[0].line.is_some(), "{}", errs[0]);
    }
}

#[test]
fn outbound_loads_with_its_address_defaulted_and_refuses_what_cannot_work() {
    let two_arm = MINIMAL.replace(
        "addresses = [\"192.0.2.2/24\"]",
        "addresses = [\"192.0.2.2/24\"]\n\n[[port]]\nname = \"ext\"\ndevice = \"net_af_packet1\"\naddresses = [\"198.51.100.2/24\", \"2001:db8::2/64\"]",
    );
    let c = parse(
        "o.toml",
        &format!("{two_arm}\n[[outbound]]\nsources = [\"192.0.2.0/24\"]\nport_name = \"ext\"\n"),
    )
    .unwrap();
    assert_eq!(
        c.outbound,
        [OutboundConf {
            name: "outbound0".into(),
            sources: vec!["192.0.2.0/24".parse().unwrap()],
            port_name: "ext".into(),
            address: "198.51.100.2".parse().unwrap(),
        }]
    );
    let ob = |body: &str| format!("{two_arm}\n[[outbound]]\n{body}");
    for (text, key, msg) in [
        (ob("port_name = \"ext\"\n"), "outbound[0].sources", "at least one"),
        (
            ob("sources = [\"192.0.2.0/24\", \"2001:db8:1::/64\"]\nport_name = \"ext\"\n"),
            "outbound[0].sources[1]",
            "mixes IPv4 and IPv6",
        ),
        (ob("sources = [\"192.0.2.0\"]\nport_name = \"ext\"\n"), "outbound[0].sources[0]", "address/prefix"),
        (ob("sources = [\"192.0.2.0/24\"]\n"), "outbound[0].port_name", "required"),
        (ob("sources = [\"192.0.2.0/24\"]\nport_name = \"wan\"\n"), "outbound[0].port_name", "no [[port]] named \"wan\""),
        (
            ob("sources = [\"192.0.2.0/24\"]\nport_name = \"ext\"\naddress = \"198.51.100.9\"\n"),
            "outbound[0].address",
            "not an address of port \"ext\"",
        ),
        (
            ob("sources = [\"192.0.2.0/24\"]\nport_name = \"ext\"\naddress = \"2001:db8::2\"\n"),
            "outbound[0].address",
            "not of the sources' family",
        ),
        (
            ob("sources = [\"192.0.2.0/24\"]\nport_name = \"lan\"\naddress = \"192.0.2.2\"\ncolour = 1\n"),
            "outbound[0].colour",
            "unknown key",
        ),
        (
            format!(
                "{}\n[[outbound]]\nname = \"outbound0\"\nsources = [\"192.0.2.0/25\"]\nport_name = \"ext\"\n",
                ob("sources = [\"192.0.2.0/24\"]\nport_name = \"ext\"\n")
            ),
            "outbound[1].name",
            "used twice",
        ),
    ] {
        let errs = parse("bad.toml", &text).expect_err(&text).0;
        assert_eq!(errs.len(), 1, "{text}: {errs:#?}");
        assert_eq!(errs[0].key, key, "{text}");
        assert!(errs[0].message.contains(msg), "{}", errs[0]);
        assert!(errs[0].line.is_some(), "{}", errs[0]);
    }
}

#[test]
fn the_fingerprint_follows_what_picks_reals_and_nothing_else() {
    let two = |a: &str, b: &str| {
        with(&format!(
            "\n[[vip]]\nname = \"{a}\"\naddress = \"192.0.2.100\"\nport = 80\n  [[vip.real]]\n  address = \"192.0.2.21\"\n  [[vip.real]]\n  address = \"192.0.2.22\"\n\
             \n[[vip]]\nname = \"{b}\"\naddress = \"192.0.2.101\"\nport = 80\n  [[vip.real]]\n  address = \"192.0.2.23\"\n"
        ))
    };
    let fp = |t: &str| parse("f.toml", t).unwrap().fingerprint();
    let base = fp(&two("web", "api"));
    // Names and the order of reals do not count.
    assert_eq!(base, fp(&two("www", "rest")));
    let swapped = two("web", "api").replacen("192.0.2.21", "192.0.2.99", 1);
    let swapped =
        swapped
            .replacen("192.0.2.22", "192.0.2.21", 1)
            .replacen("192.0.2.99", "192.0.2.22", 1);
    assert_eq!(base, fp(&swapped));
    // Health checks do not count.
    let checked = two("web", "api").replacen(
        "port = 80\n",
        "port = 80\n  [vip.health]\n  type = \"tcp\"\n",
        1,
    );
    assert_eq!(base, fp(&checked));
    // A weight, a real, a scheduler, a port do.
    let heavier = two("web", "api").replacen(
        "address = \"192.0.2.21\"\n",
        "address = \"192.0.2.21\"\n  weight = 2\n",
        1,
    );
    assert_ne!(base, fp(&heavier));
    assert_ne!(
        base,
        fp(&two("web", "api").replacen("192.0.2.23", "192.0.2.24", 1))
    );
    assert_ne!(
        base,
        fp(&two("web", "api").replacen("port = 80\n", "port = 80\nscheduler = \"wrr\"\n", 1))
    );
    assert_ne!(
        base,
        fp(&two("web", "api").replacen("port = 80", "port = 8080", 1))
    );
}

#[test]
fn health_checks_may_go_to_another_port_or_address() {
    let all_ports = |health: &str| {
        with(&format!(
            "\n[[vip]]\nname = \"all\"\naddress = \"192.0.2.100\"\nport = 0\n{health}[[vip.real]]\naddress = \"192.0.2.21\"\n"
        ))
    };
    let c = parse(
        "h.toml",
        &all_ports("[vip.health]\ntype = \"http\"\npath = \"/ready.txt\"\nport = 9010\n"),
    )
    .unwrap();
    let h = c.vips[0].health.clone().unwrap();
    assert_eq!((h.port, h.address), (Some(9010), None));
    let real: SocketAddr = "192.0.2.21:0".parse().unwrap();
    assert_eq!(h.endpoint(real), "192.0.2.21:9010".parse().unwrap());
    let c = parse(
        "h.toml",
        &vip("[vip.health]\ntype = \"tcp\"\naddress = \"192.0.2.99\"\n[[vip.real]]\naddress = \"192.0.2.21\"\n"),
    )
    .unwrap();
    let h = c.vips[0].health.clone().unwrap();
    assert_eq!(
        h.endpoint("192.0.2.21:80".parse().unwrap()),
        "192.0.2.99:80".parse().unwrap()
    );
    // No check, no port needed.
    assert!(parse("h.toml", &all_ports("")).is_ok());
    assert!(parse("h.toml", &all_ports("[vip.health]\ntype = \"none\"\n")).is_ok());
    for (text, key, msg) in [
        (
            all_ports("[vip.health]\ntype = \"tcp\"\n"),
            "vip[0].health.port",
            "every port",
        ),
        (
            all_ports("[vip.health]\ntype = \"tcp\"\nport = 0\n"),
            "vip[0].health.port",
            "out of range",
        ),
        (
            all_ports("[vip.health]\ntype = \"tcp\"\nport = 65536\n"),
            "vip[0].health.port",
            "out of range",
        ),
        (
            all_ports("[vip.health]\ntype = \"tcp\"\nport = 9010\naddress = \"ready\"\n"),
            "vip[0].health.address",
            "not an IP address",
        ),
    ] {
        let errs = parse("bad.toml", &text).expect_err(&text).0;
        assert_eq!(errs.len(), 1, "{text}: {errs:#?}");
        assert_eq!(errs[0].key, key, "{text}");
        assert!(errs[0].message.contains(msg), "{}", errs[0]);
    }
}

#[test]
fn connection_limits_load_and_bad_ones_are_named() {
    let c = parse(
        "l.toml",
        &vip("[[vip.real]]\naddress = \"192.0.2.21\"\nmax_conns = 500\nmin_conns = 400\n[[vip.real]]\naddress = \"192.0.2.22\"\nmax_conns = 5\n"),
    )
    .unwrap();
    let r = &c.vips[0].reals;
    assert_eq!((r[0].max_conns, r[0].min_conns), (Some(500), Some(400)));
    assert_eq!((r[1].max_conns, r[1].min_conns), (Some(5), None));
    for (body, key, msg) in [
        (
            "max_conns = 0\n",
            "vip[0].real[0].max_conns",
            "out of range",
        ),
        (
            "max_conns = 5\nmin_conns = 6\n",
            "vip[0].real[0].min_conns",
            "out of range",
        ),
        (
            "min_conns = 6\n",
            "vip[0].real[0].min_conns",
            "needs max_conns",
        ),
    ] {
        let text = vip(&format!("[[vip.real]]\naddress = \"192.0.2.21\"\n{body}"));
        let errs = parse("bad.toml", &text).expect_err(&text).0;
        assert_eq!(errs.len(), 1, "{text}: {errs:#?}");
        assert_eq!(errs[0].key, key, "{text}");
        assert!(errs[0].message.contains(msg), "{}", errs[0]);
    }
}

#[test]
fn vip_timeouts_load_and_bad_ones_are_named() {
    let real = "[[vip.real]]\naddress = \"192.0.2.21\"\n";
    let c = parse(
        "t.toml",
        &vip(&format!(
            "[vip.timeouts]\ntcp = \"900s\"\ntcp_fin = \"120s\"\nudp = \"3s\"\n{real}"
        )),
    )
    .unwrap();
    let t = c.vips[0].timeouts.unwrap();
    assert_eq!(
        (t.tcp, t.tcp_fin, t.udp),
        (
            Some(Duration::from_secs(900)),
            Some(Duration::from_secs(120)),
            Some(Duration::from_secs(3))
        )
    );
    assert!(!t.tcp_reset_on_idle);
    assert!(parse("t.toml", &vip(real)).unwrap().vips[0]
        .timeouts
        .is_none());
    let c = parse(
        "t.toml",
        &vip(&format!("[vip.timeouts]\ntcp_reset_on_idle = true\n{real}")),
    )
    .unwrap();
    assert!(c.vips[0].timeouts.unwrap().tcp_reset_on_idle);
    for (body, key, msg) in [
        ("udp = \"0s\"\n", "vip[0].timeouts.udp", ""),
        ("tcp_reset_on_idle = \"yes\"\n", "", "invalid type"),
        (
            "tcp_reset_on_idle = true\n",
            "vip[0].timeouts.tcp_reset_on_idle",
            "TCP VIPs only",
        ),
        ("tcp = \"169h\"\n", "vip[0].timeouts.tcp", "7 days"),
        ("tcp_fin = \"soon\"\n", "vip[0].timeouts.tcp_fin", ""),
        ("tcp_reset = true\n", "vip[0].timeouts.tcp_reset", ""),
    ] {
        let mut text = vip(&format!("[vip.timeouts]\n{body}{real}"));
        if msg == "TCP VIPs only" {
            text = text.replace("port = 80\n", "port = 53\nprotocol = \"udp\"\n");
        }
        let errs = parse("bad.toml", &text).expect_err(&text).0;
        assert_eq!(errs.len(), 1, "{text}: {errs:#?}");
        assert_eq!(errs[0].key, key, "{text}");
        assert!(errs[0].message.contains(msg), "{}", errs[0]);
    }
}

#[test]
fn load_refuses_files_that_are_not_text_or_far_too_large() {
    let dir = std::env::temp_dir().join(format!("ferrolb-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = dir.join("ok.toml");
    std::fs::write(&ok, MINIMAL).unwrap();
    assert!(load(&ok).is_ok());
    let bad = dir.join("bad.toml");
    let mut bytes = MINIMAL.as_bytes().to_vec();
    bytes.extend_from_slice(b"# caf\xe9\n");
    std::fs::write(&bad, &bytes).unwrap();
    let e = load(&bad).unwrap_err().0;
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("not UTF-8"), "{}", e[0]);
    assert_eq!(e[0].line, Some(MINIMAL.lines().count() + 1), "{}", e[0]);
    let big = dir.join("big.toml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_CONFIG_BYTES + 1).unwrap();
    let e = load(&big).unwrap_err().0;
    assert!(e[0].message.contains("larger than 16 MiB"), "{}", e[0]);
    let e = load(&dir.join("missing.toml")).unwrap_err().0;
    assert!(e[0].message.contains("cannot read"), "{}", e[0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn steering_loads_and_each_port_knows_which_side_of_nat_flows_it_carries() {
    assert_eq!(
        parse("m.toml", MINIMAL).unwrap().dataplane.steering,
        SteeringMode::Auto
    );
    for (word, mode) in [
        ("auto", SteeringMode::Auto),
        ("software", SteeringMode::Software),
        ("nic", SteeringMode::Nic),
    ] {
        let text = MINIMAL.replace("eal_args", &format!("steering = \"{word}\"\neal_args"));
        assert_eq!(parse("m.toml", &text).unwrap().dataplane.steering, mode);
    }
    // Three ports: clients, reals (connected), and a third reached by its
    // gateway; a NAT VIP on lan with reals on dmz and beyond wan's gateway.
    let three = MINIMAL.replace(
        "addresses = [\"192.0.2.2/24\"]",
        "addresses = [\"192.0.2.2/24\"]\n\n[[port]]\nname = \"dmz\"\ndevice = \"net_af_packet1\"\naddresses = [\"198.51.100.2/24\"]\n\n[[port]]\nname = \"wan\"\ndevice = \"net_af_packet2\"\naddresses = [\"203.0.113.2/24\"]\ngateway = \"203.0.113.1\"",
    );
    let nat = |reals: &[&str]| {
        let mut v = String::from("\n[[vip]]\nname = \"web\"\naddress = \"192.0.2.100\"\nport = 80\nmode = \"nat\"\nport_name = \"lan\"\n");
        for r in reals {
            v.push_str(&format!("[[vip.real]]\naddress = \"{r}\"\nport = 8080\n"));
        }
        v
    };
    let roles = |text: &str| parse("r.toml", text).unwrap().port_roles();
    use PortRole::*;
    assert_eq!(
        roles(&format!("{three}{}", nat(&["198.51.100.21"]))),
        [Clients, Reals, Other]
    );
    assert_eq!(
        roles(&format!("{three}{}", nat(&["198.51.100.21", "10.1.2.3"]))),
        [Clients, Reals, Reals]
    );
    // One arm: clients and reals on lan.
    assert_eq!(
        roles(&format!("{three}{}", nat(&["192.0.2.21"]))),
        [Both, Other, Other]
    );
    // DR services steer nothing ...
    let dr = "\n[[vip]]\nname = \"d\"\naddress = \"192.0.2.101\"\nport = 80\nport_name = \"lan\"\n[[vip.real]]\naddress = \"192.0.2.31\"\n";
    assert_eq!(roles(&format!("{three}{dr}")), [Other, Other, Other]);
    // ... but a port where NAT reals live and a VIP is served hashes
    // whole flows (requests to the VIP would share one queue otherwise).
    let dr_on_dmz = "\n[[vip]]\nname = \"d\"\naddress = \"198.51.100.101\"\nport = 80\nport_name = \"dmz\"\n[[vip.real]]\naddress = \"198.51.100.31\"\n";
    assert_eq!(
        roles(&format!("{three}{}{dr_on_dmz}", nat(&["198.51.100.21"]))),
        [Clients, Both, Other]
    );
    // Outbound: the sources' port carries them out, the address's port
    // carries the answers in.
    let ob = "\n[[outbound]]\nsources = [\"198.51.100.0/24\"]\nport_name = \"wan\"\n";
    assert_eq!(roles(&format!("{three}{ob}")), [Other, Reals, Clients]);
    // Sources beyond a gateway: the port of that gateway.
    let routed = "\n[[outbound]]\nsources = [\"10.9.0.0/16\"]\nport_name = \"lan\"\n";
    assert_eq!(roles(&format!("{three}{routed}")), [Clients, Other, Reals]);
}
