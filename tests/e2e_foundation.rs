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

    let config = format!(
        r#"
[dataplane]
eal_args = ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--file-prefix=fl{id}",
            "--vdev=net_af_packet0,iface={vb}"]
workers = 1
idle_sleep = "200us"

[[port]]
name = "lan"
device = "net_af_packet0"
addresses = ["192.0.2.2/24"]
gateway = "192.0.2.1"
tap = "{tap}"
"#
    );
    let mut lb_proc = Ferrolb::start(&lb, &with_workers(&config, workers));
    lb_proc.wait_log("ferrolb running", Duration::from_secs(30));

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
    let config = format!(
        r#"
[dataplane]
eal_args = ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--file-prefix=fl{id}",
            "--vdev=net_af_packet0,iface={vb}"]
idle_sleep = "1ms"

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
