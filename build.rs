//! Build-time facts for `ferrolb --version`: the DPDK it was built against
//! and the git commit.

use std::process::Command;

fn main() {
    let dpdk = Command::new("pkg-config")
        .args(["--modversion", "libdpdk"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FERROLB_DPDK_VERSION={dpdk}");
    println!("cargo:rustc-env=FERROLB_GIT={git}");
    println!("cargo:rerun-if-changed=.git/HEAD");
}
