//! The kernel side of the exception path: the balancer's own addresses live
//! on each port's TAP interface, so the kernel answers ping and the control
//! plane uses ordinary sockets (health checks, VRRP, the admin API).
//!
//! Configuration goes through `ip` (iproute2), once at start-up and on
//! reload: never on the data path.

use std::path::Path;
use std::process::Command;

use crate::config::Cidr;

/// A failed kernel configuration step.
#[derive(Debug, thiserror::Error)]
#[error("configuring interface {iface}: `{command}` failed: {reason}")]
pub struct KernelError {
    /// The interface.
    pub iface: String,
    /// The command line.
    pub command: String,
    /// Its stderr, or why it could not run.
    pub reason: String,
}

fn ip(iface: &str, args: &[&str]) -> Result<(), KernelError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| KernelError {
            iface: iface.into(),
            command: command.clone(),
            reason: format!("{e} (is iproute2 installed?)"),
        })?;
    if !out.status.success() {
        return Err(KernelError {
            iface: iface.into(),
            command,
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Brings the TAP up with the port's addresses (IPv6 without duplicate
/// address detection: the data plane already owns these addresses).
pub fn configure_tap(iface: &str, addrs: &[Cidr]) -> Result<(), KernelError> {
    // Router advertisements and autoconfiguration would add addresses the
    // data plane does not know about.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/accept_ra"), "0");
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/autoconf"), "0");
    for a in addrs {
        let cidr = a.to_string();
        let mut args = vec!["addr", "replace", cidr.as_str(), "dev", iface];
        if a.addr.is_ipv6() {
            args.push("nodad");
        }
        ip(iface, &args)?;
    }
    ip(iface, &["link", "set", "dev", iface, "up"])
}

/// The kernel interfaces behind `net_af_packet` ports, from EAL arguments:
/// (DPDK device name, interface), e.g. `--vdev=net_af_packet0,iface=lb0`.
pub fn af_packet_ifaces(eal_args: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut it = eal_args.iter();
    while let Some(a) = it.next() {
        let spec = if let Some(s) = a.strip_prefix("--vdev=") {
            s.to_string()
        } else if a == "--vdev" {
            match it.next() {
                Some(s) => s.clone(),
                None => break,
            }
        } else {
            continue;
        };
        let mut parts = spec.split(',');
        let Some(dev) = parts.next() else { continue };
        if !dev.starts_with("net_af_packet") && !dev.starts_with("eth_af_packet") {
            continue;
        }
        if let Some(iface) = parts.find_map(|kv| kv.strip_prefix("iface=")) {
            out.push((dev.to_string(), iface.to_string()));
        }
    }
    out
}

/// Keeps the kernel's IP stack off an interface that a `net_af_packet`
/// port drives: the data plane answers ARP and receives every frame on it,
/// and a kernel that also answered (it would, for addresses it holds on
/// the TAP) would duplicate replies. Bare-metal ports bound to vfio-pci
/// never reach the kernel and need none of this.
pub fn quiet_kernel_on(iface: &str) -> Result<(), KernelError> {
    if !Path::new(&format!("/proc/sys/net/ipv4/conf/{iface}")).exists() {
        return Err(KernelError {
            iface: iface.into(),
            command: "look up the interface".into(),
            reason: format!("no interface {iface:?} in this network namespace (the iface= of a net_af_packet vdev in eal_args)"),
        });
    }
    let set = |path: String, value: &str| {
        std::fs::write(&path, value).map_err(|e| KernelError {
            iface: iface.into(),
            command: format!("echo {value} > {path}"),
            reason: e.to_string(),
        })
    };
    // Never answer ARP on it.
    set(format!("/proc/sys/net/ipv4/conf/{iface}/arp_ignore"), "8")?;
    // Drop IPv4 whose source is routed elsewhere (through the TAP).
    set(format!("/proc/sys/net/ipv4/conf/{iface}/rp_filter"), "1")?;
    // No IPv6 on it at all.
    set(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"), "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_af_packet_interfaces_in_both_vdev_forms() {
        let args: Vec<String> = [
            "-l",
            "0-1",
            "--vdev=net_af_packet0,iface=lb0,qpairs=1",
            "--vdev",
            "net_af_packet1,qpairs=2,iface=lb1",
            "--vdev=net_null0",
            "--vdev",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            af_packet_ifaces(&args),
            vec![
                ("net_af_packet0".into(), "lb0".into()),
                ("net_af_packet1".into(), "lb1".into())
            ]
        );
    }
}
