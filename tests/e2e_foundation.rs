//! The balancer on the wire: ARP answered by ferrolb itself, ping answered
//! by the kernel through the exception path (TAP), next hops resolved by
//! the data plane, and a clean stop on SIGTERM.
//!
//! Topology (built and removed by the test):
//!
//! ```text
//!  [ns client] vc ──veth── vb [ns balancer: ferrolb on net_af_packet(vb),
//!   192.0.2.1/24                TAP fl<id> holding 192.0.2.2/24]
//! ```

mod common;

on_one_and_two_workers!(answers_arp_and_ping_resolves_its_gateway_and_stops_cleanly);

use std::time::Duration;

use common::*;

fn answers_arp_and_ping_resolves_its_gateway_and_stops_cleanly(workers: u16) {
    require_root();
    let _g = serial();
    let id = uid();
    let client = Netns::new(&format!("flc{id}"));
    let lb = Netns::new(&format!("flb{id}"));
    let (vc, vb, tap) = (format!("vc{id}"), format!("vb{id}"), format!("fl{id}"));
    veth(&client, &vc, &lb, &vb);
    client.exec(&format!("ip addr add 192.0.2.1/24 dev {vc}"));
    let port_mac = lb.mac(&vb);

    let dp = dataplane(&format!("fl{id}"), &[&vb], "200us");
    let config = format!(
        r#"
{dp}
[[port]]
name = "lan"
device = "net_af_packet0"
addresses = ["192.0.2.2/24"]
gateway = "192.0.2.1"
tap = "{tap}"
"#
    );
    // Two workers: the control plane on an operator-chosen CPU.
    let config = match workers {
        1 => config,
        _ => with_workers(&config, workers)
            .replace("[dataplane]\n", "[dataplane]\nhousekeeping_cpus = [1]\n"),
    };
    let mut lb_proc = Ferrolb::start(&lb, &config);
    lb_proc.wait_log("ferrolb running", Duration::from_secs(30));
    lb_proc.wait_log("placement: control-plane threads", Duration::from_secs(1));

    // The control plane's threads run where the placement says: the main
    // lcore's CPU, or the housekeeping CPUs.
    let st = status_json(&lb);
    let control: Vec<u64> = st["placement"]["control_cpus"]
        .as_array()
        .expect("placement")
        .iter()
        .filter_map(|c| c.as_u64())
        .collect();
    assert_eq!(
        control,
        if workers == 1 { vec![0] } else { vec![1] },
        "{st}"
    );
    assert_eq!(
        st["workers"].as_array().map(Vec::len),
        Some(usize::from(workers))
    );
    let pid = lb_proc.pid();
    let api_cpus = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("threads")
        .filter_map(|t| t.ok())
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "ferrolb-api")
        })
        .and_then(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Cpus_allowed_list:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        })
        .expect("the admin API thread");
    assert_eq!(api_cpus, control[0].to_string(), "admin API thread's CPUs");

    // The TAP holds the balancer's address on the kernel side.
    let addr = lb.exec(&format!("ip -o addr show dev {tap}"));
    assert!(addr.contains("192.0.2.2/24"), "TAP addresses: {addr}");

    // ARP: every request is answered once, with the port's MAC. The kernel
    // is kept off the veth (arp_ignore=8), so only ferrolb answers.
    client.exec(&format!("ip neigh flush dev {vc}"));
    let (ok, out) = client.try_exec(&format!("arping -c 3 -W 0.2 -i {vc} 192.0.2.2"));
    assert!(ok, "arping failed:\n{out}");
    // Debian's `arping` package: "60 bytes from MAC (192.0.2.2): index=N".
    let replies = out
        .lines()
        .filter(|l| l.contains("bytes from") && l.contains("(192.0.2.2)"))
        .count();
    assert_eq!(replies, 3, "expected one reply per request:\n{out}");
    assert!(
        out.to_lowercase().contains(&port_mac.to_lowercase()),
        "replies not from {port_mac}:\n{out}"
    );

    // Ping: answered by the kernel behind the TAP.
    client.exec(&format!("ip neigh flush dev {vc}"));
    let (ok, out) = client.try_exec("ping -c 3 -i 0.2 -W 2 192.0.2.2");
    assert!(ok, "ping through the exception path failed:\n{out}");
    assert!(out.contains("3 received"), "{out}");
    assert!(
        !out.contains("DUP"),
        "duplicate replies: something besides ferrolb answered:\n{out}"
    );
    let neigh = client.exec("ip neigh show 192.0.2.2");
    assert!(
        neigh.contains(&port_mac),
        "client's ARP entry {neigh:?} is not the port MAC {port_mac}"
    );
    let arp_ignore = lb.exec(&format!("cat /proc/sys/net/ipv4/conf/{vb}/arp_ignore"));
    assert_eq!(arp_ignore.trim(), "8");

    // The data plane resolved its gateway (the client) by ARP.
    let client_mac = client.mac(&vc);
    lb_proc.wait_log(
        &format!("neighbour resolved ip=192.0.2.1 mac={client_mac}"),
        Duration::from_secs(5),
    );

    // Clean stop within 2 s: exit 0, ports closed (the TAP is gone).
    let (status, took) = lb_proc.signal_and_wait("TERM", Duration::from_secs(10));
    let log = lb_proc.log_text();
    assert!(status.success(), "exit status {status}:\n{log}");
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(log.contains("stopped"), "{log}");
    let answered: u64 = log
        .split("answered=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("final counters in the log");
    assert!(
        answered >= 4,
        "ferrolb answered {answered} ARP requests, expected 3 (arping) + 1 (ping):\n{log}"
    );
    let (exists, _) = lb.try_exec(&format!("ip link show {tap}"));
    assert!(!exists, "the TAP {tap} survived the stop");
}

