//! `ferrolb check` and `ferrolb run` on valid and invalid configurations.

mod common;

use std::process::Command;

use common::*;

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrolb-cli-{}", uid()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const VALID: &str = r#"
[dataplane]
eal_args = ["-l", "0-1", "--no-huge", "--no-pci", "--vdev=net_af_packet0,iface=lb0"]
workers = 1

[[port]]
name = "lan"
device = "net_af_packet0"
addresses = ["192.0.2.2/24"]

[[vip]]
name = "web"
address = "192.0.2.100"
port = 80
  [[vip.real]]
  address = "192.0.2.21"
"#;

#[test]
fn check_accepts_a_valid_file() {
    let p = write("ok.toml", VALID);
    let out = Command::new(ferrolb_bin())
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("OK (1 port(s), 1 VIP(s), 1 worker(s))"),
        "{text}"
    );
}

#[test]
fn check_names_every_error_with_line_and_key() {
    let bad = VALID
        .replace("workers = 1", "workers = 1\ncolour = \"blue\"")
        .replace("192.0.2.21", "192.0.2.321");
    let p = write("bad.toml", &bad);
    let out = Command::new(ferrolb_bin())
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = p.display().to_string();
    assert!(
        err.contains(&format!("{file}:5: dataplane.colour: unknown key")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:17: vip[0].real[0].address: \"192.0.2.321\" is not an IPv4 or IPv6 address"
        )),
        "{err}"
    );
    assert!(err.contains("2 error(s)"), "{err}");
}

#[test]
fn check_reports_a_missing_file() {
    let out = Command::new(ferrolb_bin())
        .args(["check", "--config", "/nonexistent/ferrolb.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

#[test]
fn run_refuses_an_invalid_file_before_touching_dpdk() {
    let p = write("bad.toml", "[dataplane]\neal_args = []\n");
    let out = Command::new(ferrolb_bin())
        .args(["run", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid configuration"), "{err}");
    assert!(err.contains("dataplane.eal_args: is required"), "{err}");
    assert!(
        !err.contains("EAL:"),
        "DPDK was initialised for a bad file: {err}"
    );
}

#[test]
fn run_reports_eal_arguments_dpdk_rejects() {
    require_root();
    let p = write(
        "eal.toml",
        &VALID
            .replace(
                "\"--no-pci\"",
                "\"--no-pci\", \"--definitely-not-an-eal-flag\"",
            )
            .replace("net_af_packet0,iface=lb0", "net_null0")
            .replace("device = \"net_af_packet0\"", "device = \"net_null0\""),
    );
    let out = Command::new(ferrolb_bin())
        .args(["run", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DPDK EAL initialisation failed"), "{err}");
    assert!(err.contains("--definitely-not-an-eal-flag"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