#[test]
fn sigint_also_stops_cleanly() {
    require_root();
    let _g = serial();
    let id = uid();
    let lb = Netns::new(&format!("flb{id}"));
    let peer = Netns::new(&format!("flp{id}"));
    let vb = format!("vb{id}");
    veth(&peer, &format!("vp{id}"), &lb, &vb);
    let dp = dataplane(&format!("fl{id}"), &[&vb], "1ms");
    let config = format!(
        r#"
{dp}
[[port]]
name = "lan"
device = "net_af_packet0"
addresses = ["192.0.2.2/24", "2001:db8::2/64"]
tap = "fl{id}"
"#
    );
    let mut p = Ferrolb::start(&lb, &config);
    p.wait_log("ferrolb running", Duration::from_secs(30));
    let addrs = lb.exec(&format!("ip -o addr show dev fl{id}"));
    assert!(addrs.contains("2001:db8::2/64"), "{addrs}");
    let (status, took) = p.signal_and_wait("INT", Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", p.log_text());
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
}

#[test]
fn a_device_missing_from_eal_args_is_a_clear_error() {
    require_root();
    let _g = serial();
    let id = uid();
    let lb = Netns::new(&format!("flb{id}"));
    let config = format!(
        r#"
[dataplane]
eal_args = ["-l", "0-1", "--no-huge", "-m", "128", "--no-pci", "--file-prefix=fl{id}", "--vdev=net_null0"]

[[port]]
name = "lan"
device = "net_af_packet7"
addresses = ["192.0.2.2/24"]
"#
    );
    let mut p = Ferrolb::start(&lb, &config);
    let ok = wait_for(Duration::from_secs(20), || {
        p.log_text().contains("net_af_packet7")
    });
    assert!(ok, "{}", p.log_text());
    let (status, _) = p.signal_and_wait("TERM", Duration::from_secs(10));
    let log = p.log_text();
    assert!(!status.success(), "{log}");
    assert!(log.contains("find DPDK port \"net_af_packet7\""), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn workers_that_do_not_match_the_lcores_or_the_queues_are_refused_with_the_numbers() {
    require_root();
    let _g = serial();
    let id = uid();
    let client = Netns::new(&format!("flc{id}"));
    let lb = Netns::new(&format!("flb{id}"));
    let (vc, vb) = (format!("vc{id}"), format!("vb{id}"));
    veth(&client, &vc, &lb, &vb);
    let config = |lcores: &str, vdev: &str| {
        format!(
            r#"
[dataplane]
eal_args = [{lcores}, "--no-huge", "-m", "256", "--no-pci", "--file-prefix=fl{id}", "{vdev}"]
workers = 2
idle_sleep = "200us"

[[port]]
name = "lan"
device = "net_af_packet0"
addresses = ["192.0.2.2/24"]
"#
        )
    };
    let cases = [
        (
            config(r#""-l", "0-1""#, &format!("--vdev=net_af_packet0,iface={vb},qpairs=2")),
            "[dataplane].workers = 2 needs 3 lcores (the main lcore and one per worker) but [dataplane].eal_args enable 2",
        ),
        (
            config(
                r#""--lcores=0@0,1@1,2@0,3@1""#,
                &format!("--vdev=net_af_packet0,iface={vb},qpairs=2"),
            ),
            "needs 3 lcores (the main lcore and one per worker) but [dataplane].eal_args enable 4",
        ),
        (
            config(
                r#""--lcores=0@0,1@1,2@0""#,
                &format!("--vdev=net_af_packet0,iface={vb}"),
            ),
            "port \"lan\" (device net_af_packet0) gives at most 1 RX queue(s) but [dataplane].workers = 2 needs one per worker",
        ),
        (
            // Steering required, on a port where clients and NAT reals meet.
            config(
                r#""--lcores=0@0,1@1,2@0""#,
                &format!("--vdev=net_af_packet0,iface={vb},qpairs=2"),
            )
            .replace("workers = 2", "workers = 2\nsteering = \"nic\"")
                + "\n[[vip]]\nname = \"web\"\naddress = \"192.0.2.100\"\nport = 80\nmode = \"nat\"\nport_name = \"lan\"\n[[vip.real]]\naddress = \"192.0.2.21\"\nport = 8080\n",
            "[dataplane].steering = \"nic\" but port lan cannot steer in the NIC: requests to VIPs and NAT reals' frames share port lan: a NIC hashes one side of the frames per port",
        ),
    ];
    for (cfg, want) in cases {
        let mut p = Ferrolb::start(&lb, &cfg);
        let exited = wait_for(Duration::from_secs(20), || p.log_text().contains(want));
        assert!(exited, "expected {want:?}:\n{}", p.log_text());
        let (status, _) = p.signal_and_wait("TERM", Duration::from_secs(10));
        let log = p.log_text();
        assert!(!status.success(), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
}
